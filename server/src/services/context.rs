//! What every handler works with, built once at the top by the member's
//! wiring and ctx by all services (and the HTTP side): the configuration,
//! the Raft handle and status, the state machine's stores, the quota check
//! and the connection to the leader.

use std::future::Future;
use std::sync::Arc;

use logbook_api::etcdserverpb::ResponseHeader;
use logbook_engine::Engine;

use super::leader::LeaderClient;
use super::quota::Quota;
use super::request_log::{Entry, RequestLog};
use crate::config::Config;
use crate::error::Result;
use crate::raft::handle::RaftHandle;
use crate::state::auth::{AuthInfo, Credentials};
use crate::state::stores::Stores;
use crate::status::RaftStatus;

/// The handlers' context.
pub struct Context {
    pub cfg: Arc<Config>,
    /// Proposals and read indexes.
    pub raft: RaftHandle,
    /// Leader, term, indexes: what response headers carry.
    pub status: Arc<RaftStatus>,
    /// The engine, leases, alarms and auth.
    pub stores: Arc<Stores>,
    /// `--quota-backend-bytes`, checked before writes that grow the store.
    pub quota: Quota,
    /// Questions only the leader can answer (lease keep-alives and TTLs).
    pub leader: LeaderClient,
    /// `--request-log`: each client request's shape, when asked for.
    pub request_log: Option<RequestLog>,
}

impl Context {
    pub fn new(
        cfg: Arc<Config>,
        raft: RaftHandle,
        status: Arc<RaftStatus>,
        stores: Arc<Stores>,
        request_log: Option<RequestLog>,
    ) -> Arc<Context> {
        let quota = Quota::new(cfg.quota_backend_bytes, status.member_id);
        let leader = LeaderClient::new(cfg.clone(), status.clone());
        Arc::new(Context { cfg, raft, status, stores, quota, leader, request_log })
    }

    /// Logs a request to `--request-log` when it is on; `entry` is only
    /// built then.
    pub fn log_request(&self, entry: impl FnOnce() -> Entry) {
        if let Some(log) = &self.request_log {
            log.record(entry());
        }
    }

    /// A response header as this member would send it now.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        self.status.header(revision)
    }

    /// The engine as it is now.
    pub fn engine(&self) -> Arc<Engine> {
        self.stores.engine.get()
    }

    /// Who sent `request` (see [`crate::state::auth::AuthStore::info`]).
    pub fn auth_info<T>(
        &self,
        request: &tonic::Request<T>,
    ) -> impl Future<Output = Result<Option<AuthInfo>>> + Send + '_ {
        let creds = if self.stores.auth.enabled() { Some(Credentials::of(request)) } else { None };
        async move {
            match creds {
                None => Ok(None),
                Some(c) => self.auth_info_from(&c).await,
            }
        }
    }

    /// Who presented `creds` (see [`crate::state::auth::AuthStore::info`]).
    pub async fn auth_info_from(&self, creds: &Credentials) -> Result<Option<AuthInfo>> {
        self.stores.auth.info(creds, || self.status.applied_index()).await
    }

    /// etcd's quota check before proposing a write that grows the store.
    pub fn check_quota(&self) -> Result<()> {
        self.quota.check(&self.stores, &self.raft)
    }
}
