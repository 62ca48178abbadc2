//! Write transactions: one Raft entry's writes, one main revision.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::MutexGuard;

use crate::codec::{self, decode_record};
use crate::error::Result;
use crate::key_index::Hit;
use crate::kv::{KeyValue, RangeOptions, RangeResult};
use crate::read::to_kv;
use crate::revision::Revision;
use crate::shared::{Shared, WriterState};

/// An encoded record (`codec::encode_put` / `encode_tombstone`), shared.
type Record = Arc<[u8]>;

/// The single write transaction. Holds the writer lock (readers never wait for it). Its
/// writes are applied to the index and memtable as they are made, invisible to readers
/// (their revision is above the current one) until [`WriteTxn::commit`] publishes them all
/// at once. Dropped without `commit`, it is rolled back.
pub struct WriteTxn<'a> {
    shared: &'a Shared,
    _guard: MutexGuard<'a, WriterState>,
    raft_index: u64,
    /// The main revision of this transaction's writes.
    rev: i64,
    /// Next sub revision (= number of changes made).
    sub: i64,
    meta_ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    done: bool,
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn begin(shared: &'a Shared, raft_index: u64) -> WriteTxn<'a> {
        let guard = shared.writer.lock();
        let rev = shared.current_rev.load(Ordering::Acquire) + 1;
        WriteTxn {
            shared,
            _guard: guard,
            raft_index,
            rev,
            sub: 0,
            meta_ops: Vec::new(),
            done: false,
        }
    }

    /// The main revision this transaction's writes get.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    fn next_rev(&mut self) -> Revision {
        let r = Revision::new(self.rev, self.sub);
        self.sub += 1;
        r
    }

    /// Puts `key = value` with `lease` (0 = none); returns the version it replaced.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>> {
        let ver = self.shared.pin();
        let prev = self.put_inner(key, value, lease, true)?;
        match prev {
            Some((h, Some(rec))) => {
                let mut kv = to_kv(&self.shared.store, h.rev, &rec, false)?;
                kv.create_revision = h.create_revision;
                kv.version = h.version;
                Ok(Some(kv))
            }
            Some((h, None)) => {
                let mut kv = self.shared.fetch_kv(&ver, h.rev, false)?;
                kv.create_revision = h.create_revision;
                kv.version = h.version;
                Ok(Some(kv))
            }
            None => Ok(None),
        }
    }

    /// Like [`WriteTxn::put`] without fetching the replaced version (cheaper).
    pub fn put_without_prev(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<()> {
        self.put_inner(key, value, lease, false).map(|_| ())
    }

    /// Applies a put; returns the version it replaced and, if `want_prev` and it was cached,
    /// that version's record.
    fn put_inner(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        want_prev: bool,
    ) -> Result<Option<(Hit, Option<Record>)>> {
        let rev = self.next_rev();
        let (record, prev) = {
            let mut index = self.shared.index.write();
            let mut ki = index.get_or_insert(key);
            // Taken before the put: a cached record is always of the key's last put.
            let prev_rec = if want_prev { ki.live().and_then(|h| ki.cached(h.rev)) } else { None };
            let prev_rec = prev_rec.map(Arc::from);
            let (create, version, prev) = ki.put(rev);
            let prev = prev.map(|h| (h, prev_rec));
            let record = codec::encode_put(key, create, version, lease, value);
            ki.set_latest(rev, &record);
            (record, prev)
        };
        self.shared.memtable.write().insert(rev, record.into());
        Ok(prev)
    }

    /// Deletes every live key in etcd's range `[key, range_end)`; returns the deleted versions.
    pub fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        // (key, deleted version, its cached record, tombstone revision)
        let mut deleted: Vec<(Vec<u8>, Hit, Option<Record>, Revision)> = Vec::new();
        {
            let mut index = self.shared.index.write();
            let mut keys: Vec<Vec<u8>> = Vec::new();
            if range_end.is_empty() {
                if index.get(key).is_some_and(|ki| ki.live().is_some()) {
                    keys.push(key.to_vec());
                }
            } else if range_end == [0] || range_end > key {
                use std::ops::Bound;
                let upper =
                    if range_end == [0] { Bound::Unbounded } else { Bound::Excluded(range_end) };
                keys = index
                    .range(Bound::Included(key), upper)
                    .filter(|ki| ki.live().is_some())
                    .map(|ki| ki.key().to_vec())
                    .collect();
            }
            for k in keys {
                let rev = Revision::new(self.rev, self.sub);
                self.sub += 1;
                let mut ki = index.get_mut(&k).expect("key was live");
                // Taken before the tombstone: a cached record is always of the key's last put.
                let rec = ki.live().and_then(|h| ki.cached(h.rev)).map(Arc::from);
                let hit = ki.tombstone(rev).expect("key was live");
                ki.clear_latest();
                deleted.push((k, hit, rec, rev));
            }
        }
        {
            let mut mt = self.shared.memtable.write();
            for (k, _, _, rev) in &deleted {
                mt.insert(*rev, codec::encode_tombstone(k).into());
            }
        }
        let ver = self.shared.pin();
        let mut out = Vec::with_capacity(deleted.len());
        for (_, h, rec, _) in deleted {
            let mut kv = match rec {
                Some(rec) => to_kv(&self.shared.store, h.rev, &rec, false)?,
                None => self.shared.fetch_kv(&ver, h.rev, false)?,
            };
            kv.create_revision = h.create_revision;
            kv.version = h.version;
            out.push(kv);
        }
        Ok(out)
    }

    /// Reads as of this transaction: sees its own earlier writes.
    pub fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        let cur = if self.sub > 0 { self.rev } else { self.rev - 1 };
        self.shared.range_at(opts, cur)
    }

    /// Sets a side-bucket key (made visible and persisted with this transaction).
    ///
    /// # Panics
    /// If `1 + bucket.len() + key.len()` exceeds [`crate::btree::max_key_len`] of the page
    /// size (498 bytes with 4 KiB pages): side-bucket keys are the server's own ids and names.
    pub fn meta_put(&mut self, bucket: &str, key: &[u8], value: &[u8]) {
        let k = self.meta_key(bucket, key);
        self.meta_ops.push((k, Some(value.to_vec())));
    }

    /// Deletes a side-bucket key.
    pub fn meta_delete(&mut self, bucket: &str, key: &[u8]) {
        let k = self.meta_key(bucket, key);
        self.meta_ops.push((k, None));
    }

    fn meta_key(&self, bucket: &str, key: &[u8]) -> Vec<u8> {
        let k = codec::encode_meta_key(bucket, key);
        let max = crate::btree::max_key_len(self.shared.store.page_size());
        assert!(
            k.len() <= max,
            "side-bucket key of {} bytes in bucket {bucket:?} exceeds {max} bytes",
            k.len()
        );
        k
    }

    /// Publishes the writes to readers at once; returns the current revision. Durability
    /// follows with the next background commit (or [`crate::Engine::commit`]).
    pub fn commit(mut self) -> i64 {
        self.done = true;
        let shared = self.shared;
        if !self.meta_ops.is_empty() {
            let mut metas = shared.metas.write();
            for (k, v) in &self.meta_ops {
                match v {
                    Some(v) => metas.insert(k.clone(), v.clone()),
                    None => metas.remove(k),
                };
            }
            drop(metas);
            // The guard is this transaction's writer lock; the committer reads this list under it.
            let ops = std::mem::take(&mut self.meta_ops);
            self._guard.pending_meta.extend(ops);
        }
        let cur = if self.sub > 0 { self.rev } else { self.rev - 1 };
        shared.applied_index.store(
            self.raft_index.max(shared.applied_index.load(Ordering::Acquire)),
            Ordering::Release,
        );
        shared.current_rev.store(cur, Ordering::Release);
        let n = self.sub.max(1) as usize;
        let before = shared.writes_since_commit.fetch_add(n, Ordering::AcqRel);
        if before < shared.opts.commit_max_writes && before + n >= shared.opts.commit_max_writes {
            shared.wake_committer();
        }
        cur
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if self.done || self.sub == 0 {
            return;
        }
        // Roll back: every change of this transaction is in the memtable under `self.rev`.
        let mut mt = self.shared.memtable.write();
        let revs: Vec<Revision> = mt
            .range(Revision::new(self.rev, 0)..=Revision::max_of(self.rev))
            .map(|(r, _)| *r)
            .collect();
        let mut index = self.shared.index.write();
        for r in revs {
            if let Some(rec) = mt.remove(&r)
                && let Some(d) = decode_record(&rec)
                && let Some(mut ki) = index.get_mut(d.key)
            {
                // The version live again is read from the tree or memtable: uncached.
                ki.clear_latest();
                if ki.rollback(self.rev) {
                    index.remove(d.key);
                }
            }
        }
    }
}
