//! Model-based test: random writes, reads at random revisions, watches, compactions,
//! commits and reopens against a plain `BTreeMap<(key, revision), version>` model.
//!
//! `ENGINE_TEST_SEED` replays a seed; `ENGINE_TEST_OPS` sets the number of steps.

use std::collections::BTreeMap;
use std::time::Duration;

use logbook_engine::codec::{encode_put, encode_rev, encode_tombstone};
use logbook_engine::{Engine, Error, Event, EventKind, KeyValue, Options, RangeOptions, Revision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
struct Put {
    create: i64,
    version: i64,
    value: Vec<u8>,
    lease: i64,
}

#[derive(Default)]
struct Model {
    /// (key, revision) -> put, or `None` for a tombstone.
    versions: BTreeMap<(Vec<u8>, Revision), Option<Put>>,
    current: i64,
    compact: i64,
}

impl Model {
    fn latest(&self, key: &[u8], bound: Revision) -> Option<(Revision, &Option<Put>)> {
        self.versions
            .range((key.to_vec(), Revision::new(0, 0))..=(key.to_vec(), bound))
            .next_back()
            .map(|((_, r), p)| (*r, p))
    }

    fn kv(key: &[u8], rev: Revision, p: &Put) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: p.create,
            mod_revision: rev.main,
            version: p.version,
            value: p.value.clone(),
            lease: p.lease,
        }
    }

    fn get(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        match self.latest(key, Revision::max_of(at)) {
            Some((r, Some(p))) => Some(Model::kv(key, r, p)),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        let mut ks: Vec<Vec<u8>> = self.versions.keys().map(|(k, _)| k.clone()).collect();
        ks.dedup();
        ks
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: i64, rev: Revision) -> Option<KeyValue> {
        let prev = self.get(key, i64::MAX);
        let (create, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        self.versions.insert(
            (key.to_vec(), rev),
            Some(Put { create, version, value: value.to_vec(), lease }),
        );
        prev
    }

    fn delete(&mut self, key: &[u8], end: &[u8], rev: &mut Revision) -> Vec<KeyValue> {
        let mut out = Vec::new();
        for k in self.keys() {
            if logbook_engine::kv::in_range(&k, key, end)
                && let Some(p) = self.get(&k, i64::MAX)
            {
                self.versions.insert((k.clone(), *rev), None);
                rev.sub += 1;
                out.push(p);
            }
        }
        out
    }

    fn range(
        &self,
        o: &RangeOptions,
        cur: i64,
    ) -> Result<(Vec<KeyValue>, i64, bool), &'static str> {
        let at = if o.revision <= 0 { cur } else { o.revision };
        if at > cur {
            return Err("future");
        }
        if at < self.compact {
            return Err("compacted");
        }
        let mut all: Vec<KeyValue> = self
            .keys()
            .into_iter()
            .filter(|k| logbook_engine::kv::in_range(k, &o.key, &o.range_end))
            .filter_map(|k| self.get(&k, at))
            .filter(|kv| {
                (o.min_mod_revision <= 0 || kv.mod_revision >= o.min_mod_revision)
                    && (o.max_mod_revision <= 0 || kv.mod_revision <= o.max_mod_revision)
                    && (o.min_create_revision <= 0 || kv.create_revision >= o.min_create_revision)
                    && (o.max_create_revision <= 0 || kv.create_revision <= o.max_create_revision)
            })
            .collect();
        let count = all.len() as i64;
        let more = o.limit > 0 && count > o.limit;
        if o.count_only {
            all.clear();
        }
        if o.limit > 0 {
            all.truncate(o.limit as usize);
        }
        if o.keys_only {
            for kv in &mut all {
                kv.value.clear();
            }
        }
        Ok((all, count, more))
    }

    fn compact(&mut self, at: i64) {
        for k in self.keys() {
            let revs: Vec<(Revision, bool)> = self
                .versions
                .range((k.clone(), Revision::new(0, 0))..=(k.clone(), Revision::max_of(at)))
                .map(|((_, r), p)| (*r, p.is_some()))
                .collect();
            for (i, (r, is_put)) in revs.iter().enumerate() {
                if i + 1 < revs.len() || !is_put {
                    self.versions.remove(&(k.clone(), *r));
                }
            }
        }
        self.compact = at;
    }

    fn in_order(&self) -> Vec<(Revision, Vec<u8>, Option<Put>)> {
        let mut v: Vec<(Revision, Vec<u8>, Option<Put>)> =
            self.versions.iter().map(|((k, r), p)| (*r, k.clone(), p.clone())).collect();
        v.sort_by_key(|(r, _, _)| *r);
        v
    }

    fn changes(&self, start: i64, key: &[u8], end: &[u8]) -> Vec<Event> {
        self.in_order()
            .into_iter()
            .filter(|(r, k, _)| r.main >= start && logbook_engine::kv::in_range(k, key, end))
            .map(|(r, k, p)| {
                let prev = match self.latest(&k, before(r)).filter(|_| r.main > self.compact) {
                    Some((pr, Some(pp))) => Some(Model::kv(&k, pr, pp)),
                    _ => None,
                };
                match p {
                    Some(p) => {
                        Event { kind: EventKind::Put, kv: Model::kv(&k, r, &p), prev_kv: prev }
                    }
                    None => Event {
                        kind: EventKind::Delete,
                        kv: KeyValue { key: k.clone(), mod_revision: r.main, ..Default::default() },
                        prev_kv: prev,
                    },
                }
            })
            .collect()
    }

    fn hash(&self, at: i64) -> u32 {
        let mut crc = 0u32;
        for (r, k, p) in self.in_order() {
            if r.main > at {
                continue;
            }
            let rec = match p {
                Some(p) => encode_put(&k, p.create, p.version, p.lease, &p.value),
                None => encode_tombstone(&k),
            };
            crc = crc32c::crc32c_append(crc, &encode_rev(r));
            crc = crc32c::crc32c_append(crc, &rec);
        }
        crc
    }
}

