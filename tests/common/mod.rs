//! The integration-test harness: every test runs the real `berthd` inside a
//! network namespace of its own, with its own data-root, exec-root, pidfile
//! and socket under a temp dir, and removes all of it when it ends (also on
//! panic). Nothing here touches the machine's own network namespace.
//!
//! ```ignore
//! let d = Daemon::builder().flags(&["--bip", "10.5.0.1/24"]).with_world().start();
//! assert_eq!(d.get("/_ping").status, 200);
//! let links = d.ip_json(&["link"]);
//! let out = d.docker_ok(&["network", "ls"]);
//! ```

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod invariants;
pub mod rootfs;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

pub use rootfs::busybox_tar;

pub const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

/// Upper bounds for waits, so a broken daemon fails a test instead of
/// hanging it. They are never asserted on.
const READY_BOUND: Duration = Duration::from_secs(60);
const EXIT_BOUND: Duration = Duration::from_secs(30);
const REQUEST_BOUND: Duration = Duration::from_secs(60);
const DOCKER_BOUND_SECS: &str = "120";
const POLL: Duration = Duration::from_millis(10);

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

fn check(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Network namespaces

/// A named network namespace (`ip netns add`), loopback up, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(prefix: &str) -> Netns {
        let name = unique(prefix);
        check(
            Command::new("ip")
                .args(["netns", "add", &name])
                .output()
                .expect("run ip"),
            "ip netns add",
        );
        let ns = Netns { name };
        ns.ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        check(
            self.run(program, args),
            &format!("{program} {args:?} in {}", self.name),
        )
    }

    /// `ip -j ARGS` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j"];
        full.extend_from_slice(args);
        let out = self.ok("ip", &full);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {out}"))
    }

    pub fn iptables_save(&self) -> String {
        self.ok("iptables-save", &[])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

/// A second namespace standing for the outside network, joined to the
/// daemon's by a veth pair: `uplink0` (10.99.0.1/24) in the daemon's
/// namespace, `eth0` (10.99.0.2/24) in the world's. The addresses are fixed:
/// every test has its own pair of namespaces.
pub struct World {
    pub ns: Netns,
}

pub const UPLINK_IF: &str = "uplink0";
pub const WORLD_IF: &str = "eth0";
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const WORLD_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const WORLD_PREFIX: u8 = 24;

impl World {
    fn join(host: &Netns) -> World {
        let world = World {
            ns: Netns::create("berth-w-"),
        };
        host.ok(
            "ip",
            &[
                "link",
                "add",
                UPLINK_IF,
                "type",
                "veth",
                "peer",
                "name",
                WORLD_IF,
                "netns",
                &world.ns.name,
            ],
        );
        host.ok(
            "ip",
            &[
                "addr",
                "add",
                &format!("{HOST_ADDR}/{WORLD_PREFIX}"),
                "dev",
                UPLINK_IF,
            ],
        );
        host.ok("ip", &["link", "set", UPLINK_IF, "up"]);
        world.ns.ok(
            "ip",
            &[
                "addr",
                "add",
                &format!("{WORLD_ADDR}/{WORLD_PREFIX}"),
                "dev",
                WORLD_IF,
            ],
        );
        world.ns.ok("ip", &["link", "set", WORLD_IF, "up"]);
        world
    }
}

// ---------------------------------------------------------------------------
// HTTP over the daemon's unix socket

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Percent-encodes everything but unreserved characters, so any string
/// becomes one valid path segment or query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One request on a fresh connection to `socket`.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Reply, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let exchange = async {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect {}: {e}", socket.display()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, "docker");
            if let Some(ct) = content_type {
                req = req.header(CONTENT_TYPE, ct);
            }
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_BOUND, exchange)
            .await
            .map_err(|_| format!("{method} {path}: no answer"))?
    })
}

// ---------------------------------------------------------------------------
// The daemon

/// Where a test daemon keeps everything. Only `root` and the harness's own
/// files (daemon.json, the log) exist before the daemon starts.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub socket: PathBuf,
    pub config_file: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    fn under(root: &Path) -> Paths {
        Paths {
            root: root.into(),
            data_root: root.join("data"),
            exec_root: root.join("exec"),
            pidfile: root.join("berthd.pid"),
            socket: root.join("berthd.sock"),
            config_file: root.join("daemon.json"),
            log: root.join("berthd.log"),
        }
    }

    /// The daemon's own paths that exist now (for "nothing was created").
    pub fn created(&self) -> Vec<PathBuf> {
        [
            &self.data_root,
            &self.exec_root,
            &self.pidfile,
            &self.socket,
        ]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .cloned()
        .collect()
    }
}

