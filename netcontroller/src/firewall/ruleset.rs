//! An in-memory copy of the tables we touch, read from `iptables-save`, and
//! the planner that turns [`Want`]s into one `iptables-restore` batch.
//!
//! The planner applies each command to its copy as it emits it, so later
//! positions (`-I CHAIN N`) and idempotency checks see earlier changes of the
//! same batch, and its final copy is exactly what the kernel will hold.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::rules::{is_head_jump, Placement, Rule, Table, Want};

/// The policy iptables-save prints for user-defined chains.
const NO_POLICY: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    policy: String,
    rules: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TableState {
    chains: BTreeMap<String, Chain>,
}

fn chain_mut<'a>(state: &'a mut TableState, name: &str) -> Result<&'a mut Chain, String> {
    state
        .chains
        .get_mut(name)
        .ok_or_else(|| format!("chain {name} does not exist"))
}

impl TableState {
    /// A table as the kernel creates it on first use: built-ins, policy ACCEPT.
    fn fresh(table: Table) -> TableState {
        let chains = table
            .builtins()
            .iter()
            .map(|c| {
                let chain = Chain {
                    policy: "ACCEPT".into(),
                    rules: Vec::new(),
                };
                (c.to_string(), chain)
            })
            .collect();
        TableState { chains }
    }
}

/// What `iptables-save` holds for the mangle, filter and nat tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ruleset {
    tables: BTreeMap<Table, TableState>,
}

/// iptables-save output we could not understand.
#[derive(Debug, thiserror::Error)]
#[error("line {line_no}: {reason}: {line:?}")]
pub struct ParseError {
    pub line_no: usize,
    pub line: String,
    pub reason: &'static str,
}

/// One command of a restore batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    NewChain(Table, String),
    Policy(Table, String, String),
    /// 0-based index; rendered 1-based as iptables wants.
    Insert(Rule, usize),
    Append(Rule),
    Delete(Rule),
    Flush(Table, String),
}

impl Op {
    fn table(&self) -> Table {
        match self {
            Op::NewChain(t, _) | Op::Policy(t, _, _) | Op::Flush(t, _) => *t,
            Op::Insert(r, _) | Op::Append(r) | Op::Delete(r) => r.table,
        }
    }

    /// The command as written in a restore script.
    pub(crate) fn line(&self) -> String {
        match self {
            Op::NewChain(_, c) => format!("-N {c}"),
            Op::Policy(_, c, p) => format!("-P {c} {p}"),
            Op::Insert(r, i) => format!("-I {} {} {}", r.chain, i + 1, r.spec),
            Op::Append(r) => format!("-A {} {}", r.chain, r.spec),
            Op::Delete(r) => format!("-D {} {}", r.chain, r.spec),
            Op::Flush(_, c) => format!("-F {c}"),
        }
    }
}

