//! Host port allocation per (protocol, host IP).
//!
//! A port bound on 0.0.0.0 takes it on every address of the host, so it
//! clashes with the same port on any specific address of the same protocol,
//! and the other way round; two specific addresses do not clash. (dockerd
//! 20.10 kept the addresses apart and let the later bind fail in the proxy;
//! refusing up front gives the user the "port is already allocated" error
//! instead.) One mutex guards all books; each (protocol, address) keeps a
//! 65536-bit set.

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracing::{debug, warn};

use crate::error::{ErrorKind, Kind};
use crate::model::Proto;

/// dockerd 20.10's bounds for ports handed out without being asked for:
/// the kernel's ephemeral range is narrowed to these, and used as is when
/// unreadable or disjoint.
const DOCKERD_EPHEMERAL: RangeInclusive<u16> = 49153..=65535;

const KERNEL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Which host port a mapping wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    /// Any free port of the ephemeral range (`-p 80`, `-P`).
    Any,
    /// Exactly this port (`-p 8080:80`).
    Exact(u16),
    /// The lowest free port of `lo..=hi` (`-p 8000-8010:80`).
    Range(u16, u16),
}

/// Why a host port was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid host port 0: a published port needs a port number between 1 and 65535")]
    ZeroPort,
    #[error("invalid host port range {lo}-{hi}: must be ascending and start above 0")]
    BadRange { lo: u16, hi: u16 },
    #[error("Bind for {ip}:{port} failed: port is already allocated")]
    Allocated { ip: Ipv4Addr, port: u16 },
    #[error("Bind for {ip}:{lo}-{hi} failed: every port in the range is already allocated")]
    RangeAllocated { ip: Ipv4Addr, lo: u16, hi: u16 },
    #[error("all ports are allocated")]
    Exhausted,
}

impl Kind for PortError {
    fn kind(&self) -> ErrorKind {
        match self {
            PortError::ZeroPort | PortError::BadRange { .. } => ErrorKind::InvalidArgument,
            PortError::Allocated { .. } | PortError::RangeAllocated { .. } => ErrorKind::Conflict,
            PortError::Exhausted => ErrorKind::Unavailable,
        }
    }
}

/// One bit per port number.
#[derive(Debug)]
struct PortSet {
    words: Box<[u64; 1024]>,
    used: u32,
}

impl PortSet {
    fn new() -> Self {
        PortSet {
            words: Box::new([0; 1024]),
            used: 0,
        }
    }

