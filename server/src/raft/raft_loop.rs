//! The Raft node: one thread that owns the `RawNode`, takes proposals, peer
//! messages and read requests from one inbox, persists through the WAL, sends
//! through the transport, and applies committed entries to the engine.
//!
//! # The ready loop
//! Each turn drains the inbox (so every proposal that arrived while the last
//! fsync ran goes into the next batch), ticks the clock when due, asks for one
//! read index covering every read that waited, then handles a `Ready`:
//! messages for followers go out first, so the leader's own fsync overlaps
//! theirs; committed entries are applied; new entries and the hard state go to
//! the WAL in one group commit; messages that must follow persistence go last.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam::channel::TryRecvError;
use logbook_api::logbookpb::ConfChangeContext;
use logbook_engine::Engine;
use logbook_wal::{Ticket, Wal};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::inbox::{Inbox, InboxReceiver, NodeMsg};
use super::proposals::Proposals;
use super::reads::ReadQueue;
use super::storage::RaftStorage;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::peer::lane::Incoming;
use crate::peer::transport::Transport;
use crate::state::apply::Applied;
use crate::state::machine::{MemberChange, StateMachine};
use crate::status::RaftStatus;
use crate::watch::hub::WatchHub;

/// How many entries to keep behind the engine's durable index when the log
/// is compacted, so a briefly slow follower catches up from the log rather
/// than a snapshot, when `--snapshot-catchup-entries` is 0 (etcd's default).
const CATCH_UP_ENTRIES: u64 = 5000;

/// The in-memory log is trimmed to its catch-up tail every this many applied entries (see
/// `RaftLoop::trim_memory_log`), whatever `--snapshot-count` says.
const TRIM_EVERY: u64 = 1024;

/// A turn of the Raft loop taking this long is logged (etcd's default
/// `--warning-apply-duration`).
const SLOW_TURN: Duration = Duration::from_millis(100);

/// Appends of at most this many entries are committed on the Raft thread itself when its
/// inbox is empty (see `RaftLoop::commit_in_place`).
const COMMIT_IN_PLACE_MAX: usize = 16;

/// At most this many inbox messages go into one turn of the loop.
const MAX_DRAIN: usize = 4096;

/// Proposals gathered in one turn are stepped into Raft as one `MsgPropose`
/// once they hold this many bytes (and at the end of the turn). A follower
/// forwards the batch to the leader as one peer message, so it must stay well
/// under the transport's message limit.
const MAX_PROPOSAL_BATCH_BYTES: usize = 4 << 20;

/// Wakes the Raft loop by putting a [`NodeMsg::WalProgress`] in its inbox.
struct InboxWaker(Inbox);

impl std::task::Wake for InboxWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(NodeMsg::WalProgress);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.send(NodeMsg::WalProgress);
    }
}

/// What the Raft loop shares with the rest of the member.
pub struct RaftParts {
    pub cfg: Arc<Config>,
    /// Published for the services, the watch hub and metrics.
    pub status: Arc<RaftStatus>,
    /// Waiters of proposals, answered as their entries apply.
    pub proposals: Arc<Proposals>,
    /// Where committed entries are applied.
    pub machine: StateMachine,
    /// The loop's own inbox, for the WAL's wake-ups.
    pub inbox: Inbox,
}

