//! The etcd Maintenance service: Status, hashes, defragmentation and leader
//! transfer, alarms, snapshots and downgrades.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::downgrade_request::DowngradeAction;
use logbook_api::etcdserverpb::maintenance_server::Maintenance;
use logbook_api::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeInfo,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use logbook_api::logbookpb::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use super::context::Context;
use crate::error::Error;
use crate::state::apply::Applied;
use crate::state::membership::{load_cluster_version, load_downgrade_info, load_members};
use crate::version::{ETCD_VERSION, parse_downgrade_target};

/// Serves Maintenance.
pub struct MaintenanceService {
    pub ctx: Arc<Context>,
}

impl MaintenanceService {
    /// With auth on, only root may call this.
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let who = self.ctx.auth_info(request).await?;
        Ok(self.ctx.stores.auth.check_admin(who.as_ref())?)
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        let s = &self.ctx;
        if r.action == AlarmAction::Get as i32 {
            s.stores.auth.require_user(who.as_ref())?;
            let engine = s.engine();
            return Ok(Response::new(AlarmResponse {
                header: Some(s.header(engine.current_revision())),
                alarms: s.stores.alarms.list(r.member_id, r.alarm),
            }));
        }
        s.stores.auth.check_admin(who.as_ref())?;
        match s.raft.propose_as(Internal::Alarm(r), who.as_ref()).await? {
            (Applied::Alarm(mut resp), revision) => {
                resp.header = Some(s.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => panic!("an Alarm was applied as {other:?}"),
        }
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.stores.auth.require_user(who.as_ref())?;
        let s = &self.ctx;
        let engine = s.engine();
        let leader = s.status.leader().unwrap_or(0);
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push(Error::NoLeader.to_string());
        }
        errors.extend(s.stores.alarms.describe());
        let is_learner =
            load_members(&engine).iter().any(|m| m.id == s.cfg.member_id && m.is_learner);
        Ok(Response::new(StatusResponse {
            header: Some(s.header(engine.current_revision())),
            version: ETCD_VERSION.to_string(),
            db_size: engine.size() as i64,
            leader,
            raft_index: s.status.commit_index(),
            raft_term: s.status.term(),
            raft_applied_index: s.status.applied_index(),
            errors,
            db_size_in_use: engine.size_in_use() as i64,
            is_learner,
            // etcd 3.6+ reports the schema version of its db file, which
            // each member moves to the cluster version (major.minor.0) as
            // soon as that changes (etcd's UpdateStorageVersionIfNeeded).
            storage_version: {
                let (major, minor) = load_cluster_version(&engine);
                format!("{major}.{minor}.0")
            },
            db_size_quota: s.cfg.quota_backend_bytes,
            downgrade_info: Some(load_downgrade_info(&engine)),
        }))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&request).await?;
        let engine = self.ctx.engine();
        tokio::task::spawn_blocking(move || engine.defragment())
            .await
            .map_err(|e| Status::internal(format!("defragment task failed: {e}")))?
            .map_err(Error::from)?;
        self.ctx.quota.backend_size_changed();
        // etcd answers an empty message: no header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&request).await?;
        let engine = self.ctx.engine();
        let rev = engine.current_revision();
        let (hash, _) = engine.hash_kv(0).map_err(Error::from)?;
        Ok(Response::new(HashResponse { header: Some(self.ctx.header(rev)), hash }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&request).await?;
        let r = request.into_inner();
        let engine = self.ctx.engine();
        let (h, current) = self.ctx.stores.hashes.hash_by_rev(&engine, r.revision)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.ctx.header(current)),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
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
        let stream = crate::state::etcd_snapshot::snapshot_stream(self.ctx.engine()).await?;
        Ok(Response::new(stream))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&request).await?;
        let target = request.into_inner().target_id;
        let s = &self.ctx;
        if s.status.leader() != Some(s.cfg.member_id) {
            return Err(Error::NotLeader.into());
        }
        let engine = s.engine();
        if !load_members(&engine).iter().any(|m| m.id == target && !m.is_learner) {
            return Err(Error::BadLeaderTransferee.into());
        }
        // etcd answers an empty message (no header), also when the target
        // already leads.
        if target == s.cfg.member_id {
            return Ok(Response::new(MoveLeaderResponse { header: None }));
        }
        s.raft.transfer_leader(target)?;
        let deadline = Instant::now() + s.cfg.request_timeout();
        while Instant::now() < deadline {
            if s.status.leader() == Some(target) {
                return Ok(Response::new(MoveLeaderResponse { header: None }));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Timeout.into())
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        self.ctx.stores.auth.check_admin(who.as_ref())?;
        let r = request.into_inner();
        let s = &self.ctx;
        let action = DowngradeAction::try_from(r.action)
            .map_err(|_| Status::unimplemented("etcdserver: unknown method"))?;
        match action {
            DowngradeAction::Validate | DowngradeAction::Enable => {
                let target =
                    parse_downgrade_target(&r.version).ok_or(Error::WrongDowngradeVersionFormat)?;
                s.raft.read_index().await?;
                // The cluster version now (a downgrade in progress may have moved it).
                let (major, minor) = load_cluster_version(&s.engine());
                // Only one minor version down (etcd's allowedDowngradeVersion).
                if target != (major, minor - 1) {
                    return Err(Error::InvalidDowngradeTargetVersion.into());
                }
                if load_downgrade_info(&s.engine()).enabled {
                    return Err(Error::DowngradeInProcess.into());
                }
                if action == DowngradeAction::Enable {
                    let info = DowngradeInfo {
                        enabled: true,
                        target_version: format!("{}.{}.0", target.0, target.1),
                    };
                    tracing::info!(target_version = %info.target_version, "downgrade enabled");
                    s.raft.propose_as(Internal::DowngradeInfoSet(info), who.as_ref()).await?;
                }
            }
            DowngradeAction::Cancel => {
                s.raft.read_index().await?;
                if load_downgrade_info(&s.engine()).enabled {
                    s.raft
                        .propose_as(
                            Internal::DowngradeInfoSet(DowngradeInfo::default()),
                            who.as_ref(),
                        )
                        .await?;
                    tracing::info!("downgrade cancelled");
                } else {
                    // etcd logs this and answers the cancel as done.
                    tracing::warn!(error = %Error::NoInflightDowngrade, "failed to cancel downgrade");
                }
            }
        }
        // etcd answers the cluster version as it is after the call:
        // "3.5" (version.Cluster of the cluster version).
        let engine = s.engine();
        let (major, minor) = load_cluster_version(&engine);
        Ok(Response::new(DowngradeResponse {
            header: Some(s.header(engine.current_revision())),
            version: format!("{major}.{minor}"),
        }))
    }
}
