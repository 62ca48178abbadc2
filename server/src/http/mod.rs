//! The HTTP side of a member, on the same client port as gRPC: `/health`,
//! `/livez`, `/readyz`, `/version`, `/metrics` and etcd's v3 JSON gateway.
//!
//! One listener speaks both protocols. hyper-util's `auto` connection builder
//! reads the HTTP/2 preface (gRPC) or an HTTP/1.1 request line and serves
//! either with one axum router: tonic's `Routes` (a route per gRPC service,
//! `/etcdserverpb.KV/{*rest}`) merged with the HTTP routes. A gRPC call costs
//! what it cost under tonic's own server: one route lookup, no extra layer.
//!
//! # Layout
//! - [`access`]: etcd's host whitelist, CORS and OPTIONS handling.
//! - [`health`]: `/health`, `/livez`, `/readyz`, `/version`, `/metrics`.
//! - [`gateway`]: `/v3/...`, each path a call of the gRPC service's own
//!   method with the request and response in etcd's JSON mapping.
//! - [`authority`]: mends the URL-shaped HTTP/2 `:authority` etcdctl 3.4
//!   sends for `endpoint status`/`hashkv` and `defrag`, which h2 would reset.
//! - this file: the router and the accept loop. On an https URL each
//!   accepted stream does its TLS handshake (ALPN h2 and http/1.1) in its
//!   connection task before hyper sees it, and every request of a client
//!   that presented a verified certificate carries its subject CN as a
//!   [`crate::tls::ClientCertCommonName`] extension.
//!
//! Sits above `services` (the gateway calls their methods): may import
//! `services`, `raft`, `watch`, `peer`, `state` and the leaves, never the
//! member wiring.

pub mod access;
pub mod authority;
pub mod gateway;
pub mod health;
pub mod ping_policy;
pub mod pprof;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use logbook_api::coalesce::Coalesce;
use logbook_wal::Wal;
use tokio::sync::watch;
use tokio_util::either::Either;

use self::authority::LenientAuthority;
use self::ping_policy::PingPolicy;
use crate::error::{Error, Result};
use crate::tls::{ClientCertCommonName, ServerTls, TlsConnection};

/// What the HTTP handlers read: the handlers' context, for `/metrics` its
/// WAL's counters, and for the gateway's Lock and Election paths the watch
/// hub their waits use.
#[derive(Clone)]
pub struct HttpState {
    pub ctx: Arc<crate::services::context::Context>,
    pub wal: Option<Arc<Wal>>,
    pub hub: Arc<crate::watch::hub::WatchHub>,
}

/// What a client URL serves: by default gRPC and HTTP on one port; with
/// `--listen-client-http-urls` the client URLs serve gRPC only and those
/// URLs HTTP only, as in etcd 3.5+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    GrpcAndHttp,
    Grpc,
    Http,
}

/// The router of a client URL: gRPC services (`grpc`, built by the caller
/// with its message limits), the HTTP endpoints and the v3 gateway (unless
/// `--enable-grpc-gateway=false`), as `traffic` says.
pub fn client_router(state: HttpState, grpc: tonic::service::Routes, traffic: Traffic) -> Router {
    let gateway_on = state.ctx.cfg.grpc_gateway;
    // etcd's access rules wrap the HTTP routes only: gRPC calls skip them.
    let rules = access::AccessRules::new(state.ctx.clone());
    let mut http = health::router(state.clone());
    if state.ctx.cfg.enable_pprof {
        http = http.merge(pprof::router());
    }
    if gateway_on {
        http = http.merge(gateway::router(state.ctx.clone(), state.hub.clone(), grpc.clone()));
    }
    let http = http.layer(axum::middleware::from_fn_with_state(rules, access::check));
    let grpc = grpc
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(state.ctx.clone(), grpc_call));
    let router = match traffic {
        Traffic::GrpcAndHttp => grpc.merge(http),
        Traffic::Grpc => grpc,
        Traffic::Http => http,
    };
    if gateway_on { router.fallback(fallback) } else { router.fallback(fallback_without_gateway) }
}

