//! Side-by-side benchmark: the same Engine API workload against dockerd
//! (Debian's docker.io) and berthd, each in a fresh network namespace of its
//! own with its own data-root, exec-root, pidfile and socket under a temp dir.
//!
//! Run it with `.bench/run` (installs what is missing, then
//! `cargo bench --bench compare -- FLAGS`). Under `cargo test --benches` it
//! only runs its self-checks. It prints median/p95 per row and the ratio
//! dockerd/berthd, and writes the same as JSON (`--json`).

mod api;
mod cli;
mod daemon;
mod http;
mod netns;
mod probe;
mod procs;
mod report;
mod rootfs;
mod selfcheck;
mod signals;
mod steps;

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use serde_json::json;

use cli::{Args, Only};
use daemon::{Daemon, Programs, ADDRESS_POOL};
use report::{Kind, Report};
use steps::{Side, Sides};

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bench {
        return selfcheck::run();
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("compare: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "must run as root: it makes network namespaces and runs daemons"
    );
    signals::install()?;
    let rootfs = rootfs::busybox_tar(&args.busybox)?;
    let out_dir = args.json.parent().unwrap_or(Path::new("."));
    let log_dir = out_dir.join("logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir()
        .context("temp dir")?;
    let programs = Programs {
        dockerd: args.dockerd.clone(),
        containerd: args.containerd.clone(),
        berthd: args.berthd.clone(),
    };

    let mut report = Report::new([args.runs(Only::Dockerd), args.runs(Only::Berthd)]);
    describe_run(args, &mut report, &log_dir);

    let outcome = {
        let mut sides =
            Sides(Kind::ALL.map(|kind| prepare(args, kind, &programs, tmp.path(), &log_dir)));
        let outcome = steps::run(args, &mut sides, &mut report, &rootfs);
        eprintln!("compare: stopping daemons and removing namespaces");
        drop(sides);
        outcome
    };
    if let Err(e) = &outcome {
        report.meta("aborted", json!(format!("{e:#}")));
    }

    print!("{}", report.table());
    let text = serde_json::to_string_pretty(&report.to_json())?;
    fs::write(&args.json, text + "\n").with_context(|| format!("write {}", args.json.display()))?;
    println!(
        "\nJSON: {}\nlogs: {}",
        args.json.display(),
        log_dir.display()
    );
    remove_tmp(tmp);

    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("compare: stopped early: {e:#}");
            Ok(ExitCode::from(if signals::interrupted() { 130 } else { 1 }))
        }
    }
}

fn prepare(args: &Args, kind: Kind, programs: &Programs, tmp: &Path, log_dir: &Path) -> Side {
    let which = match kind {
        Kind::Dockerd => Only::Dockerd,
        Kind::Berthd => Only::Berthd,
    };
    if !args.runs(which) {
        return Side {
            daemon: None,
            down: None,
            no_image: None,
        };
    }
    match Daemon::prepare(kind, programs, tmp, log_dir) {
        Ok(daemon) => Side {
            daemon: Some(daemon),
            down: None,
            no_image: None,
        },
        Err(e) => {
            eprintln!("compare: {}: {e:#}", kind.name());
            Side {
                daemon: None,
                down: Some(format!("setup failed: {e:#}")),
                no_image: None,
            }
        }
    }
}

fn describe_run(args: &Args, report: &mut Report, log_dir: &Path) {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.meta("started_unix", json!(started));
    report.meta("kernel", json!(kernel.trim()));
    report.meta("cpus", json!(cpus));
    report.meta("default_address_pool", json!(ADDRESS_POOL));
    report.meta(
        "binaries",
        json!({
            "dockerd": args.dockerd,
            "containerd_for_dockerd": args.containerd,
            "berthd": args.berthd,
        }),
    );
    report.meta(
        "workload",
        json!({
            "cold_runs": args.cold_runs,
            "networks": args.networks,
            "containers": args.containers,
            "connects": args.connects,
            "scale": args.scale,
            "port_base": args.port_base,
            "order": "alternating per iteration: dockerd first on even, berthd first on odd",
        }),
    );
    report.meta("logs", json!(log_dir));
}

/// Removes the temp dir unless something is still mounted under it (then
/// deleting would reach into the mount): say so and leave it.
fn remove_tmp(tmp: tempfile::TempDir) {
    let path = tmp.path().to_path_buf();
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(&daemon::unescape_mountinfo(p)).starts_with(&path));
    if mounted {
        eprintln!(
            "compare: mounts remain under {}; leaving it in place",
            path.display()
        );
        let _ = tmp.keep();
    }
}
