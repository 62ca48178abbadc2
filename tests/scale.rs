//! Kubernetes-size behaviour at test scale (issue #25; the figures live in
//! `logbook bench scale`): full-prefix lists by many clients at once answer as etcd 3.7
//! does, with the member's memory growing by no more than the answers in flight; requests
//! over the size limits get etcd's errors and the member keeps serving; defragmentation
//! while writes go on loses none of them, before or after a crash.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, Etcd, cached_etcd};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, PutRequest, RangeRequest, RangeResponse,
};
use logbook_api::prost::Message as _;
use tonic::transport::Channel;

/// Objects the list tests load: 3000 of 2 KiB, about 6 MiB per answer (over tonic's and
/// grpc-go's 4 MiB default receive limit, so the limits on the way out are exercised).
const OBJECTS: usize = 3000;
const LISTERS: usize = 8;

async fn client(url: &str) -> KvClient<Channel> {
    KvClient::connect(url.to_string()).await.unwrap().max_decoding_message_size(usize::MAX)
}

/// The same writes, in the same order, on either system.
async fn load(kv: &mut KvClient<Channel>) {
    for i in 0..OBJECTS {
        let key = format!("/registry/pods/default/pod-{i:05}");
        let value = format!("{i:05}").repeat(2048 / 5);
        kv.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
            .await
            .unwrap();
    }
    // Neighbours outside the prefix, and one object rewritten.
    for k in ["/registry/pods", "/registry/pods0", "/registry/pods/default/pod-00007"] {
        kv.put(PutRequest { key: k.into(), value: "x".into(), ..Default::default() })
            .await
            .unwrap();
    }
}

fn prefix_list() -> RangeRequest {
    RangeRequest {
        key: "/registry/pods/".into(),
        range_end: "/registry/pods0".into(),
        ..Default::default()
    }
}

