//! TLS on the client and peer ports with etcd's flags, judged by the real
//! etcdctl and an HTTPS client: certificates made by the test (rcgen), a CA
//! and an unrelated second CA, client-cert-auth refusing strangers at the
//! handshake, a 3-member cluster over peer TLS, and certificates reloaded
//! without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{HttpResponse, etcdctl, free_port, json, runtime};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The test's certificates, written as PEM files into one directory:
/// `ca.crt`; `server.crt/.key` (127.0.0.1 and localhost, server and client
/// use, as kubeadm issues etcd's); `client.crt/.key` (CN `alice`); and from
/// an unrelated CA, `other-ca.crt`, `other-client.crt/.key` and
/// `other-server.crt/.key`.
struct Pki {
    dir: tempfile::TempDir,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        let hosts = ["127.0.0.1", "localhost"];
        let (ca_pem, ca) = new_ca("logbook test ca");
        write("ca.crt", &ca_pem);
        let (c, k) = leaf(&ca, "logbook-server", &hosts, vec![ServerAuth, ClientAuth]);
        write("server.crt", &c);
        write("server.key", &k);
        let (c, k) = leaf(&ca, "alice", &[], vec![ClientAuth]);
        write("client.crt", &c);
        write("client.key", &k);
        let (other_pem, other) = new_ca("unrelated ca");
        write("other-ca.crt", &other_pem);
        let (c, k) = leaf(&other, "mallory", &[], vec![ClientAuth]);
        write("other-client.crt", &c);
        write("other-client.key", &k);
        let (c, k) = leaf(&other, "logbook-server", &hosts, vec![ServerAuth, ClientAuth]);
        write("other-server.crt", &c);
        write("other-server.key", &k);
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// `logbook serve` processes with TLS flags, killed when dropped.
struct TlsCluster {
    dir: tempfile::TempDir,
    procs: Vec<Option<Child>>,
    logs: Vec<PathBuf>,
    client_urls: Vec<String>,
    peer_addrs: Vec<String>,
}

impl TlsCluster {
    /// Starts `n` members. `client_scheme`/`peer_scheme` are "http" or
    /// "https"; `args` go to every member (the TLS flags).
    fn start(n: usize, client_scheme: &str, peer_scheme: &str, args: &[String]) -> TlsCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let peer_url = |i: usize| format!("{peer_scheme}://127.0.0.1:{}", ports[i].1);
        let initial =
            (0..n).map(|i| format!("m{}={}", i + 1, peer_url(i))).collect::<Vec<_>>().join(",");
        let mut c = TlsCluster {
            procs: Vec::new(),
            logs: Vec::new(),
            client_urls: Vec::new(),
            peer_addrs: ports.iter().map(|(_, p)| format!("127.0.0.1:{p}")).collect(),
            dir,
        };
        for (i, (client, _)) in ports.iter().enumerate() {
            let client_url = format!("{client_scheme}://127.0.0.1:{client}");
            let log_path = c.dir.path().join(format!("m{}.log", i + 1));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_logbook"))
                .arg("serve")
                .args(["--name", &format!("m{}", i + 1)])
                .arg("--data-dir")
                .arg(c.dir.path().join(format!("m{}.logbook", i + 1)))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i)])
                .args(["--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-token", "tls-test"])
                .args(args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawning logbook serve");
            c.procs.push(Some(child));
            c.logs.push(log_path);
            c.client_urls.push(client_url);
        }
        c
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.logs[i]).unwrap_or_default()
    }

    /// Waits (bounded) until etcdctl with `tls` gets a healthy answer from
    /// member `i` (a linearizable read: there is a leader).
    fn wait_healthy(&self, i: usize, tls: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = ctl(&self.client_urls[i], tls, &["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} not healthy within 30s: {}\nlog:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// etcdctl against `url` with TLS flags `tls`, bounded by its own timeouts.
/// A plain URL is passed as `host:port`, as the other tests do: etcdctl
/// 3.4's `endpoint status` sends an `http://` endpoint verbatim as the
/// HTTP/2 `:authority`, which hyper refuses as malformed.
fn ctl(url: &str, tls: &[String], args: &[&str]) -> Output {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.push("--dial-timeout=3s");
    all.extend_from_slice(args);
    etcdctl(url.trim_start_matches("http://"), &all, None)
}

fn ctl_ok(url: &str, tls: &[String], args: &[&str]) -> String {
    let out = ctl(url, tls, args);
    assert!(
        out.status.success(),
        "etcdctl {tls:?} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// One HTTPS/1.1 request with a fresh connection, trusting only `ca` and
/// presenting `client` (cert, key) if given. Errors (a refused handshake)
/// are returned, not panicked on.
fn https(
    url: &str,
    ca: &str,
    client: Option<(&str, &str)>,
    method: &str,
    body: &str,
) -> anyhow::Result<HttpResponse> {
    use http_body_util::BodyExt as _;
    let uri: hyper::Uri = url.parse()?;
    let host = uri.host().unwrap().to_string();
    let addr = format!("{host}:{}", uri.port_u16().unwrap());
    let mut config = client_config(ca, client)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let rt = runtime();
    rt.block_on(async {
        let work = async {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let name = ServerName::try_from(host.clone())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let req = hyper::Request::builder()
                .method(method)
                .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
                .header("host", &addr)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_string())
                .unwrap_or_default();
            let headers = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(HttpResponse {
                status,
                headers,
                content_type,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .unwrap_or_else(|_| anyhow::bail!("{method} {url}: no answer within 20s"))
    })
}

fn client_tls_flags(pki: &Pki, client_cert_auth: bool) -> Vec<String> {
    let mut f =
        strings(&["--cert-file", &pki.path("server.crt"), "--key-file", &pki.path("server.key")]);
    if client_cert_auth {
        f.extend(strings(&["--trusted-ca-file", &pki.path("ca.crt"), "--client-cert-auth=true"]));
    }
    f
}

#[test]
fn etcdctl_works_over_tls_with_client_certificates() {
    let pki = Pki::new();
    let c = TlsCluster::start(1, "https", "http", &client_tls_flags(&pki, true));
    let url = &c.client_urls[0];
    let alice = strings(&[
        &format!("--cacert={}", pki.path("ca.crt")),
        &format!("--cert={}", pki.path("client.crt")),
        &format!("--key={}", pki.path("client.key")),
    ]);
    c.wait_healthy(0, &alice);
    assert!(c.log(0).contains("serving client traffic securely"), "{}", c.log(0));

    ctl_ok(url, &alice, &["put", "/registry/pods/a", "1"]);
    ctl_ok(url, &alice, &["put", "/registry/secrets/b", "2"]);
    let keys = ctl_ok(url, &alice, &["get", "/", "--prefix", "--keys-only"]);
    assert_eq!(
        keys.split_whitespace().collect::<Vec<_>>(),
        ["/registry/pods/a", "/registry/secrets/b"],
        "{keys}"
    );
    // The issue's command word for word: the server's own certificate as the
    // client's, as operators run it on an etcd host.
    let as_server = strings(&[
        &format!("--cacert={}", pki.path("ca.crt")),
        &format!("--cert={}", pki.path("server.crt")),
        &format!("--key={}", pki.path("server.key")),
    ]);
    let keys = ctl_ok(url, &as_server, &["get", "/", "--prefix", "--keys-only"]);
    assert!(keys.contains("/registry/secrets/b"), "{keys}");
    // Watch, lease and maintenance calls go over the same TLS connection.
    let status = json(&ctl_ok(url, &alice, &["endpoint", "status", "-w", "json"]));
    assert!(status[0]["Status"]["header"]["revision"].as_i64().unwrap() >= 3, "{status}");

    // No client certificate: refused at the handshake, nothing served.
    let anonymous = strings(&[&format!("--cacert={}", pki.path("ca.crt"))]);
    let out = ctl(url, &anonymous, &["get", "/", "--prefix", "--keys-only"]);
    assert!(!out.status.success(), "a client without a certificate was served");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    // A certificate from an unrelated CA: refused too.
    let mallory = strings(&[
        &format!("--cacert={}", pki.path("ca.crt")),
        &format!("--cert={}", pki.path("other-client.crt")),
        &format!("--key={}", pki.path("other-client.key")),
    ]);
    let out = ctl(url, &mallory, &["put", "/registry/pods/x", "evil"]);
    assert!(!out.status.success(), "a client with another CA's certificate was served");
    // Plain HTTP on the https port gets nowhere.
    let out =
        etcdctl(&url.replace("https://", "http://"), &["--dial-timeout=3s", "get", "x"], None);
    assert!(!out.status.success());
    // The refusals happened in the handshake, and the member is still fine.
    assert!(c.log(0).contains("rejected connection on client endpoint"), "{}", c.log(0));
    let keys = ctl_ok(url, &alice, &["get", "/", "--prefix", "--keys-only"]);
    assert!(!keys.contains("/registry/pods/x"), "{keys}");

    // HTTP endpoints over TLS: /health, /metrics and the JSON gateway.
    let ca = pki.path("ca.crt");
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let health = https(&format!("{url}/health"), &ca, Some((&cert, &key)), "GET", "").unwrap();
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["health"], "true", "{health:?}");
    let metrics = https(&format!("{url}/metrics"), &ca, Some((&cert, &key)), "GET", "").unwrap();
    assert!(metrics.body.contains("etcd_server_has_leader 1"), "{}", metrics.body);
    let range = https(
        &format!("{url}/v3/kv/range"),
        &ca,
        Some((&cert, &key)),
        "POST",
        r#"{"key":"L3JlZ2lzdHJ5L3BvZHMvYQ=="}"#,
    )
    .unwrap();
    assert_eq!(range.json()["kvs"][0]["value"], "MQ==", "{range:?}");
    // ... and not without a certificate.
    assert!(https(&format!("{url}/health"), &ca, None, "GET", "").is_err());
    let other = (pki.path("other-client.crt"), pki.path("other-client.key"));
    assert!(https(&format!("{url}/health"), &ca, Some((&other.0, &other.1)), "GET", "").is_err());
}

#[test]
fn tls_without_client_cert_auth_serves_any_client_that_trusts_the_server() {
    let pki = Pki::new();
    let c = TlsCluster::start(1, "https", "http", &client_tls_flags(&pki, false));
    let url = &c.client_urls[0];
    let trusting = strings(&[&format!("--cacert={}", pki.path("ca.crt"))]);
    c.wait_healthy(0, &trusting);
    ctl_ok(url, &trusting, &["put", "k", "v"]);
    assert!(ctl_ok(url, &trusting, &["get", "k"]).contains('v'));
    // A client that does not trust the server's CA does not talk to it.
    let distrusting = strings(&[&format!("--cacert={}", pki.path("other-ca.crt"))]);
    assert!(!ctl(url, &distrusting, &["get", "k"]).status.success());
    let health = https(&format!("{url}/health"), &pki.path("ca.crt"), None, "GET", "").unwrap();
    assert_eq!(health.status, 200, "{health:?}");
}

#[test]
fn three_members_elect_and_replicate_over_peer_tls() {
    let pki = Pki::new();
    let args = strings(&[
        "--peer-cert-file",
        &pki.path("server.crt"),
        "--peer-key-file",
        &pki.path("server.key"),
        "--peer-trusted-ca-file",
        &pki.path("ca.crt"),
        "--peer-client-cert-auth",
    ]);
    let c = TlsCluster::start(3, "http", "https", &args);
    for i in 0..3 {
        c.wait_healthy(i, &[]);
    }
    assert!(c.log(0).contains("serving peer traffic securely"), "{}", c.log(0));
    // One leader, as every member sees it.
    let leaders: Vec<u64> = (0..3)
        .map(|i| {
            let status =
                json(&ctl_ok(&c.client_urls[i], &[], &["endpoint", "status", "-w", "json"]));
            status[0]["Status"]["leader"].as_u64().unwrap()
        })
        .collect();
    assert!(leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]), "{leaders:?}");
    // A write through one member is on every member (serializable reads:
    // each answers from its own copy).
    ctl_ok(&c.client_urls[1], &[], &["put", "replicated", "over-tls"]);
    for i in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = ctl_ok(&c.client_urls[i], &[], &["get", "replicated", "--consistency=s"]);
            if got.contains("over-tls") {
                break;
            }
            assert!(Instant::now() < deadline, "member {i} never got the write: {got}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The peer port talks to a member's certificate, and refuses a client
    // with none or with one another CA signed.
    let peer = &c.peer_addrs[0];
    let ca = pki.path("ca.crt");
    let member = (pki.path("server.crt"), pki.path("server.key"));
    let other = (pki.path("other-client.crt"), pki.path("other-client.key"));
    assert!(tls_accepts(peer, &ca, Some((&member.0, &member.1))));
    assert!(!tls_accepts(peer, &ca, None));
    assert!(!tls_accepts(peer, &ca, Some((&other.0, &other.1))));
}

/// Whether a TLS server at `addr` (offering h2) accepts this client: the
/// handshake completes and the server then speaks (its HTTP/2 SETTINGS)
/// rather than closing with an alert. Under TLS 1.3 a rejected client
/// certificate only shows on that first read.
fn tls_accepts(addr: &str, ca: &str, client: Option<(&str, &str)>) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut config = client_config(ca, client).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    runtime().block_on(async {
        let work = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from("127.0.0.1")?;
            let mut tls =
                tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await?;
            let mut buf = [0u8; 64];
            let n = tls.read(&mut buf).await?;
            anyhow::Ok(n > 0)
        };
        matches!(tokio::time::timeout(Duration::from_secs(10), work).await, Ok(Ok(true)))
    })
}

/// A rustls client trusting only `ca`, presenting `client` if given.
fn client_config(ca: &str, client: Option<(&str, &str)>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    Ok(match client {
        Some((cert, key)) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(key)?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// Replaces `dir/name.crt|key` with `dir/from.crt|key` the way a renewal
/// does: write a new file beside it and rename it over the old one.
fn replace_pair(dir: &Path, name: &str, from: &str) {
    for ext in ["key", "crt"] {
        let tmp = dir.join(format!("{name}.{ext}.new"));
        std::fs::copy(dir.join(format!("{from}.{ext}")), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.{ext}"))).unwrap();
    }
}

#[test]
fn a_renewed_server_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    // The member's own copy of its certificate, which the renewal replaces.
    let dir = pki.dir.path();
    std::fs::copy(dir.join("server.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("server.key"), dir.join("live.key")).unwrap();
    let args =
        strings(&["--cert-file", &pki.path("live.crt"), "--key-file", &pki.path("live.key")]);
    let c = TlsCluster::start(1, "https", "http", &args);
    let url = &c.client_urls[0];
    let old_ca = strings(&[&format!("--cacert={}", pki.path("ca.crt"))]);
    let new_ca = strings(&[&format!("--cacert={}", pki.path("other-ca.crt"))]);
    c.wait_healthy(0, &old_ca);
    ctl_ok(url, &old_ca, &["put", "k", "before"]);

    // Renew with a certificate from the other CA: new connections get it.
    replace_pair(dir, "live", "other-server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ctl(url, &new_ca, &["get", "k"]).status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served\n{}",
            c.log(0)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(ctl_ok(url, &new_ca, &["put", "k", "after"]).contains("OK"));
    // Clients still trusting only the old CA no longer accept the server.
    assert!(!ctl(url, &old_ca, &["get", "k"]).status.success());
    assert!(c.log(0).contains("reloaded client TLS certificates"), "{}", c.log(0));

    // A broken renewal (a key that does not match) keeps the working pair.
    std::fs::write(dir.join("live.key"), std::fs::read(dir.join("server.key")).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ctl_ok(url, &new_ca, &["get", "k"]).contains("after"));
    assert!(c.log(0).contains("do not load; keeping the previous ones"), "{}", c.log(0));
}

/// With `--client-cert-auth` and auth enabled, a verified certificate's
/// common name is the user when no token is sent (as etcd does): alice's
/// certificate (CN `alice`) gets alice's permissions and nothing more; a
/// token still wins over the certificate; and the JSON gateway refuses a
/// certificate with a CN rather than take it for a user.
#[test]
fn the_certificate_common_name_is_the_user_when_auth_is_on() {
    let pki = Pki::new();
    let c = TlsCluster::start(1, "https", "http", &client_tls_flags(&pki, true));
    let url = &c.client_urls[0];
    let alice = strings(&[
        &format!("--cacert={}", pki.path("ca.crt")),
        &format!("--cert={}", pki.path("client.crt")),
        &format!("--key={}", pki.path("client.key")),
    ]);
    c.wait_healthy(0, &alice);
    ctl_ok(url, &alice, &["user", "add", "root:rootpw"]);
    ctl_ok(url, &alice, &["user", "add", "alice", "--no-password"]);
    ctl_ok(url, &alice, &["role", "add", "pods"]);
    ctl_ok(
        url,
        &alice,
        &["role", "grant-permission", "--prefix=true", "pods", "readwrite", "/registry/pods/"],
    );
    ctl_ok(url, &alice, &["user", "grant-role", "alice", "pods"]);
    ctl_ok(url, &alice, &["put", "/registry/secrets/s", "1"]);
    assert!(ctl_ok(url, &alice, &["auth", "enable"]).contains("Authentication Enabled"));

    // No token: the certificate's CN is the user.
    ctl_ok(url, &alice, &["put", "/registry/pods/a", "1"]);
    assert_eq!(ctl_ok(url, &alice, &["get", "/registry/pods/a", "--print-value-only"]).trim(), "1");
    let denied: [&[&str]; 3] =
        [&["get", "/registry/secrets/s"], &["put", "/registry/secrets/s", "2"], &["user", "list"]];
    for args in denied {
        let out = ctl(url, &alice, args);
        assert!(!out.status.success(), "{args:?} was allowed");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("etcdserver: permission denied"), "{args:?}: {err}");
    }
    // A token wins over the certificate: root may write anywhere.
    let mut root = alice.clone();
    root.push("--user=root:rootpw".into());
    ctl_ok(url, &root, &["put", "/registry/secrets/s", "3"]);
    assert_eq!(
        ctl_ok(url, &root, &["get", "/registry/secrets/s", "--print-value-only"]).trim(),
        "3"
    );

    // The gateway never takes a certificate's CN for a user.
    let ca = pki.path("ca.crt");
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let range = https(
        &format!("{url}/v3/kv/range"),
        &ca,
        Some((&cert, &key)),
        "POST",
        r#"{"key":"L3JlZ2lzdHJ5L3BvZHMvYQ=="}"#,
    )
    .unwrap();
    assert_eq!(range.status, 400, "{range:?}");
    assert!(
        range.body.contains("CommonName of client sending a request against gateway"),
        "{range:?}"
    );
    // /health is not a gateway path.
    let health = https(&format!("{url}/health"), &ca, Some((&cert, &key)), "GET", "").unwrap();
    assert_eq!(health.status, 200, "{health:?}");
}
