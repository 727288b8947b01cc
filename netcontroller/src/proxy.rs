//! In-process userland proxy for published ports.
//!
//! dockerd runs one `docker-proxy` process per published port and address
//! family so that connections the DNAT rules never see (from the host to
//! 127.0.0.1, for instance) still reach the container. Here each published
//! port is one tokio task: TCP connections are spliced with
//! `copy_bidirectional`, UDP datagrams go through a per-client flow table.
//! Sockets are created in the network namespace of the thread running the
//! task, i.e. the daemon's.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::{ErrorKind, Kind};
use crate::model::Proto;

/// A UDP flow is forgotten after this long without traffic either way
/// (docker-proxy's UDPConnTrackTimeout).
const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Bounds the sockets a flood of spoofed client addresses can make us open.
const UDP_MAX_FLOWS: usize = 1024;
/// The largest UDP payload over IPv4.
const UDP_BUF_SIZE: usize = 65507;
/// Pause after a failed accept (e.g. out of file descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Worded like dockerd's (Go's net.Listen) message, which users grep for.
    #[error("Error starting userland proxy: listen {proto}4 {addr}: bind: {}", errno_text(.source))]
    Bind {
        proto: Proto,
        addr: SocketAddrV4,
        #[source]
        source: io::Error,
    },
    #[error("userland proxy does not support {0}")]
    Unsupported(Proto),
}

impl Kind for ProxyError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                ErrorKind::Conflict
            }
            ProxyError::Bind { .. } => ErrorKind::System,
            ProxyError::Unsupported(_) => ErrorKind::InvalidArgument,
        }
    }
}

/// Go prints errno descriptions in lower case, without Rust's "(os error N)".
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// One published port served in-process. Dropping it or calling
/// [`PortProxy::stop`] closes the listener and every connection it carries.
#[derive(Debug)]
pub struct PortProxy {
    task: JoinHandle<()>,
}

impl PortProxy {
    /// Binds host_ip:host_port now (in the calling thread's namespace: the
    /// daemon's), then forwards every TCP connection (or UDP datagram flow)
    /// to container_ip:container_port, copying both ways until either side
    /// closes. Bind failure -> Conflict error with dockerd's text:
    /// "Error starting userland proxy: listen tcp4 0.0.0.0:8080: bind: address already in use".
    pub async fn start(
        proto: Proto,
        host_ip: Ipv4Addr,
        host_port: u16,
        container_ip: Ipv4Addr,
        container_port: u16,
    ) -> Result<PortProxy, ProxyError> {
        let addr = SocketAddrV4::new(host_ip, host_port);
        let target = SocketAddr::V4(SocketAddrV4::new(container_ip, container_port));
        let bind_err = |source| ProxyError::Bind {
            proto,
            addr,
            source,
        };
        let task = match proto {
            Proto::Tcp => {
                let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
                tokio::spawn(serve_tcp(listener, target))
            }
            Proto::Udp => {
                let socket = UdpSocket::bind(addr).await.map_err(bind_err)?;
                tokio::spawn(serve_udp(Arc::new(socket), target))
            }
            Proto::Sctp => return Err(ProxyError::Unsupported(proto)),
        };
        debug!(%proto, %addr, %target, "userland proxy started");
        Ok(PortProxy { task })
    }

    /// Closes the listener and all connections; the port is free on return.
    pub async fn stop(mut self) {
        self.task.abort();
        // Awaiting the aborted task waits until its future, which owns the
        // sockets, has been dropped.
        let _ = (&mut self.task).await;
    }
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts until aborted; connection tasks live in a JoinSet owned by this
/// task, so aborting it tears every connection down as well.
async fn serve_tcp(listener: TcpListener, target: SocketAddr) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    conns.spawn(splice(client, peer, target));
                }
                Err(e) => {
                    warn!(%target, error = %e, "userland proxy accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn splice(mut client: TcpStream, peer: SocketAddr, target: SocketAddr) {
    let mut backend = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, %target, error = %e, "userland proxy cannot reach container");
            return;
        }
    };
    // copy_bidirectional forwards a half-close in one direction and keeps
    // copying the other until it closes too, as docker-proxy does.
    match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        Ok((up, down)) => debug!(%peer, %target, up, down, "proxied connection closed"),
        Err(e) => debug!(%peer, %target, error = %e, "proxied connection failed"),
    }
}

/// One client's flow: a socket connected to the container, and when either
/// side last sent something.
struct Flow {
    id: u64,
    backend: Arc<UdpSocket>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
}

fn touch(last_seen: &std::sync::Mutex<Instant>) {
    *last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
}

async fn serve_udp(front: Arc<UdpSocket>, target: SocketAddr) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut replies: JoinSet<(SocketAddr, u64)> = JoinSet::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; UDP_BUF_SIZE];
    loop {
        tokio::select! {
            received = front.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(%target, error = %e, "userland proxy receive failed");
                        continue;
                    }
                };
                if !flows.contains_key(&client) {
                    if flows.len() >= UDP_MAX_FLOWS {
                        debug!(%client, %target, "too many UDP flows, datagram dropped");
                        continue;
                    }
                    match open_flow(next_id, target).await {
                        Ok(flow) => {
                            replies.spawn(relay_replies(
                                client,
                                flow.id,
                                flow.backend.clone(),
                                front.clone(),
                                flow.last_seen.clone(),
                            ));
                            flows.insert(client, flow);
                            next_id += 1;
                        }
                        Err(e) => {
                            warn!(%client, %target, error = %e, "cannot open UDP flow");
                            continue;
                        }
                    }
                }
                if let Some(flow) = flows.get(&client) {
                    touch(&flow.last_seen);
                    if let Err(e) = flow.backend.send(&buf[..len]).await {
                        debug!(%client, %target, error = %e, "UDP send to container failed");
                    }
                }
            }
            Some(ended) = replies.join_next(), if !replies.is_empty() => {
                if let Ok((client, id)) = ended {
                    // Only forget the flow that ended, not a newer one for
                    // the same client.
                    if flows.get(&client).is_some_and(|f| f.id == id) {
                        flows.remove(&client);
                    }
                }
            }
        }
    }
}

async fn open_flow(id: u64, target: SocketAddr) -> io::Result<Flow> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).await?;
    socket.connect(target).await?;
    Ok(Flow {
        id,
        backend: Arc::new(socket),
        last_seen: Arc::new(std::sync::Mutex::new(Instant::now())),
    })
}

/// Sends the container's replies back to the client until the flow has
/// been idle for UDP_IDLE_TIMEOUT; returns the flow's key for removal.
async fn relay_replies(
    client: SocketAddr,
    id: u64,
    backend: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    last_seen: Arc<std::sync::Mutex<Instant>>,
) -> (SocketAddr, u64) {
    let mut buf = vec![0u8; UDP_BUF_SIZE];
    loop {
        let deadline = *last_seen.lock().unwrap_or_else(|e| e.into_inner()) + UDP_IDLE_TIMEOUT;
        if Instant::now() >= deadline {
            debug!(%client, "UDP flow idle, closed");
            return (client, id);
        }
        tokio::select! {
            received = backend.recv(&mut buf) => match received {
                Ok(len) => {
                    touch(&last_seen);
                    if let Err(e) = front.send_to(&buf[..len], client).await {
                        debug!(%client, error = %e, "UDP reply to client failed");
                    }
                }
                // An ICMP port unreachable from the container shows up here;
                // the service may come up later, so keep the flow.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    debug!(%client, error = %e, "UDP flow closed");
                    return (client, id);
                }
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
