//! Logbook's engine against redb on issue 4's workloads, in the same run:
//! bulk load in batches of 1000 per durable commit, random point gets, range scans of 1000
//! keys, overwrite churn (batches of 1000 random overwrites per durable commit).
//!
//! Logbook's range returns owned key versions (what a range reply needs); `range/redb` only
//! touches each entry through redb's borrowed guards, `range/redb_owned` copies each key and
//! value out as well, the like-for-like figure.
//!
//! `LOGBOOK_BENCH_KEYS` sets the number of keys (default 100 000). Above 200 000 the bulk
//! load is timed once per engine (the preload) instead of sampled by criterion.
//! Run: `cargo bench -p logbook-engine --bench engine_vs_redb`

#[path = "common.rs"]
mod common;

// The allocator the `logbook` binary ships with (both engines run on it).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let n = common::keys();
    let dir = tempfile::tempdir().unwrap();

    // Above this many keys criterion's ten loads per engine take most of an hour on a
    // shared machine: the preloads below are timed instead (one load each, same run).
    let sample_loads = n <= 200_000;
    let mut g = c.benchmark_group(format!("bulk_load_{n}"));
    g.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(100));
    g.measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(n));
    let mut run = 0;
    if sample_loads {
        g.bench_function("logbook", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let path = dir.path().join(format!("lb-load-{run}"));
                    let e = common::logbook::open(&path);
                    let start = Instant::now();
                    common::logbook::load(&e, 0, n, 0, &mut 0);
                    total += start.elapsed();
                    drop(e);
                    std::fs::remove_file(&path).unwrap();
                }
                total
            })
        });
        g.bench_function("redb", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let path = dir.path().join(format!("redb-load-{run}"));
                    let db = common::redb_db::open(&path);
                    let start = Instant::now();
                    common::redb_db::load(&db, 0, n, 0);
                    total += start.elapsed();
                    drop(db);
                    std::fs::remove_file(&path).unwrap();
                }
                total
            })
        });
    }
    g.finish();

    // Preloaded stores for the rest.
    let lb_path = dir.path().join("lb");
    let lb = common::logbook::open(&lb_path);
    let mut raft_index = 0;
    let start = Instant::now();
    common::logbook::load(&lb, 0, n, 0, &mut raft_index);
    let lb_load = start.elapsed();
    let rd_path = dir.path().join("redb");
    let rd = common::redb_db::open(&rd_path);
    let start = Instant::now();
    common::redb_db::load(&rd, 0, n, 0);
    let rd_load = start.elapsed();
    if !sample_loads {
        eprintln!(
            "bulk_load_{n} (one load each): logbook {lb_load:.2?} ({:.1} Kelem/s), redb {rd_load:.2?} ({:.1} Kelem/s)",
            n as f64 / lb_load.as_secs_f64() / 1e3,
            n as f64 / rd_load.as_secs_f64() / 1e3,
        );
    }
    let mut sorted: Vec<[u8; 32]> = (0..n).map(common::key).collect();
    sorted.sort_unstable();

    let mut g = c.benchmark_group(format!("point_get_{n}"));
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("logbook", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            assert_eq!(common::logbook::get(&lb, &common::key(i)), 1);
        })
    });
    g.bench_function("redb", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            assert_eq!(common::redb_db::get(&rd, &common::key(i)), common::VALUE_LEN);
        })
    });
    g.finish();

    let span = 1000.min(n as usize - 1);
    let mut g = c.benchmark_group(format!("range_{span}_of_{n}"));
    g.throughput(Throughput::Elements(span as u64));
    let mut s = 0usize;
    g.bench_function("logbook", |b| {
        b.iter(|| {
            s = (s + 104_729) % (n as usize - span);
            assert_eq!(common::logbook::scan(&lb, &sorted[s], &sorted[s + span]), span);
        })
    });
    g.bench_function("redb", |b| {
        b.iter(|| {
            s = (s + 104_729) % (n as usize - span);
            assert_eq!(common::redb_db::scan(&rd, &sorted[s], &sorted[s + span]), span);
        })
    });
    // The same work as Logbook's range: the keys and values copied out.
    g.bench_function("redb_owned", |b| {
        b.iter(|| {
            s = (s + 104_729) % (n as usize - span);
            assert_eq!(common::redb_db::scan_owned(&rd, &sorted[s], &sorted[s + span]), span);
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("overwrite_batch_1000_of_{n}"));
    g.throughput(Throughput::Elements(common::BATCH));
    let mut round = 1u64;
    let mut pos = 0u64;
    g.bench_function("logbook", |b| {
        b.iter_batched(
            || {
                pos = (pos + common::BATCH) % n.saturating_sub(common::BATCH).max(1);
                round += 1;
                (pos, round)
            },
            |(p, r)| common::logbook::load(&lb, p, p + common::BATCH, r, &mut raft_index),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("redb", |b| {
        b.iter_batched(
            || {
                pos = (pos + common::BATCH) % n.saturating_sub(common::BATCH).max(1);
                round += 1;
                (pos, round)
            },
            |(p, r)| common::redb_db::load(&rd, p, p + common::BATCH, r),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    eprintln!(
        "file sizes after the benches: logbook {} bytes, redb {} bytes",
        std::fs::metadata(&lb_path).map(|m| m.len()).unwrap_or(0),
        std::fs::metadata(&rd_path).map(|m| m.len()).unwrap_or(0)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
