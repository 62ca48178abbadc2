//! The report of `logbook bench capacity`, for every profile: one sentence
//! per system and ramp saying what it carries within the objectives, the
//! table of each ramp's best step, every step of every ramp, and a plot of
//! p99 against the ramp's size (offered rate, or nodes) for both systems.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Table, color, ms};
use crate::capacity::{Axis, Capacity, Ramp, Step, SystemCapacity};
use crate::cli::CapacityProfile;
use crate::plot::{LIGHT, Series, XAxis, line_chart};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn fsyncs(s: &Step) -> String {
    s.fsyncs_per_s.map_or("–".to_owned(), |f| format!("{f:.0}"))
}

/// What a ramp's requests are called in a sentence.
fn noun(ramp: &Ramp) -> &str {
    match ramp.name.as_str() {
        "put" => "puts",
        "range" => "linearizable reads",
        other => other,
    }
}

/// The objectives in words.
fn objectives(cap: &Capacity) -> String {
    match cap.slo_list_p99_ms {
        Some(list) => format!(
            "a p99 of {} ms for mutating requests and {} ms for lists",
            ms(cap.slo_p99_ms),
            ms(list)
        ),
        None => format!("a p99 of {} ms", ms(cap.slo_p99_ms)),
    }
}

/// One sentence per system and ramp: what it carries within the objectives.
pub fn capacity_lines(cap: &Capacity) -> Vec<String> {
    let mut out = Vec::new();
    for s in &cap.systems {
        if let Some(f) = &s.failure {
            let first = f.lines().next().unwrap_or("");
            out.push(format!("{}: did not run: {first}", s.system));
            continue;
        }
        for ramp in &s.ramps {
            out.push(ramp_line(cap, s, ramp));
        }
    }
    out
}

fn ramp_line(cap: &Capacity, s: &SystemCapacity, ramp: &Ramp) -> String {
    let head = format!("{} ({})", s.system, s.version);
    let Some(b) = ramp.best() else {
        let smallest = ramp.steps.iter().map(|st| st.size).fold(f64::INFINITY, f64::min);
        return match ramp.axis {
            Axis::Nodes => format!(
                "{head}: no cluster size met the objectives (smallest tried: {smallest:.0} nodes)"
            ),
            Axis::Rate => format!(
                "{head}: no offered rate of {} met the objective (lowest tried: {smallest:.0}/s)",
                noun(ramp)
            ),
        };
    };
    let stopped = if ramp.steps.iter().all(|st| st.ok) {
        let tried = ramp.steps.iter().map(|st| st.size).fold(0.0, f64::max);
        match ramp.axis {
            Axis::Nodes => {
                format!(
                    " (the ramp stopped at --max-nodes; {tried:.0} nodes was the largest tried)"
                )
            }
            Axis::Rate => {
                format!(" (the ramp stopped at --max-rate; {tried:.0}/s was the highest offered)")
            }
        }
    } else {
        String::new()
    };
    let resources = format!(
        "{:.2} CPU cores, {:.0} MiB RSS, db {:.1} MiB (+{:.1} MiB over the step), {} fsyncs/s",
        b.usage.cpu_cores,
        b.usage.rss_mib,
        mib(b.db_bytes),
        mib(b.db_growth_bytes),
        fsyncs(b)
    );
    match ramp.axis {
        Axis::Nodes => format!(
            "{head}: this cluster carries {} nodes / {} pods within {} ({:.0} requests/s; \
             {resources}){stopped}",
            b.nodes.unwrap_or(b.size as usize),
            b.pods.unwrap_or(0),
            objectives(cap),
            b.result.throughput,
        ),
        Axis::Rate => format!(
            "{head}: sustains {:.0} {}/s within a p99 of {} ms (p99 {} ms; {resources}){stopped}",
            b.result.throughput,
            noun(ramp),
            ms(cap.slo_p99_ms),
            ms(b.judged().latency_ms.p99),
        ),
    }
}

/// Each ramp's best step per system.
fn best_rows(cap: &Capacity) -> Table {
    let mut t = Table::new(&[
        "system",
        "ramp",
        "capacity",
        "achieved/s",
        "p99 ms",
        "list p99 ms",
        "CPU cores",
        "RSS MiB",
        "fsyncs/s",
        "db MiB",
    ]);
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        for ramp in &s.ramps {
            let mut row = vec![s.system.to_string(), ramp.name.clone()];
            match ramp.best() {
                Some(b) => row.extend([
                    match ramp.axis {
                        Axis::Nodes => {
                            format!("{:.0} nodes / {} pods", b.size, b.pods.unwrap_or(0))
                        }
                        Axis::Rate => format!("{:.0}/s", b.result.throughput),
                    },
                    format!("{:.0}", b.result.throughput),
                    ms(b.judged().latency_ms.p99),
                    b.list
                        .as_ref()
                        .filter(|l| l.count > 0)
                        .map_or("–".into(), |l| ms(l.latency_ms.p99)),
                    format!("{:.2}", b.usage.cpu_cores),
                    format!("{:.0}", b.usage.rss_mib),
                    fsyncs(b),
                    format!("{:.1}", mib(b.db_bytes)),
                ]),
                None => {
                    row.push("none met".to_owned());
                    row.extend((0..7).map(|_| "–".to_owned()));
                }
            }
            t.rows.push(row);
        }
    }
    t
}

