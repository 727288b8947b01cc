//! Task bundles that a private containerd left behind when it died while
//! creating a task: the bundle directory exists and its shim may still run,
//! but the new containerd does not know the task, so no API call removes it
//! and creating the task again fails with "already exists". Found after the
//! start-up cleanup has removed every task containerd knows, so any bundle
//! left is stale.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::runtime::NAMESPACE;

/// Where the runc shim keeps its containers' state (containerd's default).
const RUNC_ROOT: &str = "/run/containerd/runc";

/// Removes every task bundle under `<state>/io.containerd.runtime.v2.task/`
/// of our namespace: kills its shim (found by `-id` and `-address`), has runc
/// delete the container, unmounts the rootfs and removes the directory.
/// Returns the ids removed; failures are logged, never fatal.
pub fn sweep_bundles(state: &Path, address: &Path) -> Vec<String> {
    let dir = state.join("io.containerd.runtime.v2.task").join(NAMESPACE);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        for pid in shims_of(&id, address) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let runc = Command::new("runc")
            .arg("--root")
            .arg(PathBuf::from(RUNC_ROOT).join(NAMESPACE))
            .args(["delete", "--force", &id])
            .output();
        if let Err(e) = runc {
            tracing::warn!(%id, error = %e, "runc delete of a stale task");
        }
        let bundle = entry.path();
        let _ = umount2(&bundle.join("rootfs"), MntFlags::MNT_DETACH);
        match fs::remove_dir_all(&bundle) {
            Ok(()) => removed.push(id),
            Err(e) => {
                tracing::warn!(path = %bundle.display(), error = %e, "removing a stale task bundle")
            }
        }
    }
    removed
}

/// Pids of shim processes serving task `id` for the containerd at `address`.
fn shims_of(id: &str, address: &Path) -> Vec<i32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&OsStr> = cmdline
                .split(|&b| b == 0)
                .map(OsStrExt::from_bytes)
                .collect();
            let after = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1]);
            args.first()
                .is_some_and(|a| a.to_string_lossy().contains("containerd-shim"))
                && after("-id") == Some(OsStr::new(id))
                && after("-address") == Some(address.as_os_str())
        })
        .collect()
}
