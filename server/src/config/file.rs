//! `--config-file`: etcd's YAML configuration, read as etcd's embed config
//! reads it (`embed.ConfigFromFile`). A top-level key is a flag's name
//! (`name`, `data-dir`, `listen-client-urls: "http://..."`,
//! `initial-cluster`, `pre-vote: true`, `max-txn-ops: 128`, ...), with these
//! shapes of etcd's:
//!
//! ```yaml
//! client-transport-security:        # and peer-transport-security
//!   cert-file: /etc/etcd/server.crt
//!   key-file: /etc/etcd/server.key
//!   client-cert-file: ...           # client-key-file, trusted-ca-file
//!   client-cert-auth: true
//!   auto-tls: false
//!   allowed-cn: [...]               # peer only; allowed-hostname: [...]
//!   skip-client-san-verification: false   # peer only
//! socket-options: {reuse-port: false, reuse-address: false}
//! log-outputs: [stderr]             # lists: a YAML list or "a,b"
//! grpc-keepalive-interval: 7200000000000   # durations: nanoseconds, as Go's JSON
//! ```
//!
//! A key etcd does not know is ignored with a warning (etcd ignores it
//! silently). The file is YAML 1.2 (serde_yaml_ng); etcd's reader is YAML 1.1,
//! so there `yes`/`on` are booleans too: write `true`.

use std::time::Duration;

use serde_yaml_ng::Value as Yaml;

use super::flags::{Kind, lookup};
use super::settings::{Settings, Source, Value};

/// Reads the YAML file at `path` into `settings`.
pub fn load(path: &str, settings: &mut Settings) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --config-file {path}: {e}"))?;
    apply(path, &text, settings)
}

/// Applies YAML `text` (from `path`, named in errors) to `settings`.
pub fn apply(path: &str, text: &str, settings: &mut Settings) -> Result<(), String> {
    let doc: Yaml = serde_yaml_ng::from_str(text)
        .map_err(|e| format!("{path}: not valid YAML: {}", one_line(&e.to_string())))?;
    let map = match doc {
        Yaml::Null => return Ok(()),
        Yaml::Mapping(map) => map,
        _ => return Err(format!("{path}: expected a mapping of etcd settings at the top level")),
    };
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(format!("{path}: setting names must be strings, found {key:?}"));
        };
        match key {
            "client-transport-security" | "peer-transport-security" => {
                let prefix = if key.starts_with("peer") { "peer-" } else { "" };
                let Yaml::Mapping(inner) = value else {
                    if value.is_null() {
                        continue;
                    }
                    return Err(format!("{path}: invalid {key}"));
                };
                for (k, v) in inner {
                    let k = k.as_str().unwrap_or_default().to_string();
                    match security_flag(prefix, &k) {
                        Some(flag) => set(path, &format!("{key}.{k}"), &flag, v, settings)?,
                        None => settings
                            .warnings
                            .push(format!("{path}: unknown setting {key}.{k} (ignored)")),
                    }
                }
            }
            "socket-options" => {
                let Yaml::Mapping(inner) = value else {
                    if value.is_null() {
                        continue;
                    }
                    return Err(format!("{path}: invalid socket-options"));
                };
                for (k, v) in inner {
                    let k = k.as_str().unwrap_or_default().to_string();
                    let flag = format!("socket-{k}");
                    if matches!(k.as_str(), "reuse-port" | "reuse-address") {
                        set(path, &format!("socket-options.{k}"), &flag, v, settings)?;
                    } else {
                        settings
                            .warnings
                            .push(format!("{path}: unknown setting socket-options.{k} (ignored)"));
                    }
                }
            }
            "discovery-config" => {
                let empty = match &value {
                    Yaml::Null => true,
                    Yaml::Mapping(m) => m.values().all(is_empty),
                    _ => false,
                };
                if !empty {
                    return Err(format!(
                        "{path}: discovery-config is not supported: Logbook does not bootstrap from a discovery service; list the members with initial-cluster"
                    ));
                }
            }
            // etcd 3.6 reads this misspelling of the flag's name too.
            "experimental-snapshot-catch-up-entries" => {
                set(path, key, "experimental-snapshot-catchup-entries", value, settings)?
            }
            "config-file" | "version" => {
                settings.warnings.push(format!("{path}: unknown setting {key} (ignored)"))
            }
            _ => match lookup(key) {
                Some(flag) if flag.kind != Kind::Obsolete => {
                    set(path, key, flag.name, value, settings)?
                }
                _ => settings.warnings.push(format!("{path}: unknown setting {key} (ignored)")),
            },
        }
    }
    Ok(())
}

/// The flag a `*-transport-security` entry sets.
fn security_flag(prefix: &str, key: &str) -> Option<String> {
    let flag = match (prefix, key) {
        (_, "cert-file" | "key-file" | "client-cert-file" | "client-key-file") => key.to_string(),
        (_, "client-cert-auth" | "trusted-ca-file" | "auto-tls") => key.to_string(),
        ("", "allowed-hostname") => "client-cert-allowed-hostname".to_string(),
        ("peer-", "allowed-hostname") => "cert-allowed-hostname".to_string(),
        ("peer-", "allowed-cn") => "cert-allowed-cn".to_string(),
        ("peer-", "skip-client-san-verification") => key.to_string(),
        _ => return None,
    };
    Some(format!("{prefix}{flag}"))
}

fn is_empty(v: &Yaml) -> bool {
    match v {
        Yaml::Null => true,
        Yaml::String(s) => s.is_empty(),
        Yaml::Sequence(s) => s.is_empty(),
        Yaml::Mapping(m) => m.values().all(is_empty),
        Yaml::Bool(b) => !b,
        _ => false,
    }
}

