//! `kubernetes`: what a control plane of N nodes with P pods each sends its
//! store, driven open loop at the model's rates (not as fast as possible).
//!
//! The model ([`Model`]) comes from a recording of a real kube-apiserver
//! v1.37.2 with its controller manager and scheduler on Logbook
//! (`--request-log`; `tests/kubernetes_profile.rs`); the recording's summary
//! and how each rate was derived are in docs/bench-kubernetes-profile.md.
//! Every write is a Txn of the apiserver's shapes:
//!
//! | class | request | rate |
//! |---|---|---|
//! | lease-renew | Txn `mod_revision == r` then Put else Range, a node's Lease | one per node every 10 s |
//! | node-status | the same, a Node object | one per node every [`Model::node_status_period_s`] |
//! | pod-create | Txn `mod_revision == 0` then Put, a Pod | the churn: pods × `churn_per_hour` / 3600 |
//! | pod-update | Txn `mod_revision == r` then Put else Range | [`Model::pod_updates`] per pod created |
//! | pod-delete | Txn `mod_revision == r` then DeleteRange else Range | one per pod created |
//! | event | Txn `mod_revision == 0` then Put with the event lease | [`Model::events_per_pod`] per pod created, plus per node |
//! | get | Range of one object | [`Model::gets_per_s`] |
//! | list | paginated Range of a resource, `limit=500`, later pages at the first page's revision | [`Model::lists_per_s`] |
//!
//! Beside the request classes, as the apiserver does: one prefix watch per
//! resource open all along; the event lease re-granted every
//! [`Model::lease_reuse`] (kube-apiserver's `--lease-reuse-duration-seconds`);
//! and a compaction every `compact_interval` (the apiserver's
//! `--etcd-compaction-interval`, 5 min, scaled down for a bench run): a Txn on
//! `compact_rev_key` then Compact to the revision of the previous round.
//!
//! `mutating` summarizes every write class; `list` the paginated lists (each
//! measured over all its pages).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, request_op, response_op,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::watch::Watchers;
use crate::client::Pool;
use crate::driver::Workload;
use crate::keys::{Rng, prefix_end, random_value};

/// Request classes, in the order [`Workload::call`] reports them.
pub const CLASSES: [&str; 8] = [
    "lease-renew",
    "node-status",
    "pod-create",
    "pod-update",
    "pod-delete",
    "event",
    "get",
    "list",
];
/// The classes that write (the `mutating` summary).
pub const MUTATING: [usize; 6] = [0, 1, 2, 3, 4, 5];
const LIST: usize = 7;
/// Page size of lists, as kube-apiserver pages with `limit=500`.
pub const LIST_LIMIT: i64 = 500;
/// Lists stop after this many pages, so one request stays bounded.
const MAX_PAGES: usize = 1000;
/// Namespaces pods are spread over.
const NAMESPACES: usize = 20;
/// Resources with a prefix watch open all along.
const WATCHED: &[&str] = &["pods", "nodes", "leases", "events", "configmaps", "services"];
/// The TTL of event leases (kube-apiserver's `--event-ttl`, 1 h).
const EVENT_TTL: i64 = 3600;

/// The rates and sizes of the model, per node and per pod (see the module doc
/// and docs/bench-kubernetes-profile.md for where each comes from).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// A kubelet renews its node's Lease this often.
    pub lease_renew_period_s: f64,
    /// A kubelet writes its Node's status this often when nothing changes
    /// (`nodeStatusReportFrequency`).
    pub node_status_period_s: f64,
    /// Pods replaced per hour, as a fraction of all pods.
    pub churn_per_hour: f64,
    /// Updates of a pod over its life (binding, status changes, deletion mark).
    pub pod_updates: f64,
    /// Events written per pod created (scheduler, kubelet, controllers).
    pub events_per_pod: f64,
    /// Single-object reads that reach the store, per second (most are served
    /// by the apiserver's watch cache).
    pub gets_per_s: f64,
    /// Paginated lists that reach the store, per second.
    pub lists_per_s: f64,
    /// Value sizes, bytes.
    pub lease_bytes: usize,
    pub node_bytes: usize,
    pub pod_bytes: usize,
    pub event_bytes: usize,
    /// The event lease is re-granted this often.
    #[serde(with = "secs")]
    pub lease_reuse: Duration,
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v: f64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    }
}

