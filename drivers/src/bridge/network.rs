//! A network's bridge: created or reused and corrected, then handed to the
//! firewall; undone step by step when a later step fails.

use std::time::Instant;

use ipnetwork::Ipv4Network;
use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::model::NetworkSpec;
use netcontroller::osl::Link;
use tracing::{debug, warn};

use super::{osl_error, BridgeDriver, BridgeNetwork, BridgeOptions};

/// What set-up did to the bridge, so that a failure can undo exactly that.
enum Made {
    /// A new bridge: undo deletes it.
    Created,
    /// A bridge that was already there, as it was before set-up changed it.
    Reused {
        mtu: u32,
        up: bool,
        addresses: Vec<Ipv4Network>,
    },
    /// The daemon's `-b` bridge: only its up state may have changed.
    External { up: bool },
}

impl BridgeDriver {
    /// Creates or corrects the network's bridge, then calls the firewall.
    /// Used by create and restore alike: an existing bridge is reused and
    /// ends with exactly the gateway address and the network's MTU.
    pub(super) async fn set_up_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        let started = Instant::now();
        let options = BridgeOptions::parse(net, self.config.default_mtu)?;
        let external = self.config.external_bridge.as_deref() == Some(&options.bridge_name);
        let gateway = gateway_address(net)?;
        let claimed = self.claim_bridge_name(net, &options.bridge_name)?;

