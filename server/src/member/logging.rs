//! The member's log: every `tracing` event written as etcd's zap logger
//! writes it, so tools that read etcd's logs (etcd's own e2e framework,
//! log shippers parsing its JSON) read Logbook's.
//!
//! A JSON line (`--log-format=json`, the default), keys in zap's order, the
//! event's fields after them with `_` written as `-` (`member_id` becomes
//! `member-id`, etcd's spelling):
//!
//! ```text
//! {"level":"info","ts":"2026-01-02T15:04:05.123456Z","caller":"member/tasks.rs:25","msg":"ready to serve client requests"}
//! ```
//!
//! A console line (`--log-format=console`): the same, tab-separated, the
//! fields as one JSON object at the end. Lines go to every `--log-outputs`
//! target; a file target rotates (lumberjack's rules, through the
//! `file-rotate` crate) with `--enable-log-rotation`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, DateFrom, FileLimit};
use file_rotate::{ContentLimit, FileRotate};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat, LogOutput, LogRotation};
use crate::error::{Error, Result};

/// Installs the member's logger (once per process; a second call keeps the
/// first). `RUST_LOG`, when set, overrides `--log-level` with tracing's
/// directives.
pub fn init(cfg: &LogConfig) -> Result<()> {
    let mut sinks = Vec::new();
    for out in &cfg.outputs {
        sinks.push(match out {
            LogOutput::Stderr | LogOutput::Journal => Sink::Stderr,
            LogOutput::Stdout => Sink::Stdout,
            LogOutput::File(path) => open_file(path, cfg.rotation.as_ref())?,
        });
    }
    let level = match cfg.level.as_str() {
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let layer = ZapLayer { format: cfg.format, sinks: Mutex::new(sinks) };
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
    Ok(())
}

/// Opens a file target for appending (zap's sink), or its rotating writer.
fn open_file(path: &str, rotation: Option<&LogRotation>) -> Result<Sink> {
    // Opened first either way, so a bad path is an error naming it
    // (file-rotate would panic creating a directory it cannot).
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("couldn't open sink {path:?}"), e))?;
    let Some(r) = rotation else {
        return Ok(Sink::File(file));
    };
    drop(file);
    // lumberjack keeps `maxbackups` files and removes those older than
    // `maxage` days; file-rotate applies one of the two limits, the count
    // when both are set.
    let limit = if r.maxbackups > 0 {
        FileLimit::MaxFiles(r.maxbackups as usize)
    } else if r.maxage > 0 {
        FileLimit::Age(chrono::Duration::days(r.maxage as i64))
    } else {
        FileLimit::Unlimited
    };
    // lumberjack's backup names carry the time to the millisecond:
    // `etcd.log` becomes `etcd-2026-01-02T15-04-05.000.log`; file-rotate
    // appends the suffix: `etcd.log.2026-01-02T15-04-05`.
    let suffix = AppendTimestamp::with_format("%Y-%m-%dT%H-%M-%S", limit, DateFrom::Now);
    let compression = if r.compress { Compression::OnRotate(0) } else { Compression::None };
    let bytes = usize::try_from(r.max_bytes()).unwrap_or(usize::MAX);
    Ok(Sink::Rotating(Box::new(FileRotate::new(
        Path::new(path),
        suffix,
        ContentLimit::BytesSurpassed(bytes),
        compression,
        None,
    ))))
}

/// Where lines go.
enum Sink {
    Stderr,
    Stdout,
    File(File),
    Rotating(Box<FileRotate<AppendTimestamp>>),
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) {
        // A log line that cannot be written is dropped: there is nowhere
        // to report it.
        let _ = match self {
            Sink::Stderr => std::io::stderr().lock().write_all(line),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line).and_then(|()| out.flush())
            }
            Sink::File(f) => f.write_all(line),
            Sink::Rotating(f) => f.write_all(line).and_then(|()| f.flush()),
        };
    }
}

/// The `tracing` layer writing zap's lines.
struct ZapLayer {
    format: LogFormat,
    /// One lock for all targets keeps each line whole and in order everywhere.
    sinks: Mutex<Vec<Sink>>,
}

impl<S: Subscriber> Layer<S> for ZapLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let caller = match (&fields.log_file, fields.log_line) {
            // Records from the `log` crate carry their origin as fields.
            (Some(file), line) => caller(file, line),
            _ => caller(meta.file().unwrap_or("?"), meta.line()),
        };
        let logger = (meta.target() == "raft").then_some("raft");
        let line = match self.format {
            LogFormat::Json => json_line(meta.level(), logger, &caller, &fields),
            LogFormat::Console => console_line(meta.level(), logger, &caller, &fields),
        };
        for sink in self.sinks.lock().iter_mut() {
            sink.write_line(line.as_bytes());
        }
    }
}

