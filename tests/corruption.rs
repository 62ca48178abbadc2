//! Corruption checks and the CORRUPT alarm, against a real etcd 3.6.16 given
//! the same steps.
//!
//! A member's data is made to differ from its peers' the way a disk would:
//! the member is stopped and one stored value is overwritten in its
//! `member/snap/db` file with bytes of the same length (a tool in the test:
//! bbolt pages carry no checksum; Logbook's engine pages do, so the edited
//! pages get theirs recomputed, as a bit flip below the checksum would look).
//! Raft and the WAL are untouched, so the members stay in agreement about the
//! log while one keyspace differs: what etcd's checks exist to find.
//!
//! - the initial check (gate InitialCorruptCheck) refuses the restart;
//! - the leader's periodic check (`--corrupt-check-time`) raises CORRUPT for
//!   that member, and writes are refused with `etcdserver: corrupt cluster`;
//! - the leader's compaction hash check (gate CompactHashCheck) does the same
//!   from the hashes the members recorded at a compaction;
//! - with CORRUPT raised (by a client here), each kind of request gets what
//!   etcd answers, and `HashKV` reports `hash_revision` as etcd 3.6 does.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::etcd_cluster::{EtcdCluster, wait_child};
use common::{Cluster, cached_etcd, etcdctl, json, runtime};
use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::lease_client::LeaseClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::request_op::Request as Op;
use logbook_api::etcdserverpb::{
    AlarmRequest, AlarmType, CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest,
    LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest,
};
use tonic::transport::Channel;

const ETCD: &str = "3.6.16";
/// The value the test overwrites on one member's disk, and what it becomes.
const CANARY: &[u8] = b"corruption-canary-value-0001";
const CORRUPTED: &[u8] = b"CORRUPTION-canary-value-0001";

/// Three members of one kind (Logbook or etcd), started and stopped by index.
trait Members {
    fn endpoint(&self, i: usize) -> String;
    fn db_file(&self, i: usize) -> PathBuf;
    /// SIGTERM and a bounded wait.
    fn stop(&mut self, i: usize);
    /// Starts member `i` again with `extra` flags beside the cluster's own.
    fn restart(&mut self, i: usize, extra: &[&str]);
    /// Waits (bounded) for member `i` to exit by itself.
    fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus>;
    fn log(&self, i: usize) -> String;
    /// Whether the engine file's pages carry Logbook's checksums.
    fn logbook(&self) -> bool;
}

impl Members for Cluster {
    fn endpoint(&self, i: usize) -> String {
        self.specs[i].endpoint()
    }
    fn db_file(&self, i: usize) -> PathBuf {
        self.specs[i].data_dir.join("member/snap/db")
    }
    fn stop(&mut self, i: usize) {
        Cluster::stop(self, i);
    }
    fn restart(&mut self, i: usize, extra: &[&str]) {
        let saved = self.extra_args.clone();
        self.extra_args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(i);
        self.extra_args = saved;
    }
    fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let status = wait_child(self.procs[i].as_mut()?, limit)?;
        self.procs[i] = None;
        Some(status)
    }
    fn log(&self, i: usize) -> String {
        Cluster::log(self, i)
    }
    fn logbook(&self) -> bool {
        true
    }
}

impl Members for EtcdCluster {
    fn endpoint(&self, i: usize) -> String {
        EtcdCluster::endpoint(self, i)
    }
    fn db_file(&self, i: usize) -> PathBuf {
        self.data_dir(i).join("member/snap/db")
    }
    fn stop(&mut self, i: usize) {
        EtcdCluster::stop(self, i);
    }
    fn restart(&mut self, i: usize, extra: &[&str]) {
        self.spawn(i, extra);
    }
    fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        EtcdCluster::wait_exit(self, i, limit)
    }
    fn log(&self, i: usize) -> String {
        EtcdCluster::log(self, i)
    }
    fn logbook(&self) -> bool {
        false
    }
}

