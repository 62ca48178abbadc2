//! A Kubernetes control plane on Logbook, as kubeadm lays one out, for
//! `tests/kubernetes.rs`: the certificates kubeadm issues (made here with
//! rcgen), three Logbook members started through a file named `etcd` with
//! exactly the flags of kubeadm's etcd static pod (joined the way `kubeadm
//! join` joins stacked etcd members: added as a learner, started with
//! `--initial-cluster-state=existing`, promoted), and kube-apiserver,
//! kube-controller-manager and kube-scheduler with the flags of kubeadm's
//! manifests that apply on one machine. Every process's stderr goes to a
//! file in the control plane's directory; when a test fails, the tail of
//! each is printed. Every process is stopped through its handle on drop, and
//! every wait is bounded.
//!
//! The binaries come from `scripts/kubernetes-bin.sh` (Kubernetes) and, for
//! etcdctl, `scripts/etcd-bin.sh` (falling back to the etcdctl on PATH).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::common::{free_port, http_get};

/// The Kubernetes release `scripts/kubernetes-bin.sh` builds.
pub const K8S_VERSION: &str = "v1.37.2";

/// `${LOGBOOK_CACHE:-$HOME/.cache/logbook}`, where the scripts put what they build.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("LOGBOOK_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/logbook"),
    }
}

/// The directory holding kube-apiserver, kube-controller-manager,
/// kube-scheduler and kubectl. Fails the test, saying how to build them,
/// when one is missing: a control-plane test that skips itself silently
/// proves nothing.
pub fn k8s_bin_dir() -> PathBuf {
    let dir = cache_dir().join(format!("k8s-{K8S_VERSION}"));
    for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: run scripts/kubernetes-bin.sh (it builds Kubernetes {K8S_VERSION}'s \
             control-plane binaries into {}; scripts/test.sh runs it)",
            dir.join(b).display(),
            dir.display()
        );
    }
    dir
}

/// The program the `etcd` symlink points to: the logbook binary, or the
/// etcd binary `LOGBOOK_K8S_ETCD` names (e.g. scripts/etcd-bin.sh's etcd
/// 3.7.3), to run the same control plane on the real etcd and tell a
/// misbehaviour of Logbook from one of the test.
pub fn store_program() -> PathBuf {
    match std::env::var_os("LOGBOOK_K8S_ETCD") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "LOGBOOK_K8S_ETCD={} is not a file", p.display());
            eprintln!("running the control plane on {} instead of Logbook", p.display());
            p
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_logbook")),
    }
}

/// etcd 3.7.3 from `scripts/etcd-bin.sh`'s cache; fails the test, naming
/// the script, when it is missing.
pub fn etcd37_program() -> PathBuf {
    let p = cache_dir().join("etcd-v3.7.3/etcd");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/etcd-bin.sh (scripts/test.sh runs it)",
        p.display()
    );
    p
}

/// etcdctl 3.7 from `scripts/etcd-bin.sh`'s cache if it is there, else the
/// one on PATH.
pub fn etcdctl_program() -> PathBuf {
    let cached = cache_dir().join("etcd-v3.7.3/etcdctl");
    if cached.is_file() { cached } else { PathBuf::from("etcdctl") }
}

/// Runs `cmd` with stdin closed and stdout/stderr captured, killing it if it
/// has not finished within `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let out_file = tempfile::tempfile().unwrap();
    let err_file = tempfile::tempfile().unwrap();
    die_with_parent(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(err_file.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let mut err = read_all(err_file);
            err.extend_from_slice(format!("\n(killed after {limit:?})").as_bytes());
            return Output { status, stdout: read_all(out_file), stderr: err };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: read_all(out_file), stderr: read_all(err_file) }
}

fn read_all(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read as _, Seek as _};
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// The last `n` lines of a file, or a note that it cannot be read.
pub fn file_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

// ---- certificates ----

/// A CA: its certificate PEM and the issuer that signs with its key.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
}

