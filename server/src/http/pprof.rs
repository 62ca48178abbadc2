//! `/debug/pprof/` on the client URLs with `--enable-pprof` (or
//! `--log-level=debug`, as etcd registers it then too).
//!
//! etcd serves Go's runtime profiles there. Logbook serves what a Rust
//! process can give in the same format: `/debug/pprof/profile?seconds=N`
//! samples the whole process's CPU for N seconds (default 30, as Go) at
//! 100 Hz with the `pprof` crate (SIGPROF sampling, stacks symbolized in the
//! process) and answers with a profile in pprof's protobuf format
//! (`profile.proto`, uncompressed), which `go tool pprof` reads as it reads
//! Go's. `/debug/pprof/` lists it. There is no heap profile: jemalloc's
//! profiling needs a jemalloc built with it and switched on at start-up.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use prost::Message;
use serde::Deserialize;

/// The sampling rate, Go's `runtime.SetCPUProfileRate` default.
const HZ: i32 = 100;

/// The routes under `/debug/pprof/`.
pub fn router() -> Router {
    Router::new().route("/debug/pprof/", get(index)).route("/debug/pprof/profile", get(profile))
}

async fn index() -> Response {
    text(
        StatusCode::OK,
        "/debug/pprof/\n\nprofile: CPU profile (pprof protobuf). Take it with ?seconds=N (default 30), e.g.\n  go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=10\n",
    )
}

#[derive(Deserialize)]
struct ProfileQuery {
    seconds: Option<String>,
}

async fn profile(Query(q): Query<ProfileQuery>) -> Response {
    let seconds = match q.seconds.as_deref().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(s)) if s > 0 => s,
        // Go's handler: a bad or zero value is the default.
        Some(_) => 30,
    };
    let taken = tokio::task::spawn_blocking(move || take_profile(Duration::from_secs(seconds)))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    match taken {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"profile\""),
            );
            resp
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Could not enable CPU profiling: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// Samples the process for `span` and encodes the profile.
fn take_profile(span: Duration) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(span);
    let report = guard.report().build().map_err(|e| e.to_string())?;
    drop(guard);
    Ok(encode(&report).encode_to_vec())
}

/// The report as a `perftools.profiles.Profile`: two sample values (sample
/// count and CPU nanoseconds, as Go's CPU profile), one location and
/// function per symbol, the thread's name as a label.
fn encode(report: &pprof::Report) -> Profile {
    let mut strings = Strings::default();
    let mut profile = Profile::default();
    let (samples, count) = (strings.id("samples"), strings.id("count"));
    let (cpu, nanoseconds) = (strings.id("cpu"), strings.id("nanoseconds"));
    let thread = strings.id("thread");
    profile.sample_type = vec![
        ValueType { r#type: samples, unit: count },
        ValueType { r#type: cpu, unit: nanoseconds },
    ];
    let period = 1_000_000_000 / i64::from(HZ);
    let mut functions: HashMap<String, u64> = HashMap::new();
    for (frames, n) in &report.data {
        let mut location_id = Vec::new();
        for symbol in frames.frames.iter().flatten() {
            let name = symbol.name();
            let id = match functions.get(&name) {
                Some(id) => *id,
                None => {
                    let id = profile.function.len() as u64 + 1;
                    profile.function.push(Function {
                        id,
                        name: strings.id(&name),
                        system_name: strings.id(&symbol.sys_name()),
                        filename: strings.id(&symbol.filename()),
                        start_line: 0,
                    });
                    profile.location.push(Location {
                        id,
                        mapping_id: 0,
                        address: symbol.addr.map_or(0, |a| a as u64),
                        line: vec![Line { function_id: id, line: i64::from(symbol.lineno()) }],
                    });
                    functions.insert(name, id);
                    id
                }
            };
            location_id.push(id);
        }
        let n = *n as i64;
        profile.sample.push(Sample {
            location_id,
            value: vec![n, n * period],
            label: vec![Label {
                key: thread,
                str: strings.id(&frames.thread_name_or_id()),
                num: 0,
                num_unit: 0,
            }],
        });
    }
    profile.time_nanos =
        report.timing.start_time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    profile.duration_nanos = report.timing.duration.as_nanos() as i64;
    profile.period_type = Some(ValueType { r#type: cpu, unit: nanoseconds });
    profile.period = period;
    profile.string_table = strings.table;
    profile
}

/// The profile's string table (entry 0 is the empty string).
struct Strings {
    table: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { table: vec![String::new()], ids: HashMap::from([(String::new(), 0)]) }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.table.len() as i64;
        self.table.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

// pprof's profile.proto (github.com/google/pprof/proto/profile.proto),
// the messages and fields a CPU profile uses, with their numbers.

#[derive(Clone, PartialEq, prost::Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
    #[prost(int64, tag = "4")]
    num_unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(uint64, tag = "3")]
    address: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
    #[prost(int64, tag = "5")]
    start_line: i64,
}
