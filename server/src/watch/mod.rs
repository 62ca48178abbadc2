//! Watches: every watcher of this member and the dispatcher that feeds them
//! ([`hub`]), indexed by the keys they watch ([`watcher_index`]). The Raft
//! loop nudges the hub after it applies writes; the Watch service adds and
//! cancels watchers.
//!
//! May import `state` and the leaves.

pub mod hub;
mod watcher_index;
