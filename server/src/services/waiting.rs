//! Queues of keys under a prefix, and waiting on them: what etcd's Lock and
//! Election services are built from.
//!
//! A lock or an election named `n` is the keys under `n/`, one per waiter
//! (`n/<lease in hex>`), ordered by create revision: the oldest holds the
//! lock or leads. Waiting for one's turn is etcd's `waitDeletes`: read the
//! newest key created before one's own ([`last_created_before`]), wait
//! until it is deleted ([`wait_deleted`]), and again, until none is left.
//!
//! Waits go through the member's watch hub ([`KeyWatch`]), so a delete is
//! seen the moment it is applied and history from the read's revision is
//! replayed. Nothing bounds a wait but the caller: dropping the future (the
//! client went away) drops its watcher, and [`Abandon`] undoes what the wait
//! had put in the queue, as etcd's client library does on cancellation.
//!
//! Reads and writes go through the KV service's own paths
//! ([`KvService::range_inner`], [`KvService::txn_inner`]), so they are
//! linearizable and permission-checked exactly as the client's own would be.

use std::sync::Arc;

use bytes::Bytes;
use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use logbook_api::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnResponse, WatchResponse, request_op, response_op,
};
use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::mvccpb;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::state::auth::AuthInfo;
use crate::watch::hub::{WatchHub, WatchSpec, Watcher};

/// The TTL of the lease a Lock or Campaign without one gets (etcd's
/// `concurrency` session default).
pub const SESSION_TTL: i64 = 60;

/// Responses queued per waiting watcher before the hub moves it to catch-up
/// (it still misses nothing).
const QUEUE: usize = 64;

/// `<name>/`: the prefix a lock's or an election's keys live under.
pub fn queue_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// `<name>/<lease in hex>`: a waiter's own key, as Go's `%x` prints the
/// lease ID (lower case, a minus sign before a negative one).
pub fn waiter_key(prefix: &[u8], lease: i64) -> Bytes {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    key.into()
}

/// The range read of every key under `prefix`.
fn prefix_range(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: Bytes::copy_from_slice(prefix),
        range_end: logbook_engine::prefix_end(prefix).into(),
        ..Default::default()
    }
}

/// The read of the oldest key under `prefix` (clientv3's `WithFirstCreate`):
/// the lock's holder, the election's leader.
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..prefix_range(prefix)
    }
}

/// The read of the newest key under `prefix` created at or before
/// `max_create_rev` (clientv3's `WithLastCreate` and `WithMaxCreateRev`).
pub fn last_created_before(prefix: &[u8], max_create_rev: i64) -> RangeRequest {
    RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        max_create_revision: max_create_rev,
        ..prefix_range(prefix)
    }
}

/// `create_revision(key) == rev`: the compare every step of a lock or an
/// election makes (0: the key does not exist).
pub fn created_at(key: &Bytes, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        range_end: Bytes::new(),
    }
}

/// A transaction's put.
pub fn op_put(key: &Bytes, value: Bytes, lease: i64) -> RequestOp {
    let put = PutRequest { key: key.clone(), value, lease, ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

/// A transaction's read.
pub fn op_range(r: RangeRequest) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(r)) }
}

/// A transaction's delete of one key.
pub fn op_delete(key: &Bytes) -> RequestOp {
    let delete = DeleteRangeRequest { key: key.clone(), ..Default::default() };
    RequestOp { request: Some(request_op::Request::RequestDeleteRange(delete)) }
}

/// The keys the transaction's `i`th operation, a read, found.
pub fn read_at(resp: &TxnResponse, i: usize) -> &[mvccpb::KeyValue] {
    match resp.responses.get(i).and_then(|op| op.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => &r.kvs,
        other => panic!("operation {i} of a lock or election txn is a read, answered {other:?}"),
    }
}

/// The lease a request's keys are attached to: its own, or, when it names
/// none (0), a fresh one of [`SESSION_TTL`] seconds, as etcd's
/// `concurrency.NewSession` grants. The lease is not checked here: an
/// unknown one fails the first write that uses it, as in etcd.
pub async fn session_lease(lease: &LeaseService, id: i64, who: Option<&AuthInfo>) -> Result<i64> {
    if id != 0 {
        return Ok(id);
    }
    let granted = lease.grant_inner(LeaseGrantRequest { ttl: SESSION_TTL, id: 0 }, who).await?;
    Ok(granted.id)
}

