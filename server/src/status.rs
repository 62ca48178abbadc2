//! What the Raft thread publishes about the member for everyone else: its
//! IDs, the leader, the term, the commit and applied indexes, and whether
//! it has stopped. The Raft loop is the only writer; services, the watch hub
//! and metrics read it, and every response header is built here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use logbook_api::etcdserverpb::ResponseHeader;

/// The member's Raft status, updated by the Raft loop.
#[derive(Debug)]
pub struct RaftStatus {
    /// The cluster this member belongs to (fixed once the member runs).
    pub cluster_id: u64,
    /// This member's ID (fixed once the member runs).
    pub member_id: u64,
    /// Member ID of the leader, 0 when unknown.
    leader: AtomicU64,
    term: AtomicU64,
    commit_index: AtomicU64,
    applied_index: AtomicU64,
    stopped: AtomicBool,
    /// When this member last saw a leader elected (etcd's
    /// `leadElectedTime`), to tell a request that timed out across a
    /// failover from one that timed out otherwise.
    leader_elected: Mutex<Option<Instant>>,
}

impl RaftStatus {
    /// A member that has applied up to `applied` and knows no leader yet.
    pub fn new(cluster_id: u64, member_id: u64, applied: u64) -> Self {
        RaftStatus {
            cluster_id,
            member_id,
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            commit_index: AtomicU64::new(applied),
            applied_index: AtomicU64::new(applied),
            stopped: AtomicBool::new(false),
            leader_elected: Mutex::new(None),
        }
    }

    /// A response header as this member would send it now.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.term(),
        }
    }

    /// The current leader's ID, if there is one.
    pub fn leader(&self) -> Option<u64> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Whether this member leads.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.member_id)
    }

    /// Records a new leader (0: none); returns the one before.
    pub fn set_leader(&self, id: u64) -> u64 {
        let before = self.leader.swap(id, Ordering::AcqRel);
        if id != 0 && id != before {
            *self.leader_elected.lock() = Some(Instant::now());
        }
        before
    }

    /// When this member last saw a (new) leader.
    pub fn leader_elected_at(&self) -> Option<Instant> {
        *self.leader_elected.lock()
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    pub fn set_term(&self, term: u64) {
        self.term.store(term, Ordering::Release);
    }

    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Acquire)
    }

    pub fn set_commit_index(&self, index: u64) {
        self.commit_index.store(index, Ordering::Release);
    }

    /// Index of the last entry applied to the engine.
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    pub fn set_applied_index(&self, index: u64) {
        self.applied_index.store(index, Ordering::Release);
    }

    /// Whether the Raft loop has stopped (nothing proposed will be applied).
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_carries_the_ids_and_the_current_term() {
        let s = RaftStatus::new(7, 9, 3);
        s.set_term(4);
        let h = s.header(12);
        assert_eq!((h.cluster_id, h.member_id, h.revision, h.raft_term), (7, 9, 12, 4));
        assert_eq!(s.leader(), None);
        assert_eq!(s.set_leader(9), 0);
        assert!(s.is_leader());
        assert_eq!((s.commit_index(), s.applied_index()), (3, 3));
    }
}
