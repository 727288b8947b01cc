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
    // Every stored document parses.
    check_store(&d.paths.data_root, at);
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
