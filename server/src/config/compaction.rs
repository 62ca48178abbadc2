//! `--auto-compaction-mode` and `--auto-compaction-retention`, parsed as
//! etcd's `parseCompactionRetention` parses them: a plain non-negative whole
//! number is hours in periodic mode and revisions in revision mode; anything
//! else is a Go duration ("30m", "1h30m"). A retention of zero turns
//! auto-compaction off.

use std::time::Duration;

use super::duration;

/// How much history auto-compaction keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// `--auto-compaction-mode=periodic`: keep this much time of history.
    Periodic(Duration),
    /// `--auto-compaction-mode=revision`: keep this many revisions.
    Revision(u64),
}

/// Parses the two flags; `Ok(None)` when auto-compaction is off.
pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
    match mode {
        "periodic" | "revision" => {}
        "" => return Err("undefined auto-compaction-mode".into()),
        other => return Err(format!("unknown auto-compaction-mode {other:?}")),
    }
    let retention = if retention.is_empty() { "0" } else { retention };
    // Go's strconv.Atoi: an optional sign and decimal digits.
    let whole = retention.parse::<u64>().ok();
    let parsed = match (whole, mode) {
        (Some(0), _) => return Ok(None),
        (Some(n), "revision") => AutoCompaction::Revision(n),
        (Some(h), _) => AutoCompaction::Periodic(Duration::from_secs(h.saturating_mul(3600))),
        (None, _) => {
            let d = duration::parse(retention)
                .map_err(|e| format!("error parsing CompactionRetention: {e}"))?;
            if d.is_zero() {
                return Ok(None);
            }
            match mode {
                // etcd reads a duration in revision mode as that many
                // nanoseconds' worth of revisions; so does Logbook.
                "revision" => AutoCompaction::Revision(d.as_nanos() as u64),
                _ => AutoCompaction::Periodic(d),
            }
        }
    };
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_as_etcd_reads_it() {
        let p = |m: &str, r: &str| parse(m, r).unwrap();
        assert_eq!(p("periodic", "0"), None);
        assert_eq!(p("periodic", ""), None);
        assert_eq!(p("revision", "0"), None);
        assert_eq!(p("periodic", "1"), Some(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(p("periodic", "1h"), Some(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(p("periodic", "30m"), Some(AutoCompaction::Periodic(Duration::from_secs(1800))));
        assert_eq!(
            p("periodic", "1h30m"),
            Some(AutoCompaction::Periodic(Duration::from_secs(5400)))
        );
        assert_eq!(p("revision", "1000"), Some(AutoCompaction::Revision(1000)));
        assert_eq!(p("revision", "1us"), Some(AutoCompaction::Revision(1000)));
    }

    #[test]
    fn bad_retention_and_mode_use_etcds_words() {
        assert_eq!(parse("daily", "1").unwrap_err(), "unknown auto-compaction-mode \"daily\"");
        assert_eq!(parse("", "1").unwrap_err(), "undefined auto-compaction-mode");
        assert_eq!(
            parse("periodic", "-1").unwrap_err(),
            "error parsing CompactionRetention: time: missing unit in duration \"-1\""
        );
        assert_eq!(
            parse("periodic", "soon").unwrap_err(),
            "error parsing CompactionRetention: time: invalid duration \"soon\""
        );
    }
}
