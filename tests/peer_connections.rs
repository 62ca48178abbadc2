//! How members hold their peer connections, as etcd's flags say:
//!
//! - `--raft-read-timeout` / `--raft-write-timeout` (etcd's rafthttp
//!   `ConnReadTimeout`/`ConnWriteTimeout`): a stopped member (SIGSTOP) sends
//!   nothing and reads nothing; a member still running closes its Raft lane
//!   after its configured read timeout, a member whose timeout is longer
//!   keeps it, and once the member runs again it dials anew and the cluster
//!   serves through it. (The write timeout's drop of a backed-up link is not
//!   forced here: filling the socket buffers to a stopped member took 40 MiB
//!   of writes, which made the test flaky on a loaded machine.)
//! - `--feature-gates=SetMemberLocalAddr=true`: peer connections leave from
//!   the first advertised peer IP, checked on a listener that stands in for
//!   a peer, for Logbook and for etcd 3.7.3 given the same flags, inside a
//!   network namespace of the test's own (so the member can advertise an
//!   address that is neither loopback nor unspecified, which etcd requires).

mod common;

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, cached_etcd, connect, free_port, put, runtime};

/// Waits (bounded by `limit`) until `cond` holds, polling every 100 ms.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

const SILENT: &str = "raft lane from peer went silent; closed";
const STALLED: &str = "peer took nothing for the raft write timeout; reconnecting";
const CONNECTED: &str = "\"msg\":\"connected to peer\"";

#[test]
fn raft_timeouts_close_a_stopped_peers_connections_and_it_reconnects() {
    // Every member: a 6 s write timeout. m1 reads with a 6 s timeout, m2
    // with an hour's, m3 with etcd's default (5 s). Set through ETCD_*
    // variables so each member has its own.
    let mut c = Cluster::create(3, &["--raft-write-timeout=6s"]);
    let read = |t: &str| vec![("ETCD_RAFT_READ_TIMEOUT".to_string(), t.to_string())];
    c.spawn_env(0, &read("6s"));
    c.spawn_env(1, &read("1h"));
    c.spawn(2);
    for i in 0..3 {
        c.wait_ready(i, Duration::from_secs(60));
    }
    // m3 must not lead: the members that keep running hold the quorum's writes.
    let mut leader = c.wait_leader(Duration::from_secs(30));
    if leader == 2 {
        c.ctl_ok(2, &["move-leader", &member_id(&c, 0)]);
        wait_for("leadership moved off m3", Duration::from_secs(30), || {
            c.leader().is_some_and(|l| l != 2)
        })
        .unwrap();
        leader = c.wait_leader(Duration::from_secs(30));
    }
    let m3_connects = count(&c.log(2), CONNECTED);

    assert!(c.signal(2, libc::SIGSTOP));
    let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Writes go on without m3.
        let rt = runtime();
        rt.block_on(async {
            let mut kv = connect(&c.specs[leader].client_url()).await.unwrap();
            for i in 0..10 {
                put(&mut kv, &format!("during/{i}"), "v").await.unwrap();
            }
        });
        let logs = |i: usize| {
            let log = c.log(i);
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        wait_for(
            &format!("m1 closes m3's silent lane (leader m{})", leader + 1),
            Duration::from_secs(60),
            || count(&c.log(0), SILENT) > 0,
        )
        .unwrap_or_else(|e| panic!("{e}\nm1's log:\n{}", logs(0)));
    }));
    assert!(c.signal(2, libc::SIGCONT));
    if let Err(e) = resumed {
        std::panic::resume_unwind(e);
    }
    let m1 = c.log(0);
    let closed = m1.lines().find(|l| l.contains(SILENT)).unwrap();
    assert!(closed.contains("\"raft-read-timeout\":\"6s\""), "{closed}");
    // Where the leader's link to m3 backed up (it need not, with few
    // writes), it was dropped after the write timeout given.
    if let Some(stalled) = c.log(leader).lines().find(|l| l.contains(STALLED)) {
        assert!(stalled.contains("\"raft-write-timeout\":\"6s\""), "{stalled}");
    }
    // m2 reads with an hour's timeout: the same silence left m3's lane open.
    assert_eq!(count(&c.log(1), SILENT), 0, "{}", c.log(1));

    // m3 runs again: it dials m1 anew (m1 closed its lane) and serves.
    wait_for("m3 reconnects to its peers", Duration::from_secs(60), || {
        count(&c.log(2), CONNECTED) > m3_connects
    })
    .unwrap();
    c.wait_ready(2, Duration::from_secs(60));
    c.ctl_ok(2, &["put", "after", "resume"]);
    for i in 0..3 {
        let got = c.ctl_ok(i, &["get", "after", "--print-value-only"]);
        assert_eq!(got.trim(), "resume", "member {i}");
        let during = c.ctl_ok(i, &["get", "during/9", "--print-value-only"]);
        assert_eq!(during.trim(), "v", "member {i}");
    }
}

