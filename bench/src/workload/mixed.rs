//! `mixed`: a Kubernetes-like profile, as kube-apiserver drives etcd.
//!
//! Objects live at `/registry/<resource>/<namespace>/<name>` with values of
//! 1–8 KiB. Each client owns the objects it creates and issues, per request:
//!
//! | class  | share | request |
//! |--------|-------|---------|
//! | create | 12 %  | Txn: if `create_revision == 0` then Put |
//! | update | 40 %  | Txn: if `mod_revision == known` then Put else Range (a GuaranteedUpdate) |
//! | delete |  8 %  | Txn: if `mod_revision == known` then DeleteRange |
//! | get    | 25 %  | Range of one object (seeded or own) |
//! | list   |  5 %  | paginated Range of a resource (namespace or cluster wide), limit 500, pinned to the first page's revision |
//! | event  | 10 %  | Put of an event key attached to a lease (events expire, as in Kubernetes) |
//!
//! One prefix watch per resource stays open for the whole run, as the
//! apiserver's watch cache keeps them. Seed objects are written before the
//! run so gets and lists find data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, request_op, response_op,
};
use tonic::transport::Channel;

use super::watch::Watchers;
use crate::cli::Consistency;
use crate::client::Pool;
use crate::driver::Workload;
use crate::keys::{Rng, prefix_end, random_value};

/// Resource types objects are spread over (events are written separately).
pub const RESOURCES: &[&str] =
    &["pods", "configmaps", "secrets", "services", "deployments", "leases"];
/// Page size of lists, as kube-apiserver pages with `limit=500`.
pub const LIST_LIMIT: i64 = 500;
/// Lists stop after this many pages, so one request stays bounded.
const MAX_PAGES: usize = 100;
/// A client keeps at most this many live objects; beyond it creates turn into deletes.
const MAX_LIVE: usize = 5_000;
const MIN_VALUE: u64 = 1024;
const MAX_VALUE: u64 = 8 * 1024;
/// Event leases (Kubernetes attaches events to leases it reuses for a while).
const EVENT_LEASES: usize = 4;
const EVENT_TTL: i64 = 3600;

/// Request classes in the order [`Workload::call`] reports them.
pub const CLASSES: [&str; 6] = ["create", "update", "delete", "get", "list", "event"];
/// Cumulative shares (percent) of the classes above.
const MIX: [u64; 6] = [12, 52, 60, 85, 90, 100];

/// The key of an object.
pub fn object_key(resource: &str, namespace: usize, name: &str) -> Bytes {
    Bytes::from(format!("/registry/{resource}/ns-{namespace}/{name}"))
}

/// Lists `prefix` as kube-apiserver does: pages of [`LIST_LIMIT`], every page after the
/// first at the first page's revision, at most `max_pages` of them.
pub async fn list_pages(
    kv: &mut KvClient<Channel>,
    prefix: String,
    serializable: bool,
    max_pages: usize,
) -> Result<(), tonic::Status> {
    let end = Bytes::from(prefix_end(prefix.as_bytes()));
    let mut start = Bytes::from(prefix);
    let mut revision = 0;
    for _ in 0..max_pages {
        let req = RangeRequest {
            key: start,
            range_end: end.clone(),
            limit: LIST_LIMIT,
            revision,
            serializable,
            ..Default::default()
        };
        let r = kv.range(req).await?.into_inner();
        if revision == 0 {
            revision = r.header.as_ref().map_or(0, |h| h.revision);
        }
        match (r.more, r.kvs.last()) {
            (true, Some(last)) => {
                let mut next = last.key.to_vec();
                next.push(0);
                start = Bytes::from(next);
            }
            _ => break,
        }
    }
    Ok(())
}

/// The Kubernetes-like mix.
pub struct Mixed {
    pool: Pool,
    namespaces: usize,
    seeds: u64,
    consistency: Consistency,
    /// Random bytes values are sliced from (slicing `Bytes` copies nothing).
    blob: Bytes,
    leases: Vec<i64>,
    watchers: Vec<Watchers>,
    /// Events the watchers had seen when the run started.
    events_at_start: AtomicU64,
}

/// One client's view: its connection and the objects it owns.
pub struct State {
    kv: KvClient<Channel>,
    rng: Rng,
    client: usize,
    next: u64,
    /// Owned objects and the mod revision last seen for each.
    live: Vec<(Bytes, i64)>,
}

