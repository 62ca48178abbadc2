//! `logbook bench scale`: Kubernetes-size data, Logbook and etcd side by side.
//!
//! For each system, one member on a fresh data directory (`--quota-backend-bytes` raised
//! to fit), then in order:
//! 1. the put rung (`--rung-clients` clients, random keys of a 10k-key side prefix) on
//!    the empty database;
//! 2. `--keys` objects of `--value-size` bytes loaded under `/registry/pods/default/`,
//!    the member's RSS sampled throughout; then its settled RSS (anonymous / file-backed);
//! 3. the same put rung on the full database;
//! 4. `--list-clients` clients listing the whole prefix at once (one unpaginated Range
//!    each, as kube-apiserver without pagination; etcd issue #12342): RSS before, peak
//!    (the kernel's `VmHWM`, reset first) and the answers' size;
//! 5. the put rung again, and while it runs, compaction of half the history then
//!    defragmentation: p99 per half second before, during and after;
//! 6. restart (SIGTERM, start again) until a linearizable read is served;
//! 7. a new member added (MemberAdd, started with `--initial-cluster-state existing`),
//!    timed until it has applied what the first member had.
//!
//! Free disk is checked first against an estimate of what one system's run writes
//! (systems run one after the other, each data directory removed when it is done).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use logbook_api::etcdserverpb::cluster_client::ClusterClient;
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, MemberAddRequest, PutRequest, RangeRequest,
    StatusRequest, StatusResponse,
};
use logbook_api::prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::cli::ScaleArgs;
use crate::client::Pool;
use crate::cluster::{System, free_ports, log_tail};
use crate::driver::{Plan, drive};
use crate::keys::{KeyGen, Rng, random_value};
use crate::procstat::{self, RssSplit, disk_usage};
use crate::targets::{self, Machine, Target};
use crate::workload::put::Put;

/// Where the listed objects live (Kubernetes' pods of one namespace).
pub const LIST_PREFIX: &str = "/registry/pods/default/";
/// Where the put rungs write, beside the listed objects.
const RUNG_PREFIX: &str = "/registry/leases/rung/";
/// Distinct keys of the put rungs.
const RUNG_KEYS: u64 = 10_000;
/// Value size of the put rungs (a node Lease is about this size).
const RUNG_VALUE: usize = 512;
/// Width of the windows p99 is computed over during compaction and defragmentation.
const WINDOW: Duration = Duration::from_millis(500);
/// How often the member's RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// A member must serve within this long of starting (a big one replays its log).
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// A new member must catch up within this long.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1200);
/// Every single call but a list or a defragmentation.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lists, compaction and defragmentation of a big database.
const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// One RSS sample of the measured member.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RssPoint {
    /// Seconds since the system's run started.
    pub t: f64,
    pub rss_mib: f64,
    pub anon_mib: f64,
    pub file_mib: f64,
}

/// A part of the run, for slicing the RSS samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub start: f64,
    pub end: f64,
}

/// A closed-loop put rung.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rung {
    pub clients: usize,
    pub count: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The load of `--keys` objects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Load {
    pub keys: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub p99_ms: f64,
    /// The member's RSS once settled after the load.
    pub settled: RssSplit,
    /// Size of the db file after the load, bytes.
    pub db_bytes: u64,
}

/// The concurrent full-prefix lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lists {
    pub clients: usize,
    /// Keys in each answer (every list must return all of them).
    pub keys: i64,
    /// Encoded size of one answer, bytes.
    pub answer_bytes: u64,
    pub errors: Vec<String>,
    pub rss_before: RssSplit,
    /// Peak RSS while the lists ran (the kernel's high-water mark).
    pub peak_rss: u64,
    /// Seconds until the last answer arrived.
    pub elapsed_s: f64,
}

impl Lists {
    /// Peak RSS growth over the answers that were in flight at once.
    pub fn growth_per_answers(&self) -> f64 {
        let answers = self.answer_bytes * self.clients as u64;
        if answers == 0 {
            return 0.0;
        }
        self.peak_rss.saturating_sub(self.rss_before.rss_bytes) as f64 / answers as f64
    }
}

