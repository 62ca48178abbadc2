//! The clients waiting for their proposals to be applied: a waiter per
//! request ID, registered by the [`RaftHandle`](super::handle::RaftHandle)
//! before the proposal enters the inbox and answered by the Raft loop when
//! the entry carrying that ID is applied (or fails).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::state::apply::Applied;

/// What a waiter hears: what applying its request produced and the store's
/// revision after it.
pub type Outcome = Result<(Applied, i64)>;

/// Waiters by request ID, and the source of fresh IDs.
pub struct Proposals {
    waiters: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    next_id: AtomicU64,
}

impl Proposals {
    /// Request IDs: the member's low 16 ID bits, then a counter seeded from
    /// the clock so a restarted member does not reuse recent IDs.
    pub fn new(member_id: u64) -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let seed = ((member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8);
        Proposals { waiters: Mutex::new(HashMap::new()), next_id: AtomicU64::new(seed) }
    }

    /// A request ID no other request of this member has.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for request `id`.
    pub fn register(&self, id: u64) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        rx
    }

    /// Stops waiting for request `id` (it was never handed over, or timed out).
    pub fn forget(&self, id: u64) {
        self.waiters.lock().remove(&id);
    }

    /// Answers request `id`'s waiter, if it still waits.
    pub fn finish(&self, id: u64, result: Outcome) {
        if let Some(waiter) = self.waiters.lock().remove(&id) {
            let _ = waiter.send(result);
        }
    }

    /// Fails every waiter (the Raft loop stopped).
    pub fn fail_all(&self, err: impl Fn() -> Error) {
        for (_, w) in self.waiters.lock().drain() {
            let _ = w.send(Err(err()));
        }
    }

    /// How many requests wait (for metrics).
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
