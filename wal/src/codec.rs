//! Every byte the WAL persists is encoded and decoded here: record frames and segment headers.
//!
//! ```text
//! Record frame (all integers little-endian):
//! +-----------+--------------+---------+-----------------+
//! | len: u32  | crc32c: u32  | type:u8 | body: len bytes |
//! +-----------+--------------+---------+-----------------+
//!   crc32c covers len (4 bytes), type (1 byte) and body, in that order.
//!
//! Bodies by type:
//!   1 Entry      | index: u64 | data: len - 8 bytes |
//!   2 HardState  | term: u64 | vote: u64 | commit: u64 |
//!   3 Truncate   | index: u64 |   entries >= index are dropped; the next entry gets index
//!   4 Compact    | index: u64 |   the log is empty; the next entry gets index
//!
//! A frame header of nine zero bytes (len 0, crc 0, type 0) marks the end of the written part
//! of a segment: segments are preallocated, so unwritten space reads as zeros.
//!
//! Segment header (40 bytes, at offset 0 of every segment file):
//! +--------------+-------------+-----------+----------+------------------+-------------+-----------+
//! | magic: 8 B   | version:u32 | flags:u32 | seq: u64 | first_index: u64 | crc32c: u32 | zero: u32 |
//! +--------------+-------------+-----------+----------+------------------+-------------+-----------+
//!   magic = "LBKWAL\r\n", version = 1, flags = 0, crc32c covers bytes 0..32.
//!   first_index is the index the next entry would get when the segment was started.
//! ```

use crate::hard_state::HardState;

/// Bytes of a frame header: `len`, `crc32c`, `type`.
pub const FRAME_HEADER_LEN: usize = 9;
/// Largest body a frame may carry (256 MiB). Anything larger in a header is corruption.
pub const MAX_BODY_LEN: usize = 1 << 28;
/// Largest entry data: the body also holds the 8-byte index.
pub const MAX_RECORD_LEN: usize = MAX_BODY_LEN - 8;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 40;
/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LBKWAL\r\n";
/// Format version written in every segment header.
pub const FORMAT_VERSION: u32 = 1;

/// Frame type bytes. 0 is never written: it is what preallocated space reads as.
pub const TYPE_ENTRY: u8 = 1;
/// See [`TYPE_ENTRY`].
pub const TYPE_HARD_STATE: u8 = 2;
/// See [`TYPE_ENTRY`].
pub const TYPE_TRUNCATE: u8 = 3;
/// See [`TYPE_ENTRY`].
pub const TYPE_COMPACT: u8 = 4;

/// Bytes the frame of an entry with `data_len` bytes of data takes.
pub const fn entry_frame_len(data_len: usize) -> usize {
    FRAME_HEADER_LEN + 8 + data_len
}

/// One decoded record, borrowing its data from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A log entry with its index.
    Entry {
        /// The entry's index.
        index: u64,
        /// The opaque data the caller appended.
        data: &'a [u8],
    },
    /// A new hard state.
    HardState(HardState),
    /// Drop every entry with an index `>= index`; the next entry gets `index`.
    Truncate {
        /// First dropped index.
        index: u64,
    },
    /// The log is now empty and the next entry gets `index` (a snapshot covers everything
    /// before it).
    Compact {
        /// The next index.
        index: u64,
    },
}

/// What [`decode`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid frame of `frame_len` bytes.
    Record {
        /// The record.
        record: Record<'a>,
        /// Bytes the whole frame takes (header and body).
        frame_len: usize,
    },
    /// A zero frame header (or only zero bytes left): the end of the written log.
    End,
    /// The buffer ends inside the frame: a torn write if this is the end of the file.
    Incomplete,
    /// The frame is not valid (bad checksum, unknown type, impossible length).
    Invalid(&'static str),
}

/// Decodes the frame at the start of `buf`. Never panics, whatever the bytes.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    decode_inner(buf, true)
}

