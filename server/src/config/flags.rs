//! The table of every flag of etcd 3.4, 3.5 and 3.6 (`etcd --help` and the
//! flags etcd registers without listing them), and what Logbook does with
//! each, plus Logbook's own few ([`LOGBOOK_ONLY`]). It is the one place that says so: the command line, the `ETCD_*`
//! variables, the config file and `--help` all read it.
//!
//! What Logbook does with a flag ([`Handling`]):
//!
//! - [`Handling::Used`]: etcd's meaning, implemented (or already how
//!   Logbook behaves, said in the entry's comment).
//! - [`Handling::Pending`]: parsed and validated into the named typed
//!   [`Config`](super::Config) field with etcd's default, but the server does
//!   not act on it yet. **This is the list of flags whose behaviour the server
//!   code still has to wire**; `cargo test -p logbook-server pending_flags`
//!   prints it.
//! - [`Handling::Warn`]: accepted; a value other than etcd's default logs the
//!   one-line warning at start-up (the setting cannot change correctness).
//!   [`Handling::WarnIfGiven`] warns whenever the flag is given, even with
//!   etcd's default.
//! - [`Handling::Refused`]: a value other than etcd's default is refused with
//!   one line naming the flag and the reason (a feature Logbook deliberately
//!   lacks: the v2 API and its proxy, the discovery service).
//! - [`Handling::Renamed`]: etcd 3.6 promoted an `--experimental-*` flag
//!   under a new name; the old name sets the new flag (setting both is an
//!   error, as in etcd 3.6).
//! - [`Handling::Gate`]: an `--experimental-*` boolean that etcd 3.6 turned
//!   into a `--feature-gates` entry; it sets that gate.
//! - [`Handling::Ignored`]: etcd's own list of long-removed flags, which it
//!   accepts with "flag is no longer supported - ignoring".

/// How a flag's value is written and checked (Go's flag types as etcd uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Go's `BoolVar`: `--flag`, `--flag=true|false` (never `--flag false`).
    Bool,
    /// Any text.
    Str,
    /// Go's `UintVar`/`Uint64Var`/`Uint32Value`: an unsigned number of that many bits.
    Uint(u32),
    /// Go's `IntVar`/`Int64Var`: a signed number of that many bits.
    Int(u32),
    /// Go's `DurationVar`: "5s", "100ms", "1h30m".
    Duration,
    /// A comma-separated list (URLs, names, cipher suites, outputs).
    List,
    /// One of a fixed set of words (etcd's `SelectiveStringValue`).
    Choice(&'static [&'static str]),
    /// etcd's `IgnoredFlag`: takes no value (any `=value` is dropped).
    Obsolete,
}

impl Kind {
    /// Whether `--flag` alone means `--flag=true` (Go's `IsBoolFlag`).
    pub fn is_bool(self) -> bool {
        matches!(self, Kind::Bool | Kind::Obsolete)
    }
}

