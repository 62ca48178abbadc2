//! Whole-store history, both ways: a consistent point-in-time read of every stored revision
//! (for exporting the store in another format, e.g. etcd's snapshot), and a bulk load of a
//! history with explicit revisions into an empty engine (for importing one).
//!
//! What "every stored revision" means after a compaction at C, as etcd keeps it: every
//! revision above C, and for each key the version visible at C if it is a put (tombstones
//! at or below C and everything they superseded are gone). [`History`] reports exactly that
//! whatever the physical progress of the compaction, and [`BulkLoad`] expects exactly that.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::btree::Cursor;
use crate::codec::{self, decode_record, encode_rev};
use crate::error::{Error, Result};
use crate::revision::Revision;
use crate::shared::{Shared, Version};

/// Records read from the tree per seek while iterating.
const BATCH: usize = 512;
/// A bulk load commits once this many bytes of records are waiting.
const LOAD_COMMIT_BYTES: usize = 8 << 20;

/// One stored revision of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: Revision,
    pub key: Vec<u8>,
    /// `None` for a tombstone (a delete).
    pub put: Option<PutRecord>,
}

/// The fields of a put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: Vec<u8>,
}

/// A consistent point-in-time view of the whole store: revisions, compaction, applied
/// index and side buckets all as of one write. Holding it pins one tree version (no page
/// it reads is reused) but blocks neither readers nor writers.
pub struct History {
    shared: Arc<Shared>,
    ver: Arc<Version>,
    revision: i64,
    compact_revision: i64,
    applied_index: u64,
    /// For each key, the revision compaction keeps at or below `compact_revision`.
    keep: HashSet<Revision>,
    metas: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl History {
    /// Takes the view ([`Engine::history`](crate::Engine::history)).
    pub(crate) fn new(shared: &Arc<Shared>) -> Result<History> {
        // Most of it into the tree first, so that iterating rarely needs the memtable.
        shared.commit_now()?;
        // Under the writer lock nothing is half-applied: revision, applied index and side
        // buckets agree. Revisions above `revision` are never visited.
        let _writer = shared.writer.lock();
        let ver = shared.pin();
        let revision = shared.current_rev.load(Ordering::Acquire);
        let applied_index = shared.applied_index.load(Ordering::Acquire);
        let metas = shared.metas.read().clone();
        let index = shared.index.read();
        let compact_revision = shared.compact_rev.load(Ordering::Acquire);
        let keep = if compact_revision > 0 {
            index.iter().filter_map(|ki| ki.get(compact_revision).map(|h| h.rev)).collect()
        } else {
            HashSet::new()
        };
        drop(index);
        Ok(History {
            shared: shared.clone(),
            ver,
            revision,
            compact_revision,
            applied_index,
            keep,
            metas,
        })
    }

    /// The store's revision at this point.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The compaction revision at this point (0: never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The last Raft index applied at this point.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Every (key, value) of a side bucket at this point, in key order.
    pub fn meta_scan(&self, bucket: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let prefix = codec::encode_meta_key(bucket, b"");
        self.metas
            .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
            .collect()
    }

    /// Every stored revision in revision order (may be called again: same answer).
    pub fn records(&self) -> Records<'_> {
        Records { h: self, next: Revision::new(0, 0), buf: Vec::new(), pos: 0, done: false }
    }

    fn visible(&self, rev: Revision) -> bool {
        rev.main > self.compact_revision || self.keep.contains(&rev)
    }

