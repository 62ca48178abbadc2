//! Readers see whole transactions, never half of one, while writes and background
//! commits run; a reader holding an old revision keeps reading it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use logbook_engine::{Engine, Options, RangeOptions};

#[test]
fn readers_see_atomic_transactions_during_commits() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        commit_interval: Duration::from_millis(1),
        commit_max_writes: 20,
        page_size: 1024,
        ..Options::default()
    };
    let e = Arc::new(Engine::open(dir.path().join("db"), opts).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) && reads < 200_000 {
                    let r = e.range(&RangeOptions::prefix("pair/")).unwrap();
                    if r.kvs.len() == 2 {
                        assert_eq!(
                            r.kvs[0].value, r.kvs[1].value,
                            "half a transaction seen at revision {}",
                            r.revision
                        );
                        assert_eq!(r.kvs[0].mod_revision, r.kvs[1].mod_revision);
                        // The same revision read again later gives the same answer.
                        // (Unless a compaction overtook it meanwhile.)
                        match e.range(&RangeOptions {
                            revision: r.revision,
                            ..RangeOptions::prefix("pair/")
                        }) {
                            Ok(again) => assert_eq!(again.kvs, r.kvs),
                            Err(logbook_engine::Error::Compacted) => {}
                            Err(err) => panic!("{err}"),
                        }
                    }
                    reads += 1;
                }
            })
        })
        .collect();
    for i in 0..1500u64 {
        let mut txn = e.write(i + 1);
        let v = vec![(i % 256) as u8; 40 + (i % 7) as usize * 200];
        txn.put(b"pair/a", &v, 0).unwrap();
        txn.put(b"pair/b", &v, 0).unwrap();
        txn.put(format!("filler/{}", i % 300).as_bytes(), &v, 0).unwrap();
        txn.commit();
        if i % 500 == 499 {
            e.compact(e.current_revision() - 10).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    e.commit().unwrap();
    assert_eq!(e.durable_applied_index(), 1500);
    e.verify().unwrap();
}
