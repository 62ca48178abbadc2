//! `logbook serve`'s configuration: etcd's flag names, defaults and `ETCD_*`
//! environment variables, validated into a [`Config`] the server runs from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use url::Url;

use crate::error::{Error, Result};
use crate::ids::{cluster_id, member_id};
use crate::tls::{Alpn, PeerDialer, ServerTls, TlsFiles};

/// etcd's default request size limit, 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1536 * 1024;
/// etcd's default backend quota, 2 GiB.
pub const DEFAULT_QUOTA_BACKEND_BYTES: i64 = 2 * 1024 * 1024 * 1024;

/// The flags of `logbook serve`, named and defaulted as etcd's.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: "<name>.logbook").
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Path to a dedicated WAL directory (default: "<data-dir>/member/wal").
    #[arg(long, env = "ETCD_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of additional URLs to listen on that will respond to both the /metrics and /health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
    pub listen_metrics_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS", default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (default: "<name>=<initial-advertise-peer-urls>").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ("new" or "existing").
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: u32,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: u32,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Specify auth token type; Logbook serves 'simple' tokens.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// The lifetime in seconds of an unused auth token.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Comma-separated white list of origins for CORS, or cross-origin resource sharing, (empty or * means allow all).
    #[arg(long, env = "ETCD_CORS", default_value = "*")]
    pub cors: String,
    /// Comma-separated acceptable hostnames from HTTP client requests, if server is not secure (empty or * means allow all).
    #[arg(long, env = "ETCD_HOST_WHITELIST", default_value = "*")]
    pub host_whitelist: String,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE", default_value = "")]
    pub cert_file: String,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE", default_value = "")]
    pub key_file: String,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE", default_value = "")]
    pub trusted_ca_file: String,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Client TLS using generated certificates (not supported by Logbook).
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE", default_value = "")]
    pub peer_cert_file: String,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE", default_value = "")]
    pub peer_key_file: String,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE", default_value = "")]
    pub peer_trusted_ca_file: String,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Peer TLS using generated certificates (not supported by Logbook).
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
}

