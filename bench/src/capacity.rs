//! `logbook bench capacity`: how much can a store carry on this machine
//! within a latency objective? One search for every profile:
//!
//! - `--profile put` ramps the offered rate (open loop, coordinated-omission
//!   corrected) from `--start-rate`, first of puts, then of linearizable
//!   single-key ranges; the highest achieved rate of a step within the
//!   objective is the capacity. The db file and WAL directory sizes before
//!   and after the write ramp give their growth per million writes, and
//!   `/proc/<pid>/io` the bytes the members wrote to storage per million
//!   writes (which file sizes hide when WAL segments are preallocated).
//! - `--profile kubernetes` ramps the number of nodes N from `--nodes`, each
//!   step driving the Kubernetes model ([`crate::workload::kubernetes`]) for
//!   N nodes of `--pods-per-node` pods open loop. The objects of the bigger
//!   cluster are written before its step and not measured: only the new
//!   nodes' objects, since the ones already there stay
//!   ([`Objects::resize`]), so a ramp's seeding costs its final size, not
//!   the sum of its steps. The largest N within the objectives is the
//!   capacity.
//!
//! For each system a fresh cluster; each step grows the size `--growth`
//! times until a step breaks the objectives: the judged p99 (puts, reads, or
//! the model's mutating requests) above `--slo-p99`, the lists' p99 above
//! `--slo-list-p99` (Kubernetes), any error, or less than 90 % of the offered
//! rate achieved. When even the first step breaks them, the size halves
//! until one meets them. Around every step: the members' CPU and RSS
//! (`/proc`), their WAL fsyncs per second (`/metrics`) and the db file's size.
//! The report is [`crate::report::capacity`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::{CapacityArgs, CapacityProfile, Consistency, KubernetesShape};
use crate::client::Pool;
use crate::cluster::{Cluster, System};
use crate::compare::READY_TIMEOUT;
use crate::driver::{Outcome, Plan, drive};
use crate::keys::{KeyGen, Rng, random_value};
use crate::loadgen::{drive_kubernetes, kubernetes_model};
use crate::metrics;
use crate::procstat::{self, Usage, disk_usage};
use crate::stats::Summary;
use crate::status;
use crate::targets::{self, Machine, Target};
use crate::workload::kubernetes::Objects;
use crate::workload::put::Put;
use crate::workload::range::Range;

/// A step achieving less than this share of its offered rate is saturated.
const MIN_ACHIEVED: f64 = 0.9;
/// Samples a rate step aims for, so its p99 means something.
const MIN_SAMPLES: f64 = 300.0;
/// A rate ramp does not search below this offered rate (requests per second).
const MIN_RATE: f64 = 10.0;

/// What a ramp grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    /// The offered rate, requests per second.
    Rate,
    /// The modelled cluster's nodes.
    Nodes,
}

/// One size tried and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// The size: requests per second offered (a rate ramp) or nodes.
    pub size: f64,
    /// The modelled cluster's nodes and pods (a nodes ramp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<usize>,
    /// Requests per second offered, all classes.
    pub offered: f64,
    /// Every request.
    pub result: Summary,
    /// The writing requests of a mix; when present, the objective judges
    /// their p99 instead of `result`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutating: Option<Summary>,
    /// The lists of a mix, judged by the list objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<Summary>,
    pub errors: u64,
    /// The members' CPU and RSS over the step, summed.
    pub usage: Usage,
    /// WAL fsyncs per second, summed over the members (None when `/metrics`
    /// had no fsync histogram).
    pub fsyncs_per_s: Option<f64>,
    /// db file size per member at the end of the step, and its growth over it.
    pub db_bytes: u64,
    pub db_growth_bytes: u64,
    /// Writes made before the step to set it up, not measured (the new
    /// objects of a bigger modelled cluster).
    pub seeded: u64,
    /// Within the objectives.
    pub ok: bool,
}

impl Step {
    /// The summary the latency objective judges.
    pub fn judged(&self) -> &Summary {
        self.mutating.as_ref().unwrap_or(&self.result)
    }
}

