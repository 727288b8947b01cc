//! What must hold between the API, the kernel and the store whatever
//! happened before (crashes, load): every object the API lists is fully in
//! the kernel, nothing in the kernel belongs to an object the API does not
//! list, nothing is held twice, and every stored document parses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::Value;

use super::Daemon;

/// Custom networks the API lists: name -> inspect JSON.
pub fn custom_networks(d: &Daemon) -> BTreeMap<String, Value> {
    let list = d.get("/networks");
    assert_eq!(list.status, 200, "{}", list.text());
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !["bridge", "host", "none"].contains(&n["Name"].as_str().unwrap()))
        .map(|n| (n["Name"].as_str().unwrap().to_string(), n.clone()))
        .collect()
}

fn bridge_of(net: &Value) -> String {
    net["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("br-{}", &net["Id"].as_str().unwrap()[..12]))
}

fn subnet_of(net: &Value) -> (u32, u8) {
    let cidr = net["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    let (addr, prefix) = cidr.split_once('/').unwrap();
    (
        u32::from(addr.parse::<Ipv4Addr>().unwrap()),
        prefix.parse().unwrap(),
    )
}

fn overlaps((a, pa): (u32, u8), (b, pb): (u32, u8)) -> bool {
    let p = pa.min(pb);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a & mask == b & mask
}

/// Links in the daemon's namespace: name -> master's name.
fn links(d: &Daemon) -> BTreeMap<String, Option<String>> {
    let all = d.ip_json(&["-d", "link", "show"]);
    let all = all.as_array().unwrap();
    all.iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_string(),
                l["master"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Bridge names `-i`/`-o` mention in our chains.
fn bridges_in_rules(rules: &str) -> BTreeSet<String> {
    let mut bridges = BTreeSet::new();
    for line in rules.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if matches!(pair[0], "-i" | "-o") && pair[1].starts_with("br-") {
                bridges.insert(pair[1].to_string());
            }
        }
    }
    bridges
}

pub fn check_invariants(d: &Daemon, at: &str) {
    let nets = custom_networks(d);
    let links = links(d);
    let rules = d.iptables_save();

    // Every listed network is fully in the kernel.
    for (name, net) in &nets {
        let bridge = bridge_of(net);
        assert!(
            links.contains_key(&bridge),
            "{at}: {name}: bridge {bridge} missing"
        );
        let isolation = format!(
            "-A DOCKER-ISOLATION-STAGE-1 -i {bridge} ! -o {bridge} -j DOCKER-ISOLATION-STAGE-2"
        );
        assert!(
            rules.contains(&isolation),
            "{at}: {name}: rules missing:\n{rules}"
        );
    }
    // Nothing in the kernel belongs to an unlisted network.
    let listed: BTreeSet<String> = nets.values().map(bridge_of).collect();
    for link in links.keys().filter(|l| l.starts_with("br-")) {
        assert!(listed.contains(link), "{at}: orphan bridge {link}");
    }
    for bridge in bridges_in_rules(&rules) {
        assert!(
            listed.contains(&bridge),
            "{at}: rules of unknown bridge {bridge}:\n{rules}"
        );
    }
    for (link, master) in &links {
        if let Some(master) = master {
            assert!(
                master == "docker0" || listed.contains(master),
                "{at}: {link} enslaved to unknown {master}"
            );
        }
    }
    // No rule twice.
    let mut seen = BTreeSet::new();
    for line in rules.lines().filter(|l| l.starts_with("-A ")) {
        assert!(seen.insert(line), "{at}: duplicate rule {line}");
    }
    // No subnet held twice (the default bridge's included).
    let bridge = d.get("/networks/bridge").json();
    let mut subnets: Vec<(String, (u32, u8))> = nets
        .iter()
        .map(|(n, v)| (n.clone(), subnet_of(v)))
        .collect();
    subnets.push(("bridge".into(), subnet_of(&bridge)));
    for (i, (a, sa)) in subnets.iter().enumerate() {
        for (b, sb) in &subnets[i + 1..] {
            assert!(!overlaps(*sa, *sb), "{at}: {a} and {b} overlap");
        }
    }
    check_containers(d, &links, &rules, at);
    // Every stored document parses.
    check_store(&d.paths.data_root, at);
}

/// Containers: what runs has its sandbox, veths, addresses and port rules;
/// what does not run has none; nothing is held twice.
fn check_containers(d: &Daemon, links: &BTreeMap<String, Option<String>>, rules: &str, at: &str) {
    let list = d.get("/containers/json?all=1");
    assert_eq!(list.status, 200, "{at}: {}", list.text());
    let mut sandboxes = BTreeSet::new();
    let mut endpoints = 0;
    let mut addresses = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    // Per published binding: the container and the DNAT targets it may have.
    let mut dnat: Vec<(String, Vec<String>)> = Vec::new();
    let mut running_ids = Vec::new();
    for summary in list.json().as_array().unwrap() {
        let id = summary["Id"].as_str().unwrap();
        let c = d.get(&format!("/containers/{id}/json")).json();
        let name = c["Name"].as_str().unwrap_or_default().to_string();
        let running = c["State"]["Running"].as_bool().unwrap();
        let networks = c["NetworkSettings"]["Networks"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if !running {
            for (net, ep) in &networks {
                assert_eq!(
                    ep["IPAddress"], "",
                    "{at}: stopped {name} holds an address on {net}"
                );
            }
            continue;
        }
        running_ids.push(id.to_string());
        let key = c["NetworkSettings"]["SandboxKey"]
            .as_str()
            .unwrap_or_default();
        if !key.is_empty() {
            assert!(
                Path::new(key).exists(),
                "{at}: {name}: sandbox {key} missing"
            );
            assert!(
                sandboxes.insert(key.to_string()),
                "{at}: sandbox {key} shared"
            );
        }
        for (net, ep) in &networks {
            let ip = ep["IPAddress"].as_str().unwrap_or_default();
            if ip.is_empty() {
                continue;
            }
            endpoints += 1;
            assert!(
                addresses.insert((net.clone(), ip.to_string())),
                "{at}: {ip} on {net} held twice"
            );
        }
        // Ports are published on one of its networks (the one holding the
        // default route: after a disconnect of the first, another one).
        let ips: Vec<String> = networks
            .values()
            .filter_map(|ep| ep["IPAddress"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(ports) = c["NetworkSettings"]["Ports"].as_object() {
            for (port, bindings) in ports {
                for b in bindings.as_array().into_iter().flatten() {
                    let host = b["HostPort"].as_str().unwrap().to_string();
                    let key = (port.rsplit('/').next().unwrap().to_string(), host.clone());
                    assert!(host_ports.insert(key), "{at}: host port {host} held twice");
                    let target = port.split('/').next().unwrap();
                    dnat.push((
                        name.clone(),
                        ips.iter()
                            .map(|ip| format!("{ip}:{target}"))
                            .collect::<Vec<_>>(),
                    ));
                }
            }
        }
    }
    // Kernel side: one host-side veth per endpoint of a running container,
    // one namespace mount per running sandbox, DNAT only for live bindings.
    let veths = links.keys().filter(|l| l.starts_with("veth")).count();
    assert_eq!(
        veths, endpoints,
        "{at}: {veths} veths for {endpoints} endpoints"
    );
    let netns_dir = d.paths.exec_root.join("netns");
    let mounted: BTreeSet<String> = std::fs::read_dir(&netns_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        mounted, sandboxes,
        "{at}: namespace mounts vs running sandboxes"
    );
    let mut in_rules: Vec<String> = rules
        .lines()
        .filter(|l| l.contains("-j DNAT"))
        .filter_map(|l| l.split("--to-destination ").nth(1))
        .map(|t| t.split_whitespace().next().unwrap().to_string())
        .collect();
    // Each live binding has exactly one rule, to one of its container's
    // addresses; no rule is left over.
    for (name, targets) in &dnat {
        let found: Vec<usize> = (0..in_rules.len())
            .filter(|&i| targets.contains(&in_rules[i]))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{at}: {name}: DNAT rules {in_rules:?} for one of {targets:?}; containers: {}",
            containers_view(d)
        );
        in_rules.remove(found[0]);
    }
    assert!(
        in_rules.is_empty(),
        "{at}: DNAT rules of no running container: {in_rules:?}; containers: {}",
        containers_view(d)
    );
    // Overlay mounts belong to running containers only.
    let root = d.paths.root.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo
        .lines()
        .filter(|l| l.contains(&root) && l.contains(" - overlay "))
    {
        assert!(
            running_ids.iter().any(|id| line.contains(id.as_str())),
            "{at}: overlay mount of no running container: {line}"
        );
    }
}

/// Each container's name, state and addresses, for failure messages.
fn containers_view(d: &Daemon) -> String {
    let list = d.get("/containers/json?all=1").json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let nets: Vec<String> = c["NetworkSettings"]["Networks"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(n, ep)| format!("{n}={}", ep["IPAddress"].as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            format!("{} {} [{}]", c["Names"][0], c["Status"], nets.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn check_store(dir: &Path, at: &str) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            check_store(&path, at);
        } else if path.extension().is_some_and(|e| e == "json")
            && !path.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            let text = std::fs::read(&path).unwrap();
            assert!(
                serde_json::from_slice::<Value>(&text).is_ok(),
                "{at}: {} does not parse",
                path.display()
            );
        }
    }
}
