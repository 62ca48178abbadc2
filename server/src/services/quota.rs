//! etcd's backend quota (`--quota-backend-bytes`): before a write that grows
//! the store is proposed, refuse it while NOSPACE is raised, and raise NOSPACE
//! (through Raft, so every member refuses alike) once the backend file has
//! outgrown the quota.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logbook_api::etcdserverpb::alarm_request::AlarmAction;
use logbook_api::etcdserverpb::{AlarmRequest, AlarmType};
use logbook_api::logbookpb::internal_request::Request as Internal;

use crate::error::{Error, Result};
use crate::raft::handle::RaftHandle;
use crate::state::stores::Stores;

/// The quota check.
pub struct Quota {
    bytes: i64,
    member_id: u64,
    backend_size: BackendSizeProbe,
}

impl Quota {
    pub fn new(bytes: i64, member_id: u64) -> Self {
        Quota { bytes, member_id, backend_size: BackendSizeProbe::new() }
    }

    /// Refuses a growing write while NOSPACE is raised, and raises it when
    /// the backend has outgrown the quota.
    pub fn check(&self, stores: &Stores, raft: &RaftHandle) -> Result<()> {
        if stores.alarms.no_space() {
            return Err(Error::NoSpace);
        }
        let size = self.backend_size.get(|| stores.engine.get().size()) as i64;
        if size < self.bytes {
            return Ok(());
        }
        tracing::warn!(size, quota = self.bytes, "backend quota exceeded; raising NOSPACE");
        let raft = raft.clone();
        let member_id = self.member_id;
        tokio::spawn(async move {
            let req = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id,
                alarm: AlarmType::Nospace as i32,
            };
            if let Err(e) = raft.propose(Internal::Alarm(req)).await {
                tracing::warn!(error = %e, "raising NOSPACE failed");
            }
        });
        Err(Error::NoSpace)
    }

    /// The backend file changed size outside a commit (a defragment): the
    /// next check reads it again.
    pub fn backend_size_changed(&self) {
        self.backend_size.stale_at.store(0, Ordering::Release);
    }
}

/// The backend file's size for the quota check, read from the file system
/// at most once per [`BackendSizeProbe::MAX_AGE`] instead of once per write
/// (a `statx` per request showed in leader profiles). The file only grows by
/// whole commits, so a reading a few milliseconds old lets through at most
/// the writes of those milliseconds, as etcd's own size check does.
struct BackendSizeProbe {
    origin: Instant,
    size: AtomicU64,
    /// Microseconds after `origin` when `size` goes stale (0: never read).
    stale_at: AtomicU64,
}

impl BackendSizeProbe {
    const MAX_AGE: Duration = Duration::from_millis(50);

    fn new() -> Self {
        BackendSizeProbe {
            origin: Instant::now(),
            size: AtomicU64::new(0),
            stale_at: AtomicU64::new(0),
        }
    }

    fn get(&self, read: impl FnOnce() -> u64) -> u64 {
        let now = self.origin.elapsed().as_micros() as u64;
        let stale_at = self.stale_at.load(Ordering::Acquire);
        if stale_at != 0 && now < stale_at {
            return self.size.load(Ordering::Acquire);
        }
        let size = read();
        self.size.store(size, Ordering::Release);
        self.stale_at.store(now + Self::MAX_AGE.as_micros() as u64, Ordering::Release);
        size
    }
}
