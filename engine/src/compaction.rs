//! Compaction: dropping history at or below a revision, in bounded batches.
//!
//! `compact(C)` only records C (under the writer lock, so it is ordered with writes like
//! the Raft entry it comes from); reads below C fail from then on. The background
//! committer then works in two passes of bounded batches, each batch followed by a commit:
//!
//! 1. the index pass walks the index `compaction_batch_limit` keys at a time (holding the
//!    index lock only for one batch), dropping for every key all revisions `<= C` but the
//!    latest, and that one too if it is a tombstone;
//! 2. the tree pass walks the revision tree in revision order, `TREE_BATCH_FACTOR *
//!    compaction_batch_limit` revisions `<= C` at a time, and deletes each one that is not
//!    the version its key shows at C (as etcd's compaction walks its revision bucket).
//!    Deleting in revision order rewrites each leaf of the compacted range about once;
//!    deleting each index batch's revisions instead rewrote leaves all over the tree every
//!    batch (its keys' revisions are scattered), many times the tree's size in writes.
//!
//! The commit after the last batch records C as finished, so a restart resumes an
//! unfinished compaction (from its start: both passes are idempotent).
//!
//! Compaction only starts once every revision `<= C` is in the tree (it waits one commit),
//! so the memtable never holds a revision it deletes.

use std::sync::atomic::Ordering;

use crate::btree::Cursor;
use crate::codec::{decode_record, decode_rev, encode_rev};
use crate::error::{Error, Result};
use crate::revision::Revision;
use crate::shared::{CompactionJob, Shared};

/// Revisions the tree pass visits per batch, per key of `compaction_batch_limit`: a key
/// batch drops about this many revisions when keys have a few versions each.
pub const TREE_BATCH_FACTOR: usize = 16;

/// Index lookups per hold of the index lock in the tree pass (writers wait at most this long).
const LOOKUP_CHUNK: usize = 1024;

impl Shared {
    /// Records a compaction at `rev`, in write order.
    pub(crate) fn schedule_compaction(&self, rev: i64) -> Result<()> {
        let _writer = self.writer.lock();
        let cur = self.current_rev.load(Ordering::Acquire);
        if rev <= self.compact_rev.load(Ordering::Acquire) {
            return Err(Error::Compacted);
        }
        if rev > cur {
            return Err(Error::FutureRevision);
        }
        {
            // Readers check the compaction revision under the index lock.
            let _index = self.index.write();
            self.compact_rev.store(rev, Ordering::Release);
        }
        self.wake_committer();
        Ok(())
    }

    /// Blocks until the physical work of every compaction up to `revision` is done
    /// ([`Engine::wait_compacted`](crate::Engine::wait_compacted)).
    pub(crate) fn wait_compacted(&self, revision: i64) {
        let target = revision.min(self.compact_rev.load(Ordering::Acquire));
        let mut done = self.finished_compact.lock();
        while *done < target
            && self.poisoned.lock().is_none()
            && !self.shutdown.load(Ordering::Acquire)
        {
            self.wake_committer();
            self.compacted_cv.wait_for(&mut done, std::time::Duration::from_millis(50));
        }
    }
}

