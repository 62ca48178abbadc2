//! Applying one committed Raft entry's request to the engine. Every member
//! runs this for every entry, in log order, so it must be deterministic: it
//! reads only the engine and the request.

use logbook_api::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, PutResponse, TxnResponse,
};
use logbook_api::logbookpb::internal_request::Request;
use logbook_api::logbookpb::{MemberAttributes, StoredMember};
use logbook_engine::{Engine, WriteTxn};
use prost::Message;

use crate::error::{Error, Result};
use crate::membership::{MEMBERS_BUCKET, member_key};
use crate::txn::{
    Revisions, check_path, check_put_applies, compare_to_path, execute_delete, execute_put,
    execute_txn,
};

/// What applying a request produced, for the client waiting on it. Headers
/// are filled in by the service that answers.
#[derive(Debug)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// A compaction recorded at this revision.
    Compaction(CompactionResponse, i64),
    Published,
}

/// Leases do not exist yet, so no lease ID names one.
fn no_leases(_: i64) -> bool {
    false
}

/// Applies `request` inside `txn`. On error nothing has been written.
pub fn apply_request(
    engine: &Engine,
    txn: &mut WriteTxn<'_>,
    request: &Request,
    revs: Revisions,
) -> Result<Applied> {
    match request {
        Request::Put(p) => {
            check_put_applies(txn, p, &no_leases)?;
            Ok(Applied::Put(execute_put(txn, p)?))
        }
        Request::DeleteRange(d) => Ok(Applied::DeleteRange(execute_delete(txn, d)?)),
        Request::Txn(t) => {
            let path = compare_to_path(txn, t)?;
            check_path(txn, t, &path, revs, &no_leases)?;
            Ok(Applied::Txn(execute_txn(txn, t, &path)?))
        }
        Request::Compaction(c) => {
            if c.revision > revs.current {
                return Err(Error::FutureRevision);
            }
            if c.revision <= revs.compacted {
                return Err(Error::Compacted);
            }
            Ok(Applied::Compaction(CompactionResponse::default(), c.revision))
        }
        Request::Publish(attrs) => {
            publish(engine, txn, attrs);
            Ok(Applied::Published)
        }
    }
}

/// Records a member's name and client URLs, if it is still a member.
fn publish(engine: &Engine, txn: &mut WriteTxn<'_>, attrs: &MemberAttributes) {
    let key = member_key(attrs.member_id);
    // Side buckets change only through this (single) writer, so the engine's
    // view is the transaction's.
    let Some(bytes) = engine.meta_get(MEMBERS_BUCKET, &key) else {
        tracing::warn!(
            member = format!("{:x}", attrs.member_id),
            "publish from a removed member ignored"
        );
        return;
    };
    let mut member = StoredMember::decode(bytes.as_slice()).expect("member records decode");
    member.name = attrs.name.clone();
    member.client_urls = attrs.client_urls.clone();
    txn.meta_put(MEMBERS_BUCKET, &key, &member.encode_to_vec());
}
