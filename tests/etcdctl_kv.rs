//! Every KV command of the real etcdctl against a 1-member and a 3-member
//! Logbook cluster, checked the way an operator reads the output.

mod common;

use common::{Cluster, b64, etcdctl, json};

/// The etcdctl KV tour, run against member `i` of `c`; `others` are members
/// that must see the same data.
fn kv_tour(c: &Cluster, i: usize, others: &[usize]) {
    // put / get, with JSON revision bookkeeping.
    assert_eq!(c.ctl_ok(i, &["put", "/app/a", "1"]).trim(), "OK");
    let r1 = json(&c.ctl_ok(i, &["get", "/app/a", "-w", "json"]));
    let rev_a = r1["kvs"][0]["mod_revision"].as_i64().unwrap();
    assert_eq!(r1["kvs"][0]["key"], b64("/app/a"));
    assert_eq!(r1["kvs"][0]["value"], b64("1"));
    assert_eq!(r1["kvs"][0]["version"], 1);
    assert_eq!(r1["kvs"][0]["create_revision"].as_i64().unwrap(), rev_a);
    assert_eq!(r1["header"]["revision"].as_i64().unwrap(), rev_a);
    assert!(r1["header"]["cluster_id"].as_u64().unwrap() != 0);

    c.ctl_ok(i, &["put", "/app/b", "2"]);
    c.ctl_ok(i, &["put", "/app/c", "3"]);
    c.ctl_ok(i, &["put", "/other", "x"]);
    // Overwrite: version 2, create revision unchanged; --prev-kv shows the old value.
    let out = c.ctl_ok(i, &["put", "/app/a", "one", "--prev-kv"]);
    assert_eq!(out, "OK\n/app/a\n1\n");
    let r = json(&c.ctl_ok(i, &["get", "/app/a", "-w", "json"]));
    assert_eq!(r["kvs"][0]["version"], 2);
    assert_eq!(r["kvs"][0]["create_revision"].as_i64().unwrap(), rev_a);
    let rev_now = r["header"]["revision"].as_i64().unwrap();
    assert_eq!(rev_now, rev_a + 4, "one revision per write");

    // get flags: prefix, range, limit, keys-only, print-value-only, sort, from-key, rev.
    assert_eq!(c.ctl_ok(i, &["get", "/app/", "--prefix"]), "/app/a\none\n/app/b\n2\n/app/c\n3\n");
    assert_eq!(c.ctl_ok(i, &["get", "/app/a", "/app/c"]), "/app/a\none\n/app/b\n2\n");
    let limited = json(&c.ctl_ok(i, &["get", "/app/", "--prefix", "--limit=2", "-w", "json"]));
    assert_eq!(limited["kvs"].as_array().unwrap().len(), 2);
    assert_eq!(limited["more"], true);
    assert_eq!(limited["count"], 3);
    assert_eq!(
        c.ctl_ok(i, &["get", "/app/", "--prefix", "--keys-only"]),
        "/app/a\n\n/app/b\n\n/app/c\n\n"
    );
    assert_eq!(c.ctl_ok(i, &["get", "/app/b", "--print-value-only"]), "2\n");
    assert_eq!(
        c.ctl_ok(
            i,
            &["get", "/app/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--keys-only"]
        ),
        "/app/a\n\n/app/c\n\n/app/b\n\n"
    );
    assert_eq!(
        c.ctl_ok(
            i,
            &[
                "get",
                "/app/",
                "--prefix",
                "--sort-by=VALUE",
                "--order=ASCEND",
                "--print-value-only"
            ]
        ),
        "2\n3\none\n"
    );
    assert_eq!(
        c.ctl_ok(i, &["get", "/app/c", "--from-key", "--keys-only"]),
        "/app/c\n\n/other\n\n"
    );
    assert_eq!(
        c.ctl_ok(i, &["get", "/app/a", &format!("--rev={rev_a}"), "--print-value-only"]),
        "1\n"
    );
    assert_eq!(c.ctl_ok(i, &["get", "/app/a", "--consistency=s", "--print-value-only"]), "one\n");

    // del: single, --prev-kv, --prefix.
    assert_eq!(c.ctl_ok(i, &["del", "/app/b", "--prev-kv"]), "1\n/app/b\n2\n");
    assert_eq!(c.ctl_ok(i, &["del", "/app/b"]), "0\n");
    assert_eq!(c.ctl_ok(i, &["get", "/app/b"]), "");

    // txn from stdin (etcdctl's interactive format): success branch...
    let txn_ok = "value(\"/app/a\") = \"one\"\n\nput /app/a two\nget /app/c\n\nput /app/a fail\n\n";
    let out = etcdctl(&c.specs[i].endpoint(), &["txn"], Some(txn_ok));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SUCCESS\n\nOK\n\n/app/c\n3\n");
    // ...and failure branch, with a version compare.
    let txn_fail = "version(\"/app/a\") = \"1\"\n\nput /app/a never\n\nget /app/a\n\n";
    let out = etcdctl(&c.specs[i].endpoint(), &["txn"], Some(txn_fail));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "FAILURE\n\n/app/a\ntwo\n");
    // A txn writing one key twice is refused with etcd's message.
    let dup = "\nput /d 1\nput /d 2\n\n\n";
    let out = etcdctl(&c.specs[i].endpoint(), &["txn"], Some(dup));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate key given in txn request"));

    // Errors as etcd words them; the server keeps serving.
    let out = c.ctl(i, &["put", "", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("etcdserver: key is not provided"));
    let out = c.ctl(i, &["get", "/app/a", "--rev=100000"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("required revision is a future revision")
    );

    // compaction: older revisions are gone, newer ones readable.
    let rev = json(&c.ctl_ok(i, &["get", "/app/a", "-w", "json"]))["header"]["revision"]
        .as_i64()
        .unwrap();
    assert_eq!(
        c.ctl_ok(i, &["compaction", &rev.to_string()]).trim(),
        format!("compacted revision {rev}")
    );
    let out = c.ctl(i, &["get", "/app/a", &format!("--rev={rev_a}")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));
    assert_eq!(
        c.ctl_ok(i, &["get", "/app/a", &format!("--rev={rev}"), "--print-value-only"]),
        "two\n"
    );
    let out = c.ctl(i, &["compaction", &rev.to_string(), "--physical"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("required revision has been compacted"));

    // Every other member sees the same keyspace (linearizable reads).
    let expected = c.ctl_ok(i, &["get", "", "--from-key"]);
    for &o in others {
        assert_eq!(c.ctl_ok(o, &["get", "", "--from-key"]), expected, "member {o} disagrees");
    }
}

fn status_health_members(c: &Cluster) {
    let n = c.specs.len();
    let all = c.endpoints();
    let out = etcdctl(&all, &["endpoint", "health"], None);
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("is healthy").count(), n, "{text}");

    let status = json(
        &String::from_utf8(etcdctl(&all, &["endpoint", "status", "-w", "json"], None).stdout)
            .unwrap(),
    );
    let status = status.as_array().unwrap();
    assert_eq!(status.len(), n);
    let leaders: Vec<u64> =
        status.iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert!(
        leaders.iter().all(|l| *l == leaders[0] && *l != 0),
        "members disagree on the leader: {leaders:?}"
    );
    for s in status {
        assert_eq!(s["Status"]["version"], "3.5.13");
        assert!(s["Status"]["dbSize"].as_i64().unwrap() > 0);
        assert!(
            s["Status"]["raftIndex"].as_u64().unwrap()
                >= s["Status"]["raftAppliedIndex"].as_u64().unwrap() - 1
        );
    }

    let table = String::from_utf8(etcdctl(&all, &["member", "list"], None).stdout).unwrap();
    assert_eq!(table.lines().count(), n, "{table}");
    for spec in &c.specs {
        let line = table
            .lines()
            .find(|l| l.contains(&format!(", {}, ", spec.name)))
            .unwrap_or_else(|| panic!("{} missing: {table}", spec.name));
        assert!(line.contains("started"), "{line}");
        assert!(line.contains(&spec.peer_url()), "{line}");
        assert!(line.contains(&spec.client_url()), "{line}");
    }
}

#[test]
fn etcdctl_kv_against_one_member() {
    let c = Cluster::start(1, &[]);
    kv_tour(&c, 0, &[]);
    status_health_members(&c);
}

#[test]
fn etcdctl_kv_against_three_members() {
    let c = Cluster::start(3, &[]);
    c.wait_leader(std::time::Duration::from_secs(10));
    // Writes through a follower go to the leader and back.
    let leader = c.leader().unwrap();
    let follower = (leader + 1) % 3;
    kv_tour(&c, follower, &[leader, (leader + 2) % 3]);
    status_health_members(&c);
}

#[test]
fn limits_and_bad_requests_get_etcds_errors() {
    use logbook_api::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op};
    let c = Cluster::start(1, &["--max-txn-ops", "4"]);
    let url = c.specs[0].client_url();
    common::runtime().block_on(async {
        let mut kv = common::connect(&url).await.unwrap();
        // Over --max-request-bytes (1.5 MiB) but within the gRPC envelope.
        let big = PutRequest {
            key: "big".into(),
            value: vec![b'x'; 1_700_000].into(),
            ..Default::default()
        };
        let err = kv.put(big).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: request is too large");
        // More operations than --max-txn-ops.
        let ops: Vec<RequestOp> = (0..5)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("t{i}").into(),
                    ..Default::default()
                })),
            })
            .collect();
        let err = kv
            .txn(TxnRequest { compare: vec![], success: ops, failure: vec![] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: too many operations in txn request");
        // Nothing was stored, and the member still serves.
        let r = kv
            .range(logbook_api::etcdserverpb::RangeRequest {
                key: "big".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.count, 0);
        assert_eq!(common::put(&mut kv, "small", "ok").await.unwrap(), 2);
    });
}