/// Waits until no key under `prefix` created at or before `max_create_rev`
/// is left (etcd's `waitDeletes`); answers the header of the read that
/// found none.
pub async fn wait_deletes(
    kv: &KvService,
    hub: &Arc<WatchHub>,
    prefix: &[u8],
    max_create_rev: i64,
    who: Option<&AuthInfo>,
) -> Result<ResponseHeader> {
    loop {
        let read =
            kv.range_inner(last_created_before(prefix, max_create_rev), who.cloned()).await?;
        let header = read.header.unwrap_or_default();
        let Some(last) = read.kvs.first() else {
            return Ok(header);
        };
        match wait_deleted(hub, &last.key, header.revision).await {
            // etcd's client gives up when the history it watches from is
            // compacted; reading again is as correct and does not fail a
            // lock for a compaction.
            Ok(()) | Err(Error::Compacted) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `key` is deleted at or after revision `from`.
pub async fn wait_deleted(hub: &Arc<WatchHub>, key: &[u8], from: i64) -> Result<()> {
    let mut watch = KeyWatch::new(hub, key, &[], from);
    loop {
        let events = watch.next().await?;
        if events.iter().any(|e| e.r#type == mvccpb::event::EventType::Delete as i32) {
            return Ok(());
        }
    }
}

/// A watcher of `[key, range_end)` in the member's hub, removed from the hub
/// when dropped.
pub struct KeyWatch {
    hub: Arc<WatchHub>,
    watcher: Arc<Watcher>,
    rx: mpsc::Receiver<WatchResponse>,
}

impl KeyWatch {
    /// Watches `[key, range_end)` (a single key when `range_end` is empty)
    /// from revision `from` on, history included.
    pub fn new(hub: &Arc<WatchHub>, key: &[u8], range_end: &[u8], from: i64) -> KeyWatch {
        let (tx, rx) = mpsc::channel(QUEUE);
        let spec = WatchSpec {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
        };
        // `from` is at least 1: a revision 0 would mean "from now" to the hub.
        let watcher = hub.add(hub.new_stream(), 0, spec, from.max(1), tx);
        KeyWatch { hub: hub.clone(), watcher, rx }
    }

    /// The next revision's (or batch of revisions') events, in order.
    /// `Compacted` when the history asked for is gone.
    pub async fn next(&mut self) -> Result<Vec<mvccpb::Event>> {
        loop {
            let Some(resp) = self.rx.recv().await else {
                return Err(Error::Internal("the watch hub dropped a watcher".into()));
            };
            if resp.canceled {
                if resp.compact_revision > 0 {
                    return Err(Error::Compacted);
                }
                return Err(Error::Internal(resp.cancel_reason));
            }
            if !resp.events.is_empty() {
                return Ok(resp.events);
            }
        }
    }
}

impl Drop for KeyWatch {
    fn drop(&mut self) {
        self.hub.remove(&self.watcher);
    }
}

/// A write to make if a wait is abandoned: dropped while still armed (the
/// client went away mid-wait), it proposes `undo` from a task of its own,
/// as etcd's client library deletes a waiter's key with its own context
/// when the caller's is cancelled.
pub struct Abandon {
    ctx: Arc<Context>,
    undo: Option<Internal>,
    who: Option<AuthInfo>,
}

impl Abandon {
    pub fn new(ctx: &Arc<Context>, undo: Internal, who: Option<&AuthInfo>) -> Abandon {
        Abandon { ctx: ctx.clone(), undo: Some(undo), who: who.cloned() }
    }

    /// The wait ended: nothing to undo on drop.
    pub fn disarm(mut self) {
        self.undo = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(undo) = self.undo.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("an abandoned lock or campaign key was left for its lease to remove");
            return;
        };
        let ctx = self.ctx.clone();
        let who = self.who.take();
        runtime.spawn(async move {
            if let Err(e) = ctx.raft.propose_as(undo, who.as_ref()).await {
                tracing::debug!(error = %e, "removing an abandoned lock or campaign key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use logbook_engine::{Engine, Options};

    use super::*;
    use crate::state::engine_cell::EngineCell;
    use crate::status::RaftStatus;

    /// An engine and a hub over it, its dispatcher running.
    struct Fixture {
        _dir: tempfile::TempDir,
        engine: Arc<EngineCell>,
        hub: Arc<WatchHub>,
        dispatcher: Option<std::thread::JoinHandle<()>>,
        index: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(dir.path().join("db"), Options::default()).unwrap();
            let engine = Arc::new(EngineCell::new(engine));
            let status = Arc::new(RaftStatus::new(1, 2, 0));
            let hub = WatchHub::new(engine.clone(), status, 1 << 20, Duration::from_secs(3600));
            let dispatcher = Some(hub.start().unwrap());
            Fixture { _dir: dir, engine, hub, dispatcher, index: 0 }
        }

        /// Puts (`Some`) or deletes (`None`) one key; returns the revision.
        fn write(&mut self, key: &[u8], value: Option<&[u8]>) -> i64 {
            self.index += 1;
            let engine = self.engine.get();
            let mut txn = engine.write(self.index);
            match value {
                Some(v) => {
                    let _ = txn.put(key, v, 0).unwrap();
                }
                None => {
                    let _ = txn.delete_range(key, &[]).unwrap();
                }
            }
            let rev = txn.commit();
            self.hub.nudge();
            rev
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

    /// A wait ends at the key's delete, whether it happened before the wait
    /// began (replayed from history) or after; puts do not end it; and no
    /// watcher is left behind either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_end_at_the_delete_and_leave_no_watcher() {
        let mut f = Fixture::new();
        let created = f.write(b"q/1", Some(b""));
        f.write(b"q/1", None);
        let bounded = Duration::from_secs(10);
        tokio::time::timeout(bounded, wait_deleted(&f.hub, b"q/1", created))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.hub.watcher_count(), 0);

        let from = f.write(b"q/2", Some(b"")) + 1;
        let hub = f.hub.clone();
        let wait = tokio::spawn(async move { wait_deleted(&hub, b"q/2", from).await });
        f.write(b"q/2", Some(b"again"));
        f.write(b"q/other", None);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!wait.is_finished(), "a put or another key's delete ended the wait");
        assert_eq!(f.hub.watcher_count(), 1);
        f.write(b"q/2", None);
        tokio::time::timeout(bounded, wait).await.unwrap().unwrap().unwrap();
        assert_eq!(f.hub.watcher_count(), 0);
    }

    /// A wait whose caller goes away (its future dropped, as when a client
    /// cancels) takes its watcher with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_wait_removes_its_watcher() {
        let mut f = Fixture::new();
        let from = f.write(b"q/1", Some(b""));
        let hub = f.hub.clone();
        let wait = tokio::spawn(async move { wait_deleted(&hub, b"q/1", from).await });
        for _ in 0..100 {
            if f.hub.watcher_count() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(f.hub.watcher_count(), 1);
        wait.abort();
        assert!(wait.await.unwrap_err().is_cancelled());
        assert_eq!(f.hub.watcher_count(), 0);
    }

    #[test]
    fn waiter_keys_are_gos_hex() {
        let prefix = queue_prefix(b"my");
        assert_eq!(prefix, b"my/");
        assert_eq!(waiter_key(&prefix, 100), &b"my/64"[..]);
        assert_eq!(waiter_key(&prefix, 0x694d_7a3c_1f2e_0b0c), &b"my/694d7a3c1f2e0b0c"[..]);
        assert_eq!(waiter_key(&prefix, -100), &b"my/-64"[..]);
        assert_eq!(waiter_key(&prefix, i64::MIN), &b"my/-8000000000000000"[..]);
    }

    #[test]
    fn queue_reads_are_clientv3s() {
        let first = first_created(b"el/");
        assert_eq!((first.key.as_ref(), first.range_end.as_ref()), (&b"el/"[..], &b"el0"[..]));
        assert_eq!((first.sort_order, first.sort_target, first.limit), (1, 2, 1));
        let last = last_created_before(b"el/", 41);
        assert_eq!((last.sort_order, last.sort_target, last.limit), (2, 2, 1));
        assert_eq!(last.max_create_revision, 41);
    }
}
