//! The cluster's members as stored in the engine's `members` bucket: written
//! at bootstrap from `--initial-cluster`, updated through Raft (a member
//! publishing its name and client URLs, membership changes), read by
//! MemberList and the peer transport. Removed members stay recorded in
//! `members_removed`, as etcd keeps them, so their peer traffic is refused.

use crate::schema::{
    CLUSTER_BUCKET, CLUSTER_VERSION_KEY, DOWNGRADE_KEY, MEMBERS_BUCKET, REMOVED_BUCKET, member_key,
};
use logbook_api::etcdserverpb::{DowngradeInfo, Member};
use logbook_api::logbookpb::StoredMember;
use logbook_engine::Engine;
use prost::Message;

/// What a removed member is told when it talks to the cluster, in etcd's words;
/// a member told this stops.
pub const REMOVED_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// Whether member `id` was removed from the cluster.
pub fn is_removed(engine: &Engine, id: u64) -> bool {
    engine.meta_get(REMOVED_BUCKET, &member_key(id)).is_some()
}

/// Every member the engine knows, in ID order.
pub fn load_members(engine: &Engine) -> Vec<StoredMember> {
    engine
        .meta_scan(MEMBERS_BUCKET)
        .into_iter()
        .map(|(_, v)| {
            StoredMember::decode(v.as_slice())
                .unwrap_or_else(|e| panic!("undecodable member record in the engine: {e}"))
        })
        .collect()
}

/// The cluster's downgrade state (Maintenance.Downgrade ENABLE / CANCEL);
/// not enabled when none was ever set.
pub fn load_downgrade_info(engine: &Engine) -> DowngradeInfo {
    engine
        .meta_get(CLUSTER_BUCKET, DOWNGRADE_KEY)
        .map(|v| {
            DowngradeInfo::decode(v.as_slice())
                .unwrap_or_else(|e| panic!("undecodable downgrade record in the engine: {e}"))
        })
        .unwrap_or_default()
}

/// The cluster version as major and minor: the one the leader set during a
/// downgrade, else the members' own.
pub fn load_cluster_version(engine: &Engine) -> (i64, i64) {
    engine
        .meta_get(CLUSTER_BUCKET, CLUSTER_VERSION_KEY)
        .and_then(|v| crate::version::parse_downgrade_target(&String::from_utf8_lossy(&v)))
        .unwrap_or_else(crate::version::cluster_major_minor)
}

/// A member in etcd's wire form.
pub fn to_wire(m: &StoredMember) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}
