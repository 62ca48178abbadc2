//! `/health`, `/livez`, `/readyz`, `/version` and `/metrics`, answered as
//! etcd 3.5 answers them, so load balancers, kubelet probes and Prometheus
//! configured for etcd work unchanged.

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use logbook_api::etcdserverpb::AlarmType;
use logbook_api::etcdserverpb::RangeRequest;
use logbook_api::etcdserverpb::kv_server::Kv;
use serde::{Deserialize, Serialize};

use super::HttpState;
use crate::error::Error;
use crate::metrics::METRICS;
use crate::services::kv::KvService;
use crate::version::ETCD_VERSION;

/// The routes, for the client and the metrics URLs alike.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/debug/vars", get(debug_vars))
        .with_state(state)
}

/// `/debug/vars`: Go's expvar page as etcd serves it, with what Logbook has
/// of it: `cmdline` (the process's arguments) and etcd's
/// `file_descriptor_limit` (the soft `RLIMIT_NOFILE`). Go's `memstats` and
/// etcd's `raft.status` describe Go's runtime and etcd's raft; not served.
async fn debug_vars() -> Response {
    let cmdline: Vec<String> = std::env::args().collect();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    let fds = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    };
    let body = serde_json::json!({ "cmdline": cmdline, "file_descriptor_limit": fds });
    let mut resp = (StatusCode::OK, format!("{body:#}\n")).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// `/version`: the etcd version whose API Logbook serves, so clients that
/// gate features on the server's version enable them.
#[derive(Serialize)]
struct Version {
    etcdserver: &'static str,
    etcdcluster: String,
}

async fn version(State(st): State<HttpState>) -> Response {
    // The cluster version as applied here: a downgrade in progress lowers it.
    let (major, minor) = crate::state::membership::load_cluster_version(&st.ctx.engine());
    let cluster = format!("{major}.{minor}.0");
    json(StatusCode::OK, &Version { etcdserver: ETCD_VERSION, etcdcluster: cluster })
}

/// `/health`'s answer, as etcd 3.5 writes it (`"true"`/`"false"` strings).
#[derive(Serialize)]
struct Health {
    health: &'static str,
    reason: String,
}

/// `/health`'s query: `serializable=true`, and `exclude=NAME` as often as
/// wanted (so not serde_urlencoded, which takes a key once).
#[derive(Default)]
struct HealthQuery {
    serializable: bool,
    exclude: Vec<String>,
}

impl HealthQuery {
    fn parse(query: Option<&str>) -> HealthQuery {
        let mut q = HealthQuery::default();
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("serializable", v)) => q.serializable = v == "true",
                Some(("exclude", v)) => q.exclude.push(v.to_string()),
                _ => {}
            }
        }
        q
    }
}

/// `/health`: unhealthy with an alarm raised (unless `?exclude=` names it),
/// without a leader (unless `?serializable=true`), or when a read through
/// the KV service fails. 200 when healthy, 503 otherwise.
async fn health(State(st): State<HttpState>, RawQuery(query): RawQuery) -> Response {
    let q = HealthQuery::parse(query.as_deref());
    let reason = match alarm_reason(&st, &q.exclude) {
        Some(reason) => Some(reason),
        None => check(&st, q.serializable).await.err(),
    };
    let status = if reason.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = match reason {
        None => Health { health: "true", reason: String::new() },
        Some(reason) => {
            tracing::warn!(%reason, "serving /health false");
            Health { health: "false", reason }
        }
    };
    json(status, &body)
}

/// etcd 3.5's alarm check, made before the others: the first raised alarm
/// not excluded by name, as `ALARM NOSPACE`.
fn alarm_reason(st: &HttpState, exclude: &[String]) -> Option<String> {
    st.ctx.stores.alarms.list(0, AlarmType::None as i32).into_iter().find_map(|a| {
        let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
        if exclude.iter().any(|e| e == name) {
            tracing::debug!(alarm = name, "/health excluded alarm");
            return None;
        }
        let name = if matches!(name, "NOSPACE" | "CORRUPT") { name } else { "UNKNOWN" };
        Some(format!("ALARM {name}"))
    })
}

/// etcd's health checks in etcd's order: leader, then a one-key read.
async fn check(st: &HttpState, serializable: bool) -> Result<(), String> {
    if !serializable && st.ctx.status.leader().is_none() {
        return Err("RAFT NO LEADER".into());
    }
    let kv = KvService { ctx: st.ctx.clone() };
    let probe = RangeRequest {
        key: "health".into(),
        keys_only: true,
        limit: 1,
        serializable,
        ..Default::default()
    };
    match kv.range(tonic::Request::new(probe)).await {
        Ok(_) => Ok(()),
        // With auth on, the probe has no user: reaching the permission
        // check means the read path works (etcd counts it healthy too).
        Err(s)
            if s.message() == Error::UserEmpty.to_string()
                || s.message() == Error::PermissionDenied.to_string() =>
        {
            Ok(())
        }
        Err(s) => Err(format!("QGET ERROR:{}", s.message())),
    }
}

#[derive(Deserialize, Default)]
struct ProbeQuery {
    verbose: Option<String>,
}

/// `/livez`: the process serves local reads.
async fn livez(State(st): State<HttpState>, Query(q): Query<ProbeQuery>) -> Response {
    let serializable = check(&st, true).await;
    probe_response(&[("serializable_read", serializable)], q.verbose.is_some())
}

/// `/readyz`: the member can serve linearizable requests (it has a leader
/// and reads through it).
async fn readyz(State(st): State<HttpState>, Query(q): Query<ProbeQuery>) -> Response {
    let serializable = check(&st, true).await;
    let linearizable = check(&st, false).await;
    probe_response(
        &[("serializable_read", serializable), ("linearizable_read", linearizable)],
        q.verbose.is_some(),
    )
}

/// Kubernetes' probe format, which etcd 3.5 follows: `ok`, or the failed
/// checks and `health check failed` with 503; `?verbose` lists every check.
fn probe_response(checks: &[(&str, Result<(), String>)], verbose: bool) -> Response {
    let failed = checks.iter().any(|(_, r)| r.is_err());
    let mut body = String::new();
    for (name, result) in checks {
        match result {
            Ok(()) if verbose => body.push_str(&format!("[+]{name} ok\n")),
            Ok(()) => {}
            Err(_) => body.push_str(&format!("[-]{name} failed: reason withheld\n")),
        }
    }
    let status = if failed {
        body.push_str("health check failed\n");
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        body.push_str(if verbose { "ok\n" } else { "ok" });
        StatusCode::OK
    };
    text(status, body, "text/plain; charset=utf-8")
}

/// `/metrics`: Prometheus text format.
async fn metrics(State(st): State<HttpState>) -> Response {
    let engine = st.ctx.engine();
    let pending = st.ctx.raft.pending_proposals();
    let body = METRICS.render(&st.ctx.status, &engine, pending, st.wal.as_deref());
    text(StatusCode::OK, body, "text/plain; version=0.0.4; charset=utf-8")
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("plain structs serialize");
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
