//! The etcd Cluster service. MemberList answers from the members the engine
//! stores; membership changes arrive with Raft configuration changes.

use std::sync::Arc;

use logbook_api::etcdserverpb::cluster_server::Cluster;
use logbook_api::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::kv_service::KvService;
use crate::membership::{load_members, to_wire};
use crate::node::Shared;

/// Serves Cluster.
pub struct ClusterService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.shared.read_index().await?;
        }
        let engine = self.shared.engine.get();
        let members = load_members(&engine).iter().map(to_wire).collect();
        Ok(Response::new(MemberListResponse {
            header: Some(KvService::header(&self.shared, engine.current_revision())),
            members,
        }))
    }

    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Error::Unsupported("MemberAdd").into())
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Error::Unsupported("MemberRemove").into())
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Error::Unsupported("MemberUpdate").into())
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Error::Unsupported("MemberPromote").into())
    }
}