/// Every step of every ramp.
fn steps_rows(cap: &Capacity) -> Table {
    let nodes = cap.profile == CapacityProfile::Kubernetes;
    let mut headers = vec!["system", "ramp"];
    if nodes {
        headers.extend(["nodes", "pods", "objects written before"]);
    }
    headers.extend([
        "offered/s",
        "achieved/s",
        if nodes { "mutating p50 ms" } else { "p50 ms" },
        if nodes { "mutating p99 ms" } else { "p99 ms" },
    ]);
    if nodes {
        headers.push("list p99 ms");
    }
    headers.extend(["errors", "CPU cores", "RSS MiB", "fsyncs/s", "db MiB", "within"]);
    let mut t = Table::new(&headers);
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        for ramp in &s.ramps {
            for st in &ramp.steps {
                let mut row = vec![s.system.to_string(), ramp.name.clone()];
                if nodes {
                    row.extend([
                        format!("{:.0}", st.size),
                        st.pods.unwrap_or(0).to_string(),
                        st.seeded.to_string(),
                    ]);
                }
                row.extend([
                    format!("{:.0}", st.offered),
                    format!("{:.0}", st.result.throughput),
                    ms(st.judged().latency_ms.p50),
                    ms(st.judged().latency_ms.p99),
                ]);
                if nodes {
                    row.push(
                        st.list
                            .as_ref()
                            .filter(|l| l.count > 0)
                            .map_or("–".into(), |l| ms(l.latency_ms.p99)),
                    );
                }
                row.extend([
                    st.errors.to_string(),
                    format!("{:.2}", st.usage.cpu_cores),
                    format!("{:.0}", st.usage.rss_mib),
                    fsyncs(st),
                    format!("{:.1}", mib(st.db_bytes)),
                    if st.ok { "yes" } else { "no" }.to_owned(),
                ]);
                t.rows.push(row);
            }
        }
    }
    t
}

fn title(cap: &Capacity) -> String {
    match cap.profile {
        CapacityProfile::Put => format!(
            "highest sustained rates with p99 ≤ {} ms (open loop, {} members)",
            ms(cap.slo_p99_ms),
            cap.params["members"]
        ),
        CapacityProfile::Kubernetes => format!(
            "Kubernetes capacity: mutating p99 ≤ {} ms, list p99 ≤ {} ms, {} pods per node, {} members",
            ms(cap.slo_p99_ms),
            ms(cap.slo_list_p99_ms.unwrap_or(0.0)),
            cap.pods_per_node.unwrap_or(0),
            cap.params["members"]
        ),
    }
}

