//! A tonic round trip on 127.0.0.1: a tiny KV server answering Range, driven
//! by the generated client, proves the generated service paths and codecs
//! agree end to end (the path is `/etcdserverpb.KV/Range`, as etcd's).

use bytes::Bytes;
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::kv_server::{Kv, KvServer};
use logbook_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, ResponseHeader, TxnRequest,
    TxnResponse,
};
use logbook_api::mvccpb::KeyValue;
use tonic::{Request, Response, Status};

/// Answers Range with one key-value that echoes the requested key, and
/// refuses everything else the way etcd refuses an empty key.
struct EchoKv;

#[tonic::async_trait]
impl Kv for EchoKv {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        let kv = KeyValue {
            key: req.key.clone(),
            value: Bytes::from(format!("value-of-{}", String::from_utf8_lossy(&req.key))),
            create_revision: 5,
            mod_revision: 6,
            version: 2,
            lease: 0,
        };
        Ok(Response::new(RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 11,
                member_id: 22,
                revision: 6,
                raft_term: 3,
            }),
            kvs: vec![kv],
            more: false,
            count: 1,
        }))
    }
    type RangeStreamStream = std::pin::Pin<
        Box<
            dyn tonic::codegen::tokio_stream::Stream<Item = Result<RangeStreamResponse, Status>>
                + Send,
        >,
    >;
    async fn range_stream(
        &self,
        _: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented("RangeStream"))
    }
    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Err(Status::invalid_argument("etcdserver: key is not provided"))
    }
    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::invalid_argument("etcdserver: key is not provided"))
    }
    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Err(Status::invalid_argument("etcdserver: key is not provided"))
    }
    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Err(Status::invalid_argument("etcdserver: key is not provided"))
    }
}

#[tokio::test]
async fn range_round_trip_over_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KvServer::new(EchoKv))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let mut client = KvClient::connect(format!("http://{addr}")).await.unwrap();
    let resp = client
        .range(RangeRequest { key: Bytes::from_static(b"/registry/pods/a"), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.count, 1);
    assert_eq!(resp.header.as_ref().unwrap().member_id, 22);
    assert_eq!(&resp.kvs[0].key[..], b"/registry/pods/a");
    assert_eq!(&resp.kvs[0].value[..], b"value-of-/registry/pods/a");
    assert_eq!((resp.kvs[0].create_revision, resp.kvs[0].mod_revision), (5, 6));

    let err = client.put(PutRequest::default()).await.expect_err("the echo server refuses puts");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: key is not provided");

    server.abort();
}
