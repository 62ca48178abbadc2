//! Kubernetes on Logbook: a control plane as kubeadm builds one, with three
//! Logbook members as its etcd, driven by kubectl. The members run through a
//! file named `etcd` with exactly the flags of kubeadm's etcd static pod
//! (client and peer TLS with client certificates, metrics URL, snapshot
//! count, feature gates, progress-notify interval) and join as `kubeadm
//! join` joins them (learner, then promote); kube-apiserver talks to all
//! three with its etcd client certificate; kube-controller-manager and
//! kube-scheduler run as kubeadm runs them.
//!
//! One test, because a control plane takes most of a minute to start on a
//! small machine; it goes through the steps in order and prints each one's
//! time. On failure it prints the tail of every process's log (set
//! `LOGBOOK_KEEP_K8S_DIR=1` to keep the directory).
//!
//! Needs the binaries of `scripts/kubernetes-bin.sh` (run by
//! `scripts/test.sh`); fails, saying so, without them. `scripts/test.sh`
//! builds them in the background on a fresh machine and skips this file's
//! tests by name in its first `cargo test` (running them once the binaries
//! are there): rename a test here, rename it there.

mod common;
// The control-plane harness, used by this test only (so not a module of
// `common`, which every test binary compiles).
#[path = "common/kubernetes.rs"]
mod kube;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::{ControlPlane, Proc, stderr};
use serde_json::Value;

/// One change the test makes in the watched namespace, which a background
/// `kubectl get <resource> -w` must report.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    /// `configmaps` or `secrets`.
    resource: &'static str,
    kind: &'static str,
    name: String,
    /// `data.v` of the object the event carries (decoded, for a Secret),
    /// when the test knows it.
    v: Option<String>,
}

/// A change of a ConfigMap.
fn change(kind: &'static str, name: &str, v: Option<&str>) -> Change {
    Change { resource: "configmaps", kind, name: name.to_string(), v: v.map(str::to_string) }
}

/// A change of a Secret.
fn secret_change(kind: &'static str, name: &str, v: Option<&str>) -> Change {
    Change { resource: "secrets", ..change(kind, name, v) }
}

/// Namespace whose ConfigMaps and Secrets the background watches follow.
const WATCHED: &str = "watched";

/// A background `kubectl get <resource> -w` and the file it prints to.
struct Watch {
    resource: &'static str,
    path: PathBuf,
    /// Its index in the control plane's `extra` processes.
    proc: usize,
}

#[test]
fn a_kubernetes_control_plane_runs_on_three_logbook_members() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut steps = Steps::default();
    let mut cp = ControlPlane::create(&["m1", "m2", "m3"]);

    cp.start_etcd();
    kubelet_probes_pass(&cp);
    steps.done("3 Logbook members with kubeadm's etcd flags (learner join + promote)");

    cp.start_apiserver();
    cp.wait_apiserver_ready(Duration::from_secs(180));
    steps.done("kube-apiserver ready");
    cp.start_controllers();

    for ns in [WATCHED, "objects", "apps", "bulk"] {
        cp.kubectl_ok(&["create", "namespace", ns]);
    }
    // The API server serves the ConfigMap watch from its watch cache (as
    // every watch of a real cluster) and the Secret watch straight from a
    // Logbook watch of its own (the watch cache is off for Secrets).
    let watches = [start_watch(&mut cp, "configmaps"), start_watch(&mut cp, "secrets")];
    let mut changes = Vec::new();
    steps.done("namespaces, background watches");

    configmaps_and_secrets(&cp, &mut changes);
    steps.done("ConfigMaps and Secrets");
    custom_resources(&mut cp);
    steps.done("CustomResourceDefinition and custom objects");
    nodes_and_a_deployment(&mut cp);
    steps.done("Nodes, Deployment scheduled");
    server_side_apply(&cp, &mut changes);
    steps.done("server-side apply");
    finalizers(&mut cp, &mut changes);
    steps.done("finalizers");
    let mut killed = vec![killed_under_writes(&mut cp, &mut changes, 0, Victim::Leader)];
    steps.done("Logbook leader killed under writes; restarted");
    // Then every other member in turn, so that whichever member served
    // kube-apiserver's watches, they had to resume on another.
    for i in 0..cp.members.len() {
        if !killed.contains(&i) {
            killed.push(killed_under_writes(
                &mut cp,
                &mut changes,
                killed.len(),
                Victim::Member(i),
            ));
        }
    }
    members_agree(&mut cp);
    steps.done("each other member killed under writes; members agree (hashkv)");
    bulk_list_in_chunks(&cp, "configmaps", 5_000, 500);
    bulk_list_in_chunks(&cp, "secrets", 1_000, 100);
    members_agree(&mut cp);
    steps.done("5,000 ConfigMaps and 1,000 Secrets, listed in chunks");
    registry_keys(&cp);
    steps.done("etcdctl sees /registry keys");
    garbage_collection(&mut cp);
    steps.done("garbage collection of the Deployment");
    compactions_ran(&cp);
    steps.done("kube-apiserver's compactions");
    for w in &watches {
        watch_saw_every_change(&mut cp, w, &changes);
    }
    steps.done("the watches saw every change");

    report_storage_errors(&cp);
    eprintln!("{}\ntotal: {:.1?}", steps.table, start.elapsed());
}

