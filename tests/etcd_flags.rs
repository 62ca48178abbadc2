//! etcd's command line, judged by etcd itself: every flag that the real
//! `etcd --help` of 3.4 (Debian's, on PATH) and 3.6 (built by
//! scripts/etcd-bin.sh) lists is given to `logbook` with a plausible value,
//! and must be accepted or refused with one line naming it — never taken for
//! an unknown flag. And kubeadm's etcd command line starts a real TLS member
//! through a symlink named `etcd`, which the real etcdctl reads and writes.
//!
//! The flags are checked with `LOGBOOK_CHECK_CONFIG=1` (Logbook's internal
//! switch: parse, validate, print the warnings, exit), so no member starts
//! for them.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

const ETCD_36_VERSION: &str = "3.6.16";

/// Where scripts/etcd-bin.sh leaves etcd 3.6's binary.
fn etcd36_path() -> PathBuf {
    let cache = std::env::var_os("LOGBOOK_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/logbook")
    });
    cache.join(format!("etcd-v{ETCD_36_VERSION}")).join("etcd")
}

/// `etcd --help` of the binary at `etcd`, stdout and stderr together.
fn etcd_help(etcd: &Path) -> String {
    let out = Command::new(etcd)
        .arg("--help")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} --help: {e}", etcd.display()));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// The flag names a help text lists (`  --name 'default'` lines), with the
/// default it shows.
fn help_flags(help: &str) -> Vec<(String, String)> {
    help.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("--")?;
            let end =
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(rest.len());
            let (name, after) = rest.split_at(end);
            let default = after.trim().trim_matches('\'').to_string();
            (!name.is_empty()).then(|| (name.to_string(), default))
        })
        .collect()
}

/// Runs the built `logbook` (as `logbook ARGS`, etcd's flags first) in
/// check mode with no `ETCD_*` variables.
fn check(args: &[String]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logbook"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .env("LOGBOOK_CHECK_CONFIG", "1")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .expect("running logbook")
}

