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
//! # Crash model
//! A write that completed is durable (FUA, or write + flush); the writer acknowledges a batch
//! only after its write completed, one write in flight at a time, so the log on disk is always
//! the acknowledged prefix plus at most one batch in flight, which may be torn at any sector.
//! The block rewritten at the start of a batch holds acknowledged bytes, written again with
//! the same values: a sector of it that is torn or lost keeps its old contents, which are the
//! same bytes. Recovery's torn-tail rules (see `docs/format.md`) are therefore the same as for
//! the buffered backends, whose page-cache write-back rewrites the tail page the same way.
//!
//! Without file descriptors (simulated storage) the same aligned blocks are written with
//! `write_at` + `sync_data`, so the power-loss tests exercise this backend's buffer handling.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, types};

use crate::backend::{Backend, CommitIo};
use crate::io::{read_full_at, write_all_at};
use crate::segment::Segment;

/// Block size every direct write is aligned to (offset, length and memory). 4 KiB covers
/// devices with 512-byte and 4 KiB logical blocks.
pub(crate) const ALIGN: usize = 4096;

/// How long the one in-flight write may take to complete after a failed enter.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

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
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, ALIGN).expect("valid layout");
        // SAFETY: allocated in `new` with this very layout, and not freed since.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// The `O_DIRECT` backend.
pub(crate) struct DirectIo {
    /// `None` for simulated storage.
    ring: Option<IoUring>,
    /// The `O_DIRECT` descriptor of the segment written last, by sequence number.
    fd: Option<(u64, File)>,
    buf: AlignedBuf,
    /// The last block written: segment, offset of the block, its bytes. The next batch
    /// usually starts inside it.
    tail: Option<(u64, u64)>,
    tail_block: Vec<u8>,
}

/// Opens `path` for writing with `O_DIRECT`.
fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path)
}

impl DirectIo {
    /// The backend for the log in `dir`: fails if io_uring is refused or the file system in
    /// `dir` does not take `O_DIRECT` writes (checked with one aligned write to a scratch file).
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        let ring = IoUring::new(4)?;
        check_direct(dir)?;
        Ok(Self::with_ring(Some(ring)))
    }

    /// For storage without file descriptors: the same aligned blocks, through `write_at` +
    /// `sync_data`.
    pub(crate) fn simulated() -> Self {
        Self::with_ring(None)
    }

    fn with_ring(ring: Option<IoUring>) -> Self {
        DirectIo {
            ring,
            fd: None,
            buf: AlignedBuf::new(64 << 10),
            tail: None,
            tail_block: vec![0; ALIGN],
        }
    }

    /// The `O_DIRECT` descriptor of `seg`, opened on first use.
    fn fd_for(&mut self, seg: &Segment) -> io::Result<i32> {
        if self.fd.as_ref().is_none_or(|(seq, _)| *seq != seg.seq) {
            self.fd = None;
            self.fd = Some((seg.seq, open_direct(&seg.path)?));
        }
        Ok(self.fd.as_ref().expect("just opened").1.as_raw_fd())
    }

    /// Writes `len` bytes of the staging buffer at `offset` with `RWF_DSYNC` through the ring.
    fn write_dsync(&mut self, fd: i32, len: usize, offset: u64) -> io::Result<usize> {
        let ring = self.ring.as_mut().expect("called with a ring only");
        let ptr = self.buf.slice_mut(len).as_mut_ptr();
        let e = opcode::Write::new(types::Fd(fd), ptr, len as u32)
            .offset(offset)
            .rw_flags(libc::RWF_DSYNC)
            .build()
            .user_data(1);
        // SAFETY: the buffer belongs to `self.buf`, which is neither freed nor reused before
        // this function returns, and the fd to `self.fd`, which stays open as long; we return
        // only after reaping this entry's completion (or aborting in `drain_one`), so the kernel
        // never touches either after we return.
        unsafe { ring.submission().push(&e) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    std::thread::yield_now();
                    continue;
                }
                Err(e) => {
                    if ring.submission().is_empty() {
                        // Consumed by the kernel: in flight on our buffer.
                        drain_one(ring);
                    }
                    // Never submit it later: a fresh ring.
                    self.ring = Some(IoUring::new(4)?);
                    return Err(e);
                }
            }
            if let Some(cqe) = ring.completion().next() {
                let r = cqe.result();
                if r < 0 {
                    return Err(io::Error::from_raw_os_error(-r));
                }
                return Ok(r as usize);
            }
        }
    }
}

