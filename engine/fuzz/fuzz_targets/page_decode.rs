//! Page decoding never panics, whatever the bytes: validation either rejects a page or
//! every accessor on it stays in bounds.
//!
//! Run: `cd engine/fuzz && cargo +nightly fuzz run page_decode`

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    logbook_engine::page::exercise(data);
});
