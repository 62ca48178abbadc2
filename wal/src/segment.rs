//! Segment files: naming, creation, and the background thread that preallocates the next one.
//!
//! A segment is named `<seq>-<first_index>.wal`, both 16 lowercase hex digits (like etcd's
//! `<seq>-<index>.wal`), so `ls` shows their order and where each starts. A segment is prepared
//! ahead of time as `<seq>.wal.tmp` (created, `fallocate`d to the segment size, synced) by the
//! preallocator thread; the writer renames it into place when the active segment fills, so
//! roll-over costs a rename and a directory fsync, never an allocation.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{Receiver, Sender, bounded};

use crate::codec::{self, Record, SegmentHeader};
use crate::hard_state::HardState;
use crate::io::{SegmentFile, Storage};

/// File name of segment `seq` whose first entry is `first_index`.
pub(crate) fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// Name of a segment being prepared.
pub(crate) fn tmp_name(seq: u64) -> String {
    format!("{seq:016x}.wal.tmp")
}

/// Parses `<seq>-<first_index>.wal`.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(seq, 16).ok()?, u64::from_str_radix(first, 16).ok()?))
}

/// A segment of the log, open.
#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn SegmentFile>,
}

/// Appends what every segment starts with: its header and the hard state current when it was
/// started, so a segment never depends on an older one for the hard state and old segments can
/// be deleted.
pub(crate) fn preamble(seq: u64, first_index: u64, hs: HardState, out: &mut Vec<u8>) {
    out.extend_from_slice(&SegmentHeader { seq, first_index }.encode());
    codec::encode(&Record::HardState(hs), out);
}

/// A preallocated segment not yet in use.
pub(crate) struct Spare {
    pub(crate) seq: u64,
    pub(crate) tmp_path: PathBuf,
    pub(crate) file: Arc<dyn SegmentFile>,
}

/// Creates `<seq>.wal.tmp` with `size` bytes reserved, durably. `zero_fill`: also write the
/// zeros (for the direct backend, whose writes must not convert unwritten extents, a metadata
/// change an `O_DIRECT` + `RWF_DSYNC` write would have to commit each time).
pub(crate) fn prepare(
    storage: &dyn Storage,
    dir: &Path,
    seq: u64,
    size: u64,
    zero_fill: bool,
) -> io::Result<Spare> {
    let tmp_path = dir.join(tmp_name(seq));
    let file = storage.open(&tmp_path, true)?;
    let r = file
        .set_len(0)
        .and_then(|()| file.allocate(size))
        .and_then(|()| if zero_fill { write_zeros(&*file, size) } else { Ok(()) })
        .and_then(|()| file.sync_data());
    if let Err(e) = r {
        drop(file);
        let _ = storage.remove(&tmp_path); // give the space back; the error that matters is `e`
        return Err(e);
    }
    Ok(Spare { seq, tmp_path, file })
}

/// Writes zeros over `[0, size)` of `file`, 1 MiB at a time.
fn write_zeros(file: &dyn SegmentFile, size: u64) -> io::Result<()> {
    let zeros = vec![0u8; (1usize << 20).min(size as usize)];
    let mut at = 0u64;
    while at < size {
        let n = zeros.len().min((size - at) as usize);
        crate::io::write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Gives a spare its final name, durably (the directory is synced). Its header is written by
/// the caller together with the first records.
pub(crate) fn activate(
    storage: &dyn Storage,
    dir: &Path,
    spare: Spare,
    first_index: u64,
) -> io::Result<Segment> {
    let path = dir.join(segment_name(spare.seq, first_index));
    storage.rename(&spare.tmp_path, &path)?;
    storage.sync_dir(dir)?;
    Ok(Segment { seq: spare.seq, path, file: spare.file })
}

/// The thread preparing the next segment while the writer fills the current one.
pub(crate) struct Preallocator {
    requests: Option<Sender<u64>>,
    ready: Receiver<io::Result<Spare>>,
    /// Sequence number requested and not yet taken.
    requested: Option<u64>,
    handle: Option<JoinHandle<()>>,
}

impl Preallocator {
    pub(crate) fn start(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        size: u64,
        zero_fill: bool,
    ) -> io::Result<Self> {
        let (req_tx, req_rx) = bounded::<u64>(1);
        let (ready_tx, ready_rx) = bounded(1);
        let handle = std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || {
            for seq in req_rx {
                let r = prepare(&*storage, &dir, seq, size, zero_fill);
                if ready_tx.send(r).is_err() {
                    return;
                }
            }
        })?;
        Ok(Preallocator {
            requests: Some(req_tx),
            ready: ready_rx,
            requested: None,
            handle: Some(handle),
        })
    }

    /// Starts preparing segment `seq` in the background.
    pub(crate) fn request(&mut self, seq: u64) {
        debug_assert!(self.requested.is_none());
        if let Some(tx) = &self.requests
            && tx.send(seq).is_ok()
        {
            self.requested = Some(seq);
        }
    }

    /// The spare for segment `seq`, waiting for it if it is still being prepared.
    pub(crate) fn take(&mut self, seq: u64) -> io::Result<Spare> {
        if self.requested.is_none() {
            self.request(seq);
        }
        let requested = self.requested.take();
        assert_eq!(requested, Some(seq), "preallocator asked for segment {seq} out of order");
        self.ready.recv().map_err(|_| io::Error::other("wal preallocator thread is gone"))?
    }
}

impl Drop for Preallocator {
    fn drop(&mut self) {
        self.requests = None; // ends the thread's loop
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimStorage;

    #[test]
    fn names_roundtrip_and_sort_by_seq() {
        let n = segment_name(3, 0x1234);
        assert_eq!(n, "0000000000000003-0000000000001234.wal");
        assert_eq!(parse_segment_name(&n), Some((3, 0x1234)));
        assert!(segment_name(9, 1) < segment_name(10, 1));
        assert_eq!(parse_segment_name("0000000000000003.wal.tmp"), None);
        assert_eq!(parse_segment_name("3-4.wal"), None);
        assert_eq!(parse_segment_name("zzzzzzzzzzzzzzzz-0000000000000001.wal"), None);
    }

    #[test]
    fn preallocator_prepares_and_activate_renames() {
        let s = SimStorage::new();
        let dir = PathBuf::from("/w");
        let mut p = Preallocator::start(Arc::new(s.clone()), dir.clone(), 4096, false).unwrap();
        p.request(1);
        let spare = p.take(1).unwrap();
        assert_eq!(spare.file.len().unwrap(), 4096);
        assert_eq!(s.list(&dir).unwrap(), vec![tmp_name(1)]);
        let seg = activate(&s, &dir, spare, 77).unwrap();
        assert_eq!(s.list(&dir).unwrap(), vec![segment_name(1, 77)]);
        assert_eq!(seg.seq, 1);
        // Taking without a request prepares synchronously.
        assert_eq!(p.take(2).unwrap().seq, 2);
    }

    #[test]
    fn failed_preallocation_frees_the_file() {
        let s = SimStorage::new();
        s.set_capacity(Some(1000));
        let e = prepare(&s, Path::new("/w"), 1, 4096, false).err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(s.list(Path::new("/w")).unwrap().is_empty());
    }
}
