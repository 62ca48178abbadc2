//! A member's data directory at start: a new member writes the initial
//! cluster into its engine (or asks a running cluster to join it); a
//! restarting one reads its IDs back; then the Raft log is recovered from
//! the WAL past the engine's applied index.

use std::sync::Arc;
use std::time::Duration;

use logbook_api::logbookpb::{RaftApplyState, StoredMember};
use logbook_engine::Engine;
use logbook_wal::Wal;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::raft::storage::RaftStorage;
use crate::schema::{
    APPLY_STATE_KEY, CLUSTER_BUCKET, CLUSTER_ID_KEY, MEMBER_ID_KEY, MEMBERS_BUCKET, RAFT_BUCKET,
    REMOVED_BUCKET, REMOVED_VALUE, member_key,
};
use crate::state::engine_cell::EngineCell;
use crate::state::membership::load_members;
use crate::state::stores::ApplyState;

pub(super) fn create_dir(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

/// Writes the initial members and configuration into a new member's engine.
///
/// A member of a new cluster starts with every initial member as a voter. A
/// member joining a running cluster (`--initial-cluster-state existing`,
/// after `member add`) starts with the others as voters and itself in no
/// role: the leader's log (or a snapshot) brings the change that added it.
pub(super) fn bootstrap(
    cfg: &Config,
    engine: &Engine,
    joined: Option<&[StoredMember]>,
) -> Result<()> {
    let members: Vec<StoredMember> = match joined {
        Some(members) => members.to_vec(),
        None => cfg
            .initial_cluster
            .iter()
            .map(|m| StoredMember {
                id: m.id,
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: Vec::new(),
                is_learner: false,
            })
            .collect(),
    };
    let others = members.iter().filter(|m| joined.is_none() || m.id != cfg.member_id);
    let voters: Vec<u64> = others.clone().filter(|m| !m.is_learner).map(|m| m.id).collect();
    let learners: Vec<u64> = others.filter(|m| m.is_learner).map(|m| m.id).collect();
    let conf_state = ConfState::from((voters, learners));
    let mut txn = engine.write(0);
    for stored in &members {
        txn.meta_put(MEMBERS_BUCKET, &member_key(stored.id), &stored.encode_to_vec());
    }
    let state = RaftApplyState {
        term: 0,
        conf_state: conf_state.write_to_bytes().expect("conf states encode").into(),
    };
    txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &state.encode_to_vec());
    txn.meta_put(CLUSTER_BUCKET, CLUSTER_ID_KEY, &cfg.cluster_id.to_be_bytes());
    txn.meta_put(CLUSTER_BUCKET, MEMBER_ID_KEY, &cfg.member_id.to_be_bytes());
    txn.commit();
    engine.commit()?;
    tracing::info!(
        cluster_id = format!("{:x}", cfg.cluster_id),
        member_id = format!("{:x}", cfg.member_id),
        members = cfg.initial_cluster.len(),
        "bootstrapped a new cluster member"
    );
    Ok(())
}

