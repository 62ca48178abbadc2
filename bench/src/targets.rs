//! Which systems a comparison or capacity run starts, from which binaries,
//! where their data go and where the report goes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::cli::SystemArgs;
use crate::cluster::{System, which};

/// How to install the baseline, said in one line when it is missing.
pub const INSTALL_ETCD: &str = "etcd not found: build today's releases with scripts/etcd-bin.sh, or install one with `apt-get install etcd-server` (or pass --etcd PATH), to compare Logbook with etcd";

/// A system to run and its binary, or a deployed cluster's endpoints.
#[derive(Debug, Clone)]
pub struct Target {
    pub system: System,
    /// Empty for a deployed cluster.
    pub binary: PathBuf,
    /// A cluster already running (`--logbook-endpoints`, `--etcd-endpoints`):
    /// its client URLs. Empty: a local cluster is started from `binary`.
    pub endpoints: Vec<String>,
}

impl Target {
    /// Whether this is a cluster running elsewhere.
    pub fn deployed(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// What the report names as its binary.
    pub fn describe(&self) -> String {
        if self.deployed() {
            format!("deployed: {}", self.endpoints.join(","))
        } else {
            self.binary.display().to_string()
        }
    }
}

/// A deployed system's endpoints and TLS files, from the command line.
fn deployed(args: &SystemArgs, system: System) -> (&[String], [Option<&Path>; 3]) {
    match system {
        System::Logbook => (
            &args.logbook_endpoints,
            [
                args.logbook_cacert.as_deref(),
                args.logbook_cert.as_deref(),
                args.logbook_key.as_deref(),
            ],
        ),
        System::Etcd => (
            &args.etcd_endpoints,
            [args.etcd_cacert.as_deref(), args.etcd_cert.as_deref(), args.etcd_key.as_deref()],
        ),
    }
}

/// Resolves `--systems`, `--etcd` and `--logbook`. Without `--systems`,
/// Logbook always runs and etcd when its binary is found (otherwise `notes`
/// gets the one-line install hint). Without `--etcd`, the baseline is the
/// newest release `scripts/etcd-bin.sh` built into the cache, else the
/// `etcd` on PATH (Debian's 3.4).
pub fn resolve(args: &SystemArgs, notes: &mut Vec<String>) -> Result<Vec<Target>> {
    let explicit = !args.systems.is_empty();
    let any_deployed = !args.logbook_endpoints.is_empty() || !args.etcd_endpoints.is_empty();
    let systems: Vec<System> = if explicit {
        args.systems.iter().map(|s| System::parse(s)).collect::<Result<_>>()?
    } else if any_deployed {
        // Deployed clusters named: measure those, start nothing locally.
        [System::Logbook, System::Etcd]
            .into_iter()
            .filter(|&s| !deployed(args, s).0.is_empty())
            .collect()
    } else {
        vec![System::Logbook, System::Etcd]
    };
    let mut out = Vec::new();
    for system in [System::Logbook, System::Etcd] {
        let (endpoints, [cacert, cert, key]) = deployed(args, system);
        let tls_given = cacert.is_some() || cert.is_some() || key.is_some();
        anyhow::ensure!(
            !tls_given || !endpoints.is_empty(),
            "--{system}-cacert, --{system}-cert and --{system}-key are for --{system}-endpoints"
        );
        if let Some(ca) = cacert {
            crate::tls::register(endpoints, crate::tls::client_config(ca, cert, key)?)?;
        } else {
            anyhow::ensure!(
                !tls_given,
                "--{system}-cert and --{system}-key need --{system}-cacert"
            );
        }
    }
    for system in systems {
        let endpoints = deployed(args, system).0;
        if !endpoints.is_empty() {
            let endpoints = endpoints.iter().map(|e| crate::client::endpoint_url(e)).collect();
            out.push(Target { system, binary: PathBuf::new(), endpoints });
            continue;
        }
        let binary = match system {
            System::Logbook => match &args.logbook {
                Some(p) => p.clone(),
                None => std::env::current_exe().context("locating the logbook binary")?,
            },
            System::Etcd => match args
                .etcd
                .clone()
                .or_else(|| cache_dir().and_then(|c| newest_cached_etcd(&c)))
                .or_else(|| which("etcd"))
            {
                Some(p) => p,
                None if explicit || args.etcd.is_some() => bail!("{INSTALL_ETCD}"),
                None => {
                    notes.push(INSTALL_ETCD.to_owned());
                    continue;
                }
            },
        };
        anyhow::ensure!(binary.is_file(), "{system} binary {} does not exist", binary.display());
        out.push(Target { system, binary, endpoints: Vec::new() });
    }
    Ok(out)
}

/// Where `scripts/etcd-bin.sh` builds etcd releases: `$LOGBOOK_CACHE`, else
/// `~/.cache/logbook`.
pub fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("LOGBOOK_CACHE") {
        Some(c) if !c.is_empty() => Some(PathBuf::from(c)),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/logbook")),
    }
}

