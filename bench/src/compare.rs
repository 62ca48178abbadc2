//! `logbook bench` with no subcommand: Logbook and etcd side by side.
//!
//! Each system gets a fresh local cluster on the same disk. After a short
//! unmeasured warm-up, the same ladder runs against its leader: 1 client
//! writing sequential keys, then 16, 64, 256 and 1024 clients writing random
//! keys, 256-byte values, each rung bounded in time and count. The disk's
//! fdatasync latency and a loopback round trip are probed first: together
//! they are the floor of any quorum write. Then the bare put server
//! ([`crate::bare`]) runs the ladder's first and 256-client rungs: the floor
//! of a durable gRPC put with this client on this machine. Every member's
//! WAL fsync histogram is scraped from its `/metrics` before and after each
//! rung.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cli::CompareArgs;
use crate::client::Pool;
use crate::cluster::{Cluster, System};
use crate::disk_probe::{self, DiskFloor};
use crate::driver::{ErrorSample, Outcome, Plan, drive, drive_on_one_thread};
use crate::keys::{KeyGen, Rng, random_value};
use crate::metrics::{self, WalMetrics};
use crate::procstat;
use crate::second_opinion::{self, SecondOpinion, ToolTls};
use crate::stats::Summary;
use crate::targets::{self, Machine, Target};
use crate::workload::put::Put;
use crate::{loopback, status};

/// A cluster has this long to elect a leader and serve a read.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
const WARMUP: Duration = Duration::from_secs(1);
const PROBE_TIME: Duration = Duration::from_secs(2);
/// How long each WAL backend is measured for, per appender count.
const WAL_BACKEND_TIME: Duration = Duration::from_secs(1);

/// One rung of the ladder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rung {
    pub clients: usize,
    pub sequential: bool,
    pub put: Summary,
    pub errors: BTreeMap<String, ErrorSample>,
    /// The members' WAL histograms over the rung (summed over members),
    /// when `/metrics` could be scraped.
    #[serde(default)]
    pub wal: Option<WalMetrics>,
    /// CPU time spent per request during the rung.
    #[serde(default)]
    pub cpu: Option<RungCpu>,
}

/// CPU time per request over a rung, from `/proc` (clock ticks of 10 ms, so
/// a rung of a few seconds resolves a few microseconds per request).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RungCpu {
    /// All members together, microseconds per request.
    pub cluster_us: f64,
    /// The load generator (this process), microseconds per request.
    pub generator_us: f64,
}

/// One system's ladder, or why it could not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemResult {
    pub system: System,
    pub binary: String,
    /// The version its Status reports.
    pub version: String,
    pub rungs: Vec<Rung>,
    pub failure: Option<String>,
    /// The WAL backend each member reported in `/metrics` (`logbook_wal_backend`), Logbook only.
    #[serde(default)]
    pub wal_backends: Vec<String>,
    /// Logbook's generator and etcd's `benchmark` tool on the same rung,
    /// when the tool was found ([`crate::second_opinion`]).
    #[serde(default)]
    pub second_opinion: Option<SecondOpinion>,
}

/// Everything `logbook bench` measured (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub params: serde_json::Value,
    pub machine: Machine,
    pub floor: Option<DiskFloor>,
    /// Loopback TCP round trips (the network part of the floor).
    #[serde(default)]
    pub rtt: Option<Summary>,
    /// The bare put server ([`crate::bare`]) at the ladder's first rung and
    /// at 256 clients, when the ladder has them.
    #[serde(default)]
    pub bare: Vec<Rung>,
    pub systems: Vec<SystemResult>,
    pub notes: Vec<String>,
    /// Each WAL backend on the disk under test ([`crate::wal_backends`]).
    #[serde(default)]
    pub wal_backends: Option<crate::wal_backends::WalBackends>,
}

impl Comparison {
    /// The result of `system`, when it ran.
    pub fn get(&self, system: System) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.system == system && s.failure.is_none())
    }
}

