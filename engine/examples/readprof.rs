//! Times point gets and 1000-key ranges on a freshly loaded store (for profiling).
//!
//! Run: `cargo run --release -p logbook-engine --example readprof -- [N]`

#[path = "../benches/common.rs"]
mod common;

fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(common::keys);
    let dir = tempfile::tempdir().unwrap();
    let e = common::logbook::open(&dir.path().join("db"));
    common::logbook::load(&e, 0, n, 0, &mut 0);
    let mut sorted: Vec<[u8; 32]> = (0..n).map(common::key).collect();
    sorted.sort_unstable();
    for pass in 0..3 {
        let t = std::time::Instant::now();
        let gets = 200_000u64;
        for i in 0..gets {
            assert_eq!(common::logbook::get(&e, &common::key((i * 7919) % n)), 1);
        }
        println!("pass {pass}: point get: {:?} each", t.elapsed() / gets as u32);
    }
    let t = std::time::Instant::now();
    let ranges = 300usize;
    for r in 0..ranges {
        let s = (r * 104_729) % (n as usize - 1000);
        assert_eq!(common::logbook::scan(&e, &sorted[s], &sorted[s + 1000]), 1000);
    }
    println!("range of 1000: {:?} each", t.elapsed() / ranges as u32);
}