/// [`decode`] for a frame [`checked_prefix`] already covered: the checksum is not computed
/// again. Every other check is made.
pub fn decode_prechecked(buf: &[u8]) -> Decoded<'_> {
    decode_inner(buf, false)
}

fn decode_inner(buf: &[u8], check_crc: bool) -> Decoded<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) { Decoded::End } else { Decoded::Incomplete };
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let ty = buf[8];
    if len == 0 && crc == 0 && ty == 0 {
        return Decoded::End;
    }
    if !(TYPE_ENTRY..=TYPE_COMPACT).contains(&ty) {
        return Decoded::Invalid("unknown record type");
    }
    if len > MAX_BODY_LEN {
        return Decoded::Invalid("record length exceeds the maximum");
    }
    let frame_len = FRAME_HEADER_LEN + len;
    if buf.len() < frame_len {
        return Decoded::Incomplete;
    }
    if check_crc && checksum_of(&buf[..frame_len]) != crc {
        return Decoded::Invalid("checksum mismatch");
    }
    let body = &buf[FRAME_HEADER_LEN..frame_len];
    let u64_at = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let record = match ty {
        TYPE_ENTRY if len >= 8 => Record::Entry { index: u64_at(body, 0), data: &body[8..] },
        TYPE_HARD_STATE if len == 24 => Record::HardState(HardState {
            term: u64_at(body, 0),
            vote: u64_at(body, 8),
            commit: u64_at(body, 16),
        }),
        TYPE_TRUNCATE if len == 8 => Record::Truncate { index: u64_at(body, 0) },
        TYPE_COMPACT if len == 8 => Record::Compact { index: u64_at(body, 0) },
        _ => return Decoded::Invalid("body length does not fit the record type"),
    };
    Decoded::Record { record, frame_len }
}

/// Bytes [`decode`] needs to see to judge the frame at the start of `buf`: the whole frame if
/// its header is there and its length is possible, else the header. Lets a reader that holds
/// part of a file fetch exactly what is missing.
pub fn needed_len(buf: &[u8]) -> usize {
    match buf.get(0..4) {
        Some(b) if buf.len() >= FRAME_HEADER_LEN => {
            let len = u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
            if len <= MAX_BODY_LEN { FRAME_HEADER_LEN + len } else { FRAME_HEADER_LEN }
        }
        _ => FRAME_HEADER_LEN,
    }
}

/// The checksum a whole frame should carry: over `len` and then, in one call, the adjacent
/// type byte and body.
fn checksum_of(frame: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..])
}

/// The stored checksum of a whole frame.
fn stored_checksum(frame: &[u8]) -> u32 {
    u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"))
}

/// Length of the complete, non-end frame at the start of `buf`, if there is one whose length
/// is possible (its checksum and type are not looked at).
fn complete_frame_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..FRAME_HEADER_LEN)?;
    if header.iter().all(|&b| b == 0) {
        return None;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    (len <= MAX_BODY_LEN && FRAME_HEADER_LEN + len <= buf.len()).then_some(FRAME_HEADER_LEN + len)
}

/// Bytes at the start of `buf` covered by complete frames whose checksums match, stopping at
/// the first frame that is incomplete, an end marker or fails its checksum. Frames in that
/// prefix may be decoded with [`decode_prechecked`].
///
/// Why: a frame's checksum is a chain of dependent CRC instructions, each waiting for the
/// previous one (the crc32c crate interleaves only within buffers of 768 bytes and more). Here
/// three frames are checked side by side, so the CPU runs three chains at once; replay of
/// small records is bound by exactly this.
pub fn checked_prefix(buf: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        let mut frames: [&[u8]; 3] = [&[]; 3];
        let mut n = 0;
        let mut end = pos;
        while n < 3
            && let Some(len) = complete_frame_len(&buf[end..])
        {
            frames[n] = &buf[end..end + len];
            end += len;
            n += 1;
        }
        let sums = if n == 3 {
            checksums3(frames)
        } else {
            [0, 1, 2].map(|k| if k < n { checksum_of(frames[k]) } else { 0 })
        };
        for (frame, sum) in frames[..n].iter().zip(sums) {
            if stored_checksum(frame) != sum {
                return pos;
            }
            pos += frame.len();
        }
        if n < 3 {
            return pos;
        }
    }
}

