//! The real docker CLI against berthd.

mod common;

use common::Daemon;
use serde_json::Value;

#[test]
fn docker_version_prints_the_server_section() {
    let d = Daemon::start();
    let out = d.docker_ok(&["version"]);
    assert!(out.contains("Server: Berth"), "{out}");
    assert!(
        out.contains("API version:      1.47 (minimum version 1.24)"),
        "{out}"
    );
    let server: Value =
        serde_json::from_str(&d.docker_ok(&["version", "--format", "{{json .Server}}"])).unwrap();
    assert_eq!(server["ApiVersion"], "1.47");
    assert_eq!(server["Os"], "linux");
    assert!(server["GoVersion"].as_str().unwrap().starts_with("rustc "));
}

#[test]
fn docker_info_prints_the_server_section_without_errors() {
    let d = Daemon::start();
    let out = d.docker(&["info"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("ERROR") && !stderr.contains("ERROR"),
        "{stdout}\n{stderr}"
    );
    for expected in [
        "Server Version: ",
        "Storage Driver: ",
        "Network: bridge host null",
        "Swarm: inactive",
        "Default Runtime: runc",
        "OSType: linux",
        &format!("Docker Root Dir: {}", d.paths.data_root.display()),
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    let info: Value =
        serde_json::from_str(&d.docker_ok(&["info", "--format", "{{json .}}"])).unwrap();
    assert_eq!(info["ID"], d.get("/info").json()["ID"]);
    assert_eq!(
        info["Name"],
        nix::unistd::gethostname().unwrap().to_str().unwrap()
    );
    assert!(info["NCPU"].as_u64().unwrap() >= 1);
}
