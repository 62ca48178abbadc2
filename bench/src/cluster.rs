//! Starting and stopping a local cluster of the system under test.
//!
//! Logbook and etcd take the same flags (`--name --data-dir
//! --listen-client-urls ... --initial-cluster-token`), so one spawner starts
//! either: Logbook as `<logbook> serve <flags>`, etcd as `<etcd> <flags>`. Every
//! member listens on 127.0.0.1 ports picked free, logs to `<dir>/<name>.log`,
//! and is stopped by its handle (kill, then wait) when the [`Cluster`] is
//! dropped, whether the run ended well, failed or was interrupted.

use std::fmt;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use logbook_api::etcdserverpb::{RangeRequest, StatusRequest};
use tokio::time::Instant;

use crate::client::{Pool, connect_one};

/// A system the suite can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Logbook,
    Etcd,
}

impl System {
    /// `logbook` or `etcd`.
    pub fn name(self) -> &'static str {
        match self {
            System::Logbook => "logbook",
            System::Etcd => "etcd",
        }
    }

    /// Parses `logbook` or `etcd`.
    pub fn parse(s: &str) -> Result<System> {
        match s.trim().to_ascii_lowercase().as_str() {
            "logbook" => Ok(System::Logbook),
            "etcd" => Ok(System::Etcd),
            other => bail!("unknown system {other:?} (expected logbook or etcd)"),
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One running member.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A local cluster; dropping it stops every member.
#[derive(Debug)]
pub struct Cluster {
    pub system: System,
    pub members: Vec<Member>,
}

/// A port on 127.0.0.1 nobody listened on a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Hold every listener until all are picked, so no port comes twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("picking a free port")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Finds `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

impl Cluster {
    /// Starts `members` members of `system` from `binary`, with data under `dir`.
    pub fn start(system: System, binary: &Path, dir: &Path, members: usize) -> Result<Cluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = free_ports(2 * members)?;
        let names: Vec<String> = (1..=members).map(|i| format!("n{i}")).collect();
        let peer_urls: Vec<String> =
            (0..members).map(|i| format!("http://127.0.0.1:{}", ports[2 * i + 1])).collect();
        let initial_cluster = names
            .iter()
            .zip(&peer_urls)
            .map(|(n, u)| format!("{n}={u}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("bench-{}-{}", system.name(), std::process::id());
        let mut cluster = Cluster { system, members: Vec::new() };
        for (i, name) in names.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let data_dir = dir.join(name);
            let log = dir.join(format!("{name}.log"));
            let mut cmd = Command::new(binary);
            // Both systems read ETCD_* variables as flags: only ours count.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD_") {
                    cmd.env_remove(k);
                }
            }
            if system == System::Logbook {
                cmd.arg("serve");
            }
            cmd.args(["--name", name])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args([
                    "--listen-peer-urls",
                    &peer_urls[i],
                    "--initial-advertise-peer-urls",
                    &peer_urls[i],
                ])
                .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token]);
            let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            let child = cmd.spawn().with_context(|| {
                format!("starting {} member {name} from {}", system, binary.display())
            })?;
            cluster.members.push(Member {
                name: name.clone(),
                client_url,
                peer_url: peer_urls[i].clone(),
                data_dir,
                log,
                child: Some(child),
            });
        }
        Ok(cluster)
    }

    /// Starts a cluster and waits until it is ready. Ports are picked free
    /// but released before the members bind them, so another process may
    /// take one in between: a start whose member fails on an address in use
    /// is retried (at most 3 times) on new ports and a fresh directory.
    pub async fn start_ready(
        system: System,
        binary: &Path,
        dir: &Path,
        members: usize,
        timeout: Duration,
    ) -> Result<Cluster> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let d = if attempt == 1 {
                dir.to_owned()
            } else {
                dir.with_extension(format!("retry{attempt}"))
            };
            let mut c = Cluster::start(system, binary, &d, members)?;
            match c.wait_ready(timeout).await {
                Ok(()) => return Ok(c),
                Err(e)
                    if attempt < 3
                        && format!("{e:#}").to_lowercase().contains("address already in use") =>
                {
                    eprintln!("{system}: a port was taken meanwhile, starting again on new ports");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(Member::pid).collect()
    }

    /// Fails with the member's log tail if any member has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                m.child = None;
                bail!(
                    "{} member {} exited ({status}) — last lines of {}:\n{}",
                    self.system,
                    m.name,
                    m.log.display(),
                    log_tail(&m.log, 15)
                );
            }
        }
        Ok(())
    }

    /// Waits until every member reports a leader and a linearizable read
    /// succeeds, or fails after `timeout` (or as soon as a member exits).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_err = anyhow::anyhow!("not polled yet");
        loop {
            self.check_alive()?;
            match self.probe().await {
                Ok(()) => return Ok(()),
                Err(e) => last_err = e,
            }
            if Instant::now() >= deadline {
                bail!("{} cluster not ready after {timeout:?}: {last_err:#}", self.system);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn probe(&self) -> Result<()> {
        for m in &self.members {
            let ch =
                tokio::time::timeout(Duration::from_secs(2), connect_one(&m.client_url)).await??;
            let pool = Pool::from_channel(ch);
            let status = pool.maintenance(0).status(StatusRequest {}).await?.into_inner();
            anyhow::ensure!(status.leader != 0, "member {} has no leader yet", m.name);
            pool.kv(0)
                .range(RangeRequest { key: "/bench-ready".into(), ..Default::default() })
                .await?;
        }
        Ok(())
    }

    /// The client URL of the current leader.
    pub async fn leader_endpoint(&self) -> Result<String> {
        for m in &self.members {
            let pool = Pool::from_channel(connect_one(&m.client_url).await?);
            let status = pool.maintenance(0).status(StatusRequest {}).await?.into_inner();
            if status.header.is_some_and(|h| h.member_id == status.leader) {
                return Ok(m.client_url.clone());
            }
        }
        bail!("{} cluster has no leader", self.system)
    }

    /// Stops every member (kill, then wait). Idempotent.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_parse() {
        assert_eq!(System::parse("ETCD").unwrap(), System::Etcd);
        assert_eq!(System::parse("logbook").unwrap(), System::Logbook);
        assert!(System::parse("zookeeper").is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = free_ports(6).unwrap();
        let mut q = p.clone();
        q.sort();
        q.dedup();
        assert_eq!(p.len(), q.len());
    }

    #[tokio::test]
    async fn a_binary_that_exits_is_reported_with_its_log() {
        // `false` takes any flags and exits 1: the shape of a missing `serve`.
        let dir = tempfile::tempdir().unwrap();
        let Some(bin) = which("false") else { panic!("`false` not on PATH") };
        let mut c = Cluster::start(System::Logbook, &bin, dir.path(), 1).unwrap();
        let err = c.wait_ready(Duration::from_secs(10)).await.unwrap_err().to_string();
        assert!(err.contains("logbook member n1 exited"), "{err}");
    }
}
