//! The etcd Watch service: one bidirectional stream carries any number of
//! watchers. Requests (create, cancel, progress) are handled in order; all
//! responses for the stream, control and events alike, go through one
//! bounded queue, so a client that stops reading only ever slows itself.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::services::context::Context;
use crate::state::auth::{Access, Credentials};
use futures::Stream;
use logbook_api::etcdserverpb::watch_create_request::FilterType;
use logbook_api::etcdserverpb::watch_server::Watch;
use logbook_api::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::watch::hub::{WatchHub, WatchSpec, Watcher, normalise_key};

/// Responses queued per stream before its watchers fall back to catch-up.
const STREAM_QUEUE: usize = 1024;

/// How long a progress request waits for the watch dispatcher to reach
/// the revision applied when it came (it is unanswered after that, as
/// etcd leaves one unanswered while a watcher is not synced).
const PROGRESS_WAIT: Duration = Duration::from_secs(1);

/// etcd's ID for "no watcher".
const INVALID_WATCH_ID: i64 = -1;

/// Serves Watch.
pub struct WatchService {
    pub hub: Arc<WatchHub>,
    /// The member, for permission checks of new watchers.
    ctx: Arc<Context>,
}

impl WatchService {
    pub fn new(hub: Arc<WatchHub>, ctx: Arc<Context>) -> Self {
        WatchService { hub, ctx }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let creds = Credentials::of(&request);
        let hasleader = request.metadata().get(super::REQUIRE_LEADER_KEY).map(|v| v.as_bytes());
        let require_leader = super::requires_leader(hasleader);
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel::<WatchResponse>(STREAM_QUEUE);
        let hub = self.hub.clone();
        let ctx = self.ctx.clone();
        let stream_id = self.hub.new_stream();
        // A require-leader stream ends with etcd's `no leader` once this
        // member has known no leader for three election timeouts.
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<Status>();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
        if require_leader {
            tokio::spawn(watch_leader(self.ctx.clone(), lost_tx, ended_rx));
        }
        // A request that does not decode ends the stream with the decoder's error
        // (Internal), as etcd's does.
        let (bad_tx, bad_rx) = tokio::sync::oneshot::channel::<Status>();
        tokio::spawn(async move {
            let mut bad_tx = Some(bad_tx);
            let mut session = Session {
                hub,
                ctx,
                creds,
                stream: stream_id,
                tx,
                watchers: HashMap::new(),
                next_id: 0,
            };
            loop {
                let req = tokio::select! {
                    req = requests.message() => req,
                    // The leader is gone: the response stream has ended.
                    _ = session.tx.closed() => break,
                };
                let req = match req {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    Err(status) => {
                        if let Some(bad) = bad_tx.take() {
                            let _ = bad.send(status);
                        }
                        break;
                    }
                };
                if !session.handle(req).await {
                    break;
                }
            }
            drop(ended_tx);
            session.close();
        });
        let events = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        let lost = futures::StreamExt::filter_map(futures::stream::once(lost_rx), |r| {
            std::future::ready(r.ok().map(Err))
        });
        let bad = futures::StreamExt::filter_map(futures::stream::once(bad_rx), |r| {
            std::future::ready(r.ok().map(Err))
        });
        let lost = futures::stream::select(lost, bad);
        // Events until the leader is lost; then the error, and nothing more.
        let out = futures::StreamExt::scan(
            futures::stream::select(events, lost),
            false,
            |ended, item: Result<WatchResponse, Status>| {
                if *ended {
                    return std::future::ready(None);
                }
                *ended = item.is_err();
                std::future::ready(Some(item))
            },
        );
        Ok(Response::new(Box::pin(out)))
    }
}

/// Checks every election timeout whether this member knows a leader, and
/// after three checks in a row without one (etcd's `maxNoLeaderCnt`) ends
/// the stream with `etcdserver: no leader`; stops when the stream ends.
async fn watch_leader(
    ctx: Arc<Context>,
    lost: tokio::sync::oneshot::Sender<Status>,
    mut ended: tokio::sync::oneshot::Receiver<()>,
) {
    const MAX_NO_LEADER: u32 = 3;
    let every = ctx.cfg.election_timeout();
    let mut without = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut ended => return,
        }
        if ctx.status.leader().is_none() {
            without += 1;
        } else {
            without = 0;
        }
        if without >= MAX_NO_LEADER {
            let _ = lost.send(Status::from(Error::NoLeader));
            return;
        }
    }
}

