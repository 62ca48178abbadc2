//! The load-generator subcommands: connect, set up, drive, tear down, report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use crate::cli::{
    KubernetesArgs, KubernetesShape, LoadArgs, MixedArgs, RangeArgs, TxnPutArgs, WatchArgs,
};
use crate::client::Pool;
use crate::driver::{Plan, drive, drive_on_one_thread};
use crate::output::RunReport;
use crate::workload::kubernetes::{self as k8s, Kubernetes};
use crate::workload::lease::KeepAlive;
use crate::workload::mixed::Mixed;
use crate::workload::put::Put;
use crate::workload::range::Range;
use crate::workload::txn_put::TxnPut;
use crate::workload::watch::Watchers;
use crate::workload::{keygen, plan, value};

/// How long a watch run waits for events still in flight after the last put.
const WATCH_DRAIN: Duration = Duration::from_secs(10);

/// `put`.
pub async fn put(args: &LoadArgs) -> Result<RunReport> {
    let plan = plan(args, "put");
    let (endpoints, conns, keys, value) =
        (args.endpoints.clone(), args.conns, keygen(args), value(args));
    let setup = async move || {
        let pool = Pool::connect(&endpoints, conns).await?;
        Ok(Arc::new(Put::new(pool, keys, value)))
    };
    let out = if plan.clients <= 1 {
        drive_on_one_thread(setup, plan).await?
    } else {
        drive(setup().await?, &plan).await
    };
    Ok(RunReport::new("put", args, out))
}

/// `range`.
pub async fn range(args: &RangeArgs) -> Result<RunReport> {
    let load = &args.load;
    let pool = Pool::connect(&load.endpoints, load.conns).await?;
    let keys = keygen(load);
    if args.preload {
        preload(&pool, load).await?;
    }
    let w = Arc::new(Range { pool, keys, limit: args.limit, consistency: load.consistency });
    let out = drive(w, &plan(load, "range")).await;
    Ok(RunReport::new("range", args, out))
}

/// Writes every key of the key space once (not measured).
pub async fn preload(pool: &Pool, load: &LoadArgs) -> Result<()> {
    let keys = crate::keys::KeyGen::new(&load.prefix, load.key_size, load.key_space_size, true);
    let w = Arc::new(Put::new(pool.clone(), keys, value(load)));
    let p = Plan {
        clients: load.clients.clamp(1, 64),
        total: Some(load.key_space_size),
        duration: None,
        rate: None,
        progress: !load.quiet,
        label: "preload".into(),
    };
    let out = drive(w, &p).await;
    anyhow::ensure!(out.error_count() == 0, "preload failed: {:?}", out.errors);
    Ok(())
}

/// `txn-put`.
pub async fn txn_put(args: &TxnPutArgs) -> Result<RunReport> {
    let load = &args.load;
    let pool = Pool::connect(&load.endpoints, load.conns).await?;
    let w = Arc::new(TxnPut::new(pool, keygen(load), value(load), args.txn_ops)?);
    let out = drive(w, &plan(load, "txn-put")).await;
    Ok(RunReport::new("txn-put", args, out))
}

/// `watch`: puts measured as usual, plus a `watch-event` summary of delivery
/// latencies (put sent → event received, per watcher).
pub async fn watch(args: &WatchArgs) -> Result<RunReport> {
    let load = &args.load;
    let pool = Pool::connect(&load.endpoints, load.conns).await?;
    let keys = keygen(load);
    let epoch = Instant::now();
    let watchers = Watchers::open(
        &pool,
        keys.prefix().as_bytes().to_vec().into(),
        keys.range_end(),
        args.watchers,
        args.streams,
        Some(epoch),
    )
    .await?;
    let before = watchers.events();
    let w = Arc::new(Put::new(pool, keys, value(load)).stamped(epoch));
    let started = Instant::now();
    let out = drive(w, &plan(load, "watch")).await;
    let expected = out.total().count * args.watchers as u64;
    let got = watchers.wait_for(before + expected, WATCH_DRAIN).await - before;
    let events = watchers.summary("watch-event", started.elapsed());
    watchers.close();
    let mut report = RunReport::new("watch", args, out);
    report.summaries.push(events);
    report.notes.push(format!("{got} of {expected} expected watch events received"));
    Ok(report)
}

/// `lease-keepalive`.
pub async fn lease_keepalive(args: &LoadArgs) -> Result<RunReport> {
    let pool = Pool::connect(&args.endpoints, args.conns).await?;
    let w = Arc::new(KeepAlive::setup(pool, args.clients).await?);
    let out = drive(w.clone(), &plan(args, "keepalive")).await;
    w.finish().await?;
    Ok(RunReport::new("lease-keepalive", args, out))
}

