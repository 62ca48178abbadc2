//! The second, independent checker: each history exported ([`super::history::export`]) and
//! checked by Porcupine (`tools/porcupine`, Go, github.com/anishathalye/porcupine), whose
//! per-key verdicts must agree with the harness's own checker
//! ([`super::linearizability`]). A disagreement is a bug in one of the two.
//!
//! The binary comes from `scripts/porcupine-bin.sh` (built into `~/.cache/logbook` on first
//! use, then reused), or from `LOGBOOK_PORCUPINE` if set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::history::{Record, export};
use super::linearizability::Verdict;

/// Porcupine's gives up on a key after this long (its verdict is then "Unknown").
const TIMEOUT: &str = "60s";

/// The checker binary: built (or found) once per test process.
fn binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("LOGBOOK_PORCUPINE") {
            return Ok(PathBuf::from(p));
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/porcupine-bin.sh");
        let out = std::process::Command::new(&script)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("").trim();
        Ok(PathBuf::from(last))
    })
    .clone()
}

/// Porcupine's verdict per key ("Ok", "Illegal" or "Unknown") for the keys that have
/// operations it checks.
pub fn check(records: &[Record]) -> Result<BTreeMap<usize, String>, String> {
    let bin = binary()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let path = dir.path().join("history.json");
    std::fs::write(&path, export(records)).map_err(|e| format!("writing the history: {e}"))?;
    let out = std::process::Command::new(&bin)
        .arg("-timeout")
        .arg(TIMEOUT)
        .arg(&path)
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut verdicts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("porcupine said {line:?}: {e}"))?;
        let key = v["key"].as_u64().ok_or_else(|| format!("no key in {line:?}"))? as usize;
        let result = v["result"].as_str().ok_or_else(|| format!("no result in {line:?}"))?;
        verdicts.insert(key, result.to_string());
    }
    Ok(verdicts)
}

