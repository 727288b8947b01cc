//! Daemon-level steps: cold start, the image import, versions, memory.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use super::{order, Sides, Step};
use crate::cli::Args;
use crate::report::{Kind, Report, Unit};
use crate::signals;

const COLD: &str = "cold start: launch -> first /_ping";

/// Launches each daemon `cold_runs` times (stopping it in between) and
/// leaves the last launch running for the rest of the workload. dockerd's
/// containerd stays up throughout; berthd starts its own each time.
pub fn cold_start(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<()> {
    let note =
        "dockerd: its containerd already running; berthd: includes starting its private containerd";
    let mut step = Step::new(report, sides, &[(COLD, Unit::Ms, note)], false);
    for run in 0..args.cold_runs.max(1) {
        signals::check()?;
        for kind in order(run) {
            if !step.open(kind) {
                continue;
            }
            let Some(daemon) = sides.daemon(kind) else {
                continue;
            };
            match daemon.launch() {
                Ok(took) if run < args.cold_runs => {
                    step.value(kind, COLD, took.as_secs_f64() * 1000.0)
                }
                Ok(_) => {}
                Err(e) => {
                    let reason = format!("daemon did not start: {e:#}");
                    eprintln!("compare: {}: {reason}", kind.name());
                    step.block(kind, &reason);
                    sides.side(kind).down = Some(reason);
                }
            }
        }
    }
    Ok(())
}

/// Records each daemon's `/version` in the report's meta data.
pub fn versions(sides: &mut Sides, report: &mut Report) -> Result<()> {
    for kind in Kind::ALL {
        let Some(daemon) = sides.daemon(kind) else {
            continue;
        };
        let v = daemon
            .client()
            .version()
            .unwrap_or_else(|e| json!({"error": e.to_string()}));
        report.meta(
            &format!("{}_version", kind.name()),
            json!({
                "Version": v.get("Version").cloned().unwrap_or(Value::Null),
                "ApiVersion": v.get("ApiVersion").cloned().unwrap_or(Value::Null),
            }),
        );
    }
    Ok(())
}

const IMPORT: &str = "image import (busybox rootfs tar)";

/// `POST /images/create?fromSrc=-` with the same tar on both sides; a side
/// that cannot import gets n/a in every container row.
pub fn import_image(sides: &mut Sides, report: &mut Report, rootfs: &[u8]) -> Result<()> {
    let mut step = Step::new(report, sides, &[(IMPORT, Unit::Ms, "")], false);
    for kind in order(0) {
        if !step.open(kind) {
            continue;
        }
        let Some(daemon) = sides.daemon(kind) else {
            continue;
        };
        let t0 = Instant::now();
        let result = daemon.client().import_image(rootfs, "busybox", "latest");
        let took = t0.elapsed();
        match result {
            Ok(()) => step.value(kind, IMPORT, took.as_secs_f64() * 1000.0),
            Err(e) => {
                let reason = format!("image import failed: {e}");
                step.block(kind, &reason);
                sides.side(kind).no_image = Some(reason);
            }
        }
    }
    Ok(())
}

const RSS_SAMPLES: usize = 5;

pub fn rss_idle(sides: &mut Sides, report: &mut Report) -> Result<()> {
    let rows = [
        ("RSS idle: daemon", Unit::MiB, "no containers"),
        (
            "RSS idle: its containerd",
            Unit::MiB,
            "dockerd's separate containerd; berthd's child",
        ),
    ];
    let mut step = Step::new(report, sides, &rows, false);
    sample_rss(sides, &mut step, |rss| {
        vec![
            ("RSS idle: daemon", Some(mib(rss.daemon))),
            ("RSS idle: its containerd", rss.containerd.map(mib)),
        ]
    })
}

pub const RSS_RUNNING_DAEMON: &str = "RSS with the port containers running: daemon";
pub const RSS_RUNNING_HELPERS: &str = "RSS with the port containers running: port helper processes";
pub const RSS_RUNNING_TOTAL: &str = "RSS with the port containers running: daemon + port helpers";
pub const RSS_RUNNING_HELPER_COUNT: &str = "port helper processes with the port containers running";
pub const RSS_RUNNING_CONTAINERD: &str = "RSS with the port containers running: its containerd";

/// Memory while `expected` containers with one published port each run;
/// a side running fewer is n/a (the figures would not compare).
pub fn rss_running(
    sides: &mut Sides,
    report: &mut Report,
    running: [usize; 2],
    expected: usize,
) -> Result<()> {
    let helpers =
        "docker-proxy for dockerd (one per port and address family); none expected for berthd";
    let rows = [
        (RSS_RUNNING_DAEMON, Unit::MiB, ""),
        (RSS_RUNNING_HELPERS, Unit::MiB, helpers),
        (RSS_RUNNING_TOTAL, Unit::MiB, "containerd-shims not counted"),
        (RSS_RUNNING_HELPER_COUNT, Unit::Count, helpers),
        (RSS_RUNNING_CONTAINERD, Unit::MiB, ""),
    ];
    let mut step = Step::new(report, sides, &rows, true);
    for kind in Kind::ALL {
        if step.open(kind) && running[kind.index()] != expected {
            let reason = format!(
                "{} of {expected} port containers running",
                running[kind.index()]
            );
            step.block(kind, &reason);
        }
    }
    sample_rss(sides, &mut step, |rss| {
        let helpers: u64 = rss.helpers.iter().map(|h| h.1).sum();
        vec![
            (RSS_RUNNING_DAEMON, Some(mib(rss.daemon))),
            (RSS_RUNNING_HELPERS, Some(mib(helpers))),
            (RSS_RUNNING_TOTAL, Some(mib(rss.daemon + helpers))),
            (RSS_RUNNING_HELPER_COUNT, Some(rss.helpers.len() as f64)),
            (RSS_RUNNING_CONTAINERD, rss.containerd.map(mib)),
        ]
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Reads the memory figures a few times, 200 ms apart, on every open side;
/// `pick` turns them into row values in the rows' units.
fn sample_rss(
    sides: &mut Sides,
    step: &mut Step<'_>,
    pick: impl Fn(&crate::daemon::Rss) -> Vec<(&'static str, Option<f64>)>,
) -> Result<()> {
    for i in 0..RSS_SAMPLES {
        signals::check()?;
        for kind in order(i) {
            if !step.open(kind) {
                continue;
            }
            let Some(daemon) = sides.daemon(kind) else {
                continue;
            };
            match daemon.rss() {
                Ok(rss) => {
                    for (row, value) in pick(&rss) {
                        match value {
                            Some(v) => step.value(kind, row, v),
                            None => step.report.na(row, kind, "process not found"),
                        }
                    }
                }
                Err(e) => step.block(kind, &format!("{e:#}")),
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
