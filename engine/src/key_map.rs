//! The in-memory index's container: every key in order with its [`KeyIndex`], in leaves
//! that pack each key's cached latest record next to its neighbours'.
//!
//! A range at the current revision reads the latest records of consecutive keys. Kept as
//! one heap allocation per record (in write order, so anywhere in memory relative to key
//! order), a 1000-key range took a cache miss or several per key. Here a leaf holds up to
//! `max_slots` consecutive keys: their slots in one array, their keys and records in one
//! byte buffer, laid out in key order whenever the leaf is rebuilt. A range walks memory
//! nearly sequentially, and a key's bytes and record cost no allocation of their own.
//!
//! ```text
//! leaves: BTreeMap<(8-byte prefix, lowest key), Leaf>
//!                                       a leaf holds the keys in [its key, the next leaf's key);
//!                                       the first leaf's key is empty, so every key has a leaf
//! Leaf:   slots: [Slot] sorted by key   bytes: | record or key of each slot | dead | spare |
//!         prefixes: [u64], one per slot: 8 key bytes after the leaf's common prefix
//! Slot:   KeyIndex (16 bytes) | key offset, length | record length (0: none)     32 bytes
//! ```
//!
//! A cached record holds its key (`codec::RECORD_KEY_OFFSET`), so a slot with one points its
//! key into it; a slot without one points at its key alone (or inside a dead record). A
//! replaced record stays in the buffer, dead, until the buffer is full; then the leaf is
//! rebuilt in key order without its dead bytes, with `1/8` spare room, so a leaf's buffer
//! stays within about 9/8 of its live bytes; a record replaced by one no longer is
//! overwritten in place. An insert that leaves a leaf over `max_slots` keys or
//! [`SPLIT_BYTES`] splits it (at the next insert); a small leaf merges into its left
//! neighbour.
//!
//! Everything here runs under the engine's index lock (readers share it, writers take it
//! exclusively), as the map it replaces did.

use std::collections::BTreeMap;
use std::ops::{Bound, Deref, DerefMut};

use crate::codec::RECORD_KEY_OFFSET;
use crate::key_index::KeyIndex;
use crate::revision::Revision;

/// Keys per leaf above which an insert splits it: a leaf of 32-byte keys and 256-byte values is
/// about 40 KiB, rebuilt in a few microseconds.
pub const MAX_SLOTS: usize = 128;

/// Live bytes of a leaf above which an insert splits it (whatever its key count).
pub const SPLIT_BYTES: usize = 64 << 10;

/// One key of a leaf.
#[derive(Clone, Debug)]
struct Slot {
    /// The key's history; a cached record is of its last put (`KeyIndex::last_put`).
    ki: KeyIndex,
    /// Where the key starts in the leaf's bytes, and its length: the whole key inside the
    /// cached record, or without a record the key's tail after the leaf's common prefix.
    key_off: u32,
    key_len: u32,
    /// Length of the cached record (0: none); it starts `RECORD_KEY_OFFSET` before the key.
    rec_len: u32,
}

