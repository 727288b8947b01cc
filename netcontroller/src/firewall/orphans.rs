//! Finding what a previous run left in the tables, so start-up can remove
//! it: the rules of bridges the daemon no longer owns (a network whose store
//! record vanished in a crash, or that was deleted while the daemon was
//! down), and published-port rules, which no endpoint outlives a restart.
//!
//! A bridge counts as the daemon's when one of the rules only the daemon
//! writes names it: a rule in the isolation chains or in nat DOCKER, or the
//! FORWARD jump to DOCKER. A user's own FORWARD rule for some interface does
//! not make that interface ours, so user rules are never taken for orphans.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use super::rules::{network_teardown, Rule, Table, Want, DOCKER, ISOLATION_1, ISOLATION_2};
use super::ruleset::Ruleset;
use super::BridgeRules;

/// The interface after `-i`/`-o` (negated or not) in a rule spec.
fn interfaces(spec: &str) -> Vec<&str> {
    let tokens: Vec<&str> = spec.split_whitespace().collect();
    tokens
        .windows(2)
        .filter(|w| w[0] == "-i" || w[0] == "-o")
        .map(|w| w[1])
        .collect()
}

/// The value after `flag` (e.g. `-s`), negated or not.
fn value_after<'a>(spec: &'a str, flag: &str) -> Option<&'a str> {
    let tokens: Vec<&str> = spec.split_whitespace().collect();
    tokens.windows(2).find(|w| w[0] == flag).map(|w| w[1])
}

/// Bridges named by rules that only the daemon writes.
fn daemon_bridges(set: &Ruleset) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (table, chain) in [
        (Table::Filter, ISOLATION_1),
        (Table::Filter, ISOLATION_2),
        (Table::Nat, DOCKER),
    ] {
        for spec in set.rules(table, chain) {
            names.extend(interfaces(spec).into_iter().map(str::to_string));
        }
    }
    for spec in set.rules(Table::Filter, "FORWARD") {
        if spec.ends_with("-j DOCKER") {
            names.extend(interfaces(spec).into_iter().map(str::to_string));
        }
    }
    names
}

/// The subnets the tables tie to `bridge` (its MASQUERADE or internal rules).
fn subnets_of(set: &Ruleset, bridge: &str) -> Vec<Ipv4Network> {
    let masquerade = set
        .rules(Table::Nat, "POSTROUTING")
        .iter()
        .filter(|s| s.ends_with(&format!("! -o {bridge} -j MASQUERADE")));
    let internal = set
        .rules(Table::Filter, ISOLATION_1)
        .iter()
        .filter(|s| interfaces(s) == [bridge]);
    masquerade
        .chain(internal)
        .filter_map(|s| value_after(s, "-s").or_else(|| value_after(s, "-d")))
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// The address a published-port rule sends to or hairpins for.
fn port_target(table: Table, chain: &str, spec: &str) -> Option<Ipv4Addr> {
    match (table, chain) {
        (Table::Nat, DOCKER) => value_after(spec, "--to-destination")?
            .split(':')
            .next()?
            .parse()
            .ok(),
        (Table::Nat, "POSTROUTING") if spec.ends_with("-j MASQUERADE") => {
            let (s, d) = (value_after(spec, "-s")?, value_after(spec, "-d")?);
            let ip = s.strip_suffix("/32")?;
            (s == d).then(|| ip.parse().ok()).flatten()
        }
        _ => None,
    }
}

/// Removals for every rule of bridges named in the daemon's chains that are
/// not in `owned`, with their published ports. Returns the orphans' names too.
pub(crate) fn orphan_rules(set: &Ruleset, owned: &[&str]) -> (Vec<String>, Vec<Want>) {
    let orphans: Vec<String> = daemon_bridges(set)
        .into_iter()
        .filter(|b| !owned.contains(&b.as_str()))
        .collect();
    let mut wants = Vec::new();
    let mut subnets = Vec::new();
    for bridge in &orphans {
        let mut found = subnets_of(set, bridge);
        if found.is_empty() {
            // No subnet left in the tables: the subnet-free rules still go.
            found.push(Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 32).expect("valid prefix"));
        }
        for subnet in found {
            wants.extend(network_teardown(&BridgeRules {
                bridge: bridge.clone(),
                subnet,
                icc: true,
                masquerade: true,
                internal: false,
            }));
            subnets.push(subnet);
        }
    }
    let port_chains = [
        (Table::Filter, DOCKER),
        (Table::Nat, DOCKER),
        (Table::Nat, "POSTROUTING"),
    ];
    for (table, chain) in port_chains {
        for spec in set.rules(table, chain) {
            let on_orphan = chain == DOCKER
                && interfaces(spec)
                    .iter()
                    .any(|i| orphans.iter().any(|o| o == i));
            let to_orphan = port_target(table, chain, spec)
                .is_some_and(|ip| subnets.iter().any(|s| s.prefix() < 32 && s.contains(ip)));
            if on_orphan || to_orphan {
                wants.push(Want::Absent(Rule {
                    table,
                    chain,
                    spec: spec.clone(),
                }));
            }
        }
    }
    (orphans, wants)
}

/// Whether a rule has the shape of a published port's.
fn is_port_rule(table: Table, chain: &str, spec: &str) -> bool {
    match (table, chain) {
        (Table::Filter, DOCKER) => spec.contains("--dport") && spec.ends_with("-j ACCEPT"),
        (Table::Nat, DOCKER) => spec.contains("-j DNAT --to-destination"),
        (Table::Nat, "POSTROUTING") => {
            spec.contains("--dport") && port_target(table, chain, spec).is_some()
        }
        (Table::Mangle, "POSTROUTING") => spec.ends_with("-j CHECKSUM --checksum-fill"),
        _ => false,
    }
}

/// Removals for every published-port rule: DNAT, the ACCEPT in filter
/// DOCKER, the hairpin MASQUERADE and the SCTP checksum fill.
pub(crate) fn port_rules(set: &Ruleset) -> Vec<Want> {
    let chains = [
        (Table::Filter, DOCKER),
        (Table::Nat, DOCKER),
        (Table::Nat, "POSTROUTING"),
        (Table::Mangle, "POSTROUTING"),
    ];
    let mut wants = Vec::new();
    for (table, chain) in chains {
        for spec in set.rules(table, chain) {
            if is_port_rule(table, chain, spec) {
                wants.push(Want::Absent(Rule {
                    table,
                    chain,
                    spec: spec.clone(),
                }));
            }
        }
    }
    wants
}
