//! The servers' own view of their WAL: Prometheus histograms scraped from
//! every member's `/metrics` on its client URL (etcd and Logbook both serve
//! it there).
//!
//! Both export `etcd_disk_wal_fsync_duration_seconds`; Logbook adds
//! `logbook_wal_records_per_fsync` (how many records each group commit made
//! durable). The comparison scrapes every member before and after each rung
//! and keeps the difference, summed over the members, so a rung's
//! histogram counts exactly the fsyncs its load caused.
//!
//! The bucket bounds differ: etcd's fsync buckets start at 1 ms
//! (1, 2, 4 ... 8192 ms); Logbook's include all of those plus finer ones
//! below 1 ms.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// etcd's WAL fsync latency histogram (seconds).
pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
/// Logbook's records made durable per WAL group commit.
pub const RECORDS_PER_FSYNC: &str = "logbook_wal_records_per_fsync";

/// A scrape's body is bounded by this (etcd's is ~100 KiB).
const MAX_BODY: usize = 16 << 20;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One Prometheus histogram: cumulative counts at finite upper bounds, plus
/// the total count (the `+Inf` bucket) and the sum of observations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PromHistogram {
    /// Finite upper bounds (`le`), ascending.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound.
    pub cumulative: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
}

impl PromHistogram {
    /// The histogram `name` in Prometheus text `text`, its series summed
    /// when it has several label sets; `None` when it is absent.
    pub fn parse(text: &str, name: &str) -> Option<PromHistogram> {
        let bucket = format!("{name}_bucket");
        let sum = format!("{name}_sum");
        let count = format!("{name}_count");
        let mut les: Vec<(f64, u64)> = Vec::new();
        let mut h = PromHistogram::default();
        let mut seen = false;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let metric = series.split('{').next().unwrap_or(series);
            let value: f64 = match value.trim().parse() {
                Ok(v) => v,
                Err(_) => continue,
            };
            if metric == bucket {
                let Some(le) = label(series, "le") else { continue };
                seen = true;
                if le == "+Inf" {
                    continue; // the same as `_count`
                }
                let Ok(le) = le.parse::<f64>() else { continue };
                match les.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, n)) => *n += value as u64,
                    None => les.push((le, value as u64)),
                }
            } else if metric == sum {
                seen = true;
                h.sum += value;
            } else if metric == count {
                seen = true;
                h.count += value as u64;
            }
        }
        if !seen {
            return None;
        }
        les.sort_by(|a, b| a.0.total_cmp(&b.0));
        (h.bounds, h.cumulative) = les.into_iter().unzip();
        Some(h)
    }

    /// What was observed between `before` and `self` (a later scrape of the
    /// same series). A counter that went backwards (a restart) yields `self`.
    pub fn since(&self, before: &PromHistogram) -> PromHistogram {
        if before.bounds != self.bounds || before.count > self.count {
            return self.clone();
        }
        PromHistogram {
            bounds: self.bounds.clone(),
            cumulative: self
                .cumulative
                .iter()
                .zip(&before.cumulative)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            count: self.count - before.count,
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    /// Adds `other`'s observations (another member of the same system).
    /// Bounds missing on either side are dropped: a sum is only known where
    /// both histograms have a bucket.
    pub fn merge(&mut self, other: &PromHistogram) {
        if self.bounds.is_empty() && self.count == 0 {
            *self = other.clone();
            return;
        }
        let mut bounds = Vec::new();
        let mut cumulative = Vec::new();
        for (b, n) in self.bounds.iter().zip(&self.cumulative) {
            if let Some(i) = other.bounds.iter().position(|o| o == b) {
                bounds.push(*b);
                cumulative.push(n + other.cumulative[i]);
            }
        }
        self.bounds = bounds;
        self.cumulative = cumulative;
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The mean observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The smallest bound at or below which at least `q` of the
    /// observations fall: quantile `q` is at most this. `None` when there are
    /// no observations or the quantile lies beyond the last finite bound.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let need = (q * self.count as f64).ceil().max(1.0) as u64;
        self.bounds.iter().zip(&self.cumulative).find(|(_, n)| **n >= need).map(|(b, _)| *b)
    }

    /// The share (0..=1) of observations at or below `bound`, when the
    /// histogram has that bound.
    pub fn share_at(&self, bound: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let i = self.bounds.iter().position(|b| (b - bound).abs() <= bound * 1e-9)?;
        Some(self.cumulative[i] as f64 / self.count as f64)
    }
}

/// The value of label `name` in a series like `x_bucket{a="1",le="0.5"}`.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let inner = series.split_once('{')?.1.strip_suffix('}')?;
    for pair in inner.split(',') {
        let (k, v) = pair.split_once('=')?;
        if k.trim() == name {
            return Some(v.trim().trim_matches('"'));
        }
    }
    None
}

