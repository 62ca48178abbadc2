//! `logbook bench capacity --profile kubernetes`: how many nodes (and pods)
//! can this store carry within the objectives?
//!
//! For each system, a fresh cluster; then the number of nodes N ramps from
//! `--nodes`, `--growth` times per step, each step driving the Kubernetes
//! model ([`crate::workload::kubernetes`]) for N nodes of `--pods-per-node`
//! pods open loop for `--step-duration`. The objects of the bigger cluster
//! (its nodes, leases and pods) are written before each step, not measured.
//! A step is within the objectives when the mutating requests' p99 is at most
//! `--slo-p99`, the lists' p99 at most `--slo-list-p99`, no request fails,
//! and at least 90 % of the offered rate was achieved. The ramp stops at the
//! first step past them (halving N first when even the first one is), or at
//! `--max-nodes`. The largest N within them is the capacity, reported with
//! the members' CPU and RSS over that step, their fsyncs per second (from
//! `/metrics`) and the db file's growth.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::{CapacityArgs, KubernetesShape};
use crate::client::Pool;
use crate::cluster::{Cluster, System};
use crate::compare::READY_TIMEOUT;
use crate::loadgen::drive_kubernetes;
use crate::metrics;
use crate::procstat::{self, Usage, disk_usage};
use crate::stats::Summary;
use crate::status;
use crate::targets::{self, Machine, Target};

/// A step achieving less than this share of its offered rate is saturated.
const MIN_ACHIEVED: f64 = 0.9;
/// Steps per ramp, at most.
const MAX_STEPS: usize = 30;

/// One cluster size and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeStep {
    pub nodes: usize,
    pub pods: usize,
    /// Requests per second offered, all classes.
    pub offered: f64,
    /// Every request, the writes (`mutating`) and the lists.
    pub all: Summary,
    pub mutating: Summary,
    pub list: Summary,
    pub errors: u64,
    pub usage: Usage,
    /// WAL fsyncs per second, summed over the members (None when `/metrics`
    /// had no fsync histogram).
    pub fsyncs_per_s: Option<f64>,
    /// db file size per member at the end of the step, and its growth over it.
    pub db_bytes: u64,
    pub db_growth_bytes: u64,
    pub ok: bool,
}

/// One system's ramp, or why it could not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeSystem {
    pub system: System,
    pub binary: String,
    pub version: String,
    pub steps: Vec<KubeStep>,
    pub failure: Option<String>,
}

impl KubeSystem {
    /// The largest cluster within the objectives.
    pub fn best(&self) -> Option<&KubeStep> {
        self.steps.iter().filter(|s| s.ok).max_by_key(|s| s.nodes)
    }
}

/// Everything `logbook bench capacity --profile kubernetes` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KubeCapacity {
    pub params: serde_json::Value,
    pub machine: Machine,
    pub slo_mutating_p99_ms: f64,
    pub slo_list_p99_ms: f64,
    pub pods_per_node: usize,
    pub systems: Vec<KubeSystem>,
    pub notes: Vec<String>,
}

/// Runs the ramp for each system; returns what it measured and the report
/// directory (the caller writes the report).
pub async fn run(args: &CapacityArgs) -> Result<(KubeCapacity, PathBuf)> {
    let mut notes = Vec::new();
    let targets = targets::resolve(&args.systems, &mut notes)?;
    anyhow::ensure!(
        !targets.iter().any(Target::deployed),
        "capacity starts its own clusters (it reads their database sizes from their data \
         directories); `logbook bench kubernetes --endpoints ...` drives a deployed one"
    );
    for n in &notes {
        eprintln!("{n}");
    }
    let (data, _guard) = targets::data_dir(&args.systems)?;
    let out = targets::out_dir(&args.systems, "logbook-capacity-kubernetes")?;
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
            KubeSystem {
                system: t.system,
                binary: t.binary.display().to_string(),
                version: String::new(),
                steps: Vec::new(),
                failure: Some(format!("{e:#}")),
            }
        }));
    }
    let cap = KubeCapacity {
        params: serde_json::to_value(args)?,
        machine: Machine::here(),
        slo_mutating_p99_ms: args.slo_p99.as_secs_f64() * 1e3,
        slo_list_p99_ms: args.slo_list_p99.as_secs_f64() * 1e3,
        pods_per_node: args.kubernetes.pods_per_node,
        systems,
        notes,
    };
    Ok((cap, out))
}

