//! A linearizability checker for single-key register histories: Porcupine's algorithm
//! (Wing & Gong's search with Lowe's memoization of (linearized set, state) pairs), run
//! once per key, since operations on different keys commute (P-compositionality).
//!
//! Operations whose outcome is unknown (the client gave up, the member died) have no
//! return: they may take effect at any instant after their invocation, or never.

use std::collections::HashSet;

/// Time of an operation's return when its outcome is unknown.
pub const NEVER: u64 = u64::MAX;

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A linearizable read.
    Get,
    /// A put of a value no other operation writes.
    Put(u64),
    /// The same, attached to a lease no other put uses.
    PutLease { value: u64, lease: i64 },
    /// Revoking a lease: deletes the key if its value is attached to that lease.
    Revoke(i64),
    /// A delete of the key.
    Delete,
    /// A txn: if the key holds `expect` (None: the key is absent) then put `new`, else get.
    Cas { expect: Option<u64>, new: u64 },
}

/// What the client saw. `Unknown` only for writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Get(Option<u64>),
    Put,
    Revoke,
    /// `removed`: the value the delete removed, None if the key was absent.
    Delete {
        removed: Option<u64>,
    },
    /// `got`: the value the else branch read (only when not succeeded).
    Cas {
        succeeded: bool,
        got: Option<u64>,
    },
    Unknown,
}

/// One operation on one key, with invoke and return times (any monotonic unit).
#[derive(Clone, Debug)]
pub struct Operation {
    pub input: Input,
    pub output: Output,
    pub invoke: u64,
    /// [`NEVER`] when the outcome is unknown.
    pub ret: u64,
}

/// The register: the key's value and the lease it is attached to (0: none), or absent.
pub type State = Option<(u64, i64)>;

/// Applies `op` to `state` if the output is possible there; returns the next state.
fn step(state: State, input: &Input, output: &Output) -> Option<State> {
    let value = state.map(|(v, _)| v);
    match (input, output) {
        (Input::Get, Output::Get(v)) => (*v == value).then_some(state),
        (Input::Get, Output::Unknown) => Some(state),
        (Input::Put(v), Output::Put | Output::Unknown) => Some(Some((*v, 0))),
        (Input::PutLease { value, lease }, Output::Put | Output::Unknown) => {
            Some(Some((*value, *lease)))
        }
        (Input::Revoke(lease), Output::Revoke | Output::Unknown) => {
            Some(state.filter(|&(_, l)| l != *lease))
        }
        (Input::Delete, Output::Delete { removed }) => (*removed == value).then_some(None),
        (Input::Delete, Output::Unknown) => Some(None),
        (Input::Cas { expect, new }, Output::Cas { succeeded, got }) => {
            if value == *expect {
                succeeded.then_some(Some((*new, 0)))
            } else {
                (!succeeded && *got == value).then_some(state)
            }
        }
        (Input::Cas { expect, new }, Output::Unknown) => {
            Some(if value == *expect { Some((*new, 0)) } else { state })
        }
        _ => None,
    }
}

/// The verdict on one key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history. `stuck_at`: the index (into the operations) of the
    /// return that no linearization reached past, for the report.
    NotLinearizable {
        stuck_at: usize,
    },
    /// The search gave up after its step budget.
    Inconclusive,
}

