//! The services' way into Raft: propose a request (or a membership change)
//! and wait until this member has applied it, confirm a linearizable read,
//! hand leadership over. Each call puts one [`NodeMsg`] in the Raft
//! thread's inbox; proposals register a waiter in [`Proposals`] first, which
//! the Raft loop answers when it applies the entry.

use std::sync::Arc;
use std::time::Duration;

use logbook_api::logbookpb::{
    ConfChangeContext, ConfChangeForward, ConfChangeForwardResponse, InternalRequest, StoredMember,
    internal_request,
};
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
    /// Twice the election timeout: a request that started at most this long
    /// before a leader was elected, and timed out, blames the failover.
    leader_fail_window: Duration,
}

impl RaftHandle {
    pub fn new(
        inbox: Inbox,
        proposals: Arc<Proposals>,
        status: Arc<RaftStatus>,
        max_request_bytes: usize,
        request_timeout: Duration,
        election_timeout: Duration,
    ) -> Self {
        RaftHandle {
            inbox,
            proposals,
            status,
            max_request_bytes,
            request_timeout,
            leader_fail_window: election_timeout * 2,
        }
    }

    /// The error for a request started at `start` that timed out: as etcd's
    /// `parseProposeCtxErr`, one that was waiting while a new leader was
    /// elected says the previous leader may have failed.
    fn timeout_error(&self, start: tokio::time::Instant) -> Error {
        crate::metrics::METRICS.proposals_failed.inc();
        match self.status.leader_elected_at() {
            Some(elected)
                if blames_leader_failure(start.into_std(), elected, self.leader_fail_window) =>
            {
                Error::TimeoutDueToLeaderFail
            }
            _ => Error::Timeout,
        }
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
        let start = tokio::time::Instant::now();
        let deadline = start + self.request_timeout;
        self.wait_for_leader(start, deadline).await?;
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
                Err(self.timeout_error(start))
            }
        }
    }

    /// Waits (until `deadline`) while this member knows no leader, as etcd's
    /// Raft node takes no proposal then and its request waits for an
    /// election: a write sent during a failover succeeds once a leader is
    /// chosen instead of failing at once.
    async fn wait_for_leader(
        &self,
        start: tokio::time::Instant,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        const POLL: Duration = Duration::from_millis(10);
        while self.status.leader().is_none() {
            if self.status.stopped() {
                return Err(Error::Stopped);
            }
            if tokio::time::Instant::now() + POLL > deadline {
                return Err(self.timeout_error(start));
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

    /// A membership change asked of this member: proposed here when it
    /// leads, otherwise handed to the leader's peer service by `forward`
    /// (a follower's own proposal would reach the leader inside Raft, which
    /// drops it while an earlier change is unapplied, and its client would
    /// time out). Once the leader has applied it, waits until this member
    /// has applied as far, so its member list shows the change. Returns the
    /// store's revision after the change.
    pub async fn conf_change<F, Fut>(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: StoredMember,
        promote: bool,
        forward: F,
    ) -> Result<i64>
    where
        F: Fn(ConfChangeForward) -> Fut,
        Fut: std::future::Future<Output = Result<ConfChangeForwardResponse>>,
    {
        if self.status.stopped() {
            return Err(Error::Stopped);
        }
        let start = tokio::time::Instant::now();
        let deadline = start + self.request_timeout;
        loop {
            self.wait_for_leader(start, deadline).await?;
            let answer = if self.status.is_leader() {
                self.leader_conf_change(change, node_id, member.clone(), promote).await
            } else {
                let req = ConfChangeForward {
                    change_type: change as i32,
                    node_id,
                    member: Some(member.clone()),
                    promote,
                };
                match tokio::time::timeout_at(deadline, forward(req)).await {
                    Ok(answer) => answer.map(|r| (r.revision, r.applied_index)),
                    Err(_) => Err(self.timeout_error(start)),
                }
            };
            match answer {
                // Leadership moved before the change was proposed: ask the
                // new leader.
                Err(Error::NotLeader | Error::NoLeader)
                    if tokio::time::Instant::now() + CONF_CHANGE_RETRY < deadline =>
                {
                    tokio::time::sleep(CONF_CHANGE_RETRY).await;
                }
                Err(e) => return Err(e),
                Ok((revision, applied)) => {
                    while self.status.applied_index() < applied {
                        if self.status.stopped() {
                            return Err(Error::Stopped);
                        }
                        if tokio::time::Instant::now() >= deadline {
                            return Err(self.timeout_error(start));
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    return Ok(revision);
                }
            }
        }
    }

    /// On the leader: refuses a promotion of a learner that lacks the log
    /// (etcd's check), then proposes the change.
    async fn leader_conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: StoredMember,
        promote: bool,
    ) -> Result<(i64, u64)> {
        if promote {
            match self.learner_ready(node_id).await? {
                None => return Err(Error::NotLeader),
                Some(false) => return Err(Error::LearnerNotReady),
                Some(true) => {}
            }
        } else if !self.status.is_leader() {
            return Err(Error::NotLeader);
        }
        let (_, revision) = self.propose_conf_change(change, node_id, member).await?;
        Ok((revision, self.status.applied_index()))
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

/// Whether a request started at `start` that timed out blames a failover:
/// a leader was elected after it started, at most `window` later (etcd's
/// `prevLeadLost < start < leadElected`).
fn blames_leader_failure(
    start: std::time::Instant,
    elected: std::time::Instant,
    window: Duration,
) -> bool {
    start < elected && elected.duration_since(start) <= window
}

#[tonic::async_trait]
impl crate::peer::ConfChanges for RaftHandle {
    async fn forwarded(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: StoredMember,
        promote: bool,
    ) -> Result<(i64, u64)> {
        if self.status.stopped() {
            return Err(Error::Stopped);
        }
        self.leader_conf_change(change, node_id, member, promote).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::blames_leader_failure;

    #[test]
    fn a_timeout_blames_a_leader_elected_while_it_waited() {
        let start = Instant::now();
        let window = Duration::from_secs(2);
        assert!(blames_leader_failure(start, start + Duration::from_secs(1), window));
        // Elected before the request: the failover is not why it waited.
        assert!(!blames_leader_failure(start + Duration::from_secs(1), start, window));
        // Elected long after it started: the request was stuck for another
        // reason before the old leader was lost.
        assert!(!blames_leader_failure(start, start + Duration::from_secs(3), window));
    }
}
