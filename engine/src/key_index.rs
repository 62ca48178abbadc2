//! The in-memory index: for every key, the revisions at which it changed.
//!
//! Like etcd's `keyIndex`, a key's history is a list of *generations*: a generation starts
//! with a put that created the key (version 1) and ends with the tombstone that deleted it.
//! The index answers "which revision of key K is visible at revision R, with which create
//! revision and version" without touching the disk; the value is then fetched by revision.
//!
//! A key may also hold the record of its latest version (the *latest cache*), so that reads
//! at the current revision (Kubernetes' lists and gets) walk this index in key order and never
//! touch the revision tree, whose records for a key range are scattered over its pages. The
//! engine bounds the bytes cached this way (`Options::latest_cache_size`); a key without its
//! record cached is read from the memtable or the tree as any older version is.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::revision::Revision;

#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    gens: Vec<Generation>,
    /// The encoded record (`codec::encode_put`) of the latest revision, if that is a put and
    /// the engine chose to cache it. Records are immutable, so a cached record is valid for
    /// every reader whose visible revision of this key is `latest.0`.
    latest: Option<(Revision, Arc<[u8]>)>,
}

#[derive(Clone, Debug)]
struct Generation {
    /// Main revision of the put that created the key in this generation.
    created: i64,
    /// Version of `revs[0]` (1 unless compaction dropped earlier revisions).
    first_ver: i64,
    /// Revisions in order; if `closed`, the last one is the tombstone.
    revs: Vec<Revision>,
    closed: bool,
}

/// The budget of the latest cache: how many record bytes all keys hold. Changed only under
/// the index's write lock (the counter is atomic so that readers may report it).
#[derive(Debug)]
pub struct LatestCache {
    used: AtomicUsize,
    limit: usize,
    max_record: usize,
}

impl LatestCache {
    pub fn new(limit: usize, max_record: usize) -> LatestCache {
        LatestCache { used: AtomicUsize::new(0), limit, max_record }
    }

    /// Makes `record` (of revision `rev`, the key's new latest put) the key's cached record
    /// if the budget allows; otherwise the key caches nothing.
    pub fn put(&self, ki: &mut KeyIndex, rev: Revision, record: &Arc<[u8]>) {
        let mut used = self.used.load(Ordering::Relaxed) - ki.clear_latest();
        if record.len() <= self.max_record && used + record.len() <= self.limit {
            ki.set_latest(rev, record.clone());
            used += record.len();
        }
        self.used.store(used, Ordering::Relaxed);
    }

