//! The bridge driver against the kernel: a "daemon" namespace where the
//! driver works, sandbox namespaces for endpoints, all made per test.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::{driver, endpoint, flags, join_spec, network, Netns};
use drivers::bridge::{BridgeConfig, BridgeFirewall, BridgeNetwork, OPT_BRIDGE_NAME, OPT_MTU};
use netcontroller::driver::{Driver, DriverError, DriverResult};
use netcontroller::error::{ErrorKind, Kind};
use netcontroller::model::{NetworkSpec, PortBinding};
use netcontroller::osl::NetlinkHandle;

fn bridge_name(net: &NetworkSpec) -> String {
    format!("br-{}", net.short_id())
}

#[tokio::test]
async fn create_restore_and_delete_network() {
    let daemon = Netns::new();
    let drv = driver(&daemon, BridgeConfig::default()).await;
    let net = network("10.10.0.0/24", &[(OPT_MTU, "1400")]);
    let br = bridge_name(&net);
    drv.validate_network(&net).unwrap();
    drv.create_network(&net).await.unwrap();

    let link = daemon.link(&br).expect("bridge exists");
    assert_eq!(link["linkinfo"]["info_kind"], "bridge");
    assert_eq!(link["mtu"], 1400);
    assert!(flags(&link).contains(&"UP".to_string()));
    assert_eq!(daemon.ipv4_addrs(&br), vec!["10.10.0.1/24"]);

    // Restore on a live bridge changes nothing and duplicates nothing.
    drv.restore_network(&net).await.unwrap();
    drv.restore_network(&net).await.unwrap();
    assert_eq!(daemon.ipv4_addrs(&br), vec!["10.10.0.1/24"]);
    assert_eq!(daemon.links_of_kind("bridge"), vec![br.clone()]);

    // Restore after the bridge vanished (reboot, crash) makes it again.
    daemon.sh(&format!("ip link del {br}"));
    drv.restore_network(&net).await.unwrap();
    assert_eq!(daemon.ipv4_addrs(&br), vec!["10.10.0.1/24"]);

    drv.delete_network(&net).await.unwrap();
    assert!(daemon.link(&br).is_none());
    assert!(drv.network(&net.id).is_none());
    // Tearing down what is already gone is not an error.
    drv.delete_network(&net).await.unwrap();
}

#[tokio::test]
async fn existing_bridge_is_corrected_not_duplicated() {
    let daemon = Netns::new();
    daemon.sh("ip link add br-existing mtu 1500 type bridge && \
         ip addr add 10.20.0.9/24 dev br-existing && \
         ip addr add 10.20.0.1/24 dev br-existing && \
         ip addr add 192.168.20.1/24 dev br-existing");
    let drv = driver(&daemon, BridgeConfig::default()).await;
    let net = network(
        "10.20.0.0/24",
        &[(OPT_BRIDGE_NAME, "br-existing"), (OPT_MTU, "1450")],
    );
    drv.create_network(&net).await.unwrap();

    assert_eq!(daemon.ipv4_addrs("br-existing"), vec!["10.20.0.1/24"]);
    let link = daemon.link("br-existing").unwrap();
    assert_eq!(link["mtu"], 1450);
    assert!(flags(&link).contains(&"UP".to_string()));
    assert_eq!(daemon.links_of_kind("bridge"), vec!["br-existing"]);
}

#[tokio::test]
async fn join_plugs_sandboxes_into_the_bridge_and_leave_unplugs() {
    let daemon = Netns::new();
    let (sb_a, sb_b) = (Netns::new(), Netns::new());
    let drv = driver(&daemon, BridgeConfig::default()).await;
    let net = network("10.30.0.0/24", &[(OPT_MTU, "1400")]);
    let br = bridge_name(&net);
    drv.create_network(&net).await.unwrap();

    let (ep_a, ep_b) = (endpoint(&net, 2), endpoint(&net, 3));
    let info_a = drv
        .join(&net, &ep_a, &join_spec(&sb_a, "eth0", true))
        .await
        .unwrap();
    let info_b = drv
        .join(&net, &ep_b, &join_spec(&sb_b, "eth0", false))
        .await
        .unwrap();

    // Inside the sandbox: eth0 with dockerd's MAC, the address, the MTU, up,
    // and the default route via the gateway.
    let eth0 = sb_a.link("eth0").expect("eth0 in sandbox");
    assert_eq!(eth0["address"], "02:42:0a:1e:00:02");
    assert_eq!(eth0["mtu"], 1400);
    assert!(flags(&eth0).contains(&"UP".to_string()));
    assert_eq!(sb_a.ipv4_addrs("eth0"), vec!["10.30.0.2/24"]);
    let routes = sb_a.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.30.0.1");
    assert_eq!(routes[0]["dev"], "eth0");
    assert_eq!(
        sb_b.ip_json(&["-4", "route", "show", "default"]),
        serde_json::json!([])
    );

    // On the daemon side: the veth is on the bridge, up, with the MTU.
    assert!(info_a.host_ifname.starts_with("veth") && info_a.host_ifname.len() == 11);
    let veth = daemon.link(&info_a.host_ifname).expect("host veth");
    assert_eq!(veth["master"], br.as_str());
    assert_eq!(veth["mtu"], 1400);
    assert!(flags(&veth).contains(&"UP".to_string()));

    assert!(sb_a.ping(Ipv4Addr::new(10, 30, 0, 3)), "a -> b");
    assert!(sb_b.ping(Ipv4Addr::new(10, 30, 0, 2)), "b -> a");
    assert!(sb_a.ping(Ipv4Addr::new(10, 30, 0, 1)), "a -> gateway");

    drv.leave(&net, &ep_a, &info_a).await.unwrap();
    assert!(daemon.link(&info_a.host_ifname).is_none());
    assert!(sb_a.link("eth0").is_none());
    drv.leave(&net, &ep_a, &info_a).await.unwrap();
    assert!(daemon.link(&info_b.host_ifname).is_some());

    drv.leave(&net, &ep_b, &info_b).await.unwrap();
    // The bridge keeps the network's MTU with no ports left (the kernel
    // would fall back to 1500 for a bridge whose MTU it adjusts itself).
    assert_eq!(daemon.link(&br).unwrap()["mtu"], 1400);
    drv.delete_network(&net).await.unwrap();
    assert!(daemon.links_of_kind("veth").is_empty());
    assert!(daemon.link(&br).is_none());
}