fn db_size(cluster: &Cluster) -> u64 {
    let n = cluster.members.len().max(1) as u64;
    cluster.members.iter().map(|m| disk_usage(&m.data_dir.join("member/snap/db"))).sum::<u64>() / n
}

async fn run_system(t: &Target, dir: &Path, args: &CapacityArgs) -> Result<KubeSystem> {
    let mut cluster =
        Cluster::start_ready(t.system, &t.binary, dir, args.systems.members, READY_TIMEOUT).await?;
    let leader = cluster.leader_endpoint().await?;
    let members = cluster.endpoints();
    let version = status::version(&leader).await.unwrap_or_default();
    let pids = cluster.pids();
    let slo_ms = args.slo_p99.as_secs_f64() * 1e3;
    let slo_list_ms = args.slo_list_p99.as_secs_f64() * 1e3;
    let mut steps: Vec<KubeStep> = Vec::new();
    let mut nodes = args.kubernetes.nodes.max(1);
    while steps.len() < MAX_STEPS && nodes <= args.max_nodes.max(1) {
        let shape = KubernetesShape { nodes, ..args.kubernetes.clone() };
        let pool = Pool::connect(std::slice::from_ref(&leader), 4).await?;
        let db0 = db_size(&cluster);
        let scrape0 = metrics::scrape_members(&members).await.ok();
        let before = procstat::sample(&pids);
        let (out, _notes) = drive_kubernetes(
            pool,
            &shape,
            args.clients,
            args.step_duration,
            None,
            args.systems.quiet,
            &format!("{} {nodes} nodes", t.system),
        )
        .await?;
        let usage = procstat::usage(&before, &procstat::sample(&pids));
        let scrape1 = metrics::scrape_members(&members).await.ok();
        cluster.check_alive()?;
        let db1 = db_size(&cluster);
        let fsyncs_per_s = match (scrape0, scrape1) {
            (Some(a), Some(b)) => {
                let w = metrics::between(&a, &b);
                w.fsync.map(|f| f.count as f64 / w.elapsed_s.max(1e-9))
            }
            _ => None,
        };
        let class = |name: &str| out.class(name).cloned().unwrap_or_default();
        let all = out.total().clone();
        let mutating = class("mutating");
        let list = class("list");
        let errors = out.error_count();
        let offered =
            crate::loadgen::kubernetes_model(&shape).rates(nodes, shape.pods_per_node).total;
        let ok = errors == 0
            && mutating.latency_ms.p99 <= slo_ms
            && list.latency_ms.p99 <= slo_list_ms
            && all.throughput >= MIN_ACHIEVED * offered;
        eprintln!(
            "{:>8} {nodes:>6} nodes: offered {offered:>8.0}/s achieved {:>8.0}/s mutating p99 {:>8.3} ms \
             list p99 {:>8.3} ms cpu {:.2} cores {}",
            t.system,
            all.throughput,
            mutating.latency_ms.p99,
            list.latency_ms.p99,
            usage.cpu_cores,
            if ok { "ok" } else { "over the objective" }
        );
        steps.push(KubeStep {
            nodes,
            pods: nodes * shape.pods_per_node,
            offered,
            all,
            mutating,
            list,
            errors,
            usage,
            fsyncs_per_s,
            db_bytes: db1,
            db_growth_bytes: db1.saturating_sub(db0),
            ok,
        });
        let any_ok = steps.iter().any(|s| s.ok);
        if !ok && (any_ok || nodes <= 1) {
            break;
        }
        let grown = ((nodes as f64) * args.growth.max(1.05)).ceil() as usize;
        nodes = if ok { grown.max(nodes + 1) } else { nodes / 2 };
        // Halving below sizes already tried would only repeat them.
        if !ok && nodes == 0 {
            break;
        }
    }
    cluster.stop();
    Ok(KubeSystem {
        system: t.system,
        binary: t.binary.display().to_string(),
        version,
        steps,
        failure: None,
    })
}