/// [`checksum_of`] three frames at once.
fn checksums3(frames: [&[u8]; 3]) -> [u32; 3] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU supports SSE 4.2 (checked just above), the only requirement of
        // `checksums3_sse42` beyond its safe signature.
        return unsafe { checksums3_sse42(frames) };
    }
    frames.map(checksum_of)
}

/// [`checksums3`] with the CRC32C instruction, the three chains interleaved over the longest
/// common multiple of 8 bytes, the rest of each frame finished alone.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn checksums3_sse42(frames: [&[u8]; 3]) -> [u32; 3] {
    use std::arch::x86_64::{_mm_crc32_u8, _mm_crc32_u32, _mm_crc32_u64};
    let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    // The register starts at !0 (the crate's and the format's initial value) and takes the
    // 4 length bytes; the rest of the frame starts after the stored checksum.
    let start = |f: &[u8]| {
        u64::from(_mm_crc32_u32(!0, u32::from_le_bytes(f[0..4].try_into().expect("4 bytes"))))
    };
    let mut regs = frames.map(start);
    let rest = frames.map(|f| &f[8..]);
    let common = rest.iter().map(|r| r.len()).min().expect("three frames") / 8 * 8;
    let words = rest[0][..common]
        .chunks_exact(8)
        .zip(rest[1][..common].chunks_exact(8))
        .zip(rest[2][..common].chunks_exact(8));
    for ((a, b), c) in words {
        regs[0] = _mm_crc32_u64(regs[0], u64_of(a));
        regs[1] = _mm_crc32_u64(regs[1], u64_of(b));
        regs[2] = _mm_crc32_u64(regs[2], u64_of(c));
    }
    let mut out = [0u32; 3];
    for k in 0..3 {
        let tail = &rest[k][common..];
        let mut words = tail.chunks_exact(8);
        let mut r = regs[k];
        for w in &mut words {
            r = _mm_crc32_u64(r, u64_of(w));
        }
        let mut r = r as u32;
        for &b in words.remainder() {
            r = _mm_crc32_u8(r, b);
        }
        out[k] = !r;
    }
    out
}

fn frame_crc(len_le: &[u8], ty: u8, body: &[u8]) -> u32 {
    let c = crc32c::crc32c(len_le);
    let c = crc32c::crc32c_append(c, &[ty]);
    crc32c::crc32c_append(c, body)
}

/// Appends the frame of `record` to `out` and returns its length in bytes.
///
/// # Panics
/// If an entry's data exceeds [`MAX_RECORD_LEN`]; callers check sizes first.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> usize {
    match *record {
        Record::Entry { index, data } => encode_entry(index, data, out),
        Record::HardState(hs) => {
            let mut body = [0u8; 24];
            body[0..8].copy_from_slice(&hs.term.to_le_bytes());
            body[8..16].copy_from_slice(&hs.vote.to_le_bytes());
            body[16..24].copy_from_slice(&hs.commit.to_le_bytes());
            encode_parts(TYPE_HARD_STATE, &body, &[], out)
        }
        Record::Truncate { index } => encode_parts(TYPE_TRUNCATE, &index.to_le_bytes(), &[], out),
        Record::Compact { index } => encode_parts(TYPE_COMPACT, &index.to_le_bytes(), &[], out),
    }
}

/// Appends the frame of one entry to `out` without building a [`Record`]; the hot path.
pub fn encode_entry(index: u64, data: &[u8], out: &mut Vec<u8>) -> usize {
    encode_parts(TYPE_ENTRY, &index.to_le_bytes(), data, out)
}

