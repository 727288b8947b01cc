//! Fixtures for the runtime and image tests: a busybox rootfs tarball, a
//! network namespace of the test's own, and an environment with a private
//! containerd and an image store under a temp dir. Everything is removed on
//! drop, also when the test panics.

#![allow(dead_code)] // each test binary uses part of this module

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berthd::container::logs::LogCapture;
use berthd::container::rootfs::OverlayRootfs;
use berthd::container::runtime::Containerd;
use berthd::container::spec::{build_spec, SpecParams};
use berthd::image::ImageStore;

#[path = "../common/rootfs.rs"]
pub mod rootfs;
pub use rootfs::busybox_tar;

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A network namespace made for one test (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("berth-test");
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success(), "ip netns add {name}");
        Netns {
            path: PathBuf::from("/var/run/netns").join(&name),
            name,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Lines of /proc/self/mountinfo mentioning `needle`.
pub fn mounts_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// cgroup directories named `/berth/<id>` in any hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = entry.path().join("berth").join(id);
        if dir.exists() {
            found.push(dir);
        }
    }
    let unified = Path::new("/sys/fs/cgroup/berth").join(id);
    if unified.exists() {
        found.push(unified);
    }
    found
}

/// A private containerd and an image store (with busybox imported) under
/// a temp dir of their own.
pub struct Env {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub images: ImageStore,
    containerd: Option<Containerd>,
    address: PathBuf,
    ids: std::sync::Mutex<Vec<String>>,
    // Declared last: dropped after everything that lives inside it.
    dir: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .unwrap();
        Env::in_dir(dir).await
    }

    pub async fn in_dir(dir: tempfile::TempDir) -> Env {
        let data_root = dir.path().join("data");
        let exec_root = dir.path().join("exec");
        let started = std::time::Instant::now();
        let containerd = Containerd::start_private(&data_root, &exec_root)
            .await
            .expect("private containerd starts");
        println!("containerd ready after {:?}", started.elapsed());
        let images = ImageStore::open(data_root.join("image")).await.unwrap();
        images
            .import(std::io::Cursor::new(busybox_tar()), Some("busybox"), None)
            .await
            .unwrap();
        Env {
            address: containerd.address().to_path_buf(),
            containerd: Some(containerd),
            images,
            data_root,
            exec_root,
            ids: Default::default(),
            dir,
        }
    }

    pub fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().unwrap()
    }

    /// Stops containerd, as a crashed daemon would leave tasks behind.
    pub async fn stop_containerd(&mut self) {
        self.containerd.take().unwrap().shutdown().await;
    }

    pub async fn restart_containerd(&mut self) {
        let containerd = Containerd::start_private(&self.data_root, &self.exec_root)
            .await
            .unwrap();
        self.containerd = Some(containerd);
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }

    /// Where containerd's shim mounts the container's rootfs.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.exec_root
            .join("containerd/io.containerd.runtime.v2.task/berth")
            .join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// Creates and starts a busybox container the way the daemon does;
    /// returns its log capture.
    pub async fn run(&self, params: SpecParams) -> LogCapture {
        let id = params.id.clone();
        self.ids.lock().unwrap().push(id.clone());
        let image = self.images.get("busybox").unwrap();
        let dir = self.container_dir(&id);
        let rootfs = OverlayRootfs::new(&dir, &image.rootfs);
        rootfs.prepare().await.unwrap();
        let spec = build_spec(&params).unwrap();
        let containerd = self.containerd();
        containerd.create_container(&id, &spec).await.unwrap();
        let mut capture = LogCapture::start(
            &self.exec_root.join("containers").join(&id),
            &self.log_path(&id),
        )
        .await
        .unwrap();
        let created = containerd
            .create_task(&id, &rootfs, &capture.task_io())
            .await;
        capture.attached();
        created.unwrap();
        containerd.start_task(&id).await.unwrap();
        capture
    }

    fn kill_strays(&self) {
        // Shims of our containerd (found by its unique socket path) and the
        // processes of our containers' cgroups, if containerd could not.
        let address = self.address.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&address) {
                pids.push(pid);
            }
        }
        for id in self.ids.lock().unwrap().iter() {
            for dir in cgroup_dirs(id) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                pids.extend(procs.lines().filter_map(|l| l.parse::<i32>().ok()));
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Remove tasks and containers through containerd, from a runtime of
        // our own: this may run while the test's runtime is unwinding.
        if self.containerd.is_some() {
            let address = self.address.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(c) = Containerd::connect(&address).await {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(30), c.cleanup_leftovers())
                                .await;
                    }
                });
            })
            .join();
        }
        drop(self.containerd.take());
        self.kill_strays();
        for line in mounts_mentioning(self.dir.path()) {
            if let Some(target) = line.split_whitespace().nth(4) {
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for id in self.ids.lock().unwrap().iter() {
            for dir in cgroup_dirs(id) {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}
