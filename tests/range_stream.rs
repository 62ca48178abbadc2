//! `KV.RangeStream` (etcd 3.7) against a real etcd 3.7 given the same
//! writes and the same calls: the same chunks (keys per chunk), the same
//! merged answer, the header, `more` and `count` on the last chunk only, the
//! same refusals; and a stream reads at one revision while writes go on.

mod common;

use common::{Cluster, Etcd, cached_etcd};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::range_request::SortOrder;
use logbook_api::etcdserverpb::{PutRequest, RangeRequest};
use tonic::transport::Channel;

const KEYS: usize = 1200;

async fn client(url: &str) -> KvClient<Channel> {
    KvClient::connect(url.to_string()).await.unwrap().max_decoding_message_size(64 << 20)
}

/// The same writes on both: `KEYS` keys of 2 KiB under `/registry/pods/`
/// (about 2.4 MiB, so a full stream takes several size-driven chunks), and a
/// few outside the prefix.
async fn load(kv: &mut KvClient<Channel>) {
    for i in 0..KEYS {
        let key = format!("/registry/pods/default/pod-{i:05}");
        let value = format!("{i:05}").repeat(2048 / 5);
        kv.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
            .await
            .unwrap();
    }
    for k in ["/registry/a", "/registry/pods0"] {
        kv.put(PutRequest { key: k.into(), value: "x".into(), ..Default::default() })
            .await
            .unwrap();
    }
}

/// One line per chunk (keys, first and last key, header revision, more,
/// count) and one for the call's end or error.
async fn transcript(kv: &mut KvClient<Channel>, r: RangeRequest) -> Vec<String> {
    let mut lines = Vec::new();
    let mut stream = match kv.range_stream(r).await {
        Ok(s) => s.into_inner(),
        Err(e) => return vec![format!("error {:?}: {}", e.code(), e.message())],
    };
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                let rr = chunk.range_response.unwrap();
                let first = rr.kvs.first().map(|kv| String::from_utf8_lossy(&kv.key).to_string());
                let last = rr.kvs.last().map(|kv| String::from_utf8_lossy(&kv.key).to_string());
                lines.push(format!(
                    "chunk keys={} first={first:?} last={last:?} header_rev={:?} more={} count={}",
                    rr.kvs.len(),
                    rr.header.map(|h| h.revision),
                    rr.more,
                    rr.count
                ));
            }
            Ok(None) => {
                lines.push("end".into());
                return lines;
            }
            Err(e) => {
                lines.push(format!("error {:?}: {}", e.code(), e.message()));
                return lines;
            }
        }
    }
}

async fn scenario(url: String) -> Vec<String> {
    let mut kv = client(&url).await;
    load(&mut kv).await;
    let prefix = |p: &str| {
        let mut end = p.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        RangeRequest {
            key: p.as_bytes().to_vec().into(),
            range_end: end.into(),
            ..Default::default()
        }
    };
    let mut out = Vec::new();
    let mut step = |name: &str, lines: Vec<String>| {
        out.push(format!("== {name}"));
        out.extend(lines);
    };
    step("whole prefix", transcript(&mut kv, prefix("/registry/pods/")).await);
    step(
        "limit 150",
        transcript(&mut kv, RangeRequest { limit: 150, ..prefix("/registry/pods/") }).await,
    );
    step(
        "limit 5",
        transcript(&mut kv, RangeRequest { limit: 5, ..prefix("/registry/pods/") }).await,
    );
    step(
        "keys only, serializable",
        transcript(
            &mut kv,
            RangeRequest { keys_only: true, serializable: true, ..prefix("/registry/") },
        )
        .await,
    );
    step(
        "count only",
        transcript(&mut kv, RangeRequest { count_only: true, ..prefix("/registry/") }).await,
    );
    step(
        "at revision 100",
        transcript(&mut kv, RangeRequest { revision: 100, ..prefix("/registry/pods/") }).await,
    );
    step(
        "one key",
        transcript(&mut kv, RangeRequest { key: "/registry/a".into(), ..Default::default() }).await,
    );
    step("no key matches", transcript(&mut kv, prefix("/nothing/")).await);
    step(
        "descending",
        transcript(
            &mut kv,
            RangeRequest { sort_order: SortOrder::Descend as i32, ..prefix("/registry/") },
        )
        .await,
    );
    step(
        "ascending by key",
        transcript(
            &mut kv,
            RangeRequest {
                sort_order: SortOrder::Ascend as i32,
                limit: 20,
                ..prefix("/registry/")
            },
        )
        .await,
    );
    step(
        "mod revision filter",
        transcript(&mut kv, RangeRequest { min_mod_revision: 2, ..prefix("/registry/") }).await,
    );
    step(
        "future revision",
        transcript(&mut kv, RangeRequest { revision: 1_000_000, ..prefix("/registry/") }).await,
    );
    step("empty key", transcript(&mut kv, RangeRequest::default()).await);
    out
}

#[test]
fn range_stream_answers_as_etcd_3_7_does() {
    let etcd37 = cached_etcd("3.7.3", "etcd");
    let rt = common::runtime();
    let logbook = Cluster::start(1, &[]);
    let ours = rt.block_on(scenario(logbook.specs[0].client_url()));
    let etcd = Etcd::start_program(&etcd37);
    let theirs = rt.block_on(scenario(etcd.client_url.clone()));
    assert_eq!(ours, theirs, "\nlogbook: {ours:#?}\netcd 3.7: {theirs:#?}");
    // The whole prefix came in several chunks, or the test proved little.
    let chunks = ours.iter().skip(1).take_while(|l| l.starts_with("chunk")).count();
    assert!(chunks > 3, "{ours:#?}");
}

#[test]
fn a_stream_reads_at_one_revision_while_writes_go_on() {
    let rt = common::runtime();
    let logbook = Cluster::start(1, &[]);
    let url = logbook.specs[0].client_url();
    rt.block_on(async {
        let mut kv = client(&url).await;
        load(&mut kv).await;
        let mut r = RangeRequest {
            key: "/registry/pods/".into(),
            range_end: "/registry/pods0".into(),
            ..Default::default()
        };
        r.limit = 0;
        let mut stream = kv.range_stream(r).await.unwrap().into_inner();
        let first = stream.message().await.unwrap().unwrap().range_response.unwrap();
        // Rewrite every key the stream has not reached yet, and add new ones.
        let mut writer = client(&url).await;
        for i in (0..KEYS).step_by(7) {
            let key = format!("/registry/pods/default/pod-{i:05}");
            writer
                .put(PutRequest { key: key.into(), value: "new".into(), ..Default::default() })
                .await
                .unwrap();
        }
        writer
            .put(PutRequest {
                key: "/registry/pods/zzz".into(),
                value: "new".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut kvs = first.kvs;
        let mut last = None;
        while let Some(chunk) = stream.message().await.unwrap() {
            let rr = chunk.range_response.unwrap();
            kvs.extend(rr.kvs.clone());
            last = Some(rr);
        }
        let last = last.unwrap();
        assert_eq!(kvs.len(), KEYS, "the stream saw keys written after it began");
        assert!(
            kvs.iter().all(|kv| kv.value.as_ref() != b"new"),
            "a value written after the start showed"
        );
        assert_eq!(last.count, KEYS as i64);
        assert!(!last.more);
        let header = last.header.unwrap();
        // The store starts at revision 1; the load made KEYS + 2 writes.
        assert_eq!(header.revision, (KEYS + 3) as i64, "the header names the revision read");
        assert!(header.member_id != 0 && header.cluster_id != 0 && header.raft_term != 0);
    });
}
