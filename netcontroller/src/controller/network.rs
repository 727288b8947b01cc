//! Creating and deleting networks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info_span, Instrument};

use super::{
    new_id, resolve_network, Controller, ControllerError, NetworkEntry, Result, State, NETWORKS,
    PREDEFINED,
};
use crate::ipam::IpamRequest;
use crate::model::IpamPool;
use crate::model::NetworkSpec;

/// What a user asks for when creating a network (the API's body, parsed).
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    pub driver: String,
    /// At most one IPv4 pool request; `None` lets IPAM choose a subnet.
    pub ipam: Option<IpamRequest>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Drivers whose networks carry no addresses.
fn needs_ipam(driver: &str) -> bool {
    !matches!(driver, "null" | "host")
}

/// Drivers of which at most one network may exist (dockerd's host and null
/// drivers refuse a second one), with the name dockerd's message uses.
fn single_instance(driver: &str) -> Option<&'static str> {
    match driver {
        "host" => Some("host"),
        "null" => Some("null"),
        _ => None,
    }
}

/// Removes a name reservation when a create fails before the network is registered.
struct NameReservation {
    state: Arc<Mutex<State>>,
    name: String,
    armed: bool,
}

impl Drop for NameReservation {
    fn drop(&mut self) {
        if self.armed {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.names.remove(&self.name);
        }
    }
}

