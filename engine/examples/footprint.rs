//! File size and process RSS of one engine (one per process, so RSS is its own) after
//! loading N keys (32-byte keys, 256-byte values, batches of 1000 per durable commit) and
//! after 10 overwrite rounds plus compaction.
//!
//! Run: `cargo run --release -p logbook-engine --example footprint -- logbook|redb [N]`

#[path = "../benches/common.rs"]
mod common;

// The allocator the `logbook` binary ships with.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "logbook".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(common::keys);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let t = std::time::Instant::now();
    match which.as_str() {
        "logbook" => {
            let e = common::logbook::open(&path);
            let mut idx = 0;
            common::logbook::load(&e, 0, n, 0, &mut idx);
            println!(
                "logbook {n} keys: load {:?}, file {}, rss {}",
                t.elapsed(),
                mib(size()),
                mib(common::rss())
            );
            for round in 1..=10 {
                common::logbook::load(&e, 0, n, round, &mut idx);
                println!(
                    "logbook after overwrite round {round}: {:?}, file {}, rss {}",
                    t.elapsed(),
                    mib(size()),
                    mib(common::rss())
                );
            }
            e.compact(e.current_revision()).unwrap();
            e.wait_compacted(e.current_revision());
            e.commit().unwrap();
            println!(
                "logbook after compaction: file {}, in use {}, rss {}",
                mib(size()),
                mib(e.size_in_use()),
                mib(common::rss())
            );
            e.defragment().unwrap();
            println!("logbook after defragment: file {}, rss {}", mib(size()), mib(common::rss()));
        }
        "redb" => {
            let mut db = common::redb_db::open(&path);
            common::redb_db::load(&db, 0, n, 0);
            println!(
                "redb {n} keys: load {:?}, file {}, rss {}",
                t.elapsed(),
                mib(size()),
                mib(common::rss())
            );
            for round in 1..=10 {
                common::redb_db::load(&db, 0, n, round);
                println!(
                    "redb after overwrite round {round}: {:?}, file {}, rss {}",
                    t.elapsed(),
                    mib(size()),
                    mib(common::rss())
                );
            }
            let _ = db.compact();
            println!("redb after compact(): file {}, rss {}", mib(size()), mib(common::rss()));
        }
        other => panic!("unknown engine {other}: logbook or redb"),
    }
}