/// One ramp of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ramp {
    /// What it sends: `put`, `range` or `kubernetes`.
    pub name: String,
    pub axis: Axis,
    pub steps: Vec<Step>,
}

impl Ramp {
    /// The capacity: the step within the objectives with the highest achieved
    /// rate (a rate ramp) or the most nodes.
    pub fn best(&self) -> Option<&Step> {
        let ok = self.steps.iter().filter(|s| s.ok);
        match self.axis {
            Axis::Rate => ok.max_by(|a, b| a.result.throughput.total_cmp(&b.result.throughput)),
            Axis::Nodes => ok.max_by(|a, b| a.size.total_cmp(&b.size)),
        }
    }
}

/// On-disk growth over the put profile's write ramp, per member.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Growth {
    pub writes: u64,
    pub db_bytes_before: u64,
    pub db_bytes_after: u64,
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
    /// Bytes the members wrote to storage over the ramp, summed over members.
    pub disk_write_bytes: u64,
}

impl Growth {
    /// db file growth in MiB per million writes.
    pub fn db_mib_per_million(&self) -> f64 {
        per_million(self.db_bytes_after.saturating_sub(self.db_bytes_before), self.writes)
    }

    /// Storage writes in MiB per million writes, summed over the members
    /// (file sizes hide it when segments are preallocated; this does not).
    pub fn disk_written_mib_per_million(&self) -> f64 {
        per_million(self.disk_write_bytes, self.writes)
    }

    /// WAL growth in MiB per million writes.
    pub fn wal_mib_per_million(&self) -> f64 {
        per_million(self.wal_bytes_after.saturating_sub(self.wal_bytes_before), self.writes)
    }
}

fn per_million(bytes: u64, writes: u64) -> f64 {
    if writes == 0 { 0.0 } else { bytes as f64 / (1 << 20) as f64 * 1e6 / writes as f64 }
}

/// One system's ramps, or why it could not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemCapacity {
    pub system: System,
    pub binary: String,
    pub version: String,
    /// Resource use of the idle cluster, before the ramps.
    pub idle: Usage,
    /// `put` then `range` (the put profile), or `kubernetes`.
    pub ramps: Vec<Ramp>,
    /// The put profile's disk growth over its write ramp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<Growth>,
    pub failure: Option<String>,
}

/// Everything `logbook bench capacity` measured (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capacity {
    pub params: serde_json::Value,
    pub machine: Machine,
    pub profile: CapacityProfile,
    /// The objective of the judged p99 (puts, reads, mutating requests).
    pub slo_p99_ms: f64,
    /// The objective of the lists' p99 (the Kubernetes profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_list_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_per_node: Option<usize>,
    pub systems: Vec<SystemCapacity>,
    pub notes: Vec<String>,
}

/// How a ramp's sizes go: from `start`, `growth` times per step within the
/// objectives, halving while no step has met them.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub start: f64,
    pub growth: f64,
    /// No size above this is tried.
    pub max: f64,
    /// Halving stops below this.
    pub min: f64,
    /// Sizes are whole numbers (nodes): growing adds at least one.
    pub whole: bool,
    pub max_steps: usize,
}

impl Ladder {
    fn grow(&self, size: f64) -> f64 {
        let g = size * self.growth.max(1.05);
        if self.whole { g.ceil().max(size + 1.0) } else { g }
    }

    fn halve(&self, size: f64) -> f64 {
        if self.whole { (size / 2.0).floor() } else { size / 2.0 }
    }
}

/// The search every profile runs: `step` at each size of `ladder` until a
/// step past the objectives follows one within them (or, halving, no size
/// down to `ladder.min` meets them), or the sizes pass `ladder.max`.
pub async fn ramp(
    ladder: &Ladder,
    mut step: impl AsyncFnMut(f64) -> Result<Step>,
) -> Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut size = ladder.start.max(ladder.min);
    while steps.len() < ladder.max_steps && size <= ladder.max {
        let s = step(size).await?;
        let ok = s.ok;
        steps.push(s);
        let any_ok = steps.iter().any(|s| s.ok);
        if !ok && (any_ok || ladder.halve(size) < ladder.min) {
            break;
        }
        // Past the objectives before any step met them: the start was too
        // ambitious for this machine, so halve until one does.
        size = if ok { ladder.grow(size) } else { ladder.halve(size) };
    }
    Ok(steps)
}

