//! etcd's v3 JSON gateway: `POST /v3/kv/put` with `{"key":"Zm9v","value":"YmFy"}`
//! and the rest, for clients that speak HTTP/1.1 and JSON but not gRPC.
//!
//! Each path calls the gRPC service's own method, so the gateway cannot
//! drift from the gRPC API: the request JSON decodes into the generated
//! message (pbjson's serde impls, see `api/build.rs`), the response encodes
//! back the same way — proto field names, 64-bit integers as strings, bytes
//! as base64, defaults omitted — and a gRPC error becomes etcd's
//! `{"error","message","code"}` (in that order, as etcd's) with grpc-gateway's HTTP status for the code.
//!
//! A service is wired with one [`unary!`] line per method. The streaming
//! methods (Watch, LeaseKeepAlive, Snapshot, Election's Observe) go through
//! [`streaming`], which
//! calls the member's own gRPC routes in process, as grpc-gateway dials the
//! server: the body's JSON requests go up the request stream, and each
//! response comes back as one `{"result":{...}}` line, an error ending the
//! stream as `{"error":{...}}`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use logbook_api::etcdserverpb::auth_server::Auth as _;
use logbook_api::etcdserverpb::cluster_server::Cluster as _;
use logbook_api::etcdserverpb::kv_server::Kv as _;
use logbook_api::etcdserverpb::lease_server::Lease as _;
use logbook_api::etcdserverpb::maintenance_server::Maintenance as _;
use logbook_api::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, SnapshotRequest, SnapshotResponse, WatchRequest,
    WatchResponse,
};
use logbook_api::v3electionpb::election_server::Election as _;
use logbook_api::v3electionpb::{LeaderRequest, LeaderResponse};
use logbook_api::v3lockpb::lock_server::Lock as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Code, Status};

use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::context::Context;
use crate::services::election::ElectionService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::watch::hub::WatchHub;

/// etcd lets a gRPC message exceed --max-request-bytes by this much (as the
/// gRPC server's limit in `member/mod.rs`).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// The services the gateway calls, and its size limits.
#[derive(Clone)]
pub struct Gateway {
    kv: Arc<KvService>,
    cluster: Arc<ClusterService>,
    maintenance: Arc<MaintenanceService>,
    lease: Arc<LeaseService>,
    auth: Arc<AuthService>,
    lock: Arc<LockService>,
    election: Arc<ElectionService>,
    /// The member's gRPC routes, which the streaming paths call in process:
    /// a watch must share the gRPC Watch service's stream numbering.
    grpc: tonic::service::Routes,
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
pub fn router(ctx: Arc<Context>, hub: Arc<WatchHub>, grpc: tonic::service::Routes) -> Router {
    let max_message = ctx.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let gw = Gateway {
        kv: Arc::new(KvService { ctx: ctx.clone() }),
        cluster: Arc::new(ClusterService { ctx: ctx.clone() }),
        maintenance: Arc::new(MaintenanceService { ctx: ctx.clone() }),
        lease: Arc::new(LeaseService { ctx: ctx.clone() }),
        auth: Arc::new(AuthService { ctx: ctx.clone() }),
        lock: Arc::new(LockService::new(ctx.clone(), hub.clone())),
        election: Arc::new(ElectionService::new(ctx, hub)),
        grpc,
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
    let r = unary!(r, "/v3/lease/grant", lease.lease_grant);
    // etcd's gateway also serves three Lease paths under /v3/kv/, as etcd 3.3 did.
    let r = unary!(r, "/v3/lease/revoke", lease.lease_revoke);
    let r = unary!(r, "/v3/kv/lease/revoke", lease.lease_revoke);
    let r = unary!(r, "/v3/lease/timetolive", lease.lease_time_to_live);
    let r = unary!(r, "/v3/kv/lease/timetolive", lease.lease_time_to_live);
    let r = unary!(r, "/v3/lease/leases", lease.lease_leases);
    let r = unary!(r, "/v3/kv/lease/leases", lease.lease_leases);
    let r = unary!(r, "/v3/auth/enable", auth.auth_enable);
    let r = unary!(r, "/v3/auth/disable", auth.auth_disable);
    let r = unary!(r, "/v3/auth/status", auth.auth_status);
    let r = unary!(r, "/v3/auth/authenticate", auth.authenticate);
    let r = unary!(r, "/v3/auth/user/add", auth.user_add);
    let r = unary!(r, "/v3/auth/user/get", auth.user_get);
    let r = unary!(r, "/v3/auth/user/list", auth.user_list);
    let r = unary!(r, "/v3/auth/user/delete", auth.user_delete);
    let r = unary!(r, "/v3/auth/user/changepw", auth.user_change_password);
    let r = unary!(r, "/v3/auth/user/grant", auth.user_grant_role);
    let r = unary!(r, "/v3/auth/user/revoke", auth.user_revoke_role);
    let r = unary!(r, "/v3/auth/role/add", auth.role_add);
    let r = unary!(r, "/v3/auth/role/get", auth.role_get);
    let r = unary!(r, "/v3/auth/role/list", auth.role_list);
    let r = unary!(r, "/v3/auth/role/delete", auth.role_delete);
    let r = unary!(r, "/v3/auth/role/grant", auth.role_grant_permission);
    let r = unary!(r, "/v3/auth/role/revoke", auth.role_revoke_permission);
    // A Lock or Campaign waits as long as its turn takes; the client going
    // away ends the wait (hyper drops the handler) and removes its key.
    let r = unary!(r, "/v3/lock/lock", lock.lock);
    let r = unary!(r, "/v3/lock/unlock", lock.unlock);
    let r = unary!(r, "/v3/election/campaign", election.campaign);
    let r = unary!(r, "/v3/election/proclaim", election.proclaim);
    let r = unary!(r, "/v3/election/leader", election.leader);
    let r = unary!(r, "/v3/election/resign", election.resign);
    let r = r.route("/v3/election/observe", post(observe));
    let r = r.route("/v3/watch", post(watch));
    let r = r.route("/v3/lease/keepalive", post(lease_keep_alive));
    let r = r.route("/v3/maintenance/snapshot", post(snapshot));
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
    for (name, value) in forwarded_metadata(headers) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_bytes()),
        ) {
            request.metadata_mut().insert(k, v);
        }
    }
    match call(request).await {
        Ok(resp) => json_response(StatusCode::OK, &resp.into_inner()),
        Err(status) => error_response(&status),
    }
}

