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
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::invariants::{check_invariants, custom_networks};
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
    /// Start a created container (published port, on a network).
    StartContainer(String),
    RemoveContainer(String),
    Connect {
        network: String,
        container: String,
    },
    Disconnect {
        network: String,
        container: String,
    },
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
            Op::StartContainer(name) => ("POST", format!("/containers/{name}/start"), None),
            Op::RemoveContainer(name) => ("DELETE", format!("/containers/{name}?force=1"), None),
            Op::Connect { network, container } => (
                "POST",
                format!("/networks/{network}/connect"),
                Some(json!({"Container": container})),
            ),
            Op::Disconnect { network, container } => (
                "POST",
                format!("/networks/{network}/disconnect"),
                Some(json!({"Container": container, "Force": true})),
            ),
        }
    }

    /// Upper bound of the kill delay: about the operation's own duration,
    /// so that most kills land inside it.
    fn window(&self) -> Duration {
        match self {
            Op::CreateNetwork(_) => Duration::from_millis(20),
            Op::DeleteNetwork(_) => Duration::from_millis(60),
            Op::StartContainer(_) => Duration::from_millis(300),
            Op::RemoveContainer(_) => Duration::from_millis(200),
            Op::Connect { .. } => Duration::from_millis(20),
            Op::Disconnect { .. } => Duration::from_millis(40),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::CreateNetwork(_) => "network create",
            Op::DeleteNetwork(_) => "network delete",
            Op::StartContainer(_) => "container start",
            Op::RemoveContainer(_) => "container remove",
            Op::Connect { .. } => "connect",
            Op::Disconnect { .. } => "disconnect",
        }
    }
}

/// Containers the API lists: name -> (running, networks).
fn containers(d: &Daemon) -> BTreeMap<String, (bool, Vec<String>)> {
    d.get("/containers/json?all=1")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["Names"][0]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string();
            let running = c["State"] == "running";
            let nets = c["NetworkSettings"]["Networks"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (name, (running, nets))
        })
        .collect()
}

/// Creates (undisturbed) a container with a published port on `network`;
/// every other one comes back by itself after a restart.
fn create_container(d: &Daemon, name: &str, network: &str, port: u16, always: bool) {
    let body = json!({
        "Image": "busybox",
        "Cmd": ["sleep", "600"],
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {
            "NetworkMode": network,
            "PortBindings": {"80/tcp": [{"HostPort": port.to_string()}]},
            "RestartPolicy": {"Name": if always { "always" } else { "no" }},
        },
    });
    let reply = d.post(&format!("/containers/create?name={name}"), &body);
    assert_eq!(reply.status, 201, "create {name}: {}", reply.text());
}

/// Picks the next operation from what the API lists now; may create a
/// container first (not a kill point: creating only writes a record).
fn next_op(rng: &mut StdRng, d: &Daemon, counter: &mut u32) -> Op {
    let nets = custom_networks(d);
    let ctrs = containers(d);
    let in_use: BTreeSet<&String> = ctrs.values().flat_map(|(_, n)| n).collect();
    let free_nets: Vec<&String> = nets.keys().filter(|n| !in_use.contains(n)).collect();
    let running: Vec<&String> = ctrs
        .iter()
        .filter(|(_, (r, _))| *r)
        .map(|(n, _)| n)
        .collect();
    match rng.random_range(0..10) {
        0..=2 if nets.len() < 2 || (nets.len() < 6 && rng.random_bool(0.7)) => {
            *counter += 1;
            Op::CreateNetwork(format!("crash{counter}"))
        }
        0..=2 if !free_nets.is_empty() => {
            Op::DeleteNetwork(free_nets[rng.random_range(0..free_nets.len())].clone())
        }
        3..=5 if ctrs.len() < 4 => {
            *counter += 1;
            let name = format!("ctr{counter}");
            let mut choices: Vec<&str> = nets.keys().map(String::as_str).collect();
            choices.push("bridge");
            let network = choices[rng.random_range(0..choices.len())];
            create_container(
                d,
                &name,
                network,
                20000 + *counter as u16,
                rng.random_bool(0.5),
            );
            Op::StartContainer(name)
        }
        3..=6 if !ctrs.is_empty() => {
            let names: Vec<&String> = ctrs.keys().collect();
            Op::RemoveContainer(names[rng.random_range(0..names.len())].clone())
        }
        7..=9 if !running.is_empty() && !nets.is_empty() => {
            let container = running[rng.random_range(0..running.len())].clone();
            let attached = &ctrs[&container].1;
            let candidates: Vec<&String> = nets.keys().collect();
            let network = candidates[rng.random_range(0..candidates.len())].clone();
            if attached.contains(&network) && attached.len() > 1 {
                Op::Disconnect { network, container }
            } else if attached.contains(&network) {
                Op::RemoveContainer(container)
            } else {
                Op::Connect { network, container }
            }
        }
        _ => {
            *counter += 1;
            Op::CreateNetwork(format!("crash{counter}"))
        }
    }
}

/// What became of the request a kill point cut.
struct Cut {
    /// The kill landed while the request was in flight.
    in_flight: bool,
    /// The daemon answered it with success before it died.
    acknowledged: bool,
}

