//! TLS for the client and peer ports, configured by etcd's flags
//! (`--cert-file --key-file --trusted-ca-file --client-cert-auth` and their
//! `--peer-*` twins), on rustls with the ring provider.
//!
//! - [`ServerTls`]: a listener's side. Each accepted connection is handed a
//!   [`tokio_rustls::TlsAcceptor`] built from the files as they are now: the
//!   files are looked at again at most every [`RELOAD_CHECK`], and a
//!   changed set is loaded again, so a renewed
//!   certificate (or CA bundle) takes effect for new connections without a
//!   restart. Open connections keep the certificate they were made with. A
//!   set that fails to load (say the key is not written yet) is logged and
//!   the previous one stays in use until the files change again.
//! - [`PeerDialer`]: the peer client side (Raft transport, join, lease
//!   questions to the leader): `http://` peer URLs are dialled plainly,
//!   `https://` ones through TLS with the peer certificate as the client's
//!   and the peer CA as the only trust root, reloaded the same way. With the
//!   `SetMemberLocalAddr` feature gate every peer connection leaves from the
//!   member's advertised peer IP ([`PeerDialer::from_local_addr`]).
//! - [`ClientCertCommonName`]: what the client port puts into every request
//!   from a client that presented a verified certificate, for auth to take
//!   as the user name (as etcd does).
//!
//! - [`TlsPolicy`]: the rest of etcd's `TLSInfo`: CRL, allowed CNs and
//!   hostnames (a wrapping [`ClientCertVerifier`]), the peer port's client
//!   SAN check, `--tls-min/max-version`, `--cipher-suites`, the pair a
//!   member dials with, and auto-TLS's "do not verify the server".
//! - [`self_cert`]: `--auto-tls`/`--peer-auto-tls`'s generated pair, an
//!   ECDSA P-521 key as etcd's; `ecdsa_p521` (beside this file) adds P-521
//!   signing and verification to the ring provider every config here uses.
//!
//! etcd's semantics, kept here: a trusted CA file alone already makes the
//! server require and verify client certificates (etcd's `TLSInfo` does
//! the same), and a listener on an `http://` URL ignores the cert files.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

use crate::config::TlsVersion;
use crate::error::{Error, Result};

mod ecdsa_p521;

/// How often, at most, a listener or dialer looks at its files again (and
/// only when a connection is being made).
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A TLS handshake not done by then is dropped, so a silent client cannot
/// hold a connection slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The subject common name of the verified certificate a client presented
/// on a TLS connection to the client port. Inserted into the extensions of
/// every HTTP request (so every gRPC call) on that connection; absent when
/// the client presented no certificate or it has no CN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertCommonName(pub String);

/// Put into the extensions of every HTTP request that arrived over TLS
/// (with or without a client certificate), for the rules etcd applies to
/// insecure servers only, such as `--host-whitelist`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsConnection;

/// One side's (client or peer) TLS rules beyond its certificate, key and
/// CA: what etcd's `TLSInfo` carries besides them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// `--client-crl-file`/`--peer-crl-file`: a client certificate listed
    /// there (by serial, in a CRL its CA issued) is refused at the handshake.
    pub crl_file: Option<PathBuf>,
    /// `--peer-cert-allowed-cn`: a verified client certificate's subject CN
    /// must be one of these.
    pub allowed_cns: Vec<String>,
    /// `--client-cert-allowed-hostname`/`--peer-cert-allowed-hostname`: a
    /// verified client certificate must be valid for one of these names.
    pub allowed_hostnames: Vec<String>,
    /// `--[peer-]client-cert-file` and `--[peer-]client-key-file`: what this
    /// member presents when it dials as a client (its server pair otherwise).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The certificate is `--[peer-]auto-tls`'s self-signed one: as etcd, a
    /// dialer using it does not verify the server's certificate.
    pub self_signed: bool,
    /// `--tls-min-version` / `--tls-max-version` (`None`: TLS 1.3).
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
    /// `--cipher-suites` in Go's names; empty: rustls' defaults. As in Go,
    /// they limit TLS 1.2 only: TLS 1.3's suites are always all offered.
    pub cipher_suites: Vec<String>,
    /// The peer listener's check (etcd's `checkSAN`, off with
    /// `--peer-skip-client-san-verification`): a client certificate naming
    /// IP addresses or DNS names must name the address it connects from.
    pub check_client_san: bool,
}

/// The files of one side (client or peer), as the flags name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--cert-file` / `--peer-cert-file`: PEM, the leaf first, then any
    /// intermediates.
    pub cert_file: PathBuf,
    /// `--key-file` / `--peer-key-file`: PEM, PKCS#8, PKCS#1 or SEC1.
    pub key_file: PathBuf,
    /// `--trusted-ca-file` / `--peer-trusted-ca-file`: PEM bundle.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    pub client_cert_auth: bool,
    /// CRL, allowed names, versions, suites, client pair.
    pub policy: TlsPolicy,
}

impl TlsFiles {
    /// Whether a connecting client must present a certificate the trusted
    /// CA signed: etcd requires one as soon as a trusted CA file is given.
    pub fn verifies_clients(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut p = vec![self.cert_file.clone(), self.key_file.clone()];
        p.extend(self.trusted_ca_file.clone());
        p.extend(self.policy.crl_file.clone());
        if let Some((cert, key)) = &self.policy.client_cert {
            p.push(cert.clone());
            p.push(key.clone());
        }
        p
    }

