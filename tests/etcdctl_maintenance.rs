//! Maintenance with the real etcdctl on a 3-member cluster: HashKV equal on
//! every member at the same revision, defragmentation online, leader
//! transfer, and status reporting the new leader.

mod common;

use std::time::Duration;

use common::{Cluster, etcdctl, json};

#[test]
fn hashkv_defrag_and_move_leader() {
    let c = Cluster::start(3, &[]);
    for i in 0..60 {
        c.ctl_ok(i % 3, &["put", &format!("h/{}", i % 17), &format!("v{i}")]);
    }
    c.ctl_ok(0, &["del", "h/3"]);
    let rev =
        json(&c.ctl_ok(1, &["get", "h/1", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    c.ctl_ok(2, &["compaction", &(rev - 10).to_string()]);

    // Every member, once caught up, hashes the keyspace at `rev` alike.
    let out = etcdctl(
        &c.endpoints(),
        &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hashes = json(&String::from_utf8(out.stdout).unwrap());
    let hashes: Vec<u64> =
        hashes.as_array().unwrap().iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.iter().all(|h| *h == hashes[0] && *h != 0), "members disagree: {hashes:?}");
    // A different revision hashes differently.
    let out = etcdctl(
        &c.specs[0].endpoint(),
        &["endpoint", "hashkv", &format!("--rev={}", rev - 5), "-w", "json"],
        None,
    );
    let other =
        json(&String::from_utf8(out.stdout).unwrap())[0]["HashKV"]["hash"].as_u64().unwrap();
    assert_ne!(other, hashes[0]);

    // Defragmentation answers on every member, and the data is intact after.
    let out = etcdctl(&c.endpoints(), &["defrag"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("Finished defragmenting etcd member").count(), 3, "{text}");
    assert_eq!(c.ctl_ok(2, &["get", "h/5", "--print-value-only"]), "v56\n");

    // Endpoints given as URLs: etcdctl 3.4 dials each one for these commands
    // and sends the URL as the HTTP/2 :authority, which h2 used to reset
    // (PROTOCOL_ERROR) where etcd answers.
    let urls: Vec<String> = c.specs.iter().map(|s| s.client_url()).collect();
    let urls = urls.join(",");
    for args in [
        &["endpoint", "status", "-w", "json"][..],
        &["endpoint", "hashkv", "-w", "json"],
        &["defrag"],
    ] {
        let out = etcdctl(&urls, args, None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "etcdctl {args:?} with URL endpoints: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers = match args[0] {
            "defrag" => stdout.matches("Finished defragmenting etcd member").count(),
            _ => json(&stdout).as_array().map_or(0, Vec::len),
        };
        assert_eq!(answers, 3, "etcdctl {args:?}: {stdout}");
    }

    // Move leadership to a chosen follower.
    let leader = c.wait_leader(Duration::from_secs(10));
    let target = (leader + 1) % 3;
    let status = json(
        &String::from_utf8(
            etcdctl(&c.specs[target].endpoint(), &["endpoint", "status", "-w", "json"], None)
                .stdout,
        )
        .unwrap(),
    );
    let target_id = status[0]["Status"]["header"]["member_id"].as_u64().unwrap();
    let out = c.ctl_ok(leader, &["move-leader", &format!("{target_id:x}")]);
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(c.wait_leader(Duration::from_secs(10)), target);
    // Asking a follower to move leadership is refused, as etcd refuses it.
    let out = c.ctl(leader, &["move-leader", &format!("{target_id:x}")]);
    assert!(!out.status.success());
}

#[test]
fn nospace_alarm_refuses_writes_until_disarmed() {
    // A tiny quota: the store outgrows it after a few hundred kilobytes.
    let c = Cluster::start(1, &["--quota-backend-bytes", "400000"]);
    let value = "x".repeat(4096);
    let mut refused = None;
    for i in 0..2000 {
        let out = c.ctl(0, &["put", &format!("q/{i}"), &value]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused = refused.expect("the quota was never enforced");
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");

    // The alarm is raised, listed, and shown by endpoint status.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = c.ctl_ok(0, &["alarm", "list"]);
        if list.contains("alarm:NOSPACE") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no NOSPACE alarm listed: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = c.ctl_ok(0, &["endpoint", "status", "-w", "table"]);
    assert!(status.contains("alarm:NOSPACE"), "{status}");
    // Writes are refused, reads and deletes still served.
    let out = c.ctl(0, &["put", "q/more", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("database space exceeded"));
    assert_eq!(c.ctl_ok(0, &["get", "q/0", "--print-value-only"]), format!("{value}\n"));
    let deleted: usize = c.ctl_ok(0, &["del", "q/", "--prefix"]).trim().parse().unwrap();
    assert!(deleted > 10);

    // Free space, disarm: writes work again.
    let rev =
        json(&c.ctl_ok(0, &["get", "q/0", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    c.ctl_ok(0, &["compaction", &rev.to_string(), "--physical"]);
    c.ctl_ok(0, &["defrag"]);
    let disarm = c.ctl_ok(0, &["alarm", "disarm"]);
    assert!(disarm.contains("alarm:NOSPACE"), "{disarm}");
    assert_eq!(c.ctl_ok(0, &["alarm", "list"]), "");
    assert_eq!(c.ctl_ok(0, &["put", "q/after", "ok"]).trim(), "OK");
}
