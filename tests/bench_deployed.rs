//! `logbook bench` against clusters already running elsewhere, as on
//! bare-metal masters: a Logbook member and an etcd 3.7.3 member started as
//! separate processes here (standing in for masters), each serving TLS with
//! client-certificate auth, measured through `--logbook-endpoints` and
//! `--etcd-endpoints` with etcdctl's TLS flags per system. The members'
//! CPU and WAL fsyncs must come from their `/metrics` (the bench cannot see
//! their processes), and the report must name each system's exact version.

mod common;
// The control-plane harness's certificates and process handling (most of
// it serves tests/kubernetes.rs only).
#[path = "common/kubernetes.rs"]
#[allow(dead_code)]
mod kube;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, json};
use kube::{Pki, Proc, etcd37_program, etcdctl_program, run_bounded};

/// One member serving client TLS with client-certificate auth, started by
/// `program` (`logbook serve` or etcd); returns it and its client URL.
fn member(program: &Path, logbook: bool, name: &str, pki: &Pki, dir: &Path) -> (Proc, String) {
    let client = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(program);
    if logbook {
        cmd.arg("serve");
    }
    cmd.args(["--name", name])
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("{name}={peer}")])
        .args(["--cert-file", &pki.path(&format!("etcd/server-{name}.crt"))])
        .args(["--key-file", &pki.path(&format!("etcd/server-{name}.key"))])
        .args(["--trusted-ca-file", &pki.path("etcd/ca.crt"), "--client-cert-auth"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(k);
        }
    }
    let proc = Proc::spawn(name, &mut cmd, &dir.join(format!("{name}.log")));
    (proc, client)
}

/// Waits until `endpoint` answers a health check with the client certificate.
fn wait_healthy(endpoint: &str, pki: &Pki, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.assert_running();
        let out = run_bounded(
            Command::new(etcdctl_program())
                .args(["--endpoints", endpoint, "--cacert", &pki.path("etcd/ca.crt")])
                .args(["--cert", &pki.path("apiserver-etcd-client.crt")])
                .args(["--key", &pki.path("apiserver-etcd-client.key")])
                .args(["endpoint", "health"]),
            Duration::from_secs(10),
        );
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} never became healthy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `logbook bench <args>` (bounded), failing on a non-zero exit;
/// returns stdout and stderr.
fn bench(args: &[&str]) -> (String, String) {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_logbook")).arg("bench").args(args),
        Duration::from_secs(300),
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "logbook bench {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn bench_measures_deployed_tls_clusters_through_their_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), &["lb", "et"]);
    let (mut lb, lb_url) =
        member(Path::new(env!("CARGO_BIN_EXE_logbook")), true, "lb", &pki, dir.path());
    let (mut et, et_url) = member(&etcd37_program(), false, "et", &pki, dir.path());
    wait_healthy(&lb_url, &pki, &mut lb);
    wait_healthy(&et_url, &pki, &mut et);

    // The disk floor as each master would measure it, as its own command.
    let master_disk = dir.path().join("master-disk");
    let floor_json = dir.path().join("disk.json");
    let (disk_out, _) = bench(&[
        "disk",
        "--dir",
        master_disk.to_str().unwrap(),
        "--secs",
        "0.2",
        "--appenders",
        "4",
        "--json",
        floor_json.to_str().unwrap(),
    ]);
    assert!(disk_out.contains("fdatasync floor"), "{disk_out}");

    let out = dir.path().join("report");
    let (ca, cert, key) = (
        pki.path("etcd/ca.crt"),
        pki.path("apiserver-etcd-client.crt"),
        pki.path("apiserver-etcd-client.key"),
    );
    let (stdout, stderr) = bench(&[
        "--logbook-endpoints",
        &lb_url,
        "--logbook-cacert",
        &ca,
        "--logbook-cert",
        &cert,
        "--logbook-key",
        &key,
        "--etcd-endpoints",
        &et_url,
        "--etcd-cacert",
        &ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &key,
        "--disk-floor",
        floor_json.to_str().unwrap(),
        "--rungs",
        "1,8",
        "--rung-duration",
        "1s",
        "--rung-total",
        "300",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    // No cluster was started here: both were measured in place.
    assert!(!stderr.contains("starting a"), "{stderr}");
    assert!(stderr.contains(&format!("the cluster at {lb_url}")), "{stderr}");
    assert!(stdout.contains("logbook req/s") && stdout.contains("etcd req/s"), "{stdout}");
    lb.assert_running();
    et.assert_running();

    let results = json(&std::fs::read_to_string(out.join("results.json")).unwrap());
    let systems = results["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2, "{results}");
    for (s, version) in systems.iter().zip(["3.5.13", "3.7.3"]) {
        assert!(s["failure"].is_null(), "{s}");
        assert_eq!(s["version"], version, "{s}");
        assert!(s["binary"].as_str().unwrap().starts_with("deployed: https://"), "{s}");
        for rung in s["rungs"].as_array().unwrap() {
            assert!(rung["put"]["count"].as_u64().unwrap() > 0, "{rung}");
            // Member CPU from process_cpu_seconds_total, WAL fsyncs from
            // etcd_disk_wal_fsync_duration_seconds, both over TLS.
            let cpu = rung["cpu"]["cluster_us"].as_f64();
            assert!(cpu.is_some_and(|c| c > 0.0), "no member CPU in {rung}");
            let fsyncs = rung["wal"]["fsync"]["count"].as_u64();
            assert!(fsyncs.is_some_and(|n| n > 0), "no WAL fsyncs in {rung}");
        }
    }
    let notes = results["notes"].to_string();
    assert!(!notes.contains("not read") && !notes.contains("not scraped"), "{notes}");
    // The floor is the one measured "on the master".
    let floor_dir = results["floor"]["dir"].as_str().unwrap();
    assert!(floor_dir.starts_with(master_disk.to_str().unwrap()), "{}", results["floor"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("**etcd** 3.7.3 (deployed: https://"), "{md}");
    assert!(md.contains("**logbook** 3.5.13 (deployed: https://"), "{md}");

    // The load generator's workloads take etcdctl's TLS flags too.
    let (stdout, _) = bench(&[
        "put",
        "--endpoints",
        &lb_url,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--total",
        "50",
        "--quiet",
    ]);
    assert!(stdout.contains("p99 ms"), "{stdout}");
    // Without the CA, an https endpoint is refused with the flag to use.
    let refused = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_logbook")).args([
            "bench",
            "put",
            "--endpoints",
            &lb_url,
            "--total",
            "5",
            "--quiet",
        ]),
        Duration::from_secs(60),
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("needs a CA"), "{err}");
}
