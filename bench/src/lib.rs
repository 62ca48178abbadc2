//! Logbook's benchmark suite: a load generator for any etcd v3 endpoint
//! (Logbook or etcd alike), the side-by-side comparison `logbook bench` runs
//! by default, and capacity planning against a latency objective.
//!
//! It drives the system under test only through the etcd v3 gRPC API (crate
//! `logbook-api`) and as separate processes, so it measures Logbook exactly
//! as it measures etcd.
//!
//! # Layout
//! - [`cli`]: the clap types of `logbook bench`.
//! - [`client`]: connections (one tonic `Channel` per `--conns`), clients multiplexed over them.
//! - [`keys`]: key and value generation, a seedable random generator.
//! - [`stats`]: HdrHistogram recording and [`stats::Summary`].
//! - [`driver`]: the bounded load loop, closed or open loop (coordinated-omission corrected).
//! - [`workload`]: `put`, `range`, `txn-put`, `watch`, `lease-keepalive`, `mixed`,
//!   `kubernetes` (and `recording`, the summary of a `--request-log` it is derived from).
//! - [`loadgen`]: the load-generator subcommands (setup, drive, teardown).
//! - [`output`]: a run's table and JSON.
//! - [`cluster`]: starting and stopping local Logbook or etcd clusters (real processes).
//! - [`targets`]: which systems run, from which binaries, on which data and report dirs.
//! - [`status`]: small Maintenance queries.
//! - [`disk_probe`]: the disk's pwrite+fdatasync latency, the floor of a durable write.
//! - [`loopback`]: a loopback TCP round trip, the network part of that floor.
//! - [`metrics`]: the members' WAL fsync histograms, scraped from `/metrics`.
//! - [`procstat`]: CPU and RSS of server processes from `/proc`, directory sizes.
//! - [`compare`]: `logbook bench`, the side-by-side ladder.
//! - [`second_opinion`]: etcd's own `benchmark` tool beside the generator on one rung.
//! - [`capacity`]: `logbook bench capacity`, one ramp to the objectives for every
//!   profile: offered rate (`put`) or nodes (`--profile kubernetes`).
//! - [`scale`]: `logbook bench scale`, Kubernetes-size data: memory, big lists, a big
//!   database's restart, catch-up, compaction and defragmentation under load.
//! - [`report`]: tables, `report.md` and `results.json`: [`report::comparison`] and
//!   [`report::capacity`], [`report::scale`].
//! - [`plot`]: the SVG plots.
//!
//! # Example
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     bench: logbook_bench::BenchArgs,
//! }
//! // Put 50 000 keys with 256 clients over 4 connections into a running etcd.
//! let cli = Cli::parse_from(["logbook", "put", "--endpoints", "127.0.0.1:2379",
//!     "--clients", "256", "--conns", "4", "--total", "50000"]);
//! logbook_bench::run(cli.bench).unwrap();
//! ```

pub mod bare;
pub mod capacity;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod compare;
pub mod disk_probe;
pub mod driver;
pub mod keys;
pub mod loadgen;
pub mod loopback;
pub mod metrics;
pub mod output;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod scale;
pub mod second_opinion;
pub mod stats;
pub mod status;
pub mod targets;
pub mod tls;
pub mod wal_backends;
pub mod workload;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use cli::BenchArgs;
use cli::{BenchCommand, CapacityArgs, CompareArgs};
use output::RunReport;

/// Runs `logbook bench` as `args` say, on its own tokio runtime.
pub fn run(args: BenchArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let result = rt.block_on(async move {
        tokio::select! {
            r = dispatch(args) => r,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        }
    });
    // An interrupted run may leave a client loop on a thread of its own
    // (`driver::drive_on_one_thread`): do not wait for it to reach its bounds.
    rt.shutdown_background();
    result
}

async fn dispatch(args: BenchArgs) -> Result<()> {
    if let Some(load) = args.command.as_ref().and_then(BenchCommand::load) {
        if let Some(ca) = &load.cacert {
            let config = tls::client_config(ca, load.cert.as_deref(), load.key.as_deref())?;
            tls::register(&load.endpoints, config)?;
        } else if load.cert.is_some() || load.key.is_some() {
            bail!("--cert and --key need --cacert");
        }
    }
    let (report, json) = match &args.command {
        None => return run_comparison(&args.compare).await.map(drop),
        Some(BenchCommand::Capacity(c)) => return run_capacity(c).await.map(drop),
        Some(BenchCommand::Disk(d)) => return run_disk(d.clone()).await,
        Some(BenchCommand::Scale(s)) => return run_scale(s).await.map(drop),
        Some(BenchCommand::Put(a)) => (loadgen::put(a).await?, &a.json),
        Some(BenchCommand::Range(a)) => (loadgen::range(a).await?, &a.load.json),
        Some(BenchCommand::TxnPut(a)) => (loadgen::txn_put(a).await?, &a.load.json),
        Some(BenchCommand::Watch(a)) => (loadgen::watch(a).await?, &a.load.json),
        Some(BenchCommand::LeaseKeepalive(a)) => (loadgen::lease_keepalive(a).await?, &a.json),
        Some(BenchCommand::Mixed(a)) => (loadgen::mixed(a).await?, &a.load.json),
        Some(BenchCommand::Kubernetes(a)) => (loadgen::kubernetes(a).await?, &a.load.json),
    };
    finish(&report, json.as_deref())
}

