//! Applying one committed Raft entry's request to the engine. Every member
//! runs this for every entry, in log order, so it must be deterministic: it
//! reads only the engine and the request.

use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::{
    AlarmMember, AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantResponse,
    LeaseRevokeResponse, PutResponse, TxnResponse,
};
use logbook_api::logbookpb::internal_request::Request;
use logbook_api::logbookpb::{MemberAttributes, StoredLease, StoredMember};
use logbook_engine::{Engine, WriteTxn};
use prost::Message;

use crate::error::{Error, Result};
use crate::state::alarms::Alarms;
use crate::state::auth::{AuthChange, AuthStore, Requester};
use crate::state::kv_view::Leased;
use crate::state::lessor::Lessor;

use crate::schema::{
    ALARM_BUCKET, CLUSTER_BUCKET, CLUSTER_VERSION_KEY, DOWNGRADE_KEY, LEASE_BUCKET, MEMBERS_BUCKET,
    alarm_key, lease_key, member_key,
};
use crate::state::txn::{
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
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    /// A membership change: the member added, promoted or removed.
    Members(StoredMember),
    /// A member's peer URLs changed.
    MemberUpdated(StoredMember),
    /// An auth store change; the token of an Authenticate.
    Auth(Option<String>),
}

/// What, besides the engine, applying a request reads and updates: the
/// member's leases, alarms and auth store, who proposed the request and the
/// entry's index.
pub struct ApplyContext<'a> {
    pub lessor: &'a Lessor,
    pub alarms: &'a Alarms,
    pub auth: &'a AuthStore,
    pub who: Requester<'a>,
    pub index: u64,
}

