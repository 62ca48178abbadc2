//! `--request-log FILE` (Logbook's own flag, off by default): one JSON line
//! per client request this member receives, saying what kind it is and what
//! shape it has, never the keys' or values' contents. It exists to record
//! what a real client (kube-apiserver first) sends its store, so the
//! benchmark's Kubernetes profile can be derived from a recording.
//!
//! ```text
//! {"t":12.031,"kind":"Txn","prefix":"/registry/pods/","compares":1,"compare":"mod","then":"put","else":"range","key_bytes":36,"value_bytes":2841}
//! {"t":12.040,"kind":"Range","prefix":"/registry/pods/","range":"prefix","limit":500,"revision":0,"kvs":500,"more":true}
//! ```
//!
//! `t` is seconds since the member opened the log. `prefix` is the key's
//! `/registry/<resource>/` (or its first path segment, or the key itself when
//! it has no `/`). Cheap: a line is formatted on the request's task and handed
//! to one writer thread through a channel; the thread buffers and flushes
//! when the channel runs dry. When the thread cannot keep up (the channel
//! holds [`BACKLOG`] lines) lines are dropped and counted, never waited for.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::{
    Compare, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, compare, request_op,
};
use serde::Serialize;

/// Lines waiting for the writer thread before new ones are dropped.
pub const BACKLOG: usize = 65_536;

/// The open log.
pub struct RequestLog {
    /// `None` only while dropping, so the writer sees the channel close.
    tx: Option<SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
    start: Instant,
    dropped: AtomicU64,
}

