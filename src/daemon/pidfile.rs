//! The pid file: refuses a second daemon, replaces a stale file, and is
//! removed when the daemon ends.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use netcontroller::error::{ErrorKind, Kind};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum PidfileError {
    #[error("pid file found, ensure berthd is not running or delete {} (it names running process {pid})", path.display())]
    Running { path: PathBuf, pid: i32 },
    #[error("writing pid file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Kind for PidfileError {
    fn kind(&self) -> ErrorKind {
        match self {
            PidfileError::Running { .. } => ErrorKind::Conflict,
            PidfileError::Io { .. } => ErrorKind::System,
        }
    }
}

/// Holds the pid file for the daemon's life; dropping it removes the file.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile, PidfileError> {
        let own = std::process::id() as i32;
        if let Some(pid) = read_pid(path) {
            if pid != own && process_exists(pid) {
                return Err(PidfileError::Running {
                    path: path.into(),
                    pid,
                });
            }
            tracing::info!(path = %path.display(), pid, "replacing stale pid file");
        }
        let io_err = |source| PidfileError::Io {
            path: path.into(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        fs::write(path, format!("{own}\n")).map_err(io_err)?;
        Ok(Pidfile { path: path.into() })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Another daemon may have taken the file over after ours was deleted
        // by hand; only our own pid is removed.
        if read_pid(&self.path) == Some(std::process::id() as i32) {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "removing pid file");
            }
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Signal 0 probes a pid: EPERM still means someone runs under it.
fn process_exists(pid: i32) -> bool {
    pid > 0 && !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn refuses_a_live_process_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/berth.pid");

        // A live process other than us: a child that waits.
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("{}\n", child.id())).unwrap();
        let err = Pidfile::create(&path).unwrap_err();
        assert!(matches!(err, PidfileError::Running { .. }), "{err}");
        assert_eq!(read_pid(&path), Some(child.id() as i32));

        // Once it is gone (and reaped) the file is stale.
        child.kill().unwrap();
        child.wait().unwrap();
        let pidfile = Pidfile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id() as i32));

        drop(pidfile);
        assert!(!path.exists());
    }

    #[test]
    fn garbage_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.pid");
        fs::write(&path, "not a pid").unwrap();
        let _pidfile = Pidfile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id() as i32));
    }
}
