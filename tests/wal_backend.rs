//! `--wal-backend` (Logbook's own flag): a member opens its WAL with the backend asked for,
//! says which in its log and in `/metrics`, and one data directory moves between backends
//! across restarts with every acknowledged write intact (each backend writes the same
//! format). `auto` measures the disk and logs what it measured and chose.

mod common;

use std::time::Duration;

use common::{Cluster, http_get};

/// The backend `/metrics` reports as in use.
fn metrics_backend(c: &Cluster) -> Option<String> {
    let body = http_get(&format!("{}/metrics", c.specs[0].client_url())).body;
    body.lines().find_map(|l| {
        let rest = l.strip_prefix("logbook_wal_backend{backend=\"")?;
        let (name, value) = rest.split_once("\"} ")?;
        (value.trim() == "1").then(|| name.to_string())
    })
}

#[test]
fn each_backend_serves_the_same_data_dir_in_turn_and_reports_itself() {
    let mut c = Cluster::create(1, &[]);
    // (variable, value, the backend it must run): every way of giving the setting.
    let runs = [
        ("LOGBOOK_WAL_BACKEND", "io-uring-direct", "io-uring-direct"),
        ("ETCD_WAL_BACKEND", "sync", "sync"),
        ("LOGBOOK_WAL_BACKEND", "io-uring", "io-uring"),
        ("LOGBOOK_WAL_BACKEND", "io-uring-direct", "io-uring-direct"),
    ];
    for (round, (var, value, want)) in runs.iter().enumerate() {
        c.spawn_env(0, &[(var.to_string(), value.to_string())]);
        c.wait_ready(0, Duration::from_secs(30));
        let log = c.log(0);
        assert!(
            log.lines().any(|l| l.contains("WAL backend chosen")
                && l.contains(&format!("\"backend\":\"{want}\""))),
            "round {round}: no 'WAL backend chosen ... backend={want}' line:\n{log}"
        );
        assert_eq!(metrics_backend(&c).as_deref(), Some(*want), "round {round}");
        c.ctl_ok(0, &["put", &format!("k{round}"), &format!("v{round}")]);
        // Everything written under the earlier backends is there.
        for earlier in 0..=round {
            let got = c.ctl_ok(0, &["get", &format!("k{earlier}"), "--print-value-only"]);
            assert_eq!(got.trim(), format!("v{earlier}"), "round {round} ({want})");
        }
        if round % 2 == 0 {
            c.kill(0); // kill -9: recovery under the next backend
        } else {
            assert!(c.stop(0), "round {round}: no clean exit");
        }
    }
}

#[test]
fn auto_measures_and_logs_its_choice() {
    let c = Cluster::start(1, &[]);
    let log = c.log(0);
    let line = log
        .lines()
        .find(|l| l.contains("WAL backend chosen"))
        .unwrap_or_else(|| panic!("no 'WAL backend chosen' line:\n{log}"));
    assert!(line.contains("\"asked\":\"auto\""), "{line}");
    assert!(line.contains("by measurement"), "{line}");
    // What was measured: the sync backend always runs.
    assert!(line.contains("sync ") && line.contains("us median"), "{line}");
    let chosen = metrics_backend(&c).expect("logbook_wal_backend in /metrics");
    assert!(line.contains(&format!("\"backend\":\"{chosen}\"")), "{chosen} vs {line}");
    assert!(["sync", "io-uring", "io-uring-direct"].contains(&chosen.as_str()), "{chosen}");
    c.ctl_ok(0, &["put", "a", "1"]);
}

#[test]
fn a_bad_wal_backend_is_refused_in_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logbook"))
        .args(["serve", "--wal-backend=fast"])
        .env("LOGBOOK_CHECK_CONFIG", "1")
        .env_remove("LOGBOOK_WAL_BACKEND")
        .env_remove("ETCD_WAL_BACKEND")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("-wal-backend"), "{stderr}");
    assert!(stderr.contains("fast"), "{stderr}");
}
