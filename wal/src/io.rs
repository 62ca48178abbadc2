//! The file-system seam: every file operation of the WAL goes through [`Storage`] and
//! [`SegmentFile`], so tests can swap in [`crate::sim::SimStorage`], which fails chosen calls and
//! loses power. [`OsStorage`] is the real thing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A directory-level file system: the operations the WAL performs on names.
pub trait Storage: Send + Sync + 'static {
    /// `mkdir -p`.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the regular files directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing, creating it (empty) if `create` and missing.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether its files are OS files with descriptors ([`SegmentFile::raw_fd`]), which the
    /// io_uring backends need.
    fn has_fds(&self) -> bool {
        false
    }
}

/// One open file. Positional I/O only, so several threads can share it.
pub trait SegmentFile: Send + Sync {
    /// `pread`: reads up to `buf.len()` bytes at `offset`; 0 at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `pwrite`: writes up to `buf.len()` bytes at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// `fallocate(0, len)`: makes the file at least `len` bytes, reserving the space; new
    /// bytes read as zeros.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// `ftruncate`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current size in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True if the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The OS file descriptor, for io_uring; `None` for simulated files.
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }

    /// An offset from which the file is known to read as zeros up to its end (space that was
    /// preallocated and never written, or holes), or `None` if that cannot be told. Recovery
    /// reads a segment no further than this, so opening costs what the log holds rather than
    /// what was preallocated. The answer must be true when given; `None` is always correct.
    fn zeros_from(&self) -> Option<u64> {
        None
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
pub fn read_full_at(f: &dyn SegmentFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match f.read_at(buf, offset) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                offset += n as u64;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Writes all of `buf` at `offset`.
pub fn write_all_at(f: &dyn SegmentFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                offset += n as u64;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Ok(name) = entry.file_name().into_string()
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn has_fds(&self) -> bool {
        true
    }
}

/// A [`std::fs::File`] behind [`SegmentFile`].
#[derive(Debug)]
pub struct OsFile(pub File);

impl SegmentFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        loop {
            // SAFETY: plain syscall on a descriptor owned by `self.0`, which outlives the call;
            // no memory is shared with the kernel.
            let r = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, len) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // File systems without fallocate: extending the size still gives zeros.
                Some(libc::EOPNOTSUPP) => {
                    if self.0.metadata()?.len() < len as u64 {
                        self.0.set_len(len as u64)?;
                    }
                    return Ok(());
                }
                _ => return Err(e),
            }
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }

    fn zeros_from(&self) -> Option<u64> {
        let len = self.len().ok()?;
        written_end(self.0.as_raw_fd(), len)
    }
}

// FIEMAP (linux/fiemap.h, linux/fs.h): the file's extents and whether each was ever written.
/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: u32 = 0xC020_660B;
/// Write dirty pages back before mapping, so the extents describe what a read returns.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// Allocated but never written: reads as zeros.
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// Extents asked for per call.
const FIEMAP_BATCH: usize = 32;
/// Calls at most, before giving up (a file that fragmented is read in full instead).
const FIEMAP_ROUNDS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; FIEMAP_BATCH],
}

/// End of the last extent of `fd` that is not unwritten (holes and unwritten extents read as
/// zeros), capped at `len`; `None` if the file system does not support FIEMAP.
fn written_end(fd: RawFd, len: u64) -> Option<u64> {
    let mut end = 0u64;
    let mut start = 0u64;
    let mut flags = FIEMAP_FLAG_SYNC;
    for _ in 0..FIEMAP_ROUNDS {
        if start >= len {
            return Some(end.min(len));
        }
        let mut map = Fiemap {
            start,
            length: len - start,
            flags,
            mapped_extents: 0,
            extent_count: FIEMAP_BATCH as u32,
            reserved: 0,
            extents: [FiemapExtent::default(); FIEMAP_BATCH],
        };
        // SAFETY: `map` is a valid, exclusively borrowed `struct fiemap` with room for
        // `extent_count` extents, alive for the whole (synchronous) call; `fd` is open.
        let r = unsafe { libc::ioctl(fd, FS_IOC_FIEMAP as libc::Ioctl, &mut map as *mut Fiemap) };
        if r != 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
        flags = 0; // written back once is enough: nothing else writes during recovery
        let n = (map.mapped_extents as usize).min(FIEMAP_BATCH);
        if n == 0 {
            return Some(end.min(len));
        }
        for e in &map.extents[..n] {
            if e.flags & FIEMAP_EXTENT_UNWRITTEN == 0 {
                end = end.max(e.logical.saturating_add(e.length));
            }
            if e.flags & FIEMAP_EXTENT_LAST != 0 {
                return Some(end.min(len));
            }
        }
        let last = &map.extents[n - 1];
        start = last.logical.saturating_add(last.length);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_file_allocate_reads_zeros_and_positional_io_works() {
        let dir = tempfile::tempdir().unwrap();
        let s = OsStorage;
        let p = dir.path().join("f");
        let f = s.open(&p, true).unwrap();
        f.allocate(8192).unwrap();
        assert_eq!(f.len().unwrap(), 8192);
        write_all_at(&*f, b"abc", 100).unwrap();
        f.sync_data().unwrap();
        let mut buf = vec![1u8; 8192];
        assert_eq!(read_full_at(&*f, &mut buf, 0).unwrap(), 8192);
        assert_eq!(&buf[100..103], b"abc");
        assert!(buf[..100].iter().all(|&b| b == 0));
        assert!(buf[103..].iter().all(|&b| b == 0));
        assert_eq!(s.list(dir.path()).unwrap(), vec!["f".to_string()]);
        s.rename(&p, &dir.path().join("g")).unwrap();
        s.sync_dir(dir.path()).unwrap();
        s.remove(&dir.path().join("g")).unwrap();
        assert!(s.list(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn os_file_zeros_from_is_true() {
        let dir = tempfile::tempdir().unwrap();
        let f = OsStorage.open(&dir.path().join("f"), true).unwrap();
        f.allocate(8 << 20).unwrap();
        f.sync_data().unwrap();
        let at = 5 << 20;
        // Not synced: the answer must count dirty pages too.
        write_all_at(&*f, b"abc", at).unwrap();
        let Some(z) = f.zeros_from() else { return }; // no FIEMAP on this file system
        assert!(z >= at + 3 && z <= 8 << 20, "{z}");
        let mut rest = vec![1u8; (f.len().unwrap() - z) as usize];
        assert_eq!(read_full_at(&*f, &mut rest, z).unwrap(), rest.len());
        assert!(rest.iter().all(|&b| b == 0));
        // Cut and preallocated again: nothing is written any more.
        f.set_len(0).unwrap();
        f.allocate(8 << 20).unwrap();
        assert_eq!(f.zeros_from(), Some(0));
    }
}
