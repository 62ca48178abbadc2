//! The load loop: runs a [`Workload`] with N concurrent clients, bounded by a
//! request count and a wall-clock deadline, closed loop or open loop, and
//! turns the latencies into [`Summary`]s.
//!
//! Closed loop (no `--rate`): each client sends its next request as soon as
//! the previous one answers; latency is measured from the send.
//!
//! Open loop (`--rate R`): request number `seq` is *intended* to leave at
//! `start + seq / R`, whoever sends it. A client sleeps until that instant,
//! sends, and records latency from the intended instant, not from the actual
//! send. When the server stalls, requests queue behind it and their waiting
//! time is counted, which is what a real client population would see: this is
//! the coordinated-omission correction (as in wrk2).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{Recorder, Summary};

/// Requests of a run bounded only by time stop at this count.
pub const MAX_TOTAL: u64 = 1_000_000_000;
/// Runs bounded only by count stop after this long.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 60);
/// Requests of a run given neither `--total` nor `--duration`.
pub const DEFAULT_TOTAL: u64 = 10_000;

/// One kind of load: what a client sends for request number `seq`.
pub trait Workload: Send + Sync + 'static {
    /// Per-client state (its gRPC clients, random generator, owned keys).
    type State: Send + 'static;

    /// Names of the request classes `call` reports (e.g. `["put"]`, or
    /// `["create", "update", ...]` for a mix).
    fn classes(&self) -> Vec<&'static str>;

    /// Summaries over several classes together, each a name and the
    /// classes' indexes (e.g. every writing class of a mix as `mutating`).
    fn groups(&self) -> Vec<(&'static str, Vec<usize>)> {
        Vec::new()
    }

    /// The state of client number `client`.
    fn state(&self, client: usize) -> Self::State;

    /// Sends request number `seq`; returns the index of its class in
    /// [`classes`](Self::classes).
    fn call<'a>(
        &'a self,
        state: &'a mut Self::State,
        seq: u64,
    ) -> impl Future<Output = Result<usize, tonic::Status>> + Send + 'a;
}

/// How much load to offer and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: usize,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests per second offered in total (open loop); `None` is closed loop.
    pub rate: Option<f64>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Shown next to the progress bar.
    pub label: String,
}

impl Plan {
    fn bounds(&self) -> (u64, Duration) {
        match (self.total, self.duration) {
            (None, None) => (DEFAULT_TOTAL, MAX_DURATION),
            (t, d) => (t.unwrap_or(MAX_TOTAL), d.unwrap_or(MAX_DURATION)),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// One summary per request class; with more than one class, an `all`
    /// summary comes first.
    pub summaries: Vec<Summary>,
    /// Failed requests by gRPC code, with one message each.
    pub errors: BTreeMap<String, ErrorSample>,
    /// True when the run stopped early because nearly everything failed.
    pub aborted: bool,
}

/// How often one kind of error happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorSample {
    pub count: u64,
    pub message: String,
}

impl Outcome {
    /// The summary of all requests.
    pub fn total(&self) -> &Summary {
        &self.summaries[0]
    }

    /// The summary of class `name`.
    pub fn class(&self, name: &str) -> Option<&Summary> {
        self.summaries.iter().find(|s| s.name == name)
    }

    /// Total failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    errors: Mutex<BTreeMap<String, ErrorSample>>,
    recorders: Vec<Recorder>,
    all: Recorder,
}

impl Shared {
    fn note_error(&self, status: &tonic::Status) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let mut errs = self.errors.lock().expect("errors lock");
        let e = errs
            .entry(format!("{:?}", status.code()))
            .or_insert_with(|| ErrorSample { count: 0, message: status.message().to_owned() });
        e.count += 1;
        // Nothing is being measured when (nearly) everything fails: stop
        // rather than spin on errors until the deadline.
        let ok = self.done.load(Ordering::Relaxed).saturating_sub(failed);
        if (failed >= 100 && ok == 0) || (failed >= 1000 && failed > ok) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Sets up a workload with `setup` and runs it as `plan` says on a runtime
/// of its own with one thread, its connections included.
///
/// For a single client (the ladder's sequential rung): one request at a time
/// gains nothing from a second worker, and on a small machine the hand-offs
/// between workers are most of the generator's cost. Measured on 2 cores
/// against a server that answers at once: 1.1 instead of 5 context switches
/// and about 130 instead of 190 us of CPU per request, p50 0.18 instead of
/// 0.21 ms. Whatever the generator spends is time the measured servers wait
/// for, so this is the client's overhead taken out of their latencies.
pub async fn drive_on_one_thread<W, F, Fut>(setup: F, plan: Plan) -> anyhow::Result<Outcome>
where
    W: Workload,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<Arc<W>>>,
{
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let workload = setup().await?;
            Ok(drive(workload, &plan).await)
        })
    })
    .await?
}