/// Compaction of half the history, then defragmentation, under the put rung.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Defrag {
    /// The rung over the whole phase.
    pub rung: Rung,
    /// p99 of the requests sent before compaction started.
    pub steady_p99_ms: f64,
    /// p99 of the requests sent while compaction or defragmentation ran.
    pub during_p99_ms: f64,
    /// The worst p99 of a window while they ran.
    pub worst_window_p99_ms: f64,
    /// The longest single request sent while they ran.
    pub during_max_ms: f64,
    pub compact_revision: i64,
    pub compact_s: f64,
    pub defrag_s: f64,
    pub db_bytes_before: u64,
    pub db_bytes_after: u64,
    /// (seconds since the phase started, p99 ms) per window.
    pub p99_windows: Vec<(f64, f64)>,
    /// Seconds since the phase started: compaction start, defrag start, defrag end.
    pub marks: [f64; 3],
    pub error: Option<String>,
}

/// One system's figures, or why it could not run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemScale {
    pub system: Option<System>,
    pub binary: String,
    pub version: String,
    pub empty_rung: Rung,
    pub load: Load,
    pub full_rung: Rung,
    pub lists: Lists,
    pub defrag: Defrag,
    /// Seconds from starting the stopped member to its first linearizable read.
    pub restart_s: Option<f64>,
    /// Seconds from starting a new member to its having applied the first's index.
    pub catch_up_s: Option<f64>,
    /// The db file size of the new member once caught up, bytes.
    pub catch_up_db_bytes: u64,
    pub rss: Vec<RssPoint>,
    pub phases: Vec<Phase>,
    pub notes: Vec<String>,
    pub failure: Option<String>,
}

/// Free disk against what the run needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskCheck {
    pub dir: String,
    pub free_bytes: u64,
    pub needed_bytes: u64,
}

/// Everything `logbook bench scale` measured (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scale {
    pub params: serde_json::Value,
    pub machine: Machine,
    pub disk: DiskCheck,
    pub systems: Vec<SystemScale>,
    pub notes: Vec<String>,
}

/// Bytes one system's run writes at most, about: the objects and the rungs' writes in the
/// WAL and the db (with the history compaction keeps until defragmentation), the new
/// member's copy, and etcd's snapshot file for it.
pub fn disk_needed(keys: u64, value_size: usize) -> u64 {
    let rung_writes = 300_000u64;
    let per_object = value_size as u64 + 256;
    4 * (keys * per_object + rung_writes * (RUNG_VALUE as u64 + 256)) + (1 << 30)
}

/// The default quota: four times the loaded data, at least etcd's 2 GiB default.
fn quota(args: &ScaleArgs) -> u64 {
    args.quota_backend_bytes
        .unwrap_or_else(|| (4 * args.keys * (args.value_size as u64 + 256)).max(2 << 30))
}

