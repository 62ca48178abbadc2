//! The watch hub: every watcher of this member, and the dispatcher that
//! feeds them.
//!
//! Watchers are *synced* (caught up: the dispatcher hands them each new
//! revision's events as it is applied) or *catching up* (replaying history
//! from the engine on their own task, then joining the synced set). A synced
//! watcher whose stream cannot take more is moved back to catching up from
//! its first undelivered revision, so a slow client never holds up writes or
//! other watchers and still misses nothing.
//!
//! The dispatcher is one thread. After each applied write the Raft thread
//! nudges it; it reads every event since the last revision it delivered
//! from the engine (one read for all watchers, in revision order) and fans
//! them out. Delivery order per watcher is revision order, with no gaps and
//! no duplicates: catch-up ends, under the hub lock, only at a revision the
//! dispatcher has not passed yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use logbook_api::etcdserverpb::{ResponseHeader, WatchResponse};
use logbook_api::mvccpb;
use logbook_engine::{Event, EventKind};
use parking_lot::{Condvar, Mutex};
use prost::Message;
use tokio::sync::mpsc;

use crate::engine_cell::EngineCell;
use crate::range::to_wire;

/// Events read per engine call, by the dispatcher and by catch-up.
const BATCH_EVENTS: usize = 2048;
/// The dispatcher looks for new revisions at least this often even when not
/// nudged (a nudge can race with its wait).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// What a watcher wants.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

impl WatchSpec {
    fn matches(&self, e: &Event) -> bool {
        match e.kind {
            EventKind::Put if self.no_put => return false,
            EventKind::Delete if self.no_delete => return false,
            _ => {}
        }
        logbook_engine::kv::in_range(&e.kv.key, &self.key, &self.range_end)
    }
}

/// One watcher, shared between its stream, the hub and its catch-up task.
pub struct Watcher {
    pub watch_id: i64,
    pub stream: u64,
    pub spec: WatchSpec,
    /// The next revision this watcher must be sent.
    pub next_rev: AtomicI64,
    pub cancelled: AtomicBool,
    tx: mpsc::Sender<WatchResponse>,
}

/// Identity of this member, for response headers.
#[derive(Clone, Copy)]
pub struct HeaderSource {
    pub cluster_id: u64,
    pub member_id: u64,
}

struct HubState {
    /// Every event at or below this revision has been handed to the synced
    /// watchers.
    delivered: i64,
    synced: HashMap<(u64, i64), Arc<Watcher>>,
    /// Synced watchers that asked for prev_kv.
    want_prev: usize,
}

/// The member's watchers and their dispatcher.
pub struct WatchHub {
    engine: Arc<EngineCell>,
    ids: HeaderSource,
    term: Arc<AtomicU64>,
    state: Mutex<HubState>,
    nudge: Mutex<bool>,
    nudged: Condvar,
    watchers: AtomicUsize,
    stop: AtomicBool,
    max_response_bytes: usize,
    progress_interval: Duration,
    /// Catch-up tasks run here (the dispatcher is a plain thread).
    runtime: tokio::runtime::Handle,
}

