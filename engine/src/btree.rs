//! The copy-on-write B+tree.
//!
//! Readers walk from a root page id; a root and every page under it never change, so any
//! number of readers can walk any committed version while a commit builds the next one.
//! A commit applies a sorted batch of puts and deletes in one pass ([`apply`]): every page on
//! a changed path is rebuilt into freshly allocated pages and the old ones are freed
//! (pending until readers let go, see `freelist.rs`). Leaves that end up less than a quarter
//! full are merged with a neighbour; a root with one child is collapsed.
//!
//! Values too big to share a leaf with another cell live on a chain of overflow pages.

use std::collections::HashMap;

use crate::error::Result;
use crate::freelist::Freelist;
use crate::page::{self, HEADER_LEN, KIND_BRANCH, KIND_LEAF, LeafValue, OVERFLOW_DATA};
use crate::pager::{PageRef, PageStore};

/// How a tree packs rebuilt pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Fill each page before starting the next: right for append-mostly keys (revisions).
    Greedy,
    /// Spread cells evenly: right for random inserts (leaves room in both halves).
    Even,
}

/// Longest key a tree accepts for a page size (at least 8 branch cells fit a page).
pub fn max_key_len(page_size: usize) -> usize {
    (page_size - HEADER_LEN) / 8 - page::BRANCH_CELL_HEADER - 2
}

fn capacity(page_size: usize) -> usize {
    page_size - HEADER_LEN
}

/// Largest leaf cell stored inline (two such cells fit a page).
fn max_inline_cell(page_size: usize) -> usize {
    capacity(page_size) / 2
}

/// One commit's view of the pages: allocation, the dirty pages it wrote, the pages it freed.
pub struct TxPages<'a> {
    pub store: &'a PageStore,
    pub freelist: &'a mut Freelist,
    pub page_count: u64,
    dirty: HashMap<u64, PageRef>,
    freed: Vec<u64>,
}

impl<'a> TxPages<'a> {
    pub fn new(store: &'a PageStore, freelist: &'a mut Freelist, page_count: u64) -> TxPages<'a> {
        TxPages { store, freelist, page_count, dirty: HashMap::new(), freed: Vec::new() }
    }

    pub fn page_size(&self) -> usize {
        self.store.page_size()
    }

    /// A fresh page id: the lowest free page, or a new one at the end of the file.
    pub fn alloc(&mut self) -> u64 {
        match self.freelist.alloc() {
            Some(id) => id,
            None => {
                self.page_count += 1;
                self.page_count - 1
            }
        }
    }

    /// Frees `id` (it stays readable by older versions until released).
    pub fn free(&mut self, id: u64) {
        self.dirty.remove(&id);
        self.freed.push(id);
    }

    /// Reads a page, seeing this commit's own writes.
    pub fn read(&self, id: u64) -> Result<PageRef> {
        match self.dirty.get(&id) {
            Some(p) => Ok(p.clone()),
            None => self.store.read(id),
        }
    }

    /// Seals and keeps `page` as page `id`, to be written by [`TxPages::finish`].
    pub fn write(&mut self, id: u64, mut page: Vec<u8>) {
        page::seal(&mut page, id);
        self.dirty.insert(id, page.into());
    }

    /// Pages freed so far.
    pub fn freed(&self) -> &[u64] {
        &self.freed
    }

    /// Ends the commit's page work: (dirty pages to write, freed pages, page count).
    pub fn finish(self) -> (Vec<(u64, PageRef)>, Vec<u64>, u64) {
        (self.dirty.into_iter().collect(), self.freed, self.page_count)
    }

    /// Stores `value` on a new overflow chain; returns its first page.
    pub fn write_overflow(&mut self, value: &[u8]) -> u64 {
        let chunk = self.page_size() - OVERFLOW_DATA;
        let chunks: Vec<&[u8]> = value.chunks(chunk).collect();
        let ids: Vec<u64> = (0..chunks.len().max(1)).map(|_| self.alloc()).collect();
        for (i, id) in ids.iter().enumerate() {
            let mut p = vec![0u8; self.page_size()];
            let next = ids.get(i + 1).copied().unwrap_or(0);
            page::build_overflow(&mut p, next, chunks.get(i).copied().unwrap_or(&[]));
            self.write(*id, p);
        }
        ids[0]
    }

    /// Frees every page of the overflow chain starting at `first`.
    pub fn free_overflow(&mut self, first: u64) -> Result<()> {
        for id in overflow_chain(self.store, first, |id| self.read(id))? {
            self.free(id);
        }
        Ok(())
    }
}

