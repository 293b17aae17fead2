//! cargo-fuzz entry point of the `hashicorp` target; the logic is in
//! `rookery_fuzz_targets::hashicorp`, which the stable corpus replay test calls too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rookery_fuzz_targets::hashicorp::run(data);
});
