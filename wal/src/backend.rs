//! How the writer makes one batch durable: the [`CommitIo`] trait, its plain
//! `pwrite` + `fdatasync` implementation [`SyncIo`], and backend selection (for
//! [`Backend::Auto`], by measuring the directory, see [`crate::probe`]). The io_uring
//! implementations are in [`crate::uring`] (buffered write + fdatasync) and [`crate::direct`]
//! (O_DIRECT write with `RWF_DSYNC`).

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use std::sync::Arc;

use crate::group_commit::Kick;
use crate::io::write_all_at;
use crate::segment::Segment;

/// Which way the writer issues its writes and fsyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Measured at open: the directory is probed once (a few hundred milliseconds at most)
    /// with each backend that can work there, and the fastest single durable write wins. The
    /// measurements and the choice are logged and kept ([`crate::Wal::backend_note`]). On
    /// storage without file descriptors (simulated files), [`Backend::Sync`].
    #[default]
    Auto,
    /// io_uring, buffered: one linked write(s) + fdatasync submission per batch. Open fails if
    /// the kernel refuses io_uring.
    IoUring,
    /// io_uring on an `O_DIRECT` descriptor, each batch one block-aligned write with
    /// `RWF_DSYNC`: durable when it completes (a FUA write where the device has FUA, else the
    /// kernel adds a cache flush), with no separate fdatasync. Segments are zero-filled when
    /// prepared so those writes never change file metadata. Where the file system refuses
    /// `O_DIRECT`, open falls back to [`Backend::IoUring`] and logs why.
    IoUringDirect,
    /// `pwrite` then `fdatasync`, two system calls per batch.
    Sync,
}

impl Backend {
    /// The backends that write (every one but [`Backend::Auto`]), in the order reports list them.
    pub const CONCRETE: [Backend; 3] = [Backend::Sync, Backend::IoUring, Backend::IoUringDirect];

    /// The flag spelling: `auto`, `io-uring`, `io-uring-direct`, `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::IoUring => "io-uring",
            Backend::IoUringDirect => "io-uring-direct",
            Backend::Sync => "sync",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Backend::Auto),
            "io-uring" => Ok(Backend::IoUring),
            "io-uring-direct" => Ok(Backend::IoUringDirect),
            "sync" => Ok(Backend::Sync),
            _ => Err(format!(
                "unknown WAL backend {s:?} (expected auto, io-uring, io-uring-direct or sync)"
            )),
        }
    }
}

