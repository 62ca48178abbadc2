//! What the clients saw: every operation with its member, key, invoke and return times
//! (nanoseconds since the run began) and outcome.

use std::fmt;

/// An operation as the client issued it. Keys are indices into the run's key set;
/// values are unique numbers, written as their decimal string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Get {
        serializable: bool,
    },
    Put {
        value: u64,
    },
    /// A put attached to `lease`, a lease granted for this put alone (so revoking it
    /// touches this key only and the per-key check still holds).
    PutLease {
        value: u64,
        lease: i64,
    },
    /// LeaseRevoke of a lease this client attached to the key: deletes the key if the
    /// lease is still attached to it.
    Revoke {
        lease: i64,
    },
    Delete,
    /// Txn: if value(key) == expect (None: `create_revision == 0`, the key is absent) then
    /// put `new` else get the key.
    Cas {
        expect: Option<u64>,
        new: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Get {
        value: Option<u64>,
        mod_rev: i64,
        rev: i64,
    },
    Put {
        rev: i64,
    },
    Revoke {
        rev: i64,
    },
    /// `removed`: the value the delete removed (asked with `prev_kv`), None if the key
    /// was absent.
    Delete {
        removed: Option<u64>,
        rev: i64,
    },
    /// `got`/`got_mod_rev`: what the else branch read.
    Cas {
        succeeded: bool,
        got: Option<u64>,
        got_mod_rev: i64,
        rev: i64,
    },
    /// Certainly had no effect (a read that failed, a revoke of a lease already gone).
    Failed(String),
    /// May or may not have taken effect (a write whose answer never came).
    Unknown(String),
}

/// One watch event as the checks compare them: (revision, key, Some(value) for a put).
pub type Ev = (i64, Vec<u8>, Option<Vec<u8>>);

/// What a watch kept open on one member through the faults received.
#[derive(Debug, Default)]
pub struct LiveWatch {
    pub member: usize,
    /// Every event in the order it arrived, across resumptions.
    pub events: Vec<Ev>,
    /// Times the stream broke and was resumed at the revision after the last event.
    pub resumed: usize,
    /// What the stream itself reported going wrong (a cancellation).
    pub errors: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub client: usize,
    pub member: usize,
    pub key: usize,
    pub kind: Kind,
    pub invoke: u64,
    /// [`super::linearizability::NEVER`] for unknown outcomes.
    pub ret: u64,
    pub outcome: Outcome,
}

impl Record {
    pub fn is_ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed(_) | Outcome::Unknown(_))
    }

    /// The header revision of a successful answer.
    pub fn header_rev(&self) -> Option<i64> {
        match self.outcome {
            Outcome::Get { rev, .. }
            | Outcome::Put { rev }
            | Outcome::Delete { rev, .. }
            | Outcome::Revoke { rev }
            | Outcome::Cas { rev, .. } => Some(rev),
            _ => None,
        }
    }

    /// The revision this operation created, if it certainly created one.
    pub fn write_rev(&self) -> Option<i64> {
        match self.outcome {
            Outcome::Put { rev }
            | Outcome::Delete { removed: Some(_), rev }
            | Outcome::Cas { succeeded: true, rev, .. } => Some(rev),
            _ => None,
        }
    }

    pub fn is_linearizable_kind(&self) -> bool {
        !matches!(self.kind, Kind::Get { serializable: true })
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: u64| {
            if t == u64::MAX { "never".to_string() } else { format!("{:.3}ms", t as f64 / 1e6) }
        };
        write!(
            f,
            "[{:>12} .. {:>12}] client {} @m{} key{} {:?} -> {:?}",
            ms(self.invoke),
            ms(self.ret),
            self.client,
            self.member + 1,
            self.key,
            self.kind,
            self.outcome
        )
    }
}

/// The history in the JSON form `tools/porcupine` (the second, independent checker) reads:
/// `{"ops": [{"client", "key", "invoke", "ret", "input": {...}, "output": {...}}]}`, every
/// record raw (serializable reads, failures and unknown outcomes too, `"ret": null` for an
/// unknown one): what to leave out is the checker's own decision, made independently.
pub fn export(records: &[Record]) -> String {
    use serde_json::{Value, json};
    let ops: Vec<Value> = records
        .iter()
        .map(|r| {
            let input = match &r.kind {
                Kind::Get { serializable } => json!({"op": "get", "serializable": serializable}),
                Kind::Put { value } => json!({"op": "put", "value": value}),
                Kind::PutLease { value, lease } => {
                    json!({"op": "put_lease", "value": value, "lease": lease})
                }
                Kind::Revoke { lease } => json!({"op": "revoke", "lease": lease}),
                Kind::Delete => json!({"op": "delete"}),
                Kind::Cas { expect, new } => json!({"op": "cas", "expect": expect, "new": new}),
            };
            let output = match &r.outcome {
                Outcome::Get { value, .. } => json!({"kind": "get", "value": value}),
                Outcome::Put { .. } => json!({"kind": "put"}),
                Outcome::Revoke { .. } => json!({"kind": "revoke"}),
                Outcome::Delete { removed, .. } => json!({"kind": "delete", "removed": removed}),
                Outcome::Cas { succeeded, got, .. } => {
                    json!({"kind": "cas", "succeeded": succeeded, "got": got})
                }
                Outcome::Failed(_) => json!({"kind": "failed"}),
                Outcome::Unknown(_) => json!({"kind": "unknown"}),
            };
            // No return time for an unknown outcome, nor for anything recorded as never
            // returning (a failure may be too).
            let ret = match r.outcome {
                Outcome::Unknown(_) => None,
                _ if r.ret == u64::MAX => None,
                _ => Some(r.ret),
            };
            json!({
                "client": r.client,
                "key": r.key,
                "invoke": r.invoke,
                "ret": ret,
                "input": input,
                "output": output,
            })
        })
        .collect();
    json!({ "ops": ops }).to_string()
}
