//! etcd's TLS options beyond cert, key and CA, judged against a real etcd
//! (3.6.16) given the same flags: `--client-crl-file`, `--cipher-suites`,
//! `--tls-min-version`/`--tls-max-version`, `--client-cert-allowed-hostname`,
//! `--peer-cert-allowed-cn`, the peer port's client SAN check and
//! `--peer-skip-client-san-verification`, `--peer-client-cert-file`, and
//! `--auto-tls`/`--peer-auto-tls`/`--self-signed-cert-validity`.
//! Certificates and CRLs are made by the test (rcgen).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cached_etcd, etcdctl, free_port, runtime};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const ETCD_VERSION: &str = "3.6.16";

/// The test's PKI in a directory: `ca.crt`, and `NAME.crt`/`NAME.key`
/// pairs it issues, with `NAME.serial` for the CRL.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "tls options ca");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        let pki = Pki { dir, ca: Issuer::new(params, key) };
        // The server's pair: both usages, as kubeadm issues etcd's.
        pki.issue("server", "etcd-server", &["127.0.0.1", "localhost"], 1);
        pki
    }

    /// Issues `name.crt/.key` with `cn`, `sans` and serial `serial`, for
    /// server and client use.
    fn issue(&self, name: &str, cn: &str, sans: &[&str], serial: u64) {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ServerAuth, ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }

    /// Writes `name` (DER, as etcd reads it) revoking `serials`.
    fn crl(&self, name: &str, serials: &[u64]) {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.ca).unwrap();
        std::fs::write(self.dir.path().join(name), crl.der()).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// etcdctl's flags presenting `name`'s pair.
    fn ctl_flags(&self, name: &str) -> Vec<String> {
        vec![
            format!("--cacert={}", self.path("ca.crt")),
            format!("--cert={}", self.path(&format!("{name}.crt"))),
            format!("--key={}", self.path(&format!("{name}.key"))),
        ]
    }

    /// The client-port flags: the server pair, and the CA for client certs.
    fn client_flags(&self) -> Vec<String> {
        vec![
            format!("--cert-file={}", self.path("server.crt")),
            format!("--key-file={}", self.path("server.key")),
            format!("--trusted-ca-file={}", self.path("ca.crt")),
            "--client-cert-auth=true".to_string(),
        ]
    }

    /// The peer-port flags: the server pair, and the CA for peer certs.
    fn peer_flags(&self) -> Vec<String> {
        vec![
            format!("--peer-cert-file={}", self.path("server.crt")),
            format!("--peer-key-file={}", self.path("server.key")),
            format!("--peer-trusted-ca-file={}", self.path("ca.crt")),
            "--peer-client-cert-auth=true".to_string(),
        ]
    }
}

/// Which server a test runs: Logbook or the real etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Logbook,
    Etcd,
}

const BOTH: [Kind; 2] = [Kind::Logbook, Kind::Etcd];

fn program(kind: Kind) -> String {
    match kind {
        Kind::Logbook => env!("CARGO_BIN_EXE_logbook").to_string(),
        Kind::Etcd => cached_etcd(ETCD_VERSION, "etcd"),
    }
}

/// One member (Logbook run with etcd's flags and no subcommand, or etcd),
/// started with etcd's flags; killed when dropped.
struct Member {
    kind: Kind,
    dir: tempfile::TempDir,
    child: Option<Child>,
    client_url: String,
    peer_url: String,
}

impl Member {
    /// Starts one member listening on `client_scheme`/`peer_scheme` URLs
    /// with `args` after the usual flags. Does not wait.
    fn spawn(kind: Kind, client_scheme: &str, peer_scheme: &str, args: &[String]) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let client_url = format!("{client_scheme}://127.0.0.1:{}", free_port());
        let peer_url = format!("{peer_scheme}://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("member.log")).unwrap();
        let child = Command::new(program(kind))
            .args(["--name", "m1"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("m1={peer_url}")])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the member");
        Member { kind, dir, child: Some(child), client_url, peer_url }
    }

