//! The direct [`CommitIo`]: each batch is one block-aligned write on an `O_DIRECT` descriptor
//! with `RWF_DSYNC`, submitted through io_uring. The write is durable when it completes: on a
//! device that advertises FUA the kernel sends it as a FUA write, with no cache flush; on one
//! without FUA the kernel follows it with a flush. No separate fdatasync is issued, and since
//! the segments are zero-filled when prepared (written extents, not `fallocate`d unwritten
//! ones) such a write changes no file metadata.
//!
//! `O_DIRECT` wants the offset, the length and the buffer's address aligned to the device's
//! block size. The log's frames are not, so each batch is written as whole [`ALIGN`]-byte
//! blocks: the already-written head of the first block (kept from the previous batch, or read
//! back from the file after open), the batch, then zeros to the end of the last block. The
//! file therefore holds exactly the bytes the other backends write: the zeros past the end are
//! what a preallocated segment holds anyway, and the rewritten head bytes are the ones already
//! there.
//!
//! # Pipelining
//! The backend keeps up to [`PIPELINE_DEPTH`] batches in flight (see `group_commit`): the
//! writer hands it the next batch while the previous write is still running, and it reports
//! completions oldest first. Each write is its own aligned buffer from a small pool, so the
//! batch's bytes are copied at submission and the writer recycles the batch at once.
//!
//! Every write is submitted with `IOSQE_IO_DRAIN`: the kernel starts it only once every write
//! submitted before it has completed, and for an `O_DIRECT` + `RWF_DSYNC` write "completed"
//! means durable. The next batch is therefore already in the kernel, ready to go, the moment
//! the previous one is durable (no trip back to user space and no further system call between
//! them), while on the disk the writes still land one after another, in log order. That order
//! is what keeps the crash model below true with several batches in flight:
//! - the log on disk is always the acknowledged prefix, then a durable prefix of the batches
//!   in flight, then at most one of them torn: never a later batch without an earlier one;
//! - two batches in flight may share a 4 KiB block (one ends inside it, the next starts
//!   there, and rewrites it with the earlier batch's head bytes taken from this backend's copy
//!   of that block). Because the second write starts only after the first completed, the
//!   block never ends up with the first write's copy (zeros where the second batch's bytes
//!   go) on top of the second one's.
//!
//! Letting the writes run on the device at the same time would overlap their latencies too,
//! but then a crash could leave a later batch durable behind a lost earlier one, which the
//! recovery rules (rightly, for acknowledged data) report as corruption; it would need a
//! format that marks which batches were in flight together. Not done.
//!
//! A failed write poisons the log (the writer stops); the writes after it were drained by the
//! kernel and may have landed, so the disk can then hold a batch after a failed one, which
//! open reports as corruption rather than guessing (the device failed a write: an operator
//! looks at it). A short write (not expected on a zero-filled, preallocated segment) waits for
//! the writes after it, then writes its missing bytes through the page cache and fdatasyncs,
//! before anything is acknowledged.
//!
//! # Crash model
//! A write that completed is durable (FUA, or write + flush); the writer acknowledges a batch
//! only after its write and every earlier one completed, and the writes reach the disk in log
//! order (above), so the log on disk is always the acknowledged prefix plus a prefix of the
//! batches in flight, the first one missing possibly torn at any sector.
//! The block rewritten at the start of a batch holds bytes of earlier batches, written again
//! with the same values: a sector of it that is torn or lost keeps its old contents, which are
//! the same bytes. Recovery's torn-tail rules (see `docs/format.md`) are therefore the same as
//! for the buffered backends, whose page-cache write-back rewrites the tail page the same way.
//!
//! Without file descriptors (simulated storage) the same aligned blocks are written with
//! `write_at` at submission and made durable with `sync_data` when completed, oldest first,
//! with the same pipeline depth, so the power-loss tests exercise this backend's buffers and
//! the writer's pipeline (a simulated power loss keeps a prefix of each file's unsynced
//! writes, in issue order, as the ordered writes above do). On real descriptors the same
//! power losses are tested in `tests/fuse_power_loss.rs`: the backend opens `O_DIRECT` and
//! writes with `RWF_DSYNC` through io_uring onto a FUSE file system the test serves, which
//! keeps every write volatile until synced (an `RWF_DSYNC` write arrives marked `O_DSYNC`) and
//! loses power at seeded points.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use crate::backend::{Backend, CommitIo};
use crate::group_commit::Kick;
use crate::io::{SegmentFile, read_full_at, write_all_at};
use crate::segment::Segment;

