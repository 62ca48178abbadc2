//! `logbook serve`'s configuration, taken as etcd takes it: every flag of
//! etcd 3.4, 3.5 and 3.6 in Go's flag syntax, the same settings from `ETCD_*`
//! environment variables, or a `--config-file` YAML, validated with etcd's
//! defaults and error messages into a [`Config`] the server runs from.
//!
//! # Layout
//! - [`flags`]: the table of every etcd flag and what Logbook does with it
//!   (used, pending in the server, warned about, refused, renamed); `--help`.
//! - `settings`: the values given, checked by kind (Go's bool, number,
//!   duration syntax) as they are set.
//! - `cmdline`: Go's flag syntax (`-name value`, `--name=value`, `--bool`).
//! - `env`: `ETCD_*` variables (etcd's `SetFlagsFromEnv`).
//! - `file`: the `--config-file` YAML (etcd's embed config shapes).
//! - [`duration`]: Go's duration syntax ("5s", "1h30m").
//! - `compaction`, `auth_token`, `tls_options`, `feature_gates`: the typed
//!   values of `--auto-compaction-*`, `--auth-token`, the TLS options and
//!   `--feature-gates`.
//! - `logging`: the logging flags (`--logger`, `--log-outputs`, rotation).
//!
//! # Example
//! ```
//! use logbook_server::config::ServeArgs;
//!
//! let cfg = ServeArgs::from_flags(["--name=n1", "--auto-compaction-retention", "30m"])
//!     .into_config()
//!     .unwrap();
//! assert_eq!(cfg.name, "n1");
//! assert!(cfg.auto_compaction.is_some());
//! ```

mod auth_token;
mod cmdline;
mod compaction;
pub mod duration;
mod env;
mod feature_gates;
mod file;
pub mod flags;
mod logging;
mod settings;
pub(crate) mod tls_options;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use url::Url;

pub use auth_token::{AuthToken, JWT_SIGN_METHODS, JwtOptions};
pub use cmdline::Request;
pub use compaction::AutoCompaction;
pub use feature_gates::FeatureGates;
pub use logging::{LogConfig, LogFormat, LogOutput, LogRotation};
pub use tls_options::{CIPHER_SUITES, TlsExtra, TlsVersion};

use crate::error::{Error, Result};
use crate::ids::{cluster_id, member_id};
use crate::tls::{Alpn, PeerDialer, ServerTls, TlsFiles, TlsPolicy};
use flags::{FLAGS, Handling};
use settings::{Settings, Source, Value};

/// etcd's default request size limit, 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1536 * 1024;
/// etcd's default backend quota, 2 GiB.
pub const DEFAULT_QUOTA_BACKEND_BYTES: i64 = 2 * 1024 * 1024 * 1024;

/// Internal, for tests and tooling, not etcd's: when this variable is "1",
/// `logbook serve` (or `etcd`) parses and validates its configuration,
/// prints the warnings, and exits 0 without starting a member.
pub const CHECK_CONFIG_ENV: &str = "LOGBOOK_CHECK_CONFIG";

/// The flags of `logbook serve`: etcd's, in Go's syntax, read by this
/// module's own parser (clap only collects them) so that every etcd form
/// works: `-name value`, `--name=value`, `--bool`, `--bool=false`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// etcd's flags (see `logbook serve --help`), e.g. --name n1 --data-dir /var/lib/etcd.
    #[arg(value_name = "ETCD_FLAGS", num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub flags: Vec<String>,
    /// The environment `ETCD_*` variables are read from. `None` reads none:
    /// the binary passes the process's environment
    /// ([`ServeArgs::with_process_env`]); library callers (such as
    /// `snapshot restore`, which builds serve flags itself) get only their flags.
    #[arg(skip)]
    pub env: Option<Vec<(String, String)>>,
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
}

/// `--grpc-keepalive-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcKeepalive {
    /// The least time between a client's pings (faster ones are answered with GOAWAY).
    pub min_time: Duration,
    /// How often the server pings an idle connection (zero: never).
    pub interval: Duration,
    /// How long a ping may go unanswered before the connection is closed (zero: forever).
    pub timeout: Duration,
}

/// The validated configuration a member runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub db_path: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    /// `unix://` entries of `--listen-client-urls`: socket paths served like
    /// a plain client URL (Kubernetes' integration tests start etcd on one).
    pub listen_client_unix: Vec<PathBuf>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<SocketAddr>,
    /// `--listen-metrics-urls`: HTTP only, /metrics and the health endpoints.
    pub listen_metrics: Vec<SocketAddr>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub new_cluster: bool,
    pub cluster_token: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub snapshot_count: u64,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// How long an unused simple token stays valid.
    pub auth_token_ttl: Duration,
    /// bcrypt cost of new password hashes.
    pub bcrypt_cost: u32,
    /// `--cors`: origins answered with CORS headers ("*": any).
    pub cors: Vec<String>,
    /// `--host-whitelist`: Host headers accepted over plain HTTP ("*": any).
    pub host_whitelist: Vec<String>,
    /// The client side's TLS (`--cert-file ...`), loaded when a client or
    /// metrics URL is https.
    pub client_tls: Option<Arc<ServerTls>>,
    /// The peer listener's TLS (`--peer-cert-file ...`), loaded when a peer
    /// URL is https.
    pub peer_tls: Option<Arc<ServerTls>>,
    /// Listen addresses whose URL is https (client, client HTTP, metrics and peer).
    pub https_listen: Vec<SocketAddr>,
    /// Dials other members' peer URLs, with the peer TLS files for https.
    pub peer_dialer: Arc<PeerDialer>,
    /// Lines for the start-up log at warning level: flags accepted but
    /// ignored, flags not acted on yet, unrecognized `ETCD_*` variables
    /// (the flags are read before logging is set up).
    pub warnings: Vec<String>,
    /// Lines for the start-up log at info level: the `ETCD_*` variables used,
    /// the config file read.
    pub notices: Vec<String>,
    /// `--feature-gates`, with the `--experimental-*` flags it replaced folded in.
    pub feature_gates: FeatureGates,
    /// `--metrics=extensive`: the server-side gRPC latency histogram too.
    pub metrics_extensive: bool,
    /// `--enable-pprof` (or `--log-level=debug`, as etcd): `/debug/pprof/` on
    /// the client URLs.
    pub enable_pprof: bool,
    /// `--wal-backend` (Logbook's own): how the WAL makes batches durable; `Auto` measures.
    pub wal_backend: logbook_wal::Backend,
    /// `--request-log` (Logbook's own): where each client request's shape is
    /// logged (`services::request_log`); off when `None`.
    pub request_log: Option<PathBuf>,
    /// `--latest-cache-bytes` (Logbook's own): the engine's cache of latest values.
    pub latest_cache_bytes: u64,
    /// `--page-cache-bytes` (Logbook's own): the engine's page cache.
    pub page_cache_bytes: u64,

    // ---- etcd's runtime settings, with etcd's defaults (a flag parsed but
    // ---- not acted on yet would be `flags::Handling::Pending`; none is today).
    /// `--initial-election-tick-advance` (default true).
    pub initial_election_tick_advance: bool,
    /// `--listen-client-http-urls`: HTTP-only client listeners (the gateway,
    /// /health, /metrics, /version); when set, the client URLs serve gRPC only.
    pub listen_client_http: Vec<SocketAddr>,
    /// `--max-snapshots` (0: unlimited).
    pub max_snapshots: u64,
    /// `--max-wals` (0: unlimited).
    pub max_wals: u64,
    /// `--backend-batch-interval` (`None`: the engine's default).
    pub backend_batch_interval: Option<Duration>,
    /// `--backend-batch-limit` (`None`: the engine's default).
    pub backend_batch_limit: Option<u64>,
    /// `--max-concurrent-streams` per client connection.
    pub max_concurrent_streams: u32,
    /// `--grpc-keepalive-min-time`, `-interval`, `-timeout`.
    pub grpc_keepalive: GrpcKeepalive,
    /// `--socket-reuse-port`: SO_REUSEPORT on the listeners.
    pub socket_reuse_port: bool,
    /// `--enable-grpc-gateway` (default true): serve the v3 JSON gateway.
    pub grpc_gateway: bool,
    /// `--raft-read-timeout`/`--raft-write-timeout` on peer connections (at least 5 s, as etcd).
    pub raft_read_timeout: Duration,
    pub raft_write_timeout: Duration,
    /// `--strict-reconfig-check` (default true): refuse member changes that would lose quorum.
    pub strict_reconfig_check: bool,
    /// `--pre-vote` (default true).
    pub pre_vote: bool,
    /// `--auto-compaction-mode` and `--auto-compaction-retention` (`None`: off).
    pub auto_compaction: Option<AutoCompaction>,
    /// `--force-new-cluster`: restart as a one-member cluster from this member's data.
    pub force_new_cluster: bool,
    /// Feature gate InitialCorruptCheck (`--experimental-initial-corrupt-check`).
    pub initial_corrupt_check: bool,
    /// `--corrupt-check-time` (`None`: no periodic check).
    pub corrupt_check_time: Option<Duration>,
    /// Feature gate CompactHashCheck (`--experimental-compact-hash-check-enabled`).
    pub compact_hash_check: bool,
    /// `--compact-hash-check-time` (default 1m).
    pub compact_hash_check_time: Duration,
    /// Feature gate LeaseCheckpoint (`--experimental-enable-lease-checkpoint`).
    pub lease_checkpoint: bool,
    /// Feature gate LeaseCheckpointPersist.
    pub lease_checkpoint_persist: bool,
    /// Feature gate SetMemberLocalAddr: dial peers from the advertised peer IP.
    pub set_member_local_addr: bool,
    /// `--compaction-batch-limit` (revisions deleted per compaction batch).
    pub compaction_batch_limit: i64,
    /// `--compaction-sleep-interval` between compaction batches (0: etcd's 10 ms).
    pub compaction_sleep_interval: Duration,
    /// `--watch-progress-notify-interval` (default 10m).
    pub watch_progress_notify_interval: Duration,
    /// `--warning-apply-duration`: log applies slower than this.
    pub warning_apply_duration: Duration,
    /// `--warning-unary-request-duration`: log unary requests slower than this.
    pub warning_unary_request_duration: Duration,
    /// `--snapshot-catchup-entries`: Raft entries kept after a snapshot.
    pub snapshot_catchup_entries: u64,
    /// `--max-learners` in the membership.
    pub max_learners: u32,
    /// `--auth-token`: the token provider (`state/auth_token.rs`).
    pub auth_token: AuthToken,
    /// The client side's CRL, allowed hostnames, auto-TLS, client certificate.
    pub client_tls_extra: TlsExtra,
    /// The peer side's CRL, allowed CNs and hostnames, auto-TLS, client certificate.
    pub peer_tls_extra: TlsExtra,
    /// `--self-signed-cert-validity` in years, for auto-TLS.
    pub self_signed_cert_validity: u32,
    /// `--cipher-suites` (Go's names, only those rustls offers; empty: the defaults).
    pub cipher_suites: Vec<String>,
    /// `--tls-min-version` (default TLS1.2).
    pub tls_min_version: TlsVersion,
    /// `--tls-max-version` (`None`: the highest available).
    pub tls_max_version: Option<TlsVersion>,
    /// `--logger`, `--log-level`, `--log-format`, `--log-outputs` and log rotation.
    pub log: LogConfig,
}

