//! The listening side: one task per resolver serves UDP and accepts TCP;
//! forwards and TCP connections run as its child tasks and end with it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::answer::{self, Decision, TCP_MAX, UDP_MAX};
use super::forward::{framed, Forwarder};
use super::netns::{Listeners, SocketOpener};
use super::{NameBook, ResolverConfig, ResolverError};

/// Forwards in flight per resolver; past it clients get SERVFAIL at once
/// rather than piling up sockets and tasks.
const MAX_FORWARDS: usize = 256;
/// Open TCP client connections per resolver; more are closed on accept.
const MAX_TCP_CLIENTS: usize = 64;
/// A TCP client silent this long is disconnected (RFC 7766 asks for seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the server and its child tasks share.
struct Shared {
    sandbox: String,
    book: Arc<dyn NameBook>,
    forwarder: Forwarder,
    forwards: Arc<Semaphore>,
    /// Counts requests; successive ones rotate multi-address answers.
    turn: AtomicUsize,
}

impl Shared {
    fn decide(&self, packet: &[u8]) -> Decision {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        answer::decide(&*self.book, &self.sandbox, packet, turn)
    }
}

pub(super) struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Hands the listeners to tokio; must run inside the runtime.
    pub fn new(
        sandbox: &str,
        listeners: Listeners,
        opener: SocketOpener,
        book: Arc<dyn NameBook>,
        config: ResolverConfig,
    ) -> Result<Server, ResolverError> {
        let runtime_error = |source| ResolverError::Runtime {
            sandbox: sandbox.to_owned(),
            source,
        };
        let udp = UdpSocket::from_std(listeners.udp).map_err(runtime_error)?;
        let tcp = TcpListener::from_std(listeners.tcp).map_err(runtime_error)?;
        Ok(Server {
            udp: Arc::new(udp),
            tcp,
            shared: Arc::new(Shared {
                sandbox: sandbox.to_owned(),
                book,
                forwarder: Forwarder::new(config.upstreams, config.timeout, opener),
                forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
                turn: AtomicUsize::new(0),
            }),
        })
    }

    /// Serves until `shutdown` fires or its sender is dropped, then ends every
    /// child task, so the sockets are closed when this returns.
    pub async fn run(self, mut shutdown: oneshot::Receiver<()>) {
        let mut children = JoinSet::new();
        let tcp_clients = Arc::new(Semaphore::new(MAX_TCP_CLIENTS));
        let mut buf = vec![0u8; UDP_MAX];
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, client)) => self.on_datagram(&buf[..n], client, &mut children).await,
                    Err(e) => tracing::debug!(sandbox = %self.shared.sandbox, error = %e, "udp receive failed"),
                },
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, client)) => match tcp_clients.clone().try_acquire_owned() {
                        Ok(permit) => {
                            children.spawn(connection(self.shared.clone(), stream, permit));
                        }
                        Err(_) => tracing::debug!(sandbox = %self.shared.sandbox, %client, "too many TCP clients; closing"),
                    },
                    Err(e) => {
                        tracing::debug!(sandbox = %self.shared.sandbox, error = %e, "tcp accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(_) = children.join_next(), if !children.is_empty() => {}
            }
        }
        children.shutdown().await;
    }

    async fn on_datagram(&self, packet: &[u8], client: SocketAddr, children: &mut JoinSet<()>) {
        match self.shared.decide(packet) {
            Decision::Drop => {
                tracing::debug!(sandbox = %self.shared.sandbox, %client, len = packet.len(), "dropped malformed datagram");
            }
            Decision::Answer { reply, udp_limit } => {
                send_datagram(&self.udp, &reply, udp_limit, client).await;
            }
            Decision::Forward(query) => {
                let udp_limit = answer::udp_limit(&query);
                match self.shared.forwards.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = self.shared.clone();
                        let udp = self.udp.clone();
                        children.spawn(async move {
                            let reply = shared.forwarder.resolve(&query).await;
                            drop(permit);
                            send_datagram(&udp, &reply, udp_limit, client).await;
                        });
                    }
                    Err(_) => {
                        tracing::debug!(sandbox = %self.shared.sandbox, "too many forwards in flight; SERVFAIL");
                        let reply = answer::failure(&query, ResponseCode::ServFail);
                        send_datagram(&self.udp, &reply, udp_limit, client).await;
                    }
                }
            }
        }
    }
}

async fn send_datagram(udp: &UdpSocket, reply: &Message, limit: usize, client: SocketAddr) {
    let Some(bytes) = answer::encode(reply, limit) else {
        return;
    };
    if let Err(e) = udp.send_to(&bytes, client).await {
        tracing::debug!(%client, error = %e, "udp reply failed");
    }
}

/// One TCP client: length-prefixed queries answered in turn until it closes,
/// goes quiet for [`TCP_IDLE`], or breaks the framing.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    loop {
        let Ok(Ok(len)) = timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut packet = vec![0u8; usize::from(len)];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut packet)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let reply = match shared.decide(&packet) {
            Decision::Drop => continue,
            Decision::Answer { reply, .. } => reply,
            Decision::Forward(query) => match shared.forwards.try_acquire() {
                Ok(_permit) => shared.forwarder.resolve(&query).await,
                Err(_) => answer::failure(&query, ResponseCode::ServFail),
            },
        };
        let Some(bytes) = answer::encode(&reply, TCP_MAX) else {
            continue;
        };
        if !matches!(
            timeout(TCP_IDLE, stream.write_all(&framed(&bytes))).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}
