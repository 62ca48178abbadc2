//! The command line of `logbook bench`: clap types only, no behaviour.
//!
//! `logbook bench` with no subcommand runs the comparison ladder
//! ([`CompareArgs`]); each subcommand runs one workload of the load generator
//! against endpoints you name ([`LoadArgs`]), or the capacity search
//! ([`CapacityArgs`]).

use std::path::PathBuf;
use std::time::Duration;

/// `logbook bench [SUBCOMMAND]`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Options of the comparison run (used when no subcommand is given).
    #[command(flatten)]
    pub compare: CompareArgs,
}

/// One load-generator workload, or the capacity search.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Put random (or sequential) keys.
    Put(LoadArgs),
    /// Range reads (single keys, or `--limit` keys from a start key).
    Range(RangeArgs),
    /// Txn with `--txn-ops` puts in its success branch and no compares.
    TxnPut(TxnPutArgs),
    /// Puts while prefix watchers are open; measures event delivery latency.
    Watch(WatchArgs),
    /// LeaseKeepAlive round trips, one lease per client.
    LeaseKeepalive(LoadArgs),
    /// A Kubernetes-like mix: creates, updates, deletes, gets, paginated lists,
    /// leases on events, prefix watches open.
    Mixed(MixedArgs),
    /// What a Kubernetes control plane of --nodes nodes with --pods-per-node
    /// pods each sends its store (a model recorded from a real
    /// kube-apiserver), open loop at the model's rates.
    Kubernetes(KubernetesArgs),
    /// Ramp the offered rate until p99 breaks the SLO; report the highest
    /// sustainable write and read rates and resource use.
    Capacity(Box<CapacityArgs>),
    /// Each WAL backend (sync, io-uring, io-uring-direct) on this disk beside the fdatasync
    /// floor: one appender's commit latency, records/s with several appenders, and what
    /// `--wal-backend auto` chooses here.
    Disk(DiskArgs),
    /// Kubernetes-size data, Logbook and etcd side by side: settled memory after loading
    /// `--keys` objects, 8 clients listing them all at once, put throughput on the full
    /// database, restart time, a new member catching up, compaction and defragmentation
    /// under a 256-client put load.
    Scale(ScaleArgs),
}

/// `logbook bench scale`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct ScaleArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub systems: SystemArgs,
    /// Objects loaded under `/registry/pods/default/` (the 16 GB run: 8000000 with
    /// `--value-size 2048`).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Bytes per object.
    #[arg(long, default_value_t = 2048)]
    pub value_size: usize,
    /// Clients listing the whole prefix at once (one unpaginated Range each).
    #[arg(long, default_value_t = 8)]
    pub list_clients: usize,
    /// Clients of the put rung (on the empty and the full database, and during
    /// compaction and defragmentation).
    #[arg(long, default_value_t = 256)]
    pub rung_clients: usize,
    /// How long each put rung runs (and the steady part before compaction).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    #[serde(serialize_with = "ser_duration")]
    pub rung_duration: Duration,
    /// `--quota-backend-bytes` of the members (default: four times the loaded data,
    /// at least etcd's 2 GiB).
    #[arg(long)]
    pub quota_backend_bytes: Option<u64>,
}

/// `logbook bench disk`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct DiskArgs {
    /// Directory to measure in (default: a temporary directory, removed at the end); put it
    /// on the disk the WAL will live on.
    #[arg(long, alias = "dir")]
    pub data_dir: Option<PathBuf>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 2.0)]
    pub secs: f64,
    /// Appender counts measured after the single appender.
    #[arg(long, value_delimiter = ',', default_values_t = vec![16, 64])]
    pub appenders: Vec<usize>,
    /// Write the figures as JSON here too (`logbook bench --disk-floor` takes
    /// the file in, e.g. measured on a master).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchCommand {
    /// The load options of a load-generator workload.
    pub fn load(&self) -> Option<&LoadArgs> {
        match self {
            BenchCommand::Put(a) | BenchCommand::LeaseKeepalive(a) => Some(a),
            BenchCommand::Range(a) => Some(&a.load),
            BenchCommand::TxnPut(a) => Some(&a.load),
            BenchCommand::Watch(a) => Some(&a.load),
            BenchCommand::Mixed(a) => Some(&a.load),
            BenchCommand::Kubernetes(a) => Some(&a.load),
            BenchCommand::Capacity(_) | BenchCommand::Disk(_) | BenchCommand::Scale(_) => None,
        }
    }
}

/// Read consistency: linearizable (`l`, through the leader) or serializable
/// (`s`, local to the member).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Consistency {
    #[value(name = "l")]
    Linearizable,
    #[value(name = "s")]
    Serializable,
}

