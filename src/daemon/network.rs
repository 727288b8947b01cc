//! Start-up step 7: the network controller with its drivers, the kernel
//! settings dockerd makes (ip_forward, base iptables chains), the restore of
//! stored networks and the default networks `none`, `host` and `bridge`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use drivers::bridge::{
    bridge_rules, BridgeConfig as DriverBridgeConfig, BridgeDriver, BridgeOptions,
    IptablesFirewall, OPT_BRIDGE_NAME, OPT_DEFAULT_BRIDGE, OPT_ENABLE_ICC,
    OPT_ENABLE_IP_MASQUERADE, OPT_HOST_BINDING_IPV4, OPT_MTU,
};
use drivers::host::HostDriver;
use drivers::null::NullDriver;
use ipnetwork::Ipv4Network;
use netcontroller::controller::{Controller, ControllerConfig, ControllerError, NetworkCreate};
use netcontroller::driver::Driver;
use netcontroller::error::{ErrorKind, Kind};
use netcontroller::firewall::{BridgeRules, Firewall, FirewallError, FirewallOptions};
use netcontroller::ipam::{AddressPool, IpamRequest};
use netcontroller::model::NetworkSpec;
use netcontroller::osl::{self, NetlinkHandle, OslError};
use netcontroller::resolver::{upstreams_from, ResolverConfig};

use crate::config::{Config, DefaultBridge};

/// Name of the bridge the daemon manages by default.
pub const DEFAULT_BRIDGE: &str = "docker0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkSetupError {
    #[error("netlink: {0}")]
    Netlink(#[from] OslError),
    #[error("enabling IP forwarding: {0}")]
    IpForward(#[source] Box<OslError>),
    #[error("setting up iptables: {0}")]
    Firewall(#[from] FirewallError),
    #[error("-b {0}: bridge not found")]
    BridgeMissing(String),
    #[error("-b {0}: the bridge has no IPv4 address")]
    BridgeUnaddressed(String),
    #[error("network controller: {0}")]
    Controller(#[from] ControllerError),
}

impl Kind for NetworkSetupError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkSetupError::BridgeMissing(_) => ErrorKind::NotFound,
            NetworkSetupError::BridgeUnaddressed(_) => ErrorKind::InvalidArgument,
            NetworkSetupError::Controller(e) => e.kind(),
            _ => ErrorKind::System,
        }
    }
}

/// Builds the controller, restores it and makes the default networks.
pub async fn start(config: &Config) -> Result<Arc<Controller>, NetworkSetupError> {
    let b = &config.bridge;
    let netlink = NetlinkHandle::current()?;
    // A missing `-b` bridge refuses the start before anything is changed.
    let external = external_bridge(config, &netlink).await?;
    let forwarding_switched_on =
        b.ip_forward && enable_ip_forward().map_err(NetworkSetupError::IpForward)?;
    let mut bridge = BridgeDriver::new(
        DriverBridgeConfig {
            default_mtu: b.mtu,
            external_bridge: external.as_ref().map(|(name, _)| name.clone()),
            userland_proxy: b.userland_proxy,
        },
        netlink.clone(),
    );
    let mut firewall = None;
    if b.iptables {
        let fw = Arc::new(IptablesFirewall::new(Firewall::new(FirewallOptions {
            userland_proxy: b.userland_proxy,
            // As dockerd: only a daemon that turned forwarding on closes
            // FORWARD; a host that already forwarded keeps its policy.
            forward_policy_drop: forwarding_switched_on,
        }))?);
        bridge = bridge.with_firewall(fw.clone());
        firewall = Some(fw);
    }
    let drivers: Vec<Arc<dyn Driver>> =
        vec![Arc::new(NullDriver), Arc::new(HostDriver), Arc::new(bridge)];
    let pools = if config.default_address_pools.is_empty() {
        AddressPool::defaults()
    } else {
        config
            .default_address_pools
            .iter()
            .filter_map(|p| AddressPool::new(p.base, p.size).ok())
            .collect()
    };
    let dns: Vec<Ipv4Addr> = config
        .dns
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let controller = Arc::new(Controller::new(
        ControllerConfig {
            store_root: config.data_root.join("network"),
            netns_root: config.exec_root.join("netns"),
            pools,
            resolver: ResolverConfig {
                upstreams: upstreams_from(&dns, &host_resolv),
                timeout: Duration::from_secs(2),
            },
        },
        drivers,
        netlink.clone(),
    )?);
    let report = controller.restore().await?;
    for p in &report.problems {
        tracing::warn!(problem = %p, "network restore");
    }
    ensure_predefined(&controller, "none", "null").await?;
    ensure_predefined(&controller, "host", "host").await?;
    let default = create_default_bridge(config, &controller, &netlink, external).await?;
    if let Some(fw) = firewall {
        if let Some(stale) = &report.stale_default {
            replace_default_rules(&fw, stale, default.as_ref(), b.mtu);
        }
        remove_leftover_rules(&fw, &controller, b.mtu);
    }
    Ok(controller)
}

