//! The etcd 3.5–3.7 API additions and the byte-level shape of a few answers,
//! each compared with a real etcd given the same requests:
//!
//! - `Maintenance.Downgrade` VALIDATE / ENABLE / CANCEL (gRPC and `etcdctl
//!   downgrade`), relative to each server's own cluster version: etcd 3.6
//!   speaks 3.6 and may go down to 3.5; Logbook speaks 3.5 and may go down to 3.4.
//!   An enabled downgrade lowers the cluster and storage versions at the
//!   leader's next version check and a cancel raises them again (against etcd 3.7.3).
//! - `StatusResponse.storageVersion`, `dbSizeQuota`, `downgradeInfo`; `Auth.AuthStatus`.
//! - MemberList's header carries no revision; Defragment and MoveLeader answer
//!   an empty message; the JSON gateway's error objects list `error`,
//!   `message`, `code` in that order (etcd 3.4/3.5's grpc-gateway v1; Logbook
//!   reports 3.5).

mod common;

use common::{Cluster, Etcd, cached_etcd, etcdctl, gw, runtime};
use logbook_api::etcdserverpb::auth_client::AuthClient;
use logbook_api::etcdserverpb::cluster_client::ClusterClient;
use logbook_api::etcdserverpb::downgrade_request::DowngradeAction;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::{
    AuthStatusRequest, DefragmentRequest, DowngradeInfo, DowngradeRequest, MemberListRequest,
    MoveLeaderRequest, StatusRequest, StatusResponse,
};
use logbook_api::prost::Message;
use tonic::transport::Channel;

const ETCD_36: &str = "3.6.16";

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap()
}

