//! HashKV as etcd answers it (its `mvcc.HashStorage`): the hash of every key
//! version up to a revision, with the compaction it was computed against
//! and the revision it covers (`hash_revision`, etcd 3.6), and the hashes
//! recorded at compactions, which the leader's compaction hash check
//! compares across members (`member/corruption.rs`).
//!
//! At a compaction to R, a member records the hash of the store up to R as
//! it stood just before (so against the previous compaction P): every
//! member that applied the same log records the same value for R, whatever
//! its physical compaction progress. A later HashKV for exactly R answers
//! from the record, as etcd does, so a peer asked for R answers with P even
//! though it has compacted to R since. The records are in memory only (the
//! last [`MAX_RECORDED`], as etcd keeps them), and are taken only with the
//! CompactHashCheck gate on: the hash reads the whole store on the apply
//! path, a cost etcd folds into its compaction pass.

use logbook_engine::Engine;
use parking_lot::Mutex;

use crate::error::Result;

/// How many compaction hashes are kept (etcd's `hashStorageMaxSize`).
pub const MAX_RECORDED: usize = 10;

/// One hash of the key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyValueHash {
    pub hash: u32,
    /// The compaction in force when the hash was taken.
    pub compact_revision: i64,
    /// The revision the hash covers (inclusive).
    pub revision: i64,
}

/// The member's hashes: computed on demand, recorded at compactions.
pub struct HashStorage {
    /// Whether compactions record their hash (the CompactHashCheck gate).
    record_compactions: bool,
    /// Recorded hashes in revision order, at most [`MAX_RECORDED`].
    recorded: Mutex<Vec<KeyValueHash>>,
}

impl HashStorage {
    pub fn new(record_compactions: bool) -> Self {
        HashStorage { record_compactions, recorded: Mutex::new(Vec::new()) }
    }

    /// etcd's `HashByRev`: the hash up to `revision` (`<= 0`: the current
    /// revision), a recorded one if a compaction recorded that revision, and
    /// the store's current revision.
    pub fn hash_by_rev(&self, engine: &Engine, revision: i64) -> Result<(KeyValueHash, i64)> {
        if revision > 0
            && let Some(h) = self.recorded.lock().iter().find(|h| h.revision == revision)
        {
            return Ok((*h, engine.current_revision()));
        }
        let current = engine.current_revision();
        let revision = if revision <= 0 { current } else { revision };
        let (hash, compact_revision) = engine.hash_kv(revision)?;
        Ok((KeyValueHash { hash, compact_revision, revision }, current))
    }

    /// Called as a compaction to `revision` is applied, before the engine
    /// is told of it: records the hash up to `revision` (when enabled).
    pub fn compacting(&self, engine: &Engine, revision: i64) -> Result<()> {
        if !self.record_compactions {
            return Ok(());
        }
        let (hash, compact_revision) = engine.hash_kv(revision)?;
        let h = KeyValueHash { hash, compact_revision, revision };
        tracing::info!(
            hash = h.hash,
            revision = h.revision,
            compact_revision = h.compact_revision,
            "storing new hash"
        );
        self.store(h);
        Ok(())
    }

    fn store(&self, h: KeyValueHash) {
        let mut recorded = self.recorded.lock();
        recorded.retain(|r| r.revision != h.revision);
        recorded.push(h);
        recorded.sort_by_key(|r| r.revision);
        let excess = recorded.len().saturating_sub(MAX_RECORDED);
        recorded.drain(..excess);
    }

    /// The recorded hashes, newest first (etcd's `Hashes`, sorted as its
    /// compaction hash check walks them).
    pub fn recorded(&self) -> Vec<KeyValueHash> {
        let mut v = self.recorded.lock().clone();
        v.reverse();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with(n: u64) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let engine =
            Engine::open(dir.path().join("db"), logbook_engine::Options::default()).unwrap();
        for i in 0..n {
            let mut txn = engine.write(i + 1);
            txn.put(b"k", format!("v{i}").as_bytes(), 0).unwrap();
            txn.commit();
        }
        (dir, engine)
    }

    #[test]
    fn hash_revision_is_the_revision_hashed() {
        // Five puts: revisions 2 to 6, as in etcd (the store starts at 1).
        let (_dir, engine) = engine_with(5);
        let hs = HashStorage::new(false);
        let (h, current) = hs.hash_by_rev(&engine, 0).unwrap();
        assert_eq!((h.revision, h.compact_revision, current), (6, 0, 6));
        let (h3, current) = hs.hash_by_rev(&engine, 3).unwrap();
        assert_eq!((h3.revision, current), (3, 6));
        assert_ne!(h3.hash, h.hash);
        assert!(matches!(hs.hash_by_rev(&engine, 7), Err(crate::Error::FutureRevision)));
    }

    #[test]
    fn a_compaction_records_the_hash_before_it_and_answers_for_its_revision() {
        let (_dir, engine) = engine_with(6);
        let hs = HashStorage::new(true);
        let (before, _) = hs.hash_by_rev(&engine, 4).unwrap();
        hs.compacting(&engine, 4).unwrap();
        engine.compact(4).unwrap();
        // Asked for 4 again, the recorded hash (against no compaction) answers.
        let (at4, current) = hs.hash_by_rev(&engine, 4).unwrap();
        assert_eq!((at4, current), (before, 7));
        assert_eq!(hs.recorded(), vec![before]);
        // Other revisions are computed against the new compaction.
        let (now, _) = hs.hash_by_rev(&engine, 0).unwrap();
        assert_eq!(now.compact_revision, 4);
        assert!(matches!(hs.hash_by_rev(&engine, 3), Err(crate::Error::Compacted)));
    }

    #[test]
    fn only_the_newest_hashes_are_kept() {
        let (_dir, engine) = engine_with(15);
        let hs = HashStorage::new(true);
        for rev in 1..=12 {
            hs.compacting(&engine, rev).unwrap();
            engine.compact(rev).unwrap();
        }
        let revs: Vec<i64> = hs.recorded().iter().map(|h| h.revision).collect();
        assert_eq!(revs, (3..=12).rev().collect::<Vec<_>>());
        // Disabled: nothing recorded.
        let off = HashStorage::new(false);
        off.compacting(&engine, 13).unwrap();
        assert!(off.recorded().is_empty());
    }
}
