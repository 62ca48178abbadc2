//! Concurrent clients against every member: puts of unique values (some attached to a
//! lease of their own), linearizable and serializable gets, deletes, compare-and-set txns
//! and revokes of those leases on a few keys, every operation recorded in a [`Record`];
//! and on every member a watch kept open through the faults, resumed after each break
//! (asking for progress notifications as it goes), and a lease keeper that holds a
//! short-lived lease alive with keepalives and watches its key vanish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::lease_client::LeaseClient;
use logbook_api::etcdserverpb::request_op::Request as ReqOp;
use logbook_api::etcdserverpb::response_op::Response as RespOp;
use logbook_api::etcdserverpb::watch_client::WatchClient;
use logbook_api::etcdserverpb::watch_request::RequestUnion;
use logbook_api::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use super::history::{Kind, LiveWatch, Outcome, Record};
use super::linearizability::NEVER;

/// Keys the workload touches (few, so operations contend).
pub const KEYS: usize = 6;
/// Longest a client waits for one answer.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

pub fn key_name(k: usize) -> String {
    format!("rb/{k}")
}

pub fn parse_value(v: &[u8]) -> u64 {
    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        panic!("a value the workload never writes: {:?}", String::from_utf8_lossy(v))
    })
}

/// The run's clock: nanoseconds since it began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A channel to `url`, or None if it cannot be had within about two seconds.
pub async fn channel(url: &str) -> Option<Channel> {
    let endpoint = Channel::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(OP_TIMEOUT);
    tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await.ok()?.ok()
}

pub async fn connect(url: &str) -> Option<KvClient<Channel>> {
    channel(url).await.map(KvClient::new)
}

/// One client's connection: KV and Lease on one channel.
pub struct Conn {
    pub kv: KvClient<Channel>,
    pub lease: LeaseClient<Channel>,
}

pub async fn connect_conn(url: &str) -> Option<Conn> {
    let ch = channel(url).await?;
    Some(Conn { kv: KvClient::new(ch.clone()), lease: LeaseClient::new(ch) })
}

/// Leases the workload grants outlive any run, so none expires under the checker.
pub const LEASE_TTL: i64 = 3600;

/// Grants a lease for one put; None if the grant failed (nothing to record: a lease no
/// put uses changes no key).
pub async fn grant(conn: &mut Conn) -> Option<i64> {
    let r = tokio::time::timeout(
        OP_TIMEOUT + Duration::from_millis(500),
        conn.lease.lease_grant(LeaseGrantRequest { ttl: LEASE_TTL, id: 0 }),
    )
    .await
    .ok()?
    .ok()?;
    Some(r.into_inner().id)
}