/// `logbook bench`: runs the comparison ([`compare::run`]), then writes its
/// report and prints its table; returns the report directory.
pub async fn run_comparison(args: &CompareArgs) -> Result<PathBuf> {
    let (cmp, dir) = compare::run(args).await?;
    report::comparison::write_comparison(&cmp, &dir)?;
    println!("{}", report::comparison::comparison_table(&cmp));
    let none_ran = cmp.systems.iter().all(|s| s.failure.is_some());
    finish_suite(&cmp.notes, &dir, none_ran)?;
    Ok(dir)
}

/// `logbook bench disk`: every WAL backend on the disk under test, side by side.
/// What `logbook bench disk --json` writes: the fdatasync floor (which
/// `logbook bench --disk-floor` takes in) and each WAL backend's figures.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct DiskReport {
    pub floor: disk_probe::DiskFloor,
    #[serde(flatten)]
    pub backends: wal_backends::WalBackends,
}

pub async fn run_disk(args: cli::DiskArgs) -> Result<()> {
    let (dir, _guard) = match &args.data_dir {
        Some(d) => (d.join(format!("disk-{}", std::process::id())), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("logbook-bench-disk-")
                .tempdir()
                .context("creating a temp dir")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let each = std::time::Duration::from_secs_f64(args.secs.clamp(0.05, 600.0));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("probing fdatasync latency in {} ...", dir.display());
    let d = dir.clone();
    let floor = tokio::task::spawn_blocking(move || disk_probe::probe(&d, each, 5_000)).await??;
    println!(
        "fdatasync floor (4 KiB pwrite + fdatasync): p50 {:.3} ms, p99 {:.3} ms",
        floor.fsync.latency_ms.p50, floor.fsync.latency_ms.p99
    );
    eprintln!("measuring the WAL backends in {} ({each:?} each) ...", dir.display());
    let d = dir.clone();
    let appenders = args.appenders.clone();
    let w =
        tokio::task::spawn_blocking(move || wal_backends::measure(&d, each, &appenders)).await??;
    if args.data_dir.is_some() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    print!("{}", wal_backends::table(&w));
    if let Some(path) = &args.json {
        let report = DiskReport { floor, backends: w };
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `logbook bench capacity`: runs the capacity search ([`capacity::run`]),
/// then writes its report and prints its table; returns the report directory.
pub async fn run_capacity(args: &CapacityArgs) -> Result<PathBuf> {
    let (cap, dir) = capacity::run(args).await?;
    report::capacity::write_capacity(&cap, &dir)?;
    println!("{}", report::capacity::capacity_table(&cap));
    let none_ran = cap.systems.iter().all(|s| s.failure.is_some());
    finish_suite(&cap.notes, &dir, none_ran)?;
    Ok(dir)
}

/// `logbook bench scale`: runs the scale measurements ([`scale::run`]), then writes
/// their report and prints their tables; returns the report directory.
pub async fn run_scale(args: &cli::ScaleArgs) -> Result<PathBuf> {
    let (sc, dir) = scale::run(args).await?;
    report::scale::write_scale(&sc, &dir)?;
    println!("{}", report::scale::scale_tables(&sc));
    let none_ran = sc.systems.iter().all(|s| s.failure.is_some());
    finish_suite(&sc.notes, &dir, none_ran)?;
    Ok(dir)
}

/// The end of a comparison or capacity run, once its report is written and
/// its table printed: its notes, where the report is, and an error when no
/// system could be measured.
fn finish_suite(notes: &[String], dir: &Path, none_ran: bool) -> Result<()> {
    for n in notes {
        println!("{n}");
    }
    println!("report: {}", dir.join("report.md").display());
    if none_ran {
        bail!("no system could be measured (see above)");
    }
    Ok(())
}

fn finish(report: &RunReport, json: Option<&Path>) -> Result<()> {
    print!("{}", report.render());
    if let Some(path) = json {
        report.write_json(path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
