//! Processes the bench starts (daemons, containerd), bounded stops, the
//! process table (children, RSS) and the last-resort sweep of leftovers.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::Netns;

/// A child started in a namespace with `nsenter --net=…` (which execs the
/// program: the child's pid is the program's). It gets its own process
/// group, so a Ctrl-C at the terminal reaches only the bench, which then
/// stops it in order.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn_in(
        ns: &Netns,
        program: &Path,
        args: &[&OsStr],
        log: &Path,
        name: &str,
    ) -> Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status once the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit either way.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "compare: {} did not stop within {grace:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 6)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(60));
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One row of the process table.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
}

pub fn table() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name sits in parentheses and may itself hold any byte.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let comm = stat[open + 1..close].to_string();
            let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
            Some(ProcInfo { pid, ppid, comm })
        })
        .collect()
}

pub fn children(table: &[ProcInfo], pid: i32) -> Vec<ProcInfo> {
    table.iter().filter(|p| p.ppid == pid).cloned().collect()
}

/// Every descendant of `roots` (not the roots themselves).
pub fn descendants(table: &[ProcInfo], roots: &[i32]) -> Vec<i32> {
    let mut by_parent: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in table {
        by_parent.entry(p.ppid).or_default().push(p.pid);
    }
    let mut seen = HashSet::new();
    let mut stack = roots.to_vec();
    let mut out = Vec::new();
    while let Some(pid) = stack.pop() {
        for &child in by_parent.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                out.push(child);
                stack.push(child);
            }
        }
    }
    out
}

/// Resident set size in KiB, from /proc/PID/status.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Last resort after the orderly stops: SIGKILL every process whose command
/// line names `marker` (our temp dir: containerd shims, a daemon's private
/// containerd) and everything below them (the containers' processes), plus
/// the processes in `also` (a daemon's children seen before it stopped) that
/// still run under the same name. Returns how many were killed.
pub fn kill_leftovers(marker: &Path, also: &[ProcInfo]) -> usize {
    let me = std::process::id() as i32;
    let table = table();
    let marker = marker.as_os_str().as_encoded_bytes();
    let mut roots: Vec<i32> = table
        .iter()
        .filter(|p| p.pid != me)
        .filter(|p| {
            fs::read(format!("/proc/{}/cmdline", p.pid))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker))
        })
        .map(|p| p.pid)
        .collect();
    roots.extend(
        also.iter()
            .filter(|old| table.iter().any(|p| p.pid == old.pid && p.comm == old.comm))
            .map(|p| p.pid),
    );
    let mut victims: HashSet<i32> = descendants(&table, &roots).into_iter().collect();
    victims.extend(roots);
    victims.remove(&me);
    for &pid in &victims {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    victims.len()
}
