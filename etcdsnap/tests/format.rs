//! The bbolt reader and writer, against a snapshot real etcd 3.4 wrote and against each other.
#![allow(clippy::type_complexity)] // test tables

use std::collections::BTreeMap;

use logbook_engine::{Engine, Options, RangeOptions, Revision};
use logbook_etcdsnap::bbolt::{Db, DbWriter};
use logbook_etcdsnap::{export, file, import, layout};
use rand::{Rng, SeedableRng};

/// Written by `etcdctl snapshot save` against etcd 3.4.23 after: put a 1, put b 2, put a 3,
/// del b, put c 4, lease grant 600 + put --lease l v, compact 4, put d 5, user add root,
/// role add r1, grant r1 read /foo, grant root r1.
const ETCD_SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/etcd-3.4.23.snapshot");

#[test]
fn reads_a_snapshot_etcd_wrote_as_etcdctl_does() {
    let db = file::open(ETCD_SNAPSHOT.as_ref(), false).unwrap();
    let st = file::status(&db).unwrap();
    // `etcdctl snapshot status -w json` on the same file.
    assert_eq!(st.json(), r#"{"hash":1781252960,"revision":8,"totalKey":15,"totalSize":20480}"#);
    assert_eq!(st.simple(), "6a2bc360, 8, 15, 20 kB");
    let mut buckets = Vec::new();
    db.for_each_root(&mut |e| {
        buckets.push(String::from_utf8(e.key.to_vec()).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(buckets, layout::BUCKETS);
}

#[test]
fn imports_a_snapshot_etcd_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = file::open(ETCD_SNAPSHOT.as_ref(), false).unwrap();
    let engine = Engine::open(dir.path().join("db"), Options::default()).unwrap();
    let out = import::import(&db, &engine, &mut import::PassThroughImport, 1).unwrap();
    assert_eq!((out.revision, out.compact_revision), (8, 4));
    let all = RangeOptions::range(b"\0".to_vec(), vec![0]);
    let kvs = engine.range(&all).unwrap().kvs;
    let got: Vec<(&[u8], &[u8], i64, i64, i64)> = kvs
        .iter()
        .map(|k| (&k.key[..], &k.value[..], k.create_revision, k.mod_revision, k.version))
        .collect();
    assert_eq!(
        got,
        vec![
            (&b"a"[..], &b"3"[..], 2, 4, 2),
            (b"c", b"4", 6, 6, 1),
            (b"d", b"5", 8, 8, 1),
            (b"l", b"v", 7, 7, 1)
        ]
    );
    assert_ne!(kvs[3].lease, 0, "the lease is attached");
    assert_eq!(engine.compact_revision(), 4);
    let at4 = RangeOptions { revision: 4, ..all.clone() };
    assert_eq!(engine.range(&at4).unwrap().kvs.len(), 2, "a and b at 4 (b was deleted at 5)");
    // Leases and auth kept verbatim.
    assert_eq!(engine.meta_scan("lease").len(), 1);
    assert_eq!(engine.meta_scan("authUsers")[0].0, b"root");
    assert_eq!(engine.meta_scan("authRoles")[0].0, b"r1");
    let auth: Vec<Vec<u8>> = engine.meta_scan("auth").into_iter().map(|(k, _)| k).collect();
    assert_eq!(auth, [&b"authRevision"[..]], "etcd 3.4 writes authEnabled only when enabled");

    // And back out: the same key history and side buckets, which etcdctl's status
    // reads like the original (members and cluster aside).
    let snap = export::Export::new(engine.history().unwrap(), &export::PassThroughOnly).unwrap();
    let mut bytes = Vec::new();
    snap.write_snapshot(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, snap.db_size() + 32);
    let back = Db::open(bytes, Some(snap.db_size())).unwrap();
    let orig = file::open(ETCD_SNAPSHOT.as_ref(), false).unwrap();
    for b in ["key", "lease", "auth", "authUsers", "authRoles"] {
        assert_eq!(dump(&back, b), dump(&orig, b), "bucket {b}");
    }
}

fn dump<R: logbook_etcdsnap::bbolt::ReadAt>(db: &Db<R>, bucket: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    db.for_each_in(&[bucket.as_bytes()], &mut |e| {
        out.push((e.key.to_vec(), e.value.to_vec()));
        Ok(())
    })
    .unwrap();
    out
}

/// Random buckets of random keys and values (some larger than a page, some keys long enough
/// to make branch pages fill quickly) written and read back; the seed is printed.
#[test]
fn writer_output_reads_back_exactly() {
    let seed: u64 =
        std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..8 {
        let mut model: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
        for _ in 0..rng.random_range(0..6) {
            let name = format!("b{}", rng.random_range(0..1000)).into_bytes();
            let mut m = BTreeMap::new();
            let n =
                if round % 3 == 0 { rng.random_range(0..20_000) } else { rng.random_range(0..300) };
            for _ in 0..n {
                let klen = if rng.random_ratio(1, 50) {
                    rng.random_range(1..3000)
                } else {
                    rng.random_range(1..40)
                };
                let k: Vec<u8> = (0..klen).map(|_| rng.random()).collect();
                let vlen = if rng.random_ratio(1, 100) {
                    rng.random_range(0..20_000)
                } else {
                    rng.random_range(0..100)
                };
                m.insert(k, (0..vlen).map(|_| rng.random()).collect());
            }
            model.insert(name, m);
        }
        let feed = |w: &mut dyn FnMut(Option<&[u8]>, &[u8], &[u8])| {
            for (name, m) in &model {
                w(Some(name), b"", b"");
                for (k, v) in m {
                    w(None, k, v);
                }
            }
        };
        let mut plan = DbWriter::plan(4096);
        let mut open = false;
        feed(&mut |b, k, v| match b {
            Some(n) => {
                if open {
                    plan.end_bucket().unwrap();
                }
                plan.begin_bucket(n).unwrap();
                open = true;
            }
            None => plan.put(k, v).unwrap(),
        });
        if open {
            plan.end_bucket().unwrap();
        }
        let (layout, _) = plan.finish().unwrap();
        let mut bytes = Vec::new();
        let mut w = DbWriter::new(&mut bytes, 4096, layout).unwrap();
        let mut open = false;
        feed(&mut |b, k, v| match b {
            Some(n) => {
                if open {
                    w.end_bucket().unwrap();
                }
                w.begin_bucket(n).unwrap();
                open = true;
            }
            None => w.put(k, v).unwrap(),
        });
        if open {
            w.end_bucket().unwrap();
        }
        w.finish().unwrap();
        assert_eq!(bytes.len() as u64, layout.size(4096));
        let db = Db::open(bytes, None).unwrap();
        let mut got: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
        for name in model.keys() {
            let mut m = BTreeMap::new();
            assert!(
                db.for_each_in(&[name], &mut |e| {
                    m.insert(e.key.to_vec(), e.value.to_vec());
                    Ok(())
                })
                .unwrap()
            );
            got.insert(name.clone(), m);
        }
        assert_eq!(got, model, "round {round}, SEED={seed}");
    }
}

#[test]
fn damaged_files_are_refused() {
    let bytes = std::fs::read(ETCD_SNAPSHOT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A flipped byte: the hash catches it.
    let mut bad = bytes.clone();
    bad[4096 * 2 + 100] ^= 0xff;
    let p = dir.path().join("bad");
    std::fs::write(&p, &bad).unwrap();
    let e = file::open(&p, false).err().unwrap();
    assert!(e.to_string().contains("hash mismatch"), "{e}");
    // Truncated: no trailer where one should be.
    std::fs::write(&p, &bytes[..bytes.len() - 5000]).unwrap();
    let e = file::open(&p, false).err().unwrap();
    assert!(e.to_string().contains("no SHA-256 trailer"), "{e}");
    // Truncated and forced: the meta page's page count gives it away.
    let e = file::open(&p, true).err().unwrap();
    assert!(e.to_string().contains("truncated"), "{e}");
    // A raw db (no trailer) with --skip-hash-check reads fine.
    std::fs::write(&p, &bytes[..bytes.len() - 32]).unwrap();
    assert_eq!(file::status(&file::open(&p, true).unwrap()).unwrap().revision, 8);
    // Every single-byte corruption of the db is an error or a clean read, never a panic.
    for at in (0..bytes.len() - 32).step_by(7) {
        let mut b = bytes[..bytes.len() - 32].to_vec();
        b[at] = b[at].wrapping_add(0x5b);
        if let Ok(db) = Db::open(b, None) {
            let _ = file::status(&db);
        }
    }
    let _ = Revision::default();
}
