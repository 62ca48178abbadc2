//! Choosing a backend by measurement ([`crate::Backend::Auto`]): what the device under a
//! directory advertises ([`device_of`]), and a short probe ([`probe`]) that times one small
//! durable write with each backend that can run there, interleaved, on a scratch file in the
//! log's own directory.
//!
//! Why measure rather than decide: which backend is fastest depends on the disk. On a
//! virtio disk without FUA, io_uring hands every fdatasync to a kernel worker (two extra
//! context switches per commit) and plain `pwrite` + `fdatasync` wins at one client; on an
//! NVMe drive with FUA, an `O_DIRECT` write with `RWF_DSYNC` is durable when it completes,
//! with no flush at all. The direct backend is probed only where the device advertises FUA
//! (or has no volatile write cache): elsewhere every direct write costs a write plus a full
//! cache flush, never cheaper than the fdatasync the buffered backends issue.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, CommitIo, build};
use crate::io::{OsStorage, Storage, write_all_at};
use crate::segment::Segment;

/// Time [`crate::Wal::open`] spends probing with [`crate::Backend::Auto`] (at most; the probe
/// also stops after [`MAX_ROUNDS`]).
pub const OPEN_BUDGET: Duration = Duration::from_millis(300);
/// Rounds (one durable write per backend each) a probe stops after.
pub const MAX_ROUNDS: usize = 48;
/// Bytes of each probe write: about one small Raft entry's frame.
pub const PROBE_WRITE: usize = 256;

/// The name of the probe's scratch file (a `.wal.tmp`, so a crash mid-probe leaves nothing
/// recovery does not remove).
const PROBE_FILE: &str = "probe.wal.tmp";
/// Each backend writes in its own region of the scratch file.
const REGION: u64 = 1 << 20;

/// What the block device under a directory advertises (from `/sys/dev/block`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's name (`vda`, `nvme0n1`), if the directory is on a block device.
    pub name: Option<String>,
    /// `queue/fua`: whether the device takes Force Unit Access writes.
    pub fua: Option<bool>,
    /// `queue/write_cache`: `write back` (volatile cache, flushes needed) or `write through`.
    pub write_cache: Option<String>,
}

impl DeviceInfo {
    /// Whether a direct `RWF_DSYNC` write completes durably without a cache flush.
    pub fn direct_is_flushless(&self) -> bool {
        self.fua == Some(true) || self.write_cache.as_deref() == Some("write through")
    }

    /// One line: the device and what it advertises.
    pub fn describe(&self) -> String {
        match &self.name {
            None => "device unknown (not a block device)".to_string(),
            Some(n) => format!(
                "device {n}: fua={} write_cache={}",
                self.fua.map_or("?", |f| if f { "1" } else { "0" }),
                self.write_cache.as_deref().unwrap_or("?")
            ),
        }
    }

    /// What choosing the direct backend on this device means, for the open log line.
    pub(crate) fn direct_note(&self) -> String {
        if self.direct_is_flushless() {
            format!("{}: direct writes need no cache flush", self.describe())
        } else {
            format!(
                "{}: no FUA, so each direct write is followed by a cache flush the kernel issues",
                self.describe()
            )
        }
    }
}

/// What the device holding `dir` advertises. Unknown fields stay `None` (overlay and network
/// file systems, containers without `/sys`).
pub fn device_of(dir: &Path) -> DeviceInfo {
    let Ok(meta) = std::fs::metadata(dir) else { return DeviceInfo::default() };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let Ok(mut sys) = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")) else {
        return DeviceInfo::default();
    };
    if sys.join("partition").exists() {
        sys = sys.parent().map(Path::to_path_buf).unwrap_or(sys);
    }
    let read = |f: &str| {
        std::fs::read_to_string(sys.join("queue").join(f)).ok().map(|s| s.trim().to_string())
    };
    DeviceInfo {
        name: sys.file_name().and_then(|n| n.to_str()).map(str::to_string),
        fua: read("fua").map(|v| v == "1"),
        write_cache: read("write_cache"),
    }
}

/// One backend's probe result.
#[derive(Clone, Debug)]
pub struct Measured {
    pub backend: Backend,
    /// Median time of one small durable write; `None` if it could not run (see `error`).
    pub median: Option<Duration>,
    /// Writes timed.
    pub writes: usize,
    pub error: Option<String>,
}

/// The outcome of [`probe`].
#[derive(Clone, Debug)]
pub struct Probe {
    pub device: DeviceInfo,
    pub measured: Vec<Measured>,
    /// Backends not probed, and why.
    pub skipped: Vec<(Backend, String)>,
    /// The fastest that ran ([`Backend::Sync`] if none did).
    pub chosen: Backend,
    pub took: Duration,
}

