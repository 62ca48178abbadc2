//! Disks that fill and fail (issue #27 item 2).
//!
//! Full disks are real: a member's WAL or engine directory on a small ext4 file system on a
//! loop device, made in the test (needs root for `mount`; CI runs as root, and without root
//! these tests fail saying so rather than skip), then filled with a preallocated file so the
//! next file growth gets ENOSPC. Failing disks are the `LOGBOOK_FAILPOINT_EIO` failpoint of
//! the WAL and the engine (the `failpoints` build): this machine's kernel has no
//! device-mapper (`dm-error`/`dm-flakey`), so the failpoint makes EIO where the kernel cannot.
//!
//! What must hold, as etcd 3.7.3 does it on the same file system in the same test (etcd stops
//! its process, `lg.Fatal`, when its WAL save or backend commit fails): the member stops
//! accepting writes and exits non-zero with a one-line error naming the cause; it never
//! acknowledged a write it did not persist (every acknowledged key reads back after a
//! restart); while the disk is still full or failing it either refuses to start with a
//! one-line error or serves; once space (or the disk) returns it starts and serves again;
//! and in a 3-member cluster the other two keep serving meanwhile.
//!
//! Where etcd does worse, the test prints it rather than failing: etcd 3.7.3 whose WAL disk
//! filled (512 KiB entries) did not start again even once space returned ("failed to repair
//! WAL": a torn last entry, and a `.wal.broken` copy its first repair left half-written).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, connect, free_port, local_get, put, runtime};

/// Fails the test unless it runs as root: mounting a loop device needs it.
fn assert_root() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "tests/disk_faults.rs mounts loop file systems and needs root (CI runs as root); \
         run it with sudo"
    );
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e} (util-linux and e2fsprogs are needed)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A small ext4 file system on a loop device, mounted under a temporary directory;
/// unmounted (which detaches the loop device) when dropped.
struct LoopFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopFs {
    fn new(mib: u64) -> LoopFs {
        assert_root();
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let image_s = image.to_str().unwrap();
        run("truncate", &["-s", &format!("{mib}M"), image_s]);
        // -m 0: no blocks reserved for root (the tests run as root, which may use them).
        run("mkfs.ext4", &["-q", "-F", "-m", "0", image_s]);
        run("mount", &["-o", "loop", image_s, mnt.to_str().unwrap()]);
        LoopFs { dir, mnt }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }

    /// Bytes an unprivileged-or-not writer can still allocate.
    fn available(&self) -> u64 {
        let c = std::ffi::CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.mnt.display());
        st.f_bavail * st.f_frsize
    }

    /// Takes all but about `leave` bytes with one preallocated file.
    fn fill(&self, leave: u64) {
        let take = self.available().saturating_sub(leave);
        let f = std::fs::File::create(self.filler()).unwrap();
        if take > 0 {
            use std::os::fd::AsRawFd;
            // SAFETY: fallocate on a descriptor we own; no memory is passed.
            let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, take as libc::off_t) };
            assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
        }
        f.sync_all().unwrap();
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mnt = self.mnt.to_str().unwrap().to_string();
        let ok = Command::new("umount").arg(&mnt).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file there (a process that did not die yet): detach
            // lazily; the kernel finishes when the last file closes.
            let _ = Command::new("umount").args(["-l", &mnt]).status();
        }
        let _ = &self.dir;
    }
}

/// Which system a [`Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Logbook,
    Etcd,
}