/// The time of each step, printed at the end (and at once, for a reader
/// following a slow run).
struct Steps {
    last: Instant,
    table: String,
}

impl Default for Steps {
    fn default() -> Steps {
        Steps { last: Instant::now(), table: String::new() }
    }
}

impl Steps {
    fn done(&mut self, what: &str) {
        let now = Instant::now();
        let took = now - self.last;
        let line = format!("  {:>6.1}s  {what}", took.as_secs_f64());
        eprintln!("kubernetes test step:{line}");
        self.table.push_str(&line);
        self.table.push('\n');
        self.last = now;
    }
}

/// The probes of kubeadm's etcd static pod answer as the kubelet wants
/// (a 2xx): liveness `/livez`, readiness and startup `/readyz`, on the
/// plain-HTTP `--listen-metrics-urls` port.
fn kubelet_probes_pass(cp: &ControlPlane) {
    for m in &cp.members {
        for path in ["/livez", "/readyz"] {
            let r = common::http_get(&format!("{}{path}", m.metrics_url()));
            assert!(
                (200..300).contains(&r.status),
                "{} {path} on the metrics port: {} {}",
                m.name,
                r.status,
                r.body
            );
        }
    }
}

// ---- the background watch ----

/// `kubectl get <resource> -w --output-watch-events -o json` in the watched
/// namespace, its stdout to a file: every event as a JSON object.
fn start_watch(cp: &mut ControlPlane, resource: &'static str) -> Watch {
    if resource == "secrets" {
        // Something for the initial list (the namespace has no Secret).
        cp.kubectl_ok(&["create", "secret", "generic", "seed", "-n", WATCHED]);
    }
    let out = cp.dir.path().join(format!("watch-{resource}.json"));
    let log = cp.log_path(&format!("kubectl-watch-{resource}"));
    let mut cmd = cp.kubectl_handle().cmd(&[
        "get",
        resource,
        "-n",
        WATCHED,
        "--watch",
        "--output-watch-events",
        "-o",
        "json",
    ]);
    // A watch has no request timeout: it runs until the test stops it.
    let args: Vec<String> = cmd
        .get_args()
        .filter(|a| *a != "--request-timeout=30s")
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    cmd = Command::new(cmd.get_program());
    cmd.args(&args);
    kube::die_with_parent(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    cp.extra.push(Proc { name: format!("kubectl get {resource} -w"), child: Some(child), log });
    // The watch is established once its initial list has been printed (the
    // namespace's kube-root-ca.crt, which the controller-manager creates,
    // or the seed Secret).
    cp.wait_for("the watch's first event", Duration::from_secs(60), |_| {
        (!watch_events(&out).is_empty()).then_some(())
    });
    Watch { resource, path: out, proc: cp.extra.len() - 1 }
}

/// The events the watch printed so far (a partly written last one is left out).
fn watch_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::Deserializer::from_str(&text).into_iter::<Value>().map_while(Result::ok).collect()
}

fn event_change(resource: &'static str, e: &Value) -> Change {
    use base64::Engine as _;
    let kind = match e["type"].as_str() {
        Some("ADDED") => "ADDED",
        Some("MODIFIED") => "MODIFIED",
        Some("DELETED") => "DELETED",
        other => panic!("watch event of type {other:?}: {e}"),
    };
    let v = e["object"]["data"]["v"].as_str().map(|v| match resource {
        "secrets" => String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD.decode(v).unwrap_or_default(),
        )
        .into_owned(),
        _ => v.to_string(),
    });
    Change {
        resource,
        kind,
        name: e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        v,
    }
}

/// Every change the test made in the watched namespace shows in the
/// watch, in the order it was made, with resourceVersions that only grow:
/// no event lost, none repeated, none out of order, across the leader's
/// death.
fn watch_saw_every_change(cp: &mut ControlPlane, watch: &Watch, changes: &[Change]) {
    let (path, resource) = (&watch.path, watch.resource);
    let changes: Vec<&Change> = changes.iter().filter(|c| c.resource == resource).collect();
    let missing = |events: &[Value]| -> Option<Change> {
        let seen: Vec<Change> = events.iter().map(|e| event_change(resource, e)).collect();
        let mut at = 0;
        for c in &changes {
            match seen[at..]
                .iter()
                .position(|s| s.kind == c.kind && s.name == c.name && (c.v.is_none() || s.v == c.v))
            {
                Some(p) => at += p + 1,
                None => return Some((*c).clone()),
            }
        }
        None
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cp.wait_for(
            &format!("the {resource} watch to show every change"),
            Duration::from_secs(60),
            |_| missing(&watch_events(path)).is_none().then_some(()),
        )
    }));
    let events = watch_events(path);
    if result.is_err() {
        let printed: Vec<String> = events
            .iter()
            .map(|e| {
                let c = event_change(resource, e);
                format!(
                    "{} {} v={:?} rv={}",
                    c.kind, c.name, c.v, e["object"]["metadata"]["resourceVersion"]
                )
            })
            .collect();
        panic!(
            "the {resource} watch missed {:?} (or saw it out of order); it printed {} events:\n{}",
            missing(&events),
            events.len(),
            printed.join("\n")
        );
    }
    // After the initial list (one object), resourceVersions strictly increase.
    let rvs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap()
        })
        .collect();
    for w in rvs[1..].windows(2) {
        assert!(w[0] < w[1], "{resource} watch resourceVersions not increasing: {rvs:?}");
    }
    cp.extra[watch.proc].assert_running();
    eprintln!(
        "the {resource} watch printed {} events for {} changes made",
        events.len(),
        changes.len()
    );
}

