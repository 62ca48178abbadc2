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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam::channel::TryRecvError;
use logbook_api::logbookpb::peer_client::PeerClient;
use logbook_api::logbookpb::{ConfChangeContext, StoredMember};
use logbook_api::logbookpb::{InternalRequest, RaftApplyState, internal_request};
use logbook_api::logbookpb::{LeaseQueryRequest, LeaseQueryResponse};
use logbook_engine::Engine;
use logbook_wal::{Ticket, Wal};
use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::alarms::Alarms;
use crate::apply::{Applied, ApplyContext, apply_request};
use crate::auth::{AuthInfo, AuthStore, Requester};
use crate::config::Config;
use crate::engine_cell::EngineCell;
use crate::error::{Error, Result};
use crate::inbox::{Inbox, InboxReceiver};
use crate::lane::Incoming;
use crate::lessor::Lessor;
use crate::membership::{MEMBERS_BUCKET, REMOVED_BUCKET, REMOVED_VALUE, member_key};
use crate::raft_storage::{ApplyState, RaftStorage};
use crate::server::{CLUSTER_BUCKET, MEMBER_ID_KEY};
use crate::transport::Transport;
use crate::txn::Revisions;
use crate::watch_hub::WatchHub;

/// The engine bucket and key holding the Raft position of the engine's data.
pub const RAFT_BUCKET: &str = "raft";
pub const APPLY_STATE_KEY: &[u8] = b"apply_state";
/// The last compaction revision applied, in [`RAFT_BUCKET`] (etcd keeps the
/// same fact as `scheduledCompactRev`).
pub const SCHEDULED_COMPACTION_KEY: &[u8] = b"scheduledCompactRev";

/// Schedules again a compaction whose entry was applied but which the
/// engine had not yet recorded when the member stopped: the entry will not
/// be applied again, so without this the member would keep history its
/// peers dropped (and their HashKV would differ).
pub fn resume_compaction(engine: &Engine) -> Result<()> {
    let Some(bytes) = engine.meta_get(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY) else {
        return Ok(());
    };
    let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice()) else {
        return Err(Error::Internal("stored scheduled compaction is not 8 bytes".into()));
    };
    let rev = i64::from_be_bytes(raw);
    if rev > engine.compact_revision() && rev <= engine.current_revision() {
        tracing::info!(revision = rev, "resuming a compaction applied before the last stop");
        engine.compact(rev)?;
    }
    Ok(())
}

/// How many entries to keep behind the engine's durable index when the log
/// is compacted, so a briefly slow follower catches up from the log rather
/// than a snapshot (etcd keeps 5000).
const CATCH_UP_ENTRIES: u64 = 5000;

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

/// What the Raft thread is asked to do.
pub enum NodeMsg {
    /// Propose an encoded `InternalRequest`; `id` finds its waiter.
    Propose { id: u64, data: Vec<u8> },
    /// Confirm leadership for a linearizable read; answers once the read may
    /// be served (this member has applied everything committed before it).
    ReadIndex(oneshot::Sender<Result<()>>),
    /// A message from a peer.
    Step(Message),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot sent to a peer arrived (true) or failed (false).
    SnapshotStatus(u64, bool),
    /// Propose a membership change; `id` finds its waiter.
    ProposeConfChange { id: u64, cc: ConfChange },
    /// Hand leadership to this member.
    TransferLeader(u64),
    /// The WAL finished a write the loop waits on: look at its tickets.
    WalProgress,
    /// A peer's Raft lane, its hello answered: the loop reads it from now on.
    Lane(Box<Incoming>),
    /// Shut down.
    Stop,
}

type Waiter = oneshot::Sender<Result<(Applied, i64)>>;

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

