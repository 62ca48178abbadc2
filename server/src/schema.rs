//! Every bucket and key the server writes into the engine besides the
//! keyspace itself, in one place (as etcd's `server/storage/schema` does), so
//! a reader of the data directory, the snapshot converter and the appliers
//! agree on the layout.
//!
//! ```text
//! bucket            key                         value
//! raft              apply_state                 RaftApplyState (term, conf state of the applied index)
//! raft              scheduledCompactRev         i64 BE: the last compaction applied
//! cluster           id                          u64 BE: the cluster ID
//! cluster           member_id                   u64 BE: this member's own ID (member-local)
//! cluster           downgrade                   etcdserverpb.DowngradeInfo (absent: none)
//! cluster           clusterVersion              "major.minor.0" set during a downgrade (absent: the members' own)
//! members           member ID (u64 BE)          StoredMember
//! members_removed   member ID (u64 BE)          "removed"
//! alarm             member ID (u64 BE) | type (i32 BE)   AlarmMember
//! lease             lease ID (i64 BE)           StoredLease
//! auth              authEnabled, authRevision   etcd's encoding
//! authUsers         user name                   authpb.User
//! authRoles         role name                   authpb.Role
//! ```
//!
//! Integer keys are big-endian so the engine's byte order is numeric order.

/// The bucket holding the Raft position of the engine's data.
pub const RAFT_BUCKET: &str = "raft";
/// The [`RaftApplyState`](logbook_api::logbookpb::RaftApplyState) of the applied index.
pub const APPLY_STATE_KEY: &[u8] = b"apply_state";
/// The last compaction revision applied, in [`RAFT_BUCKET`] (etcd keeps the
/// same fact as `scheduledCompactRev`).
pub const SCHEDULED_COMPACTION_KEY: &[u8] = b"scheduledCompactRev";

/// The bucket holding cluster-wide facts fixed at bootstrap.
pub const CLUSTER_BUCKET: &str = "cluster";
/// The cluster ID, in [`CLUSTER_BUCKET`].
pub const CLUSTER_ID_KEY: &[u8] = b"id";
/// This member's own ID (derived from flags, or assigned by MemberAdd). The one
/// member-local fact in the engine: a snapshot from the leader carries the leader's,
/// which the installer replaces (see `state::snapshot_install`).
pub const MEMBER_ID_KEY: &[u8] = b"member_id";

/// The cluster's downgrade state, in [`CLUSTER_BUCKET`] (etcd keeps it under
/// the same key, as JSON): an `etcdserverpb.DowngradeInfo`.
pub const DOWNGRADE_KEY: &[u8] = b"downgrade";
/// The cluster version the leader set while a downgrade moved it below the
/// members' own, in [`CLUSTER_BUCKET`] (etcd's `clusterVersion` key): text
/// "major.minor.0". Absent: the members' own version
/// ([`crate::version::cluster_version`]).
pub const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";

/// The bucket holding one `StoredMember` per member, keyed by [`member_key`].
pub const MEMBERS_BUCKET: &str = "members";
/// The bucket recording every member removed from the cluster (etcd's
/// `members_removed`): key as in [`MEMBERS_BUCKET`], value [`REMOVED_VALUE`].
/// A removed member's ID never comes back, so its peer traffic is refused.
pub const REMOVED_BUCKET: &str = "members_removed";
/// The value of a [`REMOVED_BUCKET`] record (etcd's).
pub const REMOVED_VALUE: &[u8] = b"removed";

/// The key of a member in [`MEMBERS_BUCKET`] and [`REMOVED_BUCKET`]: its ID, big-endian.
pub fn member_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The bucket holding one `AlarmMember` per raised alarm, keyed by [`alarm_key`].
pub const ALARM_BUCKET: &str = "alarm";

/// The key of an alarm in [`ALARM_BUCKET`]: member ID then alarm type, big-endian.
pub fn alarm_key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

/// The bucket holding one `StoredLease` per lease, keyed by [`lease_key`].
pub const LEASE_BUCKET: &str = "lease";

/// The key of a lease in [`LEASE_BUCKET`].
pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

/// etcd's bucket of the enabled flag and the auth revision.
pub const AUTH_BUCKET: &str = "auth";
/// etcd's bucket of users: name -> `authpb.User`.
pub const USERS_BUCKET: &str = "authUsers";
/// etcd's bucket of roles: name -> `authpb.Role`.
pub const ROLES_BUCKET: &str = "authRoles";
/// Whether auth is enabled, in [`AUTH_BUCKET`] (etcd's encoding).
pub const AUTH_ENABLED_KEY: &[u8] = b"authEnabled";
/// The auth store's revision, in [`AUTH_BUCKET`] (etcd's encoding).
pub const AUTH_REVISION_KEY: &[u8] = b"authRevision";
