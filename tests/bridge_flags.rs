//! The default bridge and the iptables rules as dockerd's flags shape them:
//! berthd in a fresh namespace per case, checked the way a user would, with
//! `iptables-save` (normalised: no counters, no comments, chain order as
//! iptables-save prints it) against the files in tests/expected/, `ip -j`
//! and `sysctl`.

mod common;

use std::fs;
use std::path::PathBuf;

use common::Daemon;
use serde_json::{json, Value};

/// `iptables-save` without `#` lines, counters and `-m comment` matches.
fn normalise(saved: &str) -> String {
    let mut out = String::new();
    for line in saved.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let line = match line.strip_suffix(']') {
            Some(_) if line.starts_with(':') => line.rsplit_once(" [").map_or(line, |(l, _)| l),
            _ => line,
        };
        out.push_str(&drop_comment(line));
        out.push('\n');
    }
    out
}

fn drop_comment(rule: &str) -> String {
    const MATCH: &str = " -m comment --comment ";
    let Some(start) = rule.find(MATCH) else {
        return rule.to_string();
    };
    let rest = &rule[start + MATCH.len()..];
    let after = match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"').map_or("", |end| &quoted[end + 1..]),
        None => rest.find(' ').map_or("", |end| &rest[end..]),
    };
    drop_comment(&format!("{}{after}", &rule[..start]))
}

fn expected(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(format!("{name}.txt"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares the namespace's tables with tests/expected/NAME.txt, after
/// replacing each `{placeholder}` by its value.
fn assert_tables(d: &Daemon, name: &str, substitutions: &[(&str, &str)]) {
    let mut want = expected(name);
    for (from, to) in substitutions {
        want = want.replace(from, to);
    }
    let got = normalise(&d.iptables_save());
    assert_eq!(got, want, "iptables-save differs from expected/{name}.txt");
}

/// One link as `ip -j addr show dev NAME` prints it.
fn link(d: &Daemon, name: &str) -> Value {
    d.ip_json(&["addr", "show", "dev", name])[0].clone()
}

fn link_exists(d: &Daemon, name: &str) -> bool {
    d.ip_json(&["link"])
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["ifname"] == name)
}

/// `ADDR/PREFIX` of every IPv4 address on the link.
fn ipv4(link: &Value) -> Vec<String> {
    link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn ip_forward(d: &Daemon) -> String {
    d.ns_ok("sysctl", &["net.ipv4.ip_forward"])
        .trim()
        .to_string()
}

/// The Linux bridge of a user-defined network: `br-` + 12 hex of its id.
fn bridge_of(id: &str) -> String {
    format!("br-{}", &id[..12])
}

fn create_network(d: &Daemon, body: Value) -> String {
    let reply = d.post("/networks/create", &body);
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["Id"].as_str().unwrap().to_string()
}

fn default_ipam(d: &Daemon) -> Value {
    let reply = d.get("/networks/bridge");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["IPAM"]["Config"].clone()
}

#[test]
fn defaults_give_docker0_dockerds_rules_and_forwarding() {
    let d = Daemon::start();
    assert_tables(&d, "defaults", &[]);
    let docker0 = link(&d, "docker0");
    assert_eq!(ipv4(&docker0), ["172.17.0.1/16"]);
    assert_eq!(docker0["mtu"], 1500);
    assert_eq!(ip_forward(&d), "net.ipv4.ip_forward = 1");
}

#[test]
fn icc_false_drops_traffic_between_containers_of_docker0() {
    // Bridged traffic only meets FORWARD with bridge-nf-call-iptables on,
    // which the daemon turns on as dockerd does.
    let mut d = Daemon::builder().flag("--icc=false").prepare();
    d.ns_ok("sysctl", &["-w", "net.bridge.bridge-nf-call-iptables=0"]);
    d.launch();
    assert_tables(&d, "icc-false", &[]);
    let nf = d.ns_ok("sysctl", &["net.bridge.bridge-nf-call-iptables"]);
    assert_eq!(nf.trim(), "net.bridge.bridge-nf-call-iptables = 1");
}

#[test]
fn iptables_false_adds_no_rule_and_no_chain() {
    let d = Daemon::builder().flag("--iptables=false").start();
    assert_tables(&d, "iptables-false", &[]);
    assert_eq!(ipv4(&link(&d, "docker0")), ["172.17.0.1/16"]);
    // A network created now adds nothing either.
    create_network(&d, json!({"Name": "quiet"}));
    assert_tables(&d, "iptables-false", &[]);
}

#[test]
fn ip_masq_false_leaves_out_the_masquerade() {
    let d = Daemon::builder().flag("--ip-masq=false").start();
    assert_tables(&d, "ip-masq-false", &[]);
}

#[test]
fn bip_sets_docker0_address_and_the_rules_subnet() {
    let d = Daemon::builder().flags(&["--bip", "10.99.0.1/24"]).start();
    assert_tables(&d, "bip", &[]);
    assert_eq!(ipv4(&link(&d, "docker0")), ["10.99.0.1/24"]);
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}])
    );
}

