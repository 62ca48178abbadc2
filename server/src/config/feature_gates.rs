//! `--feature-gates=Name=true,...` (etcd 3.6) and the `--experimental-*`
//! booleans it replaced, combined as etcd's
//! `SetFeatureGatesFromExperimentalFlags` combines them: a gate may be given
//! one way or the other, never both.

use std::collections::BTreeMap;

use super::flags::{FEATURE_GATES, FLAGS, Handling};
use super::settings::{Settings, parse_bool};

/// Every server feature gate's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureGates(BTreeMap<&'static str, bool>);

impl FeatureGates {
    /// Whether gate `name` (one of etcd's) is on.
    pub fn enabled(&self, name: &str) -> bool {
        *self.0.get(name).unwrap_or_else(|| panic!("{name} is not an etcd feature gate"))
    }

    /// The gates set to something other than their default.
    pub fn changed(&self) -> impl Iterator<Item = (&'static str, bool)> + '_ {
        FEATURE_GATES
            .iter()
            .filter(|(name, default, _)| self.0[name] != *default)
            .map(|(name, ..)| (*name, self.0[name]))
    }
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates(FEATURE_GATES.iter().map(|(n, d, _)| (*n, *d)).collect())
    }
}

/// The gates from `--feature-gates` and the experimental flags in `settings`.
pub fn resolve(settings: &Settings) -> Result<FeatureGates, String> {
    let text = settings.text("feature-gates");
    let mut gates = parse(&text)?;
    for flag in FLAGS {
        let Handling::Gate(gate) = flag.handling else { continue };
        if !settings.is_set(flag.name) {
            continue;
        }
        let value = settings.bool(flag.name);
        if text.contains(gate) {
            let current = gates.enabled(gate);
            return Err(format!(
                "cannot specify both flags: --{}={value} and --feature-gates={gate}={current} at the same time, please just use --feature-gates={gate}={current}",
                flag.name
            ));
        }
        gates.0.insert(FEATURE_GATES.iter().find(|(n, ..)| *n == gate).unwrap().0, value);
    }
    Ok(gates)
}

/// Parses `Name=bool,...` as etcd's `featureGate.Set`, with `AllAlpha` and
/// `AllBeta` setting every alpha (beta) gate not named on its own.
pub fn parse(text: &str) -> Result<FeatureGates, String> {
    let mut given: Vec<(String, bool)> = Vec::new();
    for part in text.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => return Err(format!("missing bool value for {}", part.trim())),
        };
        let b = parse_bool(value).ok_or_else(|| {
            format!("invalid value of {key}={value}, err: strconv.ParseBool: parsing {value:?}: invalid syntax")
        })?;
        given.push((key.to_string(), b));
    }
    let mut gates = FeatureGates::default();
    for (key, value) in &given {
        let all = match key.as_str() {
            "AllAlpha" => Some(true),
            "AllBeta" => Some(false),
            _ => None,
        };
        match all {
            Some(alpha) => {
                for (name, _, is_alpha) in FEATURE_GATES {
                    if *is_alpha == alpha && !given.iter().any(|(k, _)| k == name) {
                        gates.0.insert(name, *value);
                    }
                }
            }
            None => {
                let Some((name, ..)) = FEATURE_GATES.iter().find(|(n, ..)| n == key) else {
                    return Err(format!("unrecognized feature gate: {key}"));
                };
                gates.0.insert(name, *value);
            }
        }
    }
    Ok(gates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::Source;

    #[test]
    fn parses_etcds_syntax() {
        let g = parse("InitialCorruptCheck=true, LeaseCheckpoint=T").unwrap();
        assert!(g.enabled("InitialCorruptCheck"));
        assert!(g.enabled("LeaseCheckpoint"));
        assert!(g.enabled("TxnModeWriteWithSharedBuffer"));
        assert!(!g.enabled("CompactHashCheck"));
        let g = parse("AllAlpha=true,CompactHashCheck=false").unwrap();
        assert!(g.enabled("InitialCorruptCheck"));
        assert!(!g.enabled("CompactHashCheck"));
        assert_eq!(parse("Nope=true").unwrap_err(), "unrecognized feature gate: Nope");
        assert_eq!(parse("LeaseCheckpoint").unwrap_err(), "missing bool value for LeaseCheckpoint");
        assert!(
            parse("LeaseCheckpoint=yes")
                .unwrap_err()
                .starts_with("invalid value of LeaseCheckpoint=yes")
        );
        assert_eq!(parse("").unwrap(), FeatureGates::default());
    }

    #[test]
    fn experimental_flags_set_gates_but_not_both_ways() {
        let mut s = Settings::default();
        s.set("experimental-initial-corrupt-check", "true", Source::Flag).unwrap();
        assert!(resolve(&s).unwrap().enabled("InitialCorruptCheck"));
        s.set("feature-gates", "InitialCorruptCheck=false", Source::Flag).unwrap();
        assert_eq!(
            resolve(&s).unwrap_err(),
            "cannot specify both flags: --experimental-initial-corrupt-check=true and --feature-gates=InitialCorruptCheck=false at the same time, please just use --feature-gates=InitialCorruptCheck=false"
        );
    }
}
