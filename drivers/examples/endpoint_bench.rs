//! Measures endpoint plumbing in throwaway namespaces (run as root):
//!
//! - veth creation with the peer made directly in the sandbox (what Berth
//!   does) against create on the daemon side + move + rename (what dockerd
//!   does), the pair ending as `eth0` in the sandbox either way;
//! - `create_netns` for each sandbox;
//! - the bridge driver's `join` and `leave`, one sandbox per endpoint;
//! - iptables: ROUNDS rules as one `iptables` process each against one
//!   `iptables-restore --noflush` batch, and the firewall's per-network
//!   `add_network`/`remove_network` (each one snapshot + one batch).
//!
//! `cargo run -p drivers --example endpoint_bench [ROUNDS]` (default 50);
//! prints the median, min and max of each in microseconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drivers::bridge::{BridgeConfig, BridgeDriver};
use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netcontroller::driver::Driver;
use netcontroller::firewall::{BridgeRules, Firewall, FirewallOptions};
use netcontroller::model::{EndpointSpec, IpamPool, JoinSpec, MacAddr, NetworkSpec};
use netcontroller::osl::{create_netns, delete_netns, run_in_netns, NetlinkHandle, VethPair};
use rtnetlink::{LinkUnspec, LinkVeth};

/// Namespaces made by the benchmark, removed on drop.
struct Namespaces {
    dir: tempfile::TempDir,
    made: Vec<PathBuf>,
}

impl Namespaces {
    fn create(&mut self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        create_netns(&path).expect("create netns");
        self.made.push(path.clone());
        path
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for path in &self.made {
            let _ = delete_netns(path);
        }
    }
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{label:<44} median {:>8.0} us   min {:>8.0} us   max {:>8.0} us   (n={})",
        us(samples[samples.len() / 2]),
        us(samples[0]),
        us(samples[samples.len() - 1]),
        samples.len()
    );
}

/// A raw rtnetlink handle on the namespace at `path`, for the dockerd-style path.
fn raw_handle(path: &Path) -> rtnetlink::Handle {
    let rt = tokio::runtime::Handle::current();
    let (conn, handle, _) = run_in_netns(path, || {
        let _guard = rt.enter();
        rtnetlink::new_connection().expect("netlink socket")
    })
    .expect("enter netns");
    tokio::spawn(conn);
    handle
}

async fn veth_direct(daemon: &NetlinkHandle, sandbox: &Path, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let pair = VethPair {
            host_name: "vethbench",
            host_master: None,
            peer_name: "eth0",
            peer_mac: None,
            mtu: 1500,
        };
        let started = Instant::now();
        daemon
            .create_veth_into_netns(&pair, sandbox)
            .await
            .expect("veth");
        samples.push(started.elapsed());
        daemon.delete_link("vethbench").await.expect("delete");
    }
    samples
}

async fn veth_move_rename(daemon: &Path, sandbox: &Path, rounds: usize) -> Vec<Duration> {
    let (host, inside) = (raw_handle(daemon), raw_handle(sandbox));
    let ns = File::open(sandbox).expect("open sandbox");
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        host.link()
            .add(LinkVeth::new("vethbench", "vethbenchp").mtu(1500).build())
            .execute()
            .await
            .expect("create pair");
        host.link()
            .set(
                LinkUnspec::new_with_name("vethbenchp")
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .expect("move peer");
        let peer = inside
            .link()
            .get()
            .match_name("vethbenchp")
            .execute()
            .try_next()
            .await
            .expect("find peer")
            .expect("peer moved");
        inside
            .link()
            .set(
                LinkUnspec::new_with_index(peer.header.index)
                    .name("eth0")
                    .build(),
            )
            .execute()
            .await
            .expect("rename peer");
        samples.push(started.elapsed());
        host.link()
            .del_with_message(LinkUnspec::new_with_name("vethbench").build())
            .execute()
            .await
            .expect("delete");
    }
    samples
}

fn iptables(args: &[&str]) {
    let status = Command::new("iptables")
        .args(args)
        .status()
        .expect("run iptables");
    assert!(status.success(), "iptables {args:?}");
}

/// The source address of the bench's i-th rule.
fn source(i: usize) -> String {
    format!("10.201.{}.{}/32", i / 250, i % 250 + 1)
}

/// Each `iptables` call's duration, one process per rule.
fn per_rule(op: &str, rounds: usize) -> Vec<Duration> {
    (0..rounds)
        .map(|i| {
            let started = Instant::now();
            iptables(&["-w", op, "BENCH-ONE", "-s", &source(i), "-j", "ACCEPT"]);
            started.elapsed()
        })
        .collect()
}

/// `rounds` rules added to, then deleted from, a fresh chain with one
/// `iptables-restore --noflush` each way.
fn batched(rounds: usize) -> (Duration, Duration) {
    let script = |op: &str| {
        let mut text = String::from("*filter\n");
        for i in 0..rounds {
            text.push_str(&format!("{op} BENCH-BATCH -s {} -j ACCEPT\n", source(i)));
        }
        text.push_str("COMMIT\n");
        text
    };
    iptables(&["-w", "-N", "BENCH-BATCH"]);
    let added = restore(&script("-A"));
    let deleted = restore(&script("-D"));
    iptables(&["-w", "-X", "BENCH-BATCH"]);
    (added, deleted)
}

fn restore(script: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run iptables-restore");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "iptables-restore");
    started.elapsed()
}

