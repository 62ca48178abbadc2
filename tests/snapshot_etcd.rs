//! Snapshots in etcd's format, both ways, with the real etcd 3.4 and etcdctl: etcd's data
//! restored into Logbook and Logbook's into etcd give the same keys, values, revisions and
//! versions at every revision kept; damaged snapshots are refused without leaving a data dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, etcdctl, free_port, json};

/// A process stopped (kill + wait) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Member {
    _proc: Proc,
    endpoint: String,
}

fn ctl_ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// etcdctl without an endpoint (snapshot status/restore).
fn ctl_local(args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .expect("etcdctl must be installed (scripts/test.sh installs etcd-client)")
}

fn logbook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logbook")).args(args).output().unwrap()
}

fn wait_serving(endpoint: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let out = etcdctl(endpoint, &["get", "--", "probe"], None);
        // With auth enabled an anonymous read is refused: the server answers, so it serves.
        if out.status.success()
            || String::from_utf8_lossy(&out.stderr).contains("user name is empty")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{endpoint} never served; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Runs `program` (etcd or `logbook serve`) as member `name` of a one-member cluster.
fn start(
    program: &str,
    pre: &[&str],
    dir: &Path,
    data_dir: &Path,
    name: &str,
    peer_port: u16,
) -> Member {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(program)
        .args(pre)
        .args(["--name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("{name}={peer}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let member =
        Member { _proc: Proc(child), endpoint: client.trim_start_matches("http://").to_string() };
    wait_serving(&member.endpoint, &log_path);
    member
}

fn start_etcd(dir: &Path, data_dir: &Path, name: &str, peer_port: u16) -> Member {
    start("etcd", &[], dir, data_dir, name, peer_port)
}

fn start_logbook(dir: &Path, data_dir: &Path, name: &str, peer_port: u16) -> Member {
    start(env!("CARGO_BIN_EXE_logbook"), &["serve"], dir, data_dir, name, peer_port)
}

/// Which program restores a snapshot and then serves it.
#[derive(Clone, Copy)]
enum Restorer {
    /// etcdctl 3.4 restores, etcd serves.
    Etcd,
    /// `logbook snapshot restore`, `logbook serve`.
    Logbook,
}

/// Restores `snap` into `dir/<data>` as the one member `name`, then starts that member.
fn restore_and_start(who: Restorer, dir: &Path, snap: &Path, data: &str, name: &str) -> Member {
    let data = dir.join(data);
    let peer_port = free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let args = [
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        name,
        "--initial-cluster",
        &format!("{name}={peer}"),
        "--initial-advertise-peer-urls",
        &peer,
    ];
    let out = match who {
        Restorer::Etcd => ctl_local(&args),
        Restorer::Logbook => logbook(&args),
    };
    assert!(out.status.success(), "{name} restore: {}", String::from_utf8_lossy(&out.stderr));
    match who {
        Restorer::Etcd => start_etcd(dir, &data, name, peer_port),
        Restorer::Logbook => start_logbook(dir, &data, name, peer_port),
    }
}

/// A workload with history: overwrites, deletes, a multi-op txn, a leased key, a compaction
/// and writes after it. Returns (compaction revision, final revision).
fn workload(ep: &str, with_lease: bool) -> (i64, i64) {
    for i in 0..40 {
        ctl_ok(ep, &["put", &format!("k{}", i % 9), &format!("v{i}")]);
        if i % 6 == 5 {
            ctl_ok(ep, &["del", &format!("k{}", (i + 4) % 9)]);
        }
    }
    let out = etcdctl(ep, &["txn"], Some("\nput t1 a\nput t2 b\ndel k3\n\n\n"));
    assert!(out.status.success(), "txn: {}", String::from_utf8_lossy(&out.stderr));
    if with_lease {
        let grant = ctl_ok(ep, &["lease", "grant", "3600"]);
        let id = grant.split_whitespace().nth(1).unwrap().to_string();
        ctl_ok(ep, &["put", "--lease", &id, "leased", "x"]);
    }
    let mid = revision(ep);
    ctl_ok(ep, &["compact", &(mid - 10).to_string()]);
    for i in 0..10 {
        ctl_ok(ep, &["put", &format!("late{}", i % 3), &format!("w{i}")]);
    }
    ctl_ok(ep, &["del", "k1"]);
    (mid - 10, revision(ep))
}

fn revision(ep: &str) -> i64 {
    json(&ctl_ok(ep, &["get", "probe", "-w", "json"]))["header"]["revision"].as_i64().unwrap()
}

/// Every key at `rev` as etcdctl's JSON shows it (kvs and count), or the error message.
fn dump(ep: &str, rev: i64) -> String {
    let out = etcdctl(ep, &["get", "--prefix", "", "-w", "json", &format!("--rev={rev}")], None);
    if !out.status.success() {
        return String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string();
    }
    let v = json(&String::from_utf8_lossy(&out.stdout));
    format!("{} {}", v["kvs"], v["count"])
}

/// Compares two servers at every revision from below the compaction to the end.
fn assert_same_history(a: &str, b: &str, compact: i64, last: i64) {
    assert_eq!(revision(a), revision(b), "current revision");
    for rev in (compact - 1)..=last {
        let (x, y) = (dump(a, rev), dump(b, rev));
        assert_eq!(x, y, "at revision {rev}");
        if rev < compact {
            assert!(x.contains("compacted"), "below the compaction: {x}");
        }
    }
}

fn save(ep: &str, path: &Path) {
    ctl_ok(ep, &["snapshot", "save", path.to_str().unwrap()]);
}

#[test]
fn etcd_snapshot_restores_into_logbook_with_every_revision() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), &dir.path().join("etcd.data"), "e1", free_port());
    let (compact, last) = workload(&etcd.endpoint, true);
    ctl_ok(&etcd.endpoint, &["user", "add", "root:secret"]);
    ctl_ok(&etcd.endpoint, &["role", "add", "reader"]);
    ctl_ok(&etcd.endpoint, &["role", "grant-permission", "reader", "read", "/foo", "--prefix"]);
    ctl_ok(&etcd.endpoint, &["user", "grant-role", "root", "reader"]);
    let snap = dir.path().join("etcd.snapshot");
    save(&etcd.endpoint, &snap);
    let snap_s = snap.to_str().unwrap();

    // Status as etcdctl prints it.
    for w in ["simple", "json", "table"] {
        let ours = logbook(&["snapshot", "status", snap_s, "-w", w]);
        assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
        let theirs = ctl_local(&["snapshot", "status", snap_s, "-w", w]);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "-w {w}"
        );
    }

    let lb = restore_and_start(Restorer::Logbook, dir.path(), &snap, "lb.data", "n1");
    assert_same_history(&etcd.endpoint, &lb.endpoint, compact, last);

    // The leased key kept its lease ID, and both go on from the same revision.
    let leased =
        |ep: &str| json(&ctl_ok(ep, &["get", "leased", "-w", "json"]))["kvs"][0]["lease"].clone();
    assert_ne!(leased(&lb.endpoint), serde_json::Value::Null);
    assert_eq!(leased(&lb.endpoint), leased(&etcd.endpoint));
    // The lease itself came along, with its granted TTL.
    let id = format!("{:x}", leased(&lb.endpoint).as_i64().unwrap());
    let ttl = |ep: &str| {
        json(&ctl_ok(ep, &["lease", "timetolive", &id, "-w", "json"]))["granted-ttl"].clone()
    };
    assert_eq!(ttl(&lb.endpoint), serde_json::json!(3600));
    assert_eq!(ttl(&lb.endpoint), ttl(&etcd.endpoint));
    ctl_ok(&etcd.endpoint, &["put", "after", "1"]);
    ctl_ok(&lb.endpoint, &["put", "after", "1"]);
    assert_eq!(dump(&etcd.endpoint, last + 1), dump(&lb.endpoint, last + 1));

    // Logbook serves etcd's users and roles, and they travel on through it: its snapshot
    // restored into a new etcd serves them as the original etcd does.
    let snap2 = dir.path().join("lb.snapshot");
    save(&lb.endpoint, &snap2);
    let etcd2 = restore_and_start(Restorer::Etcd, dir.path(), &snap2, "etcd2.data", "e2");
    for args in [&["user", "get", "root"][..], &["role", "get", "reader"], &["user", "list"]] {
        let want = ctl_ok(&etcd.endpoint, args);
        assert!(want.contains("root") || want.contains("/foo"), "{args:?}: {want}");
        assert_eq!(ctl_ok(&lb.endpoint, args), want, "Logbook: {args:?}");
        assert_eq!(ctl_ok(&etcd2.endpoint, args), want, "etcd: {args:?}");
    }
}

