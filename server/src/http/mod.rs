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

use self::authority::LenientAuthority;
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

/// The router of a client URL: gRPC services (`grpc`, built by the caller
/// with its message limits), the HTTP endpoints and the v3 gateway.
pub fn client_router(state: HttpState, grpc: tonic::service::Routes) -> Router {
    // etcd's access rules wrap the HTTP routes only: gRPC calls skip them.
    let rules = access::AccessRules::new(state.ctx.clone());
    let http = health::router(state.clone())
        .merge(gateway::router(state.ctx.clone(), state.hub.clone(), grpc.clone()))
        .layer(axum::middleware::from_fn_with_state(rules, access::check));
    let grpc = grpc
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(state.ctx.clone(), require_leader));
    grpc.merge(http).fallback(fallback)
}

/// etcd's require-leader calls (`hasleader: true` metadata, clientv3's
/// `WithRequireLeader`, which kube-apiserver sets on its watches): refused
/// with `etcdserver: no leader` while this member knows no leader.
/// Streams already running are watched by the Watch service itself.
async fn require_leader(
    axum::extract::State(ctx): axum::extract::State<Arc<crate::services::context::Context>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let hasleader = req.headers().get(crate::services::REQUIRE_LEADER_KEY).map(|v| v.as_bytes());
    if crate::services::requires_leader(hasleader) && ctx.status.leader().is_none() {
        let (parts, ()) = tonic::Status::from(Error::NoLeader).into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    next.run(req).await
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
    let mut resp = Response::new(Body::from("404 page not found\n"));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Binds `addr` and serves `app` there (HTTP/1.1 and HTTP/2 on one port,
/// over TLS when `tls` is given) until `shutdown` turns true; then stops
/// accepting and lets open connections finish their requests.
pub async fn serve(
    addr: SocketAddr,
    what: &'static str,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening for {what} traffic on {addr}"), e))?;
    match &tls {
        None => tracing::info!(address = %addr, "serving {what} traffic insecurely (plain http)"),
        Some(t) => tracing::info!(
            address = %addr,
            client_cert_auth = t.verifies_clients(),
            "serving {what} traffic securely (https)"
        ),
    }
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // As tonic's own server configures hyper: no stream limit, fixed windows,
    // and timers so keep-alive and HTTP/1 header timeouts work.
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(None).adaptive_window(false);
    builder.http1().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    Ok(tokio::spawn(async move {
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
                        tracing::warn!(error = %e, address = %addr, "accepting a {what} connection failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let app = app.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    None => {
                        let svc = TowerToHyperService::new(WithCommonName {
                            inner: app,
                            tls: false,
                            cn: None,
                        });
                        let io = TokioIo::new(LenientAuthority::new(Coalesce::new(stream)));
                        let conn = builder.serve_connection(io, svc).into_owned();
                        watcher.watch(conn).await
                    }
                    Some(tls) => {
                        let stream = match crate::tls::handshake(&tls, stream).await {
                            Ok(s) => s,
                            Err(e) => {
                                // A client without a certificate the trusted
                                // CA signed ends here, refused.
                                tracing::warn!(error = %e, remote = %peer, address = %addr, "{what} TLS handshake failed");
                                return;
                            }
                        };
                        let cn = crate::tls::peer_common_name(stream.get_ref().1);
                        let svc =
                            TowerToHyperService::new(WithCommonName { inner: app, tls: true, cn });
                        let io = TokioIo::new(LenientAuthority::new(Coalesce::new(stream)));
                        let conn = builder.serve_connection(io, svc).into_owned();
                        watcher.watch(conn).await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "{what} connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    }))
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
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| {
        Error::io(format!("listening for {what} traffic on unix://{}", path.display()), e)
    })?;
    tracing::info!(address = %format!("unix://{}", path.display()), "serving {what} traffic insecurely (plain http)");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(None).adaptive_window(false);
    builder.http1().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let mut stop = std::pin::pin!(stop);
        loop {
            let stream = tokio::select! {
                () = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "accepting a {what} connection failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let svc = TowerToHyperService::new(WithCommonName {
                inner: app.clone(),
                tls: false,
                cn: None,
            });
            let io = TokioIo::new(LenientAuthority::new(Coalesce::new(stream)));
            let conn = builder.serve_connection(io, svc).into_owned();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "{what} connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
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
        let server = serve(addr, "client", app, Some(tls), stopped).await.unwrap();

        let out = two_requests(addr, &ca_path, &alice.0, &alice.1).await;
        assert_eq!(out.matches("cn=alice;").count(), 2, "{out}");
        let out = two_requests(addr, &ca_path, &nameless.0, &nameless.1).await;
        assert_eq!(out.matches("no-cn;").count(), 2, "{out}");

        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
