//! Leases: which exist, which keys each holds, and (on the leader) when each
//! expires.
//!
//! Grants and revocations travel through Raft and are applied by every
//! member, so every member agrees on which leases exist and which keys they
//! hold. Expiry is decided by the leader alone, like etcd: only the leader
//! keeps deadlines, renews leases on keep-alive and proposes the revocation of
//! an expired one. A new leader starts every deadline afresh (TTL plus an
//! election timeout), so no lease expires early because leadership moved.
//!
//! With lease checkpoints (`--feature-gates=LeaseCheckpoint=true`, etcd's
//! `--experimental-enable-lease-checkpoint`) the leader records, every
//! [`CHECKPOINT_INTERVAL`], the remaining TTL of each lease that has more
//! than that left, through Raft; a new leader then starts such a lease from
//! its checkpointed remaining TTL instead of its full TTL, so a long lease is
//! not renewed by every leader change. A renewal clears the checkpoint. With
//! `LeaseCheckpointPersist` the remaining TTL is also stored with the lease, so
//! it survives restarts.
//! Leases are stored in the engine's `lease` bucket; the keys a lease holds
//! are found again at start-up from the keys' own `lease` field.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use logbook_api::logbookpb::{LeaseCheckpoint, StoredLease};
use logbook_engine::{Engine, KeyValue, RangeOptions, WriteTxn};
use parking_lot::Mutex;
use prost::Message;

use crate::error::{Error, Result};
use crate::schema::{LEASE_BUCKET, lease_key};

/// etcd's largest TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// How often the leader checkpoints a lease's remaining TTL (etcd's
/// default lease checkpoint interval; etcd has no flag for it).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

struct Lease {
    ttl: i64,
    /// When it expires; kept on the leader only.
    expiry: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
    /// The remaining TTL at the last checkpoint, in seconds (0: none).
    remaining_ttl: i64,
    /// When the leader checkpoints it next (leader only, checkpoints on).
    next_checkpoint: Option<Instant>,
}

impl Lease {
    fn new(ttl: i64, remaining_ttl: i64) -> Lease {
        Lease { ttl, expiry: None, keys: BTreeSet::new(), remaining_ttl, next_checkpoint: None }
    }

    /// The TTL a new deadline starts from: the checkpointed remaining TTL
    /// if there is one (etcd's `getRemainingTTL`).
    fn start_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 { self.remaining_ttl } else { self.ttl }
    }
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// Which lease each leased key is attached to.
    key_lease: HashMap<Vec<u8>, i64>,
    primary: bool,
    /// Leases renewed while they had a checkpoint, whose checkpoint the
    /// leader must clear through Raft.
    to_clear: Vec<i64>,
}

/// Lease checkpoint settings (feature gates `LeaseCheckpoint` and
/// `LeaseCheckpointPersist`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checkpoints {
    pub enabled: bool,
    pub persist: bool,
}

/// The member's leases.
pub struct Lessor {
    state: Mutex<State>,
    min_ttl: i64,
    checkpoints: Checkpoints,
}

