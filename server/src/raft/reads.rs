//! Linearizable reads waiting on Raft: queued until the next turn asks
//! for one read index covering all of them, then held until this member
//! has applied up to that index.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Clients waiting to serve a linearizable read.
pub(super) type ReadWaiters = Vec<oneshot::Sender<Result<()>>>;

/// Linearizable reads waiting on Raft.
#[derive(Default)]
pub(super) struct ReadQueue {
    /// Not yet handed to Raft.
    pub(super) pending: ReadWaiters,
    /// Handed to Raft under a context, waiting for its read index.
    pub(super) asked: HashMap<u64, (Instant, ReadWaiters)>,
    /// Read index known, waiting for this member to apply up to it.
    pub(super) confirmed: Vec<(u64, ReadWaiters)>,
    pub(super) next_ctx: u64,
}

impl ReadQueue {
    pub(super) fn fail_asked(&mut self, err: impl Fn() -> Error) {
        for (_, (_, senders)) in self.asked.drain() {
            for s in senders {
                let _ = s.send(Err(err()));
            }
        }
    }

    pub(super) fn release(&mut self, applied: u64) {
        self.confirmed.retain_mut(|(index, senders)| {
            if *index <= applied {
                for s in senders.drain(..) {
                    let _ = s.send(Ok(()));
                }
                false
            } else {
                true
            }
        });
    }
}
