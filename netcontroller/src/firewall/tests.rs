//! Firewall logic against a fake kernel: idempotency, rollback, teardown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::iptables::Backend;
use super::ruleset::{Batch, Ruleset};
use super::*;
use crate::model::{PortBinding, Proto};

/// Holds tables in memory and applies batches with iptables-restore's
/// semantics: each table section is atomic, earlier sections stay applied.
#[derive(Default)]
struct Fake {
    tables: Mutex<Ruleset>,
    /// The restore command (e.g. `-D FORWARD ...`) that fails, taking its
    /// table section with it.
    fail_on: Mutex<Option<String>>,
    restores: AtomicUsize,
    route_localnet: Mutex<Vec<String>>,
    bridge_netfilter: AtomicUsize,
}

impl Backend for Arc<Fake> {
    fn snapshot(&self) -> Result<Ruleset, FirewallError> {
        Ok(self.tables.lock().unwrap().clone())
    }

    fn restore(&self, batch: &Batch) -> Result<(), FirewallError> {
        self.restores.fetch_add(1, Ordering::SeqCst);
        let fail_on = self.fail_on.lock().unwrap().clone();
        let mut tables = self.tables.lock().unwrap();
        for (_, ops) in batch.sections() {
            let mut section = tables.clone();
            for op in ops {
                let failed = fail_on.as_deref() == Some(op.line().as_str());
                let result = if failed {
                    Err("injected failure".to_string())
                } else {
                    section.apply(op)
                };
                if let Err(stderr) = result {
                    return Err(FirewallError::Command {
                        program: "iptables-restore",
                        status: "exit status: 1".into(),
                        stderr,
                    });
                }
            }
            *tables = section;
        }
        Ok(())
    }

    fn enable_route_localnet(&self, bridge: &str) -> Result<(), FirewallError> {
        self.route_localnet.lock().unwrap().push(bridge.to_string());
        Ok(())
    }

    fn enable_bridge_netfilter(&self) -> Result<(), FirewallError> {
        self.bridge_netfilter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn opts(userland_proxy: bool) -> FirewallOptions {
    FirewallOptions {
        userland_proxy,
        forward_policy_drop: true,
    }
}

fn firewall(userland_proxy: bool) -> (Firewall, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let fw = Firewall::with_backend(opts(userland_proxy), Box::new(fake.clone()));
    (fw, fake)
}

fn net(bridge: &str, subnet: &str) -> BridgeRules {
    BridgeRules {
        bridge: bridge.into(),
        subnet: subnet.parse().unwrap(),
        icc: true,
        masquerade: true,
        internal: false,
    }
}

fn ports() -> PortRules {
    PortRules {
        bridge: "docker0".into(),
        container_ip: "172.17.0.2".parse().unwrap(),
        bindings: vec![PortBinding {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: 8080,
        }],
    }
}

fn text(fake: &Fake) -> String {
    fake.tables.lock().unwrap().render()
}

fn restores(fake: &Fake) -> usize {
    fake.restores.load(Ordering::SeqCst)
}

#[test]
fn repeated_calls_change_nothing_and_run_no_restore() {
    let (fw, fake) = firewall(true);
    let docker0 = net("docker0", "172.17.0.0/16");
    fw.setup_base().unwrap();
    fw.add_network(&docker0).unwrap();
    fw.add_ports(&ports()).unwrap();
    assert_eq!(restores(&fake), 3, "one restore per call");
    fw.setup_base().unwrap();
    fw.add_network(&docker0).unwrap();
    fw.add_ports(&ports()).unwrap();
    assert_eq!(restores(&fake), 3, "nothing left to do the second time");
    assert_eq!(
        text(&fake),
        expected_tables(&opts(true), &[docker0], &[ports()])
    );
}

#[test]
fn setup_base_keeps_user_rules_and_moves_jumps_back_on_top() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    let user_rules = "\
*filter
:INPUT ACCEPT
:FORWARD DROP
:OUTPUT ACCEPT
:DOCKER -
:DOCKER-ISOLATION-STAGE-1 -
:DOCKER-ISOLATION-STAGE-2 -
:DOCKER-USER -
:MINE -
-A FORWARD -j MINE
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -s 10.9.0.0/16 -j DROP
-A DOCKER-USER -j RETURN
-A MINE -j ACCEPT
COMMIT
";
    let nat = text(&fake);
    let nat = &nat[nat.find("*nat").unwrap()..];
    *fake.tables.lock().unwrap() = Ruleset::parse(&format!("{user_rules}{nat}")).unwrap();
    fw.setup_base().unwrap();
    let after = text(&fake);
    assert!(after.contains(
        "-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n-A FORWARD -j MINE\n"
    ));
    assert!(after.contains("-A DOCKER-USER -s 10.9.0.0/16 -j DROP\n-A DOCKER-USER -j RETURN\n"));
    assert!(after.contains("-A MINE -j ACCEPT\n"));
}

#[test]
fn failed_add_ports_leaves_nothing_behind() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    let before = text(&fake);
    // The nat section (DNAT, MASQUERADE) commits, then the filter one fails.
    *fake.fail_on.lock().unwrap() = Some(
        "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT"
            .into(),
    );
    let err = fw.add_ports(&ports()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::System);
    assert_eq!(text(&fake), before);
}

