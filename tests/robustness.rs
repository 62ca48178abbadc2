//! Robustness: a 3-member cluster under crashes, power loss, pauses, partitions (two-way
//! and one-way), packet loss, delay, bandwidth limits and membership changes, with
//! concurrent clients whose history is then checked (linearizability per key, revisions
//! in real-time order, every read against the committed history, no acknowledged write
//! lost, HashKV equal on all members, watches from revision 1 on every member after
//! healing and the watches kept open through the faults equal to that history and never
//! told of progress they had not seen, leases never expiring before their TTL).
//!
//! Where the machine allows it (root, `ip`, `nft`), every member runs in a network
//! namespace of its own and the kernel makes the network faults (`robustness/netns.rs`);
//! elsewhere TCP proxies do (`robustness/proxy.rs`).
//!
//! The scenarios need the `failpoints` build (peer route overrides for the link proxies,
//! power loss): `cargo test --features failpoints --test robustness`. Without it only the
//! checker's own tests run. Long soaks: `scripts/robustness.sh --minutes N --seed S`.

mod common;

#[path = "robustness/checks.rs"]
mod checks;
#[path = "robustness/history.rs"]
mod history;
#[path = "robustness/linearizability.rs"]
mod linearizability;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/members.rs"]
mod members;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/netns.rs"]
mod netns;
#[path = "robustness/porcupine.rs"]
mod porcupine;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/proxy.rs"]
mod proxy;
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
#[path = "robustness/scenario.rs"]
mod scenario;
#[path = "robustness/workload.rs"]
mod workload;

/// Bugs the scenarios found, each replayed directly (no fault injection needed).
mod regressions {
    use std::time::{Duration, Instant};

    use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
    use logbook_api::etcdserverpb::{RangeRequest, StatusRequest};
    use tonic::transport::Channel;

    use crate::common::{Cluster, connect, local_get, put, runtime};

    /// The member ID a member reports about itself.
    fn own_id(c: &Cluster, i: usize) -> u64 {
        let url = c.specs[i].client_url();
        runtime().block_on(async {
            let ch = Channel::from_shared(url).unwrap().connect().await.unwrap();
            let s = MaintenanceClient::new(ch).status(StatusRequest {}).await.unwrap();
            s.into_inner().header.unwrap().member_id
        })
    }