impl Mixed {
    /// Writes `seeds` seed objects, grants the event leases and opens one
    /// prefix watch per resource.
    pub async fn setup(
        pool: Pool,
        namespaces: usize,
        seeds: u64,
        consistency: Consistency,
    ) -> Result<Self> {
        let namespaces = namespaces.max(1);
        let blob = random_value(MAX_VALUE as usize, &mut Rng::new(0x6b8));
        futures::stream::iter(0..seeds)
            .map(|i| {
                let mut kv = pool.kv(i as usize);
                let key = seed_key(i, namespaces);
                let value = blob.slice(..(MIN_VALUE + i % (MAX_VALUE - MIN_VALUE)) as usize);
                async move { kv.put(PutRequest { key, value, ..Default::default() }).await }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<_>>()
            .await
            .context("writing seed objects")?;
        let mut leases = Vec::new();
        let mut lc = pool.lease(0);
        for _ in 0..EVENT_LEASES {
            match lc.lease_grant(LeaseGrantRequest { ttl: EVENT_TTL, id: 0 }).await {
                Ok(r) => leases.push(r.into_inner().id),
                // A server without leases still gets the rest of the mix;
                // events are then written without one (see `leases_missing`).
                Err(s) if s.code() == tonic::Code::Unimplemented => break,
                Err(s) => return Err(anyhow::Error::new(s).context("granting a lease")),
            }
        }
        let mut watchers = Vec::new();
        for (i, res) in RESOURCES.iter().chain(&["events"]).enumerate() {
            let prefix = format!("/registry/{res}/");
            let end = Bytes::from(prefix_end(prefix.as_bytes()));
            watchers.push(
                Watchers::open(&pool, Bytes::from(prefix), end, 1, 1, None)
                    .await
                    .map_err(|e| e.context(format!("opening watch {i}")))?,
            );
        }
        let events = watchers.iter().map(Watchers::events).sum();
        Ok(Mixed {
            pool,
            namespaces,
            seeds,
            consistency,
            blob,
            leases,
            watchers,
            events_at_start: AtomicU64::new(events),
        })
    }

    /// True when the server refused to grant leases (Unimplemented), so
    /// events were written without one.
    pub fn leases_missing(&self) -> bool {
        self.leases.is_empty()
    }

    /// Watch events received since setup.
    pub fn watch_events(&self) -> u64 {
        let now: u64 = self.watchers.iter().map(Watchers::events).sum();
        now - self.events_at_start.load(Ordering::Relaxed)
    }

    /// Closes the watches and revokes the event leases (deleting the events).
    pub async fn finish(self: Arc<Self>) -> Result<()> {
        let mut lc = self.pool.lease(0);
        for &id in &self.leases {
            lc.lease_revoke(LeaseRevokeRequest { id }).await.context("revoking an event lease")?;
        }
        if let Ok(me) = Arc::try_unwrap(self) {
            for w in me.watchers {
                w.close();
            }
        }
        Ok(())
    }

    fn value(&self, rng: &mut Rng) -> Bytes {
        self.blob.slice(..rng.between(MIN_VALUE, MAX_VALUE) as usize)
    }

    fn serializable(&self) -> bool {
        self.consistency == Consistency::Serializable
    }
}

fn seed_key(i: u64, namespaces: usize) -> Bytes {
    let res = RESOURCES[i as usize % RESOURCES.len()];
    object_key(res, (i / RESOURCES.len() as u64) as usize % namespaces, &format!("seed-{i}"))
}

fn put_op(key: Bytes, value: Bytes, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key,
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn compare(key: &Bytes, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.clone(),
        range_end: Bytes::new(),
        target_union: Some(union),
    }
}

impl Mixed {
    async fn create(&self, st: &mut State) -> Result<(), tonic::Status> {
        let res = RESOURCES[st.rng.below(RESOURCES.len() as u64) as usize];
        let ns = st.rng.below(self.namespaces as u64) as usize;
        let key = object_key(res, ns, &format!("c{}-{}", st.client, st.next));
        st.next += 1;
        let txn = TxnRequest {
            compare: vec![compare(&key, CompareTarget::Create, TargetUnion::CreateRevision(0))],
            success: vec![put_op(key.clone(), self.value(&mut st.rng), 0)],
            failure: vec![],
        };
        let r = st.kv.txn(txn).await?.into_inner();
        if r.succeeded {
            st.live.push((key, r.header.map_or(0, |h| h.revision)));
        }
        Ok(())
    }

    async fn update(&self, st: &mut State) -> Result<(), tonic::Status> {
        let i = st.rng.below(st.live.len() as u64) as usize;
        let (key, rev) = st.live[i].clone();
        let read = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })),
        };
        let txn = TxnRequest {
            compare: vec![compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(rev))],
            success: vec![put_op(key.clone(), self.value(&mut st.rng), 0)],
            failure: vec![read],
        };
        let r = st.kv.txn(txn).await?.into_inner();
        if r.succeeded {
            st.live[i].1 = r.header.map_or(0, |h| h.revision);
        } else {
            // Conflict: take the current revision, as GuaranteedUpdate retries do.
            let current = r.responses.into_iter().find_map(|op| match op.response {
                Some(response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
                _ => None,
            });
            match current {
                Some(kv) => st.live[i].1 = kv.mod_revision,
                None => {
                    st.live.swap_remove(i);
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, st: &mut State) -> Result<(), tonic::Status> {
        let i = st.rng.below(st.live.len() as u64) as usize;
        let (key, rev) = st.live.swap_remove(i);
        let del = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            })),
        };
        let txn = TxnRequest {
            compare: vec![compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(rev))],
            success: vec![del],
            failure: vec![],
        };
        st.kv.txn(txn).await?;
        Ok(())
    }

    async fn get(&self, st: &mut State) -> Result<(), tonic::Status> {
        let key = if st.live.is_empty() || (self.seeds > 0 && st.rng.chance(0.5)) {
            seed_key(st.rng.below(self.seeds.max(1)), self.namespaces)
        } else {
            st.live[st.rng.below(st.live.len() as u64) as usize].0.clone()
        };
        st.kv
            .range(RangeRequest { key, serializable: self.serializable(), ..Default::default() })
            .await?;
        Ok(())
    }

    async fn list(&self, st: &mut State) -> Result<(), tonic::Status> {
        let res = RESOURCES[st.rng.below(RESOURCES.len() as u64) as usize];
        let prefix = if st.rng.chance(0.8) {
            format!("/registry/{res}/ns-{}/", st.rng.below(self.namespaces as u64))
        } else {
            format!("/registry/{res}/")
        };
        list_pages(&mut st.kv, prefix, self.serializable(), MAX_PAGES).await
    }

    async fn event(&self, st: &mut State) -> Result<(), tonic::Status> {
        let ns = st.rng.below(self.namespaces as u64) as usize;
        let key = object_key("events", ns, &format!("c{}-e{}", st.client, st.next));
        st.next += 1;
        let lease = if self.leases.is_empty() {
            0
        } else {
            self.leases[st.rng.below(self.leases.len() as u64) as usize]
        };
        let value = self.value(&mut st.rng);
        st.kv.put(PutRequest { key, value, lease, ..Default::default() }).await?;
        Ok(())
    }
}

