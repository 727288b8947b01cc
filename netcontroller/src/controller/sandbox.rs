//! Sandboxes (a container's network namespace) and the endpoints joined to them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ipnetwork::Ipv4Network;
use tracing::{debug, info_span, warn, Instrument};

use super::names::Names;
use super::{
    new_id, resolve_network, Controller, ControllerError, EndpointRecord, Result, SandboxEntry,
    SandboxRecord, ENDPOINTS, PREDEFINED, SANDBOXES,
};
use crate::driver::{Driver, DriverError};
use crate::model::{EndpointSpec, JoinSpec, MacAddr, NetworkSpec, PortBinding, Proto};
use crate::portalloc::PortRequest;
use crate::resolver::Resolver;

/// One `-p` request before host ports are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequestSpec {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    /// `0` asks for an ephemeral port; `start..=end` for a range.
    pub host_port_start: u16,
    pub host_port_end: u16,
}

/// What the daemon asks for when plugging a sandbox into a network.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    /// Endpoint name: the container's name, as dockerd does.
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub mac: Option<MacAddr>,
    pub aliases: Vec<String>,
    pub ports: Vec<PortRequestSpec>,
}

/// Undoes the bookkeeping of a half-made endpoint when an error returns early.
#[derive(Default)]
struct Allocations {
    network_id: String,
    address: Option<Ipv4Addr>,
    ports: Vec<PortBinding>,
}

impl Controller {
    /// Creates a sandbox for a container: a new network namespace bind-mounted
    /// under `<exec-root>/netns/`, or the daemon's own with `host_namespace`.
    pub async fn create_sandbox(
        &self,
        container_id: &str,
        host_namespace: bool,
    ) -> Result<SandboxRecord> {
        let id = new_id();
        let netns_path = if host_namespace {
            None
        } else {
            let path = self.netns_root.join(&id);
            crate::osl::create_netns(&path)?;
            Some(path)
        };
        let record = SandboxRecord {
            id: id.clone(),
            container_id: container_id.to_string(),
            netns_path,
            endpoints: Vec::new(),
        };
        if let Err(e) = self.store.put(SANDBOXES, &id, &record) {
            if let Some(path) = &record.netns_path {
                let _ = crate::osl::delete_netns(path);
            }
            return Err(e.into());
        }
        self.state().sandboxes.insert(
            id,
            SandboxEntry {
                record: record.clone(),
                lock: Arc::new(tokio::sync::Mutex::new(())),
                upstreams: Vec::new(),
            },
        );
        Ok(record)
    }

    /// Sets the servers the sandbox's embedded DNS forwards unknown names to
    /// (a container's `--dns`, port 53), instead of the daemon's. Takes
    /// effect when its resolver starts: call it before connecting the
    /// sandbox to a user network.
    pub fn set_sandbox_upstreams(&self, sandbox_id: &str, servers: &[IpAddr]) -> Result<()> {
        let mut st = self.state();
        let entry = st
            .sandboxes
            .get_mut(sandbox_id)
            .ok_or_else(|| ControllerError::SandboxNotFound(sandbox_id.to_string()))?;
        entry.upstreams = servers.iter().map(|ip| SocketAddr::new(*ip, 53)).collect();
        Ok(())
    }

