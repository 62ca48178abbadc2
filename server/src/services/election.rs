//! etcd's Election service (`v3electionpb.Election`): leader elections
//! served as etcd serves them, with its client library's election
//! (`concurrency.Election`) run inside the member.
//!
//! Campaigning in election `n` with lease `L` puts `n/<L in hex>` with the
//! campaigner's value (or proclaims the value if the key is already there)
//! and wins once every key under `n/` created before it is gone: the oldest
//! key leads, and its value is the election's. A leader proves itself by
//! its key and the key's create revision ([`LeaderKey`]): Proclaim and
//! Resign change or delete the key only if it is still that one. Observe
//! streams the leader's key and value at every change. The queue and the
//! waiting are [`super::waiting`]'s.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use logbook_api::etcdserverpb::{RangeRequest, ResponseHeader, TxnRequest};
use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::mvccpb::{self, KeyValue};
use logbook_api::v3electionpb::election_server::Election;
use logbook_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::waiting::{
    Abandon, KeyWatch, created_at, first_created, op_delete, op_put, op_range, queue_prefix,
    read_at, session_lease, wait_deletes, waiter_key,
};
use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::state::auth::AuthInfo;
use crate::watch::hub::WatchHub;

/// Leader responses queued per Observe stream.
const OBSERVE_QUEUE: usize = 16;

/// Serves Election.
pub struct ElectionService {
    ctx: Arc<Context>,
    kv: Arc<KvService>,
    lease: LeaseService,
    /// Where campaigners and observers watch the election's keys.
    hub: Arc<WatchHub>,
}

impl ElectionService {
    pub fn new(ctx: Arc<Context>, hub: Arc<WatchHub>) -> ElectionService {
        ElectionService {
            kv: Arc::new(KvService { ctx: ctx.clone() }),
            lease: LeaseService { ctx: ctx.clone() },
            ctx,
            hub,
        }
    }

    /// etcd's `Election.Campaign`.
    async fn campaign_inner(
        &self,
        r: CampaignRequest,
        who: Option<AuthInfo>,
    ) -> Result<CampaignResponse> {
        let lease = session_lease(&self.lease, r.lease, who.as_ref()).await?;
        let prefix = queue_prefix(&r.name);
        let key = waiter_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![op_put(&key, r.value.clone(), lease)],
            failure: vec![op_range(RangeRequest { key: key.clone(), ..Default::default() })],
        };
        let resp = self.kv.txn_inner(txn, who.clone()).await?;
        // The answer carries this first write's header, however long the
        // wait, as etcd's does.
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded {
            // Campaigning again with the same lease: the same candidacy,
            // with the value brought up to date.
            let Some(mine) = read_at(&resp, 0).first() else {
                panic!("a key whose create revision is not 0 was not found")
            };
            rev = mine.create_revision;
            if mine.value != r.value
                && let Err(e) = self.proclaim_as(&key, rev, lease, r.value.clone(), &who).await
            {
                let _ = self.resign_as(&key, rev, &who).await;
                return Err(e);
            }
        }
        // If the client goes away while we wait, we resign.
        let resign = resign_txn(&key, rev);
        let abandon = Abandon::new(&self.ctx, Internal::Txn(resign), who.as_ref());
        let waited = wait_deletes(&self.kv, &self.hub, &prefix, rev - 1, who.as_ref()).await;
        abandon.disarm();
        waited?;
        Ok(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey { name: r.name, key, rev, lease }),
        })
    }

    /// etcd's `Election.Proclaim`: puts `value` if `key` is still the one
    /// created at `rev`.
    async fn proclaim_as(
        &self,
        key: &Bytes,
        rev: i64,
        lease: i64,
        value: Bytes,
        who: &Option<AuthInfo>,
    ) -> Result<ResponseHeader> {
        let txn = TxnRequest {
            compare: vec![created_at(key, rev)],
            success: vec![op_put(key, value, lease)],
            failure: vec![],
        };
        let resp = self.kv.txn_inner(txn, who.clone()).await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    /// etcd's `Election.Resign`: deletes `key` if it is still the one
    /// created at `rev`; not being the leader is no error.
    async fn resign_as(
        &self,
        key: &Bytes,
        rev: i64,
        who: &Option<AuthInfo>,
    ) -> Result<ResponseHeader> {
        let resp = self.kv.txn_inner(resign_txn(key, rev), who.clone()).await?;
        Ok(resp.header.unwrap_or_default())
    }

    async fn proclaim_inner(
        &self,
        r: ProclaimRequest,
        who: Option<AuthInfo>,
    ) -> Result<ProclaimResponse> {
        let leader = r.leader.ok_or(Error::MissingLeaderKey)?;
        let lease = session_lease(&self.lease, leader.lease, who.as_ref()).await?;
        let header = self.proclaim_as(&leader.key, leader.rev, lease, r.value, &who).await?;
        Ok(ProclaimResponse { header: Some(header) })
    }

    async fn resign_inner(
        &self,
        r: ResignRequest,
        who: Option<AuthInfo>,
    ) -> Result<ResignResponse> {
        let leader = r.leader.ok_or(Error::MissingLeaderKey)?;
        // etcd opens a session here too, granting a lease when none is named.
        session_lease(&self.lease, leader.lease, who.as_ref()).await?;
        let header = self.resign_as(&leader.key, leader.rev, &who).await?;
        Ok(ResignResponse { header: Some(header) })
    }

    async fn leader_inner(
        &self,
        r: LeaderRequest,
        who: Option<AuthInfo>,
    ) -> Result<LeaderResponse> {
        let read = self.kv.range_inner(first_created(&queue_prefix(&r.name)), who).await?;
        let kv = read.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok(LeaderResponse { header: read.header, kv: Some(kv) })
    }
}

