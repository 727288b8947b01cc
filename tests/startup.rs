//! Start-up and shutdown of the real berthd: refusals, pidfile, socket,
//! signals, restart, readiness notification.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{dead_pid, eventually, Daemon, Exited};
use nix::sys::signal::Signal;

/// Asserts a refused start: exit 1, exactly one line naming the problem,
/// and none of the daemon's files or directories created.
fn assert_refused(exited: &Exited, expected: &str) {
    assert_eq!(exited.status.code(), Some(1), "output: {}", exited.stderr);
    let lines: Vec<&str> = exited.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", exited.stderr);
    assert!(
        lines[0].contains(expected),
        "expected {expected:?} in {:?}",
        lines[0]
    );
    assert_eq!(
        exited.daemon.paths.created(),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn refused_flags_exit_1_with_one_line_and_create_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["-b", "br0", "--bip", "10.0.0.1/24"],
            "You specified -b & --bip, mutually exclusive options. Please specify only one",
        ),
        (
            &["--iptables=false", "--icc=false"],
            "You specified --iptables=false with --icc=false. ICC=false uses iptables to function.",
        ),
        (&["--bip", "10.0.0.1/33"], "invalid --bip \"10.0.0.1/33\""),
        (&["--bip", "not-a-cidr"], "invalid --bip \"not-a-cidr\""),
        (&["--fixed-cidr", "10.0.0.0/99"], "invalid --fixed-cidr"),
        (
            &["--mtu", "67"],
            "invalid --mtu \"67\": must be between 68 and 65535",
        ),
        (&["--mtu", "65536"], "invalid --mtu \"65536\""),
        (
            &["--default-address-pool", "base=10.10.0.0/16"],
            "invalid --default-address-pool \"base=10.10.0.0/16\": size=N is missing",
        ),
        (
            &["--default-address-pool", "base=10.10.0.0/16,size=8"],
            "invalid --default-address-pool",
        ),
        (&["--dns", "1.2.3"], "invalid --dns \"1.2.3\""),
        (
            &["--log-level", "chatty"],
            "invalid -l/--log-level \"chatty\"",
        ),
        (&["-H", "fd://"], "invalid -H/--host \"fd://\""),
        (&["--icc=maybe"], "invalid value 'maybe' for '--icc"),
        (&["--no-such-flag"], "unexpected argument '--no-such-flag'"),
    ];
    for (flags, expected) in cases {
        let exited = Daemon::builder().flags(flags).run_to_exit();
        assert_refused(&exited, expected);
    }
}

#[test]
fn daemon_json_unknown_keys_and_conflicts_are_refused() {
    let exited = Daemon::builder()
        .daemon_json(r#"{"bip": "10.1.0.1/24", "colour": "blue"}"#)
        .run_to_exit();
    assert_refused(
        &exited,
        "the following directives don't match any configuration option: colour",
    );

    let exited = Daemon::builder()
        .daemon_json(r#"{"bip": "10.1.0.1/24"}"#)
        .flags(&["--bip", "10.0.0.1/24"])
        .run_to_exit();
    assert_refused(
        &exited,
        "the following directives are specified both as a flag and in the configuration file: bip: (from flag: 10.0.0.1/24, from file: 10.1.0.1/24)",
    );

    let exited = Daemon::builder().daemon_json("{\"mtu\": ").run_to_exit();
    assert_refused(&exited, "invalid JSON");
}

#[test]
fn daemon_json_settings_apply() {
    let d = Daemon::builder().daemon_json(r#"{"debug": true}"#).start();
    assert_eq!(d.get("/info").json()["Debug"], true);
    assert!(d.log().contains("DEBUG"), "debug logging is on");
}

#[test]
fn non_root_is_refused() {
    let exited = Daemon::builder().run_as_user(65534).run_to_exit();
    assert_refused(&exited, "berthd needs to be started with root privileges");
}

#[test]
fn a_pidfile_naming_a_live_process_is_refused() {
    let d = Daemon::builder().prepare();
    // The test process is alive and is not a berthd.
    let live = format!("{}\n", std::process::id());
    fs::write(&d.paths.pidfile, &live).unwrap();
    let exited = d.run_to_exit();
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    assert_eq!(exited.stderr.lines().count(), 1, "{}", exited.stderr);
    assert!(
        exited.stderr.contains("pid file found"),
        "{}",
        exited.stderr
    );
    let paths = &exited.daemon.paths;
    assert_eq!(fs::read_to_string(&paths.pidfile).unwrap(), live);
    assert!(!paths.socket.exists());
}

#[test]
fn a_stale_pidfile_is_replaced() {
    let mut d = Daemon::builder().prepare();
    fs::write(&d.paths.pidfile, format!("{}\n", dead_pid())).unwrap();
    d.launch();
    let written = fs::read_to_string(&d.paths.pidfile).unwrap();
    assert_eq!(written.trim(), d.pid().to_string());
}

#[test]
fn socket_is_0660_and_group_docker_when_it_exists() {
    let d = Daemon::start();
    let meta = fs::metadata(&d.paths.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);
    if let Ok(Some(group)) = nix::unistd::Group::from_name("docker") {
        assert_eq!(meta.gid(), group.gid.as_raw());
    }
}

#[test]
fn int_term_and_quit_stop_gracefully_and_clean_up() {
    let mut d = Daemon::start();
    for signal in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM] {
        d.signal(signal);
        let status = d.wait();
        assert_eq!(status.code(), Some(0), "{signal}: {}", d.log());
        assert!(!d.paths.socket.exists(), "{signal}: socket left behind");
        assert!(!d.paths.pidfile.exists(), "{signal}: pidfile left behind");
        if signal != Signal::SIGTERM {
            d.launch();
        }
    }
}

#[test]
fn sighup_reloads_and_keeps_serving() {
    let d = Daemon::start();
    d.signal(Signal::SIGHUP);
    // The reload is logged; the daemon stays up and answers.
    eventually("reload logged", || {
        d.log().contains("configuration reloaded")
    });
    assert_eq!(d.get("/_ping").text(), "OK");
}

#[test]
fn restart_after_sigkill_replaces_stale_socket_and_pidfile() {
    let mut d = Daemon::start();
    let id = d.get("/info").json()["ID"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    d.kill();
    assert!(d.paths.socket.exists() && d.paths.pidfile.exists());
    d.launch();
    assert_eq!(
        d.get("/info").json()["ID"],
        id.as_str(),
        "engine ID is kept"
    );

    d.restart();
    assert_eq!(d.get("/info").json()["ID"], id.as_str());
}

#[test]
fn ready_and_stopping_are_sent_to_notify_socket() {
    let mut d = Daemon::builder().prepare();
    let path = d.paths.root.join("notify.sock");
    let listener = UnixDatagram::bind(&path).unwrap();
    // A bound on the wait, not a timing assertion.
    listener
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    d.set_env("NOTIFY_SOCKET", path.to_str().unwrap());
    d.launch();
    let mut buf = [0u8; 64];
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert_eq!(d.stop().code(), Some(0));
    let n = listener.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
}
