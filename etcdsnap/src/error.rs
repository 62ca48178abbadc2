//! The crate's errors.

/// Everything that can go wrong reading, writing or converting an etcd snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bbolt file is damaged or truncated (`page` 0 when no page is to blame).
    #[error("snapshot is corrupt (page {page}): {reason}")]
    Corrupt { page: u64, reason: String },
    /// The SHA-256 trailer does not match the database bytes.
    #[error(
        "snapshot hash mismatch: the file's trailer says {expected}, its contents hash to {actual}"
    )]
    HashMismatch { expected: String, actual: String },
    /// No SHA-256 trailer where one is required (a raw db file needs `--skip-hash-check`).
    #[error("snapshot has no SHA-256 trailer (a raw member/snap/db file? use --skip-hash-check)")]
    MissingHash,
    /// A valid bbolt file, but not laid out as etcd's backend.
    #[error("not an etcd snapshot: {0}")]
    NotEtcd(String),
    /// A caller's mistake, or data that cannot be represented.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Engine(#[from] logbook_engine::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn corrupt(page: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { page, reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
