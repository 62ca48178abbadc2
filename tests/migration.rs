//! Online migration with the real `etcdctl make-mirror` (etcd 3.4), both ways: etcd into a
//! three-member Logbook and a three-member Logbook into etcd, while a writer keeps changing
//! the source (puts, overwrites, deletes, multi-op transactions, prefix deletes, binary
//! values). When the writer stops, the destination must reach exactly the source's keys and
//! values, and the cut-over check in docs/migration.md must say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Cluster, Etcd, connect, etcdctl, runtime};
use logbook_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use rand::{Rng, SeedableRng};

/// A running `etcdctl make-mirror`, killed when dropped; its output goes to a file.
struct Mirror {
    child: Child,
    log: PathBuf,
}

impl Mirror {
    fn start(source: &str, destination: &str, log: &Path) -> Mirror {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={source}"))
            .args(["make-mirror", destination])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("etcdctl must be installed (scripts/test.sh installs etcd-client)");
        Mirror { child, log: log.to_path_buf() }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test when make-mirror gave up (it runs until killed unless an error stops it).
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("make-mirror exited ({status}):\n{}", self.output());
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key and value a server holds (one linearizable range over the whole keyspace).
fn all_kvs(url: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    runtime().block_on(async {
        let mut kv = connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let r = kv
            .range(RangeRequest {
                key: vec![0].into(),
                range_end: vec![0].into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("range on {url}: {e}"))
            .into_inner();
        r.kvs.into_iter().map(|kv| (kv.key.to_vec(), kv.value.to_vec())).collect()
    })
}

/// A source of writes: a thread changing `url` until `stop` is set (or its bounds run out).
struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

const KINDS: [&str; 4] = ["pods", "services", "configmaps", "leases"];

fn key(rng: &mut impl Rng) -> String {
    let kind = KINDS[rng.random_range(0..KINDS.len())];
    format!("/registry/{kind}/ns{}/obj{}", rng.random_range(0..4), rng.random_range(0..60))
}

fn value(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.random_range(0..300);
    if rng.random_ratio(1, 3) {
        (0..len).map(|_| rng.random()).collect() // binary, like Kubernetes' protobuf objects
    } else {
        (0..len).map(|_| rng.random_range(b'a'..=b'z')).collect()
    }
}

fn put_op(k: String, v: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into_bytes().into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn delete_op(k: String) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into_bytes().into(),
            ..Default::default()
        })),
    }
}