// ---- objects ----

fn configmaps_and_secrets(cp: &ControlPlane, changes: &mut Vec<Change>) {
    cp.kubectl_ok(&["create", "configmap", "cm-a", "-n", WATCHED, "--from-literal=v=1"]);
    changes.push(change("ADDED", "cm-a", Some("1")));
    let v = cp.kubectl_ok(&["get", "configmap", "cm-a", "-n", WATCHED, "-o", "jsonpath={.data.v}"]);
    assert_eq!(v, "1");
    cp.kubectl_ok(&["patch", "configmap", "cm-a", "-n", WATCHED, "-p", r#"{"data":{"v":"2"}}"#]);
    changes.push(change("MODIFIED", "cm-a", Some("2")));
    let v = cp.kubectl_ok(&["get", "configmap", "cm-a", "-n", WATCHED, "-o", "jsonpath={.data.v}"]);
    assert_eq!(v, "2");
    cp.kubectl_ok(&["delete", "configmap", "cm-a", "-n", WATCHED]);
    changes.push(change("DELETED", "cm-a", Some("2")));
    let out = cp.kubectl(&["get", "configmap", "cm-a", "-n", WATCHED]);
    assert!(!out.status.success() && stderr(&out).contains("NotFound"), "{}", stderr(&out));

    // A few in another namespace, from a multi-document file.
    let docs: String = (1..=3)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\n  \
                 namespace: objects\ndata:\n  i: \"{i}\"\n  text: |\n    line one\n    line two\n"
            )
        })
        .collect();
    cp.kubectl_stdin_ok(&["create"], &docs);
    let got = cp.kubectl_ok(&[
        "get",
        "configmaps",
        "-n",
        "objects",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.data.i}|{.data.text}{";"}{end}"#,
    ]);
    for i in 1..=3 {
        assert!(got.contains(&format!("settings-{i}={i}|line one\nline two\n;")), "{got}");
    }

    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        "objects",
        "--from-literal=password=hunter2",
    ]);
    let pw =
        cp.kubectl_ok(&["get", "secret", "db", "-n", "objects", "-o", "jsonpath={.data.password}"]);
    assert_eq!(pw, "aHVudGVyMg==", "base64 of hunter2");

    // A Secret in the watched namespace: created, changed, deleted.
    cp.kubectl_ok(&["create", "secret", "generic", "s-a", "-n", WATCHED, "--from-literal=v=1"]);
    changes.push(secret_change("ADDED", "s-a", Some("1")));
    cp.kubectl_ok(&["patch", "secret", "s-a", "-n", WATCHED, "-p", r#"{"stringData":{"v":"2"}}"#]);
    changes.push(secret_change("MODIFIED", "s-a", Some("2")));
    let v = cp.kubectl_ok(&["get", "secret", "s-a", "-n", WATCHED, "-o", "jsonpath={.data.v}"]);
    assert_eq!(v, "Mg==", "base64 of 2");
    cp.kubectl_ok(&["delete", "secret", "s-a", "-n", WATCHED]);
    changes.push(secret_change("DELETED", "s-a", Some("2")));
}

fn custom_resources(cp: &mut ControlPlane) {
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.logbook.test
spec:
  group: logbook.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
"#;
    cp.kubectl_stdin_ok(&["apply"], crd);
    cp.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.logbook.test",
        "--timeout=60s",
    ]);
    let widgets: String = ["red", "green", "blue"]
        .iter()
        .enumerate()
        .map(|(i, color)| {
            format!(
                "---\napiVersion: logbook.test/v1\nkind: Widget\nmetadata:\n  name: {color}\n  \
                 namespace: objects\nspec:\n  size: {}\n  color: {color}\n",
                i + 1
            )
        })
        .collect();
    // A CRD just established may take a moment to be served for writes.
    cp.wait_for("creating custom objects", Duration::from_secs(60), |cp| {
        cp.kubectl_stdin(&["apply"], &widgets).status.success().then_some(())
    });
    let got = cp.kubectl_ok(&[
        "get",
        "widgets",
        "-n",
        "objects",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}:{.spec.size}:{.spec.color} {end}"#,
    ]);
    assert_eq!(got.trim(), "blue:3:blue green:2:green red:1:red");
    cp.kubectl_ok(&[
        "patch",
        "widget",
        "red",
        "-n",
        "objects",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":10}}"#,
    ]);
    let size =
        cp.kubectl_ok(&["get", "widget", "red", "-n", "objects", "-o", "jsonpath={.spec.size}"]);
    assert_eq!(size, "10");
    cp.kubectl_ok(&["delete", "widget", "green", "-n", "objects"]);
    let names = cp.kubectl_ok(&["get", "widgets", "-n", "objects", "-o", "name"]);
    assert_eq!(names, "widget.logbook.test/blue\nwidget.logbook.test/red\n");
}