/// Runs one operation and records it.
pub async fn run_op(
    conn: &mut Conn,
    clock: Clock,
    client: usize,
    member: usize,
    key: usize,
    kind: Kind,
) -> Record {
    let invoke = clock.now();
    let name = key_name(key);
    let kv = &mut conn.kv;
    let answer = tokio::time::timeout(OP_TIMEOUT + Duration::from_millis(500), async {
        match &kind {
            Kind::Get { serializable } => kv
                .range(RangeRequest {
                    key: name.clone().into(),
                    serializable: *serializable,
                    ..Default::default()
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let first = r.kvs.first();
                    Outcome::Get {
                        value: first.map(|kv| parse_value(&kv.value)),
                        mod_rev: first.map_or(0, |kv| kv.mod_revision),
                        rev: r.header.map_or(0, |h| h.revision),
                    }
                }),
            Kind::Put { value } => kv
                .put(PutRequest {
                    key: name.clone().into(),
                    value: value.to_string().into(),
                    ..Default::default()
                })
                .await
                .map(|r| Outcome::Put { rev: r.into_inner().header.map_or(0, |h| h.revision) }),
            Kind::PutLease { value, lease } => kv
                .put(PutRequest {
                    key: name.clone().into(),
                    value: value.to_string().into(),
                    lease: *lease,
                    ..Default::default()
                })
                .await
                .map(|r| Outcome::Put { rev: r.into_inner().header.map_or(0, |h| h.revision) }),
            Kind::Revoke { lease } => {
                conn.lease.lease_revoke(LeaseRevokeRequest { id: *lease }).await.map(|r| {
                    Outcome::Revoke { rev: r.into_inner().header.map_or(0, |h| h.revision) }
                })
            }
            Kind::Delete => kv
                .delete_range(DeleteRangeRequest {
                    key: name.clone().into(),
                    // The removed value makes the delete an observation: without it an
                    // unknown put that only a delete saw could not be told apart from one
                    // that never took effect.
                    prev_kv: true,
                    ..Default::default()
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let removed = r.prev_kvs.first().map(|kv| parse_value(&kv.value));
                    assert_eq!(
                        removed.is_some(),
                        r.deleted > 0,
                        "delete of one key: deleted {} but prev_kvs {:?}",
                        r.deleted,
                        r.prev_kvs
                    );
                    Outcome::Delete { removed, rev: r.header.map_or(0, |h| h.revision) }
                }),
            Kind::Cas { expect, new } => {
                let compare = match expect {
                    Some(v) => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: name.clone().into(),
                        target_union: Some(TargetUnion::Value(v.to_string().into())),
                        ..Default::default()
                    },
                    None => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Create as i32,
                        key: name.clone().into(),
                        target_union: Some(TargetUnion::CreateRevision(0)),
                        ..Default::default()
                    },
                };
                kv.txn(TxnRequest {
                    compare: vec![compare],
                    success: vec![RequestOp {
                        request: Some(ReqOp::RequestPut(PutRequest {
                            key: name.clone().into(),
                            value: new.to_string().into(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![RequestOp {
                        request: Some(ReqOp::RequestRange(RangeRequest {
                            key: name.clone().into(),
                            ..Default::default()
                        })),
                    }],
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    let rev = r.header.map_or(0, |h| h.revision);
                    let (got, got_mod_rev) = if r.succeeded {
                        (None, 0)
                    } else {
                        match r.responses.first().and_then(|op| op.response.as_ref()) {
                            Some(RespOp::ResponseRange(rr)) => {
                                let first = rr.kvs.first();
                                (
                                    first.map(|kv| parse_value(&kv.value)),
                                    first.map_or(0, |kv| kv.mod_revision),
                                )
                            }
                            other => panic!("txn else branch answered {other:?}"),
                        }
                    };
                    Outcome::Cas { succeeded: r.succeeded, got, got_mod_rev, rev }
                })
            }
        }
    })
    .await;
    let now = clock.now();
    let (ret, outcome) = match answer {
        Ok(Ok(outcome)) => (now, outcome),
        // The lease is gone (an earlier revoke whose answer was lost took effect): this
        // revoke certainly changed nothing.
        Ok(Err(status))
            if matches!(kind, Kind::Revoke { .. })
                && status.code() == tonic::Code::NotFound
                && status.message().contains("requested lease not found") =>
        {
            (NEVER, Outcome::Failed(status.message().to_string()))
        }
        Ok(Err(status)) => failure(&kind, format!("{:?}: {}", status.code(), status.message())),
        Err(_) => failure(&kind, "client timeout".to_string()),
    };
    Record { client, member, key, kind, invoke, ret, outcome }
}

/// A read that failed had no effect; a write that failed may still take effect.
fn failure(kind: &Kind, why: String) -> (u64, Outcome) {
    match kind {
        Kind::Get { .. } => (NEVER, Outcome::Failed(why)),
        _ => (NEVER, Outcome::Unknown(why)),
    }
}

/// One client: a member, a seed, a deadline. Returns its records.
pub async fn client(
    id: usize,
    member: usize,
    url: String,
    seed: u64,
    clock: Clock,
    deadline: Instant,
    next_value: Arc<AtomicU64>,
) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut conn: Option<Conn> = None;
    // The last value this client saw per key, for its compare-and-set guesses.
    let mut seen: Vec<Option<u64>> = vec![None; KEYS];
    // (key, lease) of this client's lease puts not yet revoked.
    let mut leased: Vec<(usize, i64)> = Vec::new();
    // Bounded: the deadline, and at most this many operations.
    for _ in 0..200_000 {
        if Instant::now() >= deadline {
            break;
        }
        let Some(client) = conn.as_mut() else {
            conn = connect_conn(&url).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let mut key = rng.random_range(0..KEYS);
        let roll = rng.random_range(0..100);
        let kind = match roll {
            0..24 => Kind::Put { value: next_value.fetch_add(1, Ordering::SeqCst) },
            24..30 => {
                let Some(lease) = grant(client).await else {
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
                    continue;
                };
                Kind::PutLease { value: next_value.fetch_add(1, Ordering::SeqCst), lease }
            }
            30..54 => Kind::Get { serializable: false },
            54..68 => Kind::Get { serializable: true },
            68..75 => Kind::Delete,
            75..81 if !leased.is_empty() => {
                let (k, lease) = leased.swap_remove(rng.random_range(0..leased.len()));
                key = k;
                Kind::Revoke { lease }
            }
            75..81 => Kind::Get { serializable: false },
            _ => Kind::Cas { expect: seen[key], new: next_value.fetch_add(1, Ordering::SeqCst) },
        };
        let r = run_op(client, clock, id, member, key, kind).await;
        match &r.outcome {
            Outcome::Get { value, .. } => seen[key] = *value,
            Outcome::Cas { succeeded: false, got, .. } => seen[key] = *got,
            Outcome::Cas { succeeded: true, .. } | Outcome::Put { .. } => {
                if let Kind::Put { value }
                | Kind::PutLease { value, .. }
                | Kind::Cas { new: value, .. } = r.kind
                {
                    seen[key] = Some(value);
                }
                if let Kind::PutLease { lease, .. } = r.kind {
                    leased.push((key, lease));
                }
            }
            Outcome::Delete { .. } => seen[key] = None,
            // Whether it removed the key depends on what is attached now.
            Outcome::Revoke { .. } => seen[key] = None,
            Outcome::Failed(_) | Outcome::Unknown(_) => {
                // A lease put that may have landed: its lease is still worth revoking.
                if let (Kind::PutLease { lease, .. }, Outcome::Unknown(_)) = (&r.kind, &r.outcome) {
                    leased.push((key, *lease));
                }
                // Start over on a fresh connection after any error.
                conn = None;
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
            }
        }
        records.push(r);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
    }
    records
}

/// Watches every workload key on one member from revision 1 until `deadline`, through
/// whatever the faults do to the member: when the stream breaks it is opened again at the
/// revision after the last event received (as etcd clients resume).
pub async fn watcher(member: usize, url: String, deadline: Instant) -> WatchRun {
    let mut live = LiveWatch { member, ..Default::default() };
    let mut progress = Vec::new();
    let mut next = 1i64;
    let mut started = false;
    // Bounded: the deadline, and at most this many (re)connections.
    for _ in 0..10_000 {
        if Instant::now() >= deadline {
            break;
        }
        // No per-request timeout on this channel: a watch stream lives for the whole run.
        let endpoint = match Channel::from_shared(url.clone()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(1)),
            Err(e) => panic!("bad client URL {url}: {e}"),
        };
        let Ok(Ok(ch)) = tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: "rb/".into(),
                range_end: "rb0".into(),
                start_revision: next,
                ..Default::default()
            })),
        };
        if tx.send(create).await.is_err() {
            continue;
        }
        let mut client = WatchClient::new(ch);
        let opened = tokio::time::timeout(
            OP_TIMEOUT,
            client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await;
        let Ok(Ok(stream)) = opened else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if started {
            live.resumed += 1;
        }
        started = true;
        let mut stream = stream.into_inner();
        while Instant::now() < deadline {
            let msg = match tokio::time::timeout(Duration::from_millis(500), stream.message()).await
            {
                Err(_) => {
                    // Quiet: ask where the watch stands (a full queue just skips this ask),
                    // then look at the deadline again.
                    let _ = tx.try_send(WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                    });
                    continue;
                }
                Ok(Ok(Some(msg))) => msg,
                Ok(_) => break, // the member went away: resume
            };
            if msg.events.is_empty() && !msg.created && !msg.canceled && !msg.fragment {
                // A progress notification: every event up to this revision was sent.
                progress.push((live.events.len(), msg.header.as_ref().map_or(0, |h| h.revision)));
                continue;
            }
            if msg.canceled {
                live.errors.push(format!(
                    "m{}: watch from revision {next} canceled: {} (compact revision {})",
                    member + 1,
                    msg.cancel_reason,
                    msg.compact_revision
                ));
                break;
            }
            for e in msg.events {
                let kv = e.kv.unwrap_or_default();
                let value = (e.r#type == 0).then_some(kv.value.to_vec());
                next = next.max(kv.mod_revision + 1);
                live.events.push((kv.mod_revision, kv.key.to_vec(), value));
            }
        }
        drop(tx);
    }
    WatchRun { live, progress }
}

