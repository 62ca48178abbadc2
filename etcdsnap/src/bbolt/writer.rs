//! Writing a bbolt file as a stream, page by page in page order, never holding more than a
//! page per tree level.
//!
//! The file it writes:
//!
//! ```text
//! | page 0: meta | page 1: meta | page 2: empty freelist | bucket pages ... | root bucket |
//! ```
//!
//! Every tree is built bottom-up as its keys arrive (in order): a leaf is written as soon
//! as the next key would not fit it, and a branch page as soon as the next child would not
//! fit it, so a parent always follows its children. Page ids are handed out in write order.
//!
//! The catch is the meta page, first in the file, which names the root bucket's page and
//! the page count: both are known only at the end. So a file is written twice from the same
//! source: [`DbWriter::plan`] runs the writer with a sink that only counts and returns the
//! [`Layout`]; [`DbWriter::new`] with that layout writes the real bytes, and checks at the
//! end that they came out the same.

use std::io::Write;

use super::*;
use crate::error::{Error, Result};

/// What the counting pass learns: where the root bucket ends up, and how big the file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub root: u64,
    pub pages: u64,
}

impl Layout {
    /// Bytes of the file.
    pub fn size(&self, page_size: usize) -> u64 {
        self.pages * page_size as u64
    }
}

/// One level of a tree under construction.
#[derive(Default)]
struct Level {
    /// (first key, page id) of each child gathered so far.
    children: Vec<(Vec<u8>, u64)>,
    /// Bytes their elements and keys take in a branch page.
    bytes: usize,
}

/// One bucket under construction.
struct Bucket {
    name: Vec<u8>,
    /// Leaf elements gathered so far: (flags, key, value).
    leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
    leaf_bytes: usize,
    /// Branch levels, lowest first.
    levels: Vec<Level>,
    last_key: Option<Vec<u8>>,
}

impl Bucket {
    fn new(name: Vec<u8>) -> Bucket {
        Bucket {
            name,
            leaf: Vec::new(),
            leaf_bytes: PAGE_HEADER_LEN,
            levels: Vec::new(),
            last_key: None,
        }
    }
}

/// Streams a bbolt file (see the module doc).
pub struct DbWriter<W: Write> {
    out: Option<W>,
    page_size: usize,
    next_pgid: u64,
    /// Open buckets; `[0]` is the root bucket.
    stack: Vec<Bucket>,
    expect: Option<Layout>,
    buf: Vec<u8>,
}

impl DbWriter<std::io::Sink> {
    /// A counting writer: feed it the same calls as the real one, then [`DbWriter::finish`]
    /// gives the layout.
    pub fn plan(page_size: usize) -> DbWriter<std::io::Sink> {
        DbWriter::start(None, page_size, None)
    }
}

impl<W: Write> DbWriter<W> {
    /// The real writer; `layout` from a counting pass over the same calls.
    pub fn new(out: W, page_size: usize, layout: Layout) -> Result<DbWriter<W>> {
        let mut w = DbWriter::start(Some(out), page_size, Some(layout));
        // Pages 0 and 1: the meta page; page 2: the (empty) freelist.
        for id in 0..2u64 {
            let meta = Meta {
                page_size: page_size as u32,
                flags: 0,
                root: layout.root,
                sequence: 0,
                freelist: 2,
                pgid: layout.pages,
                txid: 1,
            };
            let mut page = vec![0u8; page_size];
            put_header(&mut page, id, META_PAGE, 0, 0);
            page[PAGE_HEADER_LEN..PAGE_HEADER_LEN + META_LEN].copy_from_slice(&meta.encode());
            w.emit_raw(&page)?;
        }
        let mut page = vec![0u8; page_size];
        put_header(&mut page, 2, FREELIST_PAGE, 0, 0);
        w.emit_raw(&page)?;
        Ok(w)
    }

    fn start(out: Option<W>, page_size: usize, expect: Option<Layout>) -> DbWriter<W> {
        assert!(
            page_size.is_power_of_two() && (1024..=65536).contains(&page_size),
            "bbolt page size {page_size}"
        );
        DbWriter {
            out,
            page_size,
            next_pgid: 3,
            stack: vec![Bucket::new(Vec::new())],
            expect,
            buf: Vec::new(),
        }
    }

