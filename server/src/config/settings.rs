//! The values given for etcd's flags, from whichever source gave them (the
//! command line, `ETCD_*` variables, or the config file), each checked
//! against its flag's [`Kind`] when it is set, as Go's flag package does.
//! Flags not given read as etcd's default from the [`FLAGS`] table.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration;
use super::flags::{FLAGS, Flag, Handling, Kind, lookup};

/// Where a value came from: decides how an error about it is worded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line (`-name value`, `--name=value`, ...).
    Flag,
    /// An `ETCD_*` environment variable.
    Env,
    /// The `--config-file` YAML, at this path.
    File(String),
}

/// A checked value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// Str, List and Choice flags: the text as given.
    Text(String),
    Uint(u64),
    Int(i64),
    Duration(Duration),
}

/// The flags that were given, by the name they were given as.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, (Value, Source)>,
    /// Lines for the start-up log at warning level (ignored flags, ...).
    pub warnings: Vec<String>,
    /// Lines for the start-up log at info level (variables used, ...).
    pub notices: Vec<String>,
}

impl Settings {
    /// Sets flag `name` from text in the flag's own syntax. The error is one
    /// line in Go's words for the source.
    pub fn set(&mut self, name: &str, text: &str, source: Source) -> Result<(), String> {
        let flag = lookup(name).ok_or_else(|| match &source {
            Source::Flag => format!("flag provided but not defined: -{name}"),
            Source::Env => format!("unrecognized environment variable for flag {name}"),
            Source::File(path) => format!("{path}: unknown setting {name:?}"),
        })?;
        let value = parse_value(flag, text).map_err(|why| match &source {
            Source::Flag if flag.kind.is_bool() => {
                format!("invalid boolean value {text:?} for -{name}: {why}")
            }
            Source::Flag => format!("invalid value {text:?} for flag -{name}: {why}"),
            Source::Env => format!("invalid value {text:?} for {}: {why}", flag.env_key()),
            Source::File(path) => format!("{path}: invalid value {text:?} for {name}: {why}"),
        })?;
        if flag.kind == Kind::Obsolete {
            self.warnings.push(format!("flag is no longer supported - ignoring: --{name}"));
        }
        self.values.insert(flag.name, (value, source));
        Ok(())
    }

    /// Sets an already-typed value (the config file's booleans and numbers).
    pub fn set_value(&mut self, flag: &'static Flag, value: Value, source: Source) {
        self.values.insert(flag.name, (value, source));
    }

    /// Whether `name` was given (by its own name, not through a rename).
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Where `name` was given from, if it was.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.values.get(name).map(|(_, s)| s)
    }

    /// The flags given, with their sources.
    pub fn given(&self) -> impl Iterator<Item = (&'static str, &Value, &Source)> {
        self.values.iter().map(|(n, (v, s))| (*n, v, s))
    }

    /// Removes a given value (a renamed flag moved to its new name).
    pub fn take(&mut self, name: &str) -> Option<(Value, Source)> {
        self.values.remove(name)
    }

    /// The value of `name`: as given, or etcd's default.
    pub fn get(&self, name: &str) -> Value {
        if let Some((v, _)) = self.values.get(name) {
            return v.clone();
        }
        let flag = lookup(name).unwrap_or_else(|| panic!("no flag {name} in the table"));
        parse_value(flag, flag.default)
            .unwrap_or_else(|e| panic!("default of --{name} does not parse: {e}"))
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            Value::Bool(b) => b,
            other => panic!("--{name} is not a bool: {other:?}"),
        }
    }

    pub fn text(&self, name: &str) -> String {
        match self.get(name) {
            Value::Text(t) => t,
            other => panic!("--{name} is not text: {other:?}"),
        }
    }

    /// A comma-separated flag's entries, trimmed, empty ones dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        split_list(&self.text(name))
    }

    pub fn uint(&self, name: &str) -> u64 {
        match self.get(name) {
            Value::Uint(n) => n,
            other => panic!("--{name} is not unsigned: {other:?}"),
        }
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Value::Int(n) => n,
            other => panic!("--{name} is not signed: {other:?}"),
        }
    }

    pub fn duration(&self, name: &str) -> Duration {
        match self.get(name) {
            Value::Duration(d) => d,
            other => panic!("--{name} is not a duration: {other:?}"),
        }
    }

    /// Whether `name` was given with a value other than etcd's default.
    pub fn differs_from_default(&self, name: &str) -> bool {
        let Some((v, _)) = self.values.get(name) else { return false };
        let flag = lookup(name).expect("set flags are in the table");
        parse_value(flag, flag.default).ok().as_ref() != Some(v)
    }

    /// The flags whose handling is `Handling::Renamed` and were given.
    pub fn renamed_given(&self) -> Vec<(&'static str, &'static str)> {
        FLAGS
            .iter()
            .filter_map(|f| match f.handling {
                Handling::Renamed(to) if self.is_set(f.name) => Some((f.name, to)),
                _ => None,
            })
            .collect()
    }
}