#[tokio::test]
async fn failed_joins_leave_nothing_behind() {
    let daemon = Netns::new();
    let sandbox = Netns::new();
    let drv = driver(&daemon, BridgeConfig::default()).await;
    let net = network("10.40.0.0/24", &[]);
    drv.create_network(&net).await.unwrap();
    sandbox.sh("ip link add eth0 type veth peer name taken0");

    // The interface name is taken in the sandbox.
    let err = drv
        .join(&net, &endpoint(&net, 2), &join_spec(&sandbox, "eth0", true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(daemon.links_of_kind("veth").is_empty());

    // The default route cannot be added: the gateway is off the subnet.
    let mut ep = endpoint(&net, 3);
    ep.gateway = Some(Ipv4Addr::new(192, 168, 99, 1));
    let err = drv
        .join(&net, &ep, &join_spec(&sandbox, "eth1", true))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::System, "{err}");
    assert!(daemon.links_of_kind("veth").is_empty());
    assert!(sandbox.link("eth1").is_none());

    // The sandbox namespace is gone.
    let gone = Netns::new();
    let spec = join_spec(&gone, "eth0", true);
    drop(gone);
    let err = drv.join(&net, &endpoint(&net, 4), &spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // The network was never set up by this driver.
    let other = network("10.41.0.0/24", &[]);
    let err = drv
        .join(
            &other,
            &endpoint(&other, 2),
            &join_spec(&sandbox, "eth2", true),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(daemon.links_of_kind("veth").is_empty());

    // The sandbox keeps only what it had.
    let mut left = sandbox
        .ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    left.sort();
    assert_eq!(left, vec!["eth0", "lo", "taken0"]);
}

#[tokio::test]
async fn external_bridge_is_used_but_never_changed() {
    let daemon = Netns::new();
    let sandbox = Netns::new();
    daemon.sh("ip link add br-ext mtu 1500 type bridge && ip addr add 10.50.0.1/16 dev br-ext");
    let config = BridgeConfig {
        default_mtu: 1500,
        external_bridge: Some("br-ext".into()),
        ..BridgeConfig::default()
    };
    let drv = driver(&daemon, config).await;
    let net = network("10.60.0.0/24", &[(OPT_BRIDGE_NAME, "br-ext")]);
    drv.create_network(&net).await.unwrap();
    assert_eq!(daemon.ipv4_addrs("br-ext"), vec!["10.50.0.1/16"]);
    assert!(flags(&daemon.link("br-ext").unwrap()).contains(&"UP".to_string()));
    assert!(drv.network(&net.id).unwrap().external);

    let ep = endpoint(&net, 2);
    let info = drv
        .join(&net, &ep, &join_spec(&sandbox, "eth0", false))
        .await
        .unwrap();
    assert_eq!(daemon.link(&info.host_ifname).unwrap()["master"], "br-ext");
    drv.leave(&net, &ep, &info).await.unwrap();

    drv.delete_network(&net).await.unwrap();
    assert_eq!(daemon.ipv4_addrs("br-ext"), vec!["10.50.0.1/16"]);

    // An external bridge that does not exist is not made up.
    let missing = BridgeConfig {
        default_mtu: 1500,
        external_bridge: Some("br-nothere".into()),
        ..BridgeConfig::default()
    };
    let drv = driver(&daemon, missing).await;
    let net = network("10.61.0.0/24", &[(OPT_BRIDGE_NAME, "br-nothere")]);
    let err = drv.create_network(&net).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(daemon.link("br-nothere").is_none());
}

#[tokio::test]
async fn bridge_names_are_not_shared_or_taken_from_other_links() {
    let daemon = Netns::new();
    let drv = driver(&daemon, BridgeConfig::default()).await;
    let first = network("10.70.0.0/24", &[(OPT_BRIDGE_NAME, "br-same")]);
    let second = network("10.71.0.0/24", &[(OPT_BRIDGE_NAME, "br-same")]);
    drv.create_network(&first).await.unwrap();
    let err = drv.create_network(&second).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(daemon.ipv4_addrs("br-same"), vec!["10.70.0.1/24"]);

    daemon.sh("ip link add br-veth type veth peer name br-veth-peer");
    let net = network("10.72.0.0/24", &[(OPT_BRIDGE_NAME, "br-veth")]);
    let err = drv.create_network(&net).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(daemon.ipv4_addrs("br-veth").is_empty());
    assert!(daemon.link("br-veth").is_some());
}

/// A firewall that records what it saw and can be told to fail.
struct FakeFirewall {
    nl: NetlinkHandle,
    fail_up: AtomicBool,
    events: Mutex<Vec<String>>,
}

#[async_trait]
impl BridgeFirewall for FakeFirewall {
    async fn network_up(&self, _net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        let link = self.nl.link(&bridge.options.bridge_name).await.unwrap();
        let addrs: Vec<String> = (self.nl.ipv4_addresses(bridge.bridge_index).await.unwrap())
            .iter()
            .map(ToString::to_string)
            .collect();
        self.events.lock().unwrap().push(format!(
            "up bridge_up={} addrs={}",
            link.is_some_and(|l| l.up),
            addrs.join(",")
        ));
        if self.fail_up.load(Ordering::SeqCst) {
            return Err(DriverError::Conflict("rule refused".into()));
        }
        Ok(())
    }

    async fn network_down(&self, _net: &NetworkSpec, bridge: &BridgeNetwork) -> DriverResult<()> {
        // Runs alongside the bridge's deletion: whether the bridge is still
        // there is up to timing, so only the call is recorded.
        self.events
            .lock()
            .unwrap()
            .push(format!("down {}", bridge.options.bridge_name));
        Ok(())
    }

    async fn ports_up(
        &self,
        _bridge: &BridgeNetwork,
        ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.events
            .lock()
            .unwrap()
            .push(format!("ports_up {ip} {}", bindings.len()));
        Ok(())
    }

    async fn ports_down(
        &self,
        _bridge: &BridgeNetwork,
        ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> DriverResult<()> {
        self.events
            .lock()
            .unwrap()
            .push(format!("ports_down {ip} {}", bindings.len()));
        Ok(())
    }
}

#[tokio::test]
async fn firewall_runs_on_a_live_bridge_and_its_failure_undoes_the_bridge() {
    let daemon = Netns::new();
    let nl = NetlinkHandle::for_netns(daemon.path()).await.unwrap();
    let firewall = Arc::new(FakeFirewall {
        nl: nl.clone(),
        fail_up: AtomicBool::new(true),
        events: Mutex::new(vec![]),
    });
    let drv = driver(&daemon, BridgeConfig::default())
        .await
        .with_firewall(firewall.clone());

    // A new bridge is deleted again when the firewall refuses.
    let net = network("10.80.0.0/24", &[]);
    let err = drv.create_network(&net).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(daemon.link(&bridge_name(&net)).is_none());
    assert!(drv.network(&net.id).is_none());

    // A reused bridge is put back as it was: address, MTU, down.
    daemon
        .sh("ip link add br-reused mtu 1500 type bridge && ip addr add 10.81.0.9/24 dev br-reused");
    let reused = network(
        "10.81.0.0/24",
        &[(OPT_BRIDGE_NAME, "br-reused"), (OPT_MTU, "1400")],
    );
    drv.create_network(&reused).await.unwrap_err();
    let link = daemon.link("br-reused").unwrap();
    assert_eq!(daemon.ipv4_addrs("br-reused"), vec!["10.81.0.9/24"]);
    assert_eq!(link["mtu"], 1500);
    assert!(!flags(&link).contains(&"UP".to_string()));

    // Once the firewall accepts, it sees the bridge up with its address, and
    // it is called on delete. The failed attempt released the bridge name:
    // the same network can be created now.
    firewall.events.lock().unwrap().clear();
    firewall.fail_up.store(false, Ordering::SeqCst);
    drv.create_network(&net).await.unwrap();
    drv.delete_network(&net).await.unwrap();
    assert_eq!(
        *firewall.events.lock().unwrap(),
        vec![
            "up bridge_up=true addrs=10.80.0.1/24".to_string(),
            format!("down {}", bridge_name(&net)),
        ]
    );
    assert!(daemon.link(&bridge_name(&net)).is_none());
}
