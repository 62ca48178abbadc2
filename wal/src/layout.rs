//! Where every live entry is: the in-memory map from index to (segment, offset), and the list
//! of open segments. Rebuilt by recovery, extended by the writer, trimmed by compaction.
//!
//! 12 bytes per live entry (a 1 GiB log of 256-byte records costs ~48 MiB); the entries' data
//! stays on disk and in the page cache.

use std::collections::VecDeque;

use crate::segment::Segment;

/// Location of one entry's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Segment sequence number (truncated to 32 bits: 2^32 segments is never reached).
    pub(crate) seg: u32,
    /// Offset of the frame in the segment.
    pub(crate) off: u32,
    /// Bytes of entry data (the frame is `codec::entry_frame_len(len)` bytes).
    pub(crate) len: u32,
}

impl Loc {
    pub(crate) fn new(seq: u64, off: u64, len: usize) -> Loc {
        Loc {
            seg: u32::try_from(seq).expect("segment sequence number exceeds 2^32"),
            off: u32::try_from(off).expect("segment offset exceeds 4 GiB"),
            len: u32::try_from(len).expect("record exceeds 4 GiB"),
        }
    }
}

/// Live entries `[first, first + locs.len())`.
#[derive(Debug, Default)]
pub(crate) struct LogIndex {
    first: u64,
    locs: VecDeque<Loc>,
}

impl LogIndex {
    /// An empty log whose next entry gets `next`.
    pub(crate) fn empty_at(next: u64) -> Self {
        LogIndex { first: next, locs: VecDeque::new() }
    }

    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    pub(crate) fn next(&self) -> u64 {
        self.first + self.locs.len() as u64
    }

    pub(crate) fn push(&mut self, index: u64, loc: Loc) {
        assert_eq!(index, self.next(), "entry appended out of order");
        self.locs.push_back(loc);
    }

    /// Drops entries `>= index`; the next entry gets `index`. `index <= next()`.
    pub(crate) fn truncate(&mut self, index: u64) {
        assert!(index <= self.next(), "truncate past the end: {index} > {}", self.next());
        if index <= self.first {
            self.reset(index);
        } else {
            self.locs.truncate((index - self.first) as usize);
        }
    }

    /// Drops every entry; the next one gets `index`.
    pub(crate) fn reset(&mut self, index: u64) {
        self.locs.clear();
        self.first = index;
    }

    pub(crate) fn get(&self, index: u64) -> Option<Loc> {
        let i = index.checked_sub(self.first)?;
        self.locs.get(usize::try_from(i).ok()?).copied()
    }

    /// Drops leading entries stored in segments `<= seq` whose index is `< below`; returns how
    /// many were dropped.
    pub(crate) fn drop_front(&mut self, seq: u64, below: u64) -> usize {
        let mut n = 0;
        while let Some(loc) = self.locs.front() {
            if u64::from(loc.seg) > seq || self.first >= below {
                break;
            }
            self.locs.pop_front();
            self.first += 1;
            n += 1;
        }
        n
    }

    /// True if some live entry is stored in a segment `<= seq` at index `>= below`.
    pub(crate) fn has_entry_at_or_after(&self, seq: u64, below: u64) -> bool {
        // Live entries are in segment order, so look only at those from `below` on.
        match self.get(below.max(self.first)) {
            Some(loc) => u64::from(loc.seg) <= seq,
            None => false,
        }
    }
}

/// The open segments (oldest first, consecutive sequence numbers; the last one is active)
/// and the live entries' locations.
#[derive(Default)]
pub(crate) struct Layout {
    pub(crate) index: LogIndex,
    pub(crate) segments: VecDeque<Segment>,
}

impl Layout {
    pub(crate) fn segment(&self, seq: u64) -> Option<&Segment> {
        let first = self.segments.front()?.seq;
        self.segments.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seg: u32) -> Loc {
        Loc { seg, off: 0, len: 0 }
    }

    #[test]
    fn push_truncate_reset() {
        let mut ix = LogIndex::empty_at(1);
        for i in 1..=5 {
            ix.push(i, loc(0));
        }
        assert_eq!((ix.first(), ix.next()), (1, 6));
        ix.truncate(4);
        assert_eq!(ix.next(), 4);
        assert!(ix.get(4).is_none());
        assert!(ix.get(3).is_some());
        ix.truncate(4); // no-op at the end
        assert_eq!(ix.next(), 4);
        ix.truncate(0);
        assert_eq!((ix.first(), ix.next()), (0, 0));
        ix.reset(100);
        assert_eq!((ix.first(), ix.next()), (100, 100));
    }

    #[test]
    fn drop_front_stops_at_segment_and_bound() {
        let mut ix = LogIndex::empty_at(1);
        for (i, seg) in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2)] {
            ix.push(i, loc(seg));
        }
        assert!(ix.has_entry_at_or_after(1, 4));
        assert!(!ix.has_entry_at_or_after(1, 5));
        assert_eq!(ix.drop_front(1, 3), 2);
        assert_eq!(ix.first(), 3);
        assert_eq!(ix.drop_front(1, 100), 2);
        assert_eq!((ix.first(), ix.next()), (5, 6));
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn push_out_of_order_panics() {
        let mut ix = LogIndex::empty_at(1);
        ix.push(2, loc(0));
    }
}
