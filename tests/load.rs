//! Concurrency under load: 8 clients at once, for a bounded time, doing a
//! mixed workload against one berthd. Afterwards: no 5xx was answered, no
//! address or subnet is held twice, the kernel matches the API, and the p99
//! latency of each call is reported.
//!
//! `BERTH_LOAD_SECS=N` sets the duration (default 8 s).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::invariants::{check_invariants, custom_networks};
use common::{http, Daemon};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const CLIENTS: usize = 8;
/// Networks one client keeps at most: the default pools hold 31 subnets
/// (172.17-31/16 and sixteen /20s of 192.168/16), docker0 takes one.
const PER_CLIENT: usize = 3;

/// Latencies per call kind, and every answer that was a 5xx.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    server_errors: Vec<String>,
}

struct Client {
    socket: PathBuf,
    tally: Arc<Mutex<Tally>>,
}

impl Client {
    fn call(
        &self,
        kind: &'static str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let ct = body.as_ref().map(|_| "application/json");
        let started = Instant::now();
        let reply = http(&self.socket, method, path, ct, bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let took = started.elapsed();
        let mut tally = self.tally.lock().unwrap();
        tally.latencies.entry(kind).or_default().push(took);
        if reply.status >= 500 {
            tally.server_errors.push(format!(
                "{method} {path} -> {} {}",
                reply.status,
                reply.text()
            ));
        }
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, json)
    }

    /// One client's loop: its own networks, created, looked at, deleted.
    fn run(&self, client: usize, until: Instant) -> usize {
        let mut rng = StdRng::seed_from_u64(client as u64);
        let mut mine: Vec<String> = Vec::new();
        let mut counter = 0;
        let mut calls = 0;
        while Instant::now() < until {
            calls += 1;
            let roll = rng.random_range(0..10);
            if mine.is_empty() || (roll < 4 && mine.len() < PER_CLIENT) {
                counter += 1;
                let name = format!("load-{client}-{counter}");
                let (status, body) = self.call(
                    "network create",
                    "POST",
                    "/networks/create",
                    Some(json!({"Name": name, "Labels": {"load": "1"}})),
                );
                assert_eq!(status, 201, "create {name}: {body}");
                mine.push(name);
            } else if roll < 6 {
                let name = mine.remove(rng.random_range(0..mine.len()));
                let (status, body) = self.call(
                    "network delete",
                    "DELETE",
                    &format!("/networks/{name}"),
                    None,
                );
                assert_eq!(status, 204, "delete {name}: {body}");
            } else if roll < 8 {
                let name = &mine[rng.random_range(0..mine.len())];
                let (status, body) =
                    self.call("network inspect", "GET", &format!("/networks/{name}"), None);
                assert_eq!(status, 200, "inspect {name}: {body}");
                assert_eq!(body["Name"], json!(name));
            } else {
                let (status, _) = self.call("network list", "GET", "/networks", None);
                assert_eq!(status, 200);
            }
        }
        for name in mine {
            let (status, body) = self.call(
                "network delete",
                "DELETE",
                &format!("/networks/{name}"),
                None,
            );
            assert_eq!(status, 204, "delete {name}: {body}");
        }
        calls
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[test]
fn eight_clients_at_once_get_no_5xx_and_leave_a_consistent_state() {
    let secs: u64 = std::env::var("BERTH_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let d = Daemon::start();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let until = Instant::now() + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let client = Client {
                socket: d.paths.socket.clone(),
                tally: tally.clone(),
            };
            thread::spawn(move || client.run(i, until))
        })
        .collect();
    let calls: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();

    let tally = tally.lock().unwrap();
    assert!(
        tally.server_errors.is_empty(),
        "5xx answers: {:#?}",
        tally.server_errors
    );
    check_invariants(&d, "after the load");
    assert!(custom_networks(&d).is_empty(), "networks left behind");
    eprintln!("load: {CLIENTS} clients, {secs} s, {calls} operations, 0 5xx");
    for (kind, latencies) in &tally.latencies {
        let mut sorted = latencies.clone();
        sorted.sort();
        eprintln!(
            "load: {kind:16} n={:5} p50={:?} p99={:?}",
            sorted.len(),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99)
        );
    }
}
