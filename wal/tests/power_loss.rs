//! Power-loss test on the simulated file system: random operations, some acknowledged, some in
//! flight, then the power goes: unsynced writes are dropped, the last one torn at a random
//! byte, unsynced directory entries lost. After reopen every acknowledged operation is there,
//! and the log is exactly the state after some prefix of the operations issued (nothing else,
//! no garbage). Seed: `WAL_POWERLOSS_SEED`; crashes per run: `WAL_POWERLOSS_CRASHES`.
//! `tests/fuse_power_loss.rs` runs the same check with real file descriptors (every backend,
//! io_uring and `O_DIRECT` included) on a FUSE disk model.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Op, count, matching_prefix, seed};
use logbook_wal::sim::SimStorage;
use logbook_wal::{Backend, HardState, Options, Ticket, Wal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn opts(backend: Backend) -> Options {
    Options { segment_size: 4096, max_batch_bytes: 1500, backend }
}

/// The files and where their nonzero bytes are, for failure messages.
fn describe(storage: &SimStorage, dir: &Path) -> String {
    use logbook_wal::io::Storage;
    let mut names = storage.list(dir).unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for n in names {
        let b = storage.file_bytes(&dir.join(&n)).unwrap_or_default();
        let used = b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
        out += &format!(
            "{n}: {} bytes, data up to {used}, head {:02x?}\n",
            b.len(),
            &b[..b.len().min(12)]
        );
    }
    out
}

#[test]
fn acknowledged_writes_survive_power_loss_sync() {
    acknowledged_writes_survive_power_loss(Backend::Sync);
}

/// The direct backend's aligned block writes (head of the last block rewritten, zeros after
/// the batch), on the simulated disk: each write torn at any byte by the power loss, with up
/// to two batches in flight (the second one written before the first is synced, as the
/// pipeline does; the run prints how many batches went in behind another).
#[test]
fn acknowledged_writes_survive_power_loss_io_uring_direct() {
    acknowledged_writes_survive_power_loss(Backend::IoUringDirect);
}

fn acknowledged_writes_survive_power_loss(backend: Backend) {
    let seed = seed("WAL_POWERLOSS_SEED");
    let crashes = count("WAL_POWERLOSS_CRASHES", 40);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = Path::new("/wal");
    let mut storage = SimStorage::new();
    let mut history: Vec<Op> = Vec::new();
    let mut acked = 0usize;
    let mut term = 0u64;
    let mut lost_rounds = 0;
    let mut overlapped = 0;
    for crash in 0..crashes {
        let ctx = format!("seed {seed}, crash {crash}");
        let wal = Wal::open_with_storage(dir, opts(backend), Arc::new(storage.clone()))
            .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}\n{}", describe(&storage, dir)));
        let (k, model) =
            matching_prefix(&history, acked, &wal).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // What is on disk now is durable; operations after it are lost for good.
        if k < history.len() {
            lost_rounds += 1;
        }
        history.truncate(k);
        acked = k;
        let mut model = model;
        let mut applied = k;

        let mut in_flight: Vec<(Ticket, usize)> = Vec::new();
        let ops = rng.random_range(1..40);
        for _ in 0..ops {
            match rng.random_range(0..100) {
                0..70 => {
                    let recs = common::random_records(&mut rng);
                    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                    let hs = rng.random_bool(0.2).then(|| {
                        term += 1;
                        HardState { term, vote: 1, commit: term }
                    });
                    let t = wal.append_with_state(&refs, hs).unwrap();
                    for r in recs {
                        history.push(Op::Append(r));
                    }
                    if let Some(hs) = hs {
                        history.push(Op::HardState(hs));
                    }
                    in_flight.push((t, history.len()));
                }
                70..85 => {
                    let lo = model.first.max(1);
                    let i = rng.random_range(lo..=model.next);
                    let t = wal.truncate_suffix(i).unwrap();
                    history.push(Op::Truncate(i));
                    in_flight.push((t, history.len()));
                }
                _ => {
                    term += 1;
                    let hs = HardState { term, vote: 2, commit: 0 };
                    let t = wal.set_hard_state(hs).unwrap();
                    history.push(Op::HardState(hs));
                    in_flight.push((t, history.len()));
                }
            }
            // Keep the model in step with everything issued (for truncation bounds).
            for op in &history[applied..] {
                model.apply(op);
            }
            applied = history.len();
            if rng.random_bool(0.3) {
                // Acknowledge everything issued so far.
                for (t, upto) in in_flight.drain(..) {
                    t.wait().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    acked = acked.max(upto);
                }
            }
        }
        // Let the writer get somewhere, then cut the power mid-flight.
        for _ in 0..rng.random_range(0..200) {
            std::thread::yield_now();
        }
        storage = storage.crash(|n| rng.random_range(0..n));
        overlapped += wal.stats().overlapped;
        drop(in_flight); // unacknowledged: may or may not have made it
        drop(wal);
    }
    println!(
        "{crashes} crashes, {lost_rounds} lost unacknowledged operations, {} ops kept, \
         {overlapped} batches submitted behind one in flight",
        history.len()
    );
    let wal = Wal::open_with_storage(dir, opts(backend), Arc::new(storage)).unwrap();
    matching_prefix(&history, acked, &wal).unwrap_or_else(|e| panic!("seed {seed}: final: {e}"));
}