/// The page ids of an overflow chain.
fn overflow_chain(
    store: &PageStore,
    first: u64,
    read: impl Fn(u64) -> Result<PageRef>,
) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let mut id = first;
    while id != 0 {
        let p = read(id)?;
        if page::kind(&p) != page::KIND_OVERFLOW {
            return Err(store.corrupted(id, "expected an overflow page"));
        }
        ids.push(id);
        if ids.len() > (u32::MAX as usize) {
            return Err(store.corrupted(id, "overflow chain loops"));
        }
        id = page::overflow_next(&p);
    }
    Ok(ids)
}

/// Reads a leaf value (following its overflow chain).
pub fn read_value(store: &PageStore, value: LeafValue<'_>) -> Result<Vec<u8>> {
    match value {
        LeafValue::Inline(v) => Ok(v.to_vec()),
        LeafValue::Overflow { first, len } => {
            let mut out = Vec::with_capacity(len);
            let mut id = first;
            while id != 0 && out.len() < len {
                let p = store.read(id)?;
                if page::kind(&p) != page::KIND_OVERFLOW {
                    return Err(store.corrupted(id, "expected an overflow page"));
                }
                out.extend_from_slice(page::overflow_data(&p));
                id = page::overflow_next(&p);
            }
            if out.len() != len {
                return Err(store.corrupted(
                    first,
                    format!("overflow chain holds {} bytes, expected {len}", out.len()),
                ));
            }
            Ok(out)
        }
    }
}

fn expect_kind(store: &PageStore, id: u64, p: &[u8]) -> Result<u8> {
    match page::kind(p) {
        k @ (KIND_LEAF | KIND_BRANCH) => Ok(k),
        k => Err(store.corrupted(id, format!("expected a tree page, found kind {k}"))),
    }
}

/// Looks `key` up in the tree at `root`.
pub fn get(store: &PageStore, root: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
    if root == 0 {
        return Ok(None);
    }
    let mut id = root;
    for _ in 0..64 {
        let p = store.read(id)?;
        if expect_kind(store, id, &p)? == KIND_BRANCH {
            id = page::branch_child(&p, page::branch_search(&p, key));
            continue;
        }
        let i = page::leaf_lower_bound(&p, key);
        if i < page::count(&p) && page::leaf_key(&p, i) == key {
            return Ok(Some(read_value(store, page::leaf_value(&p, i))?));
        }
        return Ok(None);
    }
    Err(store.corrupted(root, "tree deeper than 64 levels (a cycle?)"))
}

/// Looks up sorted, unique `keys` in the tree at `root`, reading each page at most once
/// (a range's records, fetched by revision, share leaves: one descent serves them all).
/// Calls `found(i, value)` for every `keys[i]` present, in key order; `value` borrows the
/// leaf (or a buffer holding its overflow chain) only for the call.
pub fn get_sorted<K: AsRef<[u8]>>(
    store: &PageStore,
    root: u64,
    keys: &[K],
    found: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    debug_assert!(keys.windows(2).all(|w| w[0].as_ref() < w[1].as_ref()), "keys must be sorted");
    if root == 0 || keys.is_empty() {
        return Ok(());
    }
    get_sorted_node(store, root, keys, 0, found, 0)
}

