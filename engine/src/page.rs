//! Page formats: every page is `page_size` bytes, starts with the same 16-byte header and is
//! checksummed as a whole.
//!
//! ```text
//! header (all pages):  | crc32c: u32 LE | kind: u8 | reserved: u8 | count: u16 LE | page_id: u64 LE |
//!                       crc32c covers bytes 4..page_size (page id included: a page written to
//!                       the wrong place is detected)
//! leaf (kind 3):       | header | offsets: count x u16 LE | ... free ... | cells |
//!     cell:            | flags: u8 | key_len: u16 LE | val_len: u32 LE | key | value |
//!                       flags bit 0 = overflow: value is | first_page: u64 LE | and val_len is
//!                       the length of the whole value stored on the overflow chain
//! branch (kind 2):     | header | offsets: count x u16 LE | ... free ... | cells |
//!     cell:            | child: u64 LE | key_len: u16 LE | key |
//!                       key i <= every key under child i < key i+1; key 0 is a lower bound only
//! overflow (kind 4):   | header | next: u64 LE (0 = last) | len: u32 LE | data: len bytes |
//! freelist (kind 5):   | header | next: u64 LE (0 = last) | n: u32 LE | ids: n x u64 LE |
//!                       (read only: files written before kind 6)
//! freelist runs (6):   | header | next: u64 LE (0 = last) | n: u32 LE | runs |
//!     run:             | start: u64 LE | len: u32 LE |   pages start .. start + len are free
//! meta (kind 1):       see `meta.rs`
//! ```
//!
//! Every accessor here assumes the page passed [`validate`]; `validate` never panics on any
//! input (this is what the fuzz target checks).

use crate::codec::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

pub const HEADER_LEN: usize = 16;

pub const KIND_META: u8 = 1;
pub const KIND_BRANCH: u8 = 2;
pub const KIND_LEAF: u8 = 3;
pub const KIND_OVERFLOW: u8 = 4;
pub const KIND_FREELIST: u8 = 5;
pub const KIND_FREELIST_RUNS: u8 = 6;

/// Leaf cell header: flags, key_len, val_len.
pub const LEAF_CELL_HEADER: usize = 7;
/// Branch cell header: child, key_len.
pub const BRANCH_CELL_HEADER: usize = 10;
pub const FLAG_OVERFLOW: u8 = 1;

/// Overflow page: where data starts.
pub const OVERFLOW_DATA: usize = HEADER_LEN + 12;
/// Freelist page: where ids (or runs) start.
pub const FREELIST_IDS: usize = HEADER_LEN + 12;
/// Freelist runs page: bytes per run.
pub const FREELIST_RUN_LEN: usize = 12;

/// Smallest and largest page sizes (offsets are u16).
pub const MIN_PAGE_SIZE: usize = 1024;
pub const MAX_PAGE_SIZE: usize = 32768;

pub fn kind(page: &[u8]) -> u8 {
    page[4]
}
pub fn count(page: &[u8]) -> usize {
    get_u16(page, 6) as usize
}
pub fn page_id(page: &[u8]) -> u64 {
    get_u64(page, 8)
}

/// Fills in the header's page id and checksum. Call last, after the body is written.
pub fn seal(page: &mut [u8], id: u64) {
    put_u64(page, 8, id);
    let crc = crc32c::crc32c(&page[4..]);
    put_u32(page, 0, crc);
}

/// Starts a page of `kind` in `page` (zeroed first).
pub fn init(page: &mut [u8], kind: u8, count: usize) {
    page.fill(0);
    page[4] = kind;
    put_u16(page, 6, count as u16);
}

/// Checks checksum, page id and structure. On failure, says why.
pub fn validate(page: &[u8], expect_id: u64) -> Result<(), String> {
    if page.len() < MIN_PAGE_SIZE {
        return Err(format!("page is {} bytes, smaller than any page size", page.len()));
    }
    let stored = get_u32(page, 0);
    let actual = crc32c::crc32c(&page[4..]);
    if stored != actual {
        return Err(format!(
            "page checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"
        ));
    }
    if page_id(page) != expect_id {
        return Err(format!("page header names page {}, expected {expect_id}", page_id(page)));
    }
    validate_structure(page)
}

