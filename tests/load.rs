//! Concurrency under load: 8 clients at once, for a bounded time, doing a
//! mixed workload of networks and containers against one berthd.
//! Afterwards: no 5xx was answered, no address, subnet or port is held
//! twice, the kernel matches the API, and the p99 latency of each call is
//! reported. A second test sends SIGTERM in the middle of such a load: the
//! containers are stopped and the kernel is left clean.
//!
//! `BERTH_LOAD_SECS=N` sets the duration (default 8 s).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// Containers one client keeps at most.
const CONTAINERS_PER_CLIENT: usize = 2;

/// Latencies per call kind, and every answer that was a 5xx.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    server_errors: Vec<String>,
}

struct Client {
    id: usize,
    socket: PathBuf,
    tally: Arc<Mutex<Tally>>,
    /// Set when the daemon is being stopped under the client's feet: from
    /// then on failed calls end the loop instead of failing the test.
    stopping: Arc<AtomicBool>,
}

/// A client's own container: its name and the networks it is on.
struct Ctr {
    name: String,
    networks: Vec<String>,
}

/// Why a client's loop ended early.
struct Stopped;

impl Client {
    fn call(
        &self,
        kind: &'static str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Stopped> {
        let bytes = body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let ct = body.as_ref().map(|_| "application/json");
        let started = Instant::now();
        let reply = match http(&self.socket, method, path, ct, bytes) {
            Ok(reply) => reply,
            Err(_) if self.stopping.load(Ordering::Relaxed) => return Err(Stopped),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let took = started.elapsed();
        let mut tally = self.tally.lock().unwrap();
        if reply.status >= 500 {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            tally.server_errors.push(format!(
                "{method} {path} -> {} {}",
                reply.status,
                reply.text()
            ));
        }
        tally.latencies.entry(kind).or_default().push(took);
        let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Ok((reply.status, json))
    }

    /// `call`, expecting `want`; a different answer fails the test unless
    /// the daemon is stopping.
    fn expect(
        &self,
        want: &[u16],
        kind: &'static str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Stopped> {
        let (status, answer) = self.call(kind, method, path, body)?;
        if !want.contains(&status) {
            if self.stopping.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            panic!("client {}: {method} {path}: {status} {answer}", self.id);
        }
        Ok(answer)
    }

    /// One client's loop over its own networks and containers; what it
    /// made is left in place for the checks that follow.
    fn run(&self, until: Instant) -> usize {
        let mut nets: Vec<String> = Vec::new();
        let mut ctrs: Vec<Ctr> = Vec::new();
        self.work(until, &mut nets, &mut ctrs).unwrap_or(0)
    }

    fn work(
        &self,
        until: Instant,
        nets: &mut Vec<String>,
        ctrs: &mut Vec<Ctr>,
    ) -> Result<usize, Stopped> {
        let client = self.id;
        let mut rng = StdRng::seed_from_u64(client as u64);
        let mut counter = 0;
        let mut calls = 0;
        while Instant::now() < until {
            calls += 1;
            counter += 1;
            let used: Vec<&String> = ctrs.iter().flat_map(|c| &c.networks).collect();
            let free: Vec<String> = nets.iter().filter(|n| !used.contains(n)).cloned().collect();
            match rng.random_range(0..12) {
                0..=1 if nets.len() < PER_CLIENT => {
                    let name = format!("load-{client}-{counter}");
                    let body = json!({"Name": name, "Labels": {"load": "1"}});
                    self.expect(
                        &[201],
                        "network create",
                        "POST",
                        "/networks/create",
                        Some(body),
                    )?;
                    nets.push(name);
                }
                2 if !free.is_empty() => {
                    let name = &free[rng.random_range(0..free.len())];
                    let path = format!("/networks/{name}");
                    self.expect(&[204], "network delete", "DELETE", &path, None)?;
                    nets.retain(|n| n != name);
                }
                3..=4 if ctrs.len() < CONTAINERS_PER_CLIENT && !nets.is_empty() => {
                    let name = format!("lc-{client}-{counter}");
                    let network = nets[rng.random_range(0..nets.len())].clone();
                    let body = json!({
                        "Image": "busybox",
                        "Cmd": ["sleep", "600"],
                        "StopTimeout": 1,
                        "ExposedPorts": {"80/tcp": {}},
                        "HostConfig": {
                            "NetworkMode": network,
                            "PortBindings": {"80/tcp": [{"HostPort": ""}]},
                        },
                    });
                    let path = format!("/containers/create?name={name}");
                    self.expect(&[201], "container create", "POST", &path, Some(body))?;
                    let path = format!("/containers/{name}/start");
                    self.expect(&[204], "container start", "POST", &path, None)?;
                    ctrs.push(Ctr {
                        name,
                        networks: vec![network],
                    });
                }
                5 if !ctrs.is_empty() => {
                    let c = ctrs.remove(rng.random_range(0..ctrs.len()));
                    let path = format!("/containers/{}?force=1", c.name);
                    self.expect(&[204], "container remove", "DELETE", &path, None)?;
                }
                6..=7 if !ctrs.is_empty() && !nets.is_empty() => {
                    let i = rng.random_range(0..ctrs.len());
                    let network = nets[rng.random_range(0..nets.len())].clone();
                    let c = &mut ctrs[i];
                    if !c.networks.contains(&network) {
                        let path = format!("/networks/{network}/connect");
                        let body = json!({"Container": c.name});
                        self.expect(&[200], "connect", "POST", &path, Some(body))?;
                        c.networks.push(network);
                    } else if c.networks.len() > 1 {
                        let path = format!("/networks/{network}/disconnect");
                        let body = json!({"Container": c.name});
                        self.expect(&[200], "disconnect", "POST", &path, Some(body))?;
                        c.networks.retain(|n| n != &network);
                    }
                }
                8 if !ctrs.is_empty() => {
                    let c = &ctrs[rng.random_range(0..ctrs.len())];
                    let path = format!("/containers/{}/json", c.name);
                    let body = self.expect(&[200], "container inspect", "GET", &path, None)?;
                    assert_eq!(body["State"]["Running"], true, "{body}");
                }
                9 => {
                    self.expect(&[200], "container list", "GET", "/containers/json", None)?;
                }
                10 if !nets.is_empty() => {
                    let name = &nets[rng.random_range(0..nets.len())];
                    let path = format!("/networks/{name}");
                    let body = self.expect(&[200], "network inspect", "GET", &path, None)?;
                    assert_eq!(body["Name"], json!(name));
                }
                _ => {
                    self.expect(&[200], "network list", "GET", "/networks", None)?;
                }
            }
        }
        Ok(calls)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn load_secs() -> u64 {
    std::env::var("BERTH_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// Starts the clients; they run until `until` or until the daemon stops.
fn start_clients(
    d: &Daemon,
    tally: &Arc<Mutex<Tally>>,
    stopping: &Arc<AtomicBool>,
    until: Instant,
) -> Vec<thread::JoinHandle<usize>> {
    (0..CLIENTS)
        .map(|id| {
            let client = Client {
                id,
                socket: d.paths.socket.clone(),
                tally: tally.clone(),
                stopping: stopping.clone(),
            };
            thread::spawn(move || client.run(until))
        })
        .collect()
}

#[test]
fn eight_clients_at_once_get_no_5xx_and_leave_a_consistent_state() {
    let secs = load_secs();
    let d = Daemon::start();
    d.import_busybox();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stopping = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(secs);
    let clients = start_clients(&d, &tally, &stopping, until);
    let calls: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();

    let tally = tally.lock().unwrap();
    assert!(
        tally.server_errors.is_empty(),
        "5xx answers: {:#?}",
        tally.server_errors
    );
    // Checked with everything the clients made still in place, then again
    // once it is all removed.
    check_invariants(&d, "after the load");
    for c in d.get("/containers/json?all=1").json().as_array().unwrap() {
        let id = c["Id"].as_str().unwrap();
        assert_eq!(d.delete(&format!("/containers/{id}?force=1")).status, 204);
    }
    for name in custom_networks(&d).keys() {
        assert_eq!(d.delete(&format!("/networks/{name}")).status, 204);
    }
    check_invariants(&d, "after removing everything");
    eprintln!("load: {CLIENTS} clients, {secs} s, {calls} operations, 0 5xx");
    for (kind, latencies) in &tally.latencies {
        let mut sorted = latencies.clone();
        sorted.sort();
        eprintln!(
            "load: {kind:17} n={:5} p50={:?} p99={:?}",
            sorted.len(),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99)
        );
    }
}

#[test]
fn sigterm_under_load_stops_containers_and_leaves_the_kernel_clean() {
    let mut d = Daemon::start();
    d.import_busybox();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stopping = Arc::new(AtomicBool::new(false));
    let clients = start_clients(
        &d,
        &tally,
        &stopping,
        Instant::now() + Duration::from_secs(120),
    );
    // Let containers come up, then stop the daemon in the middle of it all.
    common::eventually("containers running under load", || {
        d.get("/containers/json").json().as_array().unwrap().len() >= CLIENTS / 2
    });
    stopping.store(true, Ordering::Relaxed);
    let status = d.stop();
    assert!(
        status.success(),
        "berthd stopped with {status}:\n{}",
        d.log()
    );
    for c in clients {
        c.join().unwrap();
    }

    // Nothing of any container is left in the kernel.
    let links = d.ip_json(&["link", "show"]);
    let veths: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("veth"))
        .collect();
    assert!(veths.is_empty(), "veths left: {veths:?}");
    let rules = d.iptables_save();
    assert!(!rules.contains("-j DNAT"), "port rules left:\n{rules}");
    let netns: Vec<_> = std::fs::read_dir(d.paths.exec_root.join("netns"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(netns.is_empty(), "namespace mounts left: {netns:?}");
    let root = d.paths.root.display().to_string();
    let overlays: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root) && l.contains(" - overlay "))
        .map(str::to_owned)
        .collect();
    assert!(overlays.is_empty(), "overlay mounts left: {overlays:#?}");

    // Started again, every container is found stopped and all is consistent.
    d.launch();
    let all = d.get("/containers/json?all=1").json();
    assert!(!all.as_array().unwrap().is_empty());
    for c in all.as_array().unwrap() {
        assert_ne!(c["State"], "running", "{c}");
    }
    check_invariants(&d, "after the restart");
}
