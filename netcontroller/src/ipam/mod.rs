//! Address management: subnets from pools, addresses per network.
//!
//! One mutex guards every network's books, so a subnet choice and the
//! overlap check it depends on happen atomically, and an address is never
//! handed out twice however many threads ask. Each network keeps its used
//! addresses in a sparse bitmap (module `bitmap`): the gateway and auxiliary
//! addresses are marked used when the network is registered; the network and
//! broadcast addresses are never candidates.
//!
//! Choices where dockerd 20.10 and later versions differ, or where dockerd is
//! silent:
//! - A subnet, ip-range or pool base with host bits set (`10.0.0.1/24`) is
//!   refused with "it should be 10.0.0.0/24", as current moby does; 20.10
//!   silently masked it. Callers holding a bridge address (`--bip`) split it
//!   into subnet and gateway first.
//! - Subnets are chosen lowest-first from the pools (20.10 resumed after the
//!   last pool it gave out); deterministic, and a deleted network's subnet is
//!   the first one reused.
//! - An `avoid` entry with prefix 0 (a default route) is ignored: it says
//!   nothing about which subnets are in use, and dockerd skips it too.
//! - A /31 or /32 subnet is refused: it has no room for a gateway and a
//!   container.

mod bitmap;
mod pool;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ipnetwork::Ipv4Network;
use tracing::{debug, warn};

use crate::error::{ErrorKind, Kind};
use crate::model::IpamPool;
use bitmap::Bitmap;
use pool::span;
pub use pool::{AddressPool, PoolSpecError};

/// What a network create asks of IPAM; every field optional, as in
/// `docker network create --subnet --gateway --ip-range --aux-address`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamRequest {
    pub subnet: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Network>,
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
}

/// Why IPAM refused. Messages follow dockerd's where users or scripts
/// match on them ("Pool overlaps ...", "Address already in use").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet { subnet: Ipv4Network, reason: String },
    #[error("invalid gateway {gateway}: {reason}")]
    InvalidGateway { gateway: Ipv4Addr, reason: String },
    #[error("invalid ip-range {range}: {reason}")]
    InvalidIpRange { range: Ipv4Network, reason: String },
    #[error("invalid auxiliary address {name}: {reason}")]
    InvalidAuxAddress {
        name: String,
        address: Ipv4Addr,
        reason: String,
    },
    #[error("{what} given without a subnet: every ip-range, gateway or auxiliary address must have a corresponding subnet")]
    NeedsSubnet { what: &'static str },
    /// `other` names the network already holding an overlapping subnet (for logs).
    #[error("Pool overlaps with other one on this address space")]
    PoolOverlap { subnet: Ipv4Network, other: String },
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    NoSubnetAvailable,
    #[error("network {0} already has an address pool")]
    NetworkExists(String),
    #[error("network {0} has no address pool")]
    UnknownNetwork(String),
    #[error("invalid address {address}: it does not belong to the network's subnet {subnet}")]
    AddressOutOfRange {
        address: Ipv4Addr,
        subnet: Ipv4Network,
    },
    #[error("invalid address {address}: it is the {what} address of subnet {subnet}")]
    ReservedAddress {
        address: Ipv4Addr,
        what: &'static str,
        subnet: Ipv4Network,
    },
    #[error("Address already in use")]
    AddressInUse(Ipv4Addr),
    /// Carries the network id; the controller may prefix the network name.
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    NoAddresses(String),
}

impl Kind for IpamError {
    fn kind(&self) -> ErrorKind {
        match self {
            IpamError::InvalidSubnet { .. }
            | IpamError::InvalidGateway { .. }
            | IpamError::InvalidIpRange { .. }
            | IpamError::InvalidAuxAddress { .. }
            | IpamError::NeedsSubnet { .. }
            | IpamError::AddressOutOfRange { .. }
            | IpamError::ReservedAddress { .. } => ErrorKind::InvalidArgument,
            // dockerd answers 403 for both, and clients read the status.
            IpamError::PoolOverlap { .. } | IpamError::AddressInUse(_) => ErrorKind::Forbidden,
            IpamError::NetworkExists(_) => ErrorKind::Conflict,
            // libnetwork reports an exhausted default pool as "not found"
            // (dockerd answers 404, measured with dockerd 20.10).
            IpamError::NoSubnetAvailable => ErrorKind::NotFound,
            IpamError::NoAddresses(_) => ErrorKind::Unavailable,
            IpamError::UnknownNetwork(_) => ErrorKind::NotFound,
        }
    }
}

