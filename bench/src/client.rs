//! Connections to an etcd v3 endpoint set: one tonic `Channel` (one HTTP/2
//! connection) per `--conns`, clients multiplexed over them round robin.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use logbook_api::coalesce::Coalesce;
use logbook_api::etcdserverpb::kv_client::KvClient;
use logbook_api::etcdserverpb::lease_client::LeaseClient;
use logbook_api::etcdserverpb::maintenance_client::MaintenanceClient;
use logbook_api::etcdserverpb::watch_client::WatchClient;
use tokio::net::TcpStream;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};

/// Large enough for a page of 500 objects of 8 KiB (the mixed workload's lists).
const MAX_MESSAGE: usize = 64 << 20;
/// No single request may hang a run: this bounds every unary call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A set of open connections.
#[derive(Clone, Debug)]
pub struct Pool {
    channels: Vec<Channel>,
}

/// `host:port` → `http://host:port`; URLs are kept as given.
pub fn endpoint_url(s: &str) -> String {
    if s.contains("://") { s.to_owned() } else { format!("http://{s}") }
}

impl Pool {
    /// Opens `conns` connections spread over `endpoints` (at least one each).
    pub async fn connect(endpoints: &[String], conns: usize) -> Result<Pool> {
        anyhow::ensure!(!endpoints.is_empty(), "no endpoints given");
        let conns = conns.max(1);
        let mut channels = Vec::with_capacity(conns);
        for i in 0..conns {
            let url = endpoint_url(&endpoints[i % endpoints.len()]);
            channels.push(connect_one(&url).await?);
        }
        Ok(Pool { channels })
    }

    /// A pool of one already open connection.
    pub fn from_channel(channel: Channel) -> Pool {
        Pool { channels: vec![channel] }
    }

    /// Number of connections.
    pub fn conns(&self) -> usize {
        self.channels.len()
    }

    /// The connection client number `client` uses.
    pub fn channel(&self, client: usize) -> Channel {
        self.channels[client % self.channels.len()].clone()
    }

    /// A KV client on client `client`'s connection.
    pub fn kv(&self, client: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(client)).max_decoding_message_size(MAX_MESSAGE)
    }

    /// A Watch client on client `client`'s connection.
    pub fn watch(&self, client: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(client)).max_decoding_message_size(MAX_MESSAGE)
    }

    /// A Lease client on client `client`'s connection.
    pub fn lease(&self, client: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(client))
    }

    /// A Maintenance client on client `client`'s connection.
    pub fn maintenance(&self, client: usize) -> MaintenanceClient<Channel> {
        MaintenanceClient::new(self.channel(client))
    }
}

/// Opens one HTTP/2 connection to `url`. Plain-TCP connections gather the
/// requests their clients send in the same turn into one write
/// ([`logbook_api::coalesce`]): the generator's own CPU per request is
/// CPU the measured servers do not get on a small machine.
pub async fn connect_one(url: &str) -> Result<Channel> {
    // TLS is done by our connector ([`crate::tls`]); tonic sees plain HTTP.
    let tls = url.starts_with("https://");
    let target =
        if tls { format!("http://{}", crate::tls::authority(url)?) } else { url.to_owned() };
    let ep = Endpoint::from_shared(target)
        .with_context(|| format!("bad endpoint {url:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .initial_connection_window_size(Some(16 << 20))
        .initial_stream_window_size(Some(4 << 20))
        .http2_keep_alive_interval(Duration::from_secs(30));
    if tls {
        return ep
            .connect_with_connector(crate::tls::Connector)
            .await
            .with_context(|| format!("cannot connect to {url}"));
    }
    if ep.uri().scheme_str() == Some("http") {
        return ep
            .connect_with_connector(CoalescingConnector)
            .await
            .with_context(|| format!("cannot connect to {url}"));
    }
    ep.connect().await.with_context(|| format!("cannot connect to {url}"))
}

/// Dials plain TCP (no delay) and wraps the stream in a [`Coalesce`].
#[derive(Clone, Copy)]
struct CoalescingConnector;

impl tower_service::Service<http::Uri> for CoalescingConnector {
    type Response = TokioIo<Coalesce<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").trim_matches(|c| c == '[' || c == ']');
            let port = uri.port_u16().unwrap_or(2379);
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(Coalesce::new(stream)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
    }
}
