//! The report of `logbook bench scale`: tables of memory, lists, the big database's put
//! rungs, restart and catch-up, and compaction plus defragmentation under load; plots of
//! RSS over time (load, lists, defragmentation) and of p99 over time during compaction
//! and defragmentation.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Table, color, ms};
use crate::cluster::System;
use crate::plot::{LIGHT, Series, XAxis, line_chart};
use crate::scale::{Scale, SystemScale};

fn mib(b: u64) -> String {
    format!("{:.0}", b as f64 / (1 << 20) as f64)
}

fn name(s: &SystemScale) -> String {
    s.system.map_or_else(|| "?".to_owned(), |s| s.to_string())
}

fn ran(sc: &Scale) -> impl Iterator<Item = &SystemScale> {
    sc.systems.iter().filter(|s| s.failure.is_none())
}

/// The ratio of Logbook's figure to etcd's, when both ran.
fn ratio(sc: &Scale, f: impl Fn(&SystemScale) -> f64) -> Option<f64> {
    let get = |sys: System| ran(sc).find(|s| s.system == Some(sys)).map(&f);
    match (get(System::Logbook), get(System::Etcd)) {
        (Some(l), Some(e)) if e > 0.0 => Some(l / e),
        _ => None,
    }
}

fn memory_rows(sc: &Scale) -> Table {
    let mut t = Table::new(&[
        "system",
        "keys",
        "load puts/s",
        "db MiB",
        "settled RSS MiB",
        "anon MiB",
        "file MiB",
    ]);
    for s in ran(sc) {
        t.rows.push(vec![
            name(s),
            s.load.keys.to_string(),
            format!("{:.0}", s.load.throughput),
            mib(s.load.db_bytes),
            mib(s.load.settled.rss_bytes),
            mib(s.load.settled.anon_bytes),
            mib(s.load.settled.file_bytes),
        ]);
    }
    t
}

fn list_rows(sc: &Scale) -> Table {
    let mut t = Table::new(&[
        "system",
        "clients",
        "keys each",
        "answer MiB",
        "RSS before MiB",
        "peak RSS MiB",
        "growth / answers",
        "seconds",
        "errors",
    ]);
    for s in ran(sc) {
        let l = &s.lists;
        t.rows.push(vec![
            name(s),
            l.clients.to_string(),
            l.keys.to_string(),
            mib(l.answer_bytes),
            mib(l.rss_before.rss_bytes),
            mib(l.peak_rss),
            format!("{:.2}", l.growth_per_answers()),
            format!("{:.1}", l.elapsed_s),
            if l.errors.is_empty() { "0".to_owned() } else { l.errors.join("; ") },
        ]);
    }
    t
}

fn big_db_rows(sc: &Scale) -> Table {
    let mut t = Table::new(&[
        "system",
        "puts/s empty",
        "puts/s full",
        "full/empty",
        "p99 ms empty",
        "p99 ms full",
        "restart to serving s",
        "new member caught up s",
    ]);
    for s in ran(sc) {
        let (e, f) = (&s.empty_rung, &s.full_rung);
        t.rows.push(vec![
            name(s),
            format!("{:.0}", e.throughput),
            format!("{:.0}", f.throughput),
            format!("{:.2}", if e.throughput > 0.0 { f.throughput / e.throughput } else { 0.0 }),
            ms(e.p99_ms),
            ms(f.p99_ms),
            s.restart_s.map_or("–".to_owned(), |v| format!("{v:.2}")),
            s.catch_up_s.map_or("–".to_owned(), |v| format!("{v:.2}")),
        ]);
    }
    t
}

fn defrag_rows(sc: &Scale) -> Table {
    let mut t = Table::new(&[
        "system",
        "steady p99 ms",
        "p99 during ms",
        "during/steady",
        "worst 0.5 s p99 ms",
        "max during ms",
        "compact s",
        "defrag s",
        "db MiB before",
        "db MiB after",
    ]);
    for s in ran(sc) {
        let d = &s.defrag;
        t.rows.push(vec![
            name(s),
            ms(d.steady_p99_ms),
            ms(d.during_p99_ms),
            format!(
                "{:.2}",
                if d.steady_p99_ms > 0.0 { d.during_p99_ms / d.steady_p99_ms } else { 0.0 }
            ),
            ms(d.worst_window_p99_ms),
            ms(d.during_max_ms),
            format!("{:.2}", d.compact_s),
            format!("{:.2}", d.defrag_s),
            mib(d.db_bytes_before),
            mib(d.db_bytes_after),
        ]);
    }
    t
}

