//! One daemon under test in its own network namespace, with its own
//! data-root, exec-root, pidfile and socket under the run's temp dir:
//! dockerd (plus the containerd it needs, started once the same way) or
//! berthd (which starts its private containerd itself). Dropping it stops
//! everything it started and removes what it left behind.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};

use crate::api::Client;
use crate::netns::Netns;
use crate::procs::{self, Proc, ProcInfo};
use crate::report::Kind;
use crate::signals;

/// Both daemons get the same pool, big enough for the 500-network scale
/// step (dockerd's default pools run out after ~47 networks).
pub const ADDRESS_POOL: &str = "base=10.0.0.0/8,size=24";

/// Longest wait from launch to a first good `/_ping`.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// A daemon stopping its containers on SIGTERM gets this long.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Where the binaries are.
pub struct Programs {
    pub dockerd: PathBuf,
    pub containerd: PathBuf,
    pub berthd: PathBuf,
}

/// Memory of a daemon and its helpers, in KiB.
pub struct Rss {
    pub daemon: u64,
    pub containerd: Option<u64>,
    /// Children other than containerd: dockerd's docker-proxy processes.
    pub helpers: Vec<(String, u64)>,
}

pub struct Daemon {
    pub kind: Kind,
    dir: PathBuf,
    log: PathBuf,
    program: PathBuf,
    args: Vec<OsString>,
    client: Client,
    process: Option<Proc>,
    containerd: Option<Proc>,
    cgroup_parent: Option<String>,
    /// Children seen before each stop, swept if they outlive the daemon.
    seen_children: Vec<ProcInfo>,
    // Last: the namespace goes only after every process in it has.
    ns: Netns,
}

impl Daemon {
    /// Makes the namespace and directories; for dockerd also starts its
    /// containerd and waits for its socket. The daemon itself is not started.
    pub fn prepare(kind: Kind, programs: &Programs, tmp: &Path, log_dir: &Path) -> Result<Self> {
        let tag = format!("berth-bench-{}-{}", std::process::id(), kind.name());
        let dir = tmp.join(kind.name());
        fs::create_dir_all(&dir)?;
        let config = dir.join("daemon.json");
        fs::write(&config, "{}\n")?;
        let log = log_dir.join(format!("{}.log", kind.name()));
        fs::write(&log, "")?;
        let sock = dir.join("docker.sock");

        let mut args: Vec<OsString> = vec![
            "-H".into(),
            format!("unix://{}", sock.display()).into(),
            "--data-root".into(),
            dir.join("data").into(),
            "--exec-root".into(),
            dir.join("exec").into(),
            "--pidfile".into(),
            dir.join("daemon.pid").into(),
            "--config-file".into(),
            config.into(),
            "--default-address-pool".into(),
            ADDRESS_POOL.into(),
        ];
        let ns = Netns::create(&tag)?;
        let mut daemon = Self {
            kind,
            dir: dir.clone(),
            log,
            program: match kind {
                Kind::Dockerd => programs.dockerd.clone(),
                Kind::Berthd => programs.berthd.clone(),
            },
            args: Vec::new(),
            client: Client::new(&sock),
            process: None,
            containerd: None,
            cgroup_parent: None,
            seen_children: Vec::new(),
            ns,
        };
        if kind == Kind::Dockerd {
            let ctr_sock = daemon.start_containerd(&programs.containerd, log_dir)?;
            // A cgroup parent of our own, so the run can remove it after.
            let parent = format!("/{tag}");
            args.extend([
                "--containerd".into(),
                ctr_sock.into(),
                "--cgroup-parent".into(),
                parent.clone().into(),
            ]);
            daemon.cgroup_parent = Some(parent);
        }
        daemon.args = args;
        Ok(daemon)
    }