/// Structural checks only (no checksum): every offset and length stays inside the page.
pub fn validate_structure(page: &[u8]) -> Result<(), String> {
    if page.len() < HEADER_LEN + 12 {
        return Err("page too short".into());
    }
    let n = count(page);
    let size = page.len();
    match kind(page) {
        KIND_LEAF | KIND_BRANCH => {
            let is_leaf = kind(page) == KIND_LEAF;
            if n == 0 {
                return Err("empty tree page".into());
            }
            let offsets_end = HEADER_LEN + 2 * n;
            if offsets_end > size {
                return Err(format!("{n} cells do not fit the page"));
            }
            for i in 0..n {
                let off = get_u16(page, HEADER_LEN + 2 * i) as usize;
                let hdr = if is_leaf { LEAF_CELL_HEADER } else { BRANCH_CELL_HEADER };
                if off < offsets_end || off + hdr > size {
                    return Err(format!("cell {i} offset {off} out of bounds"));
                }
                let end = if is_leaf {
                    let flags = page[off];
                    let key_len = get_u16(page, off + 1) as usize;
                    let val_len = get_u32(page, off + 3) as usize;
                    if flags & !FLAG_OVERFLOW != 0 {
                        return Err(format!("cell {i} has unknown flags {flags:#x}"));
                    }
                    let stored = if flags & FLAG_OVERFLOW != 0 { 8 } else { val_len };
                    off + hdr + key_len + stored
                } else {
                    off + hdr + get_u16(page, off + 8) as usize
                };
                if end > size {
                    return Err(format!("cell {i} runs past the page end"));
                }
            }
            // Keys must be strictly increasing; searches rely on it.
            for i in 1..n {
                let (a, b) = if is_leaf {
                    (leaf_key(page, i - 1), leaf_key(page, i))
                } else {
                    (branch_key(page, i - 1), branch_key(page, i))
                };
                if a >= b {
                    return Err(format!("keys out of order at cell {i}"));
                }
            }
            Ok(())
        }
        KIND_OVERFLOW => {
            let len = get_u32(page, HEADER_LEN + 8) as usize;
            if OVERFLOW_DATA + len > size {
                return Err(format!("overflow length {len} runs past the page end"));
            }
            Ok(())
        }
        KIND_FREELIST | KIND_FREELIST_RUNS => {
            let n = get_u32(page, HEADER_LEN + 8) as usize;
            let each = if kind(page) == KIND_FREELIST { 8 } else { FREELIST_RUN_LEN };
            if n > (size - FREELIST_IDS) / each {
                return Err(format!("freelist count {n} runs past the page end"));
            }
            Ok(())
        }
        KIND_META => Ok(()),
        k => Err(format!("unknown page kind {k}")),
    }
}

/// A leaf value: inline bytes, or the head of an overflow chain and the total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafValue<'a> {
    Inline(&'a [u8]),
    Overflow { first: u64, len: usize },
}

impl LeafValue<'_> {
    /// Bytes this value takes inside a leaf cell.
    pub fn stored_len(&self) -> usize {
        match self {
            LeafValue::Inline(v) => v.len(),
            LeafValue::Overflow { .. } => 8,
        }
    }
}

fn cell_offset(page: &[u8], i: usize) -> usize {
    get_u16(page, HEADER_LEN + 2 * i) as usize
}

pub fn leaf_key(page: &[u8], i: usize) -> &[u8] {
    let off = cell_offset(page, i);
    let key_len = get_u16(page, off + 1) as usize;
    &page[off + LEAF_CELL_HEADER..off + LEAF_CELL_HEADER + key_len]
}

pub fn leaf_value(page: &[u8], i: usize) -> LeafValue<'_> {
    let off = cell_offset(page, i);
    let flags = page[off];
    let key_len = get_u16(page, off + 1) as usize;
    let val_len = get_u32(page, off + 3) as usize;
    let at = off + LEAF_CELL_HEADER + key_len;
    if flags & FLAG_OVERFLOW != 0 {
        LeafValue::Overflow { first: get_u64(page, at), len: val_len }
    } else {
        LeafValue::Inline(&page[at..at + val_len])
    }
}

pub fn branch_key(page: &[u8], i: usize) -> &[u8] {
    let off = cell_offset(page, i);
    let key_len = get_u16(page, off + 8) as usize;
    &page[off + BRANCH_CELL_HEADER..off + BRANCH_CELL_HEADER + key_len]
}

pub fn branch_child(page: &[u8], i: usize) -> u64 {
    get_u64(page, cell_offset(page, i))
}