impl Ruleset {
    /// Parses `iptables-save` output; tables other than mangle, filter and nat
    /// are skipped, comments and counters ignored.
    pub(crate) fn parse(text: &str) -> Result<Ruleset, ParseError> {
        let mut set = Ruleset::default();
        let mut current: Option<Option<Table>> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let err = |reason| ParseError {
                line_no: i + 1,
                line: line.to_string(),
                reason,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                let table = Table::from_name(name);
                if let Some(t) = table {
                    set.tables.insert(t, TableState::default());
                }
                current = Some(table);
                continue;
            }
            let Some(table) = current else {
                return Err(err("line outside a table"));
            };
            if line == "COMMIT" {
                current = None;
                continue;
            }
            let Some(table) = table else { continue };
            let state = set.tables.entry(table).or_default();
            if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                let (Some(name), Some(policy)) = (parts.next(), parts.next()) else {
                    return Err(err("malformed chain declaration"));
                };
                let chain = Chain {
                    policy: policy.to_string(),
                    rules: Vec::new(),
                };
                state.chains.insert(name.to_string(), chain);
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let (name, spec) = rest.split_once(' ').unwrap_or((rest, ""));
                let Some(chain) = state.chains.get_mut(name) else {
                    return Err(err("rule in an undeclared chain"));
                };
                chain.rules.push(spec.to_string());
            } else {
                return Err(err("unexpected line"));
            }
        }
        Ok(set)
    }

    /// `iptables-save` output without comments and counters, tables and chains
    /// in the order iptables-save (nf_tables) prints them.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (table, state) in &self.tables {
            let builtins = table.builtins();
            let ordered: Vec<(&String, &Chain)> = builtins
                .iter()
                .filter_map(|b| state.chains.get_key_value(*b))
                .chain(
                    state
                        .chains
                        .iter()
                        .filter(|(n, _)| !builtins.contains(&n.as_str())),
                )
                .collect();
            let _ = writeln!(out, "*{table}");
            for (name, chain) in &ordered {
                let _ = writeln!(out, ":{name} {}", chain.policy);
            }
            for (name, chain) in &ordered {
                for spec in &chain.rules {
                    let _ = writeln!(out, "-A {name} {spec}");
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    fn chain(&self, table: Table, chain: &str) -> Option<&Chain> {
        self.tables.get(&table)?.chains.get(chain)
    }

    pub(crate) fn rules(&self, table: Table, chain: &str) -> &[String] {
        self.chain(table, chain).map_or(&[], |c| &c.rules)
    }

    pub(crate) fn contains(&self, rule: &Rule) -> bool {
        self.rules(rule.table, rule.chain).contains(&rule.spec)
    }

    fn has_chain(&self, table: Table, chain: &str) -> bool {
        self.chain(table, chain).is_some()
    }

    /// Applies one command as the kernel would, refusing what it would refuse.
    pub(crate) fn apply(&mut self, op: &Op) -> Result<(), String> {
        let state = self
            .tables
            .entry(op.table())
            .or_insert_with(|| TableState::fresh(op.table()));
        match op {
            Op::NewChain(_, name) => {
                if state.chains.contains_key(name) {
                    return Err(format!("chain {name} already exists"));
                }
                let chain = Chain {
                    policy: NO_POLICY.into(),
                    rules: Vec::new(),
                };
                state.chains.insert(name.clone(), chain);
            }
            Op::Policy(_, name, policy) => {
                let chain = chain_mut(state, name)?;
                if chain.policy == NO_POLICY {
                    return Err(format!("chain {name} is not built-in"));
                }
                chain.policy = policy.clone();
            }
            Op::Insert(rule, index) => {
                let chain = chain_mut(state, rule.chain)?;
                if *index > chain.rules.len() {
                    return Err(format!("index {} too big for {}", index + 1, rule.chain));
                }
                chain.rules.insert(*index, rule.spec.clone());
            }
            Op::Append(rule) => chain_mut(state, rule.chain)?.rules.push(rule.spec.clone()),
            Op::Delete(rule) => {
                let chain = chain_mut(state, rule.chain)?;
                let Some(pos) = chain.rules.iter().position(|s| *s == rule.spec) else {
                    return Err(format!("no such rule: {rule}"));
                };
                chain.rules.remove(pos);
            }
            Op::Flush(_, name) => chain_mut(state, name)?.rules.clear(),
        }
        Ok(())
    }
}

/// Commands for one `iptables-restore --noflush`, grouped by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// The commands per table, each table's commands in planning order.
    /// iptables-restore commits each table section as one transaction.
    pub(crate) fn sections(&self) -> Vec<(Table, Vec<&Op>)> {
        let mut sections: Vec<(Table, Vec<&Op>)> = Vec::new();
        for op in &self.ops {
            match sections.iter_mut().find(|(t, _)| *t == op.table()) {
                Some((_, ops)) => ops.push(op),
                None => sections.push((op.table(), vec![op])),
            }
        }
        sections
    }

    /// The rules this batch adds (for rolling a failed batch back).
    pub(crate) fn added_rules(&self) -> impl Iterator<Item = &Rule> {
        self.ops.iter().filter_map(|op| match op {
            Op::Insert(r, _) | Op::Append(r) => Some(r),
            _ => None,
        })
    }

    /// The text fed to `iptables-restore --noflush`.
    pub(crate) fn script(&self) -> String {
        let mut out = String::new();
        for (table, ops) in self.sections() {
            let _ = writeln!(out, "*{table}");
            for op in ops {
                out.push_str(&op.line());
                out.push('\n');
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

/// Turns wants into commands against a copy of the current tables.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    state: Ruleset,
    batch: Batch,
}

impl Plan {
    pub(crate) fn new(current: Ruleset) -> Plan {
        Plan {
            state: current,
            batch: Batch::default(),
        }
    }

    pub(crate) fn want_all<'a>(&mut self, wants: impl IntoIterator<Item = &'a Want>) {
        for w in wants {
            self.want(w);
        }
    }

    pub(crate) fn want(&mut self, want: &Want) {
        match want {
            Want::Chain(table, chain) => {
                if !self.state.has_chain(*table, chain) {
                    self.push(Op::NewChain(*table, chain.to_string()));
                }
            }
            Want::Policy(table, chain, policy) => {
                let current = self.state.chain(*table, chain).map(|c| c.policy.as_str());
                if current != Some(*policy) {
                    self.push(Op::Policy(*table, chain.to_string(), policy.to_string()));
                }
            }
            Want::At(rule, index) => {
                let rules = self.state.rules(rule.table, rule.chain);
                let copies = rules.iter().filter(|s| **s == rule.spec).count();
                if copies == 1 && rules.get(*index) == Some(&rule.spec) {
                    return;
                }
                for _ in 0..copies {
                    self.push(Op::Delete(rule.clone()));
                }
                let len = self.state.rules(rule.table, rule.chain).len();
                self.push(Op::Insert(rule.clone(), (*index).min(len)));
            }
            Want::Present(rule, placement) => {
                if self.state.contains(rule) {
                    return;
                }
                let op = match placement {
                    Placement::Append => Op::Append(rule.clone()),
                    Placement::Top => {
                        let head = self
                            .state
                            .rules(rule.table, rule.chain)
                            .iter()
                            .take_while(|s| is_head_jump(rule.table, rule.chain, s))
                            .count();
                        Op::Insert(rule.clone(), head)
                    }
                };
                self.push(op);
            }
            Want::Absent(rule) => {
                let copies = self
                    .state
                    .rules(rule.table, rule.chain)
                    .iter()
                    .filter(|s| **s == rule.spec)
                    .count();
                for _ in 0..copies {
                    self.push(Op::Delete(rule.clone()));
                }
            }
            Want::Flushed(table, chain) => {
                if !self.state.rules(*table, chain).is_empty() {
                    self.push(Op::Flush(*table, chain.to_string()));
                }
            }
        }
    }

    fn push(&mut self, op: Op) {
        // The planner only emits commands it checked against its copy, so
        // applying them to that copy cannot fail.
        let applied = self.state.apply(&op);
        debug_assert!(
            applied.is_ok(),
            "planner emitted an invalid op: {applied:?}"
        );
        self.batch.ops.push(op);
    }

    pub(crate) fn batch(&self) -> &Batch {
        &self.batch
    }

    /// The tables as they will be once the batch is applied.
    pub(crate) fn result(&self) -> &Ruleset {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 19:21:23 2026
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [12:345]
:OUTPUT ACCEPT [0:0]
:MINE - [0:0]
-A FORWARD -j MINE
-A MINE -s 10.1.0.0/16 -m comment --comment \"keep me\" -j ACCEPT
COMMIT
# Completed on Mon Nov 23 19:21:23 2026
";

    fn rule(chain: &'static str, spec: &str) -> Rule {
        Rule {
            table: Table::Filter,
            chain,
            spec: spec.into(),
        }
    }

    #[test]
    fn parse_then_render_drops_counters_comments_and_unknown_tables() {
        let set = Ruleset::parse(SAVED).unwrap();
        assert_eq!(
            set.render(),
            "*filter\n:INPUT ACCEPT\n:FORWARD DROP\n:OUTPUT ACCEPT\n:MINE -\n\
             -A FORWARD -j MINE\n\
             -A MINE -s 10.1.0.0/16 -m comment --comment \"keep me\" -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn parse_rejects_rules_of_undeclared_chains() {
        let err = Ruleset::parse("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n").unwrap_err();
        assert_eq!(err.line_no, 2);
    }

    #[test]
    fn top_placement_goes_below_the_head_jumps() {
        let mut plan = Plan::new(Ruleset::default());
        plan.want(&Want::Present(rule("FORWARD", "-j MINE"), Placement::Top));
        plan.want(&Want::At(rule("FORWARD", "-j DOCKER-USER"), 0));
        plan.want(&Want::Present(
            rule("FORWARD", "-o br0 -j DOCKER"),
            Placement::Top,
        ));
        assert_eq!(
            plan.result().rules(Table::Filter, "FORWARD"),
            ["-j DOCKER-USER", "-o br0 -j DOCKER", "-j MINE"]
        );
        assert_eq!(
            plan.batch().script(),
            "*filter\n-I FORWARD 1 -j MINE\n-I FORWARD 1 -j DOCKER-USER\n\
             -I FORWARD 2 -o br0 -j DOCKER\nCOMMIT\n"
        );
    }

    #[test]
    fn at_moves_a_misplaced_or_duplicated_jump_once() {
        let saved = "*filter\n:FORWARD ACCEPT\n-A FORWARD -j MINE\n-A FORWARD -j DOCKER-USER\n\
                     -A FORWARD -j DOCKER-USER\nCOMMIT\n";
        let mut plan = Plan::new(Ruleset::parse(saved).unwrap());
        let want = Want::At(rule("FORWARD", "-j DOCKER-USER"), 0);
        plan.want(&want);
        assert_eq!(
            plan.result().rules(Table::Filter, "FORWARD"),
            ["-j DOCKER-USER", "-j MINE"]
        );
        let len = plan.batch().len();
        plan.want(&want);
        assert_eq!(plan.batch().len(), len, "second pass must change nothing");
    }

    #[test]
    fn absent_and_present_are_idempotent() {
        let mut plan = Plan::new(Ruleset::default());
        let r = rule("FORWARD", "-i br0 -j ACCEPT");
        plan.want(&Want::Present(r.clone(), Placement::Append));
        plan.want(&Want::Present(r.clone(), Placement::Append));
        assert_eq!(plan.batch().len(), 1);
        plan.want(&Want::Absent(r.clone()));
        plan.want(&Want::Absent(r));
        assert_eq!(plan.batch().len(), 2);
        assert!(plan.result().rules(Table::Filter, "FORWARD").is_empty());
    }

    #[test]
    fn sections_keep_per_table_order() {
        let mut plan = Plan::new(Ruleset::default());
        plan.want(&Want::Chain(Table::Nat, "DOCKER"));
        plan.want(&Want::Chain(Table::Filter, "DOCKER"));
        plan.want(&Want::Present(
            Rule {
                table: Table::Nat,
                chain: "DOCKER",
                spec: "-j RETURN".into(),
            },
            Placement::Append,
        ));
        assert_eq!(
            plan.batch().script(),
            "*nat\n-N DOCKER\n-A DOCKER -j RETURN\nCOMMIT\n*filter\n-N DOCKER\nCOMMIT\n"
        );
    }

    #[test]
    fn apply_refuses_what_the_kernel_refuses() {
        let mut set = Ruleset::default();
        assert!(set.apply(&Op::Delete(rule("FORWARD", "-j NOPE"))).is_err());
        assert!(set.apply(&Op::Append(rule("NOPE", "-j ACCEPT"))).is_err());
        assert!(set
            .apply(&Op::NewChain(Table::Filter, "FORWARD".into()))
            .is_err());
    }
}