/// `mixed`.
pub async fn mixed(args: &MixedArgs) -> Result<RunReport> {
    let load = &args.load;
    let pool = Pool::connect(&load.endpoints, load.conns).await?;
    let w =
        Arc::new(Mixed::setup(pool, args.namespaces, args.seed_objects, load.consistency).await?);
    let out = drive(w.clone(), &plan(load, "mixed")).await;
    // Let the watches catch up with the last writes before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = w.watch_events();
    let leases_missing = w.leases_missing();
    w.finish().await?;
    let mut report = RunReport::new("mixed", args, out);
    report.notes.push(format!("{events} watch events received on the resource prefix watches"));
    if leases_missing {
        report.notes.push(
            "the server does not implement leases: events were written without one".to_owned(),
        );
    }
    Ok(report)
}

/// Clients of a Kubernetes run when `--clients` is left at 1.
pub const KUBERNETES_CLIENTS: usize = 64;
/// A Kubernetes run given neither `--duration` nor `--total` lasts this long.
pub const KUBERNETES_DURATION: Duration = Duration::from_secs(30);

/// The model a Kubernetes run uses, with `shape`'s overrides.
pub fn kubernetes_model(shape: &KubernetesShape) -> k8s::Model {
    let mut model = k8s::Model::default();
    if let Some(c) = shape.churn_per_hour {
        model.churn_per_hour = c.max(0.0);
    }
    model
}

/// Sets up the model's cluster on `pool`, writing only what `objects` (the
/// objects an earlier run left in the store) lack, and drives it open loop
/// for `duration` (or `total` requests) at the model's rates. Returns the
/// outcome, notes (offered rate, compactions, watch events) and the writes
/// made before the run; `objects` is left with what the run left.
#[allow(clippy::too_many_arguments)]
pub async fn drive_kubernetes(
    pool: Pool,
    shape: &KubernetesShape,
    clients: usize,
    duration: Duration,
    total: Option<u64>,
    quiet: bool,
    label: &str,
    objects: &mut k8s::Objects,
) -> Result<(crate::driver::Outcome, Vec<String>, u64)> {
    let model = kubernetes_model(shape);
    let rates = model.rates(shape.nodes, shape.pods_per_node);
    let setup = k8s::Shape {
        nodes: shape.nodes,
        pods_per_node: shape.pods_per_node,
        clients,
        compact_interval: shape
            .compact_interval
            .unwrap_or_else(|| k8s::scaled_compact_interval(duration)),
    };
    let (w, seeded) =
        Kubernetes::setup(pool, model, &setup, std::mem::take(objects), quiet).await?;
    let w = Arc::new(w);
    let events0 = w.watch_events();
    let plan = Plan {
        clients,
        total: Some(total.unwrap_or_else(|| (rates.total * duration.as_secs_f64()).ceil() as u64)),
        duration: Some(duration),
        rate: Some(rates.total),
        progress: !quiet,
        label: label.to_owned(),
    };
    let out = drive(w.clone(), &plan).await;
    let notes = vec![
        format!(
            "offered {:.1} requests/s for {} nodes x {} pods ({:.2} pods created and deleted per s): {}",
            rates.total,
            shape.nodes,
            shape.pods_per_node,
            rates.churn,
            rates
                .per_class
                .iter()
                .map(|(c, r)| format!("{c} {r:.2}/s"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "{} compactions (every {:.1} s), {} watch events on the resource watches",
            w.compactions(),
            setup.compact_interval.as_secs_f64(),
            w.watch_events() - events0
        ),
    ];
    // Every client's state is dropped by now: their pods are back.
    *objects = w.objects();
    w.finish();
    Ok((out, notes, seeded))
}

/// `kubernetes`.
pub async fn kubernetes(args: &KubernetesArgs) -> Result<RunReport> {
    let load = &args.load;
    anyhow::ensure!(
        load.rate.is_none(),
        "--rate is not an option of `bench kubernetes`: the model sets the rate from --nodes and \
         --pods-per-node"
    );
    let clients = if load.clients <= 1 { KUBERNETES_CLIENTS } else { load.clients };
    let pool = Pool::connect(&load.endpoints, load.conns).await?;
    let duration = match (load.duration, load.total) {
        (Some(d), _) => d,
        (None, Some(_)) => crate::driver::MAX_DURATION,
        (None, None) => KUBERNETES_DURATION,
    };
    let (out, notes, _) = drive_kubernetes(
        pool,
        &args.cluster,
        clients,
        duration,
        load.total,
        load.quiet,
        "kubernetes",
        &mut k8s::Objects::default(),
    )
    .await?;
    let mut report = RunReport::new("kubernetes", args, out);
    report.notes.extend(notes);
    Ok(report)
}
