//! Free pages: which pages can be reused, and which wait for readers to let go.
//!
//! A commit frees the pages it replaced (copy-on-write). They stay *pending* until no
//! reader holds a version that may still read them; then they become *free* and the
//! allocator hands them out, lowest id first (so the file's tail empties and can shrink).
//! Both sets are persisted by every commit as a chain of freelist pages (see `page.rs`):
//! after a restart no reader exists, so every pending page is free.

use std::collections::{BTreeSet, VecDeque};

#[derive(Default, Debug)]
pub struct Freelist {
    /// Reusable now.
    free: BTreeSet<u64>,
    /// Freed by commit `txid`, reusable once no reader holds a version older than `txid`.
    pending: VecDeque<(u64, Vec<u64>)>,
}

impl Freelist {
    /// A freelist whose every page is free (as loaded at open).
    pub fn from_free(ids: impl IntoIterator<Item = u64>) -> Freelist {
        Freelist { free: ids.into_iter().collect(), pending: VecDeque::new() }
    }

    /// Takes the lowest free page.
    pub fn alloc(&mut self) -> Option<u64> {
        self.free.pop_first()
    }

    /// Takes the lowest free page below `limit`.
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        let first = *self.free.first()?;
        if first < limit { self.free.pop_first() } else { None }
    }

    /// Records pages freed by commit `txid`.
    pub fn free_pending(&mut self, txid: u64, ids: Vec<u64>) {
        if !ids.is_empty() {
            self.pending.push_back((txid, ids));
        }
    }

    /// Makes pages freed by commits `<= txid` reusable.
    pub fn release_through(&mut self, txid: u64) {
        while self.pending.front().is_some_and(|(t, _)| *t <= txid) {
            let (_, ids) = self.pending.pop_front().expect("checked non-empty");
            self.free.extend(ids);
        }
    }

    /// Every page free after a restart (free and pending), sorted.
    pub fn all(&self) -> Vec<u64> {
        self.all_with(&[])
    }

    /// Every page free after a restart and the pages of `extra`, sorted. The free set is in
    /// order already (after a compaction it may hold most of the file): only the pending and
    /// `extra` pages, a few commits' worth, are sorted and merged into it, instead of
    /// sorting the whole set at every commit.
    pub fn all_with(&self, extra: &[u64]) -> Vec<u64> {
        let mut few: Vec<u64> =
            self.pending.iter().flat_map(|(_, ids)| ids.iter().copied()).collect();
        few.extend_from_slice(extra);
        few.sort_unstable();
        let mut out = Vec::with_capacity(self.free.len() + few.len());
        let mut few = few.into_iter().peekable();
        for id in self.free.iter().copied() {
            while let Some(f) = few.next_if(|f| *f < id) {
                out.push(f);
            }
            out.push(id);
        }
        out.extend(few);
        out
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn pending_count(&self) -> usize {
        self.pending.iter().map(|(_, v)| v.len()).sum()
    }

    /// Highest page id that is not in use... is not known here; this returns the free pages
    /// forming a contiguous run that ends at `page_count` (the tail that can be cut off).
    pub fn free_tail_start(&self, page_count: u64) -> u64 {
        let mut end = page_count;
        for id in self.free.iter().rev() {
            if *id + 1 == end {
                end = *id;
            } else {
                break;
            }
        }
        end
    }

    /// Forgets free pages at or above `page_count` (the file was cut there).
    pub fn truncate(&mut self, page_count: u64) {
        self.free.retain(|id| *id < page_count);
    }

    /// True if a pending page lies at or above `page_count`.
    pub fn pending_at_or_above(&self, page_count: u64) -> bool {
        self.pending.iter().any(|(_, ids)| ids.iter().any(|id| *id >= page_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_pages_wait_for_release() {
        let mut f = Freelist::from_free([7, 3]);
        f.free_pending(5, vec![10, 11]);
        f.free_pending(6, vec![2]);
        assert_eq!(f.all(), vec![2, 3, 7, 10, 11]);
        assert_eq!(f.all_with(&[12, 1, 5]), vec![1, 2, 3, 5, 7, 10, 11, 12]);
        assert_eq!(f.alloc(), Some(3));
        f.release_through(5);
        assert_eq!(f.alloc(), Some(7));
        assert_eq!(f.alloc_below(10), None);
        assert_eq!(f.alloc(), Some(10));
        f.release_through(6);
        assert_eq!(f.alloc(), Some(2));
        assert_eq!(f.free_count(), 1);
        assert_eq!(f.pending_count(), 0);
    }

    #[test]
    fn finds_the_free_tail() {
        let mut f = Freelist::from_free([3, 8, 9]);
        assert_eq!(f.free_tail_start(10), 8);
        assert_eq!(f.free_tail_start(11), 11);
        f.truncate(8);
        assert_eq!(f.all(), vec![3]);
    }
}
