//! The member's background tasks: publishing its attributes through Raft
//! once, and (on the leader) revoking expired leases and checkpointing
//! leases' remaining TTLs.

use std::sync::Arc;
use std::time::Duration;

use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::logbookpb::{LeaseCheckpoints, MemberAttributes};

use crate::error::Error;
use crate::services::context::Context;

/// Announces this member's name and client URLs through Raft (as etcd
/// does), retrying until it is applied.
pub(super) async fn publish(ctx: Arc<Context>) {
    let attrs = MemberAttributes {
        member_id: ctx.cfg.member_id,
        name: ctx.cfg.name.clone(),
        client_urls: ctx.cfg.advertise_client_urls.clone(),
    };
    loop {
        if ctx.status.leader().is_some() {
            match ctx.raft.propose(Internal::Publish(attrs.clone())).await {
                Ok(_) => {
                    // etcd's two lines (etcdserver's publish, then embed's
                    // serve), which its e2e framework and operators wait for.
                    tracing::info!(
                        local_member_id = format!("{:x}", ctx.cfg.member_id),
                        local_member_attributes = format!(
                            "{{Name:{} ClientURLs:[{}]}}",
                            ctx.cfg.name,
                            ctx.cfg.advertise_client_urls.join(" ")
                        ),
                        cluster_id = format!("{:x}", ctx.cfg.cluster_id),
                        publish_timeout =
                            crate::config::duration::format(ctx.cfg.request_timeout()),
                        "published local member to cluster through raft"
                    );
                    tracing::info!("ready to serve client requests");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On the leader, proposes the revocation of every expired lease (a bounded
/// number per round, like etcd's revocation rate limit).
pub(super) async fn expire_leases(ctx: Arc<Context>) {
    const ROUND: Duration = Duration::from_millis(500);
    const PER_ROUND: usize = 500;
    loop {
        tokio::time::sleep(ROUND).await;
        for id in ctx.stores.lessor.take_expired(PER_ROUND, ctx.cfg.request_timeout()) {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let req = logbook_api::etcdserverpb::LeaseRevokeRequest { id };
                match ctx.raft.propose_system(Internal::LeaseRevoke(req)).await {
                    Ok(_) => tracing::debug!(lease = format!("{id:x}"), "expired lease revoked"),
                    Err(Error::LeaseNotFound) => {}
                    Err(e) => {
                        tracing::warn!(lease = format!("{id:x}"), error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            });
        }
    }
}

/// On the leader, with lease checkpoints on, proposes the due checkpoints
/// of leases' remaining TTLs (etcd checks twice a second and batches up to
/// 1000 per entry).
pub(super) async fn checkpoint_leases(ctx: Arc<Context>) {
    const ROUND: Duration = Duration::from_millis(500);
    const PER_ENTRY: usize = 1000;
    loop {
        tokio::time::sleep(ROUND).await;
        loop {
            let checkpoints = ctx.stores.lessor.due_checkpoints(PER_ENTRY);
            if checkpoints.is_empty() {
                break;
            }
            let full = checkpoints.len() >= PER_ENTRY;
            let req = LeaseCheckpoints { checkpoints };
            if let Err(e) = ctx.raft.propose_system(Internal::LeaseCheckpoints(req)).await {
                tracing::warn!(error = %e, "proposing lease checkpoints failed");
                break;
            }
            if !full {
                break;
            }
        }
    }
}
