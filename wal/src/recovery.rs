//! Opening a log: replay every segment, rebuild the index, cut a torn tail, refuse corruption.
//!
//! Rules, in the order they are checked:
//! - `*.wal.tmp` files are segments the preallocator had not handed over: removed.
//! - Segment sequence numbers must be consecutive (compaction only removes from the front).
//! - Each header must be valid and agree with the file name, and its first index must be where
//!   the previous segment's log ends. The last segment may have a torn header (the crash hit
//!   the roll-over's first write): if nothing valid follows, it is removed.
//! - Frames are replayed in order. Zero bytes mark the end of a segment.
//! - In the last segment, a frame that is cut short or fails its checksum is a torn write if no
//!   valid frame follows it: it is cut off (the file is zeroed from there and synced). If a
//!   valid frame does follow, or the damage is in an earlier segment, the log is corrupted and
//!   open fails, naming file and offset: acknowledged data is never dropped silently.
//!
//! Segments are read a chunk at a time, and only up to where the file system says they were
//! ever written ([`SegmentFile::zeros_from`]): the rest is preallocated space known to read as
//! zeros, so open costs what the log holds, not what was preallocated. Past the end of the
//! log, the check that nothing but zeros follows stops after [`ZERO_PROOF`] zero bytes: a
//! segment the direct backend zero-filled is all "written" to the file system, and reading
//! the rest of it would cost the whole preallocated size. The searches for valid frames after
//! damage read the whole segment; they run only when something is wrong.

use std::io;
use std::path::{Path, PathBuf};

use crate::codec::{
    self, Decoded, FRAME_HEADER_LEN, MAX_BODY_LEN, Record, SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::error::{Error, Result};
use crate::hard_state::HardState;
use crate::io::{SegmentFile, Storage, read_full_at};
use crate::layout::{Layout, Loc, LogIndex};
use crate::segment::{Segment, parse_segment_name};

/// What open found on disk.
pub(crate) struct Recovered {
    pub(crate) layout: Layout,
    pub(crate) hard_state: HardState,
    /// Where the next frame goes in the last segment (if any).
    pub(crate) active_pos: u64,
    /// Sequence number and first index for a new first segment if there are no segments.
    pub(crate) fresh_seq: u64,
    pub(crate) fresh_first_index: u64,
}

fn corrupted(file: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupted { file: file.to_path_buf(), offset, reason: reason.into() }
}

/// Position of the first nonzero byte at or after `from`.
pub(crate) fn next_nonzero(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() && !i.is_multiple_of(8) {
        if buf[i] != 0 {
            return Some(i);
        }
        i += 1;
    }
    while i + 8 <= buf.len() {
        let w = u64::from_ne_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        if w != 0 {
            break;
        }
        i += 8;
    }
    buf[i.min(buf.len())..].iter().position(|&b| b != 0).map(|p| i + p)
}

/// Offset of the first valid frame starting after `from`, scanning every byte offset.
/// Every valid frame has a nonzero type byte at offset 8, so only those candidates are tried.
pub(crate) fn find_valid_frame(buf: &[u8], from: usize) -> Option<usize> {
    let mut z = from + 8;
    while let Some(nz) = next_nonzero(buf, z) {
        let q = nz - 8;
        if let Decoded::Record { .. } = codec::decode(&buf[q..]) {
            return Some(q);
        }
        z = nz + 1;
    }
    None
}

/// Bytes recovery reads at a time: large enough that a read costs little per byte, small
/// enough that the chunk is still in the CPU cache when its frames are checked. (Reading a
/// whole 64 MiB segment at once made the copy out of the page cache go to memory and back,
/// and cost three times as much.)
const READ_CHUNK: usize = 1 << 20;

/// Zero bytes past the end of a segment's log after which the rest is taken for never-written
/// preallocated space without reading it. The writer writes a segment front to back, one batch
/// after another, each durable before the next is acknowledged, and the disk sees a later
/// write only after the earlier ones (see `docs/format.md`): what a crash leaves past the end
/// of the log is the torn part of the writes in flight, which begin at the end. A write is at
/// most `max_batch_bytes` (4 MiB by default) unless one call alone is larger, so twice that
/// of zeros means the writes in flight left nothing further on. (Torn bytes found within it
/// are cut off as before, with the whole rest of the file zeroed.)
pub(crate) const ZERO_PROOF: u64 = 8 << 20;

/// A segment read front to back a chunk at a time. Bytes at or past `zeros_from` are known to
/// read as zeros (the file system said so) and are not read.
struct SegmentReader<'a> {
    file: &'a dyn SegmentFile,
    len: u64,
    zeros_from: u64,
    buf: &'a mut Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Bytes of `buf` that hold the file.
    filled: usize,
}