    /// The certificate and key this side presents when it dials.
    fn dial_pair(&self) -> (&Path, &Path) {
        match &self.policy.client_cert {
            Some((cert, key)) => (cert, key),
            None => (&self.cert_file, &self.key_file),
        }
    }
}

/// The ring provider limited to `--cipher-suites`: every TLS 1.3 suite (Go
/// offers them all whatever the list says) and the named TLS 1.2 ones.
/// ECDSA P-521 keys sign and verify too (etcd's auto-TLS key; ring lacks it).
fn policy_provider(policy: &TlsPolicy) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = ecdsa_p521::provider(rustls::crypto::ring::default_provider());
    if !policy.cipher_suites.is_empty() {
        p.cipher_suites.retain(|suite| match suite {
            rustls::SupportedCipherSuite::Tls13(_) => true,
            rustls::SupportedCipherSuite::Tls12(_) => {
                let name = format!("{:?}", suite.suite());
                policy.cipher_suites.iter().any(|n| rustls_suite_name(n) == name)
            }
        });
    }
    Arc::new(p)
}

/// rustls' name for a suite Go (and so etcd) names `go`: the same but for
/// Go's two CHACHA20 aliases without the `_SHA256`.
fn rustls_suite_name(go: &str) -> String {
    if go.ends_with("_CHACHA20_POLY1305") { format!("{go}_SHA256") } else { go.to_string() }
}

/// The protocol versions `--tls-min-version`/`--tls-max-version` allow.
fn policy_versions(policy: &TlsPolicy) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let max = policy.max_version.unwrap_or(TlsVersion::Tls13);
    let mut v = Vec::new();
    if policy.min_version <= TlsVersion::Tls13 && max >= TlsVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    if policy.min_version <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// Reads a CRL file: DER as etcd reads it (Go's `x509.ParseRevocationList`),
/// or PEM (`X509 CRL` blocks).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| tls_error(format!("reading the CRL {}", path.display()), e))?;
    if bytes.starts_with(b"-----BEGIN") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_error(format!("reading the CRL {}", path.display()), e))?;
        if crls.is_empty() {
            return Err(Error::Config(format!("no PEM CRL found in {}", path.display())));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

fn tls_error(what: impl fmt::Display, e: impl fmt::Display) -> Error {
    Error::Config(format!("{what}: {e}"))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("reading certificates from {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("no PEM certificate found in {}", path.display())));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_error(format!("reading the private key from {}", path.display()), e))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            tls_error(format!("trusting a CA certificate of {}", path.display()), e)
        })?;
    }
    Ok(Arc::new(roots))
}

/// What a set of files held when last looked at, `None` for one that could
/// not be read. Contents rather than modification times: a file rewritten
/// twice within the file system's timestamp granularity, or copied over
/// with its old time kept, still counts as changed. The files are small and
/// read at most once per [`RELOAD_CHECK`].
type Stamps = Vec<Option<Vec<u8>>>;

fn stamps(paths: &[PathBuf]) -> Stamps {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
}

/// A value built from files, built again when they change.
struct Reloading<T> {
    what: &'static str,
    files: TlsFiles,
    build: fn(&TlsFiles) -> Result<Arc<T>>,
    state: Mutex<ReloadState<T>>,
}

struct ReloadState<T> {
    current: Arc<T>,
    stamps: Stamps,
    checked: Instant,
}

impl<T> Reloading<T> {
    fn load(
        what: &'static str,
        files: TlsFiles,
        build: fn(&TlsFiles) -> Result<Arc<T>>,
    ) -> Result<Self> {
        let before = stamps(&files.paths());
        let current = build(&files)?;
        Ok(Reloading {
            what,
            files,
            build,
            state: Mutex::new(ReloadState { current, stamps: before, checked: Instant::now() }),
        })
    }

    /// The value for a new connection: rebuilt first if the files changed.
    fn get(&self) -> Arc<T> {
        let mut state = self.state.lock();
        if state.checked.elapsed() < RELOAD_CHECK {
            return state.current.clone();
        }
        state.checked = Instant::now();
        let now = stamps(&self.files.paths());
        if now == state.stamps {
            return state.current.clone();
        }
        // Record what we saw even if it fails to load: a half-written set is
        // tried again when the next file lands, not every check.
        state.stamps = now;
        match (self.build)(&self.files) {
            Ok(fresh) => {
                tracing::info!(cert = %self.files.cert_file.display(), "reloaded {} TLS certificates", self.what);
                state.current = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{} TLS files changed but do not load; keeping the previous ones", self.what);
            }
        }
        state.current.clone()
    }
}

/// A listener's TLS: its certificate, and the CA its clients' certificates
/// must chain to when it verifies them.
pub struct ServerTls {
    config: Reloading<ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.config.files).finish()
    }
}

