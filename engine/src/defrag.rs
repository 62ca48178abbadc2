//! Online defragmentation: shrink the file without stopping readers or writers.
//!
//! Copy-on-write makes moving a page easy: rewrite it (and the path above it) and the old
//! copy is free. Defragment asks the committer for commits that move the live pages at
//! or above `target` = pages in use, into the lowest free pages (the allocator always
//! hands out the lowest), a bounded number per commit, then for a commit that cuts the
//! file's free tail. Readers keep
//! reading their versions; writers keep applying to memory; the only thing that waits is
//! the background commit, for the length of those commits. A reader holding an old
//! version keeps its pages alive, so the cut may be smaller until it lets go.

use std::sync::atomic::Ordering;

use crate::commit::relocate_budget;
use crate::error::Result;
use crate::meta::META_PAGES;
use crate::shared::Shared;

/// Relocation rounds beyond those the budget needs (each moves what the previous could
/// not: rewriting a page's parents frees pages low in the file only after the commit).
const ROUNDS: usize = 4;

pub(crate) fn defragment(shared: &Shared) -> Result<()> {
    shared.commit_now()?;
    let rounds = {
        let cs = shared.commit.lock();
        let budget = relocate_budget(&shared.opts, shared.store.page_size()) as u64;
        ROUNDS + cs.meta.page_count.div_ceil(budget) as usize
    };
    for _ in 0..rounds {
        let mut cs = shared.commit.lock();
        shared.check_poison()?;
        shared.release_versions(&mut cs);
        let free = (cs.freelist.free_count() + cs.freelist.pending_count()) as u64;
        let count = cs.meta.page_count;
        // Live pages plus the freelist chain's own pages and some slack for the commit itself.
        let target = (count - free).max(META_PAGES) + 2;
        if target >= count || cs.freelist.free_tail_start(count) <= target {
            break;
        }
        cs.relocate_below = Some(target);
        shared
            .commit_locked(&mut cs)
            .inspect_err(|e| *shared.poisoned.lock() = Some(e.to_string()))?;
    }
    let mut cs = shared.commit.lock();
    shared.release_versions(&mut cs);
    cs.truncate_to = Some(META_PAGES);
    let r = shared.commit_locked(&mut cs);
    if let Err(e) = &r {
        *shared.poisoned.lock() = Some(e.to_string());
    }
    tracing::info!(
        pages = cs.meta.page_count,
        shutdown = shared.shutdown.load(Ordering::Relaxed),
        "defragmented"
    );
    r
}
