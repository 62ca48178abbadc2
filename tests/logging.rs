//! The logging flags (`--logger`, `--log-outputs`, `--log-level`,
//! `--log-format`, `--enable-log-rotation`, `--log-rotation-config-json`),
//! each run against etcd 3.6.16 with the same flags and compared: the lines
//! land where etcd's land, in zap's shapes, and the start-up lines etcd's
//! e2e framework and operators wait for ("published local member to cluster
//! through raft", "ready to serve client requests", "serving client
//! traffic ...") are there with etcd's wording and fields.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cached_etcd, free_port};

const ETCD: &str = "3.6.16";

/// What one server wrote while starting and stopping.
struct Run {
    stdout: String,
    stderr: String,
    dir: tempfile::TempDir,
    /// The member ID `etcdctl member list` reported.
    member_id: String,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum System {
    Logbook,
    Etcd,
}

fn command(system: System) -> Command {
    match system {
        System::Logbook => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_logbook"));
            c.arg("serve");
            c
        }
        System::Etcd => Command::new(cached_etcd(ETCD, "etcd")),
    }
}

/// The member's usual flags; `{dir}` in `extra` is its temporary directory.
fn member_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut args: Vec<String> = [
        "--name",
        "n1",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("n1={peer_url}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.replace("{dir}", &dir.display().to_string())));
    args
}

/// Starts `system` with `extra` flags, waits until it serves (a write
/// through etcdctl succeeds), stops it with SIGTERM and returns its output.
fn run(system: System, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let args = member_args(dir.path(), extra);
    let client_url =
        args[args.iter().position(|a| a == "--advertise-client-urls").unwrap() + 1].clone();
    let mut child = command(system)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .expect("starting the server");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let member_id = loop {
        let out = common::etcdctl(&client_url, &["member", "list", "-w", "json"], None);
        if out.status.success() {
            let v = common::json(&String::from_utf8_lossy(&out.stdout));
            break format!("{:x}", v["members"][0]["ID"].as_u64().expect("a member ID"));
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{system:?} did not serve within 30s\nstderr:\n{}", read("stderr"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The line after start-up ("serving client traffic ...") may come last.
    std::thread::sleep(Duration::from_millis(300));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stop = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > stop {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    Run { stdout: read("stdout"), stderr: read("stderr"), member_id, dir }
}

/// Runs `system` with flags that make it fail at start-up; its stderr.
fn refused(system: System, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(system)
        .args(member_args(dir.path(), extra))
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{system:?} kept running with {extra:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{system:?} {extra:?} exited 0");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON log lines of `text` (every line must be one).
fn json_lines(text: &str, what: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {l}"))
        })
        .collect()
}

/// The first line whose msg is `msg`.
fn line<'a>(lines: &'a [serde_json::Value], msg: &str) -> Option<&'a serde_json::Value> {
    lines.iter().find(|l| l["msg"] == msg)
}

/// zap's timestamp: "2006-01-02T15:04:05.000000Z0700".
fn zap_ts(ts: &str) -> bool {
    let b = ts.as_bytes();
    ts.len() >= 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && ts[20..26].bytes().all(|c| c.is_ascii_digit())
        && (ts.ends_with('Z') || ts[26..].starts_with(['+', '-']))
}

#[test]
fn default_output_is_zap_json_on_stderr_with_etcds_startup_lines() {
    for system in [System::Etcd, System::Logbook] {
        let r = run(system, &[]);
        assert!(r.stdout.is_empty(), "{system:?} wrote to stdout: {}", r.stdout);
        let lines = json_lines(&r.stderr, &format!("{system:?}"));
        for l in &lines {
            for key in ["level", "ts", "caller", "msg"] {
                assert!(l[key].is_string(), "{system:?}: no {key:?} in {l}");
            }
            assert!(zap_ts(l["ts"].as_str().unwrap()), "{system:?}: ts of {l}");
            assert!(
                ["debug", "info", "warn", "error"].contains(&l["level"].as_str().unwrap()),
                "{system:?}: level of {l}"
            );
        }
        let published = line(&lines, "published local member to cluster through raft")
            .unwrap_or_else(|| panic!("{system:?}: no published line:\n{}", r.stderr));
        assert_eq!(published["level"], "info");
        assert_eq!(published["local-member-id"], r.member_id.as_str(), "{system:?}");
        let attrs = published["local-member-attributes"].as_str().unwrap();
        assert!(attrs.starts_with("{Name:n1 ClientURLs:[http://127.0.0.1:"), "{system:?}: {attrs}");
        assert!(published["cluster-id"].is_string(), "{system:?}: {published}");
        assert_eq!(published["publish-timeout"], "7s", "{system:?}");

        let ready = line(&lines, "ready to serve client requests")
            .unwrap_or_else(|| panic!("{system:?}: no ready line:\n{}", r.stderr));
        assert_eq!(ready["level"], "info");
        let serving =
            line(&lines, "serving client traffic insecurely; this is strongly discouraged!")
                .unwrap_or_else(|| panic!("{system:?}: no serving line:\n{}", r.stderr));
        assert_eq!(serving["traffic"], "grpc+http");
        assert!(serving["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{serving}");
        assert!(line(&lines, "serving peer traffic").is_some(), "{system:?}:\n{}", r.stderr);
    }
}

#[test]
fn several_outputs_get_every_line() {
    for system in [System::Etcd, System::Logbook] {
        let r = run(system, &["--log-outputs", "stdout,{dir}/member.log"]);
        let file = std::fs::read_to_string(r.dir.path().join("member.log")).unwrap();
        assert!(r.stderr.is_empty(), "{system:?} wrote to stderr: {}", r.stderr);
        let out = json_lines(&r.stdout, "stdout");
        let logged = json_lines(&file, "file");
        assert!(line(&out, "ready to serve client requests").is_some(), "{system:?}: {}", r.stdout);
        assert!(line(&logged, "ready to serve client requests").is_some(), "{system:?}: {file}");
        // The same lines in both (the last may be cut short by the stop).
        let msgs = |ls: &[serde_json::Value]| -> Vec<String> {
            ls.iter().map(|l| l["msg"].as_str().unwrap().to_string()).collect()
        };
        let (a, b) = (msgs(&out), msgs(&logged));
        let n = a.len().min(b.len());
        assert!(n > 5, "{system:?}: {a:?}");
        assert_eq!(a[..n], b[..n], "{system:?}");
    }
}

#[test]
fn log_level_warn_hides_info_lines() {
    for system in [System::Etcd, System::Logbook] {
        let r = run(system, &["--log-level", "warn"]);
        for l in json_lines(&r.stderr, &format!("{system:?}")) {
            assert!(["warn", "error"].contains(&l["level"].as_str().unwrap()), "{system:?}: {l}");
        }
        assert!(!r.stderr.contains("ready to serve client requests"), "{system:?}");
    }
}

#[test]
fn console_format_is_zaps_tab_separated_line() {
    for system in [System::Etcd, System::Logbook] {
        let r = run(system, &["--log-format", "console"]);
        let ready = r
            .stderr
            .lines()
            .find(|l| l.ends_with("\tready to serve client requests"))
            .unwrap_or_else(|| panic!("{system:?}: no ready line:\n{}", r.stderr));
        let cols: Vec<&str> = ready.split('\t').collect();
        assert_eq!(cols.len(), 4, "{system:?}: {ready}");
        assert!(zap_ts(cols[0]), "{system:?}: {ready}");
        assert_eq!(cols[1], "info");
        assert!(cols[2].contains(".go:") || cols[2].contains(".rs:"), "{system:?}: {ready}");
        let serving = r
            .stderr
            .lines()
            .find(|l| l.contains("\tserving client traffic insecurely"))
            .unwrap_or_else(|| panic!("{system:?}: no serving line:\n{}", r.stderr));
        let fields = serving.rsplit('\t').next().unwrap();
        assert!(
            fields.starts_with(r#"{"traffic": "grpc+http", "address": "127.0.0.1:"#),
            "{system:?}: {serving}"
        );
    }
}

#[test]
fn rotated_file_output_is_written() {
    for system in [System::Etcd, System::Logbook] {
        let r = run(
            system,
            &[
                "--enable-log-rotation",
                "--log-outputs",
                "{dir}/rotated.log",
                "--log-rotation-config-json",
                r#"{"maxsize": 1, "maxbackups": 2, "compress": true}"#,
            ],
        );
        let path: PathBuf = r.dir.path().join("rotated.log");
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.contains("ready to serve client requests"), "{system:?}: {file}");
        assert!(r.stderr.is_empty(), "{system:?}: {}", r.stderr);
    }
}

#[test]
fn bad_logging_flags_are_refused_with_etcds_messages() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--enable-log-rotation"],
            "--log-outputs requires a single file path when --log-rotate-config-json is defined",
        ),
        (
            &["--enable-log-rotation", "--log-outputs", "{dir}/a.log,{dir}/b.log"],
            "--log-outputs requires a single file path when --log-rotate-config-json is defined",
        ),
        (
            &["--log-outputs", "default,stdout"],
            "multi logoutput for \"default\" is not supported yet",
        ),
        (
            &[
                "--enable-log-rotation",
                "--log-outputs",
                "{dir}/a.log",
                "--log-rotation-config-json",
                "{maxsize",
            ],
            "improperly formatted log rotation config: ",
        ),
        (
            &[
                "--enable-log-rotation",
                "--log-outputs",
                "{dir}/a.log",
                "--log-rotation-config-json",
                r#"{"maxsize": "big"}"#,
            ],
            "invalid log rotation config: ",
        ),
    ];
    for (flags, message) in cases {
        for system in [System::Etcd, System::Logbook] {
            let err = refused(system, flags);
            // etcd logs it inside a JSON line, its quotes escaped.
            let escaped = serde_json::to_string(message).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            assert!(err.contains(message) || err.contains(escaped), "{system:?} {flags:?}: {err}");
        }
        let err = refused(System::Logbook, flags);
        assert_eq!(err.trim_end().lines().count(), 1, "{flags:?}: {err}");
    }
    // An unknown level: etcd 3.6 panics ("unrecognized level"); Logbook
    // refuses it as Go's flag package refuses a bad choice, in one line.
    assert!(
        refused(System::Etcd, &["--log-level", "loud"]).contains("unrecognized level: \"loud\"")
    );
    let err = refused(System::Logbook, &["--log-level", "loud"]);
    assert!(err.contains("invalid value \"loud\" for flag -log-level"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
