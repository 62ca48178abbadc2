//! Engine settings.

use std::time::Duration;

/// How the engine batches commits, sizes pages and paces compaction.
#[derive(Clone, Debug)]
pub struct Options {
    /// Longest time applied writes wait for a background commit (etcd's backend batch
    /// interval, 100 ms).
    pub commit_interval: Duration,
    /// A background commit starts early once this many writes are waiting (etcd's backend
    /// batch limit, 10 000).
    pub commit_max_writes: usize,
    /// Page size of a new file (1 KiB to 32 KiB, a power of two); an existing file keeps its own.
    pub page_size: usize,
    /// Bytes of pages kept in memory (checked copies; the OS page cache holds the file
    /// too). Reads at the current revision are served mostly from the latest cache, so
    /// pages are read mostly by commits (the right edge of the revision tree), compaction
    /// and reads of history: 32 MiB holds every inner page of a tree of a few GiB.
    pub cache_size: usize,
    /// Bytes of latest-version records kept in the key index, so reads at the current
    /// revision need no page (see `key_index.rs`). Once full, keys written later are read
    /// from the tree until cached records are released (by overwrites, deletes, compaction).
    ///
    /// Not free: every cached record is also in the db file, which the OS page cache keeps
    /// in memory as long as there is room. 32 MiB (it was 512 MiB) holds a 100k-key store
    /// of 256-byte values whole; at 1M keys of 512 bytes a cache of every value was half of
    /// the member's memory (docs/memory.md).
    pub latest_cache_size: usize,
    /// Records larger than this are never put in the latest cache.
    pub latest_cache_max_record: usize,
    /// Keys compacted per batch of the index pass (etcd's
    /// `--experimental-compaction-batch-limit`, 1000); the tree pass visits
    /// `compaction::TREE_BATCH_FACTOR` times as many revisions per batch.
    pub compaction_batch_limit: usize,
    /// Pause between compaction batches (etcd's compaction sleep interval, 10 ms).
    pub compaction_sleep_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            commit_interval: Duration::from_millis(100),
            commit_max_writes: 10_000,
            page_size: 4096,
            cache_size: 32 << 20,
            latest_cache_size: 32 << 20,
            latest_cache_max_record: 16 << 10,
            compaction_batch_limit: 1000,
            compaction_sleep_interval: Duration::from_millis(10),
        }
    }
}
