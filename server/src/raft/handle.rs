//! The services' way into Raft: propose a request (or a membership change)
//! and wait until this member has applied it, confirm a linearizable read,
//! hand leadership over. Each call puts one [`NodeMsg`] in the Raft
//! thread's inbox; proposals register a waiter in [`Proposals`] first, which
//! the Raft loop answers when it applies the entry.

use std::sync::Arc;
use std::time::Duration;

use logbook_api::logbookpb::{ConfChangeContext, InternalRequest, StoredMember, internal_request};
use prost::Message as _;
use raft::prelude::{ConfChange, ConfChangeType};
use tokio::sync::oneshot;

use super::inbox::{Inbox, NodeMsg};
use super::proposals::{Outcome, Proposals};
use crate::error::{Error, Result};
use crate::state::auth::AuthInfo;
use crate::status::RaftStatus;

/// How long a membership change waits before it is proposed again when an
/// earlier one is still being applied.
const CONF_CHANGE_RETRY: Duration = Duration::from_millis(50);

/// A cheap, cloneable handle on the Raft thread.
#[derive(Clone)]
pub struct RaftHandle {
    inbox: Inbox,
    proposals: Arc<Proposals>,
    status: Arc<RaftStatus>,
    /// `--max-request-bytes`: larger encoded requests are refused before Raft.
    max_request_bytes: usize,
    /// How long a caller waits for Raft (etcd's request timeout).
    request_timeout: Duration,
}

impl RaftHandle {
    pub fn new(
        inbox: Inbox,
        proposals: Arc<Proposals>,
        status: Arc<RaftStatus>,
        max_request_bytes: usize,
        request_timeout: Duration,
    ) -> Self {
        RaftHandle { inbox, proposals, status, max_request_bytes, request_timeout }
    }

    /// Proposes `request` through Raft and waits until it is applied here.
    /// Returns what applying it produced and the store's revision after it.
    pub async fn propose(&self, request: internal_request::Request) -> Outcome {
        self.propose_as(request, None).await
    }

    /// [`RaftHandle::propose`] on behalf of a client: the entry records who
    /// asked, for the permission checks every member makes as it applies.
    pub async fn propose_as(
        &self,
        request: internal_request::Request,
        who: Option<&AuthInfo>,
    ) -> Outcome {
        let (username, auth_revision) =
            who.map_or((String::new(), 0), |w| (w.user.clone(), w.revision));
        self.propose_entry(InternalRequest {
            id: 0,
            request: Some(request),
            username,
            auth_revision,
            system: false,
        })
        .await
    }

    /// [`RaftHandle::propose`] of the member's own housekeeping (lease
    /// expiry, alarms): exempt from permission checks.
    pub async fn propose_system(&self, request: internal_request::Request) -> Outcome {
        self.propose_entry(InternalRequest {
            id: 0,
            request: Some(request),
            system: true,
            ..Default::default()
        })
        .await
    }

    async fn propose_entry(&self, mut entry: InternalRequest) -> Outcome {
        if self.status.stopped() {
            return Err(Error::Stopped);
        }
        let id = self.proposals.next_id();
        entry.id = id;
        let data = entry.encode_to_vec();
        if data.len() > self.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        self.submit_and_wait(id, NodeMsg::Propose { id, data }).await
    }

    /// Registers a waiter for request `id`, hands `msg` to the Raft thread
    /// and waits (bounded) until the request is applied here.
    async fn submit_and_wait(&self, id: u64, msg: NodeMsg) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        self.wait_for_leader(deadline).await?;
        let rx = self.proposals.register(id);
        if self.inbox.send(msg).is_err() {
            self.proposals.forget(id);
            return Err(Error::Stopped);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.proposals.forget(id);
                crate::metrics::METRICS.proposals_failed.inc();
                Err(Error::Timeout)
            }
        }
    }

    /// Waits (until `deadline`) while this member knows no leader, as etcd's
    /// Raft node takes no proposal then and its request waits for an
    /// election: a write sent during a failover succeeds once a leader is
    /// chosen instead of failing at once.
    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> Result<()> {
        const POLL: Duration = Duration::from_millis(10);
        while self.status.leader().is_none() {
            if self.status.stopped() {
                return Err(Error::Stopped);
            }
            if tokio::time::Instant::now() + POLL > deadline {
                crate::metrics::METRICS.proposals_failed.inc();
                return Err(Error::Timeout);
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Proposes a membership change and waits until it is applied here.
    pub async fn propose_conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: StoredMember,
    ) -> Outcome {
        if self.status.stopped() {
            return Err(Error::Stopped);
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        loop {
            let id = self.proposals.next_id();
            let mut cc = ConfChange::default();
            cc.set_change_type(change);
            cc.node_id = node_id;
            let context = ConfChangeContext { request_id: id, member: Some(member.clone()) };
            cc.context = context.encode_to_vec().into();
            match self.submit_and_wait(id, NodeMsg::ProposeConfChange { id, cc }).await {
                // An earlier change (or a new leader's first entry) is not
                // applied yet: it will be soon.
                Err(Error::ConfChangePending)
                    if tokio::time::Instant::now() + CONF_CHANGE_RETRY < deadline =>
                {
                    tokio::time::sleep(CONF_CHANGE_RETRY).await;
                }
                other => return other,
            }
        }
    }

    /// Waits until a linearizable read may be served on this member.
    pub async fn read_index(&self) -> Result<()> {
        if self.status.stopped() {
            return Err(Error::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        self.inbox.send(NodeMsg::ReadIndex(tx)).map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Asks Raft to hand leadership to member `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        self.inbox.send(NodeMsg::TransferLeader(to)).map_err(|_| Error::Stopped)
    }

    /// On the leader, whether learner `id` is in sync enough to be promoted;
    /// `None` on a follower.
    pub async fn learner_ready(&self, id: u64) -> Result<Option<bool>> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(NodeMsg::LearnerReady { id, reply }).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The peers connected to this member and since when (etcd's transport
    /// `ActiveSince`).
    pub async fn active_peers(&self) -> Result<Vec<(u64, std::time::Instant)>> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(NodeMsg::ActivePeers(reply)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Tells the Raft thread to stop.
    pub fn stop(&self) {
        let _ = self.inbox.send(NodeMsg::Stop);
    }

    /// A number no other request of this member uses (lease IDs are drawn
    /// from the same sequence as request IDs).
    pub fn fresh_id(&self) -> u64 {
        self.proposals.next_id()
    }

    /// Proposals waiting to be applied (for metrics).
    pub fn pending_proposals(&self) -> usize {
        self.proposals.len()
    }

    /// The member's Raft status.
    pub fn status(&self) -> &Arc<RaftStatus> {
        &self.status
    }
}
