//! Real packets through bridge networks made by the driver with the iptables
//! firewall plugged in, as the daemon wires it: sandboxes are bare network
//! namespaces (no containers), a "world" namespace joined to the daemon's by
//! a veth stands for the outside network.
//!
//! The firewall runs iptables in the calling thread's namespace, so each test
//! drives the driver from a thread that entered the daemon's namespace.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::{driver, endpoint, join_spec, network, Netns};
use drivers::bridge::{BridgeConfig, BridgeDriver, IptablesFirewall, OPT_ENABLE_ICC};
use netcontroller::driver::Driver;
use netcontroller::firewall::{Firewall, FirewallOptions};
use netcontroller::model::{JoinInfo, NetworkSpec};
use netcontroller::osl::run_in_netns;

const UPLINK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const WORLD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

/// The daemon's namespace (forwarding on, as the daemon sets it) and a world
/// namespace joined to it: `uplink0` 10.99.0.1/24 here, `eth0` 10.99.0.2/24
/// there. The world has no route to any bridge subnet, so only masqueraded
/// traffic can get answers.
struct Lab {
    daemon: Netns,
    world: Netns,
}

impl Lab {
    fn new() -> Lab {
        let (daemon, world) = (Netns::new(), Netns::new());
        daemon.sh("sysctl -qw net.ipv4.ip_forward=1");
        daemon.sh(&format!(
            "ip link add uplink0 type veth peer name eth0 netns {} && \
             ip addr add {UPLINK_ADDR}/24 dev uplink0 && ip link set uplink0 up",
            world.path().display()
        ));
        world.sh(&format!(
            "ip addr add {WORLD_ADDR}/24 dev eth0 && ip link set eth0 up"
        ));
        Lab { daemon, world }
    }

    /// Runs `body` with a bridge driver whose firewall programs iptables, on
    /// a thread inside the daemon's namespace.
    fn run<F, Fut>(&self, body: F)
    where
        F: FnOnce(BridgeDriver) -> Fut + Send,
        Fut: Future<Output = ()>,
    {
        run_in_netns(self.daemon.path(), || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let firewall = Firewall::new(FirewallOptions {
                    userland_proxy: true,
                    forward_policy_drop: true,
                });
                let firewall = IptablesFirewall::new(firewall).expect("base chains");
                let drv = driver(&self.daemon, BridgeConfig::default())
                    .await
                    .with_firewall(Arc::new(firewall));
                body(drv).await;
            })
        })
        .expect("enter the daemon's namespace");
    }
}

/// Joins a new sandbox to `net` at host index `host`, default route via the
/// network's gateway.
async fn sandbox(drv: &BridgeDriver, net: &NetworkSpec, host: u32) -> (Netns, JoinInfo) {
    let sb = Netns::new();
    let info = drv
        .join(net, &endpoint(net, host), &join_spec(&sb, "eth0", true))
        .await
        .expect("join");
    (sb, info)
}

fn address(net: &NetworkSpec, host: u32) -> Ipv4Addr {
    net.ipv4[0].subnet.nth(host).unwrap()
}

/// A TCP server in the world namespace that records the peer address and
/// first line of every connection, then closes it (so the client ends).
struct WorldServer {
    addr: SocketAddr,
    seen: mpsc::Receiver<(SocketAddr, String)>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WorldServer {
    fn start(world: &Netns) -> WorldServer {
        let listener = run_in_netns(world.path(), || TcpListener::bind((WORLD_ADDR, 0)))
            .expect("enter the world")
            .expect("bind in the world");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut line = String::new();
                        let mut reader = BufReader::new(stream);
                        reader.read_line(&mut line).unwrap();
                        // Recorded before the close that lets the client end.
                        tx.send((peer, line)).unwrap();
                        drop(reader);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        WorldServer {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The connections served so far.
    fn connections(&self) -> Vec<(SocketAddr, String)> {
        self.seen.try_iter().collect()
    }
}

impl Drop for WorldServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one line with busybox nc from the sandbox; true once the server has
/// taken it and closed (false when the connection cannot be made).
fn send_from(sb: &Netns, to: SocketAddr) -> bool {
    sb.try_sh(&format!(
        "echo hello | busybox nc -w 3 {} {}",
        to.ip(),
        to.port()
    ))
}

#[test]
fn sandboxes_on_one_bridge_ping_each_other_unless_icc_is_off() {
    let lab = Lab::new();
    lab.run(|drv| async move {
        let open = network("10.31.0.0/24", &[]);
        let closed = network("10.32.0.0/24", &[(OPT_ENABLE_ICC, "false")]);
        drv.create_network(&open).await.unwrap();
        drv.create_network(&closed).await.unwrap();
        let (a, _) = sandbox(&drv, &open, 2).await;
        let (b, _) = sandbox(&drv, &open, 3).await;
        let (c, _) = sandbox(&drv, &closed, 2).await;
        let (d, _) = sandbox(&drv, &closed, 3).await;

        assert!(a.ping(address(&open, 3)), "icc on: a -> b");
        assert!(b.ping(address(&open, 2)), "icc on: b -> a");
        // The sandboxes are plugged in: each reaches its gateway.
        assert!(c.ping(address(&closed, 1)), "c -> gateway");
        assert!(d.ping(address(&closed, 1)), "d -> gateway");
        assert!(!c.ping(address(&closed, 3)), "icc off: c -> d");
        assert!(!d.ping(address(&closed, 2)), "icc off: d -> c");
    });
}

#[test]
fn two_user_bridges_cannot_reach_each_other() {
    let lab = Lab::new();
    lab.run(|drv| async move {
        let first = network("10.33.0.0/24", &[]);
        let second = network("10.34.0.0/24", &[]);
        drv.create_network(&first).await.unwrap();
        drv.create_network(&second).await.unwrap();
        let (a, _) = sandbox(&drv, &first, 2).await;
        let (b, _) = sandbox(&drv, &second, 2).await;

        // Forwarding works for both: each reaches the world.
        assert!(a.ping(WORLD_ADDR), "a -> world");
        assert!(b.ping(WORLD_ADDR), "b -> world");
        assert!(!a.ping(address(&second, 2)), "a -> b across bridges");
        assert!(!b.ping(address(&first, 2)), "b -> a across bridges");
    });
}

#[test]
fn the_world_sees_masqueraded_traffic_and_nothing_from_an_internal_network() {
    let lab = Lab::new();
    let server = WorldServer::start(&lab.world);
    let target = server.addr;
    lab.run(|drv| async move {
        let outside = network("10.35.0.0/24", &[]);
        let mut inside = network("10.36.0.0/24", &[]);
        inside.internal = true;
        drv.create_network(&outside).await.unwrap();
        drv.create_network(&inside).await.unwrap();
        let (a, _) = sandbox(&drv, &outside, 2).await;
        let (b, _) = sandbox(&drv, &inside, 2).await;

        assert!(send_from(&a, target), "a -> world");
        let seen = server.connections();
        let peers: Vec<Ipv4Addr> = seen
            .iter()
            .map(|(peer, _)| match peer.ip() {
                std::net::IpAddr::V4(ip) => ip,
                other => panic!("IPv6 peer {other}"),
            })
            .collect();
        // The source is masqueraded to the uplink's address.
        assert_eq!(peers, [UPLINK_ADDR]);
        assert_eq!(seen[0].1, "hello\n");

        assert!(b.ping(address(&inside, 1)), "internal sandbox -> gateway");
        assert!(!send_from(&b, target), "internal -> world");
        assert!(!b.ping(WORLD_ADDR), "internal -> world (ping)");
        assert!(server.connections().is_empty(), "nothing reached the world");
    });
}
