//! Published ports of bridge endpoints: the in-process userland proxy (one
//! listener task per binding, no helper process) and the NAT rules.

use std::net::Ipv4Addr;

use netcontroller::driver::{DriverError, DriverResult};
use netcontroller::error::{ErrorKind, Kind};
use netcontroller::model::{EndpointSpec, NetworkSpec, PortBinding};
use netcontroller::proxy::PortProxy;

use super::BridgeDriver;

impl BridgeDriver {
    /// Binds the host ports (proxy), then adds the NAT rules; undoes the
    /// proxies when the rules fail.
    pub(super) async fn publish_ports(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        let bridge = self.network(&net.id).ok_or_else(|| DriverError::NotFound {
            what: "network",
            id: net.id.clone(),
        })?;
        let container_ip = endpoint_ip(ep)?;
        let mut proxies = Vec::new();
        if self.config.userland_proxy {
            for b in bindings {
                match PortProxy::start(
                    b.proto,
                    b.host_ip,
                    b.host_port,
                    container_ip,
                    b.container_port,
                )
                .await
                {
                    Ok(p) => proxies.push(p),
                    Err(e) => {
                        stop_all(proxies).await;
                        return Err(match e.kind() {
                            ErrorKind::Conflict => DriverError::Conflict(e.to_string()),
                            _ => DriverError::system("starting the userland proxy", e),
                        });
                    }
                }
            }
        }
        if let Some(fw) = &self.firewall {
            if let Err(e) = fw.ports_up(&bridge, container_ip, bindings).await {
                stop_all(proxies).await;
                return Err(e);
            }
        }
        self.lock().proxies.insert(ep.id.clone(), proxies);
        Ok(())
    }

    /// Stops the proxies and removes the rules; keeps going past failures.
    pub(super) async fn unpublish_ports(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        let proxies = self.lock().proxies.remove(&ep.id).unwrap_or_default();
        stop_all(proxies).await;
        let (Some(fw), Some(bridge)) = (&self.firewall, self.network(&net.id)) else {
            return Ok(());
        };
        fw.ports_down(&bridge, endpoint_ip(ep)?, bindings).await
    }
}

fn endpoint_ip(ep: &EndpointSpec) -> DriverResult<Ipv4Addr> {
    ep.ipv4
        .map(|n| n.ip())
        .ok_or_else(|| DriverError::InvalidOption {
            key: "endpoint".into(),
            reason: format!("endpoint {} has no IPv4 address", ep.id),
        })
}

async fn stop_all(proxies: Vec<PortProxy>) {
    for p in proxies {
        p.stop().await;
    }
}