/// The Raft thread's state.
pub struct RaftLoop {
    node: RawNode<RaftStorage>,
    storage: RaftStorage,
    wal: Arc<Wal>,
    cfg: Arc<Config>,
    status: Arc<RaftStatus>,
    proposals: Arc<Proposals>,
    machine: StateMachine,
    rx: InboxReceiver,
    transport: Transport,
    /// Peers' Raft lanes, read whenever their sockets are ready.
    lanes: Vec<Incoming>,
    /// The doorbell's and the lanes' slots for `ppoll`.
    pollfds: Vec<libc::pollfd>,
    /// Messages read from the lanes, to step.
    lane_msgs: Vec<Message>,
    /// Nudged after applies, so watchers see new revisions.
    hub: Arc<WatchHub>,
    reads: ReadQueue,
    /// Applied index at the last log compaction.
    last_compaction: u64,
    /// Applied index at the last trim of the in-memory log.
    last_trim: u64,
    /// This member was removed from the cluster: stop after this turn.
    removed: bool,
    /// Proposals taken from the inbox this turn, not yet stepped into Raft:
    /// request IDs and the entries carrying them, in arrival order.
    proposal_ids: Vec<u64>,
    proposal_entries: Vec<Entry>,
    proposal_bytes: usize,
    /// Readies written to the WAL and not yet known durable, in order, with
    /// the ticket of their write (`None`: nothing to write).
    persisting: VecDeque<(u64, Option<Ticket>)>,
    /// Wakes the loop (through its inbox) when a WAL write completes; the WAL
    /// writer thread calls it, so durability reaches the loop in one hop.
    wal_waker: Waker,
    /// The ready number whose ticket has `wal_waker` registered.
    registered: Option<u64>,
    /// Messages that may only be sent once the ready with this number is durable.
    held_messages: VecDeque<(u64, Vec<Message>)>,
    /// How long the last ready's committed entries took to apply, and how
    /// many there were (for the slow-turn warning).
    last_apply: (Duration, usize),
}

impl RaftLoop {
    pub fn new(
        node: RawNode<RaftStorage>,
        storage: RaftStorage,
        wal: Arc<Wal>,
        parts: RaftParts,
        rx: InboxReceiver,
        transport: Transport,
        hub: Arc<WatchHub>,
    ) -> Self {
        let RaftParts { cfg, status, proposals, machine, inbox } = parts;
        let last_compaction = machine.stores.apply_state.lock().index;
        let wal_waker = Waker::from(Arc::new(InboxWaker(inbox)));
        RaftLoop {
            node,
            storage,
            wal,
            cfg,
            status,
            proposals,
            machine,
            rx,
            transport,
            lanes: Vec::new(),
            pollfds: Vec::new(),
            lane_msgs: Vec::new(),
            hub,
            reads: ReadQueue::default(),
            last_compaction,
            last_trim: last_compaction,
            removed: false,
            proposal_ids: Vec::new(),
            proposal_entries: Vec::new(),
            proposal_bytes: 0,
            persisting: VecDeque::new(),
            wal_waker,
            registered: None,
            held_messages: VecDeque::new(),
            last_apply: (Duration::ZERO, 0),
        }
    }

    /// Runs until told to stop (`Ok`) or until a fatal storage error (`Err`: the WAL or
    /// the engine failed a write or fsync, e.g. the disk is full or failing). etcd stops
    /// its process on these (`lg.Fatal`, "failed to save Raft hard state and entries",
    /// "failed to commit tx"); the member does too, with the error, once shut down.
    pub fn run(mut self) -> Result<()> {
        let tick = self.cfg.heartbeat;
        let mut next_tick = Instant::now() + tick;
        // A single voter need not wait out an election timeout.
        let single = self.node.raft.prs().conf().voters().ids().len() == 1
            && self.node.raft.prs().conf().voters().contains(self.cfg.member_id);
        if single {
            let _ = self.node.campaign();
        }
        // etcd's initial election tick advance: once peers are connected
        // (within the first 5 s), a member of several fast-forwards its
        // election clock by all but two ticks, so the first election does not
        // wait a whole election timeout.
        let started = Instant::now();
        let mut advance_pending = !single && self.cfg.initial_election_tick_advance;
        if !single {
            if advance_pending {
                tracing::info!(
                    election_ticks = self.cfg.election_ticks,
                    "starting initial election tick advance"
                );
            } else {
                tracing::info!(
                    election_ticks = self.cfg.election_ticks,
                    "skipping initial election tick advance"
                );
            }
        }
        let outcome = loop {
            // Raft may have more to hand over (a durable ready can commit
            // entries): look again at once rather than at the next tick.
            let wait = if self.node.has_ready() {
                std::time::Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            self.wait(wait);
            let turn = Instant::now();
            self.last_apply = (Duration::ZERO, 0);
            self.read_lanes();
            let mut stop = false;
            let mut drained = 0;
            while !stop && drained < MAX_DRAIN {
                match self.rx.try_recv() {
                    Ok(msg) => stop = !self.handle(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => stop = true,
                }
                drained += 1;
            }
            self.flush_proposals();
            if stop {
                break Ok(());
            }
            if let Err(e) = self.poll_persisting() {
                break Err(e);
            }
            let now = Instant::now();
            if advance_pending {
                advance_pending = self.advance_election_ticks(now.duration_since(started));
            }
            if now >= next_tick {
                // The engine persists applied entries in the background: a failed commit
                // there (disk full, I/O error) poisons it, and the member must stop as
                // etcd's does instead of applying further writes it can never persist.
                if let Err(e) = self.machine.stores.engine.get().check_health() {
                    tracing::error!(error = %e, "the storage engine failed; stopping the member");
                    break Err(Error::Internal(format!("storage engine: {e}")));
                }
                self.node.tick();
                next_tick += tick;
                if next_tick <= now {
                    next_tick = now + tick;
                }
                self.expire_reads(now);
                self.drop_stalled_lanes(now);
            }
            self.ask_read_index();
            if let Err(e) = self.on_ready() {
                break Err(e);
            }
            if self.removed {
                break Ok(());
            }
            let took = turn.elapsed();
            if took >= SLOW_TURN {
                // Like etcd's "apply request took too long": everything
                // waiting on this member (commits, reads, heartbeats) waited.
                tracing::warn!(
                    took = ?took,
                    expected_duration = ?SLOW_TURN,
                    apply = ?self.last_apply.0,
                    applied_entries = self.last_apply.1,
                    "raft loop turn took too long"
                );
            }
        };
        self.status.set_stopped();
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "raft loop stopped on a storage error; the member stops serving");
        }
        self.proposals.fail_all(|| Error::Stopped);
        self.reads.fail_asked(|| Error::Stopped);
        for (_, senders) in self.reads.confirmed.drain(..) {
            for s in senders {
                let _ = s.send(Err(Error::Stopped));
            }
        }
        for s in self.reads.pending.drain(..) {
            let _ = s.send(Err(Error::Stopped));
        }
        if let Err(e) = self.machine.stores.engine.get().commit() {
            tracing::error!(error = %e, "final engine commit failed");
        }
        outcome
    }

