//! etcd's backend layout inside the bbolt file: bucket names, key encodings, values.
//!
//! ```text
//! bucket "key":   | main: u64 BE | '_' | sub: u64 BE | ['t' if a tombstone] |  -> mvccpb.KeyValue
//!                 (a tombstone's value holds only the key)
//! bucket "meta":  "consistent_index"    -> u64 BE (the last applied Raft index)
//!                 "scheduledCompactRev" -> revision key of {compact, 0} (17 bytes)
//!                 "finishedCompactRev"  -> revision key of {compact, 0} (17 bytes)
//!                 (etcd 3.5 adds "term" and "confState"; 3.4 ignores them)
//! bucket "members":          member ID in lower-case hex -> JSON {"id","peerURLs","name","clientURLs"[,"isLearner"]}
//! bucket "members_removed":  member ID in hex -> "removed"
//! bucket "cluster":          "clusterVersion" -> e.g. "3.5.0"
//! bucket "lease":            lease ID: i64 BE -> leasepb.Lease
//! bucket "auth":             "authEnabled" -> [0|1], "authRevision" -> u64 BE
//! buckets "authUsers", "authRoles": name -> authpb.User / authpb.Role
//! bucket "alarm":            encoded etcdserverpb.AlarmMember -> empty
//! ```

use logbook_api::mvccpb::KeyValue;
use logbook_engine::Revision;
use prost::Message;

use crate::error::{Error, Result};

pub const KEY: &str = "key";
pub const META: &str = "meta";
pub const LEASE: &str = "lease";
pub const MEMBERS: &str = "members";
pub const MEMBERS_REMOVED: &str = "members_removed";
pub const CLUSTER: &str = "cluster";
pub const AUTH: &str = "auth";
pub const AUTH_USERS: &str = "authUsers";
pub const AUTH_ROLES: &str = "authRoles";
pub const ALARM: &str = "alarm";

/// Every bucket of etcd's backend, in bbolt's (byte) order.
pub const BUCKETS: [&str; 10] =
    [ALARM, AUTH, AUTH_ROLES, AUTH_USERS, CLUSTER, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META];

pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// Length of a revision key; a tombstone's is one more.
pub const REV_KEY_LEN: usize = 17;
pub const TOMBSTONE_MARK: u8 = b't';

/// Encodes a revision as etcd's `key` bucket does.
pub fn encode_rev(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(REV_KEY_LEN + 1);
    k.extend_from_slice(&(rev.main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if tombstone {
        k.push(TOMBSTONE_MARK);
    }
    k
}

/// Decodes a `key` bucket key: the revision, and whether it marks a tombstone.
pub fn decode_rev(k: &[u8]) -> Result<(Revision, bool)> {
    let tombstone = match k.len() {
        REV_KEY_LEN => false,
        18 if k[17] == TOMBSTONE_MARK => true,
        _ => return Err(Error::NotEtcd(format!("malformed revision key {k:02x?}"))),
    };
    if k[8] != b'_' {
        return Err(Error::NotEtcd(format!("malformed revision key {k:02x?}")));
    }
    let main = u64::from_be_bytes(k[0..8].try_into().expect("8 bytes"));
    let sub = u64::from_be_bytes(k[9..17].try_into().expect("8 bytes"));
    if main > i64::MAX as u64 || sub > i64::MAX as u64 {
        return Err(Error::NotEtcd(format!("revision key {k:02x?} out of range")));
    }
    Ok((Revision::new(main as i64, sub as i64), tombstone))
}

/// Encodes a `key` bucket value.
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    kv.encode_to_vec()
}

/// Decodes a `key` bucket value.
pub fn decode_kv(v: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(v).map_err(|e| Error::NotEtcd(format!("undecodable mvccpb.KeyValue: {e}")))
}

/// A member as etcd stores it in the `members` bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl EtcdMember {
    /// The `members` bucket key: the ID in lower-case hex, unpadded (etcd's `types.ID`).
    pub fn key(&self) -> Vec<u8> {
        format!("{:x}", self.id).into_bytes()
    }

    /// The JSON etcd's `json.Marshal(member)` produces (same field order and omissions).
    pub fn to_json(&self) -> Vec<u8> {
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| json_string(s)).collect();
            format!("[{}]", items.join(","))
        };
        let mut s = format!("{{\"id\":{},\"peerURLs\":{}", self.id, list(&self.peer_urls));
        if self.is_learner {
            s.push_str(",\"isLearner\":true");
        }
        if !self.name.is_empty() {
            s.push_str(&format!(",\"name\":{}", json_string(&self.name)));
        }
        if !self.client_urls.is_empty() {
            s.push_str(&format!(",\"clientURLs\":{}", list(&self.client_urls)));
        }
        s.push('}');
        s.into_bytes()
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' | '>' | '&' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_match_etcd() {
        let k = encode_rev(Revision::new(2, 1), false);
        assert_eq!(k, b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x01");
        assert_eq!(decode_rev(&k).unwrap(), (Revision::new(2, 1), false));
        let t = encode_rev(Revision::new(300, 0), true);
        assert_eq!(t.len(), 18);
        assert_eq!(decode_rev(&t).unwrap(), (Revision::new(300, 0), true));
        assert!(decode_rev(b"short").is_err());
        assert!(encode_rev(Revision::new(1, 9), true) < encode_rev(Revision::new(2, 0), false));
    }

    #[test]
    fn buckets_are_in_byte_order() {
        assert!(BUCKETS.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
    }

    #[test]
    fn members_encode_as_etcd_does() {
        let m = EtcdMember {
            id: 0x8e9e05c52164694d,
            name: "e1".into(),
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            client_urls: vec![],
            is_learner: false,
        };
        assert_eq!(m.key(), b"8e9e05c52164694d");
        assert_eq!(
            String::from_utf8(m.to_json()).unwrap(),
            r#"{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],"name":"e1"}"#
        );
    }
}
