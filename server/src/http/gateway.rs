//! etcd's v3 JSON gateway: `POST /v3/kv/put` with `{"key":"Zm9v","value":"YmFy"}`
//! and the rest, for clients that speak HTTP/1.1 and JSON but not gRPC.
//!
//! Each path calls the gRPC service's own method, so the gateway cannot
//! drift from the gRPC API: the request JSON decodes into the generated
//! message (pbjson's serde impls, see `api/build.rs`), the response encodes
//! back the same way — proto field names, 64-bit integers as strings, bytes
//! as base64, defaults omitted — and a gRPC error becomes etcd's
//! `{"error","code","message"}` with grpc-gateway's HTTP status for the code.
//!
//! A service is wired with one [`unary!`] line per method; a streaming
//! method (Watch, LeaseKeepAlive) will need one adapter, then a line each.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt as _;
use logbook_api::etcdserverpb::cluster_server::Cluster as _;
use logbook_api::etcdserverpb::kv_server::Kv as _;
use logbook_api::etcdserverpb::maintenance_server::Maintenance as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Code, Status};

use crate::cluster_service::ClusterService;
use crate::kv_service::KvService;
use crate::maintenance_service::MaintenanceService;
use crate::node::Shared;

/// etcd lets a gRPC message exceed --max-request-bytes by this much (as the
/// gRPC server's limit in `server.rs`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The services the gateway calls, and its size limits.
#[derive(Clone)]
pub struct Gateway {
    kv: Arc<KvService>,
    cluster: Arc<ClusterService>,
    maintenance: Arc<MaintenanceService>,
    /// The largest request message accepted, as the gRPC server's.
    max_message: usize,
}

/// Routes `POST $path` to `$svc.$method`.
macro_rules! unary {
    ($router:expr, $path:literal, $svc:ident . $method:ident) => {
        $router.route(
            $path,
            post(|State(gw): State<Gateway>, headers: HeaderMap, body: Body| async move {
                let svc = gw.$svc.clone();
                unary(gw.max_message, &headers, body, |r| async move { svc.$method(r).await }).await
            }),
        )
    };
}

/// The `/v3/...` routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let max_message = shared.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let gw = Gateway {
        kv: Arc::new(KvService { shared: shared.clone() }),
        cluster: Arc::new(ClusterService { shared: shared.clone() }),
        maintenance: Arc::new(MaintenanceService { shared }),
        max_message,
    };
    let r = Router::new();
    let r = unary!(r, "/v3/kv/range", kv.range);
    let r = unary!(r, "/v3/kv/put", kv.put);
    let r = unary!(r, "/v3/kv/deleterange", kv.delete_range);
    let r = unary!(r, "/v3/kv/txn", kv.txn);
    let r = unary!(r, "/v3/kv/compaction", kv.compact);
    let r = unary!(r, "/v3/cluster/member/add", cluster.member_add);
    let r = unary!(r, "/v3/cluster/member/remove", cluster.member_remove);
    let r = unary!(r, "/v3/cluster/member/update", cluster.member_update);
    let r = unary!(r, "/v3/cluster/member/list", cluster.member_list);
    let r = unary!(r, "/v3/cluster/member/promote", cluster.member_promote);
    let r = unary!(r, "/v3/maintenance/alarm", maintenance.alarm);
    let r = unary!(r, "/v3/maintenance/status", maintenance.status);
    let r = unary!(r, "/v3/maintenance/defragment", maintenance.defragment);
    // etcd routes both Hash and HashKV to this path; Hash wins.
    let r = unary!(r, "/v3/maintenance/hash", maintenance.hash);
    let r = unary!(r, "/v3/maintenance/transfer-leadership", maintenance.move_leader);
    let r = unary!(r, "/v3/maintenance/downgrade", maintenance.downgrade);
    r.method_not_allowed_fallback(method_not_allowed).with_state(gw)
}

/// Decodes the JSON body into `Req`, calls the service, encodes its answer.
async fn unary<Req, Resp, Fut>(
    max_message: usize,
    headers: &HeaderMap,
    body: Body,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Response
where
    Req: DeserializeOwned + Default + prost::Message,
    Resp: Serialize,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req: Req = match decode(max_message, body).await {
        Ok(r) => r,
        Err(status) => return error_response(&status),
    };
    let mut request = tonic::Request::new(req);
    // etcd's gateway hands the Authorization header to the server as the
    // auth token's metadata.
    if let Some(token) = headers.get(header::AUTHORIZATION)
        && let Ok(v) = tonic::metadata::MetadataValue::try_from(token.as_bytes())
    {
        request.metadata_mut().insert("authorization", v);
    }
    match call(request).await {
        Ok(resp) => json_response(StatusCode::OK, &resp.into_inner()),
        Err(status) => error_response(&status),
    }
}

/// Reads and decodes a request body. An empty body is the empty message,
/// as grpc-gateway takes it.
async fn decode<Req>(max_message: usize, body: Body) -> Result<Req, Status>
where
    Req: DeserializeOwned + Default + prost::Message,
{
    // JSON carries bytes as base64 (4 characters per 3 bytes) plus syntax:
    // read up to twice the message limit, then check the decoded size.
    let limit = 2 * max_message;
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large(limit, max_message)
            } else {
                Status::invalid_argument(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Req::default());
    }
    let req: Req =
        serde_json::from_slice(&bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let len = req.encoded_len();
    if len > max_message {
        return Err(too_large(len, max_message));
    }
    Ok(req)
}

/// What gRPC answers a message over the server's receive limit.
fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})"))
}

/// grpc-gateway's HTTP status for a gRPC code (etcd 3.5 uses grpc-gateway
/// v1, whose table this is).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// etcd's gateway error body for `status`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// A gRPC status as etcd's gateway writes it.
pub fn error_response(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        code: status.code() as i32,
        message: status.message(),
    };
    json_response(http_status(status.code()), &body)
}

async fn method_not_allowed() -> Response {
    let mut resp = error_response(&Status::unimplemented("Method Not Allowed"));
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => error_response(&Status::internal(format!("encoding the response: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logbook_api::etcdserverpb::{PutRequest, RangeResponse, ResponseHeader};
    use logbook_api::mvccpb::KeyValue;

    #[test]
    fn json_is_etcds_mapping() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 875014437167945218,
                member_id: 4388126251939204836,
                revision: 2,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: "foo".into(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: "bar".into(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let got: serde_json::Value = serde_json::to_value(&resp).unwrap();
        let want: serde_json::Value = serde_json::from_str(
            r#"{"header":{"cluster_id":"875014437167945218","member_id":"4388126251939204836","revision":"2","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#,
        )
        .unwrap();
        assert_eq!(got, want);
        // Input takes numbers or strings, either spelling of a name, and
        // ignores unknown fields.
        let put: PutRequest = serde_json::from_str(
            r#"{"key":"Zm9v","value":"YmFy","lease":"7","prevKv":true,"x":1}"#,
        )
        .unwrap();
        assert_eq!((put.key.as_ref(), put.lease, put.prev_kv), (&b"foo"[..], 7, true));
    }

    #[test]
    fn codes_map_to_grpc_gateways_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::OutOfRange), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
    }
}