/// Two Nodes registered by hand (no kubelets) and marked Ready with room
/// for pods; a Deployment of three replicas: the deployment controller
/// makes a ReplicaSet, the ReplicaSet controller its Pods, and the
/// scheduler binds each to a node.
fn nodes_and_a_deployment(cp: &mut ControlPlane) {
    let now = chrono_now();
    for n in ["node-1", "node-2"] {
        cp.kubectl_stdin_ok(
            &["create"],
            &format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n  labels:\n    \
                 kubernetes.io/hostname: {n}\n    kubernetes.io/os: linux\n"
            ),
        );
        let resources = r#"{"cpu":"8","memory":"16Gi","pods":"110"}"#;
        let status = format!(
            r#"{{"status":{{"capacity":{resources},"allocatable":{resources},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status (by the test)","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#
        );
        cp.kubectl_ok(&["patch", "node", n, "--subresource=status", "--type=merge", "-p", &status]);
    }
    cp.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "apps",
        "--image=registry.k8s.io/pause:3.10",
        "--replicas=3",
    ]);
    // The node lifecycle controller lifts the not-ready taint admission put
    // on the new nodes; then the scheduler binds.
    let bound = cp.wait_for("three pods of web bound to nodes", Duration::from_secs(120), |cp| {
        let out = cp.kubectl(&[
            "get",
            "pods",
            "-n",
            "apps",
            "-l",
            "app=web",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{"\n"}{end}"#,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let pods: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once('=').map(|(p, n)| (p.to_string(), n.to_string())))
            .collect();
        (pods.len() == 3 && pods.iter().all(|(_, n)| n.starts_with("node-"))).then_some(pods)
    });
    let rs = cp.kubectl_ok(&[
        "get",
        "replicasets",
        "-n",
        "apps",
        "-l",
        "app=web",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}{"\n"}{end}"#,
    ]);
    let rs: Vec<&str> = rs.lines().collect();
    assert_eq!(rs.len(), 1, "one ReplicaSet: {rs:?}");
    assert!(rs[0].ends_with(" Deployment/web"), "{rs:?}");
    let rs_name = rs[0].split(' ').next().unwrap();
    for (pod, _) in &bound {
        let owner = cp.kubectl_ok(&[
            "get",
            "pod",
            pod,
            "-n",
            "apps",
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
        ]);
        assert_eq!(owner, format!("ReplicaSet/{rs_name}"));
    }
    cp.wait_for("the Deployment's status to count 3 replicas", Duration::from_secs(60), |cp| {
        let out = cp.kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            "apps",
            "-o",
            "jsonpath={.status.replicas}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "3").then_some(())
    });
}

/// RFC 3339 UTC time of now, as Kubernetes' metav1.Time.
fn chrono_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `kubectl apply --server-side`: two field managers own different fields;
/// a conflicting apply is refused until forced; managedFields say who owns what.
fn server_side_apply(cp: &ControlPlane, changes: &mut Vec<Change>) {
    let doc = |v: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: {WATCHED}\n\
             data:\n  v: \"{v}\"\n{extra}"
        )
    };
    cp.kubectl_stdin_ok(
        &["apply", "--server-side", "--field-manager=alice"],
        &doc("1", "  owner: alice\n"),
    );
    changes.push(change("ADDED", "ssa", Some("1")));
    let out = cp.kubectl_stdin(&["apply", "--server-side", "--field-manager=bob"], &doc("2", ""));
    assert!(!out.status.success(), "a conflicting apply must be refused");
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    cp.kubectl_stdin_ok(
        &["apply", "--server-side", "--field-manager=bob", "--force-conflicts"],
        &doc("2", ""),
    );
    changes.push(change("MODIFIED", "ssa", Some("2")));
    let obj: Value = serde_json::from_str(&cp.kubectl_ok(&[
        "get",
        "configmap",
        "ssa",
        "-n",
        WATCHED,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    assert_eq!(obj["data"]["v"], "2");
    assert_eq!(obj["data"]["owner"], "alice");
    let managers: BTreeMap<String, String> = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap().to_string(), m["fieldsV1"]["f:data"].to_string()))
        .collect();
    assert!(
        managers["alice"].contains("f:owner") && !managers["alice"].contains("f:v"),
        "{managers:?}"
    );
    assert!(managers["bob"].contains("f:v"), "{managers:?}");
}