/// The objectives a step is judged by.
#[derive(Debug, Clone, Copy)]
struct Objective {
    p99_ms: f64,
    list_p99_ms: Option<f64>,
}

impl Objective {
    fn of(args: &CapacityArgs) -> Objective {
        Objective {
            p99_ms: args.slo_p99.as_secs_f64() * 1e3,
            list_p99_ms: (args.profile == CapacityProfile::Kubernetes)
                .then_some(args.slo_list_p99.as_secs_f64() * 1e3),
        }
    }

    fn met(&self, step: &Step) -> bool {
        step.errors == 0
            && step.judged().latency_ms.p99 <= self.p99_ms
            && match (&step.list, self.list_p99_ms) {
                (Some(list), Some(slo)) => list.latency_ms.p99 <= slo,
                _ => true,
            }
            && step.result.throughput >= MIN_ACHIEVED * step.offered
    }
}

/// Runs the capacity search for each system; returns what it measured and
/// the report directory it created (the caller writes the report:
/// [`crate::run_capacity`]).
pub async fn run(args: &CapacityArgs) -> Result<(Capacity, PathBuf)> {
    let mut notes = Vec::new();
    let targets = targets::resolve(&args.systems, &mut notes)?;
    anyhow::ensure!(
        !targets.iter().any(Target::deployed),
        "capacity starts its own clusters (it reads their database sizes from their data \
         directories); --logbook-endpoints and --etcd-endpoints work with the ladder \
         (`logbook bench`), and `logbook bench kubernetes --endpoints ...` drives a deployed one"
    );
    for n in &notes {
        eprintln!("{n}");
    }
    let kubernetes = args.profile == CapacityProfile::Kubernetes;
    let (data, _guard) = targets::data_dir(&args.systems)?;
    let default_out = if kubernetes { "logbook-capacity-kubernetes" } else { "logbook-capacity" };
    let out = targets::out_dir(&args.systems, default_out)?;
    let mut systems = Vec::new();
    for t in &targets {
        eprintln!(
            "== {}: starting a {}-member cluster ({})",
            t.system,
            args.systems.members,
            t.binary.display()
        );
        let r = run_system(t, &data.join(t.system.name()), args).await;
        systems.push(r.unwrap_or_else(|e| {
            eprintln!("{} failed: {e:#}", t.system);
            SystemCapacity {
                system: t.system,
                binary: t.binary.display().to_string(),
                version: String::new(),
                idle: Usage::default(),
                ramps: Vec::new(),
                growth: None,
                failure: Some(format!("{e:#}")),
            }
        }));
    }
    let objective = Objective::of(args);
    let cap = Capacity {
        params: serde_json::to_value(args)?,
        machine: Machine::here(),
        profile: args.profile,
        slo_p99_ms: objective.p99_ms,
        slo_list_p99_ms: objective.list_p99_ms,
        pods_per_node: kubernetes.then_some(args.kubernetes.pods_per_node),
        systems,
        notes,
    };
    Ok((cap, out))
}

/// The db file and WAL directory sizes, per member.
fn member_sizes(cluster: &Cluster) -> (u64, u64) {
    let n = cluster.members.len().max(1) as u64;
    let db: u64 =
        cluster.members.iter().map(|m| disk_usage(&m.data_dir.join("member/snap/db"))).sum();
    let wal: u64 = cluster.members.iter().map(|m| disk_usage(&m.data_dir.join("member/wal"))).sum();
    (db / n, wal / n)
}

/// A step's load on one cluster, and what is measured around it.
struct Bench<'a> {
    cluster: &'a mut Cluster,
    members: Vec<String>,
    objective: Objective,
}

