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
//! # Pipelining
//! A backend with [`CommitIo::depth`] above 1 (the direct one) takes a batch's write and
//! returns before it is durable, so the writer keeps up to `depth` batches in flight: while
//! the oldest is being written, the next is already submitted. Completions are consumed in
//! submission order and each batch is published (entries placed, hard state, tickets
//! completed) only once it and every batch before it are durable, so nothing is ever
//! acknowledged ahead of an earlier write. While it waits for a completion with room for
//! another batch, the writer also wakes when an appender queues one: it sets
//! [`Queue::waiting_io`], and the appender fires the backend's [`Kick`] instead of the
//! condition variable (the writer sleeps in `poll`, not on the condition variable). Before a
//! roll-over, every write in flight is completed first, so a new segment's first index and
//! preamble describe durable, published state.
//!
//! When the batch does not fit in the active segment, the writer rolls over first: the next
//! segment was already preallocated by [`Preallocator`], so rolling is a rename, a directory
//! fsync and a header written together with the batch.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

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
    /// The writer is waiting for a write to complete and has room for another batch: an
    /// appender that queues one fires the backend's [`Kick`] (see the module doc).
    pub(crate) waiting_io: bool,
    /// The kick for the current wait was fired already (one is enough).
    pub(crate) kicked: bool,
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
            waiting_io: false,
            kicked: false,
        }
    }

    /// Called by whoever just queued work, under the lock: how to tell the writer.
    pub(crate) fn wake_for_new_work(&mut self) -> WakeWriter {
        if !self.waiting_io {
            WakeWriter::Condvar
        } else if self.kicked {
            WakeWriter::Nothing
        } else {
            self.kicked = true;
            WakeWriter::Kick
        }
    }
}

/// How an appender tells the writer that work was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum WakeWriter {
    /// The writer (thread) may be asleep on `Shared::work`.
    Condvar,
    /// The writer waits for a completion in `poll`: fire the backend's [`Kick`].
    Kick,
    /// The writer was kicked already for this wait.
    Nothing,
}

/// An eventfd the writer `poll`s beside its io_uring while writes are in flight, so that an
/// appender can wake it to submit the next batch.
#[derive(Debug)]
pub(crate) struct Kick(OwnedFd);