    /// Leaves every network of the sandbox (continuing past errors), removes
    /// its namespace and forgets it.
    pub async fn delete_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let lock = self.sandbox_lock(sandbox_id)?;
        let _guard = lock.lock().await;
        let record = self.sandbox(sandbox_id)?.0;
        let mut failures = Vec::new();
        let resolver = self.resolvers_lock().remove(sandbox_id);
        if let Some(r) = resolver {
            r.stop().await;
        }
        for ep in record.endpoints.iter().rev() {
            if let Err(e) = self.remove_endpoint(sandbox_id, ep).await {
                failures.push(e.to_string());
            }
        }
        if let Some(path) = &record.netns_path {
            if let Err(e) = crate::osl::delete_netns(path) {
                failures.push(e.to_string());
            }
        }
        self.store.delete(SANDBOXES, sandbox_id)?;
        self.state().sandboxes.remove(sandbox_id);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ControllerError::Invalid(failures.join("; ")))
        }
    }

    /// Creates an endpoint on `network` and joins it to the sandbox: address,
    /// interface, routes, then published ports. All or nothing.
    pub async fn connect(
        &self,
        sandbox_id: &str,
        network: &str,
        opts: EndpointOptions,
    ) -> Result<EndpointRecord> {
        let started = Instant::now();
        let sb_lock = self.sandbox_lock(sandbox_id)?;
        let _sb_guard = sb_lock.lock().await;
        let (net, net_lock) = {
            let st = self.state();
            let e = resolve_network(&st, network)?;
            (e.spec.clone(), e.lock.clone())
        };
        let _net_guard = net_lock.lock().await;
        let driver = self.driver(&net.driver)?;
        let span = info_span!("connect", network = %net.name, sandbox = &sandbox_id[..12]);
        async {
            let (sandbox, ifname, default_route) = self.plan_join(sandbox_id, &net)?;
            let mut alloc = Allocations {
                network_id: net.id.clone(),
                ..Default::default()
            };
            let result = self
                .connect_steps(
                    &driver,
                    &net,
                    &sandbox,
                    &ifname,
                    default_route,
                    opts,
                    &mut alloc,
                )
                .await;
            if result.is_err() {
                self.release(&alloc);
            }
            if result.is_ok() {
                self.ensure_resolver(&sandbox, &net).await;
            }
            debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "endpoint joined"
            );
            result
        }
        .instrument(span)
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn connect_steps(
        &self,
        driver: &Arc<dyn Driver>,
        net: &NetworkSpec,
        sandbox: &SandboxRecord,
        ifname: &str,
        default_route: bool,
        opts: EndpointOptions,
        alloc: &mut Allocations,
    ) -> Result<EndpointRecord> {
        let mut spec = EndpointSpec {
            id: new_id(),
            name: opts.name.clone(),
            network_id: net.id.clone(),
            ipv4: None,
            gateway: None,
            mac: opts.mac.unwrap_or(MacAddr([0x02, 0x42, 0, 0, 0, 0])),
            aliases: opts.aliases.clone(),
            port_bindings: Vec::new(),
        };
        if let Some(pool) = net.ipv4.first() {
            let ip = self.ipam.allocate_address(&net.id, opts.ipv4)?;
            alloc.address = Some(ip);
            spec.ipv4 = Some(
                Ipv4Network::new(ip, pool.subnet.prefix())
                    .map_err(|e| ControllerError::Invalid(e.to_string()))?,
            );
            spec.gateway = Some(pool.gateway);
            if opts.mac.is_none() {
                spec.mac = MacAddr::from_ipv4(ip);
            }
        } else if opts.ipv4.is_some() {
            return Err(ControllerError::Invalid(format!(
                "user specified IP address is supported only when connecting to networks with user configured subnets (network {})",
                net.name
            )));
        }
        for p in &opts.ports {
            let req = match (p.host_port_start, p.host_port_end) {
                (0, _) => PortRequest::Any,
                (s, e) if e > s => PortRequest::Range(s, e),
                (s, _) => PortRequest::Exact(s),
            };
            let host_port = self.ports.allocate(p.proto, p.host_ip, req).map_err(|e| {
                ControllerError::driver(
                    format!(
                        "driver failed programming external connectivity on endpoint {} ({})",
                        spec.name, spec.id
                    ),
                    DriverError::Conflict(e.to_string()),
                )
            })?;
            let binding = PortBinding {
                proto: p.proto,
                container_port: p.container_port,
                host_ip: p.host_ip,
                host_port,
            };
            alloc.ports.push(binding.clone());
            spec.port_bindings.push(binding);
        }
        let join = JoinSpec {
            sandbox_id: sandbox.id.clone(),
            netns_path: sandbox.netns_path.clone().unwrap_or_default(),
            ifname: ifname.to_string(),
            default_route,
        };
        let info = driver
            .join(net, &spec, &join)
            .await
            .map_err(|e| ControllerError::driver("failed to join network", e))?;
        let mut record = EndpointRecord {
            spec: spec.clone(),
            sandbox_id: sandbox.id.clone(),
            ifname: ifname.to_string(),
            join: info,
            ports_programmed: false,
        };
        if !spec.port_bindings.is_empty() {
            if let Err(e) = driver
                .program_external_connectivity(net, &spec, &spec.port_bindings)
                .await
            {
                let _ = driver.leave(net, &spec, &record.join).await;
                return Err(ControllerError::driver(
                    format!(
                        "driver failed programming external connectivity on endpoint {} ({})",
                        spec.name, spec.id
                    ),
                    e,
                ));
            }
            record.ports_programmed = true;
        }
        if let Err(e) = self.persist_join(&record) {
            self.undo_kernel(driver, net, &record).await;
            return Err(e);
        }
        Ok(record)
    }

    /// Leaves `network` and deletes the endpoint; ports and address are released.
    pub async fn disconnect(&self, sandbox_id: &str, network: &str) -> Result<()> {
        let sb_lock = self.sandbox_lock(sandbox_id)?;
        let _sb_guard = sb_lock.lock().await;
        let net_id = self.network(network)?.id;
        let ep_id = {
            let st = self.state();
            st.endpoints
                .values()
                .find(|e| e.sandbox_id == sandbox_id && e.spec.network_id == net_id)
                .map(|e| e.spec.id.clone())
                .ok_or_else(|| ControllerError::NotAttached(network.to_string()))?
        };
        self.remove_endpoint(sandbox_id, &ep_id).await
    }

    /// Tears one endpoint down (caller holds the sandbox lock): revoke ports,
    /// leave, release, forget. Continues past kernel errors so nothing stays held.
    async fn remove_endpoint(&self, sandbox_id: &str, ep_id: &str) -> Result<()> {
        let record = self
            .state()
            .endpoints
            .get(ep_id)
            .cloned()
            .ok_or_else(|| ControllerError::EndpointNotFound(ep_id.to_string()))?;
        let (net, net_lock) = {
            let st = self.state();
            let e = resolve_network(&st, &record.spec.network_id)?;
            (e.spec.clone(), e.lock.clone())
        };
        let _net_guard = net_lock.lock().await;
        let driver = self.driver(&net.driver)?;
        self.undo_kernel(&driver, &net, &record).await;
        self.release(&Allocations {
            network_id: net.id.clone(),
            address: record.spec.ipv4.map(|n| n.ip()),
            ports: record.spec.port_bindings.clone(),
        });
        self.store.delete(ENDPOINTS, ep_id)?;
        let mut st = self.state();
        st.endpoints.remove(ep_id);
        if let Some(sb) = st.sandboxes.get_mut(sandbox_id) {
            sb.record.endpoints.retain(|e| e != ep_id);
            let snapshot = sb.record.clone();
            drop(st);
            self.store.put(SANDBOXES, sandbox_id, &snapshot)?;
        }
        Ok(())
    }

    /// Revokes ports and leaves, logging failures: used by teardown paths
    /// that must go on.
    pub(super) async fn undo_kernel(
        &self,
        driver: &Arc<dyn Driver>,
        net: &NetworkSpec,
        record: &EndpointRecord,
    ) {
        if record.ports_programmed {
            if let Err(e) = driver
                .revoke_external_connectivity(net, &record.spec, &record.spec.port_bindings)
                .await
            {
                warn!(endpoint = %record.spec.id, error = %e, "revoking ports failed");
            }
        }
        if let Err(e) = driver.leave(net, &record.spec, &record.join).await {
            warn!(endpoint = %record.spec.id, error = %e, "leaving network failed");
        }
    }

    fn release(&self, alloc: &Allocations) {
        if let Some(ip) = alloc.address {
            self.ipam.release_address(&alloc.network_id, ip);
        }
        for p in &alloc.ports {
            self.ports.release(p.proto, p.host_ip, p.host_port);
        }
    }

    fn sandbox_lock(&self, sandbox_id: &str) -> Result<Arc<tokio::sync::Mutex<()>>> {
        self.state()
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.lock.clone())
            .ok_or_else(|| ControllerError::SandboxNotFound(sandbox_id.to_string()))
    }

    /// The interface name (lowest free `ethN`) and whether this endpoint
    /// gives the sandbox its default route.
    fn plan_join(
        &self,
        sandbox_id: &str,
        net: &NetworkSpec,
    ) -> Result<(SandboxRecord, String, bool)> {
        let st = self.state();
        let sb = st
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| ControllerError::SandboxNotFound(sandbox_id.to_string()))?;
        let joined: Vec<&EndpointRecord> = sb
            .record
            .endpoints
            .iter()
            .filter_map(|id| st.endpoints.get(id))
            .collect();
        if joined.iter().any(|e| e.spec.network_id == net.id) {
            return Err(ControllerError::AlreadyAttached(net.name.clone()));
        }
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !joined.iter().any(|e| &e.ifname == n))
            .unwrap_or_default();
        let has_gateway = joined.iter().any(|e| {
            e.spec.gateway.is_some() && {
                st.networks
                    .get(&e.spec.network_id)
                    .is_some_and(|n| !n.spec.internal)
            }
        });
        let default_route = !has_gateway && !net.internal && !net.ipv4.is_empty();
        Ok((sb.record.clone(), ifname, default_route))
    }

    fn persist_join(&self, record: &EndpointRecord) -> Result<()> {
        self.store.put(ENDPOINTS, &record.spec.id, record)?;
        let snapshot = {
            let mut st = self.state();
            st.endpoints.insert(record.spec.id.clone(), record.clone());
            let sb = st
                .sandboxes
                .get_mut(&record.sandbox_id)
                .ok_or_else(|| ControllerError::SandboxNotFound(record.sandbox_id.clone()))?;
            sb.record.endpoints.push(record.spec.id.clone());
            sb.record.clone()
        };
        if let Err(e) = self.store.put(SANDBOXES, &snapshot.id, &snapshot) {
            let mut st = self.state();
            st.endpoints.remove(&record.spec.id);
            if let Some(sb) = st.sandboxes.get_mut(&record.sandbox_id) {
                sb.record.endpoints.retain(|id| id != &record.spec.id);
            }
            drop(st);
            let _ = self.store.delete(ENDPOINTS, &record.spec.id);
            return Err(e.into());
        }
        Ok(())
    }
}

impl Controller {
    fn resolvers_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Resolver>> {
        self.resolvers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the sandbox's embedded DNS server on its first user-defined
    /// network. A failure is logged, not fatal: the container still runs,
    /// as with dockerd, and names fall back to its upstream servers.
    async fn ensure_resolver(&self, sandbox: &SandboxRecord, net: &NetworkSpec) {
        let Some(path) = &sandbox.netns_path else {
            return;
        };
        if PREDEFINED.contains(&net.name.as_str()) || net.ipv4.is_empty() {
            return;
        }
        if self.resolvers_lock().contains_key(&sandbox.id) {
            return;
        }
        let book = Arc::new(Names(self.state.clone()));
        let mut config = self.resolver_config.clone();
        if let Some(entry) = self.state().sandboxes.get(&sandbox.id) {
            if !entry.upstreams.is_empty() {
                config.upstreams = entry.upstreams.clone();
            }
        }
        match Resolver::start(&sandbox.id, path, book, config).await {
            Ok(r) => {
                self.resolvers_lock().insert(sandbox.id.clone(), r);
            }
            Err(e) => warn!(sandbox = %sandbox.id, error = %e, "embedded DNS not started"),
        }
    }
}
