//! The load generator, the comparison and the capacity search against a real
//! etcd started by the test on free 127.0.0.1 ports. etcd must be on PATH
//! (`scripts/test.sh` installs `etcd-server`); without it these tests fail.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use logbook_api::etcdserverpb::{LeaseLeasesRequest, RangeRequest};
use logbook_bench::cli::{BenchCommand, CompareArgs};
use logbook_bench::client::Pool;
use logbook_bench::cluster::{Cluster, System, which};
use logbook_bench::keys::prefix_end;
use logbook_bench::{BenchArgs, loadgen};

#[derive(Parser)]
struct Top {
    #[command(flatten)]
    bench: BenchArgs,
}

fn parse(args: &[&str]) -> BenchArgs {
    Top::parse_from(std::iter::once("logbook-bench").chain(args.iter().copied())).bench
}

fn command(args: &[&str]) -> BenchCommand {
    parse(args).command.expect("a subcommand")
}

fn etcd() -> std::path::PathBuf {
    which("etcd")
        .expect("etcd is not on PATH: scripts/test.sh installs it (apt-get install etcd-server)")
}

async fn start_etcd(dir: &Path, members: usize) -> Cluster {
    Cluster::start_ready(System::Etcd, &etcd(), dir, members, Duration::from_secs(60))
        .await
        .expect("etcd ready")
}

async fn count_prefix(endpoint: &str, prefix: &str) -> i64 {
    let pool = Pool::connect(&[endpoint.to_owned()], 1).await.unwrap();
    let req = RangeRequest {
        key: prefix.as_bytes().to_vec().into(),
        range_end: prefix_end(prefix.as_bytes()).into(),
        count_only: true,
        ..Default::default()
    };
    pool.kv(0).range(req).await.unwrap().into_inner().count
}

