//! The bare floor of a durable gRPC put on this machine: an etcd KV endpoint
//! that does nothing but make each put durable and answer.
//!
//! Puts are appended to one preallocated file by a writer thread that takes
//! whatever has queued, writes it with one `pwrite` and syncs it with one
//! `fdatasync` (group commit), then answers every put of the batch. No
//! replication, no index, no versions, one process: what any gRPC server on
//! this disk and these cores pays for a durable write, before it does any of
//! a database's work. `logbook bench` measures it in the same run as the
//! clusters, so their latencies and throughputs can be read against it.
//!
//! The server runs in the load generator's process, on its own runtime with
//! two workers (as a Logbook member's client port has), for the length of a
//! comparison. Its one gRPC method is etcd's `KV/Put`, what the ladder sends;
//! it serves no other (a call to one gets gRPC's answer for a method a
//! server does not have). The file is a ring: records that reach its end
//! continue at its start, since nothing reads them back.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use logbook_api::etcdserverpb::{PutRequest, PutResponse, ResponseHeader};
use tokio::sync::oneshot;
use tonic::server::{Grpc, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// Size of the ring file, written once before the first put.
const FILE_SIZE: u64 = 64 << 20;
/// At most this many puts share one sync.
const MAX_BATCH: usize = 4096;
/// The gRPC path of etcd's `KV/Put`.
const PUT_PATH: &str = "/etcdserverpb.KV/Put";

/// One queued put: its record and who waits for its revision.
type Pending = (Vec<u8>, oneshot::Sender<i64>);

/// A running bare put server; stopped (and its file removed) by [`stop`](Self::stop) or drop.
pub struct BareServer {
    addr: std::net::SocketAddr,
    path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl BareServer {
    /// Starts a server on 127.0.0.1 (a free port) with its file in `dir`.
    pub fn start(dir: &Path) -> Result<BareServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("bare-put.log");
        let file = crate::disk_probe::preallocate(&path, FILE_SIZE)?;
        let (tx, rx) = mpsc::channel::<Pending>();
        let writer = std::thread::Builder::new()
            .name("bare-writer".into())
            .spawn(move || write_loop(&file, &rx))
            .context("starting the bare server's writer")?;

        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("binding the bare server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bare-io")
            .enable_all()
            .build()
            .context("starting the bare server's runtime")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let put = BarePut { writer: tx };
        // Only the Put route: tonic's fallback answers any other path.
        let routes = tonic::service::Routes::default().into_axum_router().route(
            PUT_PATH,
            axum::routing::post(move |request: axum::extract::Request| {
                let put = put.clone();
                async move {
                    let mut grpc = Grpc::new(ProstCodec::<PutResponse, PutRequest>::default());
                    grpc.unary(put, request).await
                }
            }),
        );
        let routes = tonic::service::Routes::from(routes);
        let server = std::thread::Builder::new()
            .name("bare-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return eprintln!("bare put server: {e}"),
                    };
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                    let serve = tonic::transport::Server::builder()
                        .tcp_nodelay(true)
                        .add_routes(routes)
                        .serve_with_incoming(incoming);
                    tokio::select! {
                        r = serve => if let Err(e) = r { eprintln!("bare put server: {e}") },
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends the connections' tasks and with
                // them the service, whose queue closing ends the writer.
                drop(runtime);
            })
            .context("starting the bare server")?;
        Ok(BareServer {
            addr,
            path,
            shutdown: Some(shutdown),
            server: Some(server),
            writer: Some(writer),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving, waits for both threads and removes the file.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Takes batches off the queue until every sender is gone: one write and one
/// `fdatasync` per batch, then every put of it answered with its revision.
fn write_loop(file: &File, rx: &mpsc::Receiver<Pending>) {
    let mut offset = 0u64;
    let mut revision = 1i64;
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        buf.clear();
        for (record, _) in &batch {
            buf.extend_from_slice(record);
        }
        // A batch larger than the ring (never with bench values) is cut short:
        // the floor is the sync, not the bytes.
        let len = (buf.len() as u64).min(FILE_SIZE) as usize;
        if offset + len as u64 > FILE_SIZE {
            offset = 0;
        }
        let synced =
            file.write_all_at(&buf[..len], offset).and_then(|()| file.sync_data()).map(|()| {
                offset += len as u64;
            });
        for (_, reply) in batch.drain(..) {
            if synced.is_ok() {
                revision += 1;
                let _ = reply.send(revision);
            }
            // On a failed sync the reply is dropped: the put fails.
        }
        if let Err(e) = synced {
            eprintln!("bare put server: writing {}: {e}", file_name(file));
        }
    }
}

fn file_name(file: &File) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_or_else(|_| "its file".to_owned(), |p| p.display().to_string())
}

/// The Put method: queues the put's record and answers once it is synced.
#[derive(Clone)]
struct BarePut {
    writer: mpsc::Sender<Pending>,
}

impl UnaryService<PutRequest> for BarePut {
    type Response = PutResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<PutResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<PutRequest>) -> Self::Future {
        let writer = self.writer.clone();
        Box::pin(async move {
            let put = request.into_inner();
            let mut record = Vec::with_capacity(8 + put.key.len() + put.value.len());
            record.extend_from_slice(&(put.key.len() as u32).to_le_bytes());
            record.extend_from_slice(&(put.value.len() as u32).to_le_bytes());
            record.extend_from_slice(&put.key);
            record.extend_from_slice(&put.value);
            let (tx, rx) = oneshot::channel();
            writer
                .send((record, tx))
                .map_err(|_| Status::unavailable("the bare server is stopping"))?;
            let revision =
                rx.await.map_err(|_| Status::internal("the bare server's write failed"))?;
            Ok(Response::new(PutResponse {
                header: Some(ResponseHeader { revision, ..Default::default() }),
                prev_kv: None,
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Pool;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn puts_are_written_and_numbered_and_nothing_else_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let server = BareServer::start(dir.path()).unwrap();
        let path = dir.path().join("bare-put.log");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), FILE_SIZE);
        let pool = Pool::connect(&[server.endpoint()], 1).await.unwrap();
        let mut kv = pool.kv(0);
        let mut revisions = Vec::new();
        for i in 0..20u32 {
            let put = PutRequest {
                key: format!("bare-key-{i:02}").into(),
                value: format!("value-{i}").into(),
                ..Default::default()
            };
            let header = kv.put(put).await.unwrap().into_inner().header.unwrap();
            revisions.push(header.revision);
        }
        assert_eq!(revisions, (2..22).collect::<Vec<i64>>());
        // Concurrent puts share syncs but each gets its own revision.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..32u32 {
            let mut kv = pool.kv(0);
            tasks.spawn(async move {
                let put = PutRequest { key: format!("c{i}").into(), ..Default::default() };
                kv.put(put).await.unwrap().into_inner().header.unwrap().revision
            });
        }
        let mut concurrent = tasks.join_all().await;
        concurrent.sort_unstable();
        assert_eq!(concurrent, (22..54).collect::<Vec<i64>>());

        let data = std::fs::read(&path).unwrap();
        let find = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"bare-key-00value-0"), "the first put is not in the file");
        assert!(find(b"bare-key-19value-19"), "the last put is not in the file");

        // The server has no Range method: a client asking for one hears so.
        let err = kv
            .range(logbook_api::etcdserverpb::RangeRequest {
                key: bytes::Bytes::from_static(b"a"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");
        server.stop();
        assert!(!path.exists(), "stop leaves the file behind");
    }
}
