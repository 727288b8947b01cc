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
