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
//!
//! The synced watchers are indexed by the keys they watch
//! ([`watcher_index`]), so an event costs a lookup plus its matches, not a
//! test of every watcher, and each event is converted to its wire form once
//! for all the watchers it reaches.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
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

use super::watcher_index::{WatcherIndex, WatcherKey};
use crate::state::engine_cell::EngineCell;
use crate::state::range::to_wire;
use crate::status::RaftStatus;

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
    /// The next revision this watcher must be sent, while it catches up.
    /// A synced watcher has also been offered everything up to the hub's
    /// `delivered` (the dispatcher does not touch every watcher per batch
    /// to record that), so it resumes from the larger of the two.
    pub next_rev: AtomicI64,
    pub cancelled: AtomicBool,
    tx: mpsc::Sender<WatchResponse>,
}

struct HubState {
    /// Every event at or below this revision has been handed to the synced
    /// watchers.
    delivered: i64,
    synced: HashMap<WatcherKey, Arc<Watcher>>,
    /// The same watchers by watched keys, for the dispatcher.
    index: WatcherIndex<Arc<Watcher>>,
    /// Synced watchers that asked for prev_kv.
    want_prev: usize,
}

impl HubState {
    fn insert_synced(&mut self, w: &Arc<Watcher>) {
        let key = (w.stream, w.watch_id);
        if let Entry::Vacant(slot) = self.synced.entry(key) {
            slot.insert(w.clone());
            self.index.insert(&w.spec.key, &w.spec.range_end, key, w.clone());
            if w.spec.prev_kv {
                self.want_prev += 1;
            }
        }
        debug_assert_eq!(self.index.len(), self.synced.len());
    }

    fn remove_synced(&mut self, key: &WatcherKey) -> Option<Arc<Watcher>> {
        let w = self.synced.remove(key)?;
        self.index.remove(&w.spec.key, &w.spec.range_end, key);
        if w.spec.prev_kv {
            self.want_prev -= 1;
        }
        debug_assert_eq!(self.index.len(), self.synced.len());
        Some(w)
    }

    /// Takes every synced watcher out, each set to resume after `delivered`.
    fn drain_synced(&mut self) -> Vec<Arc<Watcher>> {
        self.index.drain();
        self.want_prev = 0;
        let first = self.delivered + 1;
        self.synced
            .drain()
            .map(|(_, w)| {
                w.next_rev.fetch_max(first, Ordering::AcqRel);
                w
            })
            .collect()
    }
}

