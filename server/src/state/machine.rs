//! The state machine: committed Raft entries applied to the [`Stores`], in
//! log order, on the Raft thread. A normal entry is one client request
//! ([`super::apply`]); a configuration change writes the member records and
//! the new configuration in one engine transaction; a snapshot from the
//! leader replaces the engine file whole. Each records the entry's index in
//! the same transaction as its effect, so a restart replays the WAL from
//! exactly there.

use std::path::PathBuf;
use std::sync::Arc;

use logbook_api::logbookpb::{InternalRequest, RaftApplyState, StoredMember};
use logbook_engine::{Engine, WriteTxn};
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChangeType, ConfState};

use super::apply::{Applied, ApplyContext, apply_request};
use super::auth::Requester;
use super::stores::Stores;
use super::txn::Revisions;
use crate::error::{Error, Result};
use crate::schema::{
    APPLY_STATE_KEY, CLUSTER_BUCKET, MEMBER_ID_KEY, MEMBERS_BUCKET, RAFT_BUCKET, REMOVED_BUCKET,
    REMOVED_VALUE, SCHEDULED_COMPACTION_KEY, member_key,
};

/// What applying a normal entry produced for the client that proposed it:
/// its request ID, and the outcome with the store's revision after it.
pub type Answer = (u64, Result<(Applied, i64)>);

/// A membership change Raft accepted, to record with the new configuration.
pub struct MemberChange<'a> {
    pub change: ConfChangeType,
    pub node_id: u64,
    /// The member as the proposal described it.
    pub member: &'a StoredMember,
}

/// Applies entries to the stores.
pub struct StateMachine {
    pub stores: Arc<Stores>,
    /// The engine file, which a snapshot install replaces.
    db_path: PathBuf,
    /// This member's ID, kept in the engine across snapshot installs.
    member_id: u64,
    /// `--warning-apply-duration`: an entry whose apply takes longer is logged.
    warn_apply_after: std::time::Duration,
}

impl StateMachine {
    pub fn new(stores: Arc<Stores>, db_path: PathBuf, member_id: u64) -> Self {
        StateMachine {
            stores,
            db_path,
            member_id,
            warn_apply_after: std::time::Duration::from_millis(100),
        }
    }

    /// Sets `--warning-apply-duration` (etcd's default: 100 ms).
    pub fn warning_apply_duration(mut self, d: std::time::Duration) -> Self {
        self.warn_apply_after = d;
        self
    }

    /// Applies a normal entry (`data`: an encoded `InternalRequest`, empty for
    /// the entry a new leader appends). Returns the proposer's answer.
    pub fn apply_normal(
        &self,
        engine: &Engine,
        index: u64,
        term: u64,
        data: &[u8],
    ) -> Result<Option<Answer>> {
        let start = std::time::Instant::now();
        let revs =
            Revisions { current: engine.current_revision(), compacted: engine.compact_revision() };
        let request = if data.is_empty() {
            None
        } else {
            Some(
                InternalRequest::decode(data)
                    .unwrap_or_else(|e| panic!("entry {index} holds an undecodable request: {e}")),
            )
        };
        let stores = &self.stores;
        let mut state = stores.apply_state.lock();
        let mut txn = engine.write(index);
        let result = request.as_ref().and_then(|r| r.request.as_ref().map(|req| (r, req))).map(
            |(r, req)| {
                let who = if r.system {
                    Requester::System
                } else {
                    Requester::Client { user: &r.username, revision: r.auth_revision }
                };
                let ctx = ApplyContext {
                    lessor: &stores.lessor,
                    alarms: &stores.alarms,
                    auth: &stores.auth,
                    who,
                    index,
                };
                apply_request(engine, &mut txn, &ctx, req, revs)
            },
        );
        if state.term != term {
            state.term = term;
            let record = RaftApplyState {
                term,
                conf_state: state.conf_state.write_to_bytes().expect("conf states encode").into(),
            };
            txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &record.encode_to_vec());
        }
        if let Some(Ok(Applied::Compaction(_, rev))) = &result {
            // Recorded with the entry's applied index, so a crash before the
            // engine has scheduled it cannot lose it (see `resume_compaction`).
            txn.meta_put(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY, &rev.to_be_bytes());
        }
        let revision = txn.commit();
        state.index = index;
        drop(state);