/// State shared by the Raft thread and the services.
pub struct Shared {
    pub cfg: Config,
    pub engine: Arc<EngineCell>,
    pub engine_options: logbook_engine::Options,
    pub inbox: Inbox,
    waiters: Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    /// Member ID of the leader, 0 when unknown.
    pub leader: AtomicU64,
    pub term: Arc<AtomicU64>,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
    pub stopped: AtomicBool,
    pub(crate) apply_state: Arc<Mutex<ApplyState>>,
    /// Leases: applied by the Raft thread, deadlines kept while leading.
    pub lessor: Lessor,
    /// Raised alarms (NOSPACE, CORRUPT).
    pub alarms: Alarms,
    /// Users, roles and tokens.
    pub auth: AuthStore,
    /// A connection to the leader's peer port, for questions only the
    /// leader can answer (lease keep-alives and TTLs).
    leader_client: tokio::sync::Mutex<Option<(u64, PeerClient<Channel>)>>,
    /// The backend's size as the quota check last read it, and when.
    backend_size: BackendSizeProbe,
}

/// The backend file's size for the quota check, read from the file system
/// at most once per [`BackendSizeProbe::MAX_AGE`] instead of once per write
/// (a `statx` per request showed in leader profiles). The file only grows by
/// whole commits, so a reading a few milliseconds old lets through at most
/// the writes of those milliseconds, as etcd's own size check does.
struct BackendSizeProbe {
    origin: Instant,
    size: AtomicU64,
    /// Microseconds after `origin` when `size` goes stale (0: never read).
    stale_at: AtomicU64,
}

impl BackendSizeProbe {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_millis(50);

    fn new() -> Self {
        BackendSizeProbe {
            origin: Instant::now(),
            size: AtomicU64::new(0),
            stale_at: AtomicU64::new(0),
        }
    }

    fn get(&self, read: impl FnOnce() -> u64) -> u64 {
        let now = self.origin.elapsed().as_micros() as u64;
        let stale_at = self.stale_at.load(Ordering::Acquire);
        if stale_at != 0 && now < stale_at {
            return self.size.load(Ordering::Acquire);
        }
        let size = read();
        self.size.store(size, Ordering::Release);
        self.stale_at.store(now + Self::MAX_AGE.as_micros() as u64, Ordering::Release);
        size
    }
}

