//! A private network namespace per test, removed on drop (also on panic).
//! Work inside it runs on a dedicated thread that has `setns`'d into it, so
//! the test process itself never touches the machine's namespace.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output};

use nix::sched::{setns, CloneFlags};

pub struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        let name = format!("berth-test-{:016x}", rand::random::<u64>());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {name} failed");
        let path = PathBuf::from("/var/run/netns").join(&name);
        TestNetns { name, path }
    }

    /// Runs `f` on a fresh thread inside the namespace; a panic in `f`
    /// propagates to the caller.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let ns = File::open(&self.path).expect("open netns");
                setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            });
            match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Runs a command inside the namespace (via nsenter, never `ip netns exec`).
    pub fn cmd(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg(program)
            .args(args)
            .output()
            .expect("run nsenter");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let ok = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("warning: could not delete network namespace {}", self.name);
        }
    }
}