/// Node of the doubly linked list of call and return events.
#[derive(Clone, Copy, Debug)]
struct Node {
    prev: usize,
    next: usize,
    /// Operation index.
    op: usize,
    is_call: bool,
    /// For a call: the node index of its return.
    matching: usize,
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// Checks one key's history, starting from an absent key (or `initial`).
pub fn check(ops: &[Operation], initial: State, max_steps: u64) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    // Events sorted by time; at equal times calls first (the permissive choice: the two
    // operations count as concurrent).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        assert!(op.ret >= op.invoke, "operation {i} returns before it is invoked");
        events.push((op.invoke, true, i));
        events.push((op.ret, false, i));
    }
    events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let mut nodes = Vec::with_capacity(events.len() + 1);
    nodes.push(Node { prev: NIL, next: 1, op: usize::MAX, is_call: false, matching: NIL });
    let mut return_node = vec![NIL; ops.len()];
    for (k, &(_, is_call, op)) in events.iter().enumerate() {
        let idx = k + 1;
        let next = if k + 1 == events.len() { NIL } else { idx + 1 };
        nodes.push(Node { prev: idx - 1, next, op, is_call, matching: NIL });
        if !is_call {
            return_node[op] = idx;
        }
    }
    for n in nodes.iter_mut().skip(1) {
        if n.is_call {
            n.matching = return_node[n.op];
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    // (call node, state before it)
    let mut calls: Vec<(usize, State)> = Vec::new();
    let mut state = initial;
    let mut entry = nodes[HEAD].next;
    let mut steps = 0u64;
    let mut deepest = 0usize;
    let mut stuck_at = 0usize;

    while nodes[HEAD].next != NIL {
        steps += 1;
        if steps > max_steps {
            return Verdict::Inconclusive;
        }
        let node = nodes[entry];
        if node.is_call {
            let op = &ops[node.op];
            if let Some(next_state) = step(state, &op.input, &op.output) {
                let mut next_lin = linearized.clone();
                next_lin[node.op / 64] |= 1 << (node.op % 64);
                if cache.insert((next_lin.clone(), next_state)) {
                    calls.push((entry, state));
                    state = next_state;
                    linearized = next_lin;
                    lift(&mut nodes, entry);
                    entry = nodes[HEAD].next;
                    continue;
                }
            }
            entry = node.next;
        } else {
            // A return whose call is not yet linearized: backtrack.
            if calls.len() >= deepest {
                deepest = calls.len();
                stuck_at = node.op;
            }
            let Some((call, prev_state)) = calls.pop() else {
                return Verdict::NotLinearizable { stuck_at };
            };
            let op = nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prev_state;
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
        if entry == NIL {
            // Only pending (never-returning) calls were left and none fits: undo one.
            let Some((call, prev_state)) = calls.pop() else {
                return Verdict::NotLinearizable { stuck_at };
            };
            let op = nodes[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            state = prev_state;
            unlift(&mut nodes, call);
            entry = nodes[call].next;
            if entry == NIL {
                return Verdict::NotLinearizable { stuck_at };
            }
        }
    }
    Verdict::Linearizable
}

/// Removes a call and its return from the list.
fn lift(nodes: &mut [Node], call: usize) {
    let c = nodes[call];
    nodes[c.prev].next = c.next;
    if c.next != NIL {
        nodes[c.next].prev = c.prev;
    }
    let r = nodes[c.matching];
    nodes[r.prev].next = r.next;
    if r.next != NIL {
        nodes[r.next].prev = r.prev;
    }
}

/// Puts back what [`lift`] removed (in reverse order).
fn unlift(nodes: &mut [Node], call: usize) {
    let c = nodes[call];
    let r = nodes[c.matching];
    nodes[r.prev].next = c.matching;
    if r.next != NIL {
        nodes[r.next].prev = c.matching;
    }
    nodes[c.prev].next = call;
    if c.next != NIL {
        nodes[c.next].prev = call;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(input: Input, output: Output, invoke: u64, ret: u64) -> Operation {
        Operation { input, output, invoke, ret }
    }

    const STEPS: u64 = 1_000_000;

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(Input::Get, Output::Get(None), 0, 1),
            op(Input::Put(1), Output::Put, 2, 3),
            op(Input::Get, Output::Get(Some(1)), 4, 5),
            op(
                Input::Cas { expect: Some(1), new: 2 },
                Output::Cas { succeeded: true, got: None },
                6,
                7,
            ),
            op(
                Input::Cas { expect: Some(1), new: 3 },
                Output::Cas { succeeded: false, got: Some(2) },
                8,
                9,
            ),
            op(Input::Delete, Output::Delete { removed: Some(2) }, 10, 11),
            op(Input::Delete, Output::Delete { removed: None }, 12, 13),
            op(
                Input::Cas { expect: None, new: 4 },
                Output::Cas { succeeded: true, got: None },
                14,
                15,
            ),
            op(Input::Get, Output::Get(Some(4)), 16, 17),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        let h = vec![
            op(Input::Put(1), Output::Put, 0, 10),
            op(Input::Get, Output::Get(Some(1)), 1, 2),
            op(Input::Get, Output::Get(None), 3, 4),
        ];
        // The second read returned None after the first saw 1: not linearizable.
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
        let h = vec![
            op(Input::Put(1), Output::Put, 0, 10),
            op(Input::Get, Output::Get(None), 1, 2),
            op(Input::Get, Output::Get(Some(1)), 3, 4),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        let h = vec![
            op(Input::Put(1), Output::Put, 0, 1),
            op(Input::Put(2), Output::Put, 2, 3),
            op(Input::Get, Output::Get(Some(1)), 4, 5),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::NotLinearizable { stuck_at: 2 });
    }

    #[test]
    fn lost_acknowledged_write_is_caught() {
        let h = vec![op(Input::Put(7), Output::Put, 0, 1), op(Input::Get, Output::Get(None), 5, 6)];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        // Never observed: fine.
        let h = vec![
            op(Input::Put(1), Output::Unknown, 0, NEVER),
            op(Input::Get, Output::Get(None), 5, 6),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
        // Observed long after the client gave up: fine too.
        let h = vec![
            op(Input::Put(1), Output::Unknown, 0, NEVER),
            op(Input::Get, Output::Get(None), 5, 6),
            op(Input::Get, Output::Get(Some(1)), 7, 8),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
        // But not before it was invoked.
        let h = vec![
            op(Input::Get, Output::Get(Some(1)), 0, 1),
            op(Input::Put(1), Output::Unknown, 5, NEVER),
        ];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
        // And a value cannot come back after it was overwritten.
        let h = vec![
            op(Input::Put(1), Output::Unknown, 0, NEVER),
            op(Input::Get, Output::Get(Some(1)), 2, 3),
            op(Input::Put(2), Output::Put, 4, 5),
            op(Input::Get, Output::Get(Some(1)), 6, 7),
        ];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn cas_must_agree_with_the_value_it_compared() {
        // Both CAS from 1 succeeded: a lost update.
        let h = vec![
            op(Input::Put(1), Output::Put, 0, 1),
            op(
                Input::Cas { expect: Some(1), new: 2 },
                Output::Cas { succeeded: true, got: None },
                2,
                5,
            ),
            op(
                Input::Cas { expect: Some(1), new: 3 },
                Output::Cas { succeeded: true, got: None },
                3,
                6,
            ),
        ];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
        let h = vec![
            op(Input::Put(1), Output::Put, 0, 1),
            op(
                Input::Cas { expect: Some(1), new: 2 },
                Output::Cas { succeeded: true, got: None },
                2,
                5,
            ),
            op(
                Input::Cas { expect: Some(1), new: 3 },
                Output::Cas { succeeded: false, got: Some(2) },
                3,
                6,
            ),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn revoke_deletes_only_the_value_attached_to_its_lease() {
        let put_lease = |v, l, i, r| op(Input::PutLease { value: v, lease: l }, Output::Put, i, r);
        // Revoking the lease of the current value deletes it.
        let h = vec![
            put_lease(1, 10, 0, 1),
            op(Input::Revoke(10), Output::Revoke, 2, 3),
            op(Input::Get, Output::Get(None), 4, 5),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
        // A value written after the lease's put is not attached to it: a revoke that
        // deleted it is a bug.
        let h = vec![
            put_lease(1, 10, 0, 1),
            op(Input::Put(2), Output::Put, 2, 3),
            op(Input::Revoke(10), Output::Revoke, 4, 5),
            op(Input::Get, Output::Get(None), 6, 7),
        ];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
        // A revoked lease's value surviving the revoke is a bug too.
        let h = vec![
            put_lease(1, 10, 0, 1),
            op(Input::Revoke(10), Output::Revoke, 2, 3),
            op(Input::Get, Output::Get(Some(1)), 4, 5),
        ];
        assert!(matches!(check(&h, None, STEPS), Verdict::NotLinearizable { .. }));
        // An unknown revoke may land after a later read.
        let h = vec![
            put_lease(1, 10, 0, 1),
            op(Input::Revoke(10), Output::Unknown, 2, NEVER),
            op(Input::Get, Output::Get(Some(1)), 4, 5),
            op(Input::Get, Output::Get(None), 6, 7),
        ];
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn many_concurrent_writers_stay_tractable() {
        // 200 overlapping puts and reads in windows of 8; each read sees the latest put of
        // the previous window.
        let mut h = Vec::new();
        for w in 0..25u64 {
            for j in 0..8u64 {
                h.push(op(Input::Put(w * 8 + j), Output::Put, w * 100 + j, w * 100 + 50 + j));
            }
            if w > 0 {
                h.push(op(Input::Get, Output::Get(Some(w * 8 - 1)), w * 100 - 20, w * 100 - 10));
            }
        }
        // Make the last put of each window the latest one: it returns last and the rest
        // returned before it was... concurrent; any of them may be last, so the read of
        // w*8-1 is consistent.
        assert_eq!(check(&h, None, STEPS), Verdict::Linearizable);
    }
}