/// Writes a batch and makes it durable. One implementation per concrete [`Backend`]; owned
/// by the writer.
pub(crate) trait CommitIo: Send {
    /// Writes `bufs` back to back starting at `offset` in `seg`, and makes them durable.
    /// Returns only when the kernel is done with every buffer.
    fn write_and_sync(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<()>;

    /// For the log line at open and for benchmarks.
    fn name(&self) -> &'static str;

    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Whether new segments must be written full of zeros when prepared (not just
    /// `fallocate`d), so that writes into them never convert unwritten extents.
    fn zero_filled_segments(&self) -> bool {
        false
    }

    /// Batches this backend keeps in flight at once. 1 (the default): [`CommitIo::submit`]
    /// returns only once the batch is durable and [`CommitIo::complete`] is never called.
    fn depth(&self) -> usize {
        1
    }

    /// Starts writing `bufs` back to back at `offset` in `seg`. The caller may reuse the
    /// buffers as soon as this returns (a pipelining backend copies them); the batch is
    /// durable once [`CommitIo::complete`] has counted it (for depth 1: on return).
    fn submit(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_and_sync(seg, bufs, offset)
    }

    /// Waits until at least the oldest submitted write is durable and returns how many of
    /// the oldest are (in submission order: the `n` returned are the `n` oldest). With
    /// `or_kick`, also returns (maybe 0) when the [`crate::group_commit::Kick`] of
    /// [`CommitIo::kick`] fires. On an error nothing in flight is pending any more (the
    /// backend waited for the kernel to finish with every buffer) and the log is poisoned.
    fn complete(&mut self, or_kick: bool) -> io::Result<usize> {
        let _ = or_kick;
        unreachable!("complete() on a backend of depth 1")
    }

    /// What appenders fire to wake a writer waiting in [`CommitIo::complete`] (pipelining
    /// backends on real files only).
    fn kick(&self) -> Option<Arc<Kick>> {
        None
    }
}

/// `pwrite` + `fdatasync`.
#[derive(Debug, Default)]
pub(crate) struct SyncIo;

impl CommitIo for SyncIo {
    fn write_and_sync(&mut self, seg: &Segment, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
        for b in bufs {
            write_all_at(&*seg.file, b, offset)?;
            offset += b.len() as u64;
        }
        seg.file.sync_data()
    }

    fn name(&self) -> &'static str {
        "sync (pwrite + fdatasync)"
    }

    fn backend(&self) -> Backend {
        Backend::Sync
    }
}

/// The backend a log opened with, and why.
pub(crate) struct Selected {
    pub(crate) io: Box<dyn CommitIo>,
    /// What was measured or why a fallback was taken, in words (empty when simply asked for).
    pub(crate) note: String,
}

/// Builds the backend asked for, for the log in `dir`. `has_fds`: whether the storage's files
/// have real descriptors (io_uring needs them; the direct backend without them writes its
/// aligned blocks through the storage, which is how simulated power losses test it).
pub(crate) fn select(backend: Backend, dir: &Path, has_fds: bool) -> Result<Selected, String> {
    let plain = |io: Box<dyn CommitIo>| Ok(Selected { io, note: String::new() });
    match backend {
        Backend::Sync => plain(Box::new(SyncIo)),
        Backend::IoUring => {
            if !has_fds {
                return Err("io_uring needs OS files; this storage has none".into());
            }
            crate::uring::UringIo::new()
                .map(|u| Selected { io: Box::new(u), note: String::new() })
                .map_err(|e| format!("io_uring unavailable: {e}"))
        }
        Backend::IoUringDirect => {
            if !has_fds {
                return plain(Box::new(crate::direct::DirectIo::simulated()));
            }
            match crate::direct::DirectIo::new(dir) {
                Ok(d) => {
                    let note = crate::probe::device_of(dir).direct_note();
                    Ok(Selected { io: Box::new(d), note })
                }
                Err(e) => {
                    let why = format!("O_DIRECT with io_uring is not available here ({e})");
                    let io = crate::uring::UringIo::new()
                        .map_err(|e| format!("{why}; io_uring unavailable too: {e}"))?;
                    Ok(Selected { io: Box::new(io), note: format!("{why}; fell back to io-uring") })
                }
            }
        }
        Backend::Auto => {
            if !has_fds {
                return Ok(Selected {
                    io: Box::new(SyncIo),
                    note: "storage without file descriptors: sync".into(),
                });
            }
            let probe = crate::probe::probe(dir, crate::probe::OPEN_BUDGET);
            let io = build(probe.chosen, dir).unwrap_or_else(|e| {
                tracing::info!(error = %e, "wal: the measured backend failed to start; using sync");
                Box::new(SyncIo)
            });
            Ok(Selected { io, note: probe.summary() })
        }
    }
}

/// A concrete backend on OS files, or why it cannot run here.
pub(crate) fn build(backend: Backend, dir: &Path) -> io::Result<Box<dyn CommitIo>> {
    Ok(match backend {
        Backend::Sync | Backend::Auto => Box::new(SyncIo),
        Backend::IoUring => Box::new(crate::uring::UringIo::new()?),
        Backend::IoUringDirect => Box::new(crate::direct::DirectIo::new(dir)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{OsStorage, Storage, read_full_at};

    fn check_backend(mut io: Box<dyn CommitIo>, dir: &Path) {
        let path = dir.join("f");
        let f = OsStorage.open(&path, true).unwrap();
        f.allocate(1 << 16).unwrap();
        let seg = Segment { seq: 0, path, file: f.clone() };
        io.write_and_sync(&seg, &[b"hello ", b"world"], 10).unwrap();
        io.write_and_sync(&seg, &[b"!"], 21).unwrap();
        io.write_and_sync(&seg, &[&[7u8; 5000]], 22).unwrap();
        let mut buf = [0u8; 12];
        read_full_at(&*f, &mut buf, 10).unwrap();
        assert_eq!(&buf, b"hello world!", "{}", io.name());
        let mut rest = vec![0u8; 6000];
        read_full_at(&*f, &mut rest, 22).unwrap();
        assert!(rest[..5000].iter().all(|&b| b == 7), "{}", io.name());
        assert!(rest[5000..].iter().all(|&b| b == 0), "{}", io.name());
        let _ = Arc::strong_count(&f);
    }

    #[test]
    fn every_backend_writes_back_to_back() {
        for b in [Backend::Sync, Backend::Auto, Backend::IoUring, Backend::IoUringDirect] {
            let dir = tempfile::tempdir().unwrap();
            let Ok(sel) = select(b, dir.path(), true) else {
                continue; // io_uring refused by this kernel
            };
            check_backend(sel.io, dir.path());
        }
    }

    #[test]
    fn names_parse_and_print() {
        for b in [Backend::Auto, Backend::IoUring, Backend::IoUringDirect, Backend::Sync] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        assert!("uring".parse::<Backend>().unwrap_err().contains("io-uring-direct"));
    }

    #[test]
    fn uring_refuses_storage_without_fds() {
        let dir = Path::new("/nonexistent");
        assert!(select(Backend::IoUring, dir, false).is_err());
        assert_eq!(select(Backend::Auto, dir, false).unwrap().io.name(), SyncIo.name());
        assert_eq!(
            select(Backend::IoUringDirect, dir, false).unwrap().io.backend(),
            Backend::IoUringDirect
        );
    }
}
