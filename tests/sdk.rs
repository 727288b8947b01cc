//! The Docker SDK for Python as a client: scripts under tests/sdk/ drive
//! berthd the way SDK users do and assert what they would see.

mod common;

use std::path::Path;
use std::process::Command;

use common::Daemon;

/// Runs `tests/sdk/<script>` against the daemon and asserts it passed.
fn run_script(d: &Daemon, script: &str) {
    run_script_with(d, script, &[]);
}

/// [`run_script`] with more arguments after the socket's address.
fn run_script_with(d: &Daemon, script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(script);
    let out = Command::new("timeout")
        .args(["300", "python3"])
        .arg(&path)
        .arg(format!("unix://{}", d.paths.socket.display()))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sdk_network_calls() {
    let d = Daemon::start();
    run_script(&d, "networks.py");
}

#[test]
fn sdk_container_calls() {
    let d = Daemon::start();
    let rootfs = d.paths.root.join("busybox.tar");
    std::fs::write(&rootfs, common::rootfs::busybox_tar()).unwrap();
    run_script_with(&d, "containers.py", &[rootfs.to_str().unwrap()]);
}
