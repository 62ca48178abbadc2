//! The in-memory index: for every key, the revisions at which it changed.
//!
//! Like etcd's `keyIndex`, a key's history is a list of *generations*: a generation starts
//! with a put that created the key (version 1) and ends with the tombstone that deleted it.
//! The index answers "which revision of key K is visible at revision R, with which create
//! revision and version" without touching the disk; the value is then fetched by revision.
//!
//! A key's latest record may also be cached next to it (see `key_map.rs`), so that reads
//! at the current revision (Kubernetes' lists and gets) walk the index in key order and
//! never touch the revision tree, whose records for a key range are scattered over its pages.

use smallvec::{SmallVec, smallvec};

use crate::revision::Revision;

/// A key's generations, oldest first.
///
/// Nearly every key of a big store has one generation of one revision (a store written once,
/// or compacted): that key is 16 bytes inline, with no allocation. Anything longer spills to a
/// [`History`] on the heap, and compaction brings it back when it fits again.
///
/// ```text
/// Empty  | tag: u8 |                                                    (a key just inserted)
/// One    | tag: u8 | sub: u8 | version: u16 | main - created: u32 | main: i64 |   16 bytes
///        one open generation holding one put at revision {main, sub}
/// Many   | tag: u8 | Box<History> |                                     the general form
/// ```
///
/// A revision, version or create revision the compact form cannot hold (a sub revision over
/// 255, a version over 65535, a create revision more than `u32::MAX` behind) keeps the key in
/// the general form.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex(Repr);

#[derive(Clone, Debug, Default)]
enum Repr {
    #[default]
    Empty,
    One {
        main: i64,
        /// `main` minus the create revision.
        back: u32,
        version: u16,
        sub: u8,
    },
    Many(Box<History>),
}

/// A key's generations in the general form.
///
/// One generation is inline, as is its first revision: a key with one generation of a few
/// revisions costs the box and one `Vec` of revisions.
#[derive(Clone, Debug, Default)]
struct History {
    gens: SmallVec<[Generation; 1]>,
}

#[derive(Clone, Debug)]
struct Generation {
    /// Main revision of the put that created the key in this generation.
    created: i64,
    /// Version of `revs[0]` (1 unless compaction dropped earlier revisions).
    first_ver: i64,
    /// Revisions in order; if `closed`, the last one is the tombstone.
    revs: SmallVec<[Revision; 1]>,
    closed: bool,
}

/// A live version of a key as the index sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub rev: Revision,
    pub create_revision: i64,
    pub version: i64,
}

impl KeyIndex {
    /// The compact form of one open generation holding only `rev`, if it fits.
    fn compact_form(rev: Revision, created: i64, version: i64) -> Option<Repr> {
        Some(Repr::One {
            main: rev.main,
            back: u32::try_from(rev.main.checked_sub(created)?).ok()?,
            version: u16::try_from(version).ok()?,
            sub: u8::try_from(rev.sub).ok()?,
        })
    }

    /// The history in the general form, spilling it there first if needed.
    fn spilled(&mut self) -> &mut History {
        let h = match self.0 {
            Repr::Many(_) => None,
            Repr::Empty => Some(History::default()),
            Repr::One { main, back, version, sub } => Some(History::one(
                Revision::new(main, i64::from(sub)),
                main - i64::from(back),
                i64::from(version),
            )),
        };
        if let Some(h) = h {
            self.0 = Repr::Many(Box::new(h));
        }
        match &mut self.0 {
            Repr::Many(h) => h,
            _ => unreachable!("the history was just spilled"),
        }
    }

    /// Goes back to the compact form (or empty) if the history fits it again.
    fn settle(&mut self) {
        if let Repr::Many(h) = &self.0 {
            if h.gens.is_empty() {
                self.0 = Repr::Empty;
            } else if let Some((rev, created, version)) = h.single()
                && let Some(one) = KeyIndex::compact_form(rev, created, version)
            {
                self.0 = one;
            }
        }
    }

    /// Builds from a stored record (used when rebuilding the index at open; records arrive
    /// in revision order). `put` is `Some((create_revision, version))`, `None` a tombstone.
    pub fn restore(&mut self, rev: Revision, put: Option<(i64, i64)>) {
        if let Repr::Empty = self.0 {
            match put {
                // A tombstone whose puts were compacted away (only below the compaction).
                None => return,
                Some((created, version)) => {
                    if let Some(one) = KeyIndex::compact_form(rev, created, version) {
                        self.0 = one;
                        return;
                    }
                }
            }
        }
        self.spilled().restore(rev, put);
    }