/// Runs `workload` as `plan` says and summarizes it.
pub async fn drive<W: Workload>(workload: Arc<W>, plan: &Plan) -> Outcome {
    let classes = workload.classes();
    let (total, duration) = plan.bounds();
    let clients = plan.clients.max(1);
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        errors: Mutex::new(BTreeMap::new()),
        recorders: classes.iter().map(|_| Recorder::default()).collect(),
        all: Recorder::default(),
    });
    let bar = progress_bar(plan, total, duration);
    let start = Instant::now();
    let deadline = start + duration;
    let interval = plan.rate.filter(|r| *r > 0.0).map(|r| 1.0 / r);

    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let w = workload.clone();
        let sh = shared.clone();
        tasks.spawn(async move {
            let mut state = w.state(client);
            loop {
                if sh.stop.load(Ordering::Relaxed) {
                    break;
                }
                let seq = sh.issued.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                let intended = match interval {
                    Some(iv) => {
                        let at = start + Duration::from_secs_f64(seq as f64 * iv);
                        if at >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        at
                    }
                    None => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                let res = w.call(&mut state, seq).await;
                let latency = intended.elapsed();
                sh.done.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok(class) => {
                        sh.recorders[class].record(client, latency);
                        // The `all` summary exists only for mixes.
                        if sh.recorders.len() > 1 {
                            sh.all.record(client, latency);
                        }
                    }
                    Err(status) => sh.note_error(&status),
                }
            }
        });
    }

    let ticker = {
        let sh = shared.clone();
        let bar = bar.clone();
        let by_count = plan.duration.is_none();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let done = sh.done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                bar.set_position(if by_count { done } else { start.elapsed().as_millis() as u64 });
                bar.set_message(format!(
                    "{done} reqs, {:.0}/s, {} errors",
                    done as f64 / secs.max(1e-9),
                    sh.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();

    let failed = shared.failed.load(Ordering::Relaxed);
    let mut summaries = Vec::new();
    if classes.len() > 1 {
        summaries.push(Summary::from_histogram("all", &shared.all.merged(), failed, elapsed));
    }
    for (i, name) in classes.iter().enumerate() {
        let errs = if classes.len() == 1 { failed } else { 0 };
        summaries.push(Summary::from_histogram(name, &shared.recorders[i].merged(), errs, elapsed));
    }
    for (name, members) in workload.groups() {
        let mut hist = crate::stats::new_histogram();
        for i in members.into_iter().filter(|&i| i < shared.recorders.len()) {
            hist.add(shared.recorders[i].merged()).expect("histograms of the same bounds");
        }
        summaries.push(Summary::from_histogram(name, &hist, 0, elapsed));
    }
    let errors = shared.errors.lock().expect("errors lock").clone();
    Outcome { summaries, errors, aborted: shared.stop.load(Ordering::Relaxed) }
}

fn progress_bar(plan: &Plan, total: u64, duration: Duration) -> ProgressBar {
    if !plan.progress {
        return ProgressBar::hidden();
    }
    let (len, unit) = if plan.duration.is_none() {
        (total, "{pos}/{len}")
    } else {
        (duration.as_millis() as u64, "{elapsed}/{duration_ms}")
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let template = format!("{{prefix:>12}} [{{bar:30}}] {unit} {{msg}}")
        .replace("{duration_ms}", &format!("{}s", duration.as_secs()));
    bar.set_style(
        ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "),
    );
    bar.set_prefix(plan.label.clone());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload that answers after a fixed delay, failing every 10th request.
    struct Sleepy {
        delay: Duration,
        fail_every: u64,
    }

    impl Workload for Sleepy {
        type State = ();
        fn classes(&self) -> Vec<&'static str> {
            vec!["even", "odd"]
        }
        fn state(&self, _client: usize) {}
        async fn call(&self, _state: &mut (), seq: u64) -> Result<usize, tonic::Status> {
            tokio::time::sleep(self.delay).await;
            if self.fail_every > 0 && seq.is_multiple_of(self.fail_every) {
                return Err(tonic::Status::unavailable("down"));
            }
            Ok((seq % 2) as usize)
        }
    }

    fn plan(
        clients: usize,
        total: Option<u64>,
        duration: Option<Duration>,
        rate: Option<f64>,
    ) -> Plan {
        Plan { clients, total, duration, rate, progress: false, label: "test".into() }
    }

    #[tokio::test]
    async fn counts_every_request_once() {
        let w = Arc::new(Sleepy { delay: Duration::from_micros(100), fail_every: 10 });
        let out = drive(w, &plan(8, Some(500), None, None)).await;
        assert_eq!(out.total().name, "all");
        assert_eq!(out.total().count, 450);
        assert_eq!(out.error_count(), 50);
        assert_eq!(out.errors["Unavailable"].message, "down");
        let even = out.class("even").unwrap().count;
        let odd = out.class("odd").unwrap().count;
        assert_eq!(even + odd, 450);
        assert_eq!(odd, 250, "every odd seq succeeds");
        assert!(!out.aborted);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_counts_queueing_time() {
        // One client, 1000 req/s offered, each request takes 10 ms: request n
        // is intended at n ms but sent at 10n ms, so its latency grows.
        let w = Arc::new(Sleepy { delay: Duration::from_millis(10), fail_every: 0 });
        let out = drive(w, &plan(1, Some(50), None, Some(1000.0))).await;
        let l = &out.total().latency_ms;
        assert_eq!(out.total().count, 50);
        assert!(l.min >= 9.9, "first request waits its own 10 ms: {}", l.min);
        assert!(l.max >= 450.0, "the last one waited behind the others: {}", l.max);
    }

    #[tokio::test(start_paused = true)]
    async fn duration_bounds_the_run() {
        let w = Arc::new(Sleepy { delay: Duration::from_millis(10), fail_every: 0 });
        let out = drive(w, &plan(2, None, Some(Duration::from_millis(105)), None)).await;
        // 2 clients × 11 requests started before the deadline (0, 10, ..., 100 ms).
        assert_eq!(out.total().count, 22);
    }

    #[tokio::test]
    async fn stops_when_everything_fails() {
        let w = Arc::new(Sleepy { delay: Duration::ZERO, fail_every: 1 });
        let out = drive(w, &plan(4, Some(100_000), None, None)).await;
        assert!(out.aborted);
        assert!(out.error_count() < 100_000);
        assert_eq!(out.total().count, 0);
    }
}
