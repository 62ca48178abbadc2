//! A second opinion: etcd's own load generator, `benchmark` (etcd's
//! `tools/benchmark`, built by `scripts/etcd-benchmark-bin.sh`), run beside
//! Logbook's on the same rung, so a reader need not trust one generator.
//!
//! For each system of a comparison, after its ladder, the chosen rung (256
//! clients when the ladder has it, else its largest rung up to 256) runs per
//! workload with both generators on exactly the same terms:
//!
//! - the same request: `put` (one Put, not a Txn) or `range` (one key,
//!   linearizable, as `benchmark range KEY` reads it; the key is written
//!   first);
//! - the same load: clients, connections, total requests, closed loop with
//!   no rate limit, against the leader's endpoint only;
//! - the same keys and values: `key_size`-byte keys made as the tool makes
//!   them ([`KeyGen::etcd_benchmark`]: Go's varint of a random index below
//!   the key space, in a reused buffer), random over the same key space,
//!   `val_size`-byte values;
//! - the same clock: the tool dials lazily inside its timed window and has no
//!   warm-up, so each of our runs opens fresh connections and is timed from
//!   before the first connection to the last answer;
//! - the same conditions: the runs alternate, ours, the tool's, the tool's,
//!   ours (ABBA), so drift over the runs (the database growing, the machine's
//!   other load) weighs on both alike; each generator's figures are the
//!   means of its two runs.
//!
//! The two agree when their throughputs are within [`AGREEMENT`] of each
//! other. The report prints each side's exact parameters ([`Pair`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cli::Consistency;
use crate::client::Pool;
use crate::driver::{Plan, Workload, drive};
use crate::keys::KeyGen;
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
    /// The means of `runs`' rates and percentiles, their errors summed.
    pub fn mean(runs: &[Figures]) -> Figures {
        let n = runs.len().max(1) as f64;
        let avg = |f: fn(&Figures) -> f64| runs.iter().map(f).sum::<f64>() / n;
        Figures {
            requests_per_s: avg(|r| r.requests_per_s),
            p50_ms: avg(|r| r.p50_ms),
            p99_ms: avg(|r| r.p99_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
        }
    }
}

/// One workload measured by both generators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pair {
    /// `put` or `range`.
    pub workload: String,
    /// What Logbook's generator ran, every parameter.
    #[serde(default)]
    pub logbook_bench_params: String,
    /// The tool's command line, as run.
    #[serde(default)]
    pub etcd_benchmark_command: String,
    /// The means of each generator's runs.
    pub logbook_bench: Figures,
    pub etcd_benchmark: Figures,
    /// Each run, in the order of its generator's turns (ABBA: ours first and last).
    #[serde(default)]
    pub logbook_bench_runs: Vec<Figures>,
    #[serde(default)]
    pub etcd_benchmark_runs: Vec<Figures>,
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
    /// The endpoint both generators sent to: the leader's.
    #[serde(default)]
    pub endpoint: String,
    pub clients: usize,
    pub conns: usize,
    pub key_size: usize,
    #[serde(default)]
    pub key_space_size: u64,
    pub val_size: usize,
    /// Requests per run.
    pub total: u64,
    /// Runs per generator and workload.
    #[serde(default)]
    pub runs: usize,
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

