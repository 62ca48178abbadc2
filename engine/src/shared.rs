//! The engine's shared state: everything the [`Engine`](crate::Engine) handle, the
//! background committer, write transactions, snapshots and history views hold (one `Arc`
//! of it), and building it from the file at open. What is done with it lives with each
//! concern: reads in `read.rs`, writes in `txn.rs`, commits in `commit.rs`, compaction
//! in `compaction.rs`, and so on; each of them depends on this module, none on `Engine`.
//!
//! State and who guards it (locks are always taken in this order: `commit`, `writer`,
//! `version`/`index`/`memtable`/`metas`, each of the last four held only briefly):
//!
//! - `writer`: the single-writer lock a [`WriteTxn`](crate::WriteTxn) holds; orders writes
//!   and compactions (Raft order) and gives the committer a consistent cut (revision,
//!   applied index).
//! - `index`: key -> revisions and cached latest record (see `key_map.rs`), updated by
//!   writes, read by reads.
//! - `memtable`: revision -> record for every write not yet released after its commit:
//!   readers find applied-but-uncommitted writes here.
//! - `version`: the latest committed tree version. A reader clones the `Arc` first and
//!   reads tree pages only through it; the committer reuses a freed page, or drops a
//!   memtable entry, only once every version that might need it is no longer held.
//! - `commit`: held by whoever commits (the background committer, `commit`, `defragment`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::btree::Cursor;
use crate::codec::{self, decode_record};
use crate::error::{Error, Result};
use crate::freelist::Freelist;
use crate::io::Storage;
use crate::key_map::KeyMap;
use crate::meta::{META_PAGES, Meta};
use crate::options::Options;
use crate::page::{self, MAX_PAGE_SIZE, MIN_PAGE_SIZE};
use crate::pager::PageStore;
use crate::revision::Revision;

/// A committed tree version, as readers hold it.
#[derive(Debug)]
pub(crate) struct Version {
    pub(crate) meta: Meta,
}

/// A compaction in progress (see `compaction.rs`), as the committer keeps it.
#[derive(Debug)]
pub(crate) struct CompactionJob {
    pub(crate) target: i64,
    /// Index pass: resume after this key (`None`: from the first key).
    pub(crate) after: Option<Vec<u8>>,
    /// Tree pass: resume at this revision; `None` while the index pass runs.
    pub(crate) tree_from: Option<Revision>,
}

impl CompactionJob {
    pub(crate) fn new(target: i64) -> CompactionJob {
        CompactionJob { target, after: None, tree_from: None }
    }
}

/// What the committer owns.
pub(crate) struct CommitState {
    /// The last durable commit.
    pub(crate) meta: Meta,
    pub(crate) freelist: Freelist,
    /// Pages of the persisted freelist chain of `meta`.
    pub(crate) freelist_pages: Vec<u64>,
    /// Superseded versions that readers may still hold, oldest first, each with the txid and
    /// persisted revision of the commit that superseded it.
    pub(crate) old: VecDeque<(Arc<Version>, u64, i64)>,
    pub(crate) job: Option<CompactionJob>,
    /// Highest compaction whose index pass is done.
    pub(crate) compacted_through: i64,
    /// Revisions compaction dropped from the index, to delete from the tree.
    pub(crate) deletions: Vec<Revision>,
    /// Set when a compaction's index pass is done: the next commit records it finished.
    pub(crate) finishing: Option<i64>,
    /// Set by defragment: cut the free tail of the file in the next commit (down to at
    /// least this many pages).
    pub(crate) truncate_to: Option<u64>,
    /// Set by defragment: the next commit moves every live page at or above this id.
    pub(crate) relocate_below: Option<u64>,
}

/// State the single writer owns.
#[derive(Default)]
pub(crate) struct WriterState {
    /// Side-bucket changes applied but not yet committed, in order.
    pub(crate) pending_meta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The engine's state, shared behind one `Arc` (see the module doc for who guards what).
/// Its fields are the crate's own: outside it, only [`Engine`](crate::Engine)'s methods
/// reach them.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    pub(crate) opts: Options,
    pub(crate) store: PageStore,
    pub(crate) writer: Mutex<WriterState>,
    pub(crate) index: RwLock<KeyMap>,
    pub(crate) memtable: RwLock<BTreeMap<Revision, Arc<[u8]>>>,
    pub(crate) metas: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub(crate) version: RwLock<Arc<Version>>,
    pub(crate) commit: Mutex<CommitState>,
    pub(crate) current_rev: AtomicI64,
    pub(crate) applied_index: AtomicU64,
    pub(crate) compact_rev: AtomicI64,
    pub(crate) durable_applied: AtomicU64,
    /// Highest compaction physically finished; waiters sleep on `compacted_cv`.
    pub(crate) finished_compact: Mutex<i64>,
    pub(crate) compacted_cv: Condvar,
    pub(crate) poisoned: Mutex<Option<String>>,
    /// Wakes the background committer early.
    pub(crate) wake: Mutex<bool>,
    pub(crate) wake_cv: Condvar,
    pub(crate) writes_since_commit: AtomicUsize,
    pub(crate) shutdown: AtomicBool,
}