/// One single-member server (Logbook or etcd 3.7.3) started with etcd's flags, its data
/// and WAL directories where the test puts them. Killed when dropped.
struct Server {
    system: System,
    data_dir: PathBuf,
    wal_dir: PathBuf,
    env: Vec<(String, String)>,
    client_url: String,
    peer_url: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(system: System, data_dir: PathBuf, wal_dir: PathBuf, log: PathBuf) -> Server {
        Server {
            system,
            data_dir,
            wal_dir,
            env: Vec::new(),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            log,
            child: None,
        }
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = match self.system {
            System::Logbook => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_logbook"));
                c.arg("serve").env("RUST_LOG", "info");
                c
            }
            System::Etcd => Command::new(common::cached_etcd("3.7.3", "etcd")),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = cmd
            .args(["--name", "s1"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--wal-dir")
            .arg(&self.wal_dir)
            .args(["--listen-client-urls", &self.client_url])
            .args(["--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &format!("s1={}", self.peer_url)])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the server");
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// Waits (bounded) until the server answers a linearizable read (`Ok`) or exits
    /// (`Err` with its status).
    fn ready_or_exit(&mut self, limit: Duration) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + limit;
        let rt = runtime();
        loop {
            if let Some(status) = self.exited() {
                return Err(status);
            }
            let ok = rt.block_on(async {
                let Ok(mut kv) = connect(&self.client_url).await else { return false };
                kv.range(logbook_api::etcdserverpb::RangeRequest {
                    key: "probe".into(),
                    ..Default::default()
                })
                .await
                .is_ok()
            });
            if ok {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{:?} neither ready nor exited after {limit:?}:\n{}",
                self.system,
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} still runs {limit:?} after its disk failed:\n{}",
                self.system,
                tail(&self.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last line a stopped Logbook printed: its one-line error.
fn last_line(log: &str) -> String {
    log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}

/// Writes `value_len`-byte values to fresh keys until the server refuses `refusals` in a row
/// or exits (at most `max` puts). Returns the keys it acknowledged, with their values, and
/// the errors it answered.
fn write_until_refused(
    s: &mut Server,
    prefix: &str,
    value_len: usize,
    max: usize,
    acked: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let rt = runtime();
    let mut errors = Vec::new();
    let mut in_a_row = 0;
    for i in 0..max {
        if s.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_some()) {
            break;
        }
        let key = format!("{prefix}/{i:05}");
        let value = format!("{i:05}-{}", "v".repeat(value_len));
        let r = rt.block_on(async {
            let mut kv = connect(&s.client_url).await.map_err(|e| e.to_string())?;
            put(&mut kv, &key, &value).await.map_err(|e| format!("{:?}: {}", e.code(), e.message()))
        });
        match r {
            Ok(_) => {
                acked.insert(key, value);
                in_a_row = 0;
            }
            Err(e) => {
                errors.push(e);
                in_a_row += 1;
                if in_a_row >= 3 {
                    break;
                }
            }
        }
    }
    errors
}

/// Every acknowledged key reads back with its value (linearizably).
fn assert_all_there(s: &Server, acked: &BTreeMap<String, String>) {
    let rt = runtime();
    let missing: Vec<&String> = rt.block_on(async {
        let mut kv = connect(&s.client_url).await.unwrap();
        let mut missing = Vec::new();
        for (k, v) in acked {
            let r = kv
                .range(logbook_api::etcdserverpb::RangeRequest {
                    key: k.clone().into_bytes().into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if r.kvs.first().map(|kv| &kv.value[..]) != Some(v.as_bytes()) {
                missing.push(k);
            }
        }
        missing
    });
    assert!(
        missing.is_empty(),
        "{:?} lost {} of {} acknowledged writes, e.g. {:?}",
        s.system,
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Where the full disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    Wal,
    Engine,
}

/// What a system did on a disk that filled up (printed by the tests, for the comparison).
#[derive(Debug)]
#[allow(dead_code)] // Some fields are only read through Debug, into the test's output.
struct FullDiskRun {
    acked: usize,
    refused: Vec<String>,
    exit: ExitStatus,
    /// What a restart on the still-full disk did: Ok (served) or the exit status.
    restart_full: Result<(), ExitStatus>,
    /// Whether it started and served every acknowledged write once space returned.
    recovered: Result<(), String>,
    log_tail: String,
}

/// One system through a disk filling under its WAL or its engine: writes until refused,
/// the process stops, a restart while full, then space returns and nothing acknowledged
/// is missing.
fn full_disk(system: System, full: Full) -> FullDiskRun {
    // etcd preallocates 64 MiB WAL segments (and one ahead): its file system must hold
    // two; Logbook's segments are made 1 MiB here (LOGBOOK_WAL_SEGMENT_BYTES).
    let fs = LoopFs::new(if system == System::Etcd && full == Full::Wal { 192 } else { 48 });
    let elsewhere = tempfile::tempdir().unwrap();
    let (data_dir, wal_dir) = match full {
        Full::Wal => (elsewhere.path().join("data"), fs.path("wal")),
        Full::Engine => (fs.path("data"), elsewhere.path().join("wal")),
    };
    let mut s = Server::new(system, data_dir, wal_dir, elsewhere.path().join("server.log"));
    s.env.push(("LOGBOOK_WAL_SEGMENT_BYTES".into(), (1u64 << 20).to_string()));
    s.start();
    s.ready_or_exit(Duration::from_secs(30)).expect("the server starts");

    let mut acked = BTreeMap::new();
    let before = write_until_refused(&mut s, "before", 100, 20, &mut acked);
    assert!(before.is_empty(), "{system:?} refused writes on a disk with room: {before:?}");

    fs.fill(256 << 10);
    // etcd's WAL needs 128 MiB more written before it must allocate a segment (it keeps
    // one preallocated ahead); everything else fails within a few MiB.
    let (value_len, max) = match (system, full) {
        (System::Etcd, Full::Wal) => (512 << 10, 600),
        _ => (64 << 10, 600),
    };
    let refused = write_until_refused(&mut s, "full", value_len, max, &mut acked);
    let exit = s.wait_exit(Duration::from_secs(60));
    let log = s.log();
    assert!(!exit.success(), "{system:?} exited successfully on a full disk:\n{}", tail(&log, 20));
    assert!(
        log.to_lowercase().contains("no space left on device"),
        "{system:?} did not say the disk was full:\n{}",
        tail(&log, 20)
    );

    // The disk is still full: start again.
    s.start();
    // Either it refuses (exits non-zero at once, or as soon as it must write) or it
    // serves; what it serves is checked once space returns, below.
    let mut restart_full = s.ready_or_exit(Duration::from_secs(30));
    if restart_full.is_ok() {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(st) = s.exited() {
                restart_full = Err(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Err(st) = restart_full {
        assert!(!st.success(), "{system:?} exited successfully on a full disk");
        if system == System::Logbook {
            let last = last_line(&s.log());
            assert!(
                last.starts_with("Error: ") && last.to_lowercase().contains("no space left"),
                "Logbook refused to start on a full disk without a one-line error: {last}"
            );
        }
    }
    s.kill();

    fs.free();
    s.start();
    let recovered = match s.ready_or_exit(Duration::from_secs(30)) {
        Ok(()) => {
            assert_all_there(&s, &acked);
            let mut after = BTreeMap::new();
            let e = write_until_refused(&mut s, "after", 100, 5, &mut after);
            assert!(e.is_empty(), "{system:?} refused writes once space returned: {e:?}");
            Ok(())
        }
        // etcd 3.7.3 may not: after its WAL's disk filled, its restarts (on the full disk,
        // then with space) stop on "failed to repair WAL" (a torn last entry). Logbook must.
        Err(st) if system == System::Etcd => {
            Err(format!("{st}: {}", last_line(&s.log()).chars().take(400).collect::<String>()))
        }
        Err(st) => {
            panic!("{system:?} did not start once space returned ({st}):\n{}", tail(&s.log(), 30))
        }
    };
    FullDiskRun {
        acked: acked.len(),
        refused,
        exit,
        restart_full,
        recovered,
        log_tail: last_line(&log).chars().take(400).collect(),
    }
}

/// Logbook's own checks of a full-disk run, beyond what [`full_disk`] asserts of both.
fn check_logbook(run: &FullDiskRun, log_path_hint: &str) {
    let last = &run.log_tail;
    assert!(
        last.starts_with("Error: ") && last.to_lowercase().contains("no space left on device"),
        "Logbook's last line is not a one-line disk-full error ({log_path_hint}): {last}"
    );
}

#[test]
fn full_wal_disk_stops_the_member_and_loses_nothing_acknowledged_as_etcd() {
    let logbook = full_disk(System::Logbook, Full::Wal);
    println!("logbook: {logbook:?}");
    check_logbook(&logbook, "WAL");
    let etcd = full_disk(System::Etcd, Full::Wal);
    println!("etcd 3.7.3: {etcd:?}");
    assert!(logbook.acked > 0 && etcd.acked > 0);
}

#[test]
fn full_engine_disk_stops_the_member_and_loses_nothing_acknowledged_as_etcd() {
    let logbook = full_disk(System::Logbook, Full::Engine);
    println!("logbook: {logbook:?}");
    check_logbook(&logbook, "engine");
    let etcd = full_disk(System::Etcd, Full::Engine);
    println!("etcd 3.7.3: {etcd:?}");
    assert!(logbook.acked > 0 && etcd.acked > 0);
}

/// Writes through `url` until it succeeds `n` times in a row (bounded); returns the last
/// key and value written.
fn write_through(url: &str, prefix: &str, n: usize) -> (String, String) {
    let rt = runtime();
    let mut ok_in_a_row = 0;
    let mut last = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..10_000 {
        if ok_in_a_row >= n {
            return last;
        }
        assert!(Instant::now() < deadline, "the cluster stopped serving writes through {url}");
        let key = format!("{prefix}/{i:05}");
        let value = format!("{i:05}-{}", "w".repeat(32 << 10));
        let ok = rt.block_on(async {
            let Ok(mut kv) = connect(url).await else { return false };
            put(&mut kv, &key, &value).await.is_ok()
        });
        if ok {
            ok_in_a_row += 1;
            last = (key, value);
        } else {
            ok_in_a_row = 0;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no {n} writes in a row through {url}");
}

/// Member 0 of a 3-member cluster loses its disk (`spoil` makes it full or failing, `mend`
/// gives it back; `env` is member 0's alone): it stops with a one-line error, the other two
/// keep serving, and it catches up once mended.
fn cluster_keeps_serving(
    spoil: impl FnOnce(),
    still_broken: impl FnOnce(&Cluster),
    mend: impl FnOnce(),
    c: &mut Cluster,
    env: &[(String, String)],
) {
    c.spawn_env(0, env);
    for i in 1..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(30));
    }
    let url1 = c.specs[1].client_url();
    write_through(&url1, "before", 5);
    spoil();
    // Keep writing through member 1 until member 0 has stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = c.procs[0].as_mut().unwrap().try_wait().unwrap() {
            c.procs[0] = None;
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "member 0 kept running on a broken disk:\n{}",
            tail(&c.log(0), 30)
        );
        write_through(&url1, "during", 1);
    };
    assert!(!status.success(), "member 0 exited successfully on a broken disk");
    let last = last_line(&c.log(0));
    assert!(last.starts_with("Error: "), "member 0's last line is not a one-line error: {last}");
    // The other two keep serving, through either of them.
    write_through(&c.specs[1].client_url(), "without-m1", 5);
    let (key, value) = write_through(&c.specs[2].client_url(), "without-m1b", 5);
    still_broken(c);
    mend();
    c.spawn_env(0, env);
    c.wait_ready(0, Duration::from_secs(60));
    let rt = runtime();
    let url0 = c.specs[0].client_url();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(local_get(&url0, &key)).as_deref() != Some(value.as_str()) {
        assert!(Instant::now() < deadline, "member 0 never caught up:\n{}", tail(&c.log(0), 30));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_keeps_serving_when_one_members_disk_fills() {
    let fs = LoopFs::new(48);
    let mut c = Cluster::create(3, &[]);
    c.specs[0].data_dir = fs.path("m1.logbook");
    let env = [("LOGBOOK_WAL_SEGMENT_BYTES".to_string(), (1u64 << 20).to_string())];
    cluster_keeps_serving(
        || fs.fill(256 << 10),
        |c| {
            let log = c.log(0);
            assert!(
                log.to_lowercase().contains("no space left on device"),
                "member 0 did not say its disk was full:\n{}",
                tail(&log, 20)
            );
        },
        || fs.free(),
        &mut c,
        &env,
    );
}

#[cfg(feature = "failpoints")]
mod failing_disk {
    use std::path::Path;

    use super::*;

    /// A control file for the EIO failpoint (see `wal/src/failpoint.rs`).
    struct Eio {
        path: PathBuf,
    }

    impl Eio {
        fn new(dir: &Path) -> Eio {
            Eio { path: dir.join("eio-control") }
        }
        fn env(&self) -> (String, String) {
            ("LOGBOOK_FAILPOINT_EIO".into(), self.path.display().to_string())
        }
        fn set(&self, what: &str) {
            std::fs::write(&self.path, format!("{what}\n")).unwrap();
        }
        fn clear(&self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// A single member whose WAL or engine fails with EIO for a while: writes are refused,
    /// the member exits with a one-line I/O error, does not come back while the disk still
    /// fails, and comes back with every acknowledged write once it works again.
    fn failing(target: &str) {
        let dir = tempfile::tempdir().unwrap();
        let eio = Eio::new(dir.path());
        let mut s = Server::new(
            System::Logbook,
            dir.path().join("data"),
            dir.path().join("wal"),
            dir.path().join("server.log"),
        );
        s.env.push(eio.env());
        s.start();
        s.ready_or_exit(Duration::from_secs(30)).expect("starts");
        let mut acked = BTreeMap::new();
        assert!(write_until_refused(&mut s, "before", 100, 20, &mut acked).is_empty());
        // A few failing operations: the first one already stops the member (a failed
        // write or fsync may have lost data; retrying would lie).
        eio.set(&format!("{target} 3"));
        let refused = write_until_refused(&mut s, "eio", 4096, 400, &mut acked);
        let exit = s.wait_exit(Duration::from_secs(60));
        assert!(!exit.success());
        let last = last_line(&s.log());
        assert!(
            last.starts_with("Error: ") && last.contains("Input/output error"),
            "not a one-line I/O error (refused: {refused:?}): {last}"
        );
        // Still failing: it may not serve writes it cannot persist.
        eio.set(&format!("{target} *"));
        s.start();
        match s.ready_or_exit(Duration::from_secs(30)) {
            Err(st) => {
                assert!(!st.success());
                let last = last_line(&s.log());
                assert!(last.starts_with("Error: "), "no one-line error: {last}");
            }
            Ok(()) => {
                let mut more = BTreeMap::new();
                let e = write_until_refused(&mut s, "still", 4096, 50, &mut more);
                assert!(!e.is_empty(), "acknowledged writes on a failing {target}");
                assert!(!s.wait_exit(Duration::from_secs(60)).success());
                acked.extend(more);
            }
        }
        s.kill();
        eio.clear();
        s.start();
        s.ready_or_exit(Duration::from_secs(30))
            .unwrap_or_else(|st| panic!("no start once the disk works ({st}):\n{}", s.log()));
        assert_all_there(&s, &acked);
        let mut after = BTreeMap::new();
        assert!(write_until_refused(&mut s, "after", 100, 5, &mut after).is_empty());
    }

    #[test]
    fn eio_in_the_wal_stops_the_member_and_loses_nothing_acknowledged() {
        failing("wal");
    }

    #[test]
    fn eio_in_the_engine_stops_the_member_and_loses_nothing_acknowledged() {
        failing("engine");
    }

    #[test]
    fn eio_cluster_keeps_serving_when_one_members_wal_fails() {
        let dir = tempfile::tempdir().unwrap();
        let eio = Eio::new(dir.path());
        let mut c = Cluster::create(3, &[]);
        // Only member 0 runs with the failpoint.
        let env = [eio.env()];
        cluster_keeps_serving(|| eio.set("wal *"), |_| {}, || eio.clear(), &mut c, &env);
    }
}