fn assert_sane(s: &logbook_bench::stats::Summary) {
    let l = &s.latency_ms;
    assert!(s.count > 0, "{s:?}");
    assert!(l.min > 0.0, "latencies are positive: {l:?}");
    assert!(
        l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(s.throughput > 0.0 && s.elapsed_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_writes_every_key_and_counts_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_etcd(dir.path(), 1).await;
    let ep = cluster.endpoints()[0].clone();
    let BenchCommand::Put(args) = command(&[
        "put",
        "--endpoints",
        &ep,
        "--clients",
        "8",
        "--conns",
        "2",
        "--total",
        "2000",
        "--key-space-size",
        "2000",
        "--sequential-keys",
        "--prefix",
        "/t-put/",
        "--val-size",
        "100",
        "--quiet",
    ]) else {
        panic!("not put")
    };
    let report = loadgen::put(&args).await.unwrap();
    let s = &report.summaries[0];
    assert_eq!(s.name, "put");
    assert_eq!(s.count, 2000);
    assert_eq!(s.errors, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_sane(s);
    // Every key of the sequential walk is really there, with the run's value.
    assert_eq!(count_prefix(&ep, "/t-put/").await, 2000);
    let pool = Pool::connect(std::slice::from_ref(&ep), 1).await.unwrap();
    let kv = pool
        .kv(0)
        .range(RangeRequest {
            key: logbook_bench::workload::keygen(&args).key(1999),
            ..Default::default()
        })
        .await
        .unwrap();
    let kvs = kv.into_inner().kvs;
    assert_eq!(kvs.len(), 1, "last key written");
    assert_eq!(kvs[0].value, logbook_bench::workload::value(&args));
    assert_eq!(kvs[0].value.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_etcd(dir.path(), 1).await;
    let ep = cluster.endpoints()[0].clone();
    let e = ep.as_str();

    // txn-put: 300 txns of 2 puts walk all 100 keys.
    let BenchCommand::TxnPut(a) = command(&[
        "txn-put",
        "--endpoints",
        e,
        "--clients",
        "4",
        "--total",
        "300",
        "--txn-ops",
        "2",
        "--key-space-size",
        "100",
        "--sequential-keys",
        "--prefix",
        "/t-txn/",
        "--quiet",
    ]) else {
        panic!()
    };
    let r = loadgen::txn_put(&a).await.unwrap();
    assert_eq!(r.summaries[0].count, 300);
    assert_sane(&r.summaries[0]);
    assert_eq!(count_prefix(e, "/t-txn/").await, 100);

    // range with preload: the key space is written, then read.
    let BenchCommand::Range(a) = command(&[
        "range",
        "--endpoints",
        e,
        "--clients",
        "4",
        "--total",
        "500",
        "--key-space-size",
        "50",
        "--preload",
        "--prefix",
        "/t-range/",
        "--consistency",
        "s",
        "--quiet",
    ]) else {
        panic!()
    };
    let r = loadgen::range(&a).await.unwrap();
    assert_eq!(r.summaries[0].count, 500);
    assert_eq!(count_prefix(e, "/t-range/").await, 50);

    // watch: each of 200 puts reaches each of 3 watchers.
    let BenchCommand::Watch(a) = command(&[
        "watch",
        "--endpoints",
        e,
        "--clients",
        "4",
        "--total",
        "200",
        "--watchers",
        "3",
        "--streams",
        "2",
        "--prefix",
        "/t-watch/",
        "--quiet",
    ]) else {
        panic!()
    };
    let r = loadgen::watch(&a).await.unwrap();
    assert_eq!(r.summaries[0].count, 200);
    let events = r.summaries.iter().find(|s| s.name == "watch-event").expect("watch-event summary");
    assert_eq!(events.count, 600, "{:?}", r.notes);
    assert_sane(events);

    // lease-keepalive: 200 round trips; the run's leases are revoked after.
    let BenchCommand::LeaseKeepalive(a) = command(&[
        "lease-keepalive",
        "--endpoints",
        e,
        "--clients",
        "4",
        "--total",
        "200",
        "--quiet",
    ]) else {
        panic!()
    };
    let r = loadgen::lease_keepalive(&a).await.unwrap();
    assert_eq!(r.summaries[0].count, 200);
    assert_sane(&r.summaries[0]);
    let pool = Pool::connect(std::slice::from_ref(&ep), 1).await.unwrap();
    let leases =
        pool.lease(0).lease_leases(LeaseLeasesRequest {}).await.unwrap().into_inner().leases;
    assert!(leases.is_empty(), "leases left behind: {leases:?}");

    // mixed: 600 requests over the classes, objects under /registry/.
    let BenchCommand::Mixed(a) = command(&[
        "mixed",
        "--endpoints",
        e,
        "--clients",
        "6",
        "--total",
        "600",
        "--seed-objects",
        "300",
        "--namespaces",
        "3",
        "--quiet",
    ]) else {
        panic!()
    };
    let r = loadgen::mixed(&a).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.summaries[0].name, "all");
    assert_eq!(r.summaries[0].count, 600);
    let per_class: u64 = r.summaries[1..].iter().map(|s| s.count).sum();
    assert_eq!(per_class, 600);
    for class in ["create", "update", "get", "list"] {
        assert!(
            r.summaries.iter().any(|s| s.name == class && s.count > 0),
            "no {class} in {:?}",
            r.summaries
        );
    }
    assert!(count_prefix(e, "/registry/").await >= 300, "seed objects written");
}

fn assert_svgs_parse(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|x| x == "svg") {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc = roxmltree::Document::parse(&text)
                .unwrap_or_else(|e| panic!("{} is not XML: {e}", p.display()));
            assert_eq!(doc.root_element().tag_name().name(), "svg");
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparison_with_etcd_alone_writes_a_report() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = parse(&[
        "--systems",
        "etcd",
        "--rungs",
        "1,8",
        "--rung-duration",
        "1s",
        "--rung-total",
        "2000",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--quiet",
    ]);
    let compare: CompareArgs = args.compare;
    let dir = logbook_bench::run_comparison(&compare).await.unwrap();
    assert_eq!(dir, out.path());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| 1 (seq) |"), "{md}");
    assert!(md.contains("etcd req/s"), "{md}");
    assert!(md.contains("cdf-etcd.svg") && md.contains("latency-vs-throughput.svg"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let rungs = json["systems"][0]["rungs"].as_array().unwrap();
    assert_eq!(rungs.len(), 2);
    assert!(
        rungs.iter().all(|r| r["put"]["count"].as_u64().unwrap() > 0 && r["put"]["errors"] == 0)
    );
    assert!(json["floor"]["fsync"]["count"].as_u64().unwrap() > 0);
    // The CDF, latency vs throughput and the WAL fsync distribution.
    assert!(md.contains("wal-fsync.svg"), "{md}");
    assert_eq!(assert_svgs_parse(&dir), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_with_etcd_alone_writes_a_report() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let BenchCommand::Capacity(args) = command(&[
        "capacity",
        "--systems",
        "etcd",
        "--members",
        "1",
        "--slo-p99",
        "5s",
        "--start-rate",
        "100",
        "--growth",
        "4",
        "--max-rate",
        "500",
        "--step-duration",
        "1s",
        "--clients",
        "8",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--quiet",
    ]) else {
        panic!()
    };
    let dir = logbook_bench::run_capacity(&args).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let sys = &json["systems"][0];
    assert!(sys["failure"].is_null(), "{sys}");
    // 100/s and 400/s fit under a 5 s objective; 1600/s is beyond --max-rate.
    for ramp in ["put", "range"] {
        let ramps = sys["ramps"].as_array().unwrap();
        let found = ramps.iter().find(|r| r["name"] == ramp);
        let steps =
            found.unwrap_or_else(|| panic!("no {ramp} ramp: {sys}"))["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{ramp}: {steps:?}");
        assert!(steps.iter().all(|s| s["result"]["count"].as_u64().unwrap() > 0));
    }
    assert!(sys["growth"]["writes"].as_u64().unwrap() > 0);
    assert!(
        sys["growth"]["disk_write_bytes"].as_u64().unwrap() > 0,
        "etcd's storage writes were seen"
    );
    assert!(sys["growth"]["wal_bytes_after"].as_u64().unwrap() > 0, "etcd's WAL was found");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("puts/s within a p99"), "{md}");
    assert_eq!(assert_svgs_parse(&dir), 2);
}
