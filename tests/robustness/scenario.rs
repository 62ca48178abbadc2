//! One robustness run: a 3-member cluster with a proxy on every directed peer link, the
//! workload on every member, a nemesis injecting faults, then heal, final reads and checks.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::StatusRequest;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use super::checks::{self, WatchReport};
use super::history::{Kind, Record};
use super::proxy::{Link, Mode};
use super::workload::{self, Clock, KEYS};
use crate::common::Cluster;

const N: usize = 3;
/// Raft timing for the runs (etcd's defaults); every pause and partition outlasts the
/// election timeout.
const HEARTBEAT_MS: u64 = 100;
const ELECTION_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a member (the leader, when one is known, 3 times in 4), restart it.
    Kill,
    /// SIGSTOP the leader (or a member) longer than the election timeout, then SIGCONT.
    Pause,
    /// Cut every link to and from the leader.
    IsolateLeader,
    /// Cut only the leader's outgoing links (it hears the others; they do not hear it).
    LeaderCannotSend,
    /// Cut only the links into the leader.
    LeaderCannotHear,
    /// Black-hole every link of one member (connections stay up, bytes are held).
    Blackhole,
    /// Delay every link by 50-300 ms.
    Delay,
}

pub const ALL_FAULTS: &[Fault] = &[
    Fault::Kill,
    Fault::Pause,
    Fault::IsolateLeader,
    Fault::LeaderCannotSend,
    Fault::LeaderCannotHear,
    Fault::Blackhole,
    Fault::Delay,
];

#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub faults: Vec<Fault>,
    pub duration: Duration,
    /// Members run with unsynced writes in memory, so every kill is a power cut.
    pub power_loss: bool,
    pub seed: u64,
    pub clients_per_member: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub name: String,
    pub seed: u64,
    pub ops: usize,
    pub ops_ok: usize,
    pub ops_unknown: usize,
    pub ops_failed: usize,
    /// Lease puts and revokes that were answered.
    pub lease_ops_ok: usize,
    pub lin_checked: usize,
    pub state_checked: usize,
    pub faults: Vec<String>,
    pub watch: String,
    pub inconclusive_keys: Vec<usize>,
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "scenario {}: seed {} | operations {} (ok {}, unknown {}, failed {}) | \
             lease ops ok {} | linearizability-checked {} | state-checked {} | faults injected {} | {} | \
             inconclusive keys {:?} | anomalies {}",
            self.name,
            self.seed,
            self.ops,
            self.ops_ok,
            self.ops_unknown,
            self.ops_failed,
            self.lease_ops_ok,
            self.lin_checked,
            self.state_checked,
            self.faults.len(),
            self.watch,
            self.inconclusive_keys,
            self.anomalies.len()
        )
    }
}

struct Harness {
    cluster: Cluster,
    /// links[a][b]: the proxy member a dials to reach member b.
    links: Vec<Vec<Option<Link>>>,
    env: Vec<Vec<(String, String)>>,
    paused: Vec<bool>,
    rt: tokio::runtime::Runtime,
    /// Members that exited without being killed (a crash is an anomaly in itself).
    died: Vec<String>,
}

impl Harness {
    #[allow(clippy::needless_range_loop)] // a and b name members on both sides of a link
    fn start(power_loss: bool) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let args = [
            "--heartbeat-interval".to_string(),
            HEARTBEAT_MS.to_string(),
            "--election-timeout".to_string(),
            ELECTION_MS.to_string(),
            "--snapshot-count".to_string(),
            "500".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cluster = Cluster::create(N, &args);
        let mut links: Vec<Vec<Option<Link>>> =
            (0..N).map(|_| (0..N).map(|_| None).collect()).collect();
        let mut env = Vec::new();
        for a in 0..N {
            let mut routes = Vec::new();
            for b in 0..N {
                if a == b {
                    continue;
                }
                let link = rt.block_on(Link::start(cluster.specs[b].peer_port));
                routes.push(format!("{}=127.0.0.1:{}", cluster.specs[b].peer_url(), link.port));
                links[a][b] = Some(link);
            }
            let mut e = vec![("LOGBOOK_FAILPOINT_PEER_ROUTES".to_string(), routes.join(","))];
            if power_loss {
                e.push(("LOGBOOK_FAILPOINT_POWER_LOSS".to_string(), "1".to_string()));
            }
            env.push(e);
        }
        for i in 0..N {
            cluster.spawn_env(i, &env[i]);
        }
        for i in 0..N {
            cluster.wait_ready(i, Duration::from_secs(60));
        }
        Harness { cluster, links, env, paused: vec![false; N], rt, died: Vec::new() }
    }