/// The certificates kubeadm's `certs` phase writes, under `dir` as kubeadm
/// lays out `/etc/kubernetes/pki` (PKCS#8 ECDSA P-256 keys: kubeadm's
/// `encryptionAlgorithm: ECDSA-P256`).
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Writes every file: the etcd CA, each member's `server` and `peer`
    /// certificate (`etcd/server-<name>.crt`, `etcd/peer-<name>.crt`; SANs
    /// localhost, 127.0.0.1, ::1), `etcd/healthcheck-client`,
    /// `apiserver-etcd-client` (CN kube-apiserver-etcd-client), the cluster
    /// CA and the apiserver's serving and kubelet-client certificates, the
    /// front-proxy CA and client, the service-account key pair `sa.key` and
    /// `sa.pub`, and client certificates for the admin, the
    /// controller-manager and the scheduler.
    pub fn generate(dir: &Path, members: &[&str]) -> Pki {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        std::fs::create_dir_all(dir.join("etcd")).unwrap();
        let pki = Pki { dir: dir.to_path_buf() };
        let local = ["localhost", "127.0.0.1", "::1"];

        let etcd_ca = pki.ca("etcd/ca", "etcd-ca");
        for m in members {
            pki.leaf(
                &etcd_ca,
                &format!("etcd/server-{m}"),
                m,
                &[],
                &local,
                &[ServerAuth, ClientAuth],
            );
            pki.leaf(
                &etcd_ca,
                &format!("etcd/peer-{m}"),
                m,
                &[],
                &local,
                &[ServerAuth, ClientAuth],
            );
        }
        pki.leaf(
            &etcd_ca,
            "etcd/healthcheck-client",
            "kube-etcd-healthcheck-client",
            &[],
            &[],
            &[ClientAuth],
        );
        pki.leaf(
            &etcd_ca,
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            &[],
            &[],
            &[ClientAuth],
        );

        let ca = pki.ca("ca", "kubernetes");
        let apiserver_sans = [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "10.96.0.1",
            "127.0.0.1",
        ];
        pki.leaf(&ca, "apiserver", "kube-apiserver", &[], &apiserver_sans, &[ServerAuth]);
        pki.leaf(
            &ca,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
            &[],
            &[ClientAuth],
        );
        // The kubeconfigs' users, as kubeadm's super-admin.conf,
        // controller-manager.conf and scheduler.conf have them.
        pki.leaf(&ca, "admin", "kubernetes-super-admin", &["system:masters"], &[], &[ClientAuth]);
        pki.leaf(
            &ca,
            "controller-manager",
            "system:kube-controller-manager",
            &[],
            &[],
            &[ClientAuth],
        );
        pki.leaf(&ca, "scheduler", "system:kube-scheduler", &[], &[], &[ClientAuth]);

        let front_proxy_ca = pki.ca("front-proxy-ca", "front-proxy-ca");
        pki.leaf(
            &front_proxy_ca,
            "front-proxy-client",
            "front-proxy-client",
            &[],
            &[],
            &[ClientAuth],
        );

        let sa = KeyPair::generate().unwrap();
        std::fs::write(pki.path("sa.key"), sa.serialize_pem()).unwrap();
        std::fs::write(pki.path("sa.pub"), sa.public_key_pem()).unwrap();
        pki
    }

    /// The path of a file under the PKI directory, as a string for a flag.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    /// A self-signed CA, written as `<name>.crt` and `<name>.key`.
    fn ca(&self, name: &str, cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        self.write(&format!("{name}.crt"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
        Ca { issuer: Issuer::new(params, key) }
    }

    /// A certificate `ca` signs, written as `<name>.crt` and `<name>.key`.
    fn leaf(
        &self,
        ca: &Ca,
        name: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = usages.to_vec();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        self.write(&format!("{name}.crt"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    /// A kubeconfig at `path` for `server`, trusting the cluster CA and
    /// presenting `<user>.crt`/`<user>.key`, as kubeadm's `kubeconfig` phase
    /// writes them (with file paths instead of inline data).
    pub fn write_kubeconfig(&self, path: &Path, server: &str, user: &str) {
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: logbook
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {crt}
    client-key: {key}
contexts:
- name: {user}@logbook
  context:
    cluster: logbook
    user: {user}
current-context: {user}@logbook
",
            ca = self.path("ca.crt"),
            crt = self.path(&format!("{user}.crt")),
            key = self.path(&format!("{user}.key")),
        );
        std::fs::write(path, text).unwrap();
    }

    /// A rustls client configuration trusting the cluster CA and presenting
    /// the admin certificate, for the test's own HTTPS requests.
    pub fn admin_tls(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.path("ca.crt")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(self.path("admin.crt"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap(),
            PrivateKeyDer::from_pem_file(self.path("admin.key")).unwrap(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

// ---- processes ----

/// A process this harness started, stopped (SIGKILL) through its handle when
/// dropped, with its stderr (and stdout, unless redirected) in `log`.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        die_with_parent(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({cmd:?}): {e}"));
        Proc { name: name.to_string(), child: Some(child), log: log.to_path_buf() }
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process is still running (it was started and has not exited).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Fails the test, with the log's tail, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{} exited ({status}); log tail:\n{}", self.name, file_tail(&self.log, 60));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes the process `cmd` starts get SIGKILL when the thread that started
/// it ends, so nothing outlives a test that was itself killed (by a timeout
/// or ^C) before its handles could stop what it started.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the
    // parent; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One Logbook member as kubeadm's etcd static pod runs it.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    /// The `--initial-cluster` (and `--initial-cluster-state`) kubeadm gave it.
    pub initial_cluster: Vec<String>,
    pub proc: Option<Proc>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }
}

/// The control plane: three Logbook members, kube-apiserver,
/// kube-controller-manager and kube-scheduler, with kubeconfigs for them and
/// for an admin.
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub pki: Pki,
    /// The `etcd` symlink to the logbook binary.
    pub etcd: PathBuf,
    pub members: Vec<Member>,
    pub apiserver_port: u16,
    pub admin_kubeconfig: PathBuf,
    pub apiserver: Option<Proc>,
    pub controller_manager: Option<Proc>,
    pub scheduler: Option<Proc>,
    /// Other processes the test starts (watches), stopped and reported with the rest.
    pub extra: Vec<Proc>,
    pub started: Instant,
}

impl ControlPlane {
    /// Lays out the directory, the certificates and the `etcd` symlink (to
    /// [`store_program`]), and picks ports; starts nothing.
    pub fn create(names: &[&str]) -> ControlPlane {
        ControlPlane::create_with(names, &store_program())
    }

    /// [`create`](Self::create) with the `etcd` symlink pointing at `program`.
    pub fn create_with(names: &[&str], program: &Path) -> ControlPlane {
        let bin = k8s_bin_dir();
        let dir = tempfile::Builder::new().prefix("logbook-k8s-").tempdir().unwrap();
        let pki = Pki::generate(&dir.path().join("pki"), names);
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let etcd = dir.path().join("bin/etcd");
        std::os::unix::fs::symlink(program, &etcd).unwrap();
        let members = names
            .iter()
            .map(|n| Member {
                name: n.to_string(),
                client_port: free_port(),
                peer_port: free_port(),
                metrics_port: free_port(),
                data_dir: dir.path().join(format!("{n}/var/lib/etcd")),
                initial_cluster: Vec::new(),
                proc: None,
            })
            .collect();
        let admin_kubeconfig = dir.path().join("admin.conf");
        let apiserver_port = free_port();
        pki.write_kubeconfig(
            &admin_kubeconfig,
            &format!("https://127.0.0.1:{apiserver_port}"),
            "admin",
        );
        ControlPlane {
            bin,
            pki,
            etcd,
            members,
            apiserver_port,
            admin_kubeconfig,
            apiserver: None,
            controller_manager: None,
            scheduler: None,
            extra: Vec::new(),
            started: Instant::now(),
            dir,
        }
    }

    /// Points the `etcd` symlink at `program`: the members started from now
    /// on run it (the image swap of a static pod).
    pub fn run_etcd_as(&mut self, program: &Path) {
        std::fs::remove_file(&self.etcd).unwrap();
        std::os::unix::fs::symlink(program, &self.etcd).unwrap();
    }

    /// The log file of a process named `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Bootstraps the etcd cluster as kubeadm does: `kubeadm init` starts
    /// the first member alone; each `kubeadm join --control-plane` adds the
    /// next as a learner (MemberAddAsLearner), starts it with every member so
    /// far and `--initial-cluster-state=existing`, and promotes it once it
    /// has started and caught up (MemberPromote, retried as kubeadm does).
    pub fn start_etcd(&mut self) {
        let first = format!("{}={}", self.members[0].name, self.members[0].peer_url());
        self.members[0].initial_cluster = vec![first];
        self.spawn_member(0);
        self.wait_member_healthy(0, Duration::from_secs(60));
        for i in 1..self.members.len() {
            let peer = self.members[i].peer_url();
            let name = self.members[i].name.clone();
            let endpoints = self.etcd_endpoints_up_to(i);
            // Retried as kubeadm retries it: etcd refuses a member add
            // ("unhealthy cluster") until the leader has been connected to
            // a quorum for 5 s, which it is not just after a promotion.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let out = self.etcdctl_at(
                    &endpoints,
                    &["member", "add", &name, &format!("--peer-urls={peer}"), "--learner"],
                );
                if out.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "member add {name} kept failing for 60s: {}",
                    stderr(&out)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            // kubeadm builds --initial-cluster from the member list that
            // MemberAddAsLearner returned: every member, the new one named.
            let mut cluster: Vec<String> = (0..i)
                .map(|j| format!("{}={}", self.members[j].name, self.members[j].peer_url()))
                .collect();
            cluster.push(format!("{name}={peer}"));
            self.members[i].initial_cluster = cluster;
            self.spawn_member(i);
            let id = self.member_id(&endpoints, &peer);
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let out = self.etcdctl_at(&endpoints, &["member", "promote", &id]);
                if out.status.success() {
                    break;
                }
                self.members[i].proc.as_mut().unwrap().assert_running();
                assert!(
                    Instant::now() < deadline,
                    "member promote {name} ({id}) kept failing for 90s: {}",
                    stderr(&out)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            self.wait_member_healthy(i, Duration::from_secs(60));
        }
    }

    /// The client endpoints of members `0..n`, comma-separated.
    fn etcd_endpoints_up_to(&self, n: usize) -> String {
        self.members[..n].iter().map(Member::client_url).collect::<Vec<_>>().join(",")
    }

    /// Every member's client URL, comma-separated (`--etcd-servers`).
    pub fn etcd_endpoints(&self) -> String {
        self.etcd_endpoints_up_to(self.members.len())
    }

    /// The hex ID of the member whose peer URL is `peer`, from `member list`.
    fn member_id(&self, endpoints: &str, peer: &str) -> String {
        let out = self.etcdctl_at(endpoints, &["member", "list", "-w", "json"]);
        assert!(out.status.success(), "member list: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["peerURLs"].as_array().unwrap().iter().any(|u| u == peer))
            .unwrap_or_else(|| panic!("no member with peer URL {peer} in {v}"));
        format!("{:x}", m["ID"].as_u64().unwrap())
    }

    /// Starts member `i` (again) with the command kubeadm's
    /// `getEtcdCommand` writes into the etcd static pod manifest
    /// (v1.37: `cmd/kubeadm/app/phases/etcd/local.go`), run through the
    /// `etcd` symlink. Ports are the test's own; with 127.0.0.1 as the
    /// advertise address, kubeadm's two `--listen-client-urls`
    /// (`https://127.0.0.1:2379,https://<advertise>:2379`) are one.
    pub fn spawn_member(&mut self, i: usize) {
        let log = self.log_path(&self.members[i].name);
        let m = &self.members[i];
        let p = |f: &str| self.pki.path(f);
        let mut cmd = Command::new(&self.etcd);
        cmd.arg(format!("--advertise-client-urls={}", m.client_url()))
            .arg(format!("--cert-file={}", p(&format!("etcd/server-{}.crt", m.name))))
            .arg("--client-cert-auth=true")
            .arg(format!("--data-dir={}", m.data_dir.display()))
            .arg("--feature-gates=InitialCorruptCheck=true")
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-cluster={}", m.initial_cluster.join(",")));
        if m.initial_cluster.len() > 1 {
            cmd.arg("--initial-cluster-state=existing");
        }
        cmd.arg(format!("--key-file={}", p(&format!("etcd/server-{}.key", m.name))))
            .arg(format!("--listen-client-urls={}", m.client_url()))
            .arg(format!("--listen-metrics-urls={}", m.metrics_url()))
            .arg(format!("--listen-peer-urls={}", m.peer_url()))
            .arg(format!("--name={}", m.name))
            .arg(format!("--peer-cert-file={}", p(&format!("etcd/peer-{}.crt", m.name))))
            .arg("--peer-client-cert-auth=true")
            .arg(format!("--peer-key-file={}", p(&format!("etcd/peer-{}.key", m.name))))
            .arg(format!("--peer-trusted-ca-file={}", p("etcd/ca.crt")))
            .arg("--snapshot-count=10000")
            .arg(format!("--trusted-ca-file={}", p("etcd/ca.crt")))
            .arg("--watch-progress-notify-interval=5s")
            .env("RUST_LOG", "info");
        let proc = Proc::spawn(&m.name, &mut cmd, &log);
        self.members[i].proc = Some(proc);
    }

    /// Waits (bounded) until `etcdctl endpoint health` (a linearizable read
    /// through TLS with a client certificate) succeeds on member `i`.
    pub fn wait_member_healthy(&mut self, i: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let url = self.members[i].client_url();
        loop {
            let out = self.etcdctl_at(&url, &["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            self.members[i].proc.as_mut().unwrap().assert_running();
            assert!(
                Instant::now() < deadline,
                "member {} not healthy within {limit:?}: {}",
                self.members[i].name,
                stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// etcdctl against `endpoints` with the etcd CA and the healthcheck
    /// client certificate (as kubeadm's etcd liveness probe and its docs'
    /// etcdctl examples use them), bounded.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(etcdctl_program());
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", self.pki.path("etcd/ca.crt")))
            .arg(format!("--cert={}", self.pki.path("etcd/healthcheck-client.crt")))
            .arg(format!("--key={}", self.pki.path("etcd/healthcheck-client.key")))
            .args(["--dial-timeout=3s", "--command-timeout=20s"])
            .args(args);
        run_bounded(&mut cmd, Duration::from_secs(40))
    }

    /// The members that run and say (`etcd_server_is_leader 1` on their
    /// `--listen-metrics-urls`) that they lead.
    pub fn leaders(&mut self) -> Vec<usize> {
        let mut leaders = Vec::new();
        for i in 0..self.members.len() {
            if !self.members[i].proc.as_mut().is_some_and(Proc::running) {
                continue;
            }
            let url = format!("{}/metrics", self.members[i].metrics_url());
            let Ok(r) = std::panic::catch_unwind(|| http_get(&url)) else { continue };
            if r.body.lines().any(|l| l.trim() == "etcd_server_is_leader 1") {
                leaders.push(i);
            }
        }
        leaders
    }

    /// Starts kube-apiserver with the flags of kubeadm's manifest
    /// (`getAPIServerCommand`, external etcd: `--etcd-servers` listing every
    /// member, `--etcd-cafile/--etcd-certfile/--etcd-keyfile`), bound to
    /// 127.0.0.1. Two flags kubeadm does not set: `--bind-address` (the
    /// test binds only 127.0.0.1) and `--endpoint-reconciler-type=none`
    /// (the `kubernetes` Service's endpoint would be the loopback
    /// advertise address, which the reconciler refuses). And one kubeadm
    /// leaves at its default: `--etcd-compaction-interval` is 15 s instead
    /// of 5 min, so that the API server's own compactions (a Txn on
    /// `compact_rev_key`, then Compact) run while the test does; and
    /// `--watch-cache-sizes=secrets#0` turns the watch cache off for Secrets,
    /// so that their lists and watches go to Logbook as they are asked for.
    pub fn start_apiserver(&mut self) {
        let p = |f: &str| self.pki.path(f);
        let mut cmd = Command::new(self.bin.join("kube-apiserver"));
        cmd.arg("--advertise-address=127.0.0.1")
            .arg("--allow-privileged=true")
            .arg("--authorization-mode=Node,RBAC")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg("--enable-admission-plugins=NodeRestriction")
            .arg("--enable-bootstrap-token-auth=true")
            .arg("--endpoint-reconciler-type=none")
            .arg("--etcd-compaction-interval=15s")
            .arg("--watch-cache-sizes=secrets#0")
            .arg(format!("--etcd-cafile={}", p("etcd/ca.crt")))
            .arg(format!("--etcd-certfile={}", p("apiserver-etcd-client.crt")))
            .arg(format!("--etcd-keyfile={}", p("apiserver-etcd-client.key")))
            .arg(format!("--etcd-servers={}", self.etcd_endpoints()))
            .arg(format!("--kubelet-client-certificate={}", p("apiserver-kubelet-client.crt")))
            .arg(format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")))
            .arg("--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname")
            .arg(format!("--proxy-client-cert-file={}", p("front-proxy-client.crt")))
            .arg(format!("--proxy-client-key-file={}", p("front-proxy-client.key")))
            .arg("--requestheader-allowed-names=front-proxy-client")
            .arg(format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")))
            .arg("--requestheader-extra-headers-prefix=X-Remote-Extra-")
            .arg("--requestheader-group-headers=X-Remote-Group")
            .arg("--requestheader-username-headers=X-Remote-User")
            .arg(format!("--secure-port={}", self.apiserver_port))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!("--service-account-signing-key-file={}", p("sa.key")))
            .arg("--service-cluster-ip-range=10.96.0.0/12")
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")));
        let log = self.log_path("kube-apiserver");
        self.apiserver = Some(Proc::spawn("kube-apiserver", &mut cmd, &log));
    }

    /// Waits (bounded) until `/readyz` answers ok through kubectl.
    pub fn wait_apiserver_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.kubectl(&["get", "--raw=/readyz"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return;
            }
            self.apiserver.as_mut().unwrap().assert_running();
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready within {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr(&out)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Starts kube-controller-manager and kube-scheduler with the flags of
    /// kubeadm's manifests and kubeconfigs for their own users, their
    /// secure ports on free 127.0.0.1 ports.
    pub fn start_controllers(&mut self) {
        let server = format!("https://127.0.0.1:{}", self.apiserver_port);
        let cm_conf = self.dir.path().join("controller-manager.conf");
        let sched_conf = self.dir.path().join("scheduler.conf");
        self.pki.write_kubeconfig(&cm_conf, &server, "controller-manager");
        self.pki.write_kubeconfig(&sched_conf, &server, "scheduler");
        let p = |f: &str| self.pki.path(f);
        let conf = cm_conf.display();
        let mut cmd = Command::new(self.bin.join("kube-controller-manager"));
        cmd.arg(format!("--authentication-kubeconfig={conf}"))
            .arg(format!("--authorization-kubeconfig={conf}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg(format!("--cluster-signing-cert-file={}", p("ca.crt")))
            .arg(format!("--cluster-signing-key-file={}", p("ca.key")))
            .arg("--controllers=*,bootstrapsigner,tokencleaner")
            .arg(format!("--kubeconfig={conf}"))
            .arg("--leader-elect=true")
            .arg(format!("--requestheader-client-ca-file={}", p("front-proxy-ca.crt")))
            .arg(format!("--root-ca-file={}", p("ca.crt")))
            .arg(format!("--secure-port={}", free_port()))
            .arg(format!("--service-account-private-key-file={}", p("sa.key")))
            .arg("--use-service-account-credentials=true");
        let log = self.log_path("kube-controller-manager");
        self.controller_manager = Some(Proc::spawn("kube-controller-manager", &mut cmd, &log));

        let conf = sched_conf.display();
        let mut cmd = Command::new(self.bin.join("kube-scheduler"));
        cmd.arg(format!("--authentication-kubeconfig={conf}"))
            .arg(format!("--authorization-kubeconfig={conf}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--kubeconfig={conf}"))
            .arg("--leader-elect=true")
            .arg(format!("--secure-port={}", free_port()));
        let log = self.log_path("kube-scheduler");
        self.scheduler = Some(Proc::spawn("kube-scheduler", &mut cmd, &log));
    }

    /// kubectl as the admin, to hand to another thread.
    pub fn kubectl_handle(&self) -> Kubectl {
        Kubectl { program: self.bin.join("kubectl"), kubeconfig: self.admin_kubeconfig.clone() }
    }

    /// A kubectl command with the admin kubeconfig and a request timeout.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        self.kubectl_handle().cmd(args)
    }

    /// Runs kubectl (bounded at 90 s).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_handle().run(args)
    }

    /// Runs kubectl with `input` on stdin (bounded at 90 s).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let path = self.dir.path().join(format!(
            "stdin-{}.yaml",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::write(&path, input).unwrap();
        let mut all: Vec<&str> = args.to_vec();
        let file = path.to_str().unwrap().to_string();
        all.extend(["-f", &file]);
        run_bounded(&mut self.kubectl_cmd(&all), Duration::from_secs(90))
    }

    /// Runs kubectl and returns its stdout, failing the test if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`kubectl_stdin`](Self::kubectl_stdin), failing the test if it fails.
    pub fn kubectl_stdin_ok(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, input);
        assert!(out.status.success(), "kubectl {args:?} failed: {}\ninput:\n{input}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Polls `check` every half second until it returns `Some`, failing the
    /// test with `what` after `limit`. Checks that the control plane's
    /// processes still run between tries.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&ControlPlane) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            for p in [&mut self.apiserver, &mut self.controller_manager, &mut self.scheduler]
                .into_iter()
                .flatten()
            {
                p.assert_running();
            }
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every process's log file, members first.
    fn logs(&self) -> Vec<(String, PathBuf)> {
        let mut logs: Vec<(String, PathBuf)> =
            self.members.iter().map(|m| (m.name.clone(), self.log_path(&m.name))).collect();
        for p in [&self.apiserver, &self.controller_manager, &self.scheduler].into_iter().flatten()
        {
            logs.push((p.name.clone(), p.log.clone()));
        }
        for p in &self.extra {
            logs.push((p.name.clone(), p.log.clone()));
        }
        logs
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut report = format!(
                "\n==== control plane in {} (test ran {:.0?}) ====\n",
                self.dir.path().display(),
                self.started.elapsed()
            );
            for (name, path) in self.logs() {
                report.push_str(&format!(
                    "---- {name}: tail of {} ----\n{}\n",
                    path.display(),
                    file_tail(&path, 40)
                ));
            }
            // One write, so the report is not interleaved with other output.
            let _ = std::io::stderr().write_all(report.as_bytes());
        }
        if std::env::var_os("LOGBOOK_KEEP_K8S_DIR").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
        // Clients first, the store last, each through its own handle.
        self.extra.clear();
        self.scheduler = None;
        self.controller_manager = None;
        self.apiserver = None;
        for m in &mut self.members {
            m.proc = None;
        }
    }
}

/// kubectl with a kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub program: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// A kubectl command with the kubeconfig and a 30 s request timeout.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=30s")
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl (bounded at 90 s).
    pub fn run(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.cmd(args), Duration::from_secs(90))
    }
}

/// A process's stderr, for a failure message.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sends `POST`s of JSON bodies to the API server over `connections`
/// keep-alive HTTPS/1.1 connections as the admin, one request at a time on
/// each: the test's bounded-parallel bulk writer. Returns the number of
/// `201 Created` answers and the first other answer, if any.
pub fn post_all(
    pki: &Pki,
    port: u16,
    path: &str,
    bodies: Vec<String>,
    connections: usize,
) -> (usize, Option<String>) {
    use http_body_util::BodyExt as _;
    let config = Arc::new(pki.admin_tls());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (config, queue, path) = (config.clone(), queue.clone(), path.to_string());
            tasks.push(tokio::spawn(async move {
                let work = async {
                    let addr = format!("127.0.0.1:{port}");
                    let tcp = tokio::net::TcpStream::connect(&addr).await?;
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(ServerName::try_from("127.0.0.1")?, tcp)
                        .await?;
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                            .await?;
                    tokio::spawn(conn);
                    let mut created = 0usize;
                    loop {
                        let Some(body) = queue.lock().unwrap().pop() else { break };
                        sender.ready().await?;
                        let req = hyper::Request::post(&path)
                            .header("host", &addr)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
                        let resp = sender.send_request(req).await?;
                        let status = resp.status().as_u16();
                        let text = resp.into_body().collect().await?.to_bytes();
                        if status != 201 {
                            anyhow::bail!(
                                "POST {path}: {status} {}",
                                String::from_utf8_lossy(&text)
                            );
                        }
                        created += 1;
                    }
                    anyhow::Ok(created)
                };
                tokio::time::timeout(Duration::from_secs(300), work)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("POST {path}: over 300 s")))
            }));
        }
        let mut created = 0;
        let mut first_error = None;
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => created += n,
                Err(e) => {
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
        (created, first_error)
    })
}