/// The WAL histograms of a set of members, summed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalMetrics {
    /// `etcd_disk_wal_fsync_duration_seconds` (seconds).
    pub fsync: Option<PromHistogram>,
    /// `logbook_wal_records_per_fsync` (Logbook only).
    pub records_per_fsync: Option<PromHistogram>,
    /// Seconds between the two scrapes this is the difference of (0 for a
    /// single scrape).
    #[serde(default)]
    pub elapsed_s: f64,
}

impl WalMetrics {
    /// The WAL histograms in one member's metrics text.
    pub fn from_text(text: &str) -> WalMetrics {
        WalMetrics {
            fsync: PromHistogram::parse(text, WAL_FSYNC),
            records_per_fsync: PromHistogram::parse(text, RECORDS_PER_FSYNC),
            elapsed_s: 0.0,
        }
    }

    /// Adds another member's (or another rung's) histograms.
    pub fn merge(&mut self, other: &WalMetrics) {
        fn add(a: &mut Option<PromHistogram>, b: &Option<PromHistogram>) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => a.merge(b),
                (None, Some(b)) => *a = Some(b.clone()),
                _ => {}
            }
        }
        add(&mut self.fsync, &other.fsync);
        add(&mut self.records_per_fsync, &other.records_per_fsync);
        self.elapsed_s += other.elapsed_s;
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &WalMetrics, elapsed: Duration) -> WalMetrics {
        fn diff(a: &Option<PromHistogram>, b: &Option<PromHistogram>) -> Option<PromHistogram> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.since(b)),
                (Some(a), None) => Some(a.clone()),
                (None, _) => None,
            }
        }
        WalMetrics {
            fsync: diff(&self.fsync, &before.fsync),
            records_per_fsync: diff(&self.records_per_fsync, &before.records_per_fsync),
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

/// The value of the counter or gauge `name` in Prometheus text `text`, its
/// series summed; `None` when it is absent.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        if series.split('{').next() == Some(name)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The WAL backend a Logbook member reports (`logbook_wal_backend{backend="..."} 1`).
pub fn wal_backend(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("logbook_wal_backend{")?;
        let (labels, value) = rest.rsplit_once('}')?;
        (value.trim() == "1")
            .then(|| label(&format!("x{{{labels}}}"), "backend").map(str::to_string))?
    })
}

/// A scrape of every member, with the time it was taken.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub at: Instant,
    pub wal: WalMetrics,
}

/// Scrapes every member in `client_urls` and sums their WAL histograms.
pub async fn scrape_members(client_urls: &[String]) -> Result<Scrape> {
    let mut wal = WalMetrics::default();
    for url in client_urls {
        let text = fetch_metrics(url).await?;
        let m = WalMetrics::from_text(&text);
        anyhow::ensure!(m.fsync.is_some(), "{url}/metrics has no {WAL_FSYNC}");
        wal.merge(&m);
    }
    Ok(Scrape { at: Instant::now(), wal })
}

/// The WAL activity between two scrapes.
pub fn between(before: &Scrape, after: &Scrape) -> WalMetrics {
    after.wal.since(&before.wal, after.at.duration_since(before.at))
}

/// `GET <client_url>/metrics` over HTTP/1.1 (plain, or TLS with the
/// configuration registered for the endpoint: [`crate::tls`]; one
/// connection, closed after the answer), bounded in time and size.
pub async fn fetch_metrics(client_url: &str) -> Result<String> {
    let url = crate::client::endpoint_url(client_url);
    let tls = match url.split_once("://") {
        Some(("http", _)) => false,
        Some(("https", _)) => true,
        _ => bail!("{url}: only http:// and https:// endpoints can be scraped"),
    };
    let host = crate::tls::authority(&url)?;
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &str) -> Result<Vec<u8>> {
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s).take(MAX_BODY as u64).read_to_end(&mut buf).await?;
        Ok(buf)
    }
    let work = async {
        if tls {
            exchange(crate::tls::dial(&host, b"http/1.1").await?, &req).await
        } else {
            exchange(TcpStream::connect(&host).await?, &req).await
        }
    };
    let raw = tokio::time::timeout(SCRAPE_TIMEOUT, work)
        .await
        .with_context(|| format!("{url}/metrics: no answer within {SCRAPE_TIMEOUT:?}"))?
        .with_context(|| format!("scraping {url}/metrics"))?;
    parse_response(&raw).with_context(|| format!("scraping {url}/metrics"))
}

