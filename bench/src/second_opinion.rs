//! A second opinion: etcd's own load generator, `benchmark` (etcd's
//! `tools/benchmark`, built by `scripts/etcd-benchmark-bin.sh`), run beside
//! Logbook's on the same rung, so a reader need not trust one generator.
//!
//! For each system of a comparison, after its ladder, the chosen rung (256
//! clients when the ladder has it, else its largest rung up to 256) runs
//! twice per workload, count-bounded with the same clients, connections,
//! key and value sizes and total: once with Logbook's generator and once
//! with `benchmark put` / `benchmark range`. The two agree when their
//! throughputs are within [`AGREEMENT`] of each other.
//!
//! `benchmark range KEY` reads one key over and over (linearizable); Logbook's
//! side does the same with a one-key key space, and the key is written first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cli::Consistency;
use crate::client::Pool;
use crate::driver::{Plan, drive};
use crate::keys::KeyGen;
use crate::stats::Summary;
use crate::workload::put::Put;
use crate::workload::range::Range;

/// Two generators agree when their throughputs differ by at most this
/// fraction of etcd's tool's.
pub const AGREEMENT: f64 = 0.15;
/// Requests per workload and generator, at most.
pub const MAX_TOTAL: u64 = 20_000;
/// The tool gets this long per workload before it is stopped.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// The prefix of the one key both generators' range workloads read.
const RANGE_PREFIX: &str = "/bench-second-opinion/";

/// What one generator measured for one workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

impl Figures {
    fn of(s: &Summary) -> Figures {
        Figures {
            requests_per_s: s.throughput,
            p50_ms: s.latency_ms.p50,
            p99_ms: s.latency_ms.p99,
            errors: s.errors,
        }
    }
}

/// One workload measured by both generators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pair {
    /// `put` or `range`.
    pub workload: String,
    pub logbook_bench: Figures,
    pub etcd_benchmark: Figures,
}

impl Pair {
    /// Logbook's generator's throughput relative to etcd's tool's, minus one.
    pub fn difference(&self) -> f64 {
        self.logbook_bench.requests_per_s / self.etcd_benchmark.requests_per_s.max(1e-9) - 1.0
    }

    /// Whether the two throughputs are within [`AGREEMENT`].
    pub fn agree(&self) -> bool {
        self.difference().abs() <= AGREEMENT
    }
}

/// Both generators on one rung of one system.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecondOpinion {
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    pub val_size: usize,
    pub total: u64,
    pub pairs: Vec<Pair>,
}

/// TLS files the tool is given for a deployed system (etcdctl's flags).
#[derive(Debug, Clone, Default)]
pub struct ToolTls {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The tool: `--etcd-benchmark`, else the newest `etcd-benchmark-vX.Y.Z/benchmark`
/// under the cache (`scripts/etcd-benchmark-bin.sh`'s layout).
pub fn find_tool(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return p.is_file().then(|| p.to_owned());
    }
    let cache = crate::targets::cache_dir()?;
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for entry in std::fs::read_dir(&cache).ok()?.flatten() {
        let name = entry.file_name();
        let Some(v) = name.to_str().and_then(|n| n.strip_prefix("etcd-benchmark-v")) else {
            continue;
        };
        let Ok(version) = v.split('.').map(str::parse).collect::<Result<Vec<u64>, _>>() else {
            continue;
        };
        let tool = entry.path().join("benchmark");
        if tool.is_file() && best.as_ref().is_none_or(|(b, _)| version > *b) {
            best = Some((version, tool));
        }
    }
    best.map(|(_, p)| p)
}

/// The line a report shows when the tool is absent.
pub fn absent_note() -> String {
    "etcd's benchmark tool not found (scripts/etcd-benchmark-bin.sh builds it; or pass \
     --etcd-benchmark PATH): no second opinion in this report"
        .to_owned()
}

/// The rung both generators run: 256 clients when the ladder has it, else
/// its largest rung up to 256, else its smallest.
pub fn chosen_clients(rungs: &[usize]) -> Option<usize> {
    if rungs.contains(&256) {
        return Some(256);
    }
    rungs.iter().copied().filter(|&c| c <= 256).max().or_else(|| rungs.iter().copied().min())
}

/// Runs both generators' put and range workloads against `leader`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    tool: &Path,
    tls: &ToolTls,
    leader: &str,
    clients: usize,
    key_space_size: u64,
    val_size: usize,
    value: Bytes,
    total: u64,
    quiet: bool,
) -> Result<SecondOpinion> {
    let clients = clients.max(1);
    let conns = clients.clamp(1, 4);
    let total = total.clamp(1, MAX_TOTAL);
    let key_size = 16;
    let plan = |label: &str| Plan {
        clients,
        total: Some(total),
        duration: Some(TOOL_TIMEOUT),
        rate: None,
        progress: !quiet,
        label: label.to_owned(),
    };
    let pool = Pool::connect(&[leader.to_owned()], conns).await?;
    let mut pairs = Vec::new();

    // put: random keys over the ladder's key space, the ladder's value.
    let keys = KeyGen::new("/bench/", key_size, key_space_size, false);
    let ours = drive(Arc::new(Put::new(pool.clone(), keys, value.clone())), &plan("put")).await;
    let common = [
        "--endpoints".to_owned(),
        leader.to_owned(),
        "--clients".to_owned(),
        clients.to_string(),
        "--conns".to_owned(),
        conns.to_string(),
        "--precise".to_owned(),
    ];
    let mut args: Vec<String> = common.to_vec();
    args.extend(tls_args(tls));
    args.extend(
        [
            "put",
            "--key-size",
            &key_size.to_string(),
            "--val-size",
            &val_size.to_string(),
            "--total",
            &total.to_string(),
            "--key-space-size",
            &key_space_size.to_string(),
        ]
        .map(str::to_owned),
    );
    let theirs = run_tool(tool, &args).await.context("benchmark put")?;
    pairs.push(Pair {
        workload: "put".to_owned(),
        logbook_bench: Figures::of(ours.total()),
        etcd_benchmark: theirs,
    });

    // range: one key, linearizable, as `benchmark range KEY` reads it.
    let one = KeyGen::new(RANGE_PREFIX, 0, 1, false);
    let key = one.key(0);
    let key_text = String::from_utf8_lossy(&key).into_owned();
    pool.kv(0)
        .put(logbook_api::etcdserverpb::PutRequest {
            key,
            value: value.clone(),
            ..Default::default()
        })
        .await
        .context("writing the range key")?;
    let range =
        Range { pool: pool.clone(), keys: one, limit: 0, consistency: Consistency::Linearizable };
    let ours = drive(Arc::new(range), &plan("range")).await;
    let mut args: Vec<String> = common.to_vec();
    args.extend(tls_args(tls));
    args.extend(
        ["range", &key_text, "--total", &total.to_string(), "--consistency", "l"]
            .map(str::to_owned),
    );
    let theirs = run_tool(tool, &args).await.context("benchmark range")?;
    pairs.push(Pair {
        workload: "range".to_owned(),
        logbook_bench: Figures::of(ours.total()),
        etcd_benchmark: theirs,
    });
    Ok(SecondOpinion { clients, conns, key_size, val_size, total, pairs })
}