    fn emit_raw(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(bytes).map_err(Error::Io)?;
        }
        Ok(())
    }

    fn check_key(b: &mut Bucket, key: &[u8]) -> Result<()> {
        if key.is_empty() || key.len() > MAX_KEY_SIZE {
            return Err(Error::InvalidInput(format!("bbolt key of {} bytes", key.len())));
        }
        if b.last_key.as_deref().is_some_and(|last| key <= last) {
            return Err(Error::InvalidInput(format!(
                "key {:?} out of order in bucket {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&b.name)
            )));
        }
        b.last_key = Some(key.to_vec());
        Ok(())
    }

    /// Adds `key = value` to the innermost open bucket (keys in strictly increasing order).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::InvalidInput(format!("bbolt value of {} bytes", value.len())));
        }
        let b = self.stack.last_mut().expect("the root bucket is always open");
        Self::check_key(b, key)?;
        self.add_leaf_element(0, key.to_vec(), value.to_vec())
    }

    /// Opens a nested bucket `name` in the innermost open bucket; its keys follow, then
    /// [`DbWriter::end_bucket`].
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<()> {
        let b = self.stack.last_mut().expect("the root bucket is always open");
        Self::check_key(b, name)?;
        self.stack.push(Bucket::new(name.to_vec()));
        Ok(())
    }

    /// Closes the innermost nested bucket.
    pub fn end_bucket(&mut self) -> Result<()> {
        assert!(self.stack.len() > 1, "end_bucket without begin_bucket");
        let b = self.stack.pop().expect("checked");
        let root = self.finish_tree(b.leaf, b.levels)?;
        let mut v = vec![0u8; BUCKET_HEADER_LEN];
        v[0..8].copy_from_slice(&root.to_le_bytes());
        self.add_leaf_element(BUCKET_LEAF_FLAG, b.name, v)
    }

    /// Ends the file: writes the root bucket; returns the layout (checked against the plan).
    pub fn finish(mut self) -> Result<(Layout, Option<W>)> {
        assert_eq!(self.stack.len(), 1, "a nested bucket is still open");
        let b = self.stack.pop().expect("root");
        let root = self.finish_tree(b.leaf, b.levels)?;
        let layout = Layout { root, pages: self.next_pgid };
        if let Some(expect) = self.expect
            && expect != layout
        {
            return Err(Error::InvalidInput(format!(
                "the source changed between the two passes: planned {expect:?}, wrote {layout:?}"
            )));
        }
        let mut out = self.out.take();
        if let Some(o) = out.as_mut() {
            o.flush().map_err(Error::Io)?;
        }
        Ok((layout, out))
    }

    fn add_leaf_element(&mut self, flags: u32, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        let size = LEAF_ELEMENT_LEN + key.len() + value.len();
        let ps = self.page_size;
        let full = {
            let b = self.stack.last().expect("open");
            !b.leaf.is_empty() && b.leaf_bytes + size > ps
        };
        if full {
            let b = self.stack.last_mut().expect("open");
            let leaf = std::mem::take(&mut b.leaf);
            let mut levels = std::mem::take(&mut b.levels);
            b.leaf_bytes = PAGE_HEADER_LEN;
            let (first, id) = self.write_leaf(leaf)?;
            self.push_child(&mut levels, 0, first, id)?;
            self.stack.last_mut().expect("open").levels = levels;
        }
        let b = self.stack.last_mut().expect("open");
        b.leaf_bytes += size;
        b.leaf.push((flags, key, value));
        Ok(())
    }

    /// Adds a child to `levels[level]`, first writing that level's page if the child does
    /// not fit it (which adds a child to the level above, and so on).
    fn push_child(
        &mut self,
        levels: &mut Vec<Level>,
        level: usize,
        key: Vec<u8>,
        id: u64,
    ) -> Result<()> {
        if levels.len() == level {
            levels.push(Level::default());
        }
        let size = BRANCH_ELEMENT_LEN + key.len();
        let l = &mut levels[level];
        // At least two children per branch page (as bbolt's minKeysPerPage): with keys near
        // a page long, one-child pages would never narrow the tree.
        if l.children.len() >= 2 && PAGE_HEADER_LEN + l.bytes + size > self.page_size {
            let children = std::mem::take(&mut l.children);
            l.bytes = 0;
            let (first, bid) = self.write_branch(children)?;
            self.push_child(levels, level + 1, first, bid)?;
        }
        let l = &mut levels[level];
        l.bytes += size;
        l.children.push((key, id));
        Ok(())
    }

    /// Writes what is left of a tree (its last leaf and branch pages); returns its root.
    fn finish_tree(
        &mut self,
        leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
        mut levels: Vec<Level>,
    ) -> Result<u64> {
        // The last leaf (an empty tree is one empty leaf).
        if !leaf.is_empty() || levels.is_empty() {
            let (first, id) = self.write_leaf(leaf)?;
            self.push_child(&mut levels, 0, first, id)?;
        }
        // Levels bottom-up; the top level with a single child has the root in that child.
        let mut level = 0;
        loop {
            let top = level + 1 == levels.len();
            let l = std::mem::take(&mut levels[level]);
            if top && l.children.len() == 1 {
                return Ok(l.children[0].1);
            }
            if !l.children.is_empty() {
                let (first, id) = self.write_branch(l.children)?;
                self.push_child(&mut levels, level + 1, first, id)?;
            }
            level += 1;
        }
    }

    fn alloc(&mut self, bytes: usize) -> (u64, usize) {
        let pages = bytes.div_ceil(self.page_size).max(1);
        let id = self.next_pgid;
        self.next_pgid += pages as u64;
        (id, pages)
    }

    fn write_leaf(&mut self, leaf: Vec<(u32, Vec<u8>, Vec<u8>)>) -> Result<(Vec<u8>, u64)> {
        let n = leaf.len();
        let data: usize = leaf.iter().map(|(_, k, v)| k.len() + v.len()).sum();
        let bytes = PAGE_HEADER_LEN + n * LEAF_ELEMENT_LEN + data;
        let (id, pages) = self.alloc(bytes);
        let first = leaf.first().map(|(_, k, _)| k.clone()).unwrap_or_default();
        if self.out.is_some() {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.resize(pages * self.page_size, 0);
            put_header(&mut buf, id, LEAF_PAGE, count16(n)?, (pages - 1) as u32);
            let mut at = PAGE_HEADER_LEN + n * LEAF_ELEMENT_LEN;
            for (i, (flags, k, v)) in leaf.iter().enumerate() {
                let e = PAGE_HEADER_LEN + i * LEAF_ELEMENT_LEN;
                buf[e..e + 4].copy_from_slice(&flags.to_le_bytes());
                buf[e + 4..e + 8].copy_from_slice(&((at - e) as u32).to_le_bytes());
                buf[e + 8..e + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
                buf[e + 12..e + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
                buf[at..at + k.len()].copy_from_slice(k);
                at += k.len();
                buf[at..at + v.len()].copy_from_slice(v);
                at += v.len();
            }
            self.emit_raw(&buf)?;
            self.buf = buf;
        }
        Ok((first, id))
    }

    fn write_branch(&mut self, children: Vec<(Vec<u8>, u64)>) -> Result<(Vec<u8>, u64)> {
        let n = children.len();
        let data: usize = children.iter().map(|(k, _)| k.len()).sum();
        let bytes = PAGE_HEADER_LEN + n * BRANCH_ELEMENT_LEN + data;
        let (id, pages) = self.alloc(bytes);
        let first = children[0].0.clone();
        if self.out.is_some() {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.resize(pages * self.page_size, 0);
            put_header(&mut buf, id, BRANCH_PAGE, count16(n)?, (pages - 1) as u32);
            let mut at = PAGE_HEADER_LEN + n * BRANCH_ELEMENT_LEN;
            for (i, (k, child)) in children.iter().enumerate() {
                let e = PAGE_HEADER_LEN + i * BRANCH_ELEMENT_LEN;
                buf[e..e + 4].copy_from_slice(&((at - e) as u32).to_le_bytes());
                buf[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                buf[e + 8..e + 16].copy_from_slice(&child.to_le_bytes());
                buf[at..at + k.len()].copy_from_slice(k);
                at += k.len();
            }
            self.emit_raw(&buf)?;
            self.buf = buf;
        }
        Ok((first, id))
    }
}

fn count16(n: usize) -> Result<u16> {
    // A page of elements of at least 16 bytes holds far fewer than 65535 unless the page
    // size is huge; bbolt has the same limit.
    u16::try_from(n).map_err(|_| Error::InvalidInput(format!("{n} elements in one page")))
}
