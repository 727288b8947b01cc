//! The names the embedded resolver answers, read straight from the
//! controller's books so they follow connect, disconnect and removal at once.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::{EndpointRecord, State, PREDEFINED};
use crate::resolver::NameBook;

/// A view of the controller's state for the resolver.
pub(super) struct Names(pub(super) Arc<Mutex<State>>);

impl Names {
    /// Endpoints that share a user-defined network with the asking sandbox,
    /// with the network's name.
    fn visible<T>(
        &self,
        asker: &str,
        mut f: impl FnMut(&EndpointRecord, &str, &str) -> Option<T>,
    ) -> Vec<T> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sb) = st.sandboxes.get(asker) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ep_id in &sb.record.endpoints {
            let Some(own) = st.endpoints.get(ep_id) else {
                continue;
            };
            let Some(net) = st.networks.get(&own.spec.network_id) else {
                continue;
            };
            if PREDEFINED.contains(&net.spec.name.as_str()) {
                continue;
            }
            for ep in st
                .endpoints
                .values()
                .filter(|e| e.spec.network_id == net.spec.id)
            {
                let container = st
                    .sandboxes
                    .get(&ep.sandbox_id)
                    .map(|s| s.record.container_id.as_str())
                    .unwrap_or("");
                if let Some(v) = f(ep, &net.spec.name, container) {
                    out.push(v);
                }
            }
        }
        out
    }
}

fn answers_to(ep: &EndpointRecord, network: &str, container_id: &str, name: &str) -> bool {
    let own = ep.spec.name.to_ascii_lowercase();
    let short_id = &container_id[..container_id.len().min(12)];
    name == own
        || (!short_id.is_empty() && name == short_id)
        || name
            .strip_suffix(&network.to_ascii_lowercase())
            .and_then(|n| n.strip_suffix('.'))
            .is_some_and(|n| n == own)
        || ep.spec.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
}

impl NameBook for Names {
    fn lookup_v4(&self, asker: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let mut ips = self.visible(asker, |ep, network, container| {
            if answers_to(ep, network, container, name) {
                ep.spec.ipv4.map(|n| n.ip())
            } else {
                None
            }
        });
        ips.sort();
        ips.dedup();
        (!ips.is_empty()).then_some(ips)
    }

    fn lookup_ptr(&self, asker: &str, ip: Ipv4Addr) -> Option<String> {
        self.visible(asker, |ep, network, _| {
            (ep.spec.ipv4.map(|n| n.ip()) == Some(ip))
                .then(|| format!("{}.{}", ep.spec.name, network))
        })
        .into_iter()
        .next()
    }
}
