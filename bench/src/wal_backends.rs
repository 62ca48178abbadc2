//! Each WAL backend on the disk under test, beside the fdatasync floor: one appender's commit
//! latency (append one record, wait until durable, repeat) and the records per second several
//! appenders get through group commit, for `sync`, `io-uring` and `io-uring-direct`, plus what
//! `--wal-backend auto` would choose on this disk and why. `logbook bench disk` prints it;
//! `logbook bench` measures it before the clusters and puts it in its report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use logbook_wal::{Backend, Options, Wal, probe};
use serde::{Deserialize, Serialize};

/// Bytes of each record: about one small put's Raft entry.
pub const RECORD: usize = 256;

/// One backend's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendFigures {
    /// `sync`, `io-uring`, `io-uring-direct`.
    pub backend: String,
    /// How it writes, in words (or the fallback it took).
    pub how: String,
    /// One appender: commits measured, and latency percentiles in ms.
    pub single_count: u64,
    pub single_p50_ms: f64,
    pub single_p99_ms: f64,
    pub single_per_s: f64,
    /// Several appenders: (appenders, records/s, records per commit).
    pub concurrent: Vec<(usize, f64, f64)>,
    /// Several appenders: (appenders, share of commits submitted while an earlier one was
    /// still in flight), for a pipelining backend (0 for the others).
    #[serde(default)]
    pub pipelined: Vec<(usize, f64)>,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

/// Every backend on one disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WalBackends {
    pub dir: String,
    /// What the device advertises (FUA, write cache).
    pub device: String,
    /// pwrite of 4 KiB + fdatasync on a preallocated file, p50 ms (the floor).
    pub fdatasync_p50_ms: f64,
    pub backends: Vec<BackendFigures>,
    /// What `--wal-backend auto` measured and chose here.
    pub auto: String,
    /// The backend `auto` chose.
    pub auto_choice: String,
}

/// Measures every backend in `dir` (created; a subdirectory per backend, removed after),
/// each measurement running for `each`.
pub fn measure(dir: &Path, each: Duration, appenders: &[usize]) -> Result<WalBackends> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let floor = crate::disk_probe::probe(dir, each, 100_000)?;
    let auto = probe::probe(dir, probe::OPEN_BUDGET);
    let mut backends = Vec::new();
    for b in Backend::CONCRETE {
        let sub: PathBuf = dir.join(format!("wal-{b}"));
        let r = measure_one(&sub, b, each, appenders);
        let _ = std::fs::remove_dir_all(&sub);
        backends.push(r.unwrap_or_else(|e| BackendFigures {
            backend: b.to_string(),
            how: String::new(),
            single_count: 0,
            single_p50_ms: 0.0,
            single_p99_ms: 0.0,
            single_per_s: 0.0,
            concurrent: Vec::new(),
            pipelined: Vec::new(),
            error: Some(format!("{e:#}")),
        }));
    }
    Ok(WalBackends {
        dir: dir.display().to_string(),
        device: auto.device.describe(),
        fdatasync_p50_ms: floor.fsync.latency_ms.p50,
        backends,
        auto: auto.summary(),
        auto_choice: auto.chosen.to_string(),
    })
}

fn measure_one(
    dir: &Path,
    backend: Backend,
    each: Duration,
    appenders: &[usize],
) -> Result<BackendFigures> {
    let wal = Arc::new(Wal::open(dir, Options { backend, ..Options::default() })?);
    let record = vec![0xa5u8; RECORD];
    // One appender, bounded in time and count.
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < each && times.len() < 200_000 {
        let t = Instant::now();
        wal.append(&[&record])?.wait()?;
        times.push(t.elapsed());
    }
    let single_s = start.elapsed().as_secs_f64();
    times.sort();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let mut concurrent = Vec::new();
    let mut pipelined = Vec::new();
    for &n in appenders {
        let before = wal.stats();
        let start = Instant::now();
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (wal, record) = (wal.clone(), record.clone());
                std::thread::spawn(move || -> Result<u64> {
                    let mut done = 0u64;
                    while start.elapsed() < each && done < 1_000_000 {
                        wal.append(&[&record])?.wait()?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut records = 0;
        for t in threads {
            records += t.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
        }
        let secs = start.elapsed().as_secs_f64();
        let after = wal.stats();
        let commits = (after.commits - before.commits).max(1);
        concurrent.push((n, records as f64 / secs, records as f64 / commits as f64));
        pipelined.push((n, (after.overlapped - before.overlapped) as f64 / commits as f64));
    }
    Ok(BackendFigures {
        backend: backend.to_string(),
        how: format!("{} {}", wal.backend_name(), wal.backend_note()).trim().to_string(),
        single_count: times.len() as u64,
        single_p50_ms: pct(0.5),
        single_p99_ms: pct(0.99),
        single_per_s: times.len() as f64 / single_s,
        concurrent,
        pipelined,
        error: None,
    })
}

/// The side-by-side table.
pub fn table(w: &WalBackends) -> String {
    let mut out = format!(
        "WAL backends on {} ({})\n  fdatasync floor (pwrite 4 KiB + fdatasync): p50 {:.3} ms\n",
        w.dir, w.device, w.fdatasync_p50_ms
    );
    let counts: Vec<usize> = w.backends.iter().flat_map(|b| b.concurrent.iter().map(|c| c.0)).fold(
        Vec::new(),
        |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        },
    );
    out.push_str(&format!("  {:<16} {:>9} {:>9} {:>9}", "backend", "p50 ms", "p99 ms", "1c rec/s"));
    for n in &counts {
        out.push_str(&format!(" {:>14}", format!("{n}c rec/s (/c)")));
    }
    out.push('\n');
    for b in &w.backends {
        if let Some(e) = &b.error {
            out.push_str(&format!("  {:<16} did not run: {e}\n", b.backend));
            continue;
        }
        out.push_str(&format!(
            "  {:<16} {:>9.3} {:>9.3} {:>9.0}",
            b.backend, b.single_p50_ms, b.single_p99_ms, b.single_per_s
        ));
        for n in &counts {
            match b.concurrent.iter().find(|c| c.0 == *n) {
                Some((_, rate, per)) => {
                    out.push_str(&format!(" {:>14}", format!("{rate:.0} ({per:.1})")))
                }
                None => out.push_str(&format!(" {:>14}", "-")),
            }
        }
        out.push('\n');
    }
    for b in &w.backends {
        if b.pipelined.iter().any(|p| p.1 > 0.0) {
            let shares: Vec<String> =
                b.pipelined.iter().map(|(n, p)| format!("{n}c {:.0}%", p * 100.0)).collect();
            out.push_str(&format!(
                "  {}: commits submitted behind one in flight: {}\n",
                b.backend,
                shares.join(", ")
            ));
        }
    }
    out.push_str(&format!("  --wal-backend auto here: {}\n", w.auto));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_is_measured_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let w = measure(&dir.path().join("d"), Duration::from_millis(100), &[4]).unwrap();
        assert_eq!(w.backends.len(), 3);
        let sync = &w.backends[0];
        assert_eq!(sync.backend, "sync");
        assert!(sync.error.is_none() && sync.single_count > 0, "{sync:?}");
        assert_eq!(sync.concurrent.len(), 1);
        let t = table(&w);
        for b in ["sync", "io-uring", "io-uring-direct", "fdatasync floor", "auto here"] {
            assert!(t.contains(b), "{t}");
        }
        assert!(["sync", "io-uring", "io-uring-direct"].contains(&w.auto_choice.as_str()));
        // Only the probe's and the floor's files are gone; the subdirectories too.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("d")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
