//! The physical floor of a quorum write: how long one small `pwrite` plus
//! `fdatasync` takes on the disk the clusters' data live on.
//!
//! A file is preallocated (written and synced once) so the probe measures
//! data syncs only, not file growth or metadata, as a WAL on preallocated
//! segments sees it. Then 4 KiB blocks are written in turn, each followed by
//! `fdatasync`, for a bounded time and count.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::stats::{Recorder, Summary};

const FILE_SIZE: u64 = 16 << 20;
const BLOCK: usize = 4096;

/// What the probe measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskFloor {
    /// Where the probe ran.
    pub dir: String,
    /// pwrite+fdatasync latencies (throughput = syncs per second, serially).
    pub fsync: Summary,
}

/// Probes `dir` for at most `duration` and `max_syncs` syncs; the probe file
/// is removed afterwards.
pub fn probe(dir: &Path, duration: Duration, max_syncs: u64) -> Result<DiskFloor> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".logbook-fsync-probe");
    let result = run(&path, duration, max_syncs);
    let _ = std::fs::remove_file(&path);
    Ok(DiskFloor { dir: dir.display().to_string(), fsync: result? })
}

fn run(path: &Path, duration: Duration, max_syncs: u64) -> Result<Summary> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for off in (0..FILE_SIZE).step_by(zeros.len()) {
        file.write_all_at(&zeros, off)?;
    }
    file.sync_all().context("preallocating the probe file")?;

    let block: Vec<u8> = (0..BLOCK).map(|i| (i % 251) as u8).collect();
    let rec = Recorder::default();
    let start = Instant::now();
    let mut n = 0u64;
    while n < max_syncs && start.elapsed() < duration {
        let off = (n * BLOCK as u64) % FILE_SIZE;
        let t = Instant::now();
        file.write_all_at(&block, off)?;
        file.sync_data().context("fdatasync on the probe file")?;
        rec.record(0, t.elapsed());
        n += 1;
    }
    Ok(Summary::from_histogram("fdatasync", &rec.merged(), 0, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let floor = probe(dir.path(), Duration::from_secs(5), 20).unwrap();
        assert_eq!(floor.fsync.count, 20);
        assert!(floor.fsync.latency_ms.max > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe file removed");
    }
}