/// One network's books.
#[derive(Debug)]
struct Network {
    pool: IpamPool,
    used: Bitmap,
}

impl Network {
    /// Registers a checked pool with its gateway and auxiliary addresses taken.
    fn new(pool: IpamPool) -> Network {
        let mut used = Bitmap::default();
        used.set(pool.gateway.into());
        for aux in pool.aux_addresses.values() {
            used.set((*aux).into());
        }
        Network { pool, used }
    }

    /// Addresses a container may get without asking: the subnet's hosts,
    /// narrowed to the ip-range when there is one.
    fn candidates(&self) -> (u32, u32) {
        let (net, bcast) = span(self.pool.subnet);
        let (mut lo, mut hi) = (net as u32 + 1, bcast as u32 - 1);
        if let Some(range) = self.pool.ip_range {
            let (rlo, rhi) = span(range);
            lo = lo.max(rlo as u32);
            hi = hi.min(rhi as u32);
        }
        (lo, hi)
    }

    /// Takes a specific address: inside the subnet (the ip-range does not
    /// apply, as in dockerd), not network/broadcast, not already used.
    fn take(&mut self, address: Ipv4Addr) -> Result<(), IpamError> {
        check_host(self.pool.subnet, address).map_err(|e| match e {
            HostCheck::Outside => IpamError::AddressOutOfRange {
                address,
                subnet: self.pool.subnet,
            },
            HostCheck::Reserved(what) => IpamError::ReservedAddress {
                address,
                what,
                subnet: self.pool.subnet,
            },
        })?;
        if !self.used.set(address.into()) {
            return Err(IpamError::AddressInUse(address));
        }
        Ok(())
    }
}