fn before(r: Revision) -> Revision {
    if r.sub > 0 { Revision::new(r.main, r.sub - 1) } else { Revision::max_of(r.main - 1) }
}

fn brief(evs: &[Event]) -> Vec<(String, i64, bool)> {
    evs.iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kv.mod_revision,
                e.kind == EventKind::Put,
            )
        })
        .collect()
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    let dirs = ["a/", "b/", "b/c/", ""];
    format!("{}{}", dirs[rng.random_range(0..dirs.len())], rng.random_range(0..12)).into_bytes()
}

fn random_range(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
    match rng.random_range(0..5) {
        0 => (random_key(rng), Vec::new()),
        1 => {
            let p = [&b"a/"[..], b"b/", b"b/c/", b""][rng.random_range(0..4)];
            (p.to_vec(), logbook_engine::prefix_end(p))
        }
        2 => (random_key(rng), vec![0]),
        3 => (vec![0], vec![0]),
        _ => {
            let (a, b) = (random_key(rng), random_key(rng));
            if a <= b { (a, b) } else { (b, a) }
        }
    }
}

fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..20) {
        0 => rng.random_range(600..6000),
        _ => rng.random_range(0..40),
    };
    (0..len).map(|_| rng.random()).collect()
}

fn check_range(
    engine_r: logbook_engine::Result<logbook_engine::RangeResult>,
    model_r: Result<(Vec<KeyValue>, i64, bool), &str>,
    ctx: &str,
) {
    match (engine_r, model_r) {
        (Ok(r), Ok((kvs, count, more))) => {
            assert_eq!(r.kvs, kvs, "{ctx}: kvs");
            assert_eq!(r.count, count, "{ctx}: count");
            assert_eq!(r.more, more, "{ctx}: more");
        }
        (Err(Error::Compacted), Err("compacted")) | (Err(Error::FutureRevision), Err("future")) => {
        }
        (e, m) => panic!("{ctx}: engine {e:?} model {m:?}"),
    }
}

