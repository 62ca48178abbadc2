//! Point gets and 1000-key ranges on a freshly loaded store, Logbook's engine or redb, for
//! profiling and for counting instructions where wall time is too noisy:
//!
//! ```text
//! cargo build --release -p logbook-engine --example readprof
//! valgrind --tool=callgrind --toggle-collect='*reads*' target/release/examples/readprof logbook 20000
//! ```
//!
//! Run: `readprof logbook|redb|redb_owned [N] [gets] [ranges]` (defaults: N from `LOGBOOK_BENCH_KEYS`,
//! 200 000 gets, 300 ranges); prints the wall and CPU time per get and per range.

#[path = "../benches/common.rs"]
mod common;

// The allocator the `logbook` binary ships with (both engines run on it).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

/// CPU time of this thread: unlike wall time, it does not count the time other processes on
/// a shared machine held the core.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

type GetFn = dyn Fn(&[u8]) -> usize;
type ScanFn = dyn Fn(&[u8], &[u8]) -> usize;

#[inline(never)]
fn reads_get(get: &GetFn, n: u64, gets: u64) {
    for i in 0..gets {
        assert!(get(&common::key((i * 7919) % n)) > 0);
    }
}

#[inline(never)]
fn reads_range(scan: &ScanFn, sorted: &[[u8; 32]], ranges: usize) {
    for r in 0..ranges {
        let s = (r * 104_729) % (sorted.len() - 1000);
        assert_eq!(scan(&sorted[s], &sorted[s + 1000]), 1000);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "logbook".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(common::keys);
    let gets: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let ranges: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut sorted: Vec<[u8; 32]> = (0..n).map(common::key).collect();
    sorted.sort_unstable();
    let (get, scan): (Box<GetFn>, Box<ScanFn>) = match which.as_str() {
        "logbook" => {
            let e = std::sync::Arc::new(common::logbook::open(&path));
            common::logbook::load(&e, 0, n, 0, &mut 0);
            let e2 = e.clone();
            (
                Box::new(move |k| common::logbook::get(&e, k)),
                Box::new(move |a, b| common::logbook::scan(&e2, a, b)),
            )
        }
        "redb" => {
            let db = std::sync::Arc::new(common::redb_db::open(&path));
            common::redb_db::load(&db, 0, n, 0);
            let db2 = db.clone();
            (
                Box::new(move |k| common::redb_db::get(&db, k)),
                Box::new(move |a, b| common::redb_db::scan(&db2, a, b)),
            )
        }
        "redb_owned" => {
            let db = std::sync::Arc::new(common::redb_db::open(&path));
            common::redb_db::load(&db, 0, n, 0);
            let db2 = db.clone();
            (
                Box::new(move |k| common::redb_db::get(&db, k)),
                Box::new(move |a, b| common::redb_db::scan_owned(&db2, a, b)),
            )
        }
        other => panic!("unknown engine {other}: logbook, redb or redb_owned"),
    };
    let (t, c) = (Instant::now(), thread_cpu());
    reads_get(&*get, n, gets);
    let per = gets.max(1) as u32;
    println!(
        "{which}: point get: {:?} each ({:?} cpu)",
        t.elapsed() / per,
        (thread_cpu() - c) / per
    );
    let (t, c) = (Instant::now(), thread_cpu());
    reads_range(&*scan, &sorted, ranges);
    let per = ranges.max(1) as u32;
    println!(
        "{which}: range of 1000: {:?} each ({:?} cpu)",
        t.elapsed() / per,
        (thread_cpu() - c) / per
    );
}
