//! The rules dockerd 20.10 installs, rendered as pure data: no process is run here.
//!
//! Every spec is written in the canonical form `iptables-save` prints, so a
//! rule read back from the kernel compares equal to the rule we rendered.
//! Each function returns [`Want`]s in the order dockerd issues its `iptables`
//! calls, which is what makes the final order of rules match dockerd's.

use std::fmt;

use ipnetwork::Ipv4Network;

use super::{BridgeRules, FirewallOptions, PortRules};
use crate::model::{PortBinding, Proto};

pub(crate) const DOCKER: &str = "DOCKER";
pub(crate) const ISOLATION_1: &str = "DOCKER-ISOLATION-STAGE-1";
pub(crate) const ISOLATION_2: &str = "DOCKER-ISOLATION-STAGE-2";
pub(crate) const USER: &str = "DOCKER-USER";

const JUMP_USER: &str = "-j DOCKER-USER";
const JUMP_ISOLATION: &str = "-j DOCKER-ISOLATION-STAGE-1";
const RETURN: &str = "-j RETURN";
const LOCAL_TO_DOCKER: &str = "-m addrtype --dst-type LOCAL -j DOCKER";
const NONLOOPBACK_LOCAL_TO_DOCKER: &str = "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER";

/// An iptables table, ordered as `iptables-save` (nf_tables) prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Table {
    Mangle,
    Filter,
    Nat,
}

impl Table {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Mangle => "mangle",
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Table> {
        match name {
            "mangle" => Some(Table::Mangle),
            "filter" => Some(Table::Filter),
            "nat" => Some(Table::Nat),
            _ => None,
        }
    }