enum HostCheck {
    Outside,
    Reserved(&'static str),
}

/// Whether `address` can be a host of `subnet` (a /30 or larger).
fn check_host(subnet: Ipv4Network, address: Ipv4Addr) -> Result<(), HostCheck> {
    if !subnet.contains(address) {
        Err(HostCheck::Outside)
    } else if address == subnet.network() {
        Err(HostCheck::Reserved("network"))
    } else if address == subnet.broadcast() {
        Err(HostCheck::Reserved("broadcast"))
    } else {
        Ok(())
    }
}

fn masked(net: Ipv4Network) -> Ipv4Network {
    Ipv4Network::new(net.network(), net.prefix()).expect("prefix of an existing network is valid")
}

fn check_subnet(subnet: Ipv4Network) -> Result<(), IpamError> {
    let invalid = |reason: String| IpamError::InvalidSubnet { subnet, reason };
    if subnet.ip() != subnet.network() {
        return Err(invalid(format!("it should be {}", masked(subnet))));
    }
    if subnet.prefix() > 30 {
        return Err(invalid(
            "a /31 or /32 has no room for a gateway and a container address".into(),
        ));
    }
    Ok(())
}

fn host_reason(subnet: Ipv4Network, check: HostCheck) -> String {
    match check {
        HostCheck::Outside => format!("parent subnet {subnet} doesn't contain this address"),
        HostCheck::Reserved(what) => format!("it is the {what} address of subnet {subnet}"),
    }
}

/// Every rule a resolved pool obeys; run on new networks and on restored ones
/// (a hand-edited or damaged store must not poison the books).
fn check_pool(pool: &IpamPool) -> Result<(), IpamError> {
    let subnet = pool.subnet;
    check_subnet(subnet)?;
    check_host(subnet, pool.gateway).map_err(|c| IpamError::InvalidGateway {
        gateway: pool.gateway,
        reason: host_reason(subnet, c),
    })?;
    if let Some(range) = pool.ip_range {
        let invalid = |reason: String| IpamError::InvalidIpRange { range, reason };
        if range.ip() != range.network() {
            return Err(invalid(format!("it should be {}", masked(range))));
        }
        if range.prefix() < subnet.prefix() {
            return Err(invalid(format!(
                "CIDR block is bigger than its parent subnet {subnet}"
            )));
        }
        if !subnet.contains(range.network()) {
            return Err(invalid(format!(
                "parent subnet {subnet} doesn't contain ip-range"
            )));
        }
    }
    let mut seen: HashMap<Ipv4Addr, &str> = HashMap::new();
    for (name, &address) in &pool.aux_addresses {
        let invalid = |reason: String| IpamError::InvalidAuxAddress {
            name: name.clone(),
            address,
            reason,
        };
        check_host(subnet, address).map_err(|c| invalid(host_reason(subnet, c)))?;
        if address == pool.gateway {
            return Err(invalid("it is the gateway address".into()));
        }
        if let Some(other) = seen.insert(address, name) {
            return Err(invalid(format!("it is also given for {other}")));
        }
    }
    Ok(())
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// The address manager: pools to choose subnets from, and every network's
/// subnet and used addresses. Safe to share between threads.
#[derive(Debug)]
pub struct Ipam {
    pools: Vec<AddressPool>,
    networks: Mutex<HashMap<String, Network>>,
}

impl Ipam {
    /// An empty manager choosing subnets from `pools`, in order. The fields
    /// of a pool are public, so pools built without [`AddressPool::new`] are
    /// checked here; one that fails is dropped with a warning.
    pub fn new(pools: Vec<AddressPool>) -> Ipam {
        let pools = pools
            .into_iter()
            .filter(|p| match AddressPool::new(p.base, p.size) {
                Ok(_) => true,
                Err(e) => {
                    warn!(pool = %p, error = %e, "ipam: address pool ignored");
                    false
                }
            })
            .collect();
        Ipam {
            pools,
            networks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Network>> {
        // Every mutation completes before anything can panic, so the books
        // behind a poisoned lock are still consistent.
        self.networks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserve addressing for network `id`.
    ///
    /// With `req.subnet`: it must overlap no other network's subnet
    /// ([`IpamError::PoolOverlap`]); `avoid` does not apply to a subnet the
    /// user named. Without: the lowest pool subnet overlapping neither
    /// another network's subnet nor an `avoid` entry (routes and addresses of
    /// the daemon's namespace), else [`IpamError::NoSubnetAvailable`].
    /// Gateway, ip-range and auxiliary addresses are checked against the
    /// subnet; the gateway defaults to the first host address. The gateway
    /// and auxiliary addresses are marked used.
    pub fn allocate_network(
        &self,
        id: &str,
        req: &IpamRequest,
        avoid: &[Ipv4Network],
    ) -> Result<IpamPool, IpamError> {
        let user_pool = match req.subnet {
            Some(subnet) => {
                // Everything about the request is checked before the books
                // are consulted, so a bad gateway is reported as such. The
                // subnet first: the default gateway needs room for a host.
                check_subnet(subnet)?;
                let pool = resolve(req, subnet);
                check_pool(&pool)?;
                Some(pool)
            }
            None => {
                let stray = [
                    (req.gateway.is_some(), "gateway"),
                    (req.ip_range.is_some(), "ip-range"),
                    (!req.aux_addresses.is_empty(), "auxiliary address"),
                ];
                if let Some((_, what)) = stray.into_iter().find(|(given, _)| *given) {
                    return Err(IpamError::NeedsSubnet { what });
                }
                None
            }
        };

        let mut networks = self.lock();
        let pool = match user_pool {
            Some(pool) => pool,
            None => {
                let blockers: Vec<(u64, u64)> = networks
                    .values()
                    .map(|n| span(n.pool.subnet))
                    .chain(avoid.iter().filter(|a| a.prefix() > 0).map(|a| span(*a)))
                    .collect();
                let subnet = self
                    .pools
                    .iter()
                    .find_map(|p| p.first_free(&blockers))
                    .ok_or(IpamError::NoSubnetAvailable)?;
                resolve(req, subnet)
            }
        };
        register(&mut networks, id, &pool)?;
        debug!(network = id, subnet = %pool.subnet, gateway = %pool.gateway, "ipam: network allocated");
        Ok(pool)
    }

    /// Re-register a stored network after a restart. Conflict when its
    /// subnet overlaps one already held (or the id is already registered);
    /// invalid when the stored pool breaks the rules new ones obey.
    pub fn restore_network(&self, id: &str, pool: &IpamPool) -> Result<(), IpamError> {
        check_pool(pool)?;
        register(&mut self.lock(), id, pool)?;
        debug!(network = id, subnet = %pool.subnet, "ipam: network restored");
        Ok(())
    }

    /// Forget network `id` and every address it held. Unknown ids are ignored.
    pub fn release_network(&self, id: &str) {
        if self.lock().remove(id).is_some() {
            debug!(network = id, "ipam: network released");
        }
    }

    /// An endpoint address on network `id`: `requested` when given (inside
    /// the subnet, not its network/broadcast address, not in use — the
    /// gateway and auxiliary addresses are in use), otherwise the lowest free
    /// host address of the ip-range, or of the subnet when there is none.
    pub fn allocate_address(
        &self,
        id: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let mut networks = self.lock();
        let net = networks
            .get_mut(id)
            .ok_or_else(|| IpamError::UnknownNetwork(id.to_string()))?;
        let address = match requested {
            Some(address) => {
                net.take(address)?;
                address
            }
            None => {
                let (lo, hi) = net.candidates();
                let bit = net
                    .used
                    .first_clear_in(lo, hi)
                    .ok_or_else(|| IpamError::NoAddresses(id.to_string()))?;
                net.used.set(bit);
                Ipv4Addr::from(bit)
            }
        };
        debug!(network = id, %address, "ipam: address allocated");
        Ok(address)
    }

    /// Mark `address` used again after a restart; Conflict when it already is.
    pub fn restore_address(&self, id: &str, address: Ipv4Addr) -> Result<(), IpamError> {
        let mut networks = self.lock();
        let net = networks
            .get_mut(id)
            .ok_or_else(|| IpamError::UnknownNetwork(id.to_string()))?;
        net.take(address)?;
        debug!(network = id, %address, "ipam: address restored");
        Ok(())
    }

    /// Give an endpoint address back. The gateway and auxiliary addresses
    /// stay reserved until the network goes; unknown ones are ignored.
    pub fn release_address(&self, id: &str, address: Ipv4Addr) {
        let mut networks = self.lock();
        let Some(net) = networks.get_mut(id) else {
            debug!(network = id, %address, "ipam: release on unknown network ignored");
            return;
        };
        if address == net.pool.gateway || net.pool.aux_addresses.values().any(|a| *a == address) {
            debug!(network = id, %address, "ipam: reserved address kept");
            return;
        }
        if net.used.clear(address.into()) {
            debug!(network = id, %address, "ipam: address released");
        }
    }

    /// Whether `address` is in use on network `id` (endpoint, gateway or auxiliary).
    pub fn is_allocated(&self, id: &str, address: Ipv4Addr) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|n| n.used.is_set(address.into()))
    }
}

/// The pool a request asks for once its subnet is known.
fn resolve(req: &IpamRequest, subnet: Ipv4Network) -> IpamPool {
    IpamPool {
        subnet,
        gateway: req
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()) + 1)),
        ip_range: req.ip_range,
        aux_addresses: req.aux_addresses.clone(),
        user_subnet: req.subnet.is_some(),
        user_gateway: req.gateway.is_some(),
    }
}

/// Adds a checked pool to the books unless the id or the subnet is taken.
fn register(
    networks: &mut HashMap<String, Network>,
    id: &str,
    pool: &IpamPool,
) -> Result<(), IpamError> {
    if networks.contains_key(id) {
        return Err(IpamError::NetworkExists(id.to_string()));
    }
    let (lo, hi) = span(pool.subnet);
    if let Some(other) = networks
        .iter()
        .find(|(_, n)| overlaps(span(n.pool.subnet), (lo, hi)))
        .map(|(other, _)| other)
    {
        return Err(IpamError::PoolOverlap {
            subnet: pool.subnet,
            other: other.clone(),
        });
    }
    networks.insert(id.to_string(), Network::new(pool.clone()));
    Ok(())
}
