//! `lease-keepalive`: each client holds one lease and a LeaseKeepAlive
//! stream; a request is one keep-alive sent and its answer received.

use std::sync::Mutex;

use anyhow::{Context, Result};
use futures::future::try_join_all;
use logbook_api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::client::Pool;
use crate::driver::Workload;

/// Leases granted for a run's keep-alives.
const TTL_SECS: i64 = 60;

type Stream = (i64, mpsc::Sender<LeaseKeepAliveRequest>, Streaming<LeaseKeepAliveResponse>);

/// One lease and one keep-alive stream per client.
pub struct KeepAlive {
    pool: Pool,
    streams: Vec<Mutex<Option<Stream>>>,
    ids: Vec<i64>,
}

impl KeepAlive {
    /// Grants `clients` leases and opens their streams.
    pub async fn setup(pool: Pool, clients: usize) -> Result<Self> {
        let opened = try_join_all((0..clients.max(1)).map(|c| open(&pool, c))).await?;
        let ids = opened.iter().map(|s| s.0).collect();
        let streams = opened.into_iter().map(|s| Mutex::new(Some(s))).collect();
        Ok(KeepAlive { pool, streams, ids })
    }

    /// Revokes every lease of the run.
    pub async fn finish(&self) -> Result<()> {
        let mut lease = self.pool.lease(0);
        for &id in &self.ids {
            lease.lease_revoke(LeaseRevokeRequest { id }).await.context("revoking a lease")?;
        }
        Ok(())
    }
}

async fn open(pool: &Pool, client: usize) -> Result<Stream> {
    let mut lease = pool.lease(client);
    let id = lease
        .lease_grant(LeaseGrantRequest { ttl: TTL_SECS, id: 0 })
        .await
        .context("granting a lease")?;
    let id = id.into_inner().id;
    let (tx, rx) = mpsc::channel(4);
    // The server sends its headers with its first answer: ask first.
    tx.send(LeaseKeepAliveRequest { id }).await.context("keep-alive queue closed")?;
    let mut stream = lease
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
        .context("opening keep-alive")?
        .into_inner();
    stream.message().await.context("first keep-alive")?.context("keep-alive stream closed")?;
    Ok((id, tx, stream))
}

impl Workload for KeepAlive {
    type State = Stream;

    fn classes(&self) -> Vec<&'static str> {
        vec!["keepalive"]
    }

    fn state(&self, client: usize) -> Stream {
        self.streams[client].lock().expect("streams lock").take().expect("one state per client")
    }

    async fn call(&self, (id, tx, stream): &mut Stream, _seq: u64) -> Result<usize, tonic::Status> {
        tx.send(LeaseKeepAliveRequest { id: *id })
            .await
            .map_err(|_| tonic::Status::unavailable("keep-alive stream closed"))?;
        match stream.message().await? {
            Some(r) if r.ttl > 0 => Ok(0),
            Some(_) => Err(tonic::Status::not_found("etcdserver: requested lease not found")),
            None => Err(tonic::Status::unavailable("keep-alive stream closed")),
        }
    }
}
