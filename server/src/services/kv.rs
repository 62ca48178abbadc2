//! The etcd KV service: Range, RangeStream (in [`super::range_stream`]), Put,
//! DeleteRange, Txn and Compact.
//!
//! Writes are checked as etcd checks them, proposed through Raft and answered
//! when this member has applied them. Linearizable reads (the default) wait
//! for a read index; serializable ones read the local engine at once.
//! Read-only transactions are served like reads.

use std::sync::Arc;

use logbook_api::etcdserverpb::kv_server::Kv;
use logbook_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse, response_op,
};
use logbook_api::logbookpb::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use crate::error::Result;
use crate::services::context::Context;
use crate::services::range_stream::{RangeStreamStream, range_stream};
use crate::services::request_log as rlog;
use crate::state::apply::Applied;
use crate::state::auth::{Access, AuthInfo};
use crate::state::kv_view::PinnedView;
use crate::state::range::execute_range;
use crate::state::txn::{
    Revisions, check_delete, check_path, check_put, check_range, check_txn, compare_to_path,
    execute_txn, is_read_only,
};

/// Serves KV.
pub struct KvService {
    pub ctx: Arc<Context>,
}

impl KvService {
    /// Range on behalf of `who`, header included. The Lock and Election
    /// services read through here, so their reads are the KV service's.
    pub async fn range_inner(
        &self,
        r: RangeRequest,
        who: Option<AuthInfo>,
    ) -> Result<RangeResponse> {
        check_range(&r)?;
        if !r.serializable {
            self.ctx.raft.read_index().await?;
        }
        self.ctx.stores.auth.check(who.as_ref(), &r.key, &r.range_end, Access::Read)?;
        let engine = self.ctx.engine();
        let revs =
            Revisions { current: engine.current_revision(), compacted: engine.compact_revision() };
        crate::state::txn::check_range_revision(r.revision, revs)?;
        let mut resp = execute_range(engine.as_ref(), &r)?;
        self.ctx.stores.auth.check_still_current(who.as_ref())?;
        resp.header =
            Some(self.ctx.header(revs.current.max(resp.header.map_or(0, |h| h.revision))));
        Ok(resp)
    }

    /// Txn on behalf of `who`, header included (read-only ones are served
    /// like reads).
    pub async fn txn_inner(&self, r: TxnRequest, who: Option<AuthInfo>) -> Result<TxnResponse> {
        check_txn(&r, self.ctx.cfg.max_txn_ops)?;
        if is_read_only(&r) {
            // Served without Raft, like a range: every op reads one revision.
            self.ctx.raft.read_index().await?;
            self.ctx.stores.auth.check_txn_for(who.as_ref(), &self.ctx.stores.lessor, &r)?;
            let engine = self.ctx.engine();
            let current = engine.current_revision();
            let revs = Revisions { current, compacted: engine.compact_revision() };
            let mut view = PinnedView { engine: engine.as_ref(), revision: current };
            let path = compare_to_path(&view, &r)?;
            check_path(&view, &r, &path, revs, &|_| false)?;
            let mut resp = execute_txn(&mut view, &r, &path)?;
            self.ctx.stores.auth.check_still_current(who.as_ref())?;
            resp.header = Some(self.ctx.header(current));
            return Ok(resp);
        }
        if crate::state::apply::grows_store(&Internal::Txn(r.clone())) {
            self.ctx.check_quota()?;
        }
        match self.ctx.raft.propose_as(Internal::Txn(r), who.as_ref()).await? {
            (Applied::Txn(mut resp), revision) => {
                fill_nested_headers(&mut resp, revision);
                resp.header = Some(self.ctx.header(revision));
                Ok(resp)
            }
            (other, _) => unreachable_apply("Txn", other),
        }
    }
}

impl KvService {
    /// DeleteRange on behalf of `who`, header included.
    pub async fn delete_inner(
        &self,
        r: DeleteRangeRequest,
        who: Option<&AuthInfo>,
    ) -> Result<DeleteRangeResponse> {
        check_delete(&r)?;
        match self.ctx.raft.propose_as(Internal::DeleteRange(r), who).await? {
            (Applied::DeleteRange(mut resp), revision) => {
                resp.header = Some(self.ctx.header(revision));
                Ok(resp)
            }
            (other, _) => unreachable_apply("DeleteRange", other),
        }
    }
}

