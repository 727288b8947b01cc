//! The embedded resolver against real clients, inside namespaces the tests
//! make: a "sandbox" namespace where the resolver listens on 127.0.0.11, and
//! for forwarding a "world" namespace joined by a veth where a tiny upstream
//! answers. Needs root; never touches the host's namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use netcontroller::error::{ErrorKind, Kind};
use netcontroller::resolver::{NameBook, Resolver, ResolverConfig};
use nix::sched::{setns, CloneFlags};

const WEB: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);
const DB: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 3);
/// The upstream's fixed answer for any name it is asked.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// Addresses on the veth between sandbox and world (TEST-NET-1, ours only).
const SANDBOX_IP: &str = "192.0.2.2/24";
const WORLD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A name whose UDP answer the upstream truncates; its TCP answer has this many addresses.
const BIG: &str = "big.example.";
const BIG_COUNT: u8 = 40;
/// Generous client patience: the assertions are about answers, not speed.
const CLIENT_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- namespaces

/// A network namespace named `berth-test-dns-<random>`, lo up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("berth-test-dns-{:08x}", rand::random::<u32>());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a fresh thread that has entered the namespace at `path`.
fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_owned();
    std::thread::spawn(move || {
        setns(File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `in_ns` from async code, without blocking a runtime worker.
async fn in_ns_async<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || in_ns(&path, f))
        .await
        .unwrap()
}

/// A sandbox namespace and a world namespace joined by a veth.
struct Wired {
    sandbox: Netns,
    world: Netns,
}

impl Wired {
    fn new() -> Wired {
        let wired = Wired {
            sandbox: Netns::new(),
            world: Netns::new(),
        };
        let (s, w) = (wired.sandbox.name.as_str(), wired.world.name.as_str());
        run(
            "ip",
            &[
                "-n", s, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", w,
            ],
        );
        run("ip", &["-n", s, "addr", "add", SANDBOX_IP, "dev", "eth0"]);
        run(
            "ip",
            &["-n", w, "addr", "add", "192.0.2.1/24", "dev", "eth0"],
        );
        run("ip", &["-n", s, "link", "set", "eth0", "up"]);
        run("ip", &["-n", w, "link", "set", "eth0", "up"]);
        wired
    }
}

// ---------------------------------------------------------------- name book

struct Book {
    names: HashMap<&'static str, Vec<Ipv4Addr>>,
}

impl NameBook for Book {
    fn lookup_v4(&self, _asker: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        self.names.get(name).cloned()
    }
    fn lookup_ptr(&self, _asker: &str, ip: Ipv4Addr) -> Option<String> {
        (ip == WEB).then(|| "web.mynet".to_string())
    }
}

fn book() -> Arc<dyn NameBook> {
    Arc::new(Book {
        names: HashMap::from([
            ("web", vec![WEB]),
            ("web.mynet", vec![WEB]),
            ("shared", vec![WEB, DB]),
        ]),
    })
}

fn config(upstreams: Vec<SocketAddr>, timeout: Duration) -> ResolverConfig {
    ResolverConfig { upstreams, timeout }
}

fn no_upstreams() -> ResolverConfig {
    config(Vec::new(), Duration::from_secs(2))
}

fn world_upstream() -> Vec<SocketAddr> {
    vec![SocketAddr::from((WORLD_IP, 53))]
}

// ---------------------------------------------------------------- client

fn query(id: u16, name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg
}

fn resolver_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53))
}

/// Sends `msg` over UDP to 127.0.0.11 from inside the current namespace and
/// waits for the answer with the same id.
fn ask_udp(msg: &Message) -> Message {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
    socket
        .send_to(&msg.to_vec().unwrap(), resolver_addr())
        .unwrap();
    let mut buf = [0u8; 65535];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("no answer from resolver");
        let reply = Message::from_vec(&buf[..n]).unwrap();
        if reply.metadata.id == msg.metadata.id {
            return reply;
        }
    }
}

