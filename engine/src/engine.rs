//! The engine: [`Engine`], the public handle, a thin wrapper over the shared state
//! (`shared.rs`) and the committer thread. Each method hands its work to the module that
//! owns it: reads to `read.rs`, writes to `txn.rs`, commits to `commit.rs`, and so on.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crate::codec;
use crate::error::{Error, Result};
use crate::history::{BulkLoad, History};
use crate::io::{FileStorage, Storage};
use crate::kv::{Event, RangeOptions, RangeResult};
use crate::options::Options;
use crate::shared::Shared;
use crate::txn::WriteTxn;

/// Where the engine's memory goes, as [`Engine::memory_usage`] counts it: what its
/// structures reserved, before the allocator's rounding and slack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Keys in the index.
    pub keys: usize,
    /// The key index: every key, its revisions, and the cached latest records (which
    /// `latest_cache_bytes` counts again on its own).
    pub index_bytes: usize,
    /// Latest records cached in the index (`Options::latest_cache_size` at most).
    pub latest_cache_bytes: usize,
    /// `Options::latest_cache_size`.
    pub latest_cache_limit: usize,
    /// Pages in the page cache (`Options::cache_size` at most).
    pub page_cache_bytes: usize,
    /// `Options::cache_size`.
    pub page_cache_limit: usize,
    /// Writes applied but not yet released after their commit, and their record bytes.
    pub memtable_records: usize,
    pub memtable_bytes: usize,
}

