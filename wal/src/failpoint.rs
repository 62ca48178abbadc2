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
//!
//! With `LOGBOOK_FAILPOINT_EIO=<control file>`, [`Wal::open`](crate::Wal::open) runs on
//! [`EioStorage`]: a failing disk. While the control file holds a line `wal N` (N > 0),
//! each data write, fdatasync, allocation or truncation fails with EIO and takes one off N
//! (the file is rewritten); `wal *` fails every one until the line goes. Reads never fail.
//! The test writes and removes the file (`tests/disk_faults.rs`): EIO "for a while", as a
//! device-mapper `dm-error`/`dm-flakey` target would give where the kernel has one.

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

/// The environment variable naming [`EioStorage`]'s control file.
pub const EIO_ENV: &str = "LOGBOOK_FAILPOINT_EIO";

/// The control file, if the EIO failpoint is on.
pub(crate) fn eio_control() -> Option<PathBuf> {
    std::env::var_os(EIO_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Whether the next operation on `target`'s files fails with EIO (and counts it), by the
/// control file's line `target N` or `target *`.
pub fn eio_due(control: &Path, target: &str) -> bool {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock();
    let Ok(text) = std::fs::read_to_string(control) else { return false };
    let mut due = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(target) && !due {
            match words.next() {
                Some("*") => due = true,
                Some(n) => {
                    if let Ok(n) = n.parse::<u64>()
                        && n > 0
                    {
                        due = true;
                        lines.push(format!("{target} {}", n - 1));
                        continue;
                    }
                }
                None => {}
            }
        }
        lines.push(line.to_string());
    }
    if due && lines.join("\n") != text.trim_end() {
        let _ = std::fs::write(control, lines.join("\n") + "\n");
    }
    due
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// A [`Storage`] whose files fail writes and syncs with EIO while the control file says so.
pub struct EioStorage {
    inner: Arc<dyn Storage>,
    control: PathBuf,
}

impl EioStorage {
    pub fn new(inner: Arc<dyn Storage>, control: PathBuf) -> EioStorage {
        EioStorage { inner, control }
    }

    fn check(&self) -> io::Result<()> {
        if eio_due(&self.control, "wal") { Err(eio()) } else { Ok(()) }
    }
}

impl Storage for EioStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = self.inner.open(path, create)?;
        Ok(Arc::new(EioFile { file, control: self.control.clone() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check()?;
        self.inner.sync_dir(dir)
    }
    // No fds: io_uring would bypass the failing calls, so the WAL uses pwrite + fdatasync.
}

/// One file of [`EioStorage`].
struct EioFile {
    file: Arc<dyn SegmentFile>,
    control: PathBuf,
}

impl EioFile {
    fn check(&self) -> io::Result<()> {
        if eio_due(&self.control, "wal") { Err(eio()) } else { Ok(()) }
    }
}

impl SegmentFile for EioFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.check()?;
        self.file.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.file.sync_data()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.allocate(len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn zeros_from(&self) -> Option<u64> {
        self.file.zeros_from()
    }
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

    #[test]
    fn eio_for_n_operations_then_the_disk_works_again() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("eio");
        let s = EioStorage::new(Arc::new(OsStorage), control.clone());
        let f = s.open(&dir.path().join("seg"), true).unwrap();
        write_all_at(&*f, b"ok", 0).unwrap();
        std::fs::write(&control, "engine 5\nwal 2\n").unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(f.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::EIO));
        f.sync_data().unwrap();
        assert_eq!(std::fs::read_to_string(&control).unwrap(), "engine 5\nwal 0\n");
        std::fs::write(&control, "wal *\n").unwrap();
        for _ in 0..3 {
            assert!(f.sync_data().is_err());
        }
        std::fs::remove_file(&control).unwrap();
        f.sync_data().unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(read_full_at(&*f, &mut buf, 0).unwrap(), 2);
    }
}