impl Default for Model {
    fn default() -> Self {
        Model {
            lease_renew_period_s: 10.0,
            node_status_period_s: 300.0,
            churn_per_hour: 0.8,
            pod_updates: 6.0,
            events_per_pod: 6.0,
            gets_per_s: 0.5,
            lists_per_s: 0.05,
            lease_bytes: 280,
            node_bytes: 4_500,
            pod_bytes: 3_300,
            event_bytes: 700,
            lease_reuse: Duration::from_secs(60),
        }
    }
}

/// Rates per class (requests per second) for a cluster size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub per_class: Vec<(String, f64)>,
    pub total: f64,
    /// Pods created (and deleted) per second.
    pub churn: f64,
}

impl Model {
    /// The rate of each class for `nodes` nodes of `pods_per_node` pods.
    pub fn rates(&self, nodes: usize, pods_per_node: usize) -> Rates {
        let n = nodes as f64;
        let pods = n * pods_per_node as f64;
        let churn = pods * self.churn_per_hour / 3600.0;
        let rates = [
            n / self.lease_renew_period_s,
            n / self.node_status_period_s,
            churn,
            churn * self.pod_updates,
            churn,
            churn * self.events_per_pod,
            self.gets_per_s,
            self.lists_per_s,
        ];
        let total = rates.iter().sum();
        Rates {
            per_class: CLASSES.iter().zip(rates).map(|(c, r)| (c.to_string(), r)).collect(),
            total,
            churn,
        }
    }

    fn cumulative(&self, nodes: usize, pods_per_node: usize) -> [f64; CLASSES.len()] {
        let r = self.rates(nodes, pods_per_node);
        let mut acc = 0.0;
        let mut out = [0.0; CLASSES.len()];
        for (i, (_, rate)) in r.per_class.iter().enumerate() {
            acc += rate / r.total.max(1e-12);
            out[i] = acc;
        }
        out[CLASSES.len() - 1] = 1.0;
        out
    }
}

/// The key of an object.
fn key(resource: &str, ns: &str, name: &str) -> Bytes {
    Bytes::from(format!("/registry/{resource}/{ns}/{name}"))
}

fn node_key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/minions/node-{i}"))
}

fn lease_key(i: usize) -> Bytes {
    key("leases", "kube-node-lease", &format!("node-{i}"))
}

/// The control plane's load on its store.
pub struct Kubernetes {
    pool: Pool,
    model: Model,
    nodes: usize,
    clients: usize,
    cumulative: [f64; CLASSES.len()],
    blob: Bytes,
    /// Mod revisions of the node Leases and of the Nodes.
    lease_revs: Vec<AtomicI64>,
    node_revs: Vec<AtomicI64>,
    next_lease: AtomicU64,
    next_node: AtomicU64,
    /// The pods each client owns (`pods[c]`): taken by client `c`'s state
    /// when it starts and given back when it is dropped, so what a run leaves
    /// (created less deleted) goes on to the next ([`Kubernetes::objects`]).
    pods: PodsByClient,
    /// Pods and events a run creates are named after it, so no run
    /// re-creates an object an earlier one left in the store.
    run: u64,
    seeded_pods: usize,
    /// The lease events are attached to now.
    event_lease: Arc<AtomicI64>,
    watchers: Vec<Watchers>,
    background: Vec<JoinHandle<()>>,
    compactions: Arc<AtomicU64>,
}

/// The pods (key, mod revision) each client owns, by client.
type PodsByClient = Arc<std::sync::Mutex<Vec<Vec<(Bytes, i64)>>>>;

/// One client's view: its connection and the pods it owns.
pub struct State {
    kv: KvClient<Channel>,
    rng: Rng,
    client: usize,
    run: u64,
    next: u64,
    pods: Vec<(Bytes, i64)>,
    /// Where the pods go back when the client is done.
    home: PodsByClient,
    slot: usize,
}

impl Drop for State {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut self.pods);
        if let Ok(mut home) = self.home.lock()
            && let Some(slot) = home.get_mut(self.slot)
        {
            slot.extend(pods);
        }
    }
}

/// The objects of a modelled cluster that are in the store, with their mod
/// revisions: what one run (a capacity step) leaves for the next, so that a
/// bigger cluster writes only its new nodes' objects ([`Objects::resize`]) and
/// a ramp's seeding costs its final size, not the sum of its steps.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    /// Mod revisions of node `i`'s Lease and Node.
    lease_revs: Vec<i64>,
    node_revs: Vec<i64>,
    /// `seed-<i>` pods written so far (some may have been deleted since).
    seeded_pods: usize,
    /// The live pods: seeded, or created by a run and not deleted by one.
    pods: Vec<(Bytes, i64)>,
    /// Runs that used these objects.
    runs: u64,
}

