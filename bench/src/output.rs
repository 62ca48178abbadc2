//! Results of one load-generator run: a table for people, JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::driver::{ErrorSample, Outcome};
use crate::stats::Summary;

/// Everything a run reports (the `--json` file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The subcommand, e.g. `put`.
    pub workload: String,
    /// The options it ran with.
    pub params: serde_json::Value,
    /// One summary per request class (an `all` summary first when several).
    pub summaries: Vec<Summary>,
    /// Failed requests by gRPC code.
    pub errors: BTreeMap<String, ErrorSample>,
    /// Anything else worth knowing (watch events received, early stop, ...).
    pub notes: Vec<String>,
}

impl RunReport {
    /// A report of `outcome`.
    pub fn new(workload: &str, params: impl Serialize, outcome: Outcome) -> Self {
        let mut notes = Vec::new();
        if outcome.aborted {
            notes.push("stopped early: nearly every request failed".to_owned());
        }
        RunReport {
            workload: workload.to_owned(),
            params: serde_json::to_value(params).unwrap_or_default(),
            summaries: outcome.summaries,
            errors: outcome.errors,
            notes,
        }
    }

    /// The table, the errors and the notes, for a terminal.
    pub fn render(&self) -> String {
        let mut out = table(&self.summaries);
        for (code, e) in &self.errors {
            let _ = writeln!(out, "errors: {} × {code}: {}", e.count, e.message);
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// Writes the JSON form to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// A fixed-width table of `summaries` (latencies in milliseconds).
pub fn table(summaries: &[Summary]) -> String {
    let mut out = format!(
        "{:<12} {:>9} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "request",
        "count",
        "errors",
        "secs",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for s in summaries {
        let l = &s.latency_ms;
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>7} {:>7.2} {:>10.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            s.name,
            s.count,
            s.errors,
            s.elapsed_s,
            s.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Recorder, Summary};
    use std::time::Duration;

    #[test]
    fn table_and_json_carry_the_numbers() {
        let r = Recorder::default();
        r.record(0, Duration::from_millis(2));
        let s = Summary::from_histogram("put", &r.merged(), 0, Duration::from_secs(1));
        let out = Outcome { summaries: vec![s], errors: BTreeMap::new(), aborted: true };
        let rep = RunReport::new("put", serde_json::json!({"clients": 1}), out);
        let text = rep.render();
        assert!(text.contains("put"), "{text}");
        assert!(text.contains("2.000"), "{text}");
        assert!(text.contains("stopped early"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        rep.write_json(&p).unwrap();
        let back: RunReport = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back.summaries[0].count, 1);
        assert_eq!(back.params["clients"], 1);
    }
}
