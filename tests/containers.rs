//! Containers through the real docker CLI against berthd in a namespace:
//! run, ports, user networks, connect/disconnect, network modes, cleanup,
//! logs, restart policies across daemon restarts.

mod common;

use common::{Daemon, DaemonBuilder};
use serde_json::Value;

/// Starts berthd and imports the busybox image with `docker import`.
fn daemon_with_busybox(builder: DaemonBuilder) -> Daemon {
    let d = builder.start();
    d.import_busybox();
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
    // Per-container rules name the container's address as CIP/32.
    assert!(!rules.lines().any(|l| l.contains("/32")), "{rules}");
    assert_eq!(netns_entries(d), Vec::<String>::new());
    assert_eq!(mounts_under(d), Vec::<String>::new());
    // No cgroup of the daemon's is left in any hierarchy.
    let engine = d.get("/info").json()["ID"].as_str().unwrap().to_string();
    let parent = format!("berth-{}", &engine[..8]);
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join(&parent);
        assert!(!dir.exists(), "{} is left", dir.display());
    }
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

    // A command that cannot run: the CLI's 127, and --rm leaves nothing.
    let bad = d.docker(&["run", "--rm", "busybox", "/no/such/command"]);
    assert_eq!(bad.status.code(), Some(127), "{}", stderr(&bad));
    assert!(d.docker_ok(&["ps", "-aq"]).trim().is_empty());
    assert_eq!(veths(&d), Vec::<String>::new());

    // DNS, extra hosts, hostname, bind mounts.
    let data = d.paths.root.join("greeting");
    std::fs::write(&data, "hello from the host\n").unwrap();
    let bind = format!("{}:/data:ro", data.display());
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "example.test",
        "--add-host",
        "db:10.1.2.3",
        "--hostname",
        "box",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts /data; hostname; echo x > /data || echo read-only",
    ]);
    assert!(
        out.contains("nameserver 192.0.2.53\nsearch example.test\n"),
        "{out}"
    );
    assert!(out.contains("10.1.2.3\tdb\n"), "{out}");
    assert!(out.contains("172.17.0.2\tbox\n"), "{out}");
    assert!(
        out.contains("hello from the host\nbox\nread-only\n"),
        "{out}"
    );

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

