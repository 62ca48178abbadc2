//! The engine every service reads from. A follower that installs a snapshot
//! swaps in a new engine; readers holding the old one finish on it.

use std::sync::Arc;

use logbook_engine::Engine;
use parking_lot::RwLock;

/// A replaceable handle on the current engine.
pub struct EngineCell(RwLock<Arc<Engine>>);

impl EngineCell {
    pub fn new(engine: Engine) -> Self {
        EngineCell(RwLock::new(Arc::new(engine)))
    }

    /// The engine in use now.
    pub fn get(&self) -> Arc<Engine> {
        self.0.read().clone()
    }

    /// Puts `engine` in place of the current one and returns the old one.
    pub fn replace(&self, engine: Engine) -> Arc<Engine> {
        std::mem::replace(&mut *self.0.write(), Arc::new(engine))
    }
}
