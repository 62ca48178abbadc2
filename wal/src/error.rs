//! The one error type of the crate: a variant for every outcome a caller branches on.

use std::io;
use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the WAL.
///
/// Corruption is never folded into [`Error::Io`]: a caller must be able to tell "the disk said
/// no" (retry after reopen, free space) from "the bytes on disk are wrong" (operator action).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system failed a file operation.
    #[error("wal: I/O error: {0}")]
    Io(io::Error),
    /// A record or segment header before the tail of the log is damaged. Start-up stops here
    /// rather than silently dropping acknowledged data.
    #[error("wal: corrupted log: {}: offset {offset}: {reason}", file.display())]
    Corrupted {
        /// The segment file holding the damaged bytes.
        file: PathBuf,
        /// Byte offset of the damaged frame or header inside `file`.
        offset: u64,
        /// What is wrong, in words.
        reason: String,
    },
    /// An earlier write or fsync failed. A failed fsync may have dropped dirty pages, so
    /// retrying would lie about durability: every call fails until the log is reopened.
    #[error("wal: poisoned by an earlier write or fsync failure; reopen the log")]
    Poisoned,
    /// The file system is out of space. Nothing already acknowledged is lost; the log is
    /// poisoned and must be reopened once space is freed.
    #[error("wal: disk full (no space left on device)")]
    DiskFull,
    /// A read or truncation asked for indexes the log does not hold.
    #[error("wal: index range [{lo}, {hi}) is outside the stored range [{first}, {next})")]
    OutOfRange {
        /// First index asked for.
        lo: u64,
        /// One past the last index asked for.
        hi: u64,
        /// The log's first stored index at the time of the call.
        first: u64,
        /// The log's `last_index() + 1` at the time of the call.
        next: u64,
    },
    /// A record, or the records of one call, exceed the size the format allows.
    #[error("wal: {len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Size asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `Options` that cannot work (zero segment size, io_uring asked for but unavailable ...).
    #[error("wal: invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Maps an I/O error, turning "no space left" into [`Error::DiskFull`].
    pub(crate) fn from_io(e: io::Error) -> Error {
        if is_disk_full(&e) { Error::DiskFull } else { Error::Io(e) }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::from_io(e)
    }
}

/// True for ENOSPC / EDQUOT in any of their std spellings.
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_maps_to_disk_full() {
        let e = Error::from(io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, Error::DiskFull), "{e:?}");
        let e = Error::from(io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(e, Error::Io(_)), "{e:?}");
    }

    #[test]
    fn corrupted_names_file_and_offset() {
        let e = Error::Corrupted {
            file: PathBuf::from("/d/0000000000000000-0000000000000001.wal"),
            offset: 4711,
            reason: "checksum mismatch".into(),
        };
        let s = e.to_string();
        assert!(s.contains("0000000000000000-0000000000000001.wal"), "{s}");
        assert!(s.contains("4711"), "{s}");
    }
}