    /// Starts one member and waits (bounded) until etcdctl with `ctl`
    /// flags reads from it.
    fn start(
        kind: Kind,
        client_scheme: &str,
        peer_scheme: &str,
        args: &[String],
        ctl: &[String],
    ) -> Member {
        let m = Member::spawn(kind, client_scheme, peer_scheme, args);
        m.wait_ready(ctl);
        m
    }

    fn wait_ready(&self, ctl: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let out = self.ctl(ctl, &["get", "ready-probe"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} not ready within 40s: {}\nlog:\n{}",
                self.kind,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("member.log")).unwrap_or_default()
    }

    fn ctl(&self, tls: &[String], args: &[&str]) -> Output {
        let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
        all.push("--dial-timeout=3s");
        all.extend_from_slice(args);
        etcdctl(&self.client_url, &all, None)
    }

    fn client_addr(&self) -> String {
        self.client_url.split("://").nth(1).unwrap().to_string()
    }

    fn peer_addr(&self) -> String {
        self.peer_url.split("://").nth(1).unwrap().to_string()
    }

    /// Waits (bounded) for the process to exit; its status and log.
    fn exit(mut self) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} still running after 30s; log:\n{}", self.kind, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How a TLS client pinned to `versions` (and, if given, one TLS 1.2
/// suite) presenting `client` (cert, key) fared against `addr`: `Ok` with
/// the negotiated version when the server kept the connection, `Err` with
/// why when the handshake failed or the server closed the connection right
/// after it (as etcd's listener does for a revoked or misnamed client).
fn probe(
    addr: &str,
    ca: &str,
    client: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suite: Option<rustls::CipherSuite>,
) -> Result<String, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suite) = suite {
        provider.cipher_suites.retain(|s| s.suite() == suite);
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let addr = addr.to_string();
    runtime().block_on(async move {
        use tokio::io::AsyncReadExt as _;
        let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let connect = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp);
        let mut tls = match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("handshake: {e}")),
            Err(_) => return Err("handshake: no answer within 10s".into()),
        };
        let version = format!("{:?}", tls.get_ref().1.protocol_version().unwrap());
        // A TLS 1.3 server judges the client's certificate after the
        // client's handshake is done, and etcd checks CRLs and SANs after
        // the handshake: a refusal shows as an alert or a close soon after.
        // A kept connection just sends nothing (a session ticket at most).
        let mut buf = [0u8; 64];
        for _ in 0..4 {
            match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut buf)).await {
                Err(_) => return Ok(version),
                Ok(Ok(0)) => return Err("closed by the server".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("after the handshake: {e}")),
            }
        }
        Ok(version)
    })
}

fn tls12() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS12]
}

fn tls13() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13]
}

fn with(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter().cloned().chain(more.iter().map(|s| s.to_string())).collect()
}

