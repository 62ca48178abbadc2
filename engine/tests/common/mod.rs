//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use logbook_engine::{Engine, KeyValue, Options, RangeOptions};

/// Options with no background commits (only explicit ones), small pages.
pub fn manual_options() -> Options {
    Options {
        commit_interval: Duration::from_secs(3600),
        commit_max_writes: usize::MAX,
        page_size: 1024,
        cache_size: 1 << 20,
        ..Options::default()
    }
}

/// Every live key at the current revision.
pub fn all(engine: &Engine) -> Vec<KeyValue> {
    engine
        .range(&RangeOptions { key: vec![0], range_end: vec![0], ..Default::default() })
        .unwrap()
        .kvs
}

pub fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}