impl Objects {
    /// Nodes in the store.
    pub fn nodes(&self) -> usize {
        self.node_revs.len()
    }

    /// Live pods.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Makes the store hold a cluster of `nodes` nodes with `pods_per_node`
    /// pods each, writing only what these objects lack: the new nodes' Leases
    /// and Nodes, and new pods (`seed-<i>`, numbered on from the last one
    /// written) up to `nodes × pods_per_node` live pods. Objects already
    /// there are not written again. A smaller cluster than the objects (a
    /// ramp halving after a first step past its objectives) deletes the
    /// surplus nodes, their Leases and pods. Returns the writes made.
    pub async fn resize(
        &mut self,
        pool: &Pool,
        model: &Model,
        nodes: usize,
        pods_per_node: usize,
        quiet: bool,
    ) -> Result<u64> {
        let blob = blob(model);
        let put = |key: Bytes, len: usize| {
            let mut kv = pool.kv(key.len());
            let value = blob.slice(..len);
            async move {
                let r = kv.put(PutRequest { key, value, ..Default::default() }).await?;
                Ok::<_, tonic::Status>(r.into_inner().header.map_or(0, |h| h.revision))
            }
        };
        let delete = |key: Bytes| {
            let mut kv = pool.kv(key.len());
            async move {
                kv.delete_range(DeleteRangeRequest { key, ..Default::default() }).await?;
                Ok::<_, tonic::Status>(())
            }
        };
        let have = self.nodes();
        let target = nodes * pods_per_node;
        let new_nodes = nodes.saturating_sub(have);
        let new_pods = target.saturating_sub(self.pods.len());
        let mut writes = 0u64;
        if nodes < have {
            let gone: Vec<Bytes> = (nodes..have)
                .flat_map(|i| [lease_key(i), node_key(i)])
                .chain(self.pods.split_off(target.min(self.pods.len())).into_iter().map(|(k, _)| k))
                .collect();
            if !quiet {
                eprintln!("kubernetes: deleting {} objects beyond {nodes} nodes", gone.len());
            }
            writes += gone.len() as u64;
            futures::stream::iter(gone)
                .map(delete)
                .buffer_unordered(64)
                .try_collect::<()>()
                .await
                .context("deleting surplus objects")?;
            self.lease_revs.truncate(nodes);
            self.node_revs.truncate(nodes);
        }
        if !quiet && new_nodes + new_pods > 0 {
            eprintln!(
                "kubernetes: writing {new_nodes} nodes, their leases and {new_pods} pods \
                 ({have} nodes already there)"
            );
        }
        let lease_revs: Vec<i64> = futures::stream::iter(have..have + new_nodes)
            .map(|i| put(lease_key(i), model.lease_bytes))
            .buffered(64)
            .try_collect()
            .await
            .context("writing node leases")?;
        self.lease_revs.extend(lease_revs);
        let node_revs: Vec<i64> = futures::stream::iter(have..have + new_nodes)
            .map(|i| put(node_key(i), model.node_bytes))
            .buffered(64)
            .try_collect()
            .await
            .context("writing nodes")?;
        self.node_revs.extend(node_revs);
        let first = self.seeded_pods;
        let pod_keys: Vec<Bytes> = (first..first + new_pods)
            .map(|i| key("pods", &format!("ns-{}", i % NAMESPACES), &format!("seed-{i}")))
            .collect();
        let pod_revs: Vec<i64> = futures::stream::iter(pod_keys.clone())
            .map(|k| put(k, model.pod_bytes))
            .buffered(64)
            .try_collect()
            .await
            .context("writing pods")?;
        self.seeded_pods += new_pods;
        self.pods.extend(pod_keys.into_iter().zip(pod_revs));
        Ok(writes + (2 * new_nodes + new_pods) as u64)
    }
}