/// One batch of compaction work, if any is due. Called by the committer before it commits.
pub(crate) fn step(shared: &Shared) -> Result<()> {
    let mut guard = shared.commit.lock();
    let cs = &mut *guard;
    let scheduled = shared.compact_rev.load(Ordering::Acquire);
    if cs.job.is_none() && scheduled > cs.compacted_through {
        cs.job = Some(CompactionJob::new(scheduled));
    }
    let Some(job) = cs.job.as_mut() else { return Ok(()) };
    if cs.meta.current_revision < job.target {
        // Wait until every revision <= target is committed to the tree.
        return Ok(());
    }
    let target = job.target;
    let batch = shared.opts.compaction_batch_limit.max(1);

    let Some(from) = job.tree_from else {
        // The index pass.
        let mut removed = Vec::new();
        let mut last = None;
        let mut index = shared.index.write();
        let mut empty = Vec::new();
        let mut n = 0;
        index.for_each_mut(job.after.as_deref(), |k, ki| {
            // The tree pass finds the dropped revisions itself, in tree order.
            removed.clear();
            if ki.compact(target, &mut removed) {
                empty.push(k.to_vec());
            }
            n += 1;
            if n == batch {
                last = Some(k.to_vec());
                return false;
            }
            true
        });
        for k in empty {
            index.remove(&k);
        }
        match last {
            Some(k) => job.after = Some(k),
            None => {
                job.after = None;
                job.tree_from = Some(Revision::new(0, 0));
            }
        }
        return Ok(());
    };

    // The tree pass: the next revisions <= target, with their keys, read from the committed
    // tree (which only this thread changes, under the commit lock).
    let mut found: Vec<(Revision, Vec<u8>)> = Vec::new();
    let mut next = None;
    let root = cs.meta.rev_root;
    let mut c = Cursor::seek(&shared.store, root, &encode_rev(from))?;
    while let Some((k, v)) = c.next()? {
        let rev =
            decode_rev(&k).ok_or_else(|| shared.store.corrupted(root, "malformed revision key"))?;
        if rev.main > target {
            break;
        }
        if found.len() == batch * TREE_BATCH_FACTOR {
            next = Some(rev);
            break;
        }
        let rec = decode_record(&v).ok_or_else(|| {
            shared.store.corrupted(root, format!("malformed record at revision {rev}"))
        })?;
        found.push((rev, rec.key.to_vec()));
    }
    // A revision <= target stays only if it is the version its key shows at target (writes
    // never change that, and the index pass keeps it).
    for chunk in found.chunks(LOOKUP_CHUNK) {
        let index = shared.index.read();
        for (rev, key) in chunk {
            let kept = index.get(key).and_then(|ki| ki.get(target)).is_some_and(|h| h.rev == *rev);
            if !kept {
                cs.deletions.push(*rev);
            }
        }
    }
    match next {
        Some(r) => job.tree_from = Some(r),
        None => {
            cs.job = None;
            cs.compacted_through = target;
            cs.finishing = Some(target);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::btree::Cursor;
    use crate::codec::decode_rev;
    use crate::revision::Revision;
    use crate::{Engine, MemStorage, Options};

    /// Every revision in the committed revision tree.
    fn tree_revisions(e: &Engine) -> Vec<Revision> {
        let cs = e.shared.commit.lock();
        let mut c = Cursor::seek(&e.shared.store, cs.meta.rev_root, b"").unwrap();
        let mut out = Vec::new();
        while let Some((k, _)) = c.next().unwrap() {
            out.push(decode_rev(&k).unwrap());
        }
        out
    }

    #[test]
    fn tree_keeps_exactly_each_keys_version_at_the_compaction_and_later_ones() {
        let opts = Options { compaction_batch_limit: 1, ..Options::default() };
        let e = Engine::open_with_storage(Arc::new(MemStorage::new()), "db", opts).unwrap();
        let put = |k: &str, raft: u64| {
            let mut t = e.write(raft);
            t.put(k.as_bytes(), b"v", 0).unwrap();
            t.commit()
        };
        // Many versions per key, spread over the tree (batches of one key, tree batches of 16);
        // the first write gets revision 2.
        for round in 0..10u64 {
            for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
                put(k, round * 4 + i as u64 + 1);
            }
        }
        let mut t = e.write(100);
        t.delete_range(b"b", b"").unwrap();
        let deleted_at = t.commit();
        let target = put("c", 101);
        let after = put("a", 102);
        e.commit().unwrap();
        let before = tree_revisions(&e);
        assert_eq!(before.len(), 43);

        e.compact(target).unwrap();
        e.wait_compacted(target);
        e.commit().unwrap();
        // a: its version at target (round 9) and the one after; b: gone (deleted at or below
        // target); c: the put at target; d: round 9's put.
        let mut want: Vec<Revision> = [38, 41, target, after].map(|m| Revision::new(m, 0)).to_vec();
        want.sort();
        assert!(deleted_at < target);
        assert_eq!(tree_revisions(&e), want);
        e.verify().unwrap();
    }
}
