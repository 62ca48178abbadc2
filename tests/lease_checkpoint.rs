//! Lease checkpoints (`--feature-gates=LeaseCheckpoint=true`, etcd's
//! `--experimental-enable-lease-checkpoint`): the leader records long
//! leases' remaining TTLs through Raft every five minutes (etcd's fixed
//! interval), so after a leader change `etcdctl lease timetolive` shows the
//! checkpointed remaining TTL rather than the full TTL again. Compared with a
//! real etcd 3.6 given the same steps; the two run side by side, since each
//! has to wait past the first checkpoint (a little over five minutes).

mod common;

use std::time::{Duration, Instant};

use common::etcd_cluster::EtcdCluster;
use common::{Cluster, etcdctl};

const ETCD_36: &str = "3.6.16";
const TTL: i64 = 1000;
const GATES: &str = "--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true";
/// Past etcd's checkpoint interval (300 s) and its next check.
const WAIT: Duration = Duration::from_secs(315);

/// The remaining TTL `etcdctl lease timetolive` prints.
fn remaining_ttl(endpoint: &str, lease: &str) -> i64 {
    let out = etcdctl(endpoint, &["lease", "timetolive", lease], None);
    let text = String::from_utf8_lossy(&out.stdout);
    // "lease 694d7a5a4e0c3b04 granted with TTL(1000s), remaining(700s)"
    let at = text.find("remaining(").unwrap_or_else(|| panic!("timetolive printed {text}"));
    text[at + "remaining(".len()..].split('s').next().unwrap().parse().unwrap()
}

fn grant(endpoint: &str) -> String {
    let out = etcdctl(endpoint, &["lease", "grant", &TTL.to_string()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    // "lease 694d7a5a4e0c3b04 granted with TTL(1000s)"
    text.split_whitespace().nth(1).unwrap_or_else(|| panic!("lease grant printed {text}")).into()
}

/// Member ID (hex) and client endpoint of every member, and which leads.
fn members(endpoints: &[String]) -> (Vec<(String, String)>, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ids = Vec::new();
        let mut leader = None;
        for (i, ep) in endpoints.iter().enumerate() {
            let out = etcdctl(ep, &["endpoint", "status", "-w", "json"], None);
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else { break };
            let s = &v[0]["Status"];
            let id = s["header"]["member_id"].as_u64().unwrap_or(0);
            if id != 0 && s["leader"].as_u64() == Some(id) {
                leader = Some(i);
            }
            ids.push((format!("{id:x}"), ep.clone()));
        }
        if let (Some(l), true) = (leader, ids.len() == endpoints.len()) {
            return (ids, l);
        }
        assert!(Instant::now() < deadline, "no leader within 30s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Grants a long lease, waits past the first checkpoint, moves leadership,
/// and returns the remaining TTL the new leader reports.
fn after_leader_change(endpoints: &[String]) -> i64 {
    let (_, leader) = members(endpoints);
    let lease = grant(&endpoints[leader]);
    std::thread::sleep(WAIT);
    let (ids, leader) = members(endpoints);
    let target = (leader + 1) % ids.len();
    let out = etcdctl(&endpoints[leader], &["move-leader", &ids[target].0], None);
    assert!(out.status.success(), "move-leader: {}", String::from_utf8_lossy(&out.stderr));
    let (_, now_leading) = members(endpoints);
    assert_eq!(now_leading, target);
    remaining_ttl(&endpoints[target], &lease)
}

#[test]
fn a_new_leader_keeps_the_checkpointed_remaining_ttl_as_etcd_does() {
    let etcd = EtcdCluster::start(ETCD_36, 3, &[GATES]);
    let cluster = Cluster::start(3, &[GATES]);
    let ours_endpoints: Vec<String> = cluster.specs.iter().map(|s| s.endpoint()).collect();
    let (theirs, ours) = std::thread::scope(|s| {
        let theirs = s.spawn(|| after_leader_change(&etcd.endpoints()));
        let ours = s.spawn(|| after_leader_change(&ours_endpoints));
        (theirs.join().unwrap(), ours.join().unwrap())
    });
    // The checkpoint at five minutes recorded about TTL - 300 s; without it
    // the new leader would start the lease again from its full TTL.
    let waited = WAIT.as_secs() as i64;
    for (who, r) in [("etcd", theirs), ("Logbook", ours)] {
        assert!(
            r < TTL - waited + 30 && r > TTL - waited - 60,
            "{who}: remaining TTL {r}s after {waited}s of a {TTL}s lease"
        );
    }
    assert!((ours - theirs).abs() <= 20, "Logbook {ours}s, etcd {theirs}s");
}

#[test]
fn without_checkpoints_a_new_leader_restarts_the_full_ttl_as_etcd_does() {
    // Without the gate, a leader change resets the lease: immediately
    // after a grant and a move the remaining TTL is the full TTL on both.
    let etcd = EtcdCluster::start(ETCD_36, 3, &[]);
    let cluster = Cluster::start(3, &[]);
    let ours_endpoints: Vec<String> = cluster.specs.iter().map(|s| s.endpoint()).collect();
    let check = |endpoints: &[String]| {
        let (ids, leader) = members(endpoints);
        let lease = grant(&endpoints[leader]);
        std::thread::sleep(Duration::from_secs(3));
        let target = (leader + 1) % ids.len();
        let out = etcdctl(&endpoints[leader], &["move-leader", &ids[target].0], None);
        assert!(out.status.success(), "move-leader: {}", String::from_utf8_lossy(&out.stderr));
        remaining_ttl(&endpoints[target], &lease)
    };
    let theirs = check(&etcd.endpoints());
    let ours = check(&ours_endpoints);
    for (who, r) in [("etcd", theirs), ("Logbook", ours)] {
        assert!(r >= TTL - 2, "{who}: remaining TTL {r}s right after a leader change");
    }
}