impl Shared {
    /// Opens the state of the database on `storage` (writing an empty database first if
    /// it is empty): the newest valid meta page, the freelist, the side buckets, and the
    /// index rebuilt from the revision tree. `path` names the file in errors.
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        path: PathBuf,
        options: Options,
    ) -> Result<Shared> {
        let ps = options.page_size;
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps) || !ps.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "page size {ps} is not a power of two in 1 KiB..=32 KiB"
            )));
        }
        if storage.is_empty()? {
            let meta = Meta {
                page_size: ps as u32,
                page_count: META_PAGES,
                current_revision: 1,
                ..Meta::default()
            };
            let mut p = vec![0u8; ps];
            meta.encode(&mut p);
            storage.write_at(&p, 0)?;
            storage.write_at(&vec![0u8; ps], ps as u64)?;
            storage.sync()?;
        }
        let meta = read_meta(storage.as_ref(), &path, ps)?;
        let page_size = meta.page_size as usize;
        let store = PageStore::new(storage, &path, page_size, options.cache_size);

        // Freelist.
        let mut free = Vec::new();
        let mut freelist_pages = Vec::new();
        let mut id = meta.freelist_root;
        while id != 0 {
            let p = store.read(id)?;
            page::freelist_page_ids(&p, META_PAGES..meta.page_count, &mut free)
                .map_err(|reason| store.corrupted(id, reason))?;
            freelist_pages.push(id);
            if freelist_pages.len() as u64 > meta.page_count {
                return Err(store.corrupted(id, "freelist chain loops"));
            }
            id = page::freelist_next(&p);
        }
        if let Some(bad) = free.iter().find(|id| **id < META_PAGES || **id >= meta.page_count) {
            return Err(store.corrupted(
                meta.freelist_root,
                format!("freelist names page {bad} outside the file"),
            ));
        }

        // Side buckets.
        let mut metas = BTreeMap::new();
        let mut c = Cursor::seek(&store, meta.meta_root, b"")?;
        while let Some((k, v)) = c.next()? {
            metas.insert(k, v);
        }

        // Rebuild the index from the revision tree (this also verifies every page of it),
        // caching each key's latest record.
        let mut index = KeyMap::new(options.latest_cache_size, options.latest_cache_max_record);
        let mut c = Cursor::seek(&store, meta.rev_root, b"")?;
        while let Some((k, v)) = c.next()? {
            let rev = codec::decode_rev(&k)
                .ok_or_else(|| store.corrupted(meta.rev_root, "malformed revision key"))?;
            let rec = decode_record(&v).ok_or_else(|| {
                store.corrupted(meta.rev_root, format!("malformed record at revision {rev}"))
            })?;
            let put = rec.put.map(|p| (p.create_revision, p.version));
            let mut ki = index.get_or_insert(rec.key);
            if put.is_none() {
                ki.clear_latest();
            }
            ki.restore(rev, put);
            if put.is_some() && ki.live().is_some_and(|h| h.rev == rev) {
                ki.set_latest(rev, &v);
            }
        }

        let version = Arc::new(Version { meta: meta.clone() });
        Ok(Shared {
            path,
            store,
            writer: Mutex::new(WriterState::default()),
            index: RwLock::new(index),
            memtable: RwLock::new(BTreeMap::new()),
            metas: RwLock::new(metas),
            version: RwLock::new(version),
            current_rev: AtomicI64::new(meta.current_revision.max(1)),
            applied_index: AtomicU64::new(meta.applied_index),
            compact_rev: AtomicI64::new(meta.scheduled_compact),
            durable_applied: AtomicU64::new(meta.applied_index),
            finished_compact: Mutex::new(meta.finished_compact),
            compacted_cv: Condvar::new(),
            poisoned: Mutex::new(None),
            wake: Mutex::new(false),
            wake_cv: Condvar::new(),
            writes_since_commit: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            commit: Mutex::new(CommitState {
                compacted_through: meta.finished_compact,
                relocate_below: None,
                freelist: Freelist::from_free(free),
                freelist_pages,
                meta,
                old: VecDeque::new(),
                job: None,
                deletions: Vec::new(),
                finishing: None,
                truncate_to: None,
            }),
            opts: options,
        })
    }

    pub(crate) fn pin(&self) -> Arc<Version> {
        self.version.read().clone()
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn wake_committer(&self) {
        *self.wake.lock() = true;
        self.wake_cv.notify_one();
    }
}

/// Reads and picks the newest valid meta page.
fn read_meta(storage: &dyn Storage, path: &Path, default_page_size: usize) -> Result<Meta> {
    let len = storage.len()?;
    let mut head = vec![0u8; 64.min(len as usize)];
    storage.read_at(&mut head, 0)?;
    let mut sizes = vec![default_page_size];
    if let Some(ps) = Meta::peek_page_size(&head)
        && ps != default_page_size
        && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&ps)
    {
        sizes.insert(0, ps);
    }
    let mut reasons = Vec::new();
    for ps in sizes {
        let mut best: Option<Meta> = None;
        for slot in 0..2u64 {
            let mut p = vec![0u8; ps];
            if storage.read_at(&mut p, slot * ps as u64).is_err() {
                reasons.push(format!("meta page {slot}: file too short"));
                continue;
            }
            match Meta::decode(&p, slot) {
                Ok(m) if best.as_ref().is_none_or(|b| m.txid > b.txid) => best = Some(m),
                Ok(_) => {}
                Err(r) => reasons.push(format!("meta page {slot}: {r}")),
            }
        }
        if let Some(m) = best {
            if m.page_count * ps as u64 > len {
                return Err(Error::Corrupted {
                    file: path.to_path_buf(),
                    offset: len,
                    reason: format!(
                        "file is {len} bytes, meta page txid {} needs {} pages",
                        m.txid, m.page_count
                    ),
                });
            }
            return Ok(m);
        }
    }
    Err(Error::Corrupted {
        file: path.to_path_buf(),
        offset: 0,
        reason: format!("no valid meta page: {}", reasons.join("; ")),
    })
}
