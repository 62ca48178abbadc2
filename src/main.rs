//! The `logbook` binary: wiring only. Each subcommand hands its arguments to
//! the crate that implements it.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Logbook: a consistent, replicated key-value store that speaks the etcd v3 API.
#[derive(Debug, Parser)]
#[command(name = "logbook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Logbook version and the etcd API version it serves.
    Version,
    /// Run a cluster member: serves the etcd v3 API on the client URLs (etcd's flags and ETCD_* variables).
    Serve(logbook_server::config::ServeArgs),
    /// Benchmark: with no subcommand, Logbook against etcd side by side on
    /// this disk; or a load generator against any etcd v3 endpoint.
    Bench(logbook_bench::BenchArgs),
    /// Snapshots in etcd's format: restore a data directory from one, print one's status.
    Snapshot(logbook_server::state::etcd_snapshot::SnapshotArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("Logbook Version: {}", env!("CARGO_PKG_VERSION"));
            println!("etcd API Version: 3.5");
            Ok(())
        }
        Command::Serve(args) => Ok(logbook_server::member::run(args)?),
        Command::Bench(args) => logbook_bench::run(args),
        Command::Snapshot(args) => {
            logbook_server::state::etcd_snapshot::run(args).map_err(|e| anyhow::anyhow!(e))
        }
    }
}