/// Deletes `key` if it is still the one created at `rev`.
fn resign_txn(key: &Bytes, rev: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![op_delete(key)],
        failure: vec![],
    }
}

/// etcd's `Election.observe`: sends the leader's key and value, then every
/// put to that key; when it is deleted, the next leader's (waiting for a
/// first campaigner if there is none). Returns when the client goes (`out`
/// closed) or a read fails.
async fn observe(
    ctx: Arc<Context>,
    kv: Arc<KvService>,
    hub: Arc<WatchHub>,
    prefix: Vec<u8>,
    who: Option<AuthInfo>,
    out: mpsc::Sender<LeaderResponse>,
) -> Result<()> {
    let gone = || Error::Internal("the observer went away".into());
    loop {
        let read = kv.range_inner(first_created(&prefix), who.clone()).await?;
        let read_header = read.header.unwrap_or_default();
        let (header, leader) = match read.kvs.into_iter().next() {
            Some(leader) => (read_header, leader),
            None => {
                // No leader: the first key put under the prefix is the next.
                let end = logbook_engine::prefix_end(&prefix);
                let mut watch = KeyWatch::new(&hub, &prefix, &end, read_header.revision);
                loop {
                    let first = watch.next().await?.into_iter().find_map(put_of);
                    if let Some(kv) = first {
                        break (ctx.header(kv.mod_revision), kv);
                    }
                }
            }
        };
        let from = header.revision + 1;
        let key = leader.key.clone();
        out.send(LeaderResponse { header: Some(header), kv: Some(leader) })
            .await
            .map_err(|_| gone())?;
        let mut watch = KeyWatch::new(&hub, &key, &[], from);
        'leader: loop {
            for event in watch.next().await? {
                let Some(kv) = put_of(event) else { break 'leader };
                let resp =
                    LeaderResponse { header: Some(ctx.header(kv.mod_revision)), kv: Some(kv) };
                out.send(resp).await.map_err(|_| gone())?;
            }
        }
    }
}

/// The key-value a put event wrote; None for a delete.
fn put_of(event: mvccpb::Event) -> Option<KeyValue> {
    if event.r#type == mvccpb::event::EventType::Put as i32 { event.kv } else { None }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let resp = self.campaign_inner(request.into_inner(), who).await;
        Ok(Response::new(resp.map_err(Error::into_client_status)?))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let resp = self.proclaim_inner(request.into_inner(), who).await;
        Ok(Response::new(resp.map_err(Error::into_client_status)?))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let resp = self.leader_inner(request.into_inner(), who).await;
        Ok(Response::new(resp.map_err(Error::into_client_status)?))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let prefix = queue_prefix(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE);
        let (ctx, kv, hub) = (self.ctx.clone(), self.kv.clone(), self.hub.clone());
        tokio::spawn(async move {
            let closed = tx.clone();
            tokio::select! {
                // The client went: dropping the loop drops its watchers.
                () = closed.closed() => {}
                // As etcd's: a failed read ends the stream, without an error.
                ended = observe(ctx, kv, hub, prefix, who, tx) => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "an election observer ended");
                    }
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(futures::StreamExt::map(out, Ok))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let resp = self.resign_inner(request.into_inner(), who).await;
        Ok(Response::new(resp.map_err(Error::into_client_status)?))
    }
}
