//! The bench's own network namespaces: made with `ip netns add`, entered by
//! dedicated threads for probes, deleted on drop. The host's namespace is
//! never touched.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates `name` (which must not exist yet) with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Self {
            name: name.to_string(),
            path: Path::new("/var/run/netns").join(name),
        };
        run(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a fresh thread that has entered this namespace, so
    /// sockets it opens live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let ns_file =
            File::open(&self.path).with_context(|| format!("open {}", self.path.display()))?;
        thread::scope(|s| {
            s.spawn(move || -> Result<T> {
                setns(&ns_file, CloneFlags::CLONE_NEWNET).context("setns")?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("compare: cleanup: {e:#}");
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