#[test]
fn logbook_snapshot_restores_into_etcd_with_every_revision() {
    let cluster = Cluster::start(1, &[]);
    let ep = cluster.specs[0].endpoint();
    let (compact, last) = workload(&ep, false);
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("lb.snapshot");
    save(&ep, &snap);
    let snap_s = snap.to_str().unwrap();

    // etcdctl reads it, and says what Logbook's own status says.
    let theirs = ctl_local(&["snapshot", "status", snap_s, "-w", "json"]);
    assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
    let st = json(&String::from_utf8_lossy(&theirs.stdout));
    assert_eq!(st["revision"].as_i64(), Some(last));
    let ours = logbook(&["snapshot", "status", snap_s, "-w", "json"]);
    assert_eq!(String::from_utf8_lossy(&ours.stdout), String::from_utf8_lossy(&theirs.stdout));

    let etcd = restore_and_start(Restorer::Etcd, dir.path(), &snap, "etcd.data", "e1");
    assert_same_history(&ep, &etcd.endpoint, compact, last);

    // And back again: etcd's snapshot of Logbook's data into a new Logbook.
    let snap2 = dir.path().join("etcd.snapshot");
    save(&etcd.endpoint, &snap2);
    let lb2 = restore_and_start(Restorer::Logbook, dir.path(), &snap2, "lb2.data", "n2");
    assert_same_history(&ep, &lb2.endpoint, compact, last);
}

