//! All byte encoding of the engine in one place.
//!
//! Keys that must sort as bytes are big-endian; everything else is little-endian.
//!
//! ```text
//! revision key (rev tree):  | main: u64 BE | sub: u64 BE |                     16 bytes
//! meta key (meta tree):     | bucket_len: u8 | bucket | key |
//! record (rev tree value):  | kind: u8 | key_len: u32 LE | key | ...
//!     kind 1 (put):         ... | create_revision: i64 LE | version: i64 LE | lease: i64 LE | value |
//!     kind 2 (tombstone):   (nothing more)
//! ```

use crate::revision::Revision;

/// Length of an encoded revision key.
pub const REV_KEY_LEN: usize = 16;

pub const RECORD_PUT: u8 = 1;
pub const RECORD_TOMBSTONE: u8 = 2;
/// Where a record's key starts (after its kind and key length).
pub const RECORD_KEY_OFFSET: usize = 5;

/// Encodes a revision so that byte order is revision order (main and sub are never negative).
pub fn encode_rev(rev: Revision) -> [u8; REV_KEY_LEN] {
    debug_assert!(rev.main >= 0 && rev.sub >= 0, "negative revision {rev}");
    let mut out = [0u8; REV_KEY_LEN];
    out[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(rev.sub as u64).to_be_bytes());
    out
}

/// Decodes a revision key; `None` if it is not 16 bytes.
pub fn decode_rev(bytes: &[u8]) -> Option<Revision> {
    if bytes.len() != REV_KEY_LEN {
        return None;
    }
    Some(Revision {
        main: u64::from_be_bytes(bytes[..8].try_into().ok()?) as i64,
        sub: u64::from_be_bytes(bytes[8..].try_into().ok()?) as i64,
    })
}

/// Encodes a side-bucket key. Bucket names are at most 255 bytes.
pub fn encode_meta_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    assert!(bucket.len() <= 255, "bucket name longer than 255 bytes: {bucket}");
    let mut out = Vec::with_capacity(1 + bucket.len() + key.len());
    out.push(bucket.len() as u8);
    out.extend_from_slice(bucket.as_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits a side-bucket key into bucket name and key.
pub fn decode_meta_key(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = *bytes.first()? as usize;
    let bucket = std::str::from_utf8(bytes.get(1..1 + len)?).ok()?;
    Some((bucket, &bytes[1 + len..]))
}

/// A decoded record: one version of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: &'a [u8],
    /// `None` for a tombstone.
    pub put: Option<PutFields<'a>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutFields<'a> {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

/// Encodes a put record.
pub fn encode_put(
    key: &[u8],
    create_revision: i64,
    version: i64,
    lease: i64,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + key.len() + 24 + value.len());
    out.push(RECORD_PUT);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&lease.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Encodes a tombstone record.
pub fn encode_tombstone(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + key.len());
    out.push(RECORD_TOMBSTONE);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out
}

/// Decodes a record; `None` if malformed.
pub fn decode_record(bytes: &[u8]) -> Option<Record<'_>> {
    let kind = *bytes.first()?;
    let key_len = u32::from_le_bytes(bytes.get(1..5)?.try_into().ok()?) as usize;
    let key = bytes.get(5..5usize.checked_add(key_len)?)?;
    let rest = &bytes[5 + key_len..];
    match kind {
        RECORD_TOMBSTONE if rest.is_empty() => Some(Record { key, put: None }),
        RECORD_PUT if rest.len() >= 24 => Some(Record {
            key,
            put: Some(PutFields {
                create_revision: get_i64(rest, 0),
                version: get_i64(rest, 8),
                lease: get_i64(rest, 16),
                value: &rest[24..],
            }),
        }),
        _ => None,
    }
}

#[inline]
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
#[inline]
pub fn get_i64(b: &[u8], at: usize) -> i64 {
    get_u64(b, at) as i64
}
#[inline]
pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_sort_as_revisions() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(255, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, 0),
        ];
        for w in revs.windows(2) {
            assert!(encode_rev(w[0]) < encode_rev(w[1]), "{} vs {}", w[0], w[1]);
            assert_eq!(decode_rev(&encode_rev(w[0])), Some(w[0]));
        }
        assert_eq!(decode_rev(&[1, 2, 3]), None);
    }

    #[test]
    fn records_round_trip() {
        let put = encode_put(b"foo", 7, 3, 99, b"bar");
        let r = decode_record(&put).unwrap();
        assert_eq!(r.key, b"foo");
        let p = r.put.unwrap();
        assert_eq!((p.create_revision, p.version, p.lease, p.value), (7, 3, 99, &b"bar"[..]));
        let tomb = encode_tombstone(b"foo");
        assert_eq!(decode_record(&tomb), Some(Record { key: b"foo", put: None }));
        assert_eq!(decode_record(&tomb[..4]), None);
        assert_eq!(decode_record(&[9, 0, 0, 0, 0]), None);
    }

    #[test]
    fn meta_keys_group_by_bucket() {
        let k = encode_meta_key("lease", b"\x01\x02");
        assert_eq!(decode_meta_key(&k), Some(("lease", &b"\x01\x02"[..])));
        assert!(encode_meta_key("a", b"zzz") < encode_meta_key("b", b""));
    }
}
