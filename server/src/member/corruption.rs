//! Corruption checks, as etcd's `etcdserver/corrupt.go` runs them: members
//! that applied the same log must hash their keyspace alike at the same
//! revision and compaction.
//!
//! - [`initial_check`] (gate InitialCorruptCheck, or
//!   `--experimental-initial-corrupt-check`): a restarting member compares
//!   its HashKV with its peers' at its own revision before it serves peers or
//!   clients, and refuses to start on a mismatch at the same compaction
//!   (`<member ID> found data inconsistency with peers`).
//! - [`periodic`] (`--corrupt-check-time`): every interval the leader takes
//!   its hash, its peers' at the same revision, its own again after a
//!   linearizable read, and raises the CORRUPT alarm (through Raft) for the
//!   member that differs.
//! - [`compact_hash`] (gate CompactHashCheck, every
//!   `--compact-hash-check-time`): the leader compares the hashes its peers
//!   recorded at the latest compactions with its own
//!   (`state/hash_storage.rs`); members outvoted by a quorum get the alarm,
//!   and with no quorum the whole cluster does (member ID 0).
//!
//! A peer's hash comes from its peer service (`Peer.HashKv`, etcd's
//! `/members/hashkv`), asked for with this cluster's ID.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::{AlarmRequest, AlarmType, HashKvResponse};
use logbook_api::logbookpb::PeerHashKvRequest;
use logbook_api::logbookpb::StoredMember;
use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::logbookpb::peer_client::PeerClient;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::peer::service::CLUSTER_ID_MISMATCH;
use crate::services::context::Context;
use crate::state::hash_storage::KeyValueHash;
use crate::state::membership::load_members;
use crate::state::stores::Stores;

/// Why a peer's hash could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PeerError {
    /// The peer has not reached the revision (etcd's `ErrFutureRev`).
    FutureRevision,
    /// The peer compacted past it (etcd's `ErrCompacted`).
    Compacted,
    /// The peer belongs to another cluster.
    ClusterIdMismatch,
    /// Unreachable, timed out, or anything else.
    Other(String),
}

/// One peer's answer to a hash request.
struct PeerHash {
    id: u64,
    urls: Vec<String>,
    resp: Result<HashKvResponse, PeerError>,
}

impl PeerHash {
    fn ok(&self) -> Option<&HashKvResponse> {
        self.resp.as_ref().ok()
    }
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// Asks every other member for its HashKV at `revision`, each of its peer
/// URLs in turn until one answers (etcd's `getPeerHashKVs`).
async fn peer_hashes(
    cfg: &Config,
    members: &[StoredMember],
    me: u64,
    cluster_id: u64,
    revision: i64,
) -> Vec<PeerHash> {
    let mut out = Vec::new();
    for m in members.iter().filter(|m| m.id != me && !m.peer_urls.is_empty()) {
        let mut last = PeerError::Other("no peer URL answered".into());
        let mut got = None;
        for url in &m.peer_urls {
            match ask(cfg, url, cluster_id, revision).await {
                Ok(resp) => {
                    got = Some(resp);
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        local_member_id = %hex(me),
                        requested_revision = revision,
                        remote_peer_endpoint = %url,
                        error = ?e,
                        "failed hash kv request"
                    );
                    last = e;
                }
            }
        }
        out.push(PeerHash { id: m.id, urls: m.peer_urls.clone(), resp: got.ok_or(last) });
    }
    out
}

async fn ask(
    cfg: &Config,
    url: &str,
    cluster_id: u64,
    revision: i64,
) -> Result<HashKvResponse, PeerError> {
    let call = async {
        let ch = cfg.peer_dialer.connect(url).await.map_err(PeerError::Other)?;
        let resp = PeerClient::new(ch)
            .hash_kv(PeerHashKvRequest { cluster_id, revision })
            .await
            .map_err(|s| classify(s.message()))?;
        Ok::<_, PeerError>(resp.into_inner())
    };
    match tokio::time::timeout(cfg.request_timeout(), call).await {
        Ok(r) => r,
        Err(_) => Err(PeerError::Other("timed out".into())),
    }
}

fn classify(message: &str) -> PeerError {
    if message == Error::FutureRevision.to_string() {
        PeerError::FutureRevision
    } else if message == Error::Compacted.to_string() {
        PeerError::Compacted
    } else if message == CLUSTER_ID_MISMATCH {
        PeerError::ClusterIdMismatch
    } else {
        PeerError::Other(message.to_string())
    }
}