    /// Sleeps until the inbox or a lane has something, or `timeout` passes.
    fn wait(&mut self, timeout: Duration) {
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd { fd: -1, events: 0, revents: 0 });
        for lane in &self.lanes {
            self.pollfds.push(libc::pollfd { fd: lane.fd(), events: libc::POLLIN, revents: 0 });
        }
        self.rx.wait(&mut self.pollfds, timeout);
    }

    /// Reads the lanes `wait` found ready and steps what they brought.
    fn read_lanes(&mut self) {
        let mut closed = Vec::new();
        for i in 0..self.lanes.len() {
            let ready = self.pollfds.get(i + 1).is_some_and(|p| p.revents != 0);
            if ready && !self.read_lane(i) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            self.lanes.swap_remove(i);
        }
    }

    /// Reads lane `i` and steps its messages; false when the lane is over.
    fn read_lane(&mut self, i: usize) -> bool {
        let lane = &mut self.lanes[i];
        let from = lane.from();
        let alive = match lane.read(&mut self.lane_msgs) {
            Ok(false) => return true,
            Ok(true) => true,
            Err(e) => {
                tracing::debug!(peer = format!("{from:x}"), error = %e, "raft lane from peer closed");
                false
            }
        };
        if self.lane_msgs.is_empty() {
            return alive;
        }
        if crate::state::membership::is_removed(&self.machine.stores.engine.get(), from) {
            tracing::warn!(
                member = format!("{from:x}"),
                "refused peer traffic from a removed member"
            );
            self.lane_msgs.clear();
            return false;
        }
        // Whole messages read before a lane's end still count.
        for m in self.lane_msgs.drain(..) {
            if let Err(e) = self.node.step(m) {
                tracing::debug!(error = %e, "dropped a raft message");
            }
        }
        alive
    }

    /// Closes lanes whose peer went silent (not even keep-alives).
    fn drop_stalled_lanes(&mut self, now: Instant) {
        self.lanes.retain(|l| {
            let stalled = l.stalled(now);
            if stalled {
                tracing::warn!(
                    peer = format!("{:x}", l.from()),
                    raft_read_timeout = ?l.read_timeout(),
                    "raft lane from peer went silent; closed"
                );
            }
            !stalled
        });
    }

    /// Handles one inbox message; false means stop.
    fn handle(&mut self, msg: NodeMsg) -> bool {
        match msg {
            NodeMsg::Propose { id, data } => {
                self.proposal_bytes += data.len();
                self.proposal_ids.push(id);
                self.proposal_entries.push(Entry { data: data.into(), ..Default::default() });
                if self.proposal_bytes >= MAX_PROPOSAL_BATCH_BYTES {
                    self.flush_proposals();
                }
            }
            NodeMsg::ReadIndex(tx) => {
                if self.status.leader().is_none() {
                    let _ = tx.send(Err(Error::NoLeader));
                } else {
                    self.reads.pending.push(tx);
                }
            }
            NodeMsg::Step(m) => {
                if let Err(e) = self.node.step(m) {
                    tracing::debug!(error = %e, "dropped a raft message");
                }
            }
            NodeMsg::Unreachable(id) => self.node.report_unreachable(id),
            NodeMsg::SnapshotStatus(id, ok) => self.node.report_snapshot(
                id,
                if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure },
            ),
            NodeMsg::ProposeConfChange { id, cc } => {
                // Raft would silently turn the change into an empty entry while
                // an earlier one (or a new leader's first entry) is unapplied,
                // leaving its proposer to time out: tell it to try again.
                if self.node.raft.state == StateRole::Leader && self.node.raft.has_pending_conf() {
                    self.proposals.finish(id, Err(Error::ConfChangePending));
                } else if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
                    tracing::debug!(error = %e, "membership change proposal dropped");
                    let err = if self.status.leader().is_none() {
                        Error::NoLeader
                    } else {
                        Error::LeaderChanged
                    };
                    self.proposals.finish(id, Err(err));
                }
            }
            NodeMsg::TransferLeader(id) => self.node.transfer_leader(id),
            NodeMsg::LearnerReady { id, reply } => {
                let _ = reply.send(self.learner_ready(id));
            }
            NodeMsg::ActivePeers(reply) => {
                let mut peers: Vec<(u64, Instant)> = Vec::new();
                for l in &self.lanes {
                    match peers.iter_mut().find(|(id, _)| *id == l.from()) {
                        Some((_, since)) => *since = (*since).min(l.active_since()),
                        None => peers.push((l.from(), l.active_since())),
                    }
                }
                let _ = reply.send(peers);
            }
            NodeMsg::WalProgress => {}
            NodeMsg::Lane(lane) => {
                tracing::debug!(peer = format!("{:x}", lane.from()), "raft lane from peer opened");
                self.lanes.push(*lane);
                // Its hello may have brought messages along already.
                if !self.read_lane(self.lanes.len() - 1) {
                    self.lanes.pop();
                }
            }
            NodeMsg::Stop => return false,
        }
        true
    }

    /// Fast-forwards the election clock once more than one peer is
    /// connected (etcd's `adjustTicks`); returns whether to look again.
    fn advance_election_ticks(&mut self, since_start: Duration) -> bool {
        const WAIT: Duration = Duration::from_secs(5);
        let mut peers: Vec<u64> = self.lanes.iter().map(|l| l.from()).collect();
        peers.sort_unstable();
        peers.dedup();
        if peers.len() > 1 {
            let ticks = self.cfg.election_ticks.saturating_sub(2);
            tracing::info!(
                forward_ticks = ticks,
                election_ticks = self.cfg.election_ticks,
                active_remote_members = peers.len(),
                "initialized peer connections; fast-forwarding election ticks"
            );
            for _ in 0..ticks {
                self.node.tick();
            }
            return false;
        }
        since_start < WAIT
    }

    /// etcd's `isLearnerReady`: on the leader, a learner may be promoted once
    /// its log matches at least 90% of the leader's.
    fn learner_ready(&self, id: u64) -> Option<bool> {
        const READY: f64 = 0.9;
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader {
            return None;
        }
        let leader = raft.prs().get(raft.id).map_or(0, |p| p.matched);
        let learner = raft.prs().get(id).map_or(0, |p| p.matched);
        Some(learner as f64 >= leader as f64 * READY)
    }

    /// Steps the proposals gathered this turn into Raft as one `MsgPropose`:
    /// each stays its own log entry, but the leader appends them together and
    /// replicates them in one append per follower (and gets one acknowledgement
    /// back), where one proposal at a time costs a message each way per
    /// follower per request. A follower forwards the batch as one message.
    fn flush_proposals(&mut self) {
        if self.proposal_ids.is_empty() {
            return;
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.node.raft.id;
        m.set_entries(std::mem::take(&mut self.proposal_entries).into());
        self.proposal_bytes = 0;
        if self.node.step(m).is_err() {
            // Raft takes or drops a proposal message whole.
            let err = || {
                if self.status.leader().is_none() { Error::NoLeader } else { Error::LeaderChanged }
            };
            for id in std::mem::take(&mut self.proposal_ids) {
                crate::metrics::METRICS.proposals_failed.inc();
                self.proposals.finish(id, Err(err()));
            }
        } else {
            self.proposal_ids.clear();
        }
    }

    /// Takes the readies whose WAL writes completed, in order, and tells Raft
    /// (with the messages that waited for them); registers the loop's waker
    /// on the first one still in flight. A failed write stops the member.
    fn poll_persisting(&mut self) -> Result<()> {
        let mut durable = None;
        while let Some((number, ticket)) = self.persisting.front_mut() {
            let number = *number;
            if let Some(t) = ticket {
                if !t.is_complete() && self.registered == Some(number) {
                    break;
                }
                let mut cx = Context::from_waker(&self.wal_waker);
                match Pin::new(t).poll(&mut cx) {
                    Poll::Pending => {
                        self.registered = Some(number);
                        break;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::error!(error = %e, "the WAL failed; stopping the member");
                        return Err(Error::Internal(format!("write-ahead log: {e}")));
                    }
                    Poll::Ready(Ok(())) => {}
                }
            }
            durable = Some(number);
            self.persisting.pop_front();
        }
        if let Some(number) = durable {
            self.on_persisted(number);
        }
        Ok(())
    }

    /// Everything up to ready `number` is durable: tell Raft, and send the
    /// messages that waited for it.
    fn on_persisted(&mut self, number: u64) {
        self.node.on_persist_ready(number);
        while self.held_messages.front().is_some_and(|(n, _)| *n <= number) {
            let (_, msgs) = self.held_messages.pop_front().expect("checked above");
            self.transport.send(msgs);
        }
    }

    fn ask_read_index(&mut self) {
        if self.reads.pending.is_empty() {
            return;
        }
        let ctx = self.reads.next_ctx;
        self.reads.next_ctx += 1;
        let senders = std::mem::take(&mut self.reads.pending);
        // The leader keeps one pending read per context, so contexts must be
        // unique across the cluster: this member's ID, then the counter.
        let mut rctx = Vec::with_capacity(16);
        rctx.extend_from_slice(&self.cfg.member_id.to_be_bytes());
        rctx.extend_from_slice(&ctx.to_be_bytes());
        self.node.read_index(rctx);
        self.reads.asked.insert(ctx, (Instant::now(), senders));
    }

    /// Reads whose read index never came back (lost with a leader) fail
    /// rather than hang until the client's deadline.
    fn expire_reads(&mut self, now: Instant) {
        let limit = self.cfg.election_timeout() * 2;
        self.reads.asked.retain(|_, (at, senders)| {
            if now.duration_since(*at) < limit {
                return true;
            }
            for s in senders.drain(..) {
                let _ = s.send(Err(Error::Timeout));
            }
            false
        });
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();

        if let Some(ss) = ready.ss() {
            let before = self.status.set_leader(ss.leader_id);
            if before != ss.leader_id {
                if ss.leader_id != 0 {
                    crate::metrics::METRICS.leader_changes.inc();
                }
                tracing::info!(
                    leader = format!("{:x}", ss.leader_id),
                    role = ?ss.raft_state,
                    term = self.node.raft.term,
                    "raft leadership changed"
                );
                if ss.raft_state == StateRole::Leader {
                    self.machine.stores.lessor.promote(self.cfg.election_timeout());
                } else if self.machine.stores.lessor.is_primary() {
                    self.machine.stores.lessor.demote();
                }
                // Read indexes asked of the old leader will never come back.
                self.reads.fail_asked(|| Error::LeaderChanged);
            }
            if ss.raft_state != StateRole::Leader && ss.leader_id == 0 {
                self.reads.fail_asked(|| Error::NoLeader);
            }
        }
        self.status.set_term(self.node.raft.term);

        let has_snapshot = !ready.snapshot().is_empty();
        // A ready that only commits (the leader hearing acknowledgements) applies
        // first: its messages tell the followers the new commit index, which no
        // client waits for, while the entries' proposers wait for the apply.
        // Sending wakes each follower's thread, which costs the sender tens of
        // microseconds on a small VM. A ready with new entries sends first: the
        // followers' appends are on the write's path.
        let apply_first = ready.entries().is_empty() && !has_snapshot;
        if !apply_first && !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if has_snapshot {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        let committed = ready.take_committed_entries();
        let applying = (Instant::now(), committed.len());
        self.apply_entries(committed)?;
        self.last_apply = (applying.0.elapsed(), applying.1);
        if apply_first && !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }

        // New entries and the hard state go to the WAL without waiting: the
        // loop keeps taking acknowledgements and proposals while the fsync
        // runs, and hears of its completion through `wal_waker`.
        let entries = ready.take_entries();
        let hs = ready.hs().cloned();
        let ticket = self.persist(&entries, hs)?;

        for rs in ready.take_read_states() {
            let Some(ctx) =
                rs.request_ctx.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
            else {
                continue;
            };
            if let Some((_, senders)) = self.reads.asked.remove(&ctx) {
                self.reads.confirmed.push((rs.index, senders));
            }
        }
        let number = ready.number();
        let after_persist = ready.take_persisted_messages();
        if !after_persist.is_empty() {
            // Votes and append acknowledgements may only leave once durable.
            self.held_messages.push_back((number, after_persist));
        }
        self.node.advance_append_async(ready);
        if has_snapshot {
            // Raft may only count a snapshot as applied once it is durable:
            // wait here (rare). The WAL completes in order, so every ready
            // queued before it is durable too.
            if let Some(t) = ticket {
                t.wait()?;
            }
            self.persisting.clear();
            self.registered = None;
            self.on_persisted(number);
        } else {
            self.persisting.push_back((number, ticket));
            // A ready with nothing to write (or a write already done) is
            // durable now: no wake-up will come for it.
            self.poll_persisting()?;
        }
        self.node.advance_apply();
        self.status.set_commit_index(self.node.raft.raft_log.committed);

        let applied = self.status.applied_index();
        self.reads.release(applied);
        self.maybe_compact_log(applied);
        self.trim_memory_log(applied);
        Ok(())
    }

    /// Whether to write and fdatasync `entries` new entries on this thread rather than
    /// hand them to the WAL's writer thread: for a small append with nothing waiting in
    /// the inbox, committing in place saves the two hand-offs (to the writer and back) on
    /// the write's path. Larger appends mean load, where the loop had better keep taking
    /// proposals and acknowledgements while the writer syncs. Measured with 3 members on
    /// one disk: every append in place lost throughput at 256 clients (the Raft thread
    /// stalls on each fsync); up to [`COMMIT_IN_PLACE_MAX`] entries gained at 1 and at
    /// 256 clients.
    fn commit_in_place(&self, entries: usize) -> bool {
        entries <= COMMIT_IN_PLACE_MAX && self.rx.is_empty()
    }

    /// Starts making new entries and the hard state durable, in one group
    /// commit; the returned ticket completes when they are.
    fn persist(&mut self, entries: &[Entry], hs: Option<HardState>) -> Result<Option<Ticket>> {
        if entries.is_empty() && hs.is_none() {
            return Ok(None);
        }
        if entries.is_empty()
            && let Some(h) = &hs
        {
            let durable = self.wal.hard_state();
            if h.term == durable.term && h.vote == durable.vote {
                // Only the commit index moved. Like etcd (raft's MustSync), it
                // is not synced on its own: a restarted member learns it again
                // from the leader, and never starts below its engine's applied
                // index. This saves one fdatasync per write on every member.
                self.storage.set_hard_state(h.clone());
                return Ok(None);
            }
        }
        let wal_hs = hs.as_ref().map(|h| logbook_wal::HardState {
            term: h.term,
            vote: h.vote,
            commit: h.commit,
        });
        let ticket = if entries.is_empty() {
            self.wal.set_hard_state(wal_hs.expect("checked above"))?
        } else {
            let first = entries[0].index;
            if first <= self.wal.last_index() {
                // A new leader overwrote our tail; its durability rides on the
                // append's ticket below.
                let _superseded = self.wal.truncate_suffix(first)?;
            }
            assert_eq!(
                self.wal.last_index() + 1,
                first,
                "raft handed the WAL a gap: last {} then {}",
                self.wal.last_index(),
                first
            );
            let encoded: Vec<Vec<u8>> = entries
                .iter()
                .map(|e| e.write_to_bytes().expect("raft entries always encode"))
                .collect();
            let records: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let ticket = if self.commit_in_place(entries.len()) {
                self.wal.append_with_state_now(&records, wal_hs)?
            } else {
                self.wal.append_with_state(&records, wal_hs)?
            };
            self.storage.append(entries)?;
            ticket
        };
        if let Some(hs) = hs {
            self.storage.set_hard_state(hs);
        }
        Ok(Some(ticket))
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let engine = self.machine.stores.engine.get();
        for entry in entries {
            if entry.index <= engine.applied_index() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    let answer =
                        self.machine.apply_normal(&engine, entry.index, entry.term, &entry.data)?;
                    if let Some((id, result)) = answer {
                        if let Ok((Applied::MemberUpdated(m), _)) = &result
                            && let Err(e) = self.transport.add_peer(m.id, m.peer_urls.clone())
                        {
                            tracing::error!(member = format!("{:x}", m.id), error = %e, "starting the peer link failed");
                        }
                        self.proposals.finish(id, result);
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data).unwrap_or_else(|e| {
                        panic!("entry {} holds an undecodable ConfChange: {e}", entry.index)
                    });
                    self.apply_member_change(&engine, &entry, &cc);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data).unwrap_or_else(|e| {
                        panic!("entry {} holds an undecodable ConfChangeV2: {e}", entry.index)
                    });
                    let cs = self.node.apply_conf_change(&cc)?;
                    self.machine.apply_conf_state(
                        &engine,
                        entry.index,
                        entry.term,
                        cs.clone(),
                        None,
                    );
                    self.storage.mem().wl().set_conf_state(cs);
                }
            }
            self.status.set_applied_index(entry.index);
        }
        self.hub.nudge();
        Ok(())
    }

    /// Applies a membership change: Raft's configuration and the stored
    /// member records move together, in one engine transaction; then the
    /// peer links follow.
    fn apply_member_change(&mut self, engine: &Engine, entry: &Entry, cc: &ConfChange) {
        let ctx = ConfChangeContext::decode(cc.context.as_ref()).unwrap_or_else(|e| {
            panic!("entry {} holds a ConfChange with an undecodable context: {e}", entry.index)
        });
        let cs = match self.node.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::warn!(error = %e, index = entry.index, "membership change refused by raft");
                // Still consume the entry, so the applied index moves on.
                self.machine.skip(engine, entry.index);
                self.proposals.finish(ctx.request_id, Err(Error::Raft(e)));
                return;
            }
        };
        let member = ctx.member.clone().unwrap_or_default();
        let change = cc.get_change_type();
        let record = MemberChange { change, node_id: cc.node_id, member: &member };
        self.machine.apply_conf_state(engine, entry.index, entry.term, cs.clone(), Some(record));
        self.storage.mem().wl().set_conf_state(cs);
        match change {
            ConfChangeType::RemoveNode => {
                self.transport.remove_peer(cc.node_id);
                tracing::warn!(
                    member = format!("{:x}", cc.node_id),
                    "member removed from the cluster"
                );
                if cc.node_id == self.cfg.member_id {
                    tracing::warn!("this member was removed from the cluster; stopping");
                    self.removed = true;
                }
            }
            _ => {
                tracing::info!(
                    member = format!("{:x}", cc.node_id),
                    learner = change == ConfChangeType::AddLearnerNode,
                    "member added to the cluster"
                );
                if let Err(e) = self.transport.add_peer(cc.node_id, member.peer_urls.clone()) {
                    tracing::error!(member = format!("{:x}", cc.node_id), error = %e, "starting the peer link failed");
                }
            }
        }
        self.proposals
            .finish(ctx.request_id, Ok((Applied::Members(member), engine.current_revision())));
    }

    /// Replaces this member's state with a snapshot from the leader.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let meta = snap.get_metadata().clone();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            bytes = snap.data.len(),
            "installing snapshot from leader"
        );
        // Drop any log tail the snapshot supersedes before the engine moves
        // past it, so a crash in between leaves an older, consistent state.
        if self.wal.last_index() > meta.index {
            let _superseded = self.wal.truncate_suffix(meta.index + 1)?;
        }
        self.machine.install_snapshot(
            snap.data.as_ref(),
            meta.index,
            meta.term,
            meta.get_conf_state().clone(),
        )?;
        self.wal.compact_prefix(meta.index + 1)?;
        self.storage.apply_snapshot(snap)?;
        let hs = self.storage.mem().rl().hard_state().clone();
        self.wal
            .set_hard_state(logbook_wal::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            })?
            .wait()?;
        self.status.set_applied_index(meta.index);
        self.last_compaction = meta.index;
        self.last_trim = meta.index;
        self.hub.nudge();
        Ok(())
    }

    /// Entries kept behind the applied index for followers that fall behind:
    /// `--snapshot-catchup-entries` (0: etcd's 5000), but never more than one
    /// `--snapshot-count`, so a small snapshot count still bounds the log.
    fn catch_up_entries(&self) -> u64 {
        let catch_up = match self.cfg.snapshot_catchup_entries {
            0 => CATCH_UP_ENTRIES,
            n => n,
        };
        catch_up.min(self.cfg.snapshot_count)
    }

    /// Every [`TRIM_EVERY`] applied entries, forget the in-memory log behind the
    /// catch-up tail. The WAL keeps the entries until `maybe_compact_log` (a
    /// restart replays them from there): memory holds only what followers may
    /// still be sent. Between two `--snapshot-count` compactions the whole
    /// log stayed in memory otherwise (100,000 entries of a few hundred
    /// bytes: tens of MiB, more than the rest of an idle member). A follower
    /// the leader is still replicating to from further back keeps its entries,
    /// up to one `--snapshot-count` more (beyond that it gets a snapshot, as
    /// it would after a compaction).
    fn trim_memory_log(&mut self, applied: u64) {
        if applied < self.last_trim + TRIM_EVERY {
            return;
        }
        self.last_trim = applied;
        let keep = self.catch_up_entries();
        let mut upto = applied.saturating_sub(keep);
        let raft = &self.node.raft;
        if raft.state == StateRole::Leader {
            let slowest = raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != raft.id)
                .map(|(_, p)| p.matched + 1)
                .min();
            if let Some(next) = slowest {
                let floor = applied.saturating_sub(keep + self.cfg.snapshot_count);
                upto = upto.min(next.max(floor));
            }
        }
        let first = raft::Storage::first_index(self.storage.mem()).unwrap_or(0);
        if upto <= first {
            return;
        }
        if let Err(e) = self.storage.compact(upto) {
            tracing::warn!(error = %e, upto, "raft log trim failed");
        }
    }

    /// Every `--snapshot-count` applied entries, forget the log the engine
    /// has made durable (keeping a catch-up tail).
    fn maybe_compact_log(&mut self, applied: u64) {
        let every = self.cfg.snapshot_count;
        if applied < self.last_compaction + every {
            return;
        }
        let durable = self.machine.stores.engine.get().durable_applied_index();
        let keep = self.catch_up_entries();
        let upto = durable.saturating_sub(keep);
        let first = self.wal.first_index();
        if upto <= first {
            return;
        }
        if let Err(e) = self.storage.compact(upto) {
            tracing::warn!(error = %e, upto, "raft log compaction failed");
            return;
        }
        // --max-wals: segment files past what the log needs stay, up to that
        // many files in all (0: every file stays), as etcd's WAL purge keeps them.
        let keep = match self.cfg.max_wals {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        if let Err(e) = self.wal.compact_prefix_keeping(upto, keep) {
            tracing::warn!(error = %e, upto, "WAL compaction failed");
            return;
        }
        tracing::info!(applied, compacted_below = upto, "compacted raft log");
        self.last_compaction = applied;
    }
}