/// Block size every direct write is aligned to (offset, length and memory). 4 KiB covers
/// devices with 512-byte and 4 KiB logical blocks.
pub(crate) const ALIGN: usize = 4096;

/// Batches in flight at most. With the writes ordered on the disk (see the module doc), one
/// running and one queued behind it is all the overlap there is to gain; a deeper pipeline
/// would only split what arrives meanwhile into more, smaller writes.
pub(crate) const PIPELINE_DEPTH: usize = 2;

/// How long writes in flight may take to complete once the backend gave up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Longest sleep in `poll` between checks of the completion queue (a safety net: the ring's
/// descriptor becomes readable when a completion is posted).
const POLL_MS: i32 = 100;

/// A heap buffer whose address and capacity are multiples of [`ALIGN`], as `O_DIRECT` needs.
struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Bytes allocated (a multiple of `ALIGN`, at least `ALIGN`).
    cap: usize,
}

// SAFETY: the buffer is plain owned memory, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(cap: usize) -> Self {
        let cap = cap.max(ALIGN).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(cap, ALIGN).expect("valid layout");
        // SAFETY: `layout` has a nonzero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap }
    }

    /// Makes room for `len` bytes (contents are not kept).
    fn reserve(&mut self, len: usize) {
        if len > self.cap {
            *self = AlignedBuf::new(len.max(self.cap * 2));
        }
    }

    /// The first `len` bytes (`len <= cap`).
    fn slice_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.cap);
        // SAFETY: `ptr` points to `cap >= len` initialized (zeroed at allocation) bytes that
        // this struct owns exclusively; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), len) }
    }

    /// The first `len` bytes, read-only.
    fn slice(&self, len: usize) -> &[u8] {
        assert!(len <= self.cap);
        // SAFETY: as in `slice_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this very layout, and not freed since.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// One batch's write, from submission until the writer has counted it complete.
struct Write {
    /// Handed to the kernel (ring mode) until `result` is set: never touched, moved only
    /// (the heap memory it points to does not move).
    buf: AlignedBuf,
    /// Bytes written from `buf` (whole blocks).
    len: usize,
    /// Bytes of `buf` that are log bytes (earlier head + batch); zeros after.
    data_end: usize,
    /// File offset of `buf[0]`.
    start: u64,
    /// The segment, for the short-write fallback and (simulated) the write itself.
    file: Arc<dyn SegmentFile>,
    /// The `O_DIRECT` descriptor the kernel writes through, kept open while in flight.
    fd: Option<Arc<File>>,
    /// `user_data` of its submission.
    id: u64,
    /// The completion's result (bytes written or `-errno`), once reaped.
    result: Option<i32>,
}

/// The `O_DIRECT` backend.
pub(crate) struct DirectIo {
    /// `None` for simulated storage.
    ring: Option<IoUring>,
    kick: Option<Arc<Kick>>,
    /// The `O_DIRECT` descriptor of the segment written last, by sequence number.
    fd: Option<(u64, Arc<File>)>,
    /// Submitted, oldest first.
    in_flight: VecDeque<Write>,
    /// Buffers of completed writes, for reuse.
    spare: Vec<AlignedBuf>,
    next_id: u64,
    /// The last block submitted: segment and offset of the block; its bytes are
    /// `tail_block`. The next batch usually starts inside it.
    tail: Option<(u64, u64)>,
    tail_block: Vec<u8>,
    /// Set after the ring failed: nothing more is submitted.
    broken: bool,
}

/// Opens `path` for writing with `O_DIRECT`.
fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)
}