fn unreachable_apply<T>(what: &str, got: Applied) -> Result<T> {
    panic!("a {what} request was applied as {got:?}")
}

/// Keys a Txn's range ops returned (the `Else: Get` of kube-apiserver's writes).
fn txn_kvs(resp: &TxnResponse) -> usize {
    resp.responses
        .iter()
        .map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(r)) => r.kvs.len(),
            Some(response_op::Response::ResponseTxn(t)) => txn_kvs(t),
            _ => 0,
        })
        .sum()
}

/// Nested responses carry the transaction's revision, as etcd's do.
fn fill_nested_headers(resp: &mut TxnResponse, revision: i64) {
    for op in &mut resp.responses {
        match &mut op.response {
            Some(response_op::Response::ResponsePut(p)) => {
                p.header = Some(ResponseHeader { revision, ..Default::default() })
            }
            Some(response_op::Response::ResponseDeleteRange(d)) => {
                d.header = Some(ResponseHeader { revision, ..Default::default() })
            }
            Some(response_op::Response::ResponseTxn(t)) => {
                fill_nested_headers(t, revision);
                t.header = Some(ResponseHeader { revision, ..Default::default() });
            }
            Some(response_op::Response::ResponseRange(_)) | None => {}
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    type RangeStreamStream = RangeStreamStream;

    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeStreamStream>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        self.ctx.log_request(|| rlog::range("RangeStream", &r));
        let stream = range_stream(self.ctx.clone(), r, who).await?;
        Ok(Response::new(stream))
    }

    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        let entry = self.ctx.request_log.is_some().then(|| rlog::range("Range", &r));
        let result = self.range_inner(r, who).await.map_err(Status::from);
        if let Some(mut e) = entry {
            if let Ok(resp) = &result {
                e.kvs = Some(resp.kvs.len());
                e.more = resp.more;
            }
            self.ctx.log_request(|| rlog::outcome(e, &result));
        }
        Ok(Response::new(result?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        self.ctx.log_request(|| rlog::put(&r.key, r.value.len(), r.lease, r.prev_kv));
        check_put(&r)?;
        self.ctx.check_quota()?;
        match self.ctx.raft.propose_as(Internal::Put(r), who.as_ref()).await? {
            (Applied::Put(mut resp), revision) => {
                resp.header = Some(self.ctx.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => Ok(unreachable_apply("Put", other)?),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        self.ctx.log_request(|| rlog::delete(&r.key, &r.range_end));
        Ok(Response::new(self.delete_inner(r, who.as_ref()).await?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        let entry = self.ctx.request_log.is_some().then(|| rlog::txn(&r));
        let result = self.txn_inner(r, who).await.map_err(Status::from);
        if let Some(mut e) = entry {
            if let Ok(resp) = &result {
                e.succeeded = Some(resp.succeeded);
                e.kvs = Some(txn_kvs(resp));
            }
            self.ctx.log_request(|| rlog::outcome(e, &result));
        }
        Ok(Response::new(result?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let who = self.ctx.auth_info(&request).await?;
        let r = request.into_inner();
        self.ctx
            .log_request(|| rlog::Entry { revision: Some(r.revision), ..rlog::plain("Compact") });
        let physical = r.physical;
        match self.ctx.raft.propose_as(Internal::Compaction(r), who.as_ref()).await? {
            (Applied::Compaction(mut resp, rev), revision) => {
                if physical {
                    let engine = self.ctx.engine();
                    tokio::task::spawn_blocking(move || engine.wait_compacted(rev))
                        .await
                        .map_err(|e| Status::internal(format!("compaction wait failed: {e}")))?;
                }
                resp.header = Some(self.ctx.header(revision));
                Ok(Response::new(resp))
            }
            (other, _) => Ok(unreachable_apply("Compaction", other)?),
        }
    }
}
