//! Commits: turning applied writes into a durable tree version, and the background
//! committer that does it every `commit_interval` or `commit_max_writes`.
//!
//! One commit, under the commit lock:
//! 1. take a cut under the writer lock: current revision, applied Raft index, side-bucket
//!    changes; the memtable entries up to that revision;
//! 2. apply them (and compaction's deletions) to both trees, copy-on-write;
//! 3. write the new pages and the new freelist chain, fdatasync;
//! 4. write the meta page (slot `txid % 2`), fdatasync: the commit is now durable;
//! 5. publish the new version to readers; release pages and memtable entries that no
//!    reader can need any more.
//!
//! Any I/O failure poisons the engine: memory and disk may disagree, only a reopen is safe.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::btree::{self, Fill, TxPages};
use crate::codec::encode_rev;
use crate::error::{Error, Result};
use crate::options::Options;
use crate::page;
use crate::pager::PageRef;
use crate::revision::Revision;
use crate::shared::{CommitState, Shared, Version};

/// Pages one relocation commit (defragment's, `defrag.rs`) may rewrite: a quarter of the
/// page cache's pages (at least 64). Moving every live page in one commit held the whole
/// live tree in memory at once (as dirty pages), which the allocator then kept: memory that
/// grew with the database.
pub(crate) fn relocate_budget(opts: &Options, page_size: usize) -> usize {
    (opts.cache_size / page_size / 4).max(64)
}

