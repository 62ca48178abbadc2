//! What the KV operations read and write through: the engine itself (reads
//! outside Raft), an engine write transaction (applying a Raft entry), or a
//! read-only view pinned at one revision (a read-only Txn).

use logbook_engine::{Engine, KeyValue, RangeOptions, RangeResult, WriteTxn};

use crate::error::Result;
use crate::state::lessor::Lessor;

/// Reads of the keyspace.
pub trait KvView {
    fn range(&self, opts: &RangeOptions) -> Result<RangeResult>;
}

/// Reads and writes of the keyspace, all within one revision.
pub trait KvWrite: KvView {
    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>>;
    /// A put whose caller does not want the replaced version (cheaper: the
    /// old value is not read back).
    fn put_forget(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<()>;
    fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>>;
}

impl KvView for Engine {
    fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        Ok(Engine::range(self, opts)?)
    }
}

impl KvView for WriteTxn<'_> {
    fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        Ok(WriteTxn::range(self, opts)?)
    }
}

impl KvWrite for WriteTxn<'_> {
    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>> {
        Ok(WriteTxn::put(self, key, value, lease)?)
    }
    fn put_forget(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<()> {
        Ok(WriteTxn::put_without_prev(self, key, value, lease)?)
    }
    fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        Ok(WriteTxn::delete_range(self, key, range_end)?)
    }
}

/// The engine seen at one revision: every range that names no revision reads
/// at `revision`, so a read-only transaction sees one consistent state.
pub struct PinnedView<'a> {
    pub engine: &'a Engine,
    pub revision: i64,
}

impl KvView for PinnedView<'_> {
    fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        if opts.revision > 0 {
            return Ok(self.engine.range(opts)?);
        }
        let mut pinned = opts.clone();
        pinned.revision = self.revision;
        let mut rr = self.engine.range(&pinned)?;
        rr.revision = self.revision;
        Ok(rr)
    }
}

impl KvWrite for PinnedView<'_> {
    fn put(&mut self, _: &[u8], _: &[u8], _: i64) -> Result<Option<KeyValue>> {
        panic!("a read-only transaction reached a put: is_read_only() let a write through");
    }
    fn put_forget(&mut self, _: &[u8], _: &[u8], _: i64) -> Result<()> {
        panic!("a read-only transaction reached a put: is_read_only() let a write through");
    }
    fn delete_range(&mut self, _: &[u8], _: &[u8]) -> Result<Vec<KeyValue>> {
        panic!("a read-only transaction reached a delete: is_read_only() let a write through");
    }
}

/// A write transaction that keeps the lessor's key attachments in step with
/// every put and delete it makes.
pub struct Leased<'a, 'b> {
    pub txn: &'a mut WriteTxn<'b>,
    pub lessor: &'a Lessor,
}

impl KvView for Leased<'_, '_> {
    fn range(&self, opts: &RangeOptions) -> Result<RangeResult> {
        Ok(self.txn.range(opts)?)
    }
}

impl KvWrite for Leased<'_, '_> {
    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<Option<KeyValue>> {
        let prev = self.txn.put(key, value, lease)?;
        self.lessor.on_put(key, lease);
        Ok(prev)
    }
    fn put_forget(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<()> {
        self.txn.put_without_prev(key, value, lease)?;
        self.lessor.on_put(key, lease);
        Ok(())
    }
    fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>> {
        let deleted = self.txn.delete_range(key, range_end)?;
        self.lessor.on_delete(&deleted);
        Ok(deleted)
    }
}
