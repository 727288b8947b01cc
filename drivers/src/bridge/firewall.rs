//! The bridge driver's packet filtering: netcontroller's iptables
//! programming, fed from the driver's parsed options.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::firewall::{BridgeRules, Firewall, FirewallError, PortRules};
use netcontroller::model::{NetworkSpec, PortBinding};

use super::{BridgeFirewall, BridgeNetwork};

/// iptables rules for bridge networks and their published ports.
///
/// The calls run `iptables-save`/`iptables-restore` synchronously on the
/// calling task's thread: that thread is in the daemon's namespace (tests
/// run the driver on a thread that entered theirs), which a blocking-pool
/// thread would not be guaranteed to be. Each call is one batch (~10 ms).
pub struct IptablesFirewall {
    fw: Firewall,
}

impl IptablesFirewall {
    /// Installs the base chains and jumps (idempotent) and returns the firewall.
    pub fn new(fw: Firewall) -> Result<Self, FirewallError> {
        fw.setup_base()?;
        Ok(IptablesFirewall { fw })
    }

    pub fn firewall(&self) -> &Firewall {
        &self.fw
    }
}

fn rules(net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<BridgeRules> {
    let pool = net.ipv4.first().ok_or_else(|| DriverError::InvalidOption {
        key: "ipam".into(),
        reason: "a bridge network needs an IPv4 subnet".into(),
    })?;
    Ok(BridgeRules {
        bridge: bridge.options.bridge_name.clone(),
        subnet: pool.subnet,
        icc: bridge.options.enable_icc,
        masquerade: bridge.options.enable_ip_masquerade,
        internal: net.internal,
    })
}

fn fw_error(context: &str, e: FirewallError) -> DriverError {
    DriverError::system(context.to_string(), e)
}

#[async_trait]
impl BridgeFirewall for IptablesFirewall {
    async fn network_up(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        self.fw
            .add_network(&rules(net, bridge)?)
            .map_err(|e| fw_error("adding the network's iptables rules", e))
    }

    async fn network_down(&self, net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        self.fw
            .remove_network(&rules(net, bridge)?)
            .map_err(|e| fw_error("removing the network's iptables rules", e))
    }

    async fn ports_up(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.fw
            .add_ports(&port_rules(bridge, container_ip, bindings))
            .map_err(|e| fw_error("adding port rules", e))
    }

    async fn ports_down(
        &self,
        bridge: &BridgeNetwork,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.fw
            .remove_ports(&port_rules(bridge, container_ip, bindings))
            .map_err(|e| fw_error("removing port rules", e))
    }
}

fn port_rules(
    bridge: &BridgeNetwork,
    container_ip: Ipv4Addr,
    bindings: &[PortBinding],
) -> PortRules {
    PortRules {
        bridge: bridge.options.bridge_name.clone(),
        container_ip,
        bindings: bindings.to_vec(),
    }
}
