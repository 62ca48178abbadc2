//! One robustness run: a 3-member cluster, the workload, lease keepers and watches on
//! every member, a nemesis injecting faults, then heal, final reads and checks.
//!
//! Networks: in namespace mode (root, `ip`, `nft`: see [`super::netns`]) every member is a
//! host of its own and the kernel makes the network faults; in proxy mode every directed
//! peer link goes through a TCP proxy on 127.0.0.1 ([`super::proxy`]). `Net::Auto` takes
//! namespaces where they work; `LOGBOOK_ROBUSTNESS_NET=proxy|netns` overrides it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::cluster_client::ClusterClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    StatusRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use super::checks::{self, WatchReport};
use super::history::{Kind, Record};
use super::members::{Members, tail};
use super::netns::{self, Lab};
use super::proxy::{self, Dir, Link, Mode};
use super::workload::{self, Clock, KEYS};

const N: usize = 3;
/// Machines: the N voters and a spare that joins as a learner.
const SLOTS: usize = N + 1;
/// Raft timing for the runs (etcd's defaults); every pause and partition outlasts the
/// election timeout.
const HEARTBEAT_MS: u64 = 100;
const ELECTION_MS: u64 = 1000;
/// Longest a membership step may take before the scenario reports it stuck.
const MEMBERSHIP_LIMIT: Duration = Duration::from_secs(40);

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
    /// Black-hole every link of one member (connections stay up, bytes are held; with
    /// namespaces every packet is dropped, so the connections hang).
    Blackhole,
    /// Delay every link by 50-300 ms with jitter (netem also reorders and duplicates).
    Delay,
    /// Lose 5-30% of one member's peer packets (with proxies: hold back 5-30% of its
    /// links' chunks for a retransmission timeout, since TCP loses no bytes).
    Loss,
    /// Limit every member's sending to 256-2048 kbit/s (`tbf`, or with proxies a token
    /// bucket per member over every direction carrying its bytes).
    Bandwidth,
    /// Add the spare machine as a learner, promote it, remove it again, under light loss
    /// or delay.
    Learner,
    /// Replace the leader's machine under light loss or delay: remove the member, wipe
    /// its data dir, add it back under the same name, start it with
    /// `--initial-cluster-state existing`.
    ReplaceLeader,
}

pub const ALL_FAULTS: &[Fault] = &[
    Fault::Kill,
    Fault::Pause,
    Fault::IsolateLeader,
    Fault::LeaderCannotSend,
    Fault::LeaderCannotHear,
    Fault::Blackhole,
    Fault::Delay,
    Fault::Loss,
    Fault::Bandwidth,
    Fault::Learner,
    Fault::ReplaceLeader,
];

/// Where the members run and how the network faults are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// Namespaces when this machine can make them, else proxies.
    Auto,
    Proxy,
    Netns,
}

impl Net {
    fn resolve(self) -> Net {
        let forced = match std::env::var("LOGBOOK_ROBUSTNESS_NET").as_deref() {
            Ok("proxy") => Some(Net::Proxy),
            Ok("netns") => Some(Net::Netns),
            _ => None,
        };
        match forced.unwrap_or(self) {
            Net::Auto => match netns::unavailable() {
                None => Net::Netns,
                Some(why) => {
                    eprintln!("robustness: namespace mode unavailable ({why}); proxy mode");
                    Net::Proxy
                }
            },
            other => other,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub faults: Vec<Fault>,
    pub duration: Duration,
    /// Members run with unsynced writes in memory, so every kill is a power cut.
    pub power_loss: bool,
    pub seed: u64,
    pub clients_per_member: usize,
    pub net: Net,
}

#[derive(Debug, Default)]
pub struct Report {
    pub name: String,
    pub seed: u64,
    pub net: String,
    pub ops: usize,
    pub ops_ok: usize,
    pub ops_unknown: usize,
    pub ops_failed: usize,
    /// Lease puts and revokes that were answered.
    pub lease_ops_ok: usize,
    pub lin_checked: usize,
    pub state_checked: usize,
    /// The lease keepers' leases, keepalives answered, and leases seen expire.
    pub leases: (usize, usize, usize),
    pub faults: Vec<String>,
    pub watch: String,
    pub inconclusive_keys: Vec<usize>,
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "scenario {}: seed {} | {} | operations {} (ok {}, unknown {}, failed {}) | \
             lease ops ok {} | linearizability-checked {} | state-checked {} | \
             keeper leases {} ({} keepalives, {} expired) | faults injected {} | {} | \
             inconclusive keys {:?} | anomalies {}",
            self.name,
            self.seed,
            self.net,
            self.ops,
            self.ops_ok,
            self.ops_unknown,
            self.ops_failed,
            self.lease_ops_ok,
            self.lin_checked,
            self.state_checked,
            self.leases.0,
            self.leases.1,
            self.leases.2,
            self.faults.len(),
            self.watch,
            self.inconclusive_keys,
            self.anomalies.len()
        )
    }
}