/// Waits (bounded) until member `i` answers a linearizable get.
fn wait_serving(m: &dyn Members, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if etcdctl(&m.endpoint(i), &["get", "ready-probe"], None).status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "member {i} not serving within 60s; log:\n{}", m.log(i));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ctl_ok(m: &dyn Members, i: usize, args: &[&str]) -> String {
    let out = etcdctl(&m.endpoint(i), args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} on member {i} failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log(i)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Member `i`'s status as etcdctl prints it in JSON.
fn status(m: &dyn Members, i: usize) -> serde_json::Value {
    json(&ctl_ok(m, i, &["endpoint", "status", "-w", "json"]))[0]["Status"].clone()
}

fn member_id(m: &dyn Members, i: usize) -> u64 {
    status(m, i)["header"]["member_id"].as_u64().unwrap()
}

/// The index of the leader and of one follower.
fn leader_and_follower(m: &dyn Members) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(m, 0);
        let leader = s["leader"].as_u64().unwrap_or(0);
        if leader != 0 {
            let l = (0..3).find(|&i| member_id(m, i) == leader).unwrap();
            return (l, (l + 1) % 3);
        }
        assert!(Instant::now() < deadline, "no leader within 30s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Overwrites every copy of `from` in the engine file at `db` with `to` (same
/// length). With `logbook`, each page that held a valid checksum before the
/// edit gets it recomputed (crc32c of bytes 4.. of the page, the page size
/// read from the meta page); free pages keep their stale bytes. Returns the
/// number of copies overwritten.
fn overwrite_value(db: &Path, from: &[u8], to: &[u8], logbook: bool) -> usize {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(db).unwrap();
    let page_size = if logbook {
        // | header: 16 | magic: 8 | format: u32 | page_size: u32 | ...
        u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize
    } else {
        bytes.len()
    };
    let valid = |page: &[u8]| {
        u32::from_le_bytes(page[..4].try_into().unwrap()) == crc32c::crc32c(&page[4..])
    };
    let mut count = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(from.len()).position(|w| w == from) {
        let start = at + pos;
        let page = start / page_size * page_size;
        let end = (page + page_size).min(bytes.len());
        let checked = logbook && valid(&bytes[page..end]);
        bytes[start..start + to.len()].copy_from_slice(to);
        if checked {
            let crc = crc32c::crc32c(&bytes[page + 4..end]);
            bytes[page..page + 4].copy_from_slice(&crc.to_le_bytes());
        }
        count += 1;
        at = start + to.len();
    }
    std::fs::write(db, bytes).unwrap();
    count
}

/// Makes member `f`'s copy of the canary differ from its peers': stops it,
/// overwrites the value on its disk.
fn corrupt_member(m: &mut dyn Members, f: usize) {
    // The follower holds the canary (a serializable read of its own store).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl_ok(m, f, &["get", "canary", "--consistency=s", "--print-value-only"])
        .contains("corruption-canary")
    {
        assert!(Instant::now() < deadline, "member {f} never applied the canary");
        std::thread::sleep(Duration::from_millis(100));
    }
    m.stop(f);
    let db = m.db_file(f);
    let n = overwrite_value(&db, CANARY, CORRUPTED, m.logbook());
    assert!(n >= 1, "the canary is not in {}", db.display());
}

/// What a check did, with member IDs replaced by names.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// `etcdctl alarm list` on the leader.
    alarms: String,
    /// The last line etcdctl printed for a put.
    put_error: String,
    /// `etcdctl get canary` on the leader still works.
    get: String,
}

/// Waits for the CORRUPT alarm on `leader`, then tries a write and a read.
fn after_alarm(m: &dyn Members, leader: usize, f_id: u64) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    let alarms = loop {
        let list = ctl_ok(m, leader, &["alarm", "list"]);
        if list.contains("CORRUPT") {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "no CORRUPT alarm within 60s; leader's log:\n{}",
            m.log(leader)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = etcdctl(&m.endpoint(leader), &["put", "after", "x"], None);
    assert!(!out.status.success(), "a put succeeded with CORRUPT raised");
    let stderr = String::from_utf8_lossy(&out.stderr);
    Outcome {
        alarms: alarms.replace(&f_id.to_string(), "<follower>"),
        put_error: stderr.lines().last().unwrap_or_default().to_string(),
        get: ctl_ok(m, leader, &["get", "canary", "--print-value-only"]),
    }
}

/// The initial check, then the periodic one, on one kind of cluster.
fn initial_then_periodic(m: &mut dyn Members, initial_check: &str) -> Outcome {
    ctl_ok(m, 0, &["put", "canary", std::str::from_utf8(CANARY).unwrap()]);
    for i in 0..20 {
        ctl_ok(m, 0, &["put", &format!("k{i}"), "v"]);
    }
    let (leader, f) = leader_and_follower(m);
    let f_id = member_id(m, f);
    corrupt_member(m, f);

    // Restarted with the initial check, the member compares its hash with
    // its running peers' and refuses to start.
    m.restart(f, &[initial_check]);
    let exit = m.wait_exit(f, Duration::from_secs(60));
    let log = m.log(f);
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the corrupt member started (or hung): {exit:?}; log:\n{log}"
    );
    let expected = format!("{f_id:x} found data inconsistency with peers");
    assert!(log.contains(&expected), "no '{expected}' in the member's log:\n{log}");

    // Without it the member runs, and the leader's periodic check finds it.
    m.restart(f, &[]);
    after_alarm(m, leader, f_id)
}

#[test]
fn initial_and_periodic_checks_find_a_member_whose_data_differs_as_etcd_does() {
    let flags = ["--corrupt-check-time=1s"];
    let mut etcd = EtcdCluster::start(ETCD, 3, &flags);
    let expected = initial_then_periodic(&mut etcd, "--feature-gates=InitialCorruptCheck=true");
    drop(etcd);
    // etcd 3.4/3.5's spellings of the same settings.
    let mut logbook = Cluster::start(3, &["--experimental-corrupt-check-time=1s"]);
    let got = initial_then_periodic(&mut logbook, "--experimental-initial-corrupt-check=true");
    assert_eq!(got, expected);
    assert_eq!(got.put_error, "Error: etcdserver: corrupt cluster");
    assert!(got.alarms.contains("memberID:<follower> alarm:CORRUPT"), "{got:?}");
}

/// The compaction hash check on one kind of cluster.
fn compaction_hash_check(m: &mut dyn Members) -> Outcome {
    ctl_ok(m, 0, &["put", "canary", std::str::from_utf8(CANARY).unwrap()]);
    for i in 0..20 {
        ctl_ok(m, 0, &["put", &format!("k{i}"), "v"]);
    }
    let (leader, f) = leader_and_follower(m);
    let f_id = member_id(m, f);
    corrupt_member(m, f);
    m.restart(f, &[]);
    wait_serving(m, f);
    // Every member records its hash at the compaction; the follower's
    // differs from the leader's and the other follower's.
    for i in 0..5 {
        ctl_ok(m, leader, &["put", &format!("later{i}"), "v"]);
    }
    let rev = status(m, leader)["header"]["revision"].as_i64().unwrap();
    ctl_ok(m, leader, &["compact", &rev.to_string()]);
    after_alarm(m, leader, f_id)
}

#[test]
fn the_compaction_hash_check_finds_a_member_whose_data_differs_as_etcd_does() {
    let flags = ["--feature-gates=CompactHashCheck=true", "--compact-hash-check-time=1s"];
    let mut etcd = EtcdCluster::start(ETCD, 3, &flags);
    let expected = compaction_hash_check(&mut etcd);
    drop(etcd);
    let mut logbook = Cluster::start(
        3,
        &[
            "--experimental-compact-hash-check-enabled=true",
            "--experimental-compact-hash-check-time=1s",
        ],
    );
    let got = compaction_hash_check(&mut logbook);
    assert_eq!(got, expected);
    assert!(got.alarms.contains("memberID:<follower> alarm:CORRUPT"), "{got:?}");
}

/// Each kind of request with CORRUPT raised on a one-member cluster at
/// `url`: the outcome as `ok` or `code: message`, in order.
fn requests_while_corrupt(url: &str) -> Vec<String> {
    runtime().block_on(async {
        let ch = Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap();
        let mut kv = KvClient::new(ch.clone());
        let mut lease = LeaseClient::new(ch.clone());
        let mut m = MaintenanceClient::new(ch);
        let me = m.status(StatusRequest {}).await.unwrap().into_inner().header.unwrap().member_id;
        let put = |k: &str| PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: b"v".to_vec().into(),
            ..Default::default()
        };
        kv.put(put("a")).await.unwrap();
        let lid =
            lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await.unwrap().into_inner().id;
        // HashKV before: hash_revision is the revision hashed (etcd 3.6).
        let h = m.hash_kv(HashKvRequest { revision: 0 }).await.unwrap().into_inner();
        let mut out = vec![format!(
            "hash_revision==header.revision: {}",
            h.hash_revision == h.header.unwrap().revision
        )];
        let h1 = m.hash_kv(HashKvRequest { revision: 1 }).await.unwrap().into_inner();
        out.push(format!("hash_revision at 1: {}", h1.hash_revision));

        let raise = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: me,
            alarm: AlarmType::Corrupt as i32,
        };
        let r = m.alarm(raise).await.unwrap().into_inner();
        out.push(format!("raised: {}", r.alarms.len()));
        fn show<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
            match r {
                Ok(_) => "ok".into(),
                Err(s) => format!("{:?}: {}", s.code(), s.message()),
            }
        }
        out.push(format!("put: {}", show(kv.put(put("b")).await)));
        out.push(format!(
            "delete: {}",
            show(
                kv.delete_range(DeleteRangeRequest {
                    key: b"a".to_vec().into(),
                    ..Default::default()
                })
                .await
            )
        ));
        let cmp = Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Version as i32,
            key: b"a".to_vec().into(),
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        };
        let txn_put = TxnRequest {
            compare: vec![cmp.clone()],
            success: vec![RequestOp { request: Some(Op::RequestPut(put("c"))) }],
            failure: vec![],
        };
        out.push(format!("txn put: {}", show(kv.txn(txn_put).await)));
        let get = RangeRequest { key: b"a".to_vec().into(), ..Default::default() };
        let txn_get = TxnRequest {
            compare: vec![cmp],
            success: vec![RequestOp { request: Some(Op::RequestRange(get.clone())) }],
            failure: vec![],
        };
        out.push(format!("txn get: {}", show(kv.txn(txn_get).await)));
        out.push(format!("range: {}", show(kv.range(get.clone()).await)));
        out.push(format!(
            "serializable range: {}",
            show(kv.range(RangeRequest { serializable: true, ..get }).await)
        ));
        out.push(format!(
            "compact: {}",
            show(kv.compact(CompactionRequest { revision: 1, physical: false }).await)
        ));
        out.push(format!(
            "lease grant: {}",
            show(lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await)
        ));
        out.push(format!(
            "lease revoke: {}",
            show(lease.lease_revoke(LeaseRevokeRequest { id: lid }).await)
        ));
        let list = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: 0 };
        let alarms = m.alarm(list).await.unwrap().into_inner().alarms;
        out.push(format!(
            "alarms: {:?}",
            alarms.iter().map(|a| (a.member_id == me, a.alarm)).collect::<Vec<_>>()
        ));
        let errors = m.status(StatusRequest {}).await.unwrap().into_inner().errors;
        out.push(format!(
            "status errors: {:?}",
            errors.iter().map(|e| e.replace(&me.to_string(), "<me>")).collect::<Vec<_>>()
        ));
        let disarm = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: me,
            alarm: AlarmType::Corrupt as i32,
        };
        out.push(format!("disarm: {}", m.alarm(disarm).await.unwrap().into_inner().alarms.len()));
        out.push(format!("put after disarm: {}", show(kv.put(put("d")).await)));
        out
    })
}

#[test]
fn with_corrupt_raised_writes_are_refused_as_etcd_refuses_them() {
    let etcd = common::Etcd::start_program(&cached_etcd(ETCD, "etcd"));
    let expected = requests_while_corrupt(&etcd.client_url);
    drop(etcd);
    let logbook = Cluster::start(1, &[]);
    let got = requests_while_corrupt(&logbook.specs[0].client_url());
    assert_eq!(got, expected);
    assert!(got.contains(&"put: DataLoss: etcdserver: corrupt cluster".to_string()), "{got:?}");
}