impl Bench<'_> {
    /// Runs `load` and measures the members around it: CPU and RSS, WAL
    /// fsyncs, db size. `size`, `offered` and `seeded` describe the step.
    async fn step(
        &mut self,
        what: &str,
        size: f64,
        offered: f64,
        seeded: u64,
        load: impl Future<Output = Result<Outcome>>,
    ) -> Result<Step> {
        let pids = self.cluster.pids();
        let (db0, _) = member_sizes(self.cluster);
        let scrape0 = metrics::scrape_members(&self.members).await.ok();
        let before = procstat::sample(&pids);
        let out = load.await?;
        let usage = procstat::usage(&before, &procstat::sample(&pids));
        let scrape1 = metrics::scrape_members(&self.members).await.ok();
        self.cluster.check_alive()?;
        let (db1, _) = member_sizes(self.cluster);
        let fsyncs_per_s = match (scrape0, scrape1) {
            (Some(a), Some(b)) => {
                let w = metrics::between(&a, &b);
                w.fsync.map(|f| f.count as f64 / w.elapsed_s.max(1e-9))
            }
            _ => None,
        };
        let mut step = Step {
            size,
            nodes: None,
            pods: None,
            offered,
            result: out.total().clone(),
            mutating: out.class("mutating").cloned(),
            list: out.class("list").cloned(),
            errors: out.error_count(),
            usage,
            fsyncs_per_s,
            db_bytes: db1,
            db_growth_bytes: db1.saturating_sub(db0),
            seeded,
            ok: false,
        };
        step.ok = self.objective.met(&step);
        eprintln!(
            "{:>8} {what:>10} {}: offered {offered:>9.0}/s achieved {:>9.0}/s p99 {:>8.3} ms{} \
             cpu {:.2} cores {}",
            self.cluster.system,
            if what == "kubernetes" {
                format!("{size:>6} nodes")
            } else {
                format!("{size:>9.0}/s")
            },
            step.result.throughput,
            step.judged().latency_ms.p99,
            step.list
                .as_ref()
                .map_or(String::new(), |l| format!(" list p99 {:>8.3} ms", l.latency_ms.p99)),
            step.usage.cpu_cores,
            if step.ok { "ok" } else { "over the objective" }
        );
        Ok(step)
    }
}

