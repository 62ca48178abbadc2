//! The etcd Cluster service. MemberList answers from the members the engine
//! stores; adding, promoting and removing members are Raft configuration
//! changes, applied together with the stored member records.

use std::sync::Arc;

use logbook_api::etcdserverpb::cluster_server::Cluster;
use logbook_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
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
        Ok(s.raft.conf_change(change, id, member, promote, forward).await?)
    }

    /// With auth on, only root may change membership.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let who = self.ctx.auth_info(request).await?;
        Ok(self.ctx.stores.auth.check_admin(who.as_ref())?)
    }
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
        Ok(Response::new(MemberListResponse {
            header: Some(self.ctx.header(engine.current_revision())),
            members,
        }))
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
        let revision = self.conf_change(change, id, member.clone(), false).await?;
        let engine = s.engine();
        Ok(Response::new(MemberAddResponse {
            header: Some(s.header(revision)),
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
        let member = load_members(&s.engine())
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(Error::MemberNotFound)?;
        let revision = self.conf_change(ConfChangeType::RemoveNode, id, member, false).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(s.header(revision)),
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
        let (_, revision) = s.raft.propose(Internal::MemberUpdate(r)).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(s.header(revision)),
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
        let member = load_members(&s.engine())
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(Error::MemberNotFound)?;
        if !member.is_learner {
            return Err(Error::MemberNotLearner.into());
        }
        // As etcd, the leader refuses a learner that lacks the log: a quorum
        // must never count a voter that cannot vote yet.
        let revision = self.conf_change(ConfChangeType::AddNode, id, member, true).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(s.header(revision)),
            members: load_members(&s.engine()).iter().map(to_wire).collect(),
        }))
    }
}
