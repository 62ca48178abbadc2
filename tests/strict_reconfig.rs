//! `--strict-reconfig-check` and `--max-learners`, compared with a real etcd
//! given the same membership changes: a voting member add that would leave
//! fewer started members than a quorum, the removal of a live member while
//! another is down, and one learner too many.

mod common;

use std::time::Duration;

use common::etcd_cluster::EtcdCluster;
use common::{Cluster, etcdctl, free_port};

const ETCD_36: &str = "3.6.16";

/// etcdctl's answer: Ok, or the error line it printed.
fn ctl(endpoint: &str, args: &[&str]) -> Result<(), String> {
    let out = etcdctl(endpoint, args, None);
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr.lines().filter(|l| l.starts_with("Error")).collect::<Vec<_>>().join("\n"))
}

/// A peer URL nobody serves (the member is only announced).
fn spare_peer_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// On a one-member cluster: a second voter may be added though it never
/// starts (restoring a cluster works that way), but then a third would leave
/// one started member of three; a learner never counts.
fn add_script(endpoint: &str) -> Vec<Result<(), String>> {
    vec![
        ctl(endpoint, &["member", "add", "b", &format!("--peer-urls={}", spare_peer_url())]),
        ctl(endpoint, &["member", "add", "c", &format!("--peer-urls={}", spare_peer_url())]),
    ]
}

#[test]
fn adding_a_voter_without_enough_started_members_is_refused_as_etcd_refuses_it() {
    let etcd = EtcdCluster::start(ETCD_36, 1, &[]);
    let cluster = Cluster::start(1, &[]);
    let theirs = add_script(&etcd.endpoint(0));
    let ours = add_script(&cluster.specs[0].endpoint());
    assert_eq!(ours, theirs);
    assert_eq!(
        theirs[1],
        Err("Error: etcdserver: re-configuration failed due to not enough started members".into())
    );
}

#[test]
fn without_the_check_the_add_is_proposed() {
    // The quorum is lost, so the add cannot commit: a timeout, not the refusal.
    let cluster = Cluster::start(1, &["--strict-reconfig-check=false"]);
    let ours = add_script(&cluster.specs[0].endpoint());
    assert_eq!(ours[0], Ok(()));
    let err = ours[1].clone().unwrap_err();
    assert!(!err.contains("not enough started members"), "{err}");
}

#[test]
fn removing_a_live_member_while_another_is_down_is_refused_as_etcd_refuses_it() {
    let mut etcd = EtcdCluster::start(ETCD_36, 3, &[]);
    let mut cluster = Cluster::start(3, &[]);
    // etcd counts a peer as active once connected for 5 s (HealthInterval).
    std::thread::sleep(Duration::from_secs(6));
    let script = |leader_endpoint: &str, down: &str, live_other: &str| {
        // Member IDs by endpoint, from the leader's member list.
        let out = etcdctl(leader_endpoint, &["member", "list", "-w", "json"], None);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let id_of = |endpoint: &str| {
            v["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| {
                    m["clientURLs"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|u| u.as_str().unwrap().ends_with(endpoint)))
                })
                .map(|m| format!("{:x}", m["ID"].as_u64().unwrap()))
                .unwrap()
        };
        let (down_id, live_id) = (id_of(down), id_of(live_other));
        (leader_endpoint.to_string(), down_id, live_id)
    };
    let mut outcomes = Vec::new();
    for is_etcd in [true, false] {
        let (leader, others): (usize, Vec<usize>) = if is_etcd {
            let l = etcd.leader();
            (l, (0..3).filter(|i| *i != l).collect())
        } else {
            let l = cluster.wait_leader(Duration::from_secs(30));
            (l, (0..3).filter(|i| *i != l).collect())
        };
        let ep = |i: usize| if is_etcd { etcd.endpoint(i) } else { cluster.specs[i].endpoint() };
        let (leader_ep, down_id, live_id) = script(&ep(leader), &ep(others[0]), &ep(others[1]));
        if is_etcd {
            etcd.kill(others[0]);
        } else {
            cluster.kill(others[0]);
        }
        // Once the connection is gone the member is down; removing the live
        // one would leave one active member of two.
        std::thread::sleep(Duration::from_secs(2));
        let live = ctl(&leader_ep, &["member", "remove", &live_id]);
        // The member that is down is not part of the active quorum.
        let down = ctl(&leader_ep, &["member", "remove", &down_id]);
        outcomes.push((live, down));
    }
    assert_eq!(outcomes[1], outcomes[0], "Logbook, then etcd");
    assert_eq!(outcomes[0], (Err("Error: etcdserver: unhealthy cluster".into()), Ok(())));
}

#[test]
fn max_learners_is_enforced_as_etcd_enforces_it() {
    for extra in [&[][..], &["--max-learners=2"][..]] {
        let etcd = EtcdCluster::start(ETCD_36, 1, extra);
        let cluster = Cluster::start(1, extra);
        let script = |endpoint: &str| {
            (0..3)
                .map(|_| {
                    ctl(
                        endpoint,
                        &[
                            "member",
                            "add",
                            "l",
                            "--learner",
                            &format!("--peer-urls={}", spare_peer_url()),
                        ],
                    )
                })
                .collect::<Vec<_>>()
        };
        let theirs = script(&etcd.endpoint(0));
        let ours = script(&cluster.specs[0].endpoint());
        assert_eq!(ours, theirs, "{extra:?}");
        let allowed = if extra.is_empty() { 1 } else { 2 };
        assert!(theirs[..allowed].iter().all(Result::is_ok), "{theirs:?}");
        assert_eq!(
            theirs[allowed],
            Err("Error: etcdserver: too many learner members in cluster".into())
        );
    }
}
