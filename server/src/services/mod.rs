//! The etcd v3 gRPC services, one file each, over one [`context::Context`]
//! built by the member's wiring.
//!
//! - [`kv`], [`watch`], [`lease`], [`cluster`], [`maintenance`], [`auth`]:
//!   the services.
//! - [`lock`], [`election`]: etcd's Lock and Election services, built on
//!   the KV service's reads and writes and on [`waiting`] (queues of keys
//!   under a prefix, and waiting for one's turn through the watch hub).
//! - [`context`]: what every handler works with.
//! - [`quota`]: the backend quota checked before growing writes.
//! - [`range_stream`]: `KV.RangeStream`, a Range in chunks at one revision.
//! - [`leader`]: the connection to the leader's peer port.
//! - [`request_log`]: `--request-log`, each client request's shape in a file.
//!
//! May import `raft`, `watch`, `peer`, `state` and the leaves; never `http`
//! or the member wiring.

pub mod auth;
pub mod cluster;
pub mod context;
pub mod election;
pub mod kv;
pub mod leader;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod quota;
pub mod range_stream;
pub mod request_log;
pub mod waiting;
pub mod watch;

/// The gRPC metadata key and value of etcd's require-leader calls
/// (`rpctypes.MetadataRequireLeaderKey`, `MetadataHasLeader`).
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
pub const REQUIRE_LEADER_VALUE: &str = "true";

/// Whether a call asks to run only while there is a leader, given its
/// `hasleader` metadata value.
pub fn requires_leader(hasleader: Option<&[u8]>) -> bool {
    hasleader == Some(REQUIRE_LEADER_VALUE.as_bytes())
}