/// `/v3/watch`: the body's WatchRequests, then the request stream stays
/// open while the client reads, as etcd keeps a watch stream whose sender
/// has closed; the watchers end when the client goes.
async fn watch(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    streaming::<WatchRequest, WatchResponse>(gw, "/etcdserverpb.Watch/Watch", headers, body, true)
        .await
}

/// `/v3/lease/keepalive`: one answer per LeaseKeepAliveRequest in the body;
/// the response ends with them, as etcd's does.
async fn lease_keep_alive(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let path = "/etcdserverpb.Lease/LeaseKeepAlive";
    streaming::<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(gw, path, headers, body, false).await
}

/// `/v3/election/observe`: one LeaderRequest in, a `{"result":{...}}` line
/// per leader change out, until the client goes.
async fn observe(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let path = "/v3electionpb.Election/Observe";
    streaming::<LeaderRequest, LeaderResponse>(gw, path, headers, body, false).await
}

/// `/v3/maintenance/snapshot`: the snapshot (etcd's format) as a stream of
/// `{"result":{"remaining_bytes":..,"blob":..}}` lines.
async fn snapshot(State(gw): State<Gateway>, headers: HeaderMap, body: Body) -> Response {
    let path = "/etcdserverpb.Maintenance/Snapshot";
    streaming::<SnapshotRequest, SnapshotResponse>(gw, path, headers, body, false).await
}

