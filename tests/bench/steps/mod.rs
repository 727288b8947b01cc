//! The workload, run against both daemons in alternation (dockerd first on
//! even iterations, berthd first on odd ones) so drift hits both equally.
//! A step failing on one side (an HTTP error, a missing feature) marks that
//! side's rows n/a with the reason and the run goes on.

mod containers;
mod lifecycle;
mod networks;

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::Args;
use crate::daemon::Daemon;
use crate::report::{Kind, Report, Unit};
use crate::signals;

/// One daemon and what the steps learned about it.
pub struct Side {
    pub daemon: Option<Daemon>,
    /// Why this side cannot run any step (not selected, failed to start).
    pub down: Option<String>,
    /// Why container steps cannot run (the image import failed).
    pub no_image: Option<String>,
}

pub struct Sides(pub [Side; 2]);

impl Sides {
    fn side(&mut self, kind: Kind) -> &mut Side {
        &mut self.0[kind.index()]
    }

    /// The daemon of `kind`, when it is up.
    fn daemon(&mut self, kind: Kind) -> Option<&mut Daemon> {
        let side = self.side(kind);
        if side.down.is_some() {
            return None;
        }
        side.daemon.as_mut()
    }
}

/// Pause before each timed container operation. The kernel finishes part
/// of a daemon's work after its answer (veth and namespace teardown, RCU
/// callbacks), some of it under the global rtnl lock: without a pause that
/// tail lands on the other daemon's next operation (berthd's connect: 6.8 ms
/// median alone, 23.8 ms right after dockerd's disconnect).
const SETTLE: Duration = Duration::from_millis(100);

pub fn settle() {
    std::thread::sleep(SETTLE);
}

/// Iteration `i`'s order of the two daemons.
pub fn order(i: usize) -> [Kind; 2] {
    if i.is_multiple_of(2) {
        [Kind::Dockerd, Kind::Berthd]
    } else {
        [Kind::Berthd, Kind::Dockerd]
    }
}

/// Timings one operation produced: (row, duration).
type Timings = Vec<(&'static str, Duration)>;

/// The rows of one step, and which side has dropped out of it.
struct Step<'r> {
    report: &'r mut Report,
    rows: Vec<&'static str>,
    finished: Vec<&'static str>,
    blocked: [bool; 2],
}

impl<'r> Step<'r> {
    /// Declares the rows; sides that are down (or lack the image, when
    /// `needs_image`) are n/a in all of them from the start.
    fn new(
        report: &'r mut Report,
        sides: &Sides,
        rows: &[(&'static str, Unit, &str)],
        needs_image: bool,
    ) -> Self {
        for (key, unit, note) in rows {
            report.declare(key, *unit, note);
        }
        let mut step = Self {
            report,
            rows: rows.iter().map(|r| r.0).collect(),
            finished: Vec::new(),
            blocked: [false; 2],
        };
        for kind in Kind::ALL {
            let side = &sides.0[kind.index()];
            let reason = side.down.clone().or(if needs_image {
                side.no_image.clone()
            } else {
                None
            });
            if side.daemon.is_none() && side.down.is_none() {
                // Not selected: the report shows "-" and no reason.
                step.blocked[kind.index()] = true;
            } else if let Some(reason) = reason {
                step.block(kind, &reason);
            }
        }
        step
    }

    fn open(&self, kind: Kind) -> bool {
        !self.blocked[kind.index()]
    }

    /// Takes `kind` out of the rest of the step: its unfinished rows are n/a.
    fn block(&mut self, kind: Kind, reason: &str) {
        if self.blocked[kind.index()] {
            return;
        }
        self.blocked[kind.index()] = true;
        for row in &self.rows {
            if !self.finished.contains(row) {
                self.report.na(row, kind, reason);
            }
        }
    }

    /// A sub-phase is over: a later failure leaves its rows as they are.
    fn finish(&mut self, row: &'static str) {
        self.finished.push(row);
    }

    fn value(&mut self, kind: Kind, row: &'static str, v: f64) {
        self.report.add(row, kind, v);
    }

    /// Records an operation's timings, or blocks the side on its error and
    /// returns None.
    fn take<T>(&mut self, kind: Kind, result: Result<(T, Timings)>) -> Option<T> {
        match result {
            Ok((value, timings)) => {
                for (row, d) in timings {
                    self.report.add(row, kind, d.as_secs_f64() * 1000.0);
                }
                Some(value)
            }
            // An interrupt is no finding about the daemon: leave the row
            // as it was; the next signals::check() ends the run.
            Err(_) if signals::interrupted() => None,
            Err(e) => {
                eprintln!("compare: {}: {e:#}", kind.name());
                self.block(kind, &format!("{e:#}"));
                None
            }
        }
    }
}

/// The daemon of `kind` if it is still in this step.
fn open_daemon<'s>(step: &Step<'_>, sides: &'s mut Sides, kind: Kind) -> Option<&'s mut Daemon> {
    if step.open(kind) {
        sides.daemon(kind)
    } else {
        None
    }
}

/// Times one API call as the single sample of `row`.
fn timed<T, E: Into<anyhow::Error>>(
    row: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Timings)> {
    let t0 = Instant::now();
    let v = f().map_err(Into::into)?;
    Ok((v, vec![(row, t0.elapsed())]))
}

/// One stage of the workload.
type Stage<'a> = dyn Fn(&mut Sides, &mut Report) -> Result<()> + 'a;

/// Runs every step in order. Only an interrupt (or a harness bug) ends it
/// early; daemons' failures end up in the report.
pub fn run(args: &Args, sides: &mut Sides, report: &mut Report, rootfs: &[u8]) -> Result<()> {
    let stages: [(&str, &Stage); 8] = [
        ("cold start", &|s, r| lifecycle::cold_start(args, s, r)),
        ("versions", &|s, r| lifecycle::versions(s, r)),
        ("image import", &|s, r| {
            lifecycle::import_image(s, r, rootfs)
        }),
        ("idle RSS", &|s, r| lifecycle::rss_idle(s, r)),
        ("networks", &|s, r| networks::create_delete(args, s, r)),
        ("containers", &|s, r| {
            containers::start_connect_remove(args, s, r)
        }),
        ("published ports", &|s, r| {
            containers::published_ports(args, s, r)
        }),
        ("scale", &|s, r| networks::scale(args, s, r)),
    ];
    for (name, stage) in stages {
        signals::check()?;
        eprintln!("compare: == {name}");
        stage(sides, report)?;
    }
    Ok(())
}
