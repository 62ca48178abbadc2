//! The members' processes, on 127.0.0.1 ports (proxy mode) or each in its own network
//! namespace (namespace mode, launched with `ip netns exec`), with membership that can
//! change during a run: a slot is one machine (name, address, data dir); a member can be
//! removed, its machine wiped and added back, and a spare slot can join as a learner. The
//! processes start and stop through the black-box tests' own helpers (`common::Serve`,
//! `kill_child`, `signal_child`).

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::RangeRequest;

use super::workload;
pub use crate::common::tail;
use crate::common::{Serve, free_port, kill_child, signal_child};

/// One machine.
pub struct Slot {
    pub name: String,
    /// The namespace it runs in (namespace mode).
    pub ns: Option<String>,
    pub host: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `--initial-cluster` and `--initial-cluster-state` it starts with.
    pub initial_cluster: String,
    pub state: &'static str,
    /// Extra environment (peer routes, power loss).
    pub env: Vec<(String, String)>,
}

impl Slot {
    pub fn client_url(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }
}

pub struct Members {
    /// Holds the data dirs and logs; removed on drop.
    _dir: tempfile::TempDir,
    pub slots: Vec<Slot>,
    pub procs: Vec<Option<Child>>,
    token: String,
    args: Vec<String>,
}

impl Members {
    /// `slots` machines; the first `voters` form the initial cluster. `hosts`: (namespace,
    /// address) per slot in namespace mode (members then use etcd's default ports), else
    /// 127.0.0.1 with free ports.
    pub fn new(
        slots: usize,
        voters: usize,
        hosts: Option<Vec<(String, String)>>,
        args: &[&str],
    ) -> Members {
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<Slot> = (0..slots)
            .map(|i| {
                let (ns, host, client_port, peer_port) = match &hosts {
                    Some(h) => (Some(h[i].0.clone()), h[i].1.clone(), 2379, 2380),
                    None => (None, "127.0.0.1".to_string(), free_port(), free_port()),
                };
                Slot {
                    name: format!("m{}", i + 1),
                    ns,
                    host,
                    client_port,
                    peer_port,
                    data_dir: dir.path().join(format!("m{}.logbook", i + 1)),
                    log: dir.path().join(format!("m{}.log", i + 1)),
                    initial_cluster: String::new(),
                    state: "new",
                    env: Vec::new(),
                }
            })
            .collect();
        let initial = all[..voters]
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for s in &mut all[..voters] {
            s.initial_cluster = initial.clone();
        }
        Members {
            _dir: dir,
            procs: (0..slots).map(|_| None).collect(),
            slots: all,
            token: format!("robustness-{}", std::process::id()),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Starts slot `i`'s member (again).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "m{} already running", i + 1);
        let s = &self.slots[i];
        let child = Serve {
            name: &s.name,
            data_dir: &s.data_dir,
            client_url: s.client_url(),
            peer_url: s.peer_url(),
            initial_cluster: &s.initial_cluster,
            state: Some(s.state),
            token: &self.token,
            extra_args: &self.args,
            env: &s.env,
            log: &s.log,
            netns: s.ns.as_deref(),
        }
        .spawn();
        self.procs[i] = Some(child);
    }

    /// Whether member `i`'s process has ended by itself (it is then forgotten, so it can
    /// be spawned again). False when it runs or was never started.
    pub fn exited(&mut self, i: usize) -> bool {
        let ended = self.procs[i].as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if ended {
            self.procs[i] = None;
        }
        ended
    }

    /// kill -9 (`ip netns exec` execs the member, so the child is the member itself).
    pub fn kill(&mut self, i: usize) {
        kill_child(&mut self.procs[i]);
    }

    /// Sends `signal` to slot `i`'s member if it runs.
    pub fn signal(&self, i: usize, signal: i32) -> bool {
        signal_child(self.procs[i].as_ref(), signal)
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.slots[i].log).unwrap_or_default()
    }

    /// Whether slot `i`'s member answers a read within about two seconds (linearizable, or
    /// serializable for a learner, which serves no linearizable read).
    pub async fn serves(&self, i: usize, serializable: bool) -> bool {
        let Some(mut kv) = workload::connect(&self.slots[i].client_url()).await else {
            return false;
        };
        let read = kv.range(RangeRequest {
            key: "ready-probe".into(),
            serializable,
            ..Default::default()
        });
        matches!(tokio::time::timeout(Duration::from_secs(2), read).await, Ok(Ok(_)))
    }

    /// Waits (bounded) until slot `i`'s member serves linearizable reads.
    pub fn wait_ready(&self, rt: &tokio::runtime::Runtime, i: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !rt.block_on(self.serves(i, false)) {
            if Instant::now() > deadline {
                panic!(
                    "m{} not ready after {limit:?}; log ends:\n{}",
                    i + 1,
                    tail(&self.log(i), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            // A paused member must run again to die cleanly (SIGKILL works on it anyway).
            self.kill(i);
        }
    }
}
