//! `--force-new-cluster`: a member whose quorum is lost restarts as the one
//! member of its cluster, keeping its data, and grows again by `member add`,
//! as etcd 3.6.16 does given the same steps.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::etcd_cluster::EtcdCluster;
use common::{Cluster, etcdctl, free_port, json};

const ETCD: &str = "3.6.16";

/// What the recovered member shows; names and IDs left out (they differ
/// between the two clusters by construction).
#[derive(Debug, PartialEq, Eq)]
struct Recovered {
    /// Members in `member list` after the forced restart.
    members_after_force: usize,
    /// The keys written before the loss, read back.
    values: Vec<String>,
    /// A write after the forced restart succeeded.
    put: bool,
    /// Members once the new one joined, and how many are started (named).
    members_after_add: usize,
    started_after_add: usize,
    /// The new member's own (serializable) read of the old data and the new write.
    new_member_reads: Vec<String>,
}

fn ctl_ok(endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(endpoint, args, None);
    assert!(
        out.status.success(),
        "etcdctl {args:?} at {endpoint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_get(endpoint: &str, key: &str, serializable: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut args = vec!["get", key, "--print-value-only"];
    if serializable {
        args.push("--consistency=s");
    }
    loop {
        let out = etcdctl(endpoint, &args, None);
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !v.is_empty() {
            return v;
        }
        assert!(Instant::now() < deadline, "{key} not readable at {endpoint} within 60s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn members(endpoint: &str) -> serde_json::Value {
    json(&ctl_ok(endpoint, &["member", "list", "-w", "json"]))["members"].clone()
}

/// The steps after the forced restart, on `survivor`; `join` adds a new
/// member (`member add`), starts it and returns its client endpoint.
fn recover(survivor: &str, join: &mut dyn FnMut() -> String) -> Recovered {
    let values: Vec<String> =
        (0..10).map(|i| wait_get(survivor, &format!("k{i}"), false)).collect();
    let members_after_force = members(survivor).as_array().unwrap().len();
    let put = etcdctl(survivor, &["put", "after", "force"], None).status.success();
    let new_ep = join();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (members_after_add, started_after_add) = loop {
        let list = members(survivor);
        let all = list.as_array().unwrap();
        let started =
            all.iter().filter(|m| m["name"].as_str().is_some_and(|n| !n.is_empty())).count();
        if started == 2 || Instant::now() > deadline {
            break (all.len(), started);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let new_member_reads = vec![wait_get(&new_ep, "k0", true), wait_get(&new_ep, "after", true)];
    Recovered {
        members_after_force,
        values,
        put,
        members_after_add,
        started_after_add,
        new_member_reads,
    }
}

fn write_keys(endpoint: &str) {
    for i in 0..10 {
        ctl_ok(endpoint, &["put", &format!("k{i}"), &format!("v{i}")]);
    }
}

/// Makes sure the survivor (`survivor`) holds k0..k9 as committed before
/// the members die. Both systems keep only the entries up to the commit
/// index a member has recorded when it is forced to restart alone, and etcd
/// records a follower's commit index without syncing it (nor does it sync
/// its backend at once): a write after the keys, applied on the survivor,
/// and a second for etcd's 100 ms backend batch and the next heartbeat, put
/// the keys well behind what it has recorded.
fn settle(leader_side: &str, survivor: &str) {
    ctl_ok(leader_side, &["put", "barrier", "1"]);
    wait_get(survivor, "barrier", true);
    std::thread::sleep(Duration::from_secs(1));
}

fn on_etcd() -> Recovered {
    let mut c = EtcdCluster::start(ETCD, 3, &[]);
    write_keys(&c.endpoint(0));
    settle(&c.endpoint(0), &c.endpoint(2));
    // Quorum lost: two members gone for good; the third stops too.
    c.kill(0);
    c.kill(1);
    c.kill(2);
    c.spawn(2, &["--force-new-cluster"]);
    c.wait_serving(2);
    let survivor = c.endpoint(2);
    let mut join = || -> String {
        let n = c.add_ports();
        let url = c.peer_url(n);
        ctl_ok(&survivor, &["member", "add", &format!("e{n}"), &format!("--peer-urls={url}")]);
        let initial = format!("e2={},e{n}={url}", c.peer_url(2));
        c.spawn_in(n, &initial, &["--initial-cluster-state=existing"]);
        c.endpoint(n)
    };
    recover(&survivor, &mut join)
}

/// Starts a Logbook member `name` joining through `initial` (state existing).
fn spawn_logbook(c: &Cluster, name: &str, client: u16, peer: u16, initial: &str) -> Child {
    let log = std::fs::File::create(c.dir.path().join(format!("{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("serve")
        .args(["--name", name])
        .arg("--data-dir")
        .arg(c.dir.path().join(format!("{name}.logbook")))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!("--initial-cluster={initial}"))
        .arg(format!("--initial-cluster-token={}", c.token))
        .arg("--initial-cluster-state=existing")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawning logbook serve")
}

fn on_logbook() -> Recovered {
    let mut c = Cluster::start(3, &[]);
    write_keys(&c.specs[0].endpoint());
    settle(&c.specs[0].endpoint(), &c.specs[2].endpoint());
    c.kill(0);
    c.kill(1);
    c.kill(2);
    c.extra_args.push("--force-new-cluster".into());
    c.spawn(2);
    c.extra_args.pop();
    c.wait_ready(2, Duration::from_secs(30));
    let survivor = c.specs[2].endpoint();
    let (client, peer) = (free_port(), free_port());
    let mut child: Option<Child> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut join = || -> String {
            let url = format!("http://127.0.0.1:{peer}");
            ctl_ok(&survivor, &["member", "add", "m4", &format!("--peer-urls={url}")]);
            let initial = format!("m3={},m4={url}", c.specs[2].peer_url());
            child = Some(spawn_logbook(&c, "m4", client, peer, &initial));
            format!("127.0.0.1:{client}")
        };
        let r = recover(&survivor, &mut join);
        // The removed members stay removed; the log says what happened.
        assert!(c.log(2).contains("forcing restart member"), "{}", c.log(2));
        r
    }));
    if let Some(mut ch) = child {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    match result {
        Ok(r) => r,
        Err(e) => {
            let m4 = std::fs::read_to_string(c.dir.path().join("m4.log")).unwrap_or_default();
            eprintln!("m3's log:\n{}\nm4's log:\n{m4}", c.log(2));
            std::panic::resume_unwind(e)
        }
    }
}

#[test]
fn a_member_that_lost_its_quorum_restarts_alone_with_its_data_and_grows_again_as_etcd_does() {
    let expected = on_etcd();
    let got = on_logbook();
    assert_eq!(got, expected);
    assert_eq!(got.members_after_force, 1);
    assert_eq!(got.values, (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert!(got.put);
    assert_eq!((got.members_after_add, got.started_after_add), (2, 2));
    assert_eq!(got.new_member_reads, vec!["v0".to_string(), "force".to_string()]);
}
