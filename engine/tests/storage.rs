//! The file: corruption is detected and named, big values live on overflow pages, freed
//! pages are reused so churn does not grow the file.

mod common;

use std::os::unix::fs::FileExt;

use common::{all, manual_options};
use logbook_engine::{Engine, Error, Options, RangeOptions};

fn fill(e: &Engine, keys: u64, value_len: usize, raft_index: u64) {
    let mut txn = e.write(raft_index);
    for i in 0..keys {
        txn.put(format!("key/{i:05}").as_bytes(), &vec![(i % 251) as u8; value_len], 0).unwrap();
    }
    txn.commit();
    e.commit().unwrap();
}

fn page_kind(file: &std::fs::File, page: u64, ps: u64) -> u8 {
    let mut b = [0u8; 5];
    file.read_exact_at(&mut b, page * ps).unwrap();
    b[4]
}

#[test]
fn corrupted_data_page_stops_open_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let e = Engine::open(&path, manual_options()).unwrap();
    fill(&e, 300, 50, 1);
    drop(e);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let ps = 1024u64;
    let pages = file.metadata().unwrap().len() / ps;
    let leaf = (2..pages)
        .find(|p| page_kind(&file, *p, ps) == logbook_engine::page::KIND_LEAF)
        .expect("a leaf page");
    file.write_all_at(&[0x5a], leaf * ps + 500).unwrap();
    drop(file);
    match Engine::open(&path, manual_options()) {
        Err(err @ Error::Corrupted { .. }) => {
            let Error::Corrupted { offset, ref reason, ref file } = err else { unreachable!() };
            assert_eq!(offset, leaf * ps);
            assert!(reason.contains("checksum"), "{reason}");
            assert_eq!(file, &path);
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(&offset.to_string()),
                "{msg}"
            );
        }
        Err(other) => panic!("expected Corrupted, got {other}"),
        Ok(_) => panic!("opened a corrupted file"),
    }
}

#[test]
fn torn_meta_page_falls_back_to_previous_commit_and_both_torn_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let e = Engine::open(&path, manual_options()).unwrap();
    fill(&e, 10, 10, 5);
    fill(&e, 10, 20, 6);
    assert_eq!(e.durable_applied_index(), 6);
    drop(e);
    let ps = 1024u64;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // Commit txid 2 went to slot 0. Tear it.
    file.write_all_at(&[0xff; 8], 100).unwrap();
    let e = Engine::open(&path, manual_options()).unwrap();
    assert_eq!(e.durable_applied_index(), 5);
    assert_eq!(all(&e)[0].value, vec![0u8; 10]);
    drop(e);
    file.write_all_at(&[0xff; 8], ps + 100).unwrap();
    match Engine::open(&path, manual_options()) {
        Err(Error::Corrupted { offset: 0, reason, .. }) => {
            assert!(reason.contains("no valid meta page"), "{reason}")
        }
        Err(other) => panic!("expected Corrupted, got {other}"),
        Ok(_) => panic!("opened a file without a valid meta page"),
    }
}

#[test]
fn a_second_engine_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _e = Engine::open(&path, manual_options()).unwrap();
    assert!(matches!(Engine::open(&path, manual_options()), Err(Error::Locked(_))));
}

#[test]
fn values_up_to_one_and_a_half_mib_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let big: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i * 7 % 256) as u8).collect();
    let e = Engine::open(&path, Options { page_size: 4096, ..manual_options() }).unwrap();
    let mut txn = e.write(1);
    txn.put(b"big", &big, 0).unwrap();
    txn.put(b"small", b"s", 0).unwrap();
    txn.commit();
    assert_eq!(e.range(&RangeOptions::key("big")).unwrap().kvs[0].value, big, "from the memtable");
    e.commit().unwrap();
    drop(e);
    let e = Engine::open(&path, Options { page_size: 4096, ..manual_options() }).unwrap();
    assert_eq!(e.range(&RangeOptions::key("big")).unwrap().kvs[0].value, big, "from the file");
    assert!(e.size() > big.len() as u64);
    e.verify().unwrap();
}

#[test]
fn overwrite_churn_with_compaction_does_not_grow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let e = Engine::open(&path, manual_options()).unwrap();
    let mut sizes = Vec::new();
    for round in 0..16u64 {
        fill(&e, 200, 60 + (round as usize % 3) * 500, round + 1);
        e.compact(e.current_revision()).unwrap();
        e.wait_compacted(e.current_revision());
        e.commit().unwrap();
        sizes.push(e.size());
    }
    e.verify().unwrap();
    // After warm-up the file stops growing: pages freed by each round are reused.
    assert!(sizes[15] <= sizes[9], "file grew under churn: {sizes:?}");
    assert_eq!(all(&e).len(), 200);
    assert!(e.size_in_use() <= e.size());
}
