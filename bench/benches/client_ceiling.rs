//! The load generator's own ceiling: puts per second against a null KV
//! server that answers at once, in this process on 127.0.0.1.
//!
//! Client and server share the machine's cores here, so the figure is a lower
//! bound of what the client alone can push; it must stay well above what a
//! real cluster on the same machine sustains, or the client would be the
//! bottleneck of `logbook bench`.
//!
//! `cargo bench -p logbook-bench --bench client_ceiling`

use std::sync::Arc;
use std::time::Duration;

use logbook_api::etcdserverpb::kv_server::{Kv, KvServer};
use logbook_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use logbook_bench::client::Pool;
use logbook_bench::driver::{Plan, drive};
use logbook_bench::keys::{KeyGen, Rng, random_value};
use logbook_bench::procstat;
use logbook_bench::workload::put::Put;
use tonic::{Request, Response, Status};

struct Null;

#[tonic::async_trait]
impl Kv for Null {
    async fn range(&self, _: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(RangeResponse::default()))
    }
    type RangeStreamStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;
    async fn range_stream(
        &self,
        _: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented("RangeStream"))
    }
    async fn put(&self, _: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(PutResponse::default()))
    }
    async fn delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Ok(Response::new(DeleteRangeResponse::default()))
    }
    async fn txn(&self, _: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Ok(Response::new(TxnResponse::default()))
    }
    async fn compact(
        &self,
        _: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(CompactionResponse::default()))
    }
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(KvServer::new(Null))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let value = random_value(256, &mut Rng::new(1));
        println!(
            "{:>8} {:>6} {:>10} {:>8} {:>8} {:>14}",
            "clients", "conns", "puts/s", "p50 ms", "p99 ms", "CPU µs/put"
        );
        let me = [std::process::id()];
        for (clients, conns) in [(1, 1), (64, 2), (256, 4), (1024, 4)] {
            let pool = Pool::connect(&[format!("http://{addr}")], conns).await?;
            let w = Arc::new(Put::new(
                pool,
                KeyGen::new("/ceiling/", 16, 100_000, false),
                value.clone(),
            ));
            let plan = Plan {
                clients,
                total: Some(300_000),
                duration: Some(Duration::from_secs(5)),
                rate: None,
                progress: false,
                label: String::new(),
            };
            let before = procstat::sample(&me);
            let out = drive(w, &plan).await;
            let usage = procstat::usage(&before, &procstat::sample(&me));
            let s = out.total();
            anyhow::ensure!(out.error_count() == 0, "errors: {:?}", out.errors);
            // CPU of client and server together: the client's share is less.
            let cpu_us = usage.cpu_cores * s.elapsed_s * 1e6 / s.count.max(1) as f64;
            println!(
                "{clients:>8} {conns:>6} {:>10.0} {:>8.3} {:>8.3} {cpu_us:>14.1}",
                s.throughput, s.latency_ms.p50, s.latency_ms.p99
            );
        }
        server.abort();
        Ok(())
    })
}