/// `ip -j link` inside a running container's sandbox, as interface names.
fn container_links(d: &Daemon, name: &str) -> Vec<String> {
    let key = inspect(d, name)["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={key}"))
        .args(["ip", "-j", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let links: Value = serde_json::from_slice(&out.stdout).unwrap();
    links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

fn curl(ns: &common::Netns, url: &str) -> std::process::Output {
    ns.run("curl", &["-sS", "--max-time", "5", url])
}

#[test]
fn published_ports_reach_the_container_from_outside_and_loopback() {
    let d = daemon_with_busybox(Daemon::builder().with_world());
    let serve = "echo hello from httpd > /tmp/index.html && exec httpd -f -p 80 -h /tmp";
    d.docker_ok(&[
        "run", "-d", "--name", "web", "-p", "8080:80", "busybox", "sh", "-c", serve,
    ]);
    let url = format!("http://{}:8080/index.html", common::HOST_ADDR);
    common::eventually("httpd answers from the world", || {
        curl(&d.world().ns, &url).status.success()
    });
    let out = curl(&d.world().ns, &url);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from httpd\n");
    let local = curl(&d.ns, "http://127.0.0.1:8080/index.html");
    assert_eq!(
        String::from_utf8_lossy(&local.stdout),
        "hello from httpd\n",
        "{}",
        stderr(&local)
    );
    let c = inspect(&d, "web");
    assert_eq!(
        c["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], "8080",
        "{c}"
    );
    assert_eq!(d.docker_ok(&["port", "web", "80"]).trim(), "0.0.0.0:8080");
    let rules = d.iptables_save();
    assert_eq!(
        rules.matches("--to-destination 172.17.0.2:80").count(),
        1,
        "{rules}"
    );

    // The same host port again: the start fails with dockerd's message and
    // leaves no endpoint, rule or namespace of the second container behind.
    let veths_before = veths(&d);
    let taken = d.docker(&[
        "run", "-d", "--name", "web2", "-p", "8080:80", "busybox", "sleep", "30",
    ]);
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(veths(&d), veths_before);
    assert_eq!(netns_entries(&d).len(), 1);
    let rules = d.iptables_save();
    assert_eq!(rules.matches("-j DNAT").count(), 1, "{rules}");
    assert_eq!(inspect(&d, "web2")["State"]["Running"], false);
    d.docker_ok(&["rm", "web2"]);

    // An ephemeral port with -P for an exposed port.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "eph",
        "--expose",
        "81",
        "-P",
        "busybox",
        "sh",
        "-c",
        "echo eph > /tmp/index.html && exec httpd -f -p 81 -h /tmp",
    ]);
    let port = d.docker_ok(&["port", "eph", "81"]);
    let host_port = port.trim().rsplit(':').next().unwrap().to_string();
    assert!(host_port.parse::<u16>().unwrap() > 1024, "{port}");
    let url = format!("http://{}:{host_port}/index.html", common::HOST_ADDR);
    common::eventually("ephemeral port answers", || {
        curl(&d.world().ns, &url).status.success()
    });

    // Stop and remove: nothing left.
    d.docker_ok(&["stop", "-t", "1", "web"]);
    let c = inspect(&d, "web");
    assert_eq!(c["State"]["Status"], "exited");
    assert!(!curl(
        &d.world().ns,
        &format!("http://{}:8080/", common::HOST_ADDR)
    )
    .status
    .success());
    d.docker_ok(&["rm", "web"]);
    d.docker_ok(&["rm", "-f", "eph"]);
    assert_clean(&d);
}

#[test]
fn user_networks_isolate_resolve_names_and_connect_live() {
    let d = daemon_with_busybox(Daemon::builder());
    d.docker_ok(&["network", "create", "--subnet", "10.50.0.0/24", "front"]);
    d.docker_ok(&["network", "create", "back"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "alpha",
        "--network",
        "front",
        "--ip",
        "10.50.0.50",
        "busybox",
        "sleep",
        "300",
    ]);
    let a = inspect(&d, "alpha");
    let front = &a["NetworkSettings"]["Networks"]["front"];
    assert_eq!(front["IPAddress"], "10.50.0.50", "{a}");
    assert_eq!(front["IPAMConfig"]["IPv4Address"], "10.50.0.50");
    assert_eq!(front["MacAddress"], "02:42:0a:32:00:32");
    assert_eq!(container_links(&d, "alpha"), ["lo", "eth0"]);

    // Same network: by address and by name through the embedded DNS.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "dbserver",
        "--network",
        "front",
        "--network-alias",
        "db",
        "busybox",
        "sleep",
        "300",
    ]);
    let ping = |net: &str, target: &str| {
        d.docker(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            target,
        ])
    };
    let out = ping("front", "10.50.0.50");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ping("front", "alpha");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ping("front", "db");
    assert!(out.status.success(), "{}", stderr(&out));
    d.docker_ok(&["rm", "-f", "dbserver"]);
    let resolv = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    assert!(resolv.contains("options ndots:0"), "{resolv}");
    // Another network: no path.
    assert!(!ping("back", "10.50.0.50").status.success());

    // Live connect adds eth1, reachable from the other network; disconnect removes it.
    d.docker_ok(&["network", "connect", "back", "alpha"]);
    assert_eq!(container_links(&d, "alpha"), ["lo", "eth0", "eth1"]);
    let a = inspect(&d, "alpha");
    let back_ip = a["NetworkSettings"]["Networks"]["back"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!back_ip.is_empty(), "{a}");
    let out = ping("back", &back_ip);
    assert!(out.status.success(), "{}", stderr(&out));
    let hosts =
        std::fs::read_to_string(inspect(&d, "alpha")["HostsPath"].as_str().unwrap()).unwrap();
    assert!(hosts.contains(&format!("{back_ip}\t")), "{hosts}");
    let filtered = d.docker_ok(&["ps", "--filter", "network=back", "--format", "{{.Names}}"]);
    assert_eq!(filtered.trim(), "alpha");
    d.docker_ok(&["network", "disconnect", "back", "alpha"]);
    assert_eq!(container_links(&d, "alpha"), ["lo", "eth0"]);
    assert!(inspect(&d, "alpha")["NetworkSettings"]["Networks"]["back"].is_null());

    // Connected while stopped: joined at the next start.
    d.docker_ok(&["stop", "-t", "0", "alpha"]);
    d.docker_ok(&["network", "connect", "back", "alpha"]);
    d.docker_ok(&["start", "alpha"]);
    assert_eq!(container_links(&d, "alpha"), ["lo", "eth0", "eth1"]);
    assert_eq!(
        inspect(&d, "alpha")["NetworkSettings"]["Networks"]["front"]["IPAddress"],
        "10.50.0.50"
    );

    d.docker_ok(&["rm", "-f", "alpha"]);
    d.docker_ok(&["network", "rm", "front", "back"]);
    assert_clean(&d);
}

