//! The meta page: the root of everything, written last by every commit.
//!
//! Two copies live at pages 0 and 1; commit `txid` writes page `txid % 2`, so the other
//! copy is always the previous complete commit. Open reads both and uses the valid one with
//! the higher txid: a torn meta write falls back to the commit before it.
//!
//! ```text
//! | header (16, kind 1) | magic: "LOGBOOK\0" | format: u32 LE | page_size: u32 LE |
//! | txid: u64 | page_count: u64 | rev_root: u64 | meta_root: u64 | freelist_root: u64 |
//! | applied_index: u64 | current_revision: i64 | scheduled_compact: i64 | finished_compact: i64 |
//! (all LE; root 0 = empty tree / empty freelist; the rest of the page is zero)
//! ```

use crate::codec::{get_i64, get_u32, get_u64, put_u32, put_u64};
use crate::page::{self, HEADER_LEN, KIND_META};

pub const MAGIC: &[u8; 8] = b"LOGBOOK\0";
pub const FORMAT_VERSION: u32 = 1;
/// Pages 0 and 1 are the meta pages.
pub const META_PAGES: u64 = 2;

/// Everything a commit publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    /// Commit number; 0 is the freshly created file.
    pub txid: u64,
    /// Pages in use by the file (the high-water mark); the file may be longer.
    pub page_count: u64,
    /// Root of the revision tree (revision -> record).
    pub rev_root: u64,
    /// Root of the side-bucket tree (bucket + key -> value).
    pub meta_root: u64,
    /// First page of the freelist chain.
    pub freelist_root: u64,
    /// Last Raft index applied in the data of this commit.
    pub applied_index: u64,
    /// The store's revision at this commit.
    pub current_revision: i64,
    /// Highest compaction requested.
    pub scheduled_compact: i64,
    /// Highest compaction whose physical work is complete.
    pub finished_compact: i64,
}

const O_MAGIC: usize = HEADER_LEN;
const O_FORMAT: usize = O_MAGIC + 8;
const O_PAGE_SIZE: usize = O_FORMAT + 4;
const O_TXID: usize = O_PAGE_SIZE + 4;
const O_PAGE_COUNT: usize = O_TXID + 8;
const O_REV_ROOT: usize = O_PAGE_COUNT + 8;
const O_META_ROOT: usize = O_REV_ROOT + 8;
const O_FREELIST: usize = O_META_ROOT + 8;
const O_APPLIED: usize = O_FREELIST + 8;
const O_CURRENT: usize = O_APPLIED + 8;
const O_SCHEDULED: usize = O_CURRENT + 8;
const O_FINISHED: usize = O_SCHEDULED + 8;

impl Meta {
    /// The meta page slot this commit is written to.
    pub fn slot(&self) -> u64 {
        self.txid % 2
    }

    /// Encodes into a full page, sealed.
    pub fn encode(&self, page: &mut [u8]) {
        page::init(page, KIND_META, 0);
        page[O_MAGIC..O_MAGIC + 8].copy_from_slice(MAGIC);
        put_u32(page, O_FORMAT, FORMAT_VERSION);
        put_u32(page, O_PAGE_SIZE, self.page_size);
        put_u64(page, O_TXID, self.txid);
        put_u64(page, O_PAGE_COUNT, self.page_count);
        put_u64(page, O_REV_ROOT, self.rev_root);
        put_u64(page, O_META_ROOT, self.meta_root);
        put_u64(page, O_FREELIST, self.freelist_root);
        put_u64(page, O_APPLIED, self.applied_index);
        put_u64(page, O_CURRENT, self.current_revision as u64);
        put_u64(page, O_SCHEDULED, self.scheduled_compact as u64);
        put_u64(page, O_FINISHED, self.finished_compact as u64);
        page::seal(page, self.slot());
    }

    /// Decodes and verifies the meta page read from `slot`.
    pub fn decode(page: &[u8], slot: u64) -> Result<Meta, String> {
        if page.len() < O_FINISHED + 8 {
            return Err("meta page too short".into());
        }
        if &page[O_MAGIC..O_MAGIC + 8] != MAGIC {
            return Err("not a Logbook database (bad magic)".into());
        }
        page::validate(page, slot)?;
        if page::kind(page) != KIND_META {
            return Err(format!("page {slot} is not a meta page"));
        }
        let format = get_u32(page, O_FORMAT);
        if format != FORMAT_VERSION {
            return Err(format!("unsupported format version {format}"));
        }
        let meta = Meta {
            page_size: get_u32(page, O_PAGE_SIZE),
            txid: get_u64(page, O_TXID),
            page_count: get_u64(page, O_PAGE_COUNT),
            rev_root: get_u64(page, O_REV_ROOT),
            meta_root: get_u64(page, O_META_ROOT),
            freelist_root: get_u64(page, O_FREELIST),
            applied_index: get_u64(page, O_APPLIED),
            current_revision: get_i64(page, O_CURRENT),
            scheduled_compact: get_i64(page, O_SCHEDULED),
            finished_compact: get_i64(page, O_FINISHED),
        };
        if meta.page_size as usize != page.len() {
            return Err(format!("meta says page size {}, read {}", meta.page_size, page.len()));
        }
        if meta.txid % 2 != slot {
            return Err(format!("meta txid {} stored in slot {slot}", meta.txid));
        }
        for root in [meta.rev_root, meta.meta_root, meta.freelist_root] {
            if root != 0 && (root < META_PAGES || root >= meta.page_count) {
                return Err(format!(
                    "root page {root} outside the file's {} pages",
                    meta.page_count
                ));
            }
        }
        Ok(meta)
    }

    /// Reads the page size a meta page claims, without verifying it (to know how big the
    /// pages are before reading them).
    pub fn peek_page_size(first_bytes: &[u8]) -> Option<usize> {
        if first_bytes.len() < O_PAGE_SIZE + 4 || &first_bytes[O_MAGIC..O_MAGIC + 8] != MAGIC {
            return None;
        }
        Some(get_u32(first_bytes, O_PAGE_SIZE) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let m = Meta {
            page_size: 4096,
            txid: 7,
            page_count: 100,
            rev_root: 5,
            meta_root: 6,
            freelist_root: 0,
            applied_index: 42,
            current_revision: 9,
            scheduled_compact: 3,
            finished_compact: 2,
        };
        let mut p = vec![0u8; 4096];
        m.encode(&mut p);
        assert_eq!(Meta::decode(&p, 1), Ok(m.clone()));
        assert!(Meta::decode(&p, 0).is_err());
        assert_eq!(Meta::peek_page_size(&p), Some(4096));
        p[200] ^= 0x40;
        assert!(Meta::decode(&p, 1).unwrap_err().contains("checksum"));
    }
}
