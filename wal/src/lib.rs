//! Logbook's write-ahead log: a segmented, CRC32C-framed log of opaque records with
//! consecutive indexes and a Raft-style hard state, made durable by group commit on io_uring
//! (or `pwrite` + `fdatasync` where io_uring is unavailable).
//!
//! It is the durability of every quorum write, so its latency is the product's latency: one
//! writer thread turns everything appended while the previous fsync ran into one write and one
//! fdatasync, and an appender with nothing else to do can commit in its own thread instead
//! when no commit is in progress ([`Wal::append_with_state_now`]), skipping the hand-off to
//! the writer and back. It knows nothing of Raft or gRPC; the server uses it as the Raft log,
//! with the backend its `--wal-backend` names (by default [`Backend::Auto`], measured at open).
//!
//! # Layout
//! - [`wal`](crate::Wal): the public API: open, append, truncate, compact, read.
//! - `group_commit`: the submission queue and the writer thread.
//! - [`backend`](crate::Backend), `uring` and `direct`: how a batch is made durable
//!   ([`Backend::Sync`]: `pwrite` + `fdatasync`; [`Backend::IoUring`]: linked write +
//!   fdatasync; [`Backend::IoUringDirect`]: one aligned `O_DIRECT` write with `RWF_DSYNC`),
//!   behind one trait.
//! - [`probe`]: [`Backend::Auto`]'s choice by measurement, and what the device advertises.
//! - [`ticket`](crate::Ticket): durability completions, blocking or `.await`.
//! - [`codec`]: every persisted byte: record frames and segment headers (see also
//!   `docs/format.md`).
//! - `segment`: segment naming, creation, background preallocation.
//! - `layout`: the in-memory index from entry index to file position.
//! - `recovery`: replay at open, torn-tail repair, corruption detection.
//! - [`io`]: the file-system seam ([`io::Storage`]); [`sim`] is its fault-injecting,
//!   power-losing test implementation. (The io_uring backends need real descriptors: their
//!   power losses are tested on a FUSE disk model the tests serve, `tests/fuse_disk`.)
//! - [`error`](crate::Error): the crate's error type.
//!
//! # Example
//! ```
//! use logbook_wal::{HardState, Options, Wal};
//!
//! let dir = tempfile::tempdir()?;
//! let wal = Wal::open(dir.path(), Options { segment_size: 1 << 20, ..Options::default() })?;
//! let ticket = wal.append_with_state(&[b"first", b"second"], Some(HardState { term: 1, vote: 1, commit: 0 }))?;
//! assert_eq!(ticket.first_index(), 1);
//! ticket.wait()?; // durable now
//! assert_eq!(wal.read(1, 3)?, vec![b"first".to_vec(), b"second".to_vec()]);
//! wal.truncate_suffix(2)?.wait()?; // a new leader overwrote index 2
//! assert_eq!(wal.last_index(), 1);
//! drop(wal);
//! let wal = Wal::open(dir.path(), Options { segment_size: 1 << 20, ..Options::default() })?;
//! assert_eq!(wal.last_index(), 1);
//! assert_eq!(wal.hard_state().term, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod backend;
pub mod codec;
mod direct;
mod error;
#[cfg(feature = "failpoints")]
pub mod failpoint;
mod group_commit;
mod hard_state;
pub mod io;
mod layout;
pub mod probe;
mod recovery;
mod segment;
pub mod sim;
mod ticket;
mod uring;
mod wal;

pub use backend::Backend;
pub use error::{Error, Result};
pub use hard_state::HardState;
pub use ticket::Ticket;
pub use wal::{
    MAX_CALL_BYTES, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, Options, RECORDS_BUCKETS, SYNC_BUCKETS,
    Stats, Wal,
};