impl Probe {
    /// One line for the log: what was measured and what was chosen.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "chose {} by measurement in {:?} ({}",
            self.chosen,
            self.took,
            self.device.describe()
        );
        for m in &self.measured {
            match (m.median, &m.error) {
                (Some(d), _) => {
                    let _ = write!(
                        s,
                        "; {} {:.1} us median of {}",
                        m.backend,
                        d.as_secs_f64() * 1e6,
                        m.writes
                    );
                }
                (None, Some(e)) => {
                    let _ = write!(s, "; {} failed: {e}", m.backend);
                }
                (None, None) => {}
            }
        }
        for (b, why) in &self.skipped {
            let _ = write!(s, "; {b} not probed: {why}");
        }
        s.push(')');
        s
    }
}

/// Probes the directory `dir` (which must exist) for at most `budget`: each backend that can
/// run there writes [`PROBE_WRITE`] bytes durably, in turn, up to [`MAX_ROUNDS`] times; the one
/// with the lowest median wins. The direct backend runs only where the device needs no cache
/// flush for it (see [`DeviceInfo::direct_is_flushless`]).
pub fn probe(dir: &Path, budget: Duration) -> Probe {
    probe_backends(dir, budget, false)
}

/// [`probe`], optionally forcing the direct backend in (for benchmarks that report every
/// backend on every disk).
pub fn probe_backends(dir: &Path, budget: Duration, all: bool) -> Probe {
    let started = Instant::now();
    let device = device_of(dir);
    let mut skipped = Vec::new();
    let mut candidates: Vec<Backend> = vec![Backend::Sync, Backend::IoUring];
    if all || device.direct_is_flushless() {
        candidates.push(Backend::IoUringDirect);
    } else {
        skipped.push((
            Backend::IoUringDirect,
            format!("{} (a direct write would need a cache flush too)", device.describe()),
        ));
    }
    let measured = match run(dir, &candidates, budget) {
        Ok(m) => m,
        Err(e) => candidates
            .iter()
            .map(|&b| Measured {
                backend: b,
                median: None,
                writes: 0,
                error: Some(format!("probe file: {e}")),
            })
            .collect(),
    };
    let chosen = measured
        .iter()
        .filter_map(|m| Some((m.median?, m.backend)))
        .min_by_key(|(d, _)| *d)
        .map_or(Backend::Sync, |(_, b)| b);
    Probe { device, measured, skipped, chosen, took: started.elapsed() }
}

/// The interleaved measurement.
fn run(dir: &Path, candidates: &[Backend], budget: Duration) -> std::io::Result<Vec<Measured>> {
    let started = Instant::now();
    let path: PathBuf = dir.join(PROBE_FILE);
    let file = OsStorage.open(&path, true)?;
    let _cleanup = RemoveOnDrop(path.clone());
    // Written zeros, not fallocate: every backend then overwrites written blocks, as the
    // direct backend's zero-filled segments have them.
    let size = REGION * candidates.len() as u64;
    file.set_len(0)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        write_all_at(&*file, &zeros, at)?;
        at += zeros.len() as u64;
    }
    file.sync_data()?;
    let seg = Segment { seq: u64::MAX, path, file: Arc::clone(&file) };

    let mut ios: Vec<Candidate> = candidates
        .iter()
        .map(|&b| match build(b, dir) {
            Ok(io) => (b, Some(io), Vec::new(), None),
            Err(e) => (b, None, Vec::new(), Some(e.to_string())),
        })
        .collect();
    let record = vec![0x5a_u8; PROBE_WRITE];
    for round in 0..MAX_ROUNDS {
        if round >= 3 && started.elapsed() >= budget {
            break;
        }
        for (i, (_, io, times, err)) in ios.iter_mut().enumerate() {
            let Some(c) = io else { continue };
            let off = REGION * i as u64 + (round * PROBE_WRITE) as u64;
            let t = Instant::now();
            match c.write_and_sync(&seg, &[&record], off) {
                Ok(()) => times.push(t.elapsed()),
                Err(e) => {
                    *err = Some(e.to_string());
                    *io = None;
                }
            }
        }
    }
    Ok(ios
        .into_iter()
        .map(|(backend, _, mut times, error)| {
            times.sort();
            let median = (error.is_none() && !times.is_empty()).then(|| times[times.len() / 2]);
            Measured { backend, median, writes: times.len(), error }
        })
        .collect())
}

/// A backend under test: its I/O (dropped once it fails), the times, its error.
type Candidate = (Backend, Option<Box<dyn CommitIo>>, Vec<Duration>, Option<String>);

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_every_candidate_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe_backends(dir.path(), Duration::from_millis(50), true);
        assert_eq!(p.measured.len(), 3, "{p:?}");
        let sync = &p.measured[0];
        assert_eq!(sync.backend, Backend::Sync);
        assert!(sync.median.is_some() && sync.writes >= 3, "{p:?}");
        assert!(p.measured.iter().any(|m| m.backend == p.chosen && m.median.is_some()));
        assert!(p.summary().contains(&format!("chose {}", p.chosen)), "{}", p.summary());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "scratch file left behind");
    }

    #[test]
    fn device_of_a_missing_dir_is_unknown() {
        let d = device_of(Path::new("/nonexistent/dir"));
        assert_eq!(d, DeviceInfo::default());
        assert!(!d.direct_is_flushless());
        assert!(d.describe().contains("unknown"));
    }
}
