//! Any bytes opened as a bbolt file and walked as `etcdctl snapshot status` walks it (every
//! bucket, key and value) must give a result or an error, never a panic, hang or huge
//! allocation. Seed the corpus with real snapshots (`etcdsnap/tests/data/*.snapshot`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbook_etcdsnap::bbolt::Db;
use logbook_etcdsnap::file;

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Db::open(data.to_vec(), None) {
        let _ = file::status(&db);
        let _ = db.for_each_in(&[b"key"], &mut |_| Ok(()));
    }
});
