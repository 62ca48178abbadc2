//! etcd's Lock service (`v3lockpb.Lock`): distributed mutexes held by
//! leases, served as etcd serves them, with its client library's mutex
//! (`concurrency.Mutex`) run inside the member.
//!
//! Lock `n` with lease `L` puts the key `n/<L in hex>` (empty, attached to
//! `L`) unless it exists, and holds the lock once every key under `n/`
//! created before it is gone; the oldest key is the holder. Unlock deletes
//! the key; so does the lease's expiry or revocation. Locking again with
//! the same lease is the same acquisition. The queue and the waiting are
//! [`super::waiting`]'s.

use std::sync::Arc;

use logbook_api::etcdserverpb::{DeleteRangeRequest, RangeRequest, TxnRequest};
use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::v3lockpb::lock_server::Lock;
use logbook_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::waiting::{
    Abandon, created_at, first_created, op_put, op_range, queue_prefix, read_at, session_lease,
    wait_deletes, waiter_key,
};
use crate::error::{Error, Result};
use crate::services::context::Context;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::state::auth::AuthInfo;
use crate::watch::hub::WatchHub;

/// Serves Lock.
pub struct LockService {
    ctx: Arc<Context>,
    kv: KvService,
    lease: LeaseService,
    /// Where waiters watch for the keys before theirs to go.
    hub: Arc<WatchHub>,
}

impl LockService {
    pub fn new(ctx: Arc<Context>, hub: Arc<WatchHub>) -> LockService {
        LockService {
            kv: KvService { ctx: ctx.clone() },
            lease: LeaseService { ctx: ctx.clone() },
            ctx,
            hub,
        }
    }

    /// etcd's `Mutex.Lock` (3.6): enqueue, wait for the keys before ours,
    /// then check ours survived the wait.
    async fn lock_inner(&self, r: LockRequest, who: Option<AuthInfo>) -> Result<LockResponse> {
        let lease = session_lease(&self.lease, r.lease, who.as_ref()).await?;
        let prefix = queue_prefix(&r.name);
        let key = waiter_key(&prefix, lease);
        // Put our key unless we already queue (the same lease locked
        // before), and read the holder in the same revision.
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![
                op_put(&key, Default::default(), lease),
                op_range(first_created(&prefix)),
            ],
            failure: vec![
                op_range(RangeRequest { key: key.clone(), ..Default::default() }),
                op_range(first_created(&prefix)),
            ],
        };
        let resp = self.kv.txn_inner(txn, who.clone()).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            match read_at(&resp, 0).first() {
                Some(mine) => mine.create_revision,
                None => panic!("a key whose create revision is not 0 was not found"),
            }
        };
        let holder = read_at(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == my_rev) {
            return Ok(LockResponse { header: Some(header), key });
        }

        // If the client goes away while we wait, our key leaves the queue.
        let unlock = DeleteRangeRequest { key: key.clone(), ..Default::default() };
        let abandon = Abandon::new(&self.ctx, Internal::DeleteRange(unlock.clone()), who.as_ref());
        let waited = async {
            wait_deletes(&self.kv, &self.hub, &prefix, my_rev - 1, who.as_ref()).await?;
            // Our lease may have expired while we waited.
            let mine = RangeRequest { key: key.clone(), ..Default::default() };
            self.kv.range_inner(mine, who.clone()).await
        }
        .await;
        abandon.disarm();
        match waited {
            Ok(read) if read.kvs.is_empty() => Err(Error::LockSessionExpired),
            Ok(read) => Ok(LockResponse { header: read.header, key }),
            Err(e) => {
                // As etcd: a failed wait gives up our place in the queue.
                if let Err(undo) = self.kv.delete_inner(unlock, who.as_ref()).await {
                    tracing::debug!(error = %undo, "unlocking after a failed lock wait");
                }
                Err(e)
            }
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        let resp = self.lock_inner(request.into_inner(), who).await;
        Ok(Response::new(resp.map_err(Error::into_client_status)?))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let who = self.ctx.auth_info(&request).await.map_err(Error::into_client_status)?;
        // As etcd: any key, deleted as a client's Delete would.
        let delete = DeleteRangeRequest { key: request.into_inner().key, ..Default::default() };
        let resp =
            self.kv.delete_inner(delete, who.as_ref()).await.map_err(Error::into_client_status)?;
        Ok(Response::new(UnlockResponse { header: resp.header }))
    }
}