impl Kick {
    pub(crate) fn new() -> io::Result<Kick> {
        // SAFETY: plain syscall with no pointers; a nonnegative result is a new descriptor we
        // own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Kick(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the writer's `poll` (an appender queued work).
    pub(crate) fn fire(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to a descriptor we own. It cannot fail
        // but for a counter overflow, impossible with ones added between reads.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Resets the counter after a wake-up (nonblocking).
    pub(crate) fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local from a descriptor we own.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&raw mut v).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Queue {
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

/// A batch written (or being written) and not yet published.
struct InFlight {
    batch: Batch,
    /// Where the batch's bytes start in the active segment.
    base: u64,
    /// The segment this batch started, to publish with it.
    rolled: Option<Segment>,
    /// The batch's last hard state.
    hs: Option<HardState>,
    submitted: Instant,
}

/// The writer's state: whoever holds it (the writer thread, or a caller committing in its
/// own thread, see [`crate::Wal::append_with_state_now`]) alone writes to segment files.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) io: Box<dyn CommitIo>,
    pub(crate) prealloc: Preallocator,
    pub(crate) active: Segment,
    /// Where the next frame goes in the active segment (after everything submitted).
    pub(crate) pos: u64,
    /// Hard state as of the end of what was submitted (for the preamble of the next
    /// segment, which is only started once everything submitted is durable).
    pub(crate) hs: HardState,
    preamble: Vec<u8>,
    wake_scratch: Vec<Wake>,
    /// Submitted, oldest first, not yet published; at most `io.depth()`.
    in_flight: VecDeque<InFlight>,
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
            in_flight: VecDeque::new(),
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

    /// Commits every queued batch, in order, and returns with nothing in flight; false once
    /// the log has failed (this call's failure is logged and poisons the log).
    pub(crate) fn drain(&mut self) -> bool {
        if self.failed {
            return false;
        }
        match self.drain_inner() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    segment = %self.active.path.display(),
                    "wal: write or fsync failed; the log is poisoned until reopened"
                );
                self.failed = true;
                {
                    let mut q = self.shared.queue.lock();
                    q.waiting_io = false;
                    q.kicked = false;
                }
                self.shared.durability.fail(&e);
                // Whatever was in flight is never published; the backend has finished with
                // its buffers before reporting the error.
                self.in_flight.clear();
                false
            }
        }
    }

    fn drain_inner(&mut self) -> io::Result<()> {
        let depth = self.io.depth().max(1);
        loop {
            while self.in_flight.len() < depth {
                let Some(batch) = self.shared.queue.lock().batches.pop_front() else { break };
                self.submit(batch)?;
                if depth == 1 {
                    // Durable on return: publish at once.
                    self.publish_oldest();
                }
            }
            if self.in_flight.is_empty() {
                return Ok(());
            }
            // With room for another batch, also wake for one queued meanwhile (a backend
            // without a kick completes without blocking: nothing to wake from).
            let room = self.in_flight.len() < depth && self.shared.kick.is_some();
            let done = if room {
                {
                    let mut q = self.shared.queue.lock();
                    if !q.batches.is_empty() {
                        continue; // queued meanwhile: submit it first
                    }
                    q.waiting_io = true;
                    q.kicked = false;
                }
                let r = self.io.complete(true);
                {
                    let mut q = self.shared.queue.lock();
                    q.waiting_io = false;
                    q.kicked = false;
                }
                r?
            } else {
                self.io.complete(false)?
            };
            assert!(done <= self.in_flight.len(), "backend completed more writes than it took");
            for _ in 0..done {
                self.publish_oldest();
            }
        }
    }

    /// Completes and publishes every write in flight.
    fn settle(&mut self) -> io::Result<()> {
        while !self.in_flight.is_empty() {
            let done = self.io.complete(false)?;
            assert!(done <= self.in_flight.len(), "backend completed more writes than it took");
            for _ in 0..done {
                self.publish_oldest();
            }
        }
        Ok(())
    }

    /// Hands one batch to the backend (for depth 1, durable on return).
    fn submit(&mut self, batch: Batch) -> io::Result<()> {
        let len = batch.bytes.len() as u64;
        let segment_size = self.shared.options.segment_size;
        let submitted = Instant::now();
        if !self.in_flight.is_empty() {
            self.shared.stats.overlapped.fetch_add(1, Ordering::Relaxed);
        }
        let rolled = if self.pos > PREAMBLE_LEN && self.pos + len > segment_size {
            // The new segment's first index and preamble come from published state.
            self.settle()?;
            let seg = self.roll()?;
            self.io.submit(&seg, &[&self.preamble, &batch.bytes], 0)?;
            self.active = seg.clone();
            self.pos = self.preamble.len() as u64;
            Some(seg)
        } else {
            self.io.submit(&self.active, &[&batch.bytes], self.pos)?;
            None
        };
        let base = self.pos;
        self.pos += len;
        let hs = batch.ops.iter().rev().find_map(|op| match op {
            Op::HardState(hs) => Some(*hs),
            _ => None,
        });
        if let Some(hs) = hs {
            self.hs = hs;
        }
        self.in_flight.push_back(InFlight { batch, base, rolled, hs, submitted });
        Ok(())
    }

    /// The oldest batch in flight is durable (and so is everything before it): places its
    /// entries, publishes its hard state and completes its tickets.
    fn publish_oldest(&mut self) {
        let InFlight { mut batch, base, rolled, hs, submitted } =
            self.in_flight.pop_front().expect("a batch in flight");
        let len = batch.bytes.len() as u64;
        let did_roll = rolled.is_some();
        let mut entries = 0u64;
        {
            let mut layout = self.shared.layout.write();
            if let Some(seg) = rolled {
                layout.segments.push_back(seg);
            }
            // Every batch in flight is in the active segment: a roll-over settles first.
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
                    Op::HardState(_) => {}
                }
            }
        }
        if let Some(hs) = hs {
            *self.shared.hard_state.lock() = hs;
        }
        let stats = &self.shared.stats;
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.entries.fetch_add(entries, Ordering::Relaxed);
        stats.bytes.fetch_add(len, Ordering::Relaxed);
        let took = submitted.elapsed();
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
        batch.bytes.clear();
        batch.ops.clear();
        self.shared.queue.lock().pool.push(batch);
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
