//! Page-level storage: the verified, cached page store.

pub mod page_store;

pub use page_store::{PageRef, PageStore};
