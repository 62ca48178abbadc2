//! The member's background tasks: publishing its attributes through Raft
//! once, and (on the leader) revoking expired leases, checkpointing
//! leases' remaining TTLs and moving the cluster version for a downgrade.

use std::sync::Arc;
use std::time::Duration;

use logbook_api::logbookpb::internal_request::Request as Internal;
use logbook_api::logbookpb::{LeaseCheckpoints, MemberAttributes};

use crate::error::Error;
use crate::services::context::Context;
use crate::state::membership::{load_cluster_version, load_downgrade_info};
use crate::version::{cluster_major_minor, parse_downgrade_target};

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
        let expired = ctx.stores.lessor.take_expired(PER_ROUND, ctx.cfg.request_timeout());
        // A leader that was stopped (SIGSTOP, a stalled disk) still believes it leads when it
        // runs again, and its leases look expired to it while the real leader has kept them
        // alive; its revocation, forwarded once Raft steps it down, would be committed. So,
        // as etcd's `ensureLeadership` (etcd #15247): a read index first, and revoke only if
        // this member still leads after it. (Skipped leases come back after the grace.)
        if expired.is_empty() || !still_leads(&ctx).await {
            continue;
        }
        for id in expired {
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

/// Whether this member still leads once a read index has gone through Raft (a deposed
/// leader's read index fails or is answered by the new leader).
async fn still_leads(ctx: &Context) -> bool {
    if let Err(e) = ctx.raft.read_index().await {
        tracing::warn!(error = %e, "failed to check current member's leadership");
        return false;
    }
    let leads = ctx.status.leader() == Some(ctx.cfg.member_id);
    if !leads {
        tracing::warn!(
            local_member_id = format!("{:x}", ctx.cfg.member_id),
            "ignore the lease revoking request because current member isn't a leader"
        );
    }
    leads
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

/// On the leader, every `--raft-write-timeout` less a second (etcd's
/// `monitorVersionInterval`), decides the cluster version as etcd's
/// `Monitor.UpdateClusterVersionIfNeeded` does and proposes a change: with a
/// downgrade enabled, the cluster version goes down to its target (one minor
/// below); with none, back up to the members' own version. Each member's
/// storage version follows the cluster version as it applies the change
/// (etcd's `UpdateStorageVersionIfNeeded`, which runs on every member when
/// the cluster version changes).
///
/// Every Logbook member reports the same etcd version
/// ([`crate::version::ETCD_VERSION`]), so that is the members' minimal
/// version etcd asks its peers for, and a downgrade never finishes by
/// itself (etcd's `CancelDowngradeIfNeeded` cancels it once every member
/// runs the target version): it ends with `downgrade cancel`.
pub(super) async fn monitor_cluster_version(ctx: Arc<Context>) {
    let every = ctx.cfg.raft_write_timeout.saturating_sub(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        if ctx.status.leader() != Some(ctx.cfg.member_id) {
            continue;
        }
        let engine = ctx.engine();
        let Some(next) = decide_cluster_version(
            load_cluster_version(&engine),
            cluster_major_minor(),
            &load_downgrade_info(&engine),
        ) else {
            continue;
        };
        let next = format!("{}.{}.0", next.0, next.1);
        if let Err(e) = ctx.raft.propose_system(Internal::ClusterVersionSet(next.clone())).await {
            tracing::warn!(cluster_version = %next, error = %e, "proposing the cluster version failed; will retry");
        }
    }
}

/// etcd's `decideClusterVersion`: the cluster version to set, `None` to
/// leave `current` as it is. `server` is the members' minimal version.
fn decide_cluster_version(
    current: (i64, i64),
    server: (i64, i64),
    downgrade: &logbook_api::etcdserverpb::DowngradeInfo,
) -> Option<(i64, i64)> {
    let one_below = |v: (i64, i64)| (v.0, v.1 - 1);
    if downgrade.enabled {
        let target = parse_downgrade_target(&downgrade.target_version)?;
        if target == current {
            return None;
        }
        let show = |v: (i64, i64)| format!("{}.{}.0", v.0, v.1);
        if target != one_below(current) {
            tracing::error!(
                downgrade_target = %downgrade.target_version,
                cluster_version = %show(current),
                "Cannot downgrade from cluster-version to downgrade-target"
            );
            return None;
        }
        if target != one_below(server) {
            tracing::error!(
                downgrade_target = %downgrade.target_version,
                minimal_server_version = %show(server),
                "Cannot downgrade from minimal-server-version to downgrade-target"
            );
            return None;
        }
        return Some(target);
    }
    // etcd's IsValidClusterVersionChange: one minor down, or up within a major.
    let valid = one_below(current) == server || (current.0 == server.0 && current < server);
    (current < server && valid).then_some(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logbook_api::etcdserverpb::DowngradeInfo;

    #[test]
    fn the_cluster_version_follows_the_downgrade_as_etcds_monitor_decides() {
        let on = |t: &str| DowngradeInfo { enabled: true, target_version: t.into() };
        let off = DowngradeInfo::default();
        // Enabled: down to the target, then left there.
        assert_eq!(decide_cluster_version((3, 5), (3, 5), &on("3.4.0")), Some((3, 4)));
        assert_eq!(decide_cluster_version((3, 4), (3, 5), &on("3.4.0")), None);
        // A target that is not one minor below is left alone.
        assert_eq!(decide_cluster_version((3, 5), (3, 5), &on("3.3.0")), None);
        // Cancelled: back up to the members' version; nothing to do there.
        assert_eq!(decide_cluster_version((3, 4), (3, 5), &off), Some((3, 5)));
        assert_eq!(decide_cluster_version((3, 5), (3, 5), &off), None);
    }
}
