//! etcd's snapshot -> Logbook's engine: every revision of the `key` bucket bulk-loaded with
//! its own revision, create revision, version and lease; the compaction and the current
//! revision as etcd would restore them; the other buckets handed to the caller.

use logbook_engine::Engine;
use logbook_engine::history::{BulkLoad, PutRecord};

use crate::bbolt::{Db, ReadAt};
use crate::error::{Error, Result};
use crate::export::pass_through_bucket;
use crate::layout;

/// What an import loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// The store's revision now (etcd's rule: the last revision, or the compaction if higher).
    pub revision: i64,
    pub compact_revision: i64,
    /// The source's last applied Raft index (`meta/consistent_index`).
    pub consistent_index: u64,
    /// Revisions loaded (puts and deletes).
    pub records: u64,
}

/// Where the buckets other than `key` and `meta` go.
pub trait SideBucketImport {
    /// One (key, value) of etcd bucket `bucket`.
    fn import(
        &mut self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        load: &mut BulkLoad<'_>,
    ) -> Result<()>;

    /// Called once after every bucket, before the load ends (to add what the source lacks).
    fn before_finish(&mut self, _load: &mut BulkLoad<'_>) -> Result<()> {
        Ok(())
    }
}

/// Keeps the pass-through buckets (see [`crate::export::PASS_THROUGH`]) and drops the rest
/// (members and cluster facts, which a restore rewrites; unknown buckets).
pub struct PassThroughImport;

impl SideBucketImport for PassThroughImport {
    fn import(
        &mut self,
        bucket: &str,
        key: &[u8],
        value: &[u8],
        load: &mut BulkLoad<'_>,
    ) -> Result<()> {
        if let Some(b) = pass_through_bucket(bucket) {
            load.meta_put(b, key, value)?;
        }
        Ok(())
    }
}

fn compact_rev(v: &[u8]) -> Result<i64> {
    if v.len() < layout::REV_KEY_LEN {
        return Err(Error::NotEtcd(format!("malformed compaction revision {v:02x?}")));
    }
    Ok(layout::decode_rev(&v[..layout::REV_KEY_LEN])?.0.main)
}

/// Loads an etcd database into `engine`, which must be empty. `applied_index` becomes the
/// engine's applied Raft index.
pub fn import<R: ReadAt>(
    db: &Db<R>,
    engine: &Engine,
    side: &mut dyn SideBucketImport,
    applied_index: u64,
) -> Result<Imported> {
    let mut buckets: Vec<(String, Vec<u8>)> = Vec::new();
    db.for_each_root(&mut |e| {
        if e.is_bucket {
            buckets.push((String::from_utf8_lossy(e.key).into_owned(), e.value.to_vec()));
        }
        Ok(())
    })?;
    let find = |name: &str| buckets.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let (Some(key_bucket), Some(meta_bucket)) = (find(layout::KEY), find(layout::META)) else {
        return Err(Error::NotEtcd("no \"key\" or \"meta\" bucket".into()));
    };

    let mut out = Imported::default();
    let mut scheduled = 0;
    db.for_each_nested(meta_bucket, &mut |e| {
        match e.key {
            layout::CONSISTENT_INDEX if e.value.len() == 8 => {
                out.consistent_index = u64::from_be_bytes(e.value.try_into().expect("8 bytes"));
            }
            layout::FINISHED_COMPACT => out.compact_revision = compact_rev(e.value)?,
            layout::SCHEDULED_COMPACT => scheduled = compact_rev(e.value)?,
            _ => {}
        }
        Ok(())
    })?;

    let mut load = engine.bulk_load(out.compact_revision)?;
    let mut last = 0;
    db.for_each_nested(key_bucket, &mut |e| {
        let (rev, tombstone) = layout::decode_rev(e.key)?;
        let kv = layout::decode_kv(e.value)?;
        if tombstone {
            load.tombstone(rev, &kv.key)?;
        } else {
            if kv.mod_revision != rev.main {
                return Err(Error::NotEtcd(format!(
                    "revision {rev} holds a value with mod_revision {}",
                    kv.mod_revision
                )));
            }
            let put = PutRecord {
                create_revision: kv.create_revision,
                version: kv.version,
                lease: kv.lease,
                value: kv.value.to_vec(),
            };
            load.put(rev, &kv.key, &put)?;
        }
        last = rev.main;
        out.records += 1;
        Ok(())
    })?;

    for (name, value) in &buckets {
        if name == layout::KEY || name == layout::META {
            continue;
        }
        db.for_each_nested(value, &mut |e| {
            if e.is_bucket {
                return Ok(()); // etcd has no nested buckets below the top level
            }
            side.import(name, e.key, e.value, &mut load)
        })?;
    }
    side.before_finish(&mut load)?;
    out.revision = load.finish(last, applied_index)?;
    if scheduled > out.compact_revision {
        // An unfinished compaction in the source: finish it here, as etcd would on start.
        engine.compact(scheduled)?;
        engine.wait_compacted(scheduled);
        engine.commit()?;
        out.compact_revision = scheduled;
    }
    Ok(out)
}