/// Splits a comma-separated list as etcd's list flags are written.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Checks `text` against the flag's kind. The error is Go's wording after
/// the "invalid value ... for flag -x: " prefix.
pub fn parse_value(flag: &Flag, text: &str) -> Result<Value, String> {
    Ok(match flag.kind {
        Kind::Bool => Value::Bool(parse_bool(text).ok_or("parse error")?),
        Kind::Obsolete => Value::Bool(true),
        Kind::Str | Kind::List => Value::Text(text.to_string()),
        Kind::Choice(valid) => {
            if !valid.contains(&text) {
                let list = valid.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
                return Err(format!("invalid value (valid values are {list})"));
            }
            Value::Text(text.to_string())
        }
        Kind::Uint(bits) => {
            let n = parse_go_uint(text).ok_or("parse error")?;
            if bits < 64 && n >> bits != 0 {
                return Err("value out of range".into());
            }
            Value::Uint(n)
        }
        Kind::Int(bits) => {
            let (negative, digits) = match text.as_bytes().first() {
                Some(b'-') => (true, &text[1..]),
                Some(b'+') => (false, &text[1..]),
                _ => (false, text),
            };
            let magnitude = parse_go_uint(digits).ok_or("parse error")?;
            let limit = 1u64 << (bits - 1);
            let n = if negative {
                if magnitude > limit {
                    return Err("value out of range".into());
                }
                (magnitude as i128).wrapping_neg() as i64
            } else {
                if magnitude >= limit {
                    return Err("value out of range".into());
                }
                magnitude as i64
            };
            Value::Int(n)
        }
        Kind::Duration => Value::Duration(duration::parse(text).map_err(|e| match e {
            duration::DurationError::Negative(_) => e.to_string(),
            _ => "parse error".to_string(),
        })?),
    })
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(text, 0, 64)`: decimal, or 0x/0o/0b prefixed, or
/// a leading 0 for octal; underscores between digits only with a prefix.
fn parse_go_uint(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.contains('_') {
        let well_placed = prefixed
            && !digits.starts_with('_')
            && !digits.ends_with('_')
            && !digits.contains("__");
        if !well_placed {
            return None;
        }
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses() {
        for f in FLAGS {
            parse_value(f, f.default).unwrap_or_else(|e| panic!("--{}: {e}", f.name));
        }
    }

    #[test]
    fn numbers_parse_as_gos_strconv() {
        assert_eq!(parse_go_uint("128"), Some(128));
        assert_eq!(parse_go_uint("0x10"), Some(16));
        assert_eq!(parse_go_uint("010"), Some(8));
        assert_eq!(parse_go_uint("0b101"), Some(5));
        assert_eq!(parse_go_uint("0x_1_0"), None);
        assert_eq!(parse_go_uint("0x1_0"), Some(16));
        assert_eq!(parse_go_uint("1_000"), None);
        assert_eq!(parse_go_uint("-1"), None);
        assert_eq!(parse_go_uint(""), None);
        assert_eq!(parse_go_uint("0"), Some(0));
        let u32_flag = lookup("max-concurrent-streams").unwrap();
        assert_eq!(parse_value(u32_flag, "4294967296").unwrap_err(), "value out of range");
        let i64_flag = lookup("quota-backend-bytes").unwrap();
        assert_eq!(parse_value(i64_flag, "-5").unwrap(), Value::Int(-5));
        assert_eq!(parse_value(i64_flag, "x").unwrap_err(), "parse error");
    }

    #[test]
    fn errors_are_worded_per_source() {
        let mut s = Settings::default();
        let e = s.set("max-txn-ops", "many", Source::Flag).unwrap_err();
        assert_eq!(e, "invalid value \"many\" for flag -max-txn-ops: parse error");
        let e = s.set("pre-vote", "maybe", Source::Flag).unwrap_err();
        assert_eq!(e, "invalid boolean value \"maybe\" for -pre-vote: parse error");
        let e = s.set("max-txn-ops", "many", Source::Env).unwrap_err();
        assert_eq!(e, "invalid value \"many\" for ETCD_MAX_TXN_OPS: parse error");
        let e = s.set("nope", "1", Source::Flag).unwrap_err();
        assert_eq!(e, "flag provided but not defined: -nope");
        let e = s.set("grpc-keepalive-timeout", "20", Source::Flag).unwrap_err();
        assert_eq!(e, "invalid value \"20\" for flag -grpc-keepalive-timeout: parse error");
        s.set("grpc-keepalive-timeout", "1m30s", Source::Flag).unwrap();
        assert_eq!(s.duration("grpc-keepalive-timeout"), Duration::from_secs(90));
        assert_eq!(s.duration("grpc-keepalive-min-time"), Duration::from_secs(5));
        assert!(s.differs_from_default("grpc-keepalive-timeout"));
        s.set("v", "", Source::Flag).unwrap();
        assert_eq!(s.warnings, vec!["flag is no longer supported - ignoring: --v".to_string()]);
    }
}
