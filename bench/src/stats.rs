//! Latency recording (HdrHistogram) and the summaries reports are made of.
//!
//! Latencies are recorded in microseconds with 3 significant digits, from
//! 1 µs to 10 minutes. Clients record into a few shards so 1024 clients do
//! not contend on one lock nor hold 1024 histograms.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

const SHARDS: usize = 16;
const MAX_MICROS: u64 = 600_000_000;

/// A fresh histogram of the shape every recorder uses.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records latencies from many tasks into one distribution.
pub struct Recorder {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder { shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect() }
    }
}

impl Recorder {
    /// Records one latency; `hint` (e.g. the client number) picks the shard.
    pub fn record(&self, hint: usize, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let mut h = self.shards[hint % SHARDS].lock().expect("histogram lock");
        h.saturating_record(micros);
    }

    /// Everything recorded so far, merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            all.add(&*s.lock().expect("histogram lock")).expect("same bounds");
        }
        all
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One point of a latency CDF: `quantile` (0..=1) of requests took at most `ms`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CdfPoint {
    pub quantile: f64,
    pub ms: f64,
}

/// The outcome of one kind of request in one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// What was measured, e.g. `put` or `watch-event`.
    pub name: String,
    /// Successful requests.
    pub count: u64,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_ms: Latency,
    /// The latency distribution, for plots.
    pub cdf: Vec<CdfPoint>,
}

impl Summary {
    /// Summarizes `hist` (microseconds) over `elapsed`.
    pub fn from_histogram(
        name: &str,
        hist: &Histogram<u64>,
        errors: u64,
        elapsed: Duration,
    ) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        let count = hist.len();
        let elapsed_s = elapsed.as_secs_f64();
        let latency_ms = if count == 0 {
            Latency::default()
        } else {
            Latency {
                min: ms(hist.min()),
                mean: hist.mean() / 1000.0,
                p50: ms(hist.value_at_quantile(0.50)),
                p90: ms(hist.value_at_quantile(0.90)),
                p99: ms(hist.value_at_quantile(0.99)),
                p999: ms(hist.value_at_quantile(0.999)),
                max: ms(hist.max()),
            }
        };
        let cdf = if count == 0 { Vec::new() } else { cdf_points(hist) };
        Summary {
            name: name.to_owned(),
            count,
            errors,
            elapsed_s,
            throughput: if elapsed_s > 0.0 { count as f64 / elapsed_s } else { 0.0 },
            latency_ms,
            cdf,
        }
    }
}

/// Quantiles spaced evenly up to 0.9, then by "nines" up to 0.99999 and the max,
/// so a log-scaled tail is drawn with as much detail as the body.
fn cdf_points(hist: &Histogram<u64>) -> Vec<CdfPoint> {
    let mut qs: Vec<f64> = (0..90).map(|i| f64::from(i) / 100.0).collect();
    qs.extend((10..=50).map(|k| 1.0 - 10f64.powf(-f64::from(k) / 10.0)));
    qs.push(1.0);
    qs.into_iter()
        .map(|q| CdfPoint { quantile: q, ms: hist.value_at_quantile(q) as f64 / 1000.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_are_ordered_and_counted() {
        let r = Recorder::default();
        for i in 1..=1000u64 {
            r.record(i as usize, Duration::from_micros(i * 10));
        }
        let s = Summary::from_histogram("put", &r.merged(), 3, Duration::from_secs(2));
        assert_eq!(s.count, 1000);
        assert_eq!(s.errors, 3);
        assert!((s.throughput - 500.0).abs() < 1e-9);
        let l = &s.latency_ms;
        assert!(
            l.min <= l.p50
                && l.p50 <= l.p90
                && l.p90 <= l.p99
                && l.p99 <= l.p999
                && l.p999 <= l.max
        );
        assert!((l.p50 - 5.0).abs() < 0.01, "p50 {}", l.p50);
        assert!((l.max - 10.0).abs() < 0.01, "max {}", l.max);
        assert!(s.cdf.windows(2).all(|w| w[0].quantile <= w[1].quantile && w[0].ms <= w[1].ms));
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = Summary::from_histogram("x", &new_histogram(), 0, Duration::ZERO);
        assert_eq!(s.count, 0);
        assert_eq!(s.throughput, 0.0);
        assert!(s.cdf.is_empty());
    }
}
