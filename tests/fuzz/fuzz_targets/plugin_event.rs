//! cargo-fuzz target `plugin_event`: see `tests/fuzz/checks.rs` for what it drives and asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::plugin_event(data));