/// One membership call: a cluster client, the member list it acts on, the runtime to block on.
type MembershipCall<'a> = dyn Fn(&mut ClusterClient<Channel>, &[Member], &tokio::runtime::Runtime) -> Result<(), String>
    + 'a;

struct Harness {
    // Dropped in this order: members first (their processes), the lab last.
    members: Members,
    /// links[a][b]: the proxy member a dials to reach member b (proxy mode, and namespace
    /// mode without netem, where they add delay only); empty otherwise.
    links: Vec<Vec<Option<Link>>>,
    /// Namespace mode without netem: a runtime per member namespace running its relays.
    _relay_rts: Vec<tokio::runtime::Runtime>,
    paused: Vec<bool>,
    rt: tokio::runtime::Runtime,
    /// Members that exited without being killed (a crash is an anomaly in itself).
    died: Vec<String>,
    /// Membership changes that did not complete (an anomaly: the cluster was healthy
    /// enough to make them).
    stuck: Vec<String>,
    lab: Option<Lab>,
}

impl Harness {
    #[allow(clippy::needless_range_loop)] // a and b name members on both sides of a link
    fn start(power_loss: bool, lab: Option<Lab>) -> Harness {
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
        let hosts =
            lab.as_ref().map(|l| l.hosts.iter().map(|h| (h.ns.clone(), h.ip.clone())).collect());
        let mut members = Members::new(SLOTS, N, hosts, &args);
        let mut links: Vec<Vec<Option<Link>>> =
            (0..N).map(|_| (0..N).map(|_| None).collect()).collect();
        let mut relay_rts = Vec::new();
        let relays = lab.as_ref().is_none_or(|l| !l.netem);
        if let Some(l) = lab.as_ref().filter(|l| !l.netem) {
            for h in &l.hosts[..N] {
                let ns = h.ns.clone();
                relay_rts.push(
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .on_thread_start(move || {
                            netns::enter(&ns).expect("entering a member's namespace")
                        })
                        .enable_all()
                        .build()
                        .unwrap(),
                );
            }
        }
        for a in 0..N {
            let mut routes = Vec::new();
            if relays {
                for b in 0..N {
                    if a == b {
                        continue;
                    }
                    let (bind, target) = match &lab {
                        Some(_) => (
                            members.slots[a].host.clone(),
                            format!("{}:{}", members.slots[b].host, members.slots[b].peer_port),
                        ),
                        None => (
                            "127.0.0.1".to_string(),
                            format!("127.0.0.1:{}", members.slots[b].peer_port),
                        ),
                    };
                    let link = match relay_rts.get(a) {
                        Some(r) => {
                            r.block_on(r.spawn(Link::start_at(bind.clone(), target))).unwrap()
                        }
                        None => rt.block_on(Link::start_at(bind.clone(), target)),
                    };
                    routes.push(format!("{}={}:{}", members.slots[b].peer_url(), bind, link.port));
                    links[a][b] = Some(link);
                }
            }
            let s = &mut members.slots[a];
            if !routes.is_empty() {
                s.env.push(("LOGBOOK_FAILPOINT_PEER_ROUTES".to_string(), routes.join(",")));
            }
        }
        for s in &mut members.slots {
            if power_loss {
                s.env.push(("LOGBOOK_FAILPOINT_POWER_LOSS".to_string(), "1".to_string()));
            }
        }
        for i in 0..N {
            members.spawn(i);
        }
        for i in 0..N {
            members.wait_ready(&rt, i, Duration::from_secs(60));
        }
        Harness {
            members,
            links,
            _relay_rts: relay_rts,
            paused: vec![false; SLOTS],
            rt,
            died: Vec::new(),
            stuck: Vec::new(),
            lab,
        }
    }

