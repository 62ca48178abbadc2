//! Logbook's MVCC storage engine: the whole keyspace with its history, in one file of
//! fixed-size pages holding a copy-on-write B+tree, with etcd's revision semantics.
//!
//! Every write transaction gets the next main revision; each version of a key carries its
//! create revision, mod revision, version and lease; deletes leave tombstones; reads can be
//! made at any revision not yet compacted. Writes are applied in memory (visible to readers
//! at once) and made durable by batched background commits that also record the applied
//! Raft index, so a restarted server knows where to replay its WAL from. Readers never wait
//! for a commit and a commit never waits for a reader.
//!
//! # Layout
//!
//! - [`engine`]: [`Engine`], the public handle: a thin wrapper over the shared state.
//! - `shared`: that state (index, memtable, committed version, the committer's state, ...),
//!   who guards what, and opening it from the file.
//! - `read`: every read (ranges, the change feed, the hash), from the memtable and the tree.
//! - [`txn`]: [`WriteTxn`], one Raft entry's writes under one main revision.
//! - [`commit`]: turning applied writes into a durable tree version; the background committer.
//! - [`compaction`]: dropping history below a revision, in bounded batches.
//! - [`snapshot`]: streaming a point-in-time copy, restoring a file from one.
//! - [`defrag`]: online shrinking of the file.
//! - [`history`]: every stored revision at one point in time, and bulk-loading a history.
//! - [`key_index`]: the in-memory index, key -> revisions; [`key_map`]: its container, keys
//!   in order with their latest records packed in key order.
//! - [`btree`]: the copy-on-write B+tree.
//! - [`pager`]: verified, cached page reads and writes; [`freelist`]: free-page reuse.
//! - [`page`], [`meta`], [`codec`]: the on-disk formats (drawn in `docs/format.md`).
//! - [`io`]: the file I/O trait, and a fault-injecting in-memory implementation.
//! - [`revision`], [`kv`], [`options`], [`error`]: the vocabulary.
//!
//! # Example
//!
//! ```
//! use logbook_engine::{Engine, Options, RangeOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let engine = Engine::open(dir.path().join("db"), Options::default()).unwrap();
//! assert_eq!(engine.current_revision(), 1);
//!
//! let mut txn = engine.write(/* raft index */ 7);
//! txn.put(b"foo", b"bar", 0).unwrap();
//! assert_eq!(txn.commit(), 2);
//!
//! let r = engine.range(&RangeOptions::key("foo")).unwrap();
//! assert_eq!(r.kvs[0].value, b"bar");
//! assert_eq!((r.kvs[0].create_revision, r.kvs[0].version), (2, 1));
//!
//! engine.commit().unwrap(); // durable now (a background commit would do it soon anyway)
//! assert_eq!(engine.durable_applied_index(), 7);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

pub mod btree;
mod check;
pub mod codec;
pub mod commit;
pub mod compaction;
pub mod defrag;
pub mod engine;
pub mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
pub mod freelist;
pub mod history;
pub mod io;
pub mod key_index;
pub mod key_map;
pub mod kv;
pub mod meta;
pub mod options;
pub mod page;
pub mod pager;
mod read;
pub mod revision;
mod shared;
pub mod snapshot;
pub mod txn;

/// The seed of a randomized unit test: `ENGINE_TEST_SEED` when set (to replay a failure),
/// else a fresh one; printed so a failing run names it.
#[cfg(test)]
pub(crate) fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("ENGINE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test} seed {seed} (ENGINE_TEST_SEED={seed} replays it)");
    seed
}

pub use engine::{Engine, MemoryUsage};
pub use error::{Error, Result};
pub use io::{FileStorage, MemStorage, Storage};
pub use kv::{Event, EventKind, KeyValue, RangeOptions, RangeResult, prefix_end};
pub use options::Options;
pub use revision::Revision;
pub use snapshot::Snapshot;
pub use txn::WriteTxn;