/// etcd's `InitialCheck`: run before the member serves peers or clients.
/// Only a hash that differs at the same compaction counts as a mismatch.
pub(super) async fn initial_check(cfg: &Config, stores: &Stores) -> Result<()> {
    let me = cfg.member_id;
    tracing::info!(
        local_member_id = %hex(me),
        timeout = ?cfg.request_timeout(),
        "starting initial corruption check"
    );
    let engine = stores.engine.get();
    let (h, _) = stores
        .hashes
        .hash_by_rev(&engine, 0)
        .map_err(|e| Error::Internal(format!("{} failed to fetch hash ({e})", hex(me))))?;
    let members = load_members(&engine);
    drop(engine);
    let peers = peer_hashes(cfg, &members, me, cfg.cluster_id, h.revision).await;
    let mut mismatch = 0;
    for p in &peers {
        match &p.resp {
            Ok(resp) => {
                if resp.hash == h.hash {
                    continue;
                }
                let peer_revision = resp.header.as_ref().map_or(0, |hd| hd.revision);
                if resp.compact_revision == h.compact_revision {
                    tracing::warn!(
                        local_member_id = %hex(me),
                        local_member_revision = h.revision,
                        local_member_compact_revision = h.compact_revision,
                        local_member_hash = h.hash,
                        remote_peer_id = %hex(p.id),
                        remote_peer_endpoints = ?p.urls,
                        remote_peer_revision = peer_revision,
                        remote_peer_compact_revision = resp.compact_revision,
                        remote_peer_hash = resp.hash,
                        "found different hash values from remote peer"
                    );
                    mismatch += 1;
                } else {
                    tracing::warn!(
                        local_member_id = %hex(me),
                        local_member_compact_revision = h.compact_revision,
                        remote_peer_id = %hex(p.id),
                        remote_peer_compact_revision = resp.compact_revision,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            Err(PeerError::FutureRevision) => tracing::warn!(
                local_member_id = %hex(me),
                local_member_revision = h.revision,
                remote_peer_id = %hex(p.id),
                remote_peer_endpoints = ?p.urls,
                "cannot fetch hash from slow remote peer"
            ),
            Err(PeerError::Compacted) => tracing::warn!(
                local_member_id = %hex(me),
                local_member_revision = h.revision,
                remote_peer_id = %hex(p.id),
                remote_peer_endpoints = ?p.urls,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            Err(PeerError::ClusterIdMismatch) => tracing::warn!(
                local_member_id = %hex(me),
                remote_peer_id = %hex(p.id),
                remote_peer_endpoints = ?p.urls,
                "cluster ID mismatch"
            ),
            Err(PeerError::Other(why)) => tracing::debug!(
                remote_peer_id = %hex(p.id),
                why = %why,
                "no hash from remote peer"
            ),
        }
    }
    if mismatch > 0 {
        return Err(Error::DataInconsistency(hex(me)));
    }
    tracing::info!(local_member_id = %hex(me), "initial corruption checking passed; no corruption");
    Ok(())
}

/// Raises CORRUPT for `member` (0: the whole cluster) through Raft, in the
/// background as etcd does.
fn trigger_corrupt_alarm(ctx: &Arc<Context>, member: u64) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let req = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: member,
            alarm: AlarmType::Corrupt as i32,
        };
        if let Err(e) = ctx.raft.propose_system(Internal::Alarm(req)).await {
            tracing::warn!(member = %hex(member), error = %e, "raising the CORRUPT alarm failed");
        }
    });
}

/// This member's hash at `revision` (0: now) and its current revision.
fn local_hash(ctx: &Context, revision: i64) -> Result<(KeyValueHash, i64)> {
    let engine = ctx.engine();
    ctx.stores.hashes.hash_by_rev(&engine, revision)
}

fn peers_of(ctx: &Context) -> Vec<StoredMember> {
    load_members(&ctx.engine())
}

