//! `logbook bench capacity`: how much load can this machine carry within a
//! latency objective?
//!
//! For each system, a fresh cluster; then the offered rate ramps up
//! (open loop, coordinated-omission corrected) from `--start-rate`,
//! `--growth` times per step, first with puts, then with linearizable
//! single-key ranges, until a step breaks the objective: p99 above
//! `--slo-p99`, any error, or less than 90 % of the offered rate achieved.
//! When even the first step breaks it, the rate halves until one meets it.
//! The highest achieved rate of a step within the objective is the capacity.
//! CPU and RSS of the member processes are sampled around every step, and the
//! db file and WAL directory sizes before and after the write ramp give their
//! growth per million writes, and `/proc/<pid>/io` the bytes the members
//! wrote to storage per million writes (which file sizes hide when WAL
//! segments are preallocated).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::cli::{CapacityArgs, Consistency};
use crate::client::Pool;
use crate::cluster::{Cluster, System};
use crate::compare::READY_TIMEOUT;
use crate::driver::{Plan, Workload, drive};
use crate::keys::{KeyGen, Rng, random_value};
use crate::procstat::{self, Usage, disk_usage};
use crate::stats::Summary;
use crate::status;
use crate::targets::{self, Machine, Target};
use crate::workload::put::Put;
use crate::workload::range::Range;

/// A step achieving less than this share of its offered rate is saturated.
const MIN_ACHIEVED: f64 = 0.9;
/// Steps per ramp, at most.
const MAX_STEPS: usize = 40;
/// Samples a step aims for, so its p99 means something.
const MIN_SAMPLES: f64 = 300.0;
/// The ramp does not search below this offered rate (requests per second).
const MIN_RATE: f64 = 10.0;

/// One offered rate and what came of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub offered: f64,
    pub result: Summary,
    pub errors: u64,
    pub usage: Usage,
    /// Within the objective.
    pub ok: bool,
}

/// One ramp (writes or reads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ramp {
    pub steps: Vec<Step>,
}

impl Ramp {
    /// The step with the highest achieved rate within the objective.
    pub fn best(&self) -> Option<&Step> {
        self.steps
            .iter()
            .filter(|s| s.ok)
            .max_by(|a, b| a.result.throughput.total_cmp(&b.result.throughput))
    }
}

/// On-disk growth over the write ramp, per member.
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

/// One system's capacity, or why it could not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemCapacity {
    pub system: System,
    pub binary: String,
    pub version: String,
    /// Resource use of the idle cluster, before the ramps.
    pub idle: Usage,
    pub write: Ramp,
    pub read: Ramp,
    pub growth: Growth,
    pub failure: Option<String>,
}

/// Everything `logbook bench capacity` measured (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capacity {
    pub params: serde_json::Value,
    pub machine: Machine,
    pub slo_p99_ms: f64,
    pub systems: Vec<SystemCapacity>,
    pub notes: Vec<String>,
}

/// Runs the capacity search; returns what it measured and the report directory
/// it created for it (the caller writes the report: [`crate::run_capacity`]).
pub async fn run(args: &CapacityArgs) -> Result<(Capacity, PathBuf)> {
    let mut notes = Vec::new();
    let targets = targets::resolve(&args.systems, &mut notes)?;
    anyhow::ensure!(
        !targets.iter().any(Target::deployed),
        "capacity starts its own clusters (it reads their database sizes from their data \
         directories); --logbook-endpoints and --etcd-endpoints work with the ladder \
         (`logbook bench`) and the load generator's workloads"
    );
    for n in &notes {
        eprintln!("{n}");
    }
    let (data, _guard) = targets::data_dir(&args.systems)?;
    let out = targets::out_dir(&args.systems, "logbook-capacity")?;
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
                write: Ramp::default(),
                read: Ramp::default(),
                growth: Growth::default(),
                failure: Some(format!("{e:#}")),
            }
        }));
    }
    let cap = Capacity {
        params: serde_json::to_value(args)?,
        machine: Machine::here(),
        slo_p99_ms: args.slo_p99.as_secs_f64() * 1e3,
        systems,
        notes,
    };
    Ok((cap, out))
}