/// Index of the first leaf cell with key >= `key` (may be `count`).
pub fn leaf_lower_bound(page: &[u8], key: &[u8]) -> usize {
    let (mut lo, mut hi) = (0, count(page));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if leaf_key(page, mid) < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Index of the child whose subtree may hold `key`: the last i with key i <= key, or 0.
pub fn branch_search(page: &[u8], key: &[u8]) -> usize {
    let (mut lo, mut hi) = (0, count(page));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if branch_key(page, mid) <= key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.saturating_sub(1)
}

/// Space a leaf cell takes, offset slot included.
pub fn leaf_cell_size(key_len: usize, value: &LeafValue<'_>) -> usize {
    2 + LEAF_CELL_HEADER + key_len + value.stored_len()
}

/// Space a branch cell takes, offset slot included.
pub fn branch_cell_size(key_len: usize) -> usize {
    2 + BRANCH_CELL_HEADER + key_len
}

/// Builds a leaf page from sorted cells. Panics if they do not fit (a caller bug).
pub fn build_leaf<'a>(
    page: &mut [u8],
    cells: impl ExactSizeIterator<Item = (&'a [u8], LeafValue<'a>)>,
) {
    let n = cells.len();
    init(page, KIND_LEAF, n);
    let mut end = page.len();
    for (i, (key, value)) in cells.enumerate() {
        let len = LEAF_CELL_HEADER + key.len() + value.stored_len();
        assert!(end >= HEADER_LEN + 2 * n + len, "leaf cells overflow the page");
        end -= len;
        put_u16(page, HEADER_LEN + 2 * i, end as u16);
        let (flags, val_len) = match value {
            LeafValue::Inline(v) => (0, v.len()),
            LeafValue::Overflow { len, .. } => (FLAG_OVERFLOW, len),
        };
        page[end] = flags;
        put_u16(page, end + 1, key.len() as u16);
        put_u32(page, end + 3, val_len as u32);
        page[end + LEAF_CELL_HEADER..end + LEAF_CELL_HEADER + key.len()].copy_from_slice(key);
        let at = end + LEAF_CELL_HEADER + key.len();
        match value {
            LeafValue::Inline(v) => page[at..at + v.len()].copy_from_slice(v),
            LeafValue::Overflow { first, .. } => put_u64(page, at, first),
        }
    }
}

/// Builds a branch page from sorted (key, child) cells. Panics if they do not fit.
pub fn build_branch<'a>(page: &mut [u8], cells: impl ExactSizeIterator<Item = (&'a [u8], u64)>) {
    let n = cells.len();
    init(page, KIND_BRANCH, n);
    let mut end = page.len();
    for (i, (key, child)) in cells.enumerate() {
        let len = BRANCH_CELL_HEADER + key.len();
        assert!(end >= HEADER_LEN + 2 * n + len, "branch cells overflow the page");
        end -= len;
        put_u16(page, HEADER_LEN + 2 * i, end as u16);
        put_u64(page, end, child);
        put_u16(page, end + 8, key.len() as u16);
        page[end + BRANCH_CELL_HEADER..end + BRANCH_CELL_HEADER + key.len()].copy_from_slice(key);
    }
}

/// Overflow page accessors.
pub fn overflow_next(page: &[u8]) -> u64 {
    get_u64(page, HEADER_LEN)
}
pub fn overflow_data(page: &[u8]) -> &[u8] {
    let len = get_u32(page, HEADER_LEN + 8) as usize;
    &page[OVERFLOW_DATA..OVERFLOW_DATA + len]
}
pub fn build_overflow(page: &mut [u8], next: u64, data: &[u8]) {
    init(page, KIND_OVERFLOW, 0);
    put_u64(page, HEADER_LEN, next);
    put_u32(page, HEADER_LEN + 8, data.len() as u32);
    page[OVERFLOW_DATA..OVERFLOW_DATA + data.len()].copy_from_slice(data);
}

/// Freelist page accessors.
pub fn freelist_next(page: &[u8]) -> u64 {
    get_u64(page, HEADER_LEN)
}
pub fn freelist_ids(page: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let n = get_u32(page, HEADER_LEN + 8) as usize;
    (0..n).map(move |i| get_u64(page, FREELIST_IDS + 8 * i))
}
pub fn build_freelist(page: &mut [u8], next: u64, ids: &[u64]) {
    init(page, KIND_FREELIST, 0);
    put_u64(page, HEADER_LEN, next);
    put_u32(page, HEADER_LEN + 8, ids.len() as u32);
    for (i, id) in ids.iter().enumerate() {
        put_u64(page, FREELIST_IDS + 8 * i, *id);
    }
}
pub fn freelist_capacity(page_size: usize) -> usize {
    (page_size - FREELIST_IDS) / 8
}
pub fn freelist_runs(page: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    let n = get_u32(page, HEADER_LEN + 8) as usize;
    (0..n).map(move |i| {
        let at = FREELIST_IDS + FREELIST_RUN_LEN * i;
        (get_u64(page, at), get_u32(page, at + 8))
    })
}
pub fn build_freelist_runs(page: &mut [u8], next: u64, runs: &[(u64, u32)]) {
    init(page, KIND_FREELIST_RUNS, 0);
    put_u64(page, HEADER_LEN, next);
    put_u32(page, HEADER_LEN + 8, runs.len() as u32);
    for (i, (start, len)) in runs.iter().enumerate() {
        let at = FREELIST_IDS + FREELIST_RUN_LEN * i;
        put_u64(page, at, *start);
        put_u32(page, at + 8, *len);
    }
}
pub fn freelist_run_capacity(page_size: usize) -> usize {
    (page_size - FREELIST_IDS) / FREELIST_RUN_LEN
}