/// Runs etcd's periodic check every `every` while this member leads.
pub(super) async fn periodic(ctx: Arc<Context>, every: Duration) {
    tracing::info!(local_member_id = %hex(ctx.cfg.member_id), interval = ?every, "enabled corruption checking");
    loop {
        tokio::time::sleep(every).await;
        if !ctx.status.is_leader() {
            continue;
        }
        if let Err(e) = periodic_check(&ctx).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// etcd's `PeriodicCheck`.
async fn periodic_check(ctx: &Arc<Context>) -> Result<()> {
    let me = ctx.cfg.member_id;
    let (h, _) = local_hash(ctx, 0)?;
    let members = peers_of(ctx);
    let peers = peer_hashes(&ctx.cfg, &members, me, ctx.cfg.cluster_id, h.revision).await;
    ctx.raft.read_index().await?;
    let (h2, rev2) = local_hash(ctx, 0)?;

    let mut alarmed = false;
    let mut mismatch = |id: u64| {
        if !alarmed {
            alarmed = true;
            trigger_corrupt_alarm(ctx, id);
        }
    };
    if h2.hash != h.hash && h2.revision == h.revision && h.compact_revision == h2.compact_revision {
        tracing::warn!(
            revision_1 = h.revision,
            compact_revision_1 = h.compact_revision,
            hash_1 = h.hash,
            revision_2 = h2.revision,
            compact_revision_2 = h2.compact_revision,
            hash_2 = h2.hash,
            "found hash mismatch"
        );
        mismatch(me);
    }
    let mut checked = 0;
    for p in &peers {
        let Some(resp) = p.ok() else { continue };
        checked += 1;
        let peer_revision = resp.header.as_ref().map_or(0, |hd| hd.revision);
        if peer_revision > rev2 {
            tracing::warn!(
                leader_revision = rev2,
                follower_revision = peer_revision,
                follower_peer_id = %hex(p.id),
                "revision from follower must be less than or equal to leader's"
            );
            mismatch(p.id);
        }
        if resp.compact_revision > h2.compact_revision {
            tracing::warn!(
                leader_compact_revision = h2.compact_revision,
                follower_compact_revision = resp.compact_revision,
                follower_peer_id = %hex(p.id),
                "compact revision from follower must be less than or equal to leader's"
            );
            mismatch(p.id);
        }
        if resp.compact_revision == h.compact_revision && resp.hash != h.hash {
            tracing::warn!(
                leader_compact_revision = h2.compact_revision,
                leader_hash = h.hash,
                follower_compact_revision = resp.compact_revision,
                follower_hash = resp.hash,
                follower_peer_id = %hex(p.id),
                "same compact revision then hashes must match"
            );
            mismatch(p.id);
        }
    }
    tracing::info!(number_of_peers_checked = checked, "finished peer corruption check");
    Ok(())
}

/// Runs etcd's compaction hash check every `every` while this member leads.
pub(super) async fn compact_hash(ctx: Arc<Context>, every: Duration) {
    let mut latest_checked = 0;
    loop {
        tokio::time::sleep(every).await;
        if !ctx.status.is_leader() {
            continue;
        }
        compact_hash_check(&ctx, &mut latest_checked).await;
    }
}

/// etcd's `CompactHashCheck`: the newest recorded compaction hash every peer
/// could be compared on settles it.
async fn compact_hash_check(ctx: &Arc<Context>, latest_checked: &mut i64) {
    let me = ctx.cfg.member_id;
    tracing::info!(local_member_id = %hex(me), timeout = ?ctx.cfg.request_timeout(), "starting compact hash check");
    let hashes: Vec<KeyValueHash> = ctx
        .stores
        .hashes
        .recorded()
        .into_iter()
        .take_while(|h| h.revision > *latest_checked)
        .collect();
    let members = peers_of(ctx);
    for (i, hash) in hashes.iter().enumerate() {
        let peers = peer_hashes(&ctx.cfg, &members, me, ctx.cfg.cluster_id, hash.revision).await;
        if peers.is_empty() {
            continue;
        }
        if check_peer_hashes(ctx, hash, &peers, latest_checked) {
            tracing::info!(number_of_hashes_checked = i + 1, "finished compaction hash check");
            return;
        }
    }
    tracing::info!(number_of_hashes_checked = hashes.len(), "finished compaction hash check");
}

/// Groups the members by hash at the leader's compaction; true when the
/// revision settled the check (all agreed, or alarms were raised).
fn check_peer_hashes(
    ctx: &Arc<Context>,
    leader: &KeyValueHash,
    peers: &[PeerHash],
    latest_checked: &mut i64,
) -> bool {
    let me = ctx.cfg.member_id;
    let verdict = group_by_hash(me, leader, peers);
    match verdict {
        Verdict::Consistent { checked } if checked == peers.len() => {
            tracing::info!(
                number_of_peers_checked = checked,
                revision = leader.revision,
                compact_revision = leader.compact_revision,
                "successfully checked hash on whole cluster"
            );
            *latest_checked = (*latest_checked).max(leader.revision);
            true
        }
        Verdict::Consistent { checked } => {
            tracing::warn!(
                number_of_peers_checked = checked,
                number_of_peers = peers.len(),
                revision = leader.revision,
                compact_revision = leader.compact_revision,
                "skipped revision in compaction hash check; was not able to check all peers"
            );
            false
        }
        Verdict::Mismatch { corrupt } => {
            if corrupt.is_empty() {
                tracing::error!(
                    leader_id = %hex(me),
                    leader_revision = leader.revision,
                    leader_compact_revision = leader.compact_revision,
                    leader_hash = leader.hash,
                    "Detected compaction hash mismatch but cannot identify the corrupted members, so intentionally set the memberID as 0"
                );
                trigger_corrupt_alarm(ctx, 0);
            }
            for id in corrupt {
                tracing::error!(
                    leader_id = %hex(me),
                    leader_revision = leader.revision,
                    leader_compact_revision = leader.compact_revision,
                    leader_hash = leader.hash,
                    peer_id = %hex(id),
                    "Detected compaction hash mismatch"
                );
                trigger_corrupt_alarm(ctx, id);
            }
            true
        }
    }
}

/// What the compaction hashes of a cluster say.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Every member compared agrees; `checked` peers could be compared.
    Consistent { checked: usize },
    /// Hashes differ: the members outside the quorum's hash, or none when
    /// no hash has a quorum (the whole cluster is suspect).
    Mismatch { corrupt: Vec<u64> },
}

fn group_by_hash(me: u64, leader: &KeyValueHash, peers: &[PeerHash]) -> Verdict {
    let mut by_hash: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    by_hash.entry(leader.hash).or_default().push(me);
    let mut checked = 0;
    for p in peers {
        let reason = match &p.resp {
            Err(_) => Some("no response".to_string()),
            Ok(r) if r.compact_revision != leader.compact_revision => Some(format!(
                "the peer's CompactRevision {} doesn't match leader's CompactRevision {}",
                r.compact_revision, leader.compact_revision
            )),
            Ok(_) => None,
        };
        if let Some(reason) = reason {
            tracing::warn!(
                number_of_peers = peers.len(),
                leader_id = %hex(me),
                peer_id = %hex(p.id),
                reason,
                "Skipped peer's hash"
            );
            continue;
        }
        checked += 1;
        let hash = p.ok().expect("answered").hash;
        by_hash.entry(hash).or_default().push(p.id);
    }
    if by_hash.len() == 1 {
        return Verdict::Consistent { checked };
    }
    // etcd's quorum of the members asked, the leader among them.
    let members = peers.len() + 1;
    let quorum = members / 2 + 1;
    let majority = by_hash.iter().find(|(_, ids)| ids.len() >= quorum).map(|(h, _)| *h);
    match majority {
        Some(h) => Verdict::Mismatch {
            corrupt: by_hash.into_iter().filter(|(k, _)| *k != h).flat_map(|(_, v)| v).collect(),
        },
        None => Verdict::Mismatch { corrupt: Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logbook_api::etcdserverpb::ResponseHeader;

    fn answer(id: u64, hash: u32, compact: i64) -> PeerHash {
        PeerHash {
            id,
            urls: Vec::new(),
            resp: Ok(HashKvResponse {
                header: Some(ResponseHeader { member_id: id, revision: 10, ..Default::default() }),
                hash,
                compact_revision: compact,
                hash_revision: 8,
            }),
        }
    }

    fn silent(id: u64) -> PeerHash {
        PeerHash { id, urls: Vec::new(), resp: Err(PeerError::Other("down".into())) }
    }

    const LEADER: KeyValueHash = KeyValueHash { hash: 7, compact_revision: 4, revision: 8 };

    #[test]
    fn all_alike_is_consistent_and_a_silent_peer_leaves_it_unsettled() {
        let peers = [answer(2, 7, 4), answer(3, 7, 4)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Consistent { checked: 2 });
        let peers = [answer(2, 7, 4), silent(3)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Consistent { checked: 1 });
        // Another compaction is skipped, not a mismatch.
        let peers = [answer(2, 9, 6), answer(3, 7, 4)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Consistent { checked: 1 });
    }

    #[test]
    fn the_member_outvoted_by_a_quorum_is_corrupt() {
        let peers = [answer(2, 7, 4), answer(3, 9, 4)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Mismatch { corrupt: vec![3] });
        // The leader itself can be the odd one out.
        let peers = [answer(2, 9, 4), answer(3, 9, 4)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Mismatch { corrupt: vec![1] });
    }

    #[test]
    fn without_a_quorum_nobody_is_named() {
        let peers = [answer(2, 8, 4), answer(3, 9, 4)];
        assert_eq!(group_by_hash(1, &LEADER, &peers), Verdict::Mismatch { corrupt: vec![] });
    }

    #[test]
    fn peer_errors_are_told_apart_by_etcds_messages() {
        assert_eq!(
            classify("etcdserver: mvcc: required revision is a future revision"),
            PeerError::FutureRevision
        );
        assert_eq!(
            classify("etcdserver: mvcc: required revision has been compacted"),
            PeerError::Compacted
        );
        assert_eq!(classify(CLUSTER_ID_MISMATCH), PeerError::ClusterIdMismatch);
    }
}
