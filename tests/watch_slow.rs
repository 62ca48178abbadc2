//! A slow watcher (a client that opens a watch and stops reading it) must
//! not hold back writes or other watchers, and must still get every event,
//! in order, once it reads again: the member moves it to catch-up.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, connect, runtime};
use logbook_api::etcdserverpb::watch_client::WatchClient;
use logbook_api::etcdserverpb::{
    PutRequest, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// Puts made while the slow watcher does not read.
const PUTS: usize = 3000;
/// Value size: `PUTS` events are about 3 MB, far more than the member
/// queues for one stream (1024 responses) plus the HTTP/2 windows (64 KiB
/// each way, set below), so the member cannot just buffer them all.
const VALUE: usize = 1024;

/// A watch stream on its own connection with 64 KiB HTTP/2 windows, and its
/// `created` response already read.
async fn open_watch(
    url: &str,
    key: &str,
    range_end: &str,
) -> (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>) {
    let channel: Channel = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: key.to_string().into(),
        range_end: range_end.to_string().into(),
        prev_kv: true,
        ..Default::default()
    };
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::new(channel)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = next(&mut stream).await;
    assert!(created.created && !created.canceled, "{created:?}");
    (tx, stream)
}

async fn next(stream: &mut Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a watch response within 20 s")
        .expect("the watch stream failed")
        .expect("the watch stream ended")
}

/// Reads `n` events and checks they are puts number `first..first + n` at
/// consecutive revisions from `rev`. Put `i` writes `value(i)` to key
/// `/s/{i % PUTS}`, so puts from `PUTS` on overwrite and carry a prev_kv.
async fn expect_events(
    stream: &mut Streaming<WatchResponse>,
    first: usize,
    n: usize,
    rev: i64,
    who: &str,
) {
    let mut seen = 0;
    while seen < n {
        let resp = next(stream).await;
        assert!(!resp.canceled, "{who} was cancelled: {resp:?}");
        for e in resp.events {
            let kv = e.kv.unwrap();
            let i = first + seen;
            assert_eq!(
                (kv.key.as_ref(), kv.mod_revision),
                (key(i).as_bytes(), rev + seen as i64),
                "{who}: event {seen} out of order, missing or repeated"
            );
            assert_eq!(kv.value, value(i), "{who}: value of event {seen}");
            let prev = e.prev_kv.map(|p| p.value);
            assert_eq!(prev, i.checked_sub(PUTS).map(value), "{who}: prev_kv of event {seen}");
            seen += 1;
        }
    }
    assert_eq!(seen, n, "{who}: more events than puts");
}

fn key(i: usize) -> String {
    format!("/s/{:05}", i % PUTS)
}

fn put(i: usize) -> PutRequest {
    PutRequest { key: key(i).into_bytes().into(), value: value(i), ..Default::default() }
}

fn value(i: usize) -> Bytes {
    let mut v = format!("{i:05}").into_bytes();
    v.resize(VALUE, b'.');
    v.into()
}

#[test]
fn slow_watcher_holds_back_neither_writes_nor_other_watchers() {
    let c = Cluster::start(1, &[]);
    let url = c.specs[0].client_url();
    runtime().block_on(async {
        let mut kv = connect(&url).await.unwrap();
        // Both watchers are created before the first put, so both must see
        // every one of them.
        let (_slow_requests, mut slow) = open_watch(&url, "/s/", "/s0").await;
        let (_fast_requests, mut fast) = open_watch(&url, "/s/", "/s0").await;

        // The fast watcher is read as the puts go on; the slow one is not
        // touched until every put has been acknowledged.
        let fast_reader = tokio::spawn(async move {
            let mut rev = None;
            let mut seen = 0;
            while seen < PUTS {
                let resp = next(&mut fast).await;
                assert!(!resp.canceled, "fast watcher cancelled: {resp:?}");
                for e in resp.events {
                    let kv = e.kv.unwrap();
                    let first = *rev.get_or_insert(kv.mod_revision);
                    assert_eq!(kv.mod_revision, first + seen as i64, "fast watcher: gap");
                    assert_eq!(kv.key, key(seen).as_bytes());
                    seen += 1;
                }
            }
            (fast, rev.unwrap())
        });
        let mut first_rev = None;
        for i in 0..PUTS {
            // The harness's client gives each put 5 s.
            let r = kv
                .put(put(i))
                .await
                .unwrap_or_else(|e| panic!("put {i} while a watcher stalls: {e}"));
            first_rev.get_or_insert(r.into_inner().header.unwrap().revision);
        }
        let first_rev = first_rev.unwrap();

        // Every put is acknowledged, the slow stream still unread: the fast
        // watcher has (or gets) all of them without the slow one moving.
        let (mut fast, fast_first) = tokio::time::timeout(Duration::from_secs(60), fast_reader)
            .await
            .expect("the fast watcher got every event within 60 s")
            .unwrap();
        assert_eq!(fast_first, first_rev);

        // Now the slow client reads: every event, in order, none twice.
        expect_events(&mut slow, 0, PUTS, first_rev, "slow watcher").await;

        // Caught up, it is live again: later puts (overwrites, so with
        // previous values) reach both watchers.
        for i in PUTS..PUTS + 20 {
            kv.put(put(i)).await.unwrap();
        }
        let rev = first_rev + PUTS as i64;
        expect_events(&mut slow, PUTS, 20, rev, "slow watcher, live again").await;
        expect_events(&mut fast, PUTS, 20, rev, "fast watcher, later puts").await;
    });
}