/// A Downgrade call's outcome as comparable text: the answered version, or
/// the error's code and message.
async fn downgrade(url: &str, action: DowngradeAction, version: &str) -> Result<String, String> {
    let mut m = MaintenanceClient::new(channel(url).await);
    m.downgrade(DowngradeRequest { action: action as i32, version: version.to_string() })
        .await
        .map(|r| r.into_inner().version)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

async fn status(url: &str) -> StatusResponse {
    let mut m = MaintenanceClient::new(channel(url).await);
    m.status(StatusRequest {}).await.unwrap().into_inner()
}

/// The server's cluster version as major and minor, from its `/version`.
fn cluster_version(url: &str) -> (u64, u64) {
    let v = common::http_get(&format!("{url}/version")).json();
    let cluster = v["etcdcluster"].as_str().unwrap().to_string();
    let mut parts = cluster.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Every Downgrade step on one server, with versions relative to its own
/// cluster version, as comparable lines.
async fn downgrade_script(url: &str, (major, minor): (u64, u64)) -> Vec<String> {
    let cur = format!("{major}.{minor}");
    let below = format!("{major}.{}", minor - 1);
    let mut out = Vec::new();
    let mut step = |what: &str, r: Result<String, String>| {
        // The answered version names the server's own cluster version.
        let r = r.map(|v| if v == cur { "CURRENT".to_string() } else { v });
        out.push(format!("{what}: {r:?}"));
    };
    use DowngradeAction::{Cancel, Enable, Validate};
    step("validate one minor below", downgrade(url, Validate, &below).await);
    step("validate one minor below (patch)", downgrade(url, Validate, &format!("{below}.7")).await);
    step("validate the same minor", downgrade(url, Validate, &cur).await);
    step(
        "validate a higher minor",
        downgrade(url, Validate, &format!("{major}.{}", minor + 1)).await,
    );
    step(
        "validate two minors below",
        downgrade(url, Validate, &format!("{major}.{}", minor - 2)).await,
    );
    step("validate the next major", downgrade(url, Validate, &format!("{}.0", major + 1)).await);
    for bad in ["", "abc", "v3.4", "3", "3.x.0"] {
        step(&format!("validate {bad:?}"), downgrade(url, Validate, bad).await);
    }
    step("enable a bad version", downgrade(url, Enable, "abc").await);
    step("enable the same minor", downgrade(url, Enable, &cur).await);
    step("cancel with none enabled", downgrade(url, Cancel, "").await);
    let before = status(url).await.downgrade_info;
    step("enable one minor below", downgrade(url, Enable, &format!("{below}.0")).await);
    // Right after the enable: etcd's leader moves its cluster version to
    // the target only at its next version check (seconds later).
    step("enable again", downgrade(url, Enable, &below).await);
    step("validate while enabled", downgrade(url, Validate, &below).await);
    let during = status(url).await.downgrade_info;
    step("cancel", downgrade(url, Cancel, "").await);
    let after = status(url).await.downgrade_info;
    let info = |i: Option<DowngradeInfo>| {
        let i = i.expect("downgradeInfo is always present");
        let target = if i.target_version == format!("{below}.0") {
            "BELOW.0".to_string()
        } else {
            i.target_version
        };
        format!("enabled={} target={target:?}", i.enabled)
    };
    out.push(format!("status before: {}", info(before)));
    out.push(format!("status during: {}", info(during)));
    out.push(format!("status after: {}", info(after)));
    out
}

#[test]
fn downgrade_answers_as_etcd_36_does() {
    let etcd = Etcd::start_program(&cached_etcd(ETCD_36, "etcd"));
    let cluster = Cluster::start(1, &[]);
    let rt = runtime();
    let ours_url = cluster.specs[0].client_url();
    let theirs = rt.block_on(downgrade_script(&etcd.client_url, cluster_version(&etcd.client_url)));
    let ours = rt.block_on(downgrade_script(&ours_url, cluster_version(&ours_url)));
    assert_eq!(ours, theirs, "\nLogbook: {ours:#?}\netcd {ETCD_36}: {theirs:#?}");
    // A sanity check on the script itself: the comparison covered successes
    // and each of etcd's errors.
    let text = theirs.join("\n");
    for expected in [
        "etcdserver: invalid downgrade target version",
        "etcdserver: wrong downgrade target version format",
        "etcdserver: cluster has a downgrade job in progress",
        "Ok(\"CURRENT\")",
        "status during: enabled=true target=\"BELOW.0\"",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
}

/// etcdctl 3.6's `downgrade validate/enable/cancel`, on Logbook and on etcd
/// 3.6, print the same lines but for the versions (each its own).
#[test]
fn etcdctl_downgrade_commands_work() {
    let etcd = Etcd::start_program(&cached_etcd(ETCD_36, "etcd"));
    let cluster = Cluster::start(1, &[]);
    let ctl = cached_etcd(ETCD_36, "etcdctl");
    let run = |url: &str, args: &[&str]| {
        let out = std::process::Command::new(&ctl)
            .arg(format!("--endpoints={url}"))
            .arg("--command-timeout=10s")
            .args(args)
            .output()
            .unwrap();
        let (major, minor) = cluster_version(url);
        // The client library's JSON log lines carry timestamps: only
        // etcdctl's own lines are compared.
        let norm = |s: &[u8]| {
            String::from_utf8_lossy(s)
                .lines()
                .filter(|l| !l.starts_with('{'))
                .collect::<Vec<_>>()
                .join("\n")
                .replace(&format!("{major}.{}", minor - 1), "BELOW")
                .replace(&format!("{major}.{minor}"), "CURRENT")
                .trim()
                .to_string()
        };
        (out.status.success(), norm(&out.stdout), norm(&out.stderr))
    };
    let script = |url: &str| -> Vec<(bool, String, String)> {
        let (major, minor) = cluster_version(url);
        let below = format!("{major}.{}", minor - 1);
        let cur = format!("{major}.{minor}");
        vec![
            run(url, &["downgrade", "validate", &below]),
            run(url, &["downgrade", "validate", &cur]),
            run(url, &["downgrade", "validate", "nonsense"]),
            run(url, &["downgrade", "enable", &below]),
            run(url, &["downgrade", "validate", &below]),
            run(url, &["downgrade", "cancel"]),
        ]
    };
    let theirs = script(&etcd.client_url);
    let ours = script(&cluster.specs[0].client_url());
    assert_eq!(ours, theirs);
    assert!(theirs[0].0 && theirs[3].0 && theirs[5].0 && !theirs[1].0, "{theirs:?}");
}

const ETCD_37: &str = "3.7.3";

/// What a server shows of a downgrade: its cluster version (`/version`), its
/// storage version and server version (Status) and its downgrade info, with
/// versions named relative to its own cluster version.
fn downgrade_state(rt: &tokio::runtime::Runtime, url: &str, (major, minor): (u64, u64)) -> String {
    let below = format!("{major}.{}", minor - 1);
    let cur = format!("{major}.{minor}");
    let rel = |v: &str| v.replace(&cur, "CURRENT").replace(&below, "BELOW");
    let s = rt.block_on(status(url));
    let version = common::http_get(&format!("{url}/version")).json();
    let cluster = version["etcdcluster"].as_str().unwrap().to_string();
    let info = s.downgrade_info.expect("downgradeInfo is always present");
    format!(
        "cluster={} storage={} server_is_own={} downgrade_enabled={} target={:?}",
        rel(&cluster),
        rel(&s.storage_version),
        s.version == version["etcdserver"],
        info.enabled,
        rel(&info.target_version)
    )
}

/// etcd 3.6/3.7's version monitor: after `etcdctl downgrade enable`, the
/// leader lowers the cluster version to the target at its next check, each
/// member's storage version follows, and the server version stays; validate
/// and enable are then judged against the lowered version; `downgrade
/// cancel` brings both versions back up. Logbook and etcd 3.7.3 are given
/// the same etcdctl 3.7.3 commands and must show the same states.
#[test]
fn downgrade_enable_lowers_the_cluster_version_as_etcd_37_does() {
    let etcd = Etcd::start_program(&cached_etcd(ETCD_37, "etcd"));
    let cluster = Cluster::start(1, &[]);
    let ctl = cached_etcd(ETCD_37, "etcdctl");
    let rt = runtime();
    let script = |url: &str| -> Vec<String> {
        let (major, minor) = cluster_version(url);
        let below = format!("{major}.{}", minor - 1);
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&ctl)
                .arg(format!("--endpoints={url}"))
                .arg("--command-timeout=10s")
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let state = || downgrade_state(&rt, url, (major, minor));
        // Bounded: etcd's monitor looks every 4 s.
        let wait_for = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let now = state();
                if now.starts_with(want) {
                    return now;
                }
                assert!(std::time::Instant::now() < deadline, "{url}: still {now}, want {want}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        };
        let mut out = vec![format!("before: {}", state())];
        run(&["downgrade", "enable", &below]);
        out.push(format!("downgraded: {}", wait_for("cluster=BELOW.0 storage=BELOW.0")));
        let answer = |action, v: &str| {
            rt.block_on(downgrade(url, action, v))
                .map(|v| v.replace(&format!("{major}.{minor}"), "CURRENT").replace(&below, "BELOW"))
        };
        use DowngradeAction::{Cancel, Enable, Validate};
        out.push(format!("validate the target: {:?}", answer(Validate, &below)));
        out.push(format!("enable the target again: {:?}", answer(Enable, &below)));
        out.push(format!(
            "validate one more below: {:?}",
            answer(Validate, &format!("{major}.{}", minor - 2))
        ));
        out.push(format!("cancel: {:?}", answer(Cancel, "")));
        out.push(format!("cancelled: {}", wait_for("cluster=CURRENT.0 storage=CURRENT.0")));
        run(&["downgrade", "enable", &below]);
        // Both versions, as after the first enable: the storage version follows
        // the cluster version a monitor tick later (on etcd too), so a state
        // read as soon as the cluster version moved may have either.
        out.push(format!("enabled again: {}", wait_for("cluster=BELOW.0 storage=BELOW.0")));
        run(&["downgrade", "cancel"]);
        out.push(format!("cancelled again: {}", wait_for("cluster=CURRENT.0 storage=CURRENT.0")));
        out
    };
    let theirs = script(&etcd.client_url);
    let ours = script(&cluster.specs[0].client_url());
    assert_eq!(ours, theirs, "\nLogbook: {ours:#?}\netcd {ETCD_37}: {theirs:#?}");
    assert!(
        theirs[1].contains("server_is_own=true downgrade_enabled=true target=\"BELOW.0\""),
        "{theirs:#?}"
    );
    // Logbook's log says what etcd's does.
    let log = cluster.log(0);
    for line in ["updated cluster version", "The server is ready to downgrade"] {
        assert!(log.contains(line), "{line} missing from the log");
    }
}

/// Status's 3.6 fields: the storage version follows the cluster version
/// (major.minor.0), the quota is --quota-backend-bytes (etcd's 2 GiB when
/// unset), and no downgrade is in progress; AuthStatus as etcd answers it.
#[test]
fn status_and_auth_status_carry_etcds_fields() {
    let rt = runtime();
    for quota in [None, Some("1073741824")] {
        let args: Vec<String> =
            quota.map(|q| vec![format!("--quota-backend-bytes={q}")]).unwrap_or_default();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let etcd = Etcd::start_with(&cached_etcd(ETCD_36, "etcd"), &args);
        let cluster = Cluster::start(1, &args);
        let shape = |url: &str| {
            let s = rt.block_on(status(url));
            let (major, minor) = cluster_version(url);
            (
                s.storage_version == format!("{major}.{minor}.0"),
                s.db_size_quota,
                s.downgrade_info,
                s.is_learner,
                s.errors,
            )
        };
        let theirs = shape(&etcd.client_url);
        let ours = shape(&cluster.specs[0].client_url());
        assert_eq!(ours, theirs);
        assert!(theirs.0, "etcd's storage version is its cluster version");
        assert_eq!(theirs.1, quota.map_or(2 << 30, |q| q.parse().unwrap()));
    }
    // AuthStatus before and after auth is enabled, through gRPC and etcdctl.
    let etcd = Etcd::start_program(&cached_etcd(ETCD_36, "etcd"));
    let cluster = Cluster::start(1, &[]);
    let auth_script = |url: &str| {
        let endpoint = url.trim_start_matches("http://");
        let mut lines = Vec::new();
        let mut auth_status = |who: Option<&str>| {
            let mut args = vec!["auth", "status"];
            if let Some(w) = who {
                args.push("--user");
                args.push(w);
            }
            let out = etcdctl(endpoint, &args, None);
            lines.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        };
        auth_status(None);
        let grpc = rt.block_on(async {
            let mut a = AuthClient::new(channel(url).await);
            let r = a.auth_status(AuthStatusRequest {}).await.unwrap().into_inner();
            (r.enabled, r.auth_revision)
        });
        for args in
            [&["user", "add", "root:rootpw"][..], &["role", "add", "r1"], &["auth", "enable"]]
        {
            let out = etcdctl(endpoint, args, None);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        auth_status(Some("root:rootpw"));
        (lines, grpc)
    };
    let theirs = auth_script(&etcd.client_url);
    let ours = auth_script(&cluster.specs[0].client_url());
    assert_eq!(ours, theirs);
    assert!(theirs.0[1].contains("true"), "{theirs:?}");
}

/// Defragment and MoveLeader (to the member that leads already) answer an
/// empty message: no header at all, zero bytes on the wire. MemberList's
/// header has cluster, member and term but no revision.
#[test]
fn empty_answers_and_member_list_header_are_etcds_bytes() {
    let etcd = Etcd::start_program(&cached_etcd(ETCD_36, "etcd"));
    let cluster = Cluster::start(1, &[]);
    let rt = runtime();
    let raw = |url: &str| {
        rt.block_on(async {
            let ch = channel(url).await;
            let mut m = MaintenanceClient::new(ch.clone());
            let leader = m.status(StatusRequest {}).await.unwrap().into_inner().leader;
            let defrag = m.defragment(DefragmentRequest {}).await.unwrap().into_inner();
            let moved =
                m.move_leader(MoveLeaderRequest { target_id: leader }).await.unwrap().into_inner();
            let list = ClusterClient::new(ch)
                .member_list(MemberListRequest { linearizable: false })
                .await
                .unwrap()
                .into_inner();
            let header = list.header.unwrap();
            (
                defrag.encode_to_vec(),
                moved.encode_to_vec(),
                header.revision,
                header.cluster_id != 0 && header.member_id != 0 && header.raft_term != 0,
            )
        })
    };
    let theirs = raw(&etcd.client_url);
    let ours = raw(&cluster.specs[0].client_url());
    assert_eq!(ours, theirs);
    assert_eq!(theirs, (Vec::new(), Vec::new(), 0, true));
}

/// The gateway's JSON text, byte for byte where the values agree: error
/// objects (`error`, `message`, `code`, as etcd 3.4/3.5 write them), the
/// empty Defragment answer, and MemberList's header fields.
#[test]
fn gateway_json_text_matches_etcd_35_era() {
    let etcd = Etcd::start_program("etcd");
    let cluster = Cluster::start(1, &[]);
    let ours = cluster.specs[0].client_url();
    for (path, body) in [
        ("/v3/kv/range", r#"{"key":""}"#),
        ("/v3/kv/put", r#"{"key":"YQ==","lease":"12345"}"#),
        ("/v3/kv/compaction", r#"{"revision":"100"}"#),
        ("/v3/maintenance/defragment", "{}"),
    ] {
        let theirs = gw(&etcd.client_url, path, body);
        let mine = gw(&ours, path, body);
        assert_eq!((mine.status, &mine.body), (theirs.status, &theirs.body), "{path} {body}");
    }
    let keys = |url: &str| {
        let v = gw(url, "/v3/cluster/member/list", "{}").json();
        let header = v["header"].as_object().unwrap().clone();
        header.keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(keys(&ours), keys(&etcd.client_url));
    assert_eq!(keys(&ours), ["cluster_id", "member_id", "raft_term"]);
}