/// Each generator's runs per workload, alternated ABBA.
pub const RUNS: usize = 2;

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
    let key_space_size = key_space_size.max(1);
    let key_size = 16;
    let value = value.slice(..val_size.min(value.len()));
    let plan = |label: &str| Plan {
        clients,
        total: Some(total),
        duration: Some(TOOL_TIMEOUT),
        rate: None,
        progress: !quiet,
        label: label.to_owned(),
    };
    let mut common: Vec<String> = [
        "--endpoints",
        leader,
        "--clients",
        &clients.to_string(),
        "--conns",
        &conns.to_string(),
        "--precise",
    ]
    .map(str::to_owned)
    .to_vec();
    common.extend(tls_args(tls));
    let shown = |args: &[String]| {
        let name = tool.file_name().map_or("benchmark".into(), |n| n.to_string_lossy());
        format!("{name} {}", args.join(" "))
    };
    let load = format!(
        "{clients} clients over {conns} connections to {leader} (the leader only), {total} \
         requests per run, closed loop, no rate limit; fresh connections per run, timed from \
         before the first connection to the last answer"
    );
    let mut pairs = Vec::new();

    // put: random keys over the key space, made as the tool makes them.
    let keys = KeyGen::etcd_benchmark(key_size, key_space_size, false);
    let mut args = common.clone();
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
    let (ours, theirs) = abba(
        async || {
            let keys = keys.clone();
            let value = value.clone();
            run_ours(leader, conns, &plan("put"), move |pool| Put::new(pool, keys, value)).await
        },
        async || run_tool(tool, &args).await.context("benchmark put"),
    )
    .await?;
    pairs.push(Pair {
        workload: "put".to_owned(),
        logbook_bench_params: format!(
            "Put, {load}; random {key_size} B keys as the tool makes them (Go varint of an index \
             below {key_space_size}, in a reused buffer), {val_size} B values"
        ),
        etcd_benchmark_command: shown(&args),
        logbook_bench: Figures::mean(&ours),
        etcd_benchmark: Figures::mean(&theirs),
        logbook_bench_runs: ours,
        etcd_benchmark_runs: theirs,
    });

    // range: one key, linearizable, as `benchmark range KEY` reads it.
    let one = KeyGen::new(RANGE_PREFIX, 0, 1, false);
    let key = one.key(0);
    let key_text = String::from_utf8_lossy(&key).into_owned();
    Pool::connect(&[leader.to_owned()], 1)
        .await?
        .kv(0)
        .put(logbook_api::etcdserverpb::PutRequest {
            key,
            value: value.clone(),
            ..Default::default()
        })
        .await
        .context("writing the range key")?;
    let mut args = common.clone();
    args.extend(
        ["range", &key_text, "--total", &total.to_string(), "--consistency", "l"]
            .map(str::to_owned),
    );
    let (ours, theirs) = abba(
        async || {
            let keys = one.clone();
            run_ours(leader, conns, &plan("range"), move |pool| Range {
                pool,
                keys,
                limit: 0,
                consistency: Consistency::Linearizable,
            })
            .await
        },
        async || run_tool(tool, &args).await.context("benchmark range"),
    )
    .await?;
    pairs.push(Pair {
        workload: "range".to_owned(),
        logbook_bench_params: format!(
            "Range of the one key {key_text} (linearizable, no limit), {load}"
        ),
        etcd_benchmark_command: shown(&args),
        logbook_bench: Figures::mean(&ours),
        etcd_benchmark: Figures::mean(&theirs),
        logbook_bench_runs: ours,
        etcd_benchmark_runs: theirs,
    });
    Ok(SecondOpinion {
        endpoint: leader.to_owned(),
        clients,
        conns,
        key_size,
        key_space_size,
        val_size,
        total,
        runs: RUNS,
        pairs,
    })
}

/// Runs `a` and `b` [`RUNS`] times each, alternating A B B A (A B B A A B
/// ...), so linear drift weighs on both alike; returns each one's runs.
async fn abba(
    mut a: impl AsyncFnMut() -> Result<Figures>,
    mut b: impl AsyncFnMut() -> Result<Figures>,
) -> Result<(Vec<Figures>, Vec<Figures>)> {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        if i % 2 == 0 {
            xs.push(a().await?);
            ys.push(b().await?);
        } else {
            ys.push(b().await?);
            xs.push(a().await?);
        }
    }
    Ok((xs, ys))
}

/// One run of Logbook's generator as the tool runs: fresh connections, no
/// warm-up, timed from before connecting to the last answer.
async fn run_ours<W: Workload>(
    leader: &str,
    conns: usize,
    plan: &Plan,
    workload: impl FnOnce(Pool) -> W,
) -> Result<Figures> {
    let start = std::time::Instant::now();
    let pool = Pool::connect(&[leader.to_owned()], conns).await?;
    let connecting = start.elapsed().as_secs_f64();
    let out = drive(Arc::new(workload(pool)), plan).await;
    let s = out.total();
    Ok(Figures {
        requests_per_s: s.count as f64 / (connecting + s.elapsed_s).max(1e-9),
        p50_ms: s.latency_ms.p50,
        p99_ms: s.latency_ms.p99,
        errors: out.error_count(),
    })
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

    #[tokio::test]
    async fn runs_alternate_abba_and_figures_are_their_means() {
        let order = std::sync::Mutex::new(String::new());
        let f = |r| Figures { requests_per_s: r, p50_ms: r / 100.0, p99_ms: r / 10.0, errors: 1 };
        let (a, b) = abba(
            async || {
                order.lock().unwrap().push('A');
                Ok(f(100.0 * order.lock().unwrap().len() as f64))
            },
            async || {
                order.lock().unwrap().push('B');
                Ok(f(100.0 * order.lock().unwrap().len() as f64))
            },
        )
        .await
        .unwrap();
        assert_eq!(*order.lock().unwrap(), "ABBA");
        // A ran 1st and 4th, B 2nd and 3rd: a steady drift gives both one mean.
        assert_eq!(Figures::mean(&a), Figures::mean(&b));
        assert_eq!(Figures::mean(&a).requests_per_s, 250.0);
        assert_eq!(Figures::mean(&a).errors, 2);
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
        let pair = |a, b| Pair {
            workload: "put".into(),
            logbook_bench_params: String::new(),
            etcd_benchmark_command: String::new(),
            logbook_bench: f(a),
            etcd_benchmark: f(b),
            logbook_bench_runs: vec![f(a)],
            etcd_benchmark_runs: vec![f(b)],
        };
        assert!(pair(1140.0, 1000.0).agree());
        assert!(pair(860.0, 1000.0).agree());
        assert!(!pair(1160.0, 1000.0).agree());
        assert!(!pair(800.0, 1000.0).agree());
    }
}
