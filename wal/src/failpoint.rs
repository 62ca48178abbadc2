//! Test-only fault injection, compiled in only with the `failpoints` feature (off by
//! default, so a normal build carries none of this).
//!
//! With `LOGBOOK_FAILPOINT_POWER_LOSS=1` in the environment, [`Wal::open`](crate::Wal::open)
//! runs on [`VolatileStorage`]: data writes are held in this process's memory until the file
//! is `fdatasync`ed, so a SIGKILL loses exactly what a power cut would lose: every write not
//! yet synced. Names (create, rename, remove) and sizes (allocate, truncate) go straight to
//! the file system; a write held back when its file's size changes is written through first,
//! which only ever makes the model keep more than a real power cut might.
//!
//! The robustness harness (`tests/robustness.rs`) uses this to restart members after a
//! "power loss".

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::io::{OsFile, OsStorage, SegmentFile, Storage, write_all_at};

/// The environment variable that switches [`VolatileStorage`] on.
pub const POWER_LOSS_ENV: &str = "LOGBOOK_FAILPOINT_POWER_LOSS";

/// Whether this process should keep unsynced writes in memory.
pub(crate) fn power_loss_enabled() -> bool {
    std::env::var(POWER_LOSS_ENV).is_ok_and(|v| v == "1")
}

/// Unsynced writes of one file, in issue order. Shared by every handle of the same path so
/// a second `open` sees the first one's writes, as it would through the page cache.
#[derive(Default)]
struct Pending {
    writes: Vec<(u64, Vec<u8>)>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Mutex<Pending>>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<Pending>>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// [`OsStorage`] whose files hold data writes in memory until `sync_data`.
#[derive(Clone, Copy, Debug, Default)]
pub struct VolatileStorage;

impl Storage for VolatileStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsStorage.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsStorage.list(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(create).open(path)?;
        let pending = registry().lock().entry(path.to_path_buf()).or_default().clone();
        Ok(Arc::new(VolatileFile { file: OsFile(file), pending }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsStorage.rename(from, to)?;
        let mut reg = registry().lock();
        if let Some(p) = reg.remove(from) {
            reg.insert(to.to_path_buf(), p);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        OsStorage.remove(path)?;
        registry().lock().remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
}

/// One file of [`VolatileStorage`].
struct VolatileFile {
    file: OsFile,
    pending: Arc<Mutex<Pending>>,
}

impl VolatileFile {
    /// Writes every held-back write to the file (not synced).
    fn write_through(&self, pending: &mut Pending) -> io::Result<()> {
        for (offset, data) in pending.writes.drain(..) {
            write_all_at(&self.file, &data, offset)?;
        }
        Ok(())
    }
}

impl SegmentFile for VolatileFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let pending = self.pending.lock();
        let file_len = self.file.len()?;
        let logical_len =
            pending.writes.iter().map(|(o, d)| o + d.len() as u64).fold(file_len, u64::max);
        if offset >= logical_len {
            return Ok(0);
        }
        let n = buf.len().min((logical_len - offset) as usize);
        let buf = &mut buf[..n];
        buf.fill(0);
        crate::io::read_full_at(&self.file, buf, offset)?;
        let end = offset + n as u64;
        for (o, d) in &pending.writes {
            let (wo, we) = (*o, *o + d.len() as u64);
            if we <= offset || wo >= end {
                continue;
            }
            let from = wo.max(offset);
            let to = we.min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&d[(from - wo) as usize..(to - wo) as usize]);
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.pending.lock().writes.push((offset, buf.to_vec()));
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.write_through(&mut pending)?;
        self.file.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.write_through(&mut pending)?;
        self.file.allocate(len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.write_through(&mut pending)?;
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        let pending = self.pending.lock();
        let file_len = self.file.len()?;
        Ok(pending.writes.iter().map(|(o, d)| o + d.len() as u64).fold(file_len, u64::max))
    }

    fn zeros_from(&self) -> Option<u64> {
        let pending = self.pending.lock();
        let on_disk = self.file.zeros_from()?;
        Some(pending.writes.iter().map(|(o, d)| o + d.len() as u64).fold(on_disk, u64::max))
    }
    // No raw_fd: io_uring would bypass the held-back writes, so the WAL falls back to
    // pwrite + fdatasync through this type.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read_full_at;

    #[test]
    fn unsynced_writes_are_visible_but_not_on_disk_until_sync() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seg");
        let f = VolatileStorage.open(&p, true).unwrap();
        f.allocate(64).unwrap();
        write_all_at(&*f, b"durable", 0).unwrap();
        f.sync_data().unwrap();
        write_all_at(&*f, b"volatile", 16).unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(read_full_at(&*f, &mut buf, 0).unwrap(), 24);
        assert_eq!(&buf[..7], b"durable");
        assert_eq!(&buf[16..24], b"volatile");
        // What a power cut leaves: the OS file without the held-back write.
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[..7], b"durable");
        assert!(on_disk[16..24].iter().all(|&b| b == 0));
        f.sync_data().unwrap();
        assert_eq!(&std::fs::read(&p).unwrap()[16..24], b"volatile");
    }
}
