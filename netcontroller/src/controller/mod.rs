//! Networks, endpoints and sandboxes: the controller proper.
//!
//! Bookkeeping (names, ids, subnets, addresses, host ports, persistence) is
//! done here, under one short-lived `std::sync::Mutex` that is never held
//! across an `await`; kernel work is delegated to drivers. Driver calls for
//! one network are serialised by a per-network async lock, and calls for one
//! sandbox by a per-sandbox lock, so unrelated operations run concurrently.

mod error;
mod names;
mod network;
mod restore;
mod sandbox;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::ipam::{AddressPool, Ipam};
use crate::model::{EndpointSpec, JoinInfo, NetworkSpec};
use crate::osl::NetlinkHandle;
use crate::portalloc::PortAllocator;
use crate::resolver::{Resolver, ResolverConfig};
use crate::store::Store;

pub use error::{ControllerError, Result};
pub use network::NetworkCreate;
pub use restore::RestoreReport;
pub use sandbox::{EndpointOptions, PortRequestSpec};

/// Store kinds: one folder each under `<data-root>/network/`.
const NETWORKS: &str = "networks";
const ENDPOINTS: &str = "endpoints";
const SANDBOXES: &str = "sandboxes";

/// Names of the networks the daemon makes itself; users may neither create
/// nor remove networks with these names.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// Where the controller keeps its files and which pools it hands out.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `<data-root>/network`: the persisted objects.
    pub store_root: PathBuf,
    /// `<exec-root>/netns`: bind mounts of sandbox namespaces.
    pub netns_root: PathBuf,
    pub pools: Vec<AddressPool>,
    /// Upstreams of the embedded DNS resolver of user-defined networks.
    pub resolver: ResolverConfig,
}

/// An endpoint with what the controller must remember about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub spec: EndpointSpec,
    pub sandbox_id: String,
    pub ifname: String,
    #[serde(default)]
    pub join: JoinInfo,
    /// True once ports were programmed (so teardown knows to revoke them).
    #[serde(default)]
    pub ports_programmed: bool,
}

/// A container's network namespace and the endpoints plugged into it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub container_id: String,
    /// `None` for sandboxes sharing the daemon's namespace (`--network host`).
    pub netns_path: Option<PathBuf>,
    /// Endpoint ids in join order.
    pub endpoints: Vec<String>,
}

/// An endpoint as the API shows it under a network's `Containers`.
#[derive(Debug, Clone)]
pub struct AttachedEndpoint {
    pub container_id: String,
    pub endpoint: EndpointSpec,
}

#[derive(Default)]
struct State {
    networks: HashMap<String, NetworkEntry>,
    /// Name -> id, including names reserved by a create in progress.
    names: HashMap<String, String>,
    endpoints: HashMap<String, EndpointRecord>,
    sandboxes: HashMap<String, SandboxEntry>,
}

struct NetworkEntry {
    spec: NetworkSpec,
    /// Serialises driver calls for this network.
    lock: Arc<tokio::sync::Mutex<()>>,
}