impl Workload for Mixed {
    type State = State;

    fn classes(&self) -> Vec<&'static str> {
        CLASSES.to_vec()
    }

    fn state(&self, client: usize) -> State {
        State {
            kv: self.pool.kv(client),
            rng: Rng::new(client as u64 + 1),
            client,
            next: 0,
            live: Vec::new(),
        }
    }

    async fn call(&self, st: &mut State, _seq: u64) -> Result<usize, tonic::Status> {
        let roll = st.rng.below(100);
        let mut class = MIX.iter().position(|&m| roll < m).expect("mix covers 0..100");
        // Updates and deletes need an object; a full client deletes instead of creating.
        if (class == 1 || class == 2) && st.live.is_empty() {
            class = 0;
        } else if class == 0 && st.live.len() >= MAX_LIVE {
            class = 2;
        }
        match class {
            0 => self.create(st).await?,
            1 => self.update(st).await?,
            2 => self.delete(st).await?,
            3 => self.get(st).await?,
            4 => self.list(st).await?,
            _ => self.event(st).await?,
        }
        Ok(class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_cumulative_and_complete() {
        assert_eq!(MIX.len(), CLASSES.len());
        assert!(MIX.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*MIX.last().unwrap(), 100);
    }

    #[test]
    fn keys_look_like_kubernetes() {
        assert_eq!(&object_key("pods", 3, "web-1")[..], b"/registry/pods/ns-3/web-1");
        assert!(seed_key(7, 10).starts_with(b"/registry/"));
    }
}