    /// Records a put at `rev`; returns (create revision, version, previous live hit).
    pub fn put(&mut self, rev: Revision) -> (i64, i64, Option<Hit>) {
        if let Repr::Empty = self.0
            && let Some(one) = KeyIndex::compact_form(rev, rev.main, 1)
        {
            self.0 = one;
            return (rev.main, 1, None);
        }
        self.spilled().put(rev)
    }

    /// Records a delete at `rev` if the key is live; returns the deleted hit. A cached
    /// record stays until the caller clears it (it may still want it).
    pub fn tombstone(&mut self, rev: Revision) -> Option<Hit> {
        self.live()?;
        self.spilled().tombstone(rev)
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
        match &self.0 {
            Repr::Empty => None,
            &Repr::One { main, back, version, sub } => {
                let rev = Revision::new(main, i64::from(sub));
                (rev <= bound).then(|| Hit {
                    rev,
                    create_revision: main - i64::from(back),
                    version: i64::from(version),
                })
            }
            Repr::Many(h) => h.at_or_below(bound),
        }
    }

    /// The revision of the key's latest put if no generation began after it: the revision
    /// a cached latest record has (a tombstone after it does not change that until the
    /// caller clears the record).
    pub fn last_put(&self) -> Option<Revision> {
        match &self.0 {
            Repr::Empty => None,
            &Repr::One { main, sub, .. } => Some(Revision::new(main, i64::from(sub))),
            Repr::Many(h) => h.last_put(),
        }
    }

    /// Compacts at main revision `at`: of the revisions `<= at` only the latest is kept, and
    /// only if it is a put. Pushes dropped revisions to `removed`; true if nothing is left.
    pub fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) -> bool {
        let empty = match &mut self.0 {
            Repr::Empty => true,
            // Its one revision is a put, the latest: kept whatever `at` is.
            Repr::One { .. } => false,
            Repr::Many(h) => h.compact(at, removed),
        };
        self.settle();
        empty
    }

    /// Undoes every change at main revision `main` (an aborted write transaction; they are
    /// always the latest). True if nothing is left.
    pub fn rollback(&mut self, main: i64) -> bool {
        let empty = match &mut self.0 {
            Repr::Empty => true,
            Repr::One { main: m, .. } => *m == main,
            Repr::Many(h) => h.rollback(main),
        };
        if empty {
            self.0 = Repr::Empty;
        }
        self.settle();
        empty
    }

    /// Heap bytes held beyond the struct itself (histories too long to be compact).
    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Many(h) => std::mem::size_of::<History>() + h.heap_bytes(),
            _ => 0,
        }
    }

    /// Number of revisions held (for tests and stats).
    pub fn revision_count(&self) -> usize {
        match &self.0 {
            Repr::Empty => 0,
            Repr::One { .. } => 1,
            Repr::Many(h) => h.revision_count(),
        }
    }

    /// Whether the key is in the compact form (or empty): no allocation of its own.
    pub fn is_compact(&self) -> bool {
        !matches!(self.0, Repr::Many(_))
    }
}

impl History {
    /// One open generation created at `created` holding only `rev` of version `version`.
    fn one(rev: Revision, created: i64, version: i64) -> History {
        History {
            gens: smallvec![Generation {
                created,
                first_ver: version,
                revs: smallvec![rev],
                closed: false
            }],
        }
    }

    /// `(revision, create revision, version)` if this is one open generation of one revision.
    fn single(&self) -> Option<(Revision, i64, i64)> {
        match &self.gens[..] {
            [g] if !g.closed && g.revs.len() == 1 => Some((g.revs[0], g.created, g.first_ver)),
            _ => None,
        }
    }

    fn last_put(&self) -> Option<Revision> {
        let g = self.gens.last()?;
        let n = g.revs.len() - usize::from(g.closed);
        n.checked_sub(1).map(|i| g.revs[i])
    }

    fn restore(&mut self, rev: Revision, put: Option<(i64, i64)>) {
        match put {
            Some((created, version)) => match self.gens.last_mut() {
                Some(g) if !g.closed => g.revs.push(rev),
                _ => self.gens.push(Generation {
                    created,
                    first_ver: version,
                    revs: smallvec![rev],
                    closed: false,
                }),
            },
            None => match self.gens.last_mut() {
                Some(g) if !g.closed => {
                    g.revs.push(rev);
                    g.closed = true;
                }
                // A tombstone whose puts were compacted away (only below the compaction).
                _ => {}
            },
        }
    }