async fn run_system(t: &Target, dir: &Path, args: &CapacityArgs) -> Result<SystemCapacity> {
    let mut cluster =
        Cluster::start_ready(t.system, &t.binary, dir, args.systems.members, READY_TIMEOUT).await?;
    let leader = cluster.leader_endpoint().await?;
    let version = status::version(&leader).await.unwrap_or_default();
    let pids = cluster.pids();
    let s0 = procstat::sample(&pids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procstat::usage(&s0, &procstat::sample(&pids));
    let members = cluster.endpoints();
    let mut bench = Bench { cluster: &mut cluster, members, objective: Objective::of(args) };
    let ramps = match args.profile {
        CapacityProfile::Put => put_ramps(&mut bench, &leader, args).await,
        CapacityProfile::Kubernetes => {
            kubernetes_ramp(&mut bench, &leader, args).await.map(|r| (vec![r], None))
        }
    };
    cluster.stop();
    let (ramps, growth) = ramps?;
    Ok(SystemCapacity {
        system: t.system,
        binary: t.binary.display().to_string(),
        version,
        idle,
        ramps,
        growth,
        failure: None,
    })
}

/// The put profile: puts by offered rate, then linearizable reads, and the
/// disk growth over the puts.
async fn put_ramps(
    bench: &mut Bench<'_>,
    leader: &str,
    args: &CapacityArgs,
) -> Result<(Vec<Ramp>, Option<Growth>)> {
    let pool = Pool::connect(&[leader.to_owned()], 4).await?;
    let keys = KeyGen::new("/bench/", 16, args.key_space_size, false);
    let value = random_value(args.val_size, &mut Rng::new(0xca9));
    let ladder = Ladder {
        start: args.start_rate.max(1.0),
        growth: args.growth,
        max: args.max_rate,
        min: MIN_RATE,
        whole: false,
        max_steps: 40,
    };
    let pids = bench.cluster.pids();
    let (db0, wal0) = member_sizes(bench.cluster);
    let io0 = procstat::sample(&pids).disk_write_bytes;
    let put = Arc::new(Put::new(pool.clone(), keys.clone(), value));
    let write = ramp(&ladder, async |rate| {
        let plan = rate_plan(args, rate, &format!("{} put", bench.cluster.system));
        bench.step("put", rate, rate, 0, async { Ok(drive(put.clone(), &plan).await) }).await
    })
    .await?;
    let (db1, wal1) = member_sizes(bench.cluster);
    let io1 = procstat::sample(&pids).disk_write_bytes;
    let growth = Growth {
        writes: write.iter().map(|s| s.result.count).sum(),
        db_bytes_before: db0,
        db_bytes_after: db1,
        wal_bytes_before: wal0,
        wal_bytes_after: wal1,
        disk_write_bytes: io1.saturating_sub(io0),
    };
    let range = Arc::new(Range { pool, keys, limit: 0, consistency: Consistency::Linearizable });
    let read = ramp(&ladder, async |rate| {
        let plan = rate_plan(args, rate, &format!("{} range", bench.cluster.system));
        bench.step("range", rate, rate, 0, async { Ok(drive(range.clone(), &plan).await) }).await
    })
    .await?;
    let ramps = vec![
        Ramp { name: "put".to_owned(), axis: Axis::Rate, steps: write },
        Ramp { name: "range".to_owned(), axis: Axis::Rate, steps: read },
    ];
    Ok((ramps, Some(growth)))
}

/// An open-loop plan at `rate`: a p99 of a few dozen samples is just their
/// max, so slow steps run longer, up to 4 step durations, to collect
/// [`MIN_SAMPLES`].
fn rate_plan(args: &CapacityArgs, rate: f64, label: &str) -> Plan {
    let step = Duration::from_secs_f64(MIN_SAMPLES / rate)
        .clamp(args.step_duration, args.step_duration * 4);
    Plan {
        clients: args.clients,
        total: Some((rate * step.as_secs_f64()).ceil() as u64),
        duration: Some(step),
        rate: Some(rate),
        progress: !args.systems.quiet,
        label: format!("{label} {rate:.0}/s"),
    }
}

/// The Kubernetes profile's load on one cluster, step after step. The
/// objects written so far stay from one step to the next, so a step writes
/// only what its bigger cluster adds ([`Objects::resize`]).
pub struct KubernetesLoad {
    pool: Pool,
    shape: KubernetesShape,
    clients: usize,
    step_duration: Duration,
    quiet: bool,
    objects: Objects,
}

impl KubernetesLoad {
    /// The model of `shape` (its `nodes` is set per step) driven by
    /// `clients` for `step_duration` per step, on `pool`'s store.
    pub fn new(
        pool: Pool,
        shape: KubernetesShape,
        clients: usize,
        step_duration: Duration,
        quiet: bool,
    ) -> Self {
        KubernetesLoad { pool, shape, clients, step_duration, quiet, objects: Objects::default() }
    }

    fn shape(&self, nodes: usize) -> KubernetesShape {
        KubernetesShape { nodes, ..self.shape.clone() }
    }

    /// Requests per second the model offers for `nodes` nodes.
    pub fn offered(&self, nodes: usize) -> f64 {
        kubernetes_model(&self.shape).rates(nodes, self.shape.pods_per_node).total
    }

    /// Writes what a cluster of `nodes` nodes lacks in the store (not
    /// measured); returns the writes made.
    pub async fn seed(&mut self, nodes: usize) -> Result<u64> {
        let model = kubernetes_model(&self.shape);
        let ppn = self.shape.pods_per_node;
        self.objects.resize(&self.pool, &model, nodes, ppn, self.quiet).await
    }

    /// Drives the model of `nodes` nodes for one step (after [`seed`](Self::seed)).
    pub async fn run(&mut self, nodes: usize, label: &str) -> Result<Outcome> {
        let shape = self.shape(nodes);
        let (out, _notes, _) = drive_kubernetes(
            self.pool.clone(),
            &shape,
            self.clients,
            self.step_duration,
            None,
            self.quiet,
            label,
            &mut self.objects,
        )
        .await?;
        Ok(out)
    }
}

/// The Kubernetes profile: the model by nodes; each step first writes only
/// the objects the bigger cluster adds.
async fn kubernetes_ramp(bench: &mut Bench<'_>, leader: &str, args: &CapacityArgs) -> Result<Ramp> {
    let ladder = Ladder {
        start: args.kubernetes.nodes.max(1) as f64,
        growth: args.growth,
        max: args.max_nodes.max(1) as f64,
        min: 1.0,
        whole: true,
        max_steps: 30,
    };
    let pool = Pool::connect(&[leader.to_owned()], 4).await?;
    let mut load = KubernetesLoad::new(
        pool,
        args.kubernetes.clone(),
        args.clients,
        args.step_duration,
        args.systems.quiet,
    );
    let ppn = args.kubernetes.pods_per_node;
    let steps = ramp(&ladder, async |size| {
        let nodes = size as usize;
        let seeded = load.seed(nodes).await?;
        let offered = load.offered(nodes);
        let label = format!("{} {nodes} nodes", bench.cluster.system);
        let mut step =
            bench.step("kubernetes", size, offered, seeded, load.run(nodes, &label)).await?;
        step.nodes = Some(nodes);
        step.pods = Some(nodes * ppn);
        Ok(step)
    })
    .await?;
    Ok(Ramp { name: "kubernetes".to_owned(), axis: Axis::Nodes, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of `size` that meets the objectives when `ok`.
    fn step(size: f64, ok: bool) -> Step {
        Step {
            size,
            nodes: None,
            pods: None,
            offered: size,
            result: Summary::default(),
            mutating: None,
            list: None,
            errors: 0,
            usage: Usage::default(),
            fsyncs_per_s: None,
            db_bytes: 0,
            db_growth_bytes: 0,
            seeded: 0,
            ok,
        }
    }

    async fn sizes(ladder: &Ladder, limit: f64) -> Vec<f64> {
        let steps = ramp(ladder, async |s| Ok(step(s, s <= limit))).await.unwrap();
        steps.iter().map(|s| s.size).collect()
    }

    #[tokio::test]
    async fn a_rate_ramp_grows_until_the_objective_breaks() {
        let l =
            Ladder { start: 100.0, growth: 2.0, max: 1e6, min: 10.0, whole: false, max_steps: 40 };
        assert_eq!(sizes(&l, 500.0).await, [100.0, 200.0, 400.0, 800.0]);
        // Too ambitious a start halves until a step meets it, then grows again.
        assert_eq!(sizes(&l, 30.0).await, [100.0, 50.0, 25.0, 50.0]);
        // Nothing down to the minimum meets it.
        assert_eq!(sizes(&l, 1.0).await, [100.0, 50.0, 25.0, 12.5]);
        // The maximum ends a ramp that never breaks.
        let capped = Ladder { max: 300.0, ..l };
        assert_eq!(sizes(&capped, 1e9).await, [100.0, 200.0]);
    }

    #[tokio::test]
    async fn a_nodes_ramp_takes_whole_steps() {
        let l = Ladder { start: 2.0, growth: 1.5, max: 10.0, min: 1.0, whole: true, max_steps: 30 };
        // 3 × 1.5 rounds up to 5; 8 × 1.5 passes the maximum.
        assert_eq!(sizes(&l, 1e9).await, [2.0, 3.0, 5.0, 8.0]);
        // Every step adds at least one node.
        let slow = Ladder { growth: 1.01, max: 4.0, ..l.clone() };
        assert_eq!(sizes(&slow, 1e9).await, [2.0, 3.0, 4.0]);
        assert_eq!(sizes(&Ladder { start: 5.0, ..l.clone() }, 0.0).await, [5.0, 2.0, 1.0]);
    }

    #[test]
    fn the_best_step_is_the_fastest_rate_or_the_most_nodes() {
        let mut fast = step(100.0, true);
        fast.result.throughput = 120.0;
        let mut slow = step(150.0, true);
        slow.result.throughput = 110.0;
        let over = step(400.0, false);
        let rates = Ramp { name: "put".into(), axis: Axis::Rate, steps: vec![fast, slow, over] };
        assert_eq!(rates.best().unwrap().size, 100.0);
        let nodes = Ramp { axis: Axis::Nodes, ..rates };
        assert_eq!(nodes.best().unwrap().size, 150.0);
    }
}
