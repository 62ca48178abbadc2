//! Authentication and roles with the real etcdctl: user and role management,
//! `auth enable`, a user confined to a prefix, tokens across members, denied
//! requests changing nothing, and auth state surviving a restart. Also the
//! JSON gateway's `/v3/auth/*` paths with a bearer token.

mod common;

use common::{Cluster, gw, json};

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sets up etcd's usual layout: root (with the root role, created by
/// `auth enable` itself as etcdctl does), and alice limited to
/// `/registry/pods/` read-write plus read on `/registry/config`.
fn set_up(c: &Cluster) {
    assert!(c.ctl_ok(0, &["user", "add", "root:rootpw"]).contains("User root created"));
    assert!(c.ctl_ok(0, &["user", "add", "alice:alicepw"]).contains("User alice created"));
    assert!(c.ctl_ok(0, &["role", "add", "pods"]).contains("Role pods created"));
    let out = c.ctl_ok(
        0,
        &["role", "grant-permission", "--prefix=true", "pods", "readwrite", "/registry/pods/"],
    );
    assert!(out.contains("Role pods updated"), "{out}");
    c.ctl_ok(0, &["role", "grant-permission", "pods", "read", "/registry/config"]);
    assert!(
        c.ctl_ok(0, &["user", "grant-role", "alice", "pods"])
            .contains("Role pods is granted to user alice")
    );
    c.ctl_ok(0, &["put", "/registry/secrets/db", "s3cret"]);
    c.ctl_ok(0, &["put", "/registry/config", "v1"]);
    // etcdctl creates the root role and grants it when the server says
    // "root user does not have root role": that error must be etcd's.
    assert!(c.ctl_ok(0, &["auth", "enable"]).contains("Authentication Enabled"));
}