/// The member's watchers and their dispatcher.
pub struct WatchHub {
    engine: Arc<EngineCell>,
    /// Where response headers come from.
    status: Arc<RaftStatus>,
    state: Mutex<HubState>,
    nudge: Mutex<bool>,
    nudged: Condvar,
    watchers: AtomicUsize,
    /// The next stream number: watchers are known by (stream, watch ID), so
    /// every owner of watchers (a Watch stream, a waiting lock) takes its
    /// own number here.
    next_stream: AtomicU64,
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
        status: Arc<RaftStatus>,
        max_response_bytes: usize,
        progress_interval: Duration,
    ) -> Arc<WatchHub> {
        let delivered = engine.get().current_revision();
        Arc::new(WatchHub {
            engine,
            status,
            state: Mutex::new(HubState {
                delivered,
                synced: HashMap::new(),
                index: WatcherIndex::default(),
                want_prev: 0,
            }),
            nudge: Mutex::new(false),
            nudged: Condvar::new(),
            watchers: AtomicUsize::new(0),
            next_stream: AtomicU64::new(1),
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

    /// A stream number no other owner of watchers has.
    pub fn new_stream(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Watchers registered now (for tests that check none is left behind).
    pub fn watcher_count(&self) -> usize {
        self.watchers.load(Ordering::Acquire)
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        self.status.header(revision)
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
            st.insert_synced(&w);
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
        self.state.lock().remove_synced(&(w.stream, w.watch_id));
    }

    /// Waits until the dispatcher has handed every event up to `revision` to
    /// the synced watchers (nudging it), for at most `limit`; false if it
    /// has not by then. A progress notification asked for after a write
    /// acknowledged at revision R must name R or later, as etcd's does (its
    /// watchers are notified within the write itself); the dispatcher runs
    /// a moment behind the apply loop, so the answer waits for it.
    pub async fn delivered_through(&self, revision: i64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.state.lock().delivered >= revision {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.nudge();
            tokio::time::sleep(Duration::from_millis(1)).await;
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
                    let events: Vec<mvccpb::Event> = events
                        .into_iter()
                        .filter(|e| w.spec.matches(e))
                        .map(|e| event_into_wire(e, w.spec.prev_kv))
                        .collect();
                    if let Some(rev) = events.last().and_then(|e| e.kv.as_ref()) {
                        let rev = rev.mod_revision;
                        for resp in self.responses(&w, events, rev) {
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
                            st.insert_synced(&w);
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
    fn responses(
        &self,
        w: &Watcher,
        events: Vec<mvccpb::Event>,
        revision: i64,
    ) -> Vec<WatchResponse> {
        let whole = WatchResponse {
            header: Some(self.header(revision)),
            watch_id: w.watch_id,
            events,
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
                let all = st.drain_synced();
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
        {
            // Each watcher's share of the batch, as positions in `events`
            // (so in revision order), found through the index.
            let mut hits: HashMap<WatcherKey, (&Arc<Watcher>, Vec<u32>)> = HashMap::new();
            for (i, e) in events.iter().enumerate() {
                st.index.for_each_match(&e.kv.key, |key, w| {
                    if e.kv.mod_revision >= w.next_rev.load(Ordering::Acquire) && w.spec.matches(e)
                    {
                        hits.entry(*key).or_insert_with(|| (w, Vec::new())).1.push(i as u32);
                    }
                });
            }
            // One wire copy of each event; watchers share its bytes.
            let wire: Vec<mvccpb::Event> =
                events.into_iter().map(|e| event_into_wire(e, true)).collect();
            let without_prev: Option<Vec<mvccpb::Event>> = want_prev.then(|| {
                wire.iter().map(|e| mvccpb::Event { prev_kv: None, ..e.clone() }).collect()
            });
            for (key, (w, positions)) in hits {
                let source = match (&without_prev, w.spec.prev_kv) {
                    (Some(plain), false) => plain,
                    (None, true) => {
                        // It became synced after the batch was read without
                        // previous values: it gets them from history instead.
                        demoted.push(key);
                        continue;
                    }
                    _ => &wire,
                };
                let mine: Vec<mvccpb::Event> =
                    positions.iter().map(|&i| source[i as usize].clone()).collect();
                let rev =
                    mine.last().and_then(|e| e.kv.as_ref()).map_or(from, |kv| kv.mod_revision);
                let responses = self.responses(w, mine, rev);
                // All of this batch or none of it, so a watcher that falls
                // behind resumes exactly at the batch's first revision.
                match w.tx.try_reserve_many(responses.len()) {
                    Ok(permits) => {
                        for (permit, resp) in permits.zip(responses) {
                            permit.send(resp);
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(())) => demoted.push(key),
                    Err(mpsc::error::TrySendError::Closed(())) => gone.push(key),
                }
            }
        }
        let mut to_catch_up = Vec::new();
        for key in demoted {
            if let Some(w) = st.remove_synced(&key) {
                // It was sent everything before `from` and nothing after.
                w.next_rev.fetch_max(from, Ordering::AcqRel);
                to_catch_up.push(w);
            }
        }
        for key in gone {
            st.remove_synced(&key);
        }
        // Everything below `next` was offered to every synced watcher.
        st.delivered = next - 1;
        drop(st);
        for w in to_catch_up {
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

/// An engine event in wire form, with its previous value if it has one
/// and `with_prev`.
pub fn event_into_wire(e: Event, with_prev: bool) -> mvccpb::Event {
    let kind = match e.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(to_wire(e.kv)),
        prev_kv: if with_prev { e.prev_kv.map(to_wire) } else { None },
    }
}

/// An empty key means "from the smallest key", as etcd reads it.
pub fn normalise_key(key: Bytes) -> Vec<u8> {
    if key.is_empty() { vec![0] } else { key.to_vec() }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use logbook_engine::{Engine, Options};

    use super::*;

    /// A hub over a fresh engine, its dispatcher running.
    struct Fixture {
        _dir: tempfile::TempDir,
        engine: Arc<EngineCell>,
        hub: Arc<WatchHub>,
        dispatcher: Option<std::thread::JoinHandle<()>>,
        raft_index: u64,
    }

    impl Fixture {
        fn new(rt: &tokio::runtime::Runtime) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path().join("db"), Options::default()).unwrap();
            let engine = Arc::new(EngineCell::new(engine));
            let status = Arc::new(RaftStatus::new(1, 2, 0));
            status.set_term(1);
            let hub = {
                let _guard = rt.enter();
                WatchHub::new(engine.clone(), status, 1 << 20, Duration::from_secs(3600))
            };
            let dispatcher = Some(hub.start().unwrap());
            Fixture { _dir: dir, engine, hub, dispatcher, raft_index: 0 }
        }

        /// One write transaction: puts (`Some(value)`) and single-key
        /// deletes (`None`); returns its revision.
        fn write(&mut self, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> i64 {
            self.raft_index += 1;
            let engine = self.engine.get();
            let mut txn = engine.write(self.raft_index);
            for (key, value) in ops {
                match value {
                    Some(v) => {
                        txn.put(key, v, 0).unwrap();
                    }
                    None => {
                        txn.delete_range(key, &[]).unwrap();
                    }
                }
            }
            let rev = txn.commit();
            self.hub.nudge();
            rev
        }

        fn synced(&self, w: &Watcher) -> bool {
            self.hub.state.lock().synced.contains_key(&(w.stream, w.watch_id))
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.hub.stop();
            if let Some(d) = self.dispatcher.take() {
                d.join().unwrap();
            }
        }
    }

    fn spec(key: &[u8], range_end: &[u8]) -> WatchSpec {
        WatchSpec {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
        }
    }

    /// Receives until `want` events came or nothing arrives for 10 s.
    fn receive(
        rt: &tokio::runtime::Runtime,
        rx: &mut mpsc::Receiver<WatchResponse>,
        want: usize,
    ) -> Vec<mvccpb::Event> {
        let mut events = Vec::new();
        rt.block_on(async {
            while events.len() < want {
                match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                    Ok(Some(resp)) => {
                        assert!(!resp.canceled, "cancelled: {}", resp.cancel_reason);
                        events.extend(resp.events);
                    }
                    _ => break,
                }
            }
        });
        events
    }

    fn revisions(events: &[mvccpb::Event]) -> Vec<i64> {
        events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    /// A watcher whose queue is full is moved to catch-up while the others
    /// keep receiving, and once read it gets every event, in order, once.
    #[test]
    fn slow_watcher_moves_to_catch_up_and_misses_nothing() {
        let rt = runtime();
        let mut f = Fixture::new(&rt);
        const N: usize = 300;
        let (fast_tx, mut fast_rx) = mpsc::channel(16);
        let (slow_tx, mut slow_rx) = mpsc::channel(4);
        let first = f.engine.get().current_revision() + 1;
        let fast = f.hub.add(1, 0, spec(b"/s/", b"/s0"), 0, fast_tx);
        let slow = f.hub.add(2, 0, spec(b"/s/", b"/s0"), 0, slow_tx);
        assert!(f.synced(&fast) && f.synced(&slow));
        // Nobody reads `slow_rx` while the writes go on.
        // One revision per dispatcher batch (the fast watcher has it before
        // the next write), so each is one response to the slow watcher.
        let mut fast_events = Vec::new();
        for i in 0..N {
            f.write(&[(format!("/s/{i:04}").into_bytes(), Some(vec![b'v'; 64]))]);
            fast_events.extend(receive(&rt, &mut fast_rx, 1));
        }
        assert_eq!(revisions(&fast_events), (first..first + N as i64).collect::<Vec<_>>());
        // Four responses fit its queue; the rest wait for it in catch-up.
        assert!(!f.synced(&slow), "a watcher with a full queue stays synced");
        assert!(f.synced(&fast));
        assert_eq!(slow_rx.len(), 4);

        let slow_events = receive(&rt, &mut slow_rx, N);
        assert_eq!(revisions(&slow_events), revisions(&fast_events));
        for (i, e) in slow_events.iter().enumerate() {
            assert_eq!(e.kv.as_ref().unwrap().key, format!("/s/{i:04}").as_bytes());
        }
        // Caught up, it joins the synced watchers again and gets live events.
        for _ in 0..500 {
            if f.synced(&slow) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(f.synced(&slow), "the caught-up watcher was not synced again");
        let rev = f.write(&[(b"/s/last".to_vec(), Some(b"x".to_vec()))]);
        assert_eq!(revisions(&receive(&rt, &mut slow_rx, 1)), vec![rev]);
        assert_eq!(revisions(&receive(&rt, &mut fast_rx, 1)), vec![rev]);
        assert!(slow_rx.is_empty() && fast_rx.is_empty());
    }

    /// A tiny generator for the model test (the crate has no `rand`).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn key(&mut self) -> Vec<u8> {
            let len = 1 + self.below(3) as usize;
            (0..len).map(|_| b"abcd"[self.below(4) as usize]).collect()
        }
    }

    /// Random watchers (keys, prefixes, ranges, open ranges; filters and
    /// prev_kv; some starting in the past, some with tiny queues read only at
    /// the end) and random writes: every watcher receives exactly what a scan
    /// of the whole history says it should, in order, with the right
    /// previous values.
    #[test]
    fn every_watcher_gets_exactly_its_events() {
        let seed = std::env::var("LOGBOOK_TEST_SEED").ok().and_then(|s| s.parse().ok());
        let seed = seed.unwrap_or(7);
        let rt = runtime();
        let mut f = Fixture::new(&rt);
        let mut rng = Rng(seed);
        // Model of the store: per revision, (key, Some(value) | None = delete).
        let mut history: Vec<(i64, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut write = |f: &mut Fixture, rng: &mut Rng| {
            let mut ops = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let key = rng.key();
                if ops.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                let value = (rng.below(3) != 0).then(|| rng.next().to_le_bytes().to_vec());
                if value.is_none() && !latest.contains_key(&key) {
                    continue; // deleting nothing is no event
                }
                ops.push((key, value));
            }
            if ops.is_empty() {
                return;
            }
            let rev = f.write(&ops);
            for (k, v) in ops {
                match &v {
                    Some(v) => latest.insert(k.clone(), v.clone()),
                    None => latest.remove(&k),
                };
                history.push((rev, k, v));
            }
        };
        for _ in 0..40 {
            write(&mut f, &mut rng);
        }
        let mut watchers = Vec::new();
        for id in 0..60i64 {
            let key = rng.key();
            let range_end = match rng.below(4) {
                0 => Vec::new(),
                1 => logbook_engine::prefix_end(&key),
                2 => vec![0],
                _ => rng.key(),
            };
            let mut s = spec(&key, &range_end);
            s.prev_kv = rng.below(2) == 0;
            s.no_put = rng.below(6) == 0;
            s.no_delete = !s.no_put && rng.below(6) == 0;
            let current = f.engine.get().current_revision();
            let start = if rng.below(3) == 0 { 1 + rng.below(current as u64) as i64 } else { 0 };
            let queue = if rng.below(4) == 0 { 2 } else { 4096 };
            let (tx, rx) = mpsc::channel(queue);
            let from = if start == 0 { current + 1 } else { start };
            let w = f.hub.add(id as u64 % 5, id, s.clone(), start, tx);
            watchers.push((w, s, from, rx));
            write(&mut f, &mut rng);
        }
        for _ in 0..200 {
            write(&mut f, &mut rng);
        }
        // The previous value of each (revision, key), from the model.
        let mut prev_of: HashMap<(i64, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
        let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (rev, k, v) in &history {
            prev_of.insert((*rev, k.clone()), state.get(k).cloned());
            match v {
                Some(v) => state.insert(k.clone(), v.clone()),
                None => state.remove(k),
            };
        }
        for (w, s, from, mut rx) in watchers {
            let want: Vec<(i64, Vec<u8>, bool)> = history
                .iter()
                .filter(|(rev, k, v)| {
                    *rev >= from
                        && logbook_engine::kv::in_range(k, &s.key, &s.range_end)
                        && !(v.is_some() && s.no_put)
                        && !(v.is_none() && s.no_delete)
                })
                .map(|(rev, k, v)| (*rev, k.clone(), v.is_some()))
                .collect();
            let got = receive(&rt, &mut rx, want.len());
            let got_ids: Vec<(i64, Vec<u8>, bool)> = got
                .iter()
                .map(|e| {
                    let kv = e.kv.as_ref().unwrap();
                    (kv.mod_revision, kv.key.to_vec(), e.r#type == 0)
                })
                .collect();
            assert_eq!(got_ids, want, "seed {seed}, watcher {} {s:?} from {from}", w.watch_id);
            for e in &got {
                let kv = e.kv.as_ref().unwrap();
                let prev = e.prev_kv.as_ref().map(|p| p.value.to_vec());
                let want_prev = if s.prev_kv {
                    prev_of[&(kv.mod_revision, kv.key.to_vec())].clone()
                } else {
                    None
                };
                assert_eq!(prev, want_prev, "seed {seed}, prev_kv of {kv:?} for {s:?}");
            }
            assert!(rx.try_recv().is_err(), "seed {seed}: more than expected for {s:?}");
        }
    }
}
