//! Test-only fault injection, compiled in only with the `failpoints` feature (off by
//! default, so a normal build carries none of this).
//!
//! With `LOGBOOK_FAILPOINT_POWER_LOSS=1` in the environment, [`Engine::open`](crate::Engine::open)
//! wraps its file in [`VolatileStorage`]: writes are held in this process's memory until
//! `sync`, so a SIGKILL loses exactly what a power cut would lose: every write not yet
//! synced. A size change writes held-back data through first (never less durable than a
//! real disk would be). The robustness harness (`tests/robustness.rs`) uses this.

use std::io;

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
}
