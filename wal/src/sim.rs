//! A simulated file system for fault injection: it fails chosen writes or syncs, runs out of
//! space, and loses power.
//!
//! A "power loss" ([`SimStorage::crash`]) keeps only what was made durable: file contents as of
//! each file's last `sync_data`, plus a random prefix of the writes issued after it with the
//! first write past that prefix torn at a random byte; directory entries as of the last
//! `sync_dir`. Size changes (`allocate`, `set_len`) are treated as durable at once, a
//! simplification the WAL does not rely on for correctness (it syncs after both).
//!
//! Only tests and benchmarks use this; it is public so integration tests can reach it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::io::{SegmentFile, Storage};

/// Which operations fail, shared by a storage and all its files.
#[derive(Debug)]
struct Faults {
    /// Writes allowed before one fails; negative: never.
    writes_left: AtomicI64,
    /// Syncs allowed before one fails; negative: never.
    syncs_left: AtomicI64,
    /// Total bytes the "disk" holds; negative: unlimited.
    capacity: AtomicI64,
    /// Bytes all files take now (for `capacity`).
    used: AtomicI64,
    /// Bytes returned by reads so far (tests check what open costs).
    read: AtomicU64,
    /// Once set (by a crash), every operation fails: the old process is gone.
    dead: AtomicBool,
}

impl Faults {
    fn new() -> Self {
        Faults {
            writes_left: AtomicI64::new(-1),
            syncs_left: AtomicI64::new(-1),
            capacity: AtomicI64::new(-1),
            used: AtomicI64::new(0),
            read: AtomicU64::new(0),
            dead: AtomicBool::new(false),
        }
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated power loss: this storage is gone"));
        }
        Ok(())
    }

    /// Counts one call against `left`; errors with EIO when it runs out.
    fn tick(left: &AtomicI64) -> io::Result<()> {
        let prev = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            if v > 0 { Some(v - 1) } else { None }
        });
        match prev {
            Ok(_) => Ok(()),
            Err(v) if v < 0 => Ok(()),
            Err(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
        }
    }
}

#[derive(Debug, Default)]
struct FileState {
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a power loss.
    durable: Vec<u8>,
    /// Writes since the last sync, in issue order.
    pending: Vec<(u64, Vec<u8>)>,
    /// End of the furthest write (zeros included) since creation or the last `set_len`
    /// below it: what a file system's extent map calls written.
    written: usize,
    /// `written` as of the last sync: what a power loss keeps of it.
    durable_written: usize,
}

fn apply(dst: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if dst.len() < end {
        dst.resize(end, 0);
    }
    dst[offset as usize..end].copy_from_slice(data);
}

/// A simulated file.
#[derive(Debug)]
pub struct SimFile {
    state: Mutex<FileState>,
    faults: Arc<Faults>,
}