impl Slot {
    /// The key without its first `common` bytes (the leaf's common prefix).
    fn tail<'a>(&self, bytes: &'a [u8], common: usize) -> &'a [u8] {
        let (off, len) = (self.key_off as usize, self.key_len as usize);
        if self.rec_len > 0 { &bytes[off + common..off + len] } else { &bytes[off..off + len] }
    }

    fn record<'a>(&self, bytes: &'a [u8]) -> Option<&'a [u8]> {
        if self.rec_len == 0 {
            return None;
        }
        let start = self.key_off as usize - RECORD_KEY_OFFSET;
        Some(&bytes[start..start + self.rec_len as usize])
    }

    /// The bytes this slot holds live: its record, or its key alone.
    fn live_len(&self) -> usize {
        if self.rec_len > 0 { self.rec_len as usize } else { self.key_len as usize }
    }

    /// Where this slot's live bytes start.
    fn live_off(&self) -> usize {
        if self.rec_len > 0 {
            self.key_off as usize - RECORD_KEY_OFFSET
        } else {
            self.key_off as usize
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Leaf {
    slots: Vec<Slot>,
    /// For each slot, the 8 key bytes after the common prefix, big-endian, zero-padded. A
    /// lookup scans these (a few consecutive cache lines, which the CPU streams in) and
    /// reads a key only on a tie: a binary search over the slots took a dependent cache and
    /// TLB miss per probe, and one more for each probed key.
    prefixes: Vec<u64>,
    bytes: Vec<u8>,
    /// Bytes of `bytes` that slots hold (the rest is dead).
    live: usize,
    /// Length of a prefix every key in the leaf's key range shares: that of the leaf's key
    /// and the next leaf's (0 for the last leaf). Keys without a record are stored without
    /// it (Kubernetes' keys share long prefixes: `/registry/pods/default/...`), and
    /// `prefixes` start after it.
    common: usize,
}

impl Leaf {
    /// Where `key` is (or would go) among the slots. `key` must lie in the leaf's key
    /// range, so it starts with the `common` bytes every key there shares.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let c = self.common;
        let q = prefix_at(key, c);
        let mut i = self.prefixes.iter().position(|p| *p >= q).unwrap_or(self.prefixes.len());
        while self.prefixes.get(i) == Some(&q) {
            match self.slots[i].tail(&self.bytes, c).cmp(&key[c..]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => break,
            }
        }
        Err(i)
    }

    /// Sets the common prefix length (see `KeyMap::range_common`): rewrites the stored key
    /// tails if it changed, and every slot's 8-byte prefix. `lk` is a key the leaf's key
    /// range starts with its old and new common prefixes both (its leaf key).
    fn reprefix(&mut self, lk: &[u8], common: usize) {
        if common != self.common {
            let old = std::mem::take(&mut self.bytes);
            let old_common = self.common;
            // Tails grow by what the prefix lost (or shrink by what it gained).
            let live = self
                .slots
                .iter()
                .map(|s| match s.rec_len {
                    0 => (s.key_len as usize + old_common).saturating_sub(common),
                    n => n as usize,
                })
                .sum::<usize>();
            let mut bytes = Vec::with_capacity(live + live / 8 + 256);
            for s in &mut self.slots {
                let to = bytes.len();
                if s.rec_len > 0 {
                    let from = s.live_off();
                    bytes.extend_from_slice(&old[from..from + s.rec_len as usize]);
                    s.key_off = offset(to + RECORD_KEY_OFFSET);
                } else {
                    let tail = s.tail(&old, old_common);
                    if common >= old_common {
                        bytes.extend_from_slice(&tail[common - old_common..]);
                    } else {
                        bytes.extend_from_slice(&lk[common..old_common]);
                        bytes.extend_from_slice(tail);
                    }
                    s.key_off = offset(to);
                    s.key_len = offset(bytes.len() - to);
                }
            }
            self.bytes = bytes;
            self.live = live;
            self.common = common;
        }
        self.prefixes.clear();
        let (bytes, c) = (&self.bytes, self.common);
        self.prefixes.extend(self.slots.iter().map(|s| prefix_at(s.tail(bytes, c), 0)));
    }

    /// Rewrites `bytes` in key order without dead bytes, with room for `extra` more.
    fn rebuild(&mut self, extra: usize) {
        let old = std::mem::take(&mut self.bytes);
        self.bytes = pack(&mut self.slots, &old, self.live + extra);
    }

    /// Appends `data`, rebuilding first if it does not fit; returns its offset.
    fn append(&mut self, data: &[u8]) -> usize {
        if self.bytes.len() + data.len() > self.bytes.capacity() {
            self.rebuild(data.len());
        }
        let off = self.bytes.len();
        self.bytes.extend_from_slice(data);
        off
    }

    fn insert(&mut self, at: usize, key: &[u8]) {
        let tail = &key[self.common..];
        let off = self.append(tail);
        self.prefixes.insert(at, prefix_at(tail, 0));
        self.slots.insert(
            at,
            Slot {
                ki: KeyIndex::default(),
                key_off: offset(off),
                key_len: offset(tail.len()),
                rec_len: 0,
            },
        );
        self.live += tail.len();
    }

    fn set_record(&mut self, i: usize, record: &[u8]) {
        let c = self.common;
        let s = &self.slots[i];
        let key_len = s.key_len as usize + if s.rec_len > 0 { 0 } else { c };
        debug_assert_eq!(
            record.get(RECORD_KEY_OFFSET + c..RECORD_KEY_OFFSET + key_len),
            Some(s.tail(&self.bytes, c)),
            "a record holds its key"
        );
        let s = &mut self.slots[i];
        if s.rec_len as usize >= record.len() {
            // Overwritten in place (an overwrite's record is often just as long): no reader
            // looks meanwhile, the writer holds the index lock exclusively.
            let start = s.live_off();
            self.bytes[start..start + record.len()].copy_from_slice(record);
            self.live -= s.rec_len as usize - record.len();
            s.rec_len = offset(record.len());
            return;
        }
        let off = self.append(record);
        let s = &mut self.slots[i];
        self.live = self.live - s.live_len() + record.len();
        s.key_off = offset(off + RECORD_KEY_OFFSET);
        s.key_len = offset(key_len);
        s.rec_len = offset(record.len());
    }

    /// Drops slot `i`'s record (its key's tail stays where it is, inside the dead record);
    /// returns the bytes released.
    fn clear_record(&mut self, i: usize) -> usize {
        let c = self.common;
        let s = &mut self.slots[i];
        let freed = s.rec_len as usize;
        if freed > 0 {
            s.key_off += offset(c);
            s.key_len -= offset(c);
            self.live -= freed - s.key_len as usize;
            s.rec_len = 0;
            self.shrink();
        }
        freed
    }

    fn remove(&mut self, i: usize) -> Slot {
        let s = self.slots.remove(i);
        self.prefixes.remove(i);
        self.live -= s.live_len();
        self.shrink();
        s
    }

    /// Rebuilds once dead bytes outweigh live ones (after deletes and clears).
    fn shrink(&mut self) {
        if self.bytes.len() - self.live > self.live.max(4096) {
            self.rebuild(0);
        }
    }

    /// Moves the slots from `at` on into a new leaf (both rebuilt, with the same common
    /// prefix as before; the caller sets their new ones).
    fn split_off(&mut self, at: usize) -> Leaf {
        let old = std::mem::take(&mut self.bytes);
        let mut slots = self.slots.split_off(at);
        let live = slots.iter().map(Slot::live_len).sum();
        let bytes = pack(&mut slots, &old, live);
        self.live -= live;
        self.bytes = pack(&mut self.slots, &old, self.live);
        let prefixes = self.prefixes.split_off(at);
        // `Vec::split_off` leaves the left half its whole capacity: a leaf filled by
        // appends (sequential keys) kept room for 4x the slots it holds, which was most
        // of the index's memory at 1M keys.
        self.slots.shrink_to_fit();
        self.prefixes.shrink_to_fit();
        Leaf { slots, prefixes, bytes, live, common: self.common }
    }

    /// Appends every slot of `right` (whose keys are all greater, stored without the same
    /// common prefix) and rebuilds (the caller sets the prefixes).
    fn absorb(&mut self, mut right: Leaf) {
        assert_eq!(self.common, right.common, "leaves merge with the same common prefix");
        let old = std::mem::take(&mut self.bytes);
        let base = old.len();
        let mut joined = old;
        joined.extend_from_slice(&right.bytes);
        for s in &mut right.slots {
            s.key_off = offset(s.key_off as usize + base);
        }
        self.slots.append(&mut right.slots);
        self.prefixes.append(&mut right.prefixes);
        self.live += right.live;
        self.bytes = pack(&mut self.slots, &joined, self.live);
    }
}

/// Copies each slot's live bytes from `old` into a new buffer in slot order, with room for
/// `live` bytes plus an eighth spare, and points the slots at it.
fn pack(slots: &mut [Slot], old: &[u8], live: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(live + live / 8 + 256);
    for s in slots {
        let (from, len) = (s.live_off(), s.live_len());
        let to = bytes.len();
        bytes.extend_from_slice(&old[from..from + len]);
        s.key_off = offset(to + (s.key_off as usize - from));
    }
    bytes
}

/// A leaf's key in the map: its lowest key's first 8 bytes (big-endian, zero-padded), then
/// the key. Ordered as the keys are; a lookup compares the integers and reads a leaf's key
/// (elsewhere in memory) only on a tie.
type LeafKey = (u64, Box<[u8]>);

fn leaf_key(key: &[u8]) -> LeafKey {
    (prefix_at(key, 0), key.into())
}

fn common_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether an insert should split `leaf`.
fn overfull(leaf: &Leaf, max_slots: usize) -> bool {
    leaf.slots.len() > max_slots || (leaf.live > SPLIT_BYTES && leaf.slots.len() >= 2)
}

/// The 8 bytes of `key` from `at`, big-endian, zero-padded: ordered as the keys are,
/// among keys sharing their first `at` bytes (ties broken by the keys themselves).
fn prefix_at(key: &[u8], at: usize) -> u64 {
    let tail = key.get(at..).unwrap_or_default();
    let mut b = [0u8; 8];
    let n = tail.len().min(8);
    b[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(b)
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).expect("a leaf's bytes fit in u32 offsets")
}

/// Every key of the store in order with its history and, within a budget, its latest record.
#[derive(Debug)]
pub struct KeyMap {
    leaves: BTreeMap<LeafKey, Leaf>,
    len: usize,
    max_slots: usize,
    /// Record bytes cached, and the budget: at most `cache_limit` bytes in all, none over
    /// `cache_max_record` bytes each.
    cache_used: usize,
    cache_limit: usize,
    cache_max_record: usize,
    /// The leaf an insert filled past its size, split at the start of the next insert:
    /// [`KeyMap::get_or_insert`] finds a key's leaf once and returns it borrowed, so it
    /// cannot restructure the map after the lookup.
    split_due: Option<LeafKey>,
}

impl KeyMap {
    /// An empty map caching at most `cache_limit` bytes of records, none over `max_record`.
    pub fn new(cache_limit: usize, max_record: usize) -> KeyMap {
        KeyMap::with_leaf_size(cache_limit, max_record, MAX_SLOTS)
    }

    /// As [`KeyMap::new`] with leaves of at most `max_slots` keys (tests use tiny leaves).
    pub fn with_leaf_size(cache_limit: usize, max_record: usize, max_slots: usize) -> KeyMap {
        let mut leaves = BTreeMap::new();
        leaves.insert(leaf_key(b""), Leaf::default());
        KeyMap {
            leaves,
            len: 0,
            max_slots: max_slots.max(2),
            cache_used: 0,
            cache_limit,
            cache_max_record: max_record,
            split_due: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of records cached.
    pub fn cached_bytes(&self) -> usize {
        self.cache_used
    }

    /// Heap bytes the map holds (what its vectors reserved, records included; not the
    /// allocator's rounding): walks every leaf, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.leaves
            .iter()
            .map(|(lk, l)| {
                // A leaf in the B-tree: its key (the box and its bytes) and the leaf itself.
                size_of::<LeafKey>()
                    + lk.1.len()
                    + size_of::<Leaf>()
                    + l.slots.capacity() * size_of::<Slot>()
                    + l.slots.iter().map(|s| s.ki.heap_bytes()).sum::<usize>()
                    + l.prefixes.capacity() * size_of::<u64>()
                    + l.bytes.capacity()
            })
            .sum()
    }

    /// The key of the leaf holding `key`.
    fn leaf_of(&self, key: &[u8]) -> &LeafKey {
        let (lk, _) = self
            .leaves
            .range((Bound::Unbounded, Bound::Included(&leaf_key(key))))
            .next_back()
            .expect("the first leaf's key is empty");
        lk
    }

    pub fn get(&self, key: &[u8]) -> Option<Key<'_>> {
        let (lk, leaf) = self
            .leaves
            .range((Bound::Unbounded, Bound::Included(&leaf_key(key))))
            .next_back()
            .expect("the first leaf's key is empty");
        let i = leaf.find(key).ok()?;
        Some(Key::new(lk, leaf, i))
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<KeyMut<'_>> {
        let leaf = self
            .leaves
            .range_mut((Bound::Unbounded, Bound::Included(&leaf_key(key))))
            .next_back()
            .expect("the first leaf's key is empty")
            .1;
        let i = leaf.find(key).ok()?;
        Some(KeyMut {
            leaf,
            i,
            used: &mut self.cache_used,
            limit: self.cache_limit,
            max_record: self.cache_max_record,
        })
    }

    /// The key's entry, inserted (with no history) if missing.
    pub fn get_or_insert(&mut self, key: &[u8]) -> KeyMut<'_> {
        if let Some(lk) = self.split_due.take() {
            self.split(&lk);
        }
        let KeyMap { leaves, len, max_slots, cache_used, cache_limit, cache_max_record, split_due } =
            self;
        let (lk, leaf) = leaves
            .range_mut((Bound::Unbounded, Bound::Included(&leaf_key(key))))
            .next_back()
            .expect("the first leaf's key is empty");
        let i = match leaf.find(key) {
            Ok(i) => i,
            Err(at) => {
                leaf.insert(at, key);
                *len += 1;
                if overfull(leaf, *max_slots) {
                    *split_due = Some(lk.clone());
                }
                at
            }
        };
        KeyMut { leaf, i, used: cache_used, limit: *cache_limit, max_record: *cache_max_record }
    }

    /// Splits the leaf at `lk` in two if it is (still) over its size.
    fn split(&mut self, lk: &LeafKey) {
        let Some(leaf) = self.leaves.get_mut(lk) else { return };
        if overfull(leaf, self.max_slots) {
            let mut right = leaf.split_off(leaf.slots.len() / 2);
            let first = [&lk.1[..right.common], right.slots[0].tail(&right.bytes, right.common)];
            let rk = leaf_key(&first.concat());
            leaf.reprefix(&lk.1, common_len(&lk.1, &rk.1));
            right.reprefix(&rk.1, self.range_common(&rk));
            self.leaves.insert(rk, right);
        }
    }

    /// The common prefix length of the keys the leaf at `lk` may hold: that of `lk` and
    /// the next leaf's key (every key between two keys shares their common prefix), 0 for
    /// the last leaf.
    fn range_common(&self, lk: &LeafKey) -> usize {
        match self.leaves.range((Bound::Excluded(lk), Bound::Unbounded)).next() {
            Some((next, _)) => common_len(&lk.1, &next.1),
            None => 0,
        }
    }

    /// Removes the key and its history; true if it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let lk = self.leaf_of(key).clone();
        let leaf = self.leaves.get_mut(&lk).expect("leaf of the key");
        let Ok(i) = leaf.find(key) else { return false };
        let s = leaf.remove(i);
        self.cache_used -= s.rec_len as usize;
        self.len -= 1;
        let small = leaf.slots.len() < (self.max_slots / 4).max(1);
        if small && !lk.1.is_empty() {
            let (_, prev) = self
                .leaves
                .range((Bound::Unbounded, Bound::Excluded(&lk)))
                .next_back()
                .expect("the first leaf's key is empty");
            let n = self.leaves[&lk].slots.len();
            if n == 0 || prev.slots.len() + n <= self.max_slots / 2 {
                let mut leaf = self.leaves.remove(&lk).expect("leaf of the key");
                let plk = self
                    .leaves
                    .range((Bound::Unbounded, Bound::Excluded(&lk)))
                    .next_back()
                    .expect("the first leaf's key is empty")
                    .0
                    .clone();
                // Its key range grows to the removed leaf's end: less may be in common.
                let c = self.range_common(&plk);
                leaf.reprefix(&lk.1, c);
                let prev = self.leaves.get_mut(&plk).expect("the previous leaf");
                prev.reprefix(&plk.1, c);
                prev.absorb(leaf);
                prev.reprefix(&plk.1, c);
            }
        }
        true
    }

    /// The keys in `(lower, upper)`, in order.
    pub fn range<'a>(&'a self, lower: Bound<&[u8]>, upper: Bound<&'a [u8]>) -> Range<'a> {
        let (lk, leaf, i) = match lower {
            Bound::Unbounded => {
                let (lk, leaf) = self.leaves.iter().next().expect("the first leaf");
                (lk, leaf, 0)
            }
            Bound::Included(k) | Bound::Excluded(k) => {
                let (lk, leaf) = self
                    .leaves
                    .range((Bound::Unbounded, Bound::Included(&leaf_key(k))))
                    .next_back()
                    .expect("the first leaf's key is empty");
                let incl = matches!(lower, Bound::Included(_));
                // `k` lies in the leaf's key range: it has the leaf's common prefix.
                let (c, k) = (leaf.common, &k[leaf.common..]);
                let i = leaf.slots.partition_point(|s| {
                    let sk = s.tail(&leaf.bytes, c);
                    if incl { sk < k } else { sk <= k }
                });
                (lk, leaf, i)
            }
        };
        let (end, last) = in_bound(lk, leaf, upper);
        Range {
            prefix: &lk.1[..leaf.common],
            leaf,
            i,
            end,
            last,
            rest: self.leaves.range((Bound::Excluded(lk), Bound::Unbounded)),
            upper,
        }
    }

    /// Every key, in order.
    pub fn iter(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    /// Calls `f` with each key `> after` (every key if `None`) and its history, in order,
    /// until it returns false.
    pub fn for_each_mut(
        &mut self,
        after: Option<&[u8]>,
        mut f: impl FnMut(&[u8], &mut KeyIndex) -> bool,
    ) {
        let start = match after {
            Some(k) => self.leaf_of(k).clone(),
            None => leaf_key(b""),
        };
        let mut k = Vec::new();
        for (lk, leaf) in self.leaves.range_mut((Bound::Included(&start), Bound::Unbounded)) {
            let Leaf { slots, bytes, common, .. } = leaf;
            for s in slots.iter_mut() {
                k.clear();
                k.extend_from_slice(&lk.1[..*common]);
                k.extend_from_slice(s.tail(bytes, *common));
                if after.is_some_and(|a| k[..] <= *a) {
                    continue;
                }
                if !f(&k, &mut s.ki) {
                    return;
                }
            }
        }
    }

    /// Checks the structure's invariants (tests).
    #[cfg(test)]
    fn check(&self) {
        let mut prev: Option<Vec<u8>> = None;
        let mut n = 0;
        let mut cached = 0;
        let keys: Vec<&[u8]> = self
            .leaves
            .keys()
            .map(|(p, k)| {
                assert_eq!(*p, prefix_at(k, 0));
                &k[..]
            })
            .collect();
        assert!(keys[0].is_empty());
        for (j, ((_, lk), leaf)) in self.leaves.iter().enumerate() {
            let mut live = 0;
            assert_eq!(leaf.prefixes.len(), leaf.slots.len());
            let full: Vec<Vec<u8>> = leaf
                .slots
                .iter()
                .map(|s| [&lk[..leaf.common], s.tail(&leaf.bytes, leaf.common)].concat())
                .collect();
            for (i, s) in leaf.slots.iter().enumerate() {
                let k = &full[i][..];
                assert!(k >= &lk[..], "key below its leaf");
                if let Some(next) = keys.get(j + 1) {
                    assert!(k < &next[..], "key at or above the next leaf");
                }
                assert!(prev.as_deref().is_none_or(|p| p < k), "keys out of order");
                prev = Some(k.to_vec());
                live += s.live_len();
                cached += s.rec_len as usize;
                if let Some(r) = s.record(&leaf.bytes) {
                    assert_eq!(&r[RECORD_KEY_OFFSET..RECORD_KEY_OFFSET + k.len()], k);
                    assert_eq!(s.key_len as usize, k.len());
                } else {
                    assert_eq!(s.key_len as usize, k.len() - leaf.common, "a tail alone");
                }
                let want = keys.get(j + 1).map_or(0, |next| common_len(lk, next));
                assert_eq!(leaf.common, want, "common prefix length");
                assert_eq!(k[..leaf.common], lk[..leaf.common], "common prefix");
                assert_eq!(leaf.prefixes[i], prefix_at(k, leaf.common));
                assert!(s.ki.last_put().is_some() || s.rec_len == 0, "a record of no put");
            }
            assert_eq!(live, leaf.live);

            assert!(leaf.bytes.len() >= live);
            n += leaf.slots.len();
        }
        assert_eq!(n, self.len);
        assert_eq!(cached, self.cache_used);
    }
}