impl Shared {
    pub fn new(
        cfg: Config,
        engine: Arc<EngineCell>,
        engine_options: logbook_engine::Options,
        inbox: Inbox,
        apply_state: Arc<Mutex<ApplyState>>,
    ) -> Self {
        // Request IDs: the member's low 16 ID bits, then a counter seeded
        // from the clock so a restarted member does not reuse recent IDs.
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let seed = ((cfg.member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8);
        let applied = apply_state.lock().index;
        let lessor = Lessor::new(Lessor::min_ttl_for(cfg.election_timeout()));
        let cfg_auth = (cfg.auth_token_ttl, cfg.bcrypt_cost);
        Shared {
            cfg,
            engine,
            engine_options,
            inbox,
            waiters: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(seed),
            leader: AtomicU64::new(0),
            term: Arc::new(AtomicU64::new(0)),
            commit_index: AtomicU64::new(applied),
            applied_index: AtomicU64::new(applied),
            stopped: AtomicBool::new(false),
            apply_state,
            lessor,
            alarms: Alarms::default(),
            auth: AuthStore::new(cfg_auth.0, cfg_auth.1),
            leader_client: tokio::sync::Mutex::new(None),
            backend_size: BackendSizeProbe::new(),
        }
    }

    /// Proposes `request` through Raft and waits until it is applied here.
    /// Returns what applying it produced and the store's revision after it.
    pub async fn propose(&self, request: internal_request::Request) -> Result<(Applied, i64)> {
        self.propose_as(request, None).await
    }

    /// [`Shared::propose`] on behalf of a client: the entry records who
    /// asked, for the permission checks every member makes as it applies.
    pub async fn propose_as(
        &self,
        request: internal_request::Request,
        who: Option<&AuthInfo>,
    ) -> Result<(Applied, i64)> {
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

    /// [`Shared::propose`] of the member's own housekeeping (lease expiry):
    /// exempt from permission checks.
    pub async fn propose_system(
        &self,
        request: internal_request::Request,
    ) -> Result<(Applied, i64)> {
        self.propose_entry(InternalRequest {
            id: 0,
            request: Some(request),
            system: true,
            ..Default::default()
        })
        .await
    }

    async fn propose_entry(&self, mut entry: InternalRequest) -> Result<(Applied, i64)> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entry.id = id;
        let data = entry.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        self.submit_and_wait(id, NodeMsg::Propose { id, data }).await
    }

    /// Registers a waiter for request `id`, hands `msg` to the Raft thread
    /// and waits (bounded) until the request is applied here.
    async fn submit_and_wait(&self, id: u64, msg: NodeMsg) -> Result<(Applied, i64)> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        if self.inbox.send(msg).is_err() {
            self.waiters.lock().remove(&id);
            return Err(Error::Stopped);
        }
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.waiters.lock().remove(&id);
                crate::metrics::METRICS.proposals_failed.inc();
                Err(Error::Timeout)
            }
        }
    }

    /// Proposes a membership change and waits until it is applied here.
    pub async fn propose_conf_change(
        &self,
        change: ConfChangeType,
        node_id: u64,
        member: StoredMember,
    ) -> Result<(Applied, i64)> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = node_id;
        cc.context =
            ConfChangeContext { request_id: id, member: Some(member) }.encode_to_vec().into();
        self.submit_and_wait(id, NodeMsg::ProposeConfChange { id, cc }).await
    }

    /// Waits until a linearizable read may be served on this member.
    pub async fn read_index(&self) -> Result<()> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        let (tx, rx) = oneshot::channel();
        self.inbox.send(NodeMsg::ReadIndex(tx)).map_err(|_| Error::Stopped)?;
        match tokio::time::timeout(self.cfg.request_timeout(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Proposals waiting to be applied (for metrics).
    pub fn pending_proposals(&self) -> usize {
        self.waiters.lock().len()
    }

    /// etcd's quota check before proposing a write that grows the store:
    /// refuse while NOSPACE is raised, and raise it when the backend has
    /// outgrown `--quota-backend-bytes`.
    pub fn check_quota(self: &Arc<Self>) -> Result<()> {
        if self.alarms.no_space() {
            return Err(Error::NoSpace);
        }
        let size = self.backend_size.get(|| self.engine.get().size()) as i64;
        if size < self.cfg.quota_backend_bytes {
            return Ok(());
        }
        tracing::warn!(
            size,
            quota = self.cfg.quota_backend_bytes,
            "backend quota exceeded; raising NOSPACE"
        );
        let shared = self.clone();
        tokio::spawn(async move {
            let req = logbook_api::etcdserverpb::AlarmRequest {
                action: logbook_api::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: shared.cfg.member_id,
                alarm: logbook_api::etcdserverpb::AlarmType::Nospace as i32,
            };
            if let Err(e) = shared.propose(internal_request::Request::Alarm(req)).await {
                tracing::warn!(error = %e, "raising NOSPACE failed");
            }
        });
        Err(Error::NoSpace)
    }

    /// The backend file changed size outside a commit (a defragment): the
    /// next quota check reads it again.
    pub fn backend_size_changed(&self) {
        self.backend_size.stale_at.store(0, Ordering::Release);
    }

    /// A fresh ID for a lease the client left for the server to choose.
    pub fn new_lease_id(&self) -> i64 {
        loop {
            let id = (self.next_id.fetch_add(1, Ordering::Relaxed) & i64::MAX as u64) as i64;
            if id != 0 && !self.lessor.exists(id) {
                return id;
            }
        }
    }

    /// Asks the leader's peer service about a lease (keep-alive or TTL).
    pub async fn ask_leader(&self, req: LeaseQueryRequest) -> Result<LeaseQueryResponse> {
        let leader = self.leader().ok_or(Error::NoLeader)?;
        let mut slot = self.leader_client.lock().await;
        if slot.as_ref().map(|(id, _)| *id) != Some(leader) {
            let members = crate::membership::load_members(&self.engine.get());
            let urls = members
                .into_iter()
                .find(|m| m.id == leader)
                .map(|m| m.peer_urls)
                .unwrap_or_default();
            let mut client = None;
            for url in urls {
                if let Ok(ch) = self.cfg.peer_dialer.connect(&url).await {
                    client = Some(PeerClient::new(ch));
                    break;
                }
            }
            *slot = Some((leader, client.ok_or(Error::NoLeader)?));
        }
        let (_, client) = slot.as_mut().expect("filled above");
        let mut client = client.clone();
        drop(slot);
        match tokio::time::timeout(self.cfg.request_timeout(), client.lease_query(req)).await {
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                if !resp.leader {
                    return Err(Error::LeaderChanged);
                }
                Ok(resp)
            }
            Ok(Err(_)) => {
                *self.leader_client.lock().await = None;
                Err(Error::LeaderChanged)
            }
            Err(_) => Err(Error::Timeout),
        }
    }

    /// The current leader's ID, if there is one.
    pub fn leader(&self) -> Option<u64> {
        match self.leader.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    fn finish(&self, id: u64, result: Result<(Applied, i64)>) {
        if let Some(waiter) = self.waiters.lock().remove(&id) {
            let _ = waiter.send(result);
        }
    }

    fn fail_all(&self, err: impl Fn() -> Error) {
        for (_, w) in self.waiters.lock().drain() {
            let _ = w.send(Err(err()));
        }
    }
}

/// Clients waiting to serve a linearizable read.
type ReadWaiters = Vec<oneshot::Sender<Result<()>>>;

/// Linearizable reads waiting on Raft.
#[derive(Default)]
struct ReadQueue {
    /// Not yet handed to Raft.
    pending: ReadWaiters,
    /// Handed to Raft under a context, waiting for its read index.
    asked: HashMap<u64, (Instant, ReadWaiters)>,
    /// Read index known, waiting for this member to apply up to it.
    confirmed: Vec<(u64, ReadWaiters)>,
    next_ctx: u64,
}

impl ReadQueue {
    fn fail_asked(&mut self, err: impl Fn() -> Error) {
        for (_, (_, senders)) in self.asked.drain() {
            for s in senders {
                let _ = s.send(Err(err()));
            }
        }
    }

    fn release(&mut self, applied: u64) {
        self.confirmed.retain_mut(|(index, senders)| {
            if *index <= applied {
                for s in senders.drain(..) {
                    let _ = s.send(Ok(()));
                }
                false
            } else {
                true
            }
        });
    }
}

/// The Raft thread's state.
pub struct RaftLoop {
    node: RawNode<RaftStorage>,
    storage: RaftStorage,
    wal: Arc<Wal>,
    shared: Arc<Shared>,
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
        shared: Arc<Shared>,
        rx: InboxReceiver,
        transport: Transport,
        hub: Arc<WatchHub>,
    ) -> Self {
        let last_compaction = shared.apply_state.lock().index;
        let wal_waker = Waker::from(Arc::new(InboxWaker(shared.inbox.clone())));
        RaftLoop {
            node,
            storage,
            wal,
            shared,
            rx,
            transport,
            lanes: Vec::new(),
            pollfds: Vec::new(),
            lane_msgs: Vec::new(),
            hub,
            reads: ReadQueue::default(),
            last_compaction,
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

    /// Runs until told to stop or until a fatal storage error.
    pub fn run(mut self) {
        let tick = self.shared.cfg.heartbeat;
        let mut next_tick = Instant::now() + tick;
        // A single voter need not wait out an election timeout.
        if self.node.raft.prs().conf().voters().ids().len() == 1
            && self.node.raft.prs().conf().voters().contains(self.shared.cfg.member_id)
        {
            let _ = self.node.campaign();
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
            if now >= next_tick {
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
        self.shared.stopped.store(true, Ordering::Release);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "raft loop stopped on a storage error; the member stops serving");
        }
        self.shared.fail_all(|| Error::Stopped);
        self.reads.fail_asked(|| Error::Stopped);
        for (_, senders) in self.reads.confirmed.drain(..) {
            for s in senders {
                let _ = s.send(Err(Error::Stopped));
            }
        }
        for s in self.reads.pending.drain(..) {
            let _ = s.send(Err(Error::Stopped));
        }
        if let Err(e) = self.shared.engine.get().commit() {
            tracing::error!(error = %e, "final engine commit failed");
        }
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
        if crate::membership::is_removed(&self.shared.engine.get(), from) {
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
                if self.shared.leader().is_none() {
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
                if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
                    tracing::debug!(error = %e, "membership change proposal dropped");
                    let err = if self.shared.leader().is_none() {
                        Error::NoLeader
                    } else {
                        Error::LeaderChanged
                    };
                    self.shared.finish(id, Err(err));
                }
            }
            NodeMsg::TransferLeader(id) => self.node.transfer_leader(id),
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
                if self.shared.leader().is_none() { Error::NoLeader } else { Error::LeaderChanged }
            };
            for id in std::mem::take(&mut self.proposal_ids) {
                crate::metrics::METRICS.proposals_failed.inc();
                self.shared.finish(id, Err(err()));
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
        rctx.extend_from_slice(&self.shared.cfg.member_id.to_be_bytes());
        rctx.extend_from_slice(&ctx.to_be_bytes());
        self.node.read_index(rctx);
        self.reads.asked.insert(ctx, (Instant::now(), senders));
    }

    /// Reads whose read index never came back (lost with a leader) fail
    /// rather than hang until the client's deadline.
    fn expire_reads(&mut self, now: Instant) {
        let limit = self.shared.cfg.election_timeout() * 2;
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
            let before = self.shared.leader.swap(ss.leader_id, Ordering::AcqRel);
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
                    self.shared.lessor.promote(self.shared.cfg.election_timeout());
                } else if self.shared.lessor.is_primary() {
                    self.shared.lessor.demote();
                }
                // Read indexes asked of the old leader will never come back.
                self.reads.fail_asked(|| Error::LeaderChanged);
            }
            if ss.raft_state != StateRole::Leader && ss.leader_id == 0 {
                self.reads.fail_asked(|| Error::NoLeader);
            }
        }
        self.shared.term.store(self.node.raft.term, Ordering::Release);

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
        self.shared.commit_index.store(self.node.raft.raft_log.committed, Ordering::Release);

        let applied = self.shared.applied_index.load(Ordering::Acquire);
        self.reads.release(applied);
        self.maybe_compact_log(applied);
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
        let engine = self.shared.engine.get();
        for entry in entries {
            if entry.index <= engine.applied_index() {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&engine, &entry)?,
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
                    self.apply_conf_state(&engine, &entry, cs, |_| {});
                }
            }
            self.shared.applied_index.store(entry.index, Ordering::Release);
        }
        self.hub.nudge();
        Ok(())
    }

    fn apply_normal(&mut self, engine: &Engine, entry: &Entry) -> Result<()> {
        let revs =
            Revisions { current: engine.current_revision(), compacted: engine.compact_revision() };
        let request = if entry.data.is_empty() {
            None
        } else {
            Some(InternalRequest::decode(entry.data.as_ref()).unwrap_or_else(|e| {
                panic!("entry {} holds an undecodable request: {e}", entry.index)
            }))
        };
        let mut state = self.shared.apply_state.lock();
        let mut txn = engine.write(entry.index);
        let result = request.as_ref().and_then(|r| r.request.as_ref().map(|req| (r, req))).map(
            |(r, req)| {
                let who = if r.system {
                    Requester::System
                } else {
                    Requester::Client { user: &r.username, revision: r.auth_revision }
                };
                let ctx = ApplyContext {
                    lessor: &self.shared.lessor,
                    alarms: &self.shared.alarms,
                    auth: &self.shared.auth,
                    who,
                    index: entry.index,
                };
                apply_request(engine, &mut txn, &ctx, req, revs)
            },
        );
        if state.term != entry.term {
            state.term = entry.term;
            let record = RaftApplyState {
                term: entry.term,
                conf_state: state.conf_state.write_to_bytes().expect("conf states encode").into(),
            };
            txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &record.encode_to_vec());
        }
        if let Some(Ok(Applied::Compaction(_, rev))) = &result {
            // Recorded with the entry's applied index, so a crash before the
            // engine has scheduled it cannot lose it (see `resume_compaction`).
            txn.meta_put(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY, &rev.to_be_bytes());
        }
        let revision = txn.commit();
        state.index = entry.index;
        drop(state);

        if let Some(Ok(Applied::MemberUpdated(m))) = &result
            && let Err(e) = self.transport.add_peer(m.id, m.peer_urls.clone())
        {
            tracing::error!(member = format!("{:x}", m.id), error = %e, "starting the peer link failed");
        }
        if let Some(Ok(Applied::Compaction(_, rev))) = &result {
            engine.compact(*rev)?;
        }
        if let (Some(req), Some(result)) = (request, result) {
            self.shared.finish(req.id, result.map(|applied| (applied, revision)));
        }
        Ok(())
    }

    /// Applies a membership change: Raft's configuration and the stored
    /// member records move together, in one engine transaction.
    fn apply_member_change(&mut self, engine: &Engine, entry: &Entry, cc: &ConfChange) {
        let ctx = ConfChangeContext::decode(cc.context.as_ref()).unwrap_or_else(|e| {
            panic!("entry {} holds a ConfChange with an undecodable context: {e}", entry.index)
        });
        let cs = match self.node.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => {
                tracing::warn!(error = %e, index = entry.index, "membership change refused by raft");
                // Still consume the entry, so the applied index moves on.
                engine.write(entry.index).commit();
                self.shared.finish(ctx.request_id, Err(Error::Raft(e)));
                return;
            }
        };
        let member = ctx.member.clone().unwrap_or_default();
        let change = cc.get_change_type();
        self.apply_conf_state(engine, entry, cs, |txn| match change {
            ConfChangeType::RemoveNode => {
                txn.meta_delete(MEMBERS_BUCKET, &member_key(cc.node_id));
                txn.meta_put(REMOVED_BUCKET, &member_key(cc.node_id), REMOVED_VALUE);
            }
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                // Keep what the member published about itself (a promotion).
                let mut m = engine
                    .meta_get(MEMBERS_BUCKET, &member_key(cc.node_id))
                    .and_then(|b| StoredMember::decode(b.as_slice()).ok())
                    .unwrap_or_else(|| member.clone());
                m.is_learner = change == ConfChangeType::AddLearnerNode;
                txn.meta_put(MEMBERS_BUCKET, &member_key(cc.node_id), &m.encode_to_vec());
            }
        });
        match change {
            ConfChangeType::RemoveNode => {
                self.transport.remove_peer(cc.node_id);
                tracing::warn!(
                    member = format!("{:x}", cc.node_id),
                    "member removed from the cluster"
                );
                if cc.node_id == self.shared.cfg.member_id {
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
        self.shared
            .finish(ctx.request_id, Ok((Applied::Members(member), engine.current_revision())));
    }

    fn apply_conf_state(
        &mut self,
        engine: &Engine,
        entry: &Entry,
        cs: ConfState,
        also: impl FnOnce(&mut logbook_engine::WriteTxn<'_>),
    ) {
        let mut state = self.shared.apply_state.lock();
        let mut txn = engine.write(entry.index);
        also(&mut txn);
        let record = RaftApplyState {
            term: entry.term,
            conf_state: cs.write_to_bytes().expect("conf states encode").into(),
        };
        txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &record.encode_to_vec());
        txn.commit();
        state.index = entry.index;
        state.term = entry.term;
        state.conf_state = cs.clone();
        drop(state);
        self.storage.mem().wl().set_conf_state(cs);
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
        let db = &self.shared.cfg.db_path;
        let staging = db.with_extension("incoming");
        let mut data: &[u8] = snap.data.as_ref();
        Engine::restore(&staging, &mut data)?;
        // The snapshot is the leader's engine, its own member ID included: put ours back
        // before the file takes the place of the engine, or the next start would take
        // the leader's identity (and the cluster would have two members with one ID
        // and none with ours: this member could never rejoin).
        {
            let incoming = Engine::open(&staging, self.shared.engine_options.clone())?;
            let mut txn = incoming.write(meta.index);
            txn.meta_put(CLUSTER_BUCKET, MEMBER_ID_KEY, &self.shared.cfg.member_id.to_be_bytes());
            txn.commit();
            incoming.commit()?;
        }
        std::fs::rename(&staging, db)
            .map_err(|e| Error::io(format!("renaming {}", staging.display()), e))?;
        if let Some(dir) = db.parent() {
            sync_dir(dir)?;
        }
        let engine = Engine::open(db, self.shared.engine_options.clone())?;
        if engine.applied_index() != meta.index {
            return Err(Error::Internal(format!(
                "snapshot for index {} holds an engine at index {}",
                meta.index,
                engine.applied_index()
            )));
        }
        self.shared.lessor.rebuild(&engine)?;
        self.shared.alarms.rebuild(&engine);
        self.shared.auth.rebuild(&engine)?;
        resume_compaction(&engine)?;
        self.shared.engine.replace(engine);
        self.wal.compact_prefix(meta.index + 1)?;
        {
            let mut state = self.shared.apply_state.lock();
            state.index = meta.index;
            state.term = meta.term;
            state.conf_state = meta.get_conf_state().clone();
        }
        self.storage.apply_snapshot(snap)?;
        let hs = self.storage.mem().rl().hard_state().clone();
        self.wal
            .set_hard_state(logbook_wal::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit,
            })?
            .wait()?;
        self.shared.applied_index.store(meta.index, Ordering::Release);
        self.last_compaction = meta.index;
        self.hub.nudge();
        Ok(())
    }

    /// Every `--snapshot-count` applied entries, forget the log the engine
    /// has made durable (keeping a catch-up tail).
    fn maybe_compact_log(&mut self, applied: u64) {
        let every = self.shared.cfg.snapshot_count;
        if applied < self.last_compaction + every {
            return;
        }
        let durable = self.shared.engine.get().durable_applied_index();
        let keep = CATCH_UP_ENTRIES.min(every);
        let upto = durable.saturating_sub(keep);
        let first = self.wal.first_index();
        if upto <= first {
            return;
        }
        if let Err(e) = self.storage.compact(upto) {
            tracing::warn!(error = %e, upto, "raft log compaction failed");
            return;
        }
        if let Err(e) = self.wal.compact_prefix(upto) {
            tracing::warn!(error = %e, upto, "WAL compaction failed");
            return;
        }
        tracing::info!(applied, compacted_below = upto, "compacted raft log");
        self.last_compaction = applied;
    }
}

fn sync_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_compaction_the_engine_missed_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = Engine::open(&path, logbook_engine::Options::default()).unwrap();
        for i in 0..5u64 {
            let mut txn = engine.write(i + 1);
            txn.put(b"k", format!("v{i}").as_bytes(), 0).unwrap();
            if i == 4 {
                // The compaction entry's effect on the apply state, as
                // apply_normal records it, without the engine scheduling it
                // (the member stopped in between).
                txn.meta_put(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY, &4i64.to_be_bytes());
            }
            txn.commit();
        }
        engine.commit().unwrap();
        drop(engine);

        let engine = Engine::open(&path, logbook_engine::Options::default()).unwrap();
        assert_eq!(engine.compact_revision(), 0);
        resume_compaction(&engine).unwrap();
        assert_eq!(engine.compact_revision(), 4);
        // Nothing more to do the second time.
        resume_compaction(&engine).unwrap();
        assert_eq!(engine.compact_revision(), 4);
    }
}