impl DirectIo {
    /// The backend for the log in `dir`: fails if io_uring is refused or the file system in
    /// `dir` does not take `O_DIRECT` writes (checked with one aligned write to a scratch file).
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        let ring = IoUring::new(8)?;
        check_direct(dir)?;
        let mut d = Self::with_ring(Some(ring));
        d.kick = Some(Arc::new(Kick::new()?));
        Ok(d)
    }

    /// For storage without file descriptors: the same aligned blocks, through `write_at` +
    /// `sync_data`.
    pub(crate) fn simulated() -> Self {
        Self::with_ring(None)
    }

    fn with_ring(ring: Option<IoUring>) -> Self {
        DirectIo {
            ring,
            kick: None,
            fd: None,
            in_flight: VecDeque::new(),
            spare: Vec::new(),
            next_id: 0,
            tail: None,
            tail_block: vec![0; ALIGN],
            broken: false,
        }
    }

    /// The `O_DIRECT` descriptor of `seg`, opened on first use.
    fn fd_for(&mut self, seg: &Segment) -> io::Result<Arc<File>> {
        if self.fd.as_ref().is_none_or(|(seq, _)| *seq != seg.seq) {
            self.fd = None;
            self.fd = Some((seg.seq, Arc::new(open_direct(&seg.path)?)));
        }
        Ok(self.fd.as_ref().expect("just opened").1.clone())
    }

    /// Builds the aligned write of `bufs` at `offset`: the head of the first block (this
    /// backend's copy of the last block submitted, or read back from the file after open),
    /// the batch, zeros to the end of the last block. Remembers the last block.
    fn fill(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<Write> {
        let align = ALIGN as u64;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let start = offset / align * align;
        let end = (offset + total as u64).next_multiple_of(align);
        let len = (end - start) as usize;
        let head = (offset - start) as usize;
        let mut wbuf = self.spare.pop().unwrap_or_else(|| AlignedBuf::new(64 << 10));
        wbuf.reserve(len);
        let known = self.tail == Some((seg.seq, start));
        let buf = wbuf.slice_mut(len);
        if head > 0 {
            if known {
                buf[..head].copy_from_slice(&self.tail_block[..head]);
            } else {
                let got = read_full_at(&*seg.file, &mut buf[..head], start)?;
                buf[got..head].fill(0);
            }
        }
        let mut at = head;
        for b in bufs {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        buf[at..].fill(0);
        let last = len - ALIGN;
        self.tail_block.copy_from_slice(&buf[last..]);
        self.tail = Some((seg.seq, start + last as u64));
        self.next_id += 1;
        Ok(Write {
            buf: wbuf,
            len,
            data_end: at,
            start,
            file: seg.file.clone(),
            fd: None,
            id: self.next_id,
            result: None,
        })
    }

    /// Moves every posted completion into its write.
    fn reap(&mut self) {
        let Some(ring) = self.ring.as_mut() else { return };
        for cqe in ring.completion() {
            let id = cqe.user_data();
            let w = self
                .in_flight
                .iter_mut()
                .find(|w| w.id == id)
                .unwrap_or_else(|| panic!("io_uring completion {id} for no write in flight"));
            w.result = Some(cqe.result());
        }
    }

    fn all_reaped(&self) -> bool {
        self.in_flight.iter().all(|w| w.result.is_some())
    }

    /// Waits (blocking) until every write in flight has completed.
    fn wait_all(&mut self) -> io::Result<()> {
        loop {
            self.reap();
            if self.all_reaped() {
                return Ok(());
            }
            let ring = self.ring.as_mut().expect("writes without results only in ring mode");
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
        }
    }

    /// After an error: waits for the kernel to finish every write in flight without entering
    /// the ring again (completions are posted as this thread sleeps), then forgets them. If
    /// the kernel keeps a buffer past [`DRAIN_LIMIT`], aborts the process: freeing memory the
    /// kernel still writes from is not an option.
    fn abandon(&mut self) {
        self.broken = true;
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            self.reap();
            if self.all_reaped() {
                break;
            }
            if Instant::now() > deadline {
                tracing::error!(
                    "wal: an O_DIRECT write never completed after an io_uring failure; aborting"
                );
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for w in self.in_flight.drain(..) {
            self.spare.push(w.buf);
        }
    }

    /// Sleeps until a completion may be posted or (with `or_kick`) an appender kicks;
    /// returns whether the kick fired.
    fn sleep(&mut self, or_kick: bool) -> io::Result<bool> {
        let ring = self.ring.as_mut().expect("ring mode");
        match (&self.kick, or_kick) {
            (Some(kick), true) => {
                let mut fds = [
                    libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                    libc::pollfd { fd: kick.raw_fd(), events: libc::POLLIN, revents: 0 },
                ];
                // SAFETY: `fds` is a live, exclusively borrowed array of two pollfds for the
                // whole (synchronous) call; both descriptors are owned by `self`.
                let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    return if transient(&e) { Ok(false) } else { Err(e) };
                }
                if fds[1].revents != 0 {
                    kick.clear();
                    return Ok(true);
                }
                Ok(false)
            }
            _ => match ring.submit_and_wait(1) {
                Ok(_) => Ok(false),
                Err(e) if transient(&e) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }
}

/// Errors of `io_uring_enter` and `poll` that mean "try again".
fn transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY))
}

impl Drop for DirectIo {
    fn drop(&mut self) {
        if !self.all_reaped() {
            self.abandon();
        }
    }
}