    /// Built-in chains in the order `iptables-save` lists them.
    pub(crate) fn builtins(self) -> &'static [&'static str] {
        match self {
            Table::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One rule: where it lives and its match/target spec (`-A CHAIN <spec>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub table: Table,
    pub chain: &'static str,
    pub spec: String,
}

impl Rule {
    fn new(table: Table, chain: &'static str, spec: impl Into<String>) -> Rule {
        Rule {
            table,
            chain,
            spec: spec.into(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-t {} -A {} {}", self.table, self.chain, self.spec)
    }
}

/// Where a missing rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// First in its chain, but after the daemon's jumps heading FORWARD
    /// (dockerd's `-I` followed by re-asserting those jumps on top).
    Top,
    /// Last in its chain (`-A`).
    Append,
}

/// One desired fact about the tables; the planner turns it into zero or more
/// restore commands depending on what the tables already hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// The user-defined chain exists (created empty if missing, never flushed).
    Chain(Table, &'static str),
    /// A built-in chain has this policy.
    Policy(Table, &'static str, &'static str),
    /// Exactly one copy of the rule, at this index (dockerd's EnsureJumpRule).
    At(Rule, usize),
    /// The rule exists somewhere in its chain; if missing it is placed as given.
    Present(Rule, Placement),
    /// No copy of the rule remains.
    Absent(Rule),
    /// The chain, if it exists, holds no rules.
    Flushed(Table, &'static str),
}

/// Whether `spec` is one of the jumps the daemon keeps at the head of FORWARD.
pub(crate) fn is_head_jump(table: Table, chain: &str, spec: &str) -> bool {
    table == Table::Filter && chain == "FORWARD" && (spec == JUMP_USER || spec == JUMP_ISOLATION)
}

/// The daemon's own chains; creating them is harmless when they exist.
pub(crate) fn chains() -> Vec<Want> {
    vec![
        Want::Chain(Table::Filter, DOCKER),
        Want::Chain(Table::Filter, ISOLATION_1),
        Want::Chain(Table::Filter, ISOLATION_2),
        Want::Chain(Table::Filter, USER),
        Want::Chain(Table::Nat, DOCKER),
    ]
}

/// The two FORWARD jumps, DOCKER-USER first, re-asserted on every network
/// change as dockerd does.
pub(crate) fn forward_jumps() -> Vec<Want> {
    vec![
        Want::At(Rule::new(Table::Filter, "FORWARD", JUMP_USER), 0),
        Want::At(Rule::new(Table::Filter, "FORWARD", JUMP_ISOLATION), 1),
    ]
}

/// Everything that does not depend on a network: chains, RETURN rules,
/// FORWARD/PREROUTING/OUTPUT jumps and the FORWARD policy.
pub(crate) fn base(opts: &FirewallOptions) -> Vec<Want> {
    let mut w = chains();
    for chain in [ISOLATION_1, ISOLATION_2, USER] {
        w.push(Want::Present(
            Rule::new(Table::Filter, chain, RETURN),
            Placement::Append,
        ));
    }
    w.extend(forward_jumps());
    w.push(Want::Present(
        Rule::new(Table::Nat, "PREROUTING", LOCAL_TO_DOCKER),
        Placement::Append,
    ));
    // Without the userland proxy, connections to 127.0.0.1 must be DNATed
    // too, so the OUTPUT jump loses its loopback exclusion.
    let (output, stale) = if opts.userland_proxy {
        (NONLOOPBACK_LOCAL_TO_DOCKER, LOCAL_TO_DOCKER)
    } else {
        (LOCAL_TO_DOCKER, NONLOOPBACK_LOCAL_TO_DOCKER)
    };
    w.push(Want::Absent(Rule::new(Table::Nat, "OUTPUT", stale)));
    w.push(Want::Present(
        Rule::new(Table::Nat, "OUTPUT", output),
        Placement::Append,
    ));
    if opts.forward_policy_drop {
        w.push(Want::Policy(Table::Filter, "FORWARD", "DROP"));
    }
    w
}

fn subnet(net: Ipv4Network) -> String {
    format!("{}/{}", net.network(), net.prefix())
}

/// Every rule shape tied to one bridge, whatever the options it was created with.
struct NetworkRules {
    masquerade: Rule,
    skip_dnat: Rule,
    hairpin_masquerade: Rule,
    icc_accept: Rule,
    icc_drop: Rule,
    outgoing: Rule,
    to_docker: Rule,
    established: Rule,
    isolation_1: Rule,
    isolation_2: Rule,
    internal_out: Rule,
    internal_in: Rule,
}

impl NetworkRules {
    fn new(r: &BridgeRules) -> NetworkRules {
        let br = &r.bridge;
        let sub = subnet(r.subnet);
        NetworkRules {
            masquerade: Rule::new(
                Table::Nat,
                "POSTROUTING",
                format!("-s {sub} ! -o {br} -j MASQUERADE"),
            ),
            skip_dnat: Rule::new(Table::Nat, DOCKER, format!("-i {br} -j RETURN")),
            hairpin_masquerade: Rule::new(
                Table::Nat,
                "POSTROUTING",
                format!("-o {br} -m addrtype --src-type LOCAL -j MASQUERADE"),
            ),
            icc_accept: Rule::new(
                Table::Filter,
                "FORWARD",
                format!("-i {br} -o {br} -j ACCEPT"),
            ),
            icc_drop: Rule::new(Table::Filter, "FORWARD", format!("-i {br} -o {br} -j DROP")),
            outgoing: Rule::new(
                Table::Filter,
                "FORWARD",
                format!("-i {br} ! -o {br} -j ACCEPT"),
            ),
            to_docker: Rule::new(Table::Filter, "FORWARD", format!("-o {br} -j DOCKER")),
            established: Rule::new(
                Table::Filter,
                "FORWARD",
                format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            ),
            isolation_1: Rule::new(
                Table::Filter,
                ISOLATION_1,
                format!("-i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2"),
            ),
            isolation_2: Rule::new(Table::Filter, ISOLATION_2, format!("-o {br} -j DROP")),
            internal_out: Rule::new(
                Table::Filter,
                ISOLATION_1,
                format!("! -s {sub} -o {br} -j DROP"),
            ),
            internal_in: Rule::new(
                Table::Filter,
                ISOLATION_1,
                format!("! -d {sub} -i {br} -j DROP"),
            ),
        }
    }
}

/// The rules of one bridge network, in dockerd's order of calls
/// (setupIPTablesInternal / setupInternalNetworkRules, ProgramChain, setINC).
pub(crate) fn network(opts: &FirewallOptions, r: &BridgeRules) -> Vec<Want> {
    let n = NetworkRules::new(r);
    let hairpin = !opts.userland_proxy;
    let mut w = Vec::new();
    if r.internal {
        // Internal networks only talk among themselves: no NAT, no link to
        // DOCKER, no isolation stage (their DROP rules already cover it).
        w.push(Want::Present(n.internal_in, Placement::Top));
        w.push(Want::Present(n.internal_out, Placement::Top));
        icc(&mut w, r.icc, n.icc_accept, n.icc_drop);
        return w;
    }
    if r.masquerade {
        w.push(Want::Present(n.masquerade, Placement::Top));
    }
    if r.masquerade && !hairpin {
        w.push(Want::Present(n.skip_dnat, Placement::Top));
    }
    if hairpin {
        w.push(Want::Present(n.hairpin_masquerade, Placement::Top));
    } else {
        w.push(Want::Absent(n.hairpin_masquerade));
    }
    icc(&mut w, r.icc, n.icc_accept, n.icc_drop);
    w.push(Want::Present(n.outgoing, Placement::Top));
    w.push(Want::Present(n.to_docker, Placement::Top));
    w.push(Want::Present(n.established, Placement::Top));
    w.push(Want::Present(n.isolation_1, Placement::Top));
    w.push(Want::Present(n.isolation_2, Placement::Top));
    w
}

/// dockerd inserts the ACCEPT but appends the DROP, and drops the other one.
fn icc(w: &mut Vec<Want>, enabled: bool, accept: Rule, drop: Rule) {
    if enabled {
        w.push(Want::Absent(drop));
        w.push(Want::Present(accept, Placement::Top));
    } else {
        w.push(Want::Absent(accept));
        w.push(Want::Present(drop, Placement::Append));
    }
}

/// Removes every rule shape of the bridge, so a network created under other
/// options (icc, masquerade, userland proxy) is still cleaned completely.
pub(crate) fn network_teardown(r: &BridgeRules) -> Vec<Want> {
    let n = NetworkRules::new(r);
    [
        n.masquerade,
        n.skip_dnat,
        n.hairpin_masquerade,
        n.icc_accept,
        n.icc_drop,
        n.outgoing,
        n.to_docker,
        n.established,
        n.isolation_1,
        n.isolation_2,
        n.internal_out,
        n.internal_in,
    ]
    .into_iter()
    .map(Want::Absent)
    .collect()
}

/// Every rule shape of one published port.
struct PortRuleSet {
    dnat_proxy: Rule,
    dnat_hairpin: Rule,
    accept: Rule,
    masquerade: Rule,
    checksum: Option<Rule>,
}

impl PortRuleSet {
    fn new(p: &PortRules, b: &PortBinding) -> PortRuleSet {
        let br = &p.bridge;
        let cip = p.container_ip;
        let proto = b.proto.as_str();
        let dest = if b.host_ip.is_unspecified() {
            String::new()
        } else {
            format!("-d {}/32 ", b.host_ip)
        };
        let matches =
            |port_opt: &str, port: u16| format!("-p {proto} -m {proto} {port_opt} {port}");
        let dnat = |from_bridge: &str| {
            format!(
                "{dest}{from_bridge}{} -j DNAT --to-destination {cip}:{}",
                matches("--dport", b.host_port),
                b.container_port
            )
        };
        PortRuleSet {
            dnat_proxy: Rule::new(Table::Nat, DOCKER, dnat(&format!("! -i {br} "))),
            dnat_hairpin: Rule::new(Table::Nat, DOCKER, dnat("")),
            accept: Rule::new(
                Table::Filter,
                DOCKER,
                format!(
                    "-d {cip}/32 ! -i {br} -o {br} {} -j ACCEPT",
                    matches("--dport", b.container_port)
                ),
            ),
            masquerade: Rule::new(
                Table::Nat,
                "POSTROUTING",
                format!(
                    "-s {cip}/32 -d {cip}/32 {} -j MASQUERADE",
                    matches("--dport", b.container_port)
                ),
            ),
            // Old kernels offload SCTP checksums on veths; dockerd fills them in.
            checksum: (b.proto == Proto::Sctp).then(|| {
                Rule::new(
                    Table::Mangle,
                    "POSTROUTING",
                    format!(
                        "{} -j CHECKSUM --checksum-fill",
                        matches("--sport", b.container_port)
                    ),
                )
            }),
        }
    }
}

/// The rules of a container's published ports, appended per binding in
/// dockerd's order (DNAT, ACCEPT, hairpin MASQUERADE).
pub(crate) fn ports(opts: &FirewallOptions, p: &PortRules) -> Vec<Want> {
    let mut w = Vec::new();
    for b in &p.bindings {
        let set = PortRuleSet::new(p, b);
        // Without the userland proxy, containers reach their own published
        // ports through the bridge, so DNAT must also apply to it.
        let dnat = if opts.userland_proxy {
            set.dnat_proxy
        } else {
            set.dnat_hairpin
        };
        w.push(Want::Present(dnat, Placement::Append));
        w.push(Want::Present(set.accept, Placement::Append));
        w.push(Want::Present(set.masquerade, Placement::Append));
        if let Some(c) = set.checksum {
            w.push(Want::Present(c, Placement::Append));
        }
    }
    w
}

/// Removes every rule shape of the bindings, whichever proxy mode made them.
pub(crate) fn ports_teardown(p: &PortRules) -> Vec<Want> {
    let mut w = Vec::new();
    for b in &p.bindings {
        let set = PortRuleSet::new(p, b);
        w.push(Want::Absent(set.dnat_proxy));
        w.push(Want::Absent(set.dnat_hairpin));
        w.push(Want::Absent(set.accept));
        w.push(Want::Absent(set.masquerade));
        if let Some(c) = set.checksum {
            w.push(Want::Absent(c));
        }
    }
    w
}

/// Empties the daemon's chains (not DOCKER-USER, which belongs to the user),
/// as dockerd does at start so rules of objects gone in a crash do not linger.
pub(crate) fn reset() -> Vec<Want> {
    vec![
        Want::Flushed(Table::Filter, DOCKER),
        Want::Flushed(Table::Filter, ISOLATION_1),
        Want::Flushed(Table::Filter, ISOLATION_2),
        Want::Flushed(Table::Nat, DOCKER),
    ]
}