impl Config {
    /// How long a client request may wait for Raft: etcd's 5 s plus two
    /// election timeouts.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + self.heartbeat * (2 * self.election_ticks as u32)
    }

    /// The election timeout as a duration.
    pub fn election_timeout(&self) -> Duration {
        self.heartbeat * self.election_ticks as u32
    }

    /// The TLS a listener on `addr` serves: `None` for an http URL.
    pub fn tls_for(&self, addr: &SocketAddr) -> Option<Arc<ServerTls>> {
        if !self.https_listen.contains(addr) {
            return None;
        }
        if self.listen_peer.contains(addr) {
            self.peer_tls.clone()
        } else {
            self.client_tls.clone()
        }
    }
}

impl ServeArgs {
    /// Serve arguments from etcd-style flags (no environment).
    pub fn from_flags<I, S>(flags: I) -> ServeArgs
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ServeArgs { flags: flags.into_iter().map(Into::into).collect(), env: None }
    }

    /// Reads `ETCD_*` variables from this process's environment too.
    pub fn with_process_env(mut self) -> ServeArgs {
        self.env = Some(
            std::env::vars_os()
                .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
                .collect(),
        );
        self
    }

    /// What the command line asks for: `--help`, `--version`, or a member
    /// (flag errors are left to [`ServeArgs::into_config`]).
    pub fn request(&self) -> Request {
        cmdline::parse(&self.flags, &mut Settings::default()).unwrap_or(Request::Run)
    }

    /// Reads the flags, the `ETCD_*` variables or the config file as etcd
    /// does, checks them, and derives member and cluster IDs.
    pub fn into_config(self) -> Result<Config> {
        let settings = self.settings().map_err(Error::Config)?;
        build(settings)
    }

    /// The settings from the command line, then either the config file
    /// (which replaces flags and variables, as in etcd) or the variables.
    fn settings(&self) -> std::result::Result<Settings, String> {
        let mut cmdline = Settings::default();
        cmdline::parse(&self.flags, &mut cmdline)?;
        let env = self.env.as_deref().unwrap_or_default();
        let mut config_file = cmdline.text("config-file");
        if config_file.is_empty() {
            let key = flags::env_key("config-file");
            config_file =
                env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()).unwrap_or_default();
        }
        let mut settings = if config_file.is_empty() {
            env::apply(&mut cmdline, env)?;
            cmdline
        } else {
            let mut from_file = Settings::default();
            file::load(&config_file, &mut from_file)?;
            from_file.notices.push(format!(
                "loaded server configuration from {config_file}, other configuration command line flags and environment variables will be ignored if provided"
            ));
            let ignored: Vec<String> = cmdline
                .given()
                .filter(|(n, ..)| *n != "config-file")
                .map(|(n, ..)| format!("--{n}"))
                .collect();
            if !ignored.is_empty() {
                from_file.warnings.push(format!(
                    "ignoring command-line flags {} because --config-file is given (as etcd does)",
                    ignored.join(", ")
                ));
            }
            from_file
        };
        resolve_renames(&mut settings)?;
        Ok(settings)
    }
}

/// Moves each deprecated `--experimental-*` flag's value to its etcd 3.6
/// name; setting both is etcd 3.6's error.
fn resolve_renames(settings: &mut Settings) -> std::result::Result<(), String> {
    for (old, new) in settings.renamed_given() {
        if settings.is_set(new) {
            return Err(format!(
                "cannot set --{old} and --{new} at the same time, please use --{new} only"
            ));
        }
        let (value, source) = settings.take(old).expect("given");
        let flag = flags::lookup(new).expect("renames point into the table");
        settings.set_value(flag, value, source);
    }
    Ok(())
}

