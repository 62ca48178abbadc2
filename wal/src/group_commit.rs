//! Group commit: the submission queue appenders fill and the writer that drains it (the
//! writer thread, or an appender with nothing better to do, see
//! [`crate::Wal::append_with_state_now`]).
//!
//! Appenders encode their records straight into the open [`Batch`] at the back of the queue
//! (no per-record allocation: batches and their buffers are recycled) and notify the writer.
//! The writer owns the active segment and the [`CommitIo`] backend. Each round it takes the
//! front batch, which holds everything that arrived while the previous write + fsync ran, and
//! makes it durable with one write and one fdatasync, then publishes the new durable point and
//! wakes the waiters it covers. A batch is closed for new records once it holds
//! `max_batch_bytes`, bounding the size of one write.
//!
//! When the batch does not fit in the active segment, the writer rolls over first: the next
//! segment was already preallocated by [`Preallocator`], so rolling is a rename, a directory
//! fsync and a header written together with the batch.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::backend::CommitIo;
use crate::hard_state::HardState;
use crate::layout::Loc;
use crate::segment::{self, Preallocator, Segment};
use crate::ticket::Wake;
use crate::wal::Shared;

/// Bytes of a segment's header plus the hard-state frame after it.
pub(crate) const PREAMBLE_LEN: u64 =
    (crate::codec::SEGMENT_HEADER_LEN + crate::codec::FRAME_HEADER_LEN + 24) as u64;

/// One operation inside a batch, with where its frame is in the batch's bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Entry { index: u64, off: u32, len: u32 },
    Truncate(u64),
    Compact(u64),
    HardState(HardState),
}

/// A group commit (write and fdatasync) taking this long is logged, as etcd
/// logs a slow fdatasync.
const SLOW_SYNC: std::time::Duration = std::time::Duration::from_secs(1);

/// Encoded frames waiting to be written, and what they mean.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ops: Vec<Op>,
    /// Operation sequence number of the last call whose frames are in this batch.
    pub(crate) last_seq: u64,
}

/// The submission side, under `Shared::queue`. Also the logical state of the log: indexes
/// are assigned here, in submission order, which is the order the writer persists them in.
#[derive(Debug)]
pub(crate) struct Queue {
    /// First index callers may read.
    pub(crate) first: u64,
    /// Index the next appended record gets.
    pub(crate) next: u64,
    /// Last operation sequence number handed out.
    pub(crate) seq: u64,
    /// Sequence number of the last truncation or compaction (reads wait for it).
    pub(crate) rewrite_seq: u64,
    /// Lowest index rewritten by a truncation or compaction not yet durable (valid while
    /// `rewrite_seq` is not durable): below it, the writer's layout is already the truth.
    pub(crate) rewrite_floor: u64,
    pub(crate) batches: VecDeque<Batch>,
    /// Empty batches to reuse.
    pub(crate) pool: Vec<Batch>,
    pub(crate) max_batch_bytes: usize,
    /// Set by `Wal::drop`: the writer finishes the queue and exits.
    pub(crate) shutdown: bool,
}

impl Queue {
    pub(crate) fn new(first: u64, next: u64, max_batch_bytes: usize) -> Self {
        Queue {
            first,
            next,
            seq: 0,
            rewrite_seq: 0,
            rewrite_floor: u64::MAX,
            batches: VecDeque::new(),
            pool: Vec::new(),
            max_batch_bytes,
            shutdown: false,
        }
    }

    /// The batch to put `bytes` more bytes into: the open one at the back unless that would
    /// push it past `max_batch_bytes`.
    pub(crate) fn batch_for(&mut self, bytes: usize) -> &mut Batch {
        let open = match self.batches.back() {
            Some(b) => b.bytes.is_empty() || b.bytes.len() + bytes <= self.max_batch_bytes,
            None => false,
        };
        if !open {
            let b = self.pool.pop().unwrap_or_default();
            self.batches.push_back(b);
        }
        self.batches.back_mut().expect("just ensured")
    }
}

