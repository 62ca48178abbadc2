//! `--auto-compaction-mode periodic` with `--auto-compaction-retention`: the
//! leader compacts history it sampled a retention ago, on Logbook as on a
//! real etcd started with the same flags.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Etcd};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::{PutRequest, RangeRequest};

const FLAGS: [&str; 2] = ["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"];

/// Writes a key every 100 ms until a read at revision 2 is refused as
/// compacted (bounded); returns how long that took.
fn time_to_compaction(url: &str) -> Duration {
    let rt = common::runtime();
    rt.block_on(async {
        let mut kv = KvClient::connect(url.to_string()).await.unwrap();
        let started = Instant::now();
        for i in 0.. {
            assert!(started.elapsed() < Duration::from_secs(30), "no compaction within 30 s");
            let put =
                PutRequest { key: "k".into(), value: format!("{i}").into(), ..Default::default() };
            kv.put(put).await.unwrap();
            let old = RangeRequest { key: "k".into(), revision: 2, ..Default::default() };
            if let Err(e) = kv.range(old).await {
                assert_eq!(e.message(), "etcdserver: mvcc: required revision has been compacted");
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    })
}

#[test]
fn periodic_auto_compaction_compacts_what_the_retention_left_behind() {
    let logbook = Cluster::start(1, &FLAGS);
    let ours = time_to_compaction(&logbook.specs[0].client_url());

    let etcd = Etcd::start_with("etcd", &FLAGS);
    let theirs = time_to_compaction(&etcd.client_url);
    println!("compaction after {ours:?} on Logbook, {theirs:?} on etcd");
    // Both compact once the retention has passed, not before.
    assert!(ours >= Duration::from_secs(2), "Logbook compacted early: {ours:?}");
    assert!(theirs >= Duration::from_secs(2), "etcd compacted early: {theirs:?}");
}
