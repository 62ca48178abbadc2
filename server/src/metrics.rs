//! The member's Prometheus metrics, under etcd's names where etcd has one, so
//! dashboards and alerts written for etcd work unchanged.
//!
//! Two kinds of metric live here:
//! - **Events** (leader changes, failed proposals) are counted where they
//!   happen, each with one line at the instrumentation point, through the
//!   process-wide [`METRICS`].
//! - **State** (leader, Raft indexes, database size, key count, and the
//!   WAL's counters and fsync histograms) is read when Prometheus scrapes,
//!   from the atomics the member keeps anyway, so the write path pays
//!   nothing for it. The WAL's own buckets (`logbook_wal::Stats`) become
//!   `etcd_disk_wal_fsync_duration_seconds` and
//!   `logbook_wal_records_per_fsync` here.
//!
//! Rendered in Prometheus' text format 0.0.4 by the `prometheus` crate, on
//! `/metrics` of every client URL and of every `--listen-metrics-urls` URL.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use logbook_wal::Wal;
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::status::RaftStatus;
use crate::version::ETCD_VERSION;

/// The process's metrics. One member per process, as with etcd's default
/// Prometheus registry.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Every metric the member exports.
pub struct Metrics {
    registry: Registry,
    // Events, counted where they happen.
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed: IntCounter,
    /// `etcd_network_peer_sent_bytes_total{To}`: Raft lane bytes written to a peer.
    pub peer_sent_bytes: IntCounterVec,
    /// `etcd_network_peer_received_bytes_total{From}`: Raft lane bytes read from a peer.
    pub peer_received_bytes: IntCounterVec,
    /// `etcd_network_peer_sent_failures_total{To}`: Raft messages that could not be sent
    /// to a peer (not connected, backlog full, or lost with a broken connection).
    pub peer_sent_failures: IntCounterVec,
    // State, set at scrape time.
    has_leader: IntGauge,
    is_leader: IntGauge,
    proposals_committed: IntGauge,
    proposals_applied: IntGauge,
    proposals_pending: IntGauge,
    db_size: IntGauge,
    db_size_in_use: IntGauge,
    keys_total: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    wal_fsyncs: IntGauge,
    wal_records: IntGauge,
    wal_bytes: IntGauge,
    /// `logbook_wal_backend{backend}`: 1 for the backend the WAL writes with.
    wal_backend: IntGaugeVec,
    /// `logbook_engine_memory_bytes{part}`: the engine's memory by part (docs/memory.md).
    engine_memory: IntGaugeVec,
    server_id: IntGaugeVec,
    /// `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}`,
    /// registered by [`Metrics::enable_extensive`] (`--metrics=extensive`).
    grpc_handling: OnceLock<HistogramVec>,
}

