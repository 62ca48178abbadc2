//! The command line as Go's `flag` package reads it for etcd: `-name value`,
//! `--name value`, `-name=value`, `--name=value`; a boolean flag alone means
//! true and takes a value only after `=` (`--flag false` leaves "false" as an
//! argument, which etcd then refuses). Parsing stops at the first non-flag
//! argument or at `--`; etcd refuses anything left over.

use super::flags::lookup;
use super::settings::{Settings, Source};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run a member with these flags.
    Run,
    /// `-h`, `-help`, `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Parses `args` (without the program name or subcommand) into `settings`.
/// Errors are one line in etcd's (Go's) words.
pub fn parse(args: &[String], settings: &mut Settings) -> Result<Request, String> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if arg.len() < 2 || !arg.starts_with('-') {
            // The first non-flag argument ends the flags.
            break;
        }
        i += 1;
        if arg == "--" {
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(format!("bad flag syntax: {arg}"));
        }
        // Go looks for '=' from the name's second character on.
        let (name, value) = match body[1..].find('=') {
            Some(at) => (&body[..at + 1], Some(&body[at + 2..])),
            None => (body, None),
        };
        let Some(flag) = lookup(name) else {
            if name == "h" || name == "help" {
                return Ok(Request::Help);
            }
            return Err(format!("flag provided but not defined: -{name}"));
        };
        let value = match value {
            Some(v) => v.to_string(),
            None if flag.kind.is_bool() => "true".to_string(),
            None => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(format!("flag needs an argument: -{name}")),
            },
        };
        settings.set(name, &value, Source::Flag)?;
    }
    if let Some(extra) = args.get(i) {
        return Err(format!("{extra:?} is not a valid flag"));
    }
    if settings.is_set("version") && settings.bool("version") {
        return Ok(Request::Version);
    }
    Ok(Request::Run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<(Request, Settings), String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut s = Settings::default();
        let r = parse(&args, &mut s)?;
        Ok((r, s))
    }

    #[test]
    fn go_flag_forms() {
        for args in [
            &["-name", "a"][..],
            &["--name", "a"],
            &["-name=a"],
            &["--name=a"],
            &["--name", "x", "--name=a"],
        ] {
            let (r, s) = run(args).unwrap();
            assert_eq!(r, Request::Run);
            assert_eq!(s.text("name"), "a", "{args:?}");
        }
        // A value may start with a dash, and may hold '='.
        let (_, s) = run(&["--initial-cluster", "a=http://1.2.3.4:2380"]).unwrap();
        assert_eq!(s.text("initial-cluster"), "a=http://1.2.3.4:2380");
        let (_, s) = run(&["--name", "-x"]).unwrap();
        assert_eq!(s.text("name"), "-x");
    }

    #[test]
    fn booleans_take_a_value_only_after_equals() {
        let (_, s) =
            run(&["--pre-vote=false", "-strict-reconfig-check=0", "--force-new-cluster"]).unwrap();
        assert!(!s.bool("pre-vote"));
        assert!(!s.bool("strict-reconfig-check"));
        assert!(s.bool("force-new-cluster"));
        assert_eq!(run(&["--pre-vote", "false"]).unwrap_err(), "\"false\" is not a valid flag");
        assert_eq!(
            run(&["--pre-vote=no"]).unwrap_err(),
            "invalid boolean value \"no\" for -pre-vote: parse error"
        );
    }

    #[test]
    fn errors_and_requests() {
        assert_eq!(run(&["--nope"]).unwrap_err(), "flag provided but not defined: -nope");
        assert_eq!(run(&["--name"]).unwrap_err(), "flag needs an argument: -name");
        assert_eq!(run(&["---name=a"]).unwrap_err(), "bad flag syntax: ---name=a");
        assert_eq!(run(&["serve"]).unwrap_err(), "\"serve\" is not a valid flag");
        assert_eq!(run(&["--", "x"]).unwrap_err(), "\"x\" is not a valid flag");
        assert_eq!(run(&["-h"]).unwrap().0, Request::Help);
        assert_eq!(run(&["--help"]).unwrap().0, Request::Help);
        assert_eq!(run(&["--version"]).unwrap().0, Request::Version);
        assert_eq!(run(&["--version=false"]).unwrap().0, Request::Run);
        assert_eq!(run(&["--"]).unwrap().0, Request::Run);
        // etcd's ignored flags take no value and warn.
        let (_, s) = run(&["--vv", "--snapshot=x"]).unwrap();
        assert_eq!(s.warnings.len(), 2);
    }
}
