//! The `logbook` binary: wiring only. Each subcommand hands its arguments to
//! the crate that implements it.
//!
//! Invoked as `etcd` (a symlink named etcd), or with etcd's flags and no
//! subcommand (`logbook --name n1 ...`), it runs `logbook serve`: a drop-in
//! for the etcd binary in manifests and unit files.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logbook_server::config::{CHECK_CONFIG_ENV, Request, ServeArgs, flags};
use logbook_server::version;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (its `malloc_conf`, read before `main`; `_RJEM_MALLOC_CONF`
/// in the environment still overrides them). Freed memory goes back to the OS from
/// background threads instead of only when some thread next allocates, so an idle member
/// settles at what it uses; and pages freed for `dirty_decay_ms` go straight back
/// (`MADV_DONTNEED`) rather than through jemalloc's "muzzy" state (`MADV_FREE`), whose
/// pages count in RSS until the kernel runs short. See docs/memory.md.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: Option<&'static u8> =
    Some(&b"background_thread:true,dirty_decay_ms:5000,muzzy_decay_ms:0\0"[0]);

/// Logbook: a consistent, replicated key-value store that speaks the etcd v3 API.
#[derive(Debug, Parser)]
#[command(name = "logbook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Logbook version and the etcd API version it serves.
    Version,
    /// Run a cluster member: serves the etcd v3 API on the client URLs (etcd's flags, ETCD_* variables, --config-file; see `logbook serve --help`).
    #[command(disable_help_flag = true)]
    Serve(ServeArgs),
    /// Benchmark: with no subcommand, Logbook against etcd side by side on
    /// this disk; or a load generator against any etcd v3 endpoint.
    Bench(logbook_bench::BenchArgs),
    /// Snapshots in etcd's format: restore a data directory from one, print one's status.
    Snapshot(logbook_server::state::etcd_snapshot::SnapshotArgs),
}

/// The etcd subcommands Logbook does not have.
const ETCD_SUBCOMMANDS: &[&str] = &["gateway", "grpc-proxy"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever RUST_BACKTRACE says: what failed and why.
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(flags) = etcd_mode(&argv) {
        return serve(ServeArgs::from_flags(flags));
    }
    let cli = Cli::parse_from(argv);
    match cli.command {
        Command::Version => {
            println!("Logbook Version: {}", env!("CARGO_PKG_VERSION"));
            println!("etcd API Version: {}", version::ETCD_VERSION);
            Ok(())
        }
        Command::Serve(args) => serve(args),
        Command::Bench(args) => logbook_bench::run(args),
        Command::Snapshot(args) => {
            logbook_server::state::etcd_snapshot::run(args).map_err(|e| anyhow::anyhow!(e))
        }
    }
}

/// The serve flags when the binary runs as etcd: invoked through a file
/// named `etcd`, or with a flag first (`logbook --name n1`). `logbook -h`,
/// `--help`, `-V` and `--version` alone stay Logbook's own.
fn etcd_mode(argv: &[OsString]) -> Option<Vec<String>> {
    let as_etcd = argv
        .first()
        .and_then(|a0| std::path::Path::new(a0).file_name())
        .is_some_and(|name| name == "etcd");
    let args: Vec<String> = argv.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let first = args.first().map(String::as_str);
    let flags_first = first.is_some_and(|a| a.starts_with('-'))
        && !(args.len() == 1 && matches!(first, Some("-h" | "--help" | "-V" | "--version")));
    (as_etcd || flags_first).then_some(args)
}

/// `logbook serve` (or `etcd`): help, version, a configuration check, or a member.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(sub) = args.flags.first().filter(|a| ETCD_SUBCOMMANDS.contains(&a.as_str())) {
        anyhow::bail!(
            "etcd {sub} is not supported by Logbook: it has no proxy modes; run a member (etcd's flags) instead"
        );
    }
    let args = args.with_process_env();
    match args.request() {
        Request::Help => {
            print!("{}", flags::help_text());
            return Ok(());
        }
        Request::Version => {
            print!("{}", version::etcd_version_text());
            return Ok(());
        }
        Request::Run => {}
    }
    if std::env::var(CHECK_CONFIG_ENV).is_ok_and(|v| v == "1") {
        // Internal (tests, tooling): validate, show what start-up would log, exit.
        let cfg = args.into_config()?;
        for line in &cfg.notices {
            eprintln!("info: {line}");
        }
        for line in &cfg.warnings {
            eprintln!("warning: {line}");
        }
        println!("configuration OK");
        return Ok(());
    }
    Ok(logbook_server::member::run(args)?)
}
