//! The page store: reads verified pages through a cache, writes a commit's dirty pages.
//!
//! Pages are immutable once written (copy-on-write): a page id is only rewritten after the
//! page was freed and no reader can still see it, so the cache never holds a stale page
//! that anyone reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::io::Storage;
use crate::page;

/// Number of cache shards (a power of two).
const SHARDS: usize = 16;

/// Shared, immutable page bytes.
pub type PageRef = Arc<[u8]>;

pub struct PageStore {
    storage: Arc<dyn Storage>,
    path: PathBuf,
    page_size: usize,
    cache: Vec<Mutex<Shard>>,
    shard_capacity: usize,
}

#[derive(Default)]
struct Shard {
    pages: HashMap<u64, PageRef, BuildIdHasher>,
    epoch: u64,
}

/// Page ids are already well spread; a multiply is all the hashing they need (SipHash
/// showed up in read profiles).
#[derive(Default, Clone, Copy)]
struct BuildIdHasher;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = (id ^ (id >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl PageStore {
    pub fn new(
        storage: Arc<dyn Storage>,
        path: &Path,
        page_size: usize,
        cache_bytes: usize,
    ) -> PageStore {
        let pages = (cache_bytes / page_size).max(SHARDS * 4);
        PageStore {
            storage,
            path: path.to_path_buf(),
            page_size,
            cache: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity: pages / SHARDS,
        }
    }

    /// Bytes of pages in the cache (for memory accounting).
    pub fn cached_bytes(&self) -> usize {
        self.cache.iter().map(|s| s.lock().pages.len()).sum::<usize>() * self.page_size
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error for a bad page `id`.
    pub fn corrupted(&self, id: u64, reason: impl Into<String>) -> Error {
        Error::Corrupted {
            file: self.path.clone(),
            offset: id * self.page_size as u64,
            reason: reason.into(),
        }
    }

    fn shard(&self, id: u64) -> &Mutex<Shard> {
        &self.cache[(id as usize) & (SHARDS - 1)]
    }

    /// Reads page `id`, verified (checksum, id, structure), from the cache or the file.
    pub fn read(&self, id: u64) -> Result<PageRef> {
        if let Some(p) = self.shard(id).lock().pages.get(&id) {
            return Ok(p.clone());
        }
        let mut buf = vec![0u8; self.page_size];
        self.storage.read_at(&mut buf, id * self.page_size as u64).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupted(id, "page lies past the end of the file")
            } else {
                Error::Io(e)
            }
        })?;
        page::validate(&buf, id).map_err(|reason| self.corrupted(id, reason))?;
        let p: PageRef = buf.into();
        self.insert(id, p.clone());
        Ok(p)
    }

    /// Reads page `id` as raw bytes, bypassing cache and verification.
    pub fn read_raw(&self, id: u64, buf: &mut [u8]) -> Result<()> {
        self.storage.read_at(buf, id * self.page_size as u64)?;
        Ok(())
    }

    fn insert(&self, id: u64, p: PageRef) {
        let mut shard = self.shard(id).lock();
        if shard.pages.len() >= self.shard_capacity {
            // Evict about an eighth of the shard, chosen by a hash that changes every time.
            shard.epoch = shard.epoch.wrapping_add(1);
            let epoch = shard.epoch;
            shard.pages.retain(|k, _| ((k ^ epoch).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) != 0);
        }
        shard.pages.insert(id, p);
    }

    /// Writes sealed pages (sorted by id, contiguous runs coalesced), then caches them.
    pub fn write_pages(&self, mut pages: Vec<(u64, PageRef)>) -> Result<()> {
        pages.sort_unstable_by_key(|(id, _)| *id);
        let mut i = 0;
        let mut run = Vec::new();
        while i < pages.len() {
            let start = pages[i].0;
            let mut j = i;
            while j + 1 < pages.len() && pages[j + 1].0 == pages[j].0 + 1 && j - i < 255 {
                j += 1;
            }
            if i == j {
                self.storage.write_at(&pages[i].1, start * self.page_size as u64)?;
            } else {
                run.clear();
                for (_, p) in &pages[i..=j] {
                    run.extend_from_slice(p);
                }
                self.storage.write_at(&run, start * self.page_size as u64)?;
            }
            i = j + 1;
        }
        for (id, p) in pages {
            self.insert(id, p);
        }
        Ok(())
    }

    /// Drops cached pages at or above `page_count` (after the file shrank).
    pub fn forget_from(&self, page_count: u64) {
        for s in &self.cache {
            s.lock().pages.retain(|k, _| *k < page_count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemStorage;

    #[test]
    fn reads_back_written_pages_and_reports_corruption() {
        let mem = MemStorage::new();
        let store = PageStore::new(Arc::new(mem.clone()), Path::new("db"), 1024, 1 << 20);
        let mut pages = Vec::new();
        for id in [5u64, 3, 4, 9] {
            let mut p = vec![0u8; 1024];
            page::build_overflow(&mut p, 0, &id.to_le_bytes());
            page::seal(&mut p, id);
            pages.push((id, PageRef::from(p)));
        }
        store.write_pages(pages).unwrap();
        // Two writes: 3..=5 coalesced, 9 alone.
        assert_eq!(mem.ops(), 2);
        let fresh = PageStore::new(Arc::new(mem.clone()), Path::new("db"), 1024, 1 << 20);
        assert_eq!(page::overflow_data(&fresh.read(4).unwrap()), 4u64.to_le_bytes());
        mem.write_at(&[0xff], 9 * 1024 + 100).unwrap();
        match fresh.read(9) {
            Err(Error::Corrupted { offset, reason, .. }) => {
                assert_eq!(offset, 9 * 1024);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(matches!(fresh.read(100), Err(Error::Corrupted { .. })));
    }
}
