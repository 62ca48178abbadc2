//! WAL benchmarks. Each group first measures and prints its baseline in the same run.
//!
//! - `single_appender`: one thread, 256-byte records, waits for durability each time, against
//!   a raw `pwrite` + `fdatasync` loop on a preallocated file in the same directory.
//! - `concurrent`: 1, 8, 64, 256 appender threads: durable records/s and records per fsync.
//! - both for the io_uring and the `pwrite` + `fdatasync` backend.
//! - `replay`: opening (recovering) a log of `WAL_BENCH_REPLAY_MB` MiB (default 1024), GB/s.
//!
//! Environment: `WAL_BENCH_DIR` (where logs go; default the temp dir, so set it to the disk
//! you care about), `WAL_BENCH_SECS` (seconds per printed measurement, default 1),
//! `WAL_BENCH_ROUNDS` (passes over the appender counts, default 2), `WAL_BENCH_REPLAY_MB`,
//! `WAL_BENCH_REPLAY_DIR` (keep the replay log there between runs), `WAL_BENCH_ONLY`
//! (comma-separated groups: single, concurrent, replay). Quick run:
//! `WAL_BENCH_REPLAY_MB=64 cargo bench -p logbook-wal --bench wal`

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use logbook_wal::io::{OsStorage, SegmentFile, Storage, write_all_at};
use logbook_wal::{Backend, Options, Wal};

const RECORD: usize = 256;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `WAL_BENCH_ONLY=replay` (or `single`, `concurrent`, comma-separated) runs only those groups,
/// printed baselines included.
fn enabled(group: &str) -> bool {
    std::env::var("WAL_BENCH_ONLY").map_or(true, |v| v.split(',').any(|g| g.trim() == group))
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var("WAL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    tempfile::Builder::new().prefix("wal-bench").tempdir_in(base).unwrap()
}

fn secs() -> Duration {
    Duration::from_secs_f64(env_u64("WAL_BENCH_SECS", 1) as f64)
}

fn backends() -> Vec<(Backend, &'static str)> {
    let mut v = vec![(Backend::Sync, "sync")];
    let d = bench_dir();
    if Wal::open(
        d.path(),
        Options { segment_size: 1 << 20, backend: Backend::IoUring, ..Options::default() },
    )
    .is_ok()
    {
        v.insert(0, (Backend::IoUring, "io_uring"));
    } else {
        println!("io_uring unavailable: only the sync backend is measured");
    }
    v
}

/// The baseline: a preallocated file, one `pwrite` of a frame-sized record then `fdatasync`.
struct RawLoop {
    file: Arc<dyn SegmentFile>,
    pos: u64,
    buf: Vec<u8>,
}

impl RawLoop {
    fn new(dir: &Path) -> Self {
        let file = OsStorage.open(&dir.join("raw-baseline"), true).unwrap();
        file.allocate(64 << 20).unwrap();
        file.sync_data().unwrap();
        RawLoop { file, pos: 0, buf: vec![0x5A; logbook_wal::codec::entry_frame_len(RECORD)] }
    }

    fn once(&mut self) {
        if self.pos + self.buf.len() as u64 > 64 << 20 {
            self.pos = 0;
        }
        write_all_at(&*self.file, &self.buf, self.pos).unwrap();
        self.file.sync_data().unwrap();
        self.pos += self.buf.len() as u64;
    }
}

/// Mean time of `f` over repeated calls for about `secs()`.
fn mean_of(mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < secs() {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn single_appender(c: &mut Criterion) {
    if !enabled("single") {
        return;
    }
    let record = vec![0xA5u8; RECORD];
    let mut g = c.benchmark_group("single_appender_256B");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (backend, name) in backends() {
        let dir = bench_dir();
        let mut raw = RawLoop::new(dir.path());
        let wal =
            Wal::open(dir.path().join("wal"), Options { backend, ..Options::default() }).unwrap();
        let append = || wal.append(&[&record]).unwrap().wait().unwrap();
        // Interleave to share whatever the disk is doing at the time.
        let raw1 = mean_of(|| raw.once());
        let wal1 = mean_of(append);
        let raw2 = mean_of(|| raw.once());
        let wal2 = mean_of(append);
        let (r, w) = ((raw1 + raw2) / 2, (wal1 + wal2) / 2);
        println!(
            "single appender [{name}]: baseline raw pwrite+fdatasync {:.1} us/op; wal append+wait {:.1} us/op; ratio {:.2} (target <= 1.20)",
            r.as_secs_f64() * 1e6,
            w.as_secs_f64() * 1e6,
            w.as_secs_f64() / r.as_secs_f64()
        );
        g.bench_function(BenchmarkId::new("raw_pwrite_fdatasync", name), |b| b.iter(|| raw.once()));
        g.bench_function(BenchmarkId::new("wal_append_wait", name), |b| b.iter(append));
    }
    g.finish();
}

/// `threads` appenders, each appending and waiting, until `total` records are durable.
fn run_appenders(wal: &Arc<Wal>, threads: usize, total: u64) -> Duration {
    let left = Arc::new(AtomicU64::new(total));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (wal, left) = (wal.clone(), left.clone());
            s.spawn(move || {
                let record = [0xA5u8; RECORD];
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                    .is_ok()
                {
                    wal.append(&[&record]).unwrap().wait().unwrap();
                }
            });
        }
    });
    start.elapsed()
}