impl WatchHub {
    /// A hub over `engine`; call [`WatchHub::start`] to run its dispatcher.
    /// Must be called inside the server's tokio runtime.
    pub fn new(
        engine: Arc<EngineCell>,
        ids: HeaderSource,
        term: Arc<AtomicU64>,
        max_response_bytes: usize,
        progress_interval: Duration,
    ) -> Arc<WatchHub> {
        let delivered = engine.get().current_revision();
        Arc::new(WatchHub {
            engine,
            ids,
            term,
            state: Mutex::new(HubState { delivered, synced: HashMap::new(), want_prev: 0 }),
            nudge: Mutex::new(false),
            nudged: Condvar::new(),
            watchers: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            max_response_bytes,
            progress_interval,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Starts the dispatcher thread.
    pub fn start(self: &Arc<Self>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let hub = self.clone();
        std::thread::Builder::new().name("watch-dispatch".into()).spawn(move || hub.dispatch_loop())
    }

    /// Stops the dispatcher.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.nudge();
    }

    /// Tells the dispatcher the store moved (called after applied writes).
    /// Costs an atomic load when nobody watches.
    pub fn nudge(&self) {
        if self.watchers.load(Ordering::Acquire) == 0 && !self.stop.load(Ordering::Acquire) {
            return;
        }
        let mut n = self.nudge.lock();
        *n = true;
        self.nudged.notify_one();
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.ids.cluster_id,
            member_id: self.ids.member_id,
            revision,
            raft_term: self.term.load(Ordering::Acquire),
        }
    }

    /// The store's current revision.
    pub fn current_revision(&self) -> i64 {
        self.engine.get().current_revision()
    }

    /// Registers a watcher starting at `start_rev` (0: the next revision).
    /// The caller has already sent its `created` response on `tx`.
    pub fn add(
        self: &Arc<Self>,
        stream: u64,
        watch_id: i64,
        spec: WatchSpec,
        start_rev: i64,
        tx: mpsc::Sender<WatchResponse>,
    ) -> Arc<Watcher> {
        let engine = self.engine.get();
        let current = engine.current_revision();
        let start = if start_rev <= 0 { current + 1 } else { start_rev };
        let w = Arc::new(Watcher {
            watch_id,
            stream,
            spec,
            next_rev: AtomicI64::new(start),
            cancelled: AtomicBool::new(false),
            tx,
        });
        self.watchers.fetch_add(1, Ordering::AcqRel);
        let mut st = self.state.lock();
        if start > st.delivered {
            insert_synced(&mut st, &w);
        } else {
            drop(st);
            self.spawn_catch_up(w.clone());
        }
        w
    }

    /// Removes a watcher (cancel or stream end).
    pub fn remove(&self, w: &Watcher) {
        if w.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.watchers.fetch_sub(1, Ordering::AcqRel);
        let mut st = self.state.lock();
        if let Some(old) = st.synced.remove(&(w.stream, w.watch_id))
            && old.spec.prev_kv
        {
            st.want_prev -= 1;
        }
    }

    /// Whether every watcher of `stream` is synced, and the revision they
    /// have all been brought to (for progress requests).
    pub fn stream_progress(&self, stream: u64, watchers: &[Arc<Watcher>]) -> Option<i64> {
        let st = self.state.lock();
        let all_synced = watchers
            .iter()
            .filter(|w| !w.cancelled.load(Ordering::Acquire))
            .all(|w| st.synced.contains_key(&(stream, w.watch_id)));
        all_synced.then_some(st.delivered)
    }

    fn spawn_catch_up(self: &Arc<Self>, w: Arc<Watcher>) {
        let hub = self.clone();
        self.runtime.spawn(async move { hub.catch_up(w).await });
    }

    /// Replays history to one watcher until it reaches the dispatcher.
    async fn catch_up(self: Arc<Self>, w: Arc<Watcher>) {
        loop {
            if w.cancelled.load(Ordering::Acquire) {
                return;
            }
            let from = w.next_rev.load(Ordering::Acquire);
            let engine = self.engine.get();
            let spec = w.spec.clone();
            let read = tokio::task::spawn_blocking(move || {
                let r =
                    engine.changes(from, &spec.key, &spec.range_end, spec.prev_kv, BATCH_EVENTS);
                (r, engine.compact_revision())
            })
            .await;
            let (result, compact_rev) = match read {
                Ok(r) => r,
                Err(_) => return,
            };
            match result {
                Ok((events, next)) => {
                    let events: Vec<Event> =
                        events.into_iter().filter(|e| w.spec.matches(e)).collect();
                    if !events.is_empty() {
                        let rev = events.last().map(|e| e.kv.mod_revision).unwrap_or(from);
                        for resp in self.responses(&w, &events, rev) {
                            if w.tx.send(resp).await.is_err() {
                                self.remove(&w);
                                return;
                            }
                        }
                    }
                    w.next_rev.store(next, Ordering::Release);
                    let mut st = self.state.lock();
                    if next > st.delivered {
                        if !w.cancelled.load(Ordering::Acquire) {
                            insert_synced(&mut st, &w);
                        }
                        return;
                    }
                }
                Err(logbook_engine::Error::Compacted) => {
                    let resp = WatchResponse {
                        header: Some(self.header(self.current_revision())),
                        watch_id: w.watch_id,
                        canceled: true,
                        compact_revision: compact_rev,
                        ..Default::default()
                    };
                    let _ = w.tx.send(resp).await;
                    self.remove(&w);
                    return;
                }
                Err(e) => {
                    let resp = WatchResponse {
                        header: Some(self.header(self.current_revision())),
                        watch_id: w.watch_id,
                        canceled: true,
                        cancel_reason: format!("etcdserver: {e}"),
                        ..Default::default()
                    };
                    let _ = w.tx.send(resp).await;
                    self.remove(&w);
                    return;
                }
            }
        }
    }

    /// The responses carrying `events` to `w`: one, or several marked as
    /// fragments when the watcher allows splitting and they are too large.
    fn responses(&self, w: &Watcher, events: &[Event], revision: i64) -> Vec<WatchResponse> {
        let wire: Vec<mvccpb::Event> =
            events.iter().map(|e| event_to_wire(e, w.spec.prev_kv)).collect();
        let whole = WatchResponse {
            header: Some(self.header(revision)),
            watch_id: w.watch_id,
            events: wire,
            ..Default::default()
        };
        if !w.spec.fragment || whole.encoded_len() <= self.max_response_bytes {
            return vec![whole];
        }
        let mut out = Vec::new();
        let mut current = Vec::new();
        let mut size = 0;
        for e in whole.events {
            let len = e.encoded_len() + 8;
            if !current.is_empty() && size + len > self.max_response_bytes {
                out.push(std::mem::take(&mut current));
                size = 0;
            }
            size += len;
            current.push(e);
        }
        out.push(current);
        let n = out.len();
        out.into_iter()
            .enumerate()
            .map(|(i, events)| WatchResponse {
                header: Some(self.header(revision)),
                watch_id: w.watch_id,
                events,
                fragment: i + 1 < n,
                ..Default::default()
            })
            .collect()
    }

    fn dispatch_loop(self: Arc<Self>) {
        let mut last_progress = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            {
                let mut n = self.nudge.lock();
                if !*n {
                    self.nudged.wait_for(&mut n, IDLE_POLL);
                }
                *n = false;
            }
            loop {
                if !self.dispatch_once() {
                    break;
                }
            }
            if last_progress.elapsed() >= self.progress_interval {
                last_progress = Instant::now();
                self.send_progress();
            }
        }
    }

