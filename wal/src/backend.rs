//! How the writer makes one batch durable: the [`CommitIo`] trait, its plain
//! `pwrite` + `fdatasync` implementation [`SyncIo`], and backend selection. The io_uring
//! implementation is in [`crate::uring`].

use std::io;

use crate::io::{SegmentFile, write_all_at};

/// Which way the writer issues its writes and fsyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if the kernel offers it (and the storage has real file descriptors), else
    /// [`Backend::Sync`]. The choice is logged at open.
    #[default]
    Auto,
    /// io_uring: one linked write(s) + fdatasync submission per batch. Open fails if the
    /// kernel refuses io_uring.
    IoUring,
    /// `pwrite` then `fdatasync`, two system calls per batch.
    Sync,
}

/// Writes a batch and makes it durable. One implementation per [`Backend`]; owned by the
/// writer thread.
pub(crate) trait CommitIo: Send {
    /// Writes `bufs` back to back starting at `offset` in `file`, then `fdatasync`s the file.
    /// Returns only when the kernel is done with every buffer.
    fn write_and_sync(
        &mut self,
        file: &dyn SegmentFile,
        bufs: &[&[u8]],
        offset: u64,
    ) -> io::Result<()>;

    /// For the log line at open and for benchmarks.
    fn name(&self) -> &'static str;
}

/// `pwrite` + `fdatasync`.
#[derive(Debug, Default)]
pub(crate) struct SyncIo;

impl CommitIo for SyncIo {
    fn write_and_sync(
        &mut self,
        file: &dyn SegmentFile,
        bufs: &[&[u8]],
        mut offset: u64,
    ) -> io::Result<()> {
        for b in bufs {
            write_all_at(file, b, offset)?;
            offset += b.len() as u64;
        }
        file.sync_data()
    }

    fn name(&self) -> &'static str {
        "sync (pwrite + fdatasync)"
    }
}

/// Builds the backend asked for. `has_fds`: whether the storage's files have real descriptors
/// (io_uring needs them).
pub(crate) fn select(backend: Backend, has_fds: bool) -> Result<Box<dyn CommitIo>, String> {
    match backend {
        Backend::Sync => Ok(Box::new(SyncIo)),
        Backend::IoUring => {
            if !has_fds {
                return Err("io_uring needs OS files; this storage has none".into());
            }
            crate::uring::UringIo::new()
                .map(|u| Box::new(u) as Box<dyn CommitIo>)
                .map_err(|e| format!("io_uring unavailable: {e}"))
        }
        Backend::Auto => {
            if has_fds {
                match crate::uring::UringIo::new() {
                    Ok(u) => return Ok(Box::new(u)),
                    Err(e) => tracing::info!("wal: io_uring unavailable ({e}); falling back"),
                }
            }
            Ok(Box::new(SyncIo))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{OsStorage, Storage, read_full_at};

    fn check_backend(mut io: Box<dyn CommitIo>) {
        let dir = tempfile::tempdir().unwrap();
        let f = OsStorage.open(&dir.path().join("f"), true).unwrap();
        f.allocate(1 << 16).unwrap();
        io.write_and_sync(&*f, &[b"hello ", b"world"], 10).unwrap();
        io.write_and_sync(&*f, &[b"!"], 21).unwrap();
        let mut buf = [0u8; 12];
        read_full_at(&*f, &mut buf, 10).unwrap();
        assert_eq!(&buf, b"hello world!");
    }

    #[test]
    fn sync_backend_writes_back_to_back() {
        check_backend(select(Backend::Sync, true).unwrap());
    }

    #[test]
    fn auto_backend_writes_back_to_back() {
        check_backend(select(Backend::Auto, true).unwrap());
    }

    #[test]
    fn uring_refuses_storage_without_fds() {
        assert!(select(Backend::IoUring, false).is_err());
        assert_eq!(select(Backend::Auto, false).unwrap().name(), SyncIo.name());
    }
}