/// `a < b` as bytes; revision keys (16 bytes) compare as two big-endian words, which is
/// much cheaper than a call to `memcmp` (the leaf search of a range's lookups showed up).
#[inline]
fn key_lt(a: &[u8], b: &[u8]) -> bool {
    match (<&[u8; 16]>::try_from(a), <&[u8; 16]>::try_from(b)) {
        (Ok(a), Ok(b)) => u128::from_be_bytes(*a) < u128::from_be_bytes(*b),
        _ => a < b,
    }
}

fn get_sorted_node<K: AsRef<[u8]>>(
    store: &PageStore,
    id: u64,
    keys: &[K],
    base: usize,
    found: &mut dyn FnMut(usize, &[u8]) -> Result<()>,
    depth: usize,
) -> Result<()> {
    if depth >= 64 {
        return Err(store.corrupted(id, "tree deeper than 64 levels (a cycle?)"));
    }
    let p = store.read(id)?;
    let n = page::count(&p);
    if expect_kind(store, id, &p)? == KIND_BRANCH {
        let mut j = 0;
        while j < keys.len() {
            let child = page::branch_search(&p, keys[j].as_ref());
            // Child `child` covers keys below the next cell's key.
            let end = if child + 1 < n {
                let next = page::branch_key(&p, child + 1);
                j + keys[j..].partition_point(|k| key_lt(k.as_ref(), next))
            } else {
                keys.len()
            };
            let end = end.max(j + 1);
            let cid = page::branch_child(&p, child);
            get_sorted_node(store, cid, &keys[j..end], base + j, found, depth + 1)?;
            j = end;
        }
        return Ok(());
    }
    let mut lo = 0;
    for (j, key) in keys.iter().enumerate() {
        let key = key.as_ref();
        // Cells below `lo` are below every key still to find.
        let (mut a, mut b) = (lo, n);
        while a < b {
            let mid = (a + b) / 2;
            if key_lt(page::leaf_key(&p, mid), key) {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        lo = a;
        if a < n && page::leaf_key(&p, a) == key {
            match page::leaf_value(&p, a) {
                LeafValue::Inline(v) => found(base + j, v)?,
                v @ LeafValue::Overflow { .. } => found(base + j, &read_value(store, v)?)?,
            }
        }
    }
    Ok(())
}

/// A forward cursor over a tree version, from a start key.
pub struct Cursor<'a> {
    store: &'a PageStore,
    /// (page, next index) from root to leaf.
    stack: Vec<(PageRef, usize)>,
}

impl<'a> Cursor<'a> {
    /// Positions at the first key `>= start`.
    pub fn seek(store: &'a PageStore, root: u64, start: &[u8]) -> Result<Cursor<'a>> {
        let mut c = Cursor { store, stack: Vec::new() };
        if root == 0 {
            return Ok(c);
        }
        let mut id = root;
        loop {
            let p = store.read(id)?;
            if expect_kind(store, id, &p)? == KIND_BRANCH {
                let i = page::branch_search(&p, start);
                id = page::branch_child(&p, i);
                c.stack.push((p, i + 1));
                if c.stack.len() > 64 {
                    return Err(store.corrupted(root, "tree deeper than 64 levels (a cycle?)"));
                }
            } else {
                let i = page::leaf_lower_bound(&p, start);
                c.stack.push((p, i));
                return Ok(c);
            }
        }
    }

    /// The next (key, value), or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        loop {
            let Some((p, i)) = self.stack.last_mut() else { return Ok(None) };
            let n = page::count(p);
            if *i >= n {
                self.stack.pop();
                continue;
            }
            let idx = *i;
            *i += 1;
            if page::kind(p) == KIND_LEAF {
                let key = page::leaf_key(p, idx).to_vec();
                let value = read_value(self.store, page::leaf_value(p, idx))?;
                return Ok(Some((key, value)));
            }
            let child = page::branch_child(p, idx);
            let cp = self.store.read(child)?;
            expect_kind(self.store, child, &cp)?;
            if self.stack.len() > 64 {
                return Err(self.store.corrupted(child, "tree deeper than 64 levels (a cycle?)"));
            }
            self.stack.push((cp, 0));
        }
    }
}