/// Sets flag `name` from the YAML value at `key`, by the flag's kind.
fn set(
    path: &str,
    key: &str,
    name: &str,
    value: Yaml,
    settings: &mut Settings,
) -> Result<(), String> {
    let flag = lookup(name).expect("config file keys map to flags in the table");
    let source = Source::File(path.to_string());
    let wrong = |want: &str| format!("{path}: {key}: expected {want}, found {}", show(&value));
    match (flag.kind, &value) {
        (_, Yaml::Null) => Ok(()),
        (Kind::Bool, Yaml::Bool(b)) => {
            settings.set_value(flag, Value::Bool(*b), source);
            Ok(())
        }
        (Kind::Bool, _) => Err(wrong("true or false")),
        (Kind::Duration, Yaml::Number(n)) => match n.as_u64() {
            Some(nanos) => {
                settings.set_value(flag, Value::Duration(Duration::from_nanos(nanos)), source);
                Ok(())
            }
            None => Err(wrong("a non-negative whole number of nanoseconds")),
        },
        (Kind::Duration, _) => Err(format!(
            "{path}: {key}: a duration in etcd's config file is a whole number of nanoseconds (Go's time.Duration in JSON), found {}",
            show(&value)
        )),
        (Kind::Uint(_) | Kind::Int(_), Yaml::Number(n)) if n.is_i64() || n.is_u64() => {
            settings.set(name, &n.to_string(), source)
        }
        (Kind::Uint(_) | Kind::Int(_), _) => Err(wrong("a whole number")),
        (Kind::List, Yaml::Sequence(items)) => {
            let mut parts = Vec::new();
            for item in items {
                match scalar_text(item) {
                    Some(t) => parts.push(t),
                    None => return Err(wrong("a list of strings")),
                }
            }
            settings.set(name, &parts.join(","), source)
        }
        // etcd leaves an empty initial-cluster-state (or any empty choice) at its default.
        (Kind::Choice(_), Yaml::String(s)) if s.is_empty() => Ok(()),
        (Kind::Str | Kind::List | Kind::Choice(_), v) => match scalar_text(v) {
            Some(t) => settings.set(name, &t, source),
            None => Err(wrong("a string")),
        },
        (Kind::Obsolete, _) => Ok(()),
    }
}

/// A YAML scalar as text (a number or boolean where a string is expected is
/// taken as written).
fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn show(v: &Yaml) -> String {
    one_line(serde_yaml_ng::to_string(v).unwrap_or_default().trim())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Settings, String> {
        let mut s = Settings::default();
        apply("etcd.yaml", text, &mut s)?;
        Ok(s)
    }

    #[test]
    fn reads_etcds_yaml_shapes() {
        let s = load_str(
            r#"
name: infra1
data-dir: /var/lib/etcd
listen-client-urls: "https://10.0.0.1:2379,https://127.0.0.1:2379"
initial-cluster-state: ""
pre-vote: false
max-txn-ops: 256
grpc-keepalive-interval: 60000000000
log-outputs: [stderr, /var/log/etcd.log]
auto-compaction-retention: 8
client-transport-security:
  cert-file: /etc/etcd/server.crt
  key-file: /etc/etcd/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file: /etc/etcd/peer.crt
  allowed-cn: [etcd-peer]
  skip-client-san-verification: true
socket-options:
  reuse-port: true
experimental-snapshot-catch-up-entries: 100
some-future-field: 1
"#,
        )
        .unwrap();
        assert_eq!(s.text("name"), "infra1");
        assert_eq!(s.text("initial-cluster-state"), "new");
        assert!(!s.bool("pre-vote"));
        assert_eq!(s.uint("max-txn-ops"), 256);
        assert_eq!(s.duration("grpc-keepalive-interval"), Duration::from_secs(60));
        assert_eq!(s.list("log-outputs"), vec!["stderr", "/var/log/etcd.log"]);
        assert_eq!(s.text("auto-compaction-retention"), "8");
        assert_eq!(s.text("cert-file"), "/etc/etcd/server.crt");
        assert!(s.bool("client-cert-auth"));
        assert_eq!(s.text("peer-cert-file"), "/etc/etcd/peer.crt");
        assert_eq!(s.list("peer-cert-allowed-cn"), vec!["etcd-peer"]);
        assert!(s.bool("peer-skip-client-san-verification"));
        assert!(s.bool("socket-reuse-port"));
        assert_eq!(s.uint("experimental-snapshot-catchup-entries"), 100);
        assert_eq!(s.warnings, vec!["etcd.yaml: unknown setting some-future-field (ignored)"]);
    }

    #[test]
    fn wrong_types_are_one_line_errors() {
        let err = load_str("pre-vote: maybe\n").unwrap_err();
        assert_eq!(err, "etcd.yaml: pre-vote: expected true or false, found maybe");
        let err = load_str("grpc-keepalive-interval: 5s\n").unwrap_err();
        assert!(err.contains("whole number of nanoseconds"), "{err}");
        let err = load_str("initial-cluster-state: old\n").unwrap_err();
        assert!(
            err.starts_with("etcd.yaml: invalid value \"old\" for initial-cluster-state"),
            "{err}"
        );
        let err = load_str("max-txn-ops: [1]\n").unwrap_err();
        assert!(err.contains("expected a whole number"), "{err}");
        let err = load_str("discovery-config:\n  endpoints: [http://x:2379]\n").unwrap_err();
        assert!(err.contains("discovery-config is not supported"), "{err}");
        let err = load_str("- a\n").unwrap_err();
        assert!(err.contains("expected a mapping"), "{err}");
        let err = load_str("a: [\n").unwrap_err();
        assert!(err.starts_with("etcd.yaml: not valid YAML"), "{err}");
        assert!(!err.contains('\n'));
        assert!(load_str("").unwrap().given().next().is_none());
    }
}