    fn put(&mut self, rev: Revision) -> (i64, i64, Option<Hit>) {
        let prev = self.at_or_below(Revision::max_of(i64::MAX));
        match self.gens.last_mut() {
            Some(g) if !g.closed => {
                g.revs.push(rev);
                (g.created, g.first_ver + g.revs.len() as i64 - 1, prev)
            }
            _ => {
                self.gens.push(Generation {
                    created: rev.main,
                    first_ver: 1,
                    revs: smallvec![rev],
                    closed: false,
                });
                (rev.main, 1, prev)
            }
        }
    }

    fn tombstone(&mut self, rev: Revision) -> Option<Hit> {
        let prev = self.at_or_below(Revision::max_of(i64::MAX))?;
        let g = self.gens.last_mut().expect("live implies a generation");
        g.revs.push(rev);
        g.closed = true;
        Some(prev)
    }

    fn at_or_below(&self, bound: Revision) -> Option<Hit> {
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

    fn compact(&mut self, at: i64, removed: &mut Vec<Revision>) -> bool {
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
            removed.extend(gen_.revs.drain(..));
            self.gens.remove(0);
        } else {
            removed.extend(gen_.revs.drain(..i));
            gen_.first_ver += i as i64;
            // A key overwritten many times keeps the capacity of its whole history otherwise:
            // after a compaction that is most of the index's memory.
            // One revision left goes back inline, freeing its allocation.
            let (len, cap) = (gen_.revs.len(), gen_.revs.capacity());
            if gen_.revs.spilled() && (len <= 1 || cap > 2 * len + 2) {
                gen_.revs.shrink_to_fit();
            }
        }
        let (len, cap) = (self.gens.len(), self.gens.capacity());
        if self.gens.spilled() && (len <= 1 || cap > 2 * len + 2) {
            self.gens.shrink_to_fit();
        }
        self.gens.is_empty()
    }