    fn describe_net(&self) -> String {
        match &self.lab {
            Some(l) if l.netem => "network namespaces, netem".into(),
            Some(_) => "network namespaces, nftables (relays for delay: no netem)".into(),
            None => "proxies on 127.0.0.1".into(),
        }
    }

    /// Notes (and reaps) every member that exited on its own since the last look, so a
    /// crash is reported instead of showing up later as a member that is never ready.
    fn reap_exited(&mut self, clock: Clock) {
        for i in 0..SLOTS {
            let Some(child) = self.members.procs[i].as_mut() else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                self.members.procs[i] = None;
                self.died.push(format!(
                    "m{} exited on its own ({status}) by {:.1}s; its log ends:\n{}",
                    i + 1,
                    clock.now() as f64 / 1e9,
                    tail(&self.members.log(i), 20)
                ));
            }
        }
    }

    fn link(&self, a: usize, b: usize) -> Option<&Link> {
        self.links.get(a)?.get(b)?.as_ref()
    }

    /// Member `from`'s packets (or bytes) to member `to` stop: reset (proxy `Cut`), held
    /// (proxy `Blackhole`), or dropped by the kernel (namespaces: always a drop, so
    /// connections hang).
    fn cut(&self, from: usize, to: usize, mode: Mode) {
        match &self.lab {
            Some(lab) => lab.cut(from, to),
            None => self.link(from, to).unwrap().set(mode),
        }
    }

    /// Delay (and jitter) on every link.
    fn delay(&self, d: Duration, jitter: Duration) {
        match &self.lab {
            Some(lab) if lab.netem => {
                for i in 0..N {
                    lab.netem_delay(i, d.as_millis() as u64, jitter.as_millis() as u64);
                }
            }
            _ => {
                for a in 0..N {
                    for b in 0..N {
                        if let Some(l) = self.link(a, b) {
                            l.set_delay_jitter(d, jitter);
                        }
                    }
                }
            }
        }
    }

    /// Loses `pct`% of member `slot`'s peer traffic, both ways: the kernel drops packets
    /// (namespaces), or the proxies hold back chunks as retransmissions (see
    /// [`super::proxy`]) on every link to and from it.
    fn loss(&self, slot: usize, pct: u32) {
        match &self.lab {
            Some(lab) => lab.loss(slot, pct),
            None => {
                for o in (0..N).filter(|&o| o != slot) {
                    for l in [self.link(slot, o), self.link(o, slot)].into_iter().flatten() {
                        l.set_loss(pct);
                    }
                }
            }
        }
    }

    /// Chunks the proxies have held back as lost so far (proxy mode).
    fn chunks_held_back(&self) -> u64 {
        self.links.iter().flatten().flatten().map(Link::lost).sum()
    }

    /// Limits what every member sends to its peers to `kbit` kbit/s: `tbf` on its veth
    /// (namespaces), or one token bucket per member shared by every proxy direction that
    /// carries its bytes (its own links forward, its peers' links to it backward).
    fn bandwidth(&self, kbit: u32) {
        match &self.lab {
            Some(lab) => {
                for i in 0..N {
                    lab.bandwidth(i, kbit);
                }
            }
            None => {
                let buckets: Vec<_> = (0..N).map(|_| proxy::bucket(kbit)).collect();
                for a in 0..N {
                    for b in 0..N {
                        if let Some(l) = self.link(a, b) {
                            l.set_bandwidth(Dir::Forward, Some(buckets[a].clone()));
                            l.set_bandwidth(Dir::Backward, Some(buckets[b].clone()));
                        }
                    }
                }
            }
        }
    }

    fn heal_network(&self) {
        if let Some(lab) = &self.lab {
            lab.heal();
        }
        for row in &self.links {
            for l in row.iter().flatten() {
                l.heal();
            }
        }
    }

    /// Light faults that leave a quorum able to work, for membership changes to run
    /// under: 2-5% loss on one member, or a short delay on every link.
    fn light_fault(&self, rng: &mut StdRng) -> String {
        if rng.random_bool(0.5) {
            let (slot, pct) = (rng.random_range(0..N), rng.random_range(2..6));
            self.loss(slot, pct);
            format!("{pct}% loss on m{}", slot + 1)
        } else {
            let d = Duration::from_millis(rng.random_range(10..40));
            self.delay(d, d / 2);
            format!("delay {d:?}")
        }
    }

    /// The leader as a running, unpaused member reports it (bounded calls).
    fn leader(&self) -> Option<usize> {
        for i in 0..N {
            if self.paused[i] || self.members.procs[i].is_none() {
                continue;
            }
            let url = self.members.slots[i].client_url();
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
        self.members.spawn(i);
    }

    /// A cluster client on some running, unpaused voter other than `not`.
    fn cluster_client(&self, not: Option<usize>, nth: usize) -> Option<ClusterClient<Channel>> {
        let candidates: Vec<usize> = (0..N)
            .filter(|&i| Some(i) != not && !self.paused[i] && self.members.procs[i].is_some())
            .collect();
        let i = *candidates.get(nth % candidates.len().max(1))?;
        let ch = self.rt.block_on(workload::channel(&self.members.slots[i].client_url()))?;
        Some(ClusterClient::new(ch))
    }

    /// The cluster's members as one of the voters (other than `not`) lists them.
    fn member_list(&self, not: Option<usize>, nth: usize) -> Option<Vec<Member>> {
        let mut c = self.cluster_client(not, nth)?;
        let call = c.member_list(MemberListRequest { linearizable: true });
        let r = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(3), call).await })
            .ok()?
            .ok()?;
        Some(r.into_inner().members)
    }

    /// Runs membership step `what` until `done` holds for the member list (bounded by
    /// [`MEMBERSHIP_LIMIT`]); returns false (and notes it) if it never did.
    fn membership_step(
        &mut self,
        what: &str,
        not: Option<usize>,
        done: &dyn Fn(&[Member]) -> bool,
        step: &MembershipCall<'_>,
    ) -> bool {
        let deadline = Instant::now() + MEMBERSHIP_LIMIT;
        let mut last = String::new();
        for attempt in 0..1_000 {
            if Instant::now() > deadline {
                break;
            }
            if let Some(list) = self.member_list(not, attempt) {
                if done(&list) {
                    return true;
                }
                if let Some(mut c) = self.cluster_client(not, attempt) {
                    match step(&mut c, &list, &self.rt) {
                        Ok(()) => continue,
                        Err(e) => last = e,
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        self.stuck.push(format!("membership change '{what}' did not complete in {MEMBERSHIP_LIMIT:?} (last error: {last})"));
        false
    }

    /// `--initial-cluster` for slot `me` joining the cluster `list` (names of members not
    /// started yet are the slots' own).
    fn initial_cluster(&self, list: &[Member]) -> String {
        let mut parts = Vec::new();
        for m in list {
            for url in &m.peer_ur_ls {
                if let Some(s) = self.members.slots.iter().find(|s| &s.peer_url() == url) {
                    parts.push(format!("{}={url}", s.name));
                }
            }
        }
        parts.join(",")
    }

    /// Adds slot `slot` as a member (a learner if asked) and starts it with the
    /// `existing` cluster state. False if it never joined.
    fn join(&mut self, slot: usize, learner: bool) -> bool {
        let url = self.members.slots[slot].peer_url();
        let present = |list: &[Member]| list.iter().any(|m| m.peer_ur_ls.contains(&url));
        let add = |c: &mut ClusterClient<Channel>, _: &[Member], rt: &tokio::runtime::Runtime| {
            let call = c.member_add(MemberAddRequest {
                peer_ur_ls: vec![url.clone()],
                is_learner: learner,
            });
            match rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), call).await }) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                Err(_) => Err("timeout".into()),
            }
        };
        let what = format!("add m{}{}", slot + 1, if learner { " as a learner" } else { "" });
        if !self.membership_step(&what, Some(slot), &present, &add) {
            return false;
        }
        let Some(list) = (0..20).find_map(|n| self.member_list(Some(slot), n)) else {
            return false;
        };
        let initial = self.initial_cluster(&list);
        let s = &mut self.members.slots[slot];
        s.initial_cluster = initial;
        s.state = "existing";
        self.restart(slot);
        // A new member asks a peer for the membership at start; one that has not applied
        // the add yet makes it exit ("the cluster has no member with peer URLs ...", as
        // etcd refuses too), and an operator starts it again: so does this, bounded.
        let deadline = Instant::now() + MEMBERSHIP_LIMIT;
        while Instant::now() < deadline && !self.rt.block_on(self.members.serves(slot, true)) {
            if self.members.exited(slot) {
                self.restart(slot);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        true
    }

    /// Removes slot `slot`'s member and stops its process. False if it stayed a member.
    fn leave(&mut self, slot: usize) -> bool {
        let url = self.members.slots[slot].peer_url();
        let gone = |list: &[Member]| !list.iter().any(|m| m.peer_ur_ls.contains(&url));
        let remove = |c: &mut ClusterClient<Channel>,
                      list: &[Member],
                      rt: &tokio::runtime::Runtime| {
            let Some(id) = list.iter().find(|m| m.peer_ur_ls.contains(&url)).map(|m| m.id) else {
                return Ok(());
            };
            let call = c.member_remove(MemberRemoveRequest { id });
            match rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), call).await }) {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                Err(_) => Err("timeout".into()),
            }
        };
        let ok = self.membership_step(&format!("remove m{}", slot + 1), Some(slot), &gone, &remove);
        // A removed member stops on its own; either way it is stopped here, by its handle.
        self.members.kill(slot);
        ok
    }

    /// Injects one fault, holds it, heals it. Returns its description, or None when this
    /// network mode cannot make it.
    fn inject(&mut self, fault: Fault, rng: &mut StdRng) -> Option<String> {
        let leader = self.leader();
        let hold = Duration::from_millis(rng.random_range(ELECTION_MS * 3 / 2..ELECTION_MS * 3));
        let target = match leader {
            Some(l) if rng.random_bool(0.75) => l,
            _ => rng.random_range(0..N),
        };
        let others: Vec<usize> = (0..N).filter(|&i| i != target).collect();
        let who =
            format!("m{}{}", target + 1, if Some(target) == leader { " (leader)" } else { "" });
        Some(match fault {
            Fault::Kill => {
                self.members.kill(target);
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                self.restart(target);
                format!("SIGKILL {who}, restarted")
            }
            Fault::Pause => {
                self.members.signal(target, libc::SIGSTOP);
                self.paused[target] = true;
                std::thread::sleep(hold);
                self.members.signal(target, libc::SIGCONT);
                self.paused[target] = false;
                format!("SIGSTOP {who} for {hold:?}")
            }
            Fault::IsolateLeader | Fault::LeaderCannotSend | Fault::LeaderCannotHear => {
                for &o in &others {
                    if fault != Fault::LeaderCannotHear {
                        self.cut(target, o, Mode::Cut);
                    }
                    if fault != Fault::LeaderCannotSend {
                        self.cut(o, target, Mode::Cut);
                    }
                }
                std::thread::sleep(hold);
                self.heal_network();
                format!("{fault:?} {who} for {hold:?}")
            }
            Fault::Blackhole => {
                for &o in &others {
                    self.cut(target, o, Mode::Blackhole);
                    self.cut(o, target, Mode::Blackhole);
                }
                std::thread::sleep(hold);
                self.heal_network();
                format!("black-hole {who} for {hold:?}")
            }
            Fault::Delay => {
                let d = Duration::from_millis(rng.random_range(50..300));
                let jitter = d / 3;
                self.delay(d, jitter);
                std::thread::sleep(hold);
                self.heal_network();
                format!("delay every link {d:?} ± {jitter:?} for {hold:?}")
            }
            Fault::Loss => {
                let pct = rng.random_range(5..30);
                let before = self.chunks_held_back();
                self.loss(target, pct);
                std::thread::sleep(hold * 2);
                self.heal_network();
                let held = match self.lab {
                    Some(_) => String::new(),
                    None => format!(" ({} chunks held back)", self.chunks_held_back() - before),
                };
                format!("{pct}% packet loss on {who} for {:?}{held}", hold * 2)
            }
            Fault::Bandwidth => {
                let kbit = rng.random_range(256..2048);
                self.bandwidth(kbit);
                std::thread::sleep(hold * 2);
                self.heal_network();
                format!("bandwidth {kbit} kbit/s on every member for {:?}", hold * 2)
            }
            Fault::Learner => {
                let light = self.light_fault(rng);
                let spare = N;
                let mut done = vec![];
                if self.join(spare, true) {
                    done.push("added m4 as a learner");
                    let deadline = Instant::now() + MEMBERSHIP_LIMIT;
                    while !self.rt.block_on(self.members.serves(spare, true))
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    let url = self.members.slots[spare].peer_url();
                    let voter = |list: &[Member]| {
                        list.iter().any(|m| m.peer_ur_ls.contains(&url) && !m.is_learner)
                    };
                    let promote = |c: &mut ClusterClient<Channel>,
                                   list: &[Member],
                                   rt: &tokio::runtime::Runtime| {
                        let Some(id) =
                            list.iter().find(|m| m.peer_ur_ls.contains(&url)).map(|m| m.id)
                        else {
                            return Err("the learner is gone".to_string());
                        };
                        let call = c.member_promote(MemberPromoteRequest { id });
                        match rt.block_on(async {
                            tokio::time::timeout(Duration::from_secs(5), call).await
                        }) {
                            Ok(Ok(_)) => Ok(()),
                            // Not yet in sync with the leader: etcd's answer; try again.
                            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                            Err(_) => Err("timeout".into()),
                        }
                    };
                    if self.membership_step("promote m4", Some(spare), &voter, &promote) {
                        done.push("promoted it");
                    }
                }
                if self.leave(spare) {
                    done.push("removed it");
                }
                let _ = std::fs::remove_dir_all(&self.members.slots[spare].data_dir);
                self.heal_network();
                format!("{} (under {light})", done.join(", "))
            }
            Fault::ReplaceLeader => {
                let light = self.light_fault(rng);
                let mut done = vec![];
                if self.leave(target) {
                    done.push(format!("removed {who}"));
                    let _ = std::fs::remove_dir_all(&self.members.slots[target].data_dir);
                    done.push("wiped its data dir".into());
                    if self.join(target, false) {
                        done.push(
                            "added it back, started with --initial-cluster-state existing".into(),
                        );
                    }
                } else if self.members.procs[target].is_none() {
                    // Still a member, but stopped by `leave`: it restarts with its data.
                    self.restart(target);
                }
                self.heal_network();
                if self.members.procs[target].is_none() {
                    self.restart(target);
                }
                format!("replace machine: {} (under {light})", done.join(", "))
            }
        })
    }

    /// Undoes everything: links, pauses, dead members; waits until all serve.
    fn heal_all(&mut self, clock: Clock) {
        self.heal_network();
        self.reap_exited(clock);
        for i in 0..N {
            if self.paused[i] {
                self.members.signal(i, libc::SIGCONT);
                self.paused[i] = false;
            }
            if self.members.procs[i].is_none() {
                self.restart(i);
            }
        }
        for i in 0..N {
            self.members.wait_ready(&self.rt, i, Duration::from_secs(60));
        }
    }
}