#[test]
fn a_user_confined_to_a_prefix() {
    let c = Cluster::start(1, &[]);
    set_up(&c);

    // The member still reports itself healthy: its probe read has no user,
    // which etcd's /health counts as working.
    let health = common::http_get(&format!("{}/health", c.specs[0].client_url()));
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["health"], "true", "{}", health.body);

    // Without credentials nothing is served.
    let out = c.ctl(0, &["get", "/registry/pods/a"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("etcdserver: user name is empty"), "{}", stderr(&out));
    let out = c.ctl(0, &["--user=alice:wrong", "get", "/registry/pods/a"]);
    assert!(stderr(&out).contains("authentication failed, invalid user ID or password"));

    // Inside her prefix alice reads and writes.
    c.ctl_ok(0, &[ALICE, "put", "/registry/pods/a", "1"]);
    c.ctl_ok(0, &[ALICE, "put", "/registry/pods/b", "2"]);
    let got = c.ctl_ok(0, &[ALICE, "get", "/registry/pods/", "--prefix", "--keys-only"]);
    assert_eq!(
        got.split_whitespace().collect::<Vec<_>>(),
        ["/registry/pods/a", "/registry/pods/b"]
    );
    assert_eq!(c.ctl_ok(0, &[ALICE, "get", "/registry/config", "--print-value-only"]).trim(), "v1");
    c.ctl_ok(0, &[ALICE, "del", "/registry/pods/b"]);

    // Outside it she can neither read nor write, and nothing changes.
    for args in [
        vec![ALICE, "get", "/registry/secrets/db"],
        vec![ALICE, "get", "/registry/", "--prefix"],
        vec![ALICE, "put", "/registry/secrets/db", "stolen"],
        vec![ALICE, "put", "/registry/config", "v2"],
        vec![ALICE, "del", "/registry/secrets/db"],
        vec![ALICE, "del", "/registry/", "--prefix"],
        vec![ALICE, "txn"],
        vec![ALICE, "compaction", "1", "--physical"],
    ] {
        let out = if args[1] == "txn" {
            common::etcdctl(
                &c.specs[0].endpoint(),
                &[ALICE, "txn"],
                Some("\nput /registry/pods/c 1\nput /registry/secrets/db x\n\n\n"),
            )
        } else {
            c.ctl(0, &args)
        };
        if args[1] == "compaction" {
            // etcd lets any user compact; only the keyspace is guarded.
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            continue;
        }
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains("etcdserver: permission denied"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        c.ctl_ok(0, &[ROOT, "get", "/registry/secrets/db", "--print-value-only"]).trim(),
        "s3cret"
    );
    assert_eq!(c.ctl_ok(0, &[ROOT, "get", "/registry/config", "--print-value-only"]).trim(), "v1");
    // The denied transaction wrote nothing, not even its permitted half.
    assert_eq!(c.ctl_ok(0, &[ROOT, "get", "/registry/pods/c"]), "");

    // Watches outside the prefix are refused (etcdctl ends the watch).
    let out = std::process::Command::new("timeout")
        .args(["20", "etcdctl", &format!("--endpoints={}", c.specs[0].endpoint()), ALICE])
        .args(["watch", "/registry/secrets/", "--prefix"])
        .env("ETCDCTL_API", "3")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));

    // Admin-only calls are refused to alice.
    for args in [
        vec![ALICE, "user", "list"],
        vec![ALICE, "role", "add", "x"],
        vec![ALICE, "auth", "disable"],
        vec![ALICE, "defrag"],
        vec![ALICE, "member", "add", "m2", "--peer-urls=http://127.0.0.1:1"],
    ] {
        let out = c.ctl(0, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains("permission denied"), "{args:?}: {}", stderr(&out));
    }
    // She may look at herself and at her own role, as etcd allows.
    assert!(c.ctl_ok(0, &[ALICE, "user", "get", "alice"]).contains("Roles: pods"));
    let role = c.ctl_ok(0, &[ALICE, "role", "get", "pods"]);
    assert!(role.contains("[/registry/pods/, /registry/pods0) (prefix /registry/pods/)"), "{role}");

    // Root sees and changes everything.
    let users = c.ctl_ok(0, &[ROOT, "user", "list"]);
    assert_eq!(users.split_whitespace().collect::<Vec<_>>(), ["alice", "root"]);
    let roles = c.ctl_ok(0, &[ROOT, "role", "list"]);
    assert_eq!(roles.split_whitespace().collect::<Vec<_>>(), ["pods", "root"]);
    // root cannot be deleted nor lose its role while auth is on.
    let out = c.ctl(0, &[ROOT, "user", "delete", "root"]);
    assert!(stderr(&out).contains("etcdserver: invalid auth management"), "{}", stderr(&out));
    let out = c.ctl(0, &[ROOT, "user", "revoke-role", "root", "root"]);
    assert!(stderr(&out).contains("etcdserver: invalid auth management"), "{}", stderr(&out));

    // Revoking the permission takes effect at once.
    c.ctl_ok(0, &[ROOT, "role", "revoke-permission", "pods", "/registry/pods/", "--prefix=true"]);
    let out = c.ctl(0, &[ALICE, "put", "/registry/pods/a", "2"]);
    assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));
    // A changed password invalidates the old one.
    let out = common::etcdctl(
        &c.specs[0].endpoint(),
        &[ROOT, "user", "passwd", "alice", "--interactive=false"],
        Some("newpw\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        c.ctl_ok(0, &["--user=alice:newpw", "get", "/registry/config", "--print-value-only"])
            .trim(),
        "v1"
    );
    let out = c.ctl(0, &[ALICE, "get", "/registry/config"]);
    assert!(stderr(&out).contains("authentication failed"), "{}", stderr(&out));

    // Disabled again, everyone may do everything.
    assert!(c.ctl_ok(0, &[ROOT, "auth", "disable"]).contains("Authentication Disabled"));
    c.ctl_ok(0, &["put", "/registry/secrets/db", "plain"]);
}