fn concurrent(c: &mut Criterion) {
    if !enabled("concurrent") {
        return;
    }
    let mut g = c.benchmark_group("concurrent_appenders_256B");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    for (backend, name) in backends() {
        let dir = bench_dir();
        let mut raw = RawLoop::new(dir.path());
        let raw_rate = 1.0 / mean_of(|| raw.once()).as_secs_f64();
        println!("concurrent [{name}]: baseline raw pwrite+fdatasync {raw_rate:.0} fsyncs/s");
        let wal = Arc::new(
            Wal::open(dir.path().join("wal"), Options { backend, ..Options::default() }).unwrap(),
        );
        // Printed measurement: `WAL_BENCH_ROUNDS` passes over the appender counts, each
        // `WAL_BENCH_SECS` long, summed per count, so a slow stretch of a shared disk is spread
        // over all counts instead of landing on one. Stats deltas give records per fsync and
        // the mean write + fdatasync time, which shows what the disk was doing.
        const COUNTS: [usize; 4] = [1, 8, 64, 256];
        let mut sums = [(0u64, 0f64, 0u64, 0u64, 0u64); COUNTS.len()];
        for _ in 0..env_u64("WAL_BENCH_ROUNDS", 2) {
            for (k, &threads) in COUNTS.iter().enumerate() {
                let before = wal.stats();
                let start = Instant::now();
                let mut done = 0u64;
                while start.elapsed() < secs() {
                    let chunk = (threads as u64 * 20).max(100);
                    run_appenders(&wal, threads, chunk);
                    done += chunk;
                }
                let el = start.elapsed().as_secs_f64();
                let after = wal.stats();
                let s = &mut sums[k];
                s.0 += done;
                s.1 += el;
                s.2 += after.entries - before.entries;
                s.3 += after.commits - before.commits;
                s.4 += after.sync_nanos - before.sync_nanos;
            }
        }
        let single_rate = sums[0].0 as f64 / sums[0].1;
        for (k, threads) in COUNTS.into_iter().enumerate() {
            let (done, el, entries, commits, nanos) = sums[k];
            let rate = done as f64 / el;
            println!(
                "concurrent [{name}] {threads:>3} appenders: {rate:>9.0} records/s, {:>6.1} records/fsync, mean write+fdatasync {:.2} ms, {:.1}x single appender",
                entries as f64 / commits.max(1) as f64,
                nanos as f64 / commits.max(1) as f64 / 1e6,
                rate / single_rate
            );
        }
        for threads in COUNTS {
            g.bench_function(BenchmarkId::new(name, threads), |b| {
                b.iter_custom(|iters| run_appenders(&wal, threads, iters))
            });
        }
    }
    g.finish();
}

/// CPU time of the calling thread (recovery runs on the thread that opens the log), so the
/// replay figure can be read apart from other load on a shared machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec for the duration of the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The replay baseline: reads the log's first `bytes` bytes, segment file after segment file,
/// with plain 1 MiB `pread`s into one buffer (what any replay must at least do), optionally
/// with a crc32c over every chunk.
fn raw_read(dir: &Path, bytes: u64, crc: bool) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    names.sort();
    let mut buf = vec![0u8; 1 << 20];
    let (mut left, mut sum) = (bytes, 0u32);
    for path in names {
        let f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len().min(left);
        let mut off = 0;
        while off < len {
            let want = buf.len().min((len - off) as usize);
            let n = f.read_at(&mut buf[..want], off).unwrap();
            assert!(n > 0);
            if crc {
                sum = crc32c::crc32c_append(sum, &buf[..n]);
            }
            off += n as u64;
        }
        left -= len;
    }
    sum
}

