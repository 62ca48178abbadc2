//! The cluster's members as stored in the engine's `members` bucket: written
//! at bootstrap from `--initial-cluster`, updated through Raft (a member
//! publishing its name and client URLs, membership changes), read by
//! MemberList and the peer transport.

use logbook_api::etcdserverpb::Member;
use logbook_api::logbookpb::StoredMember;
use logbook_engine::Engine;
use prost::Message;

/// The engine bucket holding one `StoredMember` per member, keyed by ID.
pub const MEMBERS_BUCKET: &str = "members";

/// The key of a member in [`MEMBERS_BUCKET`]: its ID, big-endian.
pub fn member_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
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
