//! The physical floor of a quorum write: how long one small `pwrite` plus
//! `fdatasync` takes on the disk the clusters' data live on.
//!
//! A file is preallocated (written and synced once) so the probe measures
//! data syncs only, not file growth or metadata, as a WAL on preallocated
//! segments sees it. Then 4 KiB blocks are written in turn, each followed by
//! `fdatasync`, for a bounded time and count.
//!
//! A local cluster keeps every member's WAL on this one disk, so each of its
//! fsyncs competes with the others': [`probe_shared`] runs the same loop on
//! several threads at once (one file each) and reports what one sync took
//! then, the floor as the members see it.

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
    /// The same with several syncers at once, when measured.
    #[serde(default)]
    pub shared: Option<SharedFloor>,
}

/// pwrite+fdatasync latencies with `syncers` threads syncing at once, each
/// on its own file (throughput = all their syncs per second).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedFloor {
    pub syncers: usize,
    pub fsync: Summary,
}

/// Probes `dir` for at most `duration` and `max_syncs` syncs; the probe file
/// is removed afterwards.
pub fn probe(dir: &Path, duration: Duration, max_syncs: u64) -> Result<DiskFloor> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(".logbook-fsync-probe");
    let result = run(&path, duration, max_syncs);
    let _ = std::fs::remove_file(&path);
    Ok(DiskFloor { dir: dir.display().to_string(), fsync: result?, shared: None })
}

/// Runs the probe on `syncers` threads at once in `dir`, each on its own
/// file, for at most `duration` and `max_syncs` syncs each; the files are
/// removed afterwards.
pub fn probe_shared(
    dir: &Path,
    syncers: usize,
    duration: Duration,
    max_syncs: u64,
) -> Result<SharedFloor> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<_> =
        (0..syncers).map(|i| dir.join(format!(".logbook-fsync-probe-{i}"))).collect();
    let rec = Recorder::default();
    let start = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let rec = &rec;
                scope.spawn(move || {
                    let file = prepare(path)?;
                    sync_loop(&file, duration, max_syncs, |took| rec.record(i, took))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("probe thread panicked")).collect()
    });
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    for r in results {
        r?;
    }
    Ok(SharedFloor {
        syncers,
        fsync: Summary::from_histogram("fdatasync", &rec.merged(), 0, start.elapsed()),
    })
}

/// Creates `path` and writes and syncs it whole once.
fn prepare(path: &Path) -> Result<std::fs::File> {
    preallocate(path, FILE_SIZE)
}

/// Creates `path` with `size` bytes of data (not a hole) and syncs it, so that
/// later syncs of writes into it cover data blocks only, as on a WAL's
/// preallocated segment.
pub(crate) fn preallocate(path: &Path, size: u64) -> Result<std::fs::File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let zeros = vec![0u8; 1 << 20];
    for off in (0..size).step_by(zeros.len()) {
        let n = zeros.len().min((size - off) as usize);
        file.write_all_at(&zeros[..n], off)?;
    }
    file.sync_all().with_context(|| format!("preallocating {}", path.display()))?;
    Ok(file)
}

/// Writes a block and fdatasyncs, over and over, reporting each time.
fn sync_loop(
    file: &std::fs::File,
    duration: Duration,
    max_syncs: u64,
    mut took: impl FnMut(Duration),
) -> Result<()> {
    let block: Vec<u8> = (0..BLOCK).map(|i| (i % 251) as u8).collect();
    let start = Instant::now();
    let mut n = 0u64;
    while n < max_syncs && start.elapsed() < duration {
        let off = (n * BLOCK as u64) % FILE_SIZE;
        let t = Instant::now();
        file.write_all_at(&block, off)?;
        file.sync_data().context("fdatasync on the probe file")?;
        took(t.elapsed());
        n += 1;
    }
    Ok(())
}

fn run(path: &Path, duration: Duration, max_syncs: u64) -> Result<Summary> {
    let file = prepare(path)?;
    let rec = Recorder::default();
    let start = Instant::now();
    sync_loop(&file, duration, max_syncs, |took| rec.record(0, took))?;
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

    #[test]
    fn shared_probe_counts_every_syncer_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let shared = probe_shared(dir.path(), 3, Duration::from_secs(5), 15).unwrap();
        assert_eq!(shared.syncers, 3);
        assert_eq!(shared.fsync.count, 45);
        assert!(shared.fsync.latency_ms.max > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe files removed");
    }
}