struct SandboxEntry {
    record: SandboxRecord,
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Where its embedded DNS forwards (a container's `--dns`); empty: the
    /// daemon's upstreams. Not stored: no sandbox outlives the daemon.
    upstreams: Vec<std::net::SocketAddr>,
}

/// The network controller. Cheap to share behind an `Arc`.
pub struct Controller {
    drivers: BTreeMap<&'static str, Arc<dyn Driver>>,
    ipam: Ipam,
    ports: PortAllocator,
    store: Store,
    netns_root: PathBuf,
    netlink: NetlinkHandle,
    state: Arc<Mutex<State>>,
    resolver_config: ResolverConfig,
    /// One embedded DNS server per sandbox on a user-defined network.
    resolvers: Mutex<HashMap<String, Resolver>>,
    /// Serialises creates of host and null networks, of which one may exist.
    single_instance_create: tokio::sync::Mutex<()>,
}

impl Controller {
    /// Opens the store and prepares the allocators; nothing is loaded or
    /// touched in the kernel until [`Controller::restore`].
    pub fn new(
        config: ControllerConfig,
        drivers: Vec<Arc<dyn Driver>>,
        netlink: NetlinkHandle,
    ) -> Result<Self> {
        let store = Store::open(&config.store_root)?;
        std::fs::create_dir_all(&config.netns_root).map_err(|e| {
            ControllerError::Invalid(format!(
                "cannot create {}: {e}",
                config.netns_root.display()
            ))
        })?;
        Ok(Controller {
            drivers: drivers.into_iter().map(|d| (d.name(), d)).collect(),
            ipam: Ipam::new(config.pools),
            ports: PortAllocator::from_kernel(),
            store,
            netns_root: config.netns_root,
            netlink,
            state: Arc::new(Mutex::new(State::default())),
            resolver_config: config.resolver,
            resolvers: Mutex::new(HashMap::new()),
            single_instance_create: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn driver(&self, name: &str) -> Result<Arc<dyn Driver>> {
        self.drivers
            .get(name)
            .cloned()
            .ok_or_else(|| ControllerError::DriverNotFound(name.to_string()))
    }

    /// Names of the registered drivers.
    pub fn driver_names(&self) -> Vec<&'static str> {
        self.drivers.keys().copied().collect()
    }

    /// Finds a network by full id, exact name, then unique id prefix (dockerd's order).
    pub fn network(&self, key: &str) -> Result<NetworkSpec> {
        let st = self.state();
        resolve_network(&st, key).map(|e| e.spec.clone())
    }

    /// Every network, in no particular order.
    pub fn networks(&self) -> Vec<NetworkSpec> {
        self.state()
            .networks
            .values()
            .map(|e| e.spec.clone())
            .collect()
    }

    /// Endpoints attached to a network, with the container each belongs to.
    pub fn network_endpoints(&self, network_id: &str) -> Vec<AttachedEndpoint> {
        let st = self.state();
        let mut out: Vec<AttachedEndpoint> = st
            .endpoints
            .values()
            .filter(|r| r.spec.network_id == network_id)
            .map(|r| AttachedEndpoint {
                container_id: st
                    .sandboxes
                    .get(&r.sandbox_id)
                    .map(|s| s.record.container_id.clone())
                    .unwrap_or_default(),
                endpoint: r.spec.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }

    /// The sandbox and, in join order, its endpoints with their interface names.
    pub fn sandbox(&self, sandbox_id: &str) -> Result<(SandboxRecord, Vec<EndpointRecord>)> {
        let st = self.state();
        let sb = st
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| ControllerError::SandboxNotFound(sandbox_id.to_string()))?;
        let eps = sb
            .record
            .endpoints
            .iter()
            .filter_map(|id| st.endpoints.get(id).cloned())
            .collect();
        Ok((sb.record.clone(), eps))
    }

    /// Every sandbox id with its container id.
    pub fn sandboxes(&self) -> Vec<SandboxRecord> {
        self.state()
            .sandboxes
            .values()
            .map(|s| s.record.clone())
            .collect()
    }
}

fn resolve_network<'a>(st: &'a State, key: &str) -> Result<&'a NetworkEntry> {
    if let Some(e) = st.networks.get(key) {
        return Ok(e);
    }
    if let Some(e) = st.networks.values().find(|e| e.spec.name == key) {
        return Ok(e);
    }
    let matches: Vec<&NetworkEntry> = if key.is_empty() {
        Vec::new()
    } else {
        st.networks
            .values()
            .filter(|e| e.spec.id.starts_with(key))
            .collect()
    };
    match matches.len() {
        0 => Err(ControllerError::NetworkNotFound(key.to_string())),
        1 => Ok(matches[0]),
        n => Err(ControllerError::AmbiguousNetwork(key.to_string(), n)),
    }
}

/// 64 random lowercase hex characters, the shape of every id dockerd shows.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
