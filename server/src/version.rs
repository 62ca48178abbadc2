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

/// The cluster version as major and minor numbers.
pub fn cluster_major_minor() -> (i64, i64) {
    let mut parts =
        ETCD_VERSION.split('.').map(|p| p.parse::<i64>().expect("ETCD_VERSION is numeric"));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A downgrade target as etcd reads one (`convertToClusterVersion`): a
/// semantic version "X.Y.Z" (pre-release and build metadata allowed) or
/// "X.Y", of which only major and minor count. None where etcd answers
/// "wrong downgrade target version format".
pub fn parse_downgrade_target(v: &str) -> Option<(i64, i64)> {
    parse_semver(v).or_else(|| parse_semver(&format!("{v}.0")))
}

/// go-semver's `NewVersion`: split off "+metadata" then "-pre-release",
/// three dotted integers (Go's ParseInt: an optional sign, decimal digits),
/// identifiers of `[0-9A-Za-z-]` separated by dots.
fn parse_semver(v: &str) -> Option<(i64, i64)> {
    let (v, metadata) = v.split_once('+').unwrap_or((v, ""));
    let (v, pre) = v.split_once('-').unwrap_or((v, ""));
    let parts: Vec<&str> = v.splitn(3, '.').collect();
    if parts.len() != 3 || !valid_identifier(pre) || !valid_identifier(metadata) {
        return None;
    }
    let mut nums = [0i64; 3];
    for (n, p) in nums.iter_mut().zip(&parts) {
        *n = go_parse_int(p)?;
    }
    Some((nums[0], nums[1]))
}

fn go_parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_identifier(id: &str) -> bool {
    id.is_empty()
        || id.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
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
    fn downgrade_targets_parse_as_etcds() {
        use super::parse_downgrade_target as p;
        assert_eq!(p("3.4"), Some((3, 4)));
        assert_eq!(p("3.4.0"), Some((3, 4)));
        assert_eq!(p("3.4.7-rc.1+build"), Some((3, 4)));
        // A sign is split off as build metadata or pre-release first.
        for bad in ["", "3", "v3.4", "abc", "3.4.x", "3..4", "3.4.0-a..b", "+3.4", "-3.4"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert!(super::ETCD_VERSION.starts_with(&format!(
            "{}.{}.",
            super::cluster_major_minor().0,
            super::cluster_major_minor().1
        )));
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
