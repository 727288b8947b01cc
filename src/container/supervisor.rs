//! Keeps a private containerd running as our child, as dockerd's
//! libcontainerd supervisor does: spawned with its own config, restarted when
//! it dies, stopped with SIGTERM and then SIGKILL after a bound.
//!
//! The child lives on a dedicated thread: PR_SET_PDEATHSIG fires when the
//! *thread* that forked exits, so forking from a long-lived thread of our own
//! (and not from an async worker that may retire) ties containerd's life to
//! the supervisor's, and containerd dies with a crashed daemon.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

/// How a supervised process is started.
#[derive(Debug, Clone)]
pub(crate) struct ChildCommand {
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// Receives the child's stdout and stderr (appended).
    pub log: PathBuf,
    /// Holds the current child's pid, so a later start can find a leftover.
    pub pidfile: PathBuf,
}

#[derive(Default)]
struct State {
    pid: Option<i32>,
    stopping: bool,
    finished: bool,
    restarts: u32,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A child that ran this long was healthy; its death resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

impl Supervisor {
    /// Spawns the child and returns once it is forked (not yet serving).
    pub(crate) fn start(cmd: ChildCommand) -> io::Result<Supervisor> {
        kill_leftover(&cmd);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("containerd-supervisor".into())
            .spawn(move || supervise(cmd, thread_shared, spawned_tx))?;
        let first = spawned_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("supervisor thread died")));
        let supervisor = Supervisor {
            shared,
            thread: Some(thread),
        };
        first.map(|()| supervisor)
    }

    /// The current child's pid, if one is running.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.shared.lock().pid
    }

    /// How many times the child was restarted after dying.
    pub(crate) fn restarts(&self) -> u32 {
        self.shared.lock().restarts
    }

    /// Stops the child (SIGTERM, SIGKILL after `grace`) and the supervision.
    pub(crate) fn stop_blocking(&mut self, grace: Duration) {
        let mut state = self.shared.lock();
        state.stopping = true;
        self.shared.changed.notify_all();
        if let Some(pid) = state.pid {
            tracing::debug!(pid, "stopping containerd");
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while !state.finished {
            let now = Instant::now();
            if now >= deadline {
                if let Some(pid) = state.pid {
                    tracing::warn!(pid, "containerd ignored SIGTERM, killing it");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                state = self
                    .shared
                    .changed
                    .wait_while(state, |s| !s.finished)
                    .unwrap_or_else(|e| e.into_inner());
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_blocking(Duration::from_secs(5));
        }
    }
}

fn spawn(cmd: &ChildCommand) -> io::Result<std::process::Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cmd.log)?;
    let mut command = Command::new(&cmd.binary);
    command
        .args(&cmd.args)
        // containerd speaks sd_notify too: its READY=1 must not reach the
        // service manager as ours (dockerd strips it as well).
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls (setsid, prctl) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Own session: a ^C aimed at the daemon's terminal must not reach
            // containerd before the daemon has stopped its containers.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

fn supervise(cmd: ChildCommand, shared: Arc<Shared>, spawned: mpsc::Sender<io::Result<()>>) {
    let mut first = Some(spawned);
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut child = match spawn(&cmd) {
            Ok(child) => child,
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    break;
                }
                tracing::error!(error = %e, binary = %cmd.binary.display(), "cannot restart containerd");
                if sleep_unless_stopping(&shared, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pid = child.id() as i32;
        let started = Instant::now();
        {
            let mut state = shared.lock();
            state.pid = Some(pid);
        }
        if let Err(e) = fs::write(&cmd.pidfile, format!("{pid}\n")) {
            tracing::warn!(error = %e, path = %cmd.pidfile.display(), "cannot write containerd pidfile");
        }
        tracing::debug!(pid, "containerd spawned");
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }

        // Learn of the exit without reaping, so the pid cannot be reused
        // while `stop_blocking` may still signal it.
        while let Err(nix::errno::Errno::EINTR) = waitid(
            Id::Pid(Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let stopping = {
            let mut state = shared.lock();
            state.pid = None;
            state.stopping
        };
        let status = child.wait();
        if stopping {
            tracing::debug!(?status, "containerd stopped");
            break;
        }
        tracing::warn!(?status, "containerd exited unexpectedly, restarting it");
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_MIN;
        }
        if sleep_unless_stopping(&shared, backoff) {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        shared.lock().restarts += 1;
    }
    let _ = fs::remove_file(&cmd.pidfile);
    let mut state = shared.lock();
    state.finished = true;
    shared.changed.notify_all();
}

/// Sleeps for `dur`; returns true (early) when a stop was asked for.
fn sleep_unless_stopping(shared: &Shared, dur: Duration) -> bool {
    let state = shared.lock();
    let (state, _) = shared
        .changed
        .wait_timeout_while(state, dur, |s| !s.stopping)
        .unwrap_or_else(|e| e.into_inner());
    state.stopping
}

/// Kills a containerd left running by a previous daemon with the same
/// config (it would hold the metadata database lock and block the new one).
fn kill_leftover(cmd: &ChildCommand) {
    let Ok(text) = fs::read_to_string(&cmd.pidfile) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    if !is_same_command(pid, cmd) {
        return;
    }
    tracing::warn!(pid, "killing containerd left over by a previous run");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` runs `cmd` (same binary, same arguments): a pidfile can
/// outlive its process and the pid be reused by something else.
fn is_same_command(pid: i32, cmd: &ChildCommand) -> bool {
    let Ok(mut raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if raw.last() == Some(&0) {
        raw.pop();
    }
    let mut parts = raw.split(|b| *b == 0);
    let binary_matches = parts
        .next()
        .is_some_and(|argv0| Path::new(std::str::from_utf8(argv0).unwrap_or("")) == cmd.binary);
    binary_matches
        && parts
            .map(|p| p.to_vec())
            .eq(cmd.args.iter().map(|a| a.as_bytes().to_vec()))
}
