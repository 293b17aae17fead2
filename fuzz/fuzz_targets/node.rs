//! cargo-fuzz entry point of the `node` target; the logic is in
//! `rookery_fuzz_targets::node`, which the stable corpus replay test calls too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rookery_fuzz_targets::node::run(data);
});