impl ServerTls {
    /// Loads the files now (failing start-up on a bad one). `alpn` lists the
    /// protocols offered, in preference order.
    pub fn load(what: &'static str, files: TlsFiles, alpn: Alpn) -> Result<ServerTls> {
        let build = match alpn {
            Alpn::H2AndHttp1 => build_server_h2_http1 as fn(&TlsFiles) -> Result<Arc<ServerConfig>>,
            Alpn::H2 => build_server_h2,
        };
        Ok(ServerTls { config: Reloading::load(what, files, build)? })
    }

    /// The acceptor for one new connection, with the current files.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.get())
    }

    /// Whether clients must present a verified certificate.
    pub fn verifies_clients(&self) -> bool {
        self.config.files.verifies_clients()
    }

    /// The checks etcd makes of a connection once its handshake is done:
    /// on the peer port, that the client certificate names the address it
    /// came from (unless `--peer-skip-client-san-verification`).
    pub async fn check_connection(
        &self,
        conn: &tokio_rustls::server::TlsStream<TcpStream>,
    ) -> io::Result<()> {
        if !self.config.files.policy.check_client_san {
            return Ok(());
        }
        let (tcp, session) = conn.get_ref();
        let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
            return Ok(());
        };
        check_client_san(leaf, tcp.peer_addr()?).await
    }
}

/// The application protocols a listener offers.
#[derive(Clone, Copy, Debug)]
pub enum Alpn {
    /// The client port: gRPC (h2) and the HTTP/1.1 endpoints and gateway.
    H2AndHttp1,
    /// The peer port: gRPC only.
    H2,
}

fn build_server_h2_http1(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    build_server(files, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
}

fn build_server_h2(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    build_server(files, vec![b"h2".to_vec()])
}

fn build_server(files: &TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerConfig>> {
    let certs = load_certs(&files.cert_file)?;
    let key = load_key(&files.key_file)?;
    let policy = &files.policy;
    // etcd checks the dialing pair loads before it serves, too.
    if let Some((cert, key)) = &policy.client_cert {
        load_certs(cert)?;
        load_key(key)?;
    }
    let builder = ServerConfig::builder_with_provider(policy_provider(policy))
        .with_protocol_versions(&policy_versions(policy))
        .map_err(|e| tls_error("configuring TLS (--cipher-suites, --tls-min/max-version)", e))?;
    let builder = if files.verifies_clients() {
        let ca =
            files.trusted_ca_file.as_ref().expect("config checks a CA comes with client-cert-auth");
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, policy_provider(policy));
        if let Some(crl) = &policy.crl_file {
            // etcd looks a certificate's serial up in the list whoever
            // issued it; a certificate of a CA the list is not from is not
            // refused for that.
            verifier = verifier.with_crls(load_crls(crl)?).allow_unknown_revocation_status();
        }
        let verifier = verifier.build().map_err(|e| {
            tls_error(format!("client certificate verification with {}", ca.display()), e)
        })?;
        if policy.allowed_cns.is_empty() && policy.allowed_hostnames.is_empty() {
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_client_cert_verifier(Arc::new(AllowedClients {
                inner: verifier,
                cns: policy.allowed_cns.clone(),
                hostnames: policy.allowed_hostnames.clone(),
            }))
        }
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        tls_error(
            format!(
                "certificate {} with key {}",
                files.cert_file.display(),
                files.key_file.display()
            ),
            e,
        )
    })?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A client certificate verifier that, once the CA (and CRL) accept a
/// certificate, also wants its CN among `--peer-cert-allowed-cn` or its
/// names covering one of `--[peer-]cert-allowed-hostname` (etcd's
/// `VerifyPeerCertificate`, with etcd's error).
#[derive(Debug)]
struct AllowedClients {
    inner: Arc<dyn ClientCertVerifier>,
    cns: Vec<String>,
    hostnames: Vec<String>,
}

impl AllowedClients {
    fn allows(&self, leaf: &CertificateDer<'_>) -> bool {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return false;
        };
        if !self.cns.is_empty() {
            let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok());
            return cn.is_some_and(|cn| self.cns.iter().any(|a| a == cn));
        }
        let sans = CertNames::of(&cert);
        self.hostnames.iter().any(|h| sans.valid_for(h))
    }
}

impl ClientCertVerifier for AllowedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        if self.allows(end_entity) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                rustls::OtherError(Arc::new(io::Error::other(
                    "client certificate authentication failed",
                ))),
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The subject alternative names of a certificate, for Go's
/// `x509.Certificate.VerifyHostname` rules: an IP address matches an IP
/// SAN; a name matches a DNS SAN case-insensitively, `*.` matching one
/// leftmost label.
struct CertNames {
    ips: Vec<std::net::IpAddr>,
    dns: Vec<String>,
}

impl CertNames {
    fn of(cert: &x509_parser::certificate::X509Certificate<'_>) -> CertNames {
        use x509_parser::extensions::GeneralName;
        let mut names = CertNames { ips: Vec::new(), dns: Vec::new() };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.dns.push(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            names.ips.push(a.into());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            names.ips.push(a.into());
                        }
                    }
                    _ => {}
                }
            }
        }
        names
    }

    fn valid_for(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ips.contains(&ip);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.dns.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *pattern == host,
        })
    }
}