/// `LISTERS` clients, each on its own connection, list the whole prefix at once.
async fn lists(url: &str) -> Vec<RangeResponse> {
    let mut tasks = Vec::new();
    for _ in 0..LISTERS {
        let mut kv = client(url).await;
        tasks
            .push(tokio::spawn(async move { kv.range(prefix_list()).await.unwrap().into_inner() }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Key, create, mod revision, version, value length and a digest of the value.
type KvSummary = (String, i64, i64, i64, usize, u64);

/// What must match between systems: every key-value with its revisions, count, more and
/// the header's revision.
fn comparable(r: &RangeResponse) -> (Vec<KvSummary>, i64, bool, i64) {
    let kvs = r
        .kvs
        .iter()
        .map(|kv| {
            let v = String::from_utf8_lossy(&kv.value);
            // Values are compared by a digest of length and content, so a failure prints short.
            let digest = v.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
            (
                String::from_utf8_lossy(&kv.key).to_string(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
                kv.value.len(),
                digest,
            )
        })
        .collect();
    (kvs, r.count, r.more, r.header.as_ref().map_or(0, |h| h.revision))
}

/// `VmHWM` or `VmRSS` of `pid`, bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn many_full_lists_at_once_answer_as_etcd_3_7_does_within_the_answers_memory() {
    let etcd37 = cached_etcd("3.7.3", "etcd");
    let rt = common::runtime();
    let logbook = Cluster::start(1, &[]);
    let url = logbook.specs[0].client_url();
    let pid = logbook.procs[0].as_ref().unwrap().id();
    let ours = rt.block_on(async {
        load(&mut client(&url).await).await;
        // Warm: the first list pays for reading the pages and growing the allocator's
        // arenas once; what is measured is what lists in flight cost on top.
        lists(&url).await;
        let before = proc_status(pid, "VmRSS:");
        // Reset the high-water mark to the current RSS (we own the process).
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
        let answers = lists(&url).await;
        let peak = proc_status(pid, "VmHWM:");
        let in_flight: u64 = answers.iter().map(|a| a.encoded_len() as u64).sum();
        let growth = peak.saturating_sub(before);
        eprintln!(
            "RSS before {before}, peak {peak}: grew {growth} for {in_flight} bytes in flight"
        );
        assert!(
            growth <= in_flight,
            "RSS grew {growth} bytes for {in_flight} bytes of answers in flight \
             (before {before}, peak {peak})"
        );
        answers
    });
    assert_eq!(ours.len(), LISTERS);
    assert_eq!(
        ours[0].kvs.len(),
        OBJECTS,
        "every object once (the neighbours are outside the prefix)"
    );
    for a in &ours[1..] {
        assert_eq!(comparable(a), comparable(&ours[0]));
    }
    let etcd = Etcd::start_program(&etcd37);
    let theirs = rt.block_on(async {
        load(&mut client(&etcd.client_url).await).await;
        lists(&etcd.client_url).await
    });
    assert_eq!(comparable(&ours[0]), comparable(&theirs[0]));
    // The member is still up and serving.
    rt.block_on(async {
        client(&url)
            .await
            .range(RangeRequest { key: "x".into(), ..Default::default() })
            .await
            .unwrap()
    });
}

/// Puts over `--max-request-bytes` and over the gRPC envelope above it, on either system:
/// one line per outcome, then whether the member still serves.
async fn size_limits(url: &str) -> Vec<String> {
    let mut kv = client(url).await;
    let mut out = Vec::new();
    for size in [90_000usize, 110_000, 700_000, 5 << 20] {
        let r = kv
            .put(PutRequest {
                key: format!("big-{size}").into(),
                value: vec![b'v'; size].into(),
                ..Default::default()
            })
            .await;
        out.push(match r {
            Ok(_) => format!("{size}: ok"),
            Err(e) => format!("{size}: {:?}: {}", e.code(), e.message()),
        });
    }
    let r = kv
        .range(RangeRequest {
            key: "big-".into(),
            range_end: "big.".into(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<String> =
        r.kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).to_string()).collect();
    out.push(format!("stored: {keys:?}"));
    out
}

#[test]
fn over_large_requests_get_etcds_errors_and_the_member_keeps_serving() {
    let etcd37 = cached_etcd("3.7.3", "etcd");
    let rt = common::runtime();
    let flags = ["--max-request-bytes", "100000"];
    let logbook = Cluster::start(1, &flags);
    let ours = rt.block_on(size_limits(&logbook.specs[0].client_url()));
    let etcd = Etcd::start_with(&etcd37, &flags);
    let theirs = rt.block_on(size_limits(&etcd.client_url));
    assert_eq!(ours, theirs, "\nlogbook: {ours:#?}\netcd 3.7: {theirs:#?}");
    // Both limits were hit, or the test proved little.
    assert!(ours.iter().any(|l| l.contains("InvalidArgument")), "{ours:#?}");
    assert!(ours.iter().any(|l| l.contains("ResourceExhausted")), "{ours:#?}");
}

#[test]
fn defragmentation_while_writes_go_on_loses_none_of_them() {
    let rt = common::runtime();
    let mut c = Cluster::start(1, &[]);
    let url = c.specs[0].client_url();
    let acked = rt.block_on(async {
        let mut kv = client(&url).await;
        // History to compact and free pages to move: 2000 keys written three times.
        for round in 0..3 {
            for i in 0..2000 {
                let key = format!("/base/{i:05}");
                let value = format!("{round}-{i}").repeat(100);
                kv.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
                    .await
                    .unwrap();
            }
        }
        let current = kv
            .range(RangeRequest { key: "x".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
        kv.compact(CompactionRequest { revision: current - 2000, physical: true }).await.unwrap();

        // Writers put distinct keys until told to stop; each remembers what was acknowledged.
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..16 {
            let mut kv = client(&url).await;
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut failed = 0u64;
                let deadline = Instant::now() + Duration::from_secs(120);
                for n in 0..1_000_000u64 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let key = format!("/during/{w:02}/{n:07}");
                    let value = format!("{w}-{n}").repeat(50);
                    let r = kv
                        .put(PutRequest {
                            key: key.clone().into(),
                            value: value.clone().into(),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(r) => acked.push((key, value, r.into_inner().header.unwrap().revision)),
                        Err(_) => failed += 1,
                    }
                }
                (acked, failed)
            }));
        }
        // Several defragmentations back to back while the writers run.
        let mut m = MaintenanceClient::connect(url.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..5 {
            m.defragment(DefragmentRequest {}).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut failed = 0;
        for w in writers {
            let (a, f) = w.await.unwrap();
            acked.extend(a);
            failed += f;
        }
        (acked, failed)
    });
    let (acked, failed) = acked;
    assert!(acked.len() > 100, "only {} writes were acknowledged", acked.len());
    let check = |url: &str, when: &str| {
        rt.block_on(async {
            let mut kv = client(url).await;
            let r = kv
                .range(RangeRequest {
                    key: "/during/".into(),
                    range_end: "/during0".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let got: std::collections::HashMap<String, (String, i64)> = r
                .kvs
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.key).to_string(),
                        (String::from_utf8_lossy(&kv.value).to_string(), kv.mod_revision),
                    )
                })
                .collect();
            for (key, value, rev) in &acked {
                assert_eq!(
                    got.get(key),
                    Some(&(value.clone(), *rev)),
                    "{when}: acknowledged {key} at revision {rev} is missing or changed"
                );
            }
            // A failed put may or may not have been applied; with none failed, nothing else
            // may be there.
            if failed == 0 {
                assert_eq!(got.len(), acked.len(), "{when}: writes that were never made");
            }
            // The compacted base survived too: its last round is intact.
            let base = kv
                .range(RangeRequest {
                    key: "/base/".into(),
                    range_end: "/base0".into(),
                    count_only: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(base.count, 2000, "{when}");
        })
    };
    check(&url, "after defragmentation");
    // A crash right after: every acknowledged write is in the WAL or the db.
    c.kill(0);
    c.spawn(0);
    c.wait_ready(0, Duration::from_secs(60));
    check(&url, "after kill -9 and restart");
}