    fn contains(&self, port: u16) -> bool {
        self.words[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    fn insert(&mut self, port: u16) {
        self.words[usize::from(port / 64)] |= 1 << (port % 64);
        self.used += 1;
    }

    fn remove(&mut self, port: u16) -> bool {
        let had = self.contains(port);
        if had {
            self.words[usize::from(port / 64)] &= !(1 << (port % 64));
            self.used -= 1;
        }
        had
    }
}

#[derive(Debug, Default)]
struct Books {
    held: HashMap<Proto, HashMap<Ipv4Addr, PortSet>>,
    /// The last port handed out for `Any`, per protocol: the next search
    /// starts after it, so a just-released port is not reused at once.
    last: HashMap<Proto, u16>,
}

impl Books {
    /// Whether `port` can be bound on `ip` for `proto` given what is held.
    fn is_free(&self, proto: Proto, ip: Ipv4Addr, port: u16) -> bool {
        let Some(by_ip) = self.held.get(&proto) else {
            return true;
        };
        if ip.is_unspecified() {
            by_ip.values().all(|set| !set.contains(port))
        } else {
            [ip, Ipv4Addr::UNSPECIFIED]
                .iter()
                .filter_map(|a| by_ip.get(a))
                .all(|set| !set.contains(port))
        }
    }

    fn take(&mut self, proto: Proto, ip: Ipv4Addr, port: u16) {
        self.held
            .entry(proto)
            .or_default()
            .entry(ip)
            .or_insert_with(PortSet::new)
            .insert(port);
    }
}

/// Host port books for one daemon. Safe to share between threads.
#[derive(Debug)]
pub struct PortAllocator {
    ephemeral: RangeInclusive<u16>,
    books: Mutex<Books>,
}

impl PortAllocator {
    /// Hands out `Any` ports from `ephemeral`. Port 0 is never handed out;
    /// an empty range falls back to dockerd's 49153-65535.
    pub fn new(ephemeral: RangeInclusive<u16>) -> Self {
        let start = (*ephemeral.start()).max(1);
        let ephemeral = if start <= *ephemeral.end() {
            start..=*ephemeral.end()
        } else {
            warn!(
                ?ephemeral,
                "empty ephemeral port range, using {DOCKERD_EPHEMERAL:?}"
            );
            DOCKERD_EPHEMERAL
        };
        PortAllocator {
            ephemeral,
            books: Mutex::new(Books::default()),
        }
    }

    /// Uses the kernel's ephemeral range of the calling thread's network
    /// namespace, narrowed to 49153-65535 as dockerd 20.10 does; the whole
    /// of 49153-65535 when unreadable or disjoint.
    pub fn from_kernel() -> Self {
        let text = std::fs::read_to_string(KERNEL_RANGE)
            .inspect_err(|e| debug!(error = %e, "cannot read {KERNEL_RANGE}"))
            .ok();
        Self::new(ephemeral_from_sysctl(text.as_deref()))
    }

    /// The range `Any` ports come from.
    pub fn ephemeral(&self) -> RangeInclusive<u16> {
        self.ephemeral.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Books> {
        // Mutations cannot panic half-way, so poisoned books are consistent.
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A host port for `proto` on `host_ip` (0.0.0.0 = every address).
    pub fn allocate(
        &self,
        proto: Proto,
        host_ip: Ipv4Addr,
        req: PortRequest,
    ) -> Result<u16, PortError> {
        let mut books = self.lock();
        let port = match req {
            PortRequest::Exact(0) => return Err(PortError::ZeroPort),
            PortRequest::Exact(port) => exact(&books, proto, host_ip, port)?,
            // A one-port range is an exact request, as in dockerd.
            PortRequest::Range(lo, hi) if lo == hi && lo != 0 => exact(&books, proto, host_ip, lo)?,
            PortRequest::Range(lo, hi) => {
                if lo == 0 || lo > hi {
                    return Err(PortError::BadRange { lo, hi });
                }
                (lo..=hi)
                    .find(|p| books.is_free(proto, host_ip, *p))
                    .ok_or(PortError::RangeAllocated {
                        ip: host_ip,
                        lo,
                        hi,
                    })?
            }
            PortRequest::Any => {
                let (lo, hi) = (*self.ephemeral.start(), *self.ephemeral.end());
                let last = books.last.get(&proto).copied().unwrap_or(hi);
                // Round robin: after the last one given, wrapping to the start.
                let after = (last.max(lo)..hi).map(|p| p + 1);
                let port = after
                    .chain(lo..=last.clamp(lo, hi))
                    .find(|p| books.is_free(proto, host_ip, *p))
                    .ok_or(PortError::Exhausted)?;
                books.last.insert(proto, port);
                port
            }
        };
        books.take(proto, host_ip, port);
        debug!(%proto, %host_ip, port, "host port allocated");
        Ok(port)
    }

    /// Mark a port held again after a restart; Conflict when it clashes
    /// with one already held.
    pub fn restore(&self, proto: Proto, host_ip: Ipv4Addr, port: u16) -> Result<(), PortError> {
        if port == 0 {
            return Err(PortError::ZeroPort);
        }
        let mut books = self.lock();
        exact(&books, proto, host_ip, port)?;
        books.take(proto, host_ip, port);
        debug!(%proto, %host_ip, port, "host port restored");
        Ok(())
    }

    /// Give a port back; one not held is ignored.
    pub fn release(&self, proto: Proto, host_ip: Ipv4Addr, port: u16) {
        let mut books = self.lock();
        let Some(by_ip) = books.held.get_mut(&proto) else {
            return;
        };
        let Some(set) = by_ip.get_mut(&host_ip) else {
            return;
        };
        if set.remove(port) {
            if set.used == 0 {
                by_ip.remove(&host_ip);
            }
            debug!(%proto, %host_ip, port, "host port released");
        }
    }
}

fn exact(books: &Books, proto: Proto, ip: Ipv4Addr, port: u16) -> Result<u16, PortError> {
    if books.is_free(proto, ip, port) {
        Ok(port)
    } else {
        Err(PortError::Allocated { ip, port })
    }
}

/// The ephemeral range dockerd 20.10 derives from the sysctl's text: the
/// kernel range narrowed to 49153-65535, or all of that when the text is
/// missing, malformed or disjoint from it.
fn ephemeral_from_sysctl(text: Option<&str>) -> RangeInclusive<u16> {
    let parsed = text.and_then(|t| {
        let mut it = t.split_whitespace().map(str::parse::<u16>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(lo)), Some(Ok(hi)), None) => Some((lo, hi)),
            _ => None,
        }
    });
    match parsed {
        Some((lo, hi)) if lo <= hi && hi >= *DOCKERD_EPHEMERAL.start() => {
            lo.max(*DOCKERD_EPHEMERAL.start())..=hi
        }
        _ => DOCKERD_EPHEMERAL,
    }
}
