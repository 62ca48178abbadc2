//! Reading a bbolt file: opening it (meta pages), walking buckets in key order.
//!
//! Nothing in the file is trusted: every page id is checked against the file's high-water
//! mark, every page's kind against what points at it, every element against its page's
//! bounds; a page reached twice in one walk (a cycle) and keys out of order are corruption.
//! Every failure is [`Error::Corrupt`] naming the page and the problem.

use std::collections::HashSet;
use std::fs::File;

use super::*;
use crate::error::{Error, Result};

/// Nesting limit for buckets and tree depth (bbolt's trees are a few levels deep).
const MAX_DEPTH: usize = 64;

/// Random-access bytes: a file, or a buffer.
pub trait ReadAt {
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; an error if the source is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.checked_add(buf.len()).filter(|e| *e <= self.len());
        match end {
            Some(end) => {
                buf.copy_from_slice(&self[start..end]);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
}

/// One key of a bucket, as a walk visits it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The value is a nested bucket (see [`Db::for_each_in`]).
    pub is_bucket: bool,
}

/// An open bbolt database (read-only).
pub struct Db<R: ReadAt> {
    src: R,
    meta: Meta,
    /// Bytes of the database proper (`pgid * page_size`); a snapshot's trailer lies beyond.
    len: u64,
}

/// Where a bucket's tree lives.
enum Root<'a> {
    Page(u64),
    Inline(&'a [u8]),
}

impl<R: ReadAt> Db<R> {
    /// Opens a database, reading and validating its meta pages. `len` limits how much of
    /// the source belongs to the database (`None`: all of it).
    pub fn open(src: R, len: Option<u64>) -> Result<Db<R>> {
        let len = len.unwrap_or_else(|| src.size()).min(src.size());
        let mut head = vec![0u8; PAGE_HEADER_LEN + META_LEN];
        if len < head.len() as u64 {
            return Err(Error::corrupt(0, format!("file of {len} bytes is too short for bbolt")));
        }
        src.read_exact_at(&mut head, 0).map_err(Error::Io)?;
        let mut reasons = Vec::new();
        let mut best: Option<Meta> = None;
        // Meta page 1 lies one page in: the page size comes from meta 0, or, if that one is
        // damaged, is one of the sizes bbolt may use.
        let mut sizes = vec![];
        match Meta::decode(&head[PAGE_HEADER_LEN..]) {
            Ok(m) => {
                sizes.push(m.page_size as u64);
                best = Some(m);
            }
            Err(r) => {
                reasons.push(format!("meta page 0: {r}"));
                sizes.extend([4096u64, 8192, 16384, 32768, 65536]);
            }
        }
        for ps in sizes {
            if ps < (PAGE_HEADER_LEN + META_LEN) as u64 || len < ps + head.len() as u64 {
                continue;
            }
            let mut h1 = vec![0u8; PAGE_HEADER_LEN + META_LEN];
            src.read_exact_at(&mut h1, ps).map_err(Error::Io)?;
            match Meta::decode(&h1[PAGE_HEADER_LEN..]) {
                Ok(m) if m.page_size as u64 == ps => {
                    if best.as_ref().is_none_or(|b| m.txid > b.txid) {
                        best = Some(m);
                    }
                    break;
                }
                Ok(_) => reasons.push("meta page 1: page size disagrees".into()),
                Err(r) => reasons.push(format!("meta page 1: {r}")),
            }
        }
        let Some(meta) = best else {
            return Err(Error::corrupt(0, format!("no valid meta page: {}", reasons.join("; "))));
        };
        let ps = meta.page_size as usize;
        if !ps.is_power_of_two() || !(512..=1 << 20).contains(&ps) {
            return Err(Error::corrupt(0, format!("page size {ps} is not plausible")));
        }
        let need = meta.pgid.checked_mul(ps as u64);
        match need {
            Some(need) if meta.pgid >= 2 && need <= len => {}
            _ => {
                return Err(Error::corrupt(
                    0,
                    format!(
                        "truncated: the meta page says {} pages of {ps} bytes, the file has {len} bytes",
                        meta.pgid
                    ),
                ));
            }
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(Error::corrupt(
                0,
                format!("root bucket page {} is outside the file", meta.root),
            ));
        }
        Ok(Db { src, len: meta.pgid * ps as u64, meta })
    }

    /// The meta page in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Bytes of the database (bbolt's `tx.Size()`).
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Reads logical page `id` (with its overflow pages), checking its kind is in `kinds`.
    fn page(&self, id: u64, kinds: u16) -> Result<Vec<u8>> {
        let ps = self.meta.page_size as usize;
        if id < 2 || id >= self.meta.pgid {
            return Err(Error::corrupt(id, "page id outside the file"));
        }
        let mut first = vec![0u8; ps];
        self.src.read_exact_at(&mut first, id * ps as u64).map_err(Error::Io)?;
        let hid = u64::from_le_bytes(first[0..8].try_into().expect("8 bytes"));
        let flags = u16::from_le_bytes([first[8], first[9]]);
        let overflow = u32::from_le_bytes(first[12..16].try_into().expect("4 bytes")) as u64;
        if hid != id {
            return Err(Error::corrupt(id, format!("page header names page {hid}")));
        }
        if flags & kinds == 0 {
            return Err(Error::corrupt(id, format!("unexpected page flags {flags:#x}")));
        }
        if overflow > 0 {
            if id + overflow >= self.meta.pgid {
                return Err(Error::corrupt(id, "overflow pages run past the end of the file"));
            }
            let total = (1 + overflow) as usize * ps;
            first.resize(total, 0);
            self.src.read_exact_at(&mut first[ps..], (id + 1) * ps as u64).map_err(Error::Io)?;
        }
        Ok(first)
    }

