//! The reports of `logbook bench` and `logbook bench capacity`: a text table
//! for the terminal, and a directory with `report.md`, `results.json` and SVG
//! plots.
//!
//! - [`comparison`]: the side-by-side comparison's table and report;
//!   `wal_fsync`, its section on the members' WAL fsync histograms.
//! - [`capacity`]: the capacity run's table and report, for every profile.
//! - [`scale`]: the scale run's tables and report.
//! - this module: the table type, number format and colors they share.

pub mod capacity;
pub mod comparison;
pub mod scale;
mod wal_fsync;

use std::fmt::Write as _;

use crate::cluster::System;

/// A table as rows of cells, rendered as text or Markdown.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].len())
                    .chain([self.headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i == 0 {
                    let _ = write!(s, "{c:<w$}", w = widths[i]);
                } else {
                    let _ = write!(s, "  {c:>w$}", w = widths[i]);
                }
            }
            s.trim_end().to_owned() + "\n"
        };
        let mut out = line(&self.headers);
        for r in &self.rows {
            out += &line(r);
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n|", self.headers.join(" | "));
        for i in 0..self.headers.len() {
            out += if i == 0 { "---|" } else { "---:|" };
        }
        out += "\n";
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn color(system: System) -> usize {
    match system {
        System::Logbook => 0,
        System::Etcd => 1,
    }
}
