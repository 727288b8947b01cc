//! Containers through the real docker CLI against berthd in a namespace:
//! run, ports, user networks, connect/disconnect, network modes, cleanup,
//! logs, restart policies across daemon restarts.

mod common;
mod runtime_support;

use common::{Daemon, DaemonBuilder};
use serde_json::Value;

/// Starts berthd with the busybox image in its store (imported before the
/// daemon opens it).
fn daemon_with_busybox(builder: DaemonBuilder) -> Daemon {
    let mut d = builder.prepare();
    let root = d.paths.data_root.join("image");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let images = berthd::image::ImageStore::open(&root).await.unwrap();
        images
            .import(
                std::io::Cursor::new(runtime_support::busybox_tar()),
                Some("busybox"),
                None,
            )
            .await
            .unwrap();
    });
    d.launch();
    d
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker_ok(&["inspect", "--type", "container", name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Host-side interfaces whose name starts with `veth`.
fn veths(d: &Daemon) -> Vec<String> {
    d.ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with("veth"))
        .map(str::to_string)
        .collect()
}

fn netns_entries(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.paths.exec_root.join("netns"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn mounts_under(d: &Daemon) -> Vec<String> {
    let root = d.paths.root.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .map(str::to_string)
        .collect()
}

/// Nothing of any container is left: no veth, no per-container rule, no
/// sandbox namespace, no mount.
fn assert_clean(d: &Daemon) {
    assert_eq!(veths(d), Vec::<String>::new());
    let rules = d.iptables_save();
    assert!(!rules.contains("DNAT"), "{rules}");
    assert!(
        !rules.contains("-j MASQUERADE") || !rules.contains("/32 -d"),
        "{rules}"
    );
    assert_eq!(netns_entries(d), Vec::<String>::new());
    assert_eq!(mounts_under(d), Vec::<String>::new());
}

#[test]
fn run_rm_shows_eth0_on_the_default_bridge_then_leaves_nothing() {
    let d = daemon_with_busybox(Daemon::builder().flag("-D"));
    let out = d.docker_ok(&["run", "--rm", "busybox", "ip", "addr"]);
    assert!(out.contains("eth0"), "{out}");
    assert!(out.contains("inet 172.17.0.2/16"), "{out}");
    assert!(out.contains("link/ether 02:42:ac:11:00:02"), "{out}");

    // Exit codes come back; logs are kept; the record is gone with --rm.
    let status = d.docker(&[
        "run",
        "--name",
        "three",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(status.status.code(), Some(3), "{}", stderr(&status));
    let logs = d.docker(&["logs", "three"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "out\n");
    assert_eq!(stderr(&logs), "err\n");
    let c = inspect(&d, "three");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 3);
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["Name"], "/three");
    let ps = d.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("three Exited (3)"), "{ps}");
    d.docker_ok(&["rm", "three"]);
    assert!(d.docker_ok(&["ps", "-aq"]).trim().is_empty());

    // Name conflicts, unknown images.
    d.docker_ok(&["create", "--name", "web", "busybox", "true"]);
    let dup = d.docker(&["create", "--name", "web", "busybox", "true"]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup)
            .contains("Conflict. The container name \"/web\" is already in use by container"),
        "{}",
        stderr(&dup)
    );
    let missing = d.request(
        "POST",
        "/containers/create",
        Some(&serde_json::json!({"Image": "nope"})),
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "No such image: nope:latest");
    d.docker_ok(&["rm", "web"]);
    assert_clean(&d);
}
