//! Removal of a container's cgroup directories. runc removes what it uses
//! for the container, but leaves directories it created on the way (the
//! `/berth` parent, and in some hierarchies the leaf itself), in every
//! mounted hierarchy of a cgroup v1 host.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Mount points of every cgroup (v1) and cgroup2 hierarchy we can see.
fn hierarchies() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
        .collect())
}

/// Removes `cgroups_path` (as in the spec, e.g. `/berth/<id>`) from every
/// hierarchy, then its parents while they are empty. A directory still in
/// use (a process left, another container under the parent) is kept: the
/// kernel refuses to remove it, which is the check we want. An empty parent
/// removed just as runc creates a sibling under it makes that create fail;
/// daemons sharing a host avoid this with a cgroup parent each.
pub(crate) fn remove(cgroups_path: &Path) -> io::Result<()> {
    let relative: PathBuf = cgroups_path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if relative.as_os_str().is_empty() {
        return Ok(());
    }
    let mut first_error = None;
    for root in hierarchies()? {
        let mut dir = root.join(&relative);
        while dir != root {
            match std::fs::remove_dir(&dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "removed cgroup"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    // A busy parent is expected (other containers); a busy
                    // leaf means the container still has processes.
                    if dir == root.join(&relative) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup");
                        first_error.get_or_insert(e);
                    }
                    break;
                }
            }
            if !dir.pop() {
                break;
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
