//! Snapshots: a consistent point-in-time copy of the database as a byte stream, and
//! writing a database file back from one.
//!
//! The stream is the database file as of one committed version, followed by a trailer:
//!
//! ```text
//! | page 0 .. page_count-1 (page_size each) | magic: "LBSNAP01" | crc32c: u32 LE | page_size: u32 LE |
//! ```
//!
//! The version's meta page is written to its slot and the other meta slot is zeroed; free
//! pages are zeroed (no stale data leaves the machine). The crc32c covers every page byte.
//! While the stream is open it pins its version: no page it will read is reused.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::meta::{META_PAGES, Meta};
use crate::page;
use crate::shared::{Shared, Version};

pub const TRAILER_MAGIC: &[u8; 8] = b"LBSNAP01";
pub const TRAILER_LEN: usize = 16;

/// Pages read from the file per refill.
const BATCH_PAGES: u64 = 64;

/// A consistent copy of the database, readable as a stream (`std::io::Read`).
pub struct Snapshot {
    shared: Arc<Shared>,
    ver: Arc<Version>,
    /// Pages free in `ver` (streamed as zeros), sorted.
    free: Vec<u64>,
    next_page: u64,
    buf: Vec<u8>,
    pos: usize,
    crc: u32,
    trailer_done: bool,
}

impl Snapshot {
    pub(crate) fn new(shared: &Arc<Shared>) -> Result<Snapshot> {
        shared.commit_now()?;
        let ver = shared.pin();
        let mut free = Vec::new();
        let mut id = ver.meta.freelist_root;
        while id != 0 {
            let p = shared.store.read(id)?;
            page::freelist_page_ids(&p, 0..ver.meta.page_count, &mut free)
                .map_err(|reason| shared.store.corrupted(id, reason))?;
            id = page::freelist_next(&p);
        }
        free.sort_unstable();
        Ok(Snapshot {
            shared: shared.clone(),
            ver,
            free,
            next_page: 0,
            buf: Vec::new(),
            pos: 0,
            crc: 0,
            trailer_done: false,
        })
    }

    /// Total bytes the stream yields.
    pub fn size(&self) -> u64 {
        self.ver.meta.page_count * self.ver.meta.page_size as u64 + TRAILER_LEN as u64
    }

    /// The Raft index applied in this snapshot's data.
    pub fn applied_index(&self) -> u64 {
        self.ver.meta.applied_index
    }

    /// The store's revision in this snapshot.
    pub fn revision(&self) -> i64 {
        self.ver.meta.current_revision
    }

    fn refill(&mut self) -> Result<()> {
        let ps = self.ver.meta.page_size as usize;
        let count = self.ver.meta.page_count;
        self.buf.clear();
        self.pos = 0;
        if self.next_page >= count {
            if !self.trailer_done {
                self.trailer_done = true;
                self.buf.extend_from_slice(TRAILER_MAGIC);
                self.buf.extend_from_slice(&self.crc.to_le_bytes());
                self.buf.extend_from_slice(&(ps as u32).to_le_bytes());
            }
            return Ok(());
        }
        let end = (self.next_page + BATCH_PAGES).min(count);
        self.buf.resize((end - self.next_page) as usize * ps, 0);
        for id in self.next_page..end {
            let at = (id - self.next_page) as usize * ps;
            let dst = &mut self.buf[at..at + ps];
            if id < META_PAGES {
                if id == self.ver.meta.slot() {
                    self.ver.meta.encode(dst);
                }
            } else if self.free.binary_search(&id).is_err() {
                self.shared.store.read_raw(id, dst)?;
            }
        }
        self.next_page = end;
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        Ok(())
    }
}

impl Read for Snapshot {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.buf.len() {
            self.refill().map_err(|e| match e {
                Error::Io(e) => e,
                other => io::Error::other(other),
            })?;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes the database file `path` from a snapshot stream, verifying the trailer and meta
/// page before moving it into place.
pub(crate) fn restore(path: &Path, from: &mut dyn Read) -> Result<()> {
    let tmp = path.with_extension("restore-tmp");
    let bad =
        |offset: u64, reason: String| Error::Corrupted { file: path.to_path_buf(), offset, reason };
    let mut file = std::fs::File::create(&tmp)?;
    let mut crc = 0u32;
    let mut held: Vec<u8> = Vec::new(); // the last TRAILER_LEN bytes seen (maybe the trailer)
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        held.extend_from_slice(&buf[..n]);
        if held.len() > TRAILER_LEN {
            let cut = held.len() - TRAILER_LEN;
            crc = crc32c::crc32c_append(crc, &held[..cut]);
            file.write_all(&held[..cut])?;
            total += cut as u64;
            held.drain(..cut);
        }
    }
    if held.len() != TRAILER_LEN || &held[..8] != TRAILER_MAGIC {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(total, "snapshot stream has no trailer (truncated?)".into()));
    }
    let want = u32::from_le_bytes(held[8..12].try_into().expect("4 bytes"));
    let ps = u32::from_le_bytes(held[12..16].try_into().expect("4 bytes")) as u64;
    if want != crc {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(
            total,
            format!("snapshot checksum mismatch: trailer {want:#010x}, data {crc:#010x}"),
        ));
    }
    if ps == 0 || !total.is_multiple_of(ps) || total < META_PAGES * ps {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(total, format!("snapshot length {total} is not whole pages of {ps}")));
    }
    file.sync_all()?;
    drop(file);
    // The meta page must be valid (the checksum says the bytes are what was sent; this says
    // they are a database).
    let mut head = vec![0u8; 2 * ps as usize];
    std::fs::File::open(&tmp)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))?;
    let ok = (0..2u64).any(|slot| {
        Meta::decode(&head[(slot * ps) as usize..((slot + 1) * ps) as usize], slot).is_ok()
    });
    if !ok {
        let _ = std::fs::remove_file(&tmp);
        return Err(bad(0, "snapshot has no valid meta page".into()));
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
