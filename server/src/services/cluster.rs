//! The etcd Cluster service. MemberList answers from the members the engine
//! stores; adding, promoting and removing members are Raft configuration
//! changes, applied together with the stored member records.
//!
//! As etcd's, the answers' headers carry no revision, and with
//! `--strict-reconfig-check` (the default) a change that would leave fewer
//! started (published) or connected voting members than a quorum is refused
//! before it is proposed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::cluster_server::Cluster;
use logbook_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use logbook_api::logbookpb::StoredMember;
use logbook_api::logbookpb::internal_request::Request as Internal;
use raft::prelude::ConfChangeType;

use crate::config::parse_urls;
use crate::error::Error;
use crate::ids::member_id_at;
use crate::services::context::Context;
use crate::state::membership::{load_members, to_wire};

/// Serves Cluster.
pub struct ClusterService {
    pub ctx: Arc<Context>,
}

/// How long a peer must have been connected to count as active for
/// `--strict-reconfig-check` (etcd's `HealthInterval`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

impl ClusterService {
    /// Proposes a membership change, on the leader (a follower hands it
    /// there); returns the revision after it.
    async fn conf_change(
        &self,
        change: ConfChangeType,
        id: u64,
        member: StoredMember,
        promote: bool,
    ) -> Result<i64, Status> {
        let s = &self.ctx;
        let forward = |req| s.leader.conf_change(&s.stores.engine, req);
        let revision = s.raft.conf_change(change, id, member, promote, forward).await?;
        // The leader answers as it applies the change, a moment before its
        // applied index (which this member waited for) moves past it: make
        // sure this member's records show the change before answering.
        let shown = |members: &[StoredMember]| {
            let m = members.iter().find(|m| m.id == id);
            match change {
                ConfChangeType::RemoveNode => m.is_none(),
                ConfChangeType::AddLearnerNode => m.is_some(),
                ConfChangeType::AddNode => m.is_some_and(|m| !m.is_learner),
            }
        };
        let deadline = tokio::time::Instant::now() + s.cfg.request_timeout();
        while !shown(&load_members(&s.engine())) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(revision)
    }

    /// With auth on, only root may change membership.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let who = self.ctx.auth_info(request).await?;
        Ok(self.ctx.stores.auth.check_admin(who.as_ref())?)
    }

    /// etcd's membership headers: cluster, member and term, no revision.
    fn header(&self) -> ResponseHeader {
        self.ctx.header(0)
    }

    /// How many of `voters` count as connected: this member, and each peer
    /// connected for at least [`HEALTH_INTERVAL`] (etcd's `numConnectedSince`).
    /// Only the leader hears from every member (followers' Raft traffic goes
    /// to the leader alone), so a follower cannot tell: `None`.
    async fn connected(&self, voters: &[&StoredMember]) -> Result<Option<usize>, Status> {
        if !self.ctx.status.is_leader() {
            return Ok(None);
        }
        let peers = self.ctx.raft.active_peers().await?;
        let now = Instant::now();
        Ok(Some(
            voters
                .iter()
                .filter(|m| {
                    m.id == self.ctx.cfg.member_id
                        || peers.iter().any(|(id, since)| {
                            *id == m.id && now.saturating_duration_since(*since) >= HEALTH_INTERVAL
                        })
                })
                .count(),
        ))
    }

    /// etcd's `mayAddMember`.
    async fn may_add(&self, members: &[StoredMember], learner: bool) -> Result<(), Status> {
        if !self.ctx.cfg.strict_reconfig_check {
            return Ok(());
        }
        let voters: Vec<&StoredMember> = members.iter().filter(|m| !m.is_learner).collect();
        if !learner {
            // The new member counts as a member that has not started.
            let members = voters.len() + 1;
            let started = voters.iter().filter(|m| is_started(m)).count();
            if !(started == 1 && members == 2) && started < quorum(members) {
                tracing::warn!("rejecting member add request; not enough healthy members");
                return Err(Error::NotEnoughStartedMembers.into());
            }
        }
        if voters.len() > 1
            && self.connected(&voters).await?.is_some_and(|n| n < quorum(voters.len() + 1))
        {
            tracing::warn!(
                "rejecting member add request; local member has not been connected to majority peers, reconfigure breaks active quorum"
            );
            return Err(Error::Unhealthy.into());
        }
        Ok(())
    }

    /// etcd's `mayRemoveMember`.
    async fn may_remove(&self, members: &[StoredMember], id: u64) -> Result<(), Status> {
        if !self.ctx.cfg.strict_reconfig_check || members.iter().any(|m| m.id == id && m.is_learner)
        {
            return Ok(());
        }
        let voters: Vec<&StoredMember> = members.iter().filter(|m| !m.is_learner).collect();
        let rest = voters.iter().filter(|m| m.id != id).count();
        let started = voters.iter().filter(|m| m.id != id && is_started(m)).count();
        if started < quorum(rest) {
            tracing::warn!("rejecting member remove request; not enough healthy members");
            return Err(Error::NotEnoughStartedMembers.into());
        }
        let Some(active) = self.connected(&voters).await? else {
            return Ok(());
        };
        // A member that is down is not part of the active quorum.
        let peers = self.ctx.raft.active_peers().await?;
        if id != self.ctx.cfg.member_id && !peers.iter().any(|(p, _)| *p == id) {
            return Ok(());
        }
        if active.saturating_sub(1) < 1 + (voters.len().saturating_sub(1)) / 2 {
            tracing::warn!(
                "rejecting member remove request; local member has not been connected to all peers, reconfigure breaks active quorum"
            );
            return Err(Error::Unhealthy.into());
        }
        Ok(())
    }

    /// etcd's `mayPromoteMember` (after the learner's log was checked).
    fn may_promote(&self, members: &[StoredMember]) -> Result<(), Status> {
        if !self.ctx.cfg.strict_reconfig_check {
            return Ok(());
        }
        let voters = members.iter().filter(|m| !m.is_learner);
        // The learner counts as a started member of the future quorum.
        let members = voters.clone().count() + 1;
        let started = voters.filter(|m| is_started(m)).count() + 1;
        if started < quorum(members) {
            tracing::warn!("rejecting member promote request; not enough healthy members");
            return Err(Error::NotEnoughStartedMembers.into());
        }
        Ok(())
    }
}

