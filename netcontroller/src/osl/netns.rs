//! Network namespaces: create and persist them by bind mount, remove them,
//! and run code inside one.
//!
//! A thread's namespace changes with `unshare`/`setns`, so entering one
//! happens only on the namespace worker (short jobs) or on a thread made for
//! the purpose ([`run_in_netns`]): the caller's threads, and tokio's, never
//! change namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use tracing::debug;

use super::error::OslError;
use super::{rawlink, worker};

/// The calling thread's own namespace; `/proc/self/...` would name the main
/// thread's, which differs once a thread has entered another namespace.
pub(crate) const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Creates a new network namespace with `lo` up and persists it by
/// bind-mounting it onto `path` (the file is created, its directory too).
/// Fails with a conflict if `path` already exists; leaves nothing behind on
/// failure. The work runs on the namespace worker and the caller blocks for
/// it: ~2 ms here, nearly all of it the kernel setting up the namespace.
pub fn create_netns(path: &Path) -> Result<(), OslError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| OslError::netns("create directory for", path, e))?;
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| OslError::netns("create mount point", path, e))?;
    let target = path.to_path_buf();
    let made = worker::run_blocking(move || {
        let path = target.as_path();
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| OslError::netns("unshare for", path, e.into()))?;
        rawlink::set_loopback_up().map_err(|e| OslError::netns("bring lo up in", path, e))?;
        mount(
            Some(THREAD_NETNS),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| OslError::netns("bind-mount", path, e.into()))
    });
    if made.is_err() {
        let _ = fs::remove_file(path);
    } else {
        debug!(path = %path.display(), "network namespace created");
    }
    made
}

/// Unmounts and removes a namespace made by [`create_netns`]. A path that is
/// absent or not mounted is fine: the goal is that it no longer exists.
pub fn delete_netns(path: &Path) -> Result<(), OslError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::ENOENT) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(OslError::netns("unmount", path, e.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(OslError::netns("remove", path, e)),
    }
    debug!(path = %path.display(), "network namespace deleted");
    Ok(())
}

/// Moves the calling thread into the namespace at `path`. Only for the
/// namespace worker and for threads that end after their work there.
pub(crate) fn enter_netns(path: &Path) -> Result<(), OslError> {
    let ns = File::open(path).map_err(|e| OslError::netns("open", path, e))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| OslError::netns("enter", path, e.into()))
}

/// Runs `f` on a new thread inside the namespace at `path` and returns its
/// result. Blocks the caller until `f` returns; a panic in `f` is re-raised.
/// A thread of its own (not the worker) because `f` may borrow from the
/// caller and run for long.
pub fn run_in_netns<T, F>(path: &Path, f: F) -> Result<T, OslError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        let worker = s.spawn(|| enter_netns(path).map(|()| f()));
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The kernel's name of the calling thread's namespace, e.g. `net:[4026531840]`,
/// used to say where a netlink error happened.
pub(crate) fn current_netns_label() -> String {
    fs::read_link(THREAD_NETNS)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "current netns".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_inode(path: &Path) -> String {
        run_in_netns(path, current_netns_label).unwrap()
    }

    #[test]
    fn namespace_is_created_persisted_entered_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns/a");
        create_netns(&path).unwrap();
        let inside = netns_inode(&path);
        assert_ne!(inside, current_netns_label());
        // Entering twice lands in the same namespace: the bind mount persists it.
        assert_eq!(netns_inode(&path), inside);
        assert!(matches!(
            create_netns(&path),
            Err(OslError::Netns {
                op: "create mount point",
                ..
            })
        ));
        delete_netns(&path).unwrap();
        assert!(!path.exists());
        delete_netns(&path).unwrap();
    }

    #[test]
    fn entering_a_missing_namespace_is_not_found() {
        let err = run_in_netns(Path::new("/nonexistent/berth-ns"), || ()).unwrap_err();
        assert_eq!(
            crate::error::Kind::kind(&err),
            crate::error::ErrorKind::NotFound
        );
    }
}