impl<'a> SegmentReader<'a> {
    fn new(file: &'a dyn SegmentFile, len: u64, zeros_from: u64, buf: &'a mut Vec<u8>) -> Self {
        SegmentReader { file, len, zeros_from: zeros_from.min(len), buf, start: 0, filled: 0 }
    }

    /// The file from `pos` on: at least `want` bytes unless the file ends first, maybe more.
    /// `pos` never goes back before an earlier call's `pos`.
    fn at(&mut self, pos: u64, want: usize) -> io::Result<&[u8]> {
        debug_assert!(pos >= self.start, "segment reader moved backwards");
        let end = self.start + self.filled as u64;
        if pos.saturating_add(want as u64) > end && end < self.len {
            self.refill(pos, want)?;
        }
        let from = ((pos - self.start) as usize).min(self.filled);
        Ok(&self.buf[from..self.filled])
    }

    /// Makes `buf` start at `pos` and hold `max(want, READ_CHUNK)` bytes (fewer at the end).
    fn refill(&mut self, pos: u64, want: usize) -> io::Result<()> {
        let end = self.start + self.filled as u64;
        let keep = end.saturating_sub(pos) as usize;
        if keep > 0 {
            let from = (pos - self.start) as usize;
            self.buf.copy_within(from..self.filled, 0);
        }
        let target = want.max(READ_CHUNK).min(self.len.saturating_sub(pos) as usize);
        if self.buf.len() < target {
            self.buf.resize(target, 0);
        }
        (self.start, self.filled) = (pos, keep);
        let from = pos + keep as u64;
        let stop = pos + target as u64;
        let read_stop = stop.min(self.zeros_from).max(from);
        if from < read_stop {
            let n = (read_stop - from) as usize;
            let got = read_full_at(self.file, &mut self.buf[keep..keep + n], from)?;
            self.filled = keep + got;
            if got < n {
                // The file is shorter than it said: it ends here.
                self.len = from + got as u64;
                self.zeros_from = self.zeros_from.min(self.len);
                return Ok(());
            }
        }
        self.buf[(read_stop - pos) as usize..target].fill(0);
        self.filled = target;
        Ok(())
    }

    /// Offset of the first nonzero byte in `[pos, pos + within)` (and before `zeros_from`).
    fn first_nonzero(&mut self, mut pos: u64, within: u64) -> io::Result<Option<u64>> {
        let stop = self.zeros_from.min(pos.saturating_add(within));
        while pos < stop {
            let limit = (stop - pos) as usize;
            let chunk = self.at(pos, 1)?;
            let chunk = &chunk[..chunk.len().min(limit)];
            if chunk.is_empty() {
                break;
            }
            if let Some(i) = next_nonzero(chunk, 0) {
                return Ok(Some(pos + i as u64));
            }
            pos += chunk.len() as u64;
        }
        Ok(None)
    }

    /// The whole file in one buffer, for the slow paths that search it for valid frames.
    fn whole(&self) -> io::Result<Vec<u8>> {
        let mut all = vec![0u8; self.len as usize];
        let got = read_full_at(self.file, &mut all[..self.zeros_from as usize], 0)?;
        if got < self.zeros_from as usize {
            all.truncate(got);
        }
        Ok(all)
    }
}