    fn rollback(&mut self, main: i64) -> bool {
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

    fn heap_bytes(&self) -> usize {
        let gens = if self.gens.spilled() {
            self.gens.capacity() * std::mem::size_of::<Generation>()
        } else {
            0
        };
        gens + self
            .gens
            .iter()
            .filter(|g| g.revs.spilled())
            .map(|g| g.revs.capacity() * std::mem::size_of::<Revision>())
            .sum::<usize>()
    }

    fn revision_count(&self) -> usize {
        self.gens.iter().map(|g| g.revs.len()).sum()
    }
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
    fn rollback_undoes_the_latest_main_revision() {
        let mut k = KeyIndex::default();
        k.put(r(2));
        k.tombstone(Revision::new(3, 0));
        k.put(Revision::new(3, 1));
        assert!(!k.rollback(3));
        assert_eq!(k.live().unwrap().rev, r(2));
        assert!(k.rollback(2));
    }

    #[test]
    fn one_generation_of_one_revision_is_compact() {
        // The common key (written once, or compacted to its latest put) costs 16 bytes and no
        // allocation.
        assert_eq!(std::mem::size_of::<KeyIndex>(), 16);
        let mut k = KeyIndex::default();
        assert!(k.is_compact());
        assert_eq!(k.put(r(2)), (2, 1, None));
        assert!(k.is_compact() && k.heap_bytes() == 0);
        assert_eq!(k.last_put(), Some(r(2)));
        k.put(r(3));
        assert!(!k.is_compact());
        let mut removed = Vec::new();
        assert!(!k.compact(3, &mut removed));
        assert_eq!(removed, vec![r(2)]);
        assert!(k.is_compact(), "compaction gives a spilled history its memory back");
        assert_eq!(k.get(3), Some(Hit { rev: r(3), create_revision: 2, version: 2 }));
        assert_eq!(k.get(2), None, "below the compaction nothing is visible");
        // A delete and its compaction leave nothing.
        k.tombstone(r(4));
        assert_eq!(k.last_put(), Some(r(3)), "the cached record's revision until cleared");
        assert!(k.compact(4, &mut removed));
        assert!(k.is_compact() && k.live().is_none());
    }

    /// Values the compact form cannot hold keep the key spilled, with the same answers; once
    /// compaction leaves one revision that fits, it is compact again.
    #[test]
    fn spills_what_the_compact_form_cannot_hold() {
        let big = i64::from(u32::MAX);
        // Main revisions past u32::MAX stay compact (main is 64 bits).
        let mut k = KeyIndex::default();
        k.put(Revision::new(big + 10, 0));
        assert!(k.is_compact());
        assert_eq!(k.live().unwrap().rev, Revision::new(big + 10, 0));

        // A create revision more than u32::MAX behind its only revision.
        let mut k = KeyIndex::default();
        k.put(r(1));
        k.put(r(big + 1));
        let mut removed = Vec::new();
        k.compact(big + 1, &mut removed);
        assert_eq!(removed, vec![r(1)]);
        assert_eq!(k.live(), Some(Hit { rev: r(big + 1), create_revision: 1, version: 2 }));
        assert!(k.is_compact(), "back = u32::MAX fits");
        k.put(r(big + 2));
        k.compact(big + 2, &mut removed);
        assert_eq!(k.live(), Some(Hit { rev: r(big + 2), create_revision: 1, version: 3 }));
        assert!(!k.is_compact(), "back = u32::MAX + 1 does not fit");

        // Restored the same way (the index rebuilt at open).
        let mut k = KeyIndex::default();
        k.restore(r(big + 2), Some((1, 3)));
        assert!(!k.is_compact());
        assert_eq!(k.live(), Some(Hit { rev: r(big + 2), create_revision: 1, version: 3 }));
        let mut k = KeyIndex::default();
        k.restore(r(7), Some((3, 70_000)));
        assert!(!k.is_compact(), "version over u16");
        assert_eq!(k.live().unwrap().version, 70_000);

        // Sub revisions over 255 (a transaction of many changes).
        let mut k = KeyIndex::default();
        assert_eq!(k.put(Revision::new(9, 256)), (9, 1, None));
        assert!(!k.is_compact());
        assert_eq!(k.get(9).unwrap().rev, Revision::new(9, 256));
        assert_eq!(k.at_or_below(Revision::new(9, 255)), None);
        assert!(k.rollback(9));
        assert!(k.is_compact() && k.live().is_none());
        k.put(Revision::new(9, 255));
        assert!(k.is_compact());
        assert_eq!(k.at_or_below(Revision::new(9, 254)), None);
        assert_eq!(k.at_or_below(Revision::new(9, 255)).unwrap().rev, Revision::new(9, 255));

        // Versions over u16::MAX: spilled until compaction; the version itself never fits.
        let mut k = KeyIndex::default();
        for main in 1..=70_000 {
            k.put(r(main));
        }
        k.compact(65_535, &mut removed);
        assert!(k.live().unwrap().version == 70_000 && !k.is_compact());
        k.compact(70_000, &mut removed);
        assert_eq!(k.live(), Some(Hit { rev: r(70_000), create_revision: 1, version: 70_000 }));
        assert!(!k.is_compact(), "version 70000 does not fit u16");
        let mut k = KeyIndex::default();
        for main in 1..=65_535 {
            k.put(r(main));
        }
        k.compact(65_535, &mut removed);
        assert_eq!(k.live().unwrap().version, 65_535);
        assert!(k.is_compact(), "version 65535 fits");
    }

    /// Many generations: each tombstone closes one, a put opens the next.
    #[test]
    fn many_generations() {
        let mut k = KeyIndex::default();
        for g in 0..100 {
            let base = 10 * g + 1;
            assert_eq!(k.put(r(base)), (base, 1, None));
            assert_eq!(k.put(r(base + 1)).1, 2);
            assert_eq!(k.tombstone(r(base + 2)).unwrap().rev, r(base + 1));
        }
        assert_eq!(k.revision_count(), 300);
        assert_eq!(k.get(502), Some(Hit { rev: r(502), create_revision: 501, version: 2 }));
        assert_eq!(k.get(501), Some(Hit { rev: r(501), create_revision: 501, version: 1 }));
        assert_eq!(k.get(503), None);
        assert_eq!(k.get(510), None);
        k.put(r(2000));
        let mut removed = Vec::new();
        assert!(!k.compact(1500, &mut removed));
        assert_eq!(removed.len(), 300);
        assert!(k.is_compact());
        assert_eq!(k.live(), Some(Hit { rev: r(2000), create_revision: 2000, version: 1 }));
    }

    /// Random puts, deletes, rolled-back transactions and compactions against a plain model
    /// (every change of the key with its create revision and version; compaction drops what
    /// etcd drops); every revision's answer is compared, on the index as written and on one
    /// restored from the model's records. Revisions start near 0 or near `u32::MAX`, and
    /// sub revisions cross the compact form's limit, so keys spill and come back.
    #[test]
    fn matches_a_model_under_random_histories() {
        use rand::{Rng, SeedableRng};
        let seed = crate::test_seed("key index model test");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for round in 0..300 {
            let base = [0, i64::from(u32::MAX) - 30, 1 << 40][round % 3];
            let mut k = KeyIndex::default();
            // (revision, Some((create, version)) for a put, None for a delete)
            let mut model: Vec<(Revision, Option<(i64, i64)>)> = Vec::new();
            let mut compacted = base;
            for main in base + 1..base + 60 {
                let rev = Revision::new(main, [0, 0, 0, 1, 255, 256, 300][rng.random_range(0..7)]);
                match rng.random_range(0..12) {
                    0..=5 => {
                        let (created, ver) = match model.last() {
                            Some((_, Some((c, v)))) => (*c, v + 1),
                            _ => (main, 1),
                        };
                        let prev = model.last().and_then(|(m, p)| p.map(|_| *m));
                        let (c, v, hit) = k.put(rev);
                        assert_eq!((c, v, hit.map(|h| h.rev)), (created, ver, prev), "seed {seed}");
                        model.push((rev, Some((created, ver))));
                    }
                    6..=7 => {
                        let live = matches!(model.last(), Some((_, Some(_))));
                        assert_eq!(k.tombstone(rev).is_some(), live, "seed {seed}");
                        if live {
                            model.push((rev, None));
                        }
                    }
                    8 => {
                        // An aborted transaction: a change, then its rollback.
                        let before = k.revision_count();
                        if rng.random_bool(0.5) {
                            k.put(rev);
                        } else {
                            k.tombstone(rev);
                        }
                        assert_eq!(k.rollback(main), model.is_empty(), "seed {seed}");
                        assert_eq!(k.revision_count(), before, "seed {seed}");
                    }
                    _ => {
                        let at = rng.random_range(compacted..=main);
                        let mut removed = Vec::new();
                        let empty = k.compact(at, &mut removed);
                        compacted = at;
                        // Of the changes <= at only the latest survives, and only if a put.
                        let keep = model.iter().rposition(|(m, _)| m.main <= at);
                        let dropped: Vec<Revision> = match keep {
                            Some(i) if model[i].1.is_some() => {
                                model.drain(..i).map(|(m, _)| m).collect()
                            }
                            Some(i) => model.drain(..=i).map(|(m, _)| m).collect(),
                            None => Vec::new(),
                        };
                        assert_eq!(removed, dropped, "seed {seed}");
                        assert_eq!(empty, model.is_empty(), "seed {seed}");
                    }
                }
                // The same history restored from its records, as at open.
                let mut restored = KeyIndex::default();
                for (m, p) in &model {
                    restored.restore(*m, *p);
                }
                for at in compacted..=main {
                    let want = model.iter().rev().find(|(m, _)| m.main <= at).and_then(|(m, p)| {
                        p.map(|(c, v)| Hit { rev: *m, create_revision: c, version: v })
                    });
                    assert_eq!(k.get(at), want, "seed {seed}, at {at}");
                    assert_eq!(restored.get(at), want, "seed {seed}, at {at} (restored)");
                }
                for (m, _) in &model {
                    let want = model.iter().rev().find(|(x, _)| x < m).and_then(|(x, p)| {
                        p.map(|(c, v)| Hit { rev: *x, create_revision: c, version: v })
                    });
                    assert_eq!(k.before(*m), want, "seed {seed}, before {m}");
                }
                let last_put = match model.last() {
                    Some((m, Some(_))) => Some(*m),
                    Some((_, None)) => model.iter().rev().nth(1).map(|(m, _)| *m),
                    None => None,
                };
                assert_eq!(k.last_put(), last_put, "seed {seed}");
                // Compact exactly when one put is left whose numbers fit.
                let fits = match &model[..] {
                    [] => true,
                    [(m, Some((c, v)))] => {
                        m.sub <= 255 && *v <= 65_535 && m.main - c <= u32::MAX.into()
                    }
                    _ => false,
                };
                assert_eq!(k.is_compact(), fits, "seed {seed}, {model:?}");
                assert_eq!(restored.is_compact(), fits, "seed {seed}, {model:?} (restored)");
                assert_eq!(k.revision_count(), model.len(), "seed {seed}");
            }
        }
    }
}