/// The firewall's per-network calls, `rounds` networks added then removed.
fn firewall_networks(rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let fw = Firewall::new(FirewallOptions {
        userland_proxy: true,
        forward_policy_drop: true,
    });
    fw.setup_base().expect("base chains");
    let nets: Vec<BridgeRules> = (0..rounds)
        .map(|i| BridgeRules {
            bridge: format!("br-bench{i:05}"),
            subnet: Ipv4Network::new(
                std::net::Ipv4Addr::new(10, 210 + (i / 250) as u8, (i % 250) as u8, 0),
                24,
            )
            .unwrap(),
            icc: true,
            masquerade: true,
            internal: false,
        })
        .collect();
    let timed = |f: &dyn Fn(&BridgeRules)| {
        nets.iter()
            .map(|n| {
                let started = Instant::now();
                f(n);
                started.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let added = timed(&|n| fw.add_network(n).expect("add_network"));
    let removed = timed(&|n| fw.remove_network(n).expect("remove_network"));
    (added, removed)
}

fn spec(rounds: usize) -> NetworkSpec {
    let subnet: Ipv4Network = "10.200.0.0/16".parse().unwrap();
    assert!(rounds < 65000, "too many rounds for one /16");
    NetworkSpec {
        id: "be9c000000000000000000000000000000000000000000000000000000000000".into(),
        name: "bench".into(),
        driver: "bridge".into(),
        ipv4: vec![IpamPool {
            subnet,
            gateway: subnet.nth(1).unwrap(),
            ip_range: None,
            aux_addresses: BTreeMap::new(),
            user_subnet: true,
            user_gateway: false,
        }],
        internal: false,
        attachable: false,
        enable_ipv6: false,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
        created: String::new(),
    }
}

fn endpoint(net: &NetworkSpec, host: u32) -> EndpointSpec {
    let pool = &net.ipv4[0];
    let ip = pool.subnet.nth(host).unwrap();
    EndpointSpec {
        id: format!("{host:064x}"),
        name: format!("ep{host}"),
        network_id: net.id.clone(),
        ipv4: Some(Ipv4Network::new(ip, pool.subnet.prefix()).unwrap()),
        gateway: Some(pool.gateway),
        mac: MacAddr::from_ipv4(ip),
        aliases: vec![],
        port_bindings: vec![],
    }
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS must be a number"))
        .unwrap_or(50);
    let mut spaces = Namespaces {
        dir: tempfile::Builder::new()
            .prefix("berth-endpoint-bench")
            .tempdir()
            .expect("temp dir"),
        made: vec![],
    };
    let daemon_path = spaces.create("daemon");
    let bench_sandbox = spaces.create("veth-sandbox");
    let daemon = NetlinkHandle::for_netns(&daemon_path)
        .await
        .expect("daemon handle");

    summary(
        "veth, peer made in the sandbox (one request)",
        veth_direct(&daemon, &bench_sandbox, rounds).await,
    );
    summary(
        "veth, create + move + rename (dockerd's way)",
        veth_move_rename(&daemon_path, &bench_sandbox, rounds).await,
    );

    let driver = BridgeDriver::new(BridgeConfig::default(), daemon.clone());
    let net = spec(rounds);
    driver.create_network(&net).await.expect("network");
    let mut netns_times = Vec::with_capacity(rounds);
    let sandboxes: Vec<PathBuf> = (0..rounds)
        .map(|i| {
            let started = Instant::now();
            let path = spaces.create(&format!("sandbox{i}"));
            netns_times.push(started.elapsed());
            path
        })
        .collect();
    summary("sandbox namespace create (create_netns)", netns_times);
    let mut joined = Vec::with_capacity(rounds);
    let mut join_times = Vec::with_capacity(rounds);
    for (i, sandbox) in sandboxes.iter().enumerate() {
        let ep = endpoint(&net, i as u32 + 2);
        let join = JoinSpec {
            sandbox_id: format!("sb{i}"),
            netns_path: sandbox.clone(),
            ifname: "eth0".into(),
            default_route: true,
        };
        let started = Instant::now();
        let info = driver.join(&net, &ep, &join).await.expect("join");
        join_times.push(started.elapsed());
        joined.push((ep, info));
    }
    let mut leave_times = Vec::with_capacity(rounds);
    for (ep, info) in &joined {
        let started = Instant::now();
        driver.leave(&net, ep, info).await.expect("leave");
        leave_times.push(started.elapsed());
    }
    summary("bridge join (veth, address, up, route)", join_times);
    summary("bridge leave", leave_times);
    driver.delete_network(&net).await.expect("delete network");

    // iptables acts on the calling thread's namespace: run in the daemon's.
    run_in_netns(&daemon_path, || {
        let total = |samples: &[Duration]| samples.iter().sum::<Duration>().as_secs_f64() * 1e6;
        iptables(&["-w", "-N", "BENCH-ONE"]);
        let appended = per_rule("-A", rounds);
        let deleted = per_rule("-D", rounds);
        iptables(&["-w", "-X", "BENCH-ONE"]);
        let (batch_added, batch_deleted) = batched(rounds);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{rounds} rules: iptables -A per rule {:.0} us, -D per rule {:.0} us; \
             iptables-restore batch -A {:.0} us, -D {:.0} us",
            total(&appended),
            total(&deleted),
            us(batch_added),
            us(batch_deleted)
        );
        summary("iptables -A, one process per rule (each)", appended);
        summary("iptables -D, one process per rule (each)", deleted);
        let (added, removed) = firewall_networks(rounds);
        summary("firewall add_network (one batch)", added);
        summary("firewall remove_network (one batch)", removed);
    })
    .expect("enter the daemon namespace");
}
