//! Raft's hard state as the WAL stores it: three numbers the WAL keeps without interpreting.

/// The latest term, vote and commit index. The WAL persists it next to the log so that a
/// restart finds both together; it does not interpret the numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term` (0: none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}