/// Replays the log in `dir`.
pub(crate) fn recover(storage: &dyn Storage, dir: &Path) -> Result<Recovered> {
    let mut segs: Vec<(u64, u64, PathBuf)> = Vec::new();
    for name in storage.list(dir)? {
        if name.ends_with(".wal.tmp") {
            storage.remove(&dir.join(&name))?;
        } else if let Some((seq, first)) = parse_segment_name(&name) {
            segs.push((seq, first, dir.join(&name)));
        }
    }
    segs.sort_by_key(|s| s.0);
    for w in segs.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(corrupted(
                &w[1].2,
                0,
                format!("segment sequence gap: segment {} follows segment {}", w[1].0, w[0].0),
            ));
        }
    }

    let mut layout = Layout::default();
    let mut index: Option<LogIndex> = None;
    let mut hs = HardState::default();
    let mut active_pos = 0;
    let (mut fresh_seq, mut fresh_first_index) = (0, 1);
    // Reused across segments: one chunk, not a whole segment.
    let mut buf = Vec::new();
    let n = segs.len();
    for (i, (seq, first, path)) in segs.into_iter().enumerate() {
        let last = i + 1 == n;
        let file = storage.open(&path, false)?;
        let len = file.len()?;
        let zeros_from = file.zeros_from().unwrap_or(len);
        let mut rd = SegmentReader::new(&*file, len, zeros_from, &mut buf);

        let header = match SegmentHeader::decode(rd.at(0, SEGMENT_HEADER_LEN)?) {
            Ok(h) => h,
            Err(reason) => {
                if last && find_valid_frame(&rd.whole()?, 0).is_none() {
                    // The crash hit the roll-over: the new segment's first write never made it.
                    tracing::warn!(file = %path.display(), "wal: removing a torn new segment");
                    drop(file);
                    storage.remove(&path)?;
                    storage.sync_dir(dir)?;
                    (fresh_seq, fresh_first_index) = (seq, first);
                    continue;
                }
                return Err(corrupted(&path, 0, reason));
            }
        };
        if header.seq != seq || header.first_index != first {
            return Err(corrupted(&path, 0, "segment header does not match the file name"));
        }
        let ix = index.get_or_insert_with(|| LogIndex::empty_at(first));
        if ix.next() != first {
            return Err(corrupted(
                &path,
                0,
                format!(
                    "segment starts at index {first} but the log before it ends at {}",
                    ix.next()
                ),
            ));
        }

        let mut pos = SEGMENT_HEADER_LEN as u64;
        // Frames before this offset had their checksums verified, a window at a time.
        let mut checked_to = pos;
        let bad = loop {
            let need = codec::needed_len(rd.at(pos, FRAME_HEADER_LEN)?);
            let window = rd.at(pos, need)?;
            if pos >= checked_to {
                checked_to = pos + codec::checked_prefix(window) as u64;
            }
            let decoded = if pos < checked_to {
                codec::decode_prechecked(window)
            } else {
                codec::decode(window)
            };
            match decoded {
                Decoded::Record { record, frame_len } => {
                    apply(ix, &mut hs, record, seq, pos).map_err(|r| corrupted(&path, pos, r))?;
                    pos += frame_len as u64;
                }
                Decoded::End => break None,
                Decoded::Incomplete => break Some("record cut short"),
                Decoded::Invalid(reason) => break Some(reason),
            }
        };
        // The common case ends here: zeros (read, or known without reading) up to the end,
        // or for `ZERO_PROOF` bytes.
        let damaged = bad.is_some() || rd.first_nonzero(pos, ZERO_PROOF)?.is_some();
        if damaged {
            let buf = rd.whole()?;
            let pos = pos as usize;
            // Where anything that could be a later valid frame starts.
            let from = match bad {
                None => pos + 1,
                Some(_) => {
                    // Skip the damaged frame's own body if its length is believable: a torn
                    // frame's data may itself contain bytes that look like a frame.
                    let len = buf.get(pos..pos + 4).map_or(usize::MAX, |b| {
                        u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize
                    });
                    if len <= MAX_BODY_LEN && pos + FRAME_HEADER_LEN + len <= buf.len() {
                        pos + FRAME_HEADER_LEN + len
                    } else {
                        pos + 1
                    }
                }
            };
            let reason = bad.unwrap_or("nonzero bytes after the end of the log");
            if !last {
                return Err(corrupted(
                    &path,
                    pos as u64,
                    format!("{reason} (not in the last segment)"),
                ));
            }
            if let Some(q) = find_valid_frame(&buf, from) {
                return Err(corrupted(
                    &path,
                    pos as u64,
                    format!("{reason}, but a valid record follows at offset {q}"),
                ));
            }
            tracing::warn!(
                file = %path.display(), offset = pos, reason,
                "wal: cutting off a torn write at the end of the log"
            );
            file.set_len(pos as u64)?;
            file.allocate(len)?;
            file.sync_data()?;
        }
        // The last segment kept is the active one (a torn new segment after it was removed).
        active_pos = pos;
        layout.segments.push_back(Segment { seq, path, file });
    }
    if let Some(ix) = index {
        if layout.segments.is_empty() {
            (fresh_seq, fresh_first_index) = (fresh_seq, ix.next());
        }
        layout.index = ix;
    } else {
        layout.index = LogIndex::empty_at(fresh_first_index);
    }
    if let Some(s) = layout.segments.back() {
        fresh_seq = s.seq + 1;
    }
    tracing::info!(
        dir = %dir.display(),
        segments = layout.segments.len(),
        first_index = layout.index.first(),
        last_index = layout.index.next() - 1,
        "wal: recovered"
    );
    Ok(Recovered { layout, hard_state: hs, active_pos, fresh_seq, fresh_first_index })
}