/// The client port's streaming gRPC methods (`/package.Service/Method`);
/// every other method is unary.
pub fn is_streaming_method(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Watch/Watch"
            | "/etcdserverpb.Lease/LeaseKeepAlive"
            | "/etcdserverpb.Maintenance/Snapshot"
            | "/etcdserverpb.KV/RangeStream"
            | "/v3electionpb.Election/Observe"
    )
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
            r.register(Box::new(m.clone())).expect("metric names are unique");
            m
        }
        let gauge = |name: &str, help: &str| {
            reg(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            reg(&registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let server_version = reg(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "etcd_server_version",
                    "Which version is running. 1 for 'server_version' label with current version.",
                ),
                &["server_version"],
            )
            .expect("valid metric"),
        );
        server_version.with_label_values(&[ETCD_VERSION]).set(1);
        let per_peer = |name: &str, help: &str, label: &str| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
            )
        };
        Metrics {
            peer_sent_bytes: per_peer(
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                "To",
            ),
            peer_received_bytes: per_peer(
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                "From",
            ),
            peer_sent_failures: per_peer(
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                "To",
            ),
            leader_changes: counter(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_failed: counter(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            has_leader: gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            proposals_committed: gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_applied: gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            proposals_pending: gauge(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            db_size: gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_size_in_use: gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            keys_total: gauge("etcd_debugging_mvcc_keys_total", "Total number of keys."),
            current_revision: gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            compact_revision: gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            wal_fsyncs: gauge(
                "logbook_wal_fsyncs_total",
                "WAL group commits (one write and one fdatasync each).",
            ),
            wal_records: gauge("logbook_wal_records_total", "Records the WAL made durable."),
            wal_bytes: gauge("logbook_wal_written_bytes_total", "Bytes the WAL wrote."),
            wal_backend: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "logbook_wal_backend",
                        "How the WAL makes batches durable (sync, io-uring, io-uring-direct; chosen by --wal-backend, 'auto' measures): 1 for the one in use.",
                    ),
                    &["backend"],
                )
                .expect("valid metric"),
            ),
            engine_memory: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "logbook_engine_memory_bytes",
                        "Memory the storage engine holds, by part: 'index' (keys, revisions and cached latest values), 'latest_cache' (of which cached latest values), 'page_cache' (db file pages), 'memtable' (applied writes not yet committed).",
                    ),
                    &["part"],
                )
                .expect("valid metric"),
            ),
            server_id: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "etcd_server_id",
                        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
                    ),
                    &["server_id"],
                )
                .expect("valid metric"),
            ),
            registry,
            grpc_handling: OnceLock::new(),
        }
    }

    /// `--metrics=extensive`: adds etcd's server-side gRPC latency histogram
    /// (go-grpc-middleware's `grpc_server_handling_seconds`, Prometheus'
    /// default buckets), observed for every unary call from then on.
    pub fn enable_extensive(&self) {
        self.grpc_handling.get_or_init(|| {
            let h = HistogramVec::new(
                HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                ),
                &["grpc_type", "grpc_service", "grpc_method"],
            )
            .expect("valid metric");
            self.registry.register(Box::new(h.clone())).expect("registered once");
            h
        });
    }

    /// Records a unary call of `path` (`/package.Service/Method`) that took
    /// `took`, when the histogram is on.
    pub fn observe_unary(&self, path: &str, took: Duration) {
        let Some(h) = self.grpc_handling.get() else { return };
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return;
        };
        h.with_label_values(&["unary", service, method]).observe(took.as_secs_f64());
    }

    /// Reads the member's state into the gauges and renders every metric in
    /// Prometheus' text format.
    pub fn render(
        &self,
        status: &RaftStatus,
        engine: &logbook_engine::Engine,
        pending_proposals: usize,
        wal: Option<&Wal>,
    ) -> String {
        let leader = status.leader();
        self.has_leader.set(leader.is_some() as i64);
        self.is_leader.set(status.is_leader() as i64);
        self.proposals_committed.set(status.commit_index() as i64);
        self.proposals_applied.set(status.applied_index() as i64);
        self.proposals_pending.set(pending_proposals as i64);
        self.db_size.set(engine.size() as i64);
        self.db_size_in_use.set(engine.size_in_use() as i64);
        self.keys_total.set(engine.key_count() as i64);
        self.current_revision.set(engine.current_revision());
        self.compact_revision.set(engine.compact_revision());
        let mem = engine.memory_usage();
        for (part, bytes) in [
            ("index", mem.index_bytes),
            ("latest_cache", mem.latest_cache_bytes),
            ("page_cache", mem.page_cache_bytes),
            ("memtable", mem.memtable_bytes),
        ] {
            self.engine_memory.with_label_values(&[part]).set(bytes as i64);
        }
        if let Some(wal) = wal {
            let stats = wal.stats();
            self.wal_fsyncs.set(stats.commits as i64);
            self.wal_records.set(stats.entries as i64);
            self.wal_bytes.set(stats.bytes as i64);
            self.wal_backend.with_label_values(&[wal.backend().as_str()]).set(1);
        }
        self.server_id.with_label_values(&[&format!("{:x}", status.member_id)]).set(1);

        let mut families = self.registry.gather();
        if let Some(wal) = wal {
            families.extend(wal_histograms(&wal.stats()));
        }
        families.extend(process_families());
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding of well-formed metrics cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The WAL's commit buckets as Prometheus histograms. The duration covers
/// the batch's write and its fdatasync (one linked submission on io_uring,
/// so the two cannot be told apart); etcd's buckets (1 ms to 8.192 s) are
/// all there, with finer ones below 1 ms, where Logbook's fsyncs usually are.
fn wal_histograms(stats: &logbook_wal::Stats) -> [MetricFamily; 2] {
    let sync_bounds = (0..logbook_wal::SYNC_BUCKETS - 1).map(|i| 0.001 * 2f64.powi(i as i32 - 10));
    let records_bounds = (0..logbook_wal::RECORDS_BUCKETS - 1).map(|i| 2f64.powi(i as i32));
    let records_sum = stats.entries as f64;
    [
        histogram_family(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            sync_bounds,
            &stats.sync_buckets,
            stats.sync_nanos as f64 / 1e9,
        ),
        histogram_family(
            "logbook_wal_records_per_fsync",
            "How many records each WAL group commit (one write, one fdatasync) made durable.",
            records_bounds,
            &stats.records_buckets,
            records_sum,
        ),
    ]
}

/// The `process_*` series Go's Prometheus client gives etcd (CPU seconds,
/// resident and virtual memory, open and maximum fds, threads, start time),
/// read from `/proc/self` at each scrape: dashboards, and `logbook bench`
/// against a deployed cluster, read a member's resource use from them.
/// CPU time keeps the clock tick's resolution (the `prometheus` crate's own
/// process collector rounds it down to whole seconds). Series that cannot be
/// read are left out.
fn process_families() -> Vec<MetricFamily> {
    let Ok(me) = procfs::process::Process::myself() else { return Vec::new() };
    let mut out = Vec::new();
    let mut push = |name: &str, help: &str, kind: MetricType, value: f64| {
        let mut m = Metric::default();
        if kind == MetricType::COUNTER {
            let mut c = prometheus::proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = prometheus::proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_string());
        f.set_help(help.to_string());
        f.set_field_type(kind);
        f.set_metric(vec![m]);
        out.push(f);
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        push(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::COUNTER,
            (stat.utime + stat.stime) as f64 / ticks,
        );
        push(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::GAUGE,
            (stat.rss * procfs::page_size()) as f64,
        );
        push(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::GAUGE,
            stat.vsize as f64,
        );
        push(
            "process_threads",
            "Number of OS threads in the process.",
            MetricType::GAUGE,
            stat.num_threads as f64,
        );
        if let Ok(boot) = procfs::boot_time_secs() {
            push(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::GAUGE,
                boot as f64 + stat.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(n) = me.fd_count() {
        push("process_open_fds", "Number of open file descriptors.", MetricType::GAUGE, n as f64);
    }
    if let Ok(limits) = me.limits()
        && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
    {
        push(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricType::GAUGE,
            max as f64,
        );
    }
    out
}

/// A histogram family from per-bucket (not cumulative) counts, the last
/// being the overflow (`+Inf`) bucket.
fn histogram_family(
    name: &str,
    help: &str,
    bounds: impl Iterator<Item = f64>,
    counts: &[u64],
    sum: f64,
) -> MetricFamily {
    let mut cumulative = 0;
    let buckets = bounds
        .zip(counts)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(counts.iter().sum());
    h.set_sample_sum(sum);
    let mut m = Metric::default();
    m.set_histogram(h);
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_under_etcds_names() {
        METRICS.leader_changes.inc();
        METRICS.peer_sent_bytes.with_label_values(&["a1"]).inc_by(10);
        METRICS.peer_received_bytes.with_label_values(&["b2"]).inc_by(20);
        METRICS.peer_sent_failures.with_label_values(&["a1"]).inc();
        let mut stats = logbook_wal::Stats { commits: 3, entries: 7, ..Default::default() };
        stats.sync_buckets[8] = 2; // at most 0.25 ms
        stats.sync_buckets[11] = 1; // at most 2 ms
        stats.records_buckets[2] = 3; // 3 or 4 records
        stats.sync_nanos = 2_000_000;
        let mut families = METRICS.registry.gather();
        families.extend(wal_histograms(&stats));
        families.extend(process_families());
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in [
            "# TYPE etcd_server_leader_changes_seen_total counter",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.00025\"} 2",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 2",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 3",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 3",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3",
            "etcd_disk_wal_fsync_duration_seconds_sum 0.002",
            "etcd_disk_wal_fsync_duration_seconds_count 3",
            "logbook_wal_records_per_fsync_bucket{le=\"4\"} 3",
            "logbook_wal_records_per_fsync_sum 7",
            "# TYPE logbook_wal_records_per_fsync histogram",
            "etcd_server_version{server_version=\"3.5.13\"} 1",
            "# TYPE etcd_server_has_leader gauge",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_start_time_seconds gauge",
            "# TYPE process_open_fds gauge",
            "etcd_network_peer_sent_bytes_total{To=\"a1\"} 10",
            "etcd_network_peer_received_bytes_total{From=\"b2\"} 20",
            "etcd_network_peer_sent_failures_total{To=\"a1\"} 1",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
    }
}
