//! A real etcd cluster (`scripts/etcd-bin.sh`'s build of a version) on
//! 127.0.0.1, for tests that run the same steps on etcd and Logbook. Every
//! process is started and stopped through its handle; every wait is bounded.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{cached_etcd, etcdctl, free_port};

/// `n` etcd members `e0`, `e1`, ... in a temporary directory, killed when dropped.
pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    program: String,
    /// (client, peer) port of each member.
    pub ports: Vec<(u16, u16)>,
    /// Flags every member gets.
    pub flags: Vec<String>,
    pub procs: Vec<Option<Child>>,
}

impl EtcdCluster {
    /// Starts `n` members of etcd `version` with `flags` and waits until each serves.
    pub fn start(version: &str, n: usize, flags: &[&str]) -> EtcdCluster {
        let mut c = EtcdCluster {
            dir: tempfile::tempdir().unwrap(),
            program: cached_etcd(version, "etcd"),
            ports: (0..n).map(|_| (free_port(), free_port())).collect(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            procs: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            c.spawn(i, &[]);
        }
        for i in 0..n {
            c.wait_serving(i);
        }
        c
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i].0)
    }

    /// Every member's client endpoint (`127.0.0.1:port`).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Index of the member that leads, from `endpoint status` (bounded wait).
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.ports.len() {
                let out = etcdctl(&self.endpoint(i), &["endpoint", "status", "-w", "json"], None);
                let text = String::from_utf8_lossy(&out.stdout);
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let s = &v[0]["Status"];
                    if s["leader"].as_u64().is_some() && s["leader"] == s["header"]["member_id"] {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no etcd leader within 30s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i].1)
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("e{i}"))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("e{i}.log"))).unwrap_or_default()
    }

    /// Starts member `i` (again) with `extra` flags after the cluster's.
    pub fn spawn(&mut self, i: usize, extra: &[&str]) {
        let initial: Vec<String> =
            (0..self.ports.len()).map(|j| format!("e{j}={}", self.peer_url(j))).collect();
        self.spawn_in(i, &initial.join(","), extra);
    }

    /// Adds a member's ports (it is `e<n>`) without starting it; returns its index.
    pub fn add_ports(&mut self) -> usize {
        self.ports.push((free_port(), free_port()));
        self.procs.push(None);
        self.ports.len() - 1
    }

    /// Starts member `i` with `--initial-cluster=initial` and `extra` flags.
    pub fn spawn_in(&mut self, i: usize, initial: &str, extra: &[&str]) {
        assert!(self.procs[i].is_none(), "member {i} already running");
        let client = format!("http://{}", self.endpoint(i));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("e{i}.log")))
            .unwrap();
        let child = Command::new(&self.program)
            .arg(format!("--name=e{i}"))
            .arg(format!("--data-dir={}", self.data_dir(i).display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={}", self.peer_url(i)))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url(i)))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--initial-cluster-token=etcd-cluster-test")
            .args(&self.flags)
            .args(extra)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        self.procs[i] = Some(child);
    }

    /// Waits (bounded) until member `i` answers a linearizable get.
    pub fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if etcdctl(&self.endpoint(i), &["get", "ready-probe"], None).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} not serving within 60s; log:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and a bounded wait (then SIGKILL).
    pub fn stop(&mut self, i: usize) {
        let Some(mut c) = self.procs[i].take() else { return };
        // SAFETY: kill(2) on the PID of a child we own and have not reaped.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        if wait_child(&mut c, Duration::from_secs(10)).is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (bounded) for member `i` to exit by itself.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<ExitStatus> {
        let status = wait_child(self.procs[i].as_mut()?, limit)?;
        self.procs[i] = None;
        Some(status)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Waits (bounded) for `child` to exit.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
