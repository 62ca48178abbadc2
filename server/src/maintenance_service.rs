//! The etcd Maintenance service: Status, hashes, defragmentation and leader
//! transfer, alarms and snapshots. Downgrades are refused with a clear error.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::Stream;
use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::maintenance_server::Maintenance;
use logbook_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use logbook_api::logbookpb::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use crate::apply::Applied;
use crate::error::Error;
use crate::kv_service::KvService;
use crate::membership::load_members;
use crate::node::{NodeMsg, Shared};

/// The etcd version whose API Logbook serves, as Status reports it.
pub const SERVED_VERSION: &str = crate::version::ETCD_VERSION;

/// Serves Maintenance.
pub struct MaintenanceService {
    pub shared: Arc<Shared>,
}

impl MaintenanceService {
    /// With auth on, only root may call this.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let who = self.shared.auth_info(request).await?;
        Ok(self.shared.auth.check_admin(who.as_ref())?)
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let who = self.shared.auth_info(&request).await?;
        let r = request.into_inner();
        let s = &self.shared;
        if r.action == AlarmAction::Get as i32 {
            s.auth.require_user(who.as_ref())?;
            let engine = s.engine.get();
            return Ok(Response::new(AlarmResponse {
                header: Some(KvService::header(s, engine.current_revision())),
                alarms: s.alarms.list(r.member_id, r.alarm),
            }));
        }
        s.auth.check_admin(who.as_ref())?;
        match s.propose_as(Internal::Alarm(r), who.as_ref()).await? {
            (Applied::Alarm(mut resp), revision) => {
                resp.header = Some(KvService::header(s, revision));
                Ok(Response::new(resp))
            }
            (other, _) => panic!("an Alarm was applied as {other:?}"),
        }
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let who = self.shared.auth_info(&request).await?;
        self.shared.auth.require_user(who.as_ref())?;
        let s = &self.shared;
        let engine = s.engine.get();
        Ok(Response::new(StatusResponse {
            header: Some(KvService::header(s, engine.current_revision())),
            version: SERVED_VERSION.to_string(),
            db_size: engine.size() as i64,
            leader: s.leader.load(Ordering::Acquire),
            raft_index: s.commit_index.load(Ordering::Acquire),
            raft_term: s.term.load(Ordering::Acquire),
            raft_applied_index: s.applied_index.load(Ordering::Acquire),
            errors: s.alarms.describe(),
            db_size_in_use: engine.size_in_use() as i64,
            is_learner: false,
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&request).await?;
        let engine = self.shared.engine.get();
        let rev = engine.current_revision();
        tokio::task::spawn_blocking(move || engine.defragment())
            .await
            .map_err(|e| Status::internal(format!("defragment task failed: {e}")))?
            .map_err(Error::from)?;
        self.shared.backend_size_changed();
        Ok(Response::new(DefragmentResponse { header: Some(KvService::header(&self.shared, rev)) }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&request).await?;
        let engine = self.shared.engine.get();
        let rev = engine.current_revision();
        let (hash, _) = engine.hash_kv(0).map_err(Error::from)?;
        Ok(Response::new(HashResponse { header: Some(KvService::header(&self.shared, rev)), hash }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&request).await?;
        let r = request.into_inner();
        let engine = self.shared.engine.get();
        let rev = engine.current_revision();
        let (hash, compact_revision) = engine.hash_kv(r.revision).map_err(Error::from)?;
        Ok(Response::new(HashKvResponse {
            header: Some(KvService::header(&self.shared, rev)),
            hash,
            compact_revision,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    /// The store in etcd's snapshot format (see `etcd_snapshot`), so `etcdctl snapshot
    /// save` works and `etcdctl snapshot restore` gives a real etcd the same data.
    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&request).await?;
        let stream = crate::etcd_snapshot::snapshot_stream(self.shared.engine.get()).await?;
        Ok(Response::new(stream))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&request).await?;
        let target = request.into_inner().target_id;
        let s = &self.shared;
        if s.leader() != Some(s.cfg.member_id) {
            return Err(Error::NotLeader.into());
        }
        let engine = s.engine.get();
        if !load_members(&engine).iter().any(|m| m.id == target) {
            return Err(Error::BadLeaderTransferee.into());
        }
        s.inbox.send(NodeMsg::TransferLeader(target)).map_err(|_| Error::Stopped)?;
        let deadline = Instant::now() + s.cfg.request_timeout();
        while Instant::now() < deadline {
            if s.leader() == Some(target) {
                return Ok(Response::new(MoveLeaderResponse {
                    header: Some(KvService::header(s, engine.current_revision())),
                }));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Timeout.into())
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.admin(&request).await?;
        Err(Error::Unsupported("Downgrade").into())
    }
}