/// etcd's `checkSAN` on the peer port: a client certificate naming IP
/// addresses or DNS names must name the address it connects from: an IP SAN
/// equal to it, or a DNS SAN that the address resolves back to (reverse
/// lookup; a `*.` SAN matching any name ending in its suffix) or that
/// resolves to the address (forward lookups), tried in Go's order. One
/// naming neither passes.
async fn check_client_san(leaf: &CertificateDer<'_>, remote: SocketAddr) -> io::Result<()> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Err(io::Error::other("client certificate does not parse"));
    };
    let names = CertNames::of(&cert);
    if names.ips.is_empty() && names.dns.is_empty() {
        return Ok(());
    }
    let ip = remote.ip().to_canonical();
    if names.ips.contains(&ip) {
        return Ok(());
    }
    if names.dns.is_empty() {
        let valid = names.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        return Err(io::Error::other(format!("x509: certificate is valid for {valid}, not {ip}")));
    }
    if let Some(name) = reverse_lookup(ip).await
        && reverse_name_matches(&name, &names.dns)
    {
        return Ok(());
    }
    for name in names.dns.iter().filter(|n| !n.starts_with("*.")) {
        let lookup = tokio::net::lookup_host((name.as_str(), 0));
        if let Ok(Ok(addrs)) = tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await
            && addrs.into_iter().any(|a| a.ip().to_canonical() == ip)
        {
            return Ok(());
        }
    }
    // Go prints the list with %q: ["a" "b"].
    let listed = names.dns.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(" ");
    Err(io::Error::other(format!("tls: \"{ip}\" does not match any of DNSNames [{listed}]")))
}

/// How long the peer SAN check waits for one name lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `name`, what an address resolved back to, is one of a
/// certificate's DNS SANs as Go's `isHostInDNS` compares them: the PTR's
/// trailing dot dropped, equal to a plain SAN, or ending in a `*.` SAN's
/// suffix (`.example.com`, at any depth). `dns` is lower case
/// ([`CertNames`]); so is the comparison, as DNS names are.
fn reverse_name_matches(name: &str, dns: &[String]) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    dns.iter().any(|san| match san.strip_prefix("*.") {
        Some(_) => name.ends_with(&san[1..]),
        None => *san == name,
    })
}

/// The host name `ip` resolves back to, through the system's resolver
/// (`getnameinfo` with `NI_NAMEREQD`: `/etc/hosts`, then a DNS PTR query,
/// as nsswitch says), on a blocking thread, given at most
/// [`LOOKUP_TIMEOUT`]. `None` when it has no name or takes longer (the
/// thread then finishes on its own). Go's resolver may return several names
/// (every `/etc/hosts` line for the address); this is the first one.
async fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let lookup = tokio::task::spawn_blocking(move || name_of(ip));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(Ok(name))) => Some(name),
        Ok(Ok(Err(e))) => {
            tracing::debug!(ip = %ip, error = %e, "reverse lookup of a peer address found no name");
            None
        }
        _ => None,
    }
}

/// `getnameinfo(3)` of `ip`, a name required (no numeric fallback).
fn name_of(ip: IpAddr) -> io::Result<String> {
    let addr = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; 1025]; // glibc's NI_MAXHOST
    // SAFETY: `addr` is a valid socket address of `addr.len()` bytes that
    // outlives the call; `host` is a writable buffer of the length passed,
    // which getnameinfo NUL-terminates on success; no service buffer is
    // passed (null, length 0). getnameinfo is thread-safe.
    let rc = unsafe {
        libc::getnameinfo(
            addr.as_ptr().cast::<libc::sockaddr>(),
            addr.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a pointer to a static NUL-terminated
        // message for any code.
        let msg = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(io::Error::other(format!("reverse lookup of {ip}: {}", msg.to_string_lossy())));
    }
    // SAFETY: on success `host` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The subject CN of the verified certificate a TLS client presented.
pub fn peer_common_name(conn: &rustls::CommonState) -> Option<ClientCertCommonName> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(ClientCertCommonName(cn.to_string()))
}

/// etcd's line for a connection refused at its TLS handshake or by the
/// checks after it ("rejected connection on client endpoint", or `peer`),
/// with its fields (the SNI server name, empty when the handshake did not
/// get that far): a warning, but for a client that hung up (end of file),
/// which etcd logs at debug level so probes do not flood the log.
pub fn log_rejected(what: &str, remote: &str, server_name: &str, error: &io::Error) {
    let msg = if what == "peer" {
        "rejected connection on peer endpoint"
    } else {
        "rejected connection on client endpoint"
    };
    if error.kind() == io::ErrorKind::UnexpectedEof {
        tracing::debug!(remote_addr = %remote, server_name, error = %error, "{msg}");
    } else {
        tracing::warn!(remote_addr = %remote, server_name, error = %error, "{msg}");
    }
}

/// Does the TLS handshake of one accepted connection, bounded in time.
pub async fn handshake(
    tls: &ServerTls,
    stream: TcpStream,
) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

/// A connection accepted on a peer listener: plain, or TLS after its
/// handshake.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

/// A TLS connection and the first bytes already read from it (to tell a
/// Raft lane from HTTP/2), which its reader gets first.
pub struct TlsConn {
    pub(crate) stream: tokio_rustls::server::TlsStream<TcpStream>,
    /// Bytes read ahead of the connection's reader, which it gets first.
    pub(crate) prefix: Vec<u8>,
    at: usize,
}

