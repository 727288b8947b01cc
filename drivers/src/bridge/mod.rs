//! The `bridge` driver: one Linux bridge per network, carrying the gateway
//! address; one veth pair per endpoint, host end on the bridge, peer inside
//! the sandbox.
//!
//! Packet filtering and NAT are not done here: the daemon plugs a
//! [`BridgeFirewall`] in with [`BridgeDriver::with_firewall`], called once a
//! bridge is up and before it is deleted.

mod endpoint;
mod firewall;
mod network;
mod options;
mod ports;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use netcontroller::driver::{Driver, DriverError, DriverResult};
use netcontroller::error::{ErrorKind, Kind};
use netcontroller::model::{EndpointSpec, JoinInfo, JoinSpec, NetworkSpec, PortBinding};
use netcontroller::osl::{NetlinkHandle, OslError};
use netcontroller::proxy::PortProxy;

pub use endpoint::veth_name;
pub use firewall::{bridge_rules, IptablesFirewall};
pub use options::{
    default_bridge_name, BridgeOptions, MAX_MTU, MIN_MTU, OPT_BRIDGE_NAME, OPT_DEFAULT_BRIDGE,
    OPT_ENABLE_ICC, OPT_ENABLE_IP_MASQUERADE, OPT_HOST_BINDING_IPV4, OPT_MTU,
};

/// Daemon-wide settings of the bridge driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// MTU for networks that do not set `com.docker.network.driver.mtu`
    /// (1500, or `--mtu`).
    pub default_mtu: u32,
    /// `-b NAME`: a bridge the daemon uses but does not own. It is never
    /// created, re-addressed or deleted, only brought up.
    pub external_bridge: Option<String>,
    /// `--userland-proxy`: published ports are also served by an in-process
    /// proxy on the host port (which is how loopback clients reach them).
    pub userland_proxy: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            default_mtu: 1500,
            external_bridge: None,
            userland_proxy: true,
        }
    }
}

/// Per-network packet filtering (iptables), supplied by the daemon.
#[async_trait]
pub trait BridgeFirewall: Send + Sync {
    /// Called when a network's bridge is up with its address, on create and
    /// on every restore (so it must not duplicate rules). An error makes the
    /// create fail and undoes the bridge.
    async fn network_up(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()>;

    /// Called when the network is deleted, concurrently with the bridge's
    /// deletion (so it must not need the bridge); removes whatever
    /// `network_up` added. Finding nothing to remove is not an error.
    async fn network_down(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()>;

    /// Adds the NAT and filter rules publishing `bindings` of one endpoint.
    async fn ports_up(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()>;

    /// Removes what `ports_up` added; absent rules are fine.
    async fn ports_down(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()>;
}

/// A network the driver manages, as the firewall and port publishing need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    pub options: BridgeOptions,
    /// Kernel index of the bridge in the daemon's namespace.
    pub bridge_index: u32,
    /// True when the bridge is the daemon's `-b` bridge, which it does not own.
    pub external: bool,
}

/// The `bridge` driver.
pub struct BridgeDriver {
    config: BridgeConfig,
    /// The daemon's namespace, where bridges and host veth ends live.
    nl: NetlinkHandle,
    firewall: Option<Arc<dyn BridgeFirewall>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Networks set up by this driver, by network id.
    networks: HashMap<String, BridgeNetwork>,
    /// Bridge name -> network id, claimed before any kernel work so that two
    /// networks set up concurrently cannot share a bridge.
    bridge_owners: HashMap<String, String>,
    /// Userland proxies of published ports, by endpoint id.
    proxies: HashMap<String, Vec<PortProxy>>,
}

impl BridgeDriver {
    pub fn new(config: BridgeConfig, nl: NetlinkHandle) -> Self {
        BridgeDriver {
            config,
            nl,
            firewall: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Plugs in the per-network firewall.
    pub fn with_firewall(mut self, firewall: Arc<dyn BridgeFirewall>) -> Self {
        self.firewall = Some(firewall);
        self
    }

    /// The state of a network this driver has set up, if any.
    pub fn network(&self, network_id: &str) -> Option<BridgeNetwork> {
        self.lock().networks.get(network_id).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The maps hold plain data changed in single statements: a panic
        // elsewhere cannot leave them half-changed, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An OS-layer failure as a driver error, keeping "already exists" a conflict.
fn osl_error(context: impl Into<String>, e: OslError) -> DriverError {
    let context = context.into();
    match e.kind() {
        ErrorKind::Conflict => DriverError::Conflict(format!("{context}: {e}")),
        _ => DriverError::system(context, e),
    }
}

#[async_trait]
impl Driver for BridgeDriver {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn validate_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        BridgeOptions::parse(net, self.config.default_mtu)?;
        if net.ipv4.len() > 1 {
            return Err(DriverError::InvalidOption {
                key: "ipam".into(),
                reason: "the bridge driver supports one IPv4 subnet per network".into(),
            });
        }
        Ok(())
    }

    async fn create_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        self.set_up_network(net).await
    }

    async fn delete_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        self.tear_down_network(net).await
    }

    async fn join(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        join: &JoinSpec,
    ) -> DriverResult<JoinInfo> {
        self.join_endpoint(net, ep, join).await
    }

    async fn leave(
        &self,
        _net: &NetworkSpec,
        ep: &EndpointSpec,
        info: &JoinInfo,
    ) -> DriverResult<()> {
        self.leave_endpoint(ep, info).await
    }

    async fn program_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.publish_ports(net, ep, bindings).await
    }

    async fn revoke_external_connectivity(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.unpublish_ports(net, ep, bindings).await
    }

    async fn restore_network(&self, net: &NetworkSpec) -> DriverResult<()> {
        // Set-up already reuses and corrects an existing bridge.
        self.set_up_network(net).await
    }
}
