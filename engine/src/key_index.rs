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
/// Nearly every key of a big store has one generation, and after a compaction one revision:
/// both are kept inline (a `Vec` each cost two heap allocations per key, 64 bytes plus the
/// allocator's rounding, more than the slot that held them); a key with a longer history
/// spills to the heap as a `Vec` would.
#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
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
    /// Builds from a stored record (used when rebuilding the index at open; records arrive
    /// in revision order). `put` is `Some((create_revision, version))`, `None` a tombstone.
    pub fn restore(&mut self, rev: Revision, put: Option<(i64, i64)>) {
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
                    revs: smallvec![rev],
                    closed: false,
                });
                (rev.main, 1, prev)
            }
        }
    }

    /// Records a delete at `rev` if the key is live; returns the deleted hit. A cached
    /// record stays until the caller clears it (it may still want it).
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

    /// Heap bytes held beyond the struct itself (histories too long to be inline).
    pub fn heap_bytes(&self) -> usize {
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

    /// Number of revisions held (for tests and stats).
    pub fn revision_count(&self) -> usize {
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
    fn one_generation_of_one_revision_is_inline() {
        // The common key (written once, or compacted to its latest put) costs no allocation.
        assert!(std::mem::size_of::<KeyIndex>() <= 72, "{}", std::mem::size_of::<KeyIndex>());
        let mut k = KeyIndex::default();
        k.put(r(2));
        assert!(!k.gens.spilled() && !k.gens[0].revs.spilled());
        k.put(r(3));
        assert!(k.gens[0].revs.spilled());
        let mut removed = Vec::new();
        k.compact(3, &mut removed);
        assert_eq!(removed, vec![r(2)]);
        assert!(!k.gens[0].revs.spilled(), "compaction gives a spilled history its memory back");
    }

    /// Random puts, deletes and compactions against a plain model (every change of the key
    /// with its create revision and version; compaction drops what etcd drops); every
    /// revision's answer is compared.
    #[test]
    fn matches_a_model_under_random_histories() {
        use rand::{Rng, SeedableRng};
        let seed = rand::random::<u64>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..200 {
            let mut k = KeyIndex::default();
            // (main revision, Some((create, version)) for a put, None for a delete)
            let mut model: Vec<(i64, Option<(i64, i64)>)> = Vec::new();
            let mut compacted = 0;
            for main in 1..60 {
                match rng.random_range(0..10) {
                    0..=5 => {
                        let (created, ver) = match model.last() {
                            Some((_, Some((c, v)))) => (*c, v + 1),
                            _ => (main, 1),
                        };
                        assert_eq!(k.put(r(main)).0, created, "seed {seed}");
                        model.push((main, Some((created, ver))));
                    }
                    6..=7 => {
                        let live = matches!(model.last(), Some((_, Some(_))));
                        assert_eq!(k.tombstone(r(main)).is_some(), live, "seed {seed}");
                        if live {
                            model.push((main, None));
                        }
                    }
                    _ => {
                        let at = rng.random_range(compacted..=main);
                        let mut removed = Vec::new();
                        let empty = k.compact(at, &mut removed);
                        compacted = at;
                        // Of the changes <= at only the latest survives, and only if a put.
                        let keep = model.iter().rposition(|(m, _)| *m <= at);
                        let dropped: Vec<Revision> = match keep {
                            Some(i) if model[i].1.is_some() => {
                                model.drain(..i).map(|(m, _)| r(m)).collect()
                            }
                            Some(i) => model.drain(..=i).map(|(m, _)| r(m)).collect(),
                            None => Vec::new(),
                        };
                        assert_eq!(removed, dropped, "seed {seed}");
                        assert_eq!(empty, model.is_empty(), "seed {seed}");
                    }
                }
                for at in compacted..=main {
                    let want = model.iter().rev().find(|(m, _)| *m <= at).and_then(|(m, p)| {
                        p.map(|(c, v)| Hit { rev: r(*m), create_revision: c, version: v })
                    });
                    assert_eq!(k.get(at), want, "seed {seed}, at {at}");
                }
                assert_eq!(k.revision_count(), model.len(), "seed {seed}");
            }
        }
    }
}