/// Runs the comparison; returns what it measured and the report directory it
/// created for it (the caller writes the report: [`crate::run_comparison`]).
pub async fn run(args: &CompareArgs) -> Result<(Comparison, PathBuf)> {
    let mut notes = Vec::new();
    let targets = targets::resolve(&args.systems, &mut notes)?;
    for n in &notes {
        eprintln!("{n}");
    }
    let (data, _guard) = targets::data_dir(&args.systems)?;
    let out = targets::out_dir(&args.systems, "logbook-bench")?;
    if targets.iter().any(Target::deployed) && args.systems.disk_floor.is_none() {
        notes.push(
            "the disk floor and the bare put server were measured on the load generator's \
             machine, not on the deployed members' (pass --disk-floor with a master's probe)"
                .to_owned(),
        );
    }
    let mut floor = match &args.systems.disk_floor {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the disk floor {}", file.display()))?;
            // `logbook bench disk --json`'s file, or a bare floor.
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let floor = value.get("floor").cloned().unwrap_or(value);
            let floor: DiskFloor = serde_json::from_value(floor).with_context(|| {
                format!("{} is not `logbook bench disk --json`'s output", file.display())
            })?;
            eprintln!("disk floor from {} (measured in {})", file.display(), floor.dir);
            floor
        }
        None => {
            eprintln!("probing fdatasync latency in {} ...", data.display());
            let d = data.clone();
            tokio::task::spawn_blocking(move || disk_probe::probe(&d, PROBE_TIME, 5_000)).await??
        }
    };
    eprintln!(
        "disk floor: fdatasync p50 {:.3} ms, p99 {:.3} ms",
        floor.fsync.latency_ms.p50, floor.fsync.latency_ms.p99
    );
    let d = data.clone();
    let members = args.systems.members.max(1);
    let shared = if floor.shared.is_some() {
        None
    } else {
        Some(
            tokio::task::spawn_blocking(move || {
                disk_probe::probe_shared(&d, members, PROBE_TIME, 5_000)
            })
            .await?,
        )
    };
    match shared {
        None => {}
        Some(Ok(shared)) => {
            eprintln!(
                "with {} syncers at once: fdatasync p50 {:.3} ms, p99 {:.3} ms",
                shared.syncers, shared.fsync.latency_ms.p50, shared.fsync.latency_ms.p99
            );
            floor.shared = Some(shared);
        }
        Some(Err(e)) => notes.push(format!("shared-disk fdatasync not measured: {e:#}")),
    }
    eprintln!("measuring each WAL backend in {} ...", data.display());
    let d = data.join("wal-backends");
    let wal_backends = match tokio::task::spawn_blocking(move || {
        let r = crate::wal_backends::measure(&d, WAL_BACKEND_TIME, &[16]);
        let _ = std::fs::remove_dir_all(&d);
        r
    })
    .await?
    {
        Ok(w) => {
            eprint!("{}", crate::wal_backends::table(&w));
            Some(w)
        }
        Err(e) => {
            notes.push(format!("WAL backends not measured: {e:#}"));
            None
        }
    };
    let rtt = match tokio::task::spawn_blocking(|| loopback::probe(PROBE_TIME, 20_000)).await? {
        Ok(rtt) => {
            eprintln!(
                "loopback round trip: p50 {:.3} ms, p99 {:.3} ms",
                rtt.latency_ms.p50, rtt.latency_ms.p99
            );
            Some(rtt)
        }
        Err(e) => {
            notes.push(format!("loopback round trip not measured: {e:#}"));
            None
        }
    };

    let tool = second_opinion::find_tool(args.etcd_benchmark.as_deref());
    match &tool {
        Some(t) => eprintln!("second opinion: etcd's benchmark tool {}", t.display()),
        None => notes.push(second_opinion::absent_note()),
    }

    let bare = match run_bare(&data.join("bare"), args).await {
        Ok(rungs) => rungs,
        Err(e) => {
            notes.push(format!("bare put server not measured: {e:#}"));
            Vec::new()
        }
    };

    let mut systems = Vec::new();
    for t in &targets {
        if t.deployed() {
            eprintln!("== {}: the cluster at {}", t.system, t.endpoints.join(","));
        } else {
            eprintln!(
                "== {}: starting a {}-member cluster ({})",
                t.system,
                args.systems.members,
                t.binary.display()
            );
        }
        let r = run_system(t, &data.join(t.system.name()), args, tool.as_deref(), &mut notes).await;
        systems.push(match r {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{} failed: {e:#}", t.system);
                SystemResult {
                    system: t.system,
                    binary: t.describe(),
                    version: String::new(),
                    rungs: vec![],
                    failure: Some(format!("{e:#}")),
                    wal_backends: Vec::new(),
                    second_opinion: None,
                }
            }
        });
    }
    let cmp = Comparison {
        params: serde_json::to_value(args)?,
        machine: Machine::here(),
        floor: Some(floor),
        rtt,
        bare,
        systems,
        notes,
        wal_backends,
    };
    Ok((cmp, out))
}