/// The value of flag `name` as given, for messages.
fn shown(settings: &Settings, name: &str) -> String {
    match settings.get(name) {
        Value::Bool(b) => b.to_string(),
        Value::Text(t) => t,
        Value::Uint(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Duration(d) => duration::format(d),
    }
}

/// Checks the settings as etcd does and builds the [`Config`].
fn build(s: Settings) -> Result<Config> {
    let bad = |msg: String| Error::Config(msg);
    let mut warnings = s.warnings.clone();
    let mut notices = s.notices.clone();

    // What Logbook refuses, ignores, or has not wired yet, flag by flag.
    for flag in FLAGS {
        if let Handling::WarnIfGiven(why) = flag.handling
            && s.is_set(flag.name)
        {
            warnings.push(format!("--{}={}: {why}", flag.name, shown(&s, flag.name)));
        }
        if !s.differs_from_default(flag.name) {
            continue;
        }
        let value = shown(&s, flag.name);
        match flag.handling {
            Handling::Refused(why) => {
                return Err(bad(format!("--{}={value} is not supported: {why}", flag.name)));
            }
            Handling::Warn(why) => warnings.push(format!("--{}={value}: {why}", flag.name)),
            Handling::Pending(_) => warnings.push(format!(
                "--{}={value} is accepted but not yet acted on by Logbook",
                flag.name
            )),
            _ => {}
        }
    }
    let gates = feature_gates::resolve(&s).map_err(bad)?;
    for (gate, on) in gates.changed() {
        match flags::GATE_HANDLING.iter().find(|(g, _)| *g == gate).map(|(_, h)| *h) {
            Some(Handling::Warn(why)) => warnings.push(format!("feature gate {gate}={on}: {why}")),
            Some(Handling::Pending(_)) => warnings.push(format!(
                "feature gate {gate}={on} is accepted but not yet acted on by Logbook"
            )),
            _ => {}
        }
    }

    let name = s.text("name");
    let data_dir = match s.text("data-dir") {
        d if d.is_empty() => PathBuf::from(format!("{name}.logbook")),
        d => PathBuf::from(d),
    };
    let wal_dir = match s.text("wal-dir") {
        w if w.is_empty() => data_dir.join("member").join("wal"),
        w => PathBuf::from(w),
    };
    let db_path = data_dir.join("member").join("snap").join("db");

    let (listen_client_unix, client_tcp_urls) =
        split_unix_urls("--listen-client-urls", &s.text("listen-client-urls"))?;
    let client_urls = if client_tcp_urls.is_empty() && !listen_client_unix.is_empty() {
        Vec::new()
    } else {
        parse_listen_urls("--listen-client-urls", &client_tcp_urls)?
    };
    let client_http_urls = optional_listen_urls(&s, "listen-client-http-urls")?;
    let peer_urls = parse_listen_urls("--listen-peer-urls", &s.text("listen-peer-urls"))?;
    let metrics_urls = optional_listen_urls(&s, "listen-metrics-urls")?;
    let listen_client = client_urls.iter().map(|u| u.addr).collect();
    let listen_client_http = client_http_urls.iter().map(|u| u.addr).collect();
    let listen_peer = peer_urls.iter().map(|u| u.addr).collect();
    let listen_metrics = metrics_urls.iter().map(|u| u.addr).collect();
    // etcd's command-line rule (its config file keeps the default instead).
    let from_command_line = |n: &str| matches!(s.source(n), Some(Source::Flag | Source::Env));
    if from_command_line("listen-client-urls") && !s.is_set("advertise-client-urls") {
        return Err(bad(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
                .into(),
        ));
    }
    let advertise_client_urls =
        parse_urls("--advertise-client-urls", &s.text("advertise-client-urls"))?;
    let advertise_peer_urls =
        parse_urls("--initial-advertise-peer-urls", &s.text("initial-advertise-peer-urls"))?;

    let new_cluster = s.text("initial-cluster-state") == "new";
    let cluster_token = s.text("initial-cluster-token");
    let initial_cluster_text = match s.text("initial-cluster") {
        c if c.is_empty() => format!("{name}={}", advertise_peer_urls.join(",")),
        c => c,
    };
    let initial_cluster = parse_initial_cluster(&initial_cluster_text, &cluster_token)?;
    let me = initial_cluster.iter().find(|m| m.name == name).ok_or_else(|| {
        bad(format!("couldn't find local name \"{name}\" in the initial cluster configuration"))
    })?;
    let mut mine = me.peer_urls.clone();
    mine.sort();
    let mut advertised = advertise_peer_urls.clone();
    advertised.sort();
    if mine != advertised {
        return Err(bad(format!(
            "--initial-cluster has {name}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\")",
            mine.join(","),
            advertised.join(","),
            advertised.join(","),
            advertised,
            mine.join(","),
        )));
    }
    let member_id = me.id;
    let cluster_id = cluster_id(initial_cluster.iter().map(|m| m.id));

    // TLS, as etcd's embed config checks it.
    let tls_min_version = tls_options::parse_version(&s.text("tls-min-version"))
        .map_err(bad)?
        .unwrap_or(TlsVersion::Tls12);
    let tls_max_version = tls_options::parse_version(&s.text("tls-max-version")).map_err(bad)?;
    if tls_max_version.is_some_and(|max| tls_min_version > max) {
        return Err(bad(format!(
            "min version ({}) is greater than max version ({})",
            s.text("tls-min-version"),
            s.text("tls-max-version")
        )));
    }
    let cipher_names = s.list("cipher-suites");
    if tls_min_version == TlsVersion::Tls13 && !cipher_names.is_empty() {
        return Err(bad("cipher suites cannot be configured when only TLS1.3 is enabled".into()));
    }
    let (cipher_suites, cipher_warnings) =
        tls_options::parse_cipher_suites(&cipher_names).map_err(bad)?;
    warnings.extend(cipher_warnings);
    let client_tls_extra = TlsExtra {
        client_cert_file: path_flag(&s, "client-cert-file"),
        client_key_file: path_flag(&s, "client-key-file"),
        crl_file: path_flag(&s, "client-crl-file"),
        allowed_cns: Vec::new(),
        allowed_hostnames: s.list("client-cert-allowed-hostname"),
        auto_tls: s.bool("auto-tls"),
        skip_client_san_verification: false,
    };
    let peer_tls_extra = TlsExtra {
        client_cert_file: path_flag(&s, "peer-client-cert-file"),
        client_key_file: path_flag(&s, "peer-client-key-file"),
        crl_file: path_flag(&s, "peer-crl-file"),
        allowed_cns: s.list("peer-cert-allowed-cn"),
        allowed_hostnames: s.list("peer-cert-allowed-hostname"),
        auto_tls: s.bool("peer-auto-tls"),
        skip_client_san_verification: s.bool("peer-skip-client-san-verification"),
    };
    let self_signed_cert_validity =
        u32::try_from(s.uint("self-signed-cert-validity")).unwrap_or(u32::MAX);
    let policy = |extra: &TlsExtra, peer: bool, prefix: &str| -> Result<TlsPolicy> {
        let has_files = !s.text(&format!("{prefix}cert-file")).is_empty()
            || !s.text(&format!("{prefix}key-file")).is_empty();
        tls_options::policy(
            extra,
            peer,
            has_files,
            tls_min_version,
            tls_max_version,
            &cipher_suites,
        )
    };
    let client_policy = policy(&client_tls_extra, false, "")?;
    let peer_policy = policy(&peer_tls_extra, true, "peer-")?;
    let mut client_files = tls_files(
        "",
        &s.text("cert-file"),
        &s.text("key-file"),
        &s.text("trusted-ca-file"),
        s.bool("client-cert-auth"),
        client_policy,
    )?;
    let mut peer_files = tls_files(
        "peer-",
        &s.text("peer-cert-file"),
        &s.text("peer-key-file"),
        &s.text("peer-trusted-ca-file"),
        s.bool("peer-client-cert-auth"),
        peer_policy,
    )?;
    if client_tls_extra.auto_tls && client_files.is_some() {
        warnings.push("ignoring client auto TLS since certs given".into());
    }
    if peer_tls_extra.auto_tls && peer_files.is_some() {
        warnings.push("ignoring peer auto TLS since certs given".into());
    }
    // --auto-tls/--peer-auto-tls without files: etcd's SelfCert, into
    // <data-dir>/fixtures/{client,peer}, for the listen URLs' hosts.
    let url_host = |u: &ListenUrl| {
        let url = Url::parse(&u.url).expect("normalised when parsed");
        let host = url.host_str().unwrap_or_default().to_string();
        format!("{host}:{}", url.port_or_known_default().unwrap_or_default())
    };
    if client_tls_extra.auto_tls && client_files.is_none() {
        let hosts: Vec<String> =
            client_urls.iter().chain(&client_http_urls).map(url_host).collect();
        let dir = data_dir.join("fixtures").join("client");
        let (cert, key) = crate::tls::self_cert(&dir, &hosts, self_signed_cert_validity)
            .map_err(|e| bad(format!("failed to get client self-signed certs: {e}")))?;
        client_files = Some(tls_options::self_signed_files(
            cert,
            key,
            false,
            tls_min_version,
            tls_max_version,
            &cipher_suites,
        ));
    }
    if peer_tls_extra.auto_tls && peer_files.is_none() {
        let hosts: Vec<String> = peer_urls.iter().map(url_host).collect();
        let dir = data_dir.join("fixtures").join("peer");
        let (cert, key) = crate::tls::self_cert(&dir, &hosts, self_signed_cert_validity)
            .map_err(|e| bad(format!("failed to get peer self-signed certs: {e}")))?;
        peer_files = Some(tls_options::self_signed_files(
            cert,
            key,
            true,
            tls_min_version,
            tls_max_version,
            &cipher_suites,
        ));
    }
    let mut https_listen = Vec::new();
    let client_side = client_urls.iter().chain(&client_http_urls).chain(&metrics_urls);
    // etcd warns about an http:// URL while cert files are given for its
    // client URLs only; a plain metrics URL (kubeadm's
    // --listen-metrics-urls=http://127.0.0.1:2381) is what it should be.
    let warned = client_urls.len() + client_http_urls.len();
    for (i, u) in client_side.clone().enumerate() {
        if u.https {
            if client_files.is_none() {
                return Err(bad(format!(
                    "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                    u.url
                )));
            }
            https_listen.push(u.addr);
        } else if client_files.is_some() && i < warned {
            warnings.push(format!(
                "scheme is HTTP while key and cert files are present; ignoring key and cert files (client url {})",
                u.url
            ));
        }
    }
    for u in &peer_urls {
        if u.https {
            if peer_files.is_none() {
                return Err(bad(format!(
                    "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url {} with HTTPS scheme",
                    u.url
                )));
            }
            https_listen.push(u.addr);
        } else if peer_files.is_some() {
            warnings.push(format!(
                "scheme is HTTP while peer key and cert files are present; ignoring key and cert files (peer url {})",
                u.url
            ));
        }
    }

    // Go's HTTP/2 server (so etcd's listeners) refuses a suite list
    // without one of HTTP/2's required suites; etcd then exits.
    let h2_suites =
        ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"];
    if !https_listen.is_empty()
        && !cipher_names.is_empty()
        && !cipher_names.iter().any(|n| h2_suites.contains(&n.as_str()))
    {
        return Err(bad(format!(
            "--cipher-suites: http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher (need at least one of {} or {})",
            h2_suites[0], h2_suites[1]
        )));
    }
    let client_tls = match &client_files {
        Some(files) if client_side.clone().any(|u| u.https) => {
            Some(Arc::new(ServerTls::load("client", files.clone(), Alpn::H2AndHttp1)?))
        }
        _ => None,
    };
    let peer_tls = match &peer_files {
        Some(files) if peer_urls.iter().any(|u| u.https) => {
            Some(Arc::new(ServerTls::load("peer", files.clone(), Alpn::H2)?))
        }
        _ => None,
    };
    // Other members are dialled at their https peer URLs with the peer
    // CA as the only trust root.
    let dials_https = initial_cluster
        .iter()
        .filter(|m| m.name != name)
        .flat_map(|m| &m.peer_urls)
        .any(|u| u.starts_with("https://"));
    let peer_dialer = match &peer_files {
        Some(files) if files.trusted_ca_file.is_some() || files.policy.self_signed => {
            PeerDialer::load(files.clone())?
        }
        _ if dials_https => {
            return Err(bad(
                "--initial-cluster has https peer URLs: --peer-cert-file, --peer-key-file and --peer-trusted-ca-file must be provided to reach them".into(),
            ));
        }
        _ => PeerDialer::plain(),
    };
    let set_member_local_addr = gates.enabled("SetMemberLocalAddr");
    let local_addr = if set_member_local_addr {
        let found = member_local_addr(&advertise_peer_urls);
        match found {
            Some(ip) => notices.push(format!("setting member local address LocalAddr={ip}")),
            None => warnings.push(format!(
                "unable to set a member local address due to lack of suitable local addresses (advertise-peer-urls={})",
                advertise_peer_urls.join(",")
            )),
        }
        found
    } else {
        None
    };
    let peer_dialer = Arc::new(peer_dialer.from_local_addr(local_addr));

    let heartbeat_ms = s.uint("heartbeat-interval");
    let election_ms = s.uint("election-timeout");
    if heartbeat_ms == 0 {
        return Err(bad(format!("--heartbeat-interval must be >0 (set to {heartbeat_ms}ms)")));
    }
    if election_ms == 0 {
        return Err(bad(format!("--election-timeout must be >0 (set to {election_ms}ms)")));
    }
    if election_ms < 5 * heartbeat_ms {
        return Err(bad(format!(
            "--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]"
        )));
    }
    if election_ms > 50_000 {
        return Err(bad(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than 50000ms"
        )));
    }
    let max_txn_ops = s.uint("max-txn-ops");
    if max_txn_ops == 0 {
        return Err(bad("--max-txn-ops must be > 0".into()));
    }
    let log_level = if s.bool("debug") { "debug".to_string() } else { s.text("log-level") };
    // etcd serves its profiles with --enable-pprof, or at the debug log level.
    let enable_pprof = s.bool("enable-pprof") || log_level == "debug";
    // etcd serves its profiles with --enable-pprof, or at the debug log level.
    let quota_backend_bytes = match s.int("quota-backend-bytes") {
        q if q < 0 => return Err(bad(format!("--quota-backend-bytes {q} is negative"))),
        0 => DEFAULT_QUOTA_BACKEND_BYTES,
        q => q,
    };

    let (auth_token, auth_warning) = auth_token::parse(&s.text("auth-token")).map_err(bad)?;
    warnings.extend(auth_warning);
    let bcrypt_cost = s.uint("bcrypt-cost");
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(bad(format!("--bcrypt-cost {bcrypt_cost} is out of range [4, 31]")));
    }
    let auth_token_ttl = s.uint("auth-token-ttl");
    if auth_token_ttl == 0 {
        return Err(bad("--auth-token-ttl must be > 0".into()));
    }

    let auto_compaction =
        compaction::parse(&s.text("auto-compaction-mode"), &s.text("auto-compaction-retention"))
            .map_err(bad)?;
    let compact_hash_check_time = s.duration("compact-hash-check-time");
    if compact_hash_check_time.is_zero() {
        return Err(bad("--compact-hash-check-time must be >0 (set to 0s)".into()));
    }
    let lease_checkpoint = gates.enabled("LeaseCheckpoint");
    let lease_checkpoint_persist = gates.enabled("LeaseCheckpointPersist");
    if lease_checkpoint_persist && !lease_checkpoint {
        return Err(bad(
            "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint".into(),
        ));
    }
    if lease_checkpoint && !lease_checkpoint_persist {
        warnings.push("Detected that checkpointing is enabled without persistence. Consider enabling feature gate LeaseCheckpointPersist".into());
    }

    let rotation_json = s.bool("enable-log-rotation").then(|| s.text("log-rotation-config-json"));
    let log = logging::parse(
        &s.text("logger"),
        log_level,
        &s.text("log-format"),
        &s.list("log-outputs"),
        rotation_json.as_deref(),
    )
    .map_err(bad)?;
    if log.outputs.contains(&LogOutput::Journal) {
        warnings.push("Logbook has no journald writer; --log-outputs=systemd/journal writes to stderr (which systemd journals)".into());
    }

    let mut raft_timeout = |flag: &str| {
        let d = s.duration(flag);
        let min = Duration::from_secs(5);
        if d < min {
            warnings.push(format!("{flag} increased to minimum value: 5s"));
            min
        } else {
            d
        }
    };
    let raft_read_timeout = raft_timeout("raft-read-timeout");
    let raft_write_timeout = raft_timeout("raft-write-timeout");
    let max_learners = u32::try_from(s.int("max-learners"))
        .map_err(|_| bad(format!("--max-learners {} must be >= 0", s.int("max-learners"))))?;

    // As etcd: any value but "extensive" is the basic level.
    let metrics_extensive = s.text("metrics") == "extensive";

    Ok(Config {
        metrics_extensive,
        enable_pprof,
        name,
        data_dir,
        wal_dir,
        db_path,
        listen_client,
        listen_client_unix,
        advertise_client_urls,
        listen_peer,
        listen_metrics,
        advertise_peer_urls,
        initial_cluster,
        new_cluster,
        cluster_token,
        member_id,
        cluster_id,
        heartbeat: Duration::from_millis(heartbeat_ms),
        election_ticks: (election_ms / heartbeat_ms) as usize,
        snapshot_count: s.uint("snapshot-count").max(1),
        quota_backend_bytes,
        max_request_bytes: usize::try_from(s.uint("max-request-bytes")).unwrap_or(usize::MAX),
        max_txn_ops: usize::try_from(max_txn_ops).unwrap_or(usize::MAX),
        auth_token_ttl: Duration::from_secs(auth_token_ttl),
        bcrypt_cost: bcrypt_cost as u32,
        cors: comma_list(&s.text("cors")),
        host_whitelist: comma_list(&s.text("host-whitelist")),
        client_tls,
        peer_tls,
        https_listen,
        peer_dialer,
        warnings,
        notices,
        initial_election_tick_advance: s.bool("initial-election-tick-advance"),
        listen_client_http,
        max_snapshots: s.uint("max-snapshots"),
        max_wals: s.uint("max-wals"),
        backend_batch_interval: Some(s.duration("backend-batch-interval")).filter(|d| !d.is_zero()),
        backend_batch_limit: u64::try_from(s.int("backend-batch-limit")).ok().filter(|n| *n > 0),
        max_concurrent_streams: s.uint("max-concurrent-streams") as u32,
        grpc_keepalive: GrpcKeepalive {
            min_time: s.duration("grpc-keepalive-min-time"),
            interval: s.duration("grpc-keepalive-interval"),
            timeout: s.duration("grpc-keepalive-timeout"),
        },
        socket_reuse_port: s.bool("socket-reuse-port"),
        grpc_gateway: s.bool("enable-grpc-gateway"),
        raft_read_timeout,
        raft_write_timeout,
        strict_reconfig_check: s.bool("strict-reconfig-check"),
        pre_vote: s.bool("pre-vote"),
        auto_compaction,
        force_new_cluster: s.bool("force-new-cluster"),
        initial_corrupt_check: gates.enabled("InitialCorruptCheck"),
        corrupt_check_time: Some(s.duration("corrupt-check-time")).filter(|d| !d.is_zero()),
        compact_hash_check: gates.enabled("CompactHashCheck"),
        compact_hash_check_time,
        lease_checkpoint,
        lease_checkpoint_persist,
        set_member_local_addr,
        compaction_batch_limit: s.int("compaction-batch-limit"),
        compaction_sleep_interval: s.duration("compaction-sleep-interval"),
        watch_progress_notify_interval: s.duration("watch-progress-notify-interval"),
        warning_apply_duration: s.duration("warning-apply-duration"),
        warning_unary_request_duration: s.duration("warning-unary-request-duration"),
        snapshot_catchup_entries: s.uint("snapshot-catchup-entries"),
        max_learners,
        auth_token,
        client_tls_extra,
        peer_tls_extra,
        self_signed_cert_validity,
        cipher_suites,
        tls_min_version,
        tls_max_version,
        log,
        wal_backend: s.text("wal-backend").parse().map_err(bad)?,
        request_log: path_flag(&s, "request-log"),
        latest_cache_bytes: s.uint("latest-cache-bytes"),
        page_cache_bytes: s.uint("page-cache-bytes"),
        feature_gates: gates,
    })
}

