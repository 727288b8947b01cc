//! The embedded DNS of user-defined networks, as users meet it: containers
//! run by the real docker CLI resolve each other's names and aliases at
//! 127.0.0.11, and everything else is forwarded to an upstream server that
//! the test runs in its world namespace (`--dns 10.99.0.2`).

mod common;

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Daemon, WORLD_ADDR};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nix::sched::{setns, CloneFlags};

/// The only name the upstream knows, and its address.
const OUTSIDE: &str = "outside.example";
const OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// A tiny authoritative-looking DNS server on WORLD_ADDR:53 (UDP) inside
/// the world namespace: `outside.example` has OUTSIDE_ADDR, every other
/// name is NXDOMAIN. Stopped (socket closed) by `stop` or on drop.
struct Upstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(world_ns: PathBuf) -> Upstream {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            setns(File::open(world_ns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
            let socket = UdpSocket::bind(SocketAddr::from((WORLD_ADDR, 53))).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                let (len, peer) = match socket.recv_from(&mut buf) {
                    Ok(got) => got,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(e) => panic!("upstream recv: {e}"),
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let reply = upstream_answer(&query);
                socket.send_to(&reply.to_vec().unwrap(), peer).unwrap();
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream DNS server started");
        Upstream {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn upstream_answer(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let Some(question) = query.queries.first().cloned() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(question.clone());
    let asked = question.name.to_ascii().to_lowercase();
    if asked.trim_end_matches('.') != OUTSIDE {
        reply.metadata.response_code = ResponseCode::NXDomain;
    } else if question.query_type == RecordType::A {
        reply.add_answer(Record::from_rdata(
            question.name.clone(),
            60,
            RData::A(A(OUTSIDE_ADDR)),
        ));
    }
    reply
}

fn daemon_with_upstream() -> (Daemon, Upstream) {
    let dns = WORLD_ADDR.to_string();
    let d = Daemon::builder()
        .flags(&["--dns", &dns])
        .with_world()
        .start();
    d.import_busybox();
    let upstream = Upstream::start(d.world().ns.path());
    (d, upstream)
}

/// `nslookup NAME` from a throwaway container on `network`: (success, output).
fn nslookup(d: &Daemon, network: &str, name: &str) -> (bool, String) {
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        network,
        "busybox",
        "nslookup",
        name,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The addresses in the answer section of busybox nslookup's output (the
/// server's own `Address: 127.0.0.11:53` line is skipped).
fn answered(output: &str) -> Vec<Ipv4Addr> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn ip_on(d: &Daemon, container: &str, network: &str) -> Ipv4Addr {
    let template = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    d.docker_ok(&["inspect", "-f", &template, container])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{container} has no address on {network}: {e}"))
}

fn run_detached(d: &Daemon, name: &str, args: &[&str]) {
    let mut full = vec!["run", "-d", "--name", name];
    full.extend_from_slice(args);
    full.extend_from_slice(&["busybox", "sleep", "600"]);
    d.docker_ok(&full);
}

#[test]
fn names_and_aliases_resolve_within_a_network_and_follow_the_lifecycle() {
    let (d, mut upstream) = daemon_with_upstream();
    d.docker_ok(&["network", "create", "front"]);
    d.docker_ok(&["network", "create", "back"]);
    run_detached(
        &d,
        "web",
        &["--network", "front", "--network-alias", "site"],
    );
    run_detached(
        &d,
        "web2",
        &["--network", "front", "--network-alias", "site"],
    );
    run_detached(&d, "other", &["--network", "back"]);
    let web = ip_on(&d, "web", "front");
    let web2 = ip_on(&d, "web2", "front");

    // By name, by name.network, by short id, and ping by alias.
    let (ok, out) = nslookup(&d, "front", "web");
    assert!(ok && answered(&out) == [web], "{out}");
    let (ok, out) = nslookup(&d, "front", "web.front");
    assert!(ok && answered(&out) == [web], "{out}");
    let id = d.docker_ok(&["inspect", "-f", "{{.Id}}", "web"]);
    let (ok, out) = nslookup(&d, "front", &id.trim()[..12]);
    assert!(ok && answered(&out) == [web], "{out}");
    d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "site",
    ]);

    // A shared alias answers every container that holds it.
    let (ok, out) = nslookup(&d, "front", "site");
    let mut got = answered(&out);
    got.sort();
    let mut want = vec![web, web2];
    want.sort();
    assert!(ok && got == want, "{out}");

    // Reverse lookup names the container on its network.
    let (ok, out) = nslookup(&d, "front", &web.to_string());
    assert!(ok && out.contains("web.front"), "{out}");

    // Another network does not see the name: the upstream says NXDOMAIN.
    let (ok, out) = nslookup(&d, "back", "web");
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");

    // Names that are not ours are forwarded to the upstream.
    let (ok, out) = nslookup(&d, "front", OUTSIDE);
    assert!(ok && answered(&out) == [OUTSIDE_ADDR], "{out}");

    // A stopped container stops resolving at once; the alias keeps the other.
    d.docker_ok(&["stop", "-t", "0", "web"]);
    let (ok, out) = nslookup(&d, "front", "web");
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");
    let (ok, out) = nslookup(&d, "front", "site");
    assert!(ok && answered(&out) == [web2], "{out}");

    // So does a disconnected one.
    d.docker_ok(&["network", "disconnect", "front", "web2"]);
    let (ok, out) = nslookup(&d, "front", "web2");
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");

    // With the upstream gone the answer is SERVFAIL, not a hang.
    upstream.stop();
    let (ok, out) = nslookup(&d, "front", OUTSIDE);
    assert!(!ok && out.contains("SERVFAIL"), "{out}");

    // The default bridge keeps dockerd's behaviour: the configured servers.
    let resolv = d.docker_ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {WORLD_ADDR}")) && !resolv.contains("127.0.0.11"),
        "{resolv}"
    );
}

/// Sends `query` for `name` over UDP to 127.0.0.11 from inside `netns`.
fn query_in(netns: &str, garbage: Vec<Vec<u8>>, name: &str) -> Message {
    let netns = netns.to_owned();
    let name = Name::from_ascii(name).unwrap();
    std::thread::spawn(move || {
        setns(File::open(netns).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        let resolver = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.connect(resolver).unwrap();
        for packet in &garbage {
            udp.send(packet).unwrap();
        }
        // Garbage over TCP too: a length prefix promising more than follows,
        // then the connection is dropped.
        let mut tcp = TcpStream::connect(resolver).unwrap();
        tcp.write_all(&[0x01, 0x00, 0xde, 0xad]).unwrap();
        drop(tcp);

        let mut query = Message::new(0x4242, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name, RecordType::A));
        udp.send(&query.to_vec().unwrap()).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let len = udp.recv(&mut buf).expect("an answer after the garbage");
            let reply = Message::from_vec(&buf[..len]).unwrap();
            if reply.metadata.id == 0x4242 {
                return reply;
            }
        }
    })
    .join()
    .unwrap()
}

#[test]
fn malformed_packets_do_not_stop_the_resolver() {
    let (d, _upstream) = daemon_with_upstream();
    d.docker_ok(&["network", "create", "net"]);
    run_detached(&d, "db", &["--network", "net"]);
    run_detached(&d, "client", &["--network", "net"]);
    let db = ip_on(&d, "db", "net");
    let sandbox = d.docker_ok(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "client"]);

    let garbage = vec![
        Vec::new(),
        vec![0xff; 3],
        vec![0x00; 12],
        (0..=255u8).collect(),
        vec![0xab; 4000],
        // A header claiming 65535 questions with none following.
        vec![0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
    ];
    let reply = query_in(sandbox.trim(), garbage, "db.");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let addrs: Vec<Ipv4Addr> = reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(addrs, [db]);

    // And containers still resolve through the CLI afterwards.
    let (ok, out) = nslookup(&d, "net", "db");
    assert!(ok && answered(&out) == [db], "{out}");
}

#[test]
fn a_containers_own_dns_is_where_its_embedded_dns_forwards() {
    // The daemon's upstreams (the host's resolv.conf) are out of reach from
    // this namespace; only the container's --dns leads to the test's server.
    let d = Daemon::builder().with_world().start();
    d.import_busybox();
    let _upstream = Upstream::start(d.world().ns.path());
    d.docker_ok(&["network", "create", "net"]);
    let dns = WORLD_ADDR.to_string();
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "net",
        "--dns",
        &dns,
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup outside.example",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("nameserver 127.0.0.11"), "{text}");
    assert_eq!(answered(&text), [OUTSIDE_ADDR], "{text}");
}
