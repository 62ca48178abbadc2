//! The summary of a `--request-log` recording (one JSON line per client
//! request, written by a Logbook member; see the server's
//! `services::request_log`): counts per kind and key prefix, sizes, txn
//! shapes and list pages. `tests/kubernetes_profile.rs` prints it for the
//! recording of a real kube-apiserver, and docs/bench-kubernetes-profile.md
//! holds the result the Kubernetes model ([`super::kubernetes`]) is derived from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What one (kind, prefix) pair of a recording amounted to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub count: u64,
    /// Sum of written value bytes (Put, and a Txn's success-branch puts).
    pub value_bytes: u64,
    /// Requests that wrote a value.
    pub writes: u64,
    /// Ranges (and Txns) and the keys they returned.
    pub kvs: u64,
    /// Ranges with `limit` > 0, and how many answered `more`.
    pub limited: u64,
    pub more: u64,
    /// Ranges over a prefix (lists) rather than one key.
    pub lists: u64,
    /// Ranges (and watches) at a given revision.
    pub at_revision: u64,
    pub count_only: u64,
    /// Txn shapes: `compare -> then / else`, counted.
    pub shapes: BTreeMap<String, u64>,
    /// Txns whose compare failed.
    pub failed: u64,
    /// Writes attached to a lease.
    pub leased: u64,
    pub errors: u64,
}

/// A whole recording.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    pub requests: u64,
    /// Seconds from the first line to the last.
    pub span_s: f64,
    pub groups: BTreeMap<(String, String), Group>,
    pub lines_unparsed: u64,
}

/// Summarizes the text of a `--request-log` file.
pub fn summarize(text: &str) -> Recording {
    let mut r = Recording::default();
    let (mut first, mut last) = (f64::INFINITY, 0f64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            r.lines_unparsed += 1;
            continue;
        };
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let b = |k: &str| v[k].as_bool().unwrap_or(false);
        let t = v["t"].as_f64().unwrap_or(0.0);
        first = first.min(t);
        last = last.max(t);
        r.requests += 1;
        let kind = s("kind");
        let g = r.groups.entry((kind.clone(), s("prefix"))).or_default();
        g.count += 1;
        if v.get("value_bytes").is_some() {
            g.writes += 1;
            g.value_bytes += n("value_bytes");
        }
        g.kvs += n("kvs");
        if v["limit"].as_i64().unwrap_or(0) > 0 {
            g.limited += 1;
        }
        g.more += u64::from(b("more"));
        if kind.starts_with("Range")
            && matches!(v["range"].as_str(), Some("prefix" | "range" | "all"))
        {
            g.lists += 1;
        }
        if v["revision"].as_i64().unwrap_or(0) > 0 {
            g.at_revision += 1;
        }
        g.count_only += u64::from(b("count_only"));
        g.leased += u64::from(b("lease"));
        if v.get("error").is_some() {
            g.errors += 1;
        }
        if kind == "Txn" {
            let shape = format!(
                "{} -> {} / {}",
                if s("compare").is_empty() { "none".to_owned() } else { s("compare") },
                non_empty(&s("then")),
                non_empty(&s("else"))
            );
            *g.shapes.entry(shape).or_default() += 1;
            if v["succeeded"].as_bool() == Some(false) {
                g.failed += 1;
            }
        }
    }
    r.span_s = if r.requests > 0 { last - first } else { 0.0 };
    r
}

fn non_empty(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

impl Recording {
    /// Requests of `kind` (any prefix).
    pub fn count(&self, kind: &str) -> u64 {
        self.groups.iter().filter(|((k, _), _)| k == kind).map(|(_, g)| g.count).sum()
    }

    /// The recording as Markdown tables: by kind, then by kind and prefix
    /// (with sizes and shapes); `nodes` turns counts into rates per node.
    pub fn markdown(&self, nodes: usize) -> String {
        let mut out = String::new();
        let span = self.span_s.max(1e-9);
        let _ = writeln!(
            out,
            "{} requests over {:.0} s ({:.1}/s; {:.2}/s per node with {nodes} nodes)\n",
            self.requests,
            self.span_s,
            self.requests as f64 / span,
            self.requests as f64 / span / nodes.max(1) as f64
        );
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for ((k, _), g) in &self.groups {
            *kinds.entry(k).or_default() += g.count;
        }
        out += "| kind | requests | share | per s |\n|---|---:|---:|---:|\n";
        for (k, c) in &kinds {
            let _ = writeln!(
                out,
                "| {k} | {c} | {:.1} % | {:.2} |",
                *c as f64 * 100.0 / self.requests.max(1) as f64,
                *c as f64 / span
            );
        }
        out += "\n| kind | prefix | requests | per s | mean value B | leased | lists | limit>0 | more | at rev | kvs/request | txn shapes (failed) |\n\
                |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        for ((k, p), g) in groups {
            let shapes: Vec<String> = g.shapes.iter().map(|(s, c)| format!("{s}: {c}")).collect();
            let _ = writeln!(
                out,
                "| {k} | `{}` | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
                if p.is_empty() { "-" } else { p },
                g.count,
                g.count as f64 / span,
                g.value_bytes.checked_div(g.writes).map_or("-".into(), |b| b.to_string()),
                g.leased,
                g.lists,
                g.limited,
                g.more,
                g.at_revision,
                if g.kvs > 0 {
                    format!("{:.1}", g.kvs as f64 / g.count as f64)
                } else {
                    "-".into()
                },
                shapes.join("; "),
                if g.failed > 0 { format!(" ({} failed)", g.failed) } else { String::new() },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_counted_by_kind_and_prefix() {
        let text = r#"{"t":0.0,"kind":"Txn","prefix":"/registry/leases/","compares":1,"compare":"mod","then":"put","else":"range","key_bytes":30,"value_bytes":300,"succeeded":true}
{"t":5.0,"kind":"Txn","prefix":"/registry/leases/","compares":1,"compare":"mod","then":"put","else":"range","key_bytes":30,"value_bytes":500,"succeeded":false}
{"t":9.0,"kind":"Range","prefix":"/registry/pods/","range":"prefix","limit":500,"revision":0,"kvs":500,"more":true}
{"t":10.0,"kind":"LeaseGrant","ttl":3660}
not json
"#;
        let r = summarize(text);
        assert_eq!(r.requests, 4);
        assert_eq!(r.lines_unparsed, 1);
        assert_eq!(r.span_s, 10.0);
        assert_eq!(r.count("Txn"), 2);
        let leases = &r.groups[&("Txn".to_owned(), "/registry/leases/".to_owned())];
        assert_eq!(leases.value_bytes / leases.writes, 400);
        assert_eq!(leases.failed, 1);
        assert_eq!(leases.shapes["mod -> put / range"], 2);
        let pods = &r.groups[&("Range".to_owned(), "/registry/pods/".to_owned())];
        assert_eq!((pods.lists, pods.limited, pods.more, pods.kvs), (1, 1, 1, 500));
        let md = r.markdown(2);
        assert!(md.contains("| Txn | 2 | 50.0 % |"), "{md}");
        assert!(md.contains("`/registry/leases/`"), "{md}");
    }
}