/// A key in the map, read-only: its history (through `Deref`) and its cached record.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    slot: &'a Slot,
    bytes: &'a [u8],
    /// The leaf's common prefix, which the slot may not store.
    prefix: &'a [u8],
}

/// A key's bytes in two parts: its leaf's common prefix and the rest.
#[derive(Clone, Copy, Debug)]
pub struct KeyBytes<'a> {
    prefix: &'a [u8],
    tail: &'a [u8],
}

impl KeyBytes<'_> {
    pub fn to_vec(&self) -> Vec<u8> {
        [self.prefix, self.tail].concat()
    }

    pub fn len(&self) -> usize {
        self.prefix.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compares with `other` as byte strings.
    pub fn cmp_bytes(&self, other: &[u8]) -> std::cmp::Ordering {
        let n = self.prefix.len().min(other.len());
        match self.prefix[..n].cmp(&other[..n]) {
            std::cmp::Ordering::Equal if n < self.prefix.len() => std::cmp::Ordering::Greater,
            std::cmp::Ordering::Equal => self.tail.cmp(&other[n..]),
            ord => ord,
        }
    }
}

impl<'a> Key<'a> {
    fn new(lk: &'a LeafKey, leaf: &'a Leaf, i: usize) -> Key<'a> {
        Key { slot: &leaf.slots[i], bytes: &leaf.bytes, prefix: &lk.1[..leaf.common] }
    }

    pub fn key(&self) -> KeyBytes<'a> {
        KeyBytes { prefix: self.prefix, tail: self.slot.tail(self.bytes, self.prefix.len()) }
    }

    /// The cached record of revision `rev`, if that is the cached latest one.
    pub fn cached(&self, rev: Revision) -> Option<&'a [u8]> {
        self.slot.record(self.bytes).filter(|_| self.slot.ki.last_put() == Some(rev))
    }

    /// The cached latest record if it is the version visible at main revision `main` (a
    /// cached record is always the key's last change), without looking at the generations.
    pub fn cached_at(&self, main: i64) -> Option<(Revision, &'a [u8])> {
        let rec = self.slot.record(self.bytes)?;
        let r = self.slot.ki.last_put()?;
        (r.main <= main).then_some((r, rec))
    }
}

