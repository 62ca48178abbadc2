//! Watch, with the real etcdctl and with a gRPC client: prefixes, history
//! replay with prev_kv, compaction, many watchers on one stream, and a watch
//! that lives through the leader being killed without missing or repeating an
//! event.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, connect, json, put, runtime};
use logbook_api::etcdserverpb::watch_client::WatchClient;
use logbook_api::etcdserverpb::watch_create_request::FilterType;
use logbook_api::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// `etcdctl watch ARGS` in the background; its output is read after `stop`.
fn spawn_watch(c: &Cluster, i: usize, args: &[&str]) -> Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.specs[i].endpoint()))
        .arg("watch")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl must be installed")
}

fn stop_watch(mut child: Child) -> (String, String) {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `child`'s watch is registered, by writing a marker key it
/// will see... without a marker: give etcdctl a moment to connect.
fn settle() {
    std::thread::sleep(Duration::from_millis(700));
}

#[test]
fn etcdctl_watch_prefix_history_and_compaction() {
    let c = Cluster::start(1, &[]);
    c.ctl_ok(0, &["put", "/w/a", "1"]);
    let rev_b = json(&c.ctl_ok(0, &["put", "/w/b", "2", "-w", "json"]))["header"]["revision"]
        .as_i64()
        .unwrap();

    // Live events on a prefix: puts and deletes, nothing outside the prefix.
    let live = spawn_watch(&c, 0, &["--prefix", "/w/"]);
    settle();
    c.ctl_ok(0, &["put", "/w/a", "3"]);
    c.ctl_ok(0, &["put", "/other", "x"]);
    c.ctl_ok(0, &["del", "/w/b"]);
    c.ctl_ok(0, &["put", "/w/c", "4"]);
    std::thread::sleep(Duration::from_millis(500));
    let (out, _) = stop_watch(live);
    assert_eq!(out, "PUT\n/w/a\n3\nDELETE\n/w/b\n\nPUT\n/w/c\n4\n");

    // History from a past revision, with the previous versions.
    let hist = spawn_watch(&c, 0, &["/w/b", &format!("--rev={rev_b}"), "--prev-kv"]);
    std::thread::sleep(Duration::from_millis(800));
    let (out, _) = stop_watch(hist);
    assert_eq!(out, "PUT\n/w/b\n2\nDELETE\n/w/b\n2\n/w/b\n\n");

    // From a compacted revision: cancelled with etcd's reason.
    let now =
        json(&c.ctl_ok(0, &["get", "/w/a", "-w", "json"]))["header"]["revision"].as_i64().unwrap();
    c.ctl_ok(0, &["compaction", &now.to_string()]);
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.specs[0].endpoint()))
        .args(["watch", "/w/a", &format!("--rev={rev_b}")])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("required revision has been compacted"), "{text}");
}

async fn open_stream(url: &str) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>) {
    let channel = Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    let resp = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, resp)
}

fn create(key: &str, range_end: &str, watch_id: i64, filters: Vec<i32>) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.to_string().into(),
            range_end: range_end.to_string().into(),
            watch_id,
            filters,
            ..Default::default()
        })),
    }
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("watch response in time")
        .unwrap()
        .unwrap()
}

#[test]
fn many_watchers_share_one_stream() {
    let c = Cluster::start(1, &[]);
    let url = c.specs[0].client_url();
    runtime().block_on(async {
        let (tx, mut rx) = open_stream(&url).await;
        tx.send(create("k", "", 7, vec![])).await.unwrap();
        let r = next(&mut rx).await;
        assert!(r.created && r.watch_id == 7);
        // A client-chosen ID already in use is refused.
        tx.send(create("k", "", 7, vec![])).await.unwrap();
        let r = next(&mut rx).await;
        assert!(r.created && r.canceled && r.watch_id == -1, "{r:?}");
        // A server-chosen ID, and a delete-only watcher over a range.
        tx.send(create("k", "l", 0, vec![FilterType::Noput as i32])).await.unwrap();
        let r = next(&mut rx).await;
        assert!(r.created);
        let deletes_only = r.watch_id;
        assert_ne!(deletes_only, 7);

        let mut kv = connect(&url).await.unwrap();
        let rev = put(&mut kv, "k", "v1").await.unwrap();
        let r = next(&mut rx).await;
        assert_eq!((r.watch_id, r.events.len()), (7, 1));
        assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, rev);

        // Cancel 7; the delete still reaches the delete-only watcher.
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: 7,
            })),
        })
        .await
        .unwrap();
        let r = next(&mut rx).await;
        assert!(r.canceled && r.watch_id == 7);
        kv.delete_range(logbook_api::etcdserverpb::DeleteRangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let r = next(&mut rx).await;
        assert_eq!(r.watch_id, deletes_only);
        assert_eq!(r.events[0].r#type, logbook_api::mvccpb::event::EventType::Delete as i32);
    });
}

