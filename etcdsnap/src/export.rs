//! Logbook's engine -> etcd's snapshot: a consistent point-in-time [`History`] written as
//! a bbolt file laid out as etcd's backend, streamed, followed by its SHA-256.
//!
//! Two passes over the same history (see [`crate::bbolt::writer`]): one counts pages (the
//! meta page at the front of the file needs the total), one writes. Memory stays at a few
//! pages plus the side buckets, whatever the size of the store.

use std::collections::BTreeMap;
use std::io::Write;

use logbook_api::mvccpb::KeyValue;
use logbook_engine::history::History;
use sha2::{Digest, Sha256};

use crate::bbolt::{DEFAULT_PAGE_SIZE, DbWriter, Layout};
use crate::error::Result;
use crate::layout::{self, BUCKETS};

/// etcd buckets kept byte for byte in an engine side bucket: (etcd bucket, engine bucket).
/// Leases go to the lessor's `lease` bucket: its key is etcd's (the ID, i64 big-endian) and
/// its `StoredLease` is wire-compatible with etcd's `leasepb.Lease` (ID = 1, TTL = 2,
/// RemainingTTL = 3: the lease checkpoint, kept both ways). Auth lives in the server's buckets named
/// and laid out exactly as etcd's (`auth`: `authEnabled` -> [0|1], `authRevision` -> u64 BE;
/// `authUsers`/`authRoles`: name -> `authpb.User`/`authpb.Role`), so it moves both ways
/// unchanged. Members, removed members, the cluster version and alarms, which the server
/// keys its own way, are converted by its [`SideBuckets`] (and a restore's import).
pub const PASS_THROUGH: [(&str, &str); 4] = [
    (layout::AUTH, "auth"),
    (layout::AUTH_ROLES, "authRoles"),
    (layout::AUTH_USERS, "authUsers"),
    (layout::LEASE, "lease"),
];

/// The engine bucket holding etcd bucket `etcd_bucket` verbatim, if it is passed through.
pub fn pass_through_bucket(etcd_bucket: &str) -> Option<&'static str> {
    PASS_THROUGH.iter().find(|(e, _)| *e == etcd_bucket).map(|(_, l)| *l)
}

/// What a snapshot holds besides keys and `meta`: the server knows its members, cluster
/// facts, leases and auth and how it stores them.
pub trait SideBuckets {
    /// The (key, value) pairs of etcd bucket `name` as of `history`, sorted by key.
    fn etcd_bucket(&self, history: &History, name: &str) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// Only the pass-through buckets (for tests and tools without a server).
pub struct PassThroughOnly;

impl SideBuckets for PassThroughOnly {
    fn etcd_bucket(&self, history: &History, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        pass_through_bucket(name).map(|b| history.meta_scan(b)).unwrap_or_default()
    }
}

/// A bucket's (key, value) pairs, sorted by key.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A snapshot ready to stream: planned, with its size known.
pub struct Export {
    history: History,
    side: BTreeMap<&'static str, Entries>,
    layout: Layout,
    page_size: usize,
}

impl Export {
    /// Plans a snapshot of `history` (reads it once).
    pub fn new(history: History, side: &dyn SideBuckets) -> Result<Export> {
        let mut buckets = BTreeMap::new();
        for name in BUCKETS {
            if name != layout::KEY && name != layout::META {
                let mut entries = side.etcd_bucket(&history, name);
                entries.sort();
                entries.dedup_by(|a, b| a.0 == b.0);
                buckets.insert(name, entries);
            }
        }
        let mut e = Export {
            history,
            side: buckets,
            layout: Layout { root: 0, pages: 0 },
            page_size: DEFAULT_PAGE_SIZE,
        };
        let mut w = DbWriter::plan(e.page_size);
        e.emit(&mut w)?;
        e.layout = w.finish()?.0;
        Ok(e)
    }

    /// Bytes of the database (without the 32-byte hash trailer).
    pub fn db_size(&self) -> u64 {
        self.layout.size(self.page_size)
    }

    /// The store revision the snapshot holds.
    pub fn revision(&self) -> i64 {
        self.history.revision()
    }

    /// Writes the database, then its SHA-256 (what `etcdctl snapshot save` stores).
    pub fn write_snapshot(&self, out: &mut dyn Write) -> Result<()> {
        let sum = self.write_db(out)?;
        out.write_all(&sum)?;
        out.flush()?;
        Ok(())
    }

    /// Writes the database alone; returns its SHA-256.
    pub fn write_db(&self, out: &mut dyn Write) -> Result<[u8; 32]> {
        let mut hw = HashingWriter { out, hash: Sha256::new() };
        let mut w = DbWriter::new(&mut hw, self.page_size, self.layout)?;
        self.emit(&mut w)?;
        w.finish()?;
        Ok(hw.hash.finalize().into())
    }

    fn emit<W: Write>(&self, w: &mut DbWriter<W>) -> Result<()> {
        let h = &self.history;
        for name in BUCKETS {
            w.begin_bucket(name.as_bytes())?;
            match name {
                layout::KEY => {
                    for r in h.records() {
                        let r = r?;
                        let tombstone = r.put.is_none();
                        let kv = match r.put {
                            Some(p) => KeyValue {
                                key: r.key.into(),
                                create_revision: p.create_revision,
                                mod_revision: r.revision.main,
                                version: p.version,
                                value: p.value.into(),
                                lease: p.lease,
                            },
                            None => KeyValue { key: r.key.into(), ..Default::default() },
                        };
                        w.put(&layout::encode_rev(r.revision, tombstone), &layout::encode_kv(&kv))?;
                    }
                }
                layout::META => {
                    w.put(layout::CONSISTENT_INDEX, &h.applied_index().to_be_bytes())?;
                    let c = h.compact_revision();
                    if c > 0 {
                        let rev = layout::encode_rev(logbook_engine::Revision::new(c, 0), false);
                        w.put(layout::FINISHED_COMPACT, &rev)?;
                        w.put(layout::SCHEDULED_COMPACT, &rev)?;
                    }
                }
                other => {
                    for (k, v) in &self.side[other] {
                        w.put(k, v)?;
                    }
                }
            }
            w.end_bucket()?;
        }
        Ok(())
    }
}

struct HashingWriter<'a> {
    out: &'a mut dyn Write,
    hash: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
