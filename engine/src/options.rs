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
    /// Bytes of pages kept in memory.
    pub cache_size: usize,
    /// Keys compacted per batch (etcd's `--experimental-compaction-batch-limit`, 1000).
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
            cache_size: 256 << 20,
            compaction_batch_limit: 1000,
            compaction_sleep_interval: Duration::from_millis(10),
        }
    }
}