impl Controller {
    /// Creates a user network. Predefined names are refused.
    pub async fn create_network(&self, req: NetworkCreate) -> Result<NetworkSpec> {
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(ControllerError::Predefined(req.name));
        }
        self.create_network_unchecked(req).await
    }

    /// Creates a network without the predefined-name check: the daemon uses it
    /// for `bridge`, `host` and `none`.
    pub async fn create_network_unchecked(&self, req: NetworkCreate) -> Result<NetworkSpec> {
        let started = Instant::now();
        validate_name(&req.name)?;
        let driver = self.driver(&req.driver)?;
        let id = new_id();
        let span = info_span!("network_create", network = %req.name, id = &id[..12]);
        async {
            let mut spec = NetworkSpec {
                id: id.clone(),
                name: req.name.clone(),
                driver: req.driver.clone(),
                ipv4: Vec::new(),
                internal: req.internal,
                attachable: req.attachable,
                enable_ipv6: req.enable_ipv6,
                options: req.options,
                labels: req.labels,
                created: now_rfc3339(),
            };
            // The options first, before anything asks the kernel about them
            // (a bridge name longer than IFNAMSIZ is a bad option, not a
            // netlink failure).
            driver
                .validate_network(&spec)
                .map_err(|e| ControllerError::driver("invalid network", e))?;
            // Held for the whole create: a second host or null network
            // checked meanwhile would otherwise slip past the check.
            let _single = match single_instance(&req.driver) {
                Some(kind) => {
                    let guard = self.single_instance_create.lock().await;
                    if self.networks().iter().any(|n| n.driver == req.driver) {
                        return Err(ControllerError::Forbidden(format!(
                            "only one instance of \"{kind}\" network is allowed"
                        )));
                    }
                    Some(guard)
                }
                None => None,
            };
            let mut reservation = self.reserve_name(&req.name, &id)?;
            if needs_ipam(&req.driver) {
                let request = req.ipam.clone().unwrap_or_default();
                spec.ipv4 = vec![self.allocate_subnet(&id, &request, &spec.options).await?];
            }
            if let Err(e) = driver.create_network(&spec).await {
                self.release_ipam(&spec);
                return Err(ControllerError::driver(
                    format!("failed to create network {}", spec.name),
                    e,
                ));
            }
            if let Err(e) = self.store.put(NETWORKS, &id, &spec) {
                if let Err(undo) = driver.delete_network(&spec).await {
                    tracing::warn!(error = %undo, "rollback of network create failed");
                }
                self.release_ipam(&spec);
                return Err(e.into());
            }
            reservation.armed = false;
            self.state().networks.insert(
                id.clone(),
                NetworkEntry {
                    spec: spec.clone(),
                    lock: Arc::new(tokio::sync::Mutex::new(())),
                },
            );
            debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "network created"
            );
            Ok(spec)
        }
        .instrument(span)
        .await
    }

    /// Deletes a user network; refused for predefined networks and while
    /// endpoints are attached.
    pub async fn delete_network(&self, key: &str) -> Result<NetworkSpec> {
        let spec = self.network(key)?;
        if PREDEFINED.contains(&spec.name.as_str()) {
            return Err(ControllerError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                spec.name
            )));
        }
        self.delete_network_unchecked(&spec.id, true).await
    }

    /// Deletes a network, predefined or not. With `kernel == false` the
    /// driver is not asked to tear anything down: the daemon uses that to
    /// forget the stale default bridge while keeping docker0 for reuse.
    pub async fn delete_network_unchecked(&self, id: &str, kernel: bool) -> Result<NetworkSpec> {
        let (spec, lock) = {
            let st = self.state();
            let e = resolve_network(&st, id)?;
            (e.spec.clone(), e.lock.clone())
        };
        let _guard = lock.lock().await;
        let span = info_span!("network_delete", network = %spec.name, id = spec.short_id());
        async {
            {
                let st = self.state();
                let mut active: Vec<String> = st
                    .endpoints
                    .values()
                    .filter(|e| e.spec.network_id == spec.id)
                    .map(|e| format!("name:\"{}\" id:\"{}\"", e.spec.name, &e.spec.id[..12]))
                    .collect();
                if !active.is_empty() {
                    active.sort();
                    return Err(ControllerError::InUse {
                        name: spec.name.clone(),
                        endpoints: active,
                    });
                }
                if !st.networks.contains_key(&spec.id) {
                    return Err(ControllerError::NetworkNotFound(id.to_string()));
                }
            }
            if kernel {
                let driver = self.driver(&spec.driver)?;
                driver.delete_network(&spec).await.map_err(|e| {
                    ControllerError::driver(format!("failed to delete network {}", spec.name), e)
                })?;
            }
            self.store.delete(NETWORKS, &spec.id)?;
            if !spec.ipv4.is_empty() {
                self.ipam.release_network(&spec.id);
            }
            let mut st = self.state();
            st.networks.remove(&spec.id);
            st.names.remove(&spec.name);
            Ok(spec.clone())
        }
        .instrument(span)
        .await
    }

    fn release_ipam(&self, spec: &NetworkSpec) {
        if !spec.ipv4.is_empty() {
            self.ipam.release_network(&spec.id);
        }
    }

    fn reserve_name(&self, name: &str, id: &str) -> Result<NameReservation> {
        let mut st = self.state();
        if st.names.contains_key(name) {
            return Err(ControllerError::DuplicateName(name.to_string()));
        }
        st.names.insert(name.to_string(), id.to_string());
        Ok(NameReservation {
            state: self.state.clone(),
            name: name.to_string(),
            armed: true,
        })
    }

    /// Reserves the network's IPv4 pool. A subnet the user did not name is
    /// chosen away from the namespace's routes and addresses. Concurrent
    /// creates read those at once: the netlink handle serialises its dumps
    /// (the kernel refuses a second one on a socket with EBUSY), and IPAM
    /// makes the choice itself atomic.
    async fn allocate_subnet(
        &self,
        id: &str,
        request: &IpamRequest,
        options: &BTreeMap<String, String>,
    ) -> Result<IpamPool> {
        let avoid = if request.subnet.is_none() {
            self.networks_in_use(options.get(BRIDGE_NAME_OPTION))
                .await?
        } else {
            Vec::new()
        };
        Ok(self.ipam.allocate_network(id, request, &avoid)?)
    }

    /// IPv4 prefixes routed or assigned in the daemon's namespace, which an
    /// automatically chosen subnet must not overlap. Addresses on the bridge
    /// this network will reuse are not counted, so an existing docker0 keeps
    /// its subnet across restarts.
    pub(crate) async fn networks_in_use(
        &self,
        reuse_bridge: Option<&String>,
    ) -> Result<Vec<Ipv4Network>> {
        let mut in_use = self.netlink.ipv4_networks_in_use().await?;
        if let Some(bridge) = reuse_bridge {
            if let Some(link) = self.netlink.link(bridge).await? {
                let own = self.netlink.ipv4_addresses(link.index).await?;
                in_use.retain(|n| !own.iter().any(|o| o.network() == n.network()));
            }
        }
        Ok(in_use)
    }
}

/// The bridge driver's option naming the bridge; read here only to exempt an
/// existing bridge's own addresses from the overlap check.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// libnetwork's rule: any name that is not blank. Names never reach the
/// kernel (bridges are named after the id), so spaces and the like are
/// harmless, and dockerd users may have such networks in their scripts.
fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(ControllerError::Invalid(format!("invalid name: {name}")));
    }
    Ok(())
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
