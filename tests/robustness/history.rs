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
    /// Certainly had no effect (a read that failed).
    Failed(String),
    /// May or may not have taken effect (a write whose answer never came).
    Unknown(String),
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