#[test]
fn mtu_is_set_on_docker0() {
    let d = Daemon::builder().flags(&["--mtu", "1400"]).start();
    let docker0 = link(&d, "docker0");
    assert_eq!(docker0["mtu"], 1400);
    assert_eq!(ipv4(&docker0), ["172.17.0.1/16"]);
    let options = &d.get("/networks/bridge").json()["Options"];
    assert_eq!(options["com.docker.network.driver.mtu"], "1400");
}

#[test]
fn fixed_cidr_narrows_container_addresses() {
    let d = Daemon::builder()
        .flags(&["--bip", "10.66.0.1/16", "--fixed-cidr", "10.66.5.0/24"])
        .start();
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "10.66.0.0/16", "IPRange": "10.66.5.0/24", "Gateway": "10.66.0.1"}])
    );
    assert_eq!(ipv4(&link(&d, "docker0")), ["10.66.0.1/16"]);
}

#[test]
fn ip_forward_false_leaves_forwarding_and_the_forward_policy_alone() {
    let d = Daemon::builder().flag("--ip-forward=false").start();
    assert_eq!(ip_forward(&d), "net.ipv4.ip_forward = 0");
    assert_tables(&d, "forward-policy-kept", &[]);

    // Forwarding already on: dockerd leaves the sysctl on and the policy
    // as the host had it; it closes FORWARD only when it opened forwarding.
    let mut d = Daemon::builder().prepare();
    d.ns_ok("sysctl", &["-w", "net.ipv4.ip_forward=1"]);
    d.launch();
    assert_eq!(ip_forward(&d), "net.ipv4.ip_forward = 1");
    assert_tables(&d, "forward-policy-kept", &[]);
}

#[test]
fn user_and_internal_networks_add_their_rules_and_deleting_restores_the_defaults() {
    let d = Daemon::start();
    let user = d
        .docker_ok(&["network", "create", "front"])
        .trim()
        .to_string();
    let internal = create_network(&d, json!({"Name": "back", "Internal": true}));
    let (user_br, internal_br) = (bridge_of(&user), bridge_of(&internal));
    assert_tables(
        &d,
        "user-networks",
        &[("{user}", &user_br), ("{internal}", &internal_br)],
    );
    assert_eq!(ipv4(&link(&d, &user_br)), ["172.18.0.1/16"]);
    assert_eq!(ipv4(&link(&d, &internal_br)), ["172.19.0.1/16"]);

    d.docker_ok(&["network", "rm", "front"]);
    let reply = d.delete(&format!("/networks/{internal}"));
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_tables(&d, "defaults", &[]);
    assert!(!link_exists(&d, &user_br) && !link_exists(&d, &internal_br));
}

#[test]
fn restarts_duplicate_nothing_and_keep_docker0_and_the_users_rules() {
    let mut d = Daemon::start();
    let user = d
        .docker_ok(&["network", "create", "front"])
        .trim()
        .to_string();
    let user_br = bridge_of(&user);
    let docker0_index = link(&d, "docker0")["ifindex"].clone();
    d.ns_ok(
        "iptables",
        &["-A", "DOCKER-USER", "-s", "192.0.2.0/24", "-j", "DROP"],
    );
    d.ns_ok("iptables", &["-N", "MINE"]);
    d.ns_ok(
        "iptables",
        &["-A", "MINE", "-s", "198.51.100.7", "-j", "ACCEPT"],
    );
    d.ns_ok("iptables", &["-A", "FORWARD", "-j", "MINE"]);
    assert_tables(&d, "restarted", &[("{user}", &user_br)]);

    // Each restart leaves the tables exactly as they were, order included.
    for _ in 0..2 {
        d.restart();
        assert_tables(&d, "restarted", &[("{user}", &user_br)]);
        // docker0 is the same link, corrected in place, not made anew.
        let docker0 = link(&d, "docker0");
        assert_eq!(docker0["ifindex"], docker0_index);
        assert_eq!(ipv4(&docker0), ["172.17.0.1/16"]);
        assert_eq!(ipv4(&link(&d, &user_br)), ["172.18.0.1/16"]);
    }
}