impl SimFile {
    /// Accounts a size change from `old` to `new` bytes, refusing growth past the capacity.
    fn resize_allowed(&self, old: usize, new: usize) -> io::Result<()> {
        let delta = new as i64 - old as i64;
        let cap = self.faults.capacity.load(Ordering::SeqCst);
        let r = self.faults.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
            if delta > 0 && cap >= 0 && used + delta > cap { None } else { Some(used + delta) }
        });
        r.map(|_| ()).map_err(|_| io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

impl SegmentFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.faults.check_alive()?;
        let st = self.state.lock();
        let off = offset as usize;
        if off >= st.current.len() {
            return Ok(0);
        }
        let n = buf.len().min(st.current.len() - off);
        buf[..n].copy_from_slice(&st.current[off..off + n]);
        self.faults.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.faults.check_alive()?;
        Faults::tick(&self.faults.writes_left)?;
        let mut st = self.state.lock();
        let new_len = st.current.len().max(offset as usize + buf.len());
        self.resize_allowed(st.current.len(), new_len)?;
        apply(&mut st.current, offset, buf);
        st.pending.push((offset, buf.to_vec()));
        st.written = st.written.max(offset as usize + buf.len());
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check_alive()?;
        Faults::tick(&self.faults.syncs_left)?;
        let mut st = self.state.lock();
        let pending = std::mem::take(&mut st.pending);
        for (off, data) in &pending {
            apply(&mut st.durable, *off, data);
        }
        st.durable_written = st.written;
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.faults.check_alive()?;
        let mut st = self.state.lock();
        let len = len as usize;
        self.resize_allowed(st.current.len(), st.current.len().max(len))?;
        if st.current.len() < len {
            st.current.resize(len, 0);
        }
        if st.durable.len() < len {
            st.durable.resize(len, 0);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check_alive()?;
        let mut st = self.state.lock();
        let len = len as usize;
        self.resize_allowed(st.current.len(), len)?;
        st.current.resize(len, 0);
        st.durable.resize(len, 0);
        st.written = st.written.min(len);
        st.durable_written = st.durable_written.min(len);
        // Pending writes past the new end must not resurrect bytes on a crash.
        for (off, data) in &mut st.pending {
            let end = (*off as usize).saturating_add(data.len());
            if end > len {
                data.truncate(len.saturating_sub(*off as usize));
            }
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.faults.check_alive()?;
        Ok(self.state.lock().current.len() as u64)
    }

    /// What FIEMAP answers: the end of the 4 KiB block holding the furthest byte ever
    /// written, zeros included (a zero-filled segment is written space), or the last nonzero
    /// byte where that is further (after a simulated power loss, which forgets what was
    /// written).
    fn zeros_from(&self) -> Option<u64> {
        let st = self.state.lock();
        let end = st.current.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        Some((end.max(st.written).next_multiple_of(4096)).min(st.current.len()) as u64)
    }
}

#[derive(Debug, Default)]
struct Namespace {
    /// Names a process sees now.
    current: HashMap<PathBuf, Arc<SimFile>>,
    /// Names as of the last `sync_dir`.
    durable: HashMap<PathBuf, Arc<SimFile>>,
}

/// The simulated file system. Cheap to clone: clones share state.
#[derive(Clone, Debug)]
pub struct SimStorage {
    ns: Arc<Mutex<Namespace>>,
    faults: Arc<Faults>,
}

impl Default for SimStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl SimStorage {
    /// An empty file system with no faults planned.
    pub fn new() -> Self {
        SimStorage {
            ns: Arc::new(Mutex::new(Namespace::default())),
            faults: Arc::new(Faults::new()),
        }
    }

    /// The next `n` writes succeed, the one after fails with EIO (and all later ones too until
    /// [`SimStorage::clear_faults`]). `n` counts from now.
    pub fn fail_write_after(&self, n: u64) {
        self.faults.writes_left.store(n as i64, Ordering::SeqCst);
    }

    /// The next `n` syncs succeed, the one after fails with EIO (and all later ones).
    pub fn fail_sync_after(&self, n: u64) {
        self.faults.syncs_left.store(n as i64, Ordering::SeqCst);
    }

    /// The disk holds `bytes` in total; growing a file past that fails with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.faults.capacity.store(bytes.map_or(-1, |b| b as i64), Ordering::SeqCst);
    }

    /// Bytes all files take now.
    pub fn used_bytes(&self) -> u64 {
        self.faults.used.load(Ordering::SeqCst).max(0) as u64
    }

    /// Bytes all reads of all files have returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.faults.read.load(Ordering::Relaxed)
    }

    /// Removes every planned fault.
    pub fn clear_faults(&self) {
        self.faults.writes_left.store(-1, Ordering::SeqCst);
        self.faults.syncs_left.store(-1, Ordering::SeqCst);
        self.faults.capacity.store(-1, Ordering::SeqCst);
    }

    /// Loses power. Returns the file system as a restarted machine would find it; this one
    /// (and every file opened through it) fails all operations from now on.
    ///
    /// `rand_below(n)` must return a number in `0..n`; it decides how many unsynced writes of
    /// each file survive and where the first lost one is torn.
    pub fn crash(&self, mut rand_below: impl FnMut(u64) -> u64) -> SimStorage {
        let ns = self.ns.lock();
        self.faults.dead.store(true, Ordering::SeqCst);
        let fresh = SimStorage::new();
        let mut names: Vec<_> = ns.durable.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0)); // deterministic use of the random source
        let mut new_ns = fresh.ns.lock();
        for (path, file) in names {
            let st = file.state.lock();
            let written = st.durable_written;
            let mut content = st.durable.clone();
            let keep = rand_below(st.pending.len() as u64 + 1) as usize;
            for (off, data) in &st.pending[..keep] {
                apply(&mut content, *off, data);
            }
            if let Some((off, data)) = st.pending.get(keep) {
                let torn = rand_below(data.len() as u64 + 1) as usize;
                apply(&mut content, *off, &data[..torn]);
            }
            fresh.faults.used.fetch_add(content.len() as i64, Ordering::SeqCst);
            let f = Arc::new(SimFile {
                state: Mutex::new(FileState {
                    current: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                    written,
                    durable_written: written,
                }),
                faults: fresh.faults.clone(),
            });
            new_ns.current.insert(path.clone(), f.clone());
            new_ns.durable.insert(path.clone(), f);
        }
        drop(new_ns);
        fresh
    }

    /// Current bytes of a file (for tests that damage files on purpose).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        self.ns.lock().current.get(path).map(|f| f.state.lock().current.clone())
    }

    /// Overwrites bytes of a file, durably, bypassing faults (to simulate bit rot).
    pub fn damage(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let ns = self.ns.lock();
        let f = ns.current.get(path).expect("no such simulated file");
        let mut st = f.state.lock();
        apply(&mut st.current, offset, bytes);
        apply(&mut st.durable, offset, bytes);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        self.faults.check_alive()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.faults.check_alive()?;
        let ns = self.ns.lock();
        Ok(ns
            .current
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
        self.faults.check_alive()?;
        let mut ns = self.ns.lock();
        if let Some(f) = ns.current.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let f = Arc::new(SimFile {
            state: Mutex::new(FileState::default()),
            faults: self.faults.clone(),
        });
        ns.current.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check_alive()?;
        let mut ns = self.ns.lock();
        let f = ns.current.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        ns.current.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.check_alive()?;
        let mut ns = self.ns.lock();
        let f = ns.current.remove(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        // Like unlinking an open file, the space comes back (tests drop handles promptly).
        let len = f.state.lock().current.len() as i64;
        self.faults.used.fetch_sub(len, Ordering::SeqCst);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.check_alive()?;
        Faults::tick(&self.faults.syncs_left)?;
        let mut ns = self.ns.lock();
        ns.durable.retain(|p, _| p.parent() != Some(dir));
        let entries: Vec<_> = ns
            .current
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, f)| (p.clone(), f.clone()))
            .collect();
        ns.durable.extend(entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_synced_and_tears_unsynced() {
        let s = SimStorage::new();
        let d = Path::new("/d");
        let p = d.join("f");
        let f = s.open(&p, true).unwrap();
        f.write_at(b"aaaa", 0).unwrap();
        f.sync_data().unwrap();
        s.sync_dir(d).unwrap();
        f.write_at(b"bbbb", 4).unwrap();
        f.write_at(b"cccc", 8).unwrap();
        // Keep one unsynced write whole, tear the next after 2 bytes.
        let mut choices = vec![1u64, 2].into_iter();
        let s2 = s.crash(|_| choices.next().unwrap());
        assert_eq!(s2.file_bytes(&p).unwrap(), b"aaaabbbbcc");
        assert!(f.write_at(b"x", 0).is_err(), "old handles die with the power");
    }

    #[test]
    fn crash_forgets_unsynced_names() {
        let s = SimStorage::new();
        let d = Path::new("/d");
        let f = s.open(&d.join("a"), true).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        let s2 = s.crash(|_| 0);
        assert!(s2.list(d).unwrap().is_empty());
    }

    #[test]
    fn faults_fire_after_n_calls() {
        let s = SimStorage::new();
        let f = s.open(Path::new("/d/f"), true).unwrap();
        s.fail_sync_after(1);
        f.sync_data().unwrap();
        assert!(f.sync_data().is_err());
        s.clear_faults();
        s.set_capacity(Some(10));
        f.write_at(&[1; 10], 0).unwrap();
        let e = f.write_at(&[1; 1], 10).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }
}
