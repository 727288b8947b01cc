//! Kernel tests of the OS layer, each in namespaces of its own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnetwork::Ipv4Network;
use serde_json::Value;

use super::*;
use crate::error::{ErrorKind, Kind};
use crate::model::MacAddr;

/// A namespace under a temp dir, removed when dropped (also on panic).
pub(crate) struct TestNetns {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNetns {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-osl-test")
            .tempdir()
            .unwrap();
        let path = dir.path().join("netns");
        create_netns(&path).unwrap();
        TestNetns { path, _dir: dir }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = delete_netns(&self.path);
    }
}

/// `ip -j ARGS` inside the namespace, as a user would look.
fn ip_json(ns: &TestNetns, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["ip", "-j"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

#[tokio::test]
async fn new_namespace_has_lo_up_and_nothing_else() {
    let ns = TestNetns::new();
    let nl = NetlinkHandle::for_netns(ns.path()).await.unwrap();
    let links = nl.links().await.unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert!(links[0].up);
    assert_eq!(nl.link("eth0").await.unwrap(), None);
    let err = nl.require_link("eth0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn bridge_lifecycle_and_address_correction() {
    let ns = TestNetns::new();
    let nl = NetlinkHandle::for_netns(ns.path()).await.unwrap();
    let br = nl.create_bridge("br-osltest", 1400).await.unwrap();
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    assert_eq!(br.mtu, 1400);
    assert!(br.up);
    let err = nl.create_bridge("br-osltest", 1500).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // A bridge holding a wrong address, the right one as a secondary and an
    // unrelated one ends with exactly the wanted address.
    for a in ["10.77.0.9/16", "10.77.0.1/16", "192.168.77.1/24"] {
        nl.add_ipv4_address(br.index, net(a)).await.unwrap();
    }
    let dup = nl.add_ipv4_address(br.index, net("10.77.0.1/16")).await;
    assert_eq!(dup.unwrap_err().kind(), ErrorKind::Conflict);
    nl.set_ipv4_addresses(br.index, &[net("10.77.0.1/16")])
        .await
        .unwrap();
    nl.set_ipv4_addresses(br.index, &[net("10.77.0.1/16")])
        .await
        .unwrap();
    let shown = ip_json(&ns, &["-4", "addr", "show", "dev", "br-osltest"]);
    let addrs: Vec<String> = shown[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(addrs, vec!["10.77.0.1/16"]);

    nl.set_mtu(br.index, 1300).await.unwrap();
    let mac: MacAddr = "02:42:0a:4d:00:01".parse().unwrap();
    nl.set_mac(br.index, mac).await.unwrap();
    let br = nl.require_link("br-osltest").await.unwrap();
    assert_eq!((br.mtu, br.mac), (1300, Some(mac)));

    assert!(nl.delete_link("br-osltest").await.unwrap());
    assert!(!nl.delete_link("br-osltest").await.unwrap());
    assert_eq!(nl.link("br-osltest").await.unwrap(), None);
}

#[tokio::test]
async fn veth_peer_is_made_inside_the_other_namespace() {
    let host = TestNetns::new();
    let sandbox = TestNetns::new();
    let nl = NetlinkHandle::for_netns(host.path()).await.unwrap();
    let br = nl.create_bridge("br-vethtest", 1450).await.unwrap();
    let mac: MacAddr = "02:42:0a:01:00:02".parse().unwrap();
    let pair = VethPair {
        host_name: "vethosltest",
        host_master: Some(br.index),
        peer_name: "eth0",
        peer_mac: Some(mac),
        mtu: 1450,
    };
    nl.create_veth_into_netns(&pair, sandbox.path())
        .await
        .unwrap();

    let hostend = nl.require_link("vethosltest").await.unwrap();
    assert_eq!(hostend.master, Some(br.index));
    assert!(hostend.up);
    assert_eq!(nl.link("eth0").await.unwrap(), None);
    let shown = ip_json(&sandbox, &["link", "show", "dev", "eth0"]);
    assert_eq!(shown[0]["address"], "02:42:0a:01:00:02");
    assert_eq!(shown[0]["mtu"], 1450);

    // The name is taken in the sandbox now: a second pair fails whole.
    let again = VethPair {
        host_name: "vethosltest2",
        ..pair.clone()
    };
    let err = nl
        .create_veth_into_netns(&again, sandbox.path())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(nl.link("vethosltest2").await.unwrap(), None);

    let sb = NetlinkHandle::for_netns(sandbox.path()).await.unwrap();
    let eth0 = sb.require_link("eth0").await.unwrap();
    assert!(!eth0.up);
    sb.set_up(eth0.index).await.unwrap();
    assert!(sb.require_link("eth0").await.unwrap().up);
    sb.add_ipv4_address(eth0.index, net("10.1.0.2/24"))
        .await
        .unwrap();
    sb.add_default_route(Ipv4Addr::new(10, 1, 0, 1), eth0.index)
        .await
        .unwrap();
    let routes = ip_json(&sandbox, &["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.1.0.1");
    assert_eq!(routes[0]["dev"], "eth0");

    assert!(nl.delete_link("vethosltest").await.unwrap());
    assert_eq!(sb.link("eth0").await.unwrap(), None);
}

#[tokio::test]
async fn networks_in_use_cover_addresses_and_routes_but_not_default() {
    let ns = TestNetns::new();
    let nl = NetlinkHandle::for_netns(ns.path()).await.unwrap();
    let br = nl.create_bridge("br-inuse", 1500).await.unwrap();
    nl.add_ipv4_address(br.index, net("10.20.30.40/24"))
        .await
        .unwrap();
    let status = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["sh", "-c"])
        .arg(
            "ip route add 172.29.0.0/16 via 10.20.30.1 && \
             ip route add default via 10.20.30.1",
        )
        .status()
        .unwrap();
    assert!(status.success());
    let used = nl.ipv4_networks_in_use().await.unwrap();
    for want in ["10.20.30.0/24", "172.29.0.0/16", "127.0.0.0/8"] {
        assert!(used.contains(&net(want)), "{want} missing from {used:?}");
    }
    assert!(!used.iter().any(|n| n.prefix() == 0), "{used:?}");
}