/// Options every workload shares (in the spirit of etcd's `benchmark` tool).
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct LoadArgs {
    /// Client URLs, comma separated (`http://` is assumed when missing).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// CA bundle verifying `https://` endpoints (as etcdctl's --cacert).
    #[arg(long)]
    #[serde(skip)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (as etcdctl's --cert).
    #[arg(long)]
    #[serde(skip)]
    pub cert: Option<PathBuf>,
    /// Key of --cert (as etcdctl's --key).
    #[arg(long)]
    #[serde(skip)]
    pub key: Option<PathBuf>,
    /// Concurrent clients (each has at most one request in flight).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// HTTP/2 connections; clients are spread over them round robin.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Stop after this many requests (default 10000 when --duration is absent).
    #[arg(long)]
    pub total: Option<u64>,
    /// Stop after this long (e.g. `30s`, `500ms`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    pub duration: Option<Duration>,
    /// Open loop: offer this many requests per second in total, measuring each
    /// request from its intended send time (corrects coordinated omission).
    /// Without it the run is closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key length in bytes (at least long enough for the key space).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
    /// Walk the key space in order instead of picking keys at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Read consistency for reads: `l` (linearizable) or `s` (serializable).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Prefix of every key the run writes.
    #[arg(long, default_value = "/bench/")]
    pub prefix: String,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
}

/// `logbook bench range`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct RangeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// Read up to this many keys from the chosen key to the end of the
    /// prefix; 0 reads the single key.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Write every key of the key space once before measuring.
    #[arg(long)]
    pub preload: bool,
}

/// `logbook bench txn-put`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct TxnPutArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// Puts per transaction (distinct keys).
    #[arg(long, default_value_t = 1)]
    pub txn_ops: usize,
}

/// `logbook bench watch`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct WatchArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// Prefix watchers open on the key prefix; every put reaches each one.
    #[arg(long, default_value_t = 10)]
    pub watchers: usize,
    /// Watch streams the watchers are spread over.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
}

/// `logbook bench mixed`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct MixedArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    /// Namespaces objects are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// Objects created before measuring, so lists have pages to walk.
    #[arg(long, default_value_t = 2000)]
    pub seed_objects: u64,
}

/// `logbook bench kubernetes`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct KubernetesArgs {
    /// Clients, duration, endpoints, TLS (--rate is the model's, not an option
    /// here; --clients defaults to 64 when left at 1, enough that concurrency
    /// does not limit the offered rate).
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub cluster: KubernetesShape,
}

/// The Kubernetes cluster a run models.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct KubernetesShape {
    /// Nodes: one Lease renewal per node every 10 s, Node status writes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Pods per node (the pods are written before the run).
    #[arg(long, default_value_t = 30)]
    pub pods_per_node: usize,
    /// Pods replaced per hour, as a fraction of all pods (default: the model's).
    #[arg(long)]
    pub churn_per_hour: Option<f64>,
    /// How often the apiserver's compaction runs (kube-apiserver: 5m; default
    /// here: a quarter of the run, at least 1 s, so short runs see some).
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    pub compact_interval: Option<Duration>,
}

/// `logbook bench` (no subcommand): the side-by-side ladder.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct CompareArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub systems: SystemArgs,
    /// Clients per rung; the first rung writes sequential keys.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256,1024")]
    pub rungs: Vec<usize>,
    /// Time spent on each rung.
    #[arg(long, value_parser = parse_duration, default_value = "6s")]
    #[serde(serialize_with = "ser_duration")]
    pub rung_duration: Duration,
    /// Upper bound of requests per rung.
    #[arg(long, default_value_t = 200_000)]
    pub rung_total: u64,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys written by the ladder.
    #[arg(long, default_value_t = 100_000)]
    pub key_space_size: u64,
    /// etcd's own `benchmark` tool, run beside Logbook's generator on one
    /// rung as a second opinion (default: the newest one
    /// scripts/etcd-benchmark-bin.sh built into ~/.cache/logbook).
    #[arg(long)]
    pub etcd_benchmark: Option<PathBuf>,
}