/// A majority of `n` members.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// etcd's `Member.IsStarted`: the member has published its name.
fn is_started(m: &StoredMember) -> bool {
    !m.name.is_empty()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.ctx.raft.read_index().await?;
        }
        let engine = self.ctx.engine();
        let members = load_members(&engine).iter().map(to_wire).collect();
        Ok(Response::new(MemberListResponse { header: Some(self.header()), members }))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.admin(&request).await?;
        let r = request.into_inner();
        let s = &self.ctx;
        let urls =
            parse_urls("peerURLs", &r.peer_ur_ls.join(",")).map_err(|_| Error::MemberBadUrls)?;
        let members = load_members(&s.engine());
        if members.iter().any(|m| m.peer_urls.iter().any(|u| urls.contains(u))) {
            return Err(Error::PeerUrlExist.into());
        }
        self.may_add(&members, r.is_learner).await?;
        // etcd's ValidateMaxLearnerConfig.
        if r.is_learner
            && members.iter().filter(|m| m.is_learner).count() + 1 > s.cfg.max_learners as usize
        {
            return Err(Error::TooManyLearners.into());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = member_id_at(&urls, &s.cfg.cluster_token, Some(now));
        let member = StoredMember {
            id,
            name: String::new(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: r.is_learner,
        };
        let change =
            if r.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
        self.conf_change(change, id, member.clone(), false).await?;
        let engine = s.engine();
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header()),
            member: Some(to_wire(&member)),
            members: load_members(&engine).iter().map(to_wire).collect(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.admin(&request).await?;
        let id = request.into_inner().id;
        let s = &self.ctx;
        let members = load_members(&s.engine());
        let member = members.iter().find(|m| m.id == id).cloned().ok_or(Error::MemberNotFound)?;
        self.may_remove(&members, id).await?;
        self.conf_change(ConfChangeType::RemoveNode, id, member, false).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header()),
            members: load_members(&s.engine()).iter().map(to_wire).collect(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.admin(&request).await?;
        let mut r = request.into_inner();
        let s = &self.ctx;
        r.peer_ur_ls =
            parse_urls("peerURLs", &r.peer_ur_ls.join(",")).map_err(|_| Error::MemberBadUrls)?;
        let members = load_members(&s.engine());
        if !members.iter().any(|m| m.id == r.id) {
            return Err(Error::MemberNotFound.into());
        }
        if members
            .iter()
            .any(|m| m.id != r.id && m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(Error::PeerUrlExist.into());
        }
        s.raft.propose(Internal::MemberUpdate(r)).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.header()),
            members: load_members(&s.engine()).iter().map(to_wire).collect(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.admin(&request).await?;
        let id = request.into_inner().id;
        let s = &self.ctx;
        let members = load_members(&s.engine());
        let member = members.iter().find(|m| m.id == id).cloned().ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            return Err(Error::MemberNotLearner.into());
        }
        // As etcd, the leader refuses a learner that lacks the log: a quorum
        // must never count a voter that cannot vote yet.
        self.may_promote(&members)?;
        self.conf_change(ConfChangeType::AddNode, id, member, true).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header()),
            members: load_members(&s.engine()).iter().map(to_wire).collect(),
        }))
    }
}