/// Where a ladder's cluster is, and how its members' CPU time is read.
enum Members<'a> {
    /// Started here: `/proc` of its processes; checked alive after each rung.
    Local(&'a mut Cluster),
    /// Running elsewhere: `process_cpu_seconds_total` of each `/metrics`.
    Deployed,
}

async fn run_system(
    t: &Target,
    dir: &Path,
    args: &CompareArgs,
    tool: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<SystemResult> {
    if t.deployed() {
        let leader = leader_of(&t.endpoints).await?;
        return ladder(t, &leader, &t.endpoints, Members::Deployed, args, tool, notes).await;
    }
    let mut cluster =
        Cluster::start_ready(t.system, &t.binary, dir, args.systems.members, READY_TIMEOUT).await?;
    let leader = cluster.leader_endpoint().await?;
    let members = cluster.endpoints();
    let result =
        ladder(t, &leader, &members, Members::Local(&mut cluster), args, tool, notes).await;
    cluster.stop();
    result
}

/// The endpoint of `endpoints` whose member leads (by its Status).
async fn leader_of(endpoints: &[String]) -> Result<String> {
    let mut errors = Vec::new();
    for e in endpoints {
        let asked = async {
            let pool = Pool::from_channel(crate::client::connect_one(e).await?);
            let status = pool
                .maintenance(0)
                .status(logbook_api::etcdserverpb::StatusRequest {})
                .await?
                .into_inner();
            anyhow::Ok(status.header.is_some_and(|h| h.member_id == status.leader))
        };
        match tokio::time::timeout(READY_TIMEOUT, asked).await {
            Ok(Ok(true)) => return Ok(e.clone()),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => errors.push(format!("{e}: {err:#}")),
            Err(_) => errors.push(format!("{e}: no answer within {READY_TIMEOUT:?}")),
        }
    }
    anyhow::bail!("no leader among {}: {}", endpoints.join(","), errors.join("; "))
}

/// The CPU seconds the deployed `members` report in `/metrics`, summed.
async fn deployed_cpu_seconds(members: &[String]) -> Result<f64> {
    let mut total = 0.0;
    for m in members {
        let text = metrics::fetch_metrics(m).await?;
        total += metrics::gauge(&text, "process_cpu_seconds_total")
            .with_context(|| format!("{m}/metrics has no process_cpu_seconds_total"))?;
    }
    Ok(total)
}

/// Runs the ladder against `leader` of a cluster whose members serve
/// `members` (client URLs, for `/metrics`).
async fn ladder(
    t: &Target,
    leader: &str,
    members: &[String],
    mut cluster: Members<'_>,
    args: &CompareArgs,
    tool: Option<&Path>,
    notes: &mut Vec<String>,
) -> Result<SystemResult> {
    let version = status::version(leader).await.unwrap_or_default();
    // Which WAL backend each member chose (Logbook's `logbook_wal_backend` gauge).
    let mut wal_backends = Vec::new();
    for url in members {
        if let Ok(text) = metrics::fetch_metrics(url).await
            && let Some(b) = metrics::wal_backend(&text)
        {
            wal_backends.push(b);
        }
    }
    if !wal_backends.is_empty() {
        eprintln!("{}: the members' WAL backends: {}", t.system, wal_backends.join(", "));
    }
    let value = random_value(args.val_size, &mut Rng::new(0xbe7c));
    let keygen = |sequential| KeyGen::new("/bench/", 16, args.key_space_size, sequential);
    let quiet = args.systems.quiet;

    // Warm-up, not measured: connections, leader caches, first WAL segment.
    let pool = Pool::connect(&[leader.to_owned()], 2).await?;
    let warm = Plan {
        clients: 16,
        total: Some(50_000),
        duration: Some(WARMUP),
        rate: None,
        progress: false,
        label: String::new(),
    };
    drive(Arc::new(Put::new(pool, keygen(false), value.clone())), &warm).await;

    let pids = match &cluster {
        Members::Local(c) => c.pids(),
        Members::Deployed => Vec::new(),
    };
    let me = [std::process::id()];
    let mut scrape_failed = false;
    let mut cpu_failed = false;
    let mut rungs = Vec::new();
    for (i, &clients) in args.rungs.iter().enumerate() {
        let sequential = i == 0 && clients == 1;
        let plan = Plan {
            clients,
            total: Some(args.rung_total),
            duration: Some(args.rung_duration),
            rate: None,
            progress: !quiet,
            label: format!("{} {clients}c", t.system),
        };
        let before = metrics::scrape_members(members).await;
        let remote_before = match cluster {
            Members::Deployed => Some(deployed_cpu_seconds(members).await),
            Members::Local(_) => None,
        };
        let cpu_before = (procstat::sample(&pids), procstat::sample(&me));
        let out = put_rung(leader, keygen(sequential), value.clone(), plan).await?;
        let cpu_after = (procstat::sample(&pids), procstat::sample(&me));
        if let Members::Local(c) = &mut cluster {
            c.check_alive()?;
        }
        let remote_after = match cluster {
            Members::Deployed => Some(deployed_cpu_seconds(members).await),
            Members::Local(_) => None,
        };
        let after = metrics::scrape_members(members).await;
        let wal = match (before, after) {
            (Ok(b), Ok(a)) => Some(metrics::between(&b, &a)),
            (Err(e), _) | (_, Err(e)) => {
                if !scrape_failed {
                    notes.push(format!("{}: WAL metrics not scraped: {e:#}", t.system));
                    scrape_failed = true;
                }
                None
            }
        };
        let cluster_cpu = match (remote_before, remote_after) {
            (None, None) => Some(procstat::cpu_seconds(&cpu_before.0, &cpu_after.0)),
            (Some(Ok(b)), Some(Ok(a))) => Some(a - b),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                if !cpu_failed {
                    notes.push(format!("{}: member CPU not read: {e:#}", t.system));
                    cpu_failed = true;
                }
                None
            }
            _ => None,
        };
        let put = out.total().clone();
        let per_request = |secs: f64| secs * 1e6 / put.count.max(1) as f64;
        let cpu = (put.count > 0).then_some(()).and(cluster_cpu).map(|cluster| RungCpu {
            cluster_us: per_request(cluster),
            generator_us: per_request(procstat::cpu_seconds(&cpu_before.1, &cpu_after.1)),
        });
        eprintln!(
            "{:>8} {clients:>5} clients: {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
            t.system,
            put.throughput,
            put.latency_ms.p50,
            put.latency_ms.p99,
            out.error_count()
        );
        rungs.push(Rung { clients, sequential, put, errors: out.errors, wal, cpu });
    }
    let second_opinion = match (tool, second_opinion::chosen_clients(&args.rungs)) {
        (Some(tool), Some(clients)) => {
            eprintln!("{}: {clients} clients, Logbook's generator and etcd's benchmark", t.system);
            let tls = tool_tls(t, args);
            let r = second_opinion::run(
                tool,
                &tls,
                leader,
                clients,
                args.key_space_size,
                args.val_size,
                value.clone(),
                args.rung_total,
                quiet,
            )
            .await;
            if let Members::Local(c) = &mut cluster {
                c.check_alive()?;
            }
            match r {
                Ok(o) => {
                    for p in &o.pairs {
                        eprintln!(
                            "{:>8} {:>5}: logbook-bench {:>9.0} req/s, etcd benchmark {:>9.0} req/s ({:+.0} %)",
                            t.system,
                            p.workload,
                            p.logbook_bench.requests_per_s,
                            p.etcd_benchmark.requests_per_s,
                            p.difference() * 100.0
                        );
                    }
                    Some(o)
                }
                Err(e) => {
                    notes.push(format!("{}: no second opinion: {e:#}", t.system));
                    None
                }
            }
        }
        _ => None,
    };
    Ok(SystemResult {
        system: t.system,
        binary: t.describe(),
        version,
        rungs,
        failure: None,
        wal_backends,
        second_opinion,
    })
}