    /// Scans up to `BATCH` stored revisions at or after `from`, pushing the visible ones;
    /// returns the last revision scanned (`None`: nothing left).
    fn batch(&self, from: Revision, out: &mut Vec<RevisionRecord>) -> Result<Option<Revision>> {
        let persisted = self.ver.meta.current_revision.min(self.revision);
        let store = &self.shared.store;
        let mut scanned = 0;
        let mut last = None;
        let push = |rev: Revision, bytes: &[u8], out: &mut Vec<RevisionRecord>| -> Result<()> {
            if !self.visible(rev) {
                return Ok(());
            }
            let rec = decode_record(bytes)
                .ok_or_else(|| store.corrupted(0, format!("malformed record at revision {rev}")))?;
            out.push(RevisionRecord {
                revision: rev,
                key: rec.key.to_vec(),
                put: rec.put.map(|p| PutRecord {
                    create_revision: p.create_revision,
                    version: p.version,
                    lease: p.lease,
                    value: p.value.to_vec(),
                }),
            });
            Ok(())
        };
        if from.main <= persisted {
            let root = self.ver.meta.rev_root;
            let mut c = Cursor::seek(store, root, &encode_rev(from))?;
            while scanned < BATCH {
                let Some((k, v)) = c.next()? else { break };
                let rev = codec::decode_rev(&k)
                    .ok_or_else(|| store.corrupted(root, "malformed revision key"))?;
                if rev.main > persisted {
                    break;
                }
                push(rev, &v, out)?;
                scanned += 1;
                last = Some(rev);
            }
        }
        if scanned < BATCH && self.revision > persisted {
            let lo = from.max(Revision::new(persisted + 1, 0));
            let mt = self.shared.memtable.read();
            for (rev, v) in mt.range(lo..=Revision::max_of(self.revision)) {
                if scanned >= BATCH {
                    break;
                }
                push(*rev, v, out)?;
                scanned += 1;
                last = Some(*rev);
            }
        }
        Ok(last)
    }
}

/// Iterator over a [`History`]'s records, in revision order.
pub struct Records<'a> {
    h: &'a History,
    next: Revision,
    buf: Vec<RevisionRecord>,
    pos: usize,
    done: bool,
}