#[test]
fn none_host_and_container_network_modes() {
    let d = daemon_with_busybox(Daemon::builder().with_world());
    let none = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    let names: Vec<&str> = none
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{none}");

    let host = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(host.contains(common::UPLINK_IF), "{host}");
    assert!(host.contains("docker0"), "{host}");

    d.docker_ok(&["run", "-d", "--name", "owner", "busybox", "sleep", "300"]);
    let joined = d.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(joined.contains("172.17.0.2/16"), "{joined}");
    d.docker_ok(&["rm", "-f", "owner"]);
    assert_clean(&d);
}

#[test]
fn icc_false_isolates_containers_on_docker0() {
    let d = daemon_with_busybox(Daemon::builder().flag("--icc=false"));
    d.docker_ok(&["run", "-d", "--name", "one", "busybox", "sleep", "300"]);
    let ip = inspect(&d, "one")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(ip, "172.17.0.2");
    let out = d.docker(&["run", "--rm", "busybox", "ping", "-c", "1", "-W", "1", &ip]);
    assert!(
        !out.status.success(),
        "ping crossed docker0 with --icc=false"
    );
    // The gateway (the daemon's namespace) still reaches it.
    d.ns_ok("busybox", &["ping", "-c", "1", "-W", "2", &ip]);
    // Restart gives it a new process and the same address; rename keeps it.
    let pid = inspect(&d, "one")["State"]["Pid"].clone();
    d.docker_ok(&["restart", "-t", "0", "one"]);
    let c = inspect(&d, "one");
    assert_eq!(c["State"]["Running"], true);
    assert_ne!(c["State"]["Pid"], pid);
    assert_eq!(c["NetworkSettings"]["IPAddress"], "172.17.0.2");
    d.docker_ok(&["rename", "one", "uno"]);
    assert_eq!(inspect(&d, "uno")["Name"], "/uno");

    // Prune removes what is stopped, keeps what runs.
    d.docker_ok(&["create", "--name", "idle", "busybox", "true"]);
    let pruned = d.docker_ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    let left = d.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(left.trim(), "uno");
    d.docker_ok(&["rm", "-f", "uno"]);
    assert_clean(&d);
}

#[test]
fn restart_policies_across_daemon_restarts_and_a_sigkilled_daemon() {
    let mut d = daemon_with_busybox(Daemon::builder());
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "--restart",
        "always",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "lost",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    d.docker_ok(&["network", "create", "side"]);
    d.docker_ok(&["network", "connect", "side", "keep"]);

    // on-failure:2 restarts a failing container twice, then leaves it.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    common::eventually("two restarts, then exited", || {
        let c = inspect(&d, "flaky");
        c["RestartCount"] == 2 && c["State"]["Status"] == "exited"
    });
    assert_eq!(inspect(&d, "flaky")["State"]["ExitCode"], 3);
    d.docker_ok(&["rm", "flaky"]);

    // A graceful restart stops both; `always` brings keep back with its networks.
    d.restart();
    let keep = inspect(&d, "keep");
    assert_eq!(keep["State"]["Running"], true, "{keep}");
    assert_eq!(container_links(&d, "keep"), ["lo", "eth0", "eth1"]);
    assert_eq!(inspect(&d, "lost")["State"]["Running"], false);
    assert_eq!(veths(&d).len(), 2);

    // A SIGKILLed daemon: what ran is found stopped (255) and its network
    // state cleaned; keep comes back by its policy.
    d.docker_ok(&["start", "lost"]);
    d.kill();
    d.launch();
    let lost = inspect(&d, "lost");
    assert_eq!(lost["State"]["Running"], false, "{lost}");
    assert_eq!(lost["State"]["Status"], "exited");
    assert_eq!(lost["State"]["ExitCode"], 255);
    assert!(lost["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == "");
    let keep = inspect(&d, "keep");
    assert_eq!(keep["State"]["Running"], true, "{keep}");
    assert_eq!(veths(&d).len(), 2, "only keep's two endpoints");
    assert_eq!(netns_entries(&d).len(), 1);
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "side",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "keep",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Stopped by hand: a daemon restart brings `always` back (dockerd's
    // documented rule) but leaves `unless-stopped` down.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "stays",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "300",
    ]);
    d.docker_ok(&["stop", "-t", "0", "keep", "stays"]);
    d.restart();
    assert_eq!(inspect(&d, "keep")["State"]["Running"], true);
    assert_eq!(inspect(&d, "stays")["State"]["Running"], false);
    d.docker_ok(&["rm", "-f", "keep", "stays", "lost"]);
    d.docker_ok(&["network", "rm", "side"]);
    assert_clean(&d);
}