fn write_framed(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
}

fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn a_addrs(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- upstream

/// A fixed upstream in the world namespace: every A query gets [`EXTERNAL`];
/// [`BIG`] is truncated over UDP and answered in full over TCP.
struct Upstream {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    fn start(world: &Netns) -> Upstream {
        let (udp, tcp) = in_ns(&world.path(), || {
            let addr = SocketAddr::from((WORLD_IP, 53));
            (
                UdpSocket::bind(addr).unwrap(),
                TcpListener::bind(addr).unwrap(),
            )
        });
        // Short waits so the threads notice `stop` promptly.
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_stop = stop.clone();
        let tcp_stop = stop.clone();
        let threads = vec![
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !udp_stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                        if let Some(reply) = upstream_reply(&buf[..n], false) {
                            let _ = udp.send_to(&reply, peer);
                        }
                    }
                }
            }),
            std::thread::spawn(move || {
                while !tcp_stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
                            while let Ok(packet) = read_framed(&mut stream) {
                                if let Some(reply) = upstream_reply(&packet, true) {
                                    write_framed(&mut stream, &reply);
                                }
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }),
        ];
        Upstream { stop, threads }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn upstream_reply(packet: &[u8], over_tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    if question.query_type == RecordType::A {
        if question.name == Name::from_ascii(BIG).unwrap() {
            if over_tcp {
                for i in 0..BIG_COUNT {
                    reply.add_answer(Record::from_rdata(
                        question.name.clone(),
                        60,
                        RData::A(A(Ipv4Addr::new(203, 0, 113, 100 + i))),
                    ));
                }
            } else {
                reply.metadata.truncation = true;
            }
        } else {
            reply.add_answer(Record::from_rdata(
                question.name.clone(),
                60,
                RData::A(A(EXTERNAL)),
            ));
        }
    }
    reply.to_vec().ok()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_nslookup_finds_a_container_name() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-busybox", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let netns_arg = format!("--net={}", ns.path().display());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("nsenter")
            .args([&netns_arg, "/bin/busybox", "nslookup", "web", "127.0.0.11"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nslookup failed: {stdout}");
    assert!(stdout.contains("Address: 172.20.0.2"), "{stdout}");
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_aaaa_and_ptr_for_known_names() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-known", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let (a, aaaa, ptr) = in_ns_async(&ns.path(), || {
        (
            ask_udp(&query(1, "Web.MyNet.", RecordType::A)),
            ask_udp(&query(2, "web.", RecordType::AAAA)),
            ask_udp(&query(3, "2.0.20.172.in-addr.arpa.", RecordType::PTR)),
        )
    })
    .await;

    assert_eq!(a.metadata.id, 1);
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.metadata.recursion_desired && a.metadata.recursion_available);
    assert_eq!(a_addrs(&a), vec![WEB]);
    assert_eq!(a.answers[0].ttl, 600);

    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());

    assert_eq!(ptr.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ptr.answers.len(), 1);
    assert_eq!(
        ptr.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("web.mynet.").unwrap()))
    );
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_alias_gets_both_addresses_round_robin() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-alias", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let (first, second) = in_ns_async(&ns.path(), || {
        (
            ask_udp(&query(1, "shared.", RecordType::A)),
            ask_udp(&query(2, "shared.", RecordType::A)),
        )
    })
    .await;
    let (first, second) = (a_addrs(&first), a_addrs(&second));
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, vec![WEB, DB]);
    assert_eq!(second, vec![first[1], first[0]], "not rotated");
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_forwarded_and_truncated_answers_retried_over_tcp() {
    let wired = Wired::new();
    let _upstream = Upstream::start(&wired.world);
    let resolver = Resolver::start(
        "sb-forward",
        &wired.sandbox.path(),
        book(),
        config(world_upstream(), Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let (external, big, big_small_client) = in_ns_async(&wired.sandbox.path(), || {
        let mut big = query(2, BIG, RecordType::A);
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        big.set_edns(edns);
        (
            ask_udp(&query(1, "ext.example.", RecordType::A)),
            ask_udp(&big),
            ask_udp(&query(3, BIG, RecordType::A)),
        )
    })
    .await;

    assert_eq!(external.metadata.id, 1);
    assert_eq!(external.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_addrs(&external), vec![EXTERNAL]);

    // The upstream truncates BIG over UDP; only its TCP answer has addresses.
    assert!(!big.metadata.truncation);
    assert_eq!(a_addrs(&big).len(), usize::from(BIG_COUNT));

    // A client without EDNS cannot take 40 records in 512 bytes: TC, so it retries over TCP.
    assert!(big_small_client.metadata.truncation);
    assert_eq!(big_small_client.metadata.id, 3);
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_when_the_upstream_is_down_or_silent() {
    let wired = Wired::new();
    // Down: nothing listens, the world answers with ICMP port unreachable.
    let down = Resolver::start(
        "sb-down",
        &wired.sandbox.path(),
        book(),
        config(world_upstream(), Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let reply = in_ns_async(&wired.sandbox.path(), || {
        ask_udp(&query(1, "ext.example.", RecordType::A))
    })
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.metadata.id, 1);
    down.stop().await;

    // Silent: a socket that never reads; only the resolver's timeout ends the wait.
    let _silent = in_ns(&wired.world.path(), || {
        UdpSocket::bind(SocketAddr::from((WORLD_IP, 53))).unwrap()
    });
    let silent = Resolver::start(
        "sb-silent",
        &wired.sandbox.path(),
        book(),
        config(world_upstream(), Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let reply = in_ns_async(&wired.sandbox.path(), || {
        ask_udp(&query(2, "ext.example.", RecordType::A))
    })
    .await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(reply.metadata.id, 2);
    silent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_get_several_answers_per_connection() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-tcp", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let replies = in_ns_async(&ns.path(), || {
        let mut stream = TcpStream::connect(resolver_addr()).unwrap();
        stream.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
        let mut replies = Vec::new();
        for (id, name) in [(1, "web."), (2, "shared."), (3, "web.mynet.")] {
            write_framed(
                &mut stream,
                &query(id, name, RecordType::A).to_vec().unwrap(),
            );
            replies.push(Message::from_vec(&read_framed(&mut stream).unwrap()).unwrap());
        }
        replies
    })
    .await;
    assert_eq!(
        replies.iter().map(|r| r.metadata.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(a_addrs(&replies[0]), vec![WEB]);
    assert_eq!(a_addrs(&replies[1]).len(), 2);
    assert_eq!(a_addrs(&replies[2]), vec![WEB]);
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_survived_and_broken_queries_get_formerr() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-garbage", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let (formerr, after) = in_ns_async(&ns.path(), || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for len in [0usize, 1, 5, 11, 300, 4000] {
            let junk: Vec<u8> = (0..len).map(|_| rand::random::<u8>() | 0x80).collect();
            socket.send_to(&junk, resolver_addr()).unwrap();
        }
        // Garbage over TCP too: a framed message that is not DNS.
        let mut stream = TcpStream::connect(resolver_addr()).unwrap();
        write_framed(&mut stream, &[0xff; 7]);
        // A query header followed by a broken question.
        let mut broken = query(0x4242, "web.", RecordType::A).to_vec().unwrap();
        broken.truncate(broken.len() - 2);
        socket.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
        socket.send_to(&broken, resolver_addr()).unwrap();
        let mut buf = [0u8; 512];
        let formerr = loop {
            let (n, _) = socket.recv_from(&mut buf).unwrap();
            let reply = Message::from_vec(&buf[..n]).unwrap();
            if reply.metadata.id == 0x4242 {
                break reply;
            }
        };
        (formerr, ask_udp(&query(7, "web.", RecordType::A)))
    })
    .await;
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(a_addrs(&after), vec![WEB]);
    resolver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_is_exclusive_and_stop_frees_it() {
    let ns = Netns::new();
    let first = Resolver::start("sb-stop", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let second = Resolver::start("sb-stop-2", &ns.path(), book(), no_upstreams()).await;
    assert_eq!(second.err().unwrap().kind(), ErrorKind::Conflict);

    // An open TCP client must not keep the port busy after stop.
    let path = ns.path();
    let client = in_ns_async(&path, || TcpStream::connect(resolver_addr()).unwrap()).await;
    first.stop().await;
    // Other tests in this binary spawn processes meanwhile: a child between
    // fork and exec briefly holds every descriptor, CLOEXEC or not, so the
    // port may stay taken for that moment; it must come free all the same.
    in_ns_async(&path, || {
        let free =
            || UdpSocket::bind(resolver_addr()).and(TcpListener::bind(resolver_addr()).map(|_| ()));
        let mut last = free();
        for _ in 0..100 {
            if last.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            last = free();
        }
        last.expect("127.0.0.11:53 still taken after stop");
    })
    .await;
    drop(client);

    let again = Resolver::start("sb-stop", &path, book(), no_upstreams())
        .await
        .unwrap();
    let reply = in_ns_async(&path, || ask_udp(&query(1, "web.", RecordType::A))).await;
    assert_eq!(a_addrs(&reply), vec![WEB]);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespace_is_not_found() {
    let missing = PathBuf::from("/var/run/netns/berth-test-dns-does-not-exist");
    let err = Resolver::start("sb-missing", &missing, book(), no_upstreams())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

// ---------------------------------------------------------------- measurement

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 200 queries in a row, and 100 resolvers at once, are all answered right;
/// prints the latency of an internal-name query and the memory one resolver
/// costs (`-- --nocapture` to see them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queries_and_many_resolvers_are_answered() {
    let ns = Netns::new();
    let resolver = Resolver::start("sb-measure", &ns.path(), book(), no_upstreams())
        .await
        .unwrap();
    let mut rtts = in_ns_async(&ns.path(), || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
        socket.connect(resolver_addr()).unwrap();
        let mut buf = [0u8; 512];
        (0..200u16)
            .map(|id| {
                let packet = query(id, "web.mynet.", RecordType::A).to_vec().unwrap();
                let start = std::time::Instant::now();
                socket.send(&packet).unwrap();
                let n = socket.recv(&mut buf).unwrap();
                let rtt = start.elapsed();
                let reply = Message::from_vec(&buf[..n]).unwrap();
                assert_eq!((reply.metadata.id, a_addrs(&reply)), (id, vec![WEB]));
                rtt
            })
            .collect::<Vec<_>>()
    })
    .await;
    rtts.sort();
    eprintln!(
        "internal name over UDP, 200 queries: median {:?}, p90 {:?}, max {:?}",
        rtts[100], rtts[180], rtts[199]
    );
    resolver.stop().await;

    const COUNT: usize = 100;
    let spaces: Vec<Netns> = (0..COUNT).map(|_| Netns::new()).collect();
    let before = rss_kib();
    let mut resolvers = Vec::new();
    for (i, ns) in spaces.iter().enumerate() {
        let id = format!("sb-many-{i}");
        resolvers.push(
            Resolver::start(&id, &ns.path(), book(), no_upstreams())
                .await
                .unwrap(),
        );
    }
    // One query each, so every resolver has served once.
    for ns in &spaces {
        let reply = in_ns_async(&ns.path(), || ask_udp(&query(1, "web.", RecordType::A))).await;
        assert_eq!(a_addrs(&reply), vec![WEB]);
    }
    let after = rss_kib();
    eprintln!(
        "{COUNT} resolvers: RSS {before} KiB -> {after} KiB, about {} KiB each",
        (after.saturating_sub(before)) / COUNT as u64
    );
    for resolver in resolvers {
        resolver.stop().await;
    }
}
