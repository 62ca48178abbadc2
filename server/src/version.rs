//! The versions this member reports: the etcd API level it implements
//! (Status, `/version`, metrics), which clients use to turn features on.

/// The etcd version whose API Logbook serves, as Status reports it.
pub const SERVED_VERSION: &str = "3.5.0";