/// The table and sentences for the terminal.
pub fn capacity_table(cap: &Capacity) -> String {
    let mut out = format!("\n{}\n", title(cap));
    out += &best_rows(cap).text();
    for line in capacity_lines(cap) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// How the run measured, for `report.md`.
fn method(cap: &Capacity) -> String {
    let p = &cap.params;
    let common = "a step breaks the objectives when its p99 exceeds them, a request fails or less \
                  than 90 % of the offered rate is achieved; when the first step breaks them the \
                  size halves until one meets them. CPU (cores busy) and RSS are summed over the \
                  members over the step, fsyncs/s from the members' WAL fsync histograms \
                  (`/metrics`); db is the db file per member.";
    match cap.profile {
        CapacityProfile::Put => format!(
            "Method: open loop (latency from each request's intended send time), {} clients, {} B \
             values, {} distinct keys; the offered rate grows {}× per {} s step from {}/s, puts \
             first, then linearizable single-key ranges; {common} db and WAL growth are per member \
             (file sizes: preallocated WAL segments grow in segment steps); disk writes are the \
             bytes all members wrote to storage (`/proc/<pid>/io`).",
            p["clients"],
            p["val_size"],
            p["key_space_size"],
            p["growth"],
            p["step_duration"],
            p["start_rate"]
        ),
        CapacityProfile::Kubernetes => format!(
            "Method: the Kubernetes model (docs/bench-kubernetes-profile.md), {} pods per node, \
             open loop at the model's rates for {} s per step, {} clients; the number of nodes \
             grows {}× per step from {}. Before each step only the objects the bigger cluster \
             adds (its new nodes' Nodes and Leases, pods up to nodes × pods per node) are \
             written, not measured (the column \"objects written before\"); what earlier steps \
             wrote and their churn left stays; {common}",
            cap.pods_per_node.unwrap_or(0),
            p["step_duration"],
            p["clients"],
            p["growth"],
            p["nodes"],
        ),
    }
}

/// One plot per ramp: its judged p99 (and the lists' p99) against its size
/// for every system; returns the file and the caption.
fn plot(cap: &Capacity, name: &str, dir: &Path) -> Result<(String, String)> {
    let mut series = Vec::new();
    let mut axis = Axis::Rate;
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        let Some(ramp) = s.ramps.iter().find(|r| r.name == name) else { continue };
        axis = ramp.axis;
        // Halving steps come out of order: draw by size.
        let mut steps: Vec<&Step> = ramp.steps.iter().collect();
        steps.sort_by(|a, b| a.size.total_cmp(&b.size));
        let judged = if axis == Axis::Nodes { "mutating p99" } else { "p99" };
        series.push(Series {
            name: format!("{} {judged}", s.system),
            color: color(s.system),
            points: steps
                .iter()
                .map(|st| (st.size, st.judged().latency_ms.p99.max(0.001)))
                .collect(),
        });
        if steps.iter().any(|st| st.list.is_some()) {
            series.push(Series {
                name: format!("{} list p99", s.system),
                color: color(s.system) + LIGHT,
                points: steps
                    .iter()
                    .filter_map(|st| {
                        st.list.as_ref().map(|l| (st.size, l.latency_ms.p99.max(0.001)))
                    })
                    .collect(),
            });
        }
    }
    let (caption, x) = match (name, axis) {
        ("put", _) => ("Put p99 vs offered rate".to_owned(), "offered requests/s"),
        ("range", _) => ("Linearizable range p99 vs offered rate".to_owned(), "offered requests/s"),
        (n, Axis::Nodes) => (format!("p99 vs cluster size ({n} profile)"), "nodes"),
        (n, Axis::Rate) => (format!("{n} p99 vs offered rate"), "offered requests/s"),
    };
    let file = format!("capacity-{name}.svg");
    let objective = if axis == Axis::Nodes { "mutating p99 objective" } else { "p99 objective" };
    line_chart(
        &dir.join(&file),
        &caption,
        x,
        "p99 latency (ms)",
        XAxis::Linear,
        &series,
        Some((cap.slo_p99_ms, objective)),
    )?;
    Ok((file, caption))
}

/// Writes `results.json`, the plots and `report.md` of a capacity run into `dir`.
pub fn write_capacity(cap: &Capacity, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(cap)? + "\n")?;
    let mut names: Vec<&str> = Vec::new();
    for r in cap.systems.iter().flat_map(|s| &s.ramps) {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let plots = names.iter().map(|n| plot(cap, n, dir)).collect::<Result<Vec<_>>>()?;

    let mut md = match cap.profile {
        CapacityProfile::Put => format!(
            "# Logbook capacity: highest sustained rates with p99 ≤ {} ms\n\n",
            ms(cap.slo_p99_ms)
        ),
        CapacityProfile::Kubernetes => format!(
            "# Logbook capacity in Kubernetes terms: mutating p99 ≤ {} ms, list p99 ≤ {} ms\n\n",
            ms(cap.slo_p99_ms),
            ms(cap.slo_list_p99_ms.unwrap_or(0.0))
        ),
    };
    let m = &cap.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs, {:.1} GiB memory, Linux {}.\n",
        m.cpus, m.memory_gib, m.kernel
    );
    let _ = writeln!(md, "{}\n", method(cap));
    for line in capacity_lines(cap) {
        let _ = writeln!(md, "- {line}");
    }
    md += "\n";
    md += &best_rows(cap).markdown();
    md += "\n";
    for s in &cap.systems {
        match &s.failure {
            Some(f) => {
                let _ = writeln!(md, "**{}** did not run:\n\n```\n{f}\n```\n", s.system);
            }
            None => {
                let _ = write!(
                    md,
                    "**{}** {}: idle {:.2} cores, {:.0} MiB RSS",
                    s.system, s.version, s.idle.cpu_cores, s.idle.rss_mib
                );
                match &s.growth {
                    Some(g) => {
                        let _ = writeln!(
                            md,
                            "; {} writes grew the db {:.1} MiB and the WAL {:.1} MiB per member: \
                             db {:.1} MiB, WAL {:.1} MiB and {:.0} MiB of disk writes (all \
                             members) per million writes.\n",
                            g.writes,
                            mib(g.db_bytes_after.saturating_sub(g.db_bytes_before)),
                            mib(g.wal_bytes_after.saturating_sub(g.wal_bytes_before)),
                            g.db_mib_per_million(),
                            g.wal_mib_per_million(),
                            g.disk_written_mib_per_million(),
                        );
                    }
                    None => md += ".\n\n",
                }
            }
        }
    }
    md += "## Every step\n\n";
    md += &steps_rows(cap).markdown();
    md += "\n";
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