impl Deref for Key<'_> {
    type Target = KeyIndex;

    fn deref(&self) -> &KeyIndex {
        &self.slot.ki
    }
}

/// A key in the map, for a writer: its history (through `DerefMut`) and its cached record.
pub struct KeyMut<'a> {
    leaf: &'a mut Leaf,
    i: usize,
    used: &'a mut usize,
    limit: usize,
    max_record: usize,
}

impl KeyMut<'_> {
    /// The cached record of revision `rev`, if that is the cached latest one.
    pub fn cached(&self, rev: Revision) -> Option<&[u8]> {
        let s = &self.leaf.slots[self.i];
        s.record(&self.leaf.bytes).filter(|_| s.ki.last_put() == Some(rev))
    }

    /// Makes `record` (of revision `rev`, the key's new latest put) its cached record if the
    /// budget allows; otherwise the key caches nothing.
    pub fn set_latest(&mut self, rev: Revision, record: &[u8]) {
        debug_assert_eq!(self.leaf.slots[self.i].ki.live().map(|h| h.rev), Some(rev));
        // The record's revision is the key's last put: the slot does not store it.
        let old = self.leaf.slots[self.i].rec_len as usize;
        let used = *self.used - old;
        if record.len() <= self.max_record && used + record.len() <= self.limit {
            self.leaf.set_record(self.i, record);
            *self.used = used + record.len();
        } else {
            self.clear_latest();
        }
    }

    /// Drops the key's cached record (before a tombstone or a rollback).
    pub fn clear_latest(&mut self) {
        *self.used -= self.leaf.clear_record(self.i);
    }
}