/// The MVCC storage engine. `Send + Sync`; share it behind an `Arc`.
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens the database file at `path`, creating it if missing.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Engine> {
        let path = path.as_ref();
        let storage = FileStorage::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked(path.to_path_buf()),
            _ => Error::Io(e),
        })?;
        #[cfg(feature = "failpoints")]
        {
            let mut storage: Arc<dyn Storage> = if crate::failpoint::power_loss_enabled() {
                Arc::new(crate::failpoint::VolatileStorage::new(storage))
            } else {
                Arc::new(storage)
            };
            if let Some(control) = crate::failpoint::eio_control() {
                storage = Arc::new(crate::failpoint::EioStorage::new(storage, control));
            }
            Engine::open_with_storage(storage, path, options)
        }
        #[cfg(not(feature = "failpoints"))]
        Engine::open_with_storage(Arc::new(storage), path, options)
    }

    /// Opens a database on any [`Storage`] (tests use `MemStorage`); `path` names it in errors.
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        path: impl AsRef<Path>,
        options: Options,
    ) -> Result<Engine> {
        let shared = Arc::new(Shared::open(storage, path.as_ref().to_path_buf(), options)?);
        let bg = shared.clone();
        let committer = std::thread::Builder::new()
            .name("engine-commit".into())
            .spawn(move || crate::commit::run_committer(bg))?;
        Ok(Engine { shared, committer: Some(committer) })
    }

    /// The store's revision: 1 for an empty store, then the main revision of the last write.
    pub fn current_revision(&self) -> i64 {
        self.shared.current_rev.load(Ordering::Acquire)
    }

    /// The highest compaction revision requested; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.shared.compact_rev.load(Ordering::Acquire)
    }

    /// The last Raft index applied (in memory).
    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index.load(Ordering::Acquire)
    }

    /// The last Raft index recorded by a completed commit.
    pub fn durable_applied_index(&self) -> u64 {
        self.shared.durable_applied.load(Ordering::Acquire)
    }

    /// Where the engine's memory goes (see [`MemoryUsage`]). Walks the key index under its
    /// read lock (about a millisecond per 100k keys): for metrics and reports, not per request.
    pub fn memory_usage(&self) -> MemoryUsage {
        let (index_bytes, latest_cache_bytes, keys) = {
            let index = self.shared.index.read();
            (index.heap_bytes(), index.cached_bytes(), index.len())
        };
        let (memtable_records, memtable_bytes) = {
            let mt = self.shared.memtable.read();
            (mt.len(), mt.values().map(|v| v.len()).sum())
        };
        MemoryUsage {
            keys,
            index_bytes,
            latest_cache_bytes,
            latest_cache_limit: self.shared.opts.latest_cache_size,
            page_cache_bytes: self.shared.store.cached_bytes(),
            page_cache_limit: self.shared.opts.cache_size,
            memtable_records,
            memtable_bytes,
        }
    }

    /// Reads a range at a revision (see [`RangeOptions`]).
    pub fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        self.shared.range(opts)
    }

    /// Begins the write transaction for Raft entry `raft_index` (waits for the writer lock).
    pub fn write(&self, raft_index: u64) -> WriteTxn<'_> {
        WriteTxn::begin(&self.shared, raft_index)
    }

    /// Changes with revision `>= start_revision` to keys in `[key, range_end)`, in revision
    /// order, at most about `limit` (0 = all; a revision's changes are never split).
    /// Returns the events and the next revision to ask for.
    pub fn changes(
        &self,
        start_revision: i64,
        key: &[u8],
        range_end: &[u8],
        prev_kv: bool,
        limit: usize,
    ) -> Result<(Vec<Event>, i64)> {
        self.shared.changes(start_revision, key, range_end, prev_kv, limit)
    }

    /// Compacts at `revision`: reads below it fail with `Compacted` from now on; the
    /// superseded versions are removed in the background, in bounded batches.
    pub fn compact(&self, revision: i64) -> Result<()> {
        self.shared.schedule_compaction(revision)
    }

    /// Blocks until the physical work of every compaction up to `revision` is done (returns
    /// at once if no such compaction was requested, or if the engine is poisoned).
    pub fn wait_compacted(&self, revision: i64) {
        self.shared.wait_compacted(revision)
    }

    /// A hash of every key version visible at `revision` (`<= 0`: current) and not
    /// compacted, with the compaction revision it was computed against. Members that applied
    /// the same writes and compactions agree on it, whatever their physical compaction progress.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        self.shared.hash_kv(revision)
    }

    /// Commits everything applied so far, durably, now.
    pub fn commit(&self) -> Result<()> {
        self.shared.commit_now()
    }

    /// A consistent point-in-time copy of the database, as a stream.
    pub fn snapshot(&self) -> Result<crate::snapshot::Snapshot> {
        crate::snapshot::Snapshot::new(&self.shared)
    }

    /// Writes a database file at `path` from a snapshot stream (verifying it); open it after.
    pub fn restore(path: impl AsRef<Path>, from: &mut dyn std::io::Read) -> Result<()> {
        crate::snapshot::restore(path.as_ref(), from)
    }

    /// A consistent view of every stored revision and side bucket, now.
    pub fn history(&self) -> Result<History> {
        History::new(&self.shared)
    }

    /// Starts loading a history into this engine, which must be empty (nothing ever written).
    /// `compact_revision` (0: none) is the compaction the history was taken after.
    pub fn bulk_load(&self, compact_revision: i64) -> Result<BulkLoad<'_>> {
        BulkLoad::new(&self.shared, compact_revision)
    }

    /// Shrinks the file by moving live pages from its tail into free pages, online: readers
    /// and writers keep going; only the background commit waits.
    pub fn defragment(&self) -> Result<()> {
        crate::defrag::defragment(&self.shared)
    }

    /// Length of the database file in bytes.
    pub fn size(&self) -> u64 {
        self.shared.store.storage().len().unwrap_or(0)
    }

    /// Bytes of the file holding live data (pages in use).
    pub fn size_in_use(&self) -> u64 {
        let cs = self.shared.commit.lock();
        let free = (cs.freelist.free_count() + cs.freelist.pending_count()) as u64;
        (cs.meta.page_count.saturating_sub(free)) * self.shared.store.page_size() as u64
    }

    /// A side-bucket value (committed or applied).
    pub fn meta_get(&self, bucket: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.metas.read().get(&codec::encode_meta_key(bucket, key)).cloned()
    }

    /// Every (key, value) of a side bucket, in key order.
    pub fn meta_scan(&self, bucket: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let prefix = codec::encode_meta_key(bucket, b"");
        let metas = self.shared.metas.read();
        metas
            .range::<[u8], _>((Bound::Included(&prefix[..]), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
            .collect()
    }

    /// Number of keys in the index (live or with history), for stats.
    pub fn key_count(&self) -> usize {
        self.shared.index.read().len()
    }

    /// Fails if an earlier background commit failed (the engine must then be reopened).
    pub fn check_health(&self) -> Result<()> {
        self.shared.check_poison()
    }

    /// Walks the committed trees and the freelist and checks that every page below the
    /// high-water mark is exactly one of: meta, tree, overflow, freelist, free. Reads every
    /// page (verifying checksums). Holds the commit lock meanwhile (writes continue).
    pub fn verify(&self) -> Result<()> {
        crate::check::verify(&self.shared)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_committer();
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        // The committer may have been mid-commit when told to stop: a last one, clean shutdown.
        if let Err(e) = self.shared.commit_now() {
            tracing::warn!(error = %e, "final commit at close failed");
        }
    }
}
