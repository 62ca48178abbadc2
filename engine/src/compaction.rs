//! Compaction: dropping history at or below a revision, in bounded batches.
//!
//! `compact(C)` only records C (under the writer lock, so it is ordered with writes like
//! the Raft entry it comes from); reads below C fail from then on. The background
//! committer then walks the index `compaction_batch_limit` keys at a time (holding the
//! index lock only for one batch), dropping for every key all revisions `<= C` but the
//! latest, and that one too if it is a tombstone; each batch's dropped revisions are
//! deleted from the tree by the next commit. The commit after the last batch records C as
//! finished, so a restart resumes an unfinished compaction.
//!
//! Compaction only starts once every revision `<= C` is in the tree (it waits one commit),
//! so the memtable never holds a revision it deletes.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use crate::engine::Inner;
use crate::error::{Error, Result};

/// A compaction in progress.
#[derive(Debug)]
pub(crate) struct CompactionJob {
    pub target: i64,
    /// Resume after this key (`None`: from the first key).
    pub after: Option<Vec<u8>>,
}

impl CompactionJob {
    pub fn new(target: i64) -> CompactionJob {
        CompactionJob { target, after: None }
    }
}

impl Inner {
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
}

/// One batch of compaction work, if any is due. Called by the committer before it commits.
pub(crate) fn step(inner: &Inner) -> Result<()> {
    let mut guard = inner.commit.lock();
    let cs = &mut *guard;
    let scheduled = inner.compact_rev.load(Ordering::Acquire);
    if cs.job.is_none() && scheduled > cs.compacted_through {
        cs.job = Some(CompactionJob::new(scheduled));
    }
    let Some(job) = cs.job.as_mut() else { return Ok(()) };
    // Everything <= target must be in the tree first.
    if cs.meta.current_revision < job.target {
        return Ok(());
    }
    let target = job.target;
    let mut removed = Vec::new();
    let mut last = None;
    {
        let mut index = inner.index.write();
        let lower = match &job.after {
            Some(k) => Bound::Excluded(&k[..]),
            None => Bound::Unbounded,
        };
        let mut empty = Vec::new();
        let mut n = 0;
        for (k, ki) in index.range_mut::<[u8], _>((lower, Bound::Unbounded)) {
            if ki.compact(target, &mut removed) {
                empty.push(k.clone());
            }
            n += 1;
            if n == inner.opts.compaction_batch_limit.max(1) {
                last = Some(k.clone());
                break;
            }
        }
        for k in empty {
            index.remove(&k);
        }
    }
    cs.deletions.extend(removed);
    match last {
        Some(k) => job.after = Some(k),
        None => {
            cs.job = None;
            cs.compacted_through = target;
            cs.finishing = Some(target);
        }
    }
    Ok(())
}
