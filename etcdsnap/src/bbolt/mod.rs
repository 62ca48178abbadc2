//! bbolt's file format (the B+tree database etcd keeps its backend in): a reader that
//! validates everything it touches, and a streaming writer of compact, freshly packed files.
//!
//! A file is a sequence of fixed-size pages (etcd: the OS page size, 4096). Every page starts
//! with the same header; all integers are little-endian (bbolt writes native order, and every
//! platform etcd ships on is little-endian):
//!
//! ```text
//! page header (16):   | id: u64 | flags: u16 | count: u16 | overflow: u32 |
//!     flags: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist
//!     overflow: how many pages after this one belong to it (one logical page of 1 + overflow)
//!
//! meta page (pages 0 and 1; the valid one with the higher txid wins):
//!     | header | magic: u32 = 0xED0CDAED | version: u32 = 2 | page_size: u32 | flags: u32 |
//!     | root bucket: root: u64, sequence: u64 | freelist: u64 | pgid: u64 | txid: u64 |
//!     | checksum: u64 = FNV-1a 64 of the 56 meta bytes before it |
//!     freelist = u64::MAX: not stored (bbolt's NoFreelistSync; etcd 3.4+ writes this);
//!     pgid: the high-water mark, pages [0, pgid) are the file.
//!
//! leaf page:   | header (count = n) | n elements | keys and values |
//!     element (16): | flags: u32 | pos: u32 | ksize: u32 | vsize: u32 |
//!     pos counts from the element's own first byte; key at pos, value right after it.
//!     flags 0x01: the value is a nested bucket.
//!
//! branch page: | header (count = n) | n elements | keys |
//!     element (16): | pos: u32 | ksize: u32 | pgid: u64 |    (key = the child's first key)
//!
//! freelist page: | header (count = n) | n free page ids: u64 |
//!     count = 0xFFFF: the real count is the first u64 and the ids follow it.
//!
//! bucket value (nested bucket): | root: u64 | sequence: u64 | [inline page] |
//!     root = 0: the bucket is inline, its single leaf page follows in the value itself.
//! ```
//!
//! The root bucket (from the meta page) holds the top-level buckets as nested buckets.
//!
//! # Layout
//! - [`reader`]: [`Db`] opens a file (or bytes) and walks buckets in key order.
//! - [`writer`]: [`DbWriter`] streams a new file page by page, in page order.

pub mod reader;
pub mod writer;

pub use reader::{Db, Entry, ReadAt};
pub use writer::{DbWriter, Layout};

pub const PAGE_HEADER_LEN: usize = 16;
pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;

pub const LEAF_ELEMENT_LEN: usize = 16;
pub const BRANCH_ELEMENT_LEN: usize = 16;
/// Leaf element flag: the value is a nested bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// A nested bucket's value starts with `| root: u64 | sequence: u64 |`.
pub const BUCKET_HEADER_LEN: usize = 16;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// Bytes of the meta struct (after the page header), checksum included.
pub const META_LEN: usize = 64;
/// Bytes of the meta struct the checksum covers.
pub const META_CHECKSUMMED: usize = 56;
/// Freelist page id meaning "the freelist is not stored".
pub const PGID_NO_FREELIST: u64 = u64::MAX;
/// Freelist count value meaning "the count is in the first u64".
pub const FREELIST_COUNT_OVERFLOW: u16 = 0xFFFF;

/// bbolt's limits (a key longer or a value larger cannot be stored).
pub const MAX_KEY_SIZE: usize = 32768;
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// etcd's page size (the OS page size on every platform it ships on).
pub const DEFAULT_PAGE_SIZE: usize = 4096;

/// FNV-1a, 64 bits: the meta page checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The meta page's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    /// Encodes the meta struct (64 bytes, checksum included).
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..META_CHECKSUMMED]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and validates a meta struct; `Err` says why it is not one.
    pub fn decode(b: &[u8]) -> Result<Meta, String> {
        if b.len() < META_LEN {
            return Err("meta page too short".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        if u32_at(0) != MAGIC {
            return Err(format!("bad magic {:#x} (not a bbolt file)", u32_at(0)));
        }
        if u32_at(4) != VERSION {
            return Err(format!("unsupported bbolt version {}", u32_at(4)));
        }
        if u64_at(56) != fnv1a64(&b[..META_CHECKSUMMED]) {
            return Err("meta checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(8),
            flags: u32_at(12),
            root: u64_at(16),
            sequence: u64_at(24),
            freelist: u64_at(32),
            pgid: u64_at(40),
            txid: u64_at(48),
        })
    }
}

/// Writes a page header into `page`.
pub(crate) fn put_header(page: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips_and_detects_damage() {
        let m =
            Meta { page_size: 4096, flags: 0, root: 7, sequence: 0, freelist: 2, pgid: 9, txid: 3 };
        let mut b = m.encode();
        assert_eq!(Meta::decode(&b), Ok(m));
        b[20] ^= 1;
        assert!(Meta::decode(&b).unwrap_err().contains("checksum"));
    }
}