/// What TimeToLive reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub remaining: i64,
    pub granted: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Lessor {
    /// A lessor whose shortest TTL is `min_ttl` seconds.
    pub fn new(min_ttl: i64) -> Lessor {
        Lessor::with_checkpoints(min_ttl, Checkpoints::default())
    }

    /// A lessor that checkpoints remaining TTLs as `checkpoints` says.
    pub fn with_checkpoints(min_ttl: i64, checkpoints: Checkpoints) -> Lessor {
        Lessor { state: Mutex::new(State::default()), min_ttl: min_ttl.max(1), checkpoints }
    }

    /// When a lease whose deadline starts from `start_ttl` seconds is
    /// checkpointed next: only leases with more than one interval left are
    /// (etcd's `scheduleCheckpointIfNeeded`).
    fn schedule(&self, start_ttl: i64, now: Instant) -> Option<Instant> {
        (self.checkpoints.enabled && start_ttl > CHECKPOINT_INTERVAL.as_secs() as i64)
            .then(|| now + CHECKPOINT_INTERVAL)
    }

    /// etcd's minimum TTL: one and a half election timeouts, in whole seconds.
    pub fn min_ttl_for(election_timeout: Duration) -> i64 {
        ((election_timeout.as_millis() * 3 / 2).div_ceil(1000)) as i64
    }

    /// Reloads every lease and its keys from `engine` (start-up, or after a
    /// snapshot replaced the engine). Deadlines restart if this member leads.
    pub fn rebuild(&self, engine: &Engine) -> Result<()> {
        let mut leases = HashMap::new();
        for (_, v) in engine.meta_scan(LEASE_BUCKET) {
            let l = StoredLease::decode(v.as_slice())
                .map_err(|e| Error::Internal(format!("undecodable lease record: {e}")))?;
            leases.insert(l.id, Lease::new(l.ttl, l.remaining_ttl));
        }
        let mut key_lease = HashMap::new();
        let all = engine.range(&RangeOptions {
            key: vec![0],
            range_end: vec![0],
            keys_only: true,
            ..Default::default()
        })?;
        for kv in all.kvs {
            if kv.lease != 0
                && let Some(l) = leases.get_mut(&kv.lease)
            {
                l.keys.insert(kv.key.clone());
                key_lease.insert(kv.key, kv.lease);
            }
        }
        let mut st = self.state.lock();
        let primary = st.primary;
        *st = State { leases, key_lease, primary, to_clear: Vec::new() };
        if primary {
            let now = Instant::now();
            for l in st.leases.values_mut() {
                l.expiry = Some(now + Duration::from_secs(l.start_ttl() as u64));
                l.next_checkpoint = self.schedule(l.start_ttl(), now);
            }
        }
        Ok(())
    }

    /// The TTL a grant of `ttl` seconds gets, or etcd's error.
    pub fn effective_ttl(&self, ttl: i64) -> Result<i64> {
        if ttl > MAX_LEASE_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        Ok(ttl.max(self.min_ttl))
    }

    pub fn exists(&self, id: i64) -> bool {
        self.state.lock().leases.contains_key(&id)
    }

    /// Applies a grant (already checked not to exist).
    pub fn grant(&self, id: i64, ttl: i64) {
        let mut st = self.state.lock();
        let mut lease = Lease::new(ttl, 0);
        if st.primary {
            let now = Instant::now();
            lease.expiry = Some(now + Duration::from_secs(ttl as u64));
            lease.next_checkpoint = self.schedule(ttl, now);
        }
        st.leases.insert(id, lease);
    }

    /// The keys a lease holds, in key order.
    pub fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.state
            .lock()
            .leases
            .get(&id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Applies a revocation (its keys already deleted).
    pub fn revoke(&self, id: i64) {
        let mut st = self.state.lock();
        if let Some(l) = st.leases.remove(&id) {
            for k in l.keys {
                st.key_lease.remove(&k);
            }
        }
    }

    /// A key was written with `lease` (0: none).
    pub fn on_put(&self, key: &[u8], lease: i64) {
        let mut st = self.state.lock();
        if st.key_lease.is_empty() && lease == 0 {
            return;
        }
        let old = st.key_lease.get(key).copied().unwrap_or(0);
        if old == lease {
            return;
        }
        if old != 0 {
            if let Some(l) = st.leases.get_mut(&old) {
                l.keys.remove(key);
            }
            st.key_lease.remove(key);
        }
        if lease != 0
            && let Some(l) = st.leases.get_mut(&lease)
        {
            l.keys.insert(key.to_vec());
            st.key_lease.insert(key.to_vec(), lease);
        }
    }

    /// Keys were deleted.
    pub fn on_delete(&self, deleted: &[KeyValue]) {
        let mut st = self.state.lock();
        if st.key_lease.is_empty() {
            return;
        }
        for kv in deleted {
            if let Some(old) = st.key_lease.remove(&kv.key)
                && let Some(l) = st.leases.get_mut(&old)
            {
                l.keys.remove(&kv.key);
            }
        }
    }

    /// This member became leader: every lease gets a full TTL plus `extend`.
    pub fn promote(&self, extend: Duration) {
        let mut st = self.state.lock();
        st.primary = true;
        let now = Instant::now();
        for l in st.leases.values_mut() {
            l.expiry = Some(now + Duration::from_secs(l.start_ttl() as u64) + extend);
            l.next_checkpoint = self.schedule(l.start_ttl(), now);
        }
    }

    /// This member stopped leading: deadlines are the next leader's business.
    pub fn demote(&self) {
        let mut st = self.state.lock();
        st.primary = false;
        st.to_clear.clear();
        for l in st.leases.values_mut() {
            l.expiry = None;
            l.next_checkpoint = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.state.lock().primary
    }

    /// Renews a lease (leader only); returns its TTL, None if it does not
    /// exist, or NotLeader.
    pub fn renew(&self, id: i64) -> Result<Option<i64>> {
        let mut st = self.state.lock();
        if !st.primary {
            return Err(Error::NotLeader);
        }
        let st = &mut *st;
        Ok(st.leases.get_mut(&id).map(|l| {
            // A renewal clears the lease's checkpoint (etcd's Renew).
            if self.checkpoints.enabled && l.remaining_ttl > 0 {
                l.remaining_ttl = 0;
                st.to_clear.push(id);
            }
            let now = Instant::now();
            l.expiry = Some(now + Duration::from_secs(l.ttl as u64));
            l.next_checkpoint = self.schedule(l.ttl, now);
            l.ttl
        }))
    }

    /// On the leader: the checkpoints due now, at most `limit` (etcd's
    /// `findDueScheduledCheckpoints`): each lease's remaining TTL, rounded
    /// up, unless it still has its whole TTL; then the checkpoints of
    /// renewed leases to clear.
    pub fn due_checkpoints(&self, limit: usize) -> Vec<LeaseCheckpoint> {
        let mut st = self.state.lock();
        if !st.primary || !self.checkpoints.enabled {
            return Vec::new();
        }
        let now = Instant::now();
        let st = &mut *st;
        let mut out: Vec<LeaseCheckpoint> =
            st.to_clear.drain(..).map(|id| LeaseCheckpoint { id, remaining_ttl: 0 }).collect();
        for (id, l) in st.leases.iter_mut() {
            if out.len() >= limit {
                break;
            }
            let (Some(at), Some(expiry)) = (l.next_checkpoint, l.expiry) else { continue };
            if at > now {
                continue;
            }
            l.next_checkpoint = None;
            let remaining = expiry.saturating_duration_since(now).as_secs_f64().ceil() as i64;
            if remaining >= l.ttl {
                continue;
            }
            out.push(LeaseCheckpoint { id: *id, remaining_ttl: remaining });
        }
        out
    }

    /// Applies a checkpoint: the lease's remaining TTL as the leader saw
    /// it (0 clears it), stored with the lease under `LeaseCheckpointPersist`.
    pub fn checkpoint(&self, txn: &mut WriteTxn<'_>, id: i64, remaining_ttl: i64) {
        let mut st = self.state.lock();
        let primary = st.primary;
        let Some(l) = st.leases.get_mut(&id) else { return };
        l.remaining_ttl = remaining_ttl;
        if self.checkpoints.persist {
            let stored = StoredLease { id, ttl: l.ttl, remaining_ttl };
            txn.meta_put(LEASE_BUCKET, &lease_key(id), &stored.encode_to_vec());
        }
        if primary {
            l.next_checkpoint = self.schedule(l.start_ttl(), Instant::now());
        }
    }

    /// What TimeToLive reports; the remaining time is known on the leader
    /// only (elsewhere it is the granted TTL).
    pub fn info(&self, id: i64) -> Option<LeaseInfo> {
        let st = self.state.lock();
        st.leases.get(&id).map(|l| LeaseInfo {
            remaining: match l.expiry {
                Some(at) => {
                    at.saturating_duration_since(Instant::now()).as_secs_f64().round() as i64
                }
                None => l.ttl,
            },
            granted: l.ttl,
            keys: l.keys.iter().cloned().collect(),
        })
    }

    /// Every lease ID, ascending.
    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.state.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Leases past their deadline (leader only), at most `limit`; each is
    /// given `grace` more before it is reported again, so a revocation in
    /// flight is not proposed twice.
    pub fn take_expired(&self, limit: usize, grace: Duration) -> Vec<i64> {
        let mut st = self.state.lock();
        if !st.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, l) in st.leases.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if l.expiry.is_some_and(|at| at <= now) {
                l.expiry = Some(now + grace);
                out.push(*id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_puts_and_deletes() {
        let l = Lessor::new(2);
        l.grant(1, 10);
        l.grant(2, 10);
        l.on_put(b"a", 1);
        l.on_put(b"b", 1);
        l.on_put(b"a", 2);
        assert_eq!(l.keys(1), vec![b"b".to_vec()]);
        assert_eq!(l.keys(2), vec![b"a".to_vec()]);
        l.on_put(b"a", 0);
        assert!(l.keys(2).is_empty());
        l.on_delete(&[KeyValue { key: b"b".to_vec(), lease: 1, ..Default::default() }]);
        assert!(l.keys(1).is_empty());
        l.on_put(b"c", 1);
        l.revoke(1);
        assert!(!l.exists(1));
        // The key's attachment went with the lease.
        l.grant(1, 5);
        assert!(l.keys(1).is_empty());
    }

    #[test]
    fn only_the_leader_keeps_deadlines() {
        let l = Lessor::new(2);
        l.grant(7, 1);
        assert!(matches!(l.renew(7), Err(Error::NotLeader)));
        assert!(l.take_expired(10, Duration::from_secs(1)).is_empty());
        l.promote(Duration::ZERO);
        assert_eq!(l.renew(7).unwrap(), Some(1));
        assert_eq!(l.renew(8).unwrap(), None);
        assert_eq!(l.info(7).unwrap().granted, 1);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(l.take_expired(10, Duration::from_secs(5)), vec![7]);
        // Reported once, then left alone while its revocation is in flight.
        assert!(l.take_expired(10, Duration::from_secs(5)).is_empty());
        l.demote();
        assert_eq!(l.info(7).unwrap().remaining, 1);
    }

    #[test]
    fn ttl_limits_follow_etcd() {
        assert_eq!(Lessor::min_ttl_for(Duration::from_millis(1000)), 2);
        let l = Lessor::new(2);
        assert_eq!(l.effective_ttl(1).unwrap(), 2);
        assert_eq!(l.effective_ttl(60).unwrap(), 60);
        assert!(matches!(l.effective_ttl(MAX_LEASE_TTL + 1), Err(Error::LeaseTtlTooLarge)));
    }
}
