//! Alarms (etcd's NOSPACE and CORRUPT), raised and cleared through Raft so
//! every member agrees, stored in the engine's `alarm` bucket.
//!
//! While NOSPACE is raised anywhere in the cluster, writes that would grow
//! the store (puts, transactions with puts, lease grants) are refused with
//! `etcdserver: mvcc: database space exceeded` — both when a member receives
//! them and when they are applied — until an operator frees space and
//! disarms it. Reads and deletes keep working.
//!
//! While CORRUPT is raised (by the leader's corruption checks, see
//! `member/corruption.rs`, or by a client), every write that reaches the
//! state machine — puts, deletes, write transactions, compactions, lease
//! grants and revocations — is refused with `etcdserver: corrupt cluster`
//! (etcd's corrupt applier, which sits before the NOSPACE one); reads,
//! read-only transactions, alarms, auth and membership changes go on.

use std::collections::BTreeSet;

use crate::schema::ALARM_BUCKET;
use logbook_api::etcdserverpb::{AlarmMember, AlarmType};
use logbook_engine::Engine;
use parking_lot::Mutex;
use prost::Message;

/// The raised alarms.
#[derive(Default)]
pub struct Alarms {
    raised: Mutex<BTreeSet<(u64, i32)>>,
}

impl Alarms {
    /// Reloads the alarms stored in `engine`.
    pub fn rebuild(&self, engine: &Engine) {
        let mut set = BTreeSet::new();
        for (_, v) in engine.meta_scan(ALARM_BUCKET) {
            let a = AlarmMember::decode(v.as_slice())
                .unwrap_or_else(|e| panic!("undecodable alarm record in the engine: {e}"));
            set.insert((a.member_id, a.alarm));
        }
        *self.raised.lock() = set;
    }

    /// Raises an alarm; false if it was already raised.
    pub fn activate(&self, member: u64, alarm: i32) -> bool {
        self.raised.lock().insert((member, alarm))
    }

    /// Clears an alarm; false if it was not raised.
    pub fn deactivate(&self, member: u64, alarm: i32) -> bool {
        self.raised.lock().remove(&(member, alarm))
    }

    /// Raised alarms matching `member` (0: any) and `alarm` (NONE: any).
    pub fn list(&self, member: u64, alarm: i32) -> Vec<AlarmMember> {
        self.raised
            .lock()
            .iter()
            .filter(|(m, a)| {
                (member == 0 || *m == member) && (alarm == AlarmType::None as i32 || *a == alarm)
            })
            .map(|(m, a)| AlarmMember { member_id: *m, alarm: *a })
            .collect()
    }

    /// Whether the cluster is out of space.
    pub fn no_space(&self) -> bool {
        self.raised.lock().iter().any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    /// Whether the CORRUPT alarm is raised for any member.
    pub fn corrupt(&self) -> bool {
        self.raised.lock().iter().any(|(_, a)| *a == AlarmType::Corrupt as i32)
    }

    /// Whether any alarm is raised.
    pub fn any(&self) -> bool {
        !self.raised.lock().is_empty()
    }

    /// The alarms as etcd's Status lists them.
    pub fn describe(&self) -> Vec<String> {
        self.raised
            .lock()
            .iter()
            .map(|(m, a)| {
                let name = AlarmType::try_from(*a).map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
                format!("memberID:{m} alarm:{name} ")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_list_clear() {
        let a = Alarms::default();
        assert!(!a.no_space());
        assert!(a.activate(7, AlarmType::Nospace as i32));
        assert!(!a.activate(7, AlarmType::Nospace as i32));
        a.activate(9, AlarmType::Corrupt as i32);
        assert!(a.no_space() && a.corrupt());
        assert_eq!(a.list(0, 0).len(), 2);
        assert_eq!(
            a.list(9, 0),
            vec![AlarmMember { member_id: 9, alarm: AlarmType::Corrupt as i32 }]
        );
        assert_eq!(a.list(0, AlarmType::Nospace as i32).len(), 1);
        assert_eq!(a.describe()[0], "memberID:7 alarm:NOSPACE ");
        assert!(a.deactivate(7, AlarmType::Nospace as i32));
        assert!(!a.no_space());
        assert!(a.deactivate(9, AlarmType::Corrupt as i32));
        assert!(!a.corrupt());
    }
}
