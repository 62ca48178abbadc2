//! The peer side: how Raft messages travel between members.
//!
//! - [`transport`]: one link per peer, written by the Raft thread.
//! - [`lane`]: the framed Raft lane connection, both ends, and how a peer
//!   listener tells it from HTTP/2.
//! - [`service`]: the peer gRPC service (hello, snapshots, lease queries).
//!
//! What arrives is handed to Raft through [`RaftSink`], so this folder
//! imports nothing of `raft` (as etcd's `rafthttp.Raft` interface keeps its
//! transport apart from its node). May import `state` and the leaves.

pub mod lane;
pub mod service;
pub mod transport;

use std::sync::Arc;

use raft::prelude::Message;

/// The Raft thread, as the peer side holds it.
pub type Sink = Arc<dyn RaftSink>;

/// How the peer service proposes a membership change a follower forwarded.
pub type Changes = Arc<dyn ConfChanges>;

/// Membership changes on the leader, for followers' clients.
#[tonic::async_trait]
pub trait ConfChanges: Send + Sync + 'static {
    /// On the leader: checks a promoted learner is in sync, proposes the
    /// change and waits until it is applied; returns the revision and the
    /// applied index after it. Elsewhere: [`crate::error::Error::NotLeader`].
    async fn forwarded(
        &self,
        change: raft::prelude::ConfChangeType,
        node_id: u64,
        member: logbook_api::logbookpb::StoredMember,
        promote: bool,
    ) -> crate::error::Result<(i64, u64)>;
}

/// Where the peer side hands what it receives: the Raft thread's inbox.
pub trait RaftSink: Send + Sync + 'static {
    /// A message from a peer; false when Raft is gone.
    fn step(&self, m: Message) -> bool;
    /// Peer `peer` could not be reached.
    fn unreachable(&self, peer: u64);
    /// A snapshot sent to `peer` arrived (true) or failed (false).
    fn snapshot_status(&self, peer: u64, delivered: bool);
    /// A peer's Raft lane, its hello answered: Raft reads it from now on.
    fn lane(&self, lane: lane::Incoming);
    /// This member was told it has been removed from the cluster: stop.
    fn stop(&self);
}