/// Free bytes of the filesystem holding `dir` (or its nearest existing ancestor).
pub fn free_bytes(dir: &Path) -> Result<u64> {
    let mut d = dir.to_path_buf();
    while !d.exists() {
        if !d.pop() {
            bail!("no existing ancestor of {}", dir.display());
        }
    }
    let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory of the
    // size statvfs fills; it is read only after the call succeeded.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("statvfs {}", d.display()));
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    Ok(st.f_bavail * st.f_frsize)
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Runs the scale measurements; returns them and the report directory it created (the
/// caller writes the report: [`crate::run_scale`]).
pub async fn run(args: &ScaleArgs) -> Result<(Scale, PathBuf)> {
    anyhow::ensure!(args.keys > 0, "--keys must be at least 1");
    let mut notes = Vec::new();
    let targets = targets::resolve(&args.systems, &mut notes)?;
    anyhow::ensure!(
        !targets.iter().any(Target::deployed),
        "scale starts its own members (it restarts them, adds members and reads their data \
         directories); --logbook-endpoints and --etcd-endpoints work with the ladder"
    );
    let (data, _guard) = targets::data_dir(&args.systems)?;
    let needed = disk_needed(args.keys, args.value_size);
    let free = free_bytes(&data)?;
    let disk =
        DiskCheck { dir: data.display().to_string(), free_bytes: free, needed_bytes: needed };
    eprintln!(
        "disk: one system's run needs about {:.1} GiB under {}; {:.1} GiB are free",
        gib(needed),
        data.display(),
        gib(free)
    );
    if free < needed {
        bail!(
            "not enough free disk for --keys {} --value-size {}: about {:.1} GiB needed under {}, \
             {:.1} GiB free (pass --data-dir on a larger disk, or fewer --keys)",
            args.keys,
            args.value_size,
            gib(needed),
            data.display(),
            gib(free)
        );
    }
    for n in &notes {
        eprintln!("{n}");
    }
    let out = targets::out_dir(&args.systems, "logbook-scale")?;
    let mut systems = Vec::new();
    for t in &targets {
        eprintln!("== {}: one member ({})", t.system, t.binary.display());
        let dir = data.join(t.system.name());
        let mut s = SystemScale {
            system: Some(t.system),
            binary: t.binary.display().to_string(),
            ..Default::default()
        };
        if let Err(e) = run_system(t, &dir, args, &mut s).await {
            eprintln!("{} failed: {e:#}", t.system);
            s.failure = Some(format!("{e:#}"));
        }
        // Each system's data go before the next starts: the disk holds one at a time.
        let _ = std::fs::remove_dir_all(&dir);
        systems.push(s);
    }
    let sc = Scale {
        params: serde_json::to_value(args)?,
        machine: Machine::here(),
        disk,
        systems,
        notes,
    };
    Ok((sc, out))
}

/// One member process this run started and stops.
struct Node {
    system: System,
    binary: PathBuf,
    name: String,
    data_dir: PathBuf,
    log: PathBuf,
    client_url: String,
    peer_url: String,
    flags: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn new(system: System, binary: &Path, dir: &Path, name: &str) -> Result<Node> {
        let ports = free_ports(2)?;
        Ok(Node {
            system,
            binary: binary.to_owned(),
            name: name.to_owned(),
            data_dir: dir.join(name),
            log: dir.join(format!("{name}.log")),
            client_url: format!("http://127.0.0.1:{}", ports[0]),
            peer_url: format!("http://127.0.0.1:{}", ports[1]),
            flags: Vec::new(),
            child: None,
        })
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.binary);
        // Both systems read ETCD_* variables as flags: only ours count.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        if self.system == System::Logbook {
            cmd.arg("serve");
        }
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url])
            .args(["--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .args(&self.flags);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().with_context(|| {
            format!("starting {} member {} from {}", self.system, self.name, self.binary.display())
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!(
                "{} member {} exited ({status}) — last lines of {}:\n{}",
                self.system,
                self.name,
                self.log.display(),
                log_tail(&self.log, 15)
            );
        }
        Ok(())
    }

    /// SIGTERM, then waits (bounded) for the exit; kills after 60 s.
    async fn stop_gracefully(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a pid of a child this process started and has not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until a linearizable read succeeds; returns the seconds since `since`.
    async fn wait_serving(&mut self, since: Instant, timeout: Duration) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        let mut last = anyhow::anyhow!("not polled yet");
        loop {
            self.check_alive()?;
            match self.probe().await {
                Ok(()) => return Ok(since.elapsed().as_secs_f64()),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} member {} not serving after {timeout:?}: {last:#}",
                    self.system,
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn probe(&self) -> Result<()> {
        let ch = channel(&self.client_url, Duration::from_secs(2)).await?;
        KvClient::new(ch)
            .range(RangeRequest { key: "/scale-ready".into(), ..Default::default() })
            .await?;
        Ok(())
    }

    async fn status(&self) -> Result<StatusResponse> {
        let ch = channel(&self.client_url, CALL_TIMEOUT).await?;
        Ok(MaintenanceClient::new(ch).status(StatusRequest {}).await?.into_inner())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One connection with a per-call timeout of `timeout` and no message size limit on
/// answers (a full list of a big prefix is far over tonic's 4 MiB default).
async fn channel(url: &str, timeout: Duration) -> Result<Channel> {
    Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .tcp_nodelay(true)
        .initial_connection_window_size(Some(16 << 20))
        .initial_stream_window_size(Some(4 << 20))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

fn kv(ch: Channel) -> KvClient<Channel> {
    KvClient::new(ch).max_decoding_message_size(usize::MAX)
}

/// Samples the RSS of whichever process `pid` names, every [`SAMPLE_EVERY`], until stopped.
struct Sampler {
    pid: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    points: Arc<Mutex<Vec<RssPoint>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(epoch: Instant, pid: u32) -> Sampler {
        let pid = Arc::new(AtomicU32::new(pid));
        let stop = Arc::new(AtomicBool::new(false));
        let points = Arc::new(Mutex::new(Vec::new()));
        let (p, s, pts) = (pid.clone(), stop.clone(), points.clone());
        let task = tokio::spawn(async move {
            // Bounded: at most a day of samples, and stopped by the run.
            for _ in 0..(86_400_000 / SAMPLE_EVERY.as_millis() as u64) {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(r) = procstat::rss_split(p.load(Ordering::Relaxed)) {
                    let mib = |b: u64| b as f64 / (1 << 20) as f64;
                    pts.lock().expect("rss samples").push(RssPoint {
                        t: epoch.elapsed().as_secs_f64(),
                        rss_mib: mib(r.rss_bytes),
                        anon_mib: mib(r.anon_bytes),
                        file_mib: mib(r.file_bytes),
                    });
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        Sampler { pid, stop, points, task }
    }

    async fn finish(self) -> Vec<RssPoint> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.points.lock().expect("rss samples"))
    }
}

async fn run_system(t: &Target, dir: &Path, args: &ScaleArgs, s: &mut SystemScale) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let token = format!("scale-{}-{}", t.system.name(), std::process::id());
    let mut a = Node::new(t.system, &t.binary, dir, "n1")?;
    a.flags = vec![
        "--initial-cluster".into(),
        format!("n1={}", a.peer_url),
        "--initial-cluster-state".into(),
        "new".into(),
        "--initial-cluster-token".into(),
        token.clone(),
        "--quota-backend-bytes".into(),
        quota(args).to_string(),
    ];
    let epoch = Instant::now();
    a.spawn()?;
    a.wait_serving(epoch, START_TIMEOUT).await?;
    s.version = a.status().await.map(|st| st.version).unwrap_or_default();
    let sampler = Sampler::start(epoch, a.pid().unwrap_or(0));
    let result = measure(&mut a, dir, &token, args, s, epoch, &sampler.pid).await;
    s.rss = sampler.finish().await;
    a.kill();
    result
}

fn phase(s: &mut SystemScale, name: &str, epoch: Instant, start: f64) {
    s.phases.push(Phase { name: name.to_owned(), start, end: epoch.elapsed().as_secs_f64() });
}

async fn measure(
    a: &mut Node,
    dir: &Path,
    token: &str,
    args: &ScaleArgs,
    s: &mut SystemScale,
    epoch: Instant,
    sampled_pid: &AtomicU32,
) -> Result<()> {
    let label = t_label(a.system);
    let db = a.data_dir.join("member/snap/db");

    eprintln!("{label}: put rung on the empty database ({:?})", args.rung_duration);
    s.empty_rung = put_rung(&a.client_url, args.rung_clients, args.rung_duration, None).await?.0;
    a.check_alive()?;

    let t0 = epoch.elapsed().as_secs_f64();
    s.load = load(&a.client_url, args, label).await?;
    a.check_alive()?;
    phase(s, "load", epoch, t0);
    let t0 = epoch.elapsed().as_secs_f64();
    s.load.settled = settle(a.pid().unwrap_or(0)).await;
    s.load.db_bytes = disk_usage(&db);
    phase(s, "settle", epoch, t0);
    eprintln!(
        "{label}: settled RSS {:.0} MiB (anon {:.0}, file {:.0}), db {:.0} MiB",
        s.load.settled.rss_bytes as f64 / 1048576.0,
        s.load.settled.anon_bytes as f64 / 1048576.0,
        s.load.settled.file_bytes as f64 / 1048576.0,
        s.load.db_bytes as f64 / 1048576.0
    );

    eprintln!("{label}: put rung on the full database");
    s.full_rung = put_rung(&a.client_url, args.rung_clients, args.rung_duration, None).await?.0;
    a.check_alive()?;

    let t0 = epoch.elapsed().as_secs_f64();
    s.lists = lists(a, args).await?;
    phase(s, "lists", epoch, t0);
    a.check_alive().context("the member died during the lists")?;
    eprintln!(
        "{label}: {} lists of {} keys ({:.0} MiB each): RSS {:.0} → peak {:.0} MiB",
        s.lists.clients,
        s.lists.keys,
        s.lists.answer_bytes as f64 / 1048576.0,
        s.lists.rss_before.rss_bytes as f64 / 1048576.0,
        s.lists.peak_rss as f64 / 1048576.0
    );

    let t0 = epoch.elapsed().as_secs_f64();
    s.defrag = compact_and_defrag(a, args, &db).await?;
    phase(s, "compaction+defrag", epoch, t0);
    a.check_alive()?;
    eprintln!(
        "{label}: steady p99 {:.2} ms, during compaction+defrag {:.2} ms (worst window {:.2}), \
         defrag {:.1} s",
        s.defrag.steady_p99_ms,
        s.defrag.during_p99_ms,
        s.defrag.worst_window_p99_ms,
        s.defrag.defrag_s
    );

    eprintln!("{label}: restart");
    a.stop_gracefully().await;
    let start = Instant::now();
    a.spawn()?;
    sampled_pid.store(a.pid().unwrap_or(0), Ordering::Relaxed);
    s.restart_s = Some(a.wait_serving(start, START_TIMEOUT).await?);
    eprintln!("{label}: serving {:.2} s after start", s.restart_s.unwrap_or(0.0));

    eprintln!("{label}: adding a member");
    let t0 = epoch.elapsed().as_secs_f64();
    match catch_up(a, dir, token).await {
        Ok((secs, bytes)) => {
            s.catch_up_s = Some(secs);
            s.catch_up_db_bytes = bytes;
            eprintln!("{label}: the new member caught up in {secs:.2} s");
        }
        Err(e) => s.notes.push(format!("new member: {e:#}")),
    }
    phase(s, "new member", epoch, t0);
    Ok(())
}

fn t_label(system: System) -> &'static str {
    system.name()
}

/// Loads `--keys` objects, 256 clients (etcd's benchmark put, sequential keys).
async fn load(url: &str, args: &ScaleArgs, label: &str) -> Result<Load> {
    let pool = Pool::connect(&[url.to_owned()], 4).await?;
    let keys = KeyGen::new(LIST_PREFIX, 32, args.keys, true);
    let value = random_value(args.value_size, &mut Rng::new(0x5ca1e));
    let put = Arc::new(Put::new(pool, keys, value));
    let plan = Plan {
        clients: args.rung_clients.min(args.keys as usize).max(1),
        total: Some(args.keys),
        duration: Some(Duration::from_secs(86_400)),
        rate: None,
        progress: !args.systems.quiet,
        label: format!("{label} load"),
    };
    let out = drive(put, &plan).await;
    let sum = out.total();
    anyhow::ensure!(
        out.error_count() == 0,
        "{} of the {} loading puts failed: {:?}",
        out.error_count(),
        args.keys,
        out.errors
    );
    Ok(Load {
        keys: args.keys,
        errors: out.error_count(),
        elapsed_s: sum.elapsed_s,
        throughput: sum.throughput,
        p99_ms: sum.latency_ms.p99,
        ..Default::default()
    })
}

/// Waits until the RSS holds still (within 2 % for 2 s, at most 20 s) and returns it.
async fn settle(pid: u32) -> RssSplit {
    let mut last = procstat::rss_split(pid).unwrap_or_default();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = procstat::rss_split(pid).unwrap_or_default();
        let still = (now.rss_bytes as f64 - last.rss_bytes as f64).abs()
            <= 0.02 * last.rss_bytes.max(1) as f64;
        last = now;
        if still {
            break;
        }
    }
    last
}

/// (start offset from the rung's epoch in seconds, latency in ms) of every request.
type Samples = Vec<(f64, f64)>;

/// A closed-loop put rung for `duration` (or until `stop` is set, when given); returns
/// the summary and every request's start and latency.
async fn put_rung(
    url: &str,
    clients: usize,
    duration: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Result<(Rung, Samples, Instant)> {
    let conns = clients.div_ceil(64).clamp(1, 8);
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(channel(url, CALL_TIMEOUT).await?);
    }
    let keys = KeyGen::new(RUNG_PREFIX, 32, RUNG_KEYS, false);
    let value = random_value(RUNG_VALUE, &mut Rng::new(0x1ea5e));
    let epoch = Instant::now();
    let deadline = epoch + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients.max(1) {
        let mut kv = kv(channels[c % conns].clone());
        let (keys, value, stop) = (keys.clone(), value.clone(), stop.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(c as u64 + 7);
            let mut samples = Vec::new();
            let mut errors = 0u64;
            // Bounded by the deadline (or the stop flag, itself set before a deadline).
            loop {
                let now = Instant::now();
                let stopped = stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed));
                if stopped || (stop.is_none() && now >= deadline) {
                    break;
                }
                let key = keys.key(rng.below(RUNG_KEYS));
                let r =
                    kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await;
                match r {
                    Ok(_) => samples.push((
                        now.duration_since(epoch).as_secs_f64(),
                        now.elapsed().as_secs_f64() * 1e3,
                    )),
                    Err(_) => {
                        errors += 1;
                        if errors > 1000 {
                            break;
                        }
                    }
                }
            }
            (samples, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (s, e) = r?;
        all.extend(s);
        errors += e;
    }
    let elapsed = epoch.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = all.iter().map(|(_, l)| *l).collect();
    lat.sort_by(f64::total_cmp);
    let rung = Rung {
        clients,
        count: lat.len() as u64,
        errors,
        elapsed_s: elapsed,
        throughput: lat.len() as f64 / elapsed.max(1e-9),
        p50_ms: quantile(&lat, 0.5),
        p99_ms: quantile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
    };
    Ok((rung, all, epoch))
}

/// The `q` quantile of sorted `v` (0 when empty).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// p99 of the samples started in `[from, to)`.
fn p99_between(samples: &Samples, from: f64, to: f64) -> (f64, f64) {
    let mut v: Vec<f64> =
        samples.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, l)| *l).collect();
    v.sort_by(f64::total_cmp);
    (quantile(&v, 0.99), v.last().copied().unwrap_or(0.0))
}

/// `--list-clients` clients each list the whole prefix once, at once.
async fn lists(a: &mut Node, args: &ScaleArgs) -> Result<Lists> {
    let pid = a.pid().unwrap_or(0);
    let mut out = Lists {
        clients: args.list_clients.max(1),
        rss_before: procstat::rss_split(pid).unwrap_or_default(),
        ..Default::default()
    };
    let reset = procstat::reset_peak(pid);
    let end = crate::keys::prefix_end(LIST_PREFIX.as_bytes());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..out.clients {
        let ch = channel(&a.client_url, LONG_CALL_TIMEOUT).await?;
        let end = end.clone();
        tasks.spawn(async move {
            let r = RangeRequest {
                key: LIST_PREFIX.into(),
                range_end: end.into(),
                ..Default::default()
            };
            kv(ch).range(r).await.map(|r| {
                let r = r.into_inner();
                (r.kvs.len() as i64, r.encoded_len() as u64)
            })
        });
    }
    // Also sample the peak ourselves, in case clear_refs was refused.
    let mut peak = 0u64;
    let mut results = Vec::new();
    let bound = Instant::now() + LONG_CALL_TIMEOUT + Duration::from_secs(60);
    while !tasks.is_empty() && Instant::now() < bound {
        tokio::select! {
            r = tasks.join_next() => if let Some(r) = r { results.push(r?) },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if let Some(r) = procstat::rss_split(pid) {
            peak = peak.max(r.rss_bytes);
        }
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    let hwm = procstat::rss_split(pid).map_or(0, |r| r.peak_bytes);
    out.peak_rss = if reset { hwm.max(peak) } else { peak };
    for r in results {
        match r {
            Ok((keys, bytes)) => {
                if keys != args.keys as i64 {
                    out.errors.push(format!("a list returned {keys} keys, not {}", args.keys));
                }
                out.keys = keys;
                out.answer_bytes = bytes;
            }
            Err(e) => out.errors.push(format!("{:?}: {}", e.code(), e.message())),
        }
    }
    Ok(out)
}

async fn compact_and_defrag(a: &mut Node, args: &ScaleArgs, db: &Path) -> Result<Defrag> {
    let mut d = Defrag { db_bytes_before: disk_usage(db), ..Default::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let url = a.client_url.clone();
    let rung = tokio::spawn({
        let stop = stop.clone();
        let clients = args.rung_clients;
        async move { put_rung(&url, clients, Duration::ZERO, Some(stop)).await }
    });
    let phase_start = Instant::now();
    tokio::time::sleep(args.rung_duration).await;
    let ch = channel(&a.client_url, LONG_CALL_TIMEOUT).await?;
    let work = async {
        let st = MaintenanceClient::new(ch.clone()).status(StatusRequest {}).await?.into_inner();
        let current = st.header.map_or(0, |h| h.revision);
        let rev = (current / 2).max(1);
        let m0 = phase_start.elapsed().as_secs_f64();
        let t = Instant::now();
        KvClient::new(ch.clone())
            .compact(CompactionRequest { revision: rev, physical: true })
            .await?;
        let compact_s = t.elapsed().as_secs_f64();
        let m1 = phase_start.elapsed().as_secs_f64();
        let t = Instant::now();
        MaintenanceClient::new(ch.clone()).defragment(DefragmentRequest {}).await?;
        let defrag_s = t.elapsed().as_secs_f64();
        let m2 = phase_start.elapsed().as_secs_f64();
        Ok::<_, tonic::Status>((rev, compact_s, defrag_s, [m0, m1, m2]))
    };
    let r = work.await;
    // A second of the rung after defragmentation, then stop it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (rung, samples, epoch) = rung.await??;
    let offset = epoch.duration_since(phase_start).as_secs_f64();
    // Times relative to the phase start.
    let samples: Samples = samples.into_iter().map(|(t, l)| (t + offset, l)).collect();
    d.rung = rung;
    d.db_bytes_after = disk_usage(db);
    match r {
        Ok((rev, compact_s, defrag_s, marks)) => {
            d.compact_revision = rev;
            d.compact_s = compact_s;
            d.defrag_s = defrag_s;
            d.marks = marks;
        }
        Err(e) => {
            d.error = Some(format!("{:?}: {}", e.code(), e.message()));
            let now = phase_start.elapsed().as_secs_f64();
            d.marks = [args.rung_duration.as_secs_f64(), now, now];
        }
    }
    d.steady_p99_ms = p99_between(&samples, 0.0, d.marks[0]).0;
    // Requests sent while compaction or defragmentation ran.
    let (p99, max) = p99_between(&samples, d.marks[0], d.marks[2]);
    d.during_p99_ms = p99;
    d.during_max_ms = max;
    let end = samples.iter().map(|(t, _)| *t).fold(0.0, f64::max);
    let w = WINDOW.as_secs_f64();
    let mut t = 0.0;
    while t < end {
        let (p, _) = p99_between(&samples, t, t + w);
        if p > 0.0 {
            d.p99_windows.push((t + w / 2.0, p));
        }
        if t + w > d.marks[0] && t < d.marks[2] {
            d.worst_window_p99_ms = d.worst_window_p99_ms.max(p);
        }
        t += w;
    }
    Ok(d)
}

/// Adds a member and times it until it has applied what the first member had applied
/// when it was added. Returns the seconds and its db size.
async fn catch_up(a: &mut Node, dir: &Path, token: &str) -> Result<(f64, u64)> {
    let mut b = Node::new(a.system, &a.binary, dir, "n2")?;
    let ch = channel(&a.client_url, CALL_TIMEOUT).await?;
    ClusterClient::new(ch)
        .member_add(MemberAddRequest { peer_ur_ls: vec![b.peer_url.clone()], is_learner: false })
        .await
        .context("MemberAdd")?;
    let target = a.status().await?.raft_applied_index;
    b.flags = vec![
        "--initial-cluster".into(),
        format!("n1={},n2={}", a.peer_url, b.peer_url),
        "--initial-cluster-state".into(),
        "existing".into(),
        "--initial-cluster-token".into(),
        token.to_owned(),
    ];
    let start = Instant::now();
    b.spawn()?;
    let deadline = start + CATCH_UP_TIMEOUT;
    loop {
        b.check_alive()?;
        if let Ok(st) = b.status().await
            && st.raft_applied_index >= target
        {
            let secs = start.elapsed().as_secs_f64();
            let bytes = disk_usage(&b.data_dir.join("member/snap/db"));
            b.kill();
            return Ok((secs, bytes));
        }
        if Instant::now() >= deadline {
            bail!("the new member had not caught up after {CATCH_UP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_windows() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&[], 0.99), 0.0);
        let s: Samples = vec![(0.1, 1.0), (0.2, 2.0), (1.1, 9.0)];
        assert_eq!(p99_between(&s, 0.0, 1.0), (2.0, 2.0));
        assert_eq!(p99_between(&s, 1.0, 2.0), (9.0, 9.0));
    }

    #[test]
    fn the_16_gb_run_needs_tens_of_gib() {
        let small = disk_needed(100_000, 2048);
        let big = disk_needed(8_000_000, 2048);
        assert!(small < 4 << 30, "{small}");
        assert!(big > 64 << 30, "{big}");
        let free = free_bytes(&std::env::temp_dir().join("not-there-yet/x")).unwrap();
        assert!(free > 0);
    }
}
