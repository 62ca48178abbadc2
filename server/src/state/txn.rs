//! Transactions as etcd runs them: request checks before Raft (size of each
//! branch, empty keys, overlapping writes), then, when applied, every compare
//! evaluated against the state before the transaction (nested ones included),
//! the chosen branch checked, and its operations run in order inside one
//! revision, each seeing the writes before it.

use logbook_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use logbook_api::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, request_op, response_op,
};
use logbook_engine::{KeyValue, RangeOptions};

use crate::error::{Error, Result};
use crate::state::kv_view::{KvView, KvWrite};
use crate::state::range::{execute_range, to_wire};

// ------------------------------------------------------------ request checks

/// etcd's checks on a Put before it is proposed.
pub fn check_put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd's checks on a Range.
pub fn check_range(r: &RangeRequest) -> Result<()> {
    use logbook_api::etcdserverpb::range_request::{SortOrder, SortTarget};
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

/// etcd's checks on a DeleteRange.
pub fn check_delete(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd's checks on a Txn before it is proposed: no branch longer than
/// `max_ops`, no empty key, and no key written twice in one branch.
pub fn check_txn(r: &TxnRequest, max_ops: usize) -> Result<()> {
    check_txn_ops(r, max_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<()> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(q)) => check_range(q)?,
            Some(request_op::Request::RequestPut(q)) => check_put(q)?,
            Some(request_op::Request::RequestDeleteRange(q)) => check_delete(q)?,
            Some(request_op::Request::RequestTxn(q)) => check_txn_ops(q, max_ops - opc)?,
            None => return Err(Error::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted interval `[start, end)`; `end == None` means the single key.
#[derive(Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            // "\0" as an end means "to the end of the keyspace".
            Some(end) if end.as_slice() == b"\0" => key >= self.start.as_slice(),
            Some(end) => key >= self.start.as_slice() && key < end.as_slice(),
        }
    }
}

/// Returns the keys put and intervals deleted by `ops` (nested transactions
/// included), failing with DuplicateKey when a key is written twice.
fn check_intervals(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = Vec::new();
    for op in ops {
        if let Some(request_op::Request::RequestDeleteRange(d)) = &op.request {
            let end = (!d.range_end.is_empty()).then(|| d.range_end.to_vec());
            dels.push(Interval { start: d.key.to_vec(), end });
        }
    }
    let hits = |dels: &[Interval], k: &[u8]| dels.iter().any(|iv| iv.contains(k));

    let mut puts: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.push(k.clone());
        }
        for k in &puts_else {
            // The two branches exclude each other, so the same key in both is fine.
            if (puts.contains(k) && !puts_then.contains(k)) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            if !puts.contains(k) {
                puts.push(k.clone());
            }
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else { continue };
        let k = p.key.to_vec();
        if puts.contains(&k) || hits(&dels, &k) {
            return Err(Error::DuplicateKey);
        }
        puts.push(k);
    }
    Ok((puts, dels))
}

/// True when neither branch (nor any nested one) writes: such a transaction
/// is served like a read, without going through Raft.
pub fn is_read_only(r: &TxnRequest) -> bool {
    r.success.iter().chain(&r.failure).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) | None => true,
        Some(request_op::Request::RequestTxn(t)) => is_read_only(t),
        Some(_) => false,
    })
}