#[test]
fn watch_survives_leader_kill_without_gaps_or_duplicates() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let watched = (leader + 1) % 3;
    let writer_target = (leader + 2) % 3;
    let watch_url = c.specs[watched].client_url();
    let urls: Vec<String> = c.specs.iter().map(|s| s.client_url()).collect();

    let rt = runtime();
    let (tx, mut rx) = rt.block_on(open_stream(&watch_url));
    rt.block_on(async {
        tx.send(create("ev/", "ev0", 1, vec![])).await.unwrap();
        assert!(next(&mut rx).await.created);
    });

    // Write through a member that survives; kill the leader halfway.
    let mut acked: Vec<(String, i64)> = Vec::new();
    rt.block_on(async {
        let mut kv = connect(&urls[writer_target]).await.unwrap();
        for i in 0..200 {
            if i == 100 {
                c.kill(leader);
            }
            let key = format!("ev/{i:04}");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match put(&mut kv, &key, "x").await {
                    Ok(rev) => {
                        acked.push((key.clone(), rev));
                        break;
                    }
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("write {key} never succeeded: {e}"),
                }
            }
        }
    });

    // Every event, in revision order, once; the acknowledged writes all there.
    let last_rev = acked.last().unwrap().1;
    let mut seen: Vec<(String, i64)> = Vec::new();
    rt.block_on(async {
        while seen.last().map(|s| s.1) != Some(last_rev) {
            let r = next(&mut rx).await;
            for e in r.events {
                let kv = e.kv.unwrap();
                seen.push((String::from_utf8_lossy(&kv.key).into_owned(), kv.mod_revision));
            }
        }
    });
    for w in seen.windows(2) {
        assert!(w[0].1 < w[1].1, "events out of order or repeated: {w:?}");
    }
    for a in &acked {
        assert!(seen.contains(a), "acknowledged write {a:?} never reached the watcher");
    }
    // Retried writes may have landed twice (once before an error); every
    // event is still a key this test wrote.
    assert!(seen.iter().all(|(k, _)| k.starts_with("ev/")));
    drop(tx);
}

#[test]
fn rewatch_after_member_restart_misses_nothing() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(Duration::from_secs(10));
    let watched = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    let rt = runtime();
    let watch_url = c.specs[watched].client_url();
    let write_url = c.specs[writer].client_url();

    // First session: watch, see some events, then the member goes away.
    let mut seen: Vec<i64> = Vec::new();
    let mut written: Vec<i64> = Vec::new();
    rt.block_on(async {
        let (tx, mut rx) = open_stream(&watch_url).await;
        tx.send(create("rw/", "rw0", 0, vec![])).await.unwrap();
        assert!(next(&mut rx).await.created);
        let mut kv = connect(&write_url).await.unwrap();
        for i in 0..20 {
            written.push(put(&mut kv, &format!("rw/{i}"), "a").await.unwrap());
        }
        while seen.len() < 20 {
            for e in next(&mut rx).await.events {
                seen.push(e.kv.unwrap().mod_revision);
            }
        }
    });
    c.kill(watched);
    rt.block_on(async {
        let mut kv = connect(&write_url).await.unwrap();
        for i in 20..40 {
            written.push(put(&mut kv, &format!("rw/{i}"), "b").await.unwrap());
        }
    });
    c.spawn(watched);
    c.wait_ready(watched, Duration::from_secs(30));

    // Second session: resume at last + 1 on the restarted member.
    let resume = *seen.last().unwrap() + 1;
    rt.block_on(async {
        let (tx, mut rx) = open_stream(&watch_url).await;
        let mut req = create("rw/", "rw0", 0, vec![]);
        if let Some(watch_request::RequestUnion::CreateRequest(c)) = &mut req.request_union {
            c.start_revision = resume;
        }
        tx.send(req).await.unwrap();
        assert!(next(&mut rx).await.created);
        while seen.len() < 40 {
            for e in next(&mut rx).await.events {
                seen.push(e.kv.unwrap().mod_revision);
            }
        }
    });
    assert_eq!(seen, written, "the resumed watch missed or repeated events");
}