/// What Logbook does with a flag (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Used,
    /// The `Config` field(s) it is parsed into, for the server to act on.
    Pending(&'static str),
    /// The warning logged when it is set to anything but its default.
    Warn(&'static str),
    /// The warning logged whenever it is given.
    WarnIfGiven(&'static str),
    /// Why Logbook refuses it (when set to anything but its default).
    Refused(&'static str),
    /// The flag that replaced it in etcd 3.6.
    Renamed(&'static str),
    /// The `--feature-gates` entry that replaced it in etcd 3.6.
    Gate(&'static str),
    Ignored,
}

/// One etcd flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The name without dashes, as etcd registers it.
    pub name: &'static str,
    pub kind: Kind,
    /// etcd's default, as text in the flag's own syntax.
    pub default: &'static str,
    pub handling: Handling,
    /// etcd's help line.
    pub help: &'static str,
}

impl Flag {
    /// `ETCD_NAME` for `name`: upper case, dashes as underscores.
    pub fn env_key(&self) -> String {
        env_key(self.name)
    }
}

/// etcd's `flags.FlagToEnv("ETCD", name)`.
pub fn env_key(name: &str) -> String {
    format!("ETCD_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Flags of Logbook's own, which etcd does not have. They are in [`FLAGS`] like etcd's, read
/// from the command line, the config file and `ETCD_*` variables alike, and also from a
/// `LOGBOOK_*` variable ([`logbook_env_key`]), which an etcd binary given the same
/// environment does not warn about.
pub const LOGBOOK_ONLY: &[&str] =
    &["wal-backend", "request-log", "latest-cache-bytes", "page-cache-bytes"];

/// Whether `name` is one of Logbook's own flags ([`LOGBOOK_ONLY`]).
pub fn is_logbook_only(name: &str) -> bool {
    LOGBOOK_ONLY.contains(&name)
}

/// `LOGBOOK_WAL_BACKEND` for `wal-backend`: the second variable a Logbook-only flag is read from.
pub fn logbook_env_key(name: &str) -> String {
    format!("LOGBOOK_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The flag named `name`, if etcd (or Logbook, see [`LOGBOOK_ONLY`]) has one.
pub fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

const V2_API: &str = "Logbook serves the etcd v3 API only; the v2 API (and its emulation over v3) is not implemented";
const V2_PROXY: &str =
    "Logbook has no v2 proxy mode (etcd removed it in 3.6); run Logbook as a cluster member";
const DISCOVERY: &str =
    "Logbook does not bootstrap from a discovery service; list the members with --initial-cluster";
const TRACING: &str =
    "Logbook does not export OpenTelemetry traces; the distributed tracing flags are ignored";
const NO_BBOLT: &str = "Logbook's engine is not bbolt; the bbolt freelist type is ignored";
const NO_CAPNSLOG: &str = "Logbook logs zap's lines (etcd 3.5's and 3.6's); --logger=capnslog (etcd 3.4's format) is not implemented";

macro_rules! flag {
    ($name:literal, $kind:expr, $default:literal, $handling:expr, $help:literal) => {
        Flag { name: $name, kind: $kind, default: $default, handling: $handling, help: $help }
    };
}

use Handling::*;
use Kind::*;

/// Every etcd 3.4-3.6 flag, grouped as etcd's `--help` groups them.
#[rustfmt::skip]
pub static FLAGS: &[Flag] = &[
    // ---- Member ----
    flag!("name", Str, "default", Used, "Human-readable name for this member."),
    flag!("data-dir", Str, "", Used, "Path to the data directory (default: \"<name>.logbook\")."),
    flag!("wal-dir", Str, "", Used, "Path to the dedicated wal directory."),
    flag!("snapshot-count", Uint(64), "100000", Used, "Number of committed transactions to trigger a snapshot to disk."),
    flag!("heartbeat-interval", Uint(64), "100", Used, "Time (in milliseconds) of a heartbeat interval."),
    flag!("election-timeout", Uint(64), "1000", Used, "Time (in milliseconds) for an election to timeout."),
    flag!("initial-election-tick-advance", Bool, "true", Used, "Whether to fast-forward initial election ticks on boot for faster election."),
    flag!("listen-peer-urls", List, "http://localhost:2380", Used, "List of URLs to listen on for peer traffic."),
    flag!("listen-client-urls", List, "http://localhost:2379", Used, "List of URLs to listen on for client grpc traffic and http as long as --listen-client-http-urls is not specified."),
    // The client URLs then serve gRPC only (HTTP/2), these URLs the HTTP side only.
    flag!("listen-client-http-urls", List, "", Used, "List of URLs to listen on for http only client traffic. Enabling this flag removes http services from --listen-client-urls."),
    // Logbook writes no snapshot files: the engine's database is the snapshot
    // (raft/storage.rs), so there is never more than one to retain.
    flag!("max-snapshots", Uint(64), "5", Used, "Maximum number of snapshot files to retain (0 is unlimited)."),
    // WAL segment files past what the log needs are removed down to this many.
    flag!("max-wals", Uint(64), "5", Used, "Maximum number of wal files to retain (0 is unlimited)."),
    flag!("memory-mlock", Bool, "false", Warn("Logbook does not mlock its memory; --memory-mlock is ignored"), "Enable to enforce etcd pages (in particular bbolt) to stay in RAM."),
    flag!("quota-backend-bytes", Int(64), "0", Used, "Sets the maximum size (in bytes) that the backend database may consume. Set to 0 to use the default 2GiB limit."),
    flag!("backend-bbolt-freelist-type", Str, "map", Warn(NO_BBOLT), "BackendFreelistType specifies the type of freelist that boltdb backend uses(array and map are supported types)."),
    // The engine's background commit batching (0: its defaults, etcd's 100ms and 10000).
    flag!("backend-batch-interval", Duration, "0s", Used, "BackendBatchInterval is the maximum time before commit the backend transaction."),
    flag!("backend-batch-limit", Int(64), "0", Used, "BackendBatchLimit is the maximum operations before commit the backend transaction."),
    flag!("max-txn-ops", Uint(64), "128", Used, "Maximum number of operations permitted in a transaction."),
    flag!("max-request-bytes", Uint(64), "1572864", Used, "Maximum client request size in bytes the server will accept."),
    flag!("max-concurrent-streams", Uint(32), "4294967295", Used, "Maximum concurrent streams that each client can open at a time."),
    // grpc-go's enforcement policy (GOAWAY too_many_pings), http/ping_policy.rs.
    flag!("grpc-keepalive-min-time", Duration, "5s", Used, "Minimum duration interval that a client should wait before pinging server."),
    flag!("grpc-keepalive-interval", Duration, "2h", Used, "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable)."),
    flag!("grpc-keepalive-timeout", Duration, "20s", Used, "Additional duration of wait before closing a non-responsive connection (0 to disable)."),
    flag!("socket-reuse-port", Bool, "false", Used, "Enable to set socket option SO_REUSEPORT on listeners allowing rebinding of a port already in use."),
    // Logbook's listeners always set SO_REUSEADDR (Rust's and tokio's bind do).
    flag!("socket-reuse-address", Bool, "false", Used, "Enable to set socket option SO_REUSEADDR on listeners allowing binding to an address in TIME_WAIT state."),
    flag!("enable-grpc-gateway", Bool, "true", Used, "Enable GRPC gateway."),
    // The Raft lanes' read and write stall limits (peer::lane::Timeouts).
    flag!("raft-read-timeout", Duration, "5s", Used, "Read timeout set on each rafthttp connection"),
    flag!("raft-write-timeout", Duration, "5s", Used, "Write timeout set on each rafthttp connection"),
    flag!("feature-gates", Str, "", Used, "A set of key=value pairs that describe server level feature gates for alpha/experimental features (see the entries below)."),
    // ---- Clustering ----
    flag!("initial-advertise-peer-urls", List, "http://localhost:2380", Used, "List of this member's peer URLs to advertise to the rest of the cluster."),
    flag!("initial-cluster", Str, "", Used, "Initial cluster configuration for bootstrapping (default: \"<name>=<initial-advertise-peer-urls>\")."),
    flag!("initial-cluster-state", Choice(&["new", "existing"]), "new", Used, "Initial cluster state ('new' when bootstrapping a new cluster or 'existing' when adding new members to an existing cluster)."),
    flag!("initial-cluster-token", Str, "etcd-cluster", Used, "Initial cluster token for the etcd cluster during bootstrap."),
    flag!("advertise-client-urls", List, "http://localhost:2379", Used, "List of this member's client URLs to advertise to the public."),
    flag!("discovery", Str, "", Refused(DISCOVERY), "Discovery URL used to bootstrap the cluster for v2 discovery."),
    flag!("discovery-token", Str, "", Refused(DISCOVERY), "V3 discovery: discovery token for the etcd cluster to be bootstrapped."),
    flag!("discovery-endpoints", List, "", Refused(DISCOVERY), "V3 discovery: List of gRPC endpoints of the discovery service."),
    flag!("discovery-dial-timeout", Duration, "2s", Refused(DISCOVERY), "V3 discovery: dial timeout for client connections."),
    flag!("discovery-request-timeout", Duration, "5s", Refused(DISCOVERY), "V3 discovery: timeout for discovery requests (excluding dial timeout)."),
    flag!("discovery-keepalive-time", Duration, "2s", Refused(DISCOVERY), "V3 discovery: keepalive time for client connections."),
    flag!("discovery-keepalive-timeout", Duration, "6s", Refused(DISCOVERY), "V3 discovery: keepalive timeout for client connections."),
    flag!("discovery-insecure-transport", Bool, "true", Refused(DISCOVERY), "V3 discovery: disable transport security for client connections."),
    flag!("discovery-insecure-skip-tls-verify", Bool, "false", Refused(DISCOVERY), "V3 discovery: skip server certificate verification."),
    flag!("discovery-cert", Str, "", Refused(DISCOVERY), "V3 discovery: identify secure client using this TLS certificate file."),
    flag!("discovery-key", Str, "", Refused(DISCOVERY), "V3 discovery: identify secure client using this TLS key file."),
    flag!("discovery-cacert", Str, "", Refused(DISCOVERY), "V3 discovery: verify certificates of TLS-enabled secure servers using this CA bundle."),
    flag!("discovery-user", Str, "", Refused(DISCOVERY), "V3 discovery: username[:password] for authentication."),
    flag!("discovery-password", Str, "", Refused(DISCOVERY), "V3 discovery: password for authentication."),
    flag!("discovery-fallback", Choice(&["exit", "proxy"]), "exit", Refused(V2_PROXY), "Expected behavior ('exit') when discovery services fails."),
    flag!("discovery-proxy", Str, "", Refused(DISCOVERY), "HTTP proxy to use for traffic to discovery service."),
    flag!("discovery-srv", Str, "", Refused(DISCOVERY), "DNS srv domain used to bootstrap the cluster."),
    flag!("discovery-srv-name", Str, "", Refused(DISCOVERY), "Suffix to the dns srv name queried when bootstrapping."),
    flag!("strict-reconfig-check", Bool, "true", Used, "Reject reconfiguration requests that would cause quorum loss."),
    flag!("pre-vote", Bool, "true", Used, "Enable the raft Pre-Vote algorithm to prevent disruption when a node that has been partitioned away rejoins the cluster."),
    flag!("auto-compaction-retention", Str, "0", Used, "Auto compaction retention length. 0 means disable auto compaction."),
    flag!("auto-compaction-mode", Str, "periodic", Used, "Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention."),
    flag!("enable-v2", Bool, "false", Refused(V2_API), "Accept etcd V2 client requests."),
    // Logbook has no v2 store: every deprecation phase already holds.
    flag!("v2-deprecation", Choice(&["not-yet", "write-only", "write-only-skip-check", "write-only-drop-data", "gone"]), "write-only", Used, "Phase of v2store deprecation."),
    // ---- Security ----
    flag!("cert-file", Str, "", Used, "Path to the client server TLS cert file."),
    flag!("key-file", Str, "", Used, "Path to the client server TLS key file."),
    flag!("client-cert-auth", Bool, "false", Used, "Enable client cert authentication."),
    flag!("client-cert-file", Str, "", Used, "Path to an explicit peer client TLS cert file otherwise cert file will be used when client auth is required."),
    flag!("client-key-file", Str, "", Used, "Path to an explicit peer client TLS key file otherwise key file will be used when client auth is required."),
    flag!("client-crl-file", Str, "", Used, "Path to the client certificate revocation list file."),
    flag!("client-cert-allowed-hostname", List, "", Used, "Comma-separated list of SAN hostnames for client cert authentication."),
    flag!("trusted-ca-file", Str, "", Used, "Path to the client server TLS trusted CA cert file."),
    flag!("auto-tls", Bool, "false", Used, "Client TLS using generated certificates."),
    flag!("peer-cert-file", Str, "", Used, "Path to the peer server TLS cert file."),
    flag!("peer-key-file", Str, "", Used, "Path to the peer server TLS key file."),
    flag!("peer-client-cert-auth", Bool, "false", Used, "Enable peer client cert authentication."),
    flag!("peer-client-cert-file", Str, "", Used, "Path to an explicit peer client TLS cert file otherwise peer cert file will be used when client auth is required."),
    flag!("peer-client-key-file", Str, "", Used, "Path to an explicit peer client TLS key file otherwise peer key file will be used when client auth is required."),
    flag!("peer-trusted-ca-file", Str, "", Used, "Path to the peer server TLS trusted CA file."),
    flag!("peer-cert-allowed-cn", List, "", Used, "Comma-separated list of allowed CNs for inter-peer TLS authentication."),
    flag!("peer-cert-allowed-hostname", List, "", Used, "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication."),
    flag!("peer-auto-tls", Bool, "false", Used, "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided."),
    flag!("self-signed-cert-validity", Uint(64), "1", Used, "The validity period (in years) of the client and peer certificates that are automatically generated with --auto-tls and --peer-auto-tls."),
    flag!("peer-crl-file", Str, "", Used, "Path to the peer certificate revocation list file."),
    flag!("peer-skip-client-san-verification", Bool, "false", Used, "Skip verification of SAN field in client certificate for peer connections."),
    flag!("experimental-peer-skip-client-san-verification", Bool, "false", Renamed("peer-skip-client-san-verification"), "Skip verification of SAN field in client certificate for peer connections."),
    flag!("cipher-suites", List, "", Used, "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated)."),
    flag!("cors", List, "*", Used, "Comma-separated whitelist of origins for CORS, or cross-origin resource sharing, (empty or * means allow all)."),
    flag!("host-whitelist", List, "*", Used, "Acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all)."),
    flag!("tls-min-version", Str, "TLS1.2", Used, "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3."),
    flag!("tls-max-version", Str, "", Used, "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty: the highest available)."),
    // ---- Auth ----
    // "simple", "jwt,..." and "" are served (`Config::auth_token`, state/auth_token.rs).
    flag!("auth-token", Str, "simple", Used, "Specify a v3 authentication token type and its options ('simple' or 'jwt')."),
    flag!("bcrypt-cost", Uint(64), "10", Used, "Specify the cost / strength of the bcrypt algorithm for hashing auth passwords. Valid values are between 4 and 31."),
    flag!("auth-token-ttl", Uint(64), "300", Used, "Time (in seconds) of the auth-token-ttl."),
    // ---- Profiling and Monitoring ----
    // A CPU profile in pprof's format at /debug/pprof/profile (http/pprof.rs); no heap profile.
    flag!("enable-pprof", Bool, "false", Used, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\""),
    // "extensive" adds grpc_server_handling_seconds for unary calls.
    flag!("metrics", Str, "basic", Used, "Set level of detail for exported metrics, specify 'extensive' to include server side grpc histogram metrics."),
    flag!("listen-metrics-urls", List, "", Used, "List of URLs to listen on for the /metrics and /health endpoints."),
    // ---- Logging ----
    flag!("logger", Choice(&["zap", "capnslog"]), "zap", Warn(NO_CAPNSLOG), "Currently only supports 'zap' for structured logging."),
    flag!("log-outputs", List, "default", Used, "Specify 'stdout' or 'stderr' to skip journald logging even when running under systemd, or list of comma separated output targets."),
    flag!("log-output", List, "default", Renamed("log-outputs"), "[etcd 3.4, deprecated] use '--log-outputs'."),
    flag!("log-level", Choice(&["debug", "info", "warn", "error", "panic", "fatal"]), "info", Used, "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    flag!("log-format", Choice(&["json", "console"]), "json", Used, "Configures log format. Only supports json, console."),
    flag!("enable-log-rotation", Bool, "false", Used, "Enable log rotation of a single log-outputs file target."),
    flag!("log-rotation-config-json", Str, r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#, Used, "Configures log rotation if enabled with a JSON logger config."),
    flag!("warning-unary-request-duration", Duration, "300ms", Used, "Set time duration after which a warning is logged if a unary request takes more than this duration."),
    flag!("experimental-warning-unary-request-duration", Duration, "0s", Renamed("warning-unary-request-duration"), "Set time duration after which a warning is generated if a unary request takes more than this duration."),
    flag!("debug", Bool, "false", Used, "[etcd 3.4, deprecated] Enable debug-level logging. Use '--log-level=debug' instead."),
    flag!("log-package-levels", Str, "", Warn("Logbook has no per-package log levels; use --log-level (or RUST_LOG)"), "[etcd 3.4, deprecated] Specify a particular log level for each etcd package."),
    // ---- Distributed tracing ----
    flag!("enable-distributed-tracing", Bool, "false", Warn(TRACING), "Enable distributed tracing."),
    flag!("experimental-enable-distributed-tracing", Bool, "false", Renamed("enable-distributed-tracing"), "Enable experimental distributed tracing."),
    flag!("distributed-tracing-address", Str, "localhost:4317", Warn(TRACING), "Distributed tracing collector address."),
    flag!("experimental-distributed-tracing-address", Str, "localhost:4317", Renamed("distributed-tracing-address"), "Distributed tracing collector address."),
    flag!("distributed-tracing-service-name", Str, "etcd", Warn(TRACING), "Distributed tracing service name, must be same across all etcd instances."),
    flag!("experimental-distributed-tracing-service-name", Str, "etcd", Renamed("distributed-tracing-service-name"), "Distributed tracing service name."),
    flag!("distributed-tracing-instance-id", Str, "", Warn(TRACING), "Distributed tracing instance ID, must be unique per each etcd instance."),
    flag!("experimental-distributed-tracing-instance-id", Str, "", Renamed("distributed-tracing-instance-id"), "Distributed tracing instance ID."),
    flag!("distributed-tracing-sampling-rate", Int(64), "0", Warn(TRACING), "Number of samples to collect per million spans for distributed tracing."),
    flag!("experimental-distributed-tracing-sampling-rate", Int(64), "0", Renamed("distributed-tracing-sampling-rate"), "Number of samples to collect per million spans."),
    // ---- Experimental features (3.6 names first, then the deprecated ones) ----
    flag!("experimental-initial-corrupt-check", Bool, "false", Gate("InitialCorruptCheck"), "Enable to check data corruption before serving any client/peer traffic."),
    flag!("corrupt-check-time", Duration, "0s", Used, "Duration of time between cluster corruption check passes."),
    flag!("experimental-corrupt-check-time", Duration, "0s", Renamed("corrupt-check-time"), "Duration of time between cluster corruption check passes."),
    flag!("experimental-compact-hash-check-enabled", Bool, "false", Gate("CompactHashCheck"), "Enable leader to periodically check followers compaction hashes."),
    flag!("compact-hash-check-time", Duration, "1m", Used, "Duration of time between leader checks followers compaction hashes."),
    flag!("experimental-compact-hash-check-time", Duration, "1m", Renamed("compact-hash-check-time"), "Duration of time between leader checks followers compaction hashes."),
    flag!("experimental-enable-lease-checkpoint", Bool, "false", Gate("LeaseCheckpoint"), "Enable leader to send regular checkpoints to other members to prevent reset of remaining TTL on leader change."),
    flag!("experimental-enable-lease-checkpoint-persist", Bool, "false", Gate("LeaseCheckpointPersist"), "Enable persisting remainingTTL to prevent indefinite auto-renewal of long lived leases."),
    flag!("compaction-batch-limit", Int(64), "1000", Used, "CompactionBatchLimit sets the maximum revisions deleted in each compaction batch."),
    flag!("experimental-compaction-batch-limit", Int(64), "1000", Renamed("compaction-batch-limit"), "Sets the maximum revisions deleted in each compaction batch."),
    flag!("compaction-sleep-interval", Duration, "0s", Used, "Sets the sleep interval between each compaction batch."),
    flag!("experimental-compaction-sleep-interval", Duration, "0s", Renamed("compaction-sleep-interval"), "Sets the sleep interval between each compaction batch."),
    flag!("watch-progress-notify-interval", Duration, "10m", Used, "Duration of periodical watch progress notification."),
    flag!("experimental-watch-progress-notify-interval", Duration, "10m", Renamed("watch-progress-notify-interval"), "Duration of periodical watch progress notification."),
    flag!("warning-apply-duration", Duration, "100ms", Used, "Warning is generated if requests take more than this duration."),
    flag!("experimental-warning-apply-duration", Duration, "100ms", Renamed("warning-apply-duration"), "Warning is generated if requests take more than this duration."),
    // Logbook's write transactions read through one buffer already.
    flag!("experimental-txn-mode-write-with-shared-buffer", Bool, "true", Gate("TxnModeWriteWithSharedBuffer"), "Enable the write transaction to use a shared buffer in its readonly check operations."),
    flag!("bootstrap-defrag-threshold-megabytes", Uint(64), "0", Warn("Logbook does not defragment at start-up; --bootstrap-defrag-threshold-megabytes is ignored"), "Enable the defrag during etcd server bootstrap on condition that it will free at least the provided threshold of disk space."),
    flag!("experimental-bootstrap-defrag-threshold-megabytes", Uint(64), "0", Renamed("bootstrap-defrag-threshold-megabytes"), "Enable the defrag during etcd server bootstrap."),
    flag!("max-learners", Int(64), "1", Used, "Set the max number of learner members allowed in the cluster membership."),
    flag!("downgrade-check-time", Duration, "5s", Warn("every Logbook member runs one etcd version, so a downgrade never completes by itself (it ends with a cancel); --downgrade-check-time is ignored"), "Duration of time between two downgrade status checks."),
    flag!("experimental-downgrade-check-time", Duration, "5s", Renamed("downgrade-check-time"), "Duration of time between two downgrade status checks."),
    flag!("experimental-memory-mlock", Bool, "false", Renamed("memory-mlock"), "Enable to enforce etcd pages (in particular bbolt) to stay in RAM."),
    flag!("snapshot-catchup-entries", Uint(64), "5000", Used, "Number of entries for a slow follower to catch up after compacting the raft storage entries."),
    flag!("experimental-snapshot-catchup-entries", Uint(64), "5000", Renamed("snapshot-catchup-entries"), "Number of entries for a slow follower to catch up after compacting the raft storage entries."),
    flag!("experimental-stop-grpc-service-on-defrag", Bool, "false", Gate("StopGRPCServiceOnDefrag"), "Enable etcd gRPC service to stop serving client requests on defragmentation."),
    flag!("experimental-backend-bbolt-freelist-type", Str, "array", Warn(NO_BBOLT), "[etcd 3.4] the type of freelist that boltdb backend uses (array and map are supported types)."),
    flag!("experimental-enable-v2v3", Str, "", Refused(V2_API), "Serve v2 requests through the v3 backend under a given prefix."),
    flag!("next-cluster-version-compatible", Bool, "false", Warn("Logbook has no 3.4-to-3.5 schema migration; --next-cluster-version-compatible is ignored"), "[etcd 3.4] Enable 3.4 to be compatible with next version 3.5."),
    // ---- Unsafe ----
    flag!("force-new-cluster", Bool, "false", Used, "Force to create a new one-member cluster."),
    flag!("unsafe-no-fsync", Bool, "false", Warn("Logbook always syncs its WAL; --unsafe-no-fsync is ignored"), "Disables fsync, unsafe, will cause data loss."),
    // ---- v2 proxy (etcd 3.4, 3.5) ----
    flag!("proxy", Choice(&["off", "readonly", "on"]), "off", Refused(V2_PROXY), "Proxy mode setting ('off', 'readonly' or 'on')."),
    flag!("proxy-failure-wait", Uint(64), "5000", Refused(V2_PROXY), "Time (in milliseconds) an endpoint will be held in a failed state."),
    flag!("proxy-refresh-interval", Uint(64), "30000", Refused(V2_PROXY), "Time (in milliseconds) of the endpoints refresh interval."),
    flag!("proxy-dial-timeout", Uint(64), "1000", Refused(V2_PROXY), "Time (in milliseconds) for a dial to timeout."),
    flag!("proxy-write-timeout", Uint(64), "5000", Refused(V2_PROXY), "Time (in milliseconds) for a write to timeout."),
    flag!("proxy-read-timeout", Uint(64), "0", Refused(V2_PROXY), "Time (in milliseconds) for a read to timeout."),
    // ---- etcd's own command-line flags ----
    flag!("config-file", Str, "", Used, "Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored."),
    flag!("version", Bool, "false", Used, "Print the version and exit."),
    // ---- Logbook's own flags (not etcd's; see LOGBOOK_ONLY) ----
    flag!("wal-backend", Choice(&["auto", "io-uring", "io-uring-direct", "sync"]), "auto", Used, "How the WAL makes a batch durable: 'sync' (pwrite + fdatasync), 'io-uring' (linked write + fdatasync), 'io-uring-direct' (O_DIRECT write with RWF_DSYNC, FUA where the device has it), or 'auto': probe the WAL directory at start-up and use the fastest."),
    flag!("request-log", Str, "", Used, "Log each client request's kind, key prefix, sizes and txn shape (never keys' or values' contents) to this file, one JSON line per request. Off when empty."),
    flag!("latest-cache-bytes", Uint(64), "33554432", Used, "Bytes of keys' latest values the engine keeps in memory beside its key index, so reads at the current revision need no page of the db file (the OS page cache holds the file too; see docs/memory.md)."),
    flag!("page-cache-bytes", Uint(64), "33554432", Used, "Bytes of db file pages (checked, decoded copies) the engine keeps in memory."),
    // ---- etcd's ignored flags (long removed; etcd accepts them with a warning) ----
    flag!("cluster-active-size", Obsolete, "", Ignored, ""),
    flag!("cluster-remove-delay", Obsolete, "", Ignored, ""),
    flag!("cluster-sync-interval", Obsolete, "", Ignored, ""),
    flag!("config", Obsolete, "", Ignored, ""),
    flag!("force", Obsolete, "", Ignored, ""),
    flag!("max-result-buffer", Obsolete, "", Ignored, ""),
    flag!("max-retry-attempts", Obsolete, "", Ignored, ""),
    flag!("peer-heartbeat-interval", Obsolete, "", Ignored, ""),
    flag!("peer-election-timeout", Obsolete, "", Ignored, ""),
    flag!("retry-interval", Obsolete, "", Ignored, ""),
    flag!("snapshot", Obsolete, "", Ignored, ""),
    flag!("v", Obsolete, "", Ignored, ""),
    flag!("vv", Obsolete, "", Ignored, ""),
    flag!("test.coverprofile", Obsolete, "", Ignored, ""),
    flag!("test.outputdir", Obsolete, "", Ignored, ""),
];

/// etcd 3.6's server feature gates: name, default, and whether it is alpha
/// (`AllAlpha` sets those) or beta (`AllBeta`).
pub static FEATURE_GATES: &[(&str, bool, bool)] = &[
    ("StopGRPCServiceOnDefrag", false, true),
    ("TxnModeWriteWithSharedBuffer", true, false),
    ("InitialCorruptCheck", false, true),
    ("CompactHashCheck", false, true),
    ("LeaseCheckpoint", false, true),
    ("LeaseCheckpointPersist", false, true),
    ("SetMemberLocalAddr", false, true),
];

/// What Logbook does with each feature gate, as [`Handling`] says for flags.
pub static GATE_HANDLING: &[(&str, Handling)] = &[
    (
        "StopGRPCServiceOnDefrag",
        Warn("Logbook keeps serving during defragmentation; StopGRPCServiceOnDefrag is ignored"),
    ),
    // Logbook's write transactions read through one buffer already.
    ("TxnModeWriteWithSharedBuffer", Used),
    ("InitialCorruptCheck", Used),
    ("CompactHashCheck", Used),
    ("LeaseCheckpoint", Used),
    ("LeaseCheckpointPersist", Used),
    // Peer connections leave from the advertised peer IP (tls::PeerDialer).
    ("SetMemberLocalAddr", Used),
];

/// The flags whose behaviour is pending in the server, with the field each
/// is parsed into: the lead's wiring list.
pub fn pending() -> impl Iterator<Item = (&'static str, &'static str)> {
    let flags = FLAGS.iter().filter_map(|f| match f.handling {
        Pending(field) => Some((f.name, field)),
        _ => None,
    });
    let gates = GATE_HANDLING.iter().filter_map(|(g, h)| match h {
        Pending(field) => Some((*g, *field)),
        _ => None,
    });
    flags.chain(gates)
}

/// `--help` for `logbook serve` (and `etcd --help`): every flag with its
/// default and, where it differs from etcd, what Logbook does with it.
pub fn help_text() -> String {
    let mut out = String::from(
        "Usage:\n\n  logbook serve [flags]    (or: etcd [flags], through a symlink named etcd)\n    Start a Logbook member. Flags, ETCD_* environment variables and --config-file YAML as etcd takes them;\n    Go's flag syntax: -name value, --name value, --name=value; booleans as --flag or --flag=false.\n\nFlags:\n",
    );
    for f in FLAGS.iter().filter(|f| !f.help.is_empty()) {
        let note = match f.handling {
            Used => String::new(),
            Pending(_) => " [accepted; not yet acted on by Logbook]".to_string(),
            Warn(_) | WarnIfGiven(_) => " [accepted and ignored, with a warning]".to_string(),
            Refused(why) => format!(" [refused: {why}]"),
            Renamed(to) => format!(" [deprecated: use --{to}]"),
            Gate(g) => format!(" [deprecated: use --feature-gates={g}=true]"),
            Ignored => String::new(),
        };
        let note = if is_logbook_only(f.name) {
            format!("{note} [Logbook only; also {}]", logbook_env_key(f.name))
        } else {
            note
        };
        out.push_str(&format!("  --{} '{}'\n    {}{note}\n", f.name, f.default, f.help));
    }
    out.push_str("\nFeature gates (--feature-gates=Name=true,...):\n");
    for (name, default, alpha) in FEATURE_GATES {
        let stage = if *alpha { "ALPHA" } else { "BETA" };
        out.push_str(&format!("    {name}=true|false ({stage} - default={default})\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_renames_resolve() {
        for (i, f) in FLAGS.iter().enumerate() {
            assert!(FLAGS[i + 1..].iter().all(|g| g.name != f.name), "{} twice", f.name);
            if let Renamed(to) = f.handling {
                let target =
                    lookup(to).unwrap_or_else(|| panic!("{} renamed to unknown {to}", f.name));
                assert_eq!(target.kind, f.kind, "{} and {to} differ in kind", f.name);
            }
            if let Gate(g) = f.handling {
                assert!(
                    FEATURE_GATES.iter().any(|(n, ..)| *n == g),
                    "{}: unknown gate {g}",
                    f.name
                );
                assert_eq!(f.kind, Bool);
            }
        }
        for (g, ..) in FEATURE_GATES {
            assert!(GATE_HANDLING.iter().any(|(n, _)| n == g), "{g} has no handling");
        }
    }

    #[test]
    fn pending_flags() {
        // The lead's wiring list; printed with --nocapture.
        for (name, field) in pending() {
            let what = if name.starts_with(char::is_uppercase) {
                format!("feature gate {name}")
            } else {
                format!("--{name}")
            };
            println!("{what:<47} -> Config::{field}");
        }
        assert!(pending().all(|(f, _)| f != "force-new-cluster"));
    }

    #[test]
    fn logbook_only_flags_are_in_the_table() {
        for name in LOGBOOK_ONLY {
            let f = lookup(name).unwrap_or_else(|| panic!("{name} is not in FLAGS"));
            assert_eq!(f.handling, Used, "{name}");
        }
        assert_eq!(logbook_env_key("wal-backend"), "LOGBOOK_WAL_BACKEND");
        assert!(help_text().contains("[Logbook only; also LOGBOOK_WAL_BACKEND]"));
    }

    #[test]
    fn env_keys_follow_etcd() {
        assert_eq!(env_key("initial-cluster-token"), "ETCD_INITIAL_CLUSTER_TOKEN");
        assert_eq!(lookup("data-dir").unwrap().env_key(), "ETCD_DATA_DIR");
    }
}
