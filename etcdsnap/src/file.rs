//! Snapshot files as `etcdctl snapshot save` writes them: a bbolt database followed by the
//! SHA-256 of its bytes.
//!
//! ```text
//! | bbolt database (pgid * page_size bytes) | sha256: 32 bytes |
//! ```
//!
//! etcd tells the two apart by size: a database is a whole number of pages, so a file whose
//! size is 32 more than a multiple of 512 has the trailer. `etcdctl snapshot status` reports
//! a CRC-32C over every bucket name, key and value, the last revision of the `key` bucket,
//! the number of keys in all buckets and the database size; [`status`] computes the same.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::bbolt::{Db, ReadAt};
use crate::error::{Error, Result};
use crate::layout;

pub const HASH_LEN: usize = 32;

/// Whether a file of `size` bytes ends in a SHA-256 trailer (etcd's rule).
pub fn has_hash(size: u64) -> bool {
    size % 512 == HASH_LEN as u64
}

/// Opens a snapshot file, verifying its SHA-256 trailer unless `skip_hash_check` (then a
/// raw db file without a trailer is accepted too).
pub fn open(path: &Path, skip_hash_check: bool) -> Result<Db<File>> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let hashed = has_hash(size);
    if !hashed && !skip_hash_check {
        return Err(Error::MissingHash);
    }
    let db_len = if hashed { size - HASH_LEN as u64 } else { size };
    if hashed && !skip_hash_check {
        verify_hash(&file, db_len)?;
    }
    Db::open(file, Some(db_len))
}

fn verify_hash(file: &File, db_len: u64) -> Result<()> {
    let mut h = Sha256::new();
    let mut r = std::io::BufReader::with_capacity(1 << 20, file.take(db_len));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let mut expected = [0u8; HASH_LEN];
    file.read_exact_at(&mut expected, db_len)?;
    let actual: [u8; HASH_LEN] = h.finalize().into();
    if actual != expected {
        return Err(Error::HashMismatch { expected: hex(&expected), actual: hex(&actual) });
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `etcdctl snapshot status` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

/// Computes a database's status as etcdctl does (reading every bucket, which also checks
/// the whole tree).
pub fn status<R: ReadAt>(db: &Db<R>) -> Result<Status> {
    let mut names = Vec::new();
    db.for_each_root(&mut |e| {
        if !e.is_bucket {
            return Err(Error::NotEtcd(format!(
                "top-level key {:?} is not a bucket",
                String::from_utf8_lossy(e.key)
            )));
        }
        names.push((e.key.to_vec(), e.value.to_vec()));
        Ok(())
    })?;
    let mut crc = 0u32;
    let mut revision = 0;
    let mut total_key = 0u64;
    for (name, value) in &names {
        crc = crc32c::crc32c_append(crc, name);
        let is_key = name == layout::KEY.as_bytes();
        db.for_each_nested(value, &mut |e| {
            crc = crc32c::crc32c_append(crc, e.key);
            crc = crc32c::crc32c_append(crc, e.value);
            if is_key {
                revision = layout::decode_rev(e.key)?.0.main;
            }
            total_key += 1;
            Ok(())
        })?;
    }
    Ok(Status { hash: crc, revision, total_key, total_size: db.size() })
}

/// Bytes as etcdctl prints them (go-humanize's SI `Bytes`: "20 kB", "1.2 MB").
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 { format!("{val:.1} {}", UNITS[e]) } else { format!("{val:.0} {}", UNITS[e]) }
}

impl Status {
    /// etcdctl's `-w simple` line.
    pub fn simple(&self) -> String {
        format!(
            "{:x}, {}, {}, {}",
            self.hash,
            self.revision,
            self.total_key,
            humanize_bytes(self.total_size)
        )
    }

    /// etcdctl's `-w json` object.
    pub fn json(&self) -> String {
        format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            self.hash, self.revision, self.total_key, self.total_size
        )
    }

    /// etcdctl's `-w table`.
    pub fn table(&self) -> String {
        let header = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
        let row = [
            format!("{:x}", self.hash),
            self.revision.to_string(),
            self.total_key.to_string(),
            humanize_bytes(self.total_size),
        ];
        let widths: Vec<usize> =
            header.iter().zip(&row).map(|(h, r)| h.len().max(r.len())).collect();
        let line = {
            let parts: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            format!("+{}+", parts.join("+"))
        };
        let head: Vec<String> = header
            .iter()
            .zip(&widths)
            .map(|(h, w)| {
                let gap = w - h.len();
                format!(" {}{}{} ", " ".repeat(gap / 2), h, " ".repeat(gap - gap / 2))
            })
            .collect();
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(r, w)| format!(" {r:>w$} ")).collect();
        format!("{line}\n|{}|\n{line}\n|{}|\n{line}\n", head.join("|"), cells.join("|"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(92246016), "92 MB");
        assert_eq!(humanize_bytes(1234567), "1.2 MB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert!(has_hash(20480 + 32));
        assert!(!has_hash(20480));
    }

    #[test]
    fn table_matches_etcdctl() {
        let s = Status { hash: 0x6a2bc360, revision: 8, total_key: 15, total_size: 20480 };
        assert_eq!(
            s.table(),
            "+----------+----------+------------+------------+\n\
             |   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n\
             +----------+----------+------------+------------+\n\
             | 6a2bc360 |        8 |         15 |      20 kB |\n\
             +----------+----------+------------+------------+\n"
        );
        assert_eq!(s.simple(), "6a2bc360, 8, 15, 20 kB");
    }
}
