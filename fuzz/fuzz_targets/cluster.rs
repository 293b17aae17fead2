//! cargo-fuzz entry point of the `cluster` target; the logic is in
//! `rookery_fuzz_targets::cluster`, which the stable corpus replay test calls too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rookery_fuzz_targets::cluster::run(data);
});