    /// Walks the top-level bucket names (and any plain keys of the root bucket).
    pub fn for_each_root(&self, f: &mut dyn FnMut(Entry<'_>) -> Result<()>) -> Result<()> {
        self.walk(Root::Page(self.meta.root), 0, &mut HashSet::new(), &mut None, f)
    }

    /// Walks the bucket at `path` (names from the root, e.g. `[b"key"]`); `Ok(false)` if
    /// it does not exist.
    pub fn for_each_in(
        &self,
        path: &[&[u8]],
        f: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<bool> {
        self.in_bucket(Root::Page(self.meta.root), path, 0, f)
    }

    fn in_bucket(
        &self,
        root: Root<'_>,
        path: &[&[u8]],
        depth: usize,
        f: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<bool> {
        let Some((name, rest)) = path.split_first() else {
            self.walk(root, depth, &mut HashSet::new(), &mut None, f)?;
            return Ok(true);
        };
        // Find the nested bucket's value, then descend (a walk of one level).
        let mut found: Option<Vec<u8>> = None;
        self.walk(root, depth, &mut HashSet::new(), &mut None, &mut |e| {
            if e.key == *name && e.is_bucket {
                found = Some(e.value.to_vec());
            }
            Ok(())
        })?;
        let Some(v) = found else { return Ok(false) };
        let sub = bucket_root(&v)?;
        self.in_bucket(sub, rest, depth + 1, f)
    }

    /// Visits every entry of one bucket's tree in key order.
    fn walk(
        &self,
        root: Root<'_>,
        depth: usize,
        seen: &mut HashSet<u64>,
        last: &mut Option<Vec<u8>>,
        f: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(0, "buckets or trees nested too deep"));
        }
        let (id, page) = match root {
            Root::Inline(bytes) => (0, bytes.to_vec()),
            Root::Page(id) => {
                if !seen.insert(id) {
                    return Err(Error::corrupt(id, "page reached twice (a cycle in the tree)"));
                }
                (id, self.page(id, BRANCH_PAGE | LEAF_PAGE)?)
            }
        };
        if page.len() < PAGE_HEADER_LEN {
            return Err(Error::corrupt(id, "inline page shorter than a page header"));
        }
        let flags = u16::from_le_bytes([page[8], page[9]]);
        let count = u16::from_le_bytes([page[10], page[11]]) as usize;
        if PAGE_HEADER_LEN + count * LEAF_ELEMENT_LEN > page.len() {
            return Err(Error::corrupt(id, format!("{count} elements do not fit the page")));
        }
        let u32_at = |o: usize| u32::from_le_bytes(page[o..o + 4].try_into().expect("4 bytes"));
        if flags & LEAF_PAGE != 0 {
            for i in 0..count {
                let e = PAGE_HEADER_LEN + i * LEAF_ELEMENT_LEN;
                let eflags = u32_at(e);
                let (pos, ksize, vsize) =
                    (u32_at(e + 4) as usize, u32_at(e + 8) as usize, u32_at(e + 12) as usize);
                let kstart = e.checked_add(pos);
                let kend = kstart.and_then(|s| s.checked_add(ksize));
                let vend = kend.and_then(|s| s.checked_add(vsize));
                let (Some(kstart), Some(kend), Some(vend)) = (kstart, kend, vend) else {
                    return Err(Error::corrupt(id, format!("element {i} overflows")));
                };
                if vend > page.len() {
                    return Err(Error::corrupt(id, format!("element {i} runs past its page")));
                }
                let key = &page[kstart..kend];
                check_order(id, last, key)?;
                f(Entry {
                    key,
                    value: &page[kend..vend],
                    is_bucket: eflags & BUCKET_LEAF_FLAG != 0,
                })?;
            }
        } else if flags & BRANCH_PAGE != 0 && id != 0 {
            for i in 0..count {
                let e = PAGE_HEADER_LEN + i * BRANCH_ELEMENT_LEN;
                let child = u64::from_le_bytes(page[e + 8..e + 16].try_into().expect("8 bytes"));
                self.walk(Root::Page(child), depth + 1, seen, last, f)?;
            }
        } else {
            return Err(Error::corrupt(
                id,
                format!("not a leaf or branch page (flags {flags:#x})"),
            ));
        }
        Ok(())
    }
}

/// Keys of a bucket must strictly increase.
fn check_order(id: u64, last: &mut Option<Vec<u8>>, key: &[u8]) -> Result<()> {
    if let Some(prev) = last.as_deref()
        && key <= prev
    {
        return Err(Error::corrupt(id, "keys out of order"));
    }
    match last {
        Some(v) => {
            v.clear();
            v.extend_from_slice(key);
        }
        None => *last = Some(key.to_vec()),
    }
    Ok(())
}

/// Where a nested bucket's value says its tree is.
fn bucket_root(v: &[u8]) -> Result<Root<'_>> {
    if v.len() < BUCKET_HEADER_LEN {
        return Err(Error::corrupt(0, "nested bucket value shorter than a bucket header"));
    }
    let root = u64::from_le_bytes(v[0..8].try_into().expect("8 bytes"));
    if root == 0 { Ok(Root::Inline(&v[BUCKET_HEADER_LEN..])) } else { Ok(Root::Page(root)) }
}

impl<R: ReadAt> Db<R> {
    /// Walks a nested bucket given its value as its parent holds it (for nested buckets
    /// found in a walk).
    pub fn for_each_nested(
        &self,
        bucket_value: &[u8],
        f: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<()> {
        let root = bucket_root(bucket_value)?;
        self.walk(root, 1, &mut HashSet::new(), &mut None, f)
    }
}