/// Writes a frame whose body is `head` followed by `tail`: no intermediate buffer.
fn encode_parts(ty: u8, head: &[u8], tail: &[u8], out: &mut Vec<u8>) -> usize {
    let body_len = head.len() + tail.len();
    assert!(body_len <= MAX_BODY_LEN, "record body of {body_len} bytes exceeds the maximum");
    let len_le = (body_len as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(frame_crc(&len_le, ty, head), tail);
    out.reserve(FRAME_HEADER_LEN + body_len);
    out.extend_from_slice(&len_le);
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(ty);
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    FRAME_HEADER_LEN + body_len
}

/// The header at offset 0 of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's sequence number (also in its file name).
    pub seq: u64,
    /// The index the next entry would get when the segment was started (also in its name).
    pub first_index: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // b[12..16]: flags, zero.
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..32]);
        b[32..36].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header; the error says what is wrong.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err("segment shorter than its header");
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        let crc = u32::from_le_bytes(b[32..36].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[0..32]) != crc {
            return Err("segment header checksum mismatch");
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err("unsupported segment format version");
        }
        if b[12..16] != [0; 4] {
            return Err("unsupported segment flags");
        }
        Ok(SegmentHeader {
            seq: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            first_index: u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(r: Record<'_>) {
        let mut buf = Vec::new();
        let n = encode(&r, &mut buf);
        assert_eq!(n, buf.len());
        assert_eq!(decode(&buf), Decoded::Record { record: r, frame_len: n });
    }

    #[test]
    fn every_record_type_roundtrips() {
        roundtrip(Record::Entry { index: 7, data: b"hello" });
        roundtrip(Record::Entry { index: u64::MAX, data: b"" });
        roundtrip(Record::HardState(HardState { term: 3, vote: 2, commit: 1 }));
        roundtrip(Record::Truncate { index: 42 });
        roundtrip(Record::Compact { index: 1 << 40 });
    }

    #[test]
    fn entry_layout_is_as_drawn() {
        let mut buf = Vec::new();
        encode_entry(0x0102, b"ab", &mut buf);
        assert_eq!(buf.len(), entry_frame_len(2));
        assert_eq!(&buf[0..4], &10u32.to_le_bytes()); // 8 index bytes + 2 data bytes
        assert_eq!(buf[8], TYPE_ENTRY);
        assert_eq!(&buf[9..17], &0x0102u64.to_le_bytes());
        assert_eq!(&buf[17..], b"ab");
        let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        let mut covered = buf[0..4].to_vec();
        covered.extend_from_slice(&buf[8..]);
        assert_eq!(crc, crc32c::crc32c(&covered));
    }

    #[test]
    fn zeros_are_the_end() {
        assert_eq!(decode(&[0u8; 100]), Decoded::End);
        assert_eq!(decode(&[0u8; 3]), Decoded::End);
        assert_eq!(decode(&[]), Decoded::End);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let mut buf = Vec::new();
        encode_entry(9, &[0xAB; 40], &mut buf);
        for cut in 1..buf.len() {
            assert_eq!(decode(&buf[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_entry(9, b"some record data", &mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                match decode(&b) {
                    Decoded::Record { .. } => panic!("flip of byte {byte} bit {bit} undetected"),
                    Decoded::End => panic!("flip of byte {byte} bit {bit} read as end"),
                    Decoded::Incomplete | Decoded::Invalid(_) => {}
                }
            }
        }
    }

    #[test]
    fn unknown_type_and_huge_length_are_invalid() {
        let mut buf = Vec::new();
        encode(&Record::Truncate { index: 1 }, &mut buf);
        let mut b = buf.clone();
        b[8] = 9;
        assert_eq!(decode(&b), Decoded::Invalid("unknown record type"));
        let mut b = buf.clone();
        b[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&b), Decoded::Invalid("record length exceeds the maximum"));
    }

    #[test]
    fn body_length_must_fit_type() {
        // A hard state frame with a valid checksum but an 8-byte body.
        let mut buf = Vec::new();
        encode_parts(TYPE_HARD_STATE, &[1u8; 8], &[], &mut buf);
        assert_eq!(decode(&buf), Decoded::Invalid("body length does not fit the record type"));
    }

    /// A run of frames of random sizes (some longer than the crate's interleaving threshold),
    /// and where each starts.
    fn random_frames(rng: &mut impl rand::Rng, n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(buf.len());
            let len = match rng.random_range(0..4) {
                0 => rng.random_range(0..16),
                1 => rng.random_range(16..400),
                2 => 256,
                _ => rng.random_range(400..3000),
            };
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 7 == 3 {
                encode(
                    &Record::HardState(HardState { term: i as u64, vote: 1, commit: 2 }),
                    &mut buf,
                );
            } else {
                encode_entry(i as u64, &data, &mut buf);
            }
        }
        (buf, starts)
    }

    #[test]
    fn three_checksums_at_once_match_the_crate() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..2000 {
            // Random lengths and alignments, as frames sit anywhere in a read buffer.
            let parts: Vec<Vec<u8>> = (0..3)
                .map(|_| {
                    let len = 8 + rng.random_range(0..1200);
                    (0..len).map(|_| rng.random()).collect()
                })
                .collect();
            let offsets: [usize; 3] = std::array::from_fn(|_| rng.random_range(0..8));
            let padded: Vec<Vec<u8>> = parts
                .iter()
                .zip(offsets)
                .map(|(p, o)| [vec![0xEE; o], p.clone()].concat())
                .collect();
            let frames = [0, 1, 2].map(|k| &padded[k][offsets[k]..]);
            assert_eq!(checksums3(frames), frames.map(checksum_of), "seed {seed}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("sse4.2") {
                // SAFETY: SSE 4.2 is present (checked just above).
                let fast = unsafe { checksums3_sse42(frames) };
                assert_eq!(fast, frames.map(checksum_of), "seed {seed}");
            }
        }
    }

    #[test]
    fn checked_prefix_stops_at_the_first_damaged_frame() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for round in 0..300 {
            let n = rng.random_range(0..12);
            let (mut buf, starts) = random_frames(&mut rng, n);
            let end = buf.len();
            buf.extend_from_slice(&[0u8; 20]);
            assert_eq!(checked_prefix(&buf), end, "seed {seed} round {round}");
            // Cut anywhere: the prefix ends at the last frame that is still whole.
            let cut = rng.random_range(0..=end);
            let whole = starts.iter().copied().chain([end]).filter(|&s| s <= cut).max().unwrap();
            assert_eq!(checked_prefix(&buf[..cut]), whole, "seed {seed} round {round} cut {cut}");
            if n == 0 {
                continue;
            }
            // Damage one byte of frame k: the prefix ends at frame k, exactly.
            let k = rng.random_range(0..n);
            let frame_end = starts.get(k + 1).copied().unwrap_or(end);
            let at = rng.random_range(starts[k]..frame_end);
            buf[at] ^= 1 << rng.random_range(0..8);
            assert_eq!(checked_prefix(&buf), starts[k], "seed {seed} round {round} byte {at}");
            for &s in &starts[..k] {
                assert!(matches!(decode_prechecked(&buf[s..]), Decoded::Record { .. }));
            }
        }
    }

    #[test]
    fn segment_header_roundtrips_and_detects_damage() {
        let h = SegmentHeader { seq: 5, first_index: 1234 };
        let b = h.encode();
        assert_eq!(&b[0..8], b"LBKWAL\r\n");
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..36 {
            let mut d = b;
            d[i] ^= 0x40;
            assert!(SegmentHeader::decode(&d).is_err(), "damage at byte {i} undetected");
        }
        assert!(SegmentHeader::decode(&[0u8; SEGMENT_HEADER_LEN]).is_err());
        assert!(SegmentHeader::decode(&b[..20]).is_err());
    }
}