/// The bytes every value is a slice of.
fn blob(model: &Model) -> Bytes {
    random_value(
        model.pod_bytes.max(model.node_bytes).max(model.event_bytes).max(model.lease_bytes),
        &mut Rng::new(0x8c5),
    )
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

fn get_op(key: Bytes) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

/// The mod revision a failed GuaranteedUpdate read back (0 when the key is gone).
fn read_back(r: &logbook_api::etcdserverpb::TxnResponse) -> i64 {
    r.responses
        .iter()
        .find_map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(rr)) => {
                rr.kvs.first().map(|kv| kv.mod_revision)
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// How `logbook bench kubernetes` sizes and paces a run.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub clients: usize,
    pub compact_interval: Duration,
}

impl Kubernetes {
    /// Writes what the cluster's objects (nodes, their leases, the pods)
    /// lack in `objects` ([`Objects::resize`]), grants the event lease, opens
    /// the watches and starts the lease re-grant and compaction loops. Returns
    /// the workload and the puts written before it.
    pub async fn setup(
        pool: Pool,
        model: Model,
        shape: &Shape,
        mut objects: Objects,
        quiet: bool,
    ) -> Result<(Self, u64)> {
        let nodes = shape.nodes.max(1);
        let clients = shape.clients.max(1);
        let seeded = objects.resize(&pool, &model, nodes, shape.pods_per_node, quiet).await?;
        let blob = blob(&model);
        let mut pods = vec![Vec::new(); clients];
        for (i, p) in std::mem::take(&mut objects.pods).into_iter().enumerate() {
            pods[i % clients].push(p);
        }

        let mut lc = pool.lease(0);
        let first = lc
            .lease_grant(LeaseGrantRequest { ttl: EVENT_TTL, id: 0 })
            .await
            .context("granting the event lease")?
            .into_inner()
            .id;
        let event_lease = Arc::new(AtomicI64::new(first));
        let mut watchers = Vec::new();
        for res in WATCHED {
            let prefix = format!("/registry/{res}/");
            let end = Bytes::from(prefix_end(prefix.as_bytes()));
            watchers.push(
                Watchers::open(&pool, Bytes::from(prefix), end, 1, 1, None)
                    .await
                    .with_context(|| format!("opening the {res} watch"))?,
            );
        }
        let compactions = Arc::new(AtomicU64::new(0));
        let background = vec![
            tokio::spawn(regrant(pool.clone(), event_lease.clone(), model.lease_reuse)),
            tokio::spawn(compact(pool.clone(), shape.compact_interval, compactions.clone())),
        ];
        let w = Kubernetes {
            cumulative: model.cumulative(nodes, shape.pods_per_node),
            pool,
            model,
            nodes,
            clients,
            blob,
            lease_revs: objects.lease_revs.into_iter().map(AtomicI64::new).collect(),
            node_revs: objects.node_revs.into_iter().map(AtomicI64::new).collect(),
            next_lease: AtomicU64::new(0),
            next_node: AtomicU64::new(0),
            pods: Arc::new(std::sync::Mutex::new(pods)),
            run: objects.runs,
            seeded_pods: objects.seeded_pods,
            event_lease,
            watchers,
            background,
            compactions,
        };
        Ok((w, seeded))
    }

    /// The objects in the store now, for the next run: call it once the
    /// run's clients are done (their states give their pods back when dropped).
    pub fn objects(&self) -> Objects {
        let pods = self.pods.lock().expect("pods lock").iter().flatten().cloned().collect();
        Objects {
            lease_revs: self.lease_revs.iter().map(|r| r.load(Ordering::Relaxed)).collect(),
            node_revs: self.node_revs.iter().map(|r| r.load(Ordering::Relaxed)).collect(),
            seeded_pods: self.seeded_pods,
            pods,
            runs: self.run + 1,
        }
    }

    /// Compactions run so far.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    /// Watch events received so far on the resource watches.
    pub fn watch_events(&self) -> u64 {
        self.watchers.iter().map(Watchers::events).sum()
    }

    /// Stops the background loops and closes the watches.
    pub fn finish(self: Arc<Self>) {
        for b in &self.background {
            b.abort();
        }
        if let Ok(me) = Arc::try_unwrap(self) {
            for w in me.watchers {
                w.close();
            }
        }
    }

    /// A guarded update (GuaranteedUpdate's Txn) of `key` at `rev` in `revs[i]`.
    async fn guarded_put(
        &self,
        st: &mut State,
        key: Bytes,
        rev: &AtomicI64,
        len: usize,
    ) -> Result<(), tonic::Status> {
        let known = rev.load(Ordering::Relaxed);
        let txn = TxnRequest {
            compare: vec![compare(&key, CompareTarget::Mod, TargetUnion::ModRevision(known))],
            success: vec![put_op(key.clone(), self.blob.slice(..len), 0)],
            failure: vec![get_op(key)],
        };
        let r = st.kv.txn(txn).await?.into_inner();
        let now = if r.succeeded { r.header.map_or(0, |h| h.revision) } else { read_back(&r) };
        rev.store(now, Ordering::Relaxed);
        Ok(())
    }

    async fn pod_create(&self, st: &mut State) -> Result<(), tonic::Status> {
        let ns = format!("ns-{}", st.rng.below(NAMESPACES as u64));
        let k = key("pods", &ns, &format!("p{}-{}-{}", st.run, st.client, st.next));
        st.next += 1;
        let txn = TxnRequest {
            compare: vec![compare(&k, CompareTarget::Mod, TargetUnion::ModRevision(0))],
            success: vec![put_op(k.clone(), self.blob.slice(..self.model.pod_bytes), 0)],
            failure: vec![],
        };
        let r = st.kv.txn(txn).await?.into_inner();
        if r.succeeded {
            st.pods.push((k, r.header.map_or(0, |h| h.revision)));
        }
        Ok(())
    }

    async fn pod_update(&self, st: &mut State) -> Result<(), tonic::Status> {
        let i = st.rng.below(st.pods.len() as u64) as usize;
        let (k, known) = st.pods[i].clone();
        let txn = TxnRequest {
            compare: vec![compare(&k, CompareTarget::Mod, TargetUnion::ModRevision(known))],
            success: vec![put_op(k.clone(), self.blob.slice(..self.model.pod_bytes), 0)],
            failure: vec![get_op(k)],
        };
        let r = st.kv.txn(txn).await?.into_inner();
        st.pods[i].1 = if r.succeeded { r.header.map_or(0, |h| h.revision) } else { read_back(&r) };
        Ok(())
    }

    async fn pod_delete(&self, st: &mut State) -> Result<(), tonic::Status> {
        let i = st.rng.below(st.pods.len() as u64) as usize;
        let (k, known) = st.pods.swap_remove(i);
        let del = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.clone(),
                ..Default::default()
            })),
        };
        let txn = TxnRequest {
            compare: vec![compare(&k, CompareTarget::Mod, TargetUnion::ModRevision(known))],
            success: vec![del],
            failure: vec![get_op(k)],
        };
        st.kv.txn(txn).await?;
        Ok(())
    }

    async fn event(&self, st: &mut State) -> Result<(), tonic::Status> {
        let ns = format!("ns-{}", st.rng.below(NAMESPACES as u64));
        let k = key("events", &ns, &format!("e{}-{}-{}", st.run, st.client, st.next));
        st.next += 1;
        let lease = self.event_lease.load(Ordering::Relaxed);
        let txn = TxnRequest {
            compare: vec![compare(&k, CompareTarget::Mod, TargetUnion::ModRevision(0))],
            success: vec![put_op(k, self.blob.slice(..self.model.event_bytes), lease)],
            failure: vec![],
        };
        st.kv.txn(txn).await?;
        Ok(())
    }

    async fn get(&self, st: &mut State) -> Result<(), tonic::Status> {
        let i = st.rng.below(self.nodes as u64) as usize;
        st.kv.range(RangeRequest { key: node_key(i), ..Default::default() }).await?;
        Ok(())
    }

    /// A paginated list of pods (cluster wide, as the controllers' and
    /// scheduler's reflectors list), pages after the first at its revision.
    async fn list(&self, st: &mut State) -> Result<(), tonic::Status> {
        super::mixed::list_pages(&mut st.kv, "/registry/pods/".to_string(), false, MAX_PAGES).await
    }
}

