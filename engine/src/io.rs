//! The file I/O trait every byte of the engine goes through, its real implementation, and
//! an in-memory implementation that can fail the Nth call and "lose power".
//!
//! `MemStorage` models a disk with a volatile write cache: `write_at` lands in the cache,
//! `sync` makes everything written so far durable, and [`MemStorage::power_loss_image`]
//! returns what survives a power cut: the durable bytes plus an arbitrary subset of the
//! unsynced writes (a disk may persist any of them, in any order, some torn).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

/// Positional file I/O. Implementations must be safe to call from many threads.
pub trait Storage: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (not durable until `sync`).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// True if the storage is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A real file, locked exclusively (flock) for the life of this value.
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    /// Opens (creating if missing) and locks `path`. `Err(WouldBlock)` if it is locked.
    pub fn open(path: &Path) -> io::Result<FileStorage> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        // SAFETY: flock on a valid, open file descriptor owned by `file`; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FileStorage { file })
    }
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// In-memory storage with fault injection, for tests.
#[derive(Clone, Default)]
pub struct MemStorage {
    state: Arc<Mutex<MemState>>,
}

#[derive(Default)]
struct MemState {
    /// What the "disk" holds after the last sync.
    durable: Vec<u8>,
    /// What reads see: durable plus every write since.
    current: Vec<u8>,
    /// Writes since the last sync, in order (offset, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
    /// Mutating calls (write_at, sync, set_len) made so far.
    ops: u64,
    /// Fail every mutating call from this one on (a power cut at this point).
    fail_from: Option<u64>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A storage whose durable and current content is `image`.
    pub fn from_image(image: Vec<u8>) -> MemStorage {
        let s = MemStorage::new();
        {
            let mut st = s.state.lock();
            st.durable = image.clone();
            st.current = image;
        }
        s
    }

    /// Number of mutating calls made so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// From the `n`th mutating call on (counting from 0), every mutating call fails:
    /// the power went out just before it.
    pub fn fail_from(&self, n: u64) {
        self.state.lock().fail_from = Some(n);
    }

    /// The bytes as of the last sync.
    pub fn durable_image(&self) -> Vec<u8> {
        self.state.lock().durable.clone()
    }

    /// The bytes as reads see them now.
    pub fn current_image(&self) -> Vec<u8> {
        self.state.lock().current.clone()
    }

    /// What survives a power cut now: the durable bytes plus each unsynced write applied or
    /// not as `keep(i)` says, where `keep` returns how many bytes of write `i` landed
    /// (0 = none, its length = all, in between = torn).
    pub fn power_loss_image(&self, mut keep: impl FnMut(usize, usize) -> usize) -> Vec<u8> {
        let st = self.state.lock();
        let mut image = st.durable.clone();
        for (i, (off, bytes)) in st.unsynced.iter().enumerate() {
            let n = keep(i, bytes.len()).min(bytes.len());
            let end = *off as usize + n;
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*off as usize..end].copy_from_slice(&bytes[..n]);
        }
        image
    }

    fn mutate(&self) -> io::Result<parking_lot::MutexGuard<'_, MemState>> {
        let mut st = self.state.lock();
        let n = st.ops;
        st.ops += 1;
        if st.fail_from.is_some_and(|f| n >= f) {
            return Err(io::Error::other("injected fault: power loss"));
        }
        Ok(st)
    }
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.state.lock();
        let end = offset as usize + buf.len();
        if end > st.current.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
        }
        buf.copy_from_slice(&st.current[offset as usize..end]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = self.mutate()?;
        let end = offset as usize + buf.len();
        if st.current.len() < end {
            st.current.resize(end, 0);
        }
        st.current[offset as usize..end].copy_from_slice(buf);
        st.unsynced.push((offset, buf.to_vec()));
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut st = self.mutate()?;
        st.durable = st.current.clone();
        st.unsynced.clear();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.mutate()?;
        // Treated as durable at once (ftruncate followed by the sync that always follows).
        st.current.resize(len as usize, 0);
        st.durable.resize(len as usize, 0);
        st.unsynced.retain(|(off, _)| *off < len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_storage_loses_unsynced_writes() {
        let s = MemStorage::new();
        s.write_at(b"hello", 0).unwrap();
        s.sync().unwrap();
        s.write_at(b"HE", 0).unwrap();
        let mut buf = [0u8; 5];
        s.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"HEllo");
        assert_eq!(s.durable_image(), b"hello");
        assert_eq!(s.power_loss_image(|_, n| n), b"HEllo");
        assert_eq!(s.power_loss_image(|_, _| 1), b"Hello");
    }

    #[test]
    fn mem_storage_fails_from_nth_call() {
        let s = MemStorage::new();
        s.fail_from(1);
        s.write_at(b"a", 0).unwrap();
        assert!(s.sync().is_err());
        assert!(s.write_at(b"b", 1).is_err());
        assert_eq!(s.durable_image(), b"");
    }

    #[test]
    fn file_storage_locks_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        let a = FileStorage::open(&p).unwrap();
        assert!(FileStorage::open(&p).is_err());
        a.write_at(b"xyz", 10).unwrap();
        assert_eq!(a.len().unwrap(), 13);
        drop(a);
        assert!(FileStorage::open(&p).is_ok());
    }
}
