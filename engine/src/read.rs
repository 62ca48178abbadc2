//! Reads: ranges, the change feed (watch), the store's hash, and fetching records, from the
//! memtable and a pinned tree version (see `shared.rs` for who guards what). Write
//! transactions read their own writes through the same code ([`Shared::range_at`]).

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::btree::{self, Cursor};
use crate::codec::{self, decode_record, encode_rev};
use crate::error::{Error, Result};
use crate::key_index::Hit;
use crate::key_map::Key;
use crate::kv::{Event, EventKind, KeyValue, RangeOptions, RangeResult, in_range};
use crate::pager::PageStore;
use crate::revision::Revision;
use crate::shared::{Shared, Version};

/// Keys looked up per hold of the index lock in a range (writers wait at most this long).
const INDEX_CHUNK: usize = 1024;

/// Turns a stored record into a `KeyValue` at revision `rev`.
pub(crate) fn to_kv(
    store: &PageStore,
    rev: Revision,
    bytes: &[u8],
    keys_only: bool,
) -> Result<KeyValue> {
    let rec = decode_record(bytes)
        .ok_or_else(|| store.corrupted(0, format!("malformed record at revision {rev}")))?;
    let Some(p) = rec.put else {
        return Ok(KeyValue {
            key: rec.key.to_vec(),
            mod_revision: rev.main,
            ..Default::default()
        });
    };
    Ok(KeyValue {
        key: rec.key.to_vec(),
        create_revision: p.create_revision,
        mod_revision: rev.main,
        version: p.version,
        value: if keys_only { Vec::new() } else { p.value.to_vec() },
        lease: p.lease,
    })
}

impl Shared {
    /// The record of `rev`: from the memtable, else from the tree version `ver`.
    /// `ver` must have been pinned before `rev` was looked up in the index.
    pub(crate) fn fetch(&self, ver: &Version, rev: Revision) -> Result<Arc<[u8]>> {
        if let Some(v) = self.memtable.read().get(&rev) {
            return Ok(v.clone());
        }
        match btree::get(&self.store, ver.meta.rev_root, &encode_rev(rev))? {
            Some(v) => Ok(v.into()),
            None => Err(self.store.corrupted(
                ver.meta.rev_root,
                format!("revision {rev} is in the index but not in the tree"),
            )),
        }
    }

    pub(crate) fn fetch_kv(
        &self,
        ver: &Version,
        rev: Revision,
        keys_only: bool,
    ) -> Result<KeyValue> {
        let bytes = self.fetch(ver, rev)?;
        to_kv(&self.store, rev, &bytes, keys_only)
    }

    fn not_in_tree(&self, ver: &Version, rev: Revision) -> Error {
        self.store.corrupted(
            ver.meta.rev_root,
            format!("revision {rev} is in the index but not in the tree"),
        )
    }

    /// Fills the slots `missing` names (position in `kvs`, index hit) with their key versions.
    /// Records still in the memtable come from there; the rest are looked up in the tree
    /// version `ver` in revision order, in one walk that reads each page once (a range's
    /// revisions are scattered over the tree; a descent per key was most of a range's cost).
    /// `ver` must have been pinned before the hits were looked up in the index.
    fn fetch_missing(
        &self,
        ver: &Version,
        kvs: &mut [KeyValue],
        missing: &[(usize, Hit)],
        keys_only: bool,
    ) -> Result<()> {
        // (revision, position in `kvs`) of the records to read from the tree.
        let mut in_tree: Vec<(Revision, usize)> = Vec::with_capacity(missing.len());
        let mut in_memtable: Vec<(usize, Revision, Arc<[u8]>)> = Vec::new();
        {
            let mt = self.memtable.read();
            for (i, h) in missing {
                match mt.get(&h.rev) {
                    Some(b) => in_memtable.push((*i, h.rev, b.clone())),
                    None => in_tree.push((h.rev, *i)),
                }
            }
        }
        for (i, rev, b) in in_memtable {
            kvs[i] = to_kv(&self.store, rev, &b, keys_only)?;
        }
        if !in_tree.is_empty() {
            // Revisions are unique: sort by one integer key (a derived tuple order cost more
            // than the tree walk).
            in_tree.sort_unstable_by_key(|(r, _)| ((r.main as u128) << 64) | r.sub as u128);
            let keys: Vec<[u8; codec::REV_KEY_LEN]> =
                in_tree.iter().map(|(r, _)| encode_rev(*r)).collect();
            btree::get_sorted(&self.store, ver.meta.rev_root, &keys, &mut |j, bytes| {
                let (rev, i) = in_tree[j];
                kvs[i] = to_kv(&self.store, rev, bytes, keys_only)?;
                Ok(())
            })?;
        }
        for (i, h) in missing {
            let kv = &mut kvs[*i];
            if kv.mod_revision == 0 {
                return Err(self.not_in_tree(ver, h.rev));
            }
            kv.create_revision = h.create_revision;
            kv.version = h.version;
        }
        Ok(())
    }