/// A streaming call as grpc-gateway makes it, through the member's own gRPC
/// routes in process: decodes the body as a sequence of JSON requests,
/// sends them up the request stream (held open until the HTTP client goes
/// when `hold_open`), and answers 200 with one line per response. A body
/// that does not decode is answered as etcd answers it (grpc-gateway hands
/// the decoder's error back uncoded: Unknown, 500); a call failing before
/// any response is an ordinary gateway error, and one failing later ends
/// the stream with an error line.
///
/// Unlike grpc-gateway, the whole body is read before the first request is
/// sent: curl and the gateway's clients send their requests and then read.
///
/// (The generated gRPC clients would do the framing, but rustc cannot prove
/// their futures `Send` over `Routes`: a higher-ranked lifetime error.)
async fn streaming<Req, Resp>(
    gw: Gateway,
    path: &'static str,
    headers: HeaderMap,
    body: Body,
    hold_open: bool,
) -> Response
where
    Req: DeserializeOwned + prost::Message + Send + 'static,
    Resp: prost::Message + Default + Serialize + 'static,
{
    // The first request is read before the call, so a body that does not
    // decode is an ordinary error answer; later ones are sent up the stream
    // as they arrive (a watch's cancel after its create, say).
    let mut reader = JsonStream::new(body, gw.max_message);
    let first = match reader.next::<Req>().await {
        Ok(r) => r,
        Err(status) => return error_response(&status),
    };
    // The request stream ends when `open` is dropped, which ends the
    // server's session with it.
    let (open, closed) = tokio::sync::oneshot::channel::<()>();
    let (up_tx, up_rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        let mut next = first;
        while let Some(req) = next {
            if up_tx.send(Ok(Frame::data(grpc_frame(&req)))).await.is_err() {
                return;
            }
            next = match reader.next::<Req>().await {
                Ok(r) => r,
                Err(status) => {
                    // As grpc-gateway: a later undecodable message ends the
                    // request stream.
                    tracing::debug!(error = %status, "gateway: ending a request stream");
                    None
                }
            };
        }
        if hold_open {
            let _ = closed.await;
        }
        drop(up_tx);
    });
    let up = tokio_stream::wrappers::ReceiverStream::new(up_rx);
    let mut call = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    for (name, value) in forwarded_metadata(&headers) {
        call = call.header(name, value);
    }
    let call = call
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(up)))
        .expect("a request of valid parts");
    let mut grpc = gw.grpc.clone();
    let resp = match tonic::codegen::Service::call(&mut grpc, call).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    // Trailers-only: the call failed before answering anything.
    if let Some(status) = tonic::Status::from_header_map(&parts.headers)
        && status.code() != Code::Ok
    {
        return error_response(&status);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(forward_lines::<Resp>(body, tx, open));
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Decodes the gRPC response `body` and writes each message to `tx` as a
/// `{"result":...}` line, and an error as grpc-gateway v1's stream error
/// line, which ends the stream. Returns when the call ends or the client
/// goes (`tx` closed); dropping `open` then ends the request stream.
async fn forward_lines<Resp: prost::Message + Default + Serialize>(
    mut body: tonic::body::Body,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    open: tokio::sync::oneshot::Sender<()>,
) {
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = tokio::select! {
            () = tx.closed() => break,
            frame = body.frame() => frame,
        };
        let mut lines = Vec::new();
        let mut last = false;
        match frame {
            None => {
                last = true;
                if !buf.is_empty() {
                    lines.push(stream_error_line(&Status::internal("a truncated gRPC message")));
                }
            }
            Some(Err(status)) => {
                last = true;
                lines.push(stream_error_line(&status));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    while let Some(message) = next_message(&mut buf) {
                        let line = message.and_then(|m| {
                            let resp = Resp::decode(m)
                                .map_err(|e| Status::internal(format!("decoding: {e}")))?;
                            serde_json::to_vec(&StreamResult { result: &resp })
                                .map_err(|e| Status::internal(format!("encoding: {e}")))
                        });
                        match line {
                            Ok(line) => lines.push(line),
                            Err(status) => {
                                lines.push(stream_error_line(&status));
                                last = true;
                                break;
                            }
                        }
                    }
                }
                Err(frame) => {
                    last = true;
                    let status = frame
                        .trailers_ref()
                        .and_then(Status::from_header_map)
                        .unwrap_or_else(|| Status::internal("a gRPC response without a status"));
                    if status.code() != Code::Ok {
                        lines.push(stream_error_line(&status));
                    }
                }
            },
        }
        for mut line in lines {
            line.push(b'\n');
            if tx.send(line).await.is_err() {
                last = true;
                break;
            }
        }
        if last {
            break;
        }
    }
    drop(open);
}

/// Takes the next whole gRPC message off `buf`, if there is one. Responses
/// have no size limit, as the gRPC side sends any size.
fn next_message(buf: &mut bytes::BytesMut) -> Option<Result<Bytes, Status>> {
    if buf.len() < 5 {
        return None;
    }
    if buf[0] != 0 {
        buf.clear();
        return Some(Err(Status::internal("a compressed gRPC message")));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return None;
    }
    let mut message = buf.split_to(5 + len);
    let _ = message.split_to(5);
    Some(Ok(message.freeze()))
}

#[derive(Serialize)]
struct StreamResult<'a, T> {
    result: &'a T,
}

/// grpc-gateway v1's `StreamError`, the body of an error line.
#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