/// Member `i`'s ID in hex, from etcdctl's member list.
fn member_id(c: &Cluster, i: usize) -> String {
    let out = c.ctl_ok(0, &["member", "list"]);
    out.lines()
        .find(|l| l.split(", ").nth(2) == Some(c.specs[i].name.as_str()))
        .and_then(|l| l.split(", ").next())
        .unwrap_or_else(|| panic!("{} not in {out}", c.specs[i].name))
        .to_string()
}

/// A process started inside the test's network namespace; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The addresses the first `n` connections to `listener` came from
/// (bounded: 60 s). Each is closed at once.
fn sources(listener: &TcpListener, n: usize) -> Vec<IpAddr> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        match listener.accept() {
            Ok((mut s, from)) => {
                out.push(from.ip());
                let _ = s.set_nonblocking(true);
                let _ = s.read(&mut [0u8; 64]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "only {} peer connections came", out.len());
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    out
}

/// Starts `program` (Logbook's `serve` or etcd) as member m1 advertising
/// `http://{ip}:port` with a stand-in m2 at `fake` (127.0.0.1), gate on or
/// off, and returns where its first connections to m2 came from.
fn peer_sources(program: &[String], ip: &str, gate: bool, fake: &TcpListener) -> Vec<IpAddr> {
    let dir = tempfile::tempdir().unwrap();
    let peer = format!("http://{ip}:{}", free_port());
    let client = format!("http://127.0.0.1:{}", free_port());
    let fake_url = format!("http://{}", fake.local_addr().unwrap());
    let mut cmd = Command::new(&program[0]);
    cmd.args(&program[1..])
        .args(["--name", "m1"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("m1={peer},m2={fake_url}")])
        .args(["--initial-cluster-token", "local-addr"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap());
    if gate {
        cmd.arg("--feature-gates=SetMemberLocalAddr=true");
    }
    let proc = Proc(cmd.spawn().unwrap());
    let got = sources(fake, 2);
    drop(proc);
    // Connections still on their way from the stopped member are not counted next time.
    while fake.accept().is_ok() {}
    got
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) must be installed");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn set_member_local_addr_dials_peers_from_the_advertised_ip() {
    // A thread of its own in a network namespace of its own: the processes
    // it starts and the sockets it opens live there (a namespace is per
    // thread and inherited by what the thread starts).
    let etcd = cached_etcd("3.7.3", "etcd");
    std::thread::spawn(move || {
        // SAFETY: unshare(2) with CLONE_NEWNET affects only the calling thread.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN (scripts/test.sh runs as root): {}",
            std::io::Error::last_os_error()
        );
        ip(&["link", "set", "lo", "up"]);
        ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"]);
        let fake = TcpListener::bind("127.0.0.1:0").unwrap();
        let logbook = vec![env!("CARGO_BIN_EXE_logbook").to_string(), "serve".to_string()];
        let etcd = vec![etcd];
        let ours = IpAddr::from([10, 77, 0, 1]);
        let lo = IpAddr::from([127, 0, 0, 1]);
        for (name, program) in [("Logbook", &logbook), ("etcd 3.7.3", &etcd)] {
            // Without the gate the kernel picks the source: 127.0.0.1 towards 127.0.0.1.
            assert_eq!(peer_sources(program, "10.77.0.1", false, &fake), [lo, lo], "{name}");
            assert_eq!(peer_sources(program, "10.77.0.1", true, &fake), [ours, ours], "{name}");
        }
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
