//! Endpoints: one veth pair each, the host end on the bridge, the peer made
//! directly inside the sandbox under its final name (`eth0`, ...).

use std::net::Ipv4Addr;
use std::time::Instant;

use ipnetwork::Ipv4Network;
use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::model::{EndpointSpec, JoinInfo, JoinSpec, NetworkSpec};
use netcontroller::osl::{check_ifname, NetlinkHandle, OslError, VethPair};
use tracing::{debug, warn};

use super::{osl_error, BridgeDriver};

/// A host-side veth name as dockerd makes them: `veth` + 7 random hex digits.
pub fn veth_name() -> String {
    // 28 random bits are exactly 7 hex digits.
    format!("veth{:07x}", rand::random::<u32>() >> 4)
}

impl BridgeDriver {
    /// Makes the endpoint's veth pair and configures the sandbox end. On any
    /// failure the pair is deleted (which removes both ends).
    pub(super) async fn join_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        join: &JoinSpec,
    ) -> DriverResult<JoinInfo> {
        let started = Instant::now();
        let network = self.network(&net.id).ok_or_else(|| DriverError::NotFound {
            what: "network",
            id: net.id.clone(),
        })?;
        let gateway = match (join.default_route, ep.gateway) {
            (false, _) => None,
            (true, Some(gw)) => Some(gw),
            (true, None) => {
                return Err(DriverError::InvalidOption {
                    key: "gateway".into(),
                    reason: "a default route needs the network's gateway".into(),
                })
            }
        };
        check_ifname(&join.ifname).map_err(|e| DriverError::InvalidOption {
            key: "ifname".into(),
            reason: e.to_string(),
        })?;
        if !join.netns_path.exists() {
            return Err(DriverError::NotFound {
                what: "sandbox namespace",
                id: join.netns_path.display().to_string(),
            });
        }

        let host_ifname = veth_name();
        let pair = VethPair {
            host_name: &host_ifname,
            host_master: Some(network.bridge_index),
            peer_name: &join.ifname,
            peer_mac: Some(ep.mac),
            mtu: network.options.mtu,
        };
        // The sandbox's netlink socket is opened while the pair is created.
        let (sandbox, created) = tokio::join!(
            NetlinkHandle::for_netns(&join.netns_path),
            self.nl.create_veth_into_netns(&pair, &join.netns_path)
        );
        created.map_err(|e| osl_error(format!("create endpoint {}", short(&ep.id)), e))?;

        let configured = match sandbox {
            Ok(sandbox) => configure_peer(&sandbox, &join.ifname, ep.ipv4, gateway).await,
            Err(e) => Err(e),
        };
        if let Err(e) = configured {
            if let Err(undo) = self.nl.delete_link(&host_ifname).await {
                warn!(veth = %host_ifname, error = %undo, "could not remove veth of failed join");
            }
            return Err(osl_error(
                format!("configure {} of endpoint {}", join.ifname, short(&ep.id)),
                e,
            ));
        }
        debug!(
            endpoint = short(&ep.id),
            veth = %host_ifname,
            ifname = %join.ifname,
            elapsed_us = started.elapsed().as_micros() as u64,
            "endpoint joined"
        );
        Ok(JoinInfo { host_ifname })
    }

    /// Deletes the host end of the pair; the kernel removes the peer with it.
    pub(super) async fn leave_endpoint(
        &self,
        ep: &EndpointSpec,
        info: &JoinInfo,
    ) -> DriverResult<()> {
        if info.host_ifname.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.nl
            .delete_link(&info.host_ifname)
            .await
            .map_err(|e| osl_error(format!("delete veth {}", info.host_ifname), e))?;
        debug!(
            endpoint = short(&ep.id),
            veth = %info.host_ifname,
            elapsed_us = started.elapsed().as_micros() as u64,
            "endpoint left"
        );
        Ok(())
    }
}

/// Address, up, default route: in that order, because the route's gateway
/// is only reachable once the interface is up with its subnet.
async fn configure_peer(
    sandbox: &NetlinkHandle,
    ifname: &str,
    address: Option<Ipv4Network>,
    gateway: Option<Ipv4Addr>,
) -> Result<(), OslError> {
    let peer = sandbox.require_link(ifname).await?;
    if let Some(address) = address {
        sandbox.add_ipv4_address(peer.index, address).await?;
    }
    sandbox.set_up(peer.index).await?;
    if let Some(gateway) = gateway {
        sandbox.add_default_route(gateway, peer.index).await?;
    }
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_veth_and_seven_hex() {
        let names: std::collections::HashSet<String> = (0..200).map(|_| veth_name()).collect();
        assert!(names.len() > 190, "names should be random");
        for name in names {
            assert_eq!(name.len(), 11, "{name}");
            assert!(name.starts_with("veth"));
            assert!(name[4..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            assert!(check_ifname(&name).is_ok());
        }
    }
}
