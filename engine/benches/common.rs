//! Workload shared by the benches and the footprint example: 32-byte keys in random order,
//! 256-byte values, as issue 4 specifies.
#![allow(dead_code)]

pub const VALUE_LEN: usize = 256;
pub const BATCH: u64 = 1000;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Key `i`: 32 hex bytes, in an order unrelated to `i`.
pub fn key(i: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    let s = format!("{:016x}{:016x}", mix(i), i);
    k.copy_from_slice(s.as_bytes());
    k
}

pub fn value(i: u64, round: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let m = mix(i ^ (round << 40));
    for (j, b) in v.iter_mut().enumerate() {
        *b = (m >> ((j % 8) * 8)) as u8 ^ j as u8;
    }
    v
}

/// Number of keys: `LOGBOOK_BENCH_KEYS`, default 100 000 (the 1M: set it to 1000000).
pub fn keys() -> u64 {
    std::env::var("LOGBOOK_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000)
}

/// Resident set size of this process, in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

pub mod logbook {
    use logbook_engine::{Engine, Options, RangeOptions};
    use std::path::Path;

    pub fn open(path: &Path) -> Engine {
        Engine::open(path, Options::default()).unwrap()
    }

    /// Puts keys `from..to` (round `round`) in batches of 1000, each made durable.
    pub fn load(e: &Engine, from: u64, to: u64, round: u64, raft_index: &mut u64) {
        let mut i = from;
        while i < to {
            *raft_index += 1;
            let mut txn = e.write(*raft_index);
            for j in i..(i + super::BATCH).min(to) {
                txn.put_without_prev(&super::key(j), &super::value(j, round), 0).unwrap();
            }
            txn.commit();
            e.commit().unwrap();
            i += super::BATCH;
        }
    }

    pub fn get(e: &Engine, k: &[u8]) -> usize {
        e.range(&RangeOptions::key(k)).unwrap().kvs.len()
    }

    pub fn scan(e: &Engine, start: &[u8], end: &[u8]) -> usize {
        e.range(&RangeOptions::range(start, end)).unwrap().kvs.len()
    }
}

pub mod redb_db {
    use redb::{Database, ReadableDatabase, TableDefinition};
    use std::path::Path;

    pub const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");

    pub fn open(path: &Path) -> Database {
        Database::create(path).unwrap()
    }

    pub fn load(db: &Database, from: u64, to: u64, round: u64) {
        let mut i = from;
        while i < to {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(TABLE).unwrap();
                for j in i..(i + super::BATCH).min(to) {
                    t.insert(&super::key(j)[..], &super::value(j, round)[..]).unwrap();
                }
            }
            txn.commit().unwrap();
            i += super::BATCH;
        }
    }

    pub fn get(db: &Database, k: &[u8]) -> usize {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        t.get(k).unwrap().map(|v| v.value().len()).unwrap_or(0)
    }

    /// A range that only touches each entry (borrowed, the value's length read): the least
    /// redb can do.
    pub fn scan(db: &Database, start: &[u8], end: &[u8]) -> usize {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        let mut n = 0;
        for item in t.range(start..end).unwrap() {
            let (_, v) = item.unwrap();
            n += v.value().len().min(1);
        }
        n
    }

    /// A range that returns what a range reply carries, as Logbook's does: each key and value
    /// copied out of the read transaction (the borrowed guards die with it).
    pub fn scan_owned(db: &Database, start: &[u8], end: &[u8]) -> usize {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(TABLE).unwrap();
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for item in t.range(start..end).unwrap() {
            let (k, v) = item.unwrap();
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        out.len()
    }
}