fn stream_error_line(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    let error = StreamError {
        grpc_code: status.code() as i32,
        http_code: http.as_u16(),
        message: status.message(),
        http_status: http.canonical_reason().unwrap_or(""),
    };
    let mut body = serde_json::Map::new();
    body.insert("error".into(), serde_json::to_value(&error).expect("plain struct serializes"));
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

/// The request headers grpc-gateway hands to the server as gRPC metadata:
/// `Authorization` (etcd's auth token) and every `Grpc-Metadata-<name>` as
/// `<name>`.
fn forwarded_metadata(headers: &HeaderMap) -> Vec<(String, HeaderValue)> {
    let mut out = Vec::new();
    if let Some(token) = headers.get(header::AUTHORIZATION) {
        out.push(("authorization".to_string(), token.clone()));
    }
    for (name, value) in headers {
        if let Some(rest) = name.as_str().strip_prefix("grpc-metadata-")
            && !rest.is_empty()
        {
            out.push((rest.to_string(), value.clone()));
        }
    }
    out
}

/// A request body read as a sequence of JSON messages, each decoded as
/// soon as it is complete.
struct JsonStream {
    body: Body,
    buf: Vec<u8>,
    done: bool,
    max_message: usize,
}

impl JsonStream {
    fn new(body: Body, max_message: usize) -> JsonStream {
        JsonStream { body, buf: Vec::new(), done: false, max_message }
    }

    /// The next message; `None` when the body ended. A message that does
    /// not decode is grpc-gateway's uncoded error (Unknown).
    async fn next<Req: DeserializeOwned + prost::Message>(
        &mut self,
    ) -> Result<Option<Req>, Status> {
        loop {
            match self.buf.iter().position(|b| !b.is_ascii_whitespace()) {
                None => {
                    self.buf.clear();
                    if self.done {
                        return Ok(None);
                    }
                }
                Some(start) => {
                    let mut it =
                        serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Req>();
                    match it.next() {
                        Some(Ok(req)) => {
                            let used = start + it.byte_offset();
                            self.buf.drain(..used);
                            let len = req.encoded_len();
                            if len > self.max_message {
                                return Err(too_large(len, self.max_message));
                            }
                            return Ok(Some(req));
                        }
                        // Incomplete: read more.
                        Some(Err(e)) if e.is_eof() && !self.done => {}
                        Some(Err(e)) => return Err(Status::unknown(e.to_string())),
                        None if self.done => return Ok(None),
                        None => {}
                    }
                }
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                        let limit = 2 * self.max_message;
                        if self.buf.len() > limit {
                            return Err(too_large(limit, self.max_message));
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(Status::invalid_argument(format!("reading the request body: {e}")));
                }
            }
        }
    }
}

/// One message in gRPC's framing: | compressed: u8 (0) | len: u32 BE | message |.
fn grpc_frame<M: prost::Message>(m: &M) -> Bytes {
    let mut buf = Vec::with_capacity(5 + m.encoded_len());
    buf.push(0);
    buf.extend_from_slice(&(m.encoded_len() as u32).to_be_bytes());
    m.encode(&mut buf).expect("a Vec grows");
    Bytes::from(buf)
}

/// Reads a request body, up to twice the message limit: JSON carries bytes
/// as base64 (4 characters per 3 bytes) plus syntax.
async fn read_body(max_message: usize, body: Body) -> Result<axum::body::Bytes, Status> {
    let limit = 2 * max_message;
    Ok(http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large(limit, max_message)
            } else {
                Status::invalid_argument(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes())
}

/// Reads and decodes a request body. An empty body is the empty message,
/// as grpc-gateway takes it.
async fn decode<Req>(max_message: usize, body: Body) -> Result<Req, Status>
where
    Req: DeserializeOwned + Default + prost::Message,
{
    let bytes = read_body(max_message, body).await?;
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
    // grpc-gateway v1's errorBody marshals its fields in this order.
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// A gRPC status as etcd's gateway writes it.
pub fn error_response(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
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

    #[test]
    fn grpc_frames_split_at_message_boundaries() {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 3, b'c']);
        assert_eq!(next_message(&mut buf).unwrap().unwrap(), &b"ab"[..]);
        assert!(next_message(&mut buf).is_none(), "the second message is incomplete");
        buf.extend_from_slice(b"de");
        assert_eq!(next_message(&mut buf).unwrap().unwrap(), &b"cde"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn stream_errors_are_grpc_gateways_shape() {
        let line = stream_error_line(&Status::not_found("etcdserver: requested lease not found"));
        let got: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let want = serde_json::json!({"error": {
            "grpc_code": 5,
            "http_code": 404,
            "message": "etcdserver: requested lease not found",
            "http_status": "Not Found",
        }});
        assert_eq!(got, want);
    }
}