/// `?filters=` with the JSON percent-encoded.
fn filters(json: &str) -> String {
    let mut out = String::from("filters=");
    for b in json.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits docker's multiplexed stream into (stream type, payload) frames.
fn demux(mut raw: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while raw.len() >= 8 {
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        out.push((
            raw[0],
            String::from_utf8_lossy(&raw[8..8 + len]).into_owned(),
        ));
        raw = &raw[8 + len..];
    }
    out
}

#[test]
fn api_lifecycle_wait_kill_logs_events_and_bad_input() {
    // Debug logging shows when the waiter's request was answered.
    let d = daemon_with_busybox(Daemon::builder().flag("-D"));
    let create = |body: Value, query: &str| d.post(&format!("/containers/create{query}"), &body);
    let trap = "trap 'echo got TERM; exit 7' TERM; echo ready; i=0; while true; do i=$((i+1)); echo line$i; sleep 0.2; done";
    let r = create(
        serde_json::json!({"Image": "busybox", "Cmd": ["sh", "-c", trap], "Labels": {"tier": "api"}}),
        "?name=trapper",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    assert_eq!(
        d.get("/containers/json").json().as_array().unwrap().len(),
        0
    );
    assert_eq!(
        d.get("/containers/json?all=1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert_eq!(
        d.post(
            &format!("/containers/{}/start", &id[..10]),
            &serde_json::json!({})
        )
        .status,
        204
    );
    assert_eq!(
        d.post("/containers/trapper/start", &serde_json::json!({}))
            .status,
        304
    );
    common::eventually("output", || {
        d.get("/containers/trapper/logs?stdout=1").body.len() > 30
    });
    let list = d
        .get(&format!(
            "/containers/json?{}",
            filters(r#"{"label":["tier=api"],"status":["running"]}"#)
        ))
        .json();
    assert_eq!(list[0]["Names"][0], "/trapper", "{list}");
    assert_eq!(list[0]["State"], "running");
    let none = d
        .get(&format!(
            "/containers/json?{}",
            filters(r#"{"name":["nomatch"]}"#)
        ))
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    assert_eq!(
        d.get(&format!(
            "/containers/json?{}",
            filters(r#"{"bogus":["x"]}"#)
        ))
        .status,
        400
    );
    let info = d.get("/info").json();
    assert_eq!(
        (
            info["Containers"].as_u64(),
            info["ContainersRunning"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Logs: multiplexed frames, tail, timestamps.
    let logs = d.get("/containers/trapper/logs?stdout=1&tail=1&timestamps=1");
    let frames = demux(&logs.body);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].0, 1);
    assert!(frames[0].1.contains("Z line"), "{frames:?}");
    assert_eq!(d.get("/containers/trapper/logs").status, 400);

    // Stop: the trap runs (exit 7); a follower sees the last line and ends,
    // a waiter blocked before sees the code.
    let logs_answered = "path=/containers/trapper/logs}: berthd::api::router: answered";
    let answered_before = d.log().matches(logs_answered).count();
    let follower = {
        let socket = d.paths.socket.clone();
        std::thread::spawn(move || {
            common::http(
                &socket,
                "GET",
                "/containers/trapper/logs?stdout=1&follow=1&tail=0",
                None,
                Vec::new(),
            )
            .unwrap()
        })
    };
    let waiter = {
        let socket = d.paths.socket.clone();
        std::thread::spawn(move || {
            common::http(
                &socket,
                "POST",
                "/containers/trapper/wait",
                None,
                Vec::new(),
            )
            .unwrap()
        })
    };
    common::eventually("the follower is registered", || {
        d.log().matches(logs_answered).count() > answered_before
    });
    common::eventually("the waiter is registered", || {
        d.log()
            .contains("path=/containers/trapper/wait}: berthd::api::router: answered")
    });
    assert_eq!(
        d.post("/containers/trapper/stop?t=5", &serde_json::json!({}))
            .status,
        204
    );
    let waited = waiter.join().unwrap();
    assert_eq!(waited.json()["StatusCode"], 7, "{}", waited.text());
    let followed = demux(&follower.join().unwrap().body);
    assert_eq!(followed.last().unwrap().1, "got TERM\n", "{followed:?}");
    assert_eq!(
        d.post("/containers/trapper/stop", &serde_json::json!({}))
            .status,
        304
    );
    let all = d.get("/containers/trapper/logs?stdout=1").body;
    assert!(demux(&all).iter().any(|(_, l)| l == "got TERM\n"));
    let wait_now = d.post("/containers/trapper/wait", &serde_json::json!({}));
    assert_eq!(wait_now.json()["StatusCode"], 7);
    assert_eq!(
        d.post(
            "/containers/trapper/wait?condition=bogus",
            &serde_json::json!({})
        )
        .status,
        400
    );

    // Kill with a signal; not running -> 409.
    assert_eq!(
        d.post("/containers/trapper/start", &serde_json::json!({}))
            .status,
        204
    );
    assert_eq!(
        d.post(
            "/containers/trapper/kill?signal=KILL",
            &serde_json::json!({})
        )
        .status,
        204
    );
    let waited = d.post("/containers/trapper/wait", &serde_json::json!({}));
    assert_eq!(waited.json()["StatusCode"], 137);
    assert_eq!(
        d.post("/containers/trapper/kill", &serde_json::json!({}))
            .status,
        409
    );

    // Bad input: 4xx, nothing created.
    for (body, query) in [
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"]}),
            "?name=bad%20name",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "nonet"}}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}}}),
            "",
        ),
        (serde_json::json!({"Image": "busybox"}), ""),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["relative:/data"]}}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "User": "nobody"}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "container:nope"}}),
            "",
        ),
        (
            serde_json::json!({"Image": "busybox", "Cmd": ["true"]}),
            "?name=trapper",
        ),
    ] {
        let r = create(body.clone(), query);
        assert!(
            (400..500).contains(&r.status),
            "{body} {query}: {} {}",
            r.status,
            r.text()
        );
        assert!(r.json()["message"].is_string());
    }
    assert_eq!(
        d.get("/containers/json?all=1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(d.get("/containers/nope/json").status, 404);
    assert_eq!(
        d.get("/containers/nope/json").json()["message"],
        "No such container: nope"
    );

    // Events of the container's life, in order.
    assert_eq!(d.delete("/containers/trapper").status, 204);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = d.get(&format!(
        "/events?since=0&until={now}&{}",
        filters(r#"{"type":["container"]}"#)
    ));
    let actions: Vec<String> = events
        .text()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["Action"]
                .as_str()
                .unwrap_or_else(|| panic!("{l}"))
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        ["create", "start", "kill", "die", "stop", "start", "kill", "die", "destroy"],
        "{}",
        events.text()
    );
    assert_clean(&d);
}

#[test]
fn an_image_in_use_is_not_removed_without_force() {
    let d = daemon_with_busybox(Daemon::builder());
    d.docker_ok(&["create", "--name", "user", "busybox", "true"]);
    let refused = d.docker(&["rmi", "busybox"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("conflict"),
        "{}",
        stderr(&refused)
    );
    let ancestor = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "ancestor=busybox",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(ancestor.trim(), "user");
    d.docker_ok(&["rm", "user"]);
    d.docker_ok(&["rmi", "busybox"]);
}
