//! The `raft::Storage` Logbook gives its `RawNode`: the unapplied tail of the
//! log and the hard state in memory (raft's `MemStorage`, which the write-ahead
//! log makes durable), and snapshots taken from the engine on demand.
//!
//! Logbook has no separate snapshot files: the engine's database *is* the
//! snapshot, since it records the Raft index it reflects. When a follower is
//! too far behind for the log, the leader streams its engine at the current
//! applied index, with that index's term and configuration as metadata.

use std::sync::Arc;

use parking_lot::Mutex;
use raft::prelude::{Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::state::engine_cell::EngineCell;
use crate::state::stores::ApplyState;

/// Storage for `RawNode`: log tail and hard state in memory, snapshots from
/// the engine.
#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    engine: Arc<EngineCell>,
    apply: Arc<Mutex<ApplyState>>,
}

impl RaftStorage {
    /// Storage whose snapshot is the engine's state at `apply`.
    pub fn new(engine: Arc<EngineCell>, apply: Arc<Mutex<ApplyState>>) -> Self {
        let state = apply.lock().clone();
        let mem = MemStorage::new();
        {
            let mut core = mem.wl();
            if state.index == 0 {
                core.set_conf_state(state.conf_state.clone());
            } else {
                let mut snap = Snapshot::default();
                let meta = snap.mut_metadata();
                meta.index = state.index;
                meta.term = state.term;
                meta.set_conf_state(state.conf_state.clone());
                core.apply_snapshot(snap).expect("a fresh MemStorage accepts any snapshot");
            }
        }
        RaftStorage { mem, engine, apply }
    }

    /// The in-memory log and hard state, for the ready loop to update.
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Appends entries (replacing any conflicting tail).
    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    /// Records the hard state.
    pub fn set_hard_state(&self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    /// Installs a snapshot received from the leader.
    pub fn apply_snapshot(&self, snap: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snap)
    }

    /// Forgets log entries before `index`.
    pub fn compact(&self, index: u64) -> raft::Result<()> {
        let last = self.mem.last_index()?;
        self.mem.wl().compact(index.min(last + 1))
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Called on the Raft thread, which is also the apply thread, so the
        // engine and the apply state describe the same instant.
        let state = self.apply.lock().clone();
        if state.index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let engine = self.engine.get();
        let mut data = Vec::new();
        let taken = engine.snapshot().and_then(|mut s| {
            let applied = s.applied_index();
            std::io::Read::read_to_end(&mut s, &mut data).map_err(logbook_engine::Error::from)?;
            Ok(applied)
        });
        match taken {
            Ok(applied) if applied == state.index => {}
            Ok(applied) => {
                tracing::warn!(
                    applied,
                    expected = state.index,
                    "engine snapshot at an unexpected index"
                );
                return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
            }
            Err(e) => {
                tracing::error!(error = %e, to, "cannot take an engine snapshot for a follower");
                return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
            }
        }
        tracing::info!(
            index = state.index,
            term = state.term,
            bytes = data.len(),
            to = format!("{to:x}"),
            "sending snapshot"
        );
        let mut snap = Snapshot { data: data.into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = state.index;
        meta.term = state.term;
        meta.set_conf_state(state.conf_state);
        Ok(snap)
    }
}
