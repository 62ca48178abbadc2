//! The report of `logbook bench capacity --profile kubernetes`: each system's
//! capacity in nodes and pods, every step of its ramp, and the plot of p99
//! against the number of nodes for both systems.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Table, color, ms};
use crate::kube_capacity::KubeCapacity;
use crate::plot::{LIGHT, Series, XAxis, line_chart};

/// One sentence per system: what it carries within the objectives.
pub fn capacity_lines(cap: &KubeCapacity) -> Vec<String> {
    let mut out = Vec::new();
    for s in &cap.systems {
        if let Some(f) = &s.failure {
            let first = f.lines().next().unwrap_or("");
            out.push(format!("{}: did not run: {first}", s.system));
            continue;
        }
        let tried = s.steps.iter().map(|st| st.nodes).max().unwrap_or(0);
        out.push(match s.best() {
            Some(b) => format!(
                "{} ({}): this cluster carries {} nodes / {} pods within a p99 of {} ms for mutating \
                 requests and {} ms for lists ({:.0} requests/s; {:.2} CPU cores, {:.0} MiB RSS, db {:.1} MiB \
                 (+{:.1} MiB over the step), {} fsyncs/s){}",
                s.system,
                s.version,
                b.nodes,
                b.pods,
                ms(b.mutating.latency_ms.p99),
                if b.list.count > 0 { ms(b.list.latency_ms.p99) } else { "– (no list ran)".to_owned() },
                b.all.throughput,
                b.usage.cpu_cores,
                b.usage.rss_mib,
                b.db_bytes as f64 / (1 << 20) as f64,
                b.db_growth_bytes as f64 / (1 << 20) as f64,
                b.fsyncs_per_s.map_or("–".to_owned(), |f| format!("{f:.0}")),
                if s.steps.iter().all(|st| st.ok) {
                    format!(" (the ramp stopped at --max-nodes; {tried} nodes was the largest tried)")
                } else {
                    String::new()
                }
            ),
            None => format!(
                "{} ({}): no cluster size met the objectives (smallest tried: {} nodes)",
                s.system,
                s.version,
                s.steps.iter().map(|st| st.nodes).min().unwrap_or(0)
            ),
        });
    }
    out
}

fn steps_table(cap: &KubeCapacity) -> Table {
    let mut t = Table::new(&[
        "system",
        "nodes",
        "pods",
        "offered/s",
        "achieved/s",
        "mutating p50 ms",
        "mutating p99 ms",
        "list p99 ms",
        "errors",
        "CPU cores",
        "RSS MiB",
        "fsyncs/s",
        "db MiB",
        "within",
    ]);
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        for st in &s.steps {
            t.rows.push(vec![
                s.system.to_string(),
                st.nodes.to_string(),
                st.pods.to_string(),
                format!("{:.0}", st.offered),
                format!("{:.0}", st.all.throughput),
                ms(st.mutating.latency_ms.p50),
                ms(st.mutating.latency_ms.p99),
                if st.list.count > 0 { ms(st.list.latency_ms.p99) } else { "–".to_owned() },
                st.errors.to_string(),
                format!("{:.2}", st.usage.cpu_cores),
                format!("{:.0}", st.usage.rss_mib),
                st.fsyncs_per_s.map_or("–".to_owned(), |f| format!("{f:.0}")),
                format!("{:.1}", st.db_bytes as f64 / (1 << 20) as f64),
                if st.ok { "yes" } else { "no" }.to_owned(),
            ]);
        }
    }
    t
}

/// The terminal table.
pub fn capacity_table(cap: &KubeCapacity) -> String {
    let mut out = format!(
        "\nKubernetes capacity: mutating p99 ≤ {} ms, list p99 ≤ {} ms, {} pods per node\n",
        ms(cap.slo_mutating_p99_ms),
        ms(cap.slo_list_p99_ms),
        cap.pods_per_node
    );
    out += &steps_table(cap).text();
    for line in capacity_lines(cap) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Writes `results.json`, the plot and `report.md` into `dir`.
pub fn write_capacity(cap: &KubeCapacity, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(cap)? + "\n")?;
    let mut series = Vec::new();
    for s in cap.systems.iter().filter(|s| s.failure.is_none()) {
        let mut steps: Vec<_> = s.steps.iter().collect();
        steps.sort_by_key(|st| st.nodes);
        series.push(Series {
            name: format!("{} mutating p99", s.system),
            color: color(s.system),
            points: steps
                .iter()
                .map(|st| (st.nodes as f64, st.mutating.latency_ms.p99.max(0.001)))
                .collect(),
        });
        series.push(Series {
            name: format!("{} list p99", s.system),
            color: color(s.system) + LIGHT,
            points: steps
                .iter()
                .map(|st| (st.nodes as f64, st.list.latency_ms.p99.max(0.001)))
                .collect(),
        });
    }
    let file = "capacity-kubernetes.svg";
    line_chart(
        &dir.join(file),
        "p99 vs cluster size (Kubernetes profile)",
        "nodes",
        "p99 latency (ms)",
        XAxis::Linear,
        &series,
        Some((cap.slo_mutating_p99_ms, "mutating p99 objective")),
    )?;
    let mut md = format!(
        "# Logbook capacity in Kubernetes terms: mutating p99 ≤ {} ms, list p99 ≤ {} ms\n\n",
        ms(cap.slo_mutating_p99_ms),
        ms(cap.slo_list_p99_ms)
    );
    let m = &cap.machine;
    let _ = writeln!(
        md,
        "Machine: {} CPUs, {:.1} GiB memory, Linux {}.\n",
        m.cpus, m.memory_gib, m.kernel
    );
    let _ = writeln!(
        md,
        "Method: the Kubernetes model (docs/bench-kubernetes-profile.md), {} pods per node, open loop at the \
         model's rates for {} s per step, {} clients; the number of nodes grows {}× per step from {} until a \
         step breaks an objective (a failed request, or less than 90 % of the offered rate achieved, breaks it \
         too). CPU and RSS are summed over the members over the step; fsyncs/s from the members' WAL fsync \
         histograms; db is the db file per member.\n",
        cap.pods_per_node,
        cap.params["step_duration"],
        cap.params["clients"],
        cap.params["growth"],
        cap.params["nodes"],
    );
    for line in capacity_lines(cap) {
        let _ = writeln!(md, "- {line}");
    }
    md += "\n";
    md += &steps_table(cap).markdown();
    for n in &cap.notes {
        let _ = writeln!(md, "\nNote: {n}");
    }
    let _ = writeln!(md, "\n![p99 against the number of nodes, both systems]({file})\n");
    md += "Raw numbers: `results.json`.\n";
    std::fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}", dir.display()))?;
    Ok(())
}
