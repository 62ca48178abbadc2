//! Go's duration syntax (`time.ParseDuration`), which etcd's duration flags
//! take: "5s", "100ms", "1h30m", "1.5h", "0". A sign is allowed, as in Go;
//! a negative duration is refused by [`parse`] because no etcd setting means
//! anything by one.

use std::time::Duration;

/// Why a duration did not parse, worded as Go's `time.ParseDuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// `time: invalid duration "x"`.
    Invalid(String),
    /// `time: missing unit in duration "5"`.
    MissingUnit(String),
    /// `time: unknown unit "x" in duration "5x"`.
    UnknownUnit { unit: String, text: String },
    /// A negative duration (Go would accept it).
    Negative(String),
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::Invalid(t) => write!(f, "time: invalid duration {t:?}"),
            DurationError::MissingUnit(t) => write!(f, "time: missing unit in duration {t:?}"),
            DurationError::UnknownUnit { unit, text } => {
                write!(f, "time: unknown unit {unit:?} in duration {text:?}")
            }
            DurationError::Negative(t) => write!(f, "negative duration {t:?}"),
        }
    }
}

/// Nanoseconds in one of Go's duration units.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parses a Go duration that must not be negative.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let (negative, nanos) = parse_signed(text)?;
    if negative && nanos != 0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Parses a Go duration into its sign and magnitude in nanoseconds (at most
/// Go's `math.MaxInt64`, as Go checks).
pub fn parse_signed(text: &str) -> Result<(bool, u128), DurationError> {
    let invalid = || DurationError::Invalid(text.to_string());
    let mut s = text;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((negative, 0));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    // Go keeps the total within int64 nanoseconds (2^63 for a negative one).
    let limit: u128 = if negative { 1 << 63 } else { (1 << 63) - 1 };
    let mut total: u128 = 0;
    while !s.is_empty() {
        // The number: digits, optionally a fraction; at least one digit.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let (frac_part, rest) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(n)
            }
            None => ("", rest),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        // The unit: everything up to the next digit or '.'.
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(text.to_string()));
        }
        let per = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            text: text.to_string(),
        })?;
        let int: u128 =
            if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| invalid())? };
        let mut value = int.checked_mul(per).ok_or_else(invalid)?;
        // The fraction, to nanosecond precision (Go rounds down too).
        let mut scale = per;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).filter(|t| *t <= limit).ok_or_else(invalid)?;
        s = rest;
    }
    Ok((negative, total))
}

/// Formats a duration the way Go's `Duration.String` does ("1h30m0s",
/// "100ms", "0s"), for messages and `--help`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, per) = match nanos {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", trim_fraction(nanos, per));
    }
    let secs = nanos / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `value / per` with the fraction's trailing zeros dropped.
fn trim_fraction(value: u128, per: u128) -> String {
    let whole = value / per;
    let frac = value % per;
    if frac == 0 {
        return whole.to_string();
    }
    let width = per.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |t: &str| parse(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("100ms"), Duration::from_millis(100));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("2h45m10.5s"), Duration::from_millis((2 * 3600 + 45 * 60 + 10) * 1000 + 500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("10μs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("-0s"), Duration::ZERO);
    }

    #[test]
    fn go_duration_errors_read_as_gos() {
        let err = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(err(""), "time: invalid duration \"\"");
        assert_eq!(err("5"), "time: missing unit in duration \"5\"");
        assert_eq!(err("5x"), "time: unknown unit \"x\" in duration \"5x\"");
        assert_eq!(err("s"), "time: invalid duration \"s\"");
        assert_eq!(err("."), "time: invalid duration \".\"");
        assert_eq!(err("1h-5m"), "time: unknown unit \"h-\" in duration \"1h-5m\"");
        assert_eq!(err("-5s"), "negative duration \"-5s\"");
        assert_eq!(err("9999999999h"), "time: invalid duration \"9999999999h\"");
        assert!(parse_signed("-5s").is_ok());
    }

    #[test]
    fn formats_as_go_does() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(600)), "10m0s");
        assert_eq!(format(Duration::from_secs(7200)), "2h0m0s");
        assert_eq!(format(Duration::from_millis(100)), "100ms");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_secs(20)), "20s");
        assert_eq!(format(Duration::from_micros(3)), "3µs");
    }
}