/// An object with a finalizer stays, Terminating, after its deletion until
/// the finalizer is removed; then it goes.
fn finalizers(cp: &mut ControlPlane, changes: &mut Vec<Change>) {
    cp.kubectl_stdin_ok(
        &["create"],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: {WATCHED}\n  \
             finalizers: [logbook.test/hold]\ndata:\n  v: held\n"
        ),
    );
    changes.push(change("ADDED", "held", Some("held")));
    cp.kubectl_ok(&["delete", "configmap", "held", "-n", WATCHED, "--wait=false"]);
    changes.push(change("MODIFIED", "held", Some("held")));
    std::thread::sleep(Duration::from_secs(2));
    let ts = cp.kubectl_ok(&[
        "get",
        "configmap",
        "held",
        "-n",
        WATCHED,
        "-o",
        "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
    ]);
    assert!(ts.contains("logbook.test/hold") && ts.len() > 20, "still there, terminating: {ts}");
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        WATCHED,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    changes.push(change("DELETED", "held", Some("held")));
    cp.wait_for("the finalized object to go", Duration::from_secs(30), |cp| {
        let out = cp.kubectl(&["get", "configmap", "held", "-n", WATCHED]);
        stderr(&out).contains("NotFound").then_some(())
    });
}

/// Which member a round of [`killed_under_writes`] kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    /// The one that says it leads.
    Leader,
    /// Member `i`, whatever its role.
    Member(usize),
}

