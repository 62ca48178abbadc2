//! The HTTP side of the client port, black-box: `/health`, `/version`,
//! `/livez`, `/readyz`, `/metrics` (also on `--listen-metrics-urls`) and the
//! v3 JSON gateway, checked against etcdctl on the same member and against a
//! real etcd given the same requests.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Etcd, b64, free_port, gw, http, http_get, json};
use serde_json::{Value, json};

/// etcdctl's `-w json` prints 64-bit integers as numbers; the gateway as
/// strings. Compare them as strings.
fn num(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => "0".into(),
        other => panic!("not a number: {other}"),
    }
}

/// A key-value as comparable text: key, value, revisions and version.
fn kv_text(kv: &Value) -> String {
    format!(
        "{} {} c{} m{} v{}",
        kv["key"].as_str().unwrap_or(""),
        kv["value"].as_str().unwrap_or(""),
        num(&kv["create_revision"]),
        num(&kv["mod_revision"]),
        num(&kv["version"])
    )
}

fn kvs_text(resp: &Value) -> Vec<String> {
    resp["kvs"].as_array().map(|a| a.iter().map(kv_text).collect()).unwrap_or_default()
}

#[test]
fn every_gateway_path_agrees_with_etcdctl() {
    let c = Cluster::start(1, &[]);
    let base = c.specs[0].client_url();

    // Put through the gateway, read back through etcdctl.
    let r = gw(&base, "/v3/kv/put", &format!(r#"{{"key":"{}","value":"{}"}}"#, b64("a"), b64("1")));
    assert_eq!(r.status, 200, "{}", r.body);
    let put_rev = num(&r.json()["header"]["revision"]);
    let got = json(&c.ctl_ok(0, &["get", "a", "-w", "json"]));
    assert_eq!(num(&got["header"]["revision"]), put_rev);
    assert_eq!(kvs_text(&got), vec![format!("{} {} c{put_rev} m{put_rev} v1", b64("a"), b64("1"))]);

    // Put through etcdctl, range through the gateway: same kvs, same revision.
    c.ctl_ok(0, &["put", "b", "2"]);
    c.ctl_ok(0, &["put", "b", "3"]);
    let via_ctl = json(&c.ctl_ok(0, &["get", "", "--prefix", "-w", "json"]));
    let r = gw(&base, "/v3/kv/range", r#"{"key":"AA==","range_end":"AA=="}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let via_gw = r.json();
    assert_eq!(kvs_text(&via_gw), kvs_text(&via_ctl));
    assert_eq!(num(&via_gw["header"]["revision"]), num(&via_ctl["header"]["revision"]));
    assert_eq!(num(&via_gw["count"]), "2");
    // Defaults are omitted: no "more":false, no "lease":"0".
    assert!(via_gw.get("more").is_none() && via_gw["kvs"][0].get("lease").is_none(), "{via_gw}");
    // 64-bit integers are strings; ids match what etcdctl sees.
    assert!(via_gw["header"]["cluster_id"].is_string());
    assert_eq!(num(&via_gw["header"]["cluster_id"]), num(&via_ctl["header"]["cluster_id"]));
    assert_eq!(num(&via_gw["header"]["member_id"]), num(&via_ctl["header"]["member_id"]));

    // Txn: compare the value etcdctl wrote, put and read in one revision.
    let txn = format!(
        r#"{{"compare":[{{"key":"{b}","result":"EQUAL","target":"VALUE","value":"{v3}"}}],
            "success":[{{"request_put":{{"key":"{b}","value":"{v4}"}}}},{{"requestRange":{{"key":"{b}"}}}}],
            "failure":[{{"request_range":{{"key":"{a}"}}}}]}}"#,
        b = b64("b"),
        v3 = b64("3"),
        v4 = b64("4"),
        a = b64("a")
    );
    let r = gw(&base, "/v3/kv/txn", &txn);
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    assert_eq!(t["succeeded"], true);
    let txn_rev = num(&t["header"]["revision"]);
    assert_eq!(num(&t["responses"][0]["response_put"]["header"]["revision"]), txn_rev);
    let ranged = &t["responses"][1]["response_range"];
    assert_eq!(kvs_text(ranged), kvs_text(&json(&c.ctl_ok(0, &["get", "b", "-w", "json"]))));
    // The same txn again fails its compare and takes the failure branch.
    let t = gw(&base, "/v3/kv/txn", &txn).json();
    assert!(t.get("succeeded").is_none(), "false is omitted: {t}");
    assert_eq!(
        kvs_text(&t["responses"][0]["response_range"]),
        kvs_text(&json(&c.ctl_ok(0, &["get", "a", "-w", "json"])))
    );

    // DeleteRange with prev_kv; etcdctl no longer sees the key.
    let before = json(&c.ctl_ok(0, &["get", "b", "-w", "json"]));
    let r = gw(&base, "/v3/kv/deleterange", &format!(r#"{{"key":"{}","prev_kv":true}}"#, b64("b")));
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    assert_eq!(num(&d["deleted"]), "1");
    assert_eq!(kvs_text(&json!({"kvs": d["prev_kvs"]})), kvs_text(&before));
    assert_eq!(c.ctl_ok(0, &["get", "b"]), "");
    let del_rev = num(&d["header"]["revision"]);
    assert_eq!(
        num(&json(&c.ctl_ok(0, &["get", "a", "-w", "json"]))["header"]["revision"]),
        del_rev
    );

    // Compaction through the gateway; etcdctl then sees the old revision gone.
    let r = gw(&base, "/v3/kv/compaction", &format!(r#"{{"revision":"{txn_rev}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let out = c.ctl(0, &["get", "a", "--rev", &put_rev]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));
    let r =
        gw(&base, "/v3/kv/range", &format!(r#"{{"key":"{}","revision":"{put_rev}"}}"#, b64("a")));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "etcdserver: mvcc: required revision has been compacted", "code": 11,
               "message": "etcdserver: mvcc: required revision has been compacted"})
    );

    // Cluster: the member list etcdctl prints.
    let r = gw(&base, "/v3/cluster/member/list", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let gw_members = r.json();
    let ctl_members = json(&c.ctl_ok(0, &["member", "list", "-w", "json"]));
    assert_eq!(num(&gw_members["members"][0]["ID"]), num(&ctl_members["members"][0]["ID"]));
    assert_eq!(gw_members["members"][0]["name"], ctl_members["members"][0]["name"]);
    assert_eq!(gw_members["members"][0]["peerURLs"], ctl_members["members"][0]["peerURLs"]);
    assert_eq!(gw_members["members"][0]["clientURLs"], ctl_members["members"][0]["clientURLs"]);

    // Maintenance: status, hash, alarm, defragment.
    let r = gw(&base, "/v3/maintenance/status", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    let ctl_status = json(&c.ctl_ok(0, &["endpoint", "status", "-w", "json"]));
    let ctl_status = &ctl_status[0]["Status"];
    assert_eq!(num(&s["leader"]), num(&ctl_status["leader"]));
    assert_eq!(s["version"], ctl_status["version"]);
    assert_eq!(num(&s["header"]["revision"]), num(&ctl_status["header"]["revision"]));
    let r = gw(&base, "/v3/maintenance/hash", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["hash"].is_number(), "uint32 stays a number: {}", r.body);
    let r = gw(&base, "/v3/maintenance/alarm", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("alarms").is_none());
    let r = gw(&base, "/v3/maintenance/defragment", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    // Still serving, same data.
    assert_eq!(c.ctl_ok(0, &["get", "a", "--print-value-only"]), "1\n");
}

#[test]
fn bad_input_gets_etcd_shaped_4xx_and_the_member_keeps_serving() {
    let c = Cluster::start(1, &["--max-request-bytes", "1024"]);
    let base = c.specs[0].client_url();
    let err = |r: &common::HttpResponse, status: u16, code: i64| {
        assert_eq!(r.status, status, "{}", r.body);
        assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
        let v = r.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["error"].is_string() && v["error"] == v["message"], "{v}");
        v
    };
    // Malformed JSON, wrong types, a non-object.
    err(&gw(&base, "/v3/kv/range", "not json"), 400, 3);
    err(&gw(&base, "/v3/kv/range", r#"{"key":123}"#), 400, 3);
    err(&gw(&base, "/v3/kv/range", r#"{"key":"Zm9v","revision":"abc"}"#), 400, 3);
    err(&gw(&base, "/v3/kv/range", "[1]"), 400, 3);
    err(&gw(&base, "/v3/kv/txn", r#"{"compare":[{"result":"NOPE"}]}"#), 400, 3);
    // etcd's own validation, through the service.
    let v = err(&gw(&base, "/v3/kv/put", r#"{"key":""}"#), 400, 3);
    assert_eq!(v["message"], "etcdserver: key is not provided");
    // Over --max-request-bytes: etcd's "request is too large".
    let big = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("k"), b64(&"x".repeat(2000)));
    let v = err(&gw(&base, "/v3/kv/put", &big), 400, 3);
    assert_eq!(v["message"], "etcdserver: request is too large");
    // Over the gRPC message limit (max-request-bytes + 512 KiB): 429, code 8.
    let huge = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("k"), b64(&"x".repeat(600 * 1024)));
    err(&gw(&base, "/v3/kv/put", &huge), 429, 8);
    // Unknown paths and methods.
    err(&gw(&base, "/v3/kv/nope", "{}"), 404, 5);
    assert_eq!(http_get(&format!("{base}/v3/kv/range")).status, 405);
    let r = http_get(&format!("{base}/nothing-here"));
    assert_eq!(r.status, 404);
    // Unknown fields are ignored, as etcd's gateway does.
    let r = gw(
        &base,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","value":"{}","bogus":1}}"#, b64("k"), b64("v")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // The member still serves both protocols on the port.
    assert_eq!(c.ctl_ok(0, &["get", "k", "--print-value-only"]), "v\n");
    assert_eq!(http_get(&format!("{base}/health")).status, 200);
}

#[test]
fn health_version_probes_and_metrics() {
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let c = Cluster::start(1, &["--listen-metrics-urls", &metrics_url]);
    let base = c.specs[0].client_url();

    let v = http_get(&format!("{base}/version")).json();
    assert_eq!(v, json!({"etcdserver": "3.5.13", "etcdcluster": "3.5.0"}));
    let h = http_get(&format!("{base}/health"));
    assert_eq!((h.status, h.json()), (200, json!({"health": "true", "reason": ""})));
    for q in ["?serializable=true", "?exclude=NOSPACE", "?serializable=false&exclude=NOSPACE"] {
        assert_eq!(http_get(&format!("{base}/health{q}")).status, 200, "{q}");
    }
    assert_eq!(http_get(&format!("{base}/livez")).body, "ok");
    assert_eq!(http_get(&format!("{base}/readyz")).body, "ok");
    assert!(http_get(&format!("{base}/readyz?verbose")).body.contains("[+]linearizable_read ok"));

    c.ctl_ok(0, &["put", "m", "1"]);
    for url in [&base, &metrics_url] {
        let m = http_get(&format!("{url}/metrics"));
        assert_eq!(m.status, 200);
        assert!(m.content_type.starts_with("text/plain; version=0.0.4"), "{}", m.content_type);
        let value = |name: &str| -> f64 {
            m.body
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no {name} in:\n{}", m.body))
                .parse()
                .unwrap()
        };
        assert_eq!(value("etcd_server_has_leader"), 1.0);
        assert_eq!(value("etcd_server_is_leader"), 1.0);
        assert!(value("etcd_server_leader_changes_seen_total") >= 1.0);
        assert!(value("etcd_server_proposals_committed_total") >= 2.0);
        assert!(value("etcd_server_proposals_applied_total") >= 2.0);
        assert_eq!(value("etcd_server_proposals_pending"), 0.0);
        assert_eq!(value("etcd_server_proposals_failed_total"), 0.0);
        assert!(value("etcd_mvcc_db_total_size_in_bytes") > 0.0);
        assert!(value("etcd_mvcc_db_total_size_in_use_in_bytes") > 0.0);
        assert_eq!(value("etcd_debugging_mvcc_keys_total"), 1.0);
        assert!(m.body.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"));
        assert!(value("etcd_disk_wal_fsync_duration_seconds_count") >= 1.0);
        assert!(value("logbook_wal_records_per_fsync_count") >= 1.0);
        assert!(m.body.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}"));
        assert!(m.body.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"}"));
    }
    // The metrics URL is HTTP only: health too, no gateway.
    assert_eq!(http_get(&format!("{metrics_url}/health")).status, 200);
    assert_eq!(gw(&metrics_url, "/v3/kv/range", "{}").status, 404);
}

/// Polls `url` (bounded) until its status is `want`.
fn wait_status(url: &str, want: u16, limit: Duration) -> common::HttpResponse {
    let deadline = Instant::now() + limit;
    loop {
        let r = http_get(url);
        if r.status == want {
            return r;
        }
        assert!(Instant::now() < deadline, "{url}: still {} after {limit:?}: {}", r.status, r.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn health_flips_when_quorum_is_lost_and_back() {
    let mut c = Cluster::start(3, &[]);
    let health = format!("{}/health", c.specs[0].client_url());
    assert_eq!(http_get(&health).status, 200);
    c.kill(1);
    c.kill(2);
    let r = wait_status(&health, 503, Duration::from_secs(30));
    let v = r.json();
    assert_eq!(v["health"], "false", "{v}");
    assert!(!v["reason"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(http_get(&format!("{}/readyz", c.specs[0].client_url())).status, 503);
    // A serializable check needs no leader: the member itself is alive.
    assert_eq!(http_get(&format!("{health}?serializable=true")).status, 200);
    assert_eq!(http_get(&format!("{}/livez", c.specs[0].client_url())).status, 200);
    c.spawn(1);
    let r = wait_status(&health, 200, Duration::from_secs(30));
    assert_eq!(r.json(), json!({"health": "true", "reason": ""}));
}

/// Replaces what differs between two clusters by design: IDs, terms,
/// names, URLs, versions and sizes.
fn normalise(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match k.as_str() {
                    "cluster_id" | "member_id" | "raft_term" | "ID" | "leader" | "raftTerm"
                    | "raftIndex" | "raftAppliedIndex" | "dbSize" | "dbSizeInUse" | "version"
                        if !val.is_object() && !val.is_array() =>
                    {
                        *val = json!("*");
                    }
                    _ => normalise(val),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

#[test]
fn same_json_requests_same_answers_as_real_etcd() {
    let etcd = Etcd::start();
    let c = Cluster::start(1, &[]);
    let logbook = c.specs[0].client_url();
    let (foo, bar, baz) = (b64("foo"), b64("bar"), b64("baz"));
    let requests: Vec<(&str, String)> = vec![
        ("/v3/kv/put", format!(r#"{{"key":"{foo}","value":"{bar}"}}"#)),
        ("/v3/kv/range", format!(r#"{{"key":"{foo}"}}"#)),
        ("/v3/kv/put", format!(r#"{{"key":"{foo}","value":"{baz}","prev_kv":true}}"#)),
        ("/v3/kv/put", format!(r#"{{"key":"{}","value":"{bar}"}}"#, b64("fop"))),
        (
            "/v3/kv/range",
            format!(
                r#"{{"key":"{}","range_end":"{}","sort_order":"DESCEND","sort_target":"KEY"}}"#,
                b64("fo"),
                b64("fp")
            ),
        ),
        (
            "/v3/kv/range",
            format!(
                r#"{{"key":"{}","range_end":"{}","limit":1,"count_only":false}}"#,
                b64("fo"),
                b64("fp")
            ),
        ),
        (
            "/v3/kv/range",
            format!(r#"{{"key":"{}","range_end":"{}","count_only":true}}"#, b64("fo"), b64("fp")),
        ),
        ("/v3/kv/range", format!(r#"{{"key":"{foo}","revision":2}}"#)),
        (
            "/v3/kv/txn",
            format!(
                r#"{{"compare":[{{"key":"{foo}","result":"EQUAL","target":"VALUE","value":"{baz}"}}],"success":[{{"requestPut":{{"key":"{foo}","value":"{bar}"}}}},{{"request_range":{{"key":"{foo}"}}}}]}}"#
            ),
        ),
        (
            "/v3/kv/txn",
            format!(
                r#"{{"compare":[{{"key":"{foo}","result":"LESS","target":"VERSION","version":"1"}}],"failure":[{{"request_delete_range":{{"key":"{}","prev_kv":true}}}}]}}"#,
                b64("fop")
            ),
        ),
        (
            "/v3/kv/txn",
            format!(
                r#"{{"compare":[{{"key":"{}","target":"CREATE","create_revision":"0"}}]}}"#,
                b64("nope")
            ),
        ),
        ("/v3/kv/deleterange", format!(r#"{{"key":"{foo}","prev_kv":true}}"#)),
        ("/v3/kv/range", format!(r#"{{"key":"{foo}"}}"#)),
        ("/v3/kv/put", r#"{"key":""}"#.to_string()),
        ("/v3/kv/put", format!(r#"{{"key":"{foo}","ignore_value":true}}"#)),
        ("/v3/kv/range", format!(r#"{{"key":"{foo}","revision":"100"}}"#)),
        ("/v3/kv/compaction", r#"{"revision":"3"}"#.to_string()),
        ("/v3/kv/range", format!(r#"{{"key":"{foo}","revision":"2"}}"#)),
        ("/v3/kv/range", String::new()),
        ("/v3/maintenance/status", "{}".to_string()),
    ];
    for (path, body) in &requests {
        let want = gw(&etcd.client_url, path, body);
        let got = gw(&logbook, path, body);
        assert_eq!(
            got.status, want.status,
            "{path} {body}: logbook {} vs etcd {}",
            got.body, want.body
        );
        let (mut w, mut g) = (want.json(), got.json());
        normalise(&mut w);
        normalise(&mut g);
        // Status's etcd 3.6 fields, which etcd 3.4 lacks (tests/api_36.rs
        // compares them with etcd 3.6).
        if *path == "/v3/maintenance/status"
            && let Some(o) = g.as_object_mut()
        {
            for field in ["storageVersion", "dbSizeQuota", "downgradeInfo"] {
                o.remove(field);
            }
        }
        // etcd 3.4's gateway writes no "code" order guarantee; compare as values.
        assert_eq!(g, w, "{path} {body}");
    }
    // Bad input: same status and code (the parser's words differ).
    for body in ["not json", r#"{"key":123}"#, "[1]"] {
        let want = gw(&etcd.client_url, "/v3/kv/range", body);
        let got = gw(&logbook, "/v3/kv/range", body);
        assert_eq!(got.status, want.status, "{body}");
        assert_eq!(got.json()["code"], want.json()["code"], "{body}");
    }
    for path in ["/version", "/health"] {
        let (want, got) = (
            http_get(&format!("{}{path}", etcd.client_url)),
            http_get(&format!("{logbook}{path}")),
        );
        assert_eq!(got.status, want.status, "{path}");
        let (w, g) = (want.json(), got.json());
        let keys = |v: &Value| {
            v.as_object().unwrap().keys().filter(|k| *k != "reason").cloned().collect::<Vec<_>>()
        };
        assert_eq!(keys(&g), keys(&w), "{path}: {g} vs {w}");
    }
    assert_eq!(
        http_get(&format!("{logbook}/health")).json()["health"],
        http_get(&format!("{}/health", etcd.client_url)).json()["health"]
    );
    let _ = http("GET", &format!("{logbook}/metrics"), None);
}

/// The lease paths, with their /v3/kv/lease/ aliases, agree with etcdctl on
/// the same member: grants, TTLs, the lease list, keep-alive and revocation.
#[test]
fn lease_paths_agree_with_etcdctl() {
    let c = Cluster::start(1, &[]);
    let base = c.specs[0].client_url();

    // Grant through the gateway; etcdctl sees the lease and its TTL.
    let r = gw(&base, "/v3/lease/grant", r#"{"TTL":60}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let granted = r.json();
    assert_eq!(num(&granted["TTL"]), "60");
    let id: i64 = num(&granted["ID"]).parse().unwrap();
    let hex = format!("{id:x}");
    let ttl = json(&c.ctl_ok(0, &["lease", "timetolive", &hex, "-w", "json"]));
    assert_eq!(num(&ttl["id"]), id.to_string());
    assert_eq!(num(&ttl["granted-ttl"]), "60");

    // Grant through etcdctl; both lease lists and both TTL paths see it.
    let out = c.ctl_ok(0, &["lease", "grant", "90"]);
    let other_hex = out.split_whitespace().nth(1).expect("lease <id> granted");
    let other = i64::from_str_radix(other_hex, 16).unwrap();
    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let r = gw(&base, path, "{}");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let mut ids: Vec<String> =
            r.json()["leases"].as_array().unwrap().iter().map(|l| num(&l["ID"])).collect();
        ids.sort();
        let mut want = vec![id.to_string(), other.to_string()];
        want.sort();
        assert_eq!(ids, want, "{path}");
    }
    let via_ctl = json(&c.ctl_ok(0, &["lease", "timetolive", other_hex, "-w", "json"]));
    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let r = gw(&base, path, &format!(r#"{{"ID":"{other}"}}"#));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        assert_eq!(num(&v["ID"]), other.to_string(), "{path}");
        assert_eq!(num(&v["grantedTTL"]), "90", "{path}");
        let left: i64 = num(&v["TTL"]).parse().unwrap();
        assert!(left > 0 && left <= 90, "{path}: {v}");
        assert_eq!(num(&v["header"]["revision"]), num(&via_ctl["revision"]), "{path}");
    }

    // Keep-alive: one `{"result":...}` line per request, then the end, as
    // etcd's gateway answers; the lease is renewed to its granted TTL.
    let r = gw(&base, "/v3/lease/keepalive", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.body);
    let line = json(lines[0]);
    assert_eq!(num(&line["result"]["ID"]), id.to_string(), "{line}");
    assert_eq!(num(&line["result"]["TTL"]), "60", "{line}");
    // An unknown lease: TTL 0 (omitted), as etcd answers.
    let r = gw(&base, "/v3/lease/keepalive", r#"{"ID":"123"}"#);
    let line = json(r.body.lines().next().unwrap_or(""));
    assert!(line["result"].get("TTL").is_none(), "{line}");

    // Revoke through the gateway (either path); etcdctl sees it gone.
    let r = gw(&base, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw(&base, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{other}"}}"#));
    assert_eq!(r.status, 200, "{}", r.body);
    let list = c.ctl_ok(0, &["lease", "list"]);
    assert!(list.contains("found 0 leases"), "{list}");
    let ttl = json(&c.ctl_ok(0, &["lease", "timetolive", &hex, "-w", "json"]));
    assert_eq!(num(&ttl["ttl"]), "-1");
    // Revoking again: etcd's not-found error, 404.
    let r = gw(&base, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "etcdserver: requested lease not found");
    assert_eq!(r.json()["code"], 5);
    // A body that does not decode: etcd's gateway answers Unknown (2), 500.
    let r = gw(&base, "/v3/lease/keepalive", r#"{"ID":"x"}"#);
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["code"], 2);
}

/// Opens `POST url` with `body` and sends each line of the streamed answer
/// to `lines` as it comes, until the answer ends or `lines` is dropped
/// (which drops the connection and so ends a watch).
async fn stream_lines(url: String, body: String, lines: tokio::sync::mpsc::Sender<String>) {
    use http_body_util::BodyExt as _;
    let uri: hyper::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(uri.path())
        .header("host", &addr)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut pending = String::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some((line, rest)) = pending.split_once('\n') {
            if lines.send(line.to_string()).await.is_err() {
                return;
            }
            pending = rest.to_string();
        }
    }
}

/// The next streamed line, failing the test after `limit`.
async fn next_line(lines: &mut tokio::sync::mpsc::Receiver<String>, limit: Duration) -> Value {
    let line = tokio::time::timeout(limit, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("no streamed line within {limit:?}"))
        .expect("the stream ended early");
    json(&line)
}

/// A watch over the gateway sees the events of puts made through gRPC, one
/// `{"result":...}` line per response, as etcd's gateway streams them.
#[test]
fn gateway_watch_sees_puts_made_through_grpc() {
    let c = Cluster::start(1, &[]);
    let base = c.specs[0].client_url();
    let rt = common::runtime();
    rt.block_on(async {
        let (key, end) = (b64("w/"), b64("w0"));
        let body = format!(r#"{{"create_request":{{"key":"{key}","range_end":"{end}"}}}}"#);
        let (tx, mut lines) = tokio::sync::mpsc::channel(16);
        let reader = tokio::spawn(stream_lines(format!("{base}/v3/watch"), body, tx));
        let limit = Duration::from_secs(20);
        let created = next_line(&mut lines, limit).await;
        assert_eq!(created["result"]["created"], true, "{created}");

        // Puts through gRPC after the watch exists: one event batch each.
        let mut kv = common::connect(&base).await.unwrap();
        let r1 = common::put(&mut kv, "w/a", "1").await.unwrap();
        common::put(&mut kv, "elsewhere", "x").await.unwrap();
        let r2 = common::put(&mut kv, "w/b", "2").await.unwrap();
        for (key, value, rev) in [("w/a", "1", r1), ("w/b", "2", r2)] {
            let v = next_line(&mut lines, limit).await;
            assert_eq!(num(&v["result"]["header"]["revision"]), rev.to_string(), "{v}");
            let events = v["result"]["events"].as_array().unwrap_or_else(|| panic!("{v}"));
            assert_eq!(events.len(), 1, "{v}");
            assert!(events[0].get("type").is_none(), "a PUT is the default type: {v}");
            let kv = &events[0]["kv"];
            assert_eq!(kv_text(kv), format!("{} {} c{rev} m{rev} v1", b64(key), b64(value)));
        }
        // Dropping the reader closes the connection, which ends the watch.
        drop(lines);
        reader.abort();
    });
    // The member keeps serving after the watcher went away.
    assert_eq!(http_get(&format!("{base}/health")).status, 200);
}

/// etcd 3.5's /health: an active NOSPACE alarm makes a member unhealthy
/// ("ALARM NOSPACE", 503), and `?exclude=NOSPACE` ignores that alarm.
#[test]
fn health_reports_nospace_alarm_unless_excluded() {
    let c = Cluster::start(1, &["--quota-backend-bytes", "400000"]);
    let base = c.specs[0].client_url();
    let value = b64(&"x".repeat(4096));
    let mut refused = None;
    for i in 0..2000 {
        let r = gw(
            &base,
            "/v3/kv/put",
            &format!(r#"{{"key":"{}","value":"{value}"}}"#, b64(&format!("q/{i}"))),
        );
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the quota was never enforced");
    assert_eq!(refused.json()["error"], "etcdserver: mvcc: database space exceeded");

    let r = wait_status(&format!("{base}/health"), 503, Duration::from_secs(10));
    assert_eq!(r.json(), json!({"health": "false", "reason": "ALARM NOSPACE"}));
    let list = c.ctl_ok(0, &["alarm", "list"]);
    assert!(list.contains("alarm:NOSPACE"), "{list}");
    let r = http_get(&format!("{base}/health?exclude=NOSPACE"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"health": "true", "reason": ""}));
    // Excluding another alarm leaves this one counted.
    let r = http_get(&format!("{base}/health?exclude=CORRUPT"));
    assert_eq!(r.status, 503, "{}", r.body);

    // Disarmed, the member is healthy again.
    c.ctl_ok(0, &["alarm", "disarm"]);
    let r = wait_status(&format!("{base}/health"), 200, Duration::from_secs(10));
    assert_eq!(r.json(), json!({"health": "true", "reason": ""}));
}

/// The lease paths and the two streams answer a real etcd's gateway's JSON
/// for the same requests: the same fields, the same line framing.
#[test]
fn lease_and_stream_answers_match_real_etcd() {
    let etcd = Etcd::start();
    let c = Cluster::start(1, &[]);
    let logbook = c.specs[0].client_url();
    let both = [etcd.client_url.clone(), logbook.clone()];
    let answers: Vec<Vec<Value>> = both
        .iter()
        .map(|base| {
            let mut out = Vec::new();
            let grant = gw(base, "/v3/lease/grant", r#"{"TTL":60}"#);
            let id = num(&grant.json()["ID"]);
            out.push(grant.json());
            let by_id = format!(r#"{{"ID":"{id}"}}"#);
            let mut ttl = gw(base, "/v3/lease/timetolive", &by_id).json();
            // The remaining TTL depends on the clock; its presence does not.
            ttl["TTL"] = json!("*");
            out.push(ttl);
            out.push(gw(base, "/v3/kv/lease/leases", "{}").json());
            let keepalive = gw(base, "/v3/lease/keepalive", &by_id);
            assert!(keepalive.body.ends_with('\n'), "{base}: {:?}", keepalive.body);
            out.extend(keepalive.body.lines().map(json));
            out.push(gw(base, "/v3/lease/revoke", &by_id).json());
            let again = gw(base, "/v3/kv/lease/revoke", &by_id);
            out.push(json!({"status": again.status}));
            out.push(again.json());
            out.push(gw(base, "/v3/lease/timetolive", &by_id).json());

            // A watch and a progress request in one body; then a put.
            let rt = common::runtime();
            rt.block_on(async {
                let body = format!(
                    r#"{{"create_request":{{"key":"{}"}}}}{{"progress_request":{{}}}}"#,
                    b64("k")
                );
                let (tx, mut lines) = tokio::sync::mpsc::channel(16);
                let reader = tokio::spawn(stream_lines(format!("{base}/v3/watch"), body, tx));
                let limit = Duration::from_secs(20);
                out.push(next_line(&mut lines, limit).await);
                out.push(next_line(&mut lines, limit).await);
                let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("k"), b64("v"));
                let (b, p) = (base.clone(), put.clone());
                tokio::task::spawn_blocking(move || gw(&b, "/v3/kv/put", &p)).await.unwrap();
                out.push(next_line(&mut lines, limit).await);
                drop(lines);
                reader.abort();
            });
            out.iter_mut().for_each(normalise);
            out
        })
        .collect();
    assert_eq!(answers[1].len(), answers[0].len());
    for (got, want) in answers[1].iter().zip(&answers[0]) {
        assert_eq!(got, want, "logbook vs etcd");
    }
}