/// Waits for the one in-flight request after `io_uring_enter` failed; aborts the process if
/// the kernel keeps the buffer past [`DRAIN_LIMIT`] (returning would free memory it writes from).
fn drain_one(ring: &mut IoUring) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        if ring.completion().next().is_some() {
            return;
        }
        if Instant::now() > deadline {
            tracing::error!(
                "wal: an O_DIRECT write never completed after a failed io_uring_enter; aborting"
            );
            std::process::abort();
        }
        std::thread::sleep(Duration::from_millis(1));
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
        let align = ALIGN as u64;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let start = offset / align * align;
        let end = (offset + total as u64).next_multiple_of(align);
        let len = (end - start) as usize;
        let head = (offset - start) as usize;
        self.buf.reserve(len);
        // The head of the first block: what the previous batch left there, or read back.
        let known = self.tail == Some((seg.seq, start));
        let (tail_block, buf) = (&self.tail_block, self.buf.slice_mut(len));
        if head > 0 {
            if known {
                buf[..head].copy_from_slice(&tail_block[..head]);
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
        // Until this write is known complete, the cached block may not match the disk.
        self.tail = None;

        if self.ring.is_none() {
            write_all_at(&*seg.file, self.buf.slice_mut(len), start)?;
            seg.file.sync_data()?;
        } else {
            let fd = self.fd_for(seg)?;
            let mut done = 0;
            while done < len {
                let n = self.write_dsync(fd, len - done, start + done as u64);
                let n = match n {
                    Ok(0) => {
                        return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
                    }
                    Ok(n) => n,
                    Err(e) => return Err(e),
                };
                if n == len - done {
                    break;
                }
                // A short direct write (rare): finish through the page cache, durably.
                let rest = self.buf.slice_mut(len)[done + n..].to_vec();
                write_all_at(&*seg.file, &rest, start + (done + n) as u64)?;
                seg.file.sync_data()?;
                done = len;
            }
        }
        self.tail = Some((seg.seq, start + last as u64));
        Ok(())
    }

    fn name(&self) -> &'static str {
        if self.ring.is_some() {
            "io_uring O_DIRECT (write with RWF_DSYNC)"
        } else {
            "direct, simulated (aligned write + sync)"
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

    fn roundtrip(storage: Arc<dyn Storage>, dir: &Path, mut io: DirectIo) {
        let path = dir.join("seg");
        let file = storage.open(&path, true).unwrap();
        file.allocate(256 << 10).unwrap();
        let seg = Segment { seq: 3, path, file: file.clone() };
        let mut want = vec![0u8; 256 << 10];
        let mut pos = 0usize;
        let mut x = 1u32;
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
                io.tail = None;
            }
            io.write_and_sync(&seg, &[&data[..n / 2], &data[n / 2..]], pos as u64).unwrap();
            want[pos..pos + n].copy_from_slice(&data);
            pos += n;
        }
        let mut got = vec![0u8; want.len()];
        read_full_at(&*file, &mut got, 0).unwrap();
        assert!(got == want, "contents differ");
    }

    #[test]
    fn aligned_writes_keep_every_byte_simulated() {
        roundtrip(Arc::new(SimStorage::new()), Path::new("/d"), DirectIo::simulated());
    }

    #[test]
    fn aligned_writes_keep_every_byte_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(io) = DirectIo::new(dir.path()) else { return }; // no io_uring or O_DIRECT here
        roundtrip(Arc::new(OsStorage), dir.path(), io);
    }
}