/// kill -9 of a Logbook member (the leader first) while kubectl creates
/// ConfigMaps one after another: the API server serves writes again within
/// seconds, every create kubectl saw succeed is there afterwards (in the API
/// and in the store), and the killed member, restarted, catches up. Returns
/// the member killed.
fn killed_under_writes(
    cp: &mut ControlPlane,
    changes: &mut Vec<Change>,
    round: usize,
    victim: Victim,
) -> usize {
    const WRITES: usize = 30;
    const KILL_AFTER: usize = 10;
    let kubectl = cp.kubectl_handle();
    let name_of = move |i: usize| format!("w{round}-{i:03}");
    // ConfigMaps and Secrets by turns.
    let kind_of = |i: usize| if i.is_multiple_of(2) { "configmap" } else { "secret" };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, bool, Instant, String)>();
    let writer = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(240);
        for i in 0..WRITES {
            if Instant::now() > deadline {
                break;
            }
            let mut args = vec!["create", kind_of(i)];
            if kind_of(i) == "secret" {
                args.push("generic");
            }
            let (name, v) = (name_of(i), format!("--from-literal=v={i}"));
            args.extend([name.as_str(), "-n", WATCHED, v.as_str()]);
            let out = kubectl.run(&args);
            let _ = tx.send((i, out.status.success(), Instant::now(), stderr(&out)));
        }
    });
    let mut results = Vec::new();
    let mut killed: Option<(usize, Instant)> = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => results.push(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(Instant::now() < deadline, "the writer did not finish within 300 s");
        if killed.is_none() && results.iter().filter(|r| r.1).count() >= KILL_AFTER {
            let target = match victim {
                Victim::Member(i) => Some(i),
                Victim::Leader => match cp.leaders()[..] {
                    [l] => Some(l),
                    _ => None,
                },
            };
            if let Some(v) = target {
                let role = if cp.leaders() == [v] { "the leader" } else { "a follower" };
                eprintln!("round {round}: killing {role}, {} (kill -9)", cp.members[v].name);
                cp.members[v].proc.as_mut().unwrap().kill();
                killed = Some((v, Instant::now()));
            }
        }
    }
    writer.join().unwrap();
    let (dead, killed_at) = killed.expect("the member to kill was found while writing");
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.1)
        .map(|r| format!("{}: {}", name_of(r.0), r.3.trim()))
        .collect();
    let first_after =
        results.iter().filter(|r| r.1 && r.2 > killed_at).map(|r| r.2 - killed_at).min();
    eprintln!(
        "round {round}: {} of {} creates succeeded; first success {first_after:?} after the kill; \
         failures: {failures:#?}",
        results.iter().filter(|r| r.1).count(),
        results.len(),
    );
    let first_after = first_after.expect("no create succeeded after the kill");
    assert!(
        first_after < Duration::from_secs(30),
        "the API server took {first_after:?} to serve a write after {} was killed",
        cp.members[dead].name
    );
    // One leader among the two left.
    let leaders = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = cp.leaders();
            if l.len() == 1 || Instant::now() > deadline {
                break l;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    assert_eq!(leaders.len(), 1, "one leader among the survivors: {leaders:?}");
    assert_ne!(leaders[0], dead);

    // Every create kubectl saw succeed is in the API and in the store.
    let listed: BTreeSet<String> = cp
        .kubectl_ok(&["get", "configmaps,secrets", "-n", WATCHED, "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    let survivor = cp.members[leaders[0]].client_url();
    let stored = cp.etcdctl_at(&survivor, &["get", "/registry/", "--prefix", "--keys-only"]);
    assert!(stored.status.success(), "{}", stderr(&stored));
    let stored = String::from_utf8_lossy(&stored.stdout).into_owned();
    for (i, ok, _, _) in &results {
        let (name, kind) = (name_of(*i), kind_of(*i));
        if *ok {
            assert!(
                listed.contains(&format!("{kind}/{name}")),
                "{kind} {name} was created (kubectl said so) but is not listed: {listed:?}"
            );
            assert!(
                stored.contains(&format!("/registry/{kind}s/watched/{name}\n")),
                "{kind} {name} not in the store"
            );
            let v = i.to_string();
            changes.push(match kind {
                "secret" => secret_change("ADDED", &name, Some(&v)),
                _ => change("ADDED", &name, Some(&v)),
            });
        }
    }

    // The killed member comes back with its data and catches up.
    cp.spawn_member(dead);
    cp.wait_member_healthy(dead, Duration::from_secs(60));
    let url = cp.members[dead].client_url();
    let last = results
        .iter()
        .rfind(|r| r.1)
        .map(|r| format!("/registry/{}s/watched/{}", kind_of(r.0), name_of(r.0)))
        .unwrap();
    cp.wait_for("the restarted member to catch up", Duration::from_secs(60), |cp| {
        let out = cp.etcdctl_at(&url, &["get", &last, "--keys-only", "--consistency=s"]);
        String::from_utf8_lossy(&out.stdout).contains(&last).then_some(())
    });
    dead
}

/// The members hold the same data: `etcdctl endpoint hashkv --rev=R` gives
/// one hash on every member, at a revision R all of them have applied.
fn members_agree(cp: &mut ControlPlane) {
    let all = cp.etcd_endpoints();
    let out = cp.etcdctl_at(&all, &["endpoint", "status", "-w", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rev = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"]["header"]["revision"].as_i64().unwrap())
        .min()
        .unwrap();
    let out = cp.etcdctl_at(&all, &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let hashes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let distinct: BTreeSet<u64> =
        hashes.as_array().unwrap().iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
    assert_eq!(distinct.len(), 1, "members disagree at revision {rev}: {hashes}");
}

/// `n` ConfigMaps or Secrets created through the API over 8 connections,
/// then `kubectl get --chunk-size=<chunk>` lists them all in pages (from
/// the API server's watch cache for ConfigMaps; for Secrets, whose cache
/// is off, each page is a `KV.RangeStream` with a limit on Logbook, which
/// the API server's storage metrics must show).
fn bulk_list_in_chunks(cp: &ControlPlane, resource: &str, n: usize, chunk: usize) {
    let (kind, data) = match resource {
        "configmaps" => ("ConfigMap", "data"),
        _ => ("Secret", "stringData"),
    };
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"apiVersion":"v1","kind":"{kind}","metadata":{{"name":"bulk-{i:05}","labels":{{"set":"bulk"}}}},"{data}":{{"i":"{i}","pad":"{}"}}}}"#,
                "x".repeat(200)
            )
        })
        .collect();
    let t = Instant::now();
    let path = format!("/api/v1/namespaces/bulk/{resource}");
    let (created, error) = kube::post_all(&cp.pki, cp.apiserver_port, &path, bodies, 8);
    assert_eq!(error, None);
    assert_eq!(created, n);
    eprintln!("created {n} {resource} in {:.1?}", t.elapsed());

    let out = cp.kubectl(&[
        "get",
        resource,
        "-n",
        "bulk",
        &format!("--chunk-size={chunk}"),
        "-o",
        "name",
        "-v=6",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The namespace also holds the controller-manager's kube-root-ca.crt.
    let extra = usize::from(resource == "configmaps");
    let names: BTreeSet<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(names.len(), n + extra, "kubectl listed {} of {n} {resource}", names.len());
    let singular = kind.to_lowercase();
    assert!(
        names.contains(&format!("{singular}/bulk-00000"))
            && names.contains(&format!("{singular}/bulk-{:05}", n - 1))
    );
    let log = stderr(&out);
    let limit = format!("limit={chunk}");
    let pages = log
        .lines()
        .filter(|l| l.contains(&format!("/namespaces/bulk/{resource}?")) && l.contains(&limit))
        .count();
    let continued = log.lines().filter(|l| l.contains(&limit) && l.contains("continue=")).count();
    assert!(
        pages >= n / chunk && continued >= n / chunk - 1,
        "{pages} pages, {continued} with continue:\n{log}"
    );

    // The same from the store, with etcdctl.
    assert_eq!(etcd_count(cp, &format!("/registry/{resource}/bulk/")), (n + extra) as u64);

    if resource == "secrets" {
        // The pages came from Logbook as RangeStreams (kube-apiserver 1.37
        // streams unfiltered lists when the server implements it, and
        // falls back to paged Ranges for 10 minutes when it does not).
        let metrics = cp.kubectl_ok(&["get", "--raw", "/metrics"]);
        let streamed = metrics
            .lines()
            .find(|l| {
                l.starts_with("apiserver_storage_list_duration_seconds_count{")
                    && l.contains(r#"resource="secrets""#)
                    && l.contains(r#"streamed="true""#)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(
            streamed >= (n / chunk) as f64,
            "kube-apiserver streamed {streamed} Secret lists from its store"
        );
    }
}

/// `etcdctl get <prefix> --prefix --count-only -w fields`: how many keys
/// the store holds under `prefix`.
fn etcd_count(cp: &ControlPlane, prefix: &str) -> u64 {
    let out = cp.etcdctl_at(
        &cp.etcd_endpoints(),
        &["get", prefix, "--prefix", "--count-only", "-w", "fields"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("\"Count\" : "))
        .unwrap_or_else(|| panic!("no Count in etcdctl's fields: {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `etcdctl get /registry --prefix --keys-only` with the etcd client
/// certificate shows the objects where kube-apiserver keeps them.
fn registry_keys(cp: &ControlPlane) {
    let out = cp.etcdctl_at(&cp.etcd_endpoints(), &["get", "/registry", "--prefix", "--keys-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for k in [
        "/registry/configmaps/objects/settings-1",
        "/registry/configmaps/watched/ssa",
        "/registry/secrets/objects/db",
        "/registry/deployments/apps/web",
        "/registry/namespaces/apps",
        "/registry/minions/node-1",
        "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.logbook.test",
        "/registry/logbook.test/widgets/objects/red",
    ] {
        assert!(keys.contains(k), "{k} missing from etcdctl's /registry listing");
    }
    let pods = keys.iter().filter(|k| k.starts_with("/registry/pods/apps/web-")).count();
    assert_eq!(pods, 3, "three pods of web under /registry/pods/apps/");
    assert!(keys.iter().any(|k| k.starts_with("/registry/replicasets/apps/web-")));
    // Events expire through a lease the API server attached (--event-ttl).
    let out = cp.etcdctl_at(
        &cp.etcd_endpoints(),
        &["get", "/registry/events/apps/", "--prefix", "--limit=1", "-w", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lease = events["kvs"][0]["lease"].as_i64().unwrap_or(0);
    assert!(lease != 0, "an event of the Deployment, with a lease: {events}");
    let out = cp.etcdctl_at(
        &cp.etcd_endpoints(),
        &["lease", "timetolive", &format!("{lease:x}"), "-w", "json"],
    );
    let ttl: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(ttl["ttl"].as_i64().unwrap_or(0) > 3000, "the event lease's TTL: {ttl}");
    // Secrets are stored as the API server wrote them (no encryption configured).
    let out = cp.etcdctl_at(
        &cp.etcd_endpoints(),
        &["get", "/registry/secrets/objects/db", "--print-value-only"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

/// kube-apiserver compacted the store (every 15 s here): `compact_rev_key`
/// has been written more than once, every member reports the compaction,
/// and a read below it is refused as etcd refuses it.
fn compactions_ran(cp: &ControlPlane) {
    let all = cp.etcd_endpoints();
    let out = cp.etcdctl_at(&all, &["get", "compact_rev_key", "-w", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kv = &v["kvs"][0];
    assert!(kv["version"].as_i64().unwrap_or(0) >= 2, "compact_rev_key: {v}");
    for m in &cp.members {
        let metrics = common::http_get(&format!("{}/metrics", m.metrics_url())).body;
        let compacted = metrics
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_compact_revision "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(compacted > 0.0, "{} reports no compaction", m.name);
    }
    let out = cp.etcdctl_at(&all, &["get", "/registry/namespaces/apps", "--rev=2"]);
    assert!(
        !out.status.success() && stderr(&out).contains("required revision has been compacted"),
        "{}",
        stderr(&out)
    );
}

/// Deleting the Deployment removes its ReplicaSet and Pods through their
/// ownerReferences (the garbage collector, background propagation). The
/// Pods are bound to nodes, so their deletion is graceful: the collector
/// marks them Terminating and the node's kubelet would remove them once
/// their containers stopped. There are no kubelets here, so the test does
/// the kubelet's part (a deletion with no grace period) and sees them go
/// from the store.
fn garbage_collection(cp: &mut ControlPlane) {
    cp.kubectl_ok(&["delete", "deployment", "web", "-n", "apps", "--wait=false"]);
    cp.wait_for(
        "the garbage collector to remove web's ReplicaSet and mark its Pods deleted",
        Duration::from_secs(120),
        |cp| {
            let rs = cp.kubectl(&["get", "replicasets", "-n", "apps", "-o", "name"]);
            let pods = cp.kubectl(&[
                "get",
                "pods",
                "-n",
                "apps",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{"\n"}{end}"#,
            ]);
            let pods = String::from_utf8_lossy(&pods.stdout).into_owned();
            (rs.status.success()
                && rs.stdout.is_empty()
                && pods.lines().all(|l| !l.ends_with('=')))
            .then_some(())
        },
    );
    assert_eq!(etcd_count(cp, "/registry/replicasets/apps/"), 0);
    assert_eq!(etcd_count(cp, "/registry/deployments/apps/"), 0);
    cp.kubectl_ok(&["delete", "pods", "-n", "apps", "--all", "--grace-period=0", "--force"]);
    cp.wait_for("the pods to leave the store", Duration::from_secs(60), |cp| {
        (etcd_count(cp, "/registry/pods/apps/") == 0).then_some(())
    });
}

/// Prints the API server's log lines about its storage, for the record
/// (errors while the leader was killed are expected there).
fn report_storage_errors(cp: &ControlPlane) {
    let log = std::fs::read_to_string(cp.log_path("kube-apiserver")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            (l.starts_with('E') || l.starts_with('W'))
                && (l.contains("etcd") || l.contains("storage") || l.contains("cacher"))
        })
        .collect();
    eprintln!(
        "kube-apiserver logged {} warnings/errors about its storage; the last ones:\n{}",
        lines.len(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    );
}

// ---- moving a running control plane's store ----

/// Serializes the tests of this file: each runs a whole control plane, and
/// two at once on a small machine only make both slow.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The procedure of docs/kubernetes.md ("Moving a running cluster's etcd to
/// Logbook, and back"), on one control-plane node: kube-apiserver on etcd
/// 3.7 started with kubeadm's flags; stop the API server, `etcdctl snapshot
/// save`, stop etcd, `logbook snapshot restore` into a new data directory,
/// start Logbook with the same flags (the static pod's image swapped) and
/// the API server again: every object keeps its uid and resourceVersion,
/// and new writes get later ones. Then back the same way, with etcd's own
/// restore and etcd 3.7.
#[test]
fn a_running_control_plane_moves_from_etcd_to_logbook_and_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let etcd = kube::etcd37_program();
    let logbook = PathBuf::from(env!("CARGO_BIN_EXE_logbook"));
    let mut cp = ControlPlane::create_with(&["cp1"], &etcd);
    cp.start_etcd();
    cp.start_apiserver();
    cp.wait_apiserver_ready(Duration::from_secs(180));
    cp.kubectl_ok(&["create", "namespace", "moved"]);
    cp.kubectl_ok(&["create", "configmap", "on-etcd", "-n", "moved", "--from-literal=v=1"]);
    let mut seen = identities(&cp);

    for (hop, program, restore) in [(1, &logbook, Restore::Logbook), (2, &etcd, Restore::Etcdctl)] {
        move_store(&mut cp, hop, program, restore);
        let now = identities(&cp);
        for (object, id) in &seen {
            assert_eq!(now.get(object), Some(id), "{object} after move {hop}: {now:?}");
        }
        let newest = seen.values().map(|(_, rv)| *rv).max().unwrap();
        let name = format!("after-move-{hop}");
        cp.kubectl_ok(&["create", "configmap", &name, "-n", "moved", "--from-literal=v=2"]);
        seen = identities(&cp);
        let (_, rv) = seen[&format!("configmap/{name}")];
        assert!(rv > newest, "a write after move {hop} got resourceVersion {rv} <= {newest}");
    }
    eprintln!("etcd -> Logbook -> etcd under kube-apiserver in {:.1?}", start.elapsed());
}

/// Which tool builds the new data directory from the snapshot.
#[derive(Clone, Copy, Debug)]
enum Restore {
    /// `logbook snapshot restore`.
    Logbook,
    /// `etcdctl snapshot restore` (the etcdctl on PATH: etcd 3.6 moved the
    /// command to etcdutl, which scripts/etcd-bin.sh does not build).
    Etcdctl,
}

/// Every object of the `moved` namespace, and the namespace itself, with
/// its uid and resourceVersion.
fn identities(cp: &ControlPlane) -> BTreeMap<String, (String, u64)> {
    let format = r#"jsonpath={range .items[*]}{.kind}/{.metadata.name} {.metadata.uid} {.metadata.resourceVersion}{"\n"}{end}"#;
    let mut out = cp.kubectl_ok(&["get", "namespaces", "moved", "kube-system", "-o", format]);
    out += &cp.kubectl_ok(&["get", "configmaps", "-n", "moved", "-o", format]);
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_lowercase(), (f[1].to_string(), f[2].parse().unwrap()))
        })
        .collect()
}

/// Moves the single member's store to `program` by snapshot: stop the API
/// server, save a snapshot, stop the member, restore into a new data
/// directory, start `program` there with the same flags, start the API
/// server again.
fn move_store(cp: &mut ControlPlane, hop: usize, program: &Path, restore: Restore) {
    cp.apiserver = None;
    let snapshot = cp.dir.path().join(format!("move-{hop}.db"));
    let url = cp.members[0].client_url();
    let out = cp.etcdctl_at(&url, &["snapshot", "save", snapshot.to_str().unwrap()]);
    assert!(out.status.success(), "snapshot save: {}", stderr(&out));
    cp.members[0].proc = None;

    let m = &cp.members[0];
    let data_dir = cp.dir.path().join(format!("{}/var/lib/store-{hop}", m.name));
    let cluster = format!("{}={}", m.name, m.peer_url());
    let mut cmd = match restore {
        Restore::Logbook => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_logbook"));
            c.args(["snapshot", "restore"]);
            c
        }
        Restore::Etcdctl => {
            let mut c = Command::new("etcdctl");
            c.env("ETCDCTL_API", "3").args(["snapshot", "restore"]);
            c
        }
    };
    cmd.arg(&snapshot)
        .args(["--name", &m.name])
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--initial-cluster", &cluster])
        .args(["--initial-advertise-peer-urls", &m.peer_url()]);
    let out = kube::run_bounded(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{restore:?} restore: {}", stderr(&out));

    cp.members[0].data_dir = data_dir;
    cp.run_etcd_as(program);
    cp.spawn_member(0);
    cp.wait_member_healthy(0, Duration::from_secs(60));
    cp.start_apiserver();
    cp.wait_apiserver_ready(Duration::from_secs(180));
}