impl Connected for MaybeTls {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            MaybeTls::Plain(s) => s.connect_info(),
            MaybeTls::Tls(s) => s.stream.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => {
                if s.at < s.prefix.len() {
                    let n = (s.prefix.len() - s.at).min(buf.remaining());
                    buf.put_slice(&s.prefix[s.at..s.at + n]);
                    s.at += n;
                    return Poll::Ready(Ok(()));
                }
                Pin::new(&mut s.stream).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(&mut s.stream).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(&mut s.stream).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.stream.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(&mut s.stream).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(&mut s.stream).poll_shutdown(cx),
        }
    }
}

/// Looks at each connection a listener accepts before its server does, and
/// takes it (`Ok(None)`) or hands it back (`Ok(Some(conn))`): the peer port
/// takes its Raft lanes this way. Bounded by the handshake timeout.
pub type Divert = Arc<
    dyn Fn(MaybeTls) -> Pin<Box<dyn Future<Output = io::Result<Option<MaybeTls>>> + Send>>
        + Send
        + Sync,
>;

/// The accepted connections of a tonic listener, TLS-wrapped when `tls` is
/// given. Handshakes run in their own tasks so a slow one never holds up the
/// next accept; failed ones are logged and dropped. With `divert`, a
/// connection may be taken before its server sees it (the peer port's Raft
/// lanes). Ends when the receiving server drops the stream.
pub fn incoming(
    listener: TcpListener,
    addr: SocketAddr,
    what: &'static str,
    tls: Option<Arc<ServerTls>>,
    divert: Option<Divert>,
) -> impl tokio_stream::Stream<Item = io::Result<MaybeTls>> {
    let (tx, rx) = mpsc::channel::<io::Result<MaybeTls>>(16);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, address = %addr, "accepting a {what} connection failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            // Raft messages and client answers are small writes: never let
            // Nagle's algorithm hold one back waiting for an ACK.
            let _ = stream.set_nodelay(true);
            if tls.is_none() && divert.is_none() {
                if tx.send(Ok(MaybeTls::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            }
            let tls = tls.clone();
            let divert = divert.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let remote = stream.peer_addr().ok();
                let remote_addr = remote.map(|r| r.to_string()).unwrap_or_default();
                let conn = match &tls {
                    None => MaybeTls::Plain(stream),
                    Some(tls) => match handshake(tls, stream).await {
                        Ok(s) => {
                            if let Err(e) = tls.check_connection(&s).await {
                                let sni = s.get_ref().1.server_name().unwrap_or_default();
                                log_rejected(what, &remote_addr, sni, &e);
                                return;
                            }
                            MaybeTls::Tls(Box::new(TlsConn {
                                stream: s,
                                prefix: Vec::new(),
                                at: 0,
                            }))
                        }
                        Err(e) => {
                            log_rejected(what, &remote_addr, "", &e);
                            return;
                        }
                    },
                };
                let conn = match divert {
                    None => conn,
                    Some(divert) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, divert(conn)).await {
                            Ok(Ok(None)) => return,
                            Ok(Ok(Some(c))) => c,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, remote = ?remote, address = %addr, "{what} connection dropped before its first request");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(remote = ?remote, address = %addr, "{what} connection sent nothing; dropped");
                                return;
                            }
                        }
                    }
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Dials peers: plain for `http://` URLs, TLS for `https://` ones.
pub struct PeerDialer {
    tls: Option<Reloading<ClientConfig>>,
    /// The address every peer connection is bound to before it connects
    /// (etcd's `TLSInfo.LocalAddr`, set by the `SetMemberLocalAddr` gate).
    local_addr: Option<IpAddr>,
}

