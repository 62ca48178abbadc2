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
//!   and the peer CA as the only trust root, reloaded the same way.
//! - [`ClientCertCommonName`]: what the client port puts into every request
//!   from a client that presented a verified certificate, for auth to take
//!   as the user name (as etcd does).
//!
//! etcd's semantics, kept here: a trusted CA file alone already makes the
//! server require and verify client certificates (etcd's `TLSInfo` does
//! the same), and a listener on an `http://` URL ignores the cert files.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

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
        p
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("configuring TLS", e))?;
    let builder = if files.verifies_clients() {
        let ca =
            files.trusted_ca_file.as_ref().expect("config checks a CA comes with client-cert-auth");
        let verifier = WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
            .build()
            .map_err(|e| {
                tls_error(format!("client certificate verification with {}", ca.display()), e)
            })?;
        builder.with_client_cert_verifier(verifier)
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

/// The subject CN of the verified certificate a TLS client presented.
pub fn peer_common_name(conn: &rustls::CommonState) -> Option<ClientCertCommonName> {
    let leaf = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(ClientCertCommonName(cn.to_string()))
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
                let conn = match &tls {
                    None => MaybeTls::Plain(stream),
                    Some(tls) => match handshake(tls, stream).await {
                        Ok(s) => MaybeTls::Tls(Box::new(TlsConn {
                            stream: s,
                            prefix: Vec::new(),
                            at: 0,
                        })),
                        Err(e) => {
                            tracing::warn!(error = %e, remote = ?remote, address = %addr, "{what} TLS handshake failed");
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
}

impl fmt::Debug for PeerDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerDialer").field("files", &self.tls.as_ref().map(|t| &t.files)).finish()
    }
}

impl PeerDialer {
    /// A dialer for plain `http://` peers only.
    pub fn plain() -> PeerDialer {
        PeerDialer { tls: None }
    }

    /// A dialer presenting the peer certificate and trusting only the peer
    /// CA. Loads the files now.
    pub fn load(files: TlsFiles) -> Result<PeerDialer> {
        Ok(PeerDialer { tls: Some(Reloading::load("peer client", files, build_client)?) })
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
            .keep_alive_timeout(Duration::from_secs(5));
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
    let ca = files
        .trusted_ca_file
        .as_ref()
        .ok_or_else(|| Error::Config("dialing https peers needs --peer-trusted-ca-file".into()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("configuring TLS", e))?
        .with_root_certificates(load_roots(ca)?);
    let mut config = builder
        .with_client_auth_cert(load_certs(&files.cert_file)?, load_key(&files.key_file)?)
        .map_err(|e| {
            tls_error(
                format!(
                    "certificate {} with key {}",
                    files.cert_file.display(),
                    files.key_file.display()
                ),
                e,
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
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
        Box::pin(async move {
            let tcp = TcpStream::connect(&addr).await?;
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
