//! Leases with the real etcdctl: grant, put with a lease, keep-alive,
//! time-to-live with keys, list, revoke, expiry deleting the keys, and lease
//! state surviving a restart and a leader change.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, json};

/// The lease ID etcdctl printed for `lease grant` ("lease 694d... granted with TTL(5s)").
fn granted_id(out: &str) -> String {
    let id =
        out.split_whitespace().nth(1).unwrap_or_else(|| panic!("unexpected grant output: {out}"));
    assert!(out.contains("granted with TTL("), "{out}");
    id.to_string()
}

#[test]
fn lease_lifecycle_with_etcdctl() {
    let c = Cluster::start(1, &[]);
    let id = granted_id(&c.ctl_ok(0, &["lease", "grant", "60"]));
    c.ctl_ok(0, &["put", "/l/a", "1", &format!("--lease={id}")]);
    c.ctl_ok(0, &["put", "/l/b", "2", &format!("--lease={id}")]);
    c.ctl_ok(0, &["put", "/l/c", "3"]);
    let got = json(&c.ctl_ok(0, &["get", "/l/a", "-w", "json"]));
    // etcdctl prints IDs zero-padded to 16 hex digits: compare numbers.
    assert_eq!(got["kvs"][0]["lease"].as_i64().unwrap(), i64::from_str_radix(&id, 16).unwrap());

    let ttl = c.ctl_ok(0, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains(&format!("lease {id} granted with TTL(60s)")), "{ttl}");
    assert!(ttl.contains("attached keys([/l/a /l/b])"), "{ttl}");
    let list = c.ctl_ok(0, &["lease", "list"]);
    assert!(list.contains("found 1 leases") && list.contains(&id), "{list}");
    let ka = c.ctl_ok(0, &["lease", "keep-alive", "--once", &id]);
    assert!(ka.contains(&format!("lease {id} keepalived with TTL(60)")), "{ka}");

    // A put naming a lease that does not exist is refused.
    let out = c.ctl(0, &["put", "/l/x", "1", "--lease=1234abcd"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("requested lease not found"));

    // Revoke deletes every attached key, in one revision.
    let before =
        json(&c.ctl_ok(0, &["get", "/l/c", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    assert!(c.ctl_ok(0, &["lease", "revoke", &id]).contains("revoked"));
    assert_eq!(c.ctl_ok(0, &["get", "/l/", "--prefix", "--keys-only"]), "/l/c\n\n");
    let after =
        json(&c.ctl_ok(0, &["get", "/l/c", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    assert_eq!(after, before + 1);
    let ttl = c.ctl_ok(0, &["lease", "timetolive", &id]);
    assert!(ttl.contains("already expired"), "{ttl}");
    let out = c.ctl(0, &["lease", "revoke", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("requested lease not found"));

    // Expiry: a short lease takes its key with it.
    let short = granted_id(&c.ctl_ok(0, &["lease", "grant", "2"]));
    c.ctl_ok(0, &["put", "/l/short", "x", &format!("--lease={short}")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c.ctl_ok(0, &["get", "/l/short", "--keys-only"]).is_empty() {
        assert!(Instant::now() < deadline, "the expired lease's key is still there");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.ctl_ok(0, &["lease", "timetolive", &short]).contains("already expired"));
}

#[test]
fn leases_survive_restart_and_leader_change() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let follower = (leader + 1) % 3;
    // Granted and kept alive through a follower (which asks the leader).
    let id = granted_id(&c.ctl_ok(follower, &["lease", "grant", "30"]));
    c.ctl_ok(follower, &["put", "/s/k", "v", &format!("--lease={id}")]);
    let ka = c.ctl_ok(follower, &["lease", "keep-alive", "--once", &id]);
    assert!(ka.contains("keepalived with TTL(30)"), "{ka}");
    let ttl = c.ctl_ok(follower, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([/s/k])"), "{ttl}");

    // The leader dies: the lease lives on under the new leader.
    c.kill(leader);
    let new_leader = c.wait_leader(Duration::from_secs(10));
    assert_ne!(new_leader, leader);
    let ttl = c.ctl_ok(new_leader, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([/s/k])"), "{ttl}");
    let ka = c.ctl_ok(follower, &["lease", "keep-alive", "--once", &id]);
    assert!(ka.contains("keepalived with TTL(30)"), "{ka}");

    // And through a full restart.
    c.spawn(leader);
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(30));
    }
    for i in 0..3 {
        assert!(c.stop(i));
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(30));
    }
    c.wait_leader(Duration::from_secs(10));
    let list = c.ctl_ok(0, &["lease", "list"]);
    assert!(list.contains(&id), "{list}");
    let ttl = c.ctl_ok(1, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([/s/k])"), "{ttl}");
    assert!(c.ctl_ok(2, &["lease", "revoke", &id]).contains("revoked"));
    assert_eq!(c.ctl_ok(0, &["get", "/s/k"]), "");
}
