//! Snapshots stream a consistent copy while writes continue; restore verifies it; online
//! defragment shrinks the file while readers and writers keep going.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{all, manual_options};
use logbook_engine::{Engine, Error, Options, RangeOptions};

fn put_many(e: &Engine, from: u64, to: u64, value_len: usize) {
    let mut txn = e.write(to);
    for i in from..to {
        txn.put(format!("k/{i:06}").as_bytes(), &vec![(i % 200) as u8; value_len], i as i64 % 3)
            .unwrap();
    }
    txn.commit();
}

#[test]
fn snapshot_is_point_in_time_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path().join("db"), manual_options()).unwrap();
    put_many(&e, 0, 500, 100);
    let mut meta_txn = e.write(600);
    meta_txn.meta_put("members", b"m1", b"peer-url");
    meta_txn.commit();
    let expect = all(&e);
    let rev = e.current_revision();
    let mut snap = e.snapshot().unwrap();
    assert_eq!(snap.applied_index(), 600);
    // Writes after the snapshot do not leak into it.
    put_many(&e, 0, 800, 30);
    e.commit().unwrap();
    let size = snap.size();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut snap, &mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, size);

    let restored = dir.path().join("restored");
    Engine::restore(&restored, &mut &bytes[..]).unwrap();
    let r = Engine::open(&restored, manual_options()).unwrap();
    assert_eq!(all(&r), expect);
    assert_eq!(r.current_revision(), rev);
    assert_eq!(r.applied_index(), 600);
    assert_eq!(r.meta_get("members", b"m1").as_deref(), Some(&b"peer-url"[..]));
    r.verify().unwrap();

    // A flipped byte or a cut stream is refused, and nothing is left at the path.
    let mut bad = bytes.clone();
    bad[5000] ^= 1;
    let p = dir.path().join("bad");
    assert!(matches!(Engine::restore(&p, &mut &bad[..]), Err(Error::Corrupted { .. })));
    assert!(matches!(
        Engine::restore(&p, &mut &bytes[..bytes.len() - 100]),
        Err(Error::Corrupted { .. })
    ));
    assert!(!p.exists());
}

#[test]
fn defragment_shrinks_the_file_online() {
    let dir = tempfile::tempdir().unwrap();
    let e = Arc::new(
        Engine::open(
            dir.path().join("db"),
            Options { commit_interval: std::time::Duration::from_millis(5), ..manual_options() },
        )
        .unwrap(),
    );
    put_many(&e, 0, 3000, 200);
    e.commit().unwrap();
    // Delete most keys, compact them away: the file is now mostly free pages.
    let mut txn = e.write(4000);
    txn.delete_range(b"k/000100", b"\0").unwrap();
    txn.commit();
    e.compact(e.current_revision()).unwrap();
    e.wait_compacted(e.current_revision());
    e.commit().unwrap();
    let before = e.size();
    let expect = all(&e);

    // Readers and a writer keep going during the defragment.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let r = e.range(&RangeOptions::prefix("k/0000")).unwrap();
                assert_eq!(r.count, 100);
                n += 1;
            }
        })
    };
    let writer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 300 {
                let mut txn = e.write(5000 + i);
                txn.put(b"w/counter", &i.to_le_bytes(), 0).unwrap();
                txn.commit();
                i += 1;
            }
        })
    };
    e.defragment().unwrap();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    writer.join().unwrap();
    e.commit().unwrap();
    let after = e.size();
    assert!(after * 3 < before, "defragment left {after} of {before} bytes");
    let now: Vec<_> = all(&e).into_iter().filter(|kv| kv.key.starts_with(b"k/")).collect();
    assert_eq!(now, expect);
    e.verify().unwrap();
    drop(Arc::try_unwrap(e).ok().expect("threads are done"));
    let e = Engine::open(dir.path().join("db"), manual_options()).unwrap();
    assert_eq!(e.size(), after);
    e.verify().unwrap();
}