#[test]
fn management_errors_are_etcds() {
    let c = Cluster::start(1, &[]);
    c.ctl_ok(0, &["user", "add", "bob:pw"]);
    let cases: [(&[&str], &str); 6] = [
        (&["user", "add", "bob:pw"], "etcdserver: user name already exists"),
        (&["user", "delete", "nobody"], "etcdserver: user name not found"),
        (&["role", "delete", "nothing"], "etcdserver: role name not found"),
        (&["user", "grant-role", "bob", "nothing"], "etcdserver: role name not found"),
        (&["user", "revoke-role", "bob", "root"], "etcdserver: role is not granted to the user"),
        (&["auth", "enable"], "etcdserver: root user does not exist"),
    ];
    for (args, want) in cases {
        let out = c.ctl(0, args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(text.contains(want), "{args:?}: {text}");
    }
    c.ctl_ok(0, &["role", "add", "r"]);
    let out = c.ctl(0, &["role", "add", "r"]);
    assert!(stderr(&out).contains("etcdserver: role name already exists"));
    let out = c.ctl(0, &["role", "revoke-permission", "r", "/k"]);
    assert!(stderr(&out).contains("etcdserver: permission is not granted to the role"));
    // Authenticating while auth is off (etcdctl ignores this error, so ask
    // the gateway), and the status.
    let base = c.specs[0].client_url();
    let resp = gw(&base, "/v3/auth/authenticate", r#"{"name":"bob","password":"pw"}"#);
    assert!(resp.body.contains("etcdserver: authentication is not enabled"), "{}", resp.body);
    let st = gw(&base, "/v3/auth/status", "{}");
    assert_eq!(st.json()["enabled"], serde_json::Value::Null, "{}", st.body);
    // A role deleted is revoked from its users.
    c.ctl_ok(0, &["user", "grant-role", "bob", "r"]);
    c.ctl_ok(0, &["role", "delete", "r"]);
    assert!(!c.ctl_ok(0, &["user", "get", "bob"]).contains("Roles: r"));
}

#[test]
fn tokens_work_on_every_member_and_auth_survives_restart() {
    // A cheaper bcrypt cost keeps password checks quick on a loaded
    // machine (etcd's tests do the same); the default cost is used above.
    let mut c = Cluster::start(3, &["--bcrypt-cost=4"]);
    set_up(&c);
    // A token from member 0 is honoured by member 2 (the token is minted
    // through Raft), and permissions are enforced there too.
    let base0 = c.specs[0].client_url();
    let base2 = c.specs[2].client_url();
    let resp = gw(&base0, "/v3/auth/authenticate", r#"{"name":"alice","password":"alicepw"}"#);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let token = resp.json()["token"].as_str().unwrap().to_string();
    let put = |base: &str, key: &str| {
        common::http_with_headers(
            "POST",
            &format!("{base}/v3/kv/put"),
            Some(format!(r#"{{"key":"{}","value":"dg=="}}"#, common::b64(key)).as_bytes()),
            &[("Authorization", token.as_str())],
        )
    };
    let ok = put(&base2, "/registry/pods/from-gw");
    assert_eq!(ok.status, 200, "{}", ok.body);
    let denied = put(&base2, "/registry/secrets/from-gw");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(denied.body.contains("etcdserver: permission denied"), "{}", denied.body);
    // grpc-gateway's Grpc-Metadata-<name> headers reach the server as
    // metadata: the token under etcd's own metadata name works too.
    let by_metadata = common::http_with_headers(
        "POST",
        &format!("{base2}/v3/kv/range"),
        Some(format!(r#"{{"key":"{}"}}"#, common::b64("/registry/pods/from-gw")).as_bytes()),
        &[("Grpc-Metadata-Token", token.as_str())],
    );
    assert_eq!(by_metadata.status, 200, "{}", by_metadata.body);
    assert_eq!(by_metadata.json()["count"], "1", "{}", by_metadata.body);
    // Without a token the gateway's answer is etcd's too.
    let resp = gw(
        &base2,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, common::b64("/registry/pods/from-gw")),
    );
    assert!(resp.body.contains("etcdserver: user name is empty"), "{}", resp.body);
    let bad = common::http_with_headers(
        "POST",
        &format!("{base2}/v3/kv/range"),
        Some(br#"{"key":"YQ=="}"#),
        &[("Authorization", "nonsense.7")],
    );
    assert!(bad.body.contains("etcdserver: invalid auth token"), "{}", bad.body);
    // The gateway's auth management paths.
    let st = gw(&base2, "/v3/auth/status", "{}");
    assert_eq!(st.json()["enabled"], true, "{}", st.body);

    // Every member restarts: users, roles and the flag are still there.
    for i in 0..3 {
        c.stop(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i, std::time::Duration::from_secs(30));
    }
    for i in 0..3 {
        let out = c.ctl(i, &["get", "/registry/pods/from-gw"]);
        assert!(stderr(&out).contains("user name is empty"), "{}", stderr(&out));
        let got = c.ctl_ok(i, &[ALICE, "get", "/registry/pods/from-gw", "--print-value-only"]);
        assert_eq!(got.trim(), "v");
        let out = c.ctl(i, &[ALICE, "get", "/registry/secrets/db"]);
        assert!(stderr(&out).contains("permission denied"), "{}", stderr(&out));
    }
    let st = gw(&c.specs[1].client_url(), "/v3/auth/status", "{}");
    assert_eq!(st.json()["enabled"], true, "{}", st.body);
    let _ = json;
}
