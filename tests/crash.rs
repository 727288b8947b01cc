//! Crash recovery: a seeded workload against berthd, SIGKILLed at random
//! moments (many of them while a request is in flight), restarted each time,
//! and checked against the kernel after every restart: everything the API
//! lists is present, nothing in the kernel belongs to an object the API does
//! not list, nothing is held twice, and every stored document parses.
//!
//! `BERTH_CRASH_SEED=N` replays one run; `BERTH_CRASH_KILLS=N` sets the
//! number of kill points (default 30).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{http, Daemon, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const DEFAULT_KILLS: u32 = 30;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One step of the workload: a request and how long after sending it the
/// daemon may be killed (drawn per kill point).
#[derive(Debug, Clone)]
enum Op {
    CreateNetwork(String),
    DeleteNetwork(String),
}

impl Op {
    fn request(&self) -> (&'static str, String, Option<Value>) {
        match self {
            Op::CreateNetwork(name) => (
                "POST",
                "/networks/create".into(),
                Some(json!({"Name": name, "Labels": {"crash": "1"}})),
            ),
            Op::DeleteNetwork(name) => ("DELETE", format!("/networks/{name}"), None),
        }
    }

    /// Upper bound of the kill delay: about the operation's own duration,
    /// so that most kills land inside it.
    fn window(&self) -> Duration {
        match self {
            Op::CreateNetwork(_) => Duration::from_millis(20),
            Op::DeleteNetwork(_) => Duration::from_millis(60),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::CreateNetwork(_) => "network create",
            Op::DeleteNetwork(_) => "network delete",
        }
    }
}

/// Picks the next operation from what the API lists now.
fn next_op(rng: &mut StdRng, d: &Daemon, counter: &mut u32) -> Op {
    let ours: Vec<String> = custom_networks(d).into_keys().collect();
    if ours.len() < 2 || (ours.len() < 8 && rng.random_bool(0.6)) {
        *counter += 1;
        Op::CreateNetwork(format!("crash{counter}"))
    } else {
        Op::DeleteNetwork(ours[rng.random_range(0..ours.len())].clone())
    }
}

/// Sends `op` on a thread, kills the daemon `delay` later, restarts it.
/// Returns whether the kill landed while the request was in flight.
fn kill_during(d: &mut Daemon, op: &Op, delay: Duration) -> bool {
    let socket = d.paths.socket.clone();
    let (method, path, body) = op.request();
    let request = thread::spawn(move || send(&socket, method, &path, body.as_ref()));
    thread::sleep(delay);
    let in_flight = !request.is_finished();
    d.kill();
    let _ = request.join().unwrap();
    d.launch();
    in_flight
}

fn send(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let ct = body.map(|_| "application/json");
    http(socket, method, path, ct, bytes)
}

// ------------------------------------------------------------- invariants