#[test]
fn remove_network_keeps_going_past_a_failing_rule() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    let base = text(&fake);
    let br = net("br-0123456789ab", "10.1.0.0/24");
    fw.add_network(&br).unwrap();
    *fake.fail_on.lock().unwrap() = Some("-D FORWARD -o br-0123456789ab -j DOCKER".into());
    let err = fw.remove_network(&br).unwrap_err();
    assert!(
        matches!(&err, FirewallError::Teardown(msgs) if msgs.len() == 1),
        "{err}"
    );
    let left = text(&fake);
    assert!(left.contains("-A FORWARD -o br-0123456789ab -j DOCKER\n"));
    assert_eq!(left.matches("br-0123456789ab").count(), 1, "{left}");
    *fake.fail_on.lock().unwrap() = None;
    fw.remove_network(&br).unwrap();
    assert_eq!(text(&fake), base);
}

#[test]
fn icc_change_swaps_accept_for_appended_drop() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    let mut docker0 = net("docker0", "172.17.0.0/16");
    fw.add_network(&docker0).unwrap();
    fw.add_network(&net("br-0123456789ab", "10.1.0.0/24"))
        .unwrap();
    docker0.icc = false;
    fw.add_network(&docker0).unwrap();
    let forward: Vec<String> = text(&fake)
        .lines()
        .filter(|l| l.starts_with("-A FORWARD"))
        .map(String::from)
        .collect();
    assert!(!forward.contains(&"-A FORWARD -i docker0 -o docker0 -j ACCEPT".to_string()));
    assert_eq!(
        forward.last().unwrap(),
        "-A FORWARD -i docker0 -o docker0 -j DROP"
    );
}

#[test]
fn without_userland_proxy_route_localnet_is_set_per_bridge() {
    let (fw, fake) = firewall(false);
    fw.setup_base().unwrap();
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    assert_eq!(*fake.route_localnet.lock().unwrap(), ["docker0"]);
    let (fw, fake) = firewall(true);
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    assert!(fake.route_localnet.lock().unwrap().is_empty());
}

#[test]
fn switching_proxy_mode_replaces_the_output_jump() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    let hairpin = Firewall::with_backend(opts(false), Box::new(fake.clone()));
    hairpin.setup_base().unwrap();
    let after = text(&fake);
    let outputs: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("-A OUTPUT"))
        .collect();
    assert_eq!(
        outputs,
        ["-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER"]
    );
}

#[test]
fn bad_names_and_ports_are_refused_before_touching_anything() {
    let (fw, fake) = firewall(true);
    for name in ["", "br0\n-F FORWARD", "a-name-far-too-long", "br/0", ".."] {
        let err = fw.add_network(&net(name, "10.0.0.0/24")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name:?}");
    }
    let mut p = ports();
    p.bindings[0].host_port = 0;
    assert_eq!(
        fw.add_ports(&p).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(restores(&fake), 0);
}

#[test]
fn reset_empties_daemon_chains_but_not_docker_user() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    fw.add_ports(&ports()).unwrap();
    fw.reset_chains().unwrap();
    let after = text(&fake);
    assert!(!after.contains("-A DOCKER "), "{after}");
    assert!(!after.contains("-A DOCKER-ISOLATION"), "{after}");
    assert!(after.contains("-A DOCKER-USER -j RETURN"));
    fw.setup_base().unwrap();
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    let readded = text(&fake);
    assert!(readded.contains(
        "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n"
    ));
    assert!(readded.contains("-A DOCKER -i docker0 -j RETURN\n"));
    assert!(!readded.contains("DNAT"), "{readded}");
}