impl fmt::Debug for PeerDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerDialer")
            .field("files", &self.tls.as_ref().map(|t| &t.files))
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl PeerDialer {
    /// A dialer for plain `http://` peers only.
    pub fn plain() -> PeerDialer {
        PeerDialer { tls: None, local_addr: None }
    }

    /// A dialer presenting the peer certificate and trusting only the peer
    /// CA. Loads the files now.
    pub fn load(files: TlsFiles) -> Result<PeerDialer> {
        Ok(PeerDialer {
            tls: Some(Reloading::load("peer client", files, build_client)?),
            local_addr: None,
        })
    }

    /// The same dialer, its connections leaving from `ip` (any port).
    pub fn from_local_addr(mut self, ip: Option<IpAddr>) -> PeerDialer {
        self.local_addr = ip;
        self
    }

    /// The address peer connections leave from, when one is set.
    pub fn local_addr(&self) -> Option<IpAddr> {
        self.local_addr
    }

    /// A blocking TCP connection to `addr` within `timeout`, from the local
    /// address when one is set (bound before connecting, as Go's
    /// `net.Dialer{LocalAddr}` does). The Raft lanes dial this way.
    pub fn connect_tcp(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<std::net::TcpStream> {
        let Some(ip) = self.local_addr else {
            return std::net::TcpStream::connect_timeout(&addr, timeout);
        };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.bind(&SocketAddr::new(ip, 0).into())?;
        socket.connect_timeout(&addr.into(), timeout)?;
        Ok(socket.into())
    }

    /// The async twin of [`PeerDialer::connect_tcp`] (no timeout of its
    /// own), for gRPC channels over TLS: every address `addr` resolves to
    /// is tried in turn.
    async fn connect_tcp_async(&self, addr: &str) -> io::Result<TcpStream> {
        let Some(ip) = self.local_addr else {
            return TcpStream::connect(addr).await;
        };
        let mut last =
            io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to no address"));
        for to in tokio::net::lookup_host(addr).await? {
            let socket = if to.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            match socket.connect(to).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The TLS configuration for a Raft lane to an `https://` peer URL: the
    /// peer certificates as they are now, without ALPN (a lane is not HTTP).
    pub fn lane_tls(&self, url: &str) -> std::result::Result<Arc<ClientConfig>, String> {
        let Some(tls) = &self.tls else {
            return Err(format!(
                "{url} is https but no --peer-trusted-ca-file (with --peer-cert-file and --peer-key-file) is configured"
            ));
        };
        let mut config = (*tls.get()).clone();
        config.alpn_protocols.clear();
        Ok(Arc::new(config))
    }

    /// Connects a gRPC channel to a peer URL (connect timeout 1 s, with
    /// HTTP/2 keep-alives so a dead peer is noticed).
    pub async fn connect(self: &Arc<Self>, url: &str) -> std::result::Result<Channel, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
        let port = parsed.port_or_known_default().ok_or_else(|| format!("{url}: no port"))?;
        // tonic sees a plain URL; TLS, when wanted, is done by our connector,
        // so tonic's own TLS features are not needed (nor can get in the way).
        let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
            .map_err(|e| format!("{url}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .local_address(self.local_addr);
        match parsed.scheme() {
            "https" => {
                if self.tls.is_none() {
                    return Err(format!(
                        "{url} is https but no --peer-trusted-ca-file (with --peer-cert-file and --peer-key-file) is configured"
                    ));
                }
                let name = host.trim_start_matches('[').trim_end_matches(']').to_string();
                let server_name = ServerName::try_from(name).map_err(|e| format!("{url}: {e}"))?;
                let connector = TlsConnector {
                    dialer: self.clone(),
                    addr: format!("{host}:{port}"),
                    server_name,
                };
                endpoint.connect_with_connector(connector).await.map_err(|e| format!("{url}: {e}"))
            }
            _ => endpoint.connect().await.map_err(|e| format!("{url}: {e}")),
        }
    }
}

fn build_client(files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let policy = &files.policy;
    let builder = ClientConfig::builder_with_provider(policy_provider(policy))
        .with_protocol_versions(&policy_versions(policy))
        .map_err(|e| tls_error("configuring TLS (--cipher-suites, --tls-min/max-version)", e))?;
    let builder = if policy.self_signed {
        // etcd's TLSInfo.ClientConfig for a self-signed (auto-TLS) set:
        // InsecureSkipVerify. The handshake's signatures are still checked.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(policy_provider(policy))))
    } else {
        let ca = files.trusted_ca_file.as_ref().ok_or_else(|| {
            Error::Config("dialing https peers needs --peer-trusted-ca-file".into())
        })?;
        builder.with_root_certificates(load_roots(ca)?)
    };
    let (cert, key) = files.dial_pair();
    let mut config =
        builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?).map_err(|e| {
            tls_error(format!("certificate {} with key {}", cert.display(), key.display()), e)
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate (a dialer with auto-TLS's self-signed
/// certificates, as etcd's InsecureSkipVerify), checking only that the
/// server holds its key.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The file names etcd's `transport.SelfCert` writes into its directory
/// (`<data-dir>/fixtures/client` or `<data-dir>/fixtures/peer`).
pub const SELF_CERT_FILE: &str = "cert.pem";
pub const SELF_KEY_FILE: &str = "key.pem";

/// `--auto-tls`/`--peer-auto-tls`: the certificate and key in `dir`, made
/// there first if either is missing, as etcd's `transport.SelfCert` makes
/// them: self-signed (a CA), subject O=etcd, a random 128-bit serial, valid
/// from now for `years` * 365 days, key usages digital signature, key
/// encipherment and CRL signing, extended usage server auth, and a SAN per
/// host (an IP SAN for an address, a DNS SAN otherwise; hosts are
/// `host:port` from the listen URLs). The key file is written mode 0600.
///
/// The key is ECDSA P-521, as etcd's, written as SEC1 (`EC PRIVATE KEY`)
/// as Go's `x509.MarshalECPrivateKey` writes it; ring cannot do P-521, so
/// the certificate is signed and the key used through [`ecdsa_p521`] (a pair
/// made by an older Logbook, P-384 in PKCS#8, still loads).
pub fn self_cert(dir: &Path, hosts: &[String], years: u32) -> Result<(PathBuf, PathBuf)> {
    if years == 0 {
        return Err(Error::Config(
            "selfSignedCertValidity is invalid,it should be greater than 0".into(),
        ));
    }
    let io_err = |what: &str, path: &Path, e: io::Error| {
        Error::Config(format!("{what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io_err("cannot create cert directory", dir, e))?;
    let dir = std::path::absolute(dir).map_err(|e| io_err("resolving", dir, e))?;
    let cert_path = dir.join(SELF_CERT_FILE);
    let key_path = dir.join(SELF_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let gen_err = |e: rcgen::Error| Error::Config(format!("cannot generate x509 certificate: {e}"));
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut serial[..]);
    serial[0] &= 0x7f; // a positive INTEGER, as Go's rand.Int below 2^128 is
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now
        .checked_add(time::Duration::days(365 * i64::from(years)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| Error::Config(format!("--self-signed-cert-validity {years} is too long")))?;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    for host in hosts {
        let h = match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host.as_str(),
        };
        let h = h.trim_start_matches('[').trim_end_matches(']');
        let san = match h.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(h.try_into().map_err(gen_err)?),
        };
        params.subject_alt_names.push(san);
    }
    let (cert, key) = ecdsa_p521::self_signed(&params)
        .map_err(|e| Error::Config(format!("cannot generate x509 certificate: {e}")))?;
    tracing::warn!(not_after = %params.not_after, "automatically generate certificates");
    std::fs::write(&cert_path, pem("CERTIFICATE", &cert))
        .map_err(|e| io_err("cannot cert file", &cert_path, e))?;
    tracing::info!(path = %cert_path.display(), "created cert file");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| io_err("cannot key file", &key_path, e))?;
        f.write_all(pem("EC PRIVATE KEY", &key).as_bytes())
            .map_err(|e| io_err("cannot key file", &key_path, e))?;
    }
    tracing::info!(path = %key_path.display(), "created key file");
    Ok((cert_path, key_path))
}

/// `der` as a PEM block of `label`, 64 base64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// tonic's connector for one https peer: TCP, then TLS with the dialer's
/// current configuration (so a reconnect picks up reloaded files).
#[derive(Clone)]
struct TlsConnector {
    dialer: Arc<PeerDialer>,
    addr: String,
    server_name: ServerName<'static>,
}

type ConnectFuture = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower_service::Service<axum::http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: axum::http::Uri) -> Self::Future {
        let config = self.dialer.tls.as_ref().expect("https connectors come with TLS").get();
        let addr = self.addr.clone();
        let name = self.server_name.clone();
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let tcp = dialer.connect_tcp_async(&addr).await?;
            tcp.set_nodelay(true)?;
            let connect = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
                Ok(s) => Ok(TokioIo::new(s?)),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn make_pki(cn: &str) -> (Pki, TlsFiles, String) {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "test ca");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let files = TlsFiles {
            cert_file: write(dir.path(), "c.crt", &cert.pem()),
            key_file: write(dir.path(), "c.key", &key.serialize_pem()),
            trusted_ca_file: Some(write(dir.path(), "ca.crt", &ca_cert.pem())),
            client_cert_auth: true,
            policy: Default::default(),
        };
        let pem = cert.pem();
        (Pki { dir }, files, pem)
    }

    #[test]
    fn loads_a_certificate_and_reads_its_common_name() {
        let (_pki, files, pem) = make_pki("alice");
        ServerTls::load("client", files.clone(), Alpn::H2AndHttp1).unwrap();
        PeerDialer::load(files).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "alice");
    }

    #[test]
    fn go_suite_names_map_to_rustls_suites() {
        let policy = TlsPolicy {
            cipher_suites: vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".into(),
            ],
            ..TlsPolicy::default()
        };
        let names: Vec<String> = policy_provider(&policy)
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            names,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ]
        );
        // Every suite etcd names and Logbook offers is one rustls has.
        let all = rustls::crypto::ring::default_provider();
        for (name, offered) in crate::config::CIPHER_SUITES {
            if *offered && !name.starts_with("TLS_AES") && !name.starts_with("TLS_CHACHA") {
                assert!(
                    all.cipher_suites
                        .iter()
                        .any(|s| format!("{:?}", s.suite()) == rustls_suite_name(name)),
                    "{name}"
                );
            }
        }
        let only13 = TlsPolicy { min_version: TlsVersion::Tls13, ..TlsPolicy::default() };
        assert_eq!(policy_versions(&only13), vec![&rustls::version::TLS13]);
        let only12 = TlsPolicy { max_version: Some(TlsVersion::Tls12), ..TlsPolicy::default() };
        assert_eq!(policy_versions(&only12), vec![&rustls::version::TLS12]);
    }

    #[test]
    fn host_names_match_as_go_matches_them() {
        let names = CertNames {
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns: vec!["etcd.example".into(), "*.pods.example".into()],
        };
        assert!(names.valid_for("127.0.0.1"));
        assert!(!names.valid_for("127.0.0.2"));
        assert!(names.valid_for("ETCD.example."));
        assert!(names.valid_for("a.pods.example"));
        assert!(!names.valid_for("a.b.pods.example"));
        assert!(!names.valid_for("pods.example"));
    }

    /// A certificate with these SANs (DNS names, or IP addresses when they
    /// parse as one), signed by a throwaway CA.
    fn leaf_with_sans(sans: &[&str]) -> CertificateDer<'static> {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    /// The first name /etc/hosts gives 127.0.0.1, as glibc's files backend
    /// reads it (most systems: `localhost`).
    fn hosts_name_of_loopback() -> Option<String> {
        let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
        hosts.lines().find_map(|l| {
            let mut f = l.split('#').next()?.split_whitespace();
            (f.next()? == "127.0.0.1").then(|| f.next().map(str::to_string))?
        })
    }

    #[test]
    fn reverse_names_match_sans_as_go_matches_them() {
        let sans = vec!["etcd.example".to_string(), "*.pods.example".to_string()];
        assert!(reverse_name_matches("etcd.example.", &sans));
        assert!(reverse_name_matches("ETCD.example", &sans));
        assert!(reverse_name_matches("a.b.pods.example", &sans));
        assert!(!reverse_name_matches("pods.example", &sans));
        assert!(!reverse_name_matches("other.example", &sans));
    }

    #[tokio::test]
    async fn the_peer_san_check_takes_the_name_an_address_resolves_back_to() {
        let Some(expected) = hosts_name_of_loopback() else {
            panic!(
                "/etc/hosts names no host for 127.0.0.1; this test needs one (usually localhost)"
            );
        };
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(reverse_lookup(loopback).await.as_deref(), Some(expected.as_str()));
        // TEST-NET-1 (RFC 5737) has no PTR records, nor is it in /etc/hosts.
        assert_eq!(reverse_lookup("192.0.2.1".parse().unwrap()).await, None);
        let from = SocketAddr::new(loopback, 40000);
        // Only the reverse lookup can match a wildcard (no forward lookup of
        // `*.` names), so this passes through it.
        let suffix = expected.split_once('.').map(|(_, s)| s.to_string());
        check_client_san(&leaf_with_sans(&[expected.as_str()]), from).await.unwrap();
        if let Some(suffix) = suffix {
            check_client_san(&leaf_with_sans(&[&format!("*.{suffix}")]), from).await.unwrap();
        }
        let err = check_client_san(&leaf_with_sans(&["not-this-host.invalid"]), from)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"tls: "127.0.0.1" does not match any of DNSNames ["not-this-host.invalid"]"#
        );
        let err =
            check_client_san(&leaf_with_sans(&["127.0.0.2"]), from).await.unwrap_err().to_string();
        assert_eq!(err, "x509: certificate is valid for 127.0.0.2, not 127.0.0.1");
        check_client_san(&leaf_with_sans(&["127.0.0.1"]), from).await.unwrap();
    }

    #[test]
    fn self_signed_pairs_are_made_once_as_etcd_makes_them() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1:2380".to_string(), "localhost:2381".to_string()];
        let (cert, key) = self_cert(&dir.path().join("fixtures/peer"), &hosts, 3).unwrap();
        assert_eq!(cert, dir.path().join("fixtures/peer/cert.pem"));
        let pem = std::fs::read(&cert).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert_eq!(c.subject().to_string(), "O=etcd");
        assert!(c.is_ca());
        // etcd's key: P-521, signed with SHA-512, the key file SEC1.
        assert_eq!(c.signature_algorithm.algorithm.to_id_string(), "1.2.840.10045.4.3.4");
        let curve = c.public_key().algorithm.parameters.as_ref().unwrap().as_oid().unwrap();
        assert_eq!(curve.to_id_string(), "1.3.132.0.35");
        let key_pem = std::fs::read_to_string(&key).unwrap();
        assert!(key_pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{key_pem}");
        let names = CertNames::of(&c);
        assert_eq!(names.ips, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(names.dns, vec!["localhost"]);
        let v = c.validity();
        assert_eq!((v.not_after.timestamp() - v.not_before.timestamp()) / 86_400, 3 * 365);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        // It serves, and a second call keeps the pair.
        let files = crate::config::tls_options::self_signed_files(
            cert.clone(),
            key.clone(),
            true,
            TlsVersion::Tls12,
            None,
            &[],
        );
        ServerTls::load("peer", files.clone(), Alpn::H2).unwrap();
        PeerDialer::load(files).unwrap();
        self_cert(&dir.path().join("fixtures/peer"), &hosts, 3).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), pem);
        assert!(self_cert(dir.path(), &hosts, 0).is_err());
    }

    #[test]
    fn bad_files_are_refused_with_their_names() {
        let (pki, mut files, _) = make_pki("x");
        files.key_file = write(pki.dir.path(), "empty.key", "");
        let err = ServerTls::load("client", files, Alpn::H2).unwrap_err().to_string();
        assert!(err.contains("empty.key"), "{err}");
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old() {
        let (pki, files, _) = make_pki("x");
        let tls = ServerTls::load("client", files.clone(), Alpn::H2).unwrap();
        let first = tls.config.get();
        // Break the key: the old configuration stays.
        std::fs::write(&files.key_file, "garbage").unwrap();
        tls.config.state.lock().checked -= RELOAD_CHECK;
        assert!(Arc::ptr_eq(&first, &tls.config.get()));
        // A fresh valid pair: a new configuration.
        let (other, files2, _) = make_pki("y");
        std::fs::copy(&files2.cert_file, &files.cert_file).unwrap();
        std::fs::copy(&files2.key_file, &files.key_file).unwrap();
        std::fs::copy(
            files2.trusted_ca_file.as_ref().unwrap(),
            files.trusted_ca_file.as_ref().unwrap(),
        )
        .unwrap();
        tls.config.state.lock().checked -= RELOAD_CHECK;
        assert!(!Arc::ptr_eq(&first, &tls.config.get()));
        drop((pki, other));
    }
}
