//! etcd's runtime flags, observed from outside the process and compared with
//! a real etcd 3.6 given the same flags: the HTTP/2 settings and keepalive of
//! the client port (`--max-concurrent-streams`, `--grpc-keepalive-*`),
//! `--socket-reuse-port`, `--enable-grpc-gateway=false`,
//! `--listen-client-http-urls`, the slow-request warnings, `--metrics=extensive`,
//! `--enable-pprof`, and `--max-wals` (segment files left in the data dir).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, Etcd, cached_etcd, connect, etcdctl, free_port, http_get, put, runtime};
use logbook_api::etcdserverpb::RangeRequest;

const ETCD_36: &str = "3.6.16";

fn etcd36() -> String {
    cached_etcd(ETCD_36, "etcd")
}

// ---- A raw HTTP/2 client: what the server says on the wire ----

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[derive(Debug)]
enum Got {
    Frame {
        kind: u8,
        flags: u8,
        payload: Vec<u8>,
    },
    /// The server closed the connection (or reset it).
    Closed,
    /// Nothing within the wait.
    Nothing,
}

struct H2 {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl H2 {
    /// Connects to `addr` (host:port) and sends the client preface and an
    /// empty SETTINGS frame, as a gRPC client opens a connection.
    fn open(addr: &str) -> H2 {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut h = H2 { stream, buf: Vec::new() };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        h.stream.write_all(&hello).unwrap();
        h
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next frame from the server, waiting at most `limit`.
    fn next(&mut self, limit: Duration) -> Got {
        let deadline = Instant::now() + limit;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let (kind, flags) = (self.buf[3], self.buf[4]);
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return Got::Frame { kind, flags, payload };
                }
            }
            if Instant::now() > deadline {
                return Got::Nothing;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// The server's first SETTINGS frame, as (identifier, value) pairs; it is
    /// acknowledged.
    fn server_settings(&mut self) -> Vec<(u16, u32)> {
        for _ in 0..20 {
            match self.next(Duration::from_secs(10)) {
                Got::Frame { kind: SETTINGS, flags, payload } if flags & ACK == 0 => {
                    self.send(&frame(SETTINGS, ACK, 0, &[]));
                    return payload
                        .chunks(6)
                        .map(|c| {
                            (
                                u16::from_be_bytes([c[0], c[1]]),
                                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                            )
                        })
                        .collect();
                }
                Got::Frame { .. } => {}
                other => panic!("no SETTINGS from the server: {other:?}"),
            }
        }
        panic!("no SETTINGS within 20 frames");
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// What the server advertises as SETTINGS_MAX_CONCURRENT_STREAMS, if anything.
fn advertised_streams(url: &str) -> Option<u32> {
    let mut h = H2::open(&host_port(url));
    h.server_settings()
        .into_iter()
        .find(|(id, _)| *id == SETTINGS_MAX_CONCURRENT_STREAMS)
        .map(|s| s.1)
}

fn logbook(extra: &[&str]) -> Cluster {
    Cluster::start(1, extra)
}

#[test]
fn max_concurrent_streams_is_advertised_in_the_client_ports_settings_as_etcd_does() {
    let lb = logbook(&["--max-concurrent-streams=7"]);
    let etcd = Etcd::start_with(&etcd36(), &["--max-concurrent-streams=7"]);
    assert_eq!(advertised_streams(&etcd.client_url), Some(7), "etcd");
    assert_eq!(advertised_streams(&lb.specs[0].client_url()), Some(7), "logbook");
    // The default (2^32-1, no limit) is not advertised by either.
    let lb_default = logbook(&[]);
    let etcd_default = Etcd::start_with(&etcd36(), &[]);
    assert_eq!(
        advertised_streams(&lb_default.specs[0].client_url()),
        advertised_streams(&etcd_default.client_url)
    );
    assert_eq!(advertised_streams(&lb_default.specs[0].client_url()), None);
    // The limit is enforced, not only advertised: etcdctl still works under it.
    let out = lb.ctl(0, &["put", "k", "v"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Sends four PINGs at once on a connection without streams and returns the
/// GOAWAY the server answers with (error code, debug data), or `None` if the
/// connection stays open.
fn goaway_after_quick_pings(url: &str) -> Option<(u32, String)> {
    let mut h = H2::open(&host_port(url));
    h.server_settings();
    let mut pings = Vec::new();
    for i in 0..4u8 {
        pings.extend(frame(PING, 0, 0, &[i; 8]));
    }
    h.send(&pings);
    for _ in 0..50 {
        match h.next(Duration::from_secs(10)) {
            Got::Frame { kind: GOAWAY, payload, .. } => {
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                return Some((code, String::from_utf8_lossy(&payload[8..]).into_owned()));
            }
            Got::Frame { .. } => {}
            Got::Closed | Got::Nothing => return None,
        }
    }
    None
}

#[test]
fn a_client_pinging_more_often_than_min_time_gets_goaway_too_many_pings_as_from_etcd() {
    let etcd = Etcd::start_with(&etcd36(), &["--grpc-keepalive-min-time=5s"]);
    let lb = logbook(&["--grpc-keepalive-min-time=5s"]);
    let from_etcd = goaway_after_quick_pings(&etcd.client_url);
    assert_eq!(from_etcd, Some((0xb, "too_many_pings".to_string())), "etcd");
    assert_eq!(goaway_after_quick_pings(&lb.specs[0].client_url()), from_etcd, "logbook");
    // The member serves on: a new connection works.
    let out = lb.ctl(0, &["put", "k", "v"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One ping is fine.
    let mut h = H2::open(&host_port(&lb.specs[0].client_url()));
    h.server_settings();
    h.send(&frame(PING, 0, 0, &[9; 8]));
    let mut acked = false;
    for _ in 0..10 {
        match h.next(Duration::from_secs(10)) {
            Got::Frame { kind: PING, flags, payload } if flags & ACK != 0 => {
                assert_eq!(payload, vec![9; 8]);
                acked = true;
                break;
            }
            Got::Frame { kind: GOAWAY, .. } | Got::Closed | Got::Nothing => break,
            Got::Frame { .. } => {}
        }
    }
    assert!(acked, "one ping was not answered");
}

/// Waits for the server's keepalive PING on an idle connection, does not
/// answer it, and reports whether the server then closed the connection.
fn keepalive_ping_then_close(url: &str) -> (bool, bool) {
    let mut h = H2::open(&host_port(url));
    h.server_settings();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pinged = false;
    while Instant::now() < deadline {
        match h.next(Duration::from_secs(1)) {
            Got::Frame { kind: PING, flags, .. } if flags & ACK == 0 => pinged = true,
            Got::Frame { kind: GOAWAY, .. } | Got::Closed => return (pinged, true),
            Got::Frame { .. } | Got::Nothing => {}
        }
    }
    (pinged, false)
}

#[test]
fn keepalive_pings_an_idle_client_and_drops_one_that_does_not_answer_as_etcd() {
    let flags = ["--grpc-keepalive-interval=1s", "--grpc-keepalive-timeout=1s"];
    let etcd = Etcd::start_with(&etcd36(), &flags);
    let lb = logbook(&flags);
    assert_eq!(keepalive_ping_then_close(&etcd.client_url), (true, true), "etcd");
    assert_eq!(keepalive_ping_then_close(&lb.specs[0].client_url()), (true, true), "logbook");
}

/// Binds a socket with SO_REUSEPORT to 127.0.0.1:`port`; whether the
/// kernel let it.
fn bind_with_reuse_port(port: u16) -> bool {
    // SAFETY: plain socket calls on a descriptor this function owns and
    // closes; the address struct outlives the bind call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let ok = libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) == 0;
        libc::close(fd);
        ok
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn socket_reuse_port_lets_another_socket_bind_the_listening_ports_as_etcd() {
    let etcd = Etcd::start_with(&etcd36(), &["--socket-reuse-port=true"]);
    let lb = logbook(&["--socket-reuse-port=true"]);
    assert!(bind_with_reuse_port(port_of(&etcd.client_url)), "etcd");
    assert!(bind_with_reuse_port(lb.specs[0].client_port), "logbook client port");
    assert!(bind_with_reuse_port(lb.specs[0].peer_port), "logbook peer port");
    // Without the flag the ports are the member's alone.
    let plain = logbook(&[]);
    let etcd_plain = Etcd::start_with(&etcd36(), &[]);
    assert!(!bind_with_reuse_port(port_of(&etcd_plain.client_url)), "etcd");
    assert!(!bind_with_reuse_port(plain.specs[0].client_port), "logbook");
}

#[test]
fn without_the_grpc_gateway_v3_paths_are_not_found_as_in_etcd() {
    let etcd = Etcd::start_with(&etcd36(), &["--enable-grpc-gateway=false"]);
    let lb = logbook(&["--enable-grpc-gateway=false"]);
    let body = r#"{"key":"Zm9v"}"#;
    let from_etcd = common::gw(&etcd.client_url, "/v3/kv/range", body);
    let from_lb = common::gw(&lb.specs[0].client_url(), "/v3/kv/range", body);
    assert_eq!(from_etcd.status, 404, "etcd: {}", from_etcd.body);
    assert_eq!(
        (from_lb.status, from_lb.body.as_str()),
        (from_etcd.status, from_etcd.body.as_str())
    );
    // The rest of the HTTP side and gRPC are still served.
    assert_eq!(http_get(&format!("{}/health", lb.specs[0].client_url())).status, 200);
    let out = lb.ctl(0, &["put", "k", "v"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // With the gateway (the default) the same request is served.
    let on = logbook(&[]);
    assert_eq!(common::gw(&on.specs[0].client_url(), "/v3/kv/range", body).status, 200);
}

/// `GET path` over HTTP/1.1 on a raw connection: the status, or `None` when
/// the server closes the connection without an answer.
fn raw_http1_status(url: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host_port(url)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Starts the etcd at `program` with client URL `client` and HTTP-only URL
/// `http`; waits until it serves gRPC.
fn etcd_split(program: &str, client: &str, http: &str, dir: &Path) -> Child {
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
    let child = Command::new(program)
        .args(["--name", "e1", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", client, "--advertise-client-urls", client])
        .args(["--listen-client-http-urls", http])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("e1={peer}")])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_grpc(client);
    child
}

fn wait_grpc(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let rt = runtime();
    loop {
        let ok = rt.block_on(async {
            let Ok(mut kv) = connect(url).await else { return false };
            kv.range(RangeRequest { key: "probe".into(), ..Default::default() }).await.is_ok()
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not serving gRPC within 30s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a client URL and an HTTP-only URL serve: gRPC (etcdctl), /health,
/// and the gateway, on each.
fn split_behaviour(client: &str, http: &str) -> [bool; 6] {
    let grpc_ok = |url: &str| {
        etcdctl(&host_port(url), &["--dial-timeout=2s", "--command-timeout=3s", "get", "k"], None)
            .status
            .success()
    };
    let gateway_ok = |url: &str| {
        std::panic::catch_unwind(|| common::gw(url, "/v3/kv/range", r#"{"key":"aw=="}"#).status)
            .is_ok_and(|s| s == 200)
    };
    [
        grpc_ok(client),
        raw_http1_status(client, "/health") == Some(200),
        gateway_ok(client),
        grpc_ok(http),
        raw_http1_status(http, "/health") == Some(200),
        gateway_ok(http),
    ]
}

#[test]
fn listen_client_http_urls_take_the_http_side_off_the_client_urls_as_in_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let e_client = format!("http://127.0.0.1:{}", free_port());
    let e_http = format!("http://127.0.0.1:{}", free_port());
    let mut etcd = etcd_split(&etcd36(), &e_client, &e_http, dir.path());
    let from_etcd = split_behaviour(&e_client, &e_http);
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert_eq!(from_etcd, [true, false, false, false, true, true], "etcd");

    let lb_http = format!("http://127.0.0.1:{}", free_port());
    let lb = logbook(&["--listen-client-http-urls", &lb_http]);
    let from_lb = split_behaviour(&lb.specs[0].client_url(), &lb_http);
    assert_eq!(from_lb, from_etcd, "logbook:\n{}", lb.log(0));
}

#[test]
fn slow_unary_requests_and_applies_are_logged_as_etcd_logs_them() {
    let flags = ["--warning-unary-request-duration=1ns", "--warning-apply-duration=1ns"];
    let etcd = Etcd::start_with(&etcd36(), &flags);
    let out = etcdctl(&host_port(&etcd.client_url), &["put", "k", "v"], None);
    assert!(out.status.success());
    let lb = logbook(&flags);
    lb.ctl_ok(0, &["put", "k", "v"]);
    let etcd_log = || std::fs::read_to_string(etcd.dir.path().join("etcd.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for line in ["request stats", "apply request took too long"] {
        loop {
            if etcd_log().contains(line) && lb.log(0).contains(line) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{line:?} missing; etcd:\n{}\nlogbook:\n{}",
                etcd_log(),
                lb.log(0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // At the defaults (300 ms, 100 ms) a put on an idle member is not slow.
    let quiet = logbook(&[]);
    quiet.ctl_ok(0, &["put", "k", "v"]);
    assert!(!quiet.log(0).contains("request stats"), "{}", quiet.log(0));
}

/// The `grpc_server_handling_seconds` bucket series of KV.Put, if any.
fn put_histogram(url: &str) -> Option<String> {
    let text = http_get(&format!("{url}/metrics")).body;
    text.lines()
        .find(|l| {
            l.starts_with("grpc_server_handling_seconds_count{")
                && l.contains(r#"grpc_method="Put""#)
                && l.contains(r#"grpc_service="etcdserverpb.KV""#)
                && l.contains(r#"grpc_type="unary""#)
        })
        .map(str::to_string)
}

#[test]
fn metrics_extensive_adds_the_grpc_handling_histogram_as_etcd() {
    let etcd = Etcd::start_with(&etcd36(), &["--metrics=extensive"]);
    let lb = logbook(&["--metrics=extensive"]);
    assert!(etcdctl(&host_port(&etcd.client_url), &["put", "k", "v"], None).status.success());
    lb.ctl_ok(0, &["put", "k", "v"]);
    let from_etcd = put_histogram(&etcd.client_url).expect("etcd has the histogram");
    let from_lb = put_histogram(&lb.specs[0].client_url())
        .unwrap_or_else(|| panic!("no KV.Put histogram in logbook's /metrics (etcd: {from_etcd})"));
    assert!(from_lb.ends_with(" 1"), "{from_lb}");
    // Basic (the default): no histogram.
    let basic = logbook(&[]);
    basic.ctl_ok(0, &["put", "k", "v"]);
    assert_eq!(put_histogram(&basic.specs[0].client_url()), None);
}

/// WAL segment files in a member's data dir.
fn wal_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("member").join("wal"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

/// Writes `n` values of 256 bytes to member 0 of `c`.
fn write_keys(c: &Cluster, n: usize) {
    let rt = runtime();
    rt.block_on(async {
        let mut kv = connect(&c.specs[0].client_url()).await.unwrap();
        let value = "x".repeat(256);
        for i in 0..n {
            put(&mut kv, &format!("k{}", i % 50), &value).await.unwrap();
        }
    });
}

/// A one-member cluster with 16 KiB WAL segments (Logbook's internal test
/// switch) and `flags`.
fn small_segments(flags: &[&str]) -> Cluster {
    let mut c = Cluster::create(1, flags);
    c.spawn_env(0, &[("LOGBOOK_WAL_SEGMENT_BYTES".into(), (16 << 10).to_string())]);
    c.wait_ready(0, Duration::from_secs(30));
    c
}

#[test]
fn max_wals_keeps_at_most_that_many_wal_files_and_zero_keeps_all() {
    let mut c = small_segments(&["--snapshot-count=20", "--max-wals=3"]);
    write_keys(&c, 1200);
    // The log is compacted every 20 applied entries once the engine has
    // committed them (in the background): wait for the files to go.
    let data = c.specs[0].data_dir.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wal_files(&data) > 3 {
        assert!(Instant::now() < deadline, "{} WAL files left, not 3", wal_files(&data));
        write_keys(&c, 20);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(wal_files(&data), 3);
    // What is left recovers: restart and read.
    c.stop(0);
    c.spawn(0);
    c.wait_ready(0, Duration::from_secs(30));
    assert_eq!(c.ctl_ok(0, &["get", "k7", "--print-value-only"]).trim().len(), 256);

    // 0 keeps every file, as etcd's purge does.
    let all = small_segments(&["--snapshot-count=20", "--max-wals=0"]);
    write_keys(&all, 1200);
    assert!(wal_files(&all.specs[0].data_dir) > 10, "{}", wal_files(&all.specs[0].data_dir));
}

/// `GET path` over HTTP/1.0: the status and the body's bytes.
fn raw_get(url: &str, path: &str, limit: Duration) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(host_port(url)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete answer") + 4;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[end..].to_vec())
}

/// `go tool pprof -raw` of a profile: Go's own reader of the format.
fn go_pprof_raw(profile: &[u8], dir: &Path, name: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, profile).unwrap();
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw", "-symbolize=none"])
        .arg(&file)
        .env("HOME", dir)
        .output()
        .expect("go is installed (it builds the cached etcd)");
    assert!(out.status.success(), "go tool pprof: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn enable_pprof_serves_a_cpu_profile_that_go_tool_pprof_reads_as_etcds() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_with(&etcd36(), &["--enable-pprof"]);
    let lb = logbook(&["--enable-pprof"]);
    let path = "/debug/pprof/profile?seconds=1";
    let (status, body) = raw_get(&etcd.client_url, path, Duration::from_secs(30));
    assert_eq!(status, 200, "etcd");
    let from_etcd = go_pprof_raw(&body, dir.path(), "etcd.pb");
    let (status, body) = raw_get(&lb.specs[0].client_url(), path, Duration::from_secs(30));
    assert_eq!(status, 200, "logbook: {}", String::from_utf8_lossy(&body));
    let from_lb = go_pprof_raw(&body, dir.path(), "logbook.pb");
    // Both are CPU profiles: the same sample and period types.
    for line in ["PeriodType: cpu nanoseconds", "samples/count cpu/nanoseconds"] {
        assert!(from_etcd.contains(line), "etcd:\n{from_etcd}");
        assert!(from_lb.contains(line), "logbook:\n{from_lb}");
    }
    // Off by default: not found, as in etcd.
    let off = logbook(&[]);
    let etcd_off = Etcd::start_with(&etcd36(), &[]);
    assert_eq!(raw_get(&etcd_off.client_url, path, Duration::from_secs(30)).0, 404);
    assert_eq!(raw_get(&off.specs[0].client_url(), path, Duration::from_secs(30)).0, 404);
}