/// A section's title and the function making its table.
type Section = (&'static str, fn(&Scale) -> Table);

const SECTIONS: [Section; 4] = [
    ("Memory after loading the objects", memory_rows),
    ("Concurrent full-prefix lists (unpaginated)", list_rows),
    ("The full database: put rung, restart, a new member", big_db_rows),
    ("Compaction of half the history, then defragmentation, under the put rung", defrag_rows),
];

/// The tables for the terminal.
pub fn scale_tables(sc: &Scale) -> String {
    let mut out = String::new();
    for (title, rows) in SECTIONS {
        let _ = writeln!(out, "\n{title}");
        out += &rows(sc).text();
    }
    if let Some(r) = ratio(sc, |s| s.load.settled.rss_bytes as f64) {
        let _ = writeln!(out, "\nsettled RSS, Logbook / etcd: {r:.2}");
    }
    for s in sc.systems.iter().filter(|s| s.failure.is_some()) {
        let first = s.failure.as_deref().unwrap_or("").lines().next().unwrap_or("");
        let _ = writeln!(out, "{}: did not finish: {first}", name(s));
    }
    out
}

/// RSS series of one named phase, x = seconds since the phase started.
fn rss_series(s: &SystemScale, phase: &str) -> Vec<Series> {
    let Some(p) = s.phases.iter().find(|p| p.name == phase) else { return Vec::new() };
    let c = s.system.map_or(0, color);
    let pts = |f: fn(&crate::scale::RssPoint) -> f64| -> Vec<(f64, f64)> {
        s.rss
            .iter()
            .filter(|r| r.t >= p.start - 0.5 && r.t <= p.end + 0.5)
            .map(|r| (r.t - p.start + 0.5, f(r).max(1.0)))
            .collect()
    };
    vec![
        Series { name: format!("{} RSS", name(s)), color: c, points: pts(|r| r.rss_mib) },
        Series { name: format!("{} anon", name(s)), color: c + LIGHT, points: pts(|r| r.anon_mib) },
    ]
}

/// Writes `results.json`, the plots and `report.md` of a scale run into `dir`.
pub fn write_scale(sc: &Scale, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(sc)? + "\n")?;
    let mut plots = Vec::new();
    for (phase, file, title) in [
        ("load", "rss-load.svg", "Member RSS while loading the objects"),
        ("lists", "rss-lists.svg", "Member RSS during the concurrent full lists"),
        ("compaction+defrag", "rss-defrag.svg", "Member RSS during compaction and defrag"),
    ] {
        let series: Vec<Series> = ran(sc).flat_map(|s| rss_series(s, phase)).collect();
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        line_chart(
            &dir.join(file),
            title,
            "seconds since the phase started",
            "MiB",
            XAxis::Linear,
            &series,
            None,
        )?;
        plots.push((file.to_owned(), title.to_owned()));
    }
    let series: Vec<Series> = ran(sc)
        .map(|s| Series {
            name: format!("{} put p99 per 0.5 s", name(s)),
            color: s.system.map_or(0, color),
            points: s.defrag.p99_windows.iter().map(|&(t, p)| (t, p.max(0.001))).collect(),
        })
        .collect();
    if series.iter().any(|s| !s.points.is_empty()) {
        let file = "p99-defrag.svg";
        let title = "Put p99 over time: steady, then compaction and defrag";
        line_chart(
            &dir.join(file),
            title,
            "seconds since the rung started",
            "p99 latency (ms)",
            XAxis::Linear,
            &series,
            None,
        )?;
        plots.push((file.to_owned(), title.to_owned()));
    }

    let p = &sc.params;
    let mut md = "# Logbook at scale: memory, big lists, a big database\n\n".to_owned();
    let m = &sc.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs, {:.1} GiB memory, Linux {}. Disk: {:.1} GiB free under {}, the run \
         estimated it needs {:.1} GiB per system (systems run one after the other).\n",
        m.cpus,
        m.memory_gib,
        m.kernel,
        sc.disk.free_bytes as f64 / (1u64 << 30) as f64,
        sc.disk.dir,
        sc.disk.needed_bytes as f64 / (1u64 << 30) as f64,
    );
    let _ = writeln!(
        md,
        "Method: one member per system. {} objects of {} B under `{}` loaded by {} clients; \
         settled RSS once it holds still. The put rung is {} clients putting {} B values to \
         random keys of a side prefix for {} s, on the empty and on the full database. {} \
         clients then list the whole prefix at once (one unpaginated linearizable Range \
         each); the peak is the kernel's high-water mark (`VmHWM`, reset first). Then the \
         rung runs again and, after its steady part, the history is compacted at half the \
         current revision (physical) and the member defragmented; p99 is taken over the \
         requests sent in each half second. Last the member is stopped (SIGTERM) and started \
         again (seconds until a linearizable read is served), and a member is added and timed \
         until it has applied what the first had.\n",
        p["keys"],
        p["value_size"],
        crate::scale::LIST_PREFIX,
        p["rung_clients"],
        p["rung_clients"],
        512,
        p["rung_duration"],
        p["list_clients"],
    );
    for (title, rows) in SECTIONS {
        let _ = writeln!(md, "## {title}\n");
        md += &rows(sc).markdown();
        md += "\n";
    }
    if let Some(r) = ratio(sc, |s| s.load.settled.rss_bytes as f64) {
        let _ = writeln!(md, "Settled RSS, Logbook / etcd: **{r:.2}**.\n");
    }
    for s in &sc.systems {
        let v = if s.version.is_empty() { String::new() } else { format!(" {}", s.version) };
        let _ = writeln!(md, "**{}**{v}: `{}`\n", name(s), s.binary);
        if let Some(f) = &s.failure {
            let _ = writeln!(md, "did not finish:\n\n```\n{f}\n```\n");
        }
        if let Some(e) = &s.defrag.error {
            let _ = writeln!(md, "compaction or defragmentation failed: {e}\n");
        }
        for n in &s.notes {
            let _ = writeln!(md, "Note: {n}\n");
        }
    }
    for n in &sc.notes {
        let _ = writeln!(md, "Note: {n}\n");
    }
    md += "## Plots\n\n";
    for (file, caption) in &plots {
        let _ = writeln!(md, "![{caption}]({file})\n");
    }
    md += "Raw numbers, RSS samples included: `results.json`.\n";
    std::fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::{Phase, RssPoint};
    use crate::targets::Machine;

    #[test]
    fn writes_tables_plots_and_a_report() {
        let mut s = SystemScale { system: Some(System::Logbook), ..Default::default() };
        s.load.keys = 10;
        s.load.settled.rss_bytes = 100 << 20;
        s.lists.clients = 8;
        s.lists.answer_bytes = 1 << 20;
        s.lists.rss_before.rss_bytes = 100 << 20;
        s.lists.peak_rss = 104 << 20;
        s.rss = (0..20)
            .map(|i| RssPoint { t: i as f64 * 0.1, rss_mib: 100.0, anon_mib: 80.0, file_mib: 20.0 })
            .collect();
        s.phases = vec![Phase { name: "lists".into(), start: 0.5, end: 1.5 }];
        s.defrag.p99_windows = vec![(0.25, 2.0), (0.75, 3.0)];
        let mut e = s.clone();
        e.system = Some(System::Etcd);
        e.load.settled.rss_bytes = 200 << 20;
        let sc = Scale {
            params: serde_json::json!({"keys": 10, "value_size": 8}),
            machine: Machine::here(),
            disk: Default::default(),
            systems: vec![s.clone(), e],
            notes: vec![],
        };
        assert!((s.lists.growth_per_answers() - 0.5).abs() < 1e-9);
        let text = scale_tables(&sc);
        assert!(text.contains("settled RSS, Logbook / etcd: 0.50"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        write_scale(&sc, dir.path()).unwrap();
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        assert!(md.contains("rss-lists.svg") && md.contains("p99-defrag.svg"), "{md}");
        assert!(dir.path().join("rss-lists.svg").is_file());
    }
}
