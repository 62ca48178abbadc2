//! Shared by the randomized tests: seeds and the in-memory model of the log.

#![allow(dead_code)] // each test file uses part of this

use std::collections::BTreeMap;

use logbook_wal::{HardState, Wal};

/// The seed from `env` if set, else a fresh one. Printed, so a failure can be replayed.
pub fn seed(env: &str) -> u64 {
    let seed = match std::env::var(env) {
        Ok(s) => s.parse().expect("seed must be a u64"),
        Err(_) => rand::random(),
    };
    println!("seed: {seed} (replay with {env}={seed})");
    seed
}

/// A count from `env`, or `default`.
pub fn count(env: &str, default: u64) -> u64 {
    std::env::var(env).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// One logical operation, at record granularity (one append call of n records is n ops).
#[derive(Clone, Debug)]
pub enum Op {
    Append(Vec<u8>),
    HardState(HardState),
    Truncate(u64),
    /// `compact_prefix(index)`: empties the log if `index >= next`, else only allows
    /// `first_index()` to rise up to `index`.
    Compact(u64),
}

/// What the log must look like.
#[derive(Clone, Debug)]
pub struct Model {
    /// Every entry ever stored at each index, latest version (older indexes kept).
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Lowest index the log may still hold.
    pub first: u64,
    /// Index the next append gets.
    pub next: u64,
    /// Highest `first_index()` the log may report (compaction lets it rise to here).
    pub may_first: u64,
    pub hs: HardState,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            entries: BTreeMap::new(),
            first: 1,
            next: 1,
            may_first: 1,
            hs: HardState::default(),
        }
    }
}

impl Model {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(d) => {
                self.entries.insert(self.next, d.clone());
                self.next += 1;
            }
            Op::HardState(hs) => self.hs = *hs,
            Op::Truncate(i) => {
                assert!(*i <= self.next);
                self.next = *i;
                if *i < self.first {
                    self.first = *i;
                }
                self.may_first = self.may_first.min(*i).max(self.first);
            }
            Op::Compact(i) => {
                if *i >= self.next {
                    self.first = *i;
                    self.next = *i;
                    self.may_first = *i;
                } else {
                    self.may_first = self.may_first.max(*i);
                }
            }
        }
    }

    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// `None` if `wal` (whose pending writes are all done) shows exactly this state; else
    /// what differs.
    pub fn mismatch(&self, wal: &Wal) -> Option<String> {
        let (first, last) = (wal.first_index(), wal.last_index());
        if last != self.last() {
            return Some(format!("last_index {last}, model {}", self.last()));
        }
        if first < self.first || first > self.may_first.max(self.first).min(self.next) {
            return Some(format!(
                "first_index {first} outside model range [{}, {}]",
                self.first, self.may_first
            ));
        }
        if wal.hard_state() != self.hs {
            return Some(format!("hard state {:?}, model {:?}", wal.hard_state(), self.hs));
        }
        let got = match wal.read(first, last + 1) {
            Ok(g) => g,
            Err(e) => return Some(format!("read [{first}, {}) failed: {e}", last + 1)),
        };
        for (k, g) in got.iter().enumerate() {
            let i = first + k as u64;
            if Some(g) != self.entries.get(&i) {
                return Some(format!("entry {i} differs"));
            }
        }
        None
    }
}

/// Finds `k >= acked` such that the log equals the model after `history[..k]`: the log
/// holds every acknowledged operation (the first `acked`) and nothing but a prefix of the
/// ones issued.
pub fn matching_prefix(history: &[Op], acked: usize, wal: &Wal) -> Result<(usize, Model), String> {
    let mut m = Model::default();
    for op in &history[..acked] {
        m.apply(op);
    }
    let mut last_err = String::new();
    for k in acked..=history.len() {
        if k > acked {
            m.apply(&history[k - 1]);
        }
        // Cheap filter first: last index must match.
        if wal.last_index() != m.last() {
            continue;
        }
        match m.mismatch(wal) {
            None => return Ok((k, m)),
            Some(e) => last_err = format!("prefix {k}: {e}"),
        }
    }
    Err(format!(
        "no prefix of {} ops at or after the {acked} acknowledged matches (last_index {}); {last_err}",
        history.len(),
        wal.last_index()
    ))
}

/// One to three records of 1 to 399 random bytes: an append of the power-loss loops.
pub fn random_records(rng: &mut impl rand::Rng) -> Vec<Vec<u8>> {
    let n = rng.random_range(1..4);
    (0..n)
        .map(|_| {
            let mut v = vec![0u8; rng.random_range(1..400)];
            rng.fill(&mut v[..]);
            v
        })
        .collect()
}
