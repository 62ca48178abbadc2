//! The server's errors, and the one place they become gRPC statuses with
//! etcd's codes and messages (clients match on the message strings).

use tonic::{Code, Status};

/// Every outcome of the server a caller may branch on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A Range's sort order or target is none of the enum's values.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: writes are refused (etcd's `ErrCorrupt`).
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A member's data differs from its peers' at the same revision (etcd's
    /// initial corruption check); `{0}` is the member ID in hex.
    #[error("{0} found data inconsistency with peers")]
    DataInconsistency(String),
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExist,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A request that timed out while the leader changed (etcd's
    /// `ErrTimeoutDueToLeaderFail`).
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutDueToLeaderFail,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExist,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// A membership change proposed while an earlier one is unapplied; the
    /// Raft handle retries it, so clients see it only as a timeout.
    #[error("etcdserver: request timed out")]
    ConfChangePending,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// A membership change that would leave fewer started members than a
    /// quorum (`--strict-reconfig-check`).
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// A learner added beyond `--max-learners`.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// A membership change that would break the quorum of members this one
    /// has been connected to (`--strict-reconfig-check`).
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion,
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess,
    /// A downgrade cancelled when none is enabled; etcd logs it and answers
    /// the cancel as done.
    #[error("etcdserver: no inflight downgrade job")]
    NoInflightDowngrade,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// Authenticate on a member given only the JWT public key (etcd's
    /// `ErrVerifyOnly`, which etcd has no gRPC error for: code Unknown).
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// Proclaim or Campaign by a campaigner whose key is gone or was
    /// recreated (etcd's `concurrency.ErrElectionNotLeader`).
    #[error("election: not leader")]
    ElectionNotLeader,
    /// Leader of an election nobody campaigns in.
    #[error("election: no leader")]
    ElectionNoLeader,
    /// Proclaim or Resign without a leader key.
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// A lock waiter whose own key vanished (its lease expired) while it
    /// waited (etcd's `concurrency.ErrSessionExpired`).
    #[error("mutex: session is expired")]
    LockSessionExpired,
    #[error("etcdserver: {0} is not supported by Logbook yet")]
    Unsupported(&'static str),
    /// A request shape etcd itself does not serve, in etcd's words (e.g. a
    /// RangeStream with a custom sort order).
    #[error("{0}")]
    Unimplemented(&'static str),
    #[error("write-ahead log: {0}")]
    Wal(#[from] logbook_wal::Error),
    #[error("storage engine: {0}")]
    Engine(logbook_engine::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Internal(String),
    /// An error another member answered (the leader, for a request a
    /// follower handed it), passed on unchanged.
    #[error("{message}")]
    Remote { code: Code, message: String },
}

/// The server's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<logbook_engine::Error> for Error {
    fn from(e: logbook_engine::Error) -> Self {
        match e {
            logbook_engine::Error::Compacted => Error::Compacted,
            logbook_engine::Error::FutureRevision => Error::FutureRevision,
            other => Error::Engine(other),
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            PeerUrlExist | MemberNotLearner | LearnerNotReady => Code::FailedPrecondition,
            MemberBadUrls => Code::InvalidArgument,
            EmptyKey | InvalidSortOption | KeyNotFound | ValueProvided | LeaseProvided
            | TooManyOps | DuplicateKey | RequestTooLarge => Code::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => Code::OutOfRange,
            LeaseExist => Code::FailedPrecondition,
            NoSpace => Code::ResourceExhausted,
            Corrupt => Code::DataLoss,
            DataInconsistency(_) => Code::DataLoss,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            NoLeader
            | LeaderChanged
            | Stopped
            | Timeout
            | TimeoutDueToLeaderFail
            | ConfChangePending
            | Unhealthy => Code::Unavailable,
            BadLeaderTransferee | NotLeader => Code::FailedPrecondition,
            NotEnoughStartedMembers | TooManyLearners => Code::FailedPrecondition,
            WrongDowngradeVersionFormat | InvalidDowngradeTargetVersion => Code::InvalidArgument,
            DowngradeInProcess | NoInflightDowngrade => Code::FailedPrecondition,
            Unsupported(_) | Unimplemented(_) => Code::Unimplemented,
            ElectionNotLeader | ElectionNoLeader | MissingLeaderKey | LockSessionExpired
            | VerifyOnly => Code::Unknown,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted
            | AuthNotEnabled => Code::FailedPrecondition,
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt
            | AuthOldRevision => Code::InvalidArgument,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            Config(_) => Code::InvalidArgument,
            Wal(_) | Engine(_) | Raft(_) | Io { .. } | Internal(_) => Code::Internal,
            Remote { code, .. } => *code,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl Error {
    /// The status etcd's Lock and Election services answer this error
    /// with. etcd serves them with its own client library run inside the
    /// server, and the library's errors reach the caller as plain errors:
    /// code Unknown, etcd's message unchanged (an unknown lease is
    /// `Unknown: etcdserver: requested lease not found`, not `NotFound`).
    pub fn into_client_status(self) -> Status {
        Status::unknown(self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_code_and_message() {
        let s = Status::from(Error::Compacted);
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s = Status::from(Error::from(logbook_engine::Error::FutureRevision));
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision is a future revision");
        let s = Status::from(Error::RequestTooLarge);
        assert_eq!(
            (s.code(), s.message()),
            (Code::InvalidArgument, "etcdserver: request is too large")
        );
        let s = Status::from(Error::NoLeader);
        assert_eq!((s.code(), s.message()), (Code::Unavailable, "etcdserver: no leader"));
        let s = Status::from(Error::PermissionDenied);
        assert_eq!(
            (s.code(), s.message()),
            (Code::PermissionDenied, "etcdserver: permission denied")
        );
        let s = Status::from(Error::RootRoleNotExist);
        assert_eq!(
            (s.code(), s.message()),
            (Code::FailedPrecondition, "etcdserver: root user does not have root role")
        );
        let s = Status::from(Error::InvalidAuthToken);
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, "etcdserver: invalid auth token")
        );
        let s = Status::from(Error::Corrupt);
        assert_eq!((s.code(), s.message()), (Code::DataLoss, "etcdserver: corrupt cluster"));
        let s = Status::from(Error::TooManyOps);
        assert_eq!(s.message(), "etcdserver: too many operations in txn request");
    }

    #[test]
    fn lock_and_election_errors_are_unknown_as_etcds_client_returns_them() {
        let s = Error::LeaseNotFound.into_client_status();
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unknown, "etcdserver: requested lease not found")
        );
        let s = Status::from(Error::ElectionNotLeader);
        assert_eq!((s.code(), s.message()), (Code::Unknown, "election: not leader"));
        let s = Error::MissingLeaderKey.into_client_status();
        assert_eq!(s.message(), r#""leader" field must be provided"#);
    }
}