/// Runs one scenario end to end and checks its history. In namespace mode the run
/// happens on a thread of its own inside the lab's client namespace, so every connection
/// the harness and the clients open starts there.
pub fn run(spec: &Spec) -> Report {
    eprintln!("robustness: scenario {} seed {} for {:?}", spec.name, spec.seed, spec.duration);
    match spec.net.resolve() {
        Net::Netns => {
            let lab = Lab::create(SLOTS).unwrap_or_else(|e| panic!("creating the lab: {e}"));
            let spec = spec.clone();
            let run = std::thread::Builder::new()
                .name("robustness-netns".into())
                .spawn(move || {
                    netns::enter(&lab.client_ns).expect("entering the client namespace");
                    run_with(&spec, Some(lab))
                })
                .unwrap();
            run.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        _ => run_with(spec, None),
    }
}

fn run_with(spec: &Spec, lab: Option<Lab>) -> Report {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut h = Harness::start(spec.power_loss, lab);
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
                h.members.slots[m].client_url(),
                spec.seed.wrapping_mul(1000).wrapping_add(id as u64),
                clock,
                deadline,
                next_value.clone(),
            )));
        }
    }

    let watchers: Vec<_> = (0..N)
        .map(|m| h.rt.spawn(workload::watcher(m, h.members.slots[m].client_url(), deadline)))
        .collect();
    let keepers: Vec<_> = (0..N)
        .map(|m| {
            h.rt.spawn(workload::lease_keeper(m, h.members.slots[m].client_url(), clock, deadline))
        })
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
        let Some(what) = h.inject(fault, &mut rng) else { continue };
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
    let lives: Vec<_> = keepers
        .into_iter()
        .flat_map(|k| h.rt.block_on(k).expect("lease keeper panicked"))
        .collect();

    // A last write, recorded like the others, after every client stopped: the watches
    // must reach its revision. (The lease keepers' keys outside the watched range keep
    // changing after it, as their leases expire.)
    let final_client = 10_000;
    let url = h.members.slots[0].client_url();
    let value = next_value.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut last_write = None;
    let mut got = h.rt.block_on(async {
        let mut out = Vec::new();
        for _attempt in 0..20 {
            let Some(mut conn) = workload::connect_conn(&url).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let kind = Kind::Put { value };
            let r = workload::run_op(&mut conn, clock, final_client + N, 0, 0, kind).await;
            let done = r.is_ok();
            out.push(r);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out
    });
    if let Some(r) = got.last().filter(|r| r.is_ok()) {
        last_write = r.write_rev();
    }
    records.append(&mut got);

    // Final reads: every key from every member, linearizably, after healing.
    for m in 0..N {
        let url = h.members.slots[m].client_url();
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

    let mut report = Report {
        name: spec.name.clone(),
        seed: spec.seed,
        net: h.describe_net(),
        ..Default::default()
    };
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
    report.anomalies.append(&mut h.stuck);
    report.leases = (
        lives.len(),
        lives.iter().map(|l| l.keepalives.len()).sum(),
        lives.iter().filter(|l| l.reads.iter().any(|r| !r.2)).count(),
    );
    report.anomalies.extend(checks::lease_expiry(&lives));

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

    let urls: Vec<String> = h.members.slots[..N].iter().map(|s| s.client_url()).collect();
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
    let watch_rev = last_write.unwrap_or(final_rev);
    match h.rt.block_on(checks::watches(&urls, &records, watch_rev, &live)) {
        WatchReport::Skipped(why) => report.watch = why,
        WatchReport::Checked { events, live_events, anomalies } => {
            let resumed: usize = live.iter().map(|w| w.live.resumed).sum();
            let progress: usize = live.iter().map(|w| w.progress.len()).sum();
            report.watch = format!(
                "watch checked ({events} events; watches under faults received {live_events}, \
                 resumed {resumed} times, {progress} progress notifications)"
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
        dump.push_str("\nlease keepers:\n");
        for l in &lives {
            dump.push_str(&format!("{l:?}\n"));
        }
        for i in 0..SLOTS {
            dump.push_str(&format!("\n--- m{} log ---\n{}", i + 1, h.members.log(i)));
        }
        if std::fs::write(&path, dump).is_ok() {
            eprintln!("robustness: history and logs written to {}", path.display());
        }
        for i in 0..SLOTS {
            eprintln!("--- m{} log tail ---\n{}", i + 1, tail(&h.members.log(i), 30));
        }
    }
    eprintln!("robustness: {}", report.summary());
    for a in &report.anomalies {
        eprintln!("robustness: ANOMALY (seed {}): {a}", spec.seed);
    }
    report
}
