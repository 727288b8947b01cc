//! Connecting a container to networks and disconnecting it, live or for
//! its next start.

use super::start::{endpoint_options, endpoint_state};
use super::*;

impl ContainerManager {
    /// `POST /networks/{id}/connect`: live when running, else for next start.
    pub async fn connect(&self, key: &str, network: &str, request: NetworkRequest) -> Result<()> {
        let entry = self.store.get(key)?;
        let net = self.controller.network(network)?;
        let _op = entry.op.lock().await;
        let record = entry.record();
        if record.network_mode() != NetworkMode::Networks
            || ["host", "none"].contains(&net.name.as_str())
            || record
                .networks
                .iter()
                .any(|a| ["host", "none"].contains(&a.network_name.as_str()))
        {
            return Err(ContainerError::Forbidden(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (or to {})",
                net.name
            )));
        }
        if record.networks.iter().any(|a| a.network_id == net.id) {
            return Err(ContainerError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                record.name, net.name
            )));
        }
        if request.ipv4.is_some() && !net.ipv4.first().is_some_and(|p| p.user_subnet) {
            return Err(invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets",
            ));
        }
        let mut attachment = Attachment {
            network_id: net.id.clone(),
            network_name: net.name.clone(),
            request,
            endpoint: None,
        };
        if let (true, Some(sb)) = (record.state.running(), &record.sandbox_id) {
            let opts = endpoint_options(&record.name, &attachment.request, Vec::new())?;
            let ep = self.controller.connect(sb, &net.id, opts).await?;
            attachment.endpoint = Some(endpoint_state(&ep.spec));
        }
        entry.update(|r| r.networks.push(attachment))?;
        self.rewrite_hosts(&entry);
        self.events
            .network("connect", &net.id, &net.name, &net.driver, Some(&record.id));
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, key: &str, network: &str, _force: bool) -> Result<()> {
        let entry = self.store.get(key)?;
        let _op = entry.op.lock().await;
        let record = entry.record();
        let net = self.controller.network(network).ok();
        let index = record.networks.iter().position(|a| match &net {
            Some(n) => a.network_id == n.id,
            None => a.network_name == network || a.network_id == network,
        });
        let Some(index) = index else {
            return Err(ContainerError::Invalid(format!(
                "container {} is not connected to network {network}",
                record.id
            )));
        };
        let a = &record.networks[index];
        if let (Some(_), Some(sb)) = (&a.endpoint, &record.sandbox_id) {
            self.controller.disconnect(sb, &a.network_id).await?;
        }
        entry.update(|r| {
            r.networks.remove(index);
        })?;
        self.rewrite_hosts(&entry);
        let driver = net.as_ref().map(|n| n.driver.clone()).unwrap_or_default();
        self.events.network(
            "disconnect",
            &a.network_id,
            &a.network_name,
            &driver,
            Some(&record.id),
        );
        Ok(())
    }

    /// A running container's /etc/hosts follows its addresses, as with
    /// dockerd (the file is bind-mounted, so rewriting it in place is seen
    /// at once). Failing to is logged: the connection itself stands.
    fn rewrite_hosts(&self, entry: &Entry) {
        let record = entry.record();
        if !record.state.running() || record.network_mode() != NetworkMode::Networks {
            return;
        }
        let own: Vec<std::net::Ipv4Addr> = record
            .networks
            .iter()
            .filter_map(|a| a.endpoint.as_ref()?.ipv4.map(|n| n.ip()))
            .collect();
        let extra = record.host_config.extra_hosts.clone().unwrap_or_default();
        let path = entry.dir().join("hosts");
        if let Err(e) = std::fs::write(&path, hosts(&record.hostname(), &own, &extra)) {
            warn!(id = %&record.id[..12], error = %e, "rewriting /etc/hosts");
        }
    }
}
