//! `ETCD_*` environment variables, read as etcd's `flags.SetFlagsFromEnv`
//! reads them: every flag `--foo-bar` may come from `ETCD_FOO_BAR` when it is
//! not on the command line and the variable is not empty. A variable whose
//! flag is also on the command line stops start-up (etcd: "conflicting
//! environment variable ... is shadowed by corresponding command-line flag"),
//! and an `ETCD_*` variable that names no flag is logged as unrecognized.
//! `ETCD_VERSION` is never read as `--version` (etcd 3.5+ warns about it).

use std::collections::BTreeSet;

use super::flags::FLAGS;
use super::settings::{Settings, Source};

/// etcd's special variable, never read as a flag.
const VERSION_KEY: &str = "ETCD_VERSION";

/// Applies `env` (the process environment, as pairs) to `settings`, whose
/// command-line flags are already set. Info lines go to `settings.notices`,
/// warnings to `settings.warnings`; a conflict or a bad value is the error.
pub fn apply(settings: &mut Settings, env: &[(String, String)]) -> Result<(), String> {
    let mut on_command_line: BTreeSet<String> =
        settings.given().map(|(name, ..)| super::flags::env_key(name)).collect();
    let given_logbook: Vec<String> = settings
        .given()
        .filter(|(name, ..)| super::flags::is_logbook_only(name))
        .map(|(name, ..)| super::flags::logbook_env_key(name))
        .collect();
    on_command_line.extend(given_logbook);
    let lookup_env = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());

    if let Some(v) = lookup_env(VERSION_KEY).filter(|v| !v.is_empty()) {
        settings
            .warnings
            .push(format!("cannot set special environment variable {VERSION_KEY}={v}"));
    }
    let mut used = BTreeSet::new();
    for flag in FLAGS.iter().filter(|f| f.name != "version") {
        let mut key = flag.env_key();
        if on_command_line.contains(&key) {
            continue;
        }
        // A Logbook-only flag may also come from LOGBOOK_<NAME> (ETCD_<NAME> wins).
        if super::flags::is_logbook_only(flag.name) && lookup_env(&key).is_none_or(str::is_empty) {
            key = super::flags::logbook_env_key(flag.name);
        }
        let Some(value) = lookup_env(&key).filter(|v| !v.is_empty()) else { continue };
        used.insert(key.clone());
        settings
            .set(flag.name, value, Source::Env)
            .map_err(|e| e.replace(&flag.env_key(), &key))?;
        settings.notices.push(format!("recognized and used environment variable {key}={value}"));
    }
    for (key, value) in env {
        if used.contains(key) || key == VERSION_KEY {
            continue;
        }
        if on_command_line.contains(key) {
            return Err(format!(
                "conflicting environment variable {key:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
            ));
        }
        if key.starts_with("ETCD_") {
            settings.warnings.push(format!("unrecognized environment variable {key}={value}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn variables_set_flags_not_on_the_command_line() {
        let mut s = Settings::default();
        apply(
            &mut s,
            &env(&[
                ("ETCD_NAME", "n1"),
                ("ETCD_PRE_VOTE", "false"),
                ("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", "5s"),
                ("ETCD_DATA_DIR", ""),
                ("ETCDCTL_API", "3"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(s.text("name"), "n1");
        assert!(!s.bool("pre-vote"));
        assert!(s.is_set("experimental-watch-progress-notify-interval"));
        assert!(!s.is_set("data-dir"));
        assert_eq!(s.notices.len(), 3, "{:?}", s.notices);
        // An empty variable is not used, so etcd calls it unrecognized.
        assert_eq!(s.warnings, vec!["unrecognized environment variable ETCD_DATA_DIR="]);
    }

    #[test]
    fn unknown_variables_warn_and_version_is_special() {
        let mut s = Settings::default();
        apply(&mut s, &env(&[("ETCD_NOT_A_FLAG", "x"), ("ETCD_VERSION", "3.5")])).unwrap();
        assert_eq!(
            s.warnings,
            vec![
                "cannot set special environment variable ETCD_VERSION=3.5".to_string(),
                "unrecognized environment variable ETCD_NOT_A_FLAG=x".to_string(),
            ]
        );
        assert!(!s.is_set("version"));
    }

    #[test]
    fn a_variable_shadowed_by_a_flag_stops_start_up() {
        let mut s = Settings::default();
        s.set("name", "from-flag", Source::Flag).unwrap();
        let err = apply(&mut s, &env(&[("ETCD_NAME", "from-env")])).unwrap_err();
        assert_eq!(
            err,
            "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
        );
    }

    #[test]
    fn logbook_only_flags_read_logbook_variables_too() {
        let mut s = Settings::default();
        apply(&mut s, &env(&[("LOGBOOK_WAL_BACKEND", "sync")])).unwrap();
        assert_eq!(s.text("wal-backend"), "sync");
        let mut s = Settings::default();
        apply(&mut s, &env(&[("ETCD_WAL_BACKEND", "io-uring")])).unwrap();
        assert_eq!(s.text("wal-backend"), "io-uring");
        let mut s = Settings::default();
        let err = apply(&mut s, &env(&[("LOGBOOK_WAL_BACKEND", "fast")])).unwrap_err();
        assert!(err.contains("LOGBOOK_WAL_BACKEND"), "{err}");
        let mut s = Settings::default();
        s.set("wal-backend", "sync", Source::Flag).unwrap();
        let err = apply(&mut s, &env(&[("LOGBOOK_WAL_BACKEND", "sync")])).unwrap_err();
        assert!(err.contains("conflicting environment variable \"LOGBOOK_WAL_BACKEND\""), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let mut s = Settings::default();
        let err = apply(&mut s, &env(&[("ETCD_MAX_TXN_OPS", "lots")])).unwrap_err();
        assert_eq!(err, "invalid value \"lots\" for ETCD_MAX_TXN_OPS: parse error");
    }
}
