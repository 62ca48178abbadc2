//! The state machine's stores: the engine (the keyspace and every bucket of
//! [`crate::schema`]) and what is rebuilt from it at start and after a
//! snapshot install: leases, alarms, users and roles. Also the Raft position
//! the engine's data reflects ([`ApplyState`]).

use std::sync::Arc;

use logbook_engine::Engine;
use parking_lot::Mutex;
use raft::prelude::ConfState;

use super::alarms::Alarms;
use super::auth::AuthStore;
use super::engine_cell::EngineCell;
use super::hash_storage::HashStorage;
use super::lessor::Lessor;
use crate::error::Result;

/// The Raft position of the engine's current state, kept by the apply loop.
#[derive(Debug, Clone, Default)]
pub struct ApplyState {
    /// Index of the last entry applied to the engine.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The configuration in force after it.
    pub conf_state: ConfState,
}

/// Everything applying an entry reads and writes.
pub struct Stores {
    pub engine: Arc<EngineCell>,
    /// How the engine is opened (again, after a snapshot install).
    pub engine_options: logbook_engine::Options,
    /// Locked while an entry's engine transaction commits, so a Raft
    /// snapshot taken meanwhile sees the engine and its position together.
    pub apply_state: Arc<Mutex<ApplyState>>,
    /// Leases: applied by the Raft thread, deadlines kept while leading.
    pub lessor: Lessor,
    /// Raised alarms (NOSPACE, CORRUPT).
    pub alarms: Alarms,
    /// Users, roles and tokens.
    pub auth: AuthStore,
    /// HashKV, and the hashes recorded at compactions.
    pub hashes: HashStorage,
}

impl Stores {
    /// The stores over `engine`, rebuilt from it.
    pub fn open(
        engine: Arc<EngineCell>,
        engine_options: logbook_engine::Options,
        apply_state: ApplyState,
        lessor: Lessor,
        auth: AuthStore,
        hashes: HashStorage,
    ) -> Result<Self> {
        let stores = Stores {
            engine,
            engine_options,
            apply_state: Arc::new(Mutex::new(apply_state)),
            lessor,
            alarms: Alarms::default(),
            auth,
            hashes,
        };
        let engine = stores.engine.get();
        stores.rebuild(&engine)?;
        super::machine::resume_compaction(&engine)?;
        Ok(stores)
    }

    /// Reloads leases, alarms and auth from `engine` (at start, and when a
    /// snapshot replaced the engine).
    pub fn rebuild(&self, engine: &Engine) -> Result<()> {
        self.lessor.rebuild(engine)?;
        self.alarms.rebuild(engine);
        self.auth.rebuild(engine)?;
        Ok(())
    }
}