/// A plausible command line for flag `name` whose help shows `default`:
/// a value other than the default where the flag's type allows, and any
/// flag it needs beside it.
fn plausible(name: &str, default: &str, dir: &Path) -> Vec<String> {
    let d = dir.display();
    let one = |v: &str| vec![format!("--{name}={v}")];
    let url = "http://127.0.0.1:23790";
    match name {
        "version" => vec!["--version".into()],
        "config-file" => {
            let path = dir.join("etcd.yaml");
            std::fs::write(&path, "name: from-file\nmax-txn-ops: 64\n").unwrap();
            one(&path.display().to_string())
        }
        "data-dir" | "wal-dir" => one(&format!("{d}/{name}")),
        "heartbeat-interval" => one("50"),
        "election-timeout" => one("5000"),
        "bcrypt-cost" => one("4"),
        "initial-cluster" => one("default=http://localhost:2380"),
        "initial-cluster-state" => one("existing"),
        "initial-advertise-peer-urls" => {
            vec![format!("--{name}={url}"), format!("--initial-cluster=default={url}")]
        }
        "listen-client-urls" => {
            vec![format!("--{name}={url}"), format!("--advertise-client-urls={url}")]
        }
        "advertise-client-urls"
        | "listen-peer-urls"
        | "listen-metrics-urls"
        | "listen-client-http-urls" => one(url),
        "cors" => one("https://example.com"),
        "host-whitelist" => one("example.com"),
        "cert-file" | "key-file" => {
            vec![format!("--cert-file={d}/a.crt"), format!("--key-file={d}/a.key")]
        }
        "peer-cert-file" | "peer-key-file" => {
            vec![format!("--peer-cert-file={d}/a.crt"), format!("--peer-key-file={d}/a.key")]
        }
        "auth-token" => {
            let key = dir.join("jwt.key");
            std::fs::write(&key, "a shared secret").unwrap();
            one(&format!("jwt,priv-key={},sign-method=HS256,ttl=10m", key.display()))
        }
        "cipher-suites" => {
            one("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
        }
        "tls-min-version" | "tls-max-version" => one("TLS1.3"),
        "feature-gates" => one("InitialCorruptCheck=true,LeaseCheckpoint=true"),
        "auto-compaction-mode" => one("revision"),
        "auto-compaction-retention" => one("1h"),
        "log-outputs" | "log-output" => one("stderr"),
        "log-level" => one("debug"),
        "logger" => one("zap"),
        "log-format" => one("console"),
        "metrics" => one("extensive"),
        "log-rotation-config-json" => one(r#"{"maxsize": 10}"#),
        "enable-log-rotation" => vec![format!("--{name}"), format!("--log-outputs={d}/etcd.log")],
        "experimental-enable-lease-checkpoint-persist" => {
            vec![format!("--{name}"), "--experimental-enable-lease-checkpoint".into()]
        }
        "v2-deprecation" => one("write-only-drop-data"),
        "discovery-fallback" => one("proxy"),
        "proxy" => one("on"),
        "discovery-endpoints" => one("127.0.0.1:2379"),
        "max-concurrent-streams" => one("100"),
        _ => match default {
            "true" => one("false"),
            // Booleans show 'false' or no default at all.
            "false" | "" if is_bool_without_default(name) || default == "false" => {
                vec![format!("--{name}")]
            }
            d if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) => one("7"),
            d if looks_like_duration(d) || is_duration_without_default(name) => one("7s"),
            "" if is_number_without_default(name) => one("7"),
            _ => one("x"),
        },
    }
}

/// etcd 3.6's help shows no default for these booleans.
fn is_bool_without_default(name: &str) -> bool {
    matches!(
        name,
        "memory-mlock"
            | "experimental-memory-mlock"
            | "enable-grpc-gateway"
            | "experimental-stop-grpc-service-on-defrag"
    )
}

fn is_duration_without_default(name: &str) -> bool {
    name.ends_with("-interval") || name.ends_with("-check-time")
}

fn is_number_without_default(name: &str) -> bool {
    name.ends_with("-megabytes") || name.ends_with("-entries")
}

fn looks_like_duration(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(['s', 'm', 'h'])
        && s.chars().all(|c| c.is_ascii_digit() || "nsuµmh.".contains(c))
}

/// Checks every flag a help text lists; returns how many there were.
fn check_every_flag(etcd: &str, help: &str) -> usize {
    let flags = help_flags(help);
    let names: BTreeSet<&str> = flags.iter().map(|(n, _)| n.as_str()).collect();
    let mut failures = Vec::new();
    for (name, default) in &flags {
        let dir = tempfile::tempdir().unwrap();
        let mut args = plausible(name, default, dir.path());
        if name != "data-dir" && name != "config-file" {
            args.push(format!("--data-dir={}", dir.path().join("data").display()));
        }
        let out = check(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            continue;
        }
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let error = lines.last().copied().unwrap_or_default();
        let unknown = stderr.contains("flag provided but not defined")
            || stderr.contains("unexpected argument");
        let names_flag = error.starts_with("Error: ") && error.contains(&format!("--{name}"));
        let one_line = lines.iter().filter(|l| l.starts_with("Error")).count() == 1
            && !lines.iter().any(|l| l.contains("backtrace"));
        if unknown || !names_flag || !one_line {
            failures.push(format!("{etcd} --{name}: {args:?} gave:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{} flag(s) mishandled:\n{}", failures.len(), failures.join("\n"));
    names.len()
}

#[test]
fn every_flag_of_etcd_34_is_accepted_or_refused_by_name() {
    let help = etcd_help(Path::new("etcd"));
    assert!(help.contains("--listen-client-urls"), "etcd --help printed no flags: {help}");
    let n = check_every_flag("etcd 3.4", &help);
    assert!(n >= 75, "only {n} flags found in etcd 3.4's --help");
}

#[test]
fn every_flag_of_etcd_36_is_accepted_or_refused_by_name() {
    let etcd = etcd36_path();
    assert!(
        etcd.is_file(),
        "etcd {ETCD_36_VERSION} is missing at {}: run scripts/etcd-bin.sh to build it",
        etcd.display()
    );
    let help = etcd_help(&etcd);
    assert!(help.contains("--feature-gates"), "etcd 3.6 --help printed no 3.6 flags: {help}");
    let n = check_every_flag("etcd 3.6", &help);
    assert!(n >= 120, "only {n} flags found in etcd 3.6's --help");
}

#[test]
fn etcd_style_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("etcd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_logbook"), &link).unwrap();
    // `etcd --version`: etcd's four lines.
    let out = Command::new(&link).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(out.status.success());
    assert!(lines[0].starts_with("etcd Version: 3."), "{text}");
    assert!(lines[1].starts_with("Git SHA: "), "{text}");
    assert!(lines[2].starts_with("Go Version: "), "{text}");
    assert!(lines[3].starts_with("Go OS/Arch: "), "{text}");
    // A flag first, without a subcommand, is serve too; unknown flags are etcd's error.
    let out = check(&["--name=n1".into(), "-max-txn-ops".into(), "64".into()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The runtime flags of issue #29 are acted on: no "not yet acted on" warning.
    let runtime: Vec<String> = [
        "--grpc-keepalive-min-time=7s",
        "--grpc-keepalive-interval=7s",
        "--grpc-keepalive-timeout=7s",
        "--max-concurrent-streams=7",
        "--max-wals=7",
        "--max-snapshots=7",
        "--backend-batch-interval=7s",
        "--backend-batch-limit=7",
        "--socket-reuse-port=true",
        "--enable-grpc-gateway=false",
        "--warning-unary-request-duration=7s",
        "--warning-apply-duration=7s",
        "--metrics=extensive",
        "--enable-pprof=true",
    ]
    .map(String::from)
    .to_vec();
    let out = check(&runtime);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not yet acted on"), "{stderr}");
    assert!(!stderr.contains("ignored"), "{stderr}");
    let out = check(&["--no-such-flag".into()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim(), "Error: flag provided but not defined: -no-such-flag");
    // Booleans take a value only after '=' (Go's rule).
    let out = check(&["--pre-vote".into(), "false".into()]);
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "Error: \"false\" is not a valid flag");
    // ETCD_* variables: used, unknown ones warned about, a clash with a flag refused.
    let run_env = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(args)
            .envs(env.iter().copied())
            .env("LOGBOOK_CHECK_CONFIG", "1")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    };
    let out = run_env(&["serve"], &[("ETCD_NAME", "n1"), ("ETCD_NO_SUCH_SETTING", "1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("recognized and used environment variable ETCD_NAME=n1"), "{stderr}");
    assert!(
        stderr.contains("unrecognized environment variable ETCD_NO_SUCH_SETTING=1"),
        "{stderr}"
    );
    let out = run_env(&["serve", "--name=n2"], &[("ETCD_NAME", "n1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("conflicting environment variable \"ETCD_NAME\""), "{stderr}");
}

// ---- kubeadm's etcd, for real ----

fn new_ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "etcd-ca");
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// Writes `<name>.crt` and `<name>.key` signed by `ca` into `dir`.
fn leaf(dir: &Path, ca: &Issuer<'_, KeyPair>, name: &str, cn: &str, sans: &[&str]) {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ServerAuth, ClientAuth];
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// kubeadm's `getEtcdCommand` (Kubernetes v1.37, cmd/kubeadm/app/phases/etcd/local.go)
/// for a node named `node` advertising `ip`, with kubeadm's certificate file
/// names under `pki`, sorted by name as kubeadm writes them.
fn kubeadm_etcd_command(
    node: &str,
    ip: &str,
    client: u16,
    peer: u16,
    metrics: u16,
    pki: &Path,
    data: &Path,
) -> Vec<String> {
    let p = |f: &str| pki.join(f).display().to_string();
    let mut args = [
        ("advertise-client-urls", format!("https://{ip}:{client}")),
        ("cert-file", p("server.crt")),
        ("client-cert-auth", "true".into()),
        ("data-dir", data.display().to_string()),
        ("feature-gates", "InitialCorruptCheck=true".into()),
        ("initial-advertise-peer-urls", format!("https://{ip}:{peer}")),
        ("initial-cluster", format!("{node}=https://{ip}:{peer}")),
        ("key-file", p("server.key")),
        ("listen-client-urls", format!("https://127.0.0.1:{client},https://{ip}:{client}")),
        ("listen-metrics-urls", format!("http://127.0.0.1:{metrics}")),
        ("listen-peer-urls", format!("https://{ip}:{peer}")),
        ("name", node.to_string()),
        ("peer-cert-file", p("peer.crt")),
        ("peer-client-cert-auth", "true".into()),
        ("peer-key-file", p("peer.key")),
        ("peer-trusted-ca-file", p("ca.crt")),
        ("snapshot-count", "10000".into()),
        ("trusted-ca-file", p("ca.crt")),
        ("watch-progress-notify-interval", "5s".into()),
    ]
    .map(|(k, v)| format!("--{k}={v}"))
    .to_vec();
    args.sort();
    args
}

#[test]
fn kubeadms_etcd_command_line_serves_etcdctl_over_tls_through_a_symlink_named_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    // The node's own address: a second loopback address, as a node IP is
    // beside 127.0.0.1 in kubeadm's listen-client-urls.
    let ip = "127.0.0.2";
    let (ca_pem, ca) = new_ca();
    std::fs::write(pki.join("ca.crt"), ca_pem).unwrap();
    leaf(&pki, &ca, "server", "node1", &["node1", "localhost", "127.0.0.1", ip]);
    leaf(&pki, &ca, "peer", "node1", &["node1", "localhost", "127.0.0.1", ip]);
    leaf(&pki, &ca, "healthcheck-client", "kube-etcd-healthcheck-client", &[]);

    let link = dir.path().join("etcd");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_logbook"), &link).unwrap();
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let args =
        kubeadm_etcd_command("node1", ip, client, peer, metrics, &pki, &dir.path().join("data"));
    let log_path = dir.path().join("etcd.log");
    let mut child = Command::new(&link)
        .args(&args)
        .env_remove("LOGBOOK_CHECK_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("starting logbook as etcd");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let tls = [
        format!("--cacert={}", pki.join("ca.crt").display()),
        format!("--cert={}", pki.join("healthcheck-client.crt").display()),
        format!("--key={}", pki.join("healthcheck-client.key").display()),
        "--dial-timeout=3s".to_string(),
    ];
    let ctl = |endpoint: &str, args: &[&str]| {
        let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        etcdctl(endpoint, &all, None)
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let loopback = format!("https://127.0.0.1:{client}");
        let node = format!("https://{ip}:{client}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ctl(&loopback, &["endpoint", "health"]).status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "not healthy within 30s; log:\n{}", log());
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = ctl(&node, &["put", "/registry/leases/kube-node-lease/node1", "v1"]);
        assert!(
            out.status.success(),
            "put: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log()
        );
        let out = ctl(
            &loopback,
            &["get", "/registry/leases/kube-node-lease/node1", "--print-value-only"],
        );
        assert!(out.status.success(), "get: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v1");
        // Every flag of kubeadm's is acted on, so none is warned of: the
        // progress interval, and the InitialCorruptCheck gate (a new member,
        // as in etcd, has nothing to compare yet; tests/corruption.rs checks
        // a restarting one).
        assert!(!log().contains("InitialCorruptCheck"), "{}", log());
        assert!(!log().contains("watch-progress-notify-interval"), "{}", log());
        // Without a client certificate the member refuses the client.
        let out = etcdctl(
            &loopback,
            &[
                &format!("--cacert={}", pki.join("ca.crt").display()),
                "--dial-timeout=3s",
                "get",
                "x",
            ],
            None,
        );
        assert!(!out.status.success(), "a client without a certificate was served");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The flags of issue #29 the server acts on now (membership checks, the
/// initial election tick advance, compaction batches, the Raft log's
/// catch-up tail, lease checkpoints): accepted without the "not yet acted
/// on" warning. What each does is tested against etcd in tests/strict_reconfig.rs,
/// tests/lease_checkpoint.rs and tests/api_36.rs.
#[test]
fn issue_29_flags_are_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    for flag in [
        "--strict-reconfig-check=false",
        "--initial-election-tick-advance=false",
        "--max-learners=3",
        "--compaction-batch-limit=10",
        "--experimental-compaction-batch-limit=10",
        "--compaction-sleep-interval=1ms",
        "--experimental-compaction-sleep-interval=1ms",
        "--snapshot-catchup-entries=100",
        "--experimental-snapshot-catchup-entries=100",
        "--experimental-enable-lease-checkpoint",
        "--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true",
    ] {
        let out =
            check(&[flag.to_string(), format!("--data-dir={}", dir.path().join("d").display())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{flag}: {stderr}");
        assert!(!stderr.contains("not yet acted on"), "{flag}: {stderr}");
    }
}

/// The TLS options beyond cert, key and CA are acted on (tests/tls_options.rs
/// shows how): given, they are not warned of as pending.
#[test]
fn tls_options_are_acted_on_not_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let args: Vec<String> = [
        format!("--data-dir={d}/data"),
        format!("--client-crl-file={d}/c.crl"),
        format!("--peer-crl-file={d}/p.crl"),
        "--client-cert-allowed-hostname=a.example".into(),
        "--peer-cert-allowed-cn=peer".into(),
        "--peer-skip-client-san-verification".into(),
        format!("--peer-client-cert-file={d}/c.crt"),
        format!("--peer-client-key-file={d}/c.key"),
        "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
        "--tls-max-version=TLS1.2".into(),
        "--auto-tls".into(),
        "--peer-auto-tls".into(),
        "--self-signed-cert-validity=2".into(),
    ]
    .into();
    let out = check(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("not yet acted on"), "{stderr}");
    // --auto-tls and --peer-auto-tls made their pairs where etcd does.
    for side in ["client", "peer"] {
        for file in ["cert.pem", "key.pem"] {
            assert!(
                dir.path().join("data/fixtures").join(side).join(file).is_file(),
                "{side}/{file}"
            );
        }
    }
}
