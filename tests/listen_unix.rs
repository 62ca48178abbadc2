//! A client URL on a Unix domain socket (`--listen-client-urls
//! unix:///path`), started with the command line Kubernetes' integration
//! framework gives etcd (`framework.RunCustomEtcd`, which
//! TestWatchCacheUpdatedByEtcd and TestReflectorWatchListFallback use), and
//! driven by etcdctl through `--endpoints unix:///path`: Logbook and etcd
//! 3.7.3 give the same answers.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cached_etcd;

/// A server started the way RunCustomEtcd starts etcd, killed when dropped.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` (with `sub` first: `serve` for Logbook) on a socket in
/// `dir`, listening on no TCP client port, and waits (bounded) until the
/// socket accepts connections. A stale file is left where the socket goes,
/// as an earlier run killed with -9 leaves one: etcd replaces it.
fn start(program: &str, sub: &[&str], dir: &Path) -> (Server, String) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let sock = data.join("etcd.sock");
    std::fs::write(&sock, b"stale").unwrap();
    let url = format!("unix://{}", sock.display());
    let log = dir.join("server.log");
    let child = Command::new(program)
        .args(sub)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen-client-urls", &url])
        .args(["--advertise-client-urls", "http://127.0.0.111:0"])
        .args(["--listen-peer-urls", "http://127.0.0.1:0"])
        .args(["-log-level", "warn"])
        .args(["--quota-backend-bytes", "8589934592"])
        .args(["--watch-progress-notify-interval", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let server = Server { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "{program} did not accept on {url} within 30s; its log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, url)
}

fn ctl(url: &str, args: &[&str]) -> Output {
    Command::new(cached_etcd("3.7.3", "etcdctl"))
        .arg(format!("--endpoints={url}"))
        .arg("--command-timeout=10s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// What a client sees through the socket: writes, reads (also at an older
/// revision), the health endpoint's verdict.
fn session(url: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for args in [
        &["put", "/registry/pods/a", "1"][..],
        &["put", "/registry/pods/b", "2"],
        &["del", "/registry/pods/a"],
        &["get", "/registry/", "--prefix", "-w", "fields"],
        &["get", "/registry/", "--prefix", "--rev", "2", "-w", "fields"],
        &["endpoint", "health", "-w", "json"],
    ] {
        let out = ctl(url, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Keep what does not depend on the server's identity or timing.
        let kept: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                !l.contains("\"ClusterID\"")
                    && !l.contains("\"MemberID\"")
                    && !l.contains("\"RaftTerm\"")
            })
            .collect();
        let kept = kept.join("\n");
        // endpoint health: only its verdict.
        let kept = if args[0] == "endpoint" {
            format!("health={}", kept.contains("\"health\":true"))
        } else {
            kept
        };
        seen.push(format!(
            "{} -> {} {kept} {}",
            args.join(" "),
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    seen
}

#[test]
fn client_url_on_a_unix_socket_serves_as_etcds_does() {
    let etcd_dir = tempfile::tempdir().unwrap();
    let (etcd, etcd_url) = start(&cached_etcd("3.7.3", "etcd"), &[], etcd_dir.path());
    let want = session(&etcd_url);
    drop(etcd);

    let lb_dir = tempfile::tempdir().unwrap();
    let (logbook, lb_url) = start(env!("CARGO_BIN_EXE_logbook"), &["serve"], lb_dir.path());
    let got = session(&lb_url);
    assert_eq!(got, want, "Logbook's log:\n{}", std::fs::read_to_string(&logbook.log).unwrap());
    assert!(want.iter().all(|l| l.contains(" -> 0 ")), "etcd: {want:#?}");
}