/// A rebuilt node: its lowest key, page, and bytes used (for underflow checks).
struct Built {
    key: Vec<u8>,
    id: u64,
    used: Option<usize>,
}

/// A leaf cell being rebuilt.
type Cell<'a> = (&'a [u8], LeafValue<'a>);

/// Applies sorted, unique `ops` (`None` = delete) to the tree at `root`; returns the new root.
pub fn apply(
    tx: &mut TxPages<'_>,
    root: u64,
    ops: &[(&[u8], Option<&[u8]>)],
    fill: Fill,
) -> Result<u64> {
    debug_assert!(ops.windows(2).all(|w| w[0].0 < w[1].0), "ops must be sorted and unique");
    if ops.is_empty() {
        return Ok(root);
    }
    let mut built = if root == 0 {
        let cells = new_cells(tx, &[], ops)?;
        pack_leaf(tx, &cells, fill)
    } else {
        apply_node(tx, root, ops, fill)?
    };
    // Grow upward until one root remains.
    while built.len() > 1 {
        let cells: Vec<(&[u8], u64)> = built.iter().map(|b| (b.key.as_slice(), b.id)).collect();
        let level = pack_branch(tx, &cells, fill);
        built = level;
    }
    let Some(top) = built.pop() else { return Ok(0) };
    // Collapse roots with a single child.
    let mut root = top.id;
    loop {
        let p = tx.read(root)?;
        if page::kind(&p) == KIND_BRANCH && page::count(&p) == 1 {
            let child = page::branch_child(&p, 0);
            tx.free(root);
            root = child;
        } else {
            return Ok(root);
        }
    }
}

/// Merges a leaf's cells with ops. Writes overflow chains for big new values, frees those of
/// replaced or deleted values.
fn new_cells<'a>(
    tx: &mut TxPages<'_>,
    old: &[Cell<'a>],
    ops: &[(&'a [u8], Option<&'a [u8]>)],
) -> Result<Vec<Cell<'a>>> {
    let mut out = Vec::with_capacity(old.len() + ops.len());
    let (mut i, mut j) = (0, 0);
    let max_inline = max_inline_cell(tx.page_size());
    while i < old.len() || j < ops.len() {
        let take_old = j >= ops.len() || (i < old.len() && old[i].0 < ops[j].0);
        if take_old {
            out.push(old[i]);
            i += 1;
            continue;
        }
        let (key, op) = ops[j];
        j += 1;
        if i < old.len() && old[i].0 == key {
            if let LeafValue::Overflow { first, .. } = old[i].1 {
                tx.free_overflow(first)?;
            }
            i += 1;
        }
        if let Some(v) = op {
            let inline = LeafValue::Inline(v);
            if page::leaf_cell_size(key.len(), &inline) <= max_inline {
                out.push((key, inline));
            } else {
                let first = tx.write_overflow(v);
                out.push((key, LeafValue::Overflow { first, len: v.len() }));
            }
        }
    }
    Ok(out)
}

fn leaf_cells(p: &[u8]) -> Vec<Cell<'_>> {
    (0..page::count(p)).map(|i| (page::leaf_key(p, i), page::leaf_value(p, i))).collect()
}

fn branch_cells(p: &[u8]) -> Vec<(&[u8], u64)> {
    (0..page::count(p)).map(|i| (page::branch_key(p, i), page::branch_child(p, i))).collect()
}

