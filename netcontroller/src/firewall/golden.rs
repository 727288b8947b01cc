//! Golden tests: the tables after setup_base + add_network + add_ports over
//! the matrix icc x internal x masquerade x ports x userland-proxy, compared
//! with the files in `testdata/` (normalised iptables-save text).
//! `BERTH_UPDATE_GOLDEN=1 cargo test -p netcontroller golden` rewrites them.

use std::path::PathBuf;

use super::*;
use crate::model::{PortBinding, Proto};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/firewall/testdata")
        .join(name)
}

fn check(name: &str, actual: &str) -> Result<(), String> {
    let path = testdata(name);
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let expected =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{name} differs:\n--- expected\n{expected}--- actual\n{actual}"
        ))
    }
}

fn binding(proto: Proto, host_ip: &str, host_port: u16, container_port: u16) -> PortBinding {
    PortBinding {
        proto,
        container_port,
        host_ip: host_ip.parse().unwrap(),
        host_port,
    }
}

/// Three bindings (tcp on all addresses, udp on loopback, sctp); host ports
/// start at `host_base` so several containers do not share them.
fn ports(bridge: &str, ip: &str, host_base: u16) -> PortRules {
    PortRules {
        bridge: bridge.into(),
        container_ip: ip.parse().unwrap(),
        bindings: vec![
            binding(Proto::Tcp, "0.0.0.0", host_base, 80),
            binding(Proto::Udp, "127.0.0.1", host_base + 1, 53),
            binding(Proto::Sctp, "0.0.0.0", host_base + 2, 9000),
        ],
    }
}

fn flag(on: bool, yes: &'static str, no: &'static str) -> &'static str {
    if on {
        yes
    } else {
        no
    }
}

#[test]
fn matrix_matches_golden_files() {
    let mut failures = Vec::new();
    for bits in 0..32u8 {
        let bit = |n: u8| bits & (1 << n) != 0;
        let (icc, internal, masquerade, with_ports, proxy) =
            (bit(0), bit(1), bit(2), bit(3), bit(4));
        let opts = FirewallOptions {
            userland_proxy: proxy,
            forward_policy_drop: true,
        };
        let net = BridgeRules {
            bridge: "br-0123456789ab".into(),
            subnet: "10.10.0.1/24".parse().unwrap(),
            icc,
            masquerade,
            internal,
        };
        let p: Vec<PortRules> = if with_ports {
            vec![ports("br-0123456789ab", "10.10.0.2", 8080)]
        } else {
            Vec::new()
        };
        let name = format!(
            "{}-{}-{}-{}-{}.txt",
            flag(icc, "icc", "noicc"),
            flag(internal, "internal", "external"),
            flag(masquerade, "masq", "nomasq"),
            flag(with_ports, "ports", "noports"),
            flag(proxy, "proxy", "hairpin"),
        );
        if let Err(e) = check(&name, &expected_tables(&opts, &[net], &p)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn two_networks_match_golden_files() {
    for proxy in [true, false] {
        let opts = FirewallOptions {
            userland_proxy: proxy,
            forward_policy_drop: true,
        };
        let docker0 = BridgeRules {
            bridge: "docker0".into(),
            subnet: "172.17.0.0/16".parse().unwrap(),
            icc: true,
            masquerade: true,
            internal: false,
        };
        let user = BridgeRules {
            bridge: "br-0123456789ab".into(),
            subnet: "172.18.0.0/16".parse().unwrap(),
            icc: false,
            masquerade: true,
            internal: false,
        };
        let p = [
            ports("docker0", "172.17.0.2", 8080),
            ports("br-0123456789ab", "172.18.0.2", 9080),
        ];
        let name = format!("two-networks-{}.txt", flag(proxy, "proxy", "hairpin"));
        check(&name, &expected_tables(&opts, &[docker0, user], &p)).unwrap();
    }
}