        if let Some(Ok(Applied::Compaction(_, rev))) = &result {
            stores.hashes.compacting(engine, *rev)?;
            engine.compact(*rev)?;
        }
        let took = start.elapsed();
        if took > self.warn_apply_after {
            // The request's kind only: etcd redacts values in this line too.
            let kind = request.as_ref().and_then(|r| r.request.as_ref()).map(|req| {
                let text = format!("{req:?}");
                text.split(['(', ' ', '{']).next().unwrap_or_default().to_string()
            });
            tracing::warn!(
                took = ?took,
                expected_duration = ?self.warn_apply_after,
                index,
                request = kind.as_deref().unwrap_or("empty entry"),
                "apply request took too long"
            );
        }
        Ok(match (request, result) {
            (Some(req), Some(result)) => Some((req.id, result.map(|a| (a, revision)))),
            _ => None,
        })
    }

    /// Records the configuration `cs` Raft adopted at entry `index`, with the
    /// member records a membership change updates, in one engine transaction.
    pub fn apply_conf_state(
        &self,
        engine: &Engine,
        index: u64,
        term: u64,
        cs: ConfState,
        change: Option<MemberChange<'_>>,
    ) {
        self.record_conf_state(engine, index, term, cs, |txn| {
            let Some(MemberChange { change, node_id, member }) = change else { return };
            match change {
                ConfChangeType::RemoveNode => {
                    txn.meta_delete(MEMBERS_BUCKET, &member_key(node_id));
                    txn.meta_put(REMOVED_BUCKET, &member_key(node_id), REMOVED_VALUE);
                }
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    // Keep what the member published about itself (a promotion).
                    let mut m = engine
                        .meta_get(MEMBERS_BUCKET, &member_key(node_id))
                        .and_then(|b| StoredMember::decode(b.as_slice()).ok())
                        .unwrap_or_else(|| member.clone());
                    m.is_learner = change == ConfChangeType::AddLearnerNode;
                    txn.meta_put(MEMBERS_BUCKET, &member_key(node_id), &m.encode_to_vec());
                }
            }
        });
    }

    /// Consumes entry `index` without effect (a membership change Raft
    /// refused), so the applied index moves on.
    pub fn skip(&self, engine: &Engine, index: u64) {
        engine.write(index).commit();
    }

    fn record_conf_state(
        &self,
        engine: &Engine,
        index: u64,
        term: u64,
        cs: ConfState,
        also: impl FnOnce(&mut WriteTxn<'_>),
    ) {
        let mut state = self.stores.apply_state.lock();
        let mut txn = engine.write(index);
        also(&mut txn);
        let record = RaftApplyState {
            term,
            conf_state: cs.write_to_bytes().expect("conf states encode").into(),
        };
        txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &record.encode_to_vec());
        txn.commit();
        state.index = index;
        state.term = term;
        state.conf_state = cs;
    }

    /// Replaces the engine with the leader's, streamed in `data` as of entry
    /// `index` (term `term`, configuration `cs`), and rebuilds the stores
    /// from it. The caller has already dropped any log tail it supersedes.
    pub fn install_snapshot(
        &self,
        mut data: &[u8],
        index: u64,
        term: u64,
        cs: ConfState,
    ) -> Result<()> {
        let db = &self.db_path;
        let staging = db.with_extension("incoming");
        Engine::restore(&staging, &mut data)?;
        // The snapshot is the leader's engine, its own member ID included: put ours back
        // before the file takes the place of the engine, or the next start would take
        // the leader's identity (and the cluster would have two members with one ID
        // and none with ours: this member could never rejoin).
        {
            let incoming = Engine::open(&staging, self.stores.engine_options.clone())?;
            let mut txn = incoming.write(index);
            txn.meta_put(CLUSTER_BUCKET, MEMBER_ID_KEY, &self.member_id.to_be_bytes());
            txn.commit();
            incoming.commit()?;
        }
        std::fs::rename(&staging, db)
            .map_err(|e| Error::io(format!("renaming {}", staging.display()), e))?;
        if let Some(dir) = db.parent() {
            sync_dir(dir)?;
        }
        let engine = Engine::open(db, self.stores.engine_options.clone())?;
        if engine.applied_index() != index {
            return Err(Error::Internal(format!(
                "snapshot for index {index} holds an engine at index {}",
                engine.applied_index()
            )));
        }
        self.stores.rebuild(&engine)?;
        resume_compaction(&engine)?;
        self.stores.engine.replace(engine);
        let mut state = self.stores.apply_state.lock();
        state.index = index;
        state.term = term;
        state.conf_state = cs;
        Ok(())
    }
}

/// Schedules again a compaction whose entry was applied but which the
/// engine had not yet recorded when the member stopped: the entry will not
/// be applied again, so without this the member would keep history its
/// peers dropped (and their HashKV would differ).
pub fn resume_compaction(engine: &Engine) -> Result<()> {
    let Some(bytes) = engine.meta_get(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY) else {
        return Ok(());
    };
    let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice()) else {
        return Err(Error::Internal("stored scheduled compaction is not 8 bytes".into()));
    };
    let rev = i64::from_be_bytes(raw);
    if rev > engine.compact_revision() && rev <= engine.current_revision() {
        tracing::info!(revision = rev, "resuming a compaction applied before the last stop");
        engine.compact(rev)?;
    }
    Ok(())
}

fn sync_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_compaction_the_engine_missed_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let engine = Engine::open(&path, logbook_engine::Options::default()).unwrap();
        for i in 0..5u64 {
            let mut txn = engine.write(i + 1);
            txn.put(b"k", format!("v{i}").as_bytes(), 0).unwrap();
            if i == 4 {
                // The compaction entry's effect on the apply state, as
                // apply_normal records it, without the engine scheduling it
                // (the member stopped in between).
                txn.meta_put(RAFT_BUCKET, SCHEDULED_COMPACTION_KEY, &4i64.to_be_bytes());
            }
            txn.commit();
        }
        engine.commit().unwrap();
        drop(engine);

        let engine = Engine::open(&path, logbook_engine::Options::default()).unwrap();
        assert_eq!(engine.compact_revision(), 0);
        resume_compaction(&engine).unwrap();
        assert_eq!(engine.compact_revision(), 4);
        // Nothing more to do the second time.
        resume_compaction(&engine).unwrap();
        assert_eq!(engine.compact_revision(), 4);
    }
}
