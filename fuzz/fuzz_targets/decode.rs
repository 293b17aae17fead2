//! cargo-fuzz entry point of the `decode` target; the logic is in
//! `rookery_fuzz_targets::decode`, which the stable corpus replay test calls too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rookery_fuzz_targets::decode::run(data);
});