/// The background committer's loop.
pub(crate) fn run_committer(shared: Arc<Shared>) {
    loop {
        let busy = shared.commit.lock().job.is_some();
        let wait =
            if busy { shared.opts.compaction_sleep_interval } else { shared.opts.commit_interval };
        {
            let mut woken = shared.wake.lock();
            if !*woken && !shared.shutdown.load(Ordering::Acquire) {
                shared.wake_cv.wait_for(&mut woken, wait.min(Duration::from_secs(3600)));
            }
            *woken = false;
        }
        if shared.poisoned.lock().is_some() {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            continue;
        }
        if let Err(e) = crate::compaction::step(&shared) {
            tracing::error!(error = %e, "compaction step failed");
        }
        if let Err(e) = shared.commit_now() {
            tracing::error!(error = %e, path = %shared.path.display(), "background commit failed");
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
    }
}

impl Shared {
    /// Commits everything applied so far (see the module doc).
    pub(crate) fn commit_now(&self) -> Result<()> {
        let mut cs = self.commit.lock();
        self.check_poison()?;
        let r = self.commit_locked(&mut cs);
        if let Err(e) = &r
            && !matches!(e, Error::Corrupted { .. })
        {
            *self.poisoned.lock() = Some(e.to_string());
        }
        r
    }

    pub(crate) fn commit_locked(&self, cs: &mut CommitState) -> Result<()> {
        self.release_versions(cs);
        let (rev, applied, compact, meta_ops) = {
            let mut w = self.writer.lock();
            self.writes_since_commit.store(0, Ordering::Release);
            (
                self.current_rev.load(Ordering::Acquire),
                self.applied_index.load(Ordering::Acquire),
                self.compact_rev.load(Ordering::Acquire),
                std::mem::take(&mut w.pending_meta),
            )
        };
        let from = cs.meta.current_revision;
        let entries: Vec<(Revision, Arc<[u8]>)> = if rev > from {
            self.memtable
                .read()
                .range(Revision::new(from + 1, 0)..=Revision::max_of(rev))
                .map(|(r, v)| (*r, v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let mut deletions = std::mem::take(&mut cs.deletions);
        let finishing = cs.finishing.take();
        let truncate = cs.truncate_to.take();
        let relocate = cs.relocate_below.take();
        let unchanged = entries.is_empty()
            && meta_ops.is_empty()
            && deletions.is_empty()
            && finishing.is_none()
            && truncate.is_none()
            && relocate.is_none()
            && applied == cs.meta.applied_index
            && rev == cs.meta.current_revision
            && compact == cs.meta.scheduled_compact;
        if unchanged {
            return Ok(());
        }

        // 2. The trees.
        deletions.sort_unstable();
        deletions.dedup();
        let del_keys: Vec<[u8; 16]> = deletions.iter().map(|r| encode_rev(*r)).collect();
        let ins_keys: Vec<[u8; 16]> = entries.iter().map(|(r, _)| encode_rev(*r)).collect();
        let mut rev_ops: Vec<(&[u8], Option<&[u8]>)> =
            Vec::with_capacity(del_keys.len() + ins_keys.len());
        rev_ops.extend(del_keys.iter().map(|k| (&k[..], None)));
        rev_ops.extend(ins_keys.iter().zip(&entries).map(|(k, (_, v))| (&k[..], Some(&v[..]))));
        // Deletions are at or below a compaction, hence below every new entry: still sorted.
        debug_assert!(rev_ops.windows(2).all(|w| w[0].0 < w[1].0));
        let meta_map: BTreeMap<Vec<u8>, Option<Vec<u8>>> = meta_ops.into_iter().collect();
        let meta_ops: Vec<(&[u8], Option<&[u8]>)> =
            meta_map.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();

        let mut meta = cs.meta.clone();
        meta.txid += 1;
        let page_size = self.store.page_size();
        let (dirty, mut freed, mut page_count) = {
            let mut tx = TxPages::new(&self.store, &mut cs.freelist, meta.page_count);
            meta.rev_root = btree::apply(&mut tx, meta.rev_root, &rev_ops, Fill::Greedy)?;
            meta.meta_root = btree::apply(&mut tx, meta.meta_root, &meta_ops, Fill::Even)?;
            if let Some(limit) = relocate {
                let mut budget = relocate_budget(&self.opts, page_size);
                meta.rev_root = btree::relocate(&mut tx, meta.rev_root, limit, &mut budget)?;
                meta.meta_root = btree::relocate(&mut tx, meta.meta_root, limit, &mut budget)?;
            }
            tx.finish()
        };
        freed.extend(cs.freelist_pages.iter().copied());

        // Defragment's cut: free pages at the tail are dropped from the file.
        if let Some(to) = truncate {
            let to = to.max(cs.freelist.free_tail_start(page_count)).max(crate::meta::META_PAGES);
            let pending_high =
                cs.freelist.pending_at_or_above(to) || freed.iter().any(|id| *id >= to);
            let dirty_high = dirty.iter().any(|(id, _)| *id >= to);
            if !pending_high && !dirty_high && to < page_count {
                cs.freelist.truncate(to);
                page_count = to;
            }
        }

        // 3. The freelist chain: every page free after a restart, minus the chain's own pages,
        // as runs of consecutive pages (a compaction frees long runs: a few pages describe
        // what took one page per 500 ids, rewritten by every commit).
        let mut persisted = cs.freelist.all_with(&freed);
        let per_page = page::freelist_run_capacity(page_size);
        // Each chain page taken out of the free pages splits at most one run in two.
        let need = page::to_runs(&persisted).len().div_ceil(per_page - 1);
        let mut chain = Vec::with_capacity(need);
        for _ in 0..need {
            match cs.freelist.alloc() {
                Some(id) => chain.push(id),
                None => {
                    chain.push(page_count);
                    page_count += 1;
                }
            }
        }
        if !chain.is_empty() {
            // The allocator hands out ascending ids, and new pages come after all of them.
            debug_assert!(chain.windows(2).all(|w| w[0] < w[1]));
            persisted.retain(|id| chain.binary_search(id).is_err());
        }
        let runs = page::to_runs(&persisted);
        assert!(runs.len() <= need * per_page, "freelist runs outgrew their chain");
        let mut pages: Vec<(u64, PageRef)> = dirty;
        for (i, id) in chain.iter().enumerate() {
            let lo = (i * per_page).min(runs.len());
            let hi = ((i + 1) * per_page).min(runs.len());
            let mut p = vec![0u8; page_size];
            page::build_freelist_runs(
                &mut p,
                chain.get(i + 1).copied().unwrap_or(0),
                &runs[lo..hi],
            );
            page::seal(&mut p, *id);
            pages.push((*id, p.into()));
        }
        meta.freelist_root = chain.first().copied().unwrap_or(0);
        meta.page_count = page_count;
        meta.applied_index = applied;
        meta.current_revision = rev.max(cs.meta.current_revision);
        meta.scheduled_compact = compact;
        if let Some(f) = finishing {
            meta.finished_compact = f;
        }

        let storage = self.store.storage();
        let min_len = page_count * page_size as u64;
        self.store.write_pages(pages)?;
        if truncate.is_none() && storage.len()? < min_len {
            storage.set_len(min_len)?;
        }
        storage.sync()?;

        // 4. The meta page makes it durable.
        let mut mp = vec![0u8; page_size];
        meta.encode(&mut mp);
        storage.write_at(&mp, meta.slot() * page_size as u64)?;
        storage.sync()?;
        if truncate.is_some() && storage.len()? > min_len {
            storage.set_len(min_len)?;
            storage.sync()?;
            self.store.forget_from(page_count);
        }

        // 5. Publish and release.
        let old_chain = std::mem::replace(&mut cs.freelist_pages, chain);
        debug_assert!(old_chain.iter().all(|id| freed.contains(id)));
        cs.freelist.free_pending(meta.txid, freed);
        cs.meta = meta.clone();
        let new_version = Arc::new(Version { meta: meta.clone() });
        let old = std::mem::replace(&mut *self.version.write(), new_version);
        cs.old.push_back((old, meta.txid, meta.current_revision));
        self.durable_applied.store(meta.applied_index, Ordering::Release);
        self.release_versions(cs);
        if let Some(f) = finishing {
            let mut done = self.finished_compact.lock();
            *done = (*done).max(f);
            self.compacted_cv.notify_all();
        }
        tracing::trace!(
            txid = meta.txid,
            revision = meta.current_revision,
            applied = meta.applied_index,
            "commit"
        );
        Ok(())
    }

    /// Releases what the oldest no-longer-held versions were keeping alive: pages freed by the
    /// commit that superseded them, and memtable entries that commit persisted.
    pub(crate) fn release_versions(&self, cs: &mut CommitState) {
        let mut upto: Option<(u64, i64)> = None;
        while let Some((v, txid, persisted)) = cs.old.front() {
            if Arc::strong_count(v) > 1 {
                break;
            }
            upto = Some((*txid, *persisted));
            cs.old.pop_front();
        }
        if let Some((txid, persisted)) = upto {
            cs.freelist.release_through(txid);
            let bound = Revision::max_of(persisted);
            let mut mt = self.memtable.write();
            while let Some(entry) = mt.first_entry() {
                if *entry.key() > bound {
                    break;
                }
                entry.remove();
            }
        }
    }
}
