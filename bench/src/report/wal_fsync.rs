//! The comparison report's WAL fsync section: every member's WAL fsync
//! histogram (and Logbook's records per fsync), scraped from `/metrics` around
//! each rung, per rung and over the whole ladder, with their distribution plot.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Table, color, ms};
use crate::cluster::System;
use crate::compare::{Comparison, SystemResult};
use crate::metrics::{PromHistogram, WalMetrics};
use crate::plot::{Series, XAxis, line_chart, nines};

/// A system's WAL histograms over the whole ladder.
fn wal_total(s: &SystemResult) -> Option<WalMetrics> {
    let mut total: Option<WalMetrics> = None;
    for w in s.rungs.iter().filter_map(|r| r.wal.as_ref()) {
        match total.as_mut() {
            Some(t) => t.merge(w),
            None => total = Some(w.clone()),
        }
    }
    total
}

/// A bound in seconds as milliseconds.
fn bound_ms(b: f64) -> String {
    let v = b * 1e3;
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `≤ bound` of quantile `q` in ms, or `> last bound` when it lies beyond.
fn quantile_cell(h: &PromHistogram, q: f64) -> String {
    match (h.quantile_bound(q), h.bounds.last()) {
        (Some(b), _) => format!("≤ {}", bound_ms(b)),
        (None, Some(last)) if h.count > 0 => format!("> {}", bound_ms(*last)),
        _ => "–".to_owned(),
    }
}

fn members(cmp: &Comparison) -> f64 {
    cmp.params["members"].as_u64().unwrap_or(1) as f64
}

/// One line per system: its WAL over the whole ladder, for the terminal.
pub(super) fn wal_lines(cmp: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    for s in cmp.systems.iter().filter(|s| s.failure.is_none()) {
        let Some(w) = wal_total(s) else { continue };
        let Some(f) = &w.fsync else { continue };
        let puts: u64 = s.rungs.iter().filter(|r| r.wal.is_some()).map(|r| r.put.count).sum();
        let mut line = format!(
            "{} WAL fsyncs (all members, all rungs): {}, mean {} ms, p50 {} ms, p99 {} ms, {:.1} puts per fsync per member",
            s.system,
            f.count,
            f.mean().map_or("–".to_owned(), |m| ms(m * 1e3)),
            quantile_cell(f, 0.5),
            quantile_cell(f, 0.99),
            puts as f64 * members(cmp) / f.count.max(1) as f64,
        );
        if let Some(r) = w.records_per_fsync.as_ref().and_then(PromHistogram::mean) {
            let _ = write!(line, ", {r:.1} WAL records per fsync");
        }
        out.push(line);
    }
    out
}

/// The fsync CDF of `h` (bucket upper bounds against the share at or below
/// them), cut like [`cdf_series`](super::comparison::cdf_series) where the
/// tail has fewer than one sample.
fn fsync_series(name: String, color: usize, h: &PromHistogram) -> Series {
    let last = (h.count.max(1) as f64).log10().max(1.0);
    let mut points = Vec::new();
    for (b, n) in h.bounds.iter().zip(&h.cumulative) {
        if *n == 0 {
            continue;
        }
        let x = nines(*n as f64 / h.count as f64);
        if x >= last {
            points.push((last, b * 1e3));
            break;
        }
        points.push((x, b * 1e3));
    }
    Series { name, color, points }
}

/// The "WAL fsync" section of report.md, and its plot.
pub(super) fn wal_section(
    cmp: &Comparison,
    dir: &Path,
    plots: &mut Vec<(String, String)>,
) -> Result<String> {
    let ran: Vec<_> = cmp
        .systems
        .iter()
        .filter(|s| s.failure.is_none() && s.rungs.iter().any(|r| r.wal.is_some()))
        .collect();
    if ran.is_empty() {
        return Ok(String::new());
    }
    let mut md = String::from("\n## WAL fsync\n\n");
    md += "Scraped from every member's `/metrics` (`etcd_disk_wal_fsync_duration_seconds`, and \
           Logbook's `logbook_wal_records_per_fsync`) before and after each rung, summed over the \
           members. Logbook times a group commit's write and fdatasync together (its `pwrite` and \
           `fdatasync`); etcd times its fdatasync alone. The bucket bounds differ: etcd's start at 1 ms, \
           so its fsyncs under 1 ms all show as ≤ 1 ms. Quantiles are bucket upper bounds. \
           Puts per fsync = puts × members ÷ fsyncs: how many client writes one fsync made durable on \
           one member.\n\n";

    // Per rung.
    let mut headers = vec!["clients".to_owned()];
    for s in &ran {
        for h in ["fsyncs/s", "mean ms", "p50 ms", "p99 ms", "puts/fsync"] {
            headers.push(format!("{} {h}", s.system));
        }
        if s.rungs.iter().any(|r| r.wal.as_ref().is_some_and(|w| w.records_per_fsync.is_some())) {
            headers.push(format!("{} records/fsync", s.system));
        }
    }
    let mut t = Table { headers, rows: Vec::new() };
    let rungs = ran.iter().map(|s| s.rungs.len()).max().unwrap_or(0);
    for i in 0..rungs {
        let Some(first) = ran.iter().find_map(|s| s.rungs.get(i)) else { continue };
        let mut row = vec![first.clients.to_string()];
        for s in &ran {
            let has_records = s
                .rungs
                .iter()
                .any(|r| r.wal.as_ref().is_some_and(|w| w.records_per_fsync.is_some()));
            let n = 5 + usize::from(has_records);
            let rung = s.rungs.get(i);
            match rung.and_then(|r| Some((r, r.wal.as_ref()?, r.wal.as_ref()?.fsync.as_ref()?))) {
                Some((r, w, f)) => {
                    row.extend([
                        format!("{:.0}", f.count as f64 / w.elapsed_s.max(1e-9)),
                        f.mean().map_or("–".to_owned(), |m| ms(m * 1e3)),
                        quantile_cell(f, 0.5),
                        quantile_cell(f, 0.99),
                        format!("{:.1}", r.put.count as f64 * members(cmp) / f.count.max(1) as f64),
                    ]);
                    if has_records {
                        row.push(
                            w.records_per_fsync
                                .as_ref()
                                .and_then(PromHistogram::mean)
                                .map_or("–".to_owned(), |m| format!("{m:.1}")),
                        );
                    }
                }
                None => row.extend(std::iter::repeat_n("–".to_owned(), n)),
            }
        }
        t.rows.push(row);
    }
    md += &t.markdown();

    // The whole ladder: the distribution side by side.
    let totals: Vec<(System, PromHistogram)> =
        ran.iter().filter_map(|s| Some((s.system, wal_total(s)?.fsync?))).collect();
    let mut bounds: Vec<f64> = totals.iter().flat_map(|(_, h)| h.bounds.iter().copied()).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| (*a - *b).abs() <= *b * 1e-9);
    // From one row before the first fsync any system saw, to the row where
    // every system has all of its fsyncs.
    let share = |h: &PromHistogram, b: f64| h.share_at(b);
    let first = bounds
        .iter()
        .position(|&b| totals.iter().any(|(_, h)| share(h, b).is_some_and(|x| x > 0.0)))
        .unwrap_or(0)
        .saturating_sub(1);
    let last = bounds
        .iter()
        .position(|&b| {
            totals.iter().all(|(_, h)| {
                h.count == 0 || share(h, b).is_some_and(|x| x >= 1.0) || h.bounds.last() < Some(&b)
            })
        })
        .unwrap_or(bounds.len().saturating_sub(1));
    let mut headers = vec!["fsync ≤ ms".to_owned()];
    headers.extend(totals.iter().map(|(s, h)| format!("{s} ({} fsyncs)", h.count)));
    let mut dist = Table { headers, rows: Vec::new() };
    for &b in bounds.iter().take(last + 1).skip(first) {
        let mut row = vec![bound_ms(b)];
        for (_, h) in &totals {
            row.push(share(h, b).map_or("–".to_owned(), |x| format!("{:.1} %", 100.0 * x)));
        }
        dist.rows.push(row);
    }
    md += "\nShare of all fsyncs of the ladder at or below each bound (– where a system has no such bucket):\n\n";
    md += &dist.markdown();

    let series: Vec<Series> = totals
        .iter()
        .map(|(s, h)| fsync_series(format!("{s} ({} fsyncs)", h.count), color(*s), h))
        .filter(|s| !s.points.is_empty())
        .collect();
    if !series.is_empty() {
        let floor = cmp.floor.as_ref().map(|f| (f.fsync.latency_ms.p50, "probe fdatasync p50"));
        let file = "wal-fsync.svg";
        line_chart(
            &dir.join(file),
            "WAL fsync latency distribution (members' histograms, whole ladder)",
            "percentile",
            "fsync latency (ms, bucket bound)",
            XAxis::Nines,
            &series,
            floor,
        )?;
        plots.push((file.to_owned(), "Both systems' WAL fsync latency distributions".to_owned()));
    }
    Ok(md)
}
