//! Black-box test harness: real `logbook serve` processes on 127.0.0.1 ports,
//! driven by the real `etcdctl` and by a gRPC client. Every process started
//! here is stopped through its handle when the harness is dropped; every wait
//! is bounded.

#![allow(dead_code)]

pub mod etcd_cluster;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use tonic::transport::Channel;

/// A free TCP port on 127.0.0.1 for a server this test starts.
///
/// Picked below Linux's ephemeral range (32768-60999): a port the kernel
/// handed out for `bind(0)` and we released can be taken by any outgoing
/// connection's source port before the server binds it (seen in CI as
/// "Address already in use"). Ports here are never used as source ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let spread = std::process::id() * 7919;
    for _ in 0..20_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((spread.wrapping_add(n)) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range on 127.0.0.1");
}

/// One member's fixed identity: name, ports, data dir.
#[derive(Clone, Debug)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl MemberSpec {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A cluster of `logbook serve` processes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub specs: Vec<MemberSpec>,
    pub procs: Vec<Option<Child>>,
    pub token: String,
    pub extra_args: Vec<String>,
}

impl Cluster {
    /// Starts `n` members and waits until every one serves linearizable reads.
    pub fn start(n: usize, extra_args: &[&str]) -> Cluster {
        let mut c = Cluster::create(n, extra_args);
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i, Duration::from_secs(30));
        }
        c
    }

    /// Picks ports and data dirs for `n` members without starting any (the caller
    /// starts them, e.g. with [`Cluster::spawn_env`]).
    pub fn create(n: usize, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<MemberSpec> = (1..=n)
            .map(|i| MemberSpec {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}.logbook")),
                log: dir.path().join(format!("m{i}.log")),
            })
            .collect();
        Cluster {
            dir,
            procs: (0..n).map(|_| None).collect(),
            specs,
            token: format!("test-{}", std::process::id()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn initial_cluster(&self) -> String {
        self.specs
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts member `i` (again).
    pub fn spawn(&mut self, i: usize) {
        self.spawn_env(i, &[]);
    }

    /// Starts member `i` (again) with extra environment variables.
    pub fn spawn_env(&mut self, i: usize, env: &[(String, String)]) {
        assert!(self.procs[i].is_none(), "member {i} already running");
        let s = &self.specs[i];
        let child = Serve {
            name: &s.name,
            data_dir: &s.data_dir,
            client_url: s.client_url(),
            peer_url: s.peer_url(),
            initial_cluster: &self.initial_cluster(),
            state: None,
            token: &self.token,
            extra_args: &self.extra_args,
            env,
            log: &s.log,
            netns: None,
        }
        .spawn();
        self.procs[i] = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.procs[i]);
    }

    /// Sends `signal` (e.g. SIGSTOP, SIGCONT) to member `i` if it runs; returns whether it did.
    pub fn signal(&self, i: usize, signal: i32) -> bool {
        signal_child(self.procs[i].as_ref(), signal)
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited cleanly.
    pub fn stop(&mut self, i: usize) -> bool {
        let Some(mut c) = self.procs[i].take() else { return true };
        // SAFETY: kill(2) on the PID of a child we own and have not reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn endpoints(&self) -> String {
        self.specs.iter().map(MemberSpec::endpoint).collect::<Vec<_>>().join(",")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.specs.len()).filter(|i| self.procs[*i].is_some()).collect()
    }

    /// Waits until member `i` answers a linearizable read.
    pub fn wait_ready(&self, i: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = self.specs[i].client_url();
        let rt = runtime();
        loop {
            let ok = rt.block_on(async {
                let Ok(mut kv) = connect(&url).await else { return false };
                match kv
                    .range(RangeRequest { key: "ready-probe".into(), ..Default::default() })
                    .await
                {
                    Ok(_) => true,
                    // With auth on, a linearizable read that got as far as
                    // the permission check means the member serves.
                    Err(e) => e.message() == "etcdserver: user name is empty",
                }
            });
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!("member {i} not ready after {limit:?}; log:\n{}", self.log(i));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the current leader, as the members report it.
    pub fn leader(&self) -> Option<usize> {
        let rt = runtime();
        for i in self.running() {
            let url = self.specs[i].client_url();
            let status = rt.block_on(async {
                let channel = Channel::from_shared(url).ok()?.connect().await.ok()?;
                MaintenanceClient::new(channel)
                    .status(StatusRequest {})
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            });
            if let Some(s) = status
                && s.leader != 0
            {
                let header = s.header.unwrap();
                if header.member_id == s.leader {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Waits (bounded) for a leader among the running members.
    pub fn wait_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.specs[i].log).unwrap_or_default()
    }

    /// Runs etcdctl against member `i`.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Output {
        etcdctl(&self.specs[i].endpoint(), args, None)
    }

    /// Runs etcdctl against member `i` and returns stdout, failing the test on error.
    pub fn ctl_ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.ctl(i, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(i), 40)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// How to start one `logbook serve` member: [`Cluster`] starts its members with it, and so
/// do harnesses with addresses and membership of their own (the robustness lab's network
/// namespaces, members joining with `--initial-cluster-state existing`).
pub struct Serve<'a> {
    pub name: &'a str,
    pub data_dir: &'a std::path::Path,
    pub client_url: String,
    pub peer_url: String,
    pub initial_cluster: &'a str,
    /// `--initial-cluster-state`; none: the default (`new`).
    pub state: Option<&'a str>,
    pub token: &'a str,
    /// Flags after the ones above.
    pub extra_args: &'a [String],
    pub env: &'a [(String, String)],
    /// Its stderr is appended here.
    pub log: &'a std::path::Path,
    /// Run it inside this network namespace (`ip netns exec NS`, which execs the member: the
    /// child is then the member itself, so its handle kills and signals it).
    pub netns: Option<&'a str>,
}

impl Serve<'_> {
    pub fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log).unwrap();
        let bin = env!("CARGO_BIN_EXE_logbook");
        let mut cmd = match self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .args(["--name", self.name])
            .arg("--data-dir")
            .arg(self.data_dir)
            .args(["--listen-client-urls", &self.client_url])
            .args(["--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", self.initial_cluster]);
        if let Some(state) = self.state {
            cmd.args(["--initial-cluster-state", state]);
        }
        cmd.args(["--initial-cluster-token", self.token])
            .args(self.extra_args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning logbook serve")
    }
}

/// kill -9 the child in `proc`, if any, and reap it.
pub fn kill_child(proc: &mut Option<Child>) {
    if let Some(mut c) = proc.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Sends `signal` to `proc` if it runs; returns whether it did.
pub fn signal_child(proc: Option<&Child>, signal: i32) -> bool {
    let Some(c) = proc else { return false };
    // SAFETY: kill(2) on the PID of a child we own and have not reaped.
    unsafe { libc::kill(c.id() as i32, signal) == 0 }
}

/// The last `n` lines of `s` (a member's log).
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the real etcdctl (v3 API) against `endpoint`, optionally feeding stdin.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child =
        cmd.spawn().expect("etcdctl must be installed (scripts/test.sh installs etcd-client)");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A single-threaded tokio runtime for the harness's gRPC calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A two-worker tokio runtime, for tests that run clients concurrently.
pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A KV client for `url`, failing fast when nothing listens.
pub async fn connect(url: &str) -> Result<KvClient<Channel>, tonic::transport::Error> {
    let channel = Channel::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(KvClient::new(channel))
}

/// Puts through gRPC, returning the revision.
pub async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> Result<i64, tonic::Status> {
    let r = kv
        .put(PutRequest {
            key: key.to_string().into(),
            value: value.to_string().into(),
            ..Default::default()
        })
        .await?;
    Ok(r.into_inner().header.unwrap().revision)
}

/// Serializable get of one key on one member: its value, if present.
pub async fn local_get(url: &str, key: &str) -> Option<String> {
    let mut kv = connect(url).await.ok()?;
    let r = kv
        .range(RangeRequest {
            key: key.to_string().into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    r.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Parses the JSON etcdctl prints with `-w json`.
pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("etcdctl printed non-JSON ({e}): {s}"))
}

/// base64 of a string, as etcdctl's JSON shows keys and values.
pub fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

// ---- HTTP (the client port's HTTP/1.1 side and the v3 JSON gateway) ----

/// One HTTP/1.1 exchange: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// Every response header, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl HttpResponse {
    /// The body as JSON, failing the test when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!("non-JSON body ({e}), status {}: {}", self.status, self.body)
        })
    }
}