    /// Notes (and reaps) every member that exited on its own since the last look, so a
    /// crash is reported instead of showing up later as a member that is never ready.
    fn reap_exited(&mut self, clock: Clock) {
        for i in 0..N {
            let Some(child) = self.cluster.procs[i].as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                self.cluster.procs[i] = None;
                let log = self.cluster.log(i);
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                self.died.push(format!(
                    "m{} exited on its own ({status}) by {:.1}s; its log ends:\n{}",
                    i + 1,
                    clock.now() as f64 / 1e9,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
    }

    fn link(&self, a: usize, b: usize) -> &Link {
        self.links[a][b].as_ref().unwrap()
    }

    fn heal_network(&self) {
        for a in 0..N {
            for b in 0..N {
                if a != b {
                    self.link(a, b).heal();
                }
            }
        }
    }

    /// The leader as a running, unpaused member reports it (bounded calls).
    fn leader(&self) -> Option<usize> {
        for i in 0..N {
            if self.paused[i] || self.cluster.procs[i].is_none() {
                continue;
            }
            let url = self.cluster.specs[i].client_url();
            let status = self.rt.block_on(async {
                let ch =
                    Channel::from_shared(url).ok()?.connect_timeout(Duration::from_millis(500));
                let ch =
                    tokio::time::timeout(Duration::from_secs(1), ch.connect()).await.ok()?.ok()?;
                let s = tokio::time::timeout(
                    Duration::from_secs(1),
                    MaintenanceClient::new(ch).status(StatusRequest {}),
                )
                .await
                .ok()?
                .ok()?;
                Some(s.into_inner())
            });
            if let Some(s) = status
                && s.leader != 0
                && s.header.as_ref().is_some_and(|h| h.member_id == s.leader)
            {
                return Some(i);
            }
        }
        None
    }

    fn restart(&mut self, i: usize) {
        let env = self.env[i].clone();
        self.cluster.spawn_env(i, &env);
    }

    /// Injects one fault, holds it, heals it. Returns its description.
    fn inject(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        let leader = self.leader();
        let hold = Duration::from_millis(rng.random_range(ELECTION_MS * 3 / 2..ELECTION_MS * 3));
        let target = match leader {
            Some(l) if rng.random_bool(0.75) => l,
            _ => rng.random_range(0..N),
        };
        let others: Vec<usize> = (0..N).filter(|&i| i != target).collect();
        let who =
            format!("m{}{}", target + 1, if Some(target) == leader { " (leader)" } else { "" });
        match fault {
            Fault::Kill => {
                self.cluster.kill(target);
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                self.restart(target);
                format!("SIGKILL {who}, restarted")
            }
            Fault::Pause => {
                self.cluster.signal(target, libc::SIGSTOP);
                self.paused[target] = true;
                std::thread::sleep(hold);
                self.cluster.signal(target, libc::SIGCONT);
                self.paused[target] = false;
                format!("SIGSTOP {who} for {hold:?}")
            }
            Fault::IsolateLeader | Fault::LeaderCannotSend | Fault::LeaderCannotHear => {
                for &o in &others {
                    if fault != Fault::LeaderCannotHear {
                        self.link(target, o).set(Mode::Cut);
                    }
                    if fault != Fault::LeaderCannotSend {
                        self.link(o, target).set(Mode::Cut);
                    }
                }
                std::thread::sleep(hold);
                self.heal_network();
                format!("{fault:?} {who} for {hold:?}")
            }
            Fault::Blackhole => {
                for &o in &others {
                    self.link(target, o).set(Mode::Blackhole);
                    self.link(o, target).set(Mode::Blackhole);
                }
                std::thread::sleep(hold);
                self.heal_network();
                format!("black-hole {who} for {hold:?}")
            }
            Fault::Delay => {
                let d = Duration::from_millis(rng.random_range(50..300));
                for a in 0..N {
                    for b in 0..N {
                        if a != b {
                            self.link(a, b).set_delay(d);
                        }
                    }
                }
                std::thread::sleep(hold);
                self.heal_network();
                format!("delay every link {d:?} for {hold:?}")
            }
        }
    }

    /// Undoes everything: links, pauses, dead members; waits until all serve.
    fn heal_all(&mut self, clock: Clock) {
        self.heal_network();
        self.reap_exited(clock);
        for i in 0..N {
            if self.paused[i] {
                self.cluster.signal(i, libc::SIGCONT);
                self.paused[i] = false;
            }
            if self.cluster.procs[i].is_none() {
                self.restart(i);
            }
        }
        for i in 0..N {
            self.cluster.wait_ready(i, Duration::from_secs(60));
        }
    }
}

/// Runs one scenario end to end and checks its history.
pub fn run(spec: &Spec) -> Report {
    eprintln!("robustness: scenario {} seed {} for {:?}", spec.name, spec.seed, spec.duration);
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut h = Harness::start(spec.power_loss);
    let clock = Clock(Instant::now());
    let deadline = Instant::now() + spec.duration;
    let next_value = Arc::new(AtomicU64::new(1));
    let mut clients = Vec::new();
    for m in 0..N {
        for c in 0..spec.clients_per_member {
            let id = m * spec.clients_per_member + c;
            clients.push(h.rt.spawn(workload::client(
                id,
                m,
                h.cluster.specs[m].client_url(),
                spec.seed.wrapping_mul(1000).wrapping_add(id as u64),
                clock,
                deadline,
                next_value.clone(),
            )));
        }
    }

    let watchers: Vec<_> = (0..N)
        .map(|m| h.rt.spawn(workload::watcher(m, h.cluster.specs[m].client_url(), deadline)))
        .collect();

    // The nemesis: a quiet start, then faults until shortly before the deadline.
    let mut faults = Vec::new();
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..10_000 {
        if spec.faults.is_empty()
            || Instant::now() + Duration::from_millis(ELECTION_MS * 4) >= deadline
        {
            break;
        }
        let fault = spec.faults[rng.random_range(0..spec.faults.len())];
        h.reap_exited(clock);
        let what = h.inject(fault, &mut rng);
        eprintln!("robustness: [{:.1}s] {what}", clock.now() as f64 / 1e9);
        faults.push(what);
        std::thread::sleep(Duration::from_millis(rng.random_range(500..1500)));
    }
    eprintln!("robustness: [{:.1}s] healing", clock.now() as f64 / 1e9);
    h.heal_all(clock);
    eprintln!("robustness: [{:.1}s] healed; collecting client histories", clock.now() as f64 / 1e9);
    let mut records: Vec<Record> = Vec::new();
    for c in clients {
        records.extend(h.rt.block_on(c).expect("client task panicked"));
    }
    let live: Vec<_> =
        watchers.into_iter().map(|w| h.rt.block_on(w).expect("watcher panicked")).collect();

    // Final reads: every key from every member, linearizably, after healing.
    let final_client = 10_000;
    for m in 0..N {
        let url = h.cluster.specs[m].client_url();
        let mut got = h.rt.block_on(async {
            let mut out = Vec::new();
            for key in 0..KEYS {
                for _attempt in 0..20 {
                    let Some(mut conn) = workload::connect_conn(&url).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let r = workload::run_op(
                        &mut conn,
                        clock,
                        final_client + m,
                        m,
                        key,
                        Kind::Get { serializable: false },
                    )
                    .await;
                    if r.is_ok() {
                        out.push(r);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            out
        });
        records.append(&mut got);
    }

    let mut report = Report { name: spec.name.clone(), seed: spec.seed, ..Default::default() };
    report.ops = records.len();
    report.ops_ok = records.iter().filter(|r| r.is_ok()).count();
    report.ops_unknown =
        records.iter().filter(|r| matches!(r.outcome, super::history::Outcome::Unknown(_))).count();
    report.ops_failed = report.ops - report.ops_ok - report.ops_unknown;
    report.lease_ops_ok = records
        .iter()
        .filter(|r| r.is_ok() && matches!(r.kind, Kind::PutLease { .. } | Kind::Revoke { .. }))
        .count();
    report.faults = faults;
    report.anomalies.append(&mut h.died);

    eprintln!(
        "robustness: [{:.1}s] checking {} operations",
        clock.now() as f64 / 1e9,
        records.len()
    );
    let lin = checks::linearizability(&records);
    report.lin_checked = lin.checked_ops;
    report.inconclusive_keys = lin.inconclusive_keys;
    report.anomalies.extend(lin.anomalies);
    report.anomalies.extend(checks::revision_order(&records));

    let urls: Vec<String> = h.cluster.specs.iter().map(|s| s.client_url()).collect();
    let final_rev = records.iter().filter_map(|r| r.header_rev()).max().unwrap_or(1);
    // A fresh linearizable revision after everything.
    let final_rev =
        h.rt.block_on(async {
            let mut kv = workload::connect(&urls[0]).await?;
            let r = kv
                .range(logbook_api::etcdserverpb::RangeRequest {
                    key: "rb/".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            r.into_inner().header.map(|h| h.revision)
        })
        .unwrap_or(final_rev)
        .max(final_rev);
    let state = h.rt.block_on(checks::state_at_revisions(&records, &urls[0], final_rev));
    report.state_checked = state.reads_checked + state.serializable_checked + state.writes_checked;
    report.anomalies.extend(state.anomalies);
    report.anomalies.extend(h.rt.block_on(checks::hash_kv_equal(&urls, final_rev)));
    match h.rt.block_on(checks::watches(&urls, &records, final_rev, &live)) {
        WatchReport::Skipped(why) => report.watch = why,
        WatchReport::Checked { events, live_events, anomalies } => {
            let resumed: usize = live.iter().map(|w| w.resumed).sum();
            report.watch = format!(
                "watch checked ({events} events; watches under faults received {live_events}, \
                 resumed {resumed} times)"
            );
            report.anomalies.extend(anomalies);
        }
    }
    if !report.anomalies.is_empty() {
        // Keep the whole history and the members' logs for whoever reads the report.
        let path = std::env::temp_dir().join(format!(
            "logbook-robustness-{}-{}.txt",
            spec.name.replace('#', "-"),
            spec.seed
        ));
        let mut dump = format!(
            "{}\n\nanomalies:\n{}\n\nhistory:\n",
            report.summary(),
            report.anomalies.join("\n")
        );
        let mut sorted: Vec<&Record> = records.iter().collect();
        sorted.sort_by_key(|r| r.invoke);
        for r in sorted {
            dump.push_str(&format!("{r}\n"));
        }
        dump.push_str(&format!("\nfaults:\n{}\n", report.faults.join("\n")));
        for i in 0..N {
            dump.push_str(&format!("\n--- m{} log ---\n{}", i + 1, h.cluster.log(i)));
        }
        if std::fs::write(&path, dump).is_ok() {
            eprintln!("robustness: history and logs written to {}", path.display());
        }
        for i in 0..N {
            let log = h.cluster.log(i);
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- m{} log tail ---\n{}",
                i + 1,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    eprintln!("robustness: {}", report.summary());
    for a in &report.anomalies {
        eprintln!("robustness: ANOMALY (seed {}): {a}", spec.seed);
    }
    report
}