/// A request over the gRPC envelope (`--max-request-bytes` plus etcd's 512 KiB of
/// overhead) is refused by tonic with `OutOfRange` and its own words; etcd's gRPC server
/// (grpc-go) says `ResourceExhausted: grpc: received message larger than max (N vs. M)`,
/// and clients match on that. The refusal is a trailers-only answer, so its headers are
/// rewritten; every other answer passes untouched.
fn etcd_size_limit_error(resp: Response<Body>) -> Response<Body> {
    const TONIC: &str = "Error, decoded message length too large: found ";
    if resp.headers().get("grpc-status").is_none_or(|v| v.as_bytes() != b"11") {
        return resp;
    }
    let Some(status) = tonic::Status::from_header_map(resp.headers()) else { return resp };
    let Some(rest) = status.message().strip_prefix(TONIC) else { return resp };
    let numbers: Vec<&str> =
        rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).collect();
    let [found, limit] = numbers[..] else { return resp };
    let etcd = tonic::Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ));
    let (mut parts, body) = resp.into_parts();
    let (new, ()) = etcd.into_http::<()>().into_parts();
    for name in ["grpc-status", "grpc-message"] {
        match new.headers.get(name) {
            Some(v) => parts.headers.insert(name, v.clone()),
            None => parts.headers.remove(name),
        };
    }
    Response::from_parts(parts, body)
}

