//! etcd's require-leader calls (`hasleader: true` metadata, set by
//! clientv3's `WithRequireLeader` and so by kube-apiserver on its watches):
//! refused with `etcdserver: no leader` while the member knows no leader, and
//! a running watch ends with that error once the leader has been gone for
//! three election timeouts; calls without the metadata are served as before.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::watch_client::WatchClient;
use logbook_api::etcdserverpb::watch_request::RequestUnion;
use logbook_api::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

fn require_leader<T>(message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert("hasleader", "true".parse().unwrap());
    req
}

#[test]
fn require_leader_calls_end_when_the_leader_is_lost() {
    let mut cluster = Cluster::start(3, &[]);
    let survivor = cluster.wait_leader(Duration::from_secs(30));
    let url = cluster.specs[survivor].client_url();
    let rt = common::runtime();
    let (_requests, mut stream) = rt.block_on(async {
        let (tx, rx) = mpsc::channel(4);
        let create = WatchCreateRequest { key: "k".into(), ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
            .await
            .unwrap();
        let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap();
        let mut watch = WatchClient::new(channel.connect().await.unwrap());
        let mut stream =
            watch.watch(require_leader(ReceiverStream::new(rx))).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().unwrap().created);
        (tx, stream)
    });

    // The other two go: the survivor loses its leader (it was the leader,
    // and steps down without a quorum).
    for i in 0..3 {
        if i != survivor {
            cluster.kill(i);
        }
    }
    let started = Instant::now();
    let err = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => panic!("the watch ended without an error"),
                Ok(Err(e)) => return e,
                Err(_) => panic!("the watch went on without a leader for 30 s"),
            }
        }
    });
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "etcdserver: no leader");
    // Three election timeouts of 1 s, after the leader stepped down.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended too early: {:?}",
        started.elapsed()
    );

    rt.block_on(async {
        let mut kv = KvClient::connect(url.clone()).await.unwrap();
        let read = RangeRequest { key: "k".into(), serializable: true, ..Default::default() };
        let refused = kv.range(require_leader(read.clone())).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(refused.message(), "etcdserver: no leader");
        // Without the metadata a serializable read is still served.
        kv.range(read).await.unwrap();
        // A new require-leader watch is refused at once.
        let (tx, rx) = mpsc::channel(1);
        drop(tx);
        let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap();
        let mut watch = WatchClient::new(channel.connect().await.unwrap());
        let refused = watch.watch(require_leader(ReceiverStream::new(rx))).await.unwrap_err();
        assert_eq!(refused.message(), "etcdserver: no leader");
    });
}
