//! Default address pools: where subnets come from when a network names none.
//!
//! A pool is a base network split into equal subnets (`base=10.10.0.0/16,size=24`
//! gives 10.10.0.0/24, 10.10.1.0/24, ...), as dockerd's `--default-address-pool`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Kind};

/// The longest subnet prefix a pool may hand out: a /30 still has room for a
/// gateway and one container, a /31 or /32 has none.
const MAX_SIZE: u8 = 30;

/// Why a `--default-address-pool` spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolSpecError {
    #[error("invalid field '{0}': must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{0}' in default address pool (expected base and size)")]
    UnknownKey(String),
    #[error("key '{0}' given more than once in default address pool")]
    DuplicateKey(String),
    #[error("default address pool is missing '{0}'")]
    MissingKey(&'static str),
    #[error("invalid base '{0}': must be an IPv4 network in CIDR notation, e.g. 10.10.0.0/16")]
    BadBase(String),
    #[error("invalid base {given}: it should be {masked}")]
    BaseHostBits { given: String, masked: Ipv4Network },
    #[error("invalid size '{0}': must be an integer")]
    BadSize(String),
    #[error("invalid size {0}: must not be greater than 32")]
    SizeOver32(u32),
    #[error(
        "invalid size {0}: a /{0} has no room for a gateway and a container; at most {MAX_SIZE}"
    )]
    SizeTooSmallNetwork(u8),
    #[error("invalid size {size}: smaller than the prefix length of base {base}")]
    SizeBelowBase { size: u8, base: Ipv4Network },
}

impl Kind for PoolSpecError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// A base network and the prefix length of the subnets cut from it.
///
/// Deserializes from daemon.json's `{"base": "10.10.0.0/16", "size": 24}`
/// with the same checks as the flag syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPool")]
pub struct AddressPool {
    pub base: Ipv4Network,
    pub size: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    base: String,
    size: u8,
}

impl TryFrom<RawPool> for AddressPool {
    type Error = PoolSpecError;
    fn try_from(raw: RawPool) -> Result<Self, Self::Error> {
        AddressPool::new(parse_base(&raw.base)?, raw.size)
    }
}

fn parse_base(value: &str) -> Result<Ipv4Network, PoolSpecError> {
    // Without a '/' ipnetwork would read a bare address as a /32.
    if !value.contains('/') {
        return Err(PoolSpecError::BadBase(value.to_string()));
    }
    value
        .parse()
        .map_err(|_| PoolSpecError::BadBase(value.to_string()))
}

fn parse_size(value: &str) -> Result<u8, PoolSpecError> {
    let size: u32 = value
        .parse()
        .map_err(|_| PoolSpecError::BadSize(value.to_string()))?;
    u8::try_from(size)
        .ok()
        .filter(|s| *s <= 32)
        .ok_or(PoolSpecError::SizeOver32(size))
}

impl AddressPool {
    /// A checked pool: base given as a network address, size between the base
    /// prefix and /30.
    pub fn new(base: Ipv4Network, size: u8) -> Result<AddressPool, PoolSpecError> {
        if base.ip() != base.network() {
            return Err(PoolSpecError::BaseHostBits {
                given: base.to_string(),
                masked: Ipv4Network::new(base.network(), base.prefix())
                    .expect("prefix of a parsed network is valid"),
            });
        }
        if size > 32 {
            return Err(PoolSpecError::SizeOver32(size.into()));
        }
        if size > MAX_SIZE {
            return Err(PoolSpecError::SizeTooSmallNetwork(size));
        }
        if size < base.prefix() {
            return Err(PoolSpecError::SizeBelowBase { size, base });
        }
        Ok(AddressPool { base, size })
    }

    /// dockerd's local-scope defaults: 172.17.0.0/16 to 172.31.0.0/16 as one
    /// /16 each, then 192.168.0.0/16 cut into /20s.
    pub fn defaults() -> Vec<AddressPool> {
        let mut pools: Vec<AddressPool> = (17..=31)
            .map(|second| AddressPool {
                base: Ipv4Network::new(Ipv4Addr::new(172, second, 0, 0), 16)
                    .expect("16 is a valid prefix"),
                size: 16,
            })
            .collect();
        pools.push(AddressPool {
            base: Ipv4Network::new(Ipv4Addr::new(192, 168, 0, 0), 16)
                .expect("16 is a valid prefix"),
            size: 20,
        });
        pools
    }

    /// The lowest subnet of this pool that overlaps none of `blockers`.
    ///
    /// Rather than trying every subnet (a /8 cut into /30s has four million),
    /// a candidate that hits blockers jumps to the first aligned subnet past
    /// the furthest of them, so the work grows with the number of blockers.
    pub(super) fn first_free(&self, blockers: &[(u64, u64)]) -> Option<Ipv4Network> {
        let (start, end) = span(self.base);
        let step = 1u64 << (32 - self.size);
        let mut cand = start;
        while cand + step - 1 <= end {
            let cand_end = cand + step - 1;
            let furthest = blockers
                .iter()
                .filter(|(lo, hi)| *lo <= cand_end && *hi >= cand)
                .map(|(_, hi)| *hi)
                .max();
            match furthest {
                None => {
                    let ip = Ipv4Addr::from(cand as u32);
                    return Some(Ipv4Network::new(ip, self.size).expect("size is at most 30"));
                }
                // The base is aligned to `step` (its prefix is not longer than
                // size), so rounding up keeps candidates on subnet boundaries.
                Some(hi) => cand = (hi + 1).div_ceil(step) * step,
            }
        }
        None
    }
}

/// First and last address of a network, host bits ignored, as u64 so that
/// arithmetic past 255.255.255.255 cannot wrap.
pub(super) fn span(net: Ipv4Network) -> (u64, u64) {
    (
        u64::from(u32::from(net.network())),
        u64::from(u32::from(net.broadcast())),
    )
}

impl fmt::Display for AddressPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "base={},size={}", self.base, self.size)
    }
}

impl FromStr for AddressPool {
    type Err = PoolSpecError;

    /// dockerd's `--default-address-pool` syntax: `base=CIDR,size=N`, keys in
    /// any order and any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut base = None;
        let mut size = None;
        for field in s.split(',') {
            let field = field.trim();
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| PoolSpecError::NotKeyValue(field.to_string()))?;
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            let slot_taken = match key.as_str() {
                "base" => base.replace(parse_base(value)?).is_some(),
                "size" => size.replace(parse_size(value)?).is_some(),
                _ => return Err(PoolSpecError::UnknownKey(key)),
            };
            if slot_taken {
                return Err(PoolSpecError::DuplicateKey(key));
            }
        }
        let base = base.ok_or(PoolSpecError::MissingKey("base"))?;
        let size = size.ok_or(PoolSpecError::MissingKey("size"))?;
        AddressPool::new(base, size)
    }
}