#[test]
fn orphans_lose_their_rules_and_ports_while_owned_and_user_rules_stay() {
    for userland_proxy in [true, false] {
        let (fw, fake) = firewall(userland_proxy);
        fw.setup_base().unwrap();
        let docker0 = net("docker0", "172.17.0.0/16");
        fw.add_network(&docker0).unwrap();
        fw.add_ports(&ports()).unwrap();
        let expected = text(&fake);

        let gone = net("br-0123456789ab", "172.18.0.0/16");
        let gone_internal = BridgeRules {
            internal: true,
            icc: false,
            ..net("br-internal", "172.19.0.0/16")
        };
        fw.add_network(&gone).unwrap();
        fw.add_network(&gone_internal).unwrap();
        let mut gone_ports = ports();
        gone_ports.bridge = gone.bridge.clone();
        gone_ports.container_ip = "172.18.0.2".parse().unwrap();
        gone_ports.bindings[0].host_port = 8081;
        fw.add_ports(&gone_ports).unwrap();

        // A user's own rules naming the orphan's and other interfaces: in
        // FORWARD, in DOCKER-USER and in a chain of their own.
        let with_user = |tables: &str| {
            tables
                .replacen(":DOCKER-USER -\n", ":DOCKER-USER -\n:MINE -\n", 1)
                .replacen(
                    "-A FORWARD -i docker0 -o docker0 -j ACCEPT\n",
                    "-A FORWARD -i docker0 -o docker0 -j ACCEPT\n\
                     -A FORWARD -i eth9 -o eth9 -j ACCEPT\n",
                    1,
                )
                .replacen(
                    "-A DOCKER-USER -j RETURN\n",
                    "-A DOCKER-USER -j RETURN\n-A DOCKER-USER -i br-0123456789ab -j DROP\n",
                    1,
                )
                .replacen(
                    "COMMIT\n",
                    "-A MINE -o br-0123456789ab -j ACCEPT\nCOMMIT\n",
                    1,
                )
        };
        let current = with_user(&text(&fake));
        *fake.tables.lock().unwrap() = Ruleset::parse(&current).unwrap();

        let removed = fw.remove_orphans(&["docker0"]).unwrap();
        assert_eq!(removed, ["br-0123456789ab", "br-internal"]);
        assert_eq!(
            text(&fake),
            with_user(&expected),
            "userland_proxy={userland_proxy}"
        );

        let restores_before = restores(&fake);
        assert!(fw.remove_orphans(&["docker0"]).unwrap().is_empty());
        assert_eq!(restores(&fake), restores_before, "nothing left to do");
    }
}

#[test]
fn adding_a_network_turns_on_bridge_netfilter() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    assert_eq!(fake.bridge_netfilter.load(Ordering::SeqCst), 0);
    fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
    assert_eq!(fake.bridge_netfilter.load(Ordering::SeqCst), 1);
}

#[test]
fn published_port_rules_of_every_mode_and_protocol_are_removed() {
    for userland_proxy in [true, false] {
        let (fw, fake) = firewall(userland_proxy);
        fw.setup_base().unwrap();
        fw.add_network(&net("docker0", "172.17.0.0/16")).unwrap();
        let expected = text(&fake);
        let mut p = ports();
        p.bindings.push(PortBinding {
            proto: Proto::Sctp,
            container_port: 9,
            host_ip: "127.0.0.1".parse().unwrap(),
            host_port: 9009,
        });
        fw.add_ports(&p).unwrap();
        assert_ne!(text(&fake), expected);
        assert_eq!(fw.remove_published_ports().unwrap(), 7);
        // The mangle table stays, now empty.
        let after = text(&fake);
        assert_eq!(
            after.replace("*mangle\n:PREROUTING ACCEPT\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n", ""),
            expected,
            "userland_proxy={userland_proxy}"
        );
        assert_eq!(fw.remove_published_ports().unwrap(), 0);
    }
}

#[test]
fn replacing_a_network_keeps_shared_rules_in_place_and_removes_the_rest() {
    let (fw, fake) = firewall(true);
    fw.setup_base().unwrap();
    let old = net("docker0", "172.17.0.0/16");
    fw.add_network(&old).unwrap();
    fw.add_network(&net("br-0123456789ab", "172.18.0.0/16"))
        .unwrap();
    let before = text(&fake);

    // Same flags: nothing moves.
    fw.add_network(&old).unwrap();
    fw.remove_network_except(&old, Some(&old)).unwrap();
    assert_eq!(text(&fake), before);

    // Another subnet: only the old MASQUERADE goes.
    let readdressed = net("docker0", "10.99.0.0/24");
    fw.add_network(&readdressed).unwrap();
    fw.remove_network_except(&old, Some(&readdressed)).unwrap();
    let after = text(&fake);
    assert!(!after.contains("172.17.0.0/16"), "{after}");
    assert_eq!(
        after.replace(
            "-A POSTROUTING -s 10.99.0.0/24 ! -o docker0 -j MASQUERADE\n",
            ""
        ),
        before.replace(
            "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n",
            ""
        )
    );

    // No successor: every rule of the old bridge goes.
    fw.remove_network_except(&readdressed, None).unwrap();
    assert!(!text(&fake).contains("docker0"), "{}", text(&fake));
}