/// A path flag: `None` when empty.
fn path_flag(s: &Settings, name: &str) -> Option<PathBuf> {
    Some(s.text(name)).filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// A listen-URL flag that may be empty.
fn optional_listen_urls(s: &Settings, name: &str) -> Result<Vec<ListenUrl>> {
    let text = s.text(name);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    parse_listen_urls(&format!("--{name}"), &text)
}

/// A comma-separated flag's entries; empty means "*", as etcd reads it.
fn comma_list(text: &str) -> Vec<String> {
    let items: Vec<String> =
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    if items.is_empty() { vec!["*".to_string()] } else { items }
}

/// One side's TLS files from its flags (`prefix` is "" or "peer-"): `None`
/// when no cert and key are given.
fn tls_files(
    prefix: &str,
    cert: &str,
    key: &str,
    ca: &str,
    client_cert_auth: bool,
    policy: TlsPolicy,
) -> Result<Option<TlsFiles>> {
    if cert.is_empty() && key.is_empty() {
        return Ok(None);
    }
    if cert.is_empty() || key.is_empty() {
        return Err(Error::Config(format!(
            "KeyFile and CertFile must both be present[key: {key}, cert: {cert}] (--{prefix}key-file, --{prefix}cert-file)"
        )));
    }
    if client_cert_auth && ca.is_empty() {
        return Err(Error::Config(format!(
            "--{prefix}client-cert-auth needs --{prefix}trusted-ca-file: client certificates are verified against it"
        )));
    }
    Ok(Some(TlsFiles {
        cert_file: PathBuf::from(cert),
        key_file: PathBuf::from(key),
        trusted_ca_file: (!ca.is_empty()).then(|| PathBuf::from(ca)),
        client_cert_auth,
        policy,
    }))
}

/// Parses a comma-separated URL list, normalised the way etcd prints URLs.
/// The feature gate SetMemberLocalAddr's address (etcd's `InferLocalAddr`):
/// the host of the first advertised peer URL (in etcd's order, sorted) that
/// is an IP address, neither loopback nor unspecified; `None` when there is
/// none.
fn member_local_addr(advertise_peer_urls: &[String]) -> Option<std::net::IpAddr> {
    let mut urls: Vec<&String> = advertise_peer_urls.iter().collect();
    urls.sort();
    urls.into_iter().find_map(|u| {
        let host = Url::parse(u).ok()?.host_str()?.to_string();
        let ip: std::net::IpAddr =
            host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    })
}

pub(crate) fn parse_urls(flag: &str, text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let url = Url::parse(part)
            .map_err(|e| Error::Config(format!("invalid URL {part:?} in {flag}: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            "unix" | "unixs" => {
                return Err(Error::Config(format!(
                    "{flag}: scheme {:?} of {part:?} is not supported (only http and https)",
                    url.scheme()
                )));
            }
            other => {
                return Err(Error::Config(format!(
                    "URL scheme must be http, https, unix, or unixs: {part} (scheme {other:?}, in {flag})"
                )));
            }
        }
        if url.port().is_none() {
            return Err(Error::Config(format!(
                "URL address does not have the form \"host:port\": {part}"
            )));
        }
        if url.path() != "/" && !url.path().is_empty() {
            return Err(Error::Config(format!("URL must not contain a path: {part}")));
        }
        out.push(format!(
            "{}://{}:{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(0)
        ));
    }
    if out.is_empty() {
        return Err(Error::Config(format!("{flag} must name at least one URL")));
    }
    Ok(out)
}

/// Takes the `unix://` URLs out of a listen-URL list: their socket paths
/// (etcd's address of `unix://host/path` is `host` + `path`, so both
/// `unix:///run/etcd.sock` and `unix://localhost:2379` name a file), and the
/// remaining URLs, comma-joined. `unixs://` (TLS over a socket) is refused.
fn split_unix_urls(flag: &str, text: &str) -> Result<(Vec<PathBuf>, String)> {
    let mut paths = Vec::new();
    let mut rest = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let lower = part.to_ascii_lowercase();
        if lower.starts_with("unixs://") {
            return Err(Error::Config(format!(
                "{flag}: scheme \"unixs\" of {part:?} is not supported (only http, https and unix)"
            )));
        }
        match lower.strip_prefix("unix://").map(|_| &part["unix://".len()..]) {
            Some("") => {
                return Err(Error::Config(format!("{flag}: {part:?} names no socket path")));
            }
            Some(path) => paths.push(PathBuf::from(path)),
            None => rest.push(part),
        }
    }
    Ok((paths, rest.join(",")))
}