    fn start_containerd(&mut self, program: &Path, log_dir: &Path) -> Result<PathBuf> {
        let dir = self.dir.join("containerd");
        fs::create_dir_all(&dir)?;
        let sock = dir.join("containerd.sock");
        // Private root/state/socket and no CRI plugin, so it coexists with
        // any other containerd on the machine.
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {sock:?}\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
            root = dir.join("root").display().to_string(),
            state = dir.join("state").display().to_string(),
            sock = sock.display().to_string(),
            opt = dir.join("opt").display().to_string(),
        );
        let config_path = dir.join("config.toml");
        fs::write(&config_path, config)?;
        let log = log_dir.join("dockerd-containerd.log");
        fs::write(&log, "")?;
        let mut proc = Proc::spawn_in(
            &self.ns,
            program,
            &[OsStr::new("--config"), config_path.as_os_str()],
            &log,
            "containerd (for dockerd)",
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&sock).is_err() {
            signals::check()?;
            if let Some(status) = proc.exited() {
                bail!("containerd exited ({status}){}", with_log(&proc));
            }
            if Instant::now() > deadline {
                bail!("containerd socket not up within 30 s{}", with_log(&proc));
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.containerd = Some(proc);
        Ok(sock)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Starts the daemon and returns the time from launch to the first
    /// successful `/_ping`.
    pub fn launch(&mut self) -> Result<Duration> {
        self.shutdown();
        let args: Vec<&OsStr> = self.args.iter().map(OsString::as_os_str).collect();
        let started = Instant::now();
        let mut proc = Proc::spawn_in(&self.ns, &self.program, &args, &self.log, self.kind.name())?;
        loop {
            if self.client.ping().is_ok() {
                let took = started.elapsed();
                self.process = Some(proc);
                return Ok(took);
            }
            if let Some(status) = proc.exited() {
                bail!(
                    "{} exited ({status}) before answering /_ping{}",
                    self.program.display(),
                    with_log(&proc)
                );
            }
            if started.elapsed() > START_TIMEOUT || signals::interrupted() {
                let why = if signals::interrupted() {
                    "interrupted".to_string()
                } else {
                    format!("no /_ping answer within {START_TIMEOUT:?}")
                };
                self.remember_children(proc.pid());
                proc.stop(STOP_GRACE);
                bail!("{}: {why}{}", self.kind.name(), with_log(&proc));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops the daemon (SIGTERM, bounded wait, then SIGKILL).
    pub fn shutdown(&mut self) {
        if let Some(mut proc) = self.process.take() {
            self.remember_children(proc.pid());
            proc.stop(STOP_GRACE);
        }
    }

    fn remember_children(&mut self, pid: i32) {
        let table = procs::table();
        self.seen_children.extend(procs::children(&table, pid));
    }

    /// RSS of the daemon, its containerd and its other children.
    pub fn rss(&self) -> Result<Rss> {
        let pid = self
            .process
            .as_ref()
            .map(Proc::pid)
            .context("daemon not running")?;
        let table = procs::table();
        let kids = procs::children(&table, pid);
        let containerd = match &self.containerd {
            Some(own) => Some(own.pid()),
            None => kids.iter().find(|p| p.comm == "containerd").map(|p| p.pid),
        };
        let helpers = kids
            .iter()
            .filter(|p| Some(p.pid) != containerd && !p.comm.starts_with("containerd"))
            .filter_map(|p| Some((p.comm.clone(), procs::rss_kib(p.pid)?)))
            .collect();
        Ok(Rss {
            daemon: procs::rss_kib(pid).context("daemon RSS")?,
            containerd: containerd.and_then(procs::rss_kib),
            helpers,
        })
    }

    fn unmount_leftovers(&self) {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|p| PathBuf::from(unescape_mountinfo(p)))
            .filter(|p| p.starts_with(&self.dir))
            .collect();
        // Deepest first, so nested mounts come off before their parents.
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            if let Err(e) = umount2(&p, MntFlags::MNT_DETACH) {
                eprintln!("compare: cleanup: umount {}: {e}", p.display());
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop(Duration::from_secs(30));
        }
        let killed = procs::kill_leftovers(&self.dir, &self.seen_children);
        if killed > 0 {
            eprintln!(
                "compare: cleanup: killed {killed} leftover process(es) of {}",
                self.kind.name()
            );
            thread::sleep(Duration::from_millis(200));
        }
        self.unmount_leftovers();
        if let Some(parent) = &self.cgroup_parent {
            remove_cgroup(parent);
        }
    }
}

/// "; log: …" with the process's last log lines, or nothing for an empty log.
fn with_log(proc: &Proc) -> String {
    let tail = proc.log_tail();
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; log:\n{tail}")
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the cgroup `parent` (absolute, e.g. "/berth-bench-1-dockerd") and
/// its children in every hierarchy (v1 controllers or the v2 tree).
fn remove_cgroup(parent: &str) {
    let rel = parent.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![root.join(rel)];
    if let Ok(dir) = fs::read_dir(root) {
        candidates.extend(dir.flatten().map(|e| e.path().join(rel)));
    }
    for c in candidates.into_iter().filter(|c| c.is_dir()) {
        rmdir_tree(&c);
    }
}

/// cgroup directories go with rmdir, children first; their files are virtual.
fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        eprintln!("compare: cleanup: rmdir {}: {e}", dir.display());
    }
}
