//! Start-up: load the store, rebuild allocations, bring the kernel back in
//! line with it, and remove what belongs to objects that no longer exist.
//!
//! No container survives a daemon restart (there is no live restore), so
//! every stored sandbox and endpoint is stale: their kernel state is torn
//! down and their records dropped. The default `bridge` network is rebuilt
//! from today's flags by the daemon, so its stored copy is forgotten; its
//! bridge and rules are left for the daemon, which reuses what today's flags
//! still want in place and removes the rest.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use tracing::{info, warn};

use super::{
    Controller, ControllerError, EndpointRecord, NetworkEntry, Result, SandboxRecord, ENDPOINTS,
    NETWORKS, SANDBOXES,
};
use crate::model::NetworkSpec;
use crate::store::Loaded;

/// What [`Controller::restore`] found and fixed.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    pub networks_restored: usize,
    pub endpoints_removed: usize,
    pub sandboxes_removed: usize,
    pub links_removed: Vec<String>,
    pub netns_removed: usize,
    /// Corrupt store files and failed steps; reported, never fatal.
    pub problems: Vec<String>,
    /// The default `bridge` network of the previous run, forgotten without
    /// touching the kernel.
    pub stale_default: Option<NetworkSpec>,
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restored {} networks; removed {} stale endpoints, {} sandboxes, {} links, {} netns mounts; {} problems",
            self.networks_restored,
            self.endpoints_removed,
            self.sandboxes_removed,
            self.links_removed.len(),
            self.netns_removed,
            self.problems.len()
        )
    }
}

impl Controller {
    /// Loads the store and reconciles the kernel with it. Call once, before
    /// serving. Problems are collected in the report, not returned: a corrupt
    /// file or a stuck link must not keep the daemon from starting.
    pub async fn restore(&self) -> Result<RestoreReport> {
        let mut report = RestoreReport::default();
        let networks: Loaded<NetworkSpec> = self.store.load_all(NETWORKS)?;
        let endpoints: Loaded<EndpointRecord> = self.store.load_all(ENDPOINTS)?;
        let sandboxes: Loaded<SandboxRecord> = self.store.load_all(SANDBOXES)?;
        for p in networks
            .problems
            .iter()
            .chain(&endpoints.problems)
            .chain(&sandboxes.problems)
        {
            warn!(problem = %p, "store");
            report.problems.push(p.to_string());
        }

        let mut stale_default = None;
        for (_, spec) in networks.items {
            if spec.name == "bridge" {
                stale_default = Some(spec.clone());
            }
            if let Err(e) = self.register_network(&spec).await {
                report
                    .problems
                    .push(format!("network {} ({}): {e}", spec.name, spec.short_id()));
            } else {
                report.networks_restored += 1;
            }
        }

        for (id, record) in endpoints.items {
            self.remove_stale_endpoint(&record, &mut report).await;
            if let Err(e) = self.store.delete(ENDPOINTS, &id) {
                report.problems.push(e.to_string());
            }
            report.endpoints_removed += 1;
        }
        for (id, record) in sandboxes.items {
            if let Some(path) = &record.netns_path {
                if let Err(e) = crate::osl::delete_netns(path) {
                    report.problems.push(e.to_string());
                }
            }
            if let Err(e) = self.store.delete(SANDBOXES, &id) {
                report.problems.push(e.to_string());
            }
            report.sandboxes_removed += 1;
        }
        self.remove_orphan_netns(&mut report).await;

        if let Some(spec) = stale_default {
            if self.networks().iter().any(|n| n.id == spec.id) {
                if let Err(e) = self.delete_network_unchecked(&spec.id, false).await {
                    report.problems.push(format!("stale default bridge: {e}"));
                } else {
                    report.networks_restored -= 1;
                    report.stale_default = Some(spec);
                }
            }
        }
        self.remove_orphan_links(&mut report).await;
        info!(summary = %report, "network state restored");
        Ok(report)
    }

    /// Re-registers a stored network with IPAM and its driver.
    async fn register_network(&self, spec: &NetworkSpec) -> Result<()> {
        let driver = self.driver(&spec.driver)?;
        if let Some(pool) = spec.ipv4.first() {
            self.ipam.restore_network(&spec.id, pool)?;
        }
        if spec.name != "bridge" {
            if let Err(e) = driver.restore_network(spec).await {
                if !spec.ipv4.is_empty() {
                    self.ipam.release_network(&spec.id);
                }
                return Err(ControllerError::driver("restoring network", e));
            }
        }
        let mut st = self.state();
        st.names.insert(spec.name.clone(), spec.id.clone());
        st.networks.insert(
            spec.id.clone(),
            NetworkEntry {
                spec: spec.clone(),
                lock: Arc::new(tokio::sync::Mutex::new(())),
            },
        );
        Ok(())
    }

    async fn remove_stale_endpoint(&self, record: &EndpointRecord, report: &mut RestoreReport) {
        let net = self
            .state()
            .networks
            .get(&record.spec.network_id)
            .map(|e| e.spec.clone());
        match net {
            Some(net) => match self.driver(&net.driver) {
                Ok(driver) => self.undo_kernel(&driver, &net, record).await,
                Err(e) => report.problems.push(e.to_string()),
            },
            None if !record.join.host_ifname.is_empty() => {
                if let Err(e) = self.netlink.delete_link(&record.join.host_ifname).await {
                    report.problems.push(e.to_string());
                }
            }
            None => {}
        }
    }

    /// Namespace mounts under `<exec-root>/netns` that no sandbox owns.
    async fn remove_orphan_netns(&self, report: &mut RestoreReport) {
        let known: HashSet<String> = self.state().sandboxes.keys().cloned().collect();
        let Ok(entries) = std::fs::read_dir(&self.netns_root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&name) {
                continue;
            }
            match crate::osl::delete_netns(&entry.path()) {
                Ok(()) => report.netns_removed += 1,
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }

    /// Bridges named like ours (`br-` + 12 hex) that no network owns, and
    /// veths still enslaved to our bridges although no endpoint exists.
    async fn remove_orphan_links(&self, report: &mut RestoreReport) {
        let links = match self.netlink.links().await {
            Ok(l) => l,
            Err(e) => {
                report.problems.push(e.to_string());
                return;
            }
        };
        let owned: HashSet<String> = self
            .networks()
            .iter()
            .filter(|n| n.driver == "bridge")
            .map(|n| {
                n.options
                    .get("com.docker.network.bridge.name")
                    .cloned()
                    .unwrap_or_else(|| format!("br-{}", n.short_id()))
            })
            .collect();
        let known_veths: HashSet<String> = self
            .state()
            .endpoints
            .values()
            .map(|e| e.join.host_ifname.clone())
            .collect();
        let ours: HashSet<u32> = links
            .iter()
            .filter(|l| owned.contains(&l.name) || is_generated_bridge_name(&l.name))
            .map(|l| l.index)
            .collect();
        for link in &links {
            let orphan_bridge = is_generated_bridge_name(&link.name) && !owned.contains(&link.name);
            let orphan_veth = link.name.starts_with("veth")
                && link.master.is_some_and(|m| ours.contains(&m))
                && !known_veths.contains(&link.name);
            if orphan_bridge || orphan_veth {
                match self.netlink.delete_link(&link.name).await {
                    Ok(_) => report.links_removed.push(link.name.clone()),
                    Err(e) => report.problems.push(e.to_string()),
                }
            }
        }
    }
}

fn is_generated_bridge_name(name: &str) -> bool {
    name.strip_prefix("br-")
        .is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}