/// Splits cell sizes into page-sized groups.
fn groups(sizes: &[usize], cap: usize, fill: Fill) -> Vec<std::ops::Range<usize>> {
    let total: usize = sizes.iter().sum();
    let target = match fill {
        Fill::Greedy => cap,
        Fill::Even => {
            let k = total.div_ceil(cap).max(1);
            total.div_ceil(k)
        }
    };
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, s) in sizes.iter().enumerate() {
        if i > start && (acc + s > cap || acc >= target) {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

fn pack_leaf(tx: &mut TxPages<'_>, cells: &[Cell<'_>], fill: Fill) -> Vec<Built> {
    let sizes: Vec<usize> = cells.iter().map(|(k, v)| page::leaf_cell_size(k.len(), v)).collect();
    let mut out = Vec::new();
    for g in groups(&sizes, capacity(tx.page_size()), fill) {
        let id = tx.alloc();
        let mut p = vec![0u8; tx.page_size()];
        page::build_leaf(&mut p, cells[g.clone()].iter().copied());
        tx.write(id, p);
        out.push(Built { key: cells[g.start].0.to_vec(), id, used: Some(sizes[g].iter().sum()) });
    }
    out
}

fn pack_branch(tx: &mut TxPages<'_>, cells: &[(&[u8], u64)], fill: Fill) -> Vec<Built> {
    let sizes: Vec<usize> = cells.iter().map(|(k, _)| page::branch_cell_size(k.len())).collect();
    let mut out = Vec::new();
    for g in groups(&sizes, capacity(tx.page_size()), fill) {
        let id = tx.alloc();
        let mut p = vec![0u8; tx.page_size()];
        page::build_branch(&mut p, cells[g.clone()].iter().copied());
        tx.write(id, p);
        out.push(Built { key: cells[g.start].0.to_vec(), id, used: Some(sizes[g].iter().sum()) });
    }
    out
}

fn apply_node(
    tx: &mut TxPages<'_>,
    id: u64,
    ops: &[(&[u8], Option<&[u8]>)],
    fill: Fill,
) -> Result<Vec<Built>> {
    let p = tx.read(id)?;
    let kind = expect_kind(tx.store, id, &p)?;
    tx.free(id);
    if kind == KIND_LEAF {
        let old = leaf_cells(&p);
        let cells = new_cells(tx, &old, ops)?;
        return Ok(pack_leaf(tx, &cells, fill));
    }
    let children = branch_cells(&p);
    let mut next: Vec<Built> = Vec::with_capacity(children.len() + 2);
    let mut start = 0;
    for (i, (key, child)) in children.iter().enumerate() {
        let end = match children.get(i + 1) {
            Some((upper, _)) => start + ops[start..].partition_point(|(k, _)| k < upper),
            None => ops.len(),
        };
        if start == end {
            next.push(Built { key: key.to_vec(), id: *child, used: None });
        } else {
            let mut sub = apply_node(tx, *child, &ops[start..end], fill)?;
            // Child 0's key is only a lower bound; keep it so lookups below it still land here.
            if i == 0
                && let Some(first) = sub.first_mut()
            {
                first.key = key.to_vec();
            }
            next.append(&mut sub);
        }
        start = end;
    }
    merge_underfull(tx, &mut next, fill)?;
    let cells: Vec<(&[u8], u64)> = next.iter().map(|b| (b.key.as_slice(), b.id)).collect();
    Ok(pack_branch(tx, &cells, fill))
}

/// Merges each rebuilt child under a quarter full with a neighbour.
fn merge_underfull(tx: &mut TxPages<'_>, nodes: &mut Vec<Built>, fill: Fill) -> Result<()> {
    let min = capacity(tx.page_size()) / 4;
    let mut i = 0;
    while i < nodes.len() {
        let small = nodes[i].used.is_some_and(|u| u < min);
        if !small || nodes.len() < 2 {
            i += 1;
            continue;
        }
        let (a, b) = if i + 1 < nodes.len() { (i, i + 1) } else { (i - 1, i) };
        let pa = tx.read(nodes[a].id)?;
        let pb = tx.read(nodes[b].id)?;
        let ka = expect_kind(tx.store, nodes[a].id, &pa)?;
        if ka != expect_kind(tx.store, nodes[b].id, &pb)? {
            return Err(tx.store.corrupted(nodes[b].id, "siblings of different kinds"));
        }
        tx.free(nodes[a].id);
        tx.free(nodes[b].id);
        let lower = std::mem::take(&mut nodes[a].key);
        let mut merged = if ka == KIND_LEAF {
            let mut cells = leaf_cells(&pa);
            cells.extend(leaf_cells(&pb));
            pack_leaf(tx, &cells, fill)
        } else {
            let mut cells = branch_cells(&pa);
            cells.extend(branch_cells(&pb));
            pack_branch(tx, &cells, fill)
        };
        merged[0].key = lower;
        // Merged pages are at least as full as the small one was; never revisit them.
        for m in merged.iter_mut() {
            m.used = None;
        }
        let n = merged.len();
        nodes.splice(a..=b, merged);
        i = a + n;
    }
    Ok(())
}

/// Every page reachable from `root` (tree and overflow pages), for accounting and checks.
pub fn collect_pages(store: &PageStore, root: u64, out: &mut Vec<u64>) -> Result<()> {
    if root == 0 {
        return Ok(());
    }
    let p = store.read(root)?;
    out.push(root);
    if expect_kind(store, root, &p)? == KIND_BRANCH {
        for i in 0..page::count(&p) {
            collect_pages(store, page::branch_child(&p, i), out)?;
        }
    } else {
        for i in 0..page::count(&p) {
            if let LeafValue::Overflow { first, .. } = page::leaf_value(&p, i) {
                out.extend(overflow_chain(store, first, |id| store.read(id))?);
            }
        }
    }
    Ok(())
}

/// Rewrites every page at or above `limit` reachable from `root` (and every page on the
/// path to one) into freshly allocated pages, for defragmentation. Returns the new root.
///
/// At most about `budget` pages are rewritten (it is decreased by the pages written): once
/// it is spent, no further subtree is visited, so one commit's dirty pages stay bounded and
/// the caller repeats until nothing moves. Only the pages on the path to a moved page are
/// rewritten beyond the budget.
pub fn relocate(tx: &mut TxPages<'_>, root: u64, limit: u64, budget: &mut usize) -> Result<u64> {
    if root == 0 {
        return Ok(0);
    }
    Ok(relocate_node(tx, root, limit, budget)?.unwrap_or(root))
}

fn relocate_node(
    tx: &mut TxPages<'_>,
    id: u64,
    limit: u64,
    budget: &mut usize,
) -> Result<Option<u64>> {
    if *budget == 0 {
        return Ok(None);
    }
    let p = tx.read(id)?;
    let mut changed = id >= limit;
    let new_page = if expect_kind(tx.store, id, &p)? == KIND_BRANCH {
        let mut cells = branch_cells(&p);
        for cell in cells.iter_mut() {
            if let Some(n) = relocate_node(tx, cell.1, limit, budget)? {
                cell.1 = n;
                changed = true;
            }
        }
        if !changed {
            return Ok(None);
        }
        let mut np = vec![0u8; tx.page_size()];
        page::build_branch(&mut np, cells.into_iter());
        np
    } else {
        let mut cells = leaf_cells(&p);
        let mut copies: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            if let LeafValue::Overflow { first, .. } = cell.1 {
                let chain = overflow_chain(tx.store, first, |id| tx.read(id))?;
                if chain.iter().any(|c| *c >= limit) {
                    copies.push((i, read_value(tx.store, cell.1)?));
                    for c in chain {
                        tx.free(c);
                    }
                }
            }
        }
        for (i, value) in &copies {
            let first = tx.write_overflow(value);
            cells[*i].1 = LeafValue::Overflow { first, len: value.len() };
            *budget = budget.saturating_sub(value.len().div_ceil(tx.page_size()));
            changed = true;
        }
        if !changed {
            return Ok(None);
        }
        let mut np = vec![0u8; tx.page_size()];
        page::build_leaf(&mut np, cells.into_iter());
        np
    };
    tx.free(id);
    let nid = tx.alloc();
    tx.write(nid, new_page);
    *budget = budget.saturating_sub(1);
    Ok(Some(nid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemStorage;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    struct Harness {
        store: PageStore,
        freelist: Freelist,
        page_count: u64,
        root: u64,
        txid: u64,
    }

    impl Harness {
        fn new(page_size: usize) -> Harness {
            Harness {
                store: PageStore::new(
                    Arc::new(MemStorage::new()),
                    Path::new("t"),
                    page_size,
                    1 << 22,
                ),
                freelist: Freelist::default(),
                page_count: 2,
                root: 0,
                txid: 0,
            }
        }

        fn commit(&mut self, ops: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, fill: Fill) {
            let ops: Vec<(&[u8], Option<&[u8]>)> =
                ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
            let root = self.root;
            self.run_tx(|tx| apply(tx, root, &ops, fill).unwrap());
        }

        /// Runs one write transaction whose closure returns the new root, commits it as the
        /// engine does (pages written, freed pages released) and returns how many pages it wrote.
        fn run_tx(&mut self, f: impl FnOnce(&mut TxPages<'_>) -> u64) -> usize {
            let mut tx = TxPages::new(&self.store, &mut self.freelist, self.page_count);
            let root = f(&mut tx);
            let (dirty, freed, count) = tx.finish();
            let written = dirty.len();
            self.store.write_pages(dirty).unwrap();
            self.root = root;
            self.page_count = count;
            self.txid += 1;
            self.freelist.free_pending(self.txid, freed);
            self.freelist.release_through(self.txid);
            written
        }

        fn scan(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let mut c = Cursor::seek(&self.store, self.root, b"").unwrap();
            let mut out = Vec::new();
            while let Some(kv) = c.next().unwrap() {
                out.push(kv);
            }
            out
        }

        /// Every page is either reachable or free, exactly once.
        fn check_accounting(&self) {
            let mut live = Vec::new();
            collect_pages(&self.store, self.root, &mut live).unwrap();
            let mut all = live.clone();
            all.extend(self.freelist.all());
            all.sort_unstable();
            let expect: Vec<u64> = (2..self.page_count).collect();
            assert_eq!(all, expect, "pages leaked or double-owned");
        }
    }

    #[test]
    fn model_based_random_batches() {
        let seed = crate::test_seed("btree model test");
        let rounds: usize =
            std::env::var("ENGINE_TEST_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        let mut rng = StdRng::seed_from_u64(seed);
        for fill in [Fill::Greedy, Fill::Even] {
            let mut h = Harness::new(1024);
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for round in 0..rounds {
                let mut ops = BTreeMap::new();
                for _ in 0..rng.random_range(1..80) {
                    let key = format!("k{:04}", rng.random_range(0..400)).into_bytes();
                    if rng.random_bool(0.3) {
                        ops.insert(key, None);
                    } else {
                        let len = if rng.random_bool(0.05) {
                            rng.random_range(400..5000)
                        } else {
                            rng.random_range(0..60)
                        };
                        let v: Vec<u8> = (0..len).map(|i| (i as u8) ^ (round as u8)).collect();
                        ops.insert(key, Some(v));
                    }
                }
                for (k, v) in &ops {
                    match v {
                        Some(v) => model.insert(k.clone(), v.clone()),
                        None => model.remove(k),
                    };
                }
                h.commit(&ops, fill);
                let expect: Vec<(Vec<u8>, Vec<u8>)> =
                    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(h.scan(), expect, "seed {seed} round {round}");
                for _ in 0..10 {
                    let key = format!("k{:04}", rng.random_range(0..400)).into_bytes();
                    assert_eq!(
                        get(&h.store, h.root, &key).unwrap(),
                        model.get(&key).cloned(),
                        "seed {seed}"
                    );
                }
                // Batched lookups of a sorted subset (present and absent keys) agree too.
                let mut keys: Vec<Vec<u8>> = (0..rng.random_range(0..120))
                    .map(|_| format!("k{:04}", rng.random_range(0..400)).into_bytes())
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                let mut got = Vec::new();
                get_sorted(&h.store, h.root, &keys, &mut |i, v| {
                    got.push((keys[i].clone(), v.to_vec()));
                    Ok(())
                })
                .unwrap();
                let expect: Vec<(Vec<u8>, Vec<u8>)> = keys
                    .iter()
                    .filter_map(|k| model.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                assert_eq!(got, expect, "seed {seed} round {round}: get_sorted");
                h.check_accounting();
            }
        }
    }

    #[test]
    fn delete_everything_empties_the_tree_and_frees_all_pages() {
        let mut h = Harness::new(1024);
        let mut ops = BTreeMap::new();
        for i in 0..2000u32 {
            ops.insert(i.to_be_bytes().to_vec(), Some(vec![7u8; (i % 50) as usize]));
        }
        ops.insert(b"big".to_vec(), Some(vec![1u8; 100_000]));
        h.commit(&ops, Fill::Greedy);
        assert!(h.page_count > 50);
        let dels = ops.keys().map(|k| (k.clone(), None)).collect();
        h.commit(&dels, Fill::Greedy);
        assert_eq!(h.root, 0);
        assert_eq!(h.freelist.all().len() as u64, h.page_count - 2);
        // Reuse: the same load again does not grow the file.
        let before = h.page_count;
        h.commit(&ops, Fill::Greedy);
        assert_eq!(h.page_count, before);
        h.check_accounting();
    }

    #[test]
    fn relocate_moves_pages_below_the_limit() {
        let mut h = Harness::new(1024);
        let mut ops = BTreeMap::new();
        for i in 0..500u32 {
            ops.insert(i.to_be_bytes().to_vec(), Some(vec![3u8; 40]));
        }
        ops.insert(b"big".to_vec(), Some(vec![1u8; 10_000]));
        h.commit(&ops, Fill::Greedy);
        let before = h.scan();
        let limit = h.page_count / 2;
        // Make room below the limit, as defragment does, by pretending the low half is free.
        let root = h.root;
        h.run_tx(|tx| relocate(tx, root, 0, &mut usize::MAX.clone()).unwrap());
        assert_eq!(h.scan(), before);
        h.check_accounting();
        assert!(limit > 0);
    }

    #[test]
    fn relocate_within_a_budget_moves_a_bounded_part_per_commit() {
        let mut h = Harness::new(1024);
        let mut ops = BTreeMap::new();
        for i in 0..2400u32 {
            ops.insert(i.to_be_bytes().to_vec(), Some(vec![5u8; 60]));
        }
        h.commit(&ops, Fill::Greedy);
        let low = h.page_count;
        // Rewriting 2000 values and deleting the rest moves the whole tree above `low` and
        // frees every page below, more than the tree needs.
        for (i, v) in ops.values_mut().enumerate() {
            *v = if i < 2000 { Some(vec![6u8; 60]) } else { None };
        }
        h.commit(&ops, Fill::Greedy);
        let before = h.scan();
        let mut rounds = 0;
        loop {
            let mut budget = 10;
            let root = h.root;
            let written = h.run_tx(|tx| relocate(tx, root, low, &mut budget).unwrap());
            assert!(written <= 10 + 4, "{written} pages in one commit");
            assert_eq!(h.scan(), before);
            h.check_accounting();
            rounds += 1;
            if budget > 0 {
                break;
            }
            assert!(rounds < 1000, "relocation does not converge");
        }
        assert!(rounds > 3, "only {rounds} rounds");
        let mut live = Vec::new();
        collect_pages(&h.store, h.root, &mut live).unwrap();
        assert!(live.iter().all(|id| *id < low), "pages left at or above {low}: {live:?}");
    }
}
