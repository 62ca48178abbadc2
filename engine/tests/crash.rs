//! Power loss at every point of a commit: the recovered file holds exactly the last
//! durable commit (or the one in flight, if its meta page made it), intact and usable.
//!
//! The disk is `MemStorage`: writes land in a volatile cache, `sync` makes them durable,
//! and after the cut any subset of unsynced writes may have landed, some torn.
//! `ENGINE_TEST_SEED` replays a seed.

mod common;

use std::sync::Arc;

use common::{all, env, manual_options};
use logbook_engine::{Engine, KeyValue, MemStorage, RangeOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const COMMITS: u64 = 8;

/// What a reopened engine must show after commit `k`.
#[derive(Clone, Debug, PartialEq)]
struct State {
    applied: u64,
    revision: i64,
    kvs: Vec<KeyValue>,
    metas: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every key at revision 2 (history survives too).
    early: Vec<KeyValue>,
}

fn state(e: &Engine) -> State {
    let early = if e.current_revision() >= 2 {
        e.range(&RangeOptions {
            key: vec![0],
            range_end: vec![0],
            revision: 2,
            ..Default::default()
        })
        .unwrap()
        .kvs
    } else {
        Vec::new()
    };
    State {
        applied: e.applied_index(),
        revision: e.current_revision(),
        kvs: all(e),
        metas: e.meta_scan("members"),
        early,
    }
}

/// The deterministic workload: `COMMITS` commits of puts (some on overflow pages) and
/// deletes. Returns the states after each successful commit, stopping at the first failure.
fn workload(e: &Engine, states: &mut Vec<State>) {
    for c in 1..=COMMITS {
        for t in 0..3u64 {
            let idx = c * 10 + t;
            let mut txn = e.write(idx);
            for k in 0..6u64 {
                let key = format!("key/{:02}", (c * 7 + t * 3 + k) % 40);
                let len = if (c + k) % 9 == 0 { 3000 } else { 20 + (k as usize) * 10 };
                let value = vec![(c * 16 + t * 4 + k) as u8; len];
                txn.put(key.as_bytes(), &value, 0).unwrap();
            }
            if c % 3 == 0 {
                txn.delete_range(
                    format!("key/{:02}", c).as_bytes(),
                    format!("key/{:02}", c + 5).as_bytes(),
                )
                .unwrap();
            }
            txn.meta_put("members", &c.to_be_bytes(), format!("member {c}").as_bytes());
            txn.commit();
        }
        if e.commit().is_err() {
            return;
        }
        states.push(state(e));
    }
}

#[test]
fn power_loss_at_every_point_of_a_commit() {
    let seed = env("ENGINE_TEST_SEED").unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (replay with ENGINE_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    // Dry run: count the mutating I/O calls and record every commit's state.
    let disk = MemStorage::new();
    let e = Engine::open_with_storage(Arc::new(disk.clone()), "db", manual_options()).unwrap();
    let first = disk.ops();
    let empty = state(&e);
    let mut states = vec![empty];
    workload(&e, &mut states);
    let last = disk.ops();
    drop(e);
    assert_eq!(states.len() as u64, COMMITS + 1);

    for cut in first..last {
        let disk = MemStorage::new();
        let e = Engine::open_with_storage(Arc::new(disk.clone()), "db", manual_options()).unwrap();
        disk.fail_from(cut);
        let mut seen = vec![states[0].clone()];
        workload(&e, &mut seen);
        drop(e);
        let done = seen.len() - 1; // commits that completed before the cut

        // Three ways the disk may have left things: nothing unsynced landed, everything did,
        // or a random subset, some torn.
        let images = [
            disk.durable_image(),
            disk.power_loss_image(|_, n| n),
            disk.power_loss_image(|_, n| match rng.random_range(0..3) {
                0 => 0,
                1 => n,
                _ => rng.random_range(0..n),
            }),
        ];
        for (which, image) in images.into_iter().enumerate() {
            let ctx =
                format!("seed {seed}, cut at I/O call {cut} ({done} commits done), image {which}");
            let recovered = MemStorage::from_image(image);
            let e = Engine::open_with_storage(Arc::new(recovered.clone()), "db", manual_options())
                .unwrap_or_else(|err| panic!("{ctx}: reopen failed: {err}"));
            let got = state(&e);
            // The commit in flight may have become durable (its meta page landed) or not.
            let ok = got == states[done] || (done < COMMITS as usize && got == states[done + 1]);
            assert!(
                ok,
                "{ctx}: recovered applied index {} revision {}, expected commit {done} (applied {})",
                got.applied, got.revision, states[done].applied
            );
            e.verify().unwrap_or_else(|err| panic!("{ctx}: {err}"));
            // Still usable: write, commit, reopen.
            let mut txn = e.write(got.applied + 1);
            txn.put(b"after", b"recovery", 0).unwrap();
            txn.commit();
            e.commit().unwrap();
            e.verify().unwrap();
            drop(e);
            let e = Engine::open_with_storage(Arc::new(recovered), "db", manual_options()).unwrap();
            assert_eq!(
                e.range(&RangeOptions::key("after")).unwrap().kvs[0].value,
                b"recovery",
                "{ctx}"
            );
        }
    }
}