/// Runs Porcupine on `records` and returns every disagreement with the harness's own
/// verdicts (`ours`, per key), one line each; a key either gave up on is not compared.
pub fn disagreements(records: &[Record], ours: &BTreeMap<usize, Verdict>) -> Vec<String> {
    let theirs = match check(records) {
        Ok(t) => t,
        Err(e) => return vec![format!("porcupine: {e}")],
    };
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<usize> =
        ours.keys().chain(theirs.keys()).copied().collect();
    for key in keys {
        let mine = ours.get(&key).cloned().unwrap_or(Verdict::Linearizable);
        let theirs = theirs.get(&key).map(String::as_str).unwrap_or("Ok");
        // A key either checker gave up on is not compared.
        let agree = matches!(
            (&mine, theirs),
            (Verdict::Inconclusive, _)
                | (_, "Unknown")
                | (Verdict::Linearizable, "Ok")
                | (Verdict::NotLinearizable { .. }, "Illegal")
        );
        if !agree {
            out.push(format!(
                "checkers disagree on key {key}: the harness's checker says {mine:?}, \
                 Porcupine says {theirs} (a bug in one of them)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks;
    use crate::history::{Kind, Outcome};
    use crate::linearizability::NEVER;

    fn rec(client: usize, kind: Kind, invoke: u64, ret: u64, outcome: Outcome) -> Record {
        Record { client, member: 0, key: 0, kind, invoke, ret, outcome }
    }

    fn get(client: usize, value: Option<u64>, invoke: u64, ret: u64) -> Record {
        let outcome = Outcome::Get { value, mod_rev: 0, rev: 0 };
        rec(client, Kind::Get { serializable: false }, invoke, ret, outcome)
    }

    fn put(client: usize, value: u64, invoke: u64, ret: u64) -> Record {
        rec(client, Kind::Put { value }, invoke, ret, Outcome::Put { rev: 0 })
    }

    /// Both checkers' verdicts on key 0 (asserting they agree).
    fn both(records: &[Record]) -> (bool, bool) {
        let lin = checks::linearizability(records);
        let ours = lin.anomalies.iter().all(|a| !a.starts_with("key 0 "));
        let theirs = check(records).expect("porcupine runs");
        let theirs = theirs.get(&0).map(String::as_str).unwrap_or("Ok") == "Ok";
        (ours, theirs)
    }

    #[test]
    fn both_checkers_accept_a_linearizable_history() {
        let h = vec![
            put(0, 1, 0, 10),
            get(1, None, 1, 2),
            get(1, Some(1), 3, 4),
            rec(
                2,
                Kind::Cas { expect: Some(1), new: 2 },
                11,
                12,
                Outcome::Cas { succeeded: true, got: None, got_mod_rev: 0, rev: 0 },
            ),
            rec(0, Kind::Put { value: 3 }, 13, NEVER, Outcome::Unknown("timeout".into())),
            get(1, Some(2), 14, 15),
            get(1, Some(3), 16, 17),
            rec(2, Kind::Delete, 18, 19, Outcome::Delete { removed: Some(3), rev: 0 }),
            rec(
                0,
                Kind::Get { serializable: true },
                20,
                21,
                Outcome::Get { value: Some(99), mod_rev: 0, rev: 0 },
            ),
            get(1, None, 22, 23),
        ];
        assert_eq!(both(&h), (true, true));
    }

    /// ci_crashes_and_pauses, seed 777869848: a put attached to lease L whose answer was
    /// lost (its value never read), then Revoke(L), then a get of nothing. The put took
    /// effect and the revoke deleted the key; both checkers used to drop the unknown put
    /// as "never observed" and call the history not linearizable.
    #[test]
    fn an_unknown_leased_put_seen_only_through_its_revoke_is_linearizable() {
        let lease = 98413215020227144;
        let h = vec![
            put(0, 497, 0, 10),
            rec(1, Kind::PutLease { value: 504, lease }, 11, NEVER, Outcome::Unknown("t".into())),
            rec(2, Kind::Put { value: 506 }, 12, NEVER, Outcome::Unknown("t".into())),
            rec(1, Kind::Revoke { lease }, 20, 21, Outcome::Revoke { rev: 0 }),
            get(0, None, 22, 23),
        ];
        assert_eq!(both(&h), (true, true));
        // Without the leased put nothing explains the get: both must still say so.
        let mut without = h.clone();
        without.remove(1);
        assert_eq!(both(&without), (false, false));
    }

    #[test]
    fn both_checkers_reject_a_stale_read() {
        let h = vec![put(0, 1, 0, 1), put(0, 2, 2, 3), get(1, Some(1), 4, 5)];
        assert_eq!(both(&h), (false, false));
    }

    #[test]
    fn both_checkers_reject_a_lost_write() {
        let h = vec![put(0, 7, 0, 1), get(1, Some(7), 2, 3), get(2, None, 5, 6)];
        assert_eq!(both(&h), (false, false));
    }

    #[test]
    fn both_checkers_reject_a_lost_update_through_cas() {
        let cas = |c, new, i, r| {
            rec(
                c,
                Kind::Cas { expect: Some(1), new },
                i,
                r,
                Outcome::Cas { succeeded: true, got: None, got_mod_rev: 0, rev: 0 },
            )
        };
        let h = vec![put(0, 1, 0, 1), cas(1, 2, 2, 5), cas(2, 3, 3, 6)];
        assert_eq!(both(&h), (false, false));
    }

    /// ci_crashes_and_pauses seed 224624538: a failed operation recorded as never
    /// returning (ret u64::MAX) was exported as that number, which Porcupine's reader
    /// refused (it does not fit an int64).
    #[test]
    fn a_failed_operation_that_never_returned_is_exported() {
        let h = vec![
            put(0, 1, 0, 1),
            rec(1, Kind::Put { value: 2 }, 2, NEVER, Outcome::Failed("no leader".into())),
            get(2, Some(1), 3, 4),
        ];
        assert_eq!(both(&h), (true, true));
    }

    #[test]
    fn a_disagreement_is_reported() {
        let h = vec![put(0, 1, 0, 1), put(0, 2, 2, 3), get(1, Some(1), 4, 5)];
        let mut ours = BTreeMap::new();
        ours.insert(0, Verdict::Linearizable);
        let d = disagreements(&h, &ours);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("Porcupine says Illegal"), "{d:?}");
    }
}
