//! Concurrent clients against every member: puts of unique values, linearizable and
//! serializable gets, deletes and compare-and-set txns on a few keys, every operation
//! recorded in a [`Record`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::request_op::Request as ReqOp;
use logbook_api::etcdserverpb::response_op::Response as RespOp;
use logbook_api::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use super::history::{Kind, Outcome, Record};
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

pub async fn connect(url: &str) -> Option<KvClient<Channel>> {
    let endpoint = Channel::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(OP_TIMEOUT);
    let channel =
        tokio::time::timeout(Duration::from_secs(2), endpoint.connect()).await.ok()?.ok()?;
    Some(KvClient::new(channel))
}

/// Runs one operation and records it.
pub async fn run_op(
    kv: &mut KvClient<Channel>,
    clock: Clock,
    client: usize,
    member: usize,
    key: usize,
    kind: Kind,
) -> Record {
    let invoke = clock.now();
    let name = key_name(key);
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
    let mut kv: Option<KvClient<Channel>> = None;
    // The last value this client saw per key, for its compare-and-set guesses.
    let mut seen: Vec<Option<u64>> = vec![None; KEYS];
    // Bounded: the deadline, and at most this many operations.
    for _ in 0..200_000 {
        if Instant::now() >= deadline {
            break;
        }
        let Some(client) = kv.as_mut() else {
            kv = connect(&url).await;
            if kv.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        let key = rng.random_range(0..KEYS);
        let roll = rng.random_range(0..100);
        let kind = match roll {
            0..30 => Kind::Put { value: next_value.fetch_add(1, Ordering::SeqCst) },
            30..55 => Kind::Get { serializable: false },
            55..70 => Kind::Get { serializable: true },
            70..78 => Kind::Delete,
            _ => Kind::Cas { expect: seen[key], new: next_value.fetch_add(1, Ordering::SeqCst) },
        };
        let r = run_op(client, clock, id, member, key, kind).await;
        match &r.outcome {
            Outcome::Get { value, .. } => seen[key] = *value,
            Outcome::Cas { succeeded: false, got, .. } => seen[key] = *got,
            Outcome::Cas { succeeded: true, .. } | Outcome::Put { .. } => {
                if let Kind::Put { value } | Kind::Cas { new: value, .. } = r.kind {
                    seen[key] = Some(value);
                }
            }
            Outcome::Delete { .. } => seen[key] = None,
            Outcome::Failed(_) | Outcome::Unknown(_) => {
                // Start over on a fresh connection after any error.
                kv = None;
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..100))).await;
            }
        }
        records.push(r);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
    }
    records
}