// ---------------------------------------------------------------- evaluation

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let ord = match target {
        CompareTarget::Value => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        other => {
            let want = match &c.target_union {
                Some(TargetUnion::Version(v))
                | Some(TargetUnion::CreateRevision(v))
                | Some(TargetUnion::ModRevision(v))
                | Some(TargetUnion::Lease(v)) => *v,
                _ => 0,
            };
            let have = match other {
                CompareTarget::Version => kv.version,
                CompareTarget::Create => kv.create_revision,
                CompareTarget::Mod => kv.mod_revision,
                CompareTarget::Lease => kv.lease,
                CompareTarget::Value => unreachable!("handled above"),
            };
            have.cmp(&want)
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

fn compare_holds(view: &impl KvView, c: &Compare) -> Result<bool> {
    let rr = view.range(&RangeOptions {
        key: c.key.to_vec(),
        range_end: c.range_end.to_vec(),
        ..Default::default()
    })?;
    if rr.kvs.is_empty() {
        // A missing key has no value to compare; every other target compares
        // as zero, as etcd does.
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(rr.kvs.iter().all(|kv| compare_kv(c, kv)))
}

/// Evaluates every compare the transaction will reach, depth first, against
/// the state before it runs. `path[i]` is whether the i-th transaction visited
/// (the outer one first) takes its success branch.
pub fn compare_to_path(view: &impl KvView, r: &TxnRequest) -> Result<Vec<bool>> {
    let mut path = Vec::new();
    walk_compares(view, r, &mut path)?;
    Ok(path)
}

fn walk_compares(view: &impl KvView, r: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let mut ok = true;
    for c in &r.compare {
        if !compare_holds(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    let ops = if ok { &r.success } else { &r.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(t)) = &op.request {
            walk_compares(view, t, path)?;
        }
    }
    Ok(())
}

/// Limits the checks of the chosen operations need.
#[derive(Debug, Clone, Copy)]
pub struct Revisions {
    /// The store's revision before the transaction.
    pub current: i64,
    /// The store's compacted revision.
    pub compacted: i64,
}

/// Checks the operations on `path` before any of them runs, so a failing
/// transaction changes nothing: ranges must name an available revision, puts
/// must name an existing lease and, with ignore_value/ignore_lease, an
/// existing key.
pub fn check_path(
    view: &impl KvView,
    r: &TxnRequest,
    path: &[bool],
    revs: Revisions,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<()> {
    let mut at = 0;
    check_path_at(view, r, path, &mut at, revs, lease_exists)
}

fn check_path_at(
    view: &impl KvView,
    r: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    revs: Revisions,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<()> {
    let ok = path[*at];
    *at += 1;
    for op in if ok { &r.success } else { &r.failure } {
        match &op.request {
            Some(request_op::Request::RequestRange(q)) => check_range_revision(q.revision, revs)?,
            Some(request_op::Request::RequestPut(p)) => check_put_applies(view, p, lease_exists)?,
            Some(request_op::Request::RequestDeleteRange(_)) | None => {}
            Some(request_op::Request::RequestTxn(t)) => {
                check_path_at(view, t, path, at, revs, lease_exists)?
            }
        }
    }
    Ok(())
}

/// A range at `revision` is possible: not compacted, not in the future.
pub fn check_range_revision(revision: i64, revs: Revisions) -> Result<()> {
    if revision > revs.current {
        return Err(Error::FutureRevision);
    }
    if revision > 0 && revision < revs.compacted {
        return Err(Error::Compacted);
    }
    Ok(())
}

/// A put can be applied: its lease exists; with ignore_value or
/// ignore_lease, its key exists.
pub fn check_put_applies(
    view: &impl KvView,
    p: &PutRequest,
    lease_exists: &dyn Fn(i64) -> bool,
) -> Result<()> {
    if p.lease != 0 && !lease_exists(p.lease) {
        return Err(Error::LeaseNotFound);
    }
    if p.ignore_value || p.ignore_lease {
        let rr = view.range(&RangeOptions { key: p.key.to_vec(), ..Default::default() })?;
        if rr.kvs.is_empty() {
            return Err(Error::KeyNotFound);
        }
    }
    Ok(())
}

// ----------------------------------------------------------------- execution

/// Runs a put whose checks passed.
pub fn execute_put(kv: &mut impl KvWrite, p: &PutRequest) -> Result<PutResponse> {
    let (mut value, mut lease) = (p.value.as_ref(), p.lease);
    let existing;
    if p.ignore_value || p.ignore_lease {
        let rr = kv.range(&RangeOptions { key: p.key.to_vec(), ..Default::default() })?;
        existing = rr.kvs.into_iter().next().ok_or(Error::KeyNotFound)?;
        if p.ignore_value {
            value = &existing.value;
        }
        if p.ignore_lease {
            lease = existing.lease;
        }
    }
    let prev_kv = if p.prev_kv {
        kv.put(&p.key, value, lease)?.map(to_wire)
    } else {
        kv.put_forget(&p.key, value, lease)?;
        None
    };
    Ok(PutResponse { header: Some(ResponseHeader::default()), prev_kv })
}

/// Runs a delete.
pub fn execute_delete(
    kv: &mut impl KvWrite,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse> {
    let deleted = kv.delete_range(&d.key, &d.range_end)?;
    Ok(DeleteRangeResponse {
        header: Some(ResponseHeader::default()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted.into_iter().map(to_wire).collect() } else { Vec::new() },
    })
}

/// Runs the branches chosen by `path`, in order.
pub fn execute_txn(kv: &mut impl KvWrite, r: &TxnRequest, path: &[bool]) -> Result<TxnResponse> {
    let mut at = 0;
    execute_txn_at(kv, r, path, &mut at)
}

fn execute_txn_at(
    kv: &mut impl KvWrite,
    r: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse> {
    let ok = path[*at];
    *at += 1;
    let ops = if ok { &r.success } else { &r.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(q)) => {
                response_op::Response::ResponseRange(execute_range(kv, q)?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                response_op::Response::ResponsePut(execute_put(kv, p)?)
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(execute_delete(kv, d)?)
            }
            Some(request_op::Request::RequestTxn(t)) => {
                response_op::Response::ResponseTxn(execute_txn_at(kv, t, path, at)?)
            }
            None => return Err(Error::KeyNotFound),
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded: ok, responses })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: Bytes::from(k.to_string()),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: Bytes::from(k.to_string()),
                range_end: Bytes::from(end.to_string()),
                prev_kv: false,
            })),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest { compare: vec![], success, failure }
    }

    #[test]
    fn duplicate_puts_and_overlapping_deletes_are_refused() {
        assert!(check_txn(&txn(vec![put("a"), put("b")], vec![]), 128).is_ok());
        assert!(matches!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), 128),
            Err(Error::DuplicateKey)
        ));
        assert!(matches!(
            check_txn(&txn(vec![del("a", "c"), put("b")], vec![]), 128),
            Err(Error::DuplicateKey)
        ));
        assert!(check_txn(&txn(vec![del("a", "c"), put("c")], vec![]), 128).is_ok());
        // The same key in both branches of a nested txn is fine...
        let nested = RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(vec![put("x")], vec![put("x")]))),
        };
        assert!(check_txn(&txn(vec![nested.clone()], vec![]), 128).is_ok());
        // ...but not next to a put of the same key at the outer level.
        assert!(matches!(
            check_txn(&txn(vec![nested, put("x")], vec![]), 128),
            Err(Error::DuplicateKey)
        ));
    }

    #[test]
    fn too_many_ops_and_empty_keys_are_refused() {
        let many: Vec<RequestOp> = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert!(matches!(check_txn(&txn(many, vec![]), 128), Err(Error::TooManyOps)));
        assert!(matches!(check_txn(&txn(vec![put("")], vec![]), 128), Err(Error::EmptyKey)));
        let empty_op = RequestOp { request: None };
        assert!(matches!(check_txn(&txn(vec![empty_op], vec![]), 128), Err(Error::KeyNotFound)));
    }

    #[test]
    fn compares_follow_etcd() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v1".to_vec(),
            version: 3,
            mod_revision: 7,
            ..Default::default()
        };
        let c = |target: CompareTarget, result: CompareResult, u: TargetUnion| Compare {
            result: result as i32,
            target: target as i32,
            key: Bytes::from_static(b"k"),
            range_end: Bytes::new(),
            target_union: Some(u),
        };
        assert!(compare_kv(
            &c(
                CompareTarget::Value,
                CompareResult::Equal,
                TargetUnion::Value(Bytes::from_static(b"v1"))
            ),
            &kv
        ));
        assert!(compare_kv(
            &c(
                CompareTarget::Value,
                CompareResult::Less,
                TargetUnion::Value(Bytes::from_static(b"v2"))
            ),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareTarget::Version, CompareResult::Greater, TargetUnion::Version(2)),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareTarget::Mod, CompareResult::NotEqual, TargetUnion::ModRevision(6)),
            &kv
        ));
        assert!(!compare_kv(
            &c(CompareTarget::Mod, CompareResult::Equal, TargetUnion::ModRevision(6)),
            &kv
        ));
        // A missing key compares as zeros: version = 0 holds.
        assert!(compare_kv(
            &c(CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0)),
            &KeyValue::default()
        ));
    }

    #[test]
    fn read_only_detection_looks_into_nested_txns() {
        let range = RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: Bytes::from_static(b"a"),
                ..Default::default()
            })),
        };
        assert!(is_read_only(&txn(vec![range.clone()], vec![range.clone()])));
        let nested_put = RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(vec![], vec![put("z")]))),
        };
        assert!(!is_read_only(&txn(vec![range], vec![nested_put])));
    }

    #[test]
    fn range_revision_checks() {
        let revs = Revisions { current: 10, compacted: 5 };
        assert!(check_range_revision(0, revs).is_ok());
        assert!(check_range_revision(5, revs).is_ok());
        assert!(matches!(check_range_revision(4, revs), Err(Error::Compacted)));
        assert!(matches!(check_range_revision(11, revs), Err(Error::FutureRevision)));
    }
}