/// The validated configuration a member runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub db_path: PathBuf,
    pub listen_client: Vec<SocketAddr>,
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
    pub log_level: String,
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
    /// Listen addresses whose URL is https (client, metrics and peer).
    pub https_listen: Vec<SocketAddr>,
    /// Dials other members' peer URLs, with the peer TLS files for https.
    pub peer_dialer: Arc<PeerDialer>,
    /// Flag combinations etcd accepts with a warning, logged at start-up
    /// (the flags are read before logging is set up).
    pub warnings: Vec<String>,
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
    /// Checks the flags as etcd does and derives member and cluster IDs.
    pub fn into_config(self) -> Result<Config> {
        let bad = |msg: String| Error::Config(msg);
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.logbook", self.name)));
        let wal_dir = self.wal_dir.clone().unwrap_or_else(|| data_dir.join("member").join("wal"));
        let db_path = data_dir.join("member").join("snap").join("db");

        let client_urls = parse_listen_urls("--listen-client-urls", &self.listen_client_urls)?;
        let peer_urls = parse_listen_urls("--listen-peer-urls", &self.listen_peer_urls)?;
        let metrics_urls = if self.listen_metrics_urls.trim().is_empty() {
            Vec::new()
        } else {
            parse_listen_urls("--listen-metrics-urls", &self.listen_metrics_urls)?
        };
        let listen_client = client_urls.iter().map(|u| u.addr).collect();
        let listen_peer = peer_urls.iter().map(|u| u.addr).collect();
        let listen_metrics = metrics_urls.iter().map(|u| u.addr).collect();
        let advertise_client_urls =
            parse_urls("--advertise-client-urls", &self.advertise_client_urls)?;
        let advertise_peer_urls =
            parse_urls("--initial-advertise-peer-urls", &self.initial_advertise_peer_urls)?;

        let new_cluster = match self.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => {
                return Err(bad(format!(
                    "invalid value \"{other}\" for flag -initial-cluster-state: invalid value \"{other}\" (expected \"new\" or \"existing\")"
                )));
            }
        };

        let initial_cluster_text = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, advertise_peer_urls.join(",")));
        let initial_cluster =
            parse_initial_cluster(&initial_cluster_text, &self.initial_cluster_token)?;
        let me = initial_cluster.iter().find(|m| m.name == self.name).ok_or_else(|| {
            bad(format!(
                "couldn't find local name \"{}\" in the initial cluster configuration",
                self.name
            ))
        })?;
        let mut mine = me.peer_urls.clone();
        mine.sort();
        let mut advertised = advertise_peer_urls.clone();
        advertised.sort();
        if mine != advertised {
            return Err(bad(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\")",
                self.name,
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
        let mut warnings = Vec::new();
        if self.auto_tls || self.peer_auto_tls {
            let flag = if self.auto_tls { "--auto-tls" } else { "--peer-auto-tls" };
            return Err(bad(format!(
                "{flag} is not supported by Logbook: generate certificates and pass them with --cert-file/--key-file (--peer-cert-file/--peer-key-file)"
            )));
        }
        let client_files = tls_files(
            "",
            &self.cert_file,
            &self.key_file,
            &self.trusted_ca_file,
            self.client_cert_auth,
        )?;
        let peer_files = tls_files(
            "peer-",
            &self.peer_cert_file,
            &self.peer_key_file,
            &self.peer_trusted_ca_file,
            self.peer_client_cert_auth,
        )?;
        let mut https_listen = Vec::new();
        let client_side = client_urls.iter().chain(&metrics_urls);
        for u in client_side.clone() {
            if u.https {
                if client_files.is_none() {
                    return Err(bad(format!(
                        "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                        u.url
                    )));
                }
                https_listen.push(u.addr);
            } else if client_files.is_some() {
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
            .filter(|m| m.name != self.name)
            .flat_map(|m| &m.peer_urls)
            .any(|u| u.starts_with("https://"));
        let peer_dialer = match &peer_files {
            Some(files) if files.trusted_ca_file.is_some() => {
                Arc::new(PeerDialer::load(files.clone())?)
            }
            _ if dials_https => {
                return Err(bad(
                    "--initial-cluster has https peer URLs: --peer-cert-file, --peer-key-file and --peer-trusted-ca-file must be provided to reach them".into(),
                ));
            }
            _ => Arc::new(PeerDialer::plain()),
        };

        if self.heartbeat_interval == 0 {
            return Err(bad("--heartbeat-interval must be > 0 ms".into()));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(bad(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.election_timeout > 50_000 {
            return Err(bad(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50 seconds",
                self.election_timeout
            )));
        }
        if self.max_txn_ops == 0 {
            return Err(bad("--max-txn-ops must be > 0".into()));
        }
        match self.log_level.as_str() {
            "debug" | "info" | "warn" | "error" | "panic" | "fatal" => {}
            other => return Err(bad(format!("unknown log level \"{other}\""))),
        }
        let quota_backend_bytes = match self.quota_backend_bytes {
            q if q < 0 => return Err(bad(format!("--quota-backend-bytes {q} is negative"))),
            0 => DEFAULT_QUOTA_BACKEND_BYTES,
            q => q,
        };

        let auth_kind = self.auth_token.split(',').next().unwrap_or_default();
        if auth_kind != "simple" {
            return Err(bad(format!(
                "--auth-token {auth_kind}: Logbook serves simple tokens only (--auth-token simple); JWT tokens are not implemented"
            )));
        }
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(bad(format!("--bcrypt-cost {} is out of range [4, 31]", self.bcrypt_cost)));
        }
        if self.auth_token_ttl == 0 {
            return Err(bad("--auth-token-ttl must be > 0".into()));
        }

        Ok(Config {
            name: self.name,
            data_dir,
            wal_dir,
            db_path,
            listen_client,
            advertise_client_urls,
            listen_peer,
            listen_metrics,
            advertise_peer_urls,
            initial_cluster,
            new_cluster,
            cluster_token: self.initial_cluster_token,
            member_id,
            cluster_id,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election_ticks: (self.election_timeout / self.heartbeat_interval) as usize,
            snapshot_count: self.snapshot_count.max(1),
            quota_backend_bytes,
            max_request_bytes: self.max_request_bytes as usize,
            max_txn_ops: self.max_txn_ops as usize,
            log_level: self.log_level,
            auth_token_ttl: Duration::from_secs(self.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost,
            cors: comma_list(&self.cors),
            host_whitelist: comma_list(&self.host_whitelist),
            client_tls,
            peer_tls,
            https_listen,
            peer_dialer,
            warnings,
        })
    }
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
    }))
}

/// Parses a comma-separated URL list, normalised the way etcd prints URLs.
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

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(args: &[&str]) -> Result<Config> {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags parse").serve.into_config()
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
        let err =
            config(&["--listen-client-urls", "https://127.0.0.1:2379"]).unwrap_err().to_string();
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
        let err = config(&["--auto-tls=true"]).unwrap_err().to_string();
        assert!(err.contains("--auto-tls is not supported"), "{err}");
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
    fn bool_tls_flags_take_etcds_forms() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["serve"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .map(|c| (c.serve.client_cert_auth, c.serve.peer_client_cert_auth))
        };
        assert_eq!(parse(&[]).unwrap(), (false, false));
        assert_eq!(
            parse(&["--client-cert-auth", "--peer-client-cert-auth=true"]).unwrap(),
            (true, true)
        );
        assert_eq!(parse(&["--client-cert-auth=false"]).unwrap(), (false, false));
        assert!(parse(&["--client-cert-auth=maybe"]).is_err());
    }
}