impl Deref for KeyMut<'_> {
    type Target = KeyIndex;

    fn deref(&self) -> &KeyIndex {
        &self.leaf.slots[self.i].ki
    }
}

impl DerefMut for KeyMut<'_> {
    fn deref_mut(&mut self) -> &mut KeyIndex {
        &mut self.leaf.slots[self.i].ki
    }
}

/// Keys of a [`KeyMap`] in order (see [`KeyMap::range`]).
pub struct Range<'a> {
    leaf: &'a Leaf,
    /// `leaf`'s common prefix.
    prefix: &'a [u8],
    /// Next slot of `leaf`.
    i: usize,
    /// Slots of `leaf` below the upper bound.
    end: usize,
    /// True if no key beyond `leaf` is below the upper bound.
    last: bool,
    rest: std::collections::btree_map::Range<'a, LeafKey, Leaf>,
    upper: Bound<&'a [u8]>,
}

/// How many slots of `leaf` lie below `upper`, and whether that ends the range. One
/// comparison for a leaf wholly below it (a range compares keys only in its last leaf).
fn in_bound(lk: &LeafKey, leaf: &Leaf, upper: Bound<&[u8]>) -> (usize, bool) {
    let c = leaf.common;
    let key = |s: &Slot| KeyBytes { prefix: &lk.1[..c], tail: s.tail(&leaf.bytes, c) };
    let below = |s: &Slot| match upper {
        Bound::Unbounded => true,
        Bound::Excluded(u) => key(s).cmp_bytes(u).is_lt(),
        Bound::Included(u) => key(s).cmp_bytes(u).is_le(),
    };
    match leaf.slots.last() {
        None => (0, false),
        Some(s) if below(s) => (leaf.slots.len(), false),
        Some(_) => (leaf.slots.partition_point(below), true),
    }
}

