//! TLS to deployed clusters: etcdctl's `--cacert`, `--cert` and `--key`,
//! given per system (`--logbook-cacert`, `--etcd-cert`, ...).
//!
//! The configuration is registered for the endpoints it belongs to
//! ([`register`]); every `https://` connection the generator opens, gRPC
//! ([`Connector`], ALPN `h2`) or a `/metrics` scrape ([`dial`], ALPN
//! `http/1.1`), finds it by the endpoint's `host:port`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::codegen::http;

/// Configurations by endpoint authority (`host:port`).
static REGISTRY: Mutex<Vec<(String, Arc<ClientConfig>)>> = Mutex::new(Vec::new());

/// A client configuration trusting `cacert`, presenting `cert` and `key`
/// when both are given (as etcdctl does with the same flags).
pub fn client_config(
    cacert: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(cacert)
        .with_context(|| format!("reading CA certificates from {}", cacert.display()))?;
    for ca in cas {
        let ca = ca.with_context(|| format!("parsing {}", cacert.display()))?;
        roots.add(ca).with_context(|| format!("adding a CA of {}", cacert.display()))?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("configuring TLS")?
            .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading the key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context("the client certificate")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("a client certificate needs both --*-cert and --*-key"),
    };
    Ok(Arc::new(config))
}

/// The authority (`host:port`) of an endpoint URL.
pub fn authority(url: &str) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!authority.is_empty(), "no host in endpoint {url:?}");
    if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        Ok(authority.to_owned())
    } else {
        Ok(format!("{authority}:2379"))
    }
}

/// Uses `config` for every connection to `endpoints`.
pub fn register(endpoints: &[String], config: Arc<ClientConfig>) -> Result<()> {
    let mut registry = REGISTRY.lock().expect("the TLS registry is never poisoned");
    for e in endpoints {
        let a = authority(e)?;
        registry.retain(|(b, _)| *b != a);
        registry.push((a, config.clone()));
    }
    Ok(())
}

/// The configuration registered for `authority`.
fn config_for(authority: &str) -> Result<Arc<ClientConfig>> {
    let registry = REGISTRY.lock().expect("the TLS registry is never poisoned");
    match registry.iter().find(|(a, _)| a == authority) {
        Some((_, c)) => Ok(c.clone()),
        None => bail!(
            "https://{authority} needs a CA: pass --logbook-cacert or --etcd-cacert (with --*-cert and --*-key for client certificates)"
        ),
    }
}

/// Opens a TLS connection to `authority` offering `alpn`.
pub async fn dial(authority: &str, alpn: &[u8]) -> Result<TlsStream<TcpStream>> {
    let mut config = (*config_for(authority)?).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let (host, _) = authority.rsplit_once(':').unwrap_or((authority, ""));
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
        .with_context(|| format!("bad host in {authority}"))?;
    let tcp = TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {authority}"))
}

/// tonic's connector for `https://` endpoints.
#[derive(Clone, Copy)]
pub struct Connector;

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1");
            let authority = format!("{host}:{}", uri.port_u16().unwrap_or(2379));
            dial(&authority, b"h2")
                .await
                .map(TokioIo::new)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(authority("https://10.0.0.1:2379").unwrap(), "10.0.0.1:2379");
        assert_eq!(authority("https://master-1/").unwrap(), "master-1:2379");
        assert_eq!(authority("127.0.0.1:12379").unwrap(), "127.0.0.1:12379");
        assert!(authority("https://").is_err());
    }

    #[test]
    fn an_endpoint_without_a_registered_ca_is_refused_with_the_flags_to_use() {
        let err = config_for("192.0.2.1:1").unwrap_err().to_string();
        assert!(err.contains("--logbook-cacert or --etcd-cacert"), "{err}");
    }
}