        let result = self.apply(net, options, gateway, external).await;
        let mut state = self.lock();
        match result {
            Ok(network) => {
                debug!(
                    network = net.short_id(),
                    bridge = %network.options.bridge_name,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "bridge network set up"
                );
                state.networks.insert(net.id.clone(), network);
                Ok(())
            }
            Err(e) => {
                if claimed {
                    state.bridge_owners.retain(|_, id| id != &net.id);
                }
                Err(e)
            }
        }
    }

    /// Reserves the bridge name for this network. Returns true when the claim
    /// is new (and must be released if set-up fails).
    fn claim_bridge_name(&self, net: &NetworkSpec, name: &str) -> DriverResult<bool> {
        let mut state = self.lock();
        match state.bridge_owners.get(name) {
            Some(owner) if owner == &net.id => Ok(false),
            Some(owner) => Err(DriverError::Conflict(format!(
                "bridge name {name} is already used by network {}",
                &owner[..12.min(owner.len())]
            ))),
            None => {
                state.bridge_owners.insert(name.to_string(), net.id.clone());
                Ok(true)
            }
        }
    }

    async fn apply(
        &self,
        net: &NetworkSpec,
        options: BridgeOptions,
        gateway: Ipv4Network,
        external: bool,
    ) -> DriverResult<BridgeNetwork> {
        let name = options.bridge_name.clone();
        let (link, made) = if external {
            self.bring_up_external(&name).await?
        } else {
            self.make_bridge(&name, options.mtu, gateway).await?
        };
        let network = BridgeNetwork {
            options,
            bridge_index: link.index,
            external,
        };
        if let Some(firewall) = &self.firewall {
            if let Err(e) = firewall.network_up(net, &network).await {
                self.undo(&link, made).await;
                return Err(e);
            }
        }
        Ok(network)
    }

    async fn bring_up_external(&self, name: &str) -> DriverResult<(Link, Made)> {
        let link = self
            .nl
            .link(name)
            .await
            .map_err(|e| osl_error(format!("look up bridge {name}"), e))?
            .ok_or_else(|| DriverError::NotFound {
                what: "bridge",
                id: name.to_string(),
            })?;
        ensure_bridge(&link)?;
        if !link.up {
            self.nl
                .set_up(link.index)
                .await
                .map_err(|e| osl_error(format!("bring bridge {name} up"), e))?;
        }
        let made = Made::External { up: link.up };
        Ok((link, made))
    }

    async fn make_bridge(
        &self,
        name: &str,
        mtu: u32,
        gateway: Ipv4Network,
    ) -> DriverResult<(Link, Made)> {
        let existing = self
            .nl
            .link(name)
            .await
            .map_err(|e| osl_error(format!("look up bridge {name}"), e))?;
        let Some(link) = existing else {
            let link = self
                .nl
                .create_bridge(name, mtu)
                .await
                .map_err(|e| osl_error(format!("create bridge {name}"), e))?;
            if let Err(e) = self.nl.add_ipv4_address(link.index, gateway).await {
                self.undo(&link, Made::Created).await;
                return Err(osl_error(format!("address bridge {name}"), e));
            }
            return Ok((link, Made::Created));
        };

        ensure_bridge(&link)?;
        let addresses = self
            .nl
            .ipv4_addresses(link.index)
            .await
            .map_err(|e| osl_error(format!("list addresses of bridge {name}"), e))?;
        let made = Made::Reused {
            mtu: link.mtu,
            up: link.up,
            addresses,
        };
        if let Err(e) = self.correct_bridge(&link, mtu, gateway).await {
            self.undo(&link, made).await;
            return Err(osl_error(format!("correct bridge {name}"), e));
        }
        debug!(bridge = name, "existing bridge reused");
        Ok((link, made))
    }

    async fn correct_bridge(
        &self,
        link: &Link,
        mtu: u32,
        gateway: Ipv4Network,
    ) -> Result<(), netcontroller::osl::OslError> {
        if link.mtu != mtu {
            self.nl.set_mtu(link.index, mtu).await?;
        }
        self.nl.set_ipv4_addresses(link.index, &[gateway]).await?;
        if !link.up {
            self.nl.set_up(link.index).await?;
        }
        Ok(())
    }

    /// Puts the bridge back as it was before set-up. Failures are logged: the
    /// caller is already returning the error that made it undo.
    async fn undo(&self, link: &Link, made: Made) {
        let nl = &self.nl;
        let result = match made {
            Made::Created => nl.delete_link(&link.name).await.map(|_| ()),
            Made::Reused { mtu, up, addresses } => {
                let mut r = nl.set_ipv4_addresses(link.index, &addresses).await;
                if r.is_ok() {
                    r = nl.set_mtu(link.index, mtu).await;
                }
                if r.is_ok() && !up {
                    r = nl.set_down(link.index).await;
                }
                r
            }
            Made::External { up } if !up => nl.set_down(link.index).await,
            Made::External { .. } => Ok(()),
        };
        if let Err(e) = result {
            warn!(bridge = %link.name, error = %e, "could not undo bridge set-up");
        }
    }

    /// Calls the firewall, then deletes the bridge unless it is the `-b`
    /// bridge or the default network's (docker0 outlives its network, as
    /// with libnetwork: each start makes the default network on it again).
    /// Goes on past failures and reports them together; a missing bridge is
    /// fine.
    pub(super) async fn tear_down_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        let started = Instant::now();
        let known = {
            let mut state = self.lock();
            state.bridge_owners.retain(|_, id| id != &net.id);
            state.networks.remove(&net.id)
        };
        let network = match known {
            Some(network) => network,
            // Not set up by this process (e.g. deleted before restore): work
            // from the spec, so leftovers are still removed.
            None => {
                let options = BridgeOptions::parse(net, self.config.default_mtu)?;
                let external = self.config.external_bridge.as_deref() == Some(&options.bridge_name);
                let index = match self.nl.link(&options.bridge_name).await {
                    Ok(link) => link.map_or(0, |l| l.index),
                    Err(_) => 0,
                };
                BridgeNetwork {
                    options,
                    bridge_index: index,
                    external,
                }
            }
        };

        let mut errors = Vec::new();
        if let Some(firewall) = &self.firewall {
            if let Err(e) = firewall.network_down(net, &network).await {
                errors.push(e.to_string());
            }
        }
        if !network.external && !network.options.default_bridge {
            let name = &network.options.bridge_name;
            if let Err(e) = self.nl.delete_link(name).await {
                errors.push(format!("delete bridge {name}: {e}"));
            }
        }
        debug!(
            network = net.short_id(),
            bridge = %network.options.bridge_name,
            elapsed_us = started.elapsed().as_micros() as u64,
            "bridge network torn down"
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DriverError::Teardown(errors))
        }
    }
}

/// The bridge's own address: the network's gateway with the subnet's prefix.
fn gateway_address(net: &NetworkSpec) -> DriverResult<Ipv4Network> {
    let pool = net.ipv4.first().ok_or_else(|| DriverError::InvalidOption {
        key: "ipam".into(),
        reason: "a bridge network needs an IPv4 subnet".into(),
    })?;
    Ipv4Network::new(pool.gateway, pool.subnet.prefix()).map_err(|e| DriverError::InvalidOption {
        key: "ipam".into(),
        reason: format!("gateway {}: {e}", pool.gateway),
    })
}

/// A link of the bridge's name that is something else cannot be used.
fn ensure_bridge(link: &Link) -> DriverResult<()> {
    if link.kind.as_deref() == Some("bridge") {
        Ok(())
    } else {
        Err(DriverError::Conflict(format!(
            "{} exists and is not a bridge",
            link.name
        )))
    }
}