/// The writer's state: whoever holds it (the writer thread, or a caller committing in its
/// own thread, see [`crate::Wal::append_with_state_now`]) alone writes to segment files.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) io: Box<dyn CommitIo>,
    pub(crate) prealloc: Preallocator,
    pub(crate) active: Segment,
    /// Where the next frame goes in the active segment.
    pub(crate) pos: u64,
    /// Hard state as of the end of what was written (for the preamble of the next segment).
    pub(crate) hs: HardState,
    preamble: Vec<u8>,
    wake_scratch: Vec<Wake>,
    /// A commit failed: the log is poisoned and nothing more is written.
    failed: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        io: Box<dyn CommitIo>,
        mut prealloc: Preallocator,
        active: Segment,
        pos: u64,
        hs: HardState,
    ) -> Self {
        prealloc.request(active.seq + 1);
        Writer {
            shared,
            io,
            prealloc,
            active,
            pos,
            hs,
            preamble: Vec::new(),
            wake_scratch: Vec::new(),
            failed: false,
        }
    }

    /// The writer thread's body: whenever batches are queued, takes the writer (from a
    /// caller committing in its own thread, if one is) and commits them, until shutdown or
    /// the first failure.
    pub(crate) fn run(shared: Arc<Shared>, core: Arc<Mutex<Writer>>) {
        loop {
            {
                let mut q = shared.queue.lock();
                while q.batches.is_empty() {
                    if q.shutdown {
                        return;
                    }
                    shared.work.wait(&mut q);
                }
            }
            if !core.lock().drain() {
                return;
            }
        }
    }

    /// Commits every queued batch, in order; false once the log has failed (this call's
    /// failure is logged and poisons the log).
    pub(crate) fn drain(&mut self) -> bool {
        if self.failed {
            return false;
        }
        loop {
            let Some(batch) = self.shared.queue.lock().batches.pop_front() else {
                return true;
            };
            if let Err(e) = self.commit(&batch) {
                tracing::error!(
                    error = %e,
                    segment = %self.active.path.display(),
                    "wal: write or fsync failed; the log is poisoned until reopened"
                );
                self.failed = true;
                self.shared.durability.fail(&e);
                return false;
            }
            let mut batch = batch;
            batch.bytes.clear();
            batch.ops.clear();
            self.shared.queue.lock().pool.push(batch);
        }
    }

    /// Makes one batch durable and publishes it.
    fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        let len = batch.bytes.len() as u64;
        let segment_size = self.shared.options.segment_size;
        let started = std::time::Instant::now();
        let rolled = if self.pos > PREAMBLE_LEN && self.pos + len > segment_size {
            let seg = self.roll()?;
            self.io.write_and_sync(&seg, &[&self.preamble, &batch.bytes], 0)?;
            self.active = seg.clone();
            self.pos = self.preamble.len() as u64;
            Some(seg)
        } else {
            self.io.write_and_sync(&self.active, &[&batch.bytes], self.pos)?;
            None
        };
        let base = self.pos;
        self.pos += len;
        let did_roll = rolled.is_some();

        let mut hs_changed = false;
        let mut entries = 0u64;
        {
            let mut layout = self.shared.layout.write();
            if let Some(seg) = rolled {
                layout.segments.push_back(seg);
            }
            let seq = self.active.seq;
            for op in &batch.ops {
                match *op {
                    Op::Entry { index, off, len } => {
                        layout
                            .index
                            .push(index, Loc::new(seq, base + u64::from(off), len as usize));
                        entries += 1;
                    }
                    Op::Truncate(index) => layout.index.truncate(index),
                    Op::Compact(index) => {
                        if index >= layout.index.next() {
                            layout.index.reset(index);
                        }
                    }
                    Op::HardState(hs) => {
                        self.hs = hs;
                        hs_changed = true;
                    }
                }
            }
        }
        if hs_changed {
            *self.shared.hard_state.lock() = self.hs;
        }
        let stats = &self.shared.stats;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.entries.fetch_add(entries, Ordering::Relaxed);
        stats.bytes.fetch_add(len, Ordering::Relaxed);
        let took = started.elapsed();
        stats.observe_commit(took, entries);
        if took >= SLOW_SYNC {
            // etcd's "slow fdatasync" warning, at its threshold: the disk is
            // this member's bottleneck.
            tracing::warn!(
                took = ?took,
                expected_duration = ?SLOW_SYNC,
                entries,
                bytes = len,
                rolled = did_roll,
                "wal: slow fdatasync"
            );
        }
        self.shared.durability.complete(batch.last_seq, &mut self.wake_scratch);
        Ok(())
    }

    /// Puts the preallocated next segment in place and fills `self.preamble` with its header.
    /// The caller writes preamble and batch together.
    fn roll(&mut self) -> io::Result<Segment> {
        let seq = self.active.seq + 1;
        let spare = self.prealloc.take(seq)?;
        let first_index = self.shared.layout.read().index.next();
        let seg = segment::activate(&*self.shared.storage, &self.shared.dir, spare, first_index)?;
        self.preamble.clear();
        segment::preamble(seq, first_index, self.hs, &mut self.preamble);
        debug_assert_eq!(self.preamble.len() as u64, PREAMBLE_LEN);
        self.prealloc.request(seq + 1);
        self.shared.stats.segments_rolled.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(segment = %seg.path.display(), "wal: rolled over to a new segment");
        Ok(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_close_at_max_bytes_and_are_reused() {
        let mut q = Queue::new(1, 1, 100);
        q.batch_for(60).bytes.extend_from_slice(&[0; 60]);
        q.batch_for(40).bytes.extend_from_slice(&[0; 40]);
        assert_eq!(q.batches.len(), 1, "fits exactly");
        q.batch_for(1).bytes.push(0);
        assert_eq!(q.batches.len(), 2, "over the bound opens a new batch");
        // An oversize call still goes in (alone).
        q.batch_for(500).bytes.extend_from_slice(&[0; 500]);
        assert_eq!(q.batches.len(), 3);
        let mut b = q.batches.pop_front().unwrap();
        b.bytes.clear();
        let cap = b.bytes.capacity();
        q.pool.push(b);
        q.batches.clear();
        assert_eq!(q.batch_for(1).bytes.capacity(), cap, "buffer recycled");
    }

    #[test]
    fn preamble_len_matches_encoding() {
        let mut v = Vec::new();
        segment::preamble(1, 1, HardState::default(), &mut v);
        assert_eq!(v.len() as u64, PREAMBLE_LEN);
    }
}