impl Range<'_> {
    /// How many keys are left, counting at most about `cap` (walks only leaf ends).
    pub fn count_ahead(&self, cap: usize) -> usize {
        let mut n = self.end.saturating_sub(self.i);
        let (mut last, mut rest) = (self.last, self.rest.clone());
        while !last && n < cap {
            let Some((lk, leaf)) = rest.next() else { break };
            let (end, l) = in_bound(lk, leaf, self.upper);
            n += end;
            last = l;
        }
        n.min(cap)
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Key<'a>;

    fn next(&mut self) -> Option<Key<'a>> {
        loop {
            if self.i < self.end {
                let slot = &self.leaf.slots[self.i];
                self.i += 1;
                return Some(Key { slot, bytes: &self.leaf.bytes, prefix: self.prefix });
            }
            if self.last {
                return None;
            }
            let Some((lk, leaf)) = self.rest.next() else {
                self.last = true;
                return None;
            };
            (self.end, self.last) = in_bound(lk, leaf, self.upper);
            (self.leaf, self.i, self.prefix) = (leaf, 0, &lk.1[..leaf.common]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_put;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Keys of several shapes: short ones, prefixes of each other, long shared prefixes
    /// (ties on the slots' 8-byte prefixes), zero bytes.
    fn key(rng: &mut StdRng) -> Vec<u8> {
        let i = rng.random_range(0..200);
        match i % 4 {
            0 => format!("k{i:03}").into_bytes(),
            1 => format!("/registry/pods/default/pod-{i:03}").into_bytes(),
            2 => vec![b'a'; i % 13],
            _ => [&b"a\0"[..], &[(i % 3) as u8; 9][..i % 9]].concat(),
        }
    }

    /// What the index costs per key at 1M keys of the memory measurement's shape
    /// (docs/memory.md: 32-byte keys under `/registry/pods/default/`, 512-byte values, written
    /// in key order, the default 32 MiB latest cache). A measurement, run by hand:
    /// `cargo test -p logbook-engine --release --lib index_bytes_per_key -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn index_bytes_per_key() {
        use std::mem::size_of;
        let n: i64 = 1_000_000;
        let mut m = KeyMap::new(32 << 20, 16 << 10);
        for i in 0..n {
            let key = format!("/registry/pods/default/{i:09}");
            let rev = Revision::new(i + 2, 0);
            let rec = encode_put(key.as_bytes(), rev.main, 1, 0, &[b'v'; 512]);
            let mut e = m.get_or_insert(key.as_bytes());
            e.put(rev);
            e.set_latest(rev, &rec);
        }
        let leaves = m.leaves.len();
        let slots: usize = m.leaves.values().map(|l| l.slots.capacity() * size_of::<Slot>()).sum();
        let prefixes: usize = m.leaves.values().map(|l| l.prefixes.capacity() * 8).sum();
        let bytes: usize = m.leaves.values().map(|l| l.bytes.capacity()).sum();
        let live: usize = m.leaves.values().map(|l| l.live).sum();
        let heap = m.heap_bytes();
        let cached = m.cached_bytes();
        let per = |b: usize| b as f64 / n as f64;
        println!(
            "{n} keys in {leaves} leaves ({:.1} keys a leaf), slot {} bytes, KeyIndex {} bytes",
            n as f64 / leaves as f64,
            size_of::<Slot>(),
            size_of::<KeyIndex>()
        );
        println!(
            "heap {:.1} MiB, cached records {:.1} MiB, without them {:.1} bytes a key",
            heap as f64 / (1 << 20) as f64,
            cached as f64 / (1 << 20) as f64,
            per(heap - cached)
        );
        println!(
            "a key: slots {:.1}, prefixes {:.1}, key bytes {:.1} (live {:.1}), leaf {:.1}",
            per(slots),
            per(prefixes),
            per(bytes - cached),
            per(live - cached),
            per(heap - slots - prefixes - bytes)
        );
    }

    /// Keys inserted in order (as a bulk load or `--sequential-keys` writes them) always land
    /// in the last leaf; each split used to leave its left half the capacity of the whole,
    /// four times the slots it kept.
    #[test]
    fn sequential_inserts_leave_no_spare_slots_behind() {
        let mut m = KeyMap::new(0, 0);
        for i in 0..10_000 {
            m.get_or_insert(format!("/registry/pods/default/{i:09}").as_bytes());
        }
        m.check();
        let slots: usize = m.leaves.values().map(|l| l.slots.len()).sum();
        let capacity: usize = m.leaves.values().map(|l| l.slots.capacity()).sum();
        let prefixes: usize = m.leaves.values().map(|l| l.prefixes.capacity()).sum();
        assert_eq!(slots, 10_000);
        // Every leaf but the last is exact; the last may have doubled.
        assert!(capacity <= slots + 2 * MAX_SLOTS, "{capacity} slots for {slots} keys");
        assert!(prefixes <= slots + 2 * MAX_SLOTS, "{prefixes} prefixes for {slots} keys");
        // Keys are stored without their leaf's common prefix (`/registry/pods/default/0000`
        // and more), but in the last leaf, whose key range has no end.
        let live: usize = m.leaves.values().map(|l| l.live).sum();
        assert!(live <= 10_000 * 9 + (MAX_SLOTS + 1) * 32, "{live} key bytes for {slots} keys");
        let all: Vec<Vec<u8>> = m.iter().map(|k| k.key().to_vec()).collect();
        let want: Vec<Vec<u8>> =
            (0..10_000).map(|i| format!("/registry/pods/default/{i:09}").into_bytes()).collect();
        assert_eq!(all, want);
    }

    /// Random inserts, record changes and removes on tiny leaves (splits, rebuilds, merges
    /// all the time) against a `BTreeMap` model, comparing gets, ranges and invariants.
    #[test]
    fn matches_a_btreemap_under_random_changes() {
        let seed = crate::test_seed("key map model test");
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..4 {
            let slots = [2, 3, 8, 128][round];
            let mut m = KeyMap::with_leaf_size(4000, 300, slots);
            // key -> (latest rev, cached record)
            let mut model: BTreeMap<Vec<u8>, (Revision, Option<Vec<u8>>)> = BTreeMap::new();
            let mut main = 1;
            for step in 0..3000 {
                let k = key(&mut rng);
                match rng.random_range(0..10) {
                    0..6 => {
                        main += 1;
                        let rev = Revision::new(main, 0);
                        let val = vec![b'v'; rng.random_range(0..400)];
                        let rec = encode_put(&k, 1, 1, 0, &val);
                        let mut e = m.get_or_insert(&k);
                        e.put(rev);
                        e.set_latest(rev, &rec);
                        let kept = e.cached(rev).map(<[u8]>::to_vec);
                        assert!(kept.is_none() || kept.as_deref() == Some(&rec[..]));
                        model.insert(k, (rev, kept));
                    }
                    6..8 => {
                        if let Some(mut e) = m.get_mut(&k) {
                            e.clear_latest();
                            model.get_mut(&k).expect("in the model").1 = None;
                        }
                    }
                    _ => assert_eq!(m.remove(&k), model.remove(&k).is_some()),
                }
                if step % 97 == 0 {
                    m.check();
                }
                let probe = key(&mut rng);
                let got = m.get(&probe).map(|e| {
                    (
                        e.live().expect("put").rev,
                        e.cached(e.live().expect("put").rev).map(<[u8]>::to_vec),
                    )
                });
                assert_eq!(got, model.get(&probe).cloned(), "seed {seed} step {step}");
            }
            m.check();
            let a = key(&mut rng);
            let b = key(&mut rng);
            for (lo, hi) in [
                (Bound::Included(&a[..]), Bound::Excluded(&b[..])),
                (Bound::Excluded(&a[..]), Bound::Included(&b[..])),
                (Bound::Unbounded, Bound::Excluded(&b[..])),
                (Bound::Included(&a[..]), Bound::Unbounded),
            ] {
                let got: Vec<Vec<u8>> = m.range(lo, hi).map(|e| e.key().to_vec()).collect();
                let cap = rng.random_range(0..300);
                assert_eq!(m.range(lo, hi).count_ahead(cap), got.len().min(cap), "seed {seed}");
                let want: Vec<Vec<u8>> = if matches!((lo, hi), (Bound::Included(x), Bound::Excluded(y)) | (Bound::Excluded(x), Bound::Included(y)) if x > y)
                {
                    Vec::new()
                } else {
                    model.range::<[u8], _>((lo, hi)).map(|(k, _)| k.clone()).collect()
                };
                assert_eq!(got, want, "seed {seed}");
            }
            let mut visited = Vec::new();
            m.for_each_mut(Some(&a), |k, _| {
                visited.push(k.to_vec());
                visited.len() < 10
            });
            let want: Vec<Vec<u8>> = model
                .range::<[u8], _>((Bound::Excluded(&a[..]), Bound::Unbounded))
                .take(10)
                .map(|(k, _)| k.clone())
                .collect();
            assert_eq!(visited, want, "seed {seed}");
            let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
            for k in keys {
                assert!(m.remove(&k));
            }
            m.check();
            assert_eq!((m.len(), m.leaves.len(), m.cached_bytes()), (0, 1, 0));
        }
    }
}