/// One request, as a line of the log.
#[derive(Debug, Default, Serialize)]
pub struct Entry {
    pub t: f64,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// `single`, `prefix` (range_end is the prefix's end), `range` or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keys_only: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub serializable: bool,
    /// Txn: number of compares, and their targets (`mod`, `create`, `version`, `value`, `lease`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compares: Option<usize>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compare: String,
    /// Txn: the success and failure branches' ops (`put`, `range`, `delete`, `txn`), `+`-joined.
    #[serde(rename = "then", skip_serializing_if = "Option::is_none")]
    pub then_ops: Option<String>,
    #[serde(rename = "else", skip_serializing_if = "Option::is_none")]
    pub else_ops: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lease: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prev_kv: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Range and read-only Txn answers: keys returned, and whether there were more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kvs: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_notify: Option<bool>,
    /// The request failed (its gRPC code's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RequestLog {
    /// Creates (truncates) `path` and starts its writer thread.
    pub fn open(path: &Path) -> std::io::Result<RequestLog> {
        let file = File::create(path)?;
        let (tx, rx) = sync_channel::<String>(BACKLOG);
        let writer = std::thread::Builder::new().name("request-log".into()).spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 16, file);
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(line) => {
                        if out.write_all(line.as_bytes()).is_err() {
                            return;
                        }
                        // Write whatever else is queued, then flush once the
                        // channel runs dry (or closes).
                        loop {
                            match rx.try_recv() {
                                Ok(line) => {
                                    if out.write_all(line.as_bytes()).is_err() {
                                        return;
                                    }
                                }
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => {
                                    let _ = out.flush();
                                    return;
                                }
                            }
                        }
                        let _ = out.flush();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        let _ = out.flush();
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        let _ = out.flush();
                        return;
                    }
                }
            }
        })?;
        Ok(RequestLog {
            tx: Some(tx),
            writer: Some(writer),
            start: Instant::now(),
            dropped: AtomicU64::new(0),
        })
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Appends `entry`, stamped with the time since the log opened.
    pub fn record(&self, mut entry: Entry) {
        entry.t = (self.start.elapsed().as_secs_f64() * 1e3).round() / 1e3;
        let Ok(mut line) = serde_json::to_string(&entry) else { return };
        line.push('\n');
        let Some(tx) = &self.tx else { return };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for RequestLog {
    /// Closes the channel and waits for the writer to write and flush every
    /// line already queued.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// `/registry/<resource>/` of a Kubernetes key, else the key's first path
/// segment with its slashes, else the key itself (e.g. `compact_rev_key`).
pub fn prefix_of(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    let parts: Vec<&str> = key.splitn(4, '/').collect();
    match parts.as_slice() {
        ["", "registry", resource, ..] if !resource.is_empty() => format!("/registry/{resource}/"),
        ["", first, _, ..] => format!("/{first}/"),
        _ => key.chars().take(64).collect(),
    }
}

/// How a key and range_end span the keyspace.
fn span(key: &[u8], range_end: &[u8]) -> &'static str {
    if range_end.is_empty() {
        "single"
    } else if range_end == [0] {
        "all"
    } else if prefix_end(key).as_deref() == Some(range_end) {
        "prefix"
    } else {
        "range"
    }
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A Range request's entry (the answer's fields are filled by the caller).
pub fn range(kind: &'static str, r: &RangeRequest) -> Entry {
    Entry {
        kind,
        prefix: prefix_of(&r.key),
        range: Some(span(&r.key, &r.range_end)),
        limit: Some(r.limit),
        revision: Some(r.revision),
        count_only: r.count_only,
        keys_only: r.keys_only,
        serializable: r.serializable,
        ..Default::default()
    }
}

/// A Put's entry.
pub fn put(key: &[u8], value: usize, lease: i64, prev_kv: bool) -> Entry {
    Entry {
        kind: "Put",
        prefix: prefix_of(key),
        key_bytes: Some(key.len()),
        value_bytes: Some(value),
        lease: lease != 0,
        prev_kv,
        ..Default::default()
    }
}

/// A DeleteRange's entry.
pub fn delete(key: &[u8], range_end: &[u8]) -> Entry {
    Entry {
        kind: "DeleteRange",
        prefix: prefix_of(key),
        range: Some(span(key, range_end)),
        ..Default::default()
    }
}

/// A Txn's entry: its shape, the first key it touches, its puts' sizes.
pub fn txn(r: &TxnRequest) -> Entry {
    let target = |c: &Compare| match compare::CompareTarget::try_from(c.target) {
        Ok(compare::CompareTarget::Mod) => "mod",
        Ok(compare::CompareTarget::Create) => "create",
        Ok(compare::CompareTarget::Version) => "version",
        Ok(compare::CompareTarget::Value) => "value",
        Ok(compare::CompareTarget::Lease) => "lease",
        Err(_) => "?",
    };
    let ops = |ops: &[RequestOp]| {
        ops.iter()
            .map(|o| match &o.request {
                Some(request_op::Request::RequestPut(_)) => "put",
                Some(request_op::Request::RequestRange(_)) => "range",
                Some(request_op::Request::RequestDeleteRange(_)) => "delete",
                Some(request_op::Request::RequestTxn(_)) => "txn",
                None => "none",
            })
            .collect::<Vec<_>>()
            .join("+")
    };
    let first_key = r.compare.first().map(|c| &c.key[..]).or_else(|| {
        r.success.iter().chain(&r.failure).find_map(|o| match &o.request {
            Some(request_op::Request::RequestPut(p)) => Some(&p.key[..]),
            Some(request_op::Request::RequestRange(g)) => Some(&g.key[..]),
            Some(request_op::Request::RequestDeleteRange(d)) => Some(&d.key[..]),
            _ => None,
        })
    });
    let mut key_bytes = None;
    let mut value_bytes = None;
    let mut lease = false;
    for o in r.success.iter() {
        if let Some(request_op::Request::RequestPut(p)) = &o.request {
            *key_bytes.get_or_insert(0) += p.key.len();
            *value_bytes.get_or_insert(0) += p.value.len();
            lease |= p.lease != 0;
        }
    }
    let mut compares: Vec<&str> = r.compare.iter().map(target).collect();
    compares.dedup();
    Entry {
        kind: "Txn",
        prefix: first_key.map(prefix_of).unwrap_or_default(),
        compares: Some(r.compare.len()),
        compare: compares.join("+"),
        then_ops: Some(ops(&r.success)),
        else_ops: Some(ops(&r.failure)),
        key_bytes,
        value_bytes,
        lease,
        ..Default::default()
    }
}

/// A watch's creation.
pub fn watch(c: &WatchCreateRequest) -> Entry {
    Entry {
        kind: "Watch",
        prefix: prefix_of(&c.key),
        range: Some(span(&c.key, &c.range_end)),
        revision: Some(c.start_revision),
        prev_kv: c.prev_kv,
        progress_notify: Some(c.progress_notify),
        ..Default::default()
    }
}

/// A request with nothing to say but its kind (LeaseGrant's TTL aside).
pub fn plain(kind: &'static str) -> Entry {
    Entry { kind, ..Default::default() }
}

/// `error` set to `status`'s code, when the request failed.
pub fn outcome<T>(mut e: Entry, result: &Result<T, tonic::Status>) -> Entry {
    if let Err(s) = result {
        e.error = Some(format!("{:?}", s.code()));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_resource() {
        assert_eq!(prefix_of(b"/registry/pods/default/web-1"), "/registry/pods/");
        assert_eq!(prefix_of(b"/registry/pods/"), "/registry/pods/");
        assert_eq!(prefix_of(b"/registry/leases/kube-node-lease/n1"), "/registry/leases/");
        assert_eq!(prefix_of(b"/bench/0001"), "/bench/");
        assert_eq!(prefix_of(b"compact_rev_key"), "compact_rev_key");
    }

    #[test]
    fn spans_are_named() {
        assert_eq!(span(b"/a/", b""), "single");
        assert_eq!(span(b"/a/", b"/a0"), "prefix");
        assert_eq!(span(b"/a/x", b"/a0"), "range");
        assert_eq!(span(b"\0", b"\0"), "all");
    }

    #[test]
    fn lines_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.log");
        let log = RequestLog::open(&path).unwrap();
        log.record(put(b"/registry/pods/a/b", 10, 0, false));
        let r = TxnRequest {
            compare: vec![Compare {
                key: b"/registry/pods/a/b".to_vec().into(),
                target: compare::CompareTarget::Mod as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        log.record(txn(&r));
        // Dropping the log waits for the writer: every line recorded is in the file.
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["kind"], "Put");
        assert_eq!(lines[0]["value_bytes"], 10);
        assert_eq!(lines[1]["kind"], "Txn");
        assert_eq!(lines[1]["compare"], "mod");
        assert_eq!(lines[1]["prefix"], "/registry/pods/");
    }

    #[test]
    fn no_line_is_lost_when_lines_arrive_faster_than_the_writer_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.log");
        let log = RequestLog::open(&path).unwrap();
        for i in 0..5000 {
            log.record(put(b"/registry/pods/a/b", i, 0, false));
        }
        assert_eq!(log.dropped(), 0);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let sizes: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["value_bytes"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(sizes, (0..5000).collect::<Vec<u64>>());
    }
}