/// A watch kept open through the faults: its events, and the progress notifications it
/// received as (events received before it, the revision it claimed).
pub struct WatchRun {
    pub live: LiveWatch,
    pub progress: Vec<(usize, i64)>,
}

/// Lease keepers' leases are this short, so they do expire when their keeper's member is
/// cut off, and an early expiry shows.
pub const KEEPER_TTL: i64 = 5;

/// One lease a keeper granted, kept alive, and watched its key through. Times are
/// [`Clock`] nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct LeaseLife {
    pub member: usize,
    pub lease: i64,
    pub ttl: i64,
    pub key: String,
    /// When the grant was sent (the lease lives at least ttl past it).
    pub grant_invoke: u64,
    /// Keepalives answered with a TTL: (sent at, TTL).
    pub keepalives: Vec<(u64, i64)>,
    /// Linearizable reads of the key after the put was acknowledged:
    /// (invoked, returned, present).
    pub reads: Vec<(u64, u64, bool)>,
}

/// Sends one keepalive for `lease`; the TTL answered (0: the lease is gone), or None
/// when no answer came.
async fn keepalive(conn: &mut Conn, lease: i64) -> Option<i64> {
    let call = async {
        // The request stream stays open until the answer came (a stream that ends at once
        // may be closed before its answer is sent).
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(LeaseKeepAliveRequest { id: lease }).await.ok()?;
        let mut stream = conn
            .lease
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .ok()?
            .into_inner();
        let answer = stream.message().await.ok()?.map(|r| r.ttl);
        drop(tx);
        answer
    };
    tokio::time::timeout(OP_TIMEOUT, call).await.ok()?
}