fn options(rng: &mut StdRng) -> Options {
    Options {
        commit_interval: Duration::from_millis(rng.random_range(1..30)),
        commit_max_writes: rng.random_range(1..50),
        page_size: 1024,
        cache_size: 1 << 20,
        // Nothing, part or all of the latest versions cached: reads take both paths.
        latest_cache_size: [0, 2_000, 1 << 20][rng.random_range(0..3)],
        latest_cache_max_record: rng.random_range(16..200),
        compaction_batch_limit: rng.random_range(1..8),
        compaction_sleep_interval: Duration::from_millis(1),
    }
}

#[test]
fn engine_matches_model() {
    let seed = env("ENGINE_TEST_SEED").unwrap_or_else(rand::random);
    let steps = env("ENGINE_TEST_OPS").unwrap_or(600);
    eprintln!("model test seed {seed} (replay with ENGINE_TEST_SEED={seed})");
    let result = std::panic::catch_unwind(|| run(seed, steps));
    if let Err(e) = result {
        eprintln!("model test FAILED with seed {seed}");
        std::panic::resume_unwind(e);
    }
}

fn run(seed: u64, steps: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut engine = Engine::open(&path, options(&mut rng)).unwrap();
    let mut m = Model { current: 1, ..Default::default() };
    let mut raft_index = 0u64;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        match rng.random_range(0..100) {
            0..45 => {
                raft_index += 1;
                let mut txn = engine.write(raft_index);
                let main = m.current + 1;
                assert_eq!(txn.revision(), main, "{ctx}");
                let mut rev = Revision::new(main, 0);
                for _ in 0..rng.random_range(0..4) {
                    if rng.random_bool(0.75) {
                        let (k, v, lease) =
                            (random_key(&mut rng), random_value(&mut rng), rng.random_range(0..3));
                        let got = txn.put(&k, &v, lease).unwrap();
                        let want = m.put(&k, &v, lease, rev);
                        rev.sub += 1;
                        assert_eq!(got, want, "{ctx}: put prev");
                    } else {
                        let (k, e) = random_range(&mut rng);
                        let got = txn.delete_range(&k, &e).unwrap();
                        let want = m.delete(&k, &e, &mut rev);
                        assert_eq!(got, want, "{ctx}: delete_range");
                    }
                    if rng.random_bool(0.3) {
                        let (k, e) = random_range(&mut rng);
                        let o = RangeOptions { key: k, range_end: e, ..Default::default() };
                        let cur = if rev.sub > 0 { main } else { main - 1 };
                        check_range(txn.range(&o), m.range(&o, cur), &format!("{ctx}: txn range"));
                    }
                }
                if rng.random_bool(0.05) {
                    drop(txn); // rolled back
                    for k in m.keys() {
                        let revs: Vec<Revision> = m
                            .versions
                            .range(
                                (k.clone(), Revision::new(main, 0))
                                    ..=(k.clone(), Revision::max_of(main)),
                            )
                            .map(|((_, r), _)| *r)
                            .collect();
                        for r in revs {
                            m.versions.remove(&(k.clone(), r));
                        }
                    }
                    raft_index -= 1;
                } else {
                    if rng.random_bool(0.1) {
                        txn.meta_put("lease", &raft_index.to_be_bytes(), &step.to_le_bytes());
                        txn.meta_delete("lease", &raft_index.saturating_sub(3).to_be_bytes());
                    }
                    let cur = txn.commit();
                    if rev.sub > 0 {
                        m.current = main;
                    }
                    assert_eq!(cur, m.current, "{ctx}: revision after commit");
                }
            }
            45..70 => {
                let (key, range_end) = random_range(&mut rng);
                let lo = (m.compact - 2).max(0);
                let mut o = RangeOptions {
                    key,
                    range_end,
                    revision: if rng.random_bool(0.5) {
                        0
                    } else {
                        rng.random_range(lo..=m.current + 1)
                    },
                    limit: if rng.random_bool(0.3) { rng.random_range(1..4) } else { 0 },
                    keys_only: rng.random_bool(0.1),
                    count_only: rng.random_bool(0.1),
                    ..Default::default()
                };
                if rng.random_bool(0.2) {
                    let r = rng.random_range(1..=m.current);
                    match rng.random_range(0..4) {
                        0 => o.min_mod_revision = r,
                        1 => o.max_mod_revision = r,
                        2 => o.min_create_revision = r,
                        _ => o.max_create_revision = r,
                    }
                }
                check_range(
                    engine.range(&o),
                    m.range(&o, m.current),
                    &format!("{ctx}: range {o:?}"),
                );
                assert_eq!(engine.range(&o).map(|r| r.revision).unwrap_or(m.current), m.current);
            }
            70..80 => {
                let start = rng.random_range((m.compact - 1).max(0)..=m.current + 1);
                let (k, e) = random_range(&mut rng);
                let prev = rng.random_bool(0.5);
                let got = engine.changes(start, &k, &e, prev, 0);
                if start < m.compact && start > 0 {
                    assert!(
                        matches!(got, Err(Error::Compacted)),
                        "{ctx}: changes below compaction: {got:?}"
                    );
                } else {
                    let (mut evs, next) = got.unwrap();
                    let mut want = m.changes(start, &k, &e);
                    if !prev {
                        want.iter_mut().for_each(|e| e.prev_kv = None);
                    }
                    assert_eq!(
                        evs.len(),
                        want.len(),
                        "{ctx}: changes from {start} (compact {}): {:?} vs {:?}",
                        m.compact,
                        brief(&evs),
                        brief(&want)
                    );
                    assert_eq!(evs, want, "{ctx}: changes from {start}");
                    assert_eq!(
                        next,
                        if start > m.current { start } else { m.current + 1 },
                        "{ctx}"
                    );
                    // Limited: a prefix, whole revisions.
                    let (lim, next2) = engine.changes(start, &k, &e, prev, 1).unwrap();
                    evs.truncate(lim.len());
                    assert_eq!(lim, evs, "{ctx}: limited changes");
                    if let Some(last) = lim.last() {
                        assert!(lim.iter().all(|e| e.kv.mod_revision == last.kv.mod_revision));
                        assert!(next2 > last.kv.mod_revision);
                    }
                }
            }
            80..86 => {
                let at = rng.random_range((m.compact - 1).max(0)..=m.current + 1);
                let got = engine.compact(at);
                if at <= m.compact {
                    assert!(matches!(got, Err(Error::Compacted)), "{ctx}: {got:?}");
                } else if at > m.current {
                    assert!(matches!(got, Err(Error::FutureRevision)), "{ctx}: {got:?}");
                } else {
                    got.unwrap();
                    m.compact(at);
                    if rng.random_bool(0.5) {
                        engine.wait_compacted(at);
                    }
                }
            }
            86..90 => {
                let at = rng.random_range(m.compact.max(1)..=m.current);
                let (h, c) = engine.hash_kv(at).unwrap();
                assert_eq!(c, m.compact, "{ctx}");
                assert_eq!(h, m.hash(at), "{ctx}: hash at {at}");
            }
            90..95 => engine.commit().unwrap(),
            _ => {
                let commit_first = rng.random_bool(0.8);
                if commit_first {
                    engine.commit().unwrap();
                }
                let durable = engine.durable_applied_index();
                drop(engine);
                engine = Engine::open(&path, options(&mut rng)).unwrap();
                // Dropping commits (clean shutdown).
                assert_eq!(engine.applied_index(), raft_index, "{ctx}: applied index after reopen");
                assert!(engine.durable_applied_index() >= durable);
                assert_eq!(engine.current_revision(), m.current, "{ctx}: revision after reopen");
                assert_eq!(engine.compact_revision(), m.compact, "{ctx}: compaction after reopen");
            }
        }
        // Side buckets are a plain map.
        if step % 50 == 0 {
            let scan = engine.meta_scan("lease");
            for (k, v) in &scan {
                assert_eq!(engine.meta_get("lease", k).as_ref(), Some(v), "{ctx}");
            }
        }
    }
    // A full final check at every revision still readable.
    for at in m.compact.max(1)..=m.current {
        let o =
            RangeOptions { key: vec![0], range_end: vec![0], revision: at, ..Default::default() };
        check_range(
            engine.range(&o),
            m.range(&o, m.current),
            &format!("seed {seed} final range at {at}"),
        );
    }
}