/// The `etcd` of the newest release under `cache` (directories named
/// `etcd-vX.Y.Z`, as `scripts/etcd-bin.sh` makes them; pre-releases such as
/// `v3.7.0-rc.1` are skipped).
pub fn newest_cached_etcd(cache: &Path) -> Option<PathBuf> {
    let mut best: Option<((u64, u64, u64), PathBuf)> = None;
    for entry in std::fs::read_dir(cache).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(|n| n.strip_prefix("etcd-v")) else {
            continue;
        };
        let parts: Vec<u64> = match version.split('.').map(|p| p.parse()).collect() {
            Ok(parts) => parts,
            Err(_) => continue,
        };
        let [major, minor, patch] = parts[..] else { continue };
        let binary = entry.path().join("etcd");
        if binary.is_file() && best.as_ref().is_none_or(|(v, _)| (major, minor, patch) > *v) {
            best = Some(((major, minor, patch), binary));
        }
    }
    best.map(|(_, p)| p)
}

/// The data directory: `--data-dir` (kept) or a temporary one (removed when
/// the returned guard drops).
pub fn data_dir(args: &SystemArgs) -> Result<(PathBuf, Option<TempDir>)> {
    match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            let run = d.join(format!("run-{}", unix_secs()));
            Ok((run, None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("logbook-bench-")
                .tempdir()
                .context("creating a temp dir")?;
            Ok((t.path().to_owned(), Some(t)))
        }
    }
}

/// The report directory: `--out` or `./<default_name>-<unix time>`.
pub fn out_dir(args: &SystemArgs, default_name: &str) -> Result<PathBuf> {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{default_name}-{}", unix_secs())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Seconds since the epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
    pub memory_gib: f64,
    /// Unix time of the run.
    pub time: u64,
}

impl Machine {
    /// This machine, now.
    pub fn here() -> Machine {
        let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
        let kib: f64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory_gib: kib / (1 << 20) as f64,
            time: unix_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(systems: &[&str], etcd: Option<&str>) -> SystemArgs {
        SystemArgs {
            systems: systems.iter().map(|s| s.to_string()).collect(),
            etcd: etcd.map(PathBuf::from),
            logbook_endpoints: Vec::new(),
            etcd_endpoints: Vec::new(),
            logbook_cacert: None,
            logbook_cert: None,
            logbook_key: None,
            etcd_cacert: None,
            etcd_cert: None,
            etcd_key: None,
            disk_floor: None,
            logbook: None,
            data_dir: None,
            members: 3,
            out: None,
            quiet: true,
        }
    }

    #[test]
    fn the_newest_cached_release_is_the_baseline() {
        let cache = tempfile::tempdir().unwrap();
        for (dir, with_binary) in [
            ("etcd-v3.6.16", true),
            ("etcd-v3.7.3", true),
            ("etcd-v3.10.0", false), // no binary: an interrupted build
            ("etcd-v3.8.0-rc.1", true),
            ("etcd-v3.7.10", true),
            ("k8s-v1.37.2", true),
        ] {
            let d = cache.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            if with_binary {
                std::fs::write(d.join("etcd"), b"").unwrap();
            }
        }
        assert_eq!(newest_cached_etcd(cache.path()), Some(cache.path().join("etcd-v3.7.10/etcd")));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(newest_cached_etcd(empty.path()), None);
    }

    #[test]
    fn a_named_but_missing_etcd_is_an_error_with_the_install_hint() {
        let err = resolve(&args(&["etcd"], Some("/nonexistent/etcd")), &mut vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn logbook_defaults_to_this_executable() {
        let mut notes = vec![];
        let t = resolve(&args(&["logbook"], None), &mut notes).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].binary, std::env::current_exe().unwrap());
    }

    #[test]
    fn unknown_systems_are_refused() {
        assert!(resolve(&args(&["mysql"], None), &mut vec![]).is_err());
    }
}