impl Iterator for Records<'_> {
    type Item = Result<RevisionRecord>;

    fn next(&mut self) -> Option<Result<RevisionRecord>> {
        // Batches may hold nothing visible (a run of revisions compaction dropped but has
        // not yet removed): scan on until one does or the history ends.
        while self.pos == self.buf.len() {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.pos = 0;
            match self.h.batch(self.next, &mut self.buf) {
                Ok(Some(last)) => self.next = Revision::new(last.main, last.sub + 1),
                Ok(None) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let r = std::mem::take(&mut self.buf[self.pos]);
        self.pos += 1;
        Some(Ok(r))
    }
}

/// Loads a history with explicit revisions into an empty engine (see [`Engine::bulk_load`]).
/// Records must come in strictly increasing revision order. Memory stays bounded: loaded
/// records are committed in batches. Nobody else may use the engine until [`BulkLoad::finish`].
pub struct BulkLoad<'a> {
    shared: &'a Shared,
    compact: i64,
    last: Option<Revision>,
    pending: usize,
    metas: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> BulkLoad<'a> {
    /// Starts a bulk load ([`Engine::bulk_load`](crate::Engine::bulk_load)).
    pub(crate) fn new(shared: &'a Shared, compact_revision: i64) -> Result<BulkLoad<'a>> {
        if shared.current_rev.load(Ordering::Acquire) != 1 || !shared.index.read().is_empty() {
            return Err(Error::InvalidArgument("bulk load needs an empty engine".into()));
        }
        if compact_revision < 0 {
            return Err(Error::InvalidArgument("negative compaction revision".into()));
        }
        Ok(BulkLoad {
            shared,
            compact: compact_revision,
            last: None,
            pending: 0,
            metas: Vec::new(),
        })
    }

    fn advance(&mut self, rev: Revision) -> Result<()> {
        if rev.main < 1 || rev.sub < 0 {
            return Err(Error::InvalidArgument(format!("revision {rev} is not a write revision")));
        }
        if let Some(last) = self.last {
            if rev <= last {
                return Err(Error::InvalidArgument(format!(
                    "revision {rev} does not follow revision {last}"
                )));
            }
            if rev.main > last.main {
                // Every change of `last.main` is in: it may be committed.
                self.shared.current_rev.store(last.main, Ordering::Release);
                if self.pending >= LOAD_COMMIT_BYTES {
                    self.shared.commit_now()?;
                    self.pending = 0;
                }
            }
        }
        self.last = Some(rev);
        Ok(())
    }

    /// Loads a put of `key` at `rev`.
    pub fn put(&mut self, rev: Revision, key: &[u8], put: &PutRecord) -> Result<()> {
        if put.create_revision < 1 || put.create_revision > rev.main || put.version < 1 {
            return Err(Error::InvalidArgument(format!(
                "put of {:?} at {rev}: create revision {} and version {} are impossible",
                String::from_utf8_lossy(key),
                put.create_revision,
                put.version
            )));
        }
        self.advance(rev)?;
        let rec: std::sync::Arc<[u8]> =
            codec::encode_put(key, put.create_revision, put.version, put.lease, &put.value).into();
        {
            let mut index = self.shared.index.write();
            let mut ki = index.get_or_insert(key);
            ki.restore(rev, Some((put.create_revision, put.version)));
            ki.set_latest(rev, &rec);
        }
        self.pending += rec.len();
        self.shared.memtable.write().insert(rev, rec);
        Ok(())
    }

    /// Loads a delete of `key` at `rev`. A tombstone at or below the compaction whose key
    /// has no live version is dropped, as compaction would have dropped it.
    pub fn tombstone(&mut self, rev: Revision, key: &[u8]) -> Result<()> {
        self.advance(rev)?;
        {
            let mut index = self.shared.index.write();
            let live = index.get(key).is_some_and(|ki| ki.live().is_some());
            if !live {
                if rev.main <= self.compact {
                    return Ok(());
                }
                return Err(Error::InvalidArgument(format!(
                    "delete of {:?} at {rev}, which is not live",
                    String::from_utf8_lossy(key)
                )));
            }
            let mut ki = index.get_mut(key).expect("live");
            ki.clear_latest();
            ki.restore(rev, None);
        }
        let rec = codec::encode_tombstone(key);
        self.pending += rec.len();
        self.shared.memtable.write().insert(rev, rec.into());
        Ok(())
    }

    /// Sets a side-bucket key (persisted by [`BulkLoad::finish`]).
    pub fn meta_put(&mut self, bucket: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let k = codec::encode_meta_key(bucket, key);
        let max = crate::btree::max_key_len(self.shared.store.page_size());
        if k.len() > max {
            return Err(Error::InvalidArgument(format!(
                "side-bucket key of {} bytes in bucket {bucket:?} exceeds {max} bytes",
                k.len()
            )));
        }
        self.metas.push((k, value.to_vec()));
        Ok(())
    }

    /// Ends the load: the store's revision becomes `max(revision, last loaded, compaction)`,
    /// the compaction is recorded as finished, the applied index set; all of it durable.
    /// Returns the store's revision.
    pub fn finish(self, revision: i64, applied_index: u64) -> Result<i64> {
        let shared = self.shared;
        let last = self.last.map_or(1, |r| r.main);
        let cur = revision.max(last).max(self.compact).max(1);
        {
            let mut w = shared.writer.lock();
            {
                let mut metas = shared.metas.write();
                for (k, v) in &self.metas {
                    metas.insert(k.clone(), v.clone());
                }
            }
            w.pending_meta.extend(self.metas.into_iter().map(|(k, v)| (k, Some(v))));
            shared.applied_index.store(applied_index, Ordering::Release);
            shared.current_rev.store(cur, Ordering::Release);
            if self.compact > 0 {
                let _index = shared.index.write();
                shared.compact_rev.store(self.compact, Ordering::Release);
            }
        }
        if self.compact > 0 {
            let mut cs = shared.commit.lock();
            cs.compacted_through = self.compact;
            cs.finishing = Some(self.compact);
        }
        shared.commit_now()?;
        Ok(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, Options, RangeOptions};

    fn open(dir: &tempfile::TempDir, name: &str) -> Engine {
        Engine::open(dir.path().join(name), Options::default()).unwrap()
    }

    fn all(h: &History) -> Vec<RevisionRecord> {
        h.records().collect::<Result<Vec<_>>>().unwrap()
    }

    /// A workload with history, deletes, multi-op revisions and a compaction, then the same
    /// history loaded into a fresh engine reads the same at every revision.
    #[test]
    fn history_round_trips_through_bulk_load() {
        let dir = tempfile::tempdir().unwrap();
        let src = open(&dir, "src");
        for i in 0..300u32 {
            let mut t = src.write(u64::from(i) + 1);
            let k = format!("k{:03}", i % 37);
            t.put(k.as_bytes(), format!("v{i}").as_bytes(), i64::from(i % 3)).unwrap();
            if i % 5 == 0 {
                t.put(b"multi", b"x", 0).unwrap();
            }
            if i % 7 == 0 {
                t.delete_range(format!("k{:03}", (i + 3) % 37).as_bytes(), b"").unwrap();
            }
            t.commit();
            if i == 120 {
                src.commit().unwrap(); // part in the tree, part in the memtable
            }
        }
        src.compact(200).unwrap();
        src.wait_compacted(200);
        for i in 0..20u32 {
            let mut t = src.write(400 + u64::from(i));
            t.put(format!("late{i}").as_bytes(), b"v", 0).unwrap();
            t.commit();
        }
        let mut mt = src.write(1000);
        mt.meta_put("members", b"m1", b"one");
        mt.commit();

        let h = src.history().unwrap();
        let recs = all(&h);
        assert_eq!(recs, all(&h), "a second pass gives the same records");
        assert!(recs.windows(2).all(|w| w[0].revision < w[1].revision));
        assert!(recs.iter().all(|r| r.revision.main > 200 || r.put.is_some()));
        assert_eq!(h.meta_scan("members"), vec![(b"m1".to_vec(), b"one".to_vec())]);

        let dst = open(&dir, "dst");
        let mut load = dst.bulk_load(h.compact_revision()).unwrap();
        for r in &recs {
            match &r.put {
                Some(p) => load.put(r.revision, &r.key, p).unwrap(),
                None => load.tombstone(r.revision, &r.key).unwrap(),
            }
        }
        load.meta_put("members", b"m1", b"one").unwrap();
        let cur = load.finish(h.revision(), 1).unwrap();
        assert_eq!(cur, src.current_revision());
        assert_eq!(dst.compact_revision(), 200);
        assert_eq!(dst.applied_index(), 1);
        for rev in [200, 201, 250, 300, cur] {
            let o = RangeOptions { revision: rev, ..RangeOptions::range(b"\0".to_vec(), vec![0]) };
            assert_eq!(dst.range(&o).unwrap().kvs, src.range(&o).unwrap().kvs, "at {rev}");
        }
        let o = RangeOptions { revision: 199, ..RangeOptions::key("k001") };
        assert!(matches!(dst.range(&o), Err(Error::Compacted)));
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
        drop(h);

        // Durable: reopened, the same.
        let path = dir.path().join("dst");
        drop(dst);
        let dst = Engine::open(&path, Options::default()).unwrap();
        assert_eq!(dst.current_revision(), cur);
        assert_eq!(dst.compact_revision(), 200);
        assert_eq!(dst.meta_get("members", b"m1"), Some(b"one".to_vec()));
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
    }

    #[test]
    fn history_is_a_point_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(&dir, "db");
        let mut t = e.write(1);
        t.put(b"a", b"1", 0).unwrap();
        t.commit();
        let h = e.history().unwrap();
        let mut t = e.write(2);
        t.put(b"a", b"2", 0).unwrap();
        t.commit();
        e.commit().unwrap();
        let recs = all(&h);
        assert_eq!(recs.len(), 1);
        assert_eq!(h.revision(), 2);
        assert_eq!(recs[0].put.as_ref().unwrap().value, b"1");
    }

    #[test]
    fn bulk_load_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(&dir, "db");
        let p = PutRecord { create_revision: 2, version: 1, lease: 0, value: b"v".to_vec() };
        let mut l = e.bulk_load(0).unwrap();
        l.put(Revision::new(2, 0), b"a", &p).unwrap();
        assert!(l.put(Revision::new(2, 0), b"b", &p).is_err(), "revision repeated");
        assert!(l.tombstone(Revision::new(3, 0), b"zz").is_err(), "delete of a missing key");
        let bad = PutRecord { create_revision: 9, ..p.clone() };
        assert!(l.put(Revision::new(4, 0), b"c", &bad).is_err(), "created in the future");
        l.finish(0, 1).unwrap();
        assert!(e.bulk_load(0).is_err(), "not empty any more");
    }
}