/// zap's level names (tracing's trace is zap's debug).
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// etcd's timestamp: local time to the microsecond, "Z" when it is UTC.
fn timestamp() -> String {
    let now = chrono::Local::now();
    let zone = if now.offset().local_minus_utc() == 0 {
        "Z".to_string()
    } else {
        now.format("%z").to_string()
    };
    format!("{}{zone}", now.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

/// zap's short caller: the file's directory and name, and the line.
fn caller(file: &str, line: Option<u32>) -> String {
    let mut parts = file.rsplit(['/', '\\']);
    let name = parts.next().unwrap_or(file);
    // A crate's `src` says nothing: its crate's directory does ("wal/recovery.rs").
    let dir = match parts.next() {
        Some("src") => parts.next().or(Some("src")),
        other => other,
    };
    let short = match dir {
        Some(dir) if !dir.is_empty() => format!("{dir}/{name}"),
        _ => name.to_string(),
    };
    format!("{short}:{}", line.unwrap_or(0))
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn json_line(level: &Level, logger: Option<&str>, caller: &str, f: &Fields) -> String {
    let mut out = format!(r#"{{"level":"{}","ts":"{}""#, level_name(level), timestamp());
    if let Some(logger) = logger {
        let _ = write!(out, r#","logger":{}"#, json_str(logger));
    }
    let _ = write!(out, r#","caller":{},"msg":{}"#, json_str(caller), json_str(&f.msg));
    for (key, value) in &f.fields {
        let _ = write!(out, ",{}:{value}", json_str(key));
    }
    out.push_str("}\n");
    out
}

fn console_line(level: &Level, logger: Option<&str>, caller: &str, f: &Fields) -> String {
    let mut out = format!("{}\t{}", timestamp(), level_name(level));
    if let Some(logger) = logger {
        let _ = write!(out, "\t{logger}");
    }
    let _ = write!(out, "\t{caller}\t{}", f.msg);
    if !f.fields.is_empty() {
        let body: Vec<String> =
            f.fields.iter().map(|(k, v)| format!("{}: {v}", json_str(k))).collect();
        let _ = write!(out, "\t{{{}}}", body.join(", "));
    }
    out.push('\n');
    out
}

/// An event's message and fields, the values already as JSON.
#[derive(Default)]
struct Fields {
    msg: String,
    fields: Vec<(String, String)>,
    log_file: Option<String>,
    log_line: Option<u32>,
}

impl Fields {
    fn push(&mut self, field: &Field, json: String) {
        self.fields.push((field.name().replace('_', "-"), json));
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.msg = value.to_string(),
            "log.file" => self.log_file = Some(value.to_string()),
            "log.target" | "log.module_path" => {}
            _ => self.push(field, json_str(value)),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "log.line" {
            self.log_line = u32::try_from(value).ok();
        } else {
            self.push(field, value.to_string());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let json = if value.is_finite() { value.to_string() } else { json_str(&value.to_string()) };
        self.push(field, json);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, json_str(&value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.msg = text,
            "log.file" => self.log_file = Some(text),
            "log.target" | "log.module_path" => {}
            _ => self.push(field, json_str(&text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zaps_short_caller() {
        assert_eq!(caller("server/src/member/tasks.rs", Some(25)), "member/tasks.rs:25");
        assert_eq!(caller("main.rs", Some(3)), "main.rs:3");
        assert_eq!(caller("/a/b/c.rs", None), "b/c.rs:0");
        assert_eq!(caller("wal/src/recovery.rs", Some(7)), "wal/recovery.rs:7");
        assert_eq!(caller("src/main.rs", Some(1)), "src/main.rs:1");
    }

    #[test]
    fn timestamps_parse_as_etcds() {
        let ts = timestamp();
        // "2006-01-02T15:04:05.000000Z0700"
        assert_eq!(ts.as_bytes()[10], b'T');
        assert_eq!(ts[20..26].len(), 6, "{ts}");
        assert!(ts[20..26].bytes().all(|b| b.is_ascii_digit()), "{ts}");
        assert!(
            chrono::DateTime::parse_from_str(&ts.replace('Z', "+0000"), "%Y-%m-%dT%H:%M:%S%.6f%z")
                .is_ok()
        );
    }

    #[test]
    fn lines_in_zaps_shapes() {
        let f = Fields {
            msg: "ready \"to\" serve".into(),
            fields: vec![("member-id".into(), "\"8e9e\"".into()), ("n".into(), "3".into())],
            log_file: None,
            log_line: None,
        };
        let line = json_line(&Level::INFO, None, "member/tasks.rs:25", &f);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["caller"], "member/tasks.rs:25");
        assert_eq!(v["msg"], "ready \"to\" serve");
        assert_eq!(v["member-id"], "8e9e");
        assert_eq!(v["n"], 3);
        assert!(line.starts_with(r#"{"level":"info","ts":""#), "{line}");
        let line = console_line(&Level::WARN, Some("raft"), "raft/log.rs:1", &f);
        let cols: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(&cols[1..5], &["warn", "raft", "raft/log.rs:1", "ready \"to\" serve"]);
        assert_eq!(cols[5], r#"{"member-id": "8e9e", "n": 3}"#);
    }

    #[test]
    fn rotation_keeps_maxbackups_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.log");
        let r = LogRotation { maxsize: 1, maxbackups: 2, ..Default::default() };
        let mut sink = open_file(path.to_str().unwrap(), Some(&r)).unwrap();
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        // Four megabytes through a 1 MB limit: four rotations, two kept.
        for _ in 0..4 * 1024 + 1 {
            sink.write_line(&line);
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], "etcd.log");
        assert!(
            names[1].starts_with("etcd.log.") && names[2].starts_with("etcd.log."),
            "{names:?}"
        );
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    }

    #[test]
    fn an_unopenable_output_is_an_error_naming_it() {
        let err = open_file("/nonexistent-dir/etcd.log", None).err().unwrap().to_string();
        assert!(err.contains("couldn't open sink \"/nonexistent-dir/etcd.log\""), "{err}");
    }
}
