//! Results: one row per measured quantity with a cell per daemon (samples or
//! the reason it is n/a), the median/p95 summary, the table and the JSON.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dockerd,
    Berthd,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Dockerd, Kind::Berthd];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dockerd => "dockerd",
            Kind::Berthd => "berthd",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Ms,
    MiB,
    Count,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::MiB => "MiB",
            Unit::Count => "count",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Cell {
    /// The side was not part of this run (`--only`).
    Skipped,
    Samples(Vec<f64>),
    Na(String),
}

#[derive(Clone, Debug)]
pub struct Row {
    pub key: String,
    pub unit: Unit,
    pub note: String,
    pub cells: [Cell; 2],
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

/// Median (mean of the middle two for even counts) and nearest-rank p95.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = (0.95 * n as f64).ceil() as usize;
    Some(Summary {
        n,
        median,
        p95: s[rank.clamp(1, n) - 1],
        min: s[0],
        max: s[n - 1],
    })
}

pub struct Report {
    rows: Vec<Row>,
    meta: Map<String, Value>,
    /// Sides left out by `--only` start as Skipped in every row.
    selected: [bool; 2],
}

impl Report {
    pub fn new(selected: [bool; 2]) -> Self {
        Self {
            rows: Vec::new(),
            meta: Map::new(),
            selected,
        }
    }

    pub fn meta(&mut self, key: &str, value: Value) {
        self.meta.insert(key.to_string(), value);
    }

    /// Declares a row (idempotent) so it shows even when nothing ran.
    pub fn declare(&mut self, key: &str, unit: Unit, note: &str) {
        if self.find(key).is_some() {
            return;
        }
        let cell = |k: Kind| {
            if self.selected[k.index()] {
                Cell::Samples(Vec::new())
            } else {
                Cell::Skipped
            }
        };
        let cells = [cell(Kind::Dockerd), cell(Kind::Berthd)];
        self.rows.push(Row {
            key: key.to_string(),
            unit,
            note: note.to_string(),
            cells,
        });
    }

    fn find(&mut self, key: &str) -> Option<&mut Row> {
        self.rows.iter_mut().find(|r| r.key == key)
    }

    pub fn add(&mut self, key: &str, kind: Kind, value: f64) {
        let row = self
            .find(key)
            .unwrap_or_else(|| panic!("row {key:?} used before it was declared"));
        if let Cell::Samples(v) = &mut row.cells[kind.index()] {
            v.push(value);
        }
    }

    /// Marks the row n/a for `kind`; the first reason wins.
    pub fn na(&mut self, key: &str, kind: Kind, reason: &str) {
        let row = self
            .find(key)
            .unwrap_or_else(|| panic!("row {key:?} used before it was declared"));
        let cell = &mut row.cells[kind.index()];
        if let Cell::Samples(samples) = cell {
            let reason = if samples.is_empty() {
                reason.to_string()
            } else {
                format!("{reason} (after {} good samples)", samples.len())
            };
            *cell = Cell::Na(reason);
        }
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = json!({
                    "name": r.key,
                    "unit": r.unit.name(),
                    "note": r.note,
                    "ratio_dockerd_over_berthd": ratio(r).map(round3),
                });
                for k in Kind::ALL {
                    row[k.name()] = cell_json(&r.cells[k.index()]);
                }
                row
            })
            .collect();
        json!({"meta": Value::Object(self.meta.clone()), "rows": rows})
    }

    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|r| r.key.len() + 5)
            .max()
            .unwrap_or(10);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:width$}  {:>21}  {:>21}  {:>7}",
            "", "dockerd median / p95", "berthd median / p95", "d/b"
        );
        for r in &self.rows {
            let name = format!("{} [{}]", r.key, r.unit.name());
            let ratio = ratio(r).map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
            let _ = writeln!(
                out,
                "{name:width$}  {:>21}  {:>21}  {ratio:>7}",
                cell_text(&r.cells[0]),
                cell_text(&r.cells[1]),
            );
        }
        let _ = writeln!(
            out,
            "d/b: dockerd median / berthd median (above 1: berthd faster or smaller); \
             each row's samples alternate which daemon goes first"
        );
        // One entry per (daemon, reason): a daemon that failed to start
        // would otherwise repeat the same reason on every row.
        let mut groups: Vec<(Kind, &str, Vec<&str>)> = Vec::new();
        for r in &self.rows {
            for k in Kind::ALL {
                if let Cell::Na(why) = &r.cells[k.index()] {
                    match groups.iter_mut().find(|g| g.0 == k && g.1 == why) {
                        Some(g) => g.2.push(&r.key),
                        None => groups.push((k, why, vec![&r.key])),
                    }
                }
            }
        }
        if !groups.is_empty() {
            let _ = writeln!(out, "\nWhy n/a:");
        }
        for (kind, why, rows) in groups {
            let which = match rows.as_slice() {
                [one] => format!("\"{one}\""),
                [first, .., last] => format!("{} rows, \"{first}\" .. \"{last}\"", rows.len()),
                [] => continue,
            };
            let why = why.trim_end().replace('\n', "\n      ");
            let _ = writeln!(out, "  {} / {which}:\n      {why}", kind.name());
        }
        out
    }
}

fn summary_of(cell: &Cell) -> Option<Summary> {
    match cell {
        Cell::Samples(s) => summarize(s),
        _ => None,
    }
}

/// dockerd's median over berthd's: above 1 means berthd is faster/smaller.
fn ratio(r: &Row) -> Option<f64> {
    let d = summary_of(&r.cells[0])?;
    let b = summary_of(&r.cells[1])?;
    (b.median > 0.0).then(|| d.median / b.median)
}

fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Skipped => "-".into(),
        Cell::Na(_) => "n/a".into(),
        Cell::Samples(s) => match summarize(s) {
            Some(x) => format!("{} / {}", fmt_num(x.median), fmt_num(x.p95)),
            None => "no data".into(),
        },
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Three decimals: microseconds for ms rows, KiB-ish for MiB rows.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Skipped => json!({"status": "skipped"}),
        Cell::Na(why) => json!({"status": "n/a", "reason": why}),
        Cell::Samples(s) => match summarize(s) {
            Some(x) => json!({
                "status": "ok",
                "n": x.n,
                "median": round3(x.median),
                "p95": round3(x.p95),
                "min": round3(x.min),
                "max": round3(x.max),
                "samples": s.iter().copied().map(round3).collect::<Vec<_>>(),
            }),
            None => json!({"status": "no data"}),
        },
    }
}