/// Measures the bare put server ([`crate::bare`]) at the ladder's first rung
/// and at its 256-client rung: the floor of a durable gRPC put on this disk
/// and these cores, with the same client and values as the clusters get.
async fn run_bare(dir: &Path, args: &CompareArgs) -> Result<Vec<Rung>> {
    let first = args.rungs.first().copied();
    let chosen: Vec<(usize, bool)> = args
        .rungs
        .iter()
        .enumerate()
        .filter(|&(i, &c)| i == 0 || (c == 256 && Some(c) != first))
        .map(|(i, &c)| (c, i == 0 && c == 1))
        .collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    eprintln!("== bare put server: one fdatasync per batch of puts, nothing else");
    let d = dir.to_owned();
    let server = tokio::task::spawn_blocking(move || crate::bare::BareServer::start(&d)).await??;
    let endpoint = server.endpoint();
    let value = random_value(args.val_size, &mut Rng::new(0xbe7c));
    let mut rungs = Vec::new();
    let mut result = Ok(());
    for (clients, sequential) in chosen {
        let plan = Plan {
            clients,
            total: Some(args.rung_total),
            duration: Some(args.rung_duration),
            rate: None,
            progress: !args.systems.quiet,
            label: format!("bare {clients}c"),
        };
        let keys = KeyGen::new("/bench/", 16, args.key_space_size, sequential);
        let out = match put_rung(&endpoint, keys, value.clone(), plan).await {
            Ok(out) => out,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let put = out.total().clone();
        eprintln!(
            "{:>8} {clients:>5} clients: {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
            "bare",
            put.throughput,
            put.latency_ms.p50,
            put.latency_ms.p99,
            out.error_count()
        );
        rungs.push(Rung { clients, sequential, put, errors: out.errors, wal: None, cpu: None });
    }
    tokio::task::spawn_blocking(move || server.stop()).await?;
    result.map(|()| rungs)
}

/// Runs one rung of puts against `endpoint`. A few connections carry any
/// number of clients (HTTP/2 streams); a single client runs on a thread of
/// its own ([`drive_on_one_thread`]).
async fn put_rung(endpoint: &str, keys: KeyGen, value: Bytes, plan: Plan) -> Result<Outcome> {
    let clients = plan.clients;
    let endpoint = endpoint.to_owned();
    let setup = async move || {
        let pool = Pool::connect(std::slice::from_ref(&endpoint), clients.clamp(1, 4)).await?;
        Ok(Arc::new(Put::new(pool, keys, value)))
    };
    if clients <= 1 {
        drive_on_one_thread(setup, plan).await
    } else {
        Ok(drive(setup().await?, &plan).await)
    }
}

/// The TLS files etcd's benchmark tool needs for `t` (those of its system's
/// `--*-cacert/--*-cert/--*-key`).
fn tool_tls(t: &Target, args: &CompareArgs) -> ToolTls {
    let s = &args.systems;
    match t.system {
        System::Logbook => ToolTls {
            cacert: s.logbook_cacert.clone(),
            cert: s.logbook_cert.clone(),
            key: s.logbook_key.clone(),
        },
        System::Etcd => ToolTls {
            cacert: s.etcd_cacert.clone(),
            cert: s.etcd_cert.clone(),
            key: s.etcd_key.clone(),
        },
    }
}
