//! The io_uring [`CommitIo`]: each batch is one submission of linked SQEs, `write` ->
//! ... -> `write` -> `fsync(DATASYNC)`, and one `io_uring_enter` that submits and waits for all
//! of them. The link makes the kernel start the fdatasync only after the writes completed.

use std::io;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use crate::backend::{Backend, CommitIo, SyncIo};
use crate::io::{SegmentFile, write_all_at};
use crate::segment::Segment;

/// How long in-flight requests may take to complete after a failed enter.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Most buffers one batch is written from (segment preamble + records).
const MAX_BUFS: usize = 4;

pub(crate) struct UringIo {
    ring: IoUring,
}

impl UringIo {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(UringIo { ring: IoUring::new(8)? })
    }

    /// `io_uring_enter`, retrying the transient errors.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN) | Some(libc::EBUSY) => std::thread::yield_now(),
                    _ => return Err(e),
                },
            }
        }
    }

    /// Reaps `left` outstanding completions by polling the completion queue
    /// (after `io_uring_enter` itself failed). If the kernel has not posted
    /// them within a minute it still owns the caller's buffers, and returning
    /// would let it write into freed memory: the process aborts instead.
    fn drain(&mut self, mut left: usize) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while left > 0 {
            left -= self.ring.completion().count().min(left);
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                tracing::error!(
                    outstanding = left,
                    "wal: io_uring requests never completed after a failed io_uring_enter; aborting"
                );
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Finishes a batch by hand after the kernel stopped early (a short write cancels the
    /// rest of the chain): writes what is missing, then fdatasyncs.
    fn finish_sync(
        file: &dyn SegmentFile,
        bufs: &[&[u8]],
        offset: u64,
        done: &[usize],
    ) -> io::Result<()> {
        let mut off = offset;
        for (b, &n) in bufs.iter().zip(done) {
            write_all_at(file, &b[n..], off + n as u64)?;
            off += b.len() as u64;
        }
        file.sync_data()
    }
}

impl CommitIo for UringIo {
    fn write_and_sync(&mut self, seg: &Segment, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let file = &*seg.file;
        let Some(raw) = file.raw_fd() else {
            return SyncIo.write_and_sync(seg, bufs, offset);
        };
        if bufs.len() > MAX_BUFS || bufs.iter().any(|b| b.len() > i32::MAX as usize) {
            return SyncIo.write_and_sync(seg, bufs, offset);
        }
        let fd = types::Fd(raw);
        let n = bufs.len();
        let mut off = offset;
        {
            let mut sq = self.ring.submission();
            for (i, b) in bufs.iter().enumerate() {
                let e = opcode::Write::new(fd, b.as_ptr(), b.len() as u32)
                    .offset(off)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(i as u64);
                off += b.len() as u64;
                // SAFETY: the buffer `b` is borrowed from the caller for this whole call and the
                // fd belongs to `file`, which the caller keeps open for this whole call; we do not
                // return before every CQE of this submission is reaped (below), so the kernel
                // never touches either after we return.
                unsafe { sq.push(&e) }
                    .map_err(|_| io::Error::other("io_uring submission queue full"))?;
            }
            let e = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(n as u64);
            // SAFETY: as above; fsync shares no memory, only the fd owned by `file`.
            unsafe { sq.push(&e) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        let total = n + 1;
        let mut results = [0i32; MAX_BUFS + 1];
        let mut got = 0;
        while got < total {
            if let Err(e) = self.enter(total - got) {
                if self.ring.submission().len() == total - got && got == 0 {
                    // Nothing was consumed by the kernel: nothing is in flight. Drop the
                    // entries so they are never submitted later, and report.
                    // SAFETY (no unsafe here): clearing is done by recreating the ring.
                    self.ring = IoUring::new(8)?;
                    return Err(e);
                }
                // Requests are in flight on the caller's buffers: the kernel posts their
                // completions to the ring without another enter, so wait for them, then
                // report the error (the group committer poisons the log on it).
                self.drain(total - got);
                self.ring = IoUring::new(8)?;
                return Err(e);
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                assert!(i < total, "unexpected io_uring completion {i}");
                results[i] = cqe.result();
                got += 1;
            }
        }
        let mut done = [0usize; MAX_BUFS];
        let mut short = false;
        for i in 0..n {
            let r = results[i];
            if r == -libc::ECANCELED && short {
                continue; // cancelled because an earlier write was short
            }
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r));
            }
            done[i] = r as usize;
            if done[i] < bufs[i].len() {
                short = true;
            }
        }
        if short {
            return Self::finish_sync(file, bufs, offset, &done[..n]);
        }
        let r = results[n];
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "io_uring (linked write + fdatasync)"
    }

    fn backend(&self) -> Backend {
        Backend::IoUring
    }
}