/// Sorted, unique page ids as runs of consecutive ids.
pub fn to_runs(ids: &[u64]) -> Vec<(u64, u32)> {
    let mut runs: Vec<(u64, u32)> = Vec::new();
    for &id in ids {
        match runs.last_mut() {
            Some((start, len)) if *start + *len as u64 == id && *len < u32::MAX => *len += 1,
            _ => runs.push((id, 1)),
        }
    }
    runs
}

/// Appends the page ids a freelist page of either kind names to `out`; an error names one
/// outside `within` (checked before anything is expanded, so a corrupt run cannot make a
/// huge allocation).
pub fn freelist_page_ids(
    page: &[u8],
    within: std::ops::Range<u64>,
    out: &mut Vec<u64>,
) -> Result<(), String> {
    let outside = |id: u64| format!("freelist names page {id} outside the file");
    match kind(page) {
        KIND_FREELIST => {
            for id in freelist_ids(page) {
                if !within.contains(&id) {
                    return Err(outside(id));
                }
                out.push(id);
            }
        }
        KIND_FREELIST_RUNS => {
            for (start, len) in freelist_runs(page) {
                let end = start.checked_add(len as u64).ok_or_else(|| outside(start))?;
                if start < within.start || end > within.end {
                    return Err(outside(start));
                }
                out.extend(start..end);
            }
        }
        k => return Err(format!("expected a freelist page, found kind {k}")),
    }
    Ok(())
}