/// The body of an HTTP/1.1 response (plain or chunked), failing on a status
/// other than 200.
fn parse_response(raw: &[u8]) -> Result<String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("truncated HTTP response");
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    anyhow::ensure!(code == "200", "HTTP status {status:?}");
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            bail!("truncated chunked body");
        };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(body.len() >= size, "truncated chunk");
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_sum_their_series() {
        let text = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n\
                    x{a=\"1\"} 2\nx{a=\"2\"} 3\nprocess_cpu_seconds_total_other 9\n";
        assert_eq!(gauge(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(gauge(text, "x"), Some(5.0));
        assert_eq!(gauge(text, "y"), None);
    }

    const ETCD: &str = "\
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 10
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 18
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 20
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 20
etcd_disk_wal_fsync_duration_seconds_sum 0.025
etcd_disk_wal_fsync_duration_seconds_count 20
etcd_disk_wal_fsync_duration_seconds_other 3
etcd_server_has_leader 1
";

    #[test]
    fn parses_etcds_histogram_and_quantile_bounds() {
        let h = PromHistogram::parse(ETCD, WAL_FSYNC).unwrap();
        assert_eq!(h.bounds, vec![0.001, 0.002, 0.004]);
        assert_eq!(h.cumulative, vec![10, 18, 20]);
        assert_eq!(h.count, 20);
        assert!((h.mean().unwrap() - 0.00125).abs() < 1e-12);
        assert_eq!(h.quantile_bound(0.5), Some(0.001));
        assert_eq!(h.quantile_bound(0.9), Some(0.002));
        assert_eq!(h.quantile_bound(0.99), Some(0.004));
        assert_eq!(h.share_at(0.002), Some(0.9));
        assert_eq!(h.share_at(0.0005), None);
        assert!(PromHistogram::parse(ETCD, RECORDS_PER_FSYNC).is_none());
        assert_eq!(wal_backend(ETCD), None);
        let logbook = "# TYPE logbook_wal_backend gauge\nlogbook_wal_backend{backend=\"io-uring-direct\"} 1\n";
        assert_eq!(wal_backend(logbook).as_deref(), Some("io-uring-direct"));
    }

    #[test]
    fn differences_and_sums() {
        let before = PromHistogram::parse(ETCD, WAL_FSYNC).unwrap();
        let later = ETCD.replace("} 20", "} 30").replace("count 20", "count 30");
        let after = PromHistogram::parse(&later, WAL_FSYNC).unwrap();
        let d = after.since(&before);
        assert_eq!(d.cumulative, vec![0, 0, 10]);
        assert_eq!(d.count, 10);
        assert_eq!(d.quantile_bound(0.5), Some(0.004));
        let mut m = d.clone();
        m.merge(&before);
        assert_eq!(m.cumulative, vec![10, 18, 30]);
        assert_eq!(m.count, 30);
        // A restarted member's counters start again: keep the later scrape.
        assert_eq!(before.since(&after), before);
        // Members with different bounds sum where both have a bucket.
        let mut fine = PromHistogram {
            bounds: vec![0.0005, 0.001, 0.002],
            cumulative: vec![1, 2, 3],
            count: 3,
            sum: 0.003,
        };
        fine.merge(&before);
        assert_eq!(fine.bounds, vec![0.001, 0.002]);
        assert_eq!(fine.cumulative, vec![12, 21]);
    }

    #[test]
    fn labels_and_several_series() {
        let text = "x_bucket{a=\"1\",le=\"1\"} 2\nx_bucket{a=\"2\",le=\"1\"} 3\nx_count{a=\"1\"} 2\nx_count{a=\"2\"} 4\nx_sum 1.5\n";
        let h = PromHistogram::parse(text, "x").unwrap();
        assert_eq!(h.cumulative, vec![5]);
        assert_eq!(h.count, 6);
        assert_eq!(h.quantile_bound(0.99), None, "beyond the last finite bound");
    }

    #[test]
    fn http_bodies_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(plain).unwrap(), "hello");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "hello world");
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
