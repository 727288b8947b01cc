//! A container's root filesystem: the image's unpacked rootfs as the
//! read-only lower layer of an overlay, with the container's own writable
//! layer under `<data-root>/containers/<id>/`. containerd's shim performs the
//! mount when the task is created and undoes it when the task is deleted.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRootfs {
    /// The image's rootfs, never written to.
    pub lower: PathBuf,
    /// The container's changes.
    pub upper: PathBuf,
    /// overlayfs' scratch directory; must be on the same filesystem as `upper`.
    pub work: PathBuf,
}

impl OverlayRootfs {
    /// The layout for a container whose directory is `container_dir`
    /// (`<data-root>/containers/<id>`), over the image rootfs `image_rootfs`.
    pub fn new(container_dir: &Path, image_rootfs: &Path) -> OverlayRootfs {
        OverlayRootfs {
            lower: image_rootfs.to_path_buf(),
            upper: container_dir.join("diff"),
            work: container_dir.join("work"),
        }
    }

    /// Creates the writable directories; idempotent, so a restarted
    /// container keeps its changes.
    pub async fn prepare(&self) -> io::Result<()> {
        tokio::fs::create_dir_all(&self.upper).await?;
        tokio::fs::create_dir_all(&self.work).await
    }

    /// Mount options for `mount -t overlay`.
    pub fn mount_options(&self) -> Vec<String> {
        vec![
            format!("lowerdir={}", self.lower.display()),
            format!("upperdir={}", self.upper.display()),
            format!("workdir={}", self.work.display()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_options() {
        let r = OverlayRootfs::new(
            Path::new("/var/lib/berth/containers/c1"),
            Path::new("/var/lib/berth/image/ab/rootfs"),
        );
        assert_eq!(
            r.mount_options(),
            vec![
                "lowerdir=/var/lib/berth/image/ab/rootfs",
                "upperdir=/var/lib/berth/containers/c1/diff",
                "workdir=/var/lib/berth/containers/c1/work",
            ]
        );
    }
}