#[test]
fn rules_of_a_network_lost_in_a_crash_are_removed_at_start() {
    let mut d = Daemon::start();
    let lost = create_network(&d, json!({"Name": "lost"}));
    d.kill();
    let record = d
        .paths
        .data_root
        .join("network/networks")
        .join(format!("{lost}.json"));
    fs::remove_file(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
    d.launch();
    assert_tables(&d, "defaults", &[]);
    assert!(!link_exists(&d, &bridge_of(&lost)));
}

#[test]
fn an_existing_bridge_given_with_b_is_used_as_is() {
    let mut d = Daemon::builder().flags(&["-b", "br0"]).prepare();
    d.ns_ok(
        "ip",
        &["link", "add", "br0", "mtu", "1450", "type", "bridge"],
    );
    d.ns_ok("ip", &["addr", "add", "10.55.0.1/24", "dev", "br0"]);
    d.launch();
    assert_tables(&d, "b-bridge", &[]);
    let br0 = link(&d, "br0");
    assert_eq!(ipv4(&br0), ["10.55.0.1/24"]);
    assert_eq!(br0["mtu"], 1450);
    assert!(!link_exists(&d, "docker0"));
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "10.55.0.0/24", "Gateway": "10.55.0.1"}])
    );

    // The daemon's restart never deletes or re-addresses it.
    let index = br0["ifindex"].clone();
    d.restart();
    let br0 = link(&d, "br0");
    assert_eq!(
        (br0["ifindex"].clone(), ipv4(&br0)),
        (index, vec!["10.55.0.1/24".to_string()])
    );
    assert_tables(&d, "b-bridge", &[]);
}

#[test]
fn a_missing_b_bridge_refuses_the_start_and_creates_nothing() {
    let exited = Daemon::builder().flags(&["-b", "nothere"]).run_to_exit();
    assert_eq!(exited.status.code(), Some(1), "{}", exited.stderr);
    assert!(exited.stderr.contains("nothere"), "{}", exited.stderr);
    let d = &exited.daemon;
    let links: Vec<Value> = d.ip_json(&["link"]).as_array().unwrap().clone();
    let names: Vec<&str> = links
        .iter()
        .map(|l| l["ifname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lo"]);
    assert_eq!(normalise(&d.iptables_save()), "");
    assert_eq!(ip_forward(d), "net.ipv4.ip_forward = 0");
}

#[test]
fn an_existing_docker0_with_other_addresses_is_corrected() {
    let mut d = Daemon::builder()
        .flags(&["--bip", "10.77.0.1/24"])
        .prepare();
    d.ns_ok("ip", &["link", "add", "docker0", "type", "bridge"]);
    d.ns_ok("ip", &["addr", "add", "10.1.2.3/24", "dev", "docker0"]);
    d.ns_ok("ip", &["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    let index = link(&d, "docker0")["ifindex"].clone();
    d.launch();
    let docker0 = link(&d, "docker0");
    assert_eq!(ipv4(&docker0), ["10.77.0.1/24"]);
    assert_eq!(docker0["ifindex"], index);
}

#[test]
fn docker0_takes_the_next_pool_subnet_when_172_17_is_routed() {
    let mut d = Daemon::builder().prepare();
    // The kernel here has no dummy links: a veth carries the route.
    d.ns_ok(
        "ip",
        &[
            "link", "add", "taken0", "type", "veth", "peer", "name", "taken1",
        ],
    );
    d.ns_ok("ip", &["link", "set", "taken0", "up"]);
    d.ns_ok("ip", &["link", "set", "taken1", "up"]);
    d.ns_ok("ip", &["route", "add", "172.17.0.0/16", "dev", "taken0"]);
    d.launch();
    assert_eq!(ipv4(&link(&d, "docker0")), ["172.18.0.1/16"]);
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}])
    );
    let saved = normalise(&d.iptables_save());
    assert!(
        saved.contains("-A POSTROUTING -s 172.18.0.0/16 ! -o docker0 -j MASQUERADE\n"),
        "{saved}"
    );
}