    /// A range read at the current revision, or at `opts.revision` ([`Engine::range`]).
    ///
    /// [`Engine::range`]: crate::Engine::range
    pub(crate) fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        let mut attempt = 0;
        loop {
            let cur = self.current_rev.load(Ordering::Acquire);
            match self.range_at(opts, cur) {
                // A read at the current revision overtaken by writes and a compaction above
                // the revision it started at: read again at the new current revision.
                Err(Error::Compacted) if opts.revision <= 0 && attempt < 8 => attempt += 1,
                r => return r,
            }
        }
    }

    /// A range read; `cur` is the revision the reader stands at (the current revision, or
    /// a write transaction's own).
    ///
    /// Keys whose visible version is their cached latest one are answered while walking the
    /// index (no page is read); the others are fetched after, in one walk of the tree.
    pub(crate) fn range_at(&self, opts: &RangeOptions, cur: i64) -> Result<RangeResult> {
        let rev = if opts.revision <= 0 { cur } else { opts.revision };
        if rev > cur {
            return Err(Error::FutureRevision);
        }
        let ver = self.pin();
        let limit = if opts.limit > 0 { opts.limit as usize } else { usize::MAX };
        let want = |h: &Hit| {
            (opts.min_mod_revision <= 0 || h.rev.main >= opts.min_mod_revision)
                && (opts.max_mod_revision <= 0 || h.rev.main <= opts.max_mod_revision)
                && (opts.min_create_revision <= 0 || h.create_revision >= opts.min_create_revision)
                && (opts.max_create_revision <= 0 || h.create_revision <= opts.max_create_revision)
        };
        let mut kvs: Vec<KeyValue> = Vec::new();
        // Slots of `kvs` still to fetch (not in the latest cache).
        let mut missing: Vec<(usize, Hit)> = Vec::new();
        let mut count: usize = 0;
        let keep = !opts.count_only;
        let keys_only = opts.keys_only;
        let store = &self.store;
        let create_filter = opts.min_create_revision > 0 || opts.max_create_revision > 0;
        let mut take = |ki: Key<'_>, kvs: &mut Vec<KeyValue>| -> Result<()> {
            // Fast path: the cached latest version is visible; its record carries the create
            // revision and version, so the generations (two more pointer chases) are skipped.
            if let Some((r, rec)) = ki.cached_at(rev) {
                if !(create_filter || keep && count < limit) {
                    // Only counted: the record is not needed.
                    let h = Hit { rev: r, create_revision: 0, version: 0 };
                    count += usize::from(want(&h));
                    return Ok(());
                }
                let (key, put) =
                    decode_record(rec).and_then(|d| Some((d.key, d.put?))).ok_or_else(|| {
                        store.corrupted(0, format!("malformed cached record at revision {r}"))
                    })?;
                let h = Hit { rev: r, create_revision: put.create_revision, version: put.version };
                if want(&h) {
                    if keep && count < limit {
                        kvs.push(KeyValue {
                            key: key.to_vec(),
                            create_revision: put.create_revision,
                            mod_revision: r.main,
                            version: put.version,
                            value: if keys_only { Vec::new() } else { put.value.to_vec() },
                            lease: put.lease,
                        });
                    }
                    count += 1;
                }
                return Ok(());
            }
            if let Some(h) = ki.get(rev)
                && want(&h)
            {
                if keep && count < limit {
                    match ki.cached(h.rev) {
                        Some(rec) => {
                            let mut kv = to_kv(store, h.rev, rec, keys_only)?;
                            kv.create_revision = h.create_revision;
                            kv.version = h.version;
                            kvs.push(kv);
                        }
                        None => {
                            missing.push((kvs.len(), h));
                            kvs.push(KeyValue::default());
                        }
                    }
                }
                count += 1;
            }
            Ok(())
        };
        if opts.range_end.is_empty() {
            let index = self.index.read();
            self.check_compacted(rev)?;
            if let Some(ki) = index.get(&opts.key) {
                take(ki, &mut kvs)?;
            }
        } else {
            let all = opts.range_end == [0];
            if !all && opts.range_end <= opts.key {
                self.check_compacted(rev)?;
                return Ok(RangeResult { revision: cur, ..Default::default() });
            }
            let mut lower: Bound<Vec<u8>> = Bound::Included(opts.key.clone());
            loop {
                let index = self.index.read();
                self.check_compacted(rev)?;
                let upper =
                    if all { Bound::Unbounded } else { Bound::Excluded(&opts.range_end[..]) };
                let lo = match &lower {
                    Bound::Included(k) => Bound::Included(&k[..]),
                    Bound::Excluded(k) => Bound::Excluded(&k[..]),
                    Bound::Unbounded => Bound::Unbounded,
                };
                // The index's leaves pack neighbouring keys' records together: the walk
                // reads memory nearly in order.
                let mut last = None;
                let keys = index.range(lo, upper);
                if keep {
                    let room = limit.saturating_sub(kvs.len());
                    kvs.reserve(keys.count_ahead(INDEX_CHUNK.min(room)));
                }
                for (n, ki) in keys.enumerate() {
                    if n == INDEX_CHUNK {
                        last = Some(ki.key().to_vec());
                        break;
                    }
                    take(ki, &mut kvs)?;
                }
                match last {
                    // `k` is the first key not yet taken.
                    Some(k) => lower = Bound::Included(k),
                    None => break,
                }
            }
        }
        if !missing.is_empty() {
            self.fetch_missing(&ver, &mut kvs, &missing, keys_only)?;
        }
        Ok(RangeResult { kvs, count: count as i64, more: count > limit, revision: cur })
    }

    fn check_compacted(&self, rev: i64) -> Result<()> {
        if rev < self.compact_rev.load(Ordering::Acquire) {
            return Err(Error::Compacted);
        }
        Ok(())
    }

    pub(crate) fn changes(
        &self,
        start: i64,
        key: &[u8],
        end: &[u8],
        prev_kv: bool,
        limit: usize,
    ) -> Result<(Vec<Event>, i64)> {
        let cur = self.current_rev.load(Ordering::Acquire);
        let start = start.max(1);
        let ver = self.pin();
        let compact = {
            let _index = self.index.read();
            self.check_compacted(start)?;
            self.compact_rev.load(Ordering::Acquire)
        };
        if start > cur {
            return Ok((Vec::new(), start));
        }
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut events = Vec::new();
        let mut next = cur + 1;
        let persisted = ver.meta.current_revision;
        let mut visit = |rev: Revision, bytes: &[u8], events: &mut Vec<Event>| -> Result<bool> {
            if events.len() >= limit
                && events.last().is_some_and(|e: &Event| e.kv.mod_revision != rev.main)
            {
                next = rev.main;
                return Ok(false);
            }
            let rec = decode_record(bytes)
                .ok_or_else(|| self.store.corrupted(0, format!("malformed record at {rev}")))?;
            if !in_range(rec.key, key, end) {
                return Ok(true);
            }
            // At the compaction revision only the version compaction keeps is reported (the
            // others may or may not be physically gone yet; every member must answer alike).
            if rev.main <= compact {
                let kept = rec.put.is_some()
                    && self
                        .index
                        .read()
                        .get(rec.key)
                        .and_then(|ki| ki.get(compact))
                        .is_some_and(|h| h.rev == rev);
                if !kept {
                    return Ok(true);
                }
            }
            let kv = to_kv(&self.store, rev, bytes, false)?;
            // An event at the compaction revision replaced a version compaction dropped.
            let prev = if prev_kv && rev.main > compact {
                let hit = self.index.read().get(rec.key).and_then(|ki| ki.before(rev));
                match hit {
                    Some(h) => Some(self.fetch_kv(&ver, h.rev, false)?),
                    None => None,
                }
            } else {
                None
            };
            let kind = if rec.put.is_some() { EventKind::Put } else { EventKind::Delete };
            events.push(Event { kind, kv, prev_kv: prev });
            Ok(true)
        };
        let mut more = true;
        if start <= persisted {
            let mut c =
                Cursor::seek(&self.store, ver.meta.rev_root, &encode_rev(Revision::new(start, 0)))?;
            while let Some((k, v)) = c.next()? {
                let rev = codec::decode_rev(&k).ok_or_else(|| {
                    self.store.corrupted(ver.meta.rev_root, "malformed revision key")
                })?;
                if rev.main > persisted.min(cur) {
                    break;
                }
                if !visit(rev, &v, &mut events)? {
                    more = false;
                    break;
                }
            }
        }
        if more && cur > persisted {
            let from = Revision::new(start.max(persisted + 1), 0);
            let entries: Vec<(Revision, Arc<[u8]>)> = self
                .memtable
                .read()
                .range(from..=Revision::max_of(cur))
                .map(|(r, v)| (*r, v.clone()))
                .collect();
            for (rev, v) in entries {
                if !visit(rev, &v, &mut events)? {
                    break;
                }
            }
        }
        Ok((events, next))
    }

    pub(crate) fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        let cur = self.current_rev.load(Ordering::Acquire);
        let rev = if revision <= 0 { cur } else { revision };
        if rev > cur {
            return Err(Error::FutureRevision);
        }
        let ver = self.pin();
        let (compact, keep) = {
            let index = self.index.read();
            self.check_compacted(rev)?;
            let compact = self.compact_rev.load(Ordering::Acquire);
            let keep: HashSet<Revision> = if compact > 0 {
                index.iter().filter_map(|ki| ki.get(compact).map(|h| h.rev)).collect()
            } else {
                HashSet::new()
            };
            (compact, keep)
        };
        let mut crc = 0u32;
        let mut feed = |r: Revision, bytes: &[u8]| {
            if r.main <= compact && !keep.contains(&r) {
                return;
            }
            crc = crc32c::crc32c_append(crc, &encode_rev(r));
            crc = crc32c::crc32c_append(crc, bytes);
        };
        let persisted = ver.meta.current_revision;
        let mut c = Cursor::seek(&self.store, ver.meta.rev_root, b"")?;
        while let Some((k, v)) = c.next()? {
            let r = codec::decode_rev(&k)
                .ok_or_else(|| self.store.corrupted(ver.meta.rev_root, "malformed revision key"))?;
            if r.main > rev.min(persisted) {
                break;
            }
            feed(r, &v);
        }
        if rev > persisted {
            let mt = self.memtable.read();
            for (r, v) in mt.range(Revision::new(persisted + 1, 0)..=Revision::max_of(rev)) {
                feed(*r, v);
            }
        }
        Ok((crc, compact))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::Engine;
    use crate::io::MemStorage;
    use crate::options::Options;

    /// Ranges over thousands of keys (many index leaves, split and merged as keys come and
    /// go), with and without room in the latest cache, at the current and at older
    /// revisions, against a model of each revision's contents; then again after a reopen.
    #[test]
    fn ranges_over_many_index_leaves_match_a_model() {
        let seed = crate::test_seed("index-leaf range test");
        let mut rng = StdRng::seed_from_u64(seed);
        for cache in [0, 200_000, 64 << 20] {
            let opts = Options { latest_cache_size: cache, ..Options::default() };
            let storage = Arc::new(MemStorage::new());
            let mut e = Engine::open_with_storage(storage.clone(), "db", opts.clone()).unwrap();
            // Key -> (create, mod, version, value), one map per revision written.
            let mut live: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
            let mut states: Vec<(i64, BTreeMap<Vec<u8>, KeyValue>)> = Vec::new();
            for batch in 0..40u64 {
                let mut t = e.write(batch + 1);
                let rev = t.revision();
                for _ in 0..200 {
                    let k = format!("key/{:05}", rng.random_range(0..3000)).into_bytes();
                    if rng.random_bool(0.15) {
                        let end = format!("key/{:05}", rng.random_range(0..3000)).into_bytes();
                        t.delete_range(&k, if end > k { &end[..] } else { b"" }).unwrap();
                        let gone: Vec<Vec<u8>> = if end > k {
                            live.range(k.clone()..end).map(|(k, _)| k.clone()).collect()
                        } else {
                            live.get(&k).map(|_| k.clone()).into_iter().collect()
                        };
                        for g in gone {
                            live.remove(&g);
                        }
                    } else {
                        let value = vec![b'a' + (batch % 26) as u8; rng.random_range(0..300)];
                        t.put(&k, &value, 0).unwrap();
                        let kv = live.entry(k.clone()).or_insert_with(|| KeyValue {
                            key: k.clone(),
                            create_revision: rev,
                            ..Default::default()
                        });
                        kv.mod_revision = rev;
                        kv.version += 1;
                        kv.value = value;
                    }
                }
                assert_eq!(t.commit(), rev);
                states.push((rev, live.clone()));
                if batch % 9 == 0 {
                    e.commit().unwrap();
                }
            }
            for round in 0..2 {
                for _ in 0..60 {
                    let (rev, state) = &states[rng.random_range(0..states.len())];
                    let a = format!("key/{:05}", rng.random_range(0..3000)).into_bytes();
                    let b = format!("key/{:05}", rng.random_range(0..3000)).into_bytes();
                    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                    let o = RangeOptions {
                        revision: if rng.random_bool(0.5) { *rev } else { 0 },
                        limit: if rng.random_bool(0.3) { rng.random_range(1..50) } else { 0 },
                        keys_only: rng.random_bool(0.2),
                        count_only: rng.random_bool(0.1),
                        min_mod_revision: if rng.random_bool(0.2) { rev - 10 } else { 0 },
                        ..RangeOptions::range(lo.clone(), hi.clone())
                    };
                    let state = if o.revision == 0 { &states.last().unwrap().1 } else { state };
                    let mut want: Vec<KeyValue> = state
                        .range(lo.clone()..hi.clone())
                        .map(|(_, kv)| kv.clone())
                        .filter(|kv| kv.mod_revision >= o.min_mod_revision)
                        .collect();
                    let count = want.len() as i64;
                    let more = o.limit > 0 && count > o.limit;
                    if o.limit > 0 {
                        want.truncate(o.limit as usize);
                    }
                    if o.count_only {
                        want.clear();
                    }
                    if o.keys_only {
                        want.iter_mut().for_each(|kv| kv.value.clear());
                    }
                    let got = e.range(&o).unwrap();
                    let ctx = format!("seed {seed} cache {cache} round {round} {o:?}");
                    assert_eq!((got.count, got.more), (count, more), "{ctx}");
                    assert_eq!(got.kvs, want, "{ctx}");
                }
                drop(e);
                e = Engine::open_with_storage(storage.clone(), "db", opts.clone()).unwrap();
            }
        }
    }
}
