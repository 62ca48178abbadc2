//! The load generator (`logbook bench put|range|txn-put|watch|lease-keepalive|mixed`)
//! against a real 3-member Logbook cluster, and a short `logbook bench`
//! comparison with a real etcd: the built binary, run as a user runs it, with
//! small bounded totals. Checks the JSON's counts and histogram sanity, reads
//! the written keys back with etcdctl and gRPC, and parses the report's SVGs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, connect, json};
use logbook_api::etcdserverpb::RangeRequest;
use logbook_bench::keys::KeyGen;

/// A bench run never takes longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Runs `logbook bench <args>` (bounded), failing the test on a non-zero exit;
/// returns its stdout.
fn bench(dir: &Path, args: &[&str]) -> String {
    bench_within(dir, args, RUN_LIMIT)
}

/// [`bench`] bounded by `limit` instead of [`RUN_LIMIT`].
fn bench_within(dir: &Path, args: &[&str], limit: Duration) -> String {
    let out_path = dir.join(format!("bench-{}.out", args[0].trim_start_matches('-')));
    let err_path = out_path.with_extension("err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawning logbook bench");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "logbook bench {args:?} still running after {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "logbook bench {args:?} failed ({status}); stdout:\n{stdout}\nstderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

/// Runs a load-generator subcommand with `--json` and returns the JSON.
fn load(dir: &Path, args: &[&str]) -> serde_json::Value {
    let path = dir.join(format!("{}.json", args[0]));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", path.to_str().unwrap(), "--quiet"]);
    let stdout = bench(dir, &all);
    assert!(stdout.contains("p99 ms"), "the table is printed:\n{stdout}");
    json(&std::fs::read_to_string(&path).unwrap())
}

/// The summary named `name` of a run's JSON.
fn summary<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["summaries"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| {
        let names: Vec<_> =
            run["summaries"].as_array().unwrap().iter().map(|s| &s["name"]).collect();
        panic!("no {name} summary among {names:?}; notes {}", run["notes"])
    })
}

/// `count` successes, no failure, ordered positive percentiles.
fn assert_sane(run: &serde_json::Value, name: &str, count: u64) {
    let s = summary(run, name);
    assert_eq!(s["count"].as_u64(), Some(count), "{name}: {s}");
    assert_eq!(s["errors"].as_u64(), Some(0), "{name}: {s}");
    assert!(run["errors"].as_object().unwrap().is_empty(), "{}", run["errors"]);
    let l = &s["latency_ms"];
    let p = |k: &str| l[k].as_f64().unwrap();
    assert!(p("min") > 0.0, "latencies are positive: {l}");
    assert!(
        p("min") <= p("p50")
            && p("p50") <= p("p90")
            && p("p90") <= p("p99")
            && p("p99") <= p("p999")
            && p("p999") <= p("max"),
        "{name}: percentiles out of order: {l}"
    );
    assert!(s["throughput"].as_f64().unwrap() > 0.0 && s["elapsed_s"].as_f64().unwrap() > 0.0);
}

/// How many keys start with `prefix`, as etcdctl counts them (3.4 has no --count-only).
fn count_prefix(c: &Cluster, prefix: &str) -> u64 {
    let out = c.ctl_ok(0, &["get", prefix, "--prefix", "--keys-only", "-w", "json"]);
    json(&out)["count"].as_u64().unwrap_or(0)
}