fn tls_args(tls: &ToolTls) -> Vec<String> {
    let mut out = Vec::new();
    for (flag, file) in [("--cacert", &tls.cacert), ("--cert", &tls.cert), ("--key", &tls.key)] {
        if let Some(f) = file {
            out.push(flag.to_owned());
            out.push(f.display().to_string());
        }
    }
    out
}

/// Runs the tool (bounded by [`TOOL_TIMEOUT`]) and parses its report.
async fn run_tool(tool: &Path, args: &[String]) -> Result<Figures> {
    let child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", tool.display()))?;
    let out = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output()).await.with_context(
        || format!("{} {} did not finish within {TOOL_TIMEOUT:?}", tool.display(), args.join(" ")),
    )??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().chain(stdout.lines()).rfind(|l| !l.trim().is_empty());
        bail!("{} exited with {}: {}", tool.display(), out.status, last.unwrap_or("no output"));
    }
    parse_report(&stdout)
}

/// Parses the report etcd's `pkg/report` prints: `Requests/sec:`, the
/// `NN% in X secs.` lines and the error distribution's `[count]\terror` lines.
pub fn parse_report(text: &str) -> Result<Figures> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0;
    let mut in_errors = false;
    // The progress bar redraws with carriage returns: its pieces are lines too.
    for line in text.split(['\n', '\r']).map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some((pct, rest)) = line.split_once("% in ") {
            let secs = rest.trim_end_matches('.').trim_end_matches(" secs").trim().parse::<f64>();
            match (pct.trim(), secs) {
                ("50", Ok(s)) => p50 = Some(s * 1e3),
                ("99", Ok(s)) => p99 = Some(s * 1e3),
                _ => {}
            }
        } else if line.starts_with("Error distribution") {
            in_errors = true;
        } else if in_errors && let Some(rest) = line.strip_prefix('[') {
            errors += rest.split(']').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    match (rps, p50, p99) {
        (Some(requests_per_s), Some(p50_ms), Some(p99_ms)) => {
            Ok(Figures { requests_per_s, p50_ms, p99_ms, errors })
        }
        _ => bail!(
            "no Requests/sec and 50%/99% lines in the tool's report: {}",
            text.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("(empty)")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_report_parses() {
        let text = "bench with linearizable range\n 2000 / 2000 [====] 100.00% 1s\r\n\nSummary:\n  \
                    Total:\t0.9 secs.\n  Slowest:\t0.05 secs.\n  Fastest:\t0.0001 secs.\n  \
                    Average:\t0.002 secs.\n  Stddev:\t0.001 secs.\n  Requests/sec:\t2222.5\n\n\
                    Response time histogram:\n  0.0001 [1]\t|\n\nLatency distribution:\n  \
                    10% in 0.0005 secs.\n  50% in 0.0012 secs.\n  99% in 0.0101 secs.\n  \
                    99.9% in 0.02 secs.\n\nError distribution:\n  [3]\tcontext deadline exceeded\n";
        let f = parse_report(text).unwrap();
        assert_eq!(f.requests_per_s, 2222.5);
        assert!((f.p50_ms - 1.2).abs() < 1e-9 && (f.p99_ms - 10.1).abs() < 1e-9, "{f:?}");
        assert_eq!(f.errors, 3);
        assert!(parse_report("Summary:\n").is_err());
    }

    #[test]
    fn the_rung_is_256_or_the_largest_below() {
        assert_eq!(chosen_clients(&[1, 16, 64, 256, 1024]), Some(256));
        assert_eq!(chosen_clients(&[1, 8]), Some(8));
        assert_eq!(chosen_clients(&[512, 1024]), Some(512));
        assert_eq!(chosen_clients(&[]), None);
    }

    #[test]
    fn agreement_is_within_fifteen_percent_of_the_tool() {
        let f = |r| Figures { requests_per_s: r, p50_ms: 1.0, p99_ms: 2.0, errors: 0 };
        let pair =
            |a, b| Pair { workload: "put".into(), logbook_bench: f(a), etcd_benchmark: f(b) };
        assert!(pair(1140.0, 1000.0).agree());
        assert!(pair(860.0, 1000.0).agree());
        assert!(!pair(1160.0, 1000.0).agree());
        assert!(!pair(800.0, 1000.0).agree());
    }
}