impl Writer {
    fn start(url: String, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let rt = runtime();
            let mut kv = rt.block_on(connect(&url)).expect("connecting the writer");
            let deadline = Instant::now() + Duration::from_secs(240);
            for n in 0..50_000u64 {
                if s.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let op = match rng.random_range(0..100) {
                    0..55 => put_op(key(&mut rng), value(&mut rng)),
                    55..70 => put_op(
                        format!("/registry/events/ns{}/e{n}", rng.random_range(0..3)),
                        value(&mut rng),
                    ),
                    70..80 => delete_op(key(&mut rng)),
                    80..92 => {
                        // A multi-op transaction: its events share one revision at the source.
                        let (a, b, c) = (key(&mut rng), key(&mut rng), key(&mut rng));
                        let mut ops = vec![put_op(a.clone(), value(&mut rng))];
                        if b != a {
                            ops.push(put_op(b.clone(), value(&mut rng)));
                        }
                        if c != a && c != b {
                            ops.push(delete_op(c));
                        }
                        let txn = TxnRequest { success: ops, ..Default::default() };
                        RequestOp { request: Some(request_op::Request::RequestTxn(txn)) }
                    }
                    _ => {
                        // A prefix delete: several delete events at one revision.
                        let p = format!("/registry/events/ns{}/", rng.random_range(0..3));
                        let mut end = p.clone().into_bytes();
                        *end.last_mut().unwrap() += 1;
                        RequestOp {
                            request: Some(request_op::Request::RequestDeleteRange(
                                DeleteRangeRequest {
                                    key: p.into_bytes().into(),
                                    range_end: end.into(),
                                    ..Default::default()
                                },
                            )),
                        }
                    }
                };
                let mut attempt = 0;
                loop {
                    let r = rt.block_on(async {
                        match op.request.clone().unwrap() {
                            request_op::Request::RequestPut(p) => kv.put(p).await.map(|_| ()),
                            request_op::Request::RequestDeleteRange(d) => {
                                kv.delete_range(d).await.map(|_| ())
                            }
                            request_op::Request::RequestTxn(t) => kv.txn(t).await.map(|_| ()),
                            request_op::Request::RequestRange(_) => unreachable!(),
                        }
                    });
                    match r {
                        Ok(()) => break,
                        // A write that timed out may or may not have applied: the
                        // comparison at the end is of final states, so retrying is fine.
                        Err(e) if attempt < 5 => {
                            eprintln!("writer: {e}; retrying");
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        Err(e) => panic!("writer gave up on {url}: {e}"),
                    }
                }
                d.fetch_add(1, Ordering::Relaxed);
            }
        });
        Writer { stop, done, handle: Some(handle) }
    }

    /// Waits (bounded) until the writer has done `n` more writes.
    fn wait_for(&self, n: u64) {
        let target = self.done.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.done.load(Ordering::Relaxed) < target {
            assert!(
                !self.handle.as_ref().unwrap().is_finished(),
                "the writer stopped early (see its panic above)"
            );
            assert!(Instant::now() < deadline, "the writer did not do {n} writes in 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the writer; returns how many writes it made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take().unwrap();
        if let Err(panic) = h.join() {
            std::panic::resume_unwind(panic);
        }
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The cut-over check docs/migration.md gives operators: the number of keys, and a digest
/// of every key and value as etcdctl prints them, on the given endpoint.
fn cutover_check(endpoint: &str) -> (String, String) {
    let out = etcdctl(endpoint, &["get", "", "--prefix", "-w", "fields"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let count = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("\"Count\""))
        .unwrap_or_else(|| panic!("no Count line from {endpoint}"))
        .to_string();
    let mut digest = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    {
        use std::io::Write;
        let mut stdin = digest.stdin.take().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with("\"Key\"") || line.starts_with("\"Value\"") {
                writeln!(stdin, "{line}").unwrap();
            }
        }
    }
    let digest = digest.wait_with_output().unwrap();
    (count, String::from_utf8_lossy(&digest.stdout).into_owned())
}

/// Mirrors `src` into `dst` with make-mirror while a writer changes `src`, then checks that
/// the destination converges to the source's exact keys and values and stays in step.
fn mirror_while_writing(src_url: &str, mirror_src: &str, dst_url: &str, dst_ep: &str, dir: &Path) {
    let seed: u64 =
        std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("SEED={seed}");
    // More keys than make-mirror copies per range request (1000), so its base copy pages.
    runtime().block_on(async {
        let mut kv = connect(src_url).await.unwrap();
        for batch in 0..11 {
            let ops = (0..100)
                .map(|i| {
                    put_op(format!("/registry/secrets/bulk/s{batch:02}-{i:03}"), vec![b'x'; i])
                })
                .collect();
            kv.txn(TxnRequest { success: ops, ..Default::default() }).await.unwrap();
        }
    });
    let writer = Writer::start(src_url.to_string(), seed);
    writer.wait_for(300); // history before the mirror starts: its base copy
    let mut mirror = Mirror::start(mirror_src, dst_ep, &dir.join("mirror.log"));
    writer.wait_for(300); // and writes while it copies and follows
    mirror.assert_running();
    assert!(!all_kvs(dst_url).is_empty(), "nothing mirrored yet:\n{}", mirror.output());
    writer.wait_for(300);
    let writes = writer.stop();
    eprintln!("{writes} writes on the source");

    // Writes stopped: the destination catches up to exactly the source.
    let want = all_kvs(src_url);
    assert!(want.len() > 1100, "the workload left {} keys", want.len());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        mirror.assert_running();
        let got = all_kvs(dst_url);
        if got == want {
            break;
        }
        if Instant::now() > deadline {
            let missing = want.iter().filter(|kv| !got.contains(kv)).count();
            let extra = got.iter().filter(|kv| !want.contains(kv)).count();
            panic!(
                "destination differs after 90 s: {} keys vs {}, {missing} missing or stale, \
                 {extra} extra; mirror output:\n{}",
                got.len(),
                want.len(),
                mirror.output()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cutover_check(mirror_src), cutover_check(dst_ep), "the documented cut-over check");

    // Still in step: a write after the catch-up arrives too.
    runtime().block_on(async {
        let mut kv = connect(src_url).await.unwrap();
        common::put(&mut kv, "/cutover/marker", "done").await.unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while common_get(dst_url, "/cutover/marker").as_deref() != Some(&b"done"[..]) {
        mirror.assert_running();
        assert!(Instant::now() < deadline, "a later write never arrived:\n{}", mirror.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn common_get(url: &str, key: &str) -> Option<Vec<u8>> {
    all_kvs(url).into_iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v)
}

#[test]
fn make_mirror_from_etcd_into_logbook_while_writing() {
    let etcd = Etcd::start();
    let lb = Cluster::start(3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let etcd_ep = etcd.client_url.trim_start_matches("http://").to_string();
    // The mirror writes through a follower when member 0 is not the leader: it forwards.
    mirror_while_writing(
        &etcd.client_url,
        &etcd_ep,
        &lb.specs[0].client_url(),
        &lb.specs[0].endpoint(),
        dir.path(),
    );
    // Every member holds what was mirrored.
    let want = all_kvs(&etcd.client_url);
    for s in &lb.specs[1..] {
        assert_eq!(all_kvs(&s.client_url()), want, "member {}", s.name);
    }
}

#[test]
fn make_mirror_from_logbook_into_etcd_while_writing() {
    let lb = Cluster::start(3, &[]);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let etcd_ep = etcd.client_url.trim_start_matches("http://").to_string();
    // The writer uses member 0, the mirror reads and watches member 1.
    mirror_while_writing(
        &lb.specs[0].client_url(),
        &lb.specs[1].endpoint(),
        &etcd.client_url,
        &etcd_ep,
        dir.path(),
    );
}
