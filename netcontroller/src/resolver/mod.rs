//! The embedded DNS resolver of user-defined networks (dockerd's 127.0.0.11).
//!
//! A container on a user-defined network gets `nameserver 127.0.0.11` and
//! `options ndots:0` in its resolv.conf. One [`Resolver`] per sandbox answers
//! there: container names and aliases from the controller's [`NameBook`], and
//! everything else forwarded to the upstream servers. It runs on the daemon's
//! tokio runtime (no process per container): a UDP and a TCP socket bound to
//! 127.0.0.11:53 inside the sandbox's namespace, plus one small thread that
//! stays in that namespace to open the forwarding sockets, so forwarded
//! queries leave through the container's own interfaces and routes, as with
//! dockerd.
//!
//! Layout: `answer` decides what to do with one request (pure), `forward`
//! asks the upstreams, `server` runs the sockets, `netns` opens sockets
//! inside the namespace, `upstreams` picks the upstream servers.

mod answer;
mod forward;
mod netns;
mod server;
mod upstreams;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{ErrorKind, Kind};

pub use upstreams::upstreams_from;

/// The address the resolver listens on inside every sandbox, as dockerd's.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Answers names for one asking sandbox. Implemented by the controller.
///
/// Called on the runtime for every query, so lookups must not block (no
/// lock held across I/O).
pub trait NameBook: Send + Sync + 'static {
    /// IPv4 addresses for `name` (lowercase, without trailing dot) as seen from sandbox `asker`; None = not ours -> forward.
    fn lookup_v4(&self, asker: &str, name: &str) -> Option<Vec<Ipv4Addr>>;
    /// The name for a reverse lookup of `ip` as seen from `asker` (e.g. "web.mynet"); None -> forward.
    fn lookup_ptr(&self, asker: &str, ip: Ipv4Addr) -> Option<String>;
}

/// Where and how patiently to forward names the book does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Tried in order; see [`upstreams_from`].
    pub upstreams: Vec<SocketAddr>,
    /// Per upstream attempt (UDP, and again for the TCP retry of a truncated answer).
    pub timeout: Duration,
}

/// Why a resolver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// The sandbox namespace could not be opened or entered.
    #[error("sandbox namespace {path}: {source}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// 127.0.0.11:53 could not be bound in the sandbox (another resolver holds it?).
    #[error("bind {proto} {addr} in sandbox {sandbox}: {source}")]
    Bind {
        sandbox: String,
        proto: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The namespace thread could not be started or vanished.
    #[error("resolver thread for sandbox {sandbox}: {source}")]
    Thread {
        sandbox: String,
        #[source]
        source: std::io::Error,
    },
    /// The listening sockets could not be handed to the tokio runtime.
    #[error("register resolver sockets of sandbox {sandbox}: {source}")]
    Runtime {
        sandbox: String,
        #[source]
        source: std::io::Error,
    },
}

impl Kind for ResolverError {
    fn kind(&self) -> ErrorKind {
        match self {
            ResolverError::Namespace { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ErrorKind::NotFound
            }
            ResolverError::Bind { source, .. }
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                ErrorKind::Conflict
            }
            _ => ErrorKind::System,
        }
    }
}

/// The running DNS server of one sandbox. Dropping it or [`Resolver::stop`]
/// closes its sockets and ends its tasks; `stop` also waits for that.
///
/// While it runs it keeps the sandbox namespace alive (its sockets and thread
/// live there), so stop it before deleting the sandbox.
pub struct Resolver {
    sandbox_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Binds 127.0.0.11:53 (UDP and TCP) inside the namespace at `netns_path`
    /// and starts answering for `sandbox_id`.
    pub async fn start(
        sandbox_id: &str,
        netns_path: &Path,
        book: Arc<dyn NameBook>,
        config: ResolverConfig,
    ) -> Result<Resolver, ResolverError> {
        let (listeners, opener) = netns::enter(sandbox_id, netns_path).await?;
        let (shutdown, shutdown_rx) = oneshot::channel();
        let server = server::Server::new(sandbox_id, listeners, opener, book, config)?;
        let task = tokio::spawn(server.run(shutdown_rx));
        tracing::debug!(sandbox = sandbox_id, netns = %netns_path.display(), "resolver started");
        Ok(Resolver {
            sandbox_id: sandbox_id.to_owned(),
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Stops answering; when this returns, 127.0.0.11:53 is free again.
    pub async fn stop(mut self) {
        self.shutdown.take();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!(sandbox = %self.sandbox_id, error = %e, "resolver task ended badly");
            }
        }
        tracing::debug!(sandbox = %self.sandbox_id, "resolver stopped");
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // Dropping the sender tells the server task to close its sockets.
        self.shutdown.take();
    }
}
