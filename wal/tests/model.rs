//! Model-based test: random appends, hard states, truncations, compactions, reads and reopens
//! against the real log and an in-memory model; every answer is compared.
//! Seed: `WAL_MODEL_SEED`; operations per run: `WAL_MODEL_OPS`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Model, Op, count, seed};
use logbook_wal::io::{OsStorage, Storage};
use logbook_wal::sim::SimStorage;
use logbook_wal::{Backend, Error, HardState, Options, Ticket, Wal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_record(rng: &mut StdRng) -> Vec<u8> {
    let len =
        if rng.random_bool(0.05) { rng.random_range(1000..6000) } else { rng.random_range(0..300) };
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn run(storage: Arc<dyn Storage>, dir: &Path, seed: u64, ops: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let opts = || Options {
        segment_size: 4096,
        max_batch_bytes: 2048,
        backend: if seed.is_multiple_of(2) { Backend::Auto } else { Backend::Sync },
    };
    let mut wal = Wal::open_with_storage(dir, opts(), storage.clone()).unwrap();
    let mut model = Model::default();
    let mut pending: Vec<Ticket> = Vec::new();
    let mut term = 0;
    for step in 0..ops {
        let ctx = format!("seed {seed}, step {step}");
        match rng.random_range(0..100) {
            0..45 => {
                let n = rng.random_range(1..5);
                let recs: Vec<Vec<u8>> = (0..n).map(|_| random_record(&mut rng)).collect();
                let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
                let hs = rng.random_bool(0.2).then(|| {
                    term += 1;
                    HardState {
                        term,
                        vote: rng.random_range(0..5),
                        commit: rng.random_range(0..1000),
                    }
                });
                let t = wal.append_with_state(&refs, hs).unwrap();
                assert_eq!(t.first_index(), model.next, "{ctx}");
                for r in recs {
                    model.apply(&Op::Append(r));
                }
                if let Some(hs) = hs {
                    model.apply(&Op::HardState(hs));
                }
                pending.push(t);
            }
            45..52 => {
                term += 1;
                let hs = HardState { term, vote: 1, commit: step };
                pending.push(wal.set_hard_state(hs).unwrap());
                model.apply(&Op::HardState(hs));
            }
            52..62 => {
                let lo = model.first.saturating_sub(2);
                let i = rng.random_range(lo..=model.next + 1);
                let r = wal.truncate_suffix(i);
                if i > model.next || i == 0 {
                    assert!(matches!(r, Err(Error::OutOfRange { .. })), "{ctx}: {r:?}");
                } else {
                    pending.push(r.unwrap());
                    model.apply(&Op::Truncate(i));
                }
            }
            62..68 => {
                let i = rng.random_range(model.first..=model.next + 3);
                wal.compact_prefix(i).unwrap();
                model.apply(&Op::Compact(i));
                let f = wal.first_index();
                assert!(
                    f >= model.first && f <= model.may_first.max(model.first),
                    "{ctx}: compact_prefix({i}): first {f}, model first {} may_first {} next {}",
                    model.first,
                    model.may_first,
                    model.next
                );
            }
            68..88 => {
                let first = wal.first_index();
                let next = model.next;
                let lo = rng.random_range(first.saturating_sub(1)..=next);
                let hi = rng.random_range(lo..=next + 1);
                let r = wal.read(lo, hi);
                if lo < first || hi > next {
                    assert!(
                        matches!(r, Err(Error::OutOfRange { .. })),
                        "{ctx}: read [{lo},{hi}) {r:?}"
                    );
                } else {
                    let got = r.unwrap_or_else(|e| panic!("{ctx}: read [{lo},{hi}): {e}"));
                    assert_eq!(got.len() as u64, hi - lo, "{ctx}");
                    for (k, g) in got.iter().enumerate() {
                        assert_eq!(
                            Some(g),
                            model.entries.get(&(lo + k as u64)),
                            "{ctx}: entry {}",
                            lo + k as u64
                        );
                    }
                }
            }
            88..95 => {
                for t in pending.drain(..) {
                    t.wait().unwrap();
                }
                assert_eq!(wal.hard_state(), model.hs, "{ctx}");
            }
            _ => {
                // Reopen without waiting: dropping the log finishes what was queued.
                pending.clear();
                drop(wal);
                wal = Wal::open_with_storage(dir, opts(), storage.clone()).unwrap();
                if let Some(m) = model.mismatch(&wal) {
                    panic!("{ctx}: after reopen: {m}");
                }
            }
        }
        assert_eq!(wal.last_index(), model.last(), "{ctx}");
    }
    for t in pending.drain(..) {
        t.wait().unwrap();
    }
    if let Some(m) = model.mismatch(&wal) {
        panic!("seed {seed}: at the end: {m}");
    }
}

#[test]
fn model_on_real_files() {
    let seed = seed("WAL_MODEL_SEED");
    let dir = tempfile::tempdir().unwrap();
    run(Arc::new(OsStorage), dir.path(), seed, count("WAL_MODEL_OPS", 600));
}

#[test]
fn model_on_simulated_files() {
    let seed = seed("WAL_MODEL_SEED");
    for k in 0..3 {
        run(
            Arc::new(SimStorage::new()),
            Path::new("/wal"),
            seed.wrapping_add(k),
            count("WAL_MODEL_OPS", 600),
        );
    }
}