/// Sends one HTTP/1.1 request (hyper's client, a fresh connection) to
/// `url` (`http://host:port/path?query`), with a bounded wait.
pub fn http(method: &str, url: &str, body: Option<&[u8]>) -> HttpResponse {
    http_with_headers(method, url, body, &[])
}

/// [`http`] with extra request headers (e.g. the gateway's `Authorization`).
pub fn http_with_headers(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    use http_body_util::BodyExt as _;
    let uri: hyper::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let rt = runtime();
    rt.block_on(async {
        let work = async {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                .header("content-type", "application/json");
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
                req = req.header("host", &addr);
            }
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            let req = req.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                body.unwrap_or_default(),
            )))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(HttpResponse {
                status,
                headers,
                content_type,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .unwrap_or_else(|_| panic!("{method} {url}: no answer within 20s"))
            .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
    })
}

/// `GET url`.
pub fn http_get(url: &str) -> HttpResponse {
    http("GET", url, None)
}

/// `POST base + path` with a JSON body, as the v3 gateway takes it.
pub fn gw(base: &str, path: &str, body: &str) -> HttpResponse {
    http("POST", &format!("{base}{path}"), Some(body.as_bytes()))
}

/// A real etcd, one member on free 127.0.0.1 ports in a temporary
/// directory, killed when dropped. Fails the test when `etcd` is missing
/// (scripts/test.sh installs it).
pub struct Etcd {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub client_url: String,
}

