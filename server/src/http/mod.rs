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
//! - this file: the router and the accept loop. TLS (when it lands) wraps
//!   each accepted stream in [`serve`] before hyper sees it; nothing else
//!   changes.

pub mod access;
pub mod gateway;
pub mod health;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use logbook_wal::Wal;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::node::Shared;

/// What the HTTP handlers read: the member's shared state and, for
/// `/metrics`, its WAL's counters.
#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub wal: Option<Arc<Wal>>,
}

/// The router of a client URL: gRPC services (`grpc`, built by the caller
/// with its message limits), the HTTP endpoints and the v3 gateway.
pub fn client_router(state: HttpState, grpc: tonic::service::Routes) -> Router {
    // etcd's access rules wrap the HTTP routes only: gRPC calls skip them.
    let rules = access::AccessRules::new(state.shared.clone());
    let http = health::router(state.clone())
        .merge(gateway::router(state.shared.clone(), grpc.clone()))
        .layer(axum::middleware::from_fn_with_state(rules, access::check));
    grpc.into_axum_router().merge(http).fallback(fallback)
}

/// The router of a `--listen-metrics-urls` URL: the endpoints only.
pub fn metrics_router(state: HttpState) -> Router {
    let rules = access::AccessRules::new(state.shared.clone());
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

/// Binds `addr` and serves `app` there (HTTP/1.1 and HTTP/2 on one port)
/// until `shutdown` turns true; then stops accepting and lets open
/// connections finish their requests.
pub async fn serve(
    addr: SocketAddr,
    what: &'static str,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listening for {what} traffic on {addr}"), e))?;
    tracing::info!(address = %addr, "serving {what} traffic insecurely (plain http)");
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
            let (stream, _peer) = tokio::select! {
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
            let io = TokioIo::new(stream);
            let svc = TowerToHyperService::new(app.clone());
            let conn = builder.serve_connection(io, svc).into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "{what} connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    }))
}

/// An empty set of gRPC routes for the client port's services; without a
/// fallback of its own, so [`client_router`]'s applies.
pub fn grpc_routes() -> tonic::service::Routes {
    tonic::service::Routes::from(Router::new())
}