/// Every gRPC call on a client URL passes here. etcd's require-leader calls
/// (`hasleader: true` metadata, clientv3's `WithRequireLeader`, which
/// kube-apiserver sets on its watches) are refused with `etcdserver: no
/// leader` while this member knows no leader (streams already running are
/// watched by the Watch service itself). A unary call is timed: one slower
/// than `--warning-unary-request-duration` is logged as etcd logs it, and
/// with `--metrics=extensive` every one lands in
/// `grpc_server_handling_seconds`.
async fn grpc_call(
    axum::extract::State(ctx): axum::extract::State<Arc<crate::services::context::Context>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let hasleader = req.headers().get(crate::services::REQUIRE_LEADER_KEY).map(|v| v.as_bytes());
    if crate::services::requires_leader(hasleader) && ctx.status.leader().is_none() {
        let (parts, ()) = tonic::Status::from(Error::NoLeader).into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let uri = req.uri().clone();
    let start = std::time::Instant::now();
    let resp = etcd_size_limit_error(next.run(req).await);
    let took = start.elapsed();
    let method = uri.path();
    if !crate::metrics::is_streaming_method(method) {
        crate::metrics::METRICS.observe_unary(method, took);
        let warn_after = ctx.cfg.warning_unary_request_duration;
        if took > warn_after {
            tracing::warn!(
                time_spent = ?took,
                expected_duration = ?warn_after,
                response_type = method,
                "request stats: a unary request took longer than --warning-unary-request-duration"
            );
        }
    }
    resp
}

/// The router of a `--listen-metrics-urls` URL: the endpoints only.
pub fn metrics_router(state: HttpState) -> Router {
    let rules = access::AccessRules::new(state.ctx.clone());
    health::router(state)
        .layer(axum::middleware::from_fn_with_state(rules, access::check))
        .fallback(fallback)
}

/// Unknown paths: gRPC clients get `Unimplemented`, gateway clients a JSON
/// error in etcd's shape, anyone else etcd's plain 404.
async fn fallback(req: Request<Body>) -> Response<Body> {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    if req.uri().path().starts_with("/v3/") {
        return gateway::error_response(&tonic::Status::not_found("Not Found"));
    }
    not_found()
}

/// Unknown paths with `--enable-grpc-gateway=false`: `/v3/...` is no
/// different from any other path (etcd's plain 404).
async fn fallback_without_gateway(req: Request<Body>) -> Response<Body> {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    not_found()
}

/// Go's `http.NotFound`.
fn not_found() -> Response<Body> {
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// How a listener's connections are served: etcd's settings of its gRPC
/// server on a client URL (`--max-concurrent-streams`, `--grpc-keepalive-*`)
/// and of every listener's socket (`--socket-reuse-port`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnOptions {
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised (`None`: no limit, not sent).
    pub max_concurrent_streams: Option<u32>,
    /// The server's keepalive PING interval and how long its answer may take
    /// (`None`: no pings).
    pub keepalive: Option<(Duration, Duration)>,
    /// grpc-go's ping policy with this min-time ([`ping_policy`]); `None`
    /// on listeners that are no gRPC server (metrics, HTTP-only).
    pub ping_min_time: Option<Duration>,
    /// SO_REUSEPORT on the listening socket.
    pub reuse_port: bool,
    /// Serve HTTP/2 only (a gRPC-only client URL) or HTTP/1.1 only (a plain
    /// HTTP-only one, where etcd matches HTTP/1 connections only).
    pub http2_only: bool,
    pub http1_only: bool,
}

impl ConnOptions {
    /// A client URL's options from the member's configuration.
    pub fn client(cfg: &crate::config::Config) -> ConnOptions {
        let k = cfg.grpc_keepalive;
        ConnOptions {
            max_concurrent_streams: Some(cfg.max_concurrent_streams).filter(|n| *n != u32::MAX),
            // etcd sets keepalive parameters only when both are positive.
            keepalive: (!k.interval.is_zero() && !k.timeout.is_zero())
                .then_some((k.interval, k.timeout)),
            ping_min_time: Some(if k.min_time.is_zero() {
                ping_policy::DEFAULT_MIN_TIME
            } else {
                k.min_time
            }),
            reuse_port: cfg.socket_reuse_port,
            http2_only: false,
            http1_only: false,
        }
    }

    /// A listener that serves HTTP only (metrics, `--listen-client-http-urls`).
    pub fn http_only(cfg: &crate::config::Config) -> ConnOptions {
        ConnOptions {
            max_concurrent_streams: Some(cfg.max_concurrent_streams).filter(|n| *n != u32::MAX),
            reuse_port: cfg.socket_reuse_port,
            ..ConnOptions::default()
        }
    }
}

/// Binds a listening socket at `addr` as etcd's listeners are bound:
/// SO_REUSEADDR always (as Go's net package does), SO_REUSEPORT with
/// `--socket-reuse-port`.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Binds `addr` and serves `app` there (HTTP/1.1 and HTTP/2 on one port,
/// over TLS when `tls` is given) until `shutdown` turns true; then stops
/// accepting and lets open connections finish their requests.
pub async fn serve(
    addr: SocketAddr,
    what: &'static str,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    opts: ConnOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = bind(addr, opts.reuse_port)
        .map_err(|e| Error::io(format!("listening for {what} traffic on {addr}"), e))?;
    // etcd's wording ("serving client traffic ..."), which tools wait for.
    match &tls {
        None => tracing::info!(
            traffic = "grpc+http",
            address = %addr,
            "serving {what} traffic insecurely; this is strongly discouraged!"
        ),
        Some(t) => tracing::info!(
            traffic = "grpc+http",
            address = %addr,
            client_cert_auth = t.verifies_clients(),
            "serving {what} traffic securely"
        ),
    }
    let builder = Arc::new(connection_builder(opts, tls.is_some()));
    let address = addr.to_string();
    Ok(tokio::spawn(accept_loop(listener, what, address, shutdown, move |stream, peer| {
        let builder = builder.clone();
        let app = app.clone();
        let tls = tls.clone();
        async move {
            let _ = stream.set_nodelay(true);
            let (svc, io) = match tls {
                None => (WithCommonName { inner: app, tls: false, cn: None }, Either::Left(stream)),
                Some(tls) => match crate::tls::handshake(&tls, stream).await {
                    Ok(s) => {
                        let cn = crate::tls::peer_common_name(s.get_ref().1);
                        (WithCommonName { inner: app, tls: true, cn }, Either::Right(s))
                    }
                    Err(e) => {
                        // A client without a certificate the trusted CA
                        // signed ends here, refused.
                        crate::tls::log_rejected(what, &peer, "", &e);
                        return None;
                    }
                },
            };
            let io = guarded(LenientAuthority::new(Coalesce::new(io)), opts);
            Some(builder.serve_connection(io, TowerToHyperService::new(svc)).into_owned())
        }
    })))
}

/// hyper's connection builder for a listener with `opts`: as tonic's own
/// server configures hyper, no stream limit unless asked for, fixed windows,
/// and timers so keep-alive and HTTP/1 header timeouts work.
fn connection_builder(opts: ConnOptions, tls: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if opts.http2_only {
        builder = builder.http2_only();
    } else if opts.http1_only && !tls {
        builder = builder.http1_only();
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .adaptive_window(false);
    if let Some((interval, timeout)) = opts.keepalive {
        builder.http2().keep_alive_interval(interval).keep_alive_timeout(timeout);
    }
    builder.http1().timer(TokioTimer::new());
    builder
}

/// A listening socket [`accept_loop`] takes connections from.
trait Acceptor: Send + 'static {
    type Stream: Send + 'static;
    /// The next connection and its remote address (empty where there is none).
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, String)>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Stream, String)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        Ok((stream, peer.to_string()))
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Stream, String)> {
        let (stream, _) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, String::new()))
    }
}