    /// ci_power_loss seed 5: a follower that caught up through a snapshot kept the
    /// leader's member ID in its engine (the snapshot is the leader's engine) and took
    /// it as its own at the next start, so it never rejoined.
    #[test]
    fn member_keeps_its_id_across_a_restart_after_installing_a_snapshot() {
        let mut c = Cluster::start(3, &["--snapshot-count", "50"]);
        let leader = c.wait_leader(Duration::from_secs(10));
        let follower = (leader + 1) % 3;
        let id = own_id(&c, follower);
        c.kill(follower);
        let rt = runtime();
        let url = c.specs[leader].client_url();
        // Enough writes that the leader compacts its log past the stopped follower
        // (its engine commits in the background, hence the pause before the second round).
        rt.block_on(async {
            let mut kv = connect(&url).await.unwrap();
            for i in 0..400 {
                put(&mut kv, &format!("snap/{i:04}"), "v").await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            for i in 400..460 {
                put(&mut kv, &format!("snap/{i:04}"), "v").await.unwrap();
            }
        });
        assert!(c.log(leader).contains("compacted raft log"), "leader never compacted");
        c.spawn(follower);
        let deadline = Instant::now() + Duration::from_secs(30);
        let furl = c.specs[follower].client_url();
        while rt.block_on(local_get(&furl, "snap/0459")).is_none() {
            assert!(Instant::now() < deadline, "follower never caught up:\n{}", c.log(follower));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            c.log(follower).contains("installing snapshot from leader"),
            "follower caught up without a snapshot"
        );
        c.kill(follower);
        c.spawn(follower);
        c.wait_ready(follower, Duration::from_secs(30));
        assert_eq!(own_id(&c, follower), id, "the follower restarted as another member");
    }

    /// Proxy soak `crashes-and-pauses#10` seed 27511: a leader paused (SIGSTOP) past a
    /// lease's deadline ran again still believing it led, and proposed the lease's
    /// revocation; Raft stepped it down and forwarded the proposal, which was committed
    /// although the new leader had kept the lease alive (etcd #15247; etcd checks its
    /// leadership with a read index first, and so does Logbook now).
    #[test]
    fn a_paused_leader_does_not_revoke_a_lease_the_new_leader_kept_alive() {
        use logbook_api::etcdserverpb::lease_client::LeaseClient;
        use logbook_api::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest};

        let c = Cluster::start(3, &["--heartbeat-interval", "100", "--election-timeout", "1000"]);
        let leader = c.wait_leader(Duration::from_secs(10));
        let follower = (leader + 1) % 3;
        let url = c.specs[follower].client_url();
        let rt = crate::common::multi_thread_runtime();
        let (id, mut kv) = rt.block_on(async {
            let ch = Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
            let mut lease = LeaseClient::new(ch);
            let id = lease
                .lease_grant(LeaseGrantRequest { ttl: 3, id: 0 })
                .await
                .unwrap()
                .into_inner()
                .id;
            let mut kv = connect(&url).await.unwrap();
            kv.put(PutRequest {
                key: "kept".into(),
                value: "v".into(),
                lease: id,
                ..Default::default()
            })
            .await
            .unwrap();
            (id, kv)
        });
        // Keep the lease alive through the follower, every 300 ms, for the whole test.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let keeper = {
            let (url, stop) = (url.clone(), stop.clone());
            rt.spawn(async move {
                for _ in 0..200 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(ch) = Channel::from_shared(url.clone()).unwrap().connect().await {
                        let mut lease = LeaseClient::new(ch);
                        let req = tokio_stream::iter(vec![LeaseKeepAliveRequest { id }]);
                        let call = lease.lease_keep_alive(req);
                        if let Ok(Ok(mut s)) =
                            tokio::time::timeout(Duration::from_secs(2), call).await
                        {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(2), s.get_mut().message())
                                    .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            })
        };
        // Paused well past the lease's deadline as the old leader knows it.
        assert!(c.signal(leader, libc::SIGSTOP));
        std::thread::sleep(Duration::from_secs(6));
        assert!(c.signal(leader, libc::SIGCONT));
        std::thread::sleep(Duration::from_secs(4));
        let present = rt.block_on(async {
            kv.range(RangeRequest { key: "kept".into(), ..Default::default() })
                .await
                .map(|r| r.into_inner().kvs.len())
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = rt.block_on(keeper);
        assert_eq!(
            present.expect("reading the key"),
            1,
            "the lease kept alive through the new leader was revoked; old leader's log:\n{}",
            c.log(leader)
        );
    }

    /// A member stopped between installing a snapshot (its engine file replaced, far past
    /// the log) and recording the jump in its WAL restarts with a WAL that ends before its
    /// engine's applied index. Here the WAL is simply emptied: the member must move the
    /// log's start past the engine and rejoin (it used to stop on "raft handed the WAL a
    /// gap" at the leader's first append).
    #[test]
    fn member_whose_wal_ends_before_its_engine_rejoins() {
        let mut c = Cluster::start(3, &[]);
        let leader = c.wait_leader(Duration::from_secs(10));
        let follower = (leader + 1) % 3;
        let rt = runtime();
        let url = c.specs[leader].client_url();
        rt.block_on(async {
            let mut kv = connect(&url).await.unwrap();
            for i in 0..50 {
                put(&mut kv, &format!("gap/{i:02}"), "v").await.unwrap();
            }
        });
        // The follower applies everything its WAL holds (the cluster is quiet after the last
        // write), and a clean stop commits its engine: the emptied WAL then loses nothing
        // the member ever acknowledged beyond what its engine holds, as in the real case.
        let furl = c.specs[follower].client_url();
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt.block_on(local_get(&furl, "gap/49")).is_none() {
            assert!(Instant::now() < deadline, "follower never applied the writes");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing may be appended after the follower's last applied entry (a publish
        // retried under load would be): wait until its applied index equals the leader's
        // last index and both hold still for a while.
        let status = |i: usize| {
            let out = c.ctl_ok(i, &["endpoint", "status", "-w", "json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let s = &v[0]["Status"];
            (s["raftIndex"].as_u64().unwrap_or(0), s["raftAppliedIndex"].as_u64().unwrap_or(0))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = (0, 0);
        loop {
            let (leader_index, _) = status(leader);
            let (_, applied) = status(follower);
            let now = (leader_index, applied);
            if now.0 == now.1 && now == last {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster never went quiet: {now:?}");
            last = now;
            std::thread::sleep(Duration::from_millis(700));
        }
        assert!(c.stop(follower), "follower did not stop cleanly");
        let wal = c.specs[follower].data_dir.join("member").join("wal");
        std::fs::remove_dir_all(&wal).unwrap();
        std::fs::create_dir_all(&wal).unwrap();
        c.spawn(follower);
        c.wait_ready(follower, Duration::from_secs(30));
        rt.block_on(async {
            let mut kv = connect(&url).await.unwrap();
            put(&mut kv, "gap/after", "v").await.unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while rt.block_on(local_get(&furl, "gap/after")).is_none() {
            assert!(
                Instant::now() < deadline,
                "follower never applied a new write:\n{}",
                c.log(follower)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(feature = "failpoints")]
mod scenarios {
    use std::time::Duration;

    use super::scenario::{self, ALL_FAULTS, Fault, Net, Spec};

    /// The seed: `LOGBOOK_ROBUSTNESS_SEED` to replay, else fresh (and printed).
    fn seed() -> u64 {
        match std::env::var("LOGBOOK_ROBUSTNESS_SEED") {
            Ok(s) => s.parse().expect("LOGBOOK_ROBUSTNESS_SEED must be a number"),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_007
            }
        }
    }

    fn run(name: &str, faults: &[Fault], power_loss: bool, secs: u64, net: Net) {
        let spec = Spec {
            name: name.into(),
            faults: faults.to_vec(),
            duration: Duration::from_secs(secs),
            power_loss,
            seed: seed(),
            clients_per_member: 2,
            net,
        };
        let report = scenario::run(&spec);
        println!("{}", report.summary());
        // Not vacuous: enough operations went through (a loaded machine slows restarts a lot).
        assert!(report.ops_ok > 50, "too few operations succeeded: {}", report.summary());
        assert!(
            report.anomalies.is_empty(),
            "{} anomalies (replay with LOGBOOK_ROBUSTNESS_SEED={}):\n{}",
            report.anomalies.len(),
            spec.seed,
            report.anomalies.join("\n")
        );
    }

    #[test]
    fn ci_crashes_and_pauses() {
        run("crashes-and-pauses", &[Fault::Kill, Fault::Pause], false, 25, Net::Auto);
    }

    /// The proxies' network faults (resets, held bytes, delays, chunks held back as lost,
    /// token-bucket bandwidth caps), kept for machines without network namespaces.
    #[test]
    fn ci_partitions() {
        run(
            "partitions",
            &[
                Fault::IsolateLeader,
                Fault::LeaderCannotSend,
                Fault::LeaderCannotHear,
                Fault::Blackhole,
                Fault::Delay,
                Fault::Loss,
                Fault::Bandwidth,
            ],
            false,
            25,
            Net::Proxy,
        );
    }

    /// The kernel's network faults between members in their own namespaces: two-way and
    /// one-way partitions by packet drops, loss, delay and jitter, bandwidth limits.
    #[test]
    fn ci_network_faults() {
        run(
            "network-faults",
            &[
                Fault::IsolateLeader,
                Fault::LeaderCannotSend,
                Fault::LeaderCannotHear,
                Fault::Blackhole,
                Fault::Delay,
                Fault::Loss,
                Fault::Bandwidth,
            ],
            false,
            30,
            Net::Auto,
        );
    }

    /// A learner added, promoted and removed, and the leader's machine replaced, under
    /// light loss or delay, with kills between them.
    #[test]
    fn ci_membership() {
        run(
            "membership",
            &[Fault::Learner, Fault::ReplaceLeader, Fault::Kill],
            false,
            35,
            Net::Auto,
        );
    }

    #[test]
    fn ci_power_loss() {
        run("power-loss", &[Fault::Kill], true, 20, Net::Auto);
    }

    /// The soak `scripts/robustness.sh` runs: every fault type, scenario after scenario,
    /// for `LOGBOOK_SOAK_MINUTES`.
    #[test]
    #[ignore = "long soak; run through scripts/robustness.sh"]
    fn soak() {
        let minutes: u64 =
            std::env::var("LOGBOOK_SOAK_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(5);
        let base = seed();
        let end = std::time::Instant::now() + Duration::from_secs(minutes * 60);
        let mut failed = Vec::new();
        let (mut ops, mut faults, mut anomalies) = (0, 0, 0);
        for n in 0..10_000u64 {
            if std::time::Instant::now() >= end {
                break;
            }
            let (name, faults_of, power_loss, net): (&str, &[Fault], bool, Net) = match n % 4 {
                0 => ("all-faults", ALL_FAULTS, false, Net::Auto),
                1 => ("all-faults-power-loss", ALL_FAULTS, true, Net::Auto),
                2 => ("crashes-and-pauses", &[Fault::Kill, Fault::Pause], true, Net::Auto),
                _ => ("all-faults-proxies", ALL_FAULTS, false, Net::Proxy),
            };
            let spec = Spec {
                name: format!("{name}#{n}"),
                faults: faults_of.to_vec(),
                duration: Duration::from_secs(60),
                power_loss,
                seed: base.wrapping_add(n),
                clients_per_member: 2,
                net,
            };
            // A scenario that panics (a member never ready again) is a failed scenario,
            // not the end of the soak.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario::run(&spec))) {
                Ok(report) => {
                    println!("{}", report.summary());
                    ops += report.ops;
                    faults += report.faults.len();
                    anomalies += report.anomalies.len();
                    if !report.anomalies.is_empty() {
                        failed.push(report.summary());
                    }
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("?");
                    let first = why.lines().next().unwrap_or("");
                    println!("scenario {}: seed {} | PANICKED: {first}", spec.name, spec.seed);
                    failed.push(format!(
                        "scenario {} seed {} panicked: {first}",
                        spec.name, spec.seed
                    ));
                }
            }
        }
        println!(
            "soak total: operations {ops} | faults injected {faults} | anomalies {anomalies} | \
             failed scenarios {}",
            failed.len()
        );
        assert!(failed.is_empty(), "failed scenarios:\n{}", failed.join("\n"));
    }
}
