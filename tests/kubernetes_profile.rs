//! The recording behind `logbook bench kubernetes`'s model
//! (docs/bench-kubernetes-profile.md): a real control plane (kube-apiserver,
//! kube-controller-manager, kube-scheduler v1.37.2, as tests/kubernetes.rs
//! starts them) on one Logbook member run with `--request-log`, driven
//! through a small scenario: Node objects whose Leases a driver renews every
//! 10 s as kubelets do, Deployments created, scaled up and down and deleted
//! (the controllers create and delete the pods, the scheduler binds them, both
//! write events), ConfigMaps. At the end it prints the recording's summary
//! ([`logbook_bench::workload::recording::summarize`]) as the doc's tables.
//!
//! Ignored by default (minutes of a control plane on a small machine):
//! `cargo test --test kubernetes_profile -- --ignored --nocapture`;
//! `LOGBOOK_REQUEST_LOG_KEEP=FILE` keeps the raw log. A short check that the
//! flag logs what a client sends runs always.

mod common;
// The control-plane harness of tests/kubernetes.rs; this test uses part of it.
#[path = "common/kubernetes.rs"]
#[allow(dead_code)]
mod kube;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Cluster;
use kube::ControlPlane;
use logbook_bench::workload::recording::summarize;

/// Nodes the scenario registers (each with a Lease renewed every 10 s).
const NODES: usize = 10;
/// How long the steady phase (renewals only, plus the controllers' own) lasts.
const STEADY: Duration = Duration::from_secs(60);

/// `--request-log` writes one line per request with its kind and shape; the
/// summary counts them by kind and prefix.
#[test]
fn the_request_log_records_each_requests_shape() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let flag = format!("--request-log={}", log.display());
    let c = Cluster::start(1, &[&flag]);
    c.ctl_ok(0, &["put", "/registry/pods/ns/a", "x"]);
    c.ctl_ok(0, &["get", "/registry/pods/", "--prefix", "--limit=500"]);
    c.ctl_ok(0, &["del", "/registry/pods/ns/a"]);
    c.ctl_ok(0, &["lease", "grant", "60"]);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |kind: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} line in:\n{text}"))
            .clone()
    };
    let put = find("Put");
    assert_eq!(put["prefix"], "/registry/pods/");
    assert_eq!(put["value_bytes"], 1);
    // The harness's own readiness reads are Ranges too: take the list.
    let range = lines
        .iter()
        .find(|l| l["kind"] == "Range" && l["limit"] == 500)
        .unwrap_or_else(|| panic!("no Range with limit 500 in:\n{text}"))
        .clone();
    assert_eq!(range["range"], "prefix");
    assert_eq!(range["limit"], 500);
    assert_eq!(range["kvs"], 1);
    assert_eq!(find("LeaseGrant")["ttl"], 60);
    assert_eq!(find("DeleteRange")["range"], "single");
    let s = summarize(&text);
    assert!(s.requests >= 4, "{s:?}");
    // Without the flag, no file is written (the flag is off by default).
    assert!(!dir.path().join("other.log").exists());
}