/// A listen URL: where to bind, and whether to serve TLS there.
struct ListenUrl {
    url: String,
    addr: SocketAddr,
    https: bool,
}

/// Parses listen URLs into socket addresses. `localhost` binds 127.0.0.1.
fn parse_listen_urls(flag: &str, text: &str) -> Result<Vec<ListenUrl>> {
    let mut addrs = Vec::new();
    for text in parse_urls(flag, text)? {
        let url = Url::parse(&text).expect("normalised above");
        let host = match url.host_str() {
            Some("localhost") => "127.0.0.1".to_string(),
            Some(h) => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            None => return Err(Error::Config(format!("{flag}: {url} has no host"))),
        };
        let ip = host.parse().map_err(|_| {
            Error::Config(format!(
                "{flag}: listen host {host:?} must be an IP address or localhost"
            ))
        })?;
        let addr = SocketAddr::new(ip, url.port().expect("checked above"));
        addrs.push(ListenUrl { https: url.scheme() == "https", url: text, addr });
    }
    Ok(addrs)
}

/// Parses `name=url,name=url,...` (a name may appear several times, once per
/// peer URL) into members with etcd's member IDs.
pub fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>> {
    let mut members: Vec<InitialMember> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            Error::Config(format!("--initial-cluster: {part:?} is not of the form name=url"))
        })?;
        let url = parse_urls("--initial-cluster", url)?.remove(0);
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url),
            None => {
                members.push(InitialMember { name: name.to_string(), id: 0, peer_urls: vec![url] })
            }
        }
    }
    if members.is_empty() {
        return Err(Error::Config("--initial-cluster is empty".into()));
    }
    for m in &mut members {
        m.id = member_id(&m.peer_urls, token);
    }
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            if let Some(u) = a.peer_urls.iter().find(|u| b.peer_urls.contains(u)) {
                return Err(Error::Config(format!(
                    "--initial-cluster has duplicate url {u} for members {} and {}",
                    a.name, b.name
                )));
            }
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use flags::Kind;

    /// Clap collects the flags as `logbook serve` does.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> Result<Config> {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("clap collects any flags").serve.into_config()
    }

    fn config_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let mut a = ServeArgs::from_flags(args.iter().copied());
        a.env = Some(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        a.into_config()
    }

    #[test]
    fn unix_client_urls_are_socket_paths() {
        // Kubernetes' integration framework (RunCustomEtcd) starts etcd so.
        let c = config(&[
            "--listen-client-urls",
            "unix:///tmp/x/etcd.sock,http://127.0.0.1:12379,unix://localhost:2379",
            "--advertise-client-urls",
            "http://127.0.0.111:0",
            "--listen-peer-urls",
            "http://127.0.0.1:0",
        ])
        .unwrap();
        assert_eq!(
            c.listen_client_unix,
            vec![PathBuf::from("/tmp/x/etcd.sock"), PathBuf::from("localhost:2379")]
        );
        assert_eq!(c.listen_client, vec!["127.0.0.1:12379".parse().unwrap()]);
        let only =
            ["--listen-client-urls", "unix:///s.sock", "--advertise-client-urls", "http://a:1"];
        let c = config(&only).unwrap();
        assert!(c.listen_client.is_empty());
        assert_eq!(c.listen_client_unix, vec![PathBuf::from("/s.sock")]);
        let err = config(&[
            "--listen-client-urls",
            "unixs:///s.sock",
            "--advertise-client-urls",
            "http://a:1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unixs"), "{err}");
    }

    #[test]
    fn defaults_match_etcd() {
        let c = config(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.logbook"));
        assert_eq!(c.db_path, PathBuf::from("default.logbook/member/snap/db"));
        assert_eq!(c.listen_client, vec!["127.0.0.1:2379".parse().unwrap()]);
        assert_eq!(c.advertise_peer_urls, vec!["http://localhost:2380".to_string()]);
        assert_eq!(c.election_ticks, 10);
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.quota_backend_bytes, 2 << 30);
        assert_eq!(c.initial_cluster.len(), 1);
    }

    #[test]
    fn engine_cache_sizes_from_flags_and_variables() {
        let c = config(&[]).unwrap();
        assert_eq!((c.latest_cache_bytes, c.page_cache_bytes), (32 << 20, 32 << 20));
        let c = config(&["--latest-cache-bytes=0", "--page-cache-bytes=1048576"]).unwrap();
        assert_eq!((c.latest_cache_bytes, c.page_cache_bytes), (0, 1 << 20));
        let c = config_env(&[], &[("LOGBOOK_LATEST_CACHE_BYTES", "536870912")]).unwrap();
        assert_eq!(c.latest_cache_bytes, 512 << 20);
        let err = config(&["--latest-cache-bytes=lots"]).unwrap_err().to_string();
        assert!(err.contains("latest-cache-bytes"), "{err}");
    }

    #[test]
    fn wal_backend_from_flag_variables_and_file() {
        use logbook_wal::Backend;
        assert_eq!(config(&[]).unwrap().wal_backend, Backend::Auto);
        assert_eq!(
            config(&["--wal-backend=io-uring-direct"]).unwrap().wal_backend,
            Backend::IoUringDirect
        );
        assert_eq!(
            config_env(&[], &[("LOGBOOK_WAL_BACKEND", "sync")]).unwrap().wal_backend,
            Backend::Sync
        );
        assert_eq!(
            config_env(&[], &[("ETCD_WAL_BACKEND", "io-uring")]).unwrap().wal_backend,
            Backend::IoUring
        );
        let err = config(&["--wal-backend=fast"]).unwrap_err().to_string();
        assert!(err.contains("wal-backend") && err.contains("fast"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("etcd.yaml");
        std::fs::write(&file, "wal-backend: sync\n").unwrap();
        let c = config(&[&format!("--config-file={}", file.display())]).unwrap();
        assert_eq!(c.wal_backend, Backend::Sync);
    }

    #[test]
    fn three_member_cluster_flags() {
        let c = config(&[
            "--name",
            "n2",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2381",
            "--listen-peer-urls",
            "http://127.0.0.1:2381",
            "--initial-cluster",
            "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2381,n3=http://127.0.0.1:2382",
            "--initial-cluster-token",
            "tok",
        ])
        .unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.member_id, c.initial_cluster[1].id);
        assert_eq!(c.listen_peer, vec!["127.0.0.1:2381".parse().unwrap()]);
    }

    #[test]
    fn bad_flags_are_refused_with_etcds_words() {
        let err = config(&["--initial-cluster-state", "old"]).unwrap_err().to_string();
        assert!(err.contains("initial-cluster-state"), "{err}");
        let err = config(&["--name", "x", "--initial-cluster", "y=http://localhost:2380"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("couldn't find local name \"x\""), "{err}");
        let err = config(&["--election-timeout", "200"]).unwrap_err().to_string();
        assert!(err.contains("at least as 5 times"), "{err}");
        let err = config(&["--listen-client-urls", "ftp://127.0.0.1:1"]).unwrap_err().to_string();
        assert!(err.contains("URL scheme must be"), "{err}");
        let err = config(&["--listen-client-urls", "http://127.0.0.1"]).unwrap_err().to_string();
        assert!(err.contains("host:port"), "{err}");
    }

    #[test]
    fn tls_flags_follow_etcd() {
        let err = config(&[
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--advertise-client-urls",
            "https://127.0.0.1:2379",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379"),
            "{err}"
        );
        let err =
            config(&["--listen-peer-urls", "https://127.0.0.1:2380"]).unwrap_err().to_string();
        assert!(err.contains("--peer-cert-file, --peer-key-file"), "{err}");
        let err = config(&["--cert-file", "a.crt"]).unwrap_err().to_string();
        assert!(err.contains("KeyFile and CertFile must both be present"), "{err}");
        let err = config(&["--cert-file", "a.crt", "--key-file", "a.key", "--client-cert-auth"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--client-cert-auth needs --trusted-ca-file"), "{err}");
        // --auto-tls with an https URL and no files: a self-signed pair in
        // <data-dir>/fixtures/client, as etcd makes it, reused by the next start.
        let dir = tempfile::tempdir().unwrap();
        let data = format!("--data-dir={}", dir.path().display());
        let auto = [
            "--auto-tls",
            data.as_str(),
            "--listen-client-urls=https://127.0.0.1:2379",
            "--advertise-client-urls=https://127.0.0.1:2379",
        ];
        let c = config(&auto).unwrap();
        assert!(c.client_tls_extra.auto_tls);
        assert!(c.client_tls.is_some());
        let cert = dir.path().join("fixtures/client/cert.pem");
        let first = std::fs::read(&cert).unwrap();
        assert!(dir.path().join("fixtures/client/key.pem").exists());
        assert!(!dir.path().join("fixtures/peer").exists());
        config(&auto).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        // A half-given dialing pair is refused once the side has files.
        let err = config(&[
            "--peer-cert-file=a.crt",
            "--peer-key-file=a.key",
            "--peer-client-cert-file=c.crt",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ClientKeyFile and ClientCertFile must both be present or both absent"),
            "{err}"
        );
        let dir2 = tempfile::tempdir().unwrap();
        let data2 = format!("--data-dir={}", dir2.path().display());
        let err = config(&["--peer-auto-tls", data2.as_str(), "--self-signed-cert-validity=0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to get peer self-signed certs: selfSignedCertValidity is invalid"),
            "{err}"
        );
        let err = config(&[
            "--name",
            "a",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "a=http://127.0.0.1:2380,b=https://127.0.0.1:2381",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("https peer URLs"), "{err}");
        // Cert files with only http URLs: accepted, not loaded, a warning.
        let c = config(&[
            "--cert-file",
            "missing.crt",
            "--key-file",
            "missing.key",
            "--client-cert-auth=true",
            "--trusted-ca-file",
            "ca.crt",
        ])
        .unwrap();
        assert!(c.client_tls.is_none());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        // With an https URL they are loaded at once: a missing one fails start-up.
        let err = config(&[
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--advertise-client-urls",
            "https://127.0.0.1:2379",
            "--cert-file",
            "missing.crt",
            "--key-file",
            "missing.key",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.crt"), "{err}");
    }

    #[test]
    fn bool_flags_take_gos_forms() {
        let auth = |args: &[&str]| {
            config(args).map(|c| (c.pre_vote, c.force_new_cluster, c.strict_reconfig_check))
        };
        assert_eq!(auth(&[]).unwrap(), (true, false, true));
        assert_eq!(
            auth(&["--pre-vote=false", "--force-new-cluster", "-strict-reconfig-check=0"]).unwrap(),
            (false, true, false)
        );
        let err = config(&["--pre-vote", "false"]).unwrap_err().to_string();
        assert_eq!(err, "\"false\" is not a valid flag");
        let err = config(&["--client-cert-auth=maybe"]).unwrap_err().to_string();
        assert!(err.contains("invalid boolean value \"maybe\" for -client-cert-auth"), "{err}");
    }

    #[test]
    fn member_local_addr_is_the_first_routable_advertised_ip() {
        let urls = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pick = |v: &[&str]| member_local_addr(&urls(v)).map(|ip| ip.to_string());
        assert_eq!(
            pick(&["http://10.0.0.2:2380", "http://10.0.0.1:2380"]),
            Some("10.0.0.1".into())
        );
        assert_eq!(
            pick(&["http://127.0.0.2:2380", "http://0.0.0.0:2380", "http://[fd00::1]:2380"]),
            Some("fd00::1".into())
        );
        assert_eq!(pick(&["http://localhost:2380", "http://[::1]:2380"]), None);
        assert_eq!(pick(&["http://node1.example:2380", "http://127.0.0.1:2380"]), None);
        let c = config(&[
            "--feature-gates=SetMemberLocalAddr=true",
            "--initial-advertise-peer-urls=http://10.0.0.7:2380",
            "--listen-peer-urls=http://10.0.0.7:2380",
        ])
        .unwrap();
        assert_eq!(c.peer_dialer.local_addr(), Some("10.0.0.7".parse().unwrap()));
        assert!(c.notices.iter().any(|n| n == "setting member local address LocalAddr=10.0.0.7"));
        let c = config(&["--feature-gates=SetMemberLocalAddr=true"]).unwrap();
        assert_eq!(c.peer_dialer.local_addr(), None);
        assert!(
            c.warnings.iter().any(|w| w.starts_with("unable to set a member local address")),
            "{:?}",
            c.warnings
        );
        let c = config(&[
            "--initial-advertise-peer-urls=http://10.0.0.7:2380",
            "--listen-peer-urls=http://10.0.0.7:2380",
        ])
        .unwrap();
        assert_eq!(c.peer_dialer.local_addr(), None);
    }

    #[test]
    fn pending_settings_have_etcds_defaults() {
        let c = config(&[]).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!(c.initial_election_tick_advance && c.strict_reconfig_check && c.pre_vote);
        assert!(c.grpc_gateway);
        assert_eq!((c.max_snapshots, c.max_wals), (5, 5));
        assert_eq!(c.max_concurrent_streams, u32::MAX);
        assert_eq!(
            c.grpc_keepalive,
            GrpcKeepalive {
                min_time: Duration::from_secs(5),
                interval: Duration::from_secs(7200),
                timeout: Duration::from_secs(20),
            }
        );
        assert_eq!(c.auto_compaction, None);
        assert_eq!(c.corrupt_check_time, None);
        assert_eq!(c.compact_hash_check_time, Duration::from_secs(60));
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(600));
        assert_eq!(c.warning_apply_duration, Duration::from_millis(100));
        assert_eq!(c.warning_unary_request_duration, Duration::from_millis(300));
        assert_eq!(c.snapshot_catchup_entries, 5000);
        assert_eq!(c.max_learners, 1);
        assert_eq!(c.compaction_batch_limit, 1000);
        assert_eq!(
            (c.raft_read_timeout, c.raft_write_timeout),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        assert_eq!(c.auth_token, AuthToken::Simple);
        assert_eq!(c.tls_min_version, TlsVersion::Tls12);
        assert_eq!(c.tls_max_version, None);
        assert_eq!(c.log.outputs, vec![LogOutput::Stderr]);
        assert_eq!(c.log.rotation, None);
        assert_eq!(c.feature_gates, FeatureGates::default());
        assert!(!c.initial_corrupt_check && !c.lease_checkpoint);
    }

    #[test]
    fn kubeadm_flags_are_accepted() {
        let c = config(&[
            "--experimental-initial-corrupt-check=true",
            "--experimental-watch-progress-notify-interval=5s",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--snapshot-count=10000",
            "--client-cert-auth=true",
            "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
            "--key-file=/etc/kubernetes/pki/etcd/server.key",
            "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
            "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
            "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        ])
        .unwrap();
        assert!(c.initial_corrupt_check);
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(5));
        assert_eq!(c.snapshot_count, 10_000);
        assert!(
            !c.warnings.iter().any(|w| w.contains("--watch-progress-notify-interval")),
            "{:?}",
            c.warnings
        );
        assert!(!c.warnings.iter().any(|w| w.contains("InitialCorruptCheck")), "{:?}", c.warnings);
        // The plain-HTTP metrics URL next to client cert files is not
        // warned about, as etcd does not (it warns for client URLs only:
        // here the default http://localhost:2379).
        let http: Vec<&String> =
            c.warnings.iter().filter(|w| w.contains("scheme is HTTP while key")).collect();
        assert_eq!(http.len(), 1, "{:?}", c.warnings);
        assert!(http[0].contains("localhost:2379"), "{http:?}");
        // etcd 3.6's names and gates.
        let c = config(&[
            "--watch-progress-notify-interval=1m",
            "--feature-gates=InitialCorruptCheck=true",
        ])
        .unwrap();
        assert_eq!(c.watch_progress_notify_interval, Duration::from_secs(60));
        assert!(c.initial_corrupt_check);
    }

    #[test]
    fn renamed_flags_may_not_be_given_twice() {
        let err = config(&["--experimental-corrupt-check-time=1m", "--corrupt-check-time=2m"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot set --experimental-corrupt-check-time and --corrupt-check-time at the same time, please use --corrupt-check-time only"), "{err}");
        let c = config(&["--experimental-corrupt-check-time=1m"]).unwrap();
        assert_eq!(c.corrupt_check_time, Some(Duration::from_secs(60)));
    }

    #[test]
    fn refused_flags_name_the_flag_in_one_line() {
        for (args, flag) in [
            (&["--enable-v2"][..], "--enable-v2=true"),
            (&["--experimental-enable-v2v3=/v2"], "--experimental-enable-v2v3=/v2"),
            (&["--proxy=on"], "--proxy=on"),
            (&["--proxy-dial-timeout=10"], "--proxy-dial-timeout=10"),
            (&["--discovery=https://discovery.etcd.io/x"], "--discovery="),
            (&["--discovery-srv=example.com"], "--discovery-srv="),
            (&["--discovery-fallback=proxy"], "--discovery-fallback=proxy"),
        ] {
            let err = config(args).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains("is not supported"), "{args:?}: {err}");
            assert!(!err.contains('\n'));
        }
        // Set to etcd's default they ask for nothing Logbook lacks.
        config(&["--enable-v2=false", "--proxy=off", "--discovery=", "--discovery-fallback=exit"])
            .unwrap();
    }

    #[test]
    fn warned_flags_are_accepted_with_a_warning() {
        // --enable-pprof and --metrics=extensive are acted on: no warning.
        let c = config(&[
            "--enable-pprof",
            "--metrics=extensive",
            "--logger=capnslog",
            "--unsafe-no-fsync",
        ])
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.enable_pprof && c.metrics_extensive);
        assert!(
            c.warnings.iter().any(|w| w.starts_with("--unsafe-no-fsync=true: ")),
            "{:?}",
            c.warnings
        );
        // etcd's default logger is Logbook's.
        let c = config(&["--logger=zap", "--log-format=console"]).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = config(&["--debug"]).unwrap();
        assert_eq!(c.log.level, "debug");
        let err = config(&["--log-level=loud"]).unwrap_err().to_string();
        assert!(err.contains("invalid value \"loud\" for flag -log-level"), "{err}");
    }

    #[test]
    fn etcds_cross_flag_checks() {
        let err = config(&["--listen-client-urls=http://127.0.0.1:1"]).unwrap_err().to_string();
        assert!(
            err.contains(
                "--advertise-client-urls is required when --listen-client-urls is set explicitly"
            ),
            "{err}"
        );
        let err = config(&["--heartbeat-interval=0"]).unwrap_err().to_string();
        assert!(err.contains("--heartbeat-interval must be >0 (set to 0ms)"), "{err}");
        let err = config(&["--compact-hash-check-time=0s"]).unwrap_err().to_string();
        assert!(err.contains("--compact-hash-check-time must be >0"), "{err}");
        let err = config(&["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("min version (TLS1.3) is greater than max version (TLS1.2)"), "{err}");
        let err = config(&[
            "--tls-min-version=TLS1.3",
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cipher suites cannot be configured when only TLS1.3 is enabled"),
            "{err}"
        );
        let err =
            config(&["--experimental-enable-lease-checkpoint-persist"]).unwrap_err().to_string();
        assert!(
            err.contains("LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"),
            "{err}"
        );
        let err = config(&["--enable-log-rotation"]).unwrap_err().to_string();
        assert!(err.contains("--log-outputs requires a single file path"), "{err}");
        let c = config(&["--enable-log-rotation", "--log-outputs=/var/log/etcd.log"]).unwrap();
        assert!(c.log.rotation.is_some());
        let err = config(&["--auto-compaction-mode=daily"]).unwrap_err().to_string();
        assert!(err.contains("unknown auto-compaction-mode \"daily\""), "{err}");
        let c = config(&["--auto-compaction-mode=revision", "--auto-compaction-retention=1000"])
            .unwrap();
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Revision(1000)));
        let c = config(&["--auto-compaction-retention=1"]).unwrap();
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Periodic(Duration::from_secs(3600))));
        let c = config(&["--raft-read-timeout=1s"]).unwrap();
        assert_eq!(c.raft_read_timeout, Duration::from_secs(5));
        let c = config(&[
            "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA",
        ])
        .unwrap();
        assert_eq!(c.cipher_suites, vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]);
        let err = config(&["--auth-token=jwt,sign-method=RS256"]).unwrap_err().to_string();
        assert!(err.contains("auth: missing key data"), "{err}");
    }

    #[test]
    fn environment_variables_as_etcd_reads_them() {
        let c = config_env(
            &["--name=n1"],
            &[
                ("ETCD_PRE_VOTE", "false"),
                ("ETCD_AUTO_COMPACTION_RETENTION", "30m"),
                ("ETCD_BOGUS", "1"),
            ],
        )
        .unwrap();
        assert!(!c.pre_vote);
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Periodic(Duration::from_secs(1800))));
        assert!(
            c.warnings.iter().any(|w| w == "unrecognized environment variable ETCD_BOGUS=1"),
            "{:?}",
            c.warnings
        );
        assert!(
            c.notices
                .iter()
                .any(|n| n == "recognized and used environment variable ETCD_PRE_VOTE=false"),
            "{:?}",
            c.notices
        );
        let err = config_env(&["--name=n1"], &[("ETCD_NAME", "n2")]).unwrap_err().to_string();
        assert!(err.contains("conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag"), "{err}");
        // Without an environment (library callers) no variable is read.
        let c = ServeArgs::from_flags(["--name=n1"]).into_config().unwrap();
        assert!(c.notices.is_empty());
    }

    #[test]
    fn config_file_replaces_flags_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yaml");
        std::fs::write(
            &path,
            "name: from-file\ninitial-advertise-peer-urls: http://127.0.0.1:12380\ninitial-cluster: from-file=http://127.0.0.1:12380\nauto-compaction-retention: \"2\"\nexperimental-initial-corrupt-check: true\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let c = config_env(
            &[&format!("--config-file={p}"), "--name=ignored"],
            &[("ETCD_PRE_VOTE", "false")],
        )
        .unwrap();
        assert_eq!(c.name, "from-file");
        assert!(c.pre_vote, "variables are ignored with a config file");
        assert!(c.initial_corrupt_check);
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Periodic(Duration::from_secs(7200))));
        assert!(
            c.warnings.iter().any(|w| w.contains("ignoring command-line flags --name")),
            "{:?}",
            c.warnings
        );
        assert!(c.notices.iter().any(|n| n.contains("loaded server configuration")));
        // etcd's config file may set listen-client-urls alone.
        std::fs::write(&path, "listen-client-urls: http://127.0.0.1:12379\n").unwrap();
        let c = config(&[&format!("--config-file={p}")]).unwrap();
        assert_eq!(c.listen_client, vec!["127.0.0.1:12379".parse().unwrap()]);
        std::fs::write(
            &path,
            "name: from-file\ninitial-advertise-peer-urls: http://127.0.0.1:12380\ninitial-cluster: from-file=http://127.0.0.1:12380\n",
        )
        .unwrap();
        // ETCD_CONFIG_FILE works too.
        let c = config_env(&[], &[("ETCD_CONFIG_FILE", &p)]).unwrap();
        assert_eq!(c.name, "from-file");
        let err = config(&["--config-file=/no/such/etcd.yaml"]).unwrap_err().to_string();
        assert!(err.contains("cannot read --config-file /no/such/etcd.yaml"), "{err}");
    }

    /// A value each flag plausibly takes, other than its default where the
    /// kind allows, and the flags it needs beside it.
    fn plausible(flag: &flags::Flag) -> Vec<String> {
        let n = flag.name;
        let v = match (n, flag.kind) {
            ("version" | "config-file", _) => return vec![],
            ("experimental-enable-lease-checkpoint-persist", _) => {
                return vec![format!("--{n}"), "--experimental-enable-lease-checkpoint".into()];
            }
            ("enable-log-rotation", _) => {
                return vec![format!("--{n}"), "--log-outputs=/tmp/etcd.log".into()];
            }
            ("listen-client-urls", _) => {
                return vec![
                    format!("--{n}=http://127.0.0.1:2379"),
                    "--advertise-client-urls=http://127.0.0.1:2379".into(),
                ];
            }
            ("cert-file" | "key-file", _) => {
                return vec!["--cert-file=a.crt".into(), "--key-file=a.key".into()];
            }
            ("peer-cert-file" | "peer-key-file", _) => {
                return vec!["--peer-cert-file=a.crt".into(), "--peer-key-file=a.key".into()];
            }
            ("initial-cluster", _) => "default=http://localhost:2380".into(),
            ("initial-advertise-peer-urls", _) => "http://localhost:2380".into(),
            (
                "listen-peer-urls"
                | "listen-metrics-urls"
                | "listen-client-http-urls"
                | "advertise-client-urls",
                _,
            ) => "http://127.0.0.1:23790".into(),
            ("auth-token", _) => "simple".into(),
            ("cipher-suites", _) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            ("tls-min-version" | "tls-max-version", _) => "TLS1.3".into(),
            ("feature-gates", _) => "InitialCorruptCheck=true".into(),
            ("auto-compaction-mode", _) => "revision".into(),
            ("auto-compaction-retention", _) => "1h".into(),
            ("log-outputs" | "log-output", _) => "stderr".into(),
            ("log-rotation-config-json", _) => "{}".into(),
            ("heartbeat-interval", _) => "50".into(),
            ("election-timeout", _) => "5000".into(),
            ("bcrypt-cost", _) => "4".into(),
            ("compact-hash-check-time" | "experimental-compact-hash-check-time", _) => "2m".into(),
            (_, Kind::Bool) if flag.default == "true" => return vec![format!("--{n}=false")],
            (_, Kind::Bool | Kind::Obsolete) => return vec![format!("--{n}")],
            (_, Kind::Choice(values)) => values.last().unwrap().to_string(),
            (_, Kind::Uint(_) | Kind::Int(_)) => "7".into(),
            (_, Kind::Duration) => "7s".into(),
            (_, Kind::Str | Kind::List) => "x".into(),
        };
        vec![format!("--{n}={v}")]
    }

    #[test]
    fn every_etcd_flag_is_accepted_or_refused_by_name() {
        // --auto-tls and --peer-auto-tls write their certificates there.
        let dir = tempfile::tempdir().unwrap();
        for flag in FLAGS {
            let mut args = plausible(flag);
            if flag.name.ends_with("auto-tls") {
                args.push(format!("--data-dir={}", dir.path().display()));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match (config(&args), flag.handling) {
                (Ok(_), Handling::Refused(_)) => panic!("{args:?} was accepted"),
                (Ok(_), _) => {}
                (Err(e), Handling::Refused(_)) => {
                    let e = e.to_string();
                    assert!(
                        e.contains(&format!("--{}=", flag.name)) && !e.contains('\n'),
                        "{args:?}: {e}"
                    );
                }
                (Err(e), _) => panic!("{args:?} refused: {e}"),
            }
        }
    }
}