/// Applies one replayed record; the error is why it cannot follow what came before.
fn apply(
    ix: &mut LogIndex,
    hs: &mut HardState,
    record: Record<'_>,
    seq: u64,
    pos: u64,
) -> Result<(), String> {
    match record {
        Record::Entry { index, data } => {
            if index != ix.next() {
                return Err(format!("entry {index} where entry {} was expected", ix.next()));
            }
            ix.push(index, Loc::new(seq, pos, data.len()));
        }
        Record::HardState(h) => *hs = h,
        Record::Truncate { index } => {
            if index > ix.next() {
                return Err(format!(
                    "truncation at {index} past the end of the log at {}",
                    ix.next()
                ));
            }
            ix.truncate(index);
        }
        Record::Compact { index } => {
            if index >= ix.next() {
                ix.reset(index);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_nonzero_finds_every_position() {
        for len in [0usize, 1, 7, 8, 9, 31, 64] {
            for at in 0..len {
                let mut b = vec![0u8; len];
                b[at] = 1;
                for from in 0..=at {
                    assert_eq!(next_nonzero(&b, from), Some(at), "len {len} at {at} from {from}");
                }
                assert_eq!(next_nonzero(&b, at + 1), None);
            }
            assert_eq!(next_nonzero(&vec![0u8; len], 0), None);
        }
    }

    #[test]
    fn segment_reader_serves_any_window_and_trusts_zeros_from() {
        use crate::io::Storage;
        let s = crate::sim::SimStorage::new();
        let f = s.open(Path::new("/f"), true).unwrap();
        let len = 3 * READ_CHUNK + 12345;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8 | 1).collect();
        crate::io::write_all_at(&*f, &data, 0).unwrap();
        let zeros_from = 2 * READ_CHUNK as u64 + 7;
        // The file is not zero past `zeros_from`, but the reader must act as if it were
        // (and not read it).
        let expect = |i: usize| if (i as u64) < zeros_from { data[i] } else { 0 };
        let mut buf = Vec::new();
        let mut rd = SegmentReader::new(&*f, len as u64, zeros_from, &mut buf);
        let mut pos = 0usize;
        for want in [9, 40, READ_CHUNK - 3, 17, 2 * READ_CHUNK + 100, 1, 5000, len] {
            let got = rd.at(pos as u64, want).unwrap();
            assert!(got.len() >= want.min(len - pos), "pos {pos} want {want}: {}", got.len());
            for (k, &b) in got.iter().enumerate() {
                assert_eq!(b, expect(pos + k), "pos {pos} want {want} byte {k}");
            }
            pos = (pos + want / 2 + 1).min(len);
        }
        assert_eq!(s.bytes_read(), zeros_from, "read past zeros_from or twice");
        let mut buf = Vec::new();
        let mut rd = SegmentReader::new(&*f, len as u64, zeros_from, &mut buf);
        assert_eq!(rd.first_nonzero(0, u64::MAX).unwrap(), Some(0));
        assert_eq!(rd.first_nonzero(zeros_from, u64::MAX).unwrap(), None);
        let whole = rd.whole().unwrap();
        assert_eq!(whole.len(), len);
        assert!((0..len).all(|i| whole[i] == expect(i)));
    }

    #[test]
    fn find_valid_frame_skips_garbage() {
        let mut buf = vec![0u8; 100];
        buf[3] = 0x77; // garbage
        buf[20] = 2;
        let mut frame = Vec::new();
        codec::encode(&Record::Truncate { index: 5 }, &mut frame);
        buf.extend_from_slice(&frame);
        buf.extend_from_slice(&[0u8; 50]);
        assert_eq!(find_valid_frame(&buf, 0), Some(100));
        assert_eq!(find_valid_frame(&buf, 101), None);
    }
}