#[test]
fn a_revoked_client_certificate_is_refused_as_etcd_refuses_it() {
    let pki = Pki::new();
    pki.issue("alice", "alice", &[], 10);
    pki.issue("bob", "bob", &[], 11);
    pki.crl("revoked.crl", &[11]);
    let args =
        with(&pki.client_flags(), &[&format!("--client-crl-file={}", pki.path("revoked.crl"))]);
    for kind in BOTH {
        let m = Member::start(kind, "https", "http", &args, &pki.ctl_flags("alice"));
        let good = m.ctl(&pki.ctl_flags("alice"), &["put", "k", "v"]);
        assert!(
            good.status.success(),
            "{kind:?}: alice refused: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        let revoked = m.ctl(&pki.ctl_flags("bob"), &["put", "k", "v"]);
        assert!(!revoked.status.success(), "{kind:?}: bob's revoked certificate was let in");
        // At the TLS level: bob's connection does not survive the handshake.
        let ca = pki.path("ca.crt");
        let (bc, bk) = (pki.path("bob.crt"), pki.path("bob.key"));
        let (ac, ak) = (pki.path("alice.crt"), pki.path("alice.key"));
        for versions in [tls12(), tls13()] {
            let bob = probe(&m.client_addr(), &ca, Some((&bc, &bk)), &versions, None);
            assert!(bob.is_err(), "{kind:?}: bob kept a connection: {bob:?}");
            let alice = probe(&m.client_addr(), &ca, Some((&ac, &ak)), &versions, None);
            assert!(alice.is_ok(), "{kind:?}: alice refused: {alice:?}");
        }
    }
}

#[test]
fn tls_versions_and_cipher_suites_limit_the_handshake_as_in_etcd() {
    use rustls::CipherSuite;
    let pki = Pki::new();
    pki.issue("alice", "alice", &[], 10);
    let ca = pki.path("ca.crt");
    let (ac, ak) = (pki.path("alice.crt"), pki.path("alice.key"));
    let alice = Some((ac.as_str(), ak.as_str()));
    for kind in BOTH {
        // Only TLS 1.2, one suite.
        let args = with(
            &pki.client_flags(),
            &[
                "--tls-max-version=TLS1.2",
                "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ],
        );
        let m = Member::start(kind, "https", "http", &args, &pki.ctl_flags("alice"));
        let addr = m.client_addr();
        assert_eq!(probe(&addr, &ca, alice, &tls12(), None), Ok("TLSv1_2".into()), "{kind:?}");
        assert!(probe(&addr, &ca, alice, &tls13(), None).is_err(), "{kind:?}: TLS 1.3 let in");
        let other = Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
        assert!(
            probe(&addr, &ca, alice, &tls12(), other).is_err(),
            "{kind:?}: a suite outside --cipher-suites was accepted"
        );
        let listed = Some(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        assert!(probe(&addr, &ca, alice, &tls12(), listed).is_ok(), "{kind:?}");
        drop(m);

        // Only TLS 1.3.
        let args = with(&pki.client_flags(), &["--tls-min-version=TLS1.3"]);
        let m = Member::start(kind, "https", "http", &args, &pki.ctl_flags("alice"));
        let addr = m.client_addr();
        assert_eq!(probe(&addr, &ca, alice, &tls13(), None), Ok("TLSv1_3".into()), "{kind:?}");
        assert!(probe(&addr, &ca, alice, &tls12(), None).is_err(), "{kind:?}: TLS 1.2 let in");
    }
}

#[test]
fn bad_tls_version_and_suite_settings_are_refused_at_start_as_etcd_refuses_them() {
    let pki = Pki::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--cipher-suites=TLS_NOT_A_SUITE"], "unexpected TLS cipher suite \"TLS_NOT_A_SUITE\""),
        (
            &["--tls-min-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
            "cipher suites cannot be configured when only TLS1.3 is enabled",
        ),
        (
            // Go's HTTP/2 server wants an AES_128_GCM_SHA256 suite.
            &["--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
            "http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher",
        ),
        (
            &["--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"],
            "min version (TLS1.3) is greater than max version (TLS1.2)",
        ),
    ];
    for (flags, message) in cases {
        for kind in BOTH {
            let args = with(&pki.client_flags(), flags);
            let (ok, log) = Member::spawn(kind, "https", "http", &args).exit();
            // etcd logs JSON, its quotes escaped.
            let log = log.replace("\\\"", "\"");
            assert!(!ok, "{kind:?} started with {flags:?}");
            assert!(log.contains(message), "{kind:?} with {flags:?}: no {message:?} in\n{log}");
        }
    }
}

#[test]
fn client_cert_allowed_hostname_refuses_other_clients_as_etcd_does() {
    let pki = Pki::new();
    pki.issue("named", "named", &["allowed.example"], 10);
    pki.issue("other", "other", &["other.example"], 11);
    let args = with(&pki.client_flags(), &["--client-cert-allowed-hostname=allowed.example"]);
    for kind in BOTH {
        let m = Member::start(kind, "https", "http", &args, &pki.ctl_flags("named"));
        let ok = m.ctl(&pki.ctl_flags("named"), &["put", "k", "v"]);
        assert!(ok.status.success(), "{kind:?}: {}", String::from_utf8_lossy(&ok.stderr));
        let refused = m.ctl(&pki.ctl_flags("other"), &["put", "k", "v"]);
        assert!(!refused.status.success(), "{kind:?}: other.example let in");
        let ca = pki.path("ca.crt");
        let (c, k) = (pki.path("other.crt"), pki.path("other.key"));
        let probe = probe(&m.client_addr(), &ca, Some((&c, &k)), &tls12(), None);
        assert!(probe.is_err(), "{kind:?}: {probe:?}");
    }
}

#[test]
fn peer_port_checks_allowed_cn_and_the_client_san_as_etcd_does() {
    let pki = Pki::new();
    pki.issue("good", "good-peer", &["127.0.0.1"], 10);
    pki.issue("stranger", "stranger", &["127.0.0.1"], 11);
    // A certificate for another address: refused by the SAN check unless
    // --peer-skip-client-san-verification.
    pki.issue("elsewhere", "good-peer", &["10.9.9.9"], 12);
    let ca = pki.path("ca.crt");
    let pair = |n: &str| (pki.path(&format!("{n}.crt")), pki.path(&format!("{n}.key")));
    let outcome = |m: &Member, n: &str| {
        let (c, k) = pair(n);
        probe(&m.peer_addr(), &ca, Some((&c, &k)), &tls12(), None)
    };
    let ctl = pki.ctl_flags("good");
    for kind in BOTH {
        let args = with(&pki.peer_flags(), &["--peer-cert-allowed-cn=good-peer"]);
        let args = with(&args, &pki.client_flags().iter().map(String::as_str).collect::<Vec<_>>());
        let m = Member::start(kind, "https", "https", &args, &ctl);
        assert!(outcome(&m, "good").is_ok(), "{kind:?}: {:?}", outcome(&m, "good"));
        assert!(outcome(&m, "stranger").is_err(), "{kind:?}: a CN not allowed was let in");
        assert!(outcome(&m, "elsewhere").is_err(), "{kind:?}: a SAN for 10.9.9.9 was let in");
        drop(m);

        let args = with(&pki.peer_flags(), &["--peer-skip-client-san-verification=true"]);
        let args = with(&args, &pki.client_flags().iter().map(String::as_str).collect::<Vec<_>>());
        let m = Member::start(kind, "https", "https", &args, &ctl);
        let elsewhere = outcome(&m, "elsewhere");
        assert!(elsewhere.is_ok(), "{kind:?}: SAN check not skipped: {elsewhere:?}");
    }
}

/// A two-member Logbook cluster whose peer port lets in only the CN of
/// the pair given by `--peer-client-cert-file`: the members reach each
/// other only if they present that pair, not their server one, when they
/// dial.
#[test]
fn members_dial_peers_with_the_peer_client_certificate() {
    let pki = Pki::new();
    pki.issue("peer-server", "peer-server", &["127.0.0.1", "localhost"], 20);
    pki.issue("peer-client", "peer-client", &["127.0.0.1"], 21);
    pki.issue("alice", "alice", &[], 10);
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(dir.path().join(format!("m{i}")))
            .arg(format!("--listen-client-urls=https://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=https://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{p}"))
            .arg(format!("--initial-advertise-peer-urls=https://127.0.0.1:{p}"))
            .arg(format!("--initial-cluster={initial}"))
            .args(pki.client_flags())
            .arg(format!("--peer-cert-file={}", pki.path("peer-server.crt")))
            .arg(format!("--peer-key-file={}", pki.path("peer-server.key")))
            .arg(format!("--peer-client-cert-file={}", pki.path("peer-client.crt")))
            .arg(format!("--peer-client-key-file={}", pki.path("peer-client.key")))
            .arg(format!("--peer-trusted-ca-file={}", pki.path("ca.crt")))
            .arg("--peer-client-cert-auth=true")
            .arg("--peer-cert-allowed-cn=peer-client")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        children.push(KillOnDrop(child));
    }
    let endpoints =
        ports.iter().map(|(c, _)| format!("https://127.0.0.1:{c}")).collect::<Vec<_>>().join(",");
    let mut args: Vec<String> = pki.ctl_flags("alice");
    args.push("--dial-timeout=3s".into());
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["put", "k", "v"]);
        let out = etcdctl(&endpoints, &all, None);
        if out.status.success() {
            break;
        }
        let logs: String = (0..2)
            .map(|i| std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).unwrap())
            .collect();
        assert!(
            Instant::now() < deadline,
            "no quorum within 40s: {}\n{logs}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The server pair's CN is not allowed on the peer port.
    let (c, k) = (pki.path("peer-server.crt"), pki.path("peer-server.key"));
    let peer = format!("127.0.0.1:{}", ports[0].1);
    assert!(probe(&peer, &pki.path("ca.crt"), Some((&c, &k)), &tls12(), None).is_err());
    drop(children);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the test compares of an auto-TLS certificate: subject, SANs, CA
/// flag, extended usages, validity in days, the key's curve and the
/// signature algorithm (OIDs), and the key file's PEM label.
#[derive(Debug, PartialEq, Eq)]
struct SelfCert {
    subject: String,
    sans: Vec<String>,
    is_ca: bool,
    server_auth: bool,
    days: i64,
    curve: String,
    signature: String,
    key_pem: String,
}

/// secp521r1 and ecdsa-with-SHA512: etcd's auto-TLS key and signature.
const P521: &str = "1.3.132.0.35";
const ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";

fn read_self_cert(path: &Path) -> SelfCert {
    let der = CertificateDer::from_pem_file(path).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let mut sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 4 => {
                        format!("IP:{}", std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()))
                    }
                    x509_parser::extensions::GeneralName::DNSName(d) => format!("DNS:{d}"),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    sans.sort();
    let validity = cert.validity();
    let curve = cert.public_key().algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    let key = std::fs::read_to_string(path.with_file_name("key.pem")).unwrap();
    SelfCert {
        subject: cert.subject().to_string(),
        sans,
        is_ca: cert.is_ca(),
        server_auth: cert.extended_key_usage().unwrap().is_some_and(|e| e.value.server_auth),
        days: (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400,
        curve: curve.map(|c| c.to_id_string()).unwrap_or_default(),
        signature: cert.signature_algorithm.algorithm.to_id_string(),
        key_pem: key.lines().next().unwrap_or_default().to_string(),
    }
}

/// etcd 3.6's etcdctl (Go's TLS client) against `endpoint` with `args`.
fn etcdctl36(endpoint: &str, args: &[&str]) -> Output {
    Command::new(cached_etcd(ETCD_VERSION, "etcdctl"))
        .arg(format!("--endpoints={endpoint}"))
        .args(["--command-timeout=10s", "--dial-timeout=3s"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The files under `<data-dir>/fixtures`, relative, with the key files'
/// permission bits.
fn fixtures(data_dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for side in ["client", "peer"] {
        let dir = data_dir.join("fixtures").join(side);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("key") {
                out.push(format!("{side}/{name} {mode:o}"));
            } else {
                out.push(format!("{side}/{name}"));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn auto_tls_serves_generated_certificates_laid_out_as_etcd_lays_them_out() {
    let args: Vec<String> =
        ["--auto-tls", "--peer-auto-tls", "--self-signed-cert-validity=2"].map(String::from).into();
    // etcdctl 3.4 dials https without TLS unless told --insecure-transport=false.
    let insecure =
        vec!["--insecure-transport=false".to_string(), "--insecure-skip-tls-verify".to_string()];
    let mut seen = Vec::new();
    for kind in BOTH {
        let m = Member::start(kind, "https", "https", &args, &insecure);
        let put = m.ctl(&insecure, &["put", "auto", "tls"]);
        assert!(put.status.success(), "{kind:?}: {}", String::from_utf8_lossy(&put.stderr));
        let got = m.ctl(&insecure, &["get", "auto", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "tls", "{kind:?}");
        // Without --insecure-skip-tls-verify the self-signed certificate is
        // not trusted.
        let strict = m.ctl(&insecure[..1], &["get", "auto"]);
        assert!(!strict.status.success(), "{kind:?}: a self-signed certificate was trusted");
        let data = m.data_dir();
        let files = fixtures(&data);
        let client = read_self_cert(&data.join("fixtures/client/cert.pem"));
        let peer = read_self_cert(&data.join("fixtures/peer/cert.pem"));
        assert_eq!(client.sans, vec!["IP:127.0.0.1".to_string()], "{kind:?}");
        assert_eq!(client.days, 730, "{kind:?}");
        assert_eq!((client.curve.as_str(), client.signature.as_str()), (P521, ECDSA_SHA512));
        assert_eq!(client.key_pem, "-----BEGIN EC PRIVATE KEY-----", "{kind:?}");
        // Go's TLS client (etcdctl 3.6, as etcd's docs say for auto-TLS)
        // checks the member's P-521 handshake signature.
        let url = format!("https://{}", m.client_addr());
        let go =
            etcdctl36(&url, &["--insecure-skip-tls-verify", "get", "auto", "--print-value-only"]);
        assert!(go.status.success(), "{kind:?}: {}", String::from_utf8_lossy(&go.stderr));
        assert_eq!(String::from_utf8_lossy(&go.stdout).trim(), "tls", "{kind:?}");
        seen.push((files, client, peer));
    }
    assert_eq!(seen[0], seen[1], "Logbook's fixtures differ from etcd's");
    assert_eq!(
        seen[0].0,
        vec!["client/cert.pem", "client/key.pem 600", "peer/cert.pem", "peer/key.pem 600"]
    );
}

/// Three Logbook members on https peer URLs with only `--peer-auto-tls`:
/// they dial each other without verifying the self-signed P-521
/// certificates, as etcd's members do (the handshakes' P-521 signatures are
/// checked), and form a cluster. The third member's pair is the one a real
/// etcd 3.6.16 generated (auto-TLS keeps a pair it finds in its data dir, as
/// etcd does), so Go's P-521 key signs and is verified on the peer port too.
#[test]
fn peer_auto_tls_members_form_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    // A real etcd's peer auto-TLS pair.
    let etcd = Member::start(Kind::Etcd, "http", "https", &["--peer-auto-tls".to_string()], &[]);
    let etcd_peer = etcd.data_dir().join("fixtures/peer");
    assert_eq!(read_self_cert(&etcd_peer.join("cert.pem")).curve, P521);
    let third = dir.path().join("m2/fixtures/peer");
    std::fs::create_dir_all(&third).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(etcd_peer.join(f), third.join(f)).unwrap();
    }
    let go_cert = std::fs::read(third.join("cert.pem")).unwrap();
    drop(etcd);
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(dir.path().join(format!("m{i}")))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{c}"))
            .arg(format!("--listen-peer-urls=https://127.0.0.1:{p}"))
            .arg(format!("--initial-advertise-peer-urls=https://127.0.0.1:{p}"))
            .arg(format!("--initial-cluster={initial}"))
            .arg("--peer-auto-tls")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        children.push(KillOnDrop(child));
    }
    let logs = || -> String {
        (0..3)
            .map(|i| std::fs::read_to_string(dir.path().join(format!("m{i}.log"))).unwrap())
            .collect()
    };
    let endpoints =
        ports.iter().map(|(c, _)| format!("127.0.0.1:{c}")).collect::<Vec<_>>().join(",");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = etcdctl(&endpoints, &["--dial-timeout=3s", "put", "k", "v"], None);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no quorum within 40s: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every member has the write (each one's serializable read), so the
    // third, with Go's pair, is replicated to over its P-521 connections.
    for (i, (c, _)) in ports.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ep = format!("127.0.0.1:{c}");
            let out = etcdctl(&ep, &["get", "k", "--consistency=s", "--print-value-only"], None);
            if String::from_utf8_lossy(&out.stdout).trim() == "v" {
                break;
            }
            assert!(Instant::now() < deadline, "m{i} never saw the write\n{}", logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for i in 0..3 {
        let cert = read_self_cert(&dir.path().join(format!("m{i}/fixtures/peer/cert.pem")));
        assert_eq!((cert.curve.as_str(), cert.signature.as_str()), (P521, ECDSA_SHA512));
        assert!(!dir.path().join(format!("m{i}/fixtures/client")).exists());
    }
    assert_eq!(std::fs::read(third.join("cert.pem")).unwrap(), go_cert, "m2 made its own pair");
    assert!(!logs().contains("rejected connection on peer endpoint"), "{}", logs());
    drop(children);
}