#[test]
fn every_load_generator_workload_runs_against_logbook() {
    let c = Cluster::start(3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Connections spread over all three members: followers forward writes.
    let eps = c.endpoints();
    let e = eps.as_str();

    // put: 400 sequential keys, every one written once, with the run's value.
    let run = load(
        d,
        &[
            "put",
            "--endpoints",
            e,
            "--clients",
            "8",
            "--conns",
            "3",
            "--total",
            "400",
            "--key-space-size",
            "400",
            "--sequential-keys",
            "--prefix",
            "/t-put/",
            "--val-size",
            "100",
        ],
    );
    assert_eq!(run["workload"], "put");
    assert_sane(&run, "put", 400);
    assert_eq!(count_prefix(&c, "/t-put/"), 400);
    let last = KeyGen::new("/t-put/", 16, 400, true).key(399);
    let last = std::str::from_utf8(&last).unwrap().to_owned();
    let got = common::runtime().block_on(async {
        let mut kv = connect(&c.specs[1].client_url()).await.unwrap();
        let r = kv.range(RangeRequest { key: last.clone().into(), ..Default::default() }).await;
        r.unwrap().into_inner().kvs
    });
    assert_eq!(got.len(), 1, "{last} was written");
    assert_eq!(got[0].value.len(), 100);
    assert_eq!(got[0].version, 1, "each sequential key written once");

    // txn-put: 150 txns of 2 puts walk all 100 keys.
    let run = load(
        d,
        &[
            "txn-put",
            "--endpoints",
            e,
            "--clients",
            "4",
            "--total",
            "150",
            "--txn-ops",
            "2",
            "--key-space-size",
            "100",
            "--sequential-keys",
            "--prefix",
            "/t-txn/",
        ],
    );
    assert_sane(&run, "txn-put", 150);
    assert_eq!(count_prefix(&c, "/t-txn/"), 100);

    // range: 50 keys preloaded, then 300 linearizable reads.
    let run = load(
        d,
        &[
            "range",
            "--endpoints",
            e,
            "--clients",
            "4",
            "--total",
            "300",
            "--key-space-size",
            "50",
            "--preload",
            "--prefix",
            "/t-range/",
            "--consistency",
            "l",
        ],
    );
    assert_sane(&run, "range", 300);
    assert_eq!(count_prefix(&c, "/t-range/"), 50);

    // watch: each of 120 puts reaches each of 3 watchers on 2 streams.
    let run = load(
        d,
        &[
            "watch",
            "--endpoints",
            e,
            "--clients",
            "4",
            "--total",
            "120",
            "--watchers",
            "3",
            "--streams",
            "2",
            "--prefix",
            "/t-watch/",
        ],
    );
    assert_sane(&run, "put", 120);
    assert_sane(&run, "watch-event", 360);
    assert!(count_prefix(&c, "/t-watch/") > 0);

    // lease-keepalive: 150 round trips; the run revokes its leases after.
    let run = load(d, &["lease-keepalive", "--endpoints", e, "--clients", "4", "--total", "150"]);
    assert_sane(&run, "keepalive", 150);
    let leases = json(&c.ctl_ok(0, &["lease", "list", "-w", "json"]));
    assert!(
        leases["leases"].as_array().is_none_or(|l| l.is_empty()),
        "leases left behind: {leases}"
    );

    // mixed: 300 requests over the classes, objects under /registry/.
    let run = load(
        d,
        &[
            "mixed",
            "--endpoints",
            e,
            "--clients",
            "6",
            "--total",
            "300",
            "--seed-objects",
            "200",
            "--namespaces",
            "3",
        ],
    );
    assert_sane(&run, "all", 300);
    let classes = run["summaries"].as_array().unwrap();
    let per_class: u64 = classes[1..].iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert_eq!(per_class, 300, "{run}");
    for class in ["create", "update", "get", "list"] {
        assert!(
            classes.iter().any(|s| s["name"] == class && s["count"].as_u64() > Some(0)),
            "no {class} in {run}"
        );
    }
    assert!(count_prefix(&c, "/registry/") >= 200, "seed objects written");

    // The cluster stayed whole: every member answers, with the writes applied.
    let revs: Vec<i64> = (0..3)
        .map(|i| {
            let s = json(&c.ctl_ok(i, &["endpoint", "status", "-w", "json"]));
            s[0]["Status"]["header"]["revision"].as_i64().unwrap()
        })
        .collect();
    assert!(revs.iter().all(|r| *r > 400), "{revs:?}");
}

fn assert_svg(path: &Path) {
    logbook_bench::plot::check_svg(path).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn bench_compares_logbook_with_etcd_and_writes_the_report() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Two ladders, the bare server and the second opinion's eight runs: on a
    // machine shared with builds this outlasts the usual bound.
    let stdout = bench_within(
        out.path(),
        &[
            "--systems",
            "logbook,etcd",
            "--members",
            "1",
            "--rungs",
            "1,8",
            "--rung-duration",
            "1s",
            "--rung-total",
            "300",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--quiet",
        ],
        2 * RUN_LIMIT,
    );
    // The terminal table: both systems, the ratios, the floor and the target.
    for needle in [
        "logbook req/s",
        "etcd req/s",
        "req/s L/E",
        "disk floor",
        "loopback round trip",
        "logbook WAL fsyncs",
        "etcd WAL fsyncs",
        "1-client sequential put",
        "report: ",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }

    let dir = out.path();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "| 1 (seq) |",
        "## Targets",
        "## WAL fsync",
        "logbook fsyncs/s",
        "etcd fsyncs/s",
        "logbook records/fsync",
        "wal-fsync.svg",
    ] {
        assert!(md.contains(needle), "no {needle:?} in report.md:\n{md}");
    }
    for svg in [
        "latency-vs-throughput.svg",
        "cdf-logbook.svg",
        "cdf-etcd.svg",
        "cdf-compare.svg",
        "wal-fsync.svg",
    ] {
        assert_svg(&dir.join(svg));
        assert!(md.contains(svg), "report.md links {svg}");
    }

    let results = json(&std::fs::read_to_string(dir.join("results.json")).unwrap());
    // The second opinion: etcd's own benchmark tool on the 8-client rung, both
    // generators' put and range rows for both systems (scripts/test.sh builds
    // the tool; without it the report says so in one line).
    if let Some(tool) = logbook_bench::second_opinion::find_tool(None) {
        for needle in [
            "second opinion",
            "logbook-bench req/s",
            "etcd-benchmark req/s",
            "agree (15 %)",
            "etcd's tool: `benchmark --endpoints",
        ] {
            assert!(stdout.contains(needle), "no {needle:?} ({}) in:\n{stdout}", tool.display());
        }
        assert!(md.contains("## Second opinion: etcd's benchmark tool"), "{md}");
        for s in results["systems"].as_array().unwrap() {
            let o = &s["second_opinion"];
            assert_eq!(o["clients"], 8, "{}: {o}", s["system"]);
            let pairs = o["pairs"].as_array().unwrap();
            let workloads: Vec<_> = pairs.iter().map(|p| p["workload"].as_str().unwrap()).collect();
            assert_eq!(workloads, ["put", "range"], "{o}");
            for p in pairs {
                // Both sides' exact parameters, and two runs each (ABBA).
                let command = p["etcd_benchmark_command"].as_str().unwrap();
                assert!(command.starts_with("benchmark --endpoints "), "{p}");
                assert!(command.contains(" --clients 8 --conns 4 "), "{p}");
                assert!(p["logbook_bench_params"].as_str().unwrap().contains("8 clients"), "{p}");
                assert_eq!(p["logbook_bench_runs"].as_array().unwrap().len(), 2, "{p}");
                assert_eq!(p["etcd_benchmark_runs"].as_array().unwrap().len(), 2, "{p}");
                for generator in ["logbook_bench", "etcd_benchmark"] {
                    let f = &p[generator];
                    assert!(f["requests_per_s"].as_f64() > Some(0.0), "{}: {p}", s["system"]);
                    assert!(f["p99_ms"].as_f64() >= f["p50_ms"].as_f64(), "{p}");
                    assert_eq!(f["errors"], 0, "{p}");
                }
            }
        }
    } else {
        assert!(stdout.contains("etcd's benchmark tool not found"), "{stdout}");
    }
    assert!(results["floor"]["fsync"]["count"].as_u64() > Some(0), "{}", results["floor"]);
    assert!(results["rtt"]["count"].as_u64() > Some(0), "{}", results["rtt"]);
    let systems = results["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2);
    for s in systems {
        assert!(s["failure"].is_null(), "{s}");
        let rungs = s["rungs"].as_array().unwrap();
        assert_eq!(rungs.len(), 2, "{s}");
        for r in rungs {
            let put = &r["put"];
            assert!(put["count"].as_u64() > Some(0) && put["errors"] == 0, "{put}");
            // Every acknowledged put was made durable by at least one fsync.
            let fsync = &r["wal"]["fsync"];
            assert!(fsync["count"].as_u64() > Some(0), "{}: {}", s["system"], r["wal"]);
            let buckets = fsync["cumulative"].as_array().unwrap();
            assert!(
                buckets.windows(2).all(|w| w[0].as_u64() <= w[1].as_u64()),
                "cumulative buckets: {fsync}"
            );
            if s["system"] == "logbook" {
                let records = &r["wal"]["records_per_fsync"];
                assert!(records["count"].as_u64() > Some(0), "{records}");
            }
        }
    }
}

/// Ctrl-C stops a run at once, also a 1-client run, whose client loop has a
/// thread of its own; the run is against the bench's bare put server.
#[test]
fn an_interrupted_one_client_run_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = logbook_bench::bare::BareServer::start(dir.path()).unwrap();
    let err_path = dir.path().join("interrupted.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["bench", "put", "--clients", "1", "--duration", "60s", "--quiet", "--endpoints"])
        .arg(server.endpoint())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawning logbook bench");
    // Puts are flowing once the server's file holds some (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = dir.path().join("bare-put.log");
    while Instant::now() < deadline
        && !std::fs::read(&log).is_ok_and(|d| d.windows(6).any(|w| w == b"/bench"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it was interrupted");
    // SAFETY: signals a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let interrupted = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if interrupted.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("logbook bench put still running 20 s after SIGINT (its run lasts 60 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "an interrupted run reports failure");
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    server.stop();
}

/// `logbook bench capacity --profile kubernetes` at a tiny scale: both
/// systems ramp the Kubernetes model by nodes, and the report says how many
/// nodes and pods each carries within the objectives, with the plot.
#[test]
fn kubernetes_capacity_names_both_systems_and_a_node_count() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let stdout = bench(
        out.path(),
        &[
            "capacity",
            "--profile",
            "kubernetes",
            "--systems",
            "logbook,etcd",
            "--members",
            "1",
            "--nodes",
            "2",
            "--pods-per-node",
            "2",
            "--max-nodes",
            "4",
            "--growth",
            "2",
            "--step-duration",
            "1s",
            "--clients",
            "8",
            "--slo-p99",
            "5s",
            "--slo-list-p99",
            "5s",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
            "--quiet",
        ],
    );
    for system in ["logbook", "etcd"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{system} (")))
            .unwrap_or_else(|| panic!("no {system} capacity line in:\n{stdout}"));
        // The node count depends on this machine; the sentence names one.
        assert!(line.contains("this cluster carries ") && line.contains(" nodes / "), "{line}");
    }
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("capacity-kubernetes.svg"), "{md}");
    assert_svg(&out.path().join("capacity-kubernetes.svg"));
    let results = json(&std::fs::read_to_string(out.path().join("results.json")).unwrap());
    for s in results["systems"].as_array().unwrap() {
        let ramps = s["ramps"].as_array().unwrap();
        assert_eq!(ramps.len(), 1, "{s}");
        assert_eq!(ramps[0]["name"], "kubernetes", "{s}");
        let steps = ramps[0]["steps"].as_array().unwrap();
        let nodes: Vec<_> = steps.iter().map(|st| st["nodes"].clone()).collect();
        assert_eq!(nodes.first(), Some(&serde_json::json!(2)), "{s}");
        // The first step writes its 2 nodes, their Leases and 4 pods; a
        // second (4 nodes) at most the 2 new nodes' objects and 4 more pods.
        assert_eq!(steps[0]["seeded"], 8, "{s}");
        if let Some(second) = steps.get(1) {
            assert!(second["seeded"].as_u64() <= Some(8), "{s}");
        }
    }
}

/// Two steps of the Kubernetes capacity ramp (2 nodes, then 5, 3 pods per
/// node, no churn) against one member: the second step writes only the 3
/// new nodes' Nodes and Leases and their 9 pods, not the whole cluster
/// again. Counted by the store itself (its revision across each seeding)
/// on Logbook and on etcd 3.7.3, and on Logbook also by the member's own
/// request log (every plain Put it received: the model's writes are Txns).
#[test]
fn a_bigger_kubernetes_step_writes_only_the_new_objects() {
    use logbook_bench::capacity::KubernetesLoad;
    use logbook_bench::cli::KubernetesShape;

    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("requests.jsonl");
    let mut logbook = Cluster::start(1, &["--request-log", log.to_str().unwrap()]);
    let etcd = common::Etcd::start_program(&common::cached_etcd("3.7.3", "etcd"));
    let shape = KubernetesShape {
        nodes: 2,
        pods_per_node: 3,
        churn_per_hour: Some(0.0),
        // No compaction Txn may land while a seeding is counted.
        compact_interval: Some(Duration::from_secs(3600)),
    };
    let rt = common::multi_thread_runtime();
    for url in [logbook.specs[0].client_url(), etcd.client_url.clone()] {
        let seeded = rt.block_on(async {
            let pool =
                logbook_bench::client::Pool::connect(std::slice::from_ref(&url), 2).await.unwrap();
            let revision = async || {
                let mut kv = connect(&url).await.unwrap();
                let r = kv.range(RangeRequest { key: "x".into(), ..Default::default() }).await;
                r.unwrap().into_inner().header.unwrap().revision
            };
            let mut load =
                KubernetesLoad::new(pool, shape.clone(), 4, Duration::from_millis(500), true);
            let mut seeded = Vec::new();
            for nodes in [2, 5] {
                let before = revision().await;
                let writes = load.seed(nodes).await.unwrap();
                let after = revision().await;
                assert_eq!(after - before, writes as i64, "{url}: {nodes} nodes");
                let out = load.run(nodes, "test").await.unwrap();
                assert_eq!(out.error_count(), 0, "{url}: {:?}", out.errors);
                seeded.push(writes);
            }
            seeded
        });
        // 2 × (Node + Lease + 3 pods), then the 3 new nodes' 3 × 5.
        assert_eq!(seeded, [10, 15], "{url}");
    }
    // SIGTERM: the member writes out its request log before it exits.
    assert!(logbook.stop(0), "the member exited cleanly");
    let text = std::fs::read_to_string(&log).unwrap();
    let puts = text.lines().filter(|l| json(l)["kind"] == "Put").count();
    assert_eq!(puts, 25, "puts the member received: the final cluster's 5 × 5 objects once");
}