/// One aligned `O_DIRECT` write to a scratch file in `dir`, removed afterwards.
pub(crate) fn check_direct(dir: &Path) -> io::Result<()> {
    let path: PathBuf = dir.join("direct-check.wal.tmp");
    let r = (|| {
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        let f = open_direct(&path)?;
        let mut buf = AlignedBuf::new(ALIGN);
        f.write_all_at(buf.slice_mut(ALIGN), 0)
    })();
    let _ = std::fs::remove_file(&path);
    r.map_err(|e| io::Error::new(e.kind(), format!("O_DIRECT write in {}: {e}", dir.display())))
}

impl CommitIo for DirectIo {
    fn write_and_sync(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.submit(seg, bufs, offset)?;
        while !self.in_flight.is_empty() {
            self.complete(false)?;
        }
        Ok(())
    }

    fn depth(&self) -> usize {
        PIPELINE_DEPTH
    }

    fn submit(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the direct WAL backend failed earlier"));
        }
        let mut w = self.fill(seg, bufs, offset)?;
        if self.ring.is_none() {
            // Simulated: written now, durable when completed.
            let r = write_all_at(&*w.file, w.buf.slice(w.len), w.start);
            if let Err(e) = r {
                self.spare.push(w.buf);
                return Err(e);
            }
            w.result = Some(w.len as i32);
            self.in_flight.push_back(w);
            return Ok(());
        }
        if w.len > i32::MAX as usize {
            self.spare.push(w.buf);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "batch too large"));
        }
        let fd = match self.fd_for(seg) {
            Ok(fd) => fd,
            Err(e) => {
                self.spare.push(w.buf);
                return Err(e);
            }
        };
        let e = opcode::Write::new(
            types::Fd(fd.as_raw_fd()),
            w.buf.slice_mut(w.len).as_mut_ptr(),
            w.len as u32,
        )
        .offset(w.start)
        .rw_flags(libc::RWF_DSYNC)
        .build()
        .flags(squeue::Flags::IO_DRAIN)
        .user_data(w.id);
        w.fd = Some(fd);
        let ring = self.ring.as_mut().expect("ring mode");
        // SAFETY: the buffer is owned by `w`, which goes into `self.in_flight` below and stays
        // there, its memory neither freed nor reused, until this entry's completion is reaped
        // (`reap`) or the kernel is known done with it (`abandon`, which `Drop` also runs);
        // the descriptor is kept open by `w.fd` as long.
        if unsafe { ring.submission().push(&e) }.is_err() {
            self.spare.push(w.buf);
            return Err(io::Error::other("io_uring submission queue full"));
        }
        self.in_flight.push_back(w);
        loop {
            match ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if transient(&e) => {
                    if ring.submission().is_empty() {
                        return Ok(()); // consumed after all
                    }
                }
                Err(e) => {
                    if !ring.submission().is_empty() {
                        // Never consumed: not in flight. (Nothing enters this ring again.)
                        self.in_flight.pop_back();
                    }
                    self.abandon();
                    return Err(e);
                }
            }
        }
    }

    fn complete(&mut self, or_kick: bool) -> io::Result<usize> {
        assert!(!self.in_flight.is_empty(), "complete() with nothing in flight");
        loop {
            self.reap();
            let mut n = 0;
            while let Some(front) = self.in_flight.front() {
                let Some(r) = front.result else { break };
                if r < 0 {
                    self.abandon();
                    return Err(io::Error::from_raw_os_error(-r));
                }
                if self.ring.is_none() {
                    if let Err(e) = front.file.sync_data() {
                        self.abandon();
                        return Err(e);
                    }
                } else if r == 0 {
                    self.abandon();
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
                } else if (r as usize) < front.len {
                    // A short direct write (rare): let the later writes finish, then write
                    // what is missing through the page cache, durably. Only log bytes: the
                    // zeros after them may be a later batch's bytes by now.
                    self.wait_all()?;
                    let front = self.in_flight.front().expect("still there");
                    let done = r as usize;
                    if done < front.data_end {
                        let rest = &front.buf.slice(front.data_end)[done..];
                        let at = front.start + done as u64;
                        if let Err(e) = write_all_at(&*front.file, rest, at)
                            .and_then(|()| front.file.sync_data())
                        {
                            self.abandon();
                            return Err(e);
                        }
                    }
                }
                let w = self.in_flight.pop_front().expect("front exists");
                self.spare.push(w.buf);
                n += 1;
            }
            if n > 0 {
                return Ok(n);
            }
            match self.sleep(or_kick) {
                Ok(true) => {
                    self.reap();
                    // Count what completed meanwhile on the next turn; report the kick now.
                    if self.in_flight.front().is_none_or(|w| w.result.is_none()) {
                        return Ok(0);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    self.abandon();
                    return Err(e);
                }
            }
        }
    }

    fn kick(&self) -> Option<Arc<Kick>> {
        self.kick.clone()
    }

    fn name(&self) -> &'static str {
        if self.ring.is_some() {
            "io_uring O_DIRECT (write with RWF_DSYNC, pipelined)"
        } else {
            "direct, simulated (aligned write + sync, pipelined)"
        }
    }

    fn backend(&self) -> Backend {
        Backend::IoUringDirect
    }

    fn zero_filled_segments(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{OsStorage, Storage};
    use crate::sim::SimStorage;
    use std::sync::Arc;

    /// Batches of every size relative to a block, written back to back; with `pipelined`,
    /// up to [`PIPELINE_DEPTH`] in flight (so consecutive writes in flight share their tail
    /// block), completed in order. The file must hold exactly the bytes written.
    fn roundtrip(storage: Arc<dyn Storage>, dir: &Path, mut io: DirectIo, pipelined: bool) {
        let path = dir.join("seg");
        let file = storage.open(&path, true).unwrap();
        file.allocate(256 << 10).unwrap();
        let seg = Segment { seq: 3, path, file: file.clone() };
        let mut want = vec![0u8; 256 << 10];
        let mut pos = 0usize;
        let mut x = 1u32;
        let mut completed = 0usize;
        let mut submitted = 0usize;
        for round in 0..40 {
            let n = [1, 7, 100, 4095, 4096, 4097, 9000][round % 7];
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8 | 1
                })
                .collect();
            if round == 20 {
                // As after a reopen: the head block must be read back from the file.
                while !io.in_flight.is_empty() {
                    completed += io.complete(false).unwrap();
                }
                io.tail = None;
            }
            if pipelined {
                while io.in_flight.len() >= io.depth() {
                    completed += io.complete(false).unwrap();
                }
                io.submit(&seg, &[&data[..n / 2], &data[n / 2..]], pos as u64).unwrap();
                submitted += 1;
            } else {
                io.write_and_sync(&seg, &[&data[..n / 2], &data[n / 2..]], pos as u64).unwrap();
            }
            want[pos..pos + n].copy_from_slice(&data);
            pos += n;
        }
        while !io.in_flight.is_empty() {
            completed += io.complete(false).unwrap();
        }
        assert_eq!(completed, submitted, "every write counted once");
        let mut got = vec![0u8; want.len()];
        read_full_at(&*file, &mut got, 0).unwrap();
        assert!(got == want, "contents differ");
    }

    #[test]
    fn aligned_writes_keep_every_byte_simulated() {
        roundtrip(Arc::new(SimStorage::new()), Path::new("/d"), DirectIo::simulated(), false);
        roundtrip(Arc::new(SimStorage::new()), Path::new("/d"), DirectIo::simulated(), true);
    }

    #[test]
    fn aligned_writes_keep_every_byte_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(io) = DirectIo::new(dir.path()) else { return }; // no io_uring or O_DIRECT here
        roundtrip(Arc::new(OsStorage), dir.path(), io, false);
    }

    /// Two writes in flight on the ring at once, the second rewriting the first one's tail
    /// block: ordered by `IOSQE_IO_DRAIN`, the second's bytes are never overwritten by the
    /// first's copy of that block.
    #[test]
    fn pipelined_writes_sharing_a_block_keep_every_byte_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(io) = DirectIo::new(dir.path()) else { return }; // no io_uring or O_DIRECT here
        roundtrip(Arc::new(OsStorage), dir.path(), io, true);
    }

    /// A kick wakes a writer waiting for a completion, with the write still counted later.
    #[test]
    fn a_kick_wakes_the_wait_for_a_completion() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(mut io) = DirectIo::new(dir.path()) else { return };
        let path = dir.path().join("seg");
        let file = OsStorage.open(&path, true).unwrap();
        crate::io::write_all_at(&*file, &vec![0u8; 1 << 20], 0).unwrap();
        file.sync_data().unwrap();
        let seg = Segment { seq: 1, path, file: file.clone() };
        let kick = io.kick().expect("a ring backend has a kick");
        let mut counted = 0;
        for round in 0..20u64 {
            io.submit(&seg, &[&[round as u8 + 1; 300]], round * 300).unwrap();
            kick.fire();
            // Returns for the kick (0) or with the write counted; never blocks for good.
            counted += io.complete(true).unwrap();
            while !io.in_flight.is_empty() {
                counted += io.complete(false).unwrap();
            }
        }
        assert_eq!(counted, 20);
        let mut got = vec![0u8; 6000];
        read_full_at(&*file, &mut got, 0).unwrap();
        for round in 0..20usize {
            assert!(got[round * 300..(round + 1) * 300].iter().all(|&b| b == round as u8 + 1));
        }
    }
}