/// A lease keeper on one member until `deadline`: grants a [`KEEPER_TTL`] lease, puts a
/// key of its own on it, then keeps it alive (one lease in three only for a few
/// keepalives, then lets it lapse) and reads the key every few hundred milliseconds; when the key is gone (or the lease is, or the answers stop coming for
/// longer than the TTL) it starts over with a new lease. Returns every lease's life.
pub async fn lease_keeper(
    member: usize,
    url: String,
    clock: Clock,
    deadline: Instant,
) -> Vec<LeaseLife> {
    let mut lives = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut life: Option<LeaseLife> = None;
    // How many keepalives the current lease gets before it is let lapse (None: all).
    let mut lapse_after: Option<usize> = None;
    // Bounded: the deadline, and at most this many rounds.
    for round in 0..100_000u64 {
        if Instant::now() >= deadline {
            break;
        }
        let Some(c) = conn.as_mut() else {
            conn = connect_conn(&url).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let Some(l) = life.as_mut() else {
            let grant_invoke = clock.now();
            let Some(lease) = tokio::time::timeout(
                OP_TIMEOUT,
                c.lease.lease_grant(LeaseGrantRequest { ttl: KEEPER_TTL, id: 0 }),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|r| r.into_inner().id) else {
                conn = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let key = format!("rl/m{}/{round}", member + 1);
            let put = tokio::time::timeout(
                OP_TIMEOUT,
                c.kv.put(PutRequest {
                    key: key.clone().into(),
                    value: "held".into(),
                    lease,
                    ..Default::default()
                }),
            )
            .await;
            // A put whose answer did not come may or may not hold the key: not followed.
            if matches!(put, Ok(Ok(_))) {
                lapse_after = (lives.len() % 3 == 0).then_some(lives.len() % 7);
                life = Some(LeaseLife {
                    member,
                    lease,
                    ttl: KEEPER_TTL,
                    key,
                    grant_invoke,
                    ..Default::default()
                });
            } else {
                conn = None;
            }
            continue;
        };
        let sent = clock.now();
        // One lease in three is let lapse after a few keepalives: its key must outlive
        // the TTL from the last one, then vanish.
        let lapsing = lapse_after.is_some_and(|n| l.keepalives.len() >= n);
        let answer = if lapsing { Some(-1) } else { keepalive(c, l.lease).await };
        let over = match answer {
            Some(-1) => false,
            Some(ttl) if ttl > 0 => {
                l.keepalives.push((sent, ttl));
                false
            }
            Some(_) => true, // the lease expired; the read below sees its key gone
            None => {
                conn = None;
                false
            }
        };
        if let Some(c) = conn.as_mut() {
            let invoke = clock.now();
            let read = tokio::time::timeout(
                OP_TIMEOUT,
                c.kv.range(RangeRequest { key: l.key.clone().into(), ..Default::default() }),
            )
            .await;
            match read {
                Ok(Ok(r)) => {
                    let present = !r.into_inner().kvs.is_empty();
                    l.reads.push((invoke, clock.now(), present));
                    if !present {
                        lives.push(life.take().unwrap());
                        continue;
                    }
                }
                _ => conn = None,
            }
        }
        // Given up on: not answered for longer than its TTL (it expires on its own).
        let last = l.keepalives.last().map_or(l.grant_invoke, |k| k.0);
        if over || clock.now().saturating_sub(last) > (KEEPER_TTL as u64 + 8) * 1_000_000_000 {
            lives.push(life.take().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    lives.extend(life);
    lives
}
