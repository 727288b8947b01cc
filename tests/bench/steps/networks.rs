//! Network steps: create/list/delete at a modest count, and the scale step
//! (one more create, an inspect and a list at 10 networks and at N).

use std::time::Instant;

use anyhow::Result;

use super::{open_daemon, order, timed, Sides, Step, Timings};
use crate::cli::Args;
use crate::daemon::Daemon;
use crate::report::{Report, Unit};
use crate::signals;

const CREATE: &str = "network create";
const LIST: &str = "network list";
const DELETE: &str = "network delete";

/// How many times a single-call measurement is repeated for its median.
const REPS: usize = 10;

/// Creates `--networks` bridge networks, lists with all of them present,
/// deletes them.
pub fn create_delete(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<()> {
    let n = args.networks;
    let list_note = format!("GET /networks with {n} user networks present");
    let rows = [
        (
            CREATE,
            Unit::Ms,
            "bridge driver, subnet from the default pool",
        ),
        (LIST, Unit::Ms, list_note.as_str()),
        (DELETE, Unit::Ms, ""),
    ];
    let mut step = Step::new(report, sides, &rows, false);
    let mut ids: [Vec<String>; 2] = Default::default();
    for i in 0..n {
        signals::check()?;
        for kind in order(i) {
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let r = timed(CREATE, || {
                    daemon.client().create_network(&format!("bench-n-{i}"))
                });
                if let Some(id) = step.take(kind, r) {
                    ids[kind.index()].push(id);
                }
            }
        }
    }
    for i in 0..REPS {
        signals::check()?;
        for kind in order(i) {
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let r = timed(LIST, || daemon.client().list_networks());
                step.take(kind, r);
            }
        }
    }
    for i in 0..n {
        signals::check()?;
        for kind in order(i) {
            let Some(id) = ids[kind.index()].get(i) else {
                continue;
            };
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let r = timed(DELETE, || daemon.client().remove_network(id));
                step.take(kind, r);
            }
        }
    }
    Ok(())
}

const GROW: &str = "scale: network create, growing to N";
const SHRINK: &str = "scale: network delete, shrinking from N";

/// Rows measured at one population level.
struct Level {
    at: usize,
    create: &'static str,
    inspect: &'static str,
    list: &'static str,
}

/// Grows to `--scale` networks; at 10 and at N it times one more create
/// (deleted again), an inspect and a list, repeated for a median.
pub fn scale(args: &Args, sides: &mut Sides, report: &mut Report) -> Result<()> {
    let n = args.scale;
    if n < 10 {
        eprintln!("compare: scale step skipped (--scale {n} < 10)");
        return Ok(());
    }
    let levels = [
        Level {
            at: 10,
            create: "scale: network create at 10 networks",
            inspect: "scale: network inspect at 10 networks",
            list: "scale: network list at 10 networks",
        },
        Level {
            at: n,
            create: "scale: network create at N networks",
            inspect: "scale: network inspect at N networks",
            list: "scale: network list at N networks",
        },
    ];
    let note = format!("N = {n}");
    let mut rows = vec![(GROW, Unit::Ms, note.as_str())];
    for l in &levels {
        rows.extend([
            (l.create, Unit::Ms, note.as_str()),
            (l.inspect, Unit::Ms, note.as_str()),
            (l.list, Unit::Ms, note.as_str()),
        ]);
    }
    rows.push((SHRINK, Unit::Ms, note.as_str()));
    let mut step = Step::new(report, sides, &rows, false);

    let mut ids: [Vec<String>; 2] = Default::default();
    for i in 0..n {
        signals::check()?;
        for kind in order(i) {
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let r = timed(GROW, || {
                    daemon.client().create_network(&format!("bench-s-{i}"))
                });
                if let Some(id) = step.take(kind, r) {
                    ids[kind.index()].push(id);
                }
            }
        }
        for level in levels.iter().filter(|l| l.at == i + 1) {
            if level.at == n {
                step.finish(GROW);
            }
            probe_level(&mut step, sides, level)?;
        }
    }
    for i in (0..n).rev() {
        signals::check()?;
        for kind in order(i) {
            let Some(id) = ids[kind.index()].get(i) else {
                continue;
            };
            if let Some(daemon) = open_daemon(&step, sides, kind) {
                let r = timed(SHRINK, || daemon.client().remove_network(id));
                step.take(kind, r);
            }
        }
    }
    Ok(())
}

fn probe_level(step: &mut Step<'_>, sides: &mut Sides, level: &Level) -> Result<()> {
    // The middle network exists on both sides by now.
    let probe_name = format!("bench-s-{}", level.at / 2);
    for rep in 0..REPS {
        signals::check()?;
        for kind in order(rep) {
            if let Some(daemon) = open_daemon(step, sides, kind) {
                let r = probe_once(daemon, level, &probe_name, rep);
                step.take(kind, r);
            }
        }
    }
    for row in [level.create, level.inspect, level.list] {
        step.finish(row);
    }
    Ok(())
}

fn probe_once(daemon: &Daemon, level: &Level, name: &str, rep: usize) -> Result<((), Timings)> {
    let c = daemon.client();
    let t0 = Instant::now();
    let extra = c.create_network(&format!("bench-s-extra-{}-{rep}", level.at))?;
    let t1 = Instant::now();
    c.remove_network(&extra)?;
    let t2 = Instant::now();
    c.inspect_network(name)?;
    let t3 = Instant::now();
    c.list_networks()?;
    let t4 = Instant::now();
    Ok((
        (),
        vec![
            (level.create, t1 - t0),
            (level.inspect, t3 - t2),
            (level.list, t4 - t3),
        ],
    ))
}