impl Etcd {
    /// The `etcd` on PATH.
    pub fn start() -> Etcd {
        Etcd::start_program("etcd")
    }

    /// The etcd binary at `program` (a path, or a name looked up on PATH).
    pub fn start_program(program: &str) -> Etcd {
        Etcd::start_with(program, &[])
    }

    /// The etcd binary at `program` with `extra` flags after the usual ones.
    pub fn start_with(program: &str, extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(program)
            .args(["--name", "e1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("e1={peer_url}")])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (scripts/test.sh installs etcd-server)");
        let e = Etcd { dir, child, client_url };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::panic::catch_unwind(|| http_get(&format!("{}/health", e.client_url)))
                .is_ok_and(|r| r.status == 200);
            if ok {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd not healthy within 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary `name` of etcd `version` that `scripts/etcd-bin.sh` built into
/// the cache (`$LOGBOOK_CACHE`, else `~/.cache/logbook`). Fails the test
/// when it is missing: CI builds it.
pub fn cached_etcd(version: &str, name: &str) -> String {
    let cache = std::env::var_os("LOGBOOK_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/logbook"))
        })
        .expect("HOME or LOGBOOK_CACHE must be set");
    let path = cache.join(format!("etcd-v{version}")).join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/etcd-bin.sh (scripts/test.sh does)",
        path.display()
    );
    path.display().to_string()
}

/// The etcds a test compares Logbook with: PATH's (Debian's 3.4) and the
/// 3.6.16 that `scripts/etcd-bin.sh` built (required, as CI builds it).
pub fn etcds() -> Vec<String> {
    vec!["etcd".to_string(), cached_etcd("3.6.16", "etcd")]
}
