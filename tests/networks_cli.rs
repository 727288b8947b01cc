//! `docker network ...` with the real CLI against berthd: what a user types
//! and reads, exit codes included.

mod common;

use std::process::Output;

use common::Daemon;
use serde_json::Value;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the CLI expecting exit status 1 and `message` on stderr.
fn refused(d: &Daemon, args: &[&str], message: &str) {
    let out = d.docker(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "docker {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(message),
        "docker {args:?}: stderr {:?} lacks {message:?}",
        stderr(&out)
    );
}

/// `docker network ls` with extra arguments, one name per line.
fn ls_names(d: &Daemon, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
    args.extend_from_slice(extra);
    d.docker_ok(&args).lines().map(str::to_string).collect()
}

fn inspect(d: &Daemon, name: &str) -> Value {
    let out = d.docker_ok(&["network", "inspect", name]);
    let all: Value = serde_json::from_str(&out).expect("inspect prints JSON");
    assert_eq!(all.as_array().unwrap().len(), 1, "{out}");
    all[0].clone()
}

#[test]
fn ls_filters_formats_and_ids() {
    let d = Daemon::start();
    d.docker_ok(&[
        "network", "create", "--label", "env=prod", "--label", "tier=web", "front-a",
    ]);
    d.docker_ok(&["network", "create", "--label", "env=dev", "front-b"]);
    d.docker_ok(&["network", "create", "--internal", "back"]);

    // The table, sorted by name as the CLI prints it.
    let table = d.docker_ok(&["network", "ls"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(
        names,
        ["back", "bridge", "front-a", "front-b", "host", "none"]
    );
    for row in &rows {
        assert_eq!(row[0].len(), 12, "{row:?}");
        let expected_driver = match row[1] {
            "host" => "host",
            "none" => "null",
            _ => "bridge",
        };
        assert_eq!(row[2], expected_driver, "{row:?}");
        assert_eq!(row[3], "local", "{row:?}");
    }

    // -q prints short ids, --no-trunc full ones, in the same order.
    let short: Vec<String> = d
        .docker_ok(&["network", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    let long: Vec<String> = d
        .docker_ok(&["network", "ls", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(short.len(), 6);
    for (s, l) in short.iter().zip(&long) {
        assert_eq!(s.len(), 12);
        assert_eq!(l.len(), 64);
        assert!(l.starts_with(s.as_str()));
    }
    let front_a_id = inspect(&d, "front-a")["Id"].as_str().unwrap().to_string();
    assert!(long.contains(&front_a_id));

    // Filters.
    assert_eq!(ls_names(&d, &["--filter", "driver=null"]), ["none"]);
    assert_eq!(ls_names(&d, &["--filter", "driver=host"]), ["host"]);
    assert_eq!(
        ls_names(&d, &["--filter", "name=front"]),
        ["front-a", "front-b"]
    );
    assert_eq!(ls_names(&d, &["--filter", "name=^front-a$"]), ["front-a"]);
    assert_eq!(ls_names(&d, &["--filter", "name=-b$"]), ["front-b"]);
    assert_eq!(
        ls_names(&d, &["--filter", "name=back", "--filter", "name=none"]),
        ["back", "none"]
    );
    assert_eq!(
        ls_names(&d, &["--filter", &format!("id={}", &front_a_id[..8])]),
        ["front-a"]
    );
    assert_eq!(
        ls_names(&d, &["--filter", "label=env"]),
        ["front-a", "front-b"]
    );
    assert_eq!(ls_names(&d, &["--filter", "label=env=prod"]), ["front-a"]);
    assert_eq!(
        ls_names(&d, &["--filter", "label=env", "--filter", "label=tier=web"]),
        ["front-a"]
    );
    assert_eq!(ls_names(&d, &["--filter", "scope=local"]).len(), 6);
    assert!(ls_names(&d, &["--filter", "scope=swarm"]).is_empty());
    assert_eq!(
        ls_names(&d, &["--filter", "type=builtin"]),
        ["bridge", "host", "none"]
    );
    assert_eq!(
        ls_names(&d, &["--filter", "type=custom"]),
        ["back", "front-a", "front-b"]
    );
    assert_eq!(
        ls_names(&d, &["--filter", "dangling=true"]),
        ["back", "front-a", "front-b"]
    );
    assert_eq!(
        ls_names(&d, &["--filter", "dangling=false"]),
        ["bridge", "host", "none"]
    );
    assert!(ls_names(&d, &["--filter", "name=nothing-like-this"]).is_empty());

    // Go templates over every column the CLI offers.
    let out = d.docker_ok(&[
        "network",
        "ls",
        "--filter",
        "name=front-a",
        "--format",
        "{{.ID}}|{{.Name}}|{{.Driver}}|{{.Scope}}|{{.IPv6}}|{{.Internal}}|{{.Label \"env\"}}",
    ]);
    assert_eq!(
        out.trim(),
        format!(
            "{}|front-a|bridge|local|false|false|prod",
            &front_a_id[..12]
        )
    );
    // {{.Labels}} walks a Go map: the order differs from run to run.
    let labels = d.docker_ok(&[
        "network",
        "ls",
        "--filter",
        "name=front-a",
        "--format",
        "{{.Labels}}",
    ]);
    let mut labels: Vec<&str> = labels.trim().split(',').collect();
    labels.sort();
    assert_eq!(labels, ["env=prod", "tier=web"]);
    let out = d.docker_ok(&[
        "network",
        "ls",
        "--filter",
        "name=back",
        "--format",
        "{{.Internal}}",
    ]);
    assert_eq!(out.trim(), "true");
    let json_line = d.docker_ok(&[
        "network",
        "ls",
        "--filter",
        "name=front-b",
        "--format",
        "json",
    ]);
    let row: Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(row["Name"], "front-b");
    assert_eq!(row["Labels"], "env=dev");
    assert!(row["CreatedAt"].as_str().unwrap().ends_with("+0000 UTC"));

    // Filters dockerd does not know are refused by the daemon.
    refused(
        &d,
        &["network", "ls", "--filter", "colour=red"],
        "Error response from daemon: invalid filter 'colour'",
    );
    refused(
        &d,
        &["network", "ls", "--filter", "type=odd"],
        "Error response from daemon: invalid filter: 'type'='odd'",
    );
}

#[test]
fn create_with_every_option_and_inspect_field_by_field() {
    let d = Daemon::start();
    let id = d
        .docker_ok(&[
            "network",
            "create",
            "--subnet",
            "10.50.0.0/24",
            "--gateway",
            "10.50.0.254",
            "--ip-range",
            "10.50.0.128/25",
            "--aux-address",
            "router=10.50.0.5",
            "--internal",
            "--attachable",
            "--label",
            "env=prod",
            "--label",
            "flag",
            "-o",
            "com.docker.network.bridge.name=brcustom0",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "full",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "create prints the full id: {id}");

    let net = inspect(&d, "full");
    assert_eq!(net["Name"], "full");
    assert_eq!(net["Id"], id);
    let created = net["Created"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(created).expect("Created is RFC 3339");
    assert_eq!(net["Scope"], "local");
    assert_eq!(net["Driver"], "bridge");
    assert_eq!(net["EnableIPv6"], false);
    assert_eq!(
        net["IPAM"],
        serde_json::json!({
            "Driver": "default",
            "Options": {},
            "Config": [{
                "Subnet": "10.50.0.0/24",
                "IPRange": "10.50.0.128/25",
                "Gateway": "10.50.0.254",
                "AuxiliaryAddresses": {"router": "10.50.0.5"}
            }]
        })
    );
    assert_eq!(net["Internal"], true);
    assert_eq!(net["Attachable"], true);
    assert_eq!(net["Ingress"], false);
    assert_eq!(net["ConfigFrom"], serde_json::json!({"Network": ""}));
    assert_eq!(net["ConfigOnly"], false);
    assert_eq!(net["Containers"], serde_json::json!({}));
    assert_eq!(
        net["Options"],
        serde_json::json!({
            "com.docker.network.bridge.name": "brcustom0",
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.driver.mtu": "1400"
        })
    );
    assert_eq!(
        net["Labels"],
        serde_json::json!({"env": "prod", "flag": ""})
    );
    let keys: Vec<&str> = net
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "Attachable",
        "ConfigFrom",
        "ConfigOnly",
        "Containers",
        "Created",
        "Driver",
        "EnableIPv6",
        "IPAM",
        "Id",
        "Ingress",
        "Internal",
        "Labels",
        "Name",
        "Options",
        "Scope",
    ];
    expected.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, expected);

    // The options reached the kernel: the named bridge, its MTU and gateway.
    let link = d.ip_json(&["addr", "show", "brcustom0"]);
    assert_eq!(link[0]["mtu"], 1400, "{link}");
    let addrs: Vec<String> = link[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(addrs, ["10.50.0.254/24"]);

    // -f templates, over several networks at once.
    let out = d.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}} {{.Driver}} {{.Internal}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
        "full",
        "none",
    ]);
    assert_eq!(
        out,
        "full bridge true 10.50.0.0/24 10.50.0.254\nnone null false \n"
    );
    assert_eq!(
        d.docker_ok(&["network", "inspect", "-f", "{{json .Labels}}", "full"])
            .trim(),
        r#"{"env":"prod","flag":""}"#
    );
    assert_eq!(
        d.docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"com.docker.network.driver.mtu\"}}",
            &id[..12]
        ])
        .trim(),
        "1400"
    );

    // Without options: a subnet from the default pools, br-<id> bridge, and
    // the defaults dockerd shows.
    let plain_id = d
        .docker_ok(&["network", "create", "plain"])
        .trim()
        .to_string();
    let plain = inspect(&d, "plain");
    assert_eq!(plain["Id"], plain_id);
    assert_eq!(plain["Internal"], false);
    assert_eq!(plain["Attachable"], false);
    assert_eq!(plain["Options"], serde_json::json!({}));
    assert_eq!(plain["Labels"], serde_json::json!({}));
    let config = &plain["IPAM"]["Config"][0];
    let subnet: ipnetwork::Ipv4Network = config["Subnet"].as_str().unwrap().parse().unwrap();
    assert_eq!(subnet.prefix(), 16);
    assert_eq!(
        config["Gateway"].as_str().unwrap(),
        subnet.nth(1).unwrap().to_string()
    );
    assert!(config.get("IPRange").is_none(), "{config}");
    let bridge = format!("br-{}", &plain_id[..12]);
    let link = d.ip_json(&["link", "show", &bridge]);
    assert_eq!(link[0]["mtu"], 1500, "{link}");

    // Predefined networks inspect as dockerd shows them.
    let none = inspect(&d, "none");
    assert_eq!(none["Driver"], "null");
    assert_eq!(none["IPAM"]["Options"], Value::Null);
    assert_eq!(none["IPAM"]["Config"], serde_json::json!([]));

    // An unknown name among known ones: the known are printed, exit 1.
    let out = d.docker(&["network", "inspect", "nosuch", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("network nosuch not found"));
    let printed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed[0]["Name"], "plain");
}

#[test]
fn rm_several_unknown_and_predefined() {
    let d = Daemon::start();
    for name in ["a1", "a2", "a3", "a4"] {
        d.docker_ok(&["network", "create", name]);
    }
    let a3_id = inspect(&d, "a3")["Id"].as_str().unwrap().to_string();
    // Several at once, by name and by id prefix; each is echoed as given.
    assert_eq!(
        d.docker_ok(&["network", "rm", "a1", &a3_id[..10]]),
        format!("a1\n{}\n", &a3_id[..10])
    );
    // An unknown one among them: the others still go, exit 1.
    let out = d.docker(&["network", "rm", "a2", "nosuch", "a4"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "a2\na4\n");
    assert!(
        stderr(&out).contains("Error response from daemon: network nosuch not found"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ls_names(&d, &[]), ["bridge", "host", "none"]);
    // Their bridges are gone too.
    let bridges = d.ip_json(&["link", "show", "type", "bridge"]);
    let names: Vec<&str> = bridges
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker0"]);

    // Any name that is not blank is a name, as with dockerd.
    d.docker_ok(&["network", "create", "with space"]);
    assert_eq!(
        d.docker_ok(&["network", "inspect", "-f", "{{.Name}}", "with space"]),
        "with space\n"
    );
    assert_eq!(
        d.docker_ok(&["network", "rm", "with space"]),
        "with space\n"
    );
    refused(
        &d,
        &["network", "create", " "],
        "Error response from daemon: network name is required",
    );

    for name in ["bridge", "host", "none"] {
        refused(
            &d,
            &["network", "rm", name],
            &format!(
                "Error response from daemon: {name} is a pre-defined network and cannot be removed"
            ),
        );
    }
    refused(
        &d,
        &["network", "rm", "nosuch"],
        "Error response from daemon: network nosuch not found",
    );
    assert_eq!(ls_names(&d, &[]), ["bridge", "host", "none"]);
}

#[test]
fn prune_with_and_without_label_filter() {
    let d = Daemon::start();
    d.docker_ok(&["network", "create", "--label", "keep=yes", "p-keep"]);
    d.docker_ok(&["network", "create", "--label", "keep=no", "p-drop"]);
    d.docker_ok(&["network", "create", "--label", "keep", "p-bare"]);
    d.docker_ok(&["network", "create", "p-none"]);

    assert_eq!(
        d.docker_ok(&["network", "prune", "-f", "--filter", "label=keep=no"]),
        "Deleted Networks:\np-drop\n\n"
    );
    assert_eq!(
        ls_names(&d, &[]),
        ["bridge", "host", "none", "p-bare", "p-keep", "p-none"]
    );
    // label!=: everything but the labelled one.
    let out = d.docker_ok(&["network", "prune", "-f", "--filter", "label!=keep=yes"]);
    let mut deleted: Vec<&str> = out.lines().skip(1).filter(|l| !l.is_empty()).collect();
    deleted.sort();
    assert_eq!(deleted, ["p-bare", "p-none"], "{out}");
    assert_eq!(ls_names(&d, &[]), ["bridge", "host", "none", "p-keep"]);
    // No filter: every custom network, never the predefined ones.
    assert_eq!(
        d.docker_ok(&["network", "prune", "-f"]),
        "Deleted Networks:\np-keep\n\n"
    );
    assert_eq!(ls_names(&d, &[]), ["bridge", "host", "none"]);
    // Nothing left to prune prints nothing.
    assert_eq!(d.docker_ok(&["network", "prune", "-f"]), "");
}

#[test]
fn create_refusals_tell_the_user_why() {
    let d = Daemon::start();
    d.docker_ok(&["network", "create", "--subnet", "10.60.0.0/16", "taken"]);
    let before = ls_names(&d, &[]);
    let cases: [(&[&str], &str); 13] = [
        (
            &["network", "create", "taken"],
            "Error response from daemon: network with name taken already exists",
        ),
        (
            &["network", "create", "--subnet", "10.60.0.0/33", "x"],
            "Error response from daemon: invalid subnet 10.60.0.0/33: invalid CIDR block notation",
        ),
        (
            &["network", "create", "--subnet", "nonsense", "x"],
            "Error response from daemon: invalid subnet nonsense: invalid CIDR block notation",
        ),
        (
            &["network", "create", "--subnet", "10.70.0.1/24", "x"],
            "Error response from daemon: invalid subnet 10.70.0.1/24: it should be 10.70.0.0/24",
        ),
        // The CLI itself checks that a gateway lies in a subnet it was given.
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.70.0.0/24",
                "--gateway",
                "10.71.0.1",
                "x",
            ],
            "no matching subnet for gateway 10.71.0.1",
        ),
        (
            &["network", "create", "--subnet", "10.60.128.0/24", "x"],
            "Error response from daemon: Pool overlaps with other one on this address space",
        ),
        (
            &["network", "create", "-d", "nosuchdriver", "x"],
            "Error response from daemon: plugin \"nosuchdriver\" not found",
        ),
        (
            &["network", "create", "bridge"],
            "Error response from daemon: operation is not permitted on predefined bridge network",
        ),
        (
            &["network", "create", "-d", "host", "host"],
            "Error response from daemon: operation is not permitted on predefined host network",
        ),
        (
            &["network", "create", "none"],
            "Error response from daemon: operation is not permitted on predefined none network",
        ),
        (
            &["network", "create", "-d", "host", "myhost"],
            "Error response from daemon: only one instance of \"host\" network is allowed",
        ),
        (
            &["network", "create", "-d", "null", "mynull"],
            "Error response from daemon: only one instance of \"null\" network is allowed",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=averyveryverylongbridge",
                "x",
            ],
            "com.docker.network.bridge.name",
        ),
    ];
    for (args, message) in cases {
        refused(&d, args, message);
    }
    assert_eq!(ls_names(&d, &[]), before, "nothing was created");
}

#[test]
fn networks_survive_a_restart_unchanged() {
    let mut d = Daemon::start();
    d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.52.0.0/24",
        "--ip-range",
        "10.52.0.64/26",
        "--internal",
        "--label",
        "kept=yes",
        "-o",
        "com.docker.network.driver.mtu=1450",
        "kept",
    ]);
    d.docker_ok(&["network", "create", "auto"]);
    let before: Vec<Value> = ["kept", "auto", "host", "none"]
        .iter()
        .map(|n| inspect(&d, n))
        .collect();
    let names_before = ls_names(&d, &[]);

    d.restart();

    let after: Vec<Value> = ["kept", "auto", "host", "none"]
        .iter()
        .map(|n| inspect(&d, n))
        .collect();
    assert_eq!(after, before);
    assert_eq!(ls_names(&d, &[]), names_before);
    // The bridges are back in the kernel, and the names stay taken.
    let kept_id = before[0]["Id"].as_str().unwrap();
    let link = d.ip_json(&["link", "show", &format!("br-{}", &kept_id[..12])]);
    assert_eq!(link[0]["mtu"], 1450, "{link}");
    refused(
        &d,
        &["network", "create", "kept"],
        "network with name kept already exists",
    );
    refused(
        &d,
        &["network", "create", "--subnet", "10.52.0.0/25", "clash"],
        "Pool overlaps with other one on this address space",
    );
}

#[test]
fn rm_and_prune_leave_a_network_in_use() {
    let d = Daemon::start();
    d.import_busybox();
    d.docker_ok(&["network", "create", "busy"]);
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "--network",
        "busy",
        "busybox",
        "sleep",
        "300",
    ]);
    refused(&d, &["network", "rm", "busy"], "has active endpoints");
    d.docker_ok(&["network", "prune", "-f"]);
    assert!(ls_names(&d, &[]).contains(&"busy".to_string()));
    let containers = inspect(&d, "busy")["Containers"].clone();
    assert_eq!(containers.as_object().unwrap().len(), 1, "{containers}");
    d.docker_ok(&["rm", "-f", "user"]);
    d.docker_ok(&["network", "rm", "busy"]);
    assert!(!ls_names(&d, &[]).contains(&"busy".to_string()));
}
