//! The etcd Lease service. Grants and revocations go through Raft; keep-alives
//! and remaining TTLs are the leader's to answer, so a follower asks it over
//! the peer port.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use logbook_api::etcdserverpb::lease_server::Lease;
use logbook_api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use logbook_api::logbookpb::LeaseQueryRequest;
use logbook_api::logbookpb::internal_request::Request as Internal;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::services::request_log::{self, Entry};
use crate::state::apply::Applied;
use crate::state::auth::{Access, AuthInfo, Credentials};

/// Serves Lease.
pub struct LeaseService {
    pub ctx: Arc<Context>,
}

/// Renews `id` wherever the leader is; Ok(None) if the lease does not exist.
pub async fn renew(ctx: &Context, id: i64) -> Result<Option<i64>> {
    if ctx.status.leader() == Some(ctx.cfg.member_id) {
        match ctx.stores.lessor.renew(id) {
            Err(Error::NotLeader) => {}
            other => return other,
        }
    }
    let resp =
        ctx.leader.lease_query(&ctx.stores.engine, LeaseQueryRequest { id, renew: true }).await?;
    Ok(resp.found.then_some(resp.ttl))
}

impl LeaseService {
    /// A fresh ID for a lease the client left for the server to choose.
    fn new_lease_id(&self) -> i64 {
        loop {
            let id = (self.ctx.raft.fresh_id() & i64::MAX as u64) as i64;
            if id != 0 && !self.ctx.stores.lessor.exists(id) {
                return id;
            }
        }
    }

    /// LeaseGrant on behalf of `who`, header included (the Lock and
    /// Election services grant a session lease through here).
    pub async fn grant_inner(
        &self,
        r: LeaseGrantRequest,
        who: Option<&AuthInfo>,
    ) -> Result<LeaseGrantResponse> {
        let ttl = self.ctx.stores.lessor.effective_ttl(r.ttl)?;
        self.ctx.check_quota()?;
        let id = if r.id == 0 { self.new_lease_id() } else { r.id };
        let grant = Internal::LeaseGrant(LeaseGrantRequest { ttl, id });
        match self.ctx.raft.propose_as(grant, who).await? {
            (Applied::LeaseGrant(mut resp), revision) => {
                resp.header = Some(self.ctx.header(revision));
                Ok(resp)
            }
            (other, _) => panic!("a LeaseGrant was applied as {other:?}"),
        }
    }

    fn current_revision(&self) -> i64 {
        self.ctx.engine().current_revision()
    }

    async fn time_to_live(&self, r: LeaseTimeToLiveRequest) -> Result<LeaseTimeToLiveResponse> {
        let s = &self.ctx;
        let local = s.stores.lessor.info(r.id);
        let (remaining, granted) =
            if s.status.leader() == Some(s.cfg.member_id) && s.stores.lessor.is_primary() {
                match &local {
                    Some(info) => (info.remaining, info.granted),
                    None => (-1, 0),
                }
            } else {
                let query = LeaseQueryRequest { id: r.id, renew: false };
                let resp = s.leader.lease_query(&s.stores.engine, query).await?;
                if resp.found { (resp.ttl, resp.granted_ttl) } else { (-1, 0) }
            };
        if remaining < 0 {
            // etcd answers an unknown lease with TTL -1, not an error.
            return Ok(LeaseTimeToLiveResponse {
                header: Some(s.header(self.current_revision())),
                id: r.id,
                ttl: -1,
                ..Default::default()
            });
        }
        let keys = if r.keys {
            local.map(|i| i.keys.into_iter().map(Into::into).collect()).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(LeaseTimeToLiveResponse {
            header: Some(s.header(self.current_revision())),
            id: r.id,
            ttl: remaining,
            granted_ttl: granted,
            keys,
        })
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let ttl = request.get_ref().ttl;
        self.ctx.log_request(|| Entry { ttl: Some(ttl), ..request_log::plain("LeaseGrant") });
        Ok(Response::new(self.grant_inner(request.into_inner(), who.as_ref()).await?))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        self.ctx.log_request(|| request_log::plain("LeaseRevoke"));
        match self.ctx.raft.propose_as(Internal::LeaseRevoke(r), who.as_ref()).await? {
            (Applied::LeaseRevoke(mut resp), revision) => {
                resp.header = Some(self.ctx.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => panic!("a LeaseRevoke was applied as {other:?}"),
        }
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let creds = Credentials::of(&request);
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            loop {
                let req = match requests.message().await {
                    Ok(Some(req)) => req,
                    Ok(None) => break,
                    // A message that does not decode ends the stream with the decoder's
                    // error (Internal), as etcd's does, rather than silently.
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                ctx.log_request(|| request_log::plain("LeaseKeepAlive"));
                // A renewal needs write access to every key of the lease.
                let allowed = async {
                    let who = ctx.auth_info_from(&creds).await?;
                    ctx.stores.auth.check_lease(
                        who.as_ref(),
                        &ctx.stores.lessor,
                        req.id,
                        Access::Write,
                    )
                };
                let renewed = match allowed.await {
                    Ok(()) => renew(&ctx, req.id).await,
                    Err(e) => Err(e),
                };
                let reply = match renewed {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(ctx.header(ctx.engine().current_revision())),
                        id: req.id,
                        // 0 tells the client the lease is gone.
                        ttl: ttl.unwrap_or(0),
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.log_request(|| request_log::plain("LeaseTimeToLive"));
        let id = request.get_ref().id;
        self.ctx.stores.auth.check_lease(
            who.as_ref(),
            &self.ctx.stores.lessor,
            id,
            Access::Read,
        )?;
        Ok(Response::new(self.time_to_live(request.into_inner()).await?))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let ids = self.ctx.stores.lessor.ids();
        // With auth on, the caller must be allowed to read every leased key.
        for id in &ids {
            self.ctx.stores.auth.check_lease(
                who.as_ref(),
                &self.ctx.stores.lessor,
                *id,
                Access::Read,
            )?;
        }
        let leases = ids.into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.ctx.header(self.current_revision())),
            leases,
        }))
    }
}