/// One client stream's watchers.
struct Session {
    hub: Arc<WatchHub>,
    ctx: Arc<Context>,
    /// What the client presented when it opened the stream.
    creds: Credentials,
    stream: u64,
    tx: mpsc::Sender<WatchResponse>,
    watchers: HashMap<i64, Arc<Watcher>>,
    next_id: i64,
}

impl Session {
    /// With auth on, a watcher needs read access to its whole range.
    async fn permitted(&self, c: &WatchCreateRequest) -> Result<(), Error> {
        if !self.ctx.stores.auth.enabled() {
            return Ok(());
        }
        let who = self.ctx.auth_info_from(&self.creds).await?;
        self.ctx.stores.auth.check(who.as_ref(), &c.key, &c.range_end, Access::Read)
    }

    /// Handles one request; false when the client has gone.
    async fn handle(&mut self, req: WatchRequest) -> bool {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if let Some(w) = self.watchers.remove(&c.watch_id) {
                    self.hub.remove(&w);
                    let resp = WatchResponse {
                        header: Some(self.hub.header(self.hub.current_revision())),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    return self.tx.send(resp).await.is_ok();
                }
                true
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.ctx.log_request(|| crate::services::request_log::plain("WatchProgress"));
                let watchers: Vec<Arc<Watcher>> = self.watchers.values().cloned().collect();
                // Like etcd (3.5 on, `progressIfSync`), answer only when every watcher is
                // caught up, so the revision promised really has been delivered, and not
                // at all on a stream without watchers (there is no watcher to answer on).
                let current = self.hub.current_revision();
                let revision = if watchers.is_empty() {
                    None
                } else if self.hub.delivered_through(current, PROGRESS_WAIT).await {
                    // Every write applied before the request is covered, as
                    // etcd's answer (its current revision) covers them.
                    self.hub.stream_progress(self.stream, &watchers)
                } else {
                    None
                };
                if let Some(rev) = revision {
                    let resp = WatchResponse {
                        header: Some(self.hub.header(rev)),
                        watch_id: INVALID_WATCH_ID,
                        ..Default::default()
                    };
                    return self.tx.send(resp).await.is_ok();
                }
                true
            }
            None => true,
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        self.ctx.log_request(|| crate::services::request_log::watch(&c));
        let current = self.hub.current_revision();
        if let Err(e) = self.permitted(&c).await {
            // As etcd: the watch is refused in a created-and-cancelled answer.
            let reason = match e {
                Error::InvalidAuthToken | Error::AuthOldRevision | Error::UserEmpty => e,
                _ => Error::PermissionDenied,
            };
            let resp = WatchResponse {
                header: Some(self.hub.header(current)),
                watch_id: INVALID_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            };
            return self.tx.send(resp).await.is_ok();
        }
        if c.start_revision < 0 {
            let resp = WatchResponse {
                header: Some(self.hub.header(current)),
                watch_id: INVALID_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: "mvcc: required revision has been compacted".into(),
                ..Default::default()
            };
            return self.tx.send(resp).await.is_ok();
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                let resp = WatchResponse {
                    header: Some(self.hub.header(current)),
                    watch_id: INVALID_WATCH_ID,
                    created: true,
                    canceled: true,
                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                    ..Default::default()
                };
                return self.tx.send(resp).await.is_ok();
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        };
        let spec = WatchSpec {
            key: normalise_key(c.key),
            range_end: c.range_end.to_vec(),
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
            fragment: c.fragment,
        };
        let created = WatchResponse {
            header: Some(self.hub.header(current)),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        if self.tx.send(created).await.is_err() {
            return false;
        }
        let w = self.hub.add(self.stream, id, spec, c.start_revision, self.tx.clone());
        self.watchers.insert(id, w);
        true
    }

    fn close(self) {
        for w in self.watchers.values() {
            self.hub.remove(w);
        }
    }
}
