//! The logging flags as etcd's `embed.Config.setupLogging` takes them:
//! `--logger`, `--log-outputs`, `--log-level`, `--log-format`,
//! `--enable-log-rotation` and `--log-rotation-config-json`, checked with
//! etcd's rules and error messages into a [`LogConfig`].

use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `--log-level` (`--debug` means debug): debug, info, warn, error, panic or fatal.
    pub level: String,
    /// `--log-format`: zap's JSON encoder, or its console (tab-separated) one.
    pub format: LogFormat,
    /// `--log-outputs`, in order, without repeats.
    pub outputs: Vec<LogOutput>,
    /// `--log-rotation-config-json`, when `--enable-log-rotation` is on (it
    /// applies to the one file output).
    pub rotation: Option<LogRotation>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Console,
}

/// One `--log-outputs` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// "default" and "stderr".
    Stderr,
    Stdout,
    /// "systemd/journal": Logbook has no journald writer and writes to
    /// stderr instead (what etcd falls back to when journald is absent),
    /// which systemd sends to the journal anyway.
    Journal,
    /// A file path, opened for appending (created when missing).
    File(String),
}

/// lumberjack's settings, as etcd reads them from `--log-rotation-config-json`
/// (unknown keys are ignored, as Go's JSON decoding does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LogRotation {
    /// Megabytes a file may reach before it is rotated (0: 100).
    pub maxsize: u64,
    /// Days a rotated file is kept (0: no age limit).
    pub maxage: u64,
    /// Rotated files kept (0: all, unless `maxage` removes them).
    pub maxbackups: u64,
    /// Name rotated files by local time instead of UTC.
    pub localtime: bool,
    /// gzip rotated files.
    pub compress: bool,
}

impl LogRotation {
    /// The size at which the file is rotated, in bytes.
    pub fn max_bytes(&self) -> u64 {
        let mb = if self.maxsize == 0 { 100 } else { self.maxsize };
        mb.saturating_mul(1024 * 1024)
    }
}

/// Checks the logging flags as etcd does, returning etcd's error message.
pub(super) fn parse(
    logger: &str,
    level: String,
    format: &str,
    outputs: &[String],
    rotation: Option<&str>,
) -> Result<LogConfig, String> {
    match logger {
        "zap" => {}
        // etcd 3.4's other logger; 3.5 and 3.6 refuse it. Logbook accepts
        // etcd 3.4's command lines, so it logs zap's lines instead (a
        // warning from the flag table says so).
        "capnslog" => {}
        other => return Err(format!("unknown logger option {other:?}")),
    }
    let format = match format {
        "json" | "" => LogFormat::Json,
        "console" => LogFormat::Console,
        other => {
            return Err(format!("unknown log format: {other}, supported values json, console"));
        }
    };
    let outputs: Vec<String> =
        if outputs.is_empty() { vec!["default".to_string()] } else { outputs.to_vec() };
    if outputs.len() > 1 && outputs.iter().any(|o| o == "default") {
        return Err("multi logoutput for \"default\" is not supported yet".to_string());
    }
    let rotation = match rotation {
        None => None,
        Some(json) => {
            let files = outputs
                .iter()
                .filter(|o| !matches!(o.as_str(), "default" | "stderr" | "stdout"))
                .count();
            if (outputs.len() == 1 && files == 0) || files > 1 {
                return Err("--log-outputs requires a single file path when --log-rotate-config-json is defined".to_string());
            }
            Some(serde_json::from_str::<LogRotation>(json).map_err(|e| {
                if e.is_syntax() || e.is_eof() {
                    format!("improperly formatted log rotation config: {e}")
                } else {
                    format!("invalid log rotation config: {e}")
                }
            })?)
        }
    };
    let mut parsed: Vec<LogOutput> = Vec::new();
    for o in &outputs {
        let out = match o.as_str() {
            "default" | "stderr" => LogOutput::Stderr,
            "stdout" => LogOutput::Stdout,
            "systemd/journal" => LogOutput::Journal,
            path => LogOutput::File(path.to_string()),
        };
        // zap opens each distinct sink once.
        if !parsed.contains(&out) {
            parsed.push(out);
        }
    }
    Ok(LogConfig { level, format, outputs: parsed, rotation })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn etcds_checks_and_messages() {
        let ok = |o: &[&str], r: Option<&str>| parse("zap", "info".into(), "json", &outs(o), r);
        assert_eq!(ok(&[], None).unwrap().outputs, vec![LogOutput::Stderr]);
        assert_eq!(
            ok(&["stderr", "stdout", "/tmp/a.log", "stderr"], None).unwrap().outputs,
            vec![LogOutput::Stderr, LogOutput::Stdout, LogOutput::File("/tmp/a.log".into())]
        );
        assert_eq!(
            ok(&["default", "stdout"], None).unwrap_err(),
            "multi logoutput for \"default\" is not supported yet"
        );
        let single =
            "--log-outputs requires a single file path when --log-rotate-config-json is defined";
        assert_eq!(ok(&["stderr"], Some("{}")).unwrap_err(), single);
        assert_eq!(ok(&["/a", "/b"], Some("{}")).unwrap_err(), single);
        // A file next to stderr is one file: etcd allows it.
        let c = ok(&["stderr", "/a"], Some(r#"{"maxsize": 1, "extra": true}"#)).unwrap();
        assert_eq!(c.rotation.unwrap().max_bytes(), 1 << 20);
        let err = ok(&["/a"], Some("{maxsize")).unwrap_err();
        assert!(err.starts_with("improperly formatted log rotation config: "), "{err}");
        let err = ok(&["/a"], Some(r#"{"maxsize": "big"}"#)).unwrap_err();
        assert!(err.starts_with("invalid log rotation config: "), "{err}");
        assert_eq!(LogRotation::default().max_bytes(), 100 << 20);
        assert_eq!(
            parse("glog", "info".into(), "json", &[], None).unwrap_err(),
            "unknown logger option \"glog\""
        );
        assert_eq!(
            parse("zap", "info".into(), "console", &[], None).unwrap().format,
            LogFormat::Console
        );
    }
}