/// Custom networks the API lists: name -> inspect JSON.
fn custom_networks(d: &Daemon) -> BTreeMap<String, Value> {
    let list = d.get("/networks");
    assert_eq!(list.status, 200, "{}", list.text());
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !["bridge", "host", "none"].contains(&n["Name"].as_str().unwrap()))
        .map(|n| (n["Name"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

fn bridge_of(net: &Value) -> String {
    net["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("br-{}", &net["Id"].as_str().unwrap()[..12]))
}

fn subnet_of(net: &Value) -> (u32, u8) {
    let cidr = net["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    let (addr, prefix) = cidr.split_once('/').unwrap();
    (
        u32::from(addr.parse::<Ipv4Addr>().unwrap()),
        prefix.parse().unwrap(),
    )
}

fn overlaps((a, pa): (u32, u8), (b, pb): (u32, u8)) -> bool {
    let p = pa.min(pb);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a & mask == b & mask
}

/// Links in the daemon's namespace: name -> master's name.
fn links(d: &Daemon) -> BTreeMap<String, Option<String>> {
    let all = d.ip_json(&["-d", "link", "show"]);
    let all = all.as_array().unwrap();
    all.iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_string(),
                l["master"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Bridge names `-i`/`-o` mention in our chains.
fn bridges_in_rules(rules: &str) -> BTreeSet<String> {
    let mut bridges = BTreeSet::new();
    for line in rules.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "-i" | "-o") && pair[1].starts_with("br-") {
                bridges.insert(pair[1].to_string());
            }
        }
    }
    bridges
}

fn check_invariants(d: &Daemon, at: &str) {
    let nets = custom_networks(d);
    let links = links(d);
    let rules = d.iptables_save();

    // Every listed network is fully in the kernel.
    for (name, net) in &nets {
        let bridge = bridge_of(net);
        assert!(
            links.contains_key(&bridge),
            "{at}: {name}: bridge {bridge} missing"
        );
        let isolation = format!(
            "-A DOCKER-ISOLATION-STAGE-1 -i {bridge} ! -o {bridge} -j DOCKER-ISOLATION-STAGE-2"
        );
        assert!(
            rules.contains(&isolation),
            "{at}: {name}: rules missing:\n{rules}"
        );
    }
    // Nothing in the kernel belongs to an unlisted network.
    let listed: BTreeSet<String> = nets.values().map(bridge_of).collect();
    for link in links.keys().filter(|l| l.starts_with("br-")) {
        assert!(listed.contains(link), "{at}: orphan bridge {link}");
    }
    for bridge in bridges_in_rules(&rules) {
        assert!(
            listed.contains(&bridge),
            "{at}: rules of unknown bridge {bridge}:\n{rules}"
        );
    }
    for (link, master) in &links {
        if let Some(master) = master {
            assert!(
                master == "docker0" || listed.contains(master),
                "{at}: {link} enslaved to unknown {master}"
            );
        }
    }
    // No rule twice.
    let mut seen = BTreeSet::new();
    for line in rules.lines().filter(|l| l.starts_with("-A ")) {
        assert!(seen.insert(line), "{at}: duplicate rule {line}");
    }
    // No subnet held twice (the default bridge's included).
    let bridge = d.get("/networks/bridge").json();
    let mut subnets: Vec<(String, (u32, u8))> = nets
        .iter()
        .map(|(n, v)| (n.clone(), subnet_of(v)))
        .collect();
    subnets.push(("bridge".into(), subnet_of(&bridge)));
    for (i, (a, sa)) in subnets.iter().enumerate() {
        for (b, sb) in &subnets[i + 1..] {
            assert!(!overlaps(*sa, *sb), "{at}: {a} and {b} overlap");
        }
    }
    // Every stored document parses.
    check_store(&d.paths.data_root, at);
}

fn check_store(dir: &Path, at: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            check_store(&path, at);
        } else if path.extension().is_some_and(|e| e == "json")
            && !path.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            let text = std::fs::read(&path).unwrap();
            assert!(
                serde_json::from_slice::<Value>(&text).is_ok(),
                "{at}: {} does not parse",
                path.display()
            );
        }
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_daemon() {
    let seed = env_or("BERTH_CRASH_SEED", rand::random::<u64>());
    let kills = env_or("BERTH_CRASH_KILLS", DEFAULT_KILLS);
    eprintln!("crash test: seed {seed}, {kills} kill points (BERTH_CRASH_SEED={seed} replays)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut d = Daemon::start();
    let mut counter = 0;
    let mut inside: BTreeMap<&'static str, u32> = BTreeMap::new();
    for point in 0..kills {
        // A few undisturbed steps between kills, so the state grows.
        for _ in 0..rng.random_range(0..3) {
            let op = next_op(&mut rng, &d, &mut counter);
            let (method, path, body) = op.request();
            let reply = d.request(method, &path, body.as_ref());
            assert!(
                reply.status < 300,
                "{op:?}: {} {}",
                reply.status,
                reply.text()
            );
        }
        let op = next_op(&mut rng, &d, &mut counter);
        let delay = op.window().mul_f64(rng.random::<f64>());
        let before: BTreeSet<String> = custom_networks(&d).into_keys().collect();
        if kill_during(&mut d, &op, delay) {
            *inside.entry(op.kind()).or_default() += 1;
        }
        let at = format!("kill point {point} ({op:?} after {delay:?})");
        check_invariants(&d, &at);
        // Nothing acknowledged is lost; the interrupted step happened or not.
        let after: BTreeSet<String> = custom_networks(&d).into_keys().collect();
        let mut done = before.clone();
        match &op {
            Op::CreateNetwork(name) => done.insert(name.clone()),
            Op::DeleteNetwork(name) => done.remove(name),
        };
        assert!(
            after == before || after == done,
            "{at}: networks were {before:?}, now {after:?}"
        );
    }
    // Still fully usable afterwards.
    let reply = d.post("/networks/create", &json!({"Name": "after-crashes"}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(d.delete("/networks/after-crashes").status, 204);
    for name in custom_networks(&d).keys() {
        assert_eq!(d.delete(&format!("/networks/{name}")).status, 204);
    }
    check_invariants(&d, "after removing everything");
    eprintln!("crash test: {kills} kill points survived; inside a request: {inside:?}");
}