/// Re-grants the event lease every `every`, as the apiserver's lease manager does.
async fn regrant(pool: Pool, lease: Arc<AtomicI64>, every: Duration) {
    let mut lc = pool.lease(0);
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        if let Ok(r) = lc.lease_grant(LeaseGrantRequest { ttl: EVENT_TTL, id: 0 }).await {
            lease.store(r.into_inner().id, Ordering::Relaxed);
        }
    }
}

/// The apiserver's compactor: every `every`, bump `compact_rev_key` (a Txn
/// guarded on its version) and compact to the revision the previous round saw.
async fn compact(pool: Pool, every: Duration, done: Arc<AtomicU64>) {
    let mut kv = pool.kv(0);
    let key = Bytes::from_static(b"compact_rev_key");
    let every = every.max(Duration::from_millis(100));
    let mut version = 0i64;
    let mut previous = 0i64;
    loop {
        tokio::time::sleep(every).await;
        let txn = TxnRequest {
            compare: vec![compare(&key, CompareTarget::Version, TargetUnion::Version(version))],
            success: vec![put_op(key.clone(), Bytes::new(), 0)],
            failure: vec![get_op(key.clone())],
        };
        let Ok(r) = kv.txn(txn).await else { continue };
        let r = r.into_inner();
        let current = r.header.as_ref().map_or(0, |h| h.revision);
        if r.succeeded {
            version += 1;
        } else {
            version = r
                .responses
                .iter()
                .find_map(|op| match &op.response {
                    Some(response_op::Response::ResponseRange(rr)) => {
                        rr.kvs.first().map(|kv| kv.version)
                    }
                    _ => None,
                })
                .unwrap_or(0);
            continue;
        }
        if previous > 0
            && kv.compact(CompactionRequest { revision: previous, physical: false }).await.is_ok()
        {
            done.fetch_add(1, Ordering::Relaxed);
        }
        previous = current;
    }
}

