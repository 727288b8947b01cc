//! The firewall against the real iptables (nf_tables) in a private namespace.

mod netns_support;

use netcontroller::error::{ErrorKind, Kind};
use netcontroller::firewall::{BridgeRules, Firewall, FirewallOptions, PortRules};
use netcontroller::model::{PortBinding, Proto};
use netns_support::TestNetns;

/// What dockerd 20.10 shows for docker0 with default flags (DESIGN.md).
const DOCKERD_DEFAULT: &str = "\
*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:DOCKER -
:DOCKER-ISOLATION-STAGE-1 -
:DOCKER-ISOLATION-STAGE-2 -
:DOCKER-USER -
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
:DOCKER -
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
";

/// `iptables-save` in the namespace, without `#` lines and counters.
fn iptables_save(ns: &TestNetns) -> String {
    let out = ns.cmd("iptables-save", &[]);
    let mut text = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = match line.strip_suffix(']') {
            Some(rest) if line.starts_with(':') => rest.rsplit_once(" [").map_or(line, |(l, _)| l),
            _ => line,
        };
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn opts(userland_proxy: bool) -> FirewallOptions {
    FirewallOptions {
        userland_proxy,
        forward_policy_drop: true,
    }
}

fn docker0() -> BridgeRules {
    BridgeRules {
        bridge: "docker0".into(),
        subnet: "172.17.0.1/16".parse().unwrap(),
        icc: true,
        masquerade: true,
        internal: false,
    }
}

fn user_net() -> BridgeRules {
    BridgeRules {
        bridge: "br-0123456789ab".into(),
        subnet: "172.18.0.0/16".parse().unwrap(),
        icc: false,
        masquerade: true,
        internal: false,
    }
}

/// The same bindings as the golden files (src/firewall/testdata/two-networks-*).
fn ports(bridge: &str, ip: &str, host_base: u16) -> PortRules {
    let b = |proto, host_ip: &str, host_port, container_port| PortBinding {
        proto,
        container_port,
        host_ip: host_ip.parse().unwrap(),
        host_port,
    };
    PortRules {
        bridge: bridge.into(),
        container_ip: ip.parse().unwrap(),
        bindings: vec![
            b(Proto::Tcp, "0.0.0.0", host_base, 80),
            b(Proto::Udp, "127.0.0.1", host_base + 1, 53),
            b(Proto::Sctp, "0.0.0.0", host_base + 2, 9000),
        ],
    }
}

#[test]
fn base_and_network_twice_give_dockerds_rules_once() {
    let ns = TestNetns::new();
    let fw = Firewall::new(opts(true));
    ns.run(|| {
        fw.setup_base().unwrap();
        fw.setup_base().unwrap();
        fw.add_network(&docker0()).unwrap();
        fw.add_network(&docker0()).unwrap();
    });
    assert_eq!(iptables_save(&ns), DOCKERD_DEFAULT);
}

#[test]
fn removing_networks_leaves_only_the_base() {
    let ns = TestNetns::new();
    let fw = Firewall::new(opts(true));
    ns.run(|| fw.setup_base().unwrap());
    let base = iptables_save(&ns);
    let mut internal = user_net();
    internal.internal = true;
    ns.run(|| {
        fw.add_network(&docker0()).unwrap();
        fw.add_network(&internal).unwrap();
    });
    assert!(iptables_save(&ns).contains("! -s 172.18.0.0/16 -o br-0123456789ab -j DROP"));
    ns.run(|| {
        fw.remove_network(&internal).unwrap();
        fw.remove_network(&docker0()).unwrap();
        fw.remove_network(&docker0()).unwrap();
    });
    assert_eq!(iptables_save(&ns), base);
}

#[test]
fn user_rules_survive_setup_base() {
    let ns = TestNetns::new();
    let fw = Firewall::new(opts(true));
    ns.run(|| fw.setup_base().unwrap());
    ns.cmd(
        "iptables",
        &["-I", "DOCKER-USER", "-s", "10.9.0.0/16", "-j", "DROP"],
    );
    ns.cmd("iptables", &["-N", "MINE"]);
    ns.cmd("iptables", &["-A", "MINE", "-j", "ACCEPT"]);
    ns.cmd("iptables", &["-I", "FORWARD", "-j", "MINE"]);
    ns.run(|| fw.setup_base().unwrap());
    let saved = iptables_save(&ns);
    assert!(
        saved.contains(
            "-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n-A FORWARD -j MINE\n"
        ),
        "{saved}"
    );
    assert!(
        saved.contains("-A DOCKER-USER -s 10.9.0.0/16 -j DROP\n-A DOCKER-USER -j RETURN\n"),
        "{saved}"
    );
    assert!(saved.contains("-A MINE -j ACCEPT\n"), "{saved}");
    assert_eq!(saved.matches("-j RETURN\n").count(), 3, "{saved}");
}

#[test]
fn two_networks_with_ports_match_dockerds_order_and_go_away() {
    let ns = TestNetns::new();
    let fw = Firewall::new(opts(true));
    ns.run(|| fw.setup_base().unwrap());
    let base = iptables_save(&ns);
    let p0 = ports("docker0", "172.17.0.2", 8080);
    let p1 = ports("br-0123456789ab", "172.18.0.2", 9080);
    ns.run(|| {
        fw.add_network(&docker0()).unwrap();
        fw.add_network(&user_net()).unwrap();
        fw.add_ports(&p0).unwrap();
        fw.add_ports(&p1).unwrap();
        fw.add_ports(&p1).unwrap();
    });
    assert_eq!(
        iptables_save(&ns),
        include_str!("../src/firewall/testdata/two-networks-proxy.txt")
    );
    ns.run(|| {
        fw.remove_ports(&p0).unwrap();
        fw.remove_ports(&p1).unwrap();
    });
    let without_ports = iptables_save(&ns);
    assert!(!without_ports.contains("--dport"), "{without_ports}");
    assert!(!without_ports.contains("CHECKSUM"), "{without_ports}");
    ns.run(|| {
        fw.remove_network(&user_net()).unwrap();
        fw.remove_network(&docker0()).unwrap();
    });
    // Removing the sctp rule leaves an empty mangle table behind.
    let after = iptables_save(&ns);
    assert_eq!(after[after.find("*filter").unwrap()..], base);
}

#[test]
fn without_userland_proxy_rules_and_route_localnet_match_dockerd() {
    let ns = TestNetns::new();
    ns.cmd("ip", &["link", "add", "docker0", "type", "bridge"]);
    ns.cmd("ip", &["link", "add", "br-0123456789ab", "type", "bridge"]);
    let fw = Firewall::new(opts(false));
    ns.run(|| {
        fw.setup_base().unwrap();
        fw.add_network(&docker0()).unwrap();
        fw.add_network(&user_net()).unwrap();
        fw.add_ports(&ports("docker0", "172.17.0.2", 8080)).unwrap();
        fw.add_ports(&ports("br-0123456789ab", "172.18.0.2", 9080))
            .unwrap();
    });
    assert_eq!(
        iptables_save(&ns),
        include_str!("../src/firewall/testdata/two-networks-hairpin.txt")
    );
    for bridge in ["docker0", "br-0123456789ab"] {
        let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
        let value = ns.cmd("cat", &[&path]).stdout;
        assert_eq!(String::from_utf8_lossy(&value).trim(), "1", "{bridge}");
    }
}

#[test]
fn failed_add_network_adds_nothing() {
    let ns = TestNetns::new();
    let fw = Firewall::new(opts(false));
    ns.run(|| fw.setup_base().unwrap());
    let base = iptables_save(&ns);
    // No such bridge: route_localnet cannot be set, so nothing is programmed.
    let err = ns.run(|| fw.add_network(&docker0()).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::System);
    assert_eq!(iptables_save(&ns), base);
}
