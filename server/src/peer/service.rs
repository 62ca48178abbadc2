//! The peer side of the transport: the `Peer` gRPC service every member
//! serves on its peer URLs (snapshots, hellos, lease questions, hashes for
//! the corruption checks; Raft
//! messages come on the Raft lane, [`super::lane`], which answers its hello
//! here too). A member removed from the cluster is refused (etcd answers it
//! 410 Gone): it hears [`REMOVED_MESSAGE`] and stops.

use bytes::BytesMut;
use logbook_api::etcdserverpb::HashKvResponse;
use logbook_api::logbookpb::peer_server::Peer;
use logbook_api::logbookpb::{
    ConfChangeForward, ConfChangeForwardResponse, HelloRequest, HelloResponse, LeaseQueryRequest,
    LeaseQueryResponse, PeerHashKvRequest, SnapshotAck, SnapshotChunk,
};
use protobuf::Message as _;
use raft::prelude::Message;
use tonic::{Request, Response, Status, Streaming};

use std::sync::Arc;

use super::{Changes, Sink};
use crate::error::Error;
use crate::state::membership::{REMOVED_MESSAGE, is_removed};
use crate::state::stores::Stores;

/// Serves peers.
pub struct PeerService {
    pub member_id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    /// Where received messages go.
    pub raft: Sink,
    /// Members (for the hello) and leases (for lease queries).
    pub stores: Arc<Stores>,
    /// Proposes membership changes followers forward.
    pub changes: Changes,
    /// `--raft-read-timeout`: an incoming Raft lane silent this long is closed.
    pub read_timeout: std::time::Duration,
}

/// etcd's rafthttp `ErrClusterIDMismatch`, which its peer hash handler answers a
/// member of another cluster with.
pub const CLUSTER_ID_MISMATCH: &str = "cluster ID mismatch";

/// The refusal a removed member gets.
fn removed(member: u64) -> Status {
    tracing::warn!(member = format!("{member:x}"), "refused peer traffic from a removed member");
    Status::failed_precondition(REMOVED_MESSAGE)
}

fn decode(bytes: &[u8]) -> Result<Message, Status> {
    Message::parse_from_bytes(bytes)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
}

impl PeerService {
    /// Who this member is, for a peer's hello (on gRPC or the Raft lane); a
    /// removed member is refused with [`REMOVED_MESSAGE`].
    pub(crate) fn answer_hello(&self, req: &HelloRequest) -> Result<HelloResponse, Status> {
        if req.cluster_id != 0 && req.cluster_id != self.cluster_id {
            tracing::warn!(
                theirs = format!("{:x}", req.cluster_id),
                from = format!("{:x}", req.member_id),
                "a member of another cluster knocked"
            );
        }
        // A member of this cluster (one joining sends no cluster ID yet: a member added
        // again with the peer URLs of a removed one starts from the removed one's ID).
        if req.cluster_id == self.cluster_id && is_removed(&self.stores.engine.get(), req.member_id)
        {
            return Err(removed(req.member_id));
        }
        Ok(HelloResponse {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            name: self.name.clone(),
            client_urls: self.client_urls.clone(),
            members: crate::state::membership::load_members(&self.stores.engine.get()),
        })
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut stream = request.into_inner();
        let head = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let mut msg = decode(&head.message)?;
        let mut data = BytesMut::with_capacity(head.total_bytes.min(1 << 30) as usize);
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        if data.len() as u64 != head.total_bytes {
            return Err(Status::data_loss(format!(
                "snapshot stream ended after {} of {} bytes",
                data.len(),
                head.total_bytes
            )));
        }
        let received = data.len() as u64;
        msg.mut_snapshot().data = data.freeze();
        if !self.raft.step(msg) {
            return Err(Status::unavailable("etcdserver: server stopped"));
        }
        Ok(Response::new(SnapshotAck { received_bytes: received }))
    }

    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        self.answer_hello(&request.into_inner()).map(Response::new)
    }

    /// etcd's peer `/members/hashkv`: this member's HashKV at a revision,
    /// refused to a member of another cluster with etcd's words.
    async fn hash_kv(
        &self,
        request: Request<PeerHashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let req = request.into_inner();
        if req.cluster_id != 0 && req.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(CLUSTER_ID_MISMATCH));
        }
        let engine = self.stores.engine.get();
        let (h, current) = self.stores.hashes.hash_by_rev(&engine, req.revision).map_err(|e| {
            tracing::warn!(requested_revision = req.revision, error = %e, "failed to get hashKV");
            Status::from(e)
        })?;
        Ok(Response::new(HashKvResponse {
            header: Some(logbook_api::etcdserverpb::ResponseHeader {
                cluster_id: self.cluster_id,
                member_id: self.member_id,
                revision: current,
                raft_term: 0,
            }),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        }))
    }

    async fn lease_query(
        &self,
        request: Request<LeaseQueryRequest>,
    ) -> Result<Response<LeaseQueryResponse>, Status> {
        let req = request.into_inner();
        let lessor = &self.stores.lessor;
        let answer = if req.renew {
            lessor.renew(req.id).map(|ttl| (ttl, ttl.unwrap_or(0)))
        } else if lessor.is_primary() {
            Ok((
                lessor.info(req.id).map(|i| i.remaining),
                lessor.info(req.id).map_or(0, |i| i.granted),
            ))
        } else {
            Err(Error::NotLeader)
        };
        Ok(Response::new(match answer {
            Ok((ttl, granted)) => LeaseQueryResponse {
                found: ttl.is_some(),
                ttl: ttl.unwrap_or(-1),
                granted_ttl: granted,
                leader: true,
            },
            Err(_) => LeaseQueryResponse { leader: false, ..Default::default() },
        }))
    }

    async fn conf_change(
        &self,
        request: Request<ConfChangeForward>,
    ) -> Result<Response<ConfChangeForwardResponse>, Status> {
        let req = request.into_inner();
        use raft::prelude::ConfChangeType;
        let change = match req.change_type {
            0 => ConfChangeType::AddNode,
            1 => ConfChangeType::RemoveNode,
            2 => ConfChangeType::AddLearnerNode,
            _ => return Err(Status::invalid_argument("unknown membership change type")),
        };
        let member = req.member.ok_or_else(|| Status::invalid_argument("no member given"))?;
        let (revision, applied_index) =
            self.changes.forwarded(change, req.node_id, member, req.promote).await?;
        Ok(Response::new(ConfChangeForwardResponse { revision, applied_index }))
    }
}