impl Workload for Kubernetes {
    type State = State;

    fn classes(&self) -> Vec<&'static str> {
        CLASSES.to_vec()
    }

    fn groups(&self) -> Vec<(&'static str, Vec<usize>)> {
        vec![("mutating", MUTATING.to_vec())]
    }

    fn state(&self, client: usize) -> State {
        let slot = client % self.clients;
        let pods = self
            .pods
            .lock()
            .expect("pods lock")
            .get_mut(slot)
            .map(std::mem::take)
            .unwrap_or_default();
        State {
            kv: self.pool.kv(client),
            rng: Rng::new(client as u64 + 7 + (self.run << 32)),
            client,
            run: self.run,
            next: 0,
            pods,
            home: self.pods.clone(),
            slot,
        }
    }

    async fn call(&self, st: &mut State, _seq: u64) -> Result<usize, tonic::Status> {
        let roll = (st.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut class = self.cumulative.iter().position(|&c| roll < c).unwrap_or(LIST);
        // Updates and deletes need a pod of this client's.
        if (class == 3 || class == 4) && st.pods.is_empty() {
            class = 2;
        }
        match class {
            0 => {
                let i = self.next_lease.fetch_add(1, Ordering::Relaxed) as usize % self.nodes;
                let len = self.model.lease_bytes;
                self.guarded_put(st, lease_key(i), &self.lease_revs[i], len).await?
            }
            1 => {
                let i = self.next_node.fetch_add(1, Ordering::Relaxed) as usize % self.nodes;
                let len = self.model.node_bytes;
                self.guarded_put(st, node_key(i), &self.node_revs[i], len).await?
            }
            2 => self.pod_create(st).await?,
            3 => self.pod_update(st).await?,
            4 => self.pod_delete(st).await?,
            5 => self.event(st).await?,
            6 => self.get(st).await?,
            _ => self.list(st).await?,
        }
        Ok(class)
    }
}

/// How long a run of `duration` waits before its first compaction at most:
/// the apiserver's 5 min, scaled so a short run sees a few.
pub fn scaled_compact_interval(duration: Duration) -> Duration {
    (duration / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_nodes_and_pods() {
        let m = Model::default();
        let r = m.rates(5000, 30);
        let rate = |c: &str| r.per_class.iter().find(|(n, _)| n == c).unwrap().1;
        assert_eq!(rate("lease-renew"), 500.0);
        assert!((r.churn - 150_000.0 * 0.8 / 3600.0).abs() < 1e-9);
        assert_eq!(rate("pod-delete"), rate("pod-create"));
        let sum: f64 = r.per_class.iter().map(|(_, v)| v).sum();
        assert!((sum - r.total).abs() < 1e-9);
        // Twice the nodes, twice the renewals.
        assert_eq!(m.rates(10_000, 30).per_class[0].1, 1000.0);
        let c = m.cumulative(10, 30);
        assert!(c.windows(2).all(|w| w[0] <= w[1]) && c[CLASSES.len() - 1] == 1.0);
    }

    #[test]
    fn keys_are_the_apiservers() {
        assert_eq!(&lease_key(3)[..], b"/registry/leases/kube-node-lease/node-3");
        assert_eq!(&node_key(3)[..], b"/registry/minions/node-3");
    }
}