#[test]
fn a_new_bip_at_restart_readdresses_the_same_docker0_and_replaces_its_rules() {
    let mut d = Daemon::start();
    let index = link(&d, "docker0")["ifindex"].clone();
    d.stop();
    d.set_flags(&["--bip", "10.99.0.1/24"]);
    d.launch();
    let docker0 = link(&d, "docker0");
    assert_eq!(ipv4(&docker0), ["10.99.0.1/24"]);
    assert_eq!(docker0["ifindex"], index);
    assert_tables(&d, "bip", &[]);
}

#[test]
fn dropping_b_at_restart_keeps_that_bridge_and_brings_docker0_back() {
    let mut d = Daemon::builder().flags(&["-b", "br0"]).prepare();
    d.ns_ok("ip", &["link", "add", "br0", "type", "bridge"]);
    d.ns_ok("ip", &["addr", "add", "10.55.0.1/24", "dev", "br0"]);
    d.launch();
    d.stop();
    d.set_flags(&[]);
    d.launch();
    assert_eq!(ipv4(&link(&d, "br0")), ["10.55.0.1/24"]);
    assert_eq!(ipv4(&link(&d, "docker0")), ["172.17.0.1/16"]);
    assert_tables(&d, "defaults", &[]);
}

#[test]
fn b_none_makes_no_default_bridge_and_no_bridge_rules() {
    let d = Daemon::builder().flags(&["-b", "none"]).start();
    assert_tables(&d, "no-bridge", &[]);
    assert!(!link_exists(&d, "docker0"));
    assert_eq!(d.get("/networks/bridge").status, 404);
}

#[test]
fn published_port_rules_left_by_a_crash_are_removed_at_start() {
    let mut d = Daemon::start();
    d.kill();
    // What a container's `-p 8080:80` adds, left behind by a crash before
    // its endpoint was recorded.
    d.ns_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "DOCKER",
            "!",
            "-i",
            "docker0",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "DNAT",
            "--to-destination",
            "172.17.0.2:80",
        ],
    );
    d.ns_ok(
        "iptables",
        &[
            "-A",
            "DOCKER",
            "-d",
            "172.17.0.2/32",
            "!",
            "-i",
            "docker0",
            "-o",
            "docker0",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-j",
            "ACCEPT",
        ],
    );
    d.ns_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "172.17.0.2/32",
            "-d",
            "172.17.0.2/32",
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-j",
            "MASQUERADE",
        ],
    );
    d.launch();
    assert_tables(&d, "defaults", &[]);
}

#[test]
fn restarting_with_icc_false_then_no_masquerade_swaps_exactly_those_rules() {
    let mut d = Daemon::start();
    d.stop();
    d.set_flags(&["--icc=false"]);
    d.launch();
    assert_tables(&d, "icc-false", &[]);
    d.stop();
    d.set_flags(&["--icc=false", "--ip-masq=false"]);
    d.launch();
    let want = expected("icc-false")
        .replace(
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n",
            "",
        )
        .replace("-A DOCKER -i docker0 -j RETURN\n", "");
    assert_eq!(normalise(&d.iptables_save()), want);
}

#[test]
fn without_bip_an_existing_docker0_keeps_its_subnet() {
    let mut d = Daemon::builder().prepare();
    d.ns_ok("ip", &["link", "add", "docker0", "type", "bridge"]);
    d.ns_ok("ip", &["addr", "add", "172.19.0.1/16", "dev", "docker0"]);
    d.ns_ok("ip", &["addr", "add", "10.1.2.3/24", "dev", "docker0"]);
    d.launch();
    assert_eq!(ipv4(&link(&d, "docker0")), ["172.19.0.1/16"]);
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}])
    );
    assert_tables(&d, "defaults-172-19", &[]);
}

#[test]
fn an_existing_docker0_in_a_stored_networks_subnet_gets_a_free_one() {
    let mut d = Daemon::builder().flags(&["-b", "none"]).start();
    create_network(
        &d,
        json!({"Name": "owner", "IPAM": {"Config": [{"Subnet": "172.19.0.0/16"}]}}),
    );
    d.stop();
    d.ns_ok("ip", &["link", "add", "docker0", "type", "bridge"]);
    d.ns_ok("ip", &["addr", "add", "172.19.0.9/16", "dev", "docker0"]);
    d.set_flags(&[]);
    d.launch();
    assert_eq!(ipv4(&link(&d, "docker0")), ["172.17.0.1/16"]);
    assert_eq!(
        default_ipam(&d),
        json!([{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}])
    );
}
