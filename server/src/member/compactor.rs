//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
//! run as etcd's v3compactor runs it, on the leader only:
//!
//! - periodic: the store's revision is sampled every tenth of the retention
//!   (of an hour at most); once the retention has passed since the last
//!   compaction (the first time), then every retention (an hour at most),
//!   history is compacted to the revision sampled a retention ago;
//! - revision: every 5 minutes, history is compacted to the current revision
//!   less the retention.
//!
//! A compaction is proposed through Raft as a client's would be, so every
//! member compacts at the same point of the log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::CompactionRequest;
use logbook_api::logbookpb::internal_request::Request as Internal;

use crate::config::AutoCompaction;
use crate::error::Error;
use crate::services::context::Context;

/// How often revision mode looks (etcd's `revInterval`).
const REVISION_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Periodic mode samples the revision this many times per retention.
const SAMPLES_PER_RETENTION: u32 = 10;
const HOUR: Duration = Duration::from_secs(3600);

/// Periodic mode's timing: how often it samples and how many samples span
/// a retention.
fn periodic_plan(retention: Duration) -> (Duration, usize) {
    let every = retention.min(HOUR) / SAMPLES_PER_RETENTION;
    let every = every.max(Duration::from_millis(1));
    let samples = (retention.as_nanos() / every.as_nanos()) as usize + 1;
    (every, samples)
}

/// Runs until the member stops.
pub(super) async fn run(ctx: Arc<Context>, mode: AutoCompaction) {
    match mode {
        AutoCompaction::Periodic(retention) => periodic(ctx, retention).await,
        AutoCompaction::Revision(keep) => revision(ctx, keep).await,
    }
}

async fn periodic(ctx: Arc<Context>, retention: Duration) {
    let (every, samples) = periodic_plan(retention);
    let mut revs: VecDeque<i64> = VecDeque::with_capacity(samples + 1);
    let mut last_revision = 0;
    let mut last_success = Instant::now();
    let mut wait = retention;
    loop {
        revs.push_back(ctx.engine().current_revision());
        if revs.len() > samples {
            revs.pop_front();
        }
        tokio::time::sleep(every).await;
        if !ctx.status.is_leader() {
            continue;
        }
        let rev = revs[0];
        if last_success.elapsed() < wait || rev == last_revision {
            continue;
        }
        wait = retention.min(HOUR);
        if compact(&ctx, rev, "periodic").await {
            last_revision = rev;
            last_success = Instant::now();
        }
    }
}

async fn revision(ctx: Arc<Context>, keep: u64) {
    let mut previous = 0;
    loop {
        tokio::time::sleep(REVISION_INTERVAL).await;
        if !ctx.status.is_leader() {
            continue;
        }
        let rev = ctx.engine().current_revision() - keep as i64;
        if rev <= 0 || rev == previous {
            continue;
        }
        if compact(&ctx, rev, "revision").await {
            previous = rev;
        }
    }
}

/// Proposes a compaction to `rev`; true when it was applied (or history was
/// already compacted past it).
async fn compact(ctx: &Context, rev: i64, mode: &str) -> bool {
    tracing::info!(revision = rev, mode, "starting auto compaction");
    let started = Instant::now();
    let req = CompactionRequest { revision: rev, physical: false };
    match ctx.raft.propose_system(Internal::Compaction(req)).await {
        Ok(_) | Err(Error::Compacted) => {
            tracing::info!(revision = rev, mode, took = ?started.elapsed(), "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision = rev, mode, error = %e, "auto compaction failed; will retry");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_samples_a_tenth_of_the_retention_at_most_an_hour() {
        assert_eq!(periodic_plan(Duration::from_secs(600)), (Duration::from_secs(60), 11));
        // Eight hours: a sample every 6 minutes, 81 of them span the retention.
        assert_eq!(periodic_plan(8 * HOUR), (Duration::from_secs(360), 81));
    }
}
