//! Raft: the thread that owns the `raft` crate's `RawNode`, and the ways
//! into it.
//!
//! - [`inbox`]: the Raft thread's queue and doorbell ([`inbox::NodeMsg`]).
//! - [`handle`]: what services call: propose, read index, transfer leadership.
//! - [`proposals`]: proposers waiting for their entries to apply.
//! - [`raft_loop`]: the ready loop: batch proposals, send to peers, persist
//!   to the WAL, apply through the state machine, answer waiters.
//! - [`reads`]: linearizable reads waiting for a read index.
//! - [`storage`]: the `raft::Storage` over the in-memory log tail, with
//!   snapshots taken from the engine.
//! - [`log`]: raft's slog output forwarded to tracing.
//!
//! May import `watch`, `peer`, `state` and the leaves; never `services`,
//! `http` or the member wiring.

pub mod handle;
pub mod inbox;
pub mod log;
pub mod proposals;
pub mod raft_loop;
pub mod reads;
pub mod storage;
