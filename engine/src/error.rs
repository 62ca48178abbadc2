//! The engine's one error type.

use std::path::PathBuf;

/// Every outcome of an engine call that a caller may branch on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested revision is at or below a compaction and its history is gone.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the store's current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A page or the file failed verification (checksum, page id, structure).
    /// Never folded into `Io`: the bytes were read, they are wrong.
    #[error("corrupted database file {file}: offset {offset}: {reason}")]
    Corrupted { file: PathBuf, offset: u64, reason: String },
    /// An earlier write or fsync failed; the engine refuses further work until reopened
    /// (a failed fsync may have dropped pages, retrying it would lie).
    #[error("engine is poisoned by an earlier I/O failure: {0}")]
    Poisoned(String),
    /// The database file is locked by another process (or another `Engine` in this one).
    #[error("database file {0} is locked by another engine")]
    Locked(PathBuf),
    /// A caller passed something the engine cannot store (e.g. a meta key too long).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