/// Creates the default `bridge` network (none with `-b none`). Without
/// `--bip`, an existing docker0 keeps its address and subnet, as with dockerd
/// (a docker0 a previous run or dockerd addressed stays where clients know
/// it); only when that subnet is taken by a stored network is a free pool
/// subnet chosen instead.
async fn create_default_bridge(
    config: &Config,
    controller: &Controller,
    netlink: &NetlinkHandle,
    external: Option<(String, Ipv4Network)>,
) -> Result<Option<NetworkSpec>, NetworkSetupError> {
    let b = &config.bridge;
    let kept = match (&b.bridge, b.bip) {
        (DefaultBridge::Managed, None) => match netlink.link(DEFAULT_BRIDGE).await? {
            Some(link) => netlink.ipv4_addresses(link.index).await?.into_iter().next(),
            None => None,
        },
        _ => None,
    }
    // A --fixed-cidr outside docker0's subnet wins: the subnet follows it.
    .filter(|addr| {
        b.fixed_cidr
            .is_none_or(|range| network_of(*addr).contains(range.ip()))
    });
    let Some(req) = default_bridge_request(config, external.clone(), kept) else {
        return Ok(None);
    };
    match controller.create_network_unchecked(req).await {
        Ok(spec) => Ok(Some(spec)),
        Err(e)
            if kept.is_some() && matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::Conflict) =>
        {
            tracing::warn!(error = %e, "docker0's address is taken; choosing a free subnet");
            let req = default_bridge_request(config, external, None);
            Ok(Some(
                controller
                    .create_network_unchecked(req.expect("managed bridge"))
                    .await?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The firewall's view of a bridge network, if its options parse.
fn firewall_rules(net: &NetworkSpec, default_mtu: u32) -> Option<BridgeRules> {
    let options = BridgeOptions::parse(net, default_mtu).ok()?;
    bridge_rules(net, &options).ok()
}

/// Removes the rules of the previous run's default network that today's
/// does not have. Shared rules stay where they are, so a restart with the
/// same flags changes nothing in the tables (as with dockerd). A failure is
/// logged: stale rules of a subnet or bridge no longer used match nothing
/// the daemon serves.
fn replace_default_rules(
    fw: &IptablesFirewall,
    stale: &NetworkSpec,
    current: Option<&NetworkSpec>,
    default_mtu: u32,
) {
    let Some(old) = firewall_rules(stale, default_mtu) else {
        return;
    };
    let current = current.and_then(|n| firewall_rules(n, default_mtu));
    if let Err(e) = fw.firewall().remove_network_except(&old, current.as_ref()) {
        tracing::warn!(error = %e, "removing the previous default network's rules");
    }
}

/// Sets net.ipv4.ip_forward to 1; true when it was off before.
fn enable_ip_forward() -> Result<bool, Box<OslError>> {
    const KEY: &str = "net.ipv4.ip_forward";
    if osl::sysctl_get(KEY)? == "1" {
        return Ok(false);
    }
    osl::sysctl_set(KEY, "1")?;
    Ok(true)
}

/// The `-b` bridge and its first IPv4 address, which becomes the default
/// network's gateway and subnet.
async fn external_bridge(
    config: &Config,
    netlink: &NetlinkHandle,
) -> Result<Option<(String, Ipv4Network)>, NetworkSetupError> {
    let DefaultBridge::Existing(name) = &config.bridge.bridge else {
        return Ok(None);
    };
    let link = netlink
        .link(name)
        .await?
        .ok_or_else(|| NetworkSetupError::BridgeMissing(name.clone()))?;
    let addr = netlink
        .ipv4_addresses(link.index)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| NetworkSetupError::BridgeUnaddressed(name.clone()))?;
    Ok(Some((name.clone(), addr)))
}

/// Removes the iptables rules a previous run left: those of bridges no
/// stored network owns (a network lost in a crash) and published ports (no
/// endpoint survives a restart; stored ones were revoked by the restore).
/// A failure is logged: leftovers match no live traffic, so they must not
/// keep the daemon from starting.
fn remove_leftover_rules(fw: &IptablesFirewall, controller: &Controller, default_mtu: u32) {
    let owned: Vec<String> = controller
        .networks()
        .iter()
        .filter(|n| n.driver == "bridge")
        .filter_map(|n| BridgeOptions::parse(n, default_mtu).ok())
        .map(|o| o.bridge_name)
        .collect();
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    match fw.firewall().remove_orphans(&owned) {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(bridges = ?removed, "removed iptables rules of vanished networks")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "removing iptables rules of vanished networks"),
    }
    match fw.firewall().remove_published_ports() {
        Ok(0) => {}
        Ok(n) => tracing::info!(rules = n, "removed stale published-port rules"),
        Err(e) => tracing::warn!(error = %e, "removing stale published-port rules"),
    }
}

fn network_of(n: Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(n.network(), n.prefix()).unwrap_or(n)
}

async fn ensure_predefined(
    controller: &Controller,
    name: &str,
    driver: &str,
) -> Result<(), NetworkSetupError> {
    if controller.network(name).is_ok() {
        return Ok(());
    }
    controller
        .create_network_unchecked(NetworkCreate {
            name: name.to_string(),
            driver: driver.to_string(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The default `bridge` network as today's flags describe it, or `None`
/// with `-b none`. `external` is the `-b` bridge with its address; `kept`
/// the address docker0 keeps when `--bip` is not given.
fn default_bridge_request(
    config: &Config,
    external: Option<(String, Ipv4Network)>,
    kept: Option<Ipv4Network>,
) -> Option<NetworkCreate> {
    let b = &config.bridge;
    let (bridge_name, bip) = match (&b.bridge, external) {
        (DefaultBridge::Disabled, _) => return None,
        (_, Some((name, addr))) => (name, Some(addr)),
        (_, None) => (DEFAULT_BRIDGE.to_string(), b.bip.or(kept)),
    };
    let subnet = match (bip, b.fixed_cidr) {
        (Some(n), _) => Some(network_of(n)),
        // dockerd accepts --fixed-cidr alone; the bridge then gets the /16
        // around it (or the range itself when it is wider), gateway first.
        (None, Some(range)) => Some(network_of(
            Ipv4Network::new(range.ip(), range.prefix().min(16)).unwrap_or(range),
        )),
        (None, None) => None,
    };
    let ipam = IpamRequest {
        subnet,
        gateway: bip.map(|n| n.ip()),
        ip_range: b.fixed_cidr,
        ..Default::default()
    };
    let options = BTreeMap::from([
        (OPT_DEFAULT_BRIDGE.to_string(), "true".to_string()),
        (OPT_ENABLE_ICC.to_string(), b.icc.to_string()),
        (OPT_ENABLE_IP_MASQUERADE.to_string(), b.ip_masq.to_string()),
        (OPT_HOST_BINDING_IPV4.to_string(), "0.0.0.0".to_string()),
        (OPT_BRIDGE_NAME.to_string(), bridge_name),
        (OPT_MTU.to_string(), b.mtu.to_string()),
    ]);
    Some(NetworkCreate {
        name: "bridge".into(),
        driver: "bridge".into(),
        ipam: Some(ipam),
        options,
        ..Default::default()
    })
}