/// Sends `op` on a thread, kills the daemon `delay` later, restarts it.
fn kill_during(d: &mut Daemon, op: &Op, delay: Duration) -> Cut {
    let socket = d.paths.socket.clone();
    let (method, path, body) = op.request();
    let request = thread::spawn(move || send(&socket, method, &path, body.as_ref()));
    thread::sleep(delay);
    let in_flight = !request.is_finished();
    d.kill();
    let acknowledged = request.join().unwrap().is_ok_and(|r| r.status < 300);
    d.launch();
    Cut {
        in_flight,
        acknowledged,
    }
}

fn send(socket: &Path, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let ct = body.map(|_| "application/json");
    http(socket, method, path, ct, bytes)
}

#[test]
fn sigkill_at_random_moments_leaves_a_consistent_daemon() {
    let seed = env_or("BERTH_CRASH_SEED", rand::random::<u64>());
    let kills = env_or("BERTH_CRASH_KILLS", DEFAULT_KILLS);
    eprintln!("crash test: seed {seed}, {kills} kill points (BERTH_CRASH_SEED={seed} replays)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut d = Daemon::start();
    d.import_busybox();
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
        let running_before: BTreeSet<String> = containers(&d)
            .into_iter()
            .filter(|(_, (running, _))| *running)
            .map(|(name, _)| name)
            .collect();
        let ctrs_before: BTreeSet<String> = containers(&d).into_keys().collect();
        let cut = kill_during(&mut d, &op, delay);
        if cut.in_flight {
            *inside.entry(op.kind()).or_default() += 1;
        }
        let at = format!("kill point {point} ({op:?} after {delay:?})");
        check_invariants(&d, &at);
        // Nothing acknowledged is lost; the interrupted step happened or not.
        let after: BTreeSet<String> = custom_networks(&d).into_keys().collect();
        let mut done = before.clone();
        match &op {
            Op::CreateNetwork(name) => {
                done.insert(name.clone());
            }
            Op::DeleteNetwork(name) => {
                done.remove(name);
            }
            _ => {}
        }
        let ctrs_after: BTreeSet<String> = containers(&d).into_keys().collect();
        for name in ctrs_before.difference(&ctrs_after) {
            assert!(
                matches!(&op, Op::RemoveContainer(n) if n == name),
                "{at}: container {name} lost"
            );
        }
        // Containers that ran and always restart are back (but the one a
        // forced removal was killing when the daemon died).
        for name in running_before.intersection(&ctrs_after) {
            if matches!(&op, Op::RemoveContainer(n) if n == name) {
                continue;
            }
            let c = d.get(&format!("/containers/{name}/json")).json();
            if c["HostConfig"]["RestartPolicy"]["Name"] == "always" {
                assert_eq!(
                    c["State"]["Running"], true,
                    "{at}: {name} did not come back: {}",
                    c["State"]
                );
            }
        }
        // A start cut short can be done again.
        if let Op::StartContainer(name) = &op {
            let reply = d.post(&format!("/containers/{name}/start"), &json!({}));
            assert!(
                matches!(reply.status, 204 | 304),
                "{at}: start {name} again: {} {}",
                reply.status,
                reply.text()
            );
            check_invariants(&d, &format!("{at}, started again"));
        }
        assert!(
            after == before || after == done,
            "{at}: networks were {before:?}, now {after:?}"
        );
        // What was answered with success happened, whatever came after.
        if cut.acknowledged {
            assert_eq!(
                after, done,
                "{at}: acknowledged, yet networks are {after:?}"
            );
            if let Op::RemoveContainer(name) = &op {
                assert!(
                    !ctrs_after.contains(name),
                    "{at}: acknowledged removal of {name} undone"
                );
            }
        }
    }
    // The random points must have cut a network create and a container
    // start at least once each; where luck did not, cut one on purpose.
    for kind in ["network create", "container start"] {
        for attempt in 0..10 {
            if inside.get(kind).copied().unwrap_or(0) > 0 {
                break;
            }
            counter += 1;
            let op = if kind == "network create" {
                Op::CreateNetwork(format!("crash{counter}"))
            } else {
                let name = format!("ctr{counter}");
                create_container(&d, &name, "bridge", 20000 + counter as u16, false);
                Op::StartContainer(name)
            };
            let delay = op.window().mul_f64(0.3);
            if kill_during(&mut d, &op, delay).in_flight {
                *inside.entry(op.kind()).or_default() += 1;
            }
            check_invariants(
                &d,
                &format!("extra kill point {attempt} ({op:?} after {delay:?})"),
            );
        }
        assert!(
            inside.get(kind).copied().unwrap_or(0) > 0,
            "no kill landed inside a {kind}"
        );
    }
    // Still fully usable afterwards.
    let reply = d.post("/networks/create", &json!({"Name": "after-crashes"}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(d.delete("/networks/after-crashes").status, 204);
    for name in containers(&d).keys() {
        let reply = d.delete(&format!("/containers/{name}?force=1"));
        assert_eq!(reply.status, 204, "{}", reply.text());
    }
    for name in custom_networks(&d).keys() {
        assert_eq!(d.delete(&format!("/networks/{name}")).status, 204);
    }
    check_invariants(&d, "after removing everything");
    eprintln!("crash test: {kills} kill points survived; inside a request: {inside:?}");
}
