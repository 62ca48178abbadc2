//! The etcd version Logbook claims, in one place: Maintenance.Status,
//! `/version`, the `etcd_server_version` metric, snapshots' cluster version
//! and `etcd --version` all report it. Clients turn features on by it, so it
//! names the etcd whose API Logbook really serves.

/// The etcd server version Logbook reports. 3.5.13 is the first 3.5 whose
/// watch progress notifications kube-apiserver trusts for consistent reads
/// from its watch cache (`RequestWatchProgress`); Logbook's answer a progress
/// request only when every watcher of the stream has been handed everything
/// up to the revision they name, as that release's do.
pub const ETCD_VERSION: &str = "3.5.13";

/// The cluster version that goes with it, as etcd reports it (`/version`'s
/// `etcdcluster`, a snapshot's `clusterVersion`): major.minor.0.
pub fn cluster_version() -> String {
    let minor = ETCD_VERSION.rsplit_once('.').map_or(ETCD_VERSION, |(minor, _)| minor);
    format!("{minor}.0")
}

/// The `etcd --version` answer when Logbook runs as `etcd`: etcd's four
/// lines, with Logbook's own version where etcd names its build.
pub fn etcd_version_text() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!(
        "etcd Version: {ETCD_VERSION}\nGit SHA: Not provided (Logbook {})\nGo Version: not Go (Logbook is written in Rust)\nGo OS/Arch: {}/{arch}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cluster_version_is_major_minor_zero() {
        let cluster = super::cluster_version();
        assert!(
            cluster.ends_with(".0")
                && super::ETCD_VERSION.starts_with(&cluster[..cluster.len() - 1])
        );
    }

    #[test]
    fn version_lines_read_as_etcds() {
        let text = super::etcd_version_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("etcd Version: {}", super::ETCD_VERSION));
        assert!(lines[1].starts_with("Git SHA: "));
        assert!(lines[2].starts_with("Go Version: "));
        assert!(lines[3].starts_with("Go OS/Arch: linux/"));
    }
}