/// Wall and thread-CPU time of `f`, best of `n` runs.
fn best_of(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..n {
        let (t0, c0) = (Instant::now(), thread_cpu_time());
        f();
        best = (best.0.min(t0.elapsed()), best.1.min(thread_cpu_time() - c0));
    }
    best
}

fn replay(c: &mut Criterion) {
    if !enabled("replay") {
        return;
    }
    let mb = env_u64("WAL_BENCH_REPLAY_MB", 1024);
    // `WAL_BENCH_REPLAY_DIR` keeps the log between runs (written once if the directory is
    // empty); otherwise a temporary directory is used and removed.
    let (_tmp, dir) = match std::env::var("WAL_BENCH_REPLAY_DIR") {
        Ok(d) => (None, std::path::PathBuf::from(d)),
        Err(_) => {
            let t = bench_dir();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let opts = || Options { backend: Backend::Sync, ..Options::default() };
    {
        let wal = Wal::open(&dir, opts()).unwrap();
        let record = vec![0x3Cu8; RECORD];
        let batch: Vec<&[u8]> = vec![&record[..]; 4096];
        let mut last = None;
        let frame = logbook_wal::codec::entry_frame_len(RECORD) as u64;
        while wal.last_index() * frame < mb << 20 {
            last = Some(wal.append(&batch).unwrap());
            if wal.last_index().is_multiple_of(4096 * 64) {
                last.take().unwrap().wait().unwrap();
            }
        }
        if let Some(t) = last {
            t.wait().unwrap();
        }
    }
    let records = {
        let wal = Wal::open(&dir, opts()).unwrap(); // also warms the page cache
        wal.last_index() - wal.first_index() + 1
    };
    let open = || {
        let start = Instant::now();
        let wal = Wal::open(&dir, opts()).unwrap();
        let el = start.elapsed();
        assert_eq!(wal.last_index() - wal.first_index() + 1, records);
        drop(wal);
        el
    };
    let bytes = records * logbook_wal::codec::entry_frame_len(RECORD) as u64;
    let gbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    // Interleaved, so the baselines and the replay share whatever else the machine is doing.
    let mut sink = 0;
    let (mut raw, mut raw_crc, mut wal) = (
        (Duration::MAX, Duration::MAX),
        (Duration::MAX, Duration::MAX),
        (Duration::MAX, Duration::MAX),
    );
    let min = |a: (Duration, Duration), b: (Duration, Duration)| (a.0.min(b.0), a.1.min(b.1));
    for _ in 0..3 {
        raw = min(raw, best_of(1, || sink ^= raw_read(&dir, bytes, false)));
        raw_crc = min(raw_crc, best_of(1, || sink ^= raw_read(&dir, bytes, true)));
        wal = min(
            wal,
            best_of(1, || {
                open();
            }),
        );
    }
    println!(
        "replay: {records} records of {RECORD} B, {:.0} MiB of frames; best of 3, wall (thread CPU):",
        bytes as f64 / (1 << 20) as f64
    );
    println!(
        "replay:   baseline raw 1 MiB preads           {:.3} s = {:.2} GB/s ({:.2} GB/s per CPU-s)",
        raw.0.as_secs_f64(),
        gbs(raw.0),
        gbs(raw.1)
    );
    println!(
        "replay:   baseline raw preads + crc32c        {:.3} s = {:.2} GB/s ({:.2} GB/s per CPU-s) [{sink:08x}]",
        raw_crc.0.as_secs_f64(),
        gbs(raw_crc.0),
        gbs(raw_crc.1)
    );
    println!(
        "replay:   Wal::open (recovery)                {:.3} s = {:.2} GB/s ({:.2} GB/s per CPU-s); {:.2}x the raw-read time (target >= 1 GB/s from page cache)",
        wal.0.as_secs_f64(),
        gbs(wal.0),
        gbs(wal.1),
        wal.0.as_secs_f64() / raw.0.as_secs_f64()
    );
    let mut g = c.benchmark_group("replay");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(BenchmarkId::new("open", format!("{mb}MiB")), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| open()).sum())
    });
    g.finish();
}

criterion_group!(benches, single_appender, concurrent, replay);
criterion_main!(benches);
