//! The report of `logbook bench capacity`: the table of each system's highest
//! sustained rates within the latency objective, and `report.md` with every
//! step of both ramps and their p99 plots.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Table, color, ms};
use crate::capacity::{Capacity, Ramp};
use crate::plot::{Series, XAxis, line_chart};

fn capacity_rows(cap: &Capacity) -> Table {
    let mut t = Table::new(&[
        "system",
        "max puts/s",
        "put p99 ms",
        "CPU cores",
        "RSS MiB",
        "max reads/s",
        "read p99 ms",
        "db MiB/1M writes",
        "WAL MiB/1M writes",
        "disk writes MiB/1M writes",
    ]);
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        let best = |r: &Ramp| match r.best() {
            Some(b) => {
                (format!("{:.0}", b.result.throughput), ms(b.result.latency_ms.p99), b.usage)
            }
            None => ("none met".to_owned(), "–".to_owned(), Default::default()),
        };
        let (w, wp, wu) = best(&s.write);
        let (r, rp, _) = best(&s.read);
        t.rows.push(vec![
            s.system.to_string(),
            w,
            wp,
            format!("{:.2}", wu.cpu_cores),
            format!("{:.0}", wu.rss_mib),
            r,
            rp,
            format!("{:.1}", s.growth.db_mib_per_million()),
            format!("{:.1}", s.growth.wal_mib_per_million()),
            format!("{:.0}", s.growth.disk_written_mib_per_million()),
        ]);
    }
    t
}

/// The capacity table for the terminal.
pub fn capacity_table(cap: &Capacity) -> String {
    let mut out = format!(
        "\nhighest sustained rates with p99 ≤ {} ms (open loop, {} members)\n",
        ms(cap.slo_p99_ms),
        cap.params["members"]
    );
    out += &capacity_rows(cap).text();
    for s in cap.systems.iter().filter(|s| s.failure.is_some()) {
        let first = s.failure.as_deref().unwrap_or("").lines().next().unwrap_or("");
        let _ = writeln!(out, "{}: did not run: {first}", s.system);
    }
    out
}

/// Writes `results.json`, the plots and `report.md` of a capacity run into `dir`.
pub fn write_capacity(cap: &Capacity, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(cap)? + "\n")?;
    let ran: Vec<_> = cap.systems.iter().filter(|s| s.failure.is_none()).collect();
    let slo = Some((cap.slo_p99_ms, "p99 objective"));
    let mut plots = Vec::new();
    for (kind, title) in
        [("write", "Put p99 vs offered rate"), ("read", "Linearizable range p99 vs offered rate")]
    {
        let series: Vec<Series> = ran
            .iter()
            .map(|s| {
                let ramp = if kind == "write" { &s.write } else { &s.read };
                Series {
                    name: format!("{} p99", s.system),
                    color: color(s.system),
                    points: {
                        // Halving steps come out of order: draw by offered rate.
                        let mut p: Vec<(f64, f64)> = ramp
                            .steps
                            .iter()
                            .map(|st| (st.offered, st.result.latency_ms.p99.max(0.001)))
                            .collect();
                        p.sort_by(|a, b| a.0.total_cmp(&b.0));
                        p
                    },
                }
            })
            .collect();
        let file = format!("capacity-{kind}.svg");
        line_chart(
            &dir.join(&file),
            title,
            "offered requests/s",
            "p99 latency (ms)",
            XAxis::Linear,
            &series,
            slo,
        )?;
        plots.push((file, title.to_owned()));
    }
    let mut md = format!(
        "# Logbook capacity: highest sustained rates with p99 ≤ {} ms\n\n",
        ms(cap.slo_p99_ms)
    );
    let m = &cap.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs, {:.1} GiB memory, Linux {}.\n",
        m.cpus, m.memory_gib, m.kernel
    );
    let _ = writeln!(
        md,
        "Method: open loop (latency from each request's intended send time), {} clients, {} B values, \
         the offered rate grows {}× per {} s step from {}/s until p99 exceeds the objective, a request fails or \
         less than 90 % of the offered rate is achieved. CPU (cores busy) and RSS are summed over the members at \
         the best write step; db and WAL growth are per member (file sizes: preallocated WAL segments grow in \
         segment steps); disk writes are the bytes all members wrote to storage (`/proc/<pid>/io`).\n",
        cap.params["clients"],
        cap.params["val_size"],
        cap.params["growth"],
        cap.params["step_duration"],
        cap.params["start_rate"]
    );
    md += &capacity_rows(cap).markdown();
    md += "\n";
    for s in &cap.systems {
        match &s.failure {
            Some(f) => {
                let _ = writeln!(md, "**{}** did not run:\n\n```\n{f}\n```\n", s.system);
            }
            None => {
                let _ = writeln!(
                    md,
                    "**{}** {}: idle {:.2} cores, {:.0} MiB RSS; {} writes grew the db {:.1} MiB and the WAL {:.1} MiB per member.\n",
                    s.system,
                    s.version,
                    s.idle.cpu_cores,
                    s.idle.rss_mib,
                    s.growth.writes,
                    s.growth.db_bytes_after.saturating_sub(s.growth.db_bytes_before) as f64
                        / (1 << 20) as f64,
                    s.growth.wal_bytes_after.saturating_sub(s.growth.wal_bytes_before) as f64
                        / (1 << 20) as f64,
                );
                let mut steps = Table::new(&[
                    "ramp",
                    "offered/s",
                    "achieved/s",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "CPU cores",
                    "RSS MiB",
                    "within",
                ]);
                for (kind, ramp) in [("put", &s.write), ("range", &s.read)] {
                    for st in &ramp.steps {
                        steps.rows.push(vec![
                            kind.to_owned(),
                            format!("{:.0}", st.offered),
                            format!("{:.0}", st.result.throughput),
                            ms(st.result.latency_ms.p50),
                            ms(st.result.latency_ms.p99),
                            st.errors.to_string(),
                            format!("{:.2}", st.usage.cpu_cores),
                            format!("{:.0}", st.usage.rss_mib),
                            if st.ok { "yes" } else { "no" }.to_owned(),
                        ]);
                    }
                }
                md += &steps.markdown();
                md += "\n";
            }
        }
    }
    for n in &cap.notes {
        let _ = writeln!(md, "Note: {n}\n");
    }
    md += "## Plots\n\n";
    for (file, caption) in &plots {
        let _ = writeln!(md, "![{caption}]({file})\n");
    }
    md += "Raw numbers: `results.json`.\n";
    std::fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}", dir.display()))?;
    Ok(())
}
