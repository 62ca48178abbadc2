//! Test-only fault injection, compiled in only with the `failpoints` feature (off by
//! default, so a normal build carries none of this).
//!
//! With `LOGBOOK_FAILPOINT_POWER_LOSS=1` in the environment, [`Engine::open`](crate::Engine::open)
//! wraps its file in [`VolatileStorage`]: writes are held in this process's memory until
//! `sync`, so a SIGKILL loses exactly what a power cut would lose: every write not yet
//! synced. A size change writes held-back data through first (never less durable than a
//! real disk would be). The robustness harness (`tests/robustness.rs`) uses this.
//!
//! With `LOGBOOK_FAILPOINT_EIO=<control file>`, the engine's file is an [`EioStorage`]: a
//! failing disk. While the control file holds a line `engine N` (N > 0), each write, sync
//! or size change fails with EIO and takes one off N (the file is rewritten); `engine *`
//! fails every one until the line goes. Reads never fail. `tests/disk_faults.rs` uses it
//! (the WAL has the same failpoint under the name `wal`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::io::{FileStorage, Storage};

/// The environment variable that switches [`VolatileStorage`] on.
pub const POWER_LOSS_ENV: &str = "LOGBOOK_FAILPOINT_POWER_LOSS";

/// Whether this process should keep unsynced writes in memory.
pub(crate) fn power_loss_enabled() -> bool {
    std::env::var(POWER_LOSS_ENV).is_ok_and(|v| v == "1")
}

/// A [`FileStorage`] whose writes stay in memory until `sync`.
pub struct VolatileStorage {
    file: FileStorage,
    /// Unsynced writes in issue order.
    pending: Mutex<Vec<(u64, Vec<u8>)>>,
}

impl VolatileStorage {
    pub fn new(file: FileStorage) -> VolatileStorage {
        VolatileStorage { file, pending: Mutex::new(Vec::new()) }
    }

    fn write_through(&self, pending: &mut Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        for (offset, data) in pending.drain(..) {
            self.file.write_at(&data, offset)?;
        }
        Ok(())
    }
}

impl Storage for VolatileStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let pending = self.pending.lock();
        let end = offset + buf.len() as u64;
        let file_len = self.file.len()?;
        // The part of the range the file holds, then the held-back writes over it.
        buf.fill(0);
        if offset < file_len {
            let n = (file_len.min(end) - offset) as usize;
            self.file.read_at(&mut buf[..n], offset)?;
        }
        let mut covered = file_len.max(offset);
        for (o, d) in pending.iter() {
            let (wo, we) = (*o, *o + d.len() as u64);
            if we <= offset || wo >= end {
                continue;
            }
            let from = wo.max(offset);
            let to = we.min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&d[(from - wo) as usize..(to - wo) as usize]);
            covered = covered.max(to);
        }
        if covered < end {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past end"));
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.pending.lock().push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.write_through(&mut pending)?;
        self.file.sync()
    }

    fn len(&self) -> io::Result<u64> {
        let pending = self.pending.lock();
        let file_len = self.file.len()?;
        Ok(pending.iter().map(|(o, d)| o + d.len() as u64).fold(file_len, u64::max))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut pending = self.pending.lock();
        self.write_through(&mut pending)?;
        self.file.set_len(len)
    }
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

/// A [`Storage`] that fails writes, syncs and size changes with EIO while the control
/// file says so.
pub struct EioStorage {
    inner: Arc<dyn Storage>,
    control: PathBuf,
}

impl EioStorage {
    pub fn new(inner: Arc<dyn Storage>, control: PathBuf) -> EioStorage {
        EioStorage { inner, control }
    }

    fn check(&self) -> io::Result<()> {
        if eio_due(&self.control, "engine") {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            Ok(())
        }
    }
}

impl Storage for EioStorage {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync()
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_readable_but_lost_without_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let s = VolatileStorage::new(FileStorage::open(&path).unwrap());
            s.write_at(b"kept", 0).unwrap();
            s.sync().unwrap();
            s.write_at(b"lost", 8).unwrap();
            let mut buf = [0u8; 12];
            s.read_at(&mut buf, 0).unwrap();
            assert_eq!(&buf[..4], b"kept");
            assert_eq!(&buf[8..], b"lost");
            assert_eq!(s.len().unwrap(), 12);
        }
        // Dropped without a sync: the power went out.
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }

    #[test]
    fn eio_for_n_operations_then_the_file_works_again() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("eio");
        let s = EioStorage::new(
            Arc::new(FileStorage::open(&dir.path().join("db")).unwrap()),
            control.clone(),
        );
        std::fs::write(&control, "wal 3\nengine 1\n").unwrap();
        assert_eq!(s.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::EIO));
        s.write_at(b"y", 0).unwrap();
        s.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&control).unwrap(), "wal 3\nengine 0\n");
    }
}
