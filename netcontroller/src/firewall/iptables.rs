//! The kernel side of the firewall: `iptables-save`, `iptables-restore` and
//! the one sysctl dockerd sets, behind a narrow trait so the logic above can
//! be tested with a fake.
//!
//! Everything acts on the network namespace of the calling thread: child
//! processes inherit it, and `/proc/sys/net` is resolved per thread.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use tracing::debug;

use super::ruleset::{Batch, Ruleset};
use super::FirewallError;

const SAVE: &str = "iptables-save";
const RESTORE: &str = "iptables-restore";
const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Reads and writes the tables of the calling thread's network namespace.
pub(crate) trait Backend: Send + Sync {
    /// The current mangle, filter and nat tables.
    fn snapshot(&self) -> Result<Ruleset, FirewallError>;
    /// Applies a batch; each table section is one transaction, but a failure
    /// in a later section leaves earlier sections applied.
    fn restore(&self, batch: &Batch) -> Result<(), FirewallError>;
    /// `net.ipv4.conf.<bridge>.route_localnet = 1`, so DNAT of 127.0.0.0/8
    /// towards the bridge is routed (needed without the userland proxy).
    fn enable_route_localnet(&self, bridge: &str) -> Result<(), FirewallError>;
    /// `net.bridge.bridge-nf-call-iptables = 1`, so traffic between ports of
    /// one bridge passes FORWARD (without it `--icc=false` drops nothing).
    fn enable_bridge_netfilter(&self) -> Result<(), FirewallError>;
}

/// The real thing: iptables-save / iptables-restore processes.
#[derive(Debug, Default)]
pub(crate) struct Iptables;

fn run(program: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, FirewallError> {
    let started = Instant::now();
    let spawn_err = |source| FirewallError::Spawn { program, source };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means the process died early; its exit status and
        // stderr, read below, say why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    debug!(program, elapsed_us = started.elapsed().as_micros() as u64, status = %out.status, "ran");
    if !out.status.success() {
        return Err(FirewallError::Command {
            program,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Backend for Iptables {
    fn snapshot(&self) -> Result<Ruleset, FirewallError> {
        let text = run(SAVE, &[], None)?;
        Ruleset::parse(&text).map_err(FirewallError::Parse)
    }

    fn restore(&self, batch: &Batch) -> Result<(), FirewallError> {
        let script = batch.script();
        debug!(commands = batch.len(), %script, "iptables-restore");
        run(RESTORE, &["-w", "--noflush"], Some(&script)).map(|_| ())
    }

    fn enable_route_localnet(&self, bridge: &str) -> Result<(), FirewallError> {
        let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
        std::fs::write(&path, "1").map_err(|source| FirewallError::Sysctl { path, source })
    }

    fn enable_bridge_netfilter(&self) -> Result<(), FirewallError> {
        let path = BRIDGE_NF_CALL_IPTABLES;
        if !Path::new(path).exists() {
            // The knob appears with the br_netfilter module; dockerd loads
            // it the same way. Without it the write below reports the problem.
            if let Err(e) = run("modprobe", &["br_netfilter"], None) {
                debug!(error = %e, "modprobe br_netfilter");
            }
        }
        let sysctl_err = |source| FirewallError::Sysctl {
            path: path.to_string(),
            source,
        };
        if std::fs::read_to_string(path).map_err(sysctl_err)?.trim() == "1" {
            return Ok(());
        }
        std::fs::write(path, "1").map_err(sysctl_err)
    }
}
