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

use crate::revision::Revision;

#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    gens: Vec<Generation>,
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
}