/// Restores `snap` into `data`; returns the failed command's stderr.
fn restore_fails(snap: &Path, data: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "n1",
        "--initial-cluster",
        "n1=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
    ];
    args.extend_from_slice(extra);
    let out = logbook(&args);
    assert!(!out.status.success(), "restore of {} succeeded", snap.display());
    assert!(!data.exists(), "a failed restore left {}", data.display());
    let leftovers: Vec<PathBuf> = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "temporary dirs left: {leftovers:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The root bucket's page of a bbolt file, and the page size, from the newer
/// of its two meta pages (bbolt's meta: a 16-byte page header, then magic,
/// version, page size and flags of 4 bytes each, the root bucket's page ID
/// of 8 bytes at 32, the freelist's and the high-water page IDs, and the
/// transaction ID at 64).
fn root_page(db: &[u8]) -> (usize, usize) {
    let u64_at = |at: usize| u64::from_le_bytes(db[at..at + 8].try_into().unwrap());
    let page_size = u32::from_le_bytes(db[24..28].try_into().unwrap()) as usize;
    let newer = if u64_at(page_size + 64) > u64_at(64) { page_size } else { 0 };
    (u64_at(newer + 32) as usize, page_size)
}

#[test]
fn corrupted_and_truncated_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), &dir.path().join("etcd.data"), "e1", free_port());
    for i in 0..50 {
        ctl_ok(&etcd.endpoint, &["put", &format!("key{i}"), &"v".repeat(200)]);
    }
    let snap = dir.path().join("good.snapshot");
    save(&etcd.endpoint, &snap);
    let bytes = std::fs::read(&snap).unwrap();
    let data = dir.path().join("out").join("member.data");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();

    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    let corrupted = dir.path().join("corrupted.snapshot");
    std::fs::write(&corrupted, &bad).unwrap();
    let err = restore_fails(&corrupted, &data, &[]);
    assert!(err.contains("hash mismatch"), "{err}");

    let truncated = dir.path().join("truncated.snapshot");
    std::fs::write(&truncated, &bytes[..bytes.len() - 4096 - 100]).unwrap();
    let err = restore_fails(&truncated, &data, &[]);
    assert!(err.contains("no SHA-256 trailer"), "{err}");
    let err = restore_fails(&truncated, &data, &["--skip-hash-check"]);
    assert!(err.contains("truncated") || err.contains("corrupt"), "{err}");

    // A damaged page in a raw db (no hash to catch it): the reader does. The
    // page is the root bucket's, which every read goes through (page 2 was
    // damaged before, but which page holds what depends on how the writes
    // fell into commits: where page 2 was free, nothing read it).
    let mut raw = bytes[..bytes.len() - 32].to_vec();
    let (root, page_size) = root_page(&raw);
    for b in &mut raw[root * page_size..(root + 1) * page_size] {
        *b = 0xa5;
    }
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &raw).unwrap();
    let err = restore_fails(&damaged, &data, &["--skip-hash-check"]);
    assert!(err.contains("corrupt"), "{err}");

    // The good one restores (into a fresh dir), and not over an existing dir.
    let out = logbook(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "n1",
        "--initial-cluster",
        "n1=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("member").join("snap").join("db").exists());
    assert!(data.join("member").join("wal").is_dir());
    let again = logbook(&[
        "snapshot",
        "restore",
        snap.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "n1",
        "--initial-cluster",
        "n1=http://127.0.0.1:1",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

/// Every event a watch of the whole keyspace from `from` (with previous values) sees up to
/// revision `last`, one line each; or the compaction revision it was cancelled with.
fn watch_history(url: &str, from: i64, last: i64) -> Result<Vec<String>, i64> {
    use logbook_api::etcdserverpb::watch_client::WatchClient;
    use logbook_api::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
    common::runtime().block_on(async {
        let channel = tonic::transport::Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchCreateRequest {
            key: vec![0].into(),
            range_end: vec![0].into(),
            start_revision: from,
            prev_kv: true,
            ..Default::default()
        };
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await
        .unwrap();
        let mut stream = WatchClient::new(channel)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        let mut seen = from - 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while seen < last {
            let resp = tokio::time::timeout_at(deadline, stream.message())
                .await
                .unwrap_or_else(|_| panic!("{url}: watch from {from} stopped at {seen} of {last}"))
                .unwrap_or_else(|e| panic!("{url}: watch failed: {e}"))
                .unwrap_or_else(|| panic!("{url}: watch stream ended"));
            if resp.canceled {
                return Err(resp.compact_revision);
            }
            for ev in resp.events {
                let kv = ev.kv.unwrap_or_default();
                let prev = ev
                    .prev_kv
                    .map(|p| format!("{:?}={:?}@{}/{}", p.key, p.value, p.mod_revision, p.version));
                events.push(format!(
                    "{} {:?}={:?} create {} mod {} version {} lease {} prev {prev:?}",
                    ev.r#type,
                    kv.key,
                    kv.value,
                    kv.create_revision,
                    kv.mod_revision,
                    kv.version,
                    kv.lease
                ));
                seen = seen.max(kv.mod_revision);
            }
        }
        drop(tx);
        Ok(events)
    })
}

/// One etcd snapshot restored into three data dirs with etcdctl's restore flags: the three
/// members form one new cluster (a cluster ID of their own, etcd's is not reused) serving
/// the snapshot's data on every member, take new writes, and a watch from a revision inside
/// the restored history replays it as the snapshot had it.
#[test]
fn etcd_snapshot_restores_into_a_three_member_logbook_with_watchable_history() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), &dir.path().join("etcd.data"), "e1", free_port());
    let (compact, last) = workload(&etcd.endpoint, true);
    let snap = dir.path().join("etcd.snapshot");
    save(&etcd.endpoint, &snap);

    let mut c = Cluster::create(3, &[]);
    let initial_cluster = c
        .specs
        .iter()
        .map(|s| format!("{}={}", s.name, s.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for s in &c.specs {
        let out = logbook(&[
            "snapshot",
            "restore",
            snap.to_str().unwrap(),
            "--data-dir",
            s.data_dir.to_str().unwrap(),
            "--name",
            &s.name,
            "--initial-cluster",
            &initial_cluster,
            "--initial-cluster-token",
            &c.token,
            "--initial-advertise-peer-urls",
            &s.peer_url(),
        ]);
        assert!(
            out.status.success(),
            "restore {}: {}",
            s.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(30));
    }

    // One cluster of the three restored members, with an identity of its own.
    let cluster_id = |ep: &str| {
        json(&ctl_ok(ep, &["get", "probe", "-w", "json"]))["header"]["cluster_id"].as_u64().unwrap()
    };
    let ids: Vec<u64> = c.specs.iter().map(|s| cluster_id(&s.endpoint())).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "cluster IDs {ids:x?}");
    assert_ne!(ids[0], cluster_id(&etcd.endpoint), "the restored cluster reuses etcd's ID");
    let members = json(&c.ctl_ok(0, &["member", "list", "-w", "json"]));
    let mut names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["m1", "m2", "m3"]);
    // Each member is the one its flags name, also after a restart.
    let own_id = |ep: &str| {
        json(&ctl_ok(ep, &["get", "probe", "-w", "json"]))["header"]["member_id"].as_u64().unwrap()
    };
    let listed_id = |name: &str| {
        members["members"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()["ID"]
            .as_u64()
            .unwrap()
    };
    for s in &c.specs {
        assert_eq!(own_id(&s.endpoint()), listed_id(&s.name), "{}", s.name);
    }
    assert!(c.stop(1), "m2 did not stop cleanly");
    c.spawn(1);
    c.wait_ready(1, Duration::from_secs(30));
    assert_eq!(own_id(&c.specs[1].endpoint()), listed_id("m2"), "m2 after a restart");

    // Every member serves the snapshot's history, from its own copy.
    for s in &c.specs {
        assert_same_history(&etcd.endpoint, &s.endpoint(), compact, last);
        let local = |ep: &str| {
            let v = json(&ctl_ok(ep, &["get", "--prefix", "", "-w", "json", "--consistency=s"]));
            format!("{} {}", v["kvs"], v["count"])
        };
        assert_eq!(local(&s.endpoint()), local(&etcd.endpoint), "member {}", s.name);
    }

    // A watch from inside the restored history sees it as etcd does, on every member; one
    // from below the compaction is cancelled with the compaction revision, as etcd does.
    let want = watch_history(&etcd_url(&etcd), compact + 1, last).unwrap();
    assert!(want.len() >= 10, "{want:?}");
    for s in &c.specs {
        assert_eq!(watch_history(&s.client_url(), compact + 1, last).unwrap(), want, "{}", s.name);
    }
    assert_eq!(watch_history(&etcd_url(&etcd), compact - 1, last), Err(compact));
    assert_eq!(watch_history(&c.specs[1].client_url(), compact - 1, last), Err(compact));

    // The new cluster takes writes on from the snapshot's revision, on every member.
    let put = json(&c.ctl_ok(2, &["put", "after-restore", "1", "-w", "json"]));
    assert_eq!(put["header"]["revision"].as_i64(), Some(last + 1));
    for s in &c.specs {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = json(&ctl_ok(
                &s.endpoint(),
                &["get", "after-restore", "-w", "json", "--consistency=s"],
            ));
            if v["kvs"][0]["mod_revision"].as_i64() == Some(last + 1) {
                break;
            }
            assert!(Instant::now() < deadline, "{} never applied the write: {v}", s.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn etcd_url(m: &Member) -> String {
    format!("http://{}", m.endpoint)
}

/// A member removed while it was down comes back to a cluster that refuses it, in etcd's
/// words, and stops; the cluster records its ID in etcd's `members_removed` bucket, which
/// the cluster's snapshots carry (key: the ID in hex, value `removed`, as etcd keeps them).
#[test]
fn a_removed_member_is_refused_and_its_id_travels_in_snapshots() {
    let mut c = Cluster::start(3, &[]);
    let members = json(&c.ctl_ok(0, &["member", "list", "-w", "json"]));
    let id = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "m3")
        .and_then(|m| m["ID"].as_u64())
        .unwrap_or_else(|| panic!("no m3 in {members}"));
    assert!(c.stop(2), "m3 did not stop cleanly");
    // If m3 led, the other two elect a leader first.
    c.wait_leader(Duration::from_secs(30));
    c.ctl_ok(0, &["put", "settled", "1"]);
    c.ctl_ok(0, &["member", "remove", &format!("{id:x}")]);
    c.ctl_ok(0, &["put", "after-removal", "1"]);

    // m3 returns with its old data: the others refuse it and it stops by itself.
    c.spawn(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = c.procs[2].as_mut().unwrap().try_wait() {
            break;
        }
        assert!(Instant::now() < deadline, "the removed member kept running:\n{}", c.log(2));
        std::thread::sleep(Duration::from_millis(100));
    }
    c.procs[2] = None;
    let log = c.log(2);
    assert!(log.contains("the member has been permanently removed from the cluster"), "{log}");
    assert!(
        c.log(0).contains("refused peer traffic from a removed member")
            || c.log(1).contains("refused peer traffic from a removed member")
    );

    // The two left serve on, and their snapshot says who was removed.
    c.ctl_ok(1, &["put", "after-return", "2"]);
    let listed = json(&c.ctl_ok(1, &["member", "list", "-w", "json"]));
    assert_eq!(listed["members"].as_array().unwrap().len(), 2, "{listed}");
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("lb.snapshot");
    save(&c.specs[0].endpoint(), &snap);
    let bytes = std::fs::read(&snap).unwrap();
    let record = format!("{id:x}removed").into_bytes();
    assert!(bytes.windows(record.len()).any(|w| w == record), "no members_removed record");
    let st = ctl_local(&["snapshot", "status", snap.to_str().unwrap(), "-w", "json"]);
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
}

/// An etcd with auth enabled restores into a Logbook that enforces it as etcd did: the same
/// users, passwords, roles and permissions, and the same answers to the same requests.
#[test]
fn etcd_auth_enabled_restores_into_logbook_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = start_etcd(dir.path(), &dir.path().join("etcd.data"), "e1", free_port());
    let ep = etcd.endpoint.clone();
    ctl_ok(&ep, &["put", "/a/x", "1"]);
    ctl_ok(&ep, &["put", "/b/y", "2"]);
    ctl_ok(&ep, &["user", "add", "root:rootpw"]);
    ctl_ok(&ep, &["user", "add", "alice:alicepw"]);
    ctl_ok(&ep, &["role", "add", "a-reader"]);
    ctl_ok(&ep, &["role", "grant-permission", "a-reader", "read", "/a/", "--prefix"]);
    ctl_ok(&ep, &["user", "grant-role", "alice", "a-reader"]);
    ctl_ok(&ep, &["auth", "enable"]);
    let snap = dir.path().join("etcd.snapshot");
    ctl_ok(&ep, &["--user=root:rootpw", "snapshot", "save", snap.to_str().unwrap()]);

    let lb = restore_and_start(Restorer::Logbook, dir.path(), &snap, "lb.data", "n1");

    let answer = |ep: &str, args: &[&str]| {
        let out = etcdctl(ep, args, None);
        if out.status.success() {
            (true, String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            // The error etcdctl reports (its retry warnings before it differ in time and IDs).
            let err = String::from_utf8_lossy(&out.stderr);
            (false, err.lines().last().unwrap_or_default().to_string())
        }
    };
    let cases: [&[&str]; 7] = [
        &["get", "/a/x", "--print-value-only"],
        &["--user=alice:alicepw", "get", "/a/x", "--print-value-only"],
        &["--user=alice:alicepw", "get", "/b/y", "--print-value-only"],
        &["--user=alice:alicepw", "put", "/a/x", "3"],
        &["--user=alice:wrong", "get", "/a/x"],
        &["--user=root:rootpw", "get", "/b/y", "--print-value-only"],
        &["--user=root:rootpw", "auth", "status"],
    ];
    for args in cases {
        let want = answer(&etcd.endpoint, args);
        assert_eq!(answer(&lb.endpoint, args), want, "{args:?}");
    }
    assert_eq!(answer(&lb.endpoint, cases[1]), (true, "1".to_string()));
}

/// A raised NOSPACE alarm travels with the data, as etcdctl's restore keeps it: Logbook ->
/// etcd -> Logbook, each listing the same alarm and refusing writes until it is disarmed.
#[test]
fn a_raised_alarm_travels_both_ways() {
    let c = Cluster::start(1, &["--quota-backend-bytes", "400000"]);
    let ep = c.specs[0].endpoint();
    let value = "x".repeat(4096);
    let full = (0..2000).any(|i| !c.ctl(0, &["put", &format!("q/{i}"), &value]).status.success());
    assert!(full, "the quota was never enforced");
    let deadline = Instant::now() + Duration::from_secs(10);
    let alarms = loop {
        let list = ctl_ok(&ep, &["alarm", "list"]);
        if list.contains("alarm:NOSPACE") {
            break list;
        }
        assert!(Instant::now() < deadline, "no NOSPACE alarm listed: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let refusal = |ep: &str| {
        let out = etcdctl(ep, &["put", "more", "x"], None);
        assert!(!out.status.success(), "{ep} took a write under NOSPACE");
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string()
    };
    let refused = refusal(&ep);
    assert!(refused.contains("database space exceeded"), "{refused}");

    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("lb.snapshot");
    save(&ep, &snap);
    let etcd = restore_and_start(Restorer::Etcd, dir.path(), &snap, "etcd.data", "e1");
    assert_eq!(ctl_ok(&etcd.endpoint, &["alarm", "list"]), alarms, "etcd");
    assert_eq!(refusal(&etcd.endpoint), refused, "etcd");

    let snap2 = dir.path().join("etcd.snapshot");
    save(&etcd.endpoint, &snap2);
    let lb2 = restore_and_start(Restorer::Logbook, dir.path(), &snap2, "lb2.data", "n2");
    assert_eq!(ctl_ok(&lb2.endpoint, &["alarm", "list"]), alarms, "Logbook after the trip");
    assert_eq!(refusal(&lb2.endpoint), refused, "Logbook after the trip");
    ctl_ok(&lb2.endpoint, &["alarm", "disarm"]);
    assert_eq!(ctl_ok(&lb2.endpoint, &["alarm", "list"]), "");
    ctl_ok(&lb2.endpoint, &["put", "more", "x"]);
}
