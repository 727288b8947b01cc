//! Sockets inside the sandbox namespace.
//!
//! A socket belongs to the namespace of the thread that created it, for its
//! whole life. So one dedicated thread per resolver enters the sandbox
//! namespace, binds the listeners, and then stays there opening the upstream
//! sockets the async side asks for (fresh ones per forward, so each query
//! gets a random source port). It never runs tokio code, and it exits once
//! every [`SocketOpener`] is gone.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::mpsc;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use tokio::sync::oneshot;

use super::{ResolverError, RESOLVER_IP};

/// Enough for socket calls; the default 2 MiB would only cost address space.
const THREAD_STACK: usize = 128 * 1024;

/// The sockets clients talk to, bound to 127.0.0.11:53 in the sandbox, non-blocking.
pub(super) struct Listeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

enum Request {
    Udp {
        peer: SocketAddr,
        reply: oneshot::Sender<io::Result<UdpSocket>>,
    },
    Tcp {
        v6: bool,
        reply: oneshot::Sender<io::Result<TcpStream>>,
    },
}

/// Asks the namespace thread for sockets to reach the upstreams.
#[derive(Clone)]
pub(super) struct SocketOpener {
    requests: mpsc::Sender<Request>,
}

impl SocketOpener {
    /// A UDP socket on a fresh port, connected to `peer` so the kernel only
    /// lets that peer's datagrams (and ICMP errors) through.
    pub async fn udp(&self, peer: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Udp { peer, reply })?;
        let socket = answer.await.map_err(|_| gone())??;
        tokio::net::UdpSocket::from_std(socket)
    }

    /// A TCP connection to `peer`, made from the sandbox.
    pub async fn tcp(&self, peer: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Tcp {
            v6: peer.is_ipv6(),
            reply,
        })?;
        let socket = answer.await.map_err(|_| gone())??;
        // The socket was only created in the namespace; connecting is async.
        tokio::net::TcpSocket::from_std_stream(socket)
            .connect(peer)
            .await
    }

    fn send(&self, request: Request) -> io::Result<()> {
        self.requests.send(request).map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::other("resolver namespace thread has exited")
}

/// Starts the namespace thread for `sandbox`, which binds the listeners.
pub(super) async fn enter(
    sandbox: &str,
    netns_path: &Path,
) -> Result<(Listeners, SocketOpener), ResolverError> {
    let (ready, listening) = oneshot::channel();
    let (requests, queue) = mpsc::channel();
    let path = netns_path.to_owned();
    let owner = sandbox.to_owned();
    let name: String = format!("dns-{sandbox}").chars().take(15).collect();
    std::thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let listeners = match bind_in(&owner, &path) {
                Ok(listeners) => listeners,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            if ready.send(Ok(listeners)).is_ok() {
                serve_requests(queue);
            }
        })
        .map_err(|source| ResolverError::Thread {
            sandbox: sandbox.to_owned(),
            source,
        })?;
    let listeners = listening.await.map_err(|_| ResolverError::Thread {
        sandbox: sandbox.to_owned(),
        source: gone(),
    })??;
    Ok((listeners, SocketOpener { requests }))
}

/// Runs on the namespace thread: enter the namespace and bind both listeners.
fn bind_in(sandbox: &str, path: &Path) -> Result<Listeners, ResolverError> {
    let namespace_error = |source: io::Error| ResolverError::Namespace {
        path: path.to_owned(),
        source,
    };
    let ns = File::open(path).map_err(namespace_error)?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| namespace_error(e.into()))?;
    let addr = SocketAddr::from((RESOLVER_IP, 53));
    let bind_error = |proto, source| ResolverError::Bind {
        sandbox: sandbox.to_owned(),
        proto,
        addr,
        source,
    };
    let udp = UdpSocket::bind(addr).map_err(|e| bind_error("udp", e))?;
    udp.set_nonblocking(true)
        .map_err(|e| bind_error("udp", e))?;
    // std sets SO_REUSEADDR, so a restarted resolver can rebind at once.
    let tcp = TcpListener::bind(addr).map_err(|e| bind_error("tcp", e))?;
    tcp.set_nonblocking(true)
        .map_err(|e| bind_error("tcp", e))?;
    Ok(Listeners { udp, tcp })
}

/// Runs on the namespace thread until every opener is dropped.
fn serve_requests(queue: mpsc::Receiver<Request>) {
    for request in queue {
        // A requester that gave up (timeout, shutdown) just drops the socket.
        match request {
            Request::Udp { peer, reply } => {
                let _ = reply.send(open_udp(peer));
            }
            Request::Tcp { v6, reply } => {
                let _ = reply.send(open_tcp(v6));
            }
        }
    }
}

fn open_udp(peer: SocketAddr) -> io::Result<UdpSocket> {
    let local = if peer.is_ipv6() {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(peer)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn open_tcp(v6: bool) -> io::Result<TcpStream> {
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(TcpStream::from(fd))
}