/// Applies `request` inside `txn`. On error nothing has been written.
pub fn apply_request(
    engine: &Engine,
    txn: &mut WriteTxn<'_>,
    ctx: &ApplyContext<'_>,
    request: &Request,
    revs: Revisions,
) -> Result<Applied> {
    let ApplyContext { lessor, alarms, auth, who, .. } = *ctx;
    // A corrupt cluster takes no writes at all (etcd's corrupt applier,
    // checked before the out-of-space one).
    if alarms.corrupt() && refused_when_corrupt(request) {
        return Err(Error::Corrupt);
    }
    // Out of space, nothing that grows the store is applied (on every
    // member alike, since the alarm itself came through Raft).
    if alarms.no_space() && grows_store(request) {
        return Err(Error::NoSpace);
    }
    let lease_exists = |id: i64| lessor.exists(id);
    let mut kv = Leased { txn, lessor };
    match request {
        Request::Put(p) => {
            auth.check_put(who, lessor, &p.key, p.lease, p.prev_kv)?;
            check_put_applies(&kv, p, &lease_exists)?;
            Ok(Applied::Put(execute_put(&mut kv, p)?))
        }
        Request::DeleteRange(d) => {
            auth.check_delete(who, &d.key, &d.range_end, d.prev_kv)?;
            Ok(Applied::DeleteRange(execute_delete(&mut kv, d)?))
        }
        Request::Txn(t) => {
            auth.check_txn(who, lessor, t)?;
            let path = compare_to_path(&kv, t)?;
            check_path(&kv, t, &path, revs, &lease_exists)?;
            Ok(Applied::Txn(execute_txn(&mut kv, t, &path)?))
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
            publish(engine, kv.txn, attrs);
            Ok(Applied::Published)
        }
        Request::LeaseGrant(g) => {
            // The proposer chose the ID and the final TTL, so every member
            // applies the same grant whatever its own settings.
            if g.id == 0 || lessor.exists(g.id) {
                return Err(Error::LeaseExist);
            }
            let stored = StoredLease { id: g.id, ttl: g.ttl, remaining_ttl: 0 };
            kv.txn.meta_put(LEASE_BUCKET, &lease_key(g.id), &stored.encode_to_vec());
            lessor.grant(g.id, g.ttl);
            Ok(Applied::LeaseGrant(LeaseGrantResponse {
                id: g.id,
                ttl: g.ttl,
                ..Default::default()
            }))
        }
        Request::Alarm(a) => {
            let member = AlarmMember { member_id: a.member_id, alarm: a.alarm };
            let key = alarm_key(a.member_id, a.alarm);
            let changed = if a.action == AlarmAction::Activate as i32 {
                kv.txn.meta_put(ALARM_BUCKET, &key, &member.encode_to_vec());
                alarms.activate(a.member_id, a.alarm)
            } else {
                kv.txn.meta_delete(ALARM_BUCKET, &key);
                alarms.deactivate(a.member_id, a.alarm)
            };
            if changed {
                tracing::warn!(
                    member = format!("{:x}", a.member_id),
                    alarm = a.alarm,
                    action = a.action,
                    "alarm changed"
                );
            }
            let alarms = if changed { vec![member] } else { Vec::new() };
            Ok(Applied::Alarm(AlarmResponse { header: None, alarms }))
        }
        Request::MemberUpdate(u) => {
            let key = member_key(u.id);
            let Some(bytes) = engine.meta_get(MEMBERS_BUCKET, &key) else {
                return Err(Error::MemberNotFound);
            };
            let mut m = StoredMember::decode(bytes.as_slice()).expect("member records decode");
            m.peer_urls = u.peer_ur_ls.clone();
            kv.txn.meta_put(MEMBERS_BUCKET, &key, &m.encode_to_vec());
            Ok(Applied::MemberUpdated(m))
        }
        Request::LeaseRevoke(r) => {
            if !lessor.exists(r.id) {
                return Err(Error::LeaseNotFound);
            }
            auth.check_revoke(who, lessor, r.id)?;
            // Every key of the lease goes in this one revision.
            for key in lessor.keys(r.id) {
                kv.txn.delete_range(&key, &[])?;
            }
            kv.txn.meta_delete(LEASE_BUCKET, &lease_key(r.id));
            lessor.revoke(r.id);
            Ok(Applied::LeaseRevoke(LeaseRevokeResponse::default()))
        }
        Request::ClusterVersionSet(v) => {
            let from = crate::state::membership::load_cluster_version(engine);
            if *v == crate::version::cluster_version() {
                kv.txn.meta_delete(CLUSTER_BUCKET, CLUSTER_VERSION_KEY);
            } else {
                kv.txn.meta_put(CLUSTER_BUCKET, CLUSTER_VERSION_KEY, v.as_bytes());
            }
            tracing::info!(from = %format!("{}.{}", from.0, from.1), to = %v, "updated cluster version");
            // The storage version follows at once (etcd's UpdateStorageVersionIfNeeded).
            let downgrade = crate::state::membership::load_downgrade_info(engine);
            if downgrade.enabled {
                tracing::info!(
                    target_version = %downgrade.target_version,
                    server_version = crate::version::ETCD_VERSION,
                    "The server is ready to downgrade"
                );
            }
            Ok(Applied::Published)
        }
        Request::DowngradeInfoSet(info) => {
            if info.enabled {
                kv.txn.meta_put(CLUSTER_BUCKET, DOWNGRADE_KEY, &info.encode_to_vec());
            } else {
                kv.txn.meta_delete(CLUSTER_BUCKET, DOWNGRADE_KEY);
            }
            Ok(Applied::Published)
        }
        Request::LeaseCheckpoints(c) => {
            for cp in &c.checkpoints {
                lessor.checkpoint(kv.txn, cp.id, cp.remaining_ttl);
            }
            Ok(Applied::Published)
        }
        Request::AuthEnable(_) => auth_change(kv.txn, ctx, AuthChange::Enable),
        Request::AuthDisable(_) => auth_change(kv.txn, ctx, AuthChange::Disable),
        Request::Authenticate(a) => auth_change(kv.txn, ctx, AuthChange::Authenticate(a)),
        Request::AuthUserAdd(r) => auth_change(kv.txn, ctx, AuthChange::UserAdd(r)),
        Request::AuthUserDelete(r) => auth_change(kv.txn, ctx, AuthChange::UserDelete(&r.name)),
        Request::AuthUserChangePassword(r) => {
            auth_change(kv.txn, ctx, AuthChange::UserChangePassword(r))
        }
        Request::AuthUserGrantRole(r) => auth_change(kv.txn, ctx, AuthChange::UserGrantRole(r)),
        Request::AuthUserRevokeRole(r) => auth_change(kv.txn, ctx, AuthChange::UserRevokeRole(r)),
        Request::AuthRoleAdd(r) => auth_change(kv.txn, ctx, AuthChange::RoleAdd(&r.name)),
        Request::AuthRoleDelete(r) => auth_change(kv.txn, ctx, AuthChange::RoleDelete(&r.role)),
        Request::AuthRoleGrantPermission(r) => {
            auth_change(kv.txn, ctx, AuthChange::RoleGrantPermission(r))
        }
        Request::AuthRoleRevokePermission(r) => {
            auth_change(kv.txn, ctx, AuthChange::RoleRevokePermission(r))
        }
    }
}

fn auth_change(
    txn: &mut WriteTxn<'_>,
    ctx: &ApplyContext<'_>,
    change: AuthChange<'_>,
) -> Result<Applied> {
    ctx.auth.apply(txn, ctx.who, ctx.index, change).map(Applied::Auth)
}

/// Whether etcd's corrupt applier refuses the request: every keyspace and
/// lease write (read-only transactions never reach the state machine).
pub fn refused_when_corrupt(request: &Request) -> bool {
    matches!(
        request,
        Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseRevoke(_)
    )
}

/// Whether a request can make the store bigger: a put, a transaction that
/// may put, a lease grant.
pub fn grows_store(request: &Request) -> bool {
    match request {
        Request::Put(_) | Request::LeaseGrant(_) => true,
        Request::Txn(t) => !crate::state::txn::is_read_only(t) && txn_has_put(t),
        _ => false,
    }
}

fn txn_has_put(t: &logbook_api::etcdserverpb::TxnRequest) -> bool {
    use logbook_api::etcdserverpb::request_op::Request as Op;
    t.success.iter().chain(&t.failure).any(|op| match &op.request {
        Some(Op::RequestPut(_)) => true,
        Some(Op::RequestTxn(inner)) => txn_has_put(inner),
        _ => false,
    })
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
