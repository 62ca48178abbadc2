//! Integrity check: every page of the file is accounted for exactly once.

use crate::btree;
use crate::error::{Error, Result};
use crate::meta::META_PAGES;
use crate::shared::Shared;

/// Walks the committed trees and the freelist and checks that every page below the
/// high-water mark is exactly one of: meta, tree, overflow, freelist, free
/// ([`Engine::verify`](crate::Engine::verify)).
pub(crate) fn verify(shared: &Shared) -> Result<()> {
    let cs = shared.commit.lock();
    let mut pages = Vec::new();
    btree::collect_pages(&shared.store, cs.meta.rev_root, &mut pages)?;
    btree::collect_pages(&shared.store, cs.meta.meta_root, &mut pages)?;
    pages.extend(cs.freelist_pages.iter().copied());
    pages.extend(cs.freelist.all());
    pages.sort_unstable();
    let bad = |reason: String| Error::Corrupted { file: shared.path.clone(), offset: 0, reason };
    for w in pages.windows(2) {
        if w[0] == w[1] {
            return Err(bad(format!("page {} is owned twice", w[0])));
        }
    }
    let expect = cs.meta.page_count - META_PAGES;
    if pages.len() as u64 != expect || pages.first().is_some_and(|p| *p < META_PAGES) {
        return Err(bad(format!("{} pages accounted for, {} in the file", pages.len(), expect)));
    }
    if pages.last().is_some_and(|p| *p >= cs.meta.page_count) {
        return Err(bad("a page lies past the high-water mark".into()));
    }
    Ok(())
}