/// Takes connections from `listener` until `shutdown` turns true, each on
/// its own task: `connect` makes it a hyper connection (or refuses it with
/// `None`). Then stops accepting and gives open connections 2 s to finish
/// their requests.
async fn accept_loop<A, F, Fut, C>(
    listener: A,
    what: &'static str,
    address: String,
    mut shutdown: watch::Receiver<bool>,
    connect: F,
) where
    A: Acceptor,
    F: Fn(A::Stream, String) -> Fut,
    Fut: std::future::Future<Output = Option<C>> + Send + 'static,
    C: hyper_util::server::graceful::GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before
                    // accept: keep serving the rest.
                    tracing::warn!(error = %e, address = %address, "accepting a {what} connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let conn = connect(stream, peer);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(conn) = conn.await else { return };
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "{what} connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// A connection's stream for hyper, under grpc-go's ping policy where the
/// listener has one.
fn guarded<S>(stream: S, opts: ConnOptions) -> TokioIo<PingPolicy<S>> {
    TokioIo::new(PingPolicy::new(stream, opts.ping_min_time))
}

/// Serves `app` on a Unix domain socket at `path` (a `unix://` client URL),
/// plain, like an http URL's listener: HTTP/1.1 and HTTP/2, until
/// `shutdown` turns true. As etcd does, a file already at `path` (a socket
/// left by an earlier run) is removed first, and the socket file is removed
/// when the server stops.
pub async fn serve_unix(
    path: std::path::PathBuf,
    what: &'static str,
    app: Router,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    let address = format!("unix://{}", path.display());
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| Error::io(format!("listening for {what} traffic on {address}"), e))?;
    tracing::info!(address = %address, "serving {what} traffic insecurely (plain http)");
    let builder = Arc::new(connection_builder(ConnOptions::default(), false));
    Ok(tokio::spawn(async move {
        accept_loop(listener, what, address, shutdown, move |stream, _| {
            let svc = WithCommonName { inner: app.clone(), tls: false, cn: None };
            let io = TokioIo::new(LenientAuthority::new(Coalesce::new(stream)));
            let conn = builder.serve_connection(io, TowerToHyperService::new(svc)).into_owned();
            std::future::ready(Some(conn))
        })
        .await;
        let _ = std::fs::remove_file(&path);
    }))
}

/// The connection's service: the router, with the client certificate's CN
/// (if any) put into every request's extensions, where tonic's
/// `Request::extensions()` finds it, and [`TlsConnection`] on a TLS one.
#[derive(Clone)]
struct WithCommonName<S> {
    inner: S,
    tls: bool,
    cn: Option<ClientCertCommonName>,
}

impl<S, B> tower_service::Service<Request<B>> for WithCommonName<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if self.tls {
            req.extensions_mut().insert(TlsConnection);
        }
        if let Some(cn) = &self.cn {
            req.extensions_mut().insert(cn.clone());
        }
        self.inner.call(req)
    }
}

/// An empty set of gRPC routes for the client port's services; without a
/// fallback of its own, so [`client_router`]'s applies.
pub fn grpc_routes() -> tonic::service::Routes {
    tonic::service::Routes::from(Router::new())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tls::{Alpn, TlsFiles};

    fn leaf(
        issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
        cn: Option<&str>,
        dir: &Path,
        name: &str,
    ) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let cert = params.signed_by(&key, issuer).unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.to_str().unwrap().to_string(), k.to_str().unwrap().to_string())
    }

    /// Two pipelined HTTP/1.1 requests on one TLS connection; the whole
    /// answer text.
    async fn two_requests(addr: SocketAddr, ca: &Path, cert: &str, key: &str) -> String {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(ca).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(cert).unwrap()],
            PrivateKeyDer::from_pem_file(key).unwrap(),
        )
        .unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls =
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        tls.write_all(
            b"GET /cn HTTP/1.1\r\nHost: x\r\n\r\nGET /cn HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut out))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        out
    }

    #[tokio::test]
    async fn every_request_carries_the_client_certificates_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let server = leaf(&issuer, Some("server"), dir.path(), "server");
        let alice = leaf(&issuer, Some("alice"), dir.path(), "alice");
        let nameless = leaf(&issuer, None, dir.path(), "nameless");
        let files = TlsFiles {
            cert_file: server.0.into(),
            key_file: server.1.into(),
            trusted_ca_file: Some(ca_path.clone()),
            client_cert_auth: true,
            policy: Default::default(),
        };
        let tls = Arc::new(ServerTls::load("client", files, Alpn::H2AndHttp1).unwrap());
        let app = Router::new().route(
            "/cn",
            axum::routing::get(|req: Request<Body>| async move {
                assert!(req.extensions().get::<TlsConnection>().is_some());
                match req.extensions().get::<ClientCertCommonName>() {
                    Some(cn) => format!("cn={};", cn.0),
                    None => "no-cn;".to_string(),
                }
            }),
        );
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server =
            serve(addr, "client", app, Some(tls), ConnOptions::default(), stopped).await.unwrap();

        let out = two_requests(addr, &ca_path, &alice.0, &alice.1).await;
        assert_eq!(out.matches("cn=alice;").count(), 2, "{out}");
        let out = two_requests(addr, &ca_path, &nameless.0, &nameless.1).await;
        assert_eq!(out.matches("no-cn;").count(), 2, "{out}");

        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