    /// Drops the key's cached record (before a tombstone or a rollback).
    pub fn clear(&self, ki: &mut KeyIndex) {
        let freed = ki.clear_latest();
        if freed > 0 {
            self.used.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    /// Bytes cached.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// A live version of a key as the index sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rev: Revision,
    pub create_revision: i64,
    pub version: i64,
}

impl KeyIndex {
    /// Builds from a stored record (used when rebuilding the index at open; records arrive
    /// in revision order). `put` is `Some((create_revision, version))`, `None` a tombstone.
    pub fn restore(&mut self, rev: Revision, put: Option<(i64, i64)>) {
        match put {
            Some((created, version)) => match self.gens.last_mut() {
                Some(g) if !g.closed => g.revs.push(rev),
                _ => self.gens.push(Generation {
                    created,
                    first_ver: version,
                    revs: vec![rev],
                    closed: false,
                }),
            },
            None => match self.gens.last_mut() {
                Some(g) if !g.closed => {
                    g.revs.push(rev);
                    g.closed = true;
                    debug_assert!(self.latest.is_none(), "clear_latest before a tombstone");
                }
                // A tombstone whose puts were compacted away (only below the compaction).
                _ => {}
            },
        }
    }

    /// Records a put at `rev`; returns (create revision, version, previous live hit).
    pub fn put(&mut self, rev: Revision) -> (i64, i64, Option<Hit>) {
        let prev = self.live();
        match self.gens.last_mut() {
            Some(g) if !g.closed => {
                g.revs.push(rev);
                (g.created, g.first_ver + g.revs.len() as i64 - 1, prev)
            }
            _ => {
                self.gens.push(Generation {
                    created: rev.main,
                    first_ver: 1,
                    revs: vec![rev],
                    closed: false,
                });
                (rev.main, 1, prev)
            }
        }
    }

    /// Caches `record` as the record of the latest revision `rev` (which must be a put, the
    /// key's last change). Returns the bytes released from the cache (the record replaced).
    fn set_latest(&mut self, rev: Revision, record: Arc<[u8]>) -> usize {
        debug_assert_eq!(self.live().map(|h| h.rev), Some(rev));
        self.latest.replace((rev, record)).map_or(0, |(_, r)| r.len())
    }

    /// Drops the cached record; returns the bytes released.
    fn clear_latest(&mut self) -> usize {
        self.latest.take().map_or(0, |(_, r)| r.len())
    }

    /// The cached record of revision `rev`, if that is the cached latest one.
    pub fn cached(&self, rev: Revision) -> Option<&Arc<[u8]>> {
        match &self.latest {
            Some((r, rec)) if *r == rev => Some(rec),
            _ => None,
        }
    }

    /// The cached latest record if it is the version visible at main revision `main` (a
    /// cached record is always the key's last change), without looking at the generations.
    pub fn cached_at(&self, main: i64) -> Option<(Revision, &Arc<[u8]>)> {
        match &self.latest {
            Some((r, rec)) if r.main <= main => Some((*r, rec)),
            _ => None,
        }
    }

    /// Hints the CPU to load the cached latest record (if any) into cache. A range walks the
    /// index in key order, but records were allocated in write order: fetching the next
    /// keys' records ahead overlaps their cache misses instead of taking them one by one.
    #[inline]
    pub fn prefetch_latest(&self) {
        if let Some((_, rec)) = &self.latest {
            prefetch(rec);
        }
    }

    /// Hints the CPU to load this entry itself (a range touches it a little later).
    #[inline]
    pub fn prefetch(&self) {
        prefetch_raw((self as *const KeyIndex).cast(), size_of::<KeyIndex>());
    }

    /// Bytes this key holds in the latest cache.
    pub fn cached_bytes(&self) -> usize {
        self.latest.as_ref().map_or(0, |(_, r)| r.len())
    }

    /// Records a delete at `rev` if the key is live; returns the deleted hit. A cached
    /// record stays until [`KeyIndex::clear_latest`] (the caller may still want it).
    pub fn tombstone(&mut self, rev: Revision) -> Option<Hit> {
        let prev = self.live()?;
        let g = self.gens.last_mut().expect("live implies a generation");
        g.revs.push(rev);
        g.closed = true;
        Some(prev)
    }

    /// The latest version, if the key is live.
    pub fn live(&self) -> Option<Hit> {
        self.at_or_below(Revision::max_of(i64::MAX))
    }

    /// The version visible at main revision `main`.
    pub fn get(&self, main: i64) -> Option<Hit> {
        self.at_or_below(Revision::max_of(main))
    }

    /// The version visible just before `rev` (what a change at `rev` replaced).
    pub fn before(&self, rev: Revision) -> Option<Hit> {
        let bound = if rev.sub > 0 {
            Revision::new(rev.main, rev.sub - 1)
        } else {
            Revision::max_of(rev.main - 1)
        };
        self.at_or_below(bound)
    }

    /// The latest revision `<= bound` if it is a put (`None` if it is a tombstone or absent).
    pub fn at_or_below(&self, bound: Revision) -> Option<Hit> {
        for g in self.gens.iter().rev() {
            if g.revs[0] > bound {
                continue;
            }
            let i = g.revs.partition_point(|r| *r <= bound) - 1;
            if g.closed && i == g.revs.len() - 1 {
                return None;
            }
            return Some(Hit {
                rev: g.revs[i],
                create_revision: g.created,
                version: g.first_ver + i as i64,
            });
        }
        None
    }

    /// Compacts at main revision `at`: of the revisions `<= at` only the latest is kept, and
    /// only if it is a put. Pushes dropped revisions to `removed`; true if nothing is left.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) -> bool {
        let bound = Revision::max_of(at);
        // The generation holding the latest revision <= at.
        let Some(g) = self.gens.iter().rposition(|g| g.revs[0] <= bound) else {
            return self.gens.is_empty();
        };
        for old in self.gens.drain(..g) {
            removed.extend(old.revs);
        }
        let gen_ = &mut self.gens[0];
        let i = gen_.revs.partition_point(|r| *r <= bound) - 1;
        if gen_.closed && i == gen_.revs.len() - 1 {
            removed.append(&mut gen_.revs);
            self.gens.remove(0);
        } else {
            removed.extend(gen_.revs.drain(..i));
            gen_.first_ver += i as i64;
            // A key overwritten many times keeps the capacity of its whole history otherwise:
            // after a compaction that is most of the index's memory.
            if gen_.revs.capacity() > 2 * gen_.revs.len() + 2 {
                gen_.revs.shrink_to_fit();
            }
        }
        if self.gens.capacity() > 2 * self.gens.len() + 2 {
            self.gens.shrink_to_fit();
        }
        self.gens.is_empty()
    }

    /// Undoes every change at main revision `main` (an aborted write transaction; they are
    /// always the latest). True if nothing is left.
    pub fn rollback(&mut self, main: i64) -> bool {
        while let Some(g) = self.gens.last_mut() {
            match g.revs.last() {
                Some(r) if r.main == main => {
                    g.revs.pop();
                    g.closed = false;
                    if g.revs.is_empty() {
                        self.gens.pop();
                    }
                }
                _ => break,
            }
        }
        self.gens.is_empty()
    }

    /// Number of revisions held (for tests and stats).
    pub fn revision_count(&self) -> usize {
        self.gens.iter().map(|g| g.revs.len()).sum()
    }
}

/// Asks the CPU to bring `bytes` (its first 512) into cache; a no-op where unsupported.
#[inline]
fn prefetch(bytes: &[u8]) {
    prefetch_raw(bytes.as_ptr(), bytes.len().min(512));
}

/// Asks the CPU to bring the `len` bytes at `ptr` into cache.
#[inline]
fn prefetch_raw(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for off in (0..len).step_by(64) {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch is
            // only a hint that never faults and changes no memory, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(off).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn tracks_generations_versions_and_tombstones() {
        let mut k = KeyIndex::default();
        assert_eq!(k.put(r(2)), (2, 1, None));
        assert_eq!(k.put(r(4)).1, 2);
        let prev = k.tombstone(r(6)).unwrap();
        assert_eq!(prev.rev, r(4));
        assert!(k.tombstone(r(7)).is_none());
        assert_eq!(k.put(r(8)), (8, 1, None));
        assert_eq!(k.get(1), None);
        assert_eq!(k.get(3), Some(Hit { rev: r(2), create_revision: 2, version: 1 }));
        assert_eq!(k.get(5).unwrap().version, 2);
        assert_eq!(k.get(6), None);
        assert_eq!(k.get(7), None);
        assert_eq!(k.get(100).unwrap().rev, r(8));
        assert_eq!(k.before(r(8)), None);
        assert_eq!(k.before(r(6)).unwrap().rev, r(4));
    }

    #[test]
    fn compaction_keeps_latest_put_and_drops_tombstones() {
        let mut k = KeyIndex::default();
        k.put(r(2));
        k.put(r(3));
        k.tombstone(r(4));
        k.put(r(5));
        k.put(r(7));
        let mut removed = Vec::new();
        assert!(!k.compact(3, &mut removed));
        assert_eq!(removed, vec![r(2)]);
        assert_eq!(k.get(3).unwrap(), Hit { rev: r(3), create_revision: 2, version: 2 });
        removed.clear();
        assert!(!k.compact(4, &mut removed));
        assert_eq!(removed, vec![r(3), r(4)]);
        removed.clear();
        assert!(!k.compact(6, &mut removed));
        assert!(removed.is_empty());
        assert_eq!(k.get(6).unwrap().rev, r(5));
        k.tombstone(r(9));
        removed.clear();
        assert!(k.compact(9, &mut removed));
        assert_eq!(removed, vec![r(5), r(7), r(9)]);
    }

    #[test]
    fn latest_cache_serves_only_the_latest_put_within_budget() {
        let cache = LatestCache::new(10, 8);
        let rec = |n: usize| -> Arc<[u8]> { vec![7u8; n].into() };
        let (mut a, mut b) = (KeyIndex::default(), KeyIndex::default());
        a.put(r(2));
        cache.put(&mut a, r(2), &rec(6));
        assert_eq!(a.cached(r(2)).map(|x| x.len()), Some(6));
        // Over budget: b stays uncached.
        b.put(r(3));
        cache.put(&mut b, r(3), &rec(6));
        assert!(b.cached(r(3)).is_none());
        // An overwrite releases the old record first; a record over the size limit is not kept.
        a.put(r(4));
        cache.put(&mut a, r(4), &rec(9));
        assert!(a.cached(r(2)).is_none() && a.cached(r(4)).is_none());
        assert_eq!(cache.used(), 0);
        cache.put(&mut b, r(3), &rec(6));
        assert_eq!(cache.used(), 6);
        cache.clear(&mut b);
        b.tombstone(r(5));
        assert_eq!((cache.used(), b.cached_bytes()), (0, 0));
    }

    #[test]
    fn rollback_undoes_the_latest_main_revision() {
        let mut k = KeyIndex::default();
        k.put(r(2));
        k.tombstone(Revision::new(3, 0));
        k.put(Revision::new(3, 1));
        assert!(!k.rollback(3));
        assert_eq!(k.live().unwrap().rev, r(2));
        assert!(k.rollback(2));
    }
}