fn member_sizes(cluster: &Cluster) -> (u64, u64) {
    let n = cluster.members.len().max(1) as u64;
    let db: u64 =
        cluster.members.iter().map(|m| disk_usage(&m.data_dir.join("member/snap/db"))).sum();
    let wal: u64 = cluster.members.iter().map(|m| disk_usage(&m.data_dir.join("member/wal"))).sum();
    (db / n, wal / n)
}

async fn run_system(t: &Target, dir: &Path, args: &CapacityArgs) -> Result<SystemCapacity> {
    let mut cluster =
        Cluster::start_ready(t.system, &t.binary, dir, args.systems.members, READY_TIMEOUT).await?;
    let leader = cluster.leader_endpoint().await?;
    let version = status::version(&leader).await.unwrap_or_default();
    let pool = Pool::connect(std::slice::from_ref(&leader), 4).await?;
    let keys = KeyGen::new("/bench/", 16, args.key_space_size, false);
    let value = random_value(args.val_size, &mut Rng::new(0xca9));

    let pids = cluster.pids();
    let s0 = procstat::sample(&pids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = procstat::usage(&s0, &procstat::sample(&pids));

    let (db0, wal0) = member_sizes(&cluster);
    let io0 = procstat::sample(&pids).disk_write_bytes;
    let put = Arc::new(Put::new(pool.clone(), keys.clone(), value));
    let write = ramp(put, args, &mut cluster, "put").await?;
    let (db1, wal1) = member_sizes(&cluster);
    let io1 = procstat::sample(&pids).disk_write_bytes;
    let writes = write.steps.iter().map(|s| s.result.count).sum();
    let growth = Growth {
        writes,
        db_bytes_before: db0,
        db_bytes_after: db1,
        wal_bytes_before: wal0,
        wal_bytes_after: wal1,
        disk_write_bytes: io1.saturating_sub(io0),
    };

    let range = Arc::new(Range { pool, keys, limit: 0, consistency: Consistency::Linearizable });
    let read = ramp(range, args, &mut cluster, "range").await?;
    cluster.stop();
    Ok(SystemCapacity {
        system: t.system,
        binary: t.binary.display().to_string(),
        version,
        idle,
        write,
        read,
        growth,
        failure: None,
    })
}

async fn ramp<W: Workload>(
    w: Arc<W>,
    args: &CapacityArgs,
    cluster: &mut Cluster,
    what: &str,
) -> Result<Ramp> {
    let slo_ms = args.slo_p99.as_secs_f64() * 1e3;
    let pids = cluster.pids();
    let mut ramp = Ramp::default();
    let mut rate = args.start_rate.max(1.0);
    while ramp.steps.len() < MAX_STEPS && rate <= args.max_rate {
        // A p99 of a few dozen samples is just their max: slow steps run
        // longer, up to 4 step durations, to collect MIN_SAMPLES.
        let step = Duration::from_secs_f64(MIN_SAMPLES / rate)
            .clamp(args.step_duration, args.step_duration * 4);
        let plan = Plan {
            clients: args.clients,
            total: Some((rate * step.as_secs_f64()).ceil() as u64),
            duration: Some(step),
            rate: Some(rate),
            progress: !args.systems.quiet,
            label: format!("{} {what} {rate:.0}/s", cluster.system),
        };
        let before = procstat::sample(&pids);
        let out = drive(w.clone(), &plan).await;
        let usage = procstat::usage(&before, &procstat::sample(&pids));
        cluster.check_alive()?;
        let result = out.total().clone();
        let errors = out.error_count();
        let ok = errors == 0
            && result.latency_ms.p99 <= slo_ms
            && result.throughput >= MIN_ACHIEVED * rate;
        eprintln!(
            "{:>8} {what:>5} offered {rate:>9.0}/s achieved {:>9.0}/s p99 {:>8.3} ms cpu {:.2} cores {}",
            cluster.system,
            result.throughput,
            result.latency_ms.p99,
            usage.cpu_cores,
            if ok { "ok" } else { "over the objective" }
        );
        ramp.steps.push(Step { offered: rate, result, errors, usage, ok });
        let any_ok = ramp.steps.iter().any(|s| s.ok);
        if !ok && (any_ok || rate / 2.0 < MIN_RATE) {
            break;
        }
        // Past the objective before any step met it: the start was too
        // ambitious for this machine, so halve the rate until one does.
        rate = if ok { rate * args.growth.max(1.05) } else { rate / 2.0 };
    }
    Ok(ramp)
}