/// How to start a test daemon.
pub struct DaemonBuilder {
    flags: Vec<String>,
    daemon_json: String,
    world: bool,
    env: Vec<(String, String)>,
    uid: Option<u32>,
}

impl DaemonBuilder {
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.into());
        self
    }

    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// daemon.json's content (default `{}`).
    pub fn daemon_json(mut self, json: &str) -> Self {
        self.daemon_json = json.into();
        self
    }

    /// Adds a [`World`] namespace joined to the daemon's.
    pub fn with_world(mut self) -> Self {
        self.world = true;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs berthd as this (non-root) user.
    pub fn run_as_user(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Makes the namespace(s) and temp dir without starting berthd, so a
    /// test can arrange files first; then [`Daemon::launch`] or
    /// [`Daemon::run_to_exit`].
    pub fn prepare(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("temp dir");
        let paths = Paths::under(dir.path());
        fs::write(&paths.config_file, &self.daemon_json).expect("write daemon.json");
        let ns = Netns::create("berth-");
        let world = self.world.then(|| World::join(&ns));
        Daemon {
            child: None,
            flags: self.flags,
            env: self.env,
            uid: self.uid,
            paths,
            world,
            ns,
            dir,
        }
    }

    /// Starts berthd and waits until it answers `/_ping`.
    pub fn start(self) -> Daemon {
        let mut daemon = self.prepare();
        daemon.launch();
        daemon
    }

    /// Runs berthd expecting it to exit on its own (a refused start).
    pub fn run_to_exit(self) -> Exited {
        self.prepare().run_to_exit()
    }
}

/// The end of a berthd that exited on its own.
pub struct Exited {
    pub status: ExitStatus,
    /// Everything it wrote (stdout and stderr).
    pub stderr: String,
    /// Still holds the namespace and temp dir, for checks on what exists.
    pub daemon: Daemon,
}

/// A berthd running in its own network namespace.
pub struct Daemon {
    child: Option<Child>,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    uid: Option<u32>,
    pub paths: Paths,
    // Dropped in this order: world, daemon namespace, temp dir.
    world: Option<World>,
    pub ns: Netns,
    dir: TempDir,
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            flags: Vec::new(),
            daemon_json: "{}".into(),
            world: false,
            env: Vec::new(),
            uid: None,
        }
    }

    /// A daemon with default flags.
    pub fn start() -> Daemon {
        Daemon::builder().start()
    }

    /// Replaces the flags for the next [`Daemon::launch`] (a daemon started
    /// again with other settings on the same state).
    pub fn set_flags(&mut self, flags: &[&str]) {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
    }

    /// Sets an environment variable for the next [`Daemon::launch`].
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.into(), value.into()));
    }

    pub fn world(&self) -> &World {
        self.world.as_ref().expect("started without with_world()")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "berthd is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.log)
            .expect("open log");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.path().display()))
            .arg("--");
        if let Some(uid) = self.uid {
            cmd.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "--",
            ]);
        }
        let p = &self.paths;
        cmd.arg(BERTHD)
            .arg(format!("--data-root={}", p.data_root.display()))
            .arg(format!("--exec-root={}", p.exec_root.display()))
            .arg(format!("--pidfile={}", p.pidfile.display()))
            .arg(format!("--config-file={}", p.config_file.display()))
            .arg(format!("--host=unix://{}", p.socket.display()))
            .args(&self.flags)
            .env_remove("NOTIFY_SOCKET")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // nsenter and setpriv exec berthd: the child's pid is berthd's.
        self.child = Some(cmd.spawn().expect("spawn berthd"));
    }

    /// Runs berthd expecting it to exit on its own (a refused start).
    pub fn run_to_exit(mut self) -> Exited {
        self.spawn();
        let status = self
            .wait_exit(EXIT_BOUND)
            .unwrap_or_else(|| panic!("berthd kept running:\n{}", self.log()));
        Exited {
            status,
            stderr: self.log(),
            daemon: self,
        }
    }

    /// Starts berthd (again, after [`Daemon::stop`] or [`Daemon::kill`],
    /// with the same flags and directories) and waits until it answers.
    pub fn launch(&mut self) {
        self.spawn();
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("berthd exited during start-up ({status}):\n{}", self.log());
            }
            if self
                .try_request("GET", "/_ping")
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            assert!(
                started.elapsed() < READY_BOUND,
                "berthd did not answer /_ping:\n{}",
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd is not running").id()
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal).expect("signal berthd");
    }

    fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().expect("wait for berthd") {
                self.child = None;
                return Some(status);
            }
            if started.elapsed() >= bound {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for berthd to exit after a signal the test sent.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_exit(EXIT_BOUND)
            .unwrap_or_else(|| panic!("berthd did not exit:\n{}", self.log()))
    }

    /// SIGTERM, then SIGKILL if it has not exited within the bound.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_exit(EXIT_BOUND) {
            return status;
        }
        eprintln!("berthd ignored SIGTERM; killing it");
        self.kill()
    }

    /// SIGKILL: the daemon leaves everything behind, as after a crash.
    pub fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("berthd is not running");
        let _ = child.kill();
        child.wait().expect("wait for berthd")
    }

    /// Stops berthd gracefully and starts it again with the same state.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "berthd stopped with {status}:\n{}",
            self.log()
        );
        self.launch();
    }

    /// What berthd has written to stdout and stderr so far (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    pub fn try_request(&self, method: &str, path: &str) -> Result<Reply, String> {
        http(&self.paths.socket, method, path, None, Vec::new())
    }

    /// A request with an optional JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let (ct, bytes) = match body {
            Some(v) => (Some("application/json"), serde_json::to_vec(v).unwrap()),
            None => (None, Vec::new()),
        };
        http(&self.paths.socket, method, path, ct, bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// A request with a body sent exactly as given (malformed-input tests).
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        http(
            &self.paths.socket,
            method,
            path,
            content_type,
            body.to_vec(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }

    /// The real docker CLI against this daemon, with a private client config.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs the docker CLI, asserts success and returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        check(self.docker(args), &format!("docker {args:?}"))
    }

    fn docker_command(&self) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg(DOCKER_BOUND_SECS)
            .arg("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.paths.socket.display()))
            .env("DOCKER_CONFIG", self.paths.root.join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_TLS_VERIFY");
        cmd
    }

    /// The docker CLI with `input` on its stdin (`docker import -`,
    /// `docker load`).
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .docker_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker");
        let mut stdin = child.stdin.take().expect("docker stdin");
        // Written from a thread: the CLI may answer before reading it all.
        let input = input.to_vec();
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("wait for docker");
        let _ = writer.join();
        output
    }

    /// `docker import - busybox:latest` with [`busybox_tar`]; returns the
    /// image id (`sha256:…`).
    pub fn import_busybox(&self) -> String {
        let out = self.docker_stdin(&["import", "-", "busybox:latest"], &busybox_tar());
        check(out, "docker import - busybox:latest")
            .trim()
            .to_string()
    }

    /// Runs a command in the daemon's network namespace.
    pub fn ns_run(&self, program: &str, args: &[&str]) -> Output {
        self.ns.run(program, args)
    }

    pub fn ns_ok(&self, program: &str, args: &[&str]) -> String {
        self.ns.ok(program, args)
    }

    pub fn ip_json(&self, args: &[&str]) -> Value {
        self.ns.ip_json(args)
    }

    pub fn iptables_save(&self) -> String {
        self.ns.iptables_save()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if thread::panicking() {
            eprintln!(
                "--- berthd log ({}) ---\n{}",
                self.paths.log.display(),
                self.log()
            );
        }
        // Shims of tasks a killed daemon's containerd never learned about
        // outlive it: the same sweep the daemon does at start-up.
        let state = self.paths.exec_root.join("containerd");
        berthd::container::stale::sweep_bundles(&state, &state.join("containerd.sock"));
        if let Err(e) = unmount_under(self.dir.path()) {
            eprintln!("unmounting under {}: {e}", self.dir.path().display());
        }
    }
}

/// Detaches every mount under `dir` (netns bind mounts the daemon left),
/// deepest first, so the temp dir can be removed.
fn unmount_under(dir: &Path) -> io::Result<()> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount {}: {e}", point.display());
        }
    }
    Ok(())
}

/// Polls `condition` until it holds; panics with `what` after a generous
/// bound (a hang guard, not a timing assertion).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < READY_BOUND, "never happened: {what}");
        thread::sleep(POLL);
    }
}

/// The pid of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait for true");
    pid
}