/// Which systems to start, from which binaries, on which disk.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct SystemArgs {
    /// Systems to run: `logbook`, `etcd` (default: both, etcd when found).
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<String>,
    /// The etcd binary (default: the newest release scripts/etcd-bin.sh
    /// built into ~/.cache/logbook, else `etcd` on PATH).
    #[arg(long)]
    pub etcd: Option<PathBuf>,
    /// Measure a Logbook cluster already running (e.g. one member per
    /// master): its client URLs, comma separated. No local Logbook starts;
    /// member CPU, memory and fsyncs are read from each one's `/metrics`.
    #[arg(long, value_delimiter = ',')]
    pub logbook_endpoints: Vec<String>,
    /// Measure an etcd cluster already running: its client URLs.
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// CA bundle to verify the `https://` Logbook endpoints with (etcdctl's --cacert).
    #[arg(long)]
    pub logbook_cacert: Option<PathBuf>,
    /// Client certificate for the Logbook endpoints (etcdctl's --cert).
    #[arg(long)]
    pub logbook_cert: Option<PathBuf>,
    /// Key of --logbook-cert (etcdctl's --key).
    #[arg(long)]
    pub logbook_key: Option<PathBuf>,
    /// CA bundle to verify the `https://` etcd endpoints with.
    #[arg(long)]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for the etcd endpoints.
    #[arg(long)]
    pub etcd_cert: Option<PathBuf>,
    /// Key of --etcd-cert.
    #[arg(long)]
    pub etcd_key: Option<PathBuf>,
    /// The disk floor measured on a master (the JSON of a disk probe, as
    /// `results.json`'s `floor`), used instead of probing this machine's
    /// disk: with deployed clusters the members' disks are elsewhere.
    #[arg(long)]
    pub disk_floor: Option<PathBuf>,
    /// The Logbook binary (default: this executable).
    #[arg(long)]
    pub logbook: Option<PathBuf>,
    /// Directory the clusters' data go to (default: a temporary directory,
    /// removed at the end); put it on the disk you want to measure.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Where report.md and the plots go (default: ./logbook-bench-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    #[serde(skip)]
    pub quiet: bool,
}

/// `logbook bench capacity`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct CapacityArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub systems: SystemArgs,
    /// The latency objective: the highest rate whose p99 stays under it wins.
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    #[serde(serialize_with = "ser_duration")]
    pub slo_p99: Duration,
    /// First offered rate (requests per second).
    #[arg(long, default_value_t = 500.0)]
    pub start_rate: f64,
    /// Each step offers this many times the previous rate.
    #[arg(long, default_value_t = 1.5)]
    pub growth: f64,
    /// Never offer more than this.
    #[arg(long, default_value_t = 200_000.0)]
    pub max_rate: f64,
    /// Time spent at each rate.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    #[serde(serialize_with = "ser_duration")]
    pub step_duration: Duration,
    /// Clients sharing the offered rate (enough that concurrency is not the limit).
    #[arg(long, default_value_t = 256)]
    pub clients: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub key_space_size: u64,
    /// The load ramped: `put` (puts, then reads, by offered rate) or
    /// `kubernetes` (the Kubernetes model, by number of nodes from --nodes).
    #[arg(long, value_enum, default_value = "put")]
    pub profile: CapacityProfile,
    /// The Kubernetes profile's cluster: --nodes is the first size tried.
    #[command(flatten)]
    #[serde(flatten)]
    pub kubernetes: KubernetesShape,
    /// The Kubernetes profile stops growing the cluster here.
    #[arg(long, default_value_t = 20_000)]
    pub max_nodes: usize,
    /// The Kubernetes profile's objective for lists (--slo-p99 is the one for
    /// mutating requests).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    #[serde(serialize_with = "ser_duration")]
    pub slo_list_p99: Duration,
}

/// What `logbook bench capacity` ramps.
#[derive(
    clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CapacityProfile {
    Put,
    Kubernetes,
}

/// Parses `250us`, `10ms`, `1.5s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("bad duration unit {u:?} in {s:?} (use ns, us, ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Top {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn subcommands_and_bare_form_parse() {
        let t = Top::parse_from([
            "x",
            "put",
            "--clients",
            "8",
            "--total",
            "5",
            "--endpoints",
            "a:1,b:2",
        ]);
        match t.bench.command {
            Some(BenchCommand::Put(a)) => {
                assert_eq!(a.clients, 8);
                assert_eq!(a.total, Some(5));
                assert_eq!(a.endpoints, vec!["a:1", "b:2"]);
            }
            other => panic!("parsed {other:?}"),
        }
        let t = Top::parse_from(["x", "--systems", "etcd", "--rungs", "1,4"]);
        assert!(t.bench.command.is_none());
        assert_eq!(t.bench.compare.systems.systems, vec!["etcd"]);
        assert_eq!(t.bench.compare.rungs, vec![1, 4]);
        let t = Top::parse_from(["x", "capacity", "--slo-p99", "5ms"]);
        match t.bench.command {
            Some(BenchCommand::Capacity(c)) => assert_eq!(c.slo_p99, Duration::from_millis(5)),
            other => panic!("parsed {other:?}"),
        }
        let t = Top::parse_from(["x", "scale", "--keys", "8000000", "--value-size", "2048"]);
        match t.bench.command {
            Some(BenchCommand::Scale(s)) => {
                assert_eq!((s.keys, s.value_size, s.list_clients), (8_000_000, 2048, 8));
                assert_eq!(s.rung_clients, 256);
            }
            other => panic!("parsed {other:?}"),
        }
        let t = Top::parse_from(["x", "range", "--consistency", "s", "--limit", "10"]);
        match t.bench.command {
            Some(BenchCommand::Range(r)) => {
                assert_eq!(r.load.consistency, Consistency::Serializable);
                assert_eq!(r.limit, 10);
            }
            other => panic!("parsed {other:?}"),
        }
    }
}