/// Decodes `data` as a page every way the engine would, to check that nothing panics (the
/// fuzz target's body; also run by the tests on random and mutated pages). The input is
/// padded or cut to a page size; it is checked both as read and with a valid checksum
/// (so the structural checks are reached).
#[doc(hidden)]
pub fn exercise(data: &[u8]) {
    let size = if data.len() > 2048 { 4096 } else { MIN_PAGE_SIZE };
    let mut p = vec![0u8; size];
    let n = data.len().min(size);
    p[..n].copy_from_slice(&data[..n]);
    let _ = validate(&p, 3);
    let _ = crate::meta::Meta::decode(&p, 0);
    seal(&mut p, 3);
    let _ = crate::meta::Meta::decode(&p, 1);
    if validate(&p, 3).is_err() {
        return;
    }
    let probe = data.get(..16.min(data.len())).unwrap_or(&[]);
    match kind(&p) {
        KIND_LEAF => {
            for i in 0..count(&p) {
                let _ = (leaf_key(&p, i), leaf_value(&p, i));
            }
            let _ = leaf_lower_bound(&p, probe);
        }
        KIND_BRANCH => {
            for i in 0..count(&p) {
                let _ = (branch_key(&p, i), branch_child(&p, i));
            }
            let _ = branch_search(&p, probe);
        }
        KIND_OVERFLOW => {
            let _ = (overflow_next(&p), overflow_data(&p).len());
        }
        KIND_FREELIST | KIND_FREELIST_RUNS => {
            let _ = (freelist_next(&p), freelist_ids(&p).count(), freelist_runs(&p).count());
            let _ = freelist_page_ids(&p, 2..1 << 20, &mut Vec::new());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_round_trip_and_search() {
        let mut p = vec![0u8; 4096];
        let cells: Vec<(&[u8], LeafValue<'_>)> = vec![
            (b"a", LeafValue::Inline(b"1")),
            (b"c", LeafValue::Overflow { first: 77, len: 100_000 }),
            (b"e", LeafValue::Inline(b"")),
        ];
        build_leaf(&mut p, cells.clone().into_iter());
        seal(&mut p, 9);
        validate(&p, 9).unwrap();
        assert_eq!(count(&p), 3);
        for (i, (k, v)) in cells.iter().enumerate() {
            assert_eq!(leaf_key(&p, i), *k);
            assert_eq!(leaf_value(&p, i), *v);
        }
        assert_eq!(leaf_lower_bound(&p, b""), 0);
        assert_eq!(leaf_lower_bound(&p, b"b"), 1);
        assert_eq!(leaf_lower_bound(&p, b"c"), 1);
        assert_eq!(leaf_lower_bound(&p, b"z"), 3);
    }

    #[test]
    fn branch_round_trip_and_search() {
        let mut p = vec![0u8; 1024];
        build_branch(&mut p, vec![(&b""[..], 5u64), (b"m", 6), (b"t", 7)].into_iter());
        seal(&mut p, 3);
        validate(&p, 3).unwrap();
        assert_eq!(branch_search(&p, b"a"), 0);
        assert_eq!(branch_search(&p, b"m"), 1);
        assert_eq!(branch_search(&p, b"s"), 1);
        assert_eq!(branch_search(&p, b"zz"), 2);
        assert_eq!(branch_child(&p, 2), 7);
    }

    #[test]
    fn detects_bit_flips_and_misplaced_pages() {
        let mut p = vec![0u8; 1024];
        build_overflow(&mut p, 0, b"data");
        seal(&mut p, 4);
        validate(&p, 4).unwrap();
        assert!(validate(&p, 5).unwrap_err().contains("expected 5"));
        p[100] ^= 1;
        assert!(validate(&p, 4).unwrap_err().contains("checksum"));
    }

    #[test]
    fn decoding_random_and_mutated_pages_never_panics() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let seed = crate::test_seed("page fuzz");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut leaf = vec![0u8; 1024];
        let cells: Vec<(&[u8], LeafValue<'_>)> = vec![
            (b"a", LeafValue::Inline(b"1")),
            (b"b", LeafValue::Overflow { first: 9, len: 5000 }),
            (b"c", LeafValue::Inline(b"xyz")),
        ];
        build_leaf(&mut leaf, cells.into_iter());
        let mut branch = vec![0u8; 1024];
        build_branch(&mut branch, vec![(&b""[..], 5u64), (b"m", 6)].into_iter());
        for _ in 0..3000 {
            let mut p = if rng.random_bool(0.5) { leaf.clone() } else { branch.clone() };
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            exercise(&p);
            let junk: Vec<u8> = (0..rng.random_range(0..1200)).map(|_| rng.random()).collect();
            exercise(&junk);
        }
    }

    #[test]
    fn structure_check_rejects_wild_offsets() {
        let mut p = vec![0u8; 1024];
        build_leaf(&mut p, vec![(&b"k"[..], LeafValue::Inline(b"v"))].into_iter());
        put_u16(&mut p, HEADER_LEN, 1020);
        assert!(validate_structure(&p).is_err());
        let mut f = vec![0u8; 1024];
        build_freelist(&mut f, 0, &[1, 2]);
        put_u32(&mut f, HEADER_LEN + 8, 10_000);
        assert!(validate_structure(&f).is_err());
        build_freelist_runs(&mut f, 0, &[(4, 2)]);
        put_u32(&mut f, HEADER_LEN + 8, 84);
        assert!(validate_structure(&f).is_err());
    }

    #[test]
    fn freelist_runs_round_trip_and_stay_inside_the_file() {
        let ids = [3u64, 4, 5, 9, 11, 12];
        let runs = to_runs(&ids);
        assert_eq!(runs, vec![(3, 3), (9, 1), (11, 2)]);
        let mut p = vec![0u8; 1024];
        build_freelist_runs(&mut p, 77, &runs);
        seal(&mut p, 5);
        validate(&p, 5).unwrap();
        assert_eq!(freelist_next(&p), 77);
        let mut out = Vec::new();
        freelist_page_ids(&p, 2..13, &mut out).unwrap();
        assert_eq!(out, ids);
        assert!(freelist_page_ids(&p, 2..12, &mut Vec::new()).is_err());
        // A run reaching past u64 (corruption) is refused, not expanded.
        build_freelist_runs(&mut p, 0, &[(u64::MAX - 1, 5)]);
        assert!(freelist_page_ids(&p, 2..100, &mut Vec::new()).is_err());
        // Files written before runs still read.
        build_freelist(&mut p, 0, &[8, 6]);
        let mut out = Vec::new();
        freelist_page_ids(&p, 2..100, &mut out).unwrap();
        assert_eq!(out, vec![8, 6]);
    }
}