#[test]
#[ignore = "minutes: records a real control plane (see the module doc)"]
fn record_a_kubernetes_control_plane() {
    let mut cp = ControlPlane::create(&["m1"]);
    let log = cp.dir.path().join("requests.log");
    // The member runs through a wrapper adding --request-log (etcd's flags follow).
    let wrapper = cp.dir.path().join("bin/logbook-recording");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' --request-log='{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_logbook"),
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    cp.run_etcd_as(&wrapper);
    let t0 = Instant::now();
    cp.start_etcd();
    cp.start_apiserver();
    cp.wait_apiserver_ready(Duration::from_secs(300));
    cp.start_controllers();
    let mut phases = vec![("control plane up".to_owned(), t0.elapsed())];

    // Nodes, as kubelets register them, then their Leases renewed every 10 s.
    let now = kube_time();
    for i in 0..NODES {
        let n = format!("node-{i}");
        cp.kubectl_stdin_ok(
            &["create"],
            &format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n  labels:\n    \
                 kubernetes.io/hostname: {n}\n    kubernetes.io/os: linux\n"
            ),
        );
        let resources = r#"{"cpu":"8","memory":"16Gi","pods":"110"}"#;
        let status = format!(
            r#"{{"status":{{"capacity":{resources},"allocatable":{resources},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#
        );
        cp.kubectl_ok(&[
            "patch",
            "node",
            &n,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let kubectl = cp.kubectl_handle();
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Bounded: at most an hour of 10 s rounds.
            for _ in 0..360 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let round = Instant::now();
                let now = kube_micro_time();
                let mut list = String::from("apiVersion: v1\nkind: List\nitems:\n");
                for i in 0..NODES {
                    list += &format!(
                        "- apiVersion: coordination.k8s.io/v1\n  kind: Lease\n  metadata:\n    \
                         name: node-{i}\n    namespace: kube-node-lease\n  spec:\n    \
                         holderIdentity: node-{i}\n    leaseDurationSeconds: 40\n    \
                         renewTime: \"{now}\"\n"
                    );
                }
                let path = std::env::temp_dir().join(format!("leases-{}.yaml", std::process::id()));
                std::fs::write(&path, list).unwrap();
                let p = path.to_str().unwrap().to_owned();
                let _ = kubectl.run(&["apply", "--server-side", "--force-conflicts", "-f", &p]);
                while round.elapsed() < Duration::from_secs(10) && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };
    phases.push(("nodes registered, lease renewals running".to_owned(), t0.elapsed()));

    cp.kubectl_ok(&["create", "namespace", "apps"]);
    for d in 0..3 {
        cp.kubectl_ok(&[
            "create",
            "deployment",
            &format!("web-{d}"),
            "-n",
            "apps",
            "--image=registry.k8s.io/pause:3.10",
            "--replicas=10",
        ]);
    }
    wait_bound(&mut cp, 30);
    phases.push(("3 deployments x 10 pods bound".to_owned(), t0.elapsed()));
    for i in 0..20 {
        cp.kubectl_ok(&[
            "create",
            "configmap",
            &format!("cm-{i}"),
            "-n",
            "apps",
            "--from-literal=k=v",
        ]);
    }
    cp.kubectl_ok(&["scale", "deployment", "web-0", "-n", "apps", "--replicas=30"]);
    wait_bound(&mut cp, 50);
    phases.push(("web-0 scaled to 30".to_owned(), t0.elapsed()));
    cp.kubectl_ok(&["scale", "deployment", "web-0", "-n", "apps", "--replicas=5"]);
    cp.kubectl_ok(&["delete", "deployment", "web-1", "-n", "apps", "--wait=false"]);
    cp.kubectl_ok(&["rollout", "restart", "deployment", "web-2", "-n", "apps"]);
    phases.push(("scaled down, one deleted, one restarted".to_owned(), t0.elapsed()));
    let steady = Instant::now();
    while steady.elapsed() < STEADY {
        std::thread::sleep(Duration::from_millis(500));
        cp.apiserver.as_mut().unwrap().assert_running();
    }
    phases.push((format!("steady for {} s", STEADY.as_secs()), t0.elapsed()));
    stop.store(true, Ordering::Relaxed);
    renewer.join().unwrap();
    // Let the writer thread flush (it flushes within 200 ms of going idle).
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap();
    if let Some(keep) = std::env::var_os("LOGBOOK_REQUEST_LOG_KEEP") {
        std::fs::write(keep, &text).unwrap();
    }
    println!("phases (seconds since the member was started):");
    for (what, at) in &phases {
        println!("  {:>7.1}  {what}", at.as_secs_f64());
    }
    let summary = summarize(&text);
    println!("{}", summary.markdown(NODES));
    assert!(summary.requests > 1000, "{summary:?}");
}

/// Waits (bounded) until `n` pods in `apps` are bound to a node.
fn wait_bound(cp: &mut ControlPlane, n: usize) {
    cp.wait_for(&format!("{n} pods bound"), Duration::from_secs(240), |cp| {
        let out =
            cp.kubectl(&["get", "pods", "-n", "apps", "-o", "jsonpath={.items[*].spec.nodeName}"]);
        let bound = String::from_utf8_lossy(&out.stdout).split_whitespace().count();
        (bound >= n).then_some(())
    });
}

/// Now as metav1.Time (RFC 3339, seconds).
fn kube_time() -> String {
    let t = now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Now as metav1.MicroTime (RFC 3339 with microseconds), as Lease renewTime.
fn kube_micro_time() -> String {
    let t = now_utc();
    format!("{}.{:06}Z", kube_time().trim_end_matches('Z'), t.microsecond())
}

fn now_utc() -> time::OffsetDateTime {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).unwrap()
}