/// Asks the running members for the cluster ID and the member list, and
/// finds this member's ID in it by its peer URLs (MemberAdd chose it).
pub(super) async fn join_existing(cfg: &mut Config) -> Result<Vec<StoredMember>> {
    use logbook_api::logbookpb::HelloRequest;
    use logbook_api::logbookpb::peer_client::PeerClient;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for m in cfg.initial_cluster.iter().filter(|m| m.id != cfg.member_id) {
            for url in &m.peer_urls {
                let Ok(ch) = cfg.peer_dialer.connect(url).await else { continue };
                if let Ok(resp) = PeerClient::new(ch)
                    .hello(HelloRequest { cluster_id: 0, member_id: cfg.member_id })
                    .await
                {
                    let resp = resp.into_inner();
                    let mut mine = cfg.advertise_peer_urls.clone();
                    mine.sort();
                    let me = resp
                        .members
                        .iter()
                        .find(|m| {
                            let mut theirs = m.peer_urls.clone();
                            theirs.sort();
                            theirs == mine
                        })
                        .cloned();
                    let Some(me) = me else {
                        return Err(Error::Config(format!(
                            "--initial-cluster-state existing: the cluster has no member with peer URLs {}; add it first with `etcdctl member add`",
                            mine.join(",")
                        )));
                    };
                    cfg.member_id = me.id;
                    cfg.cluster_id = resp.cluster_id;
                    tracing::info!(cluster_id = format!("{:x}", resp.cluster_id), member_id = format!("{:x}", me.id), peer = %url, "joining an existing cluster");
                    let mut members = resp.members;
                    for m in &mut members {
                        if m.id == me.id {
                            m.name = cfg.name.clone();
                        }
                    }
                    return Ok(members);
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Config(
                "--initial-cluster-state existing: no member of --initial-cluster answered; is the cluster running and was this member added with `member add`?".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the Raft position the engine's data reflects.
pub(super) fn load_apply_state(engine: &Engine) -> Result<ApplyState> {
    let bytes = engine
        .meta_get(RAFT_BUCKET, APPLY_STATE_KEY)
        .ok_or_else(|| Error::Internal("the engine has members but no raft apply state".into()))?;
    let stored = RaftApplyState::decode(bytes.as_slice())
        .map_err(|e| Error::Internal(format!("undecodable raft apply state: {e}")))?;
    let conf_state = ConfState::parse_from_bytes(&stored.conf_state)
        .map_err(|e| Error::Internal(format!("undecodable conf state: {e}")))?;
    Ok(ApplyState { index: engine.applied_index(), term: stored.term, conf_state })
}

/// A member's engine as [`open_engine`] leaves it.
pub(super) struct Opened {
    pub engine: Engine,
    /// The members stored in it.
    pub members: Vec<StoredMember>,
    /// How it was opened.
    pub options: logbook_engine::Options,
    /// Whether it was bootstrapped just now (etcd's member not yet
    /// initialized: no data to check against the peers').
    pub fresh: bool,
}

/// The engine's settings from the flags: compaction batches as
/// `--compaction-batch-limit` and `--compaction-sleep-interval` say (0 keeps
/// etcd's defaults, 1000 and 10 ms, as etcd's store does).
fn engine_options(cfg: &Config) -> logbook_engine::Options {
    let mut o = logbook_engine::Options::default();
    if cfg.compaction_batch_limit > 0 {
        o.compaction_batch_limit = cfg.compaction_batch_limit as usize;
    }
    if !cfg.compaction_sleep_interval.is_zero() {
        o.compaction_sleep_interval = cfg.compaction_sleep_interval;
    }
    // --backend-batch-interval/-limit: the engine's background commit batching,
    // etcd's backend transaction batching (0: the defaults, 100 ms and 10 000).
    if let Some(interval) = cfg.backend_batch_interval {
        o.commit_interval = interval;
    }
    if let Some(limit) = cfg.backend_batch_limit {
        o.commit_max_writes = usize::try_from(limit).unwrap_or(usize::MAX);
    }
    // Logbook's own: the engine's two caches (docs/memory.md).
    o.latest_cache_size = usize::try_from(cfg.latest_cache_bytes).unwrap_or(usize::MAX);
    o.cache_size = usize::try_from(cfg.page_cache_bytes).unwrap_or(usize::MAX);
    o
}

/// Opens the member's engine, bootstrapping a new member's (or joining a
/// running cluster), and settles the member's and cluster's IDs from it.
pub(super) async fn open_engine(cfg: &mut Config) -> Result<Opened> {
    create_dir(cfg.db_path.parent().expect("db path has a parent"))?;
    create_dir(&cfg.wal_dir)?;
    let engine_options = engine_options(cfg);
    let engine = Engine::open(&cfg.db_path, engine_options.clone())?;

    let fresh = load_members(&engine).is_empty();
    if fresh {
        let joined = if cfg.new_cluster { None } else { Some(join_existing(cfg).await?) };
        bootstrap(cfg, &engine, joined.as_deref())?;
    } else {
        tracing::info!(data_dir = %cfg.data_dir.display(), applied = engine.applied_index(), "restarting member");
    }
    if let Some(id) = engine.meta_get(CLUSTER_BUCKET, MEMBER_ID_KEY) {
        cfg.member_id = u64::from_be_bytes(
            id.as_slice()
                .try_into()
                .map_err(|_| Error::Internal("stored member ID is not 8 bytes".into()))?,
        );
    }
    if cfg.force_new_cluster && !fresh {
        force_new_cluster(cfg, &engine)?;
    }
    let members = load_members(&engine);
    if !members.iter().any(|m| m.id == cfg.member_id) {
        return Err(Error::Config(format!(
            "member {:x} (from --name and peer URLs) is not a member of the cluster stored in {}",
            cfg.member_id,
            cfg.data_dir.display()
        )));
    }
    if let Some(id) = engine.meta_get(CLUSTER_BUCKET, CLUSTER_ID_KEY) {
        cfg.cluster_id = u64::from_be_bytes(
            id.as_slice()
                .try_into()
                .map_err(|_| Error::Internal("stored cluster ID is not 8 bytes".into()))?,
        );
    }

    Ok(Opened { engine, members, options: engine_options, fresh })
}

/// `--force-new-cluster` on a member with data: it becomes the one voter of
/// its cluster, keeping its data, its member ID and the cluster ID. Every
/// other member is removed (recorded as removed, so it is refused if it
/// comes back), as the configuration changes etcd appends to its log at
/// such a start remove them. The entries its WAL holds past the commit
/// index are dropped by [`recover_raft_log`]: they were never committed.
fn force_new_cluster(cfg: &Config, engine: &Engine) -> Result<()> {
    let me = cfg.member_id;
    let members = load_members(engine);
    let stored = engine
        .meta_get(RAFT_BUCKET, APPLY_STATE_KEY)
        .ok_or_else(|| Error::Internal("the engine has members but no raft apply state".into()))?;
    let mut state = RaftApplyState::decode(stored.as_slice())
        .map_err(|e| Error::Internal(format!("undecodable raft apply state: {e}")))?;
    state.conf_state =
        ConfState::from((vec![me], Vec::<u64>::new())).write_to_bytes().expect("encodes").into();
    let mut txn = engine.write(engine.applied_index());
    let mut removed = Vec::new();
    for m in &members {
        if m.id == me {
            // A learner forced to be the cluster is its voter.
            let mut mine = m.clone();
            mine.is_learner = false;
            txn.meta_put(MEMBERS_BUCKET, &member_key(me), &mine.encode_to_vec());
        } else {
            txn.meta_delete(MEMBERS_BUCKET, &member_key(m.id));
            txn.meta_put(REMOVED_BUCKET, &member_key(m.id), REMOVED_VALUE);
            removed.push(format!("{:x}", m.id));
        }
    }
    txn.meta_put(RAFT_BUCKET, APPLY_STATE_KEY, &state.encode_to_vec());
    txn.commit();
    engine.commit()?;
    tracing::info!(
        cluster_id = format!("{:x}", cfg.cluster_id),
        local_member_id = format!("{me:x}"),
        removed_members = ?removed,
        "forcing restart member"
    );
    Ok(())
}

/// Opens the WAL and rebuilds the Raft log from it: every entry after the
/// engine's applied index, and the hard state.
pub(super) fn recover_raft_log(
    cfg: &Config,
    engine: Arc<EngineCell>,
    apply_state: &Arc<parking_lot::Mutex<ApplyState>>,
) -> Result<(Arc<Wal>, RaftStorage)> {
    let applied = apply_state.lock().index;
    // The Raft log: everything after what the engine reflects. The backend is
    // `--wal-backend`; `auto` (the default) times a small durable write with each
    // backend that can run on the WAL's disk and keeps the fastest. On a virtio disk
    // without FUA that is pwrite + fdatasync or io_uring, whichever measures faster
    // (io_uring hands every fdatasync to a kernel worker, two more context switches per
    // commit with one commit in flight; the Raft thread commits small appends in place,
    // `RaftLoop::commit_in_place`, where a plain system call is the whole cost). On a
    // drive with FUA an O_DIRECT write with RWF_DSYNC is durable when it completes, with
    // no flush at all.
    let wal_options = logbook_wal::Options { backend: cfg.wal_backend, ..Default::default() };
    let wal_options = with_test_segment_size(wal_options);
    let wal = Arc::new(Wal::open(&cfg.wal_dir, wal_options)?);
    tracing::info!(
        wal_dir = %cfg.wal_dir.display(),
        asked = %cfg.wal_backend,
        backend = %wal.backend(),
        how = wal.backend_name(),
        measured = %wal.backend_note(),
        "WAL backend chosen"
    );
    if wal.last_index() > applied && wal.first_index() > applied + 1 {
        return Err(Error::Internal(format!(
            "the WAL starts at {} but the engine needs entries from {}",
            wal.first_index(),
            applied + 1
        )));
    }
    if wal.last_index() < applied {
        // The engine is ahead of the log: a snapshot from the leader was installed (the
        // engine file replaced) and the member stopped before the WAL recorded the jump.
        // Raft's log continues after the engine's index, so the WAL must too, or the next
        // append would leave a gap.
        tracing::info!(
            wal_last = wal.last_index(),
            applied,
            "the WAL ends before the engine's applied index; moving its start past it"
        );
        wal.compact_prefix(applied + 1)?;
    }
    if cfg.force_new_cluster {
        // etcd's force-new-cluster start: entries past the commit index (or
        // the applied one, when the commit index was not yet persisted)
        // were never committed; the new one-member cluster must not commit
        // them.
        let commit = wal.hard_state().commit.max(applied);
        if wal.last_index() > commit {
            tracing::info!(
                from = commit + 1,
                to = wal.last_index(),
                "discarding uncommitted WAL entries"
            );
            wal.truncate_suffix(commit + 1)?.wait()?;
        }
    }
    let storage = RaftStorage::new(engine, apply_state.clone());
    if wal.last_index() > applied {
        let records = wal.read(applied + 1, wal.last_index() + 1)?;
        let mut entries = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let e = Entry::parse_from_bytes(r).map_err(|e| {
                Error::Internal(format!(
                    "WAL record {} is not a raft entry: {e}",
                    applied + 1 + i as u64
                ))
            })?;
            entries.push(e);
        }
        storage.append(&entries)?;
    }
    let whs = wal.hard_state();
    let hs = HardState {
        term: whs.term.max(storage.mem().rl().hard_state().term),
        vote: whs.vote,
        commit: whs.commit.max(applied).min(wal.last_index().max(applied)),
        ..Default::default()
    };
    storage.set_hard_state(hs);

    Ok((wal, storage))
}

/// Internal, for tests, not etcd's: `LOGBOOK_WAL_SEGMENT_BYTES` sets the
/// size WAL segment files are preallocated to (default 64 MiB), so a test of
/// `--max-wals` sees segments fill without writing hundreds of megabytes.
pub const WAL_SEGMENT_BYTES_ENV: &str = "LOGBOOK_WAL_SEGMENT_BYTES";

fn with_test_segment_size(mut options: logbook_wal::Options) -> logbook_wal::Options {
    if let Some(n) = std::env::var(WAL_SEGMENT_BYTES_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        options.segment_size =
            n.clamp(logbook_wal::MIN_SEGMENT_SIZE, logbook_wal::MAX_SEGMENT_SIZE);
    }
    options
}
