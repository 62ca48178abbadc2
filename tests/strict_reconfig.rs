//! `--strict-reconfig-check` and `--max-learners`, compared with a real etcd
//! given the same membership changes: a voting member add that would leave
//! fewer started members than a quorum, the removal of a live member while
//! another is down, and one learner too many.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, cached_etcd, etcdctl, free_port, http_get};

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

/// A cluster of `n` real etcd members, killed when dropped.
struct EtcdCluster {
    _dir: tempfile::TempDir,
    procs: Vec<Option<Child>>,
    clients: Vec<String>,
}

impl EtcdCluster {
    fn start(n: usize, extra: &[&str]) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut procs = Vec::new();
        let mut clients = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let client = format!("http://127.0.0.1:{c}");
            let peer = format!("http://127.0.0.1:{p}");
            let log = std::fs::File::create(dir.path().join(format!("e{i}.log"))).unwrap();
            let child = Command::new(cached_etcd(ETCD_36, "etcd"))
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial.join(",")])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            procs.push(Some(child));
            clients.push(client);
        }
        let c = EtcdCluster { _dir: dir, procs, clients };
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in &c.clients {
            loop {
                let ok = std::panic::catch_unwind(|| http_get(&format!("{url}/health")))
                    .is_ok_and(|r| r.status == 200);
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "etcd cluster not healthy within 30s");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c
    }

    fn endpoint(&self, i: usize) -> String {
        self.clients[i].trim_start_matches("http://").to_string()
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Index of the member that leads, from `endpoint status`.
    fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.clients.len() {
                let out = etcdctl(&self.endpoint(i), &["endpoint", "status", "-w", "json"], None);
                let text = String::from_utf8_lossy(&out.stdout);
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let s = &v[0]["Status"];
                    if s["leader"].as_u64().is_some() && s["leader"] == s["header"]["member_id"] {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader within 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
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
    let etcd = EtcdCluster::start(1, &[]);
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
    let mut etcd = EtcdCluster::start(3, &[]);
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
        let etcd = EtcdCluster::start(1, extra);
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