    /// Hands the next batch of events to the synced watchers; true if there
    /// may be more.
    fn dispatch_once(self: &Arc<Self>) -> bool {
        let engine = self.engine.get();
        let (from, want_prev) = {
            let mut st = self.state.lock();
            let current = engine.current_revision();
            if st.delivered >= current {
                return false;
            }
            if st.synced.is_empty() {
                st.delivered = current;
                return false;
            }
            (st.delivered + 1, st.want_prev > 0)
        };
        let (events, next) = match engine.changes(from, &[0], &[0], want_prev, BATCH_EVENTS) {
            Ok(r) => r,
            Err(logbook_engine::Error::Compacted) => {
                // Only possible if the engine was replaced under us by a
                // snapshot: every synced watcher must restart from history.
                let mut st = self.state.lock();
                let all: Vec<Arc<Watcher>> = st.synced.drain().map(|(_, w)| w).collect();
                st.want_prev = 0;
                st.delivered = engine.current_revision();
                drop(st);
                for w in all {
                    self.spawn_catch_up(w);
                }
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "watch dispatcher cannot read changes");
                return false;
            }
        };
        let mut st = self.state.lock();
        let mut demoted = Vec::new();
        let mut gone = Vec::new();
        for (k, w) in st.synced.iter() {
            let first = w.next_rev.load(Ordering::Acquire);
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.kv.mod_revision >= first && w.spec.matches(e))
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            let rev = mine.last().map(|e| e.kv.mod_revision).unwrap_or(first);
            let responses = self.responses(w, &mine, rev);
            // All of this batch or none of it, so a watcher that falls behind
            // resumes exactly at `first`.
            match w.tx.try_reserve_many(responses.len()) {
                Ok(permits) => {
                    for (permit, resp) in permits.zip(responses) {
                        permit.send(resp);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => demoted.push(*k),
                Err(mpsc::error::TrySendError::Closed(())) => gone.push(*k),
            }
        }
        let mut to_catch_up = Vec::new();
        for k in demoted {
            if let Some(w) = st.synced.remove(&k) {
                if w.spec.prev_kv {
                    st.want_prev -= 1;
                }
                to_catch_up.push(w);
            }
        }
        for k in gone {
            if let Some(w) = st.synced.remove(&k)
                && w.spec.prev_kv
            {
                st.want_prev -= 1;
            }
        }
        for w in st.synced.values() {
            // Everything below `next` was offered to every synced watcher.
            let first = w.next_rev.load(Ordering::Acquire);
            if first < next {
                w.next_rev.store(next, Ordering::Release);
            }
        }
        st.delivered = next - 1;
        drop(st);
        for w in to_catch_up {
            // Its next_rev still names the first revision it was not sent.
            self.spawn_catch_up(w);
        }
        next <= engine.current_revision()
    }

    fn send_progress(&self) {
        let st = self.state.lock();
        for w in st.synced.values() {
            if w.spec.progress_notify {
                let _ = w.tx.try_send(WatchResponse {
                    header: Some(self.header(st.delivered)),
                    watch_id: w.watch_id,
                    ..Default::default()
                });
            }
        }
    }
}

fn insert_synced(st: &mut HubState, w: &Arc<Watcher>) {
    if st.synced.insert((w.stream, w.watch_id), w.clone()).is_none() && w.spec.prev_kv {
        st.want_prev += 1;
    }
}

/// An engine event in wire form.
pub fn event_to_wire(e: &Event, with_prev: bool) -> mvccpb::Event {
    let kind = match e.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(to_wire(e.kv.clone())),
        prev_kv: if with_prev { e.prev_kv.clone().map(to_wire) } else { None },
    }
}

/// An empty key means "from the smallest key", as etcd reads it.
pub fn normalise_key(key: Bytes) -> Vec<u8> {
    if key.is_empty() { vec![0] } else { key.to_vec() }
}
