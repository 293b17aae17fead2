//! # rookery-fuzz-targets
//!
//! The logic of rookery's fuzz targets, in one place that both the cargo-fuzz harness
//! (`fuzz/fuzz_targets/*.rs`, nightly) and the stable test suite (`tests/corpus.rs`, which
//! replays every committed corpus and regression file) call. Each target is one function from
//! bytes to a check that panics on a broken invariant:
//!
//! - [`decode::run`]: arbitrary bytes into the wire decoder, round trips;
//! - [`node::run`]: an input script applied to one [`rookery_core::Node`];
//! - [`cluster::run`]: a fault script run through the simulator;
//! - [`seal::run`]: the sealed envelope and the label path (round trip, tamper, refusals);
//! - [`hashicorp::run`]: the HashiCorp profile's decoders (memberlist and Serf), round trips.
//!
//! The corpus is generated from simulator traces by `cargo run -p rookery-fuzz-targets --bin
//! gen-corpus` (see `fuzz/README.md`).

pub mod cluster;
pub mod decode;
pub mod hashicorp;
pub mod node;
pub mod script;
pub mod seal;

use std::path::{Path, PathBuf};

/// The fuzz targets, by name.
pub const TARGETS: [&str; 5] = ["decode", "node", "cluster", "seal", "hashicorp"];

/// Run target `name` on `data`, twice for the stateful targets to check determinism.
/// Panics on an unknown name or a broken invariant.
pub fn run_target(name: &str, data: &[u8]) {
    match name {
        "decode" => decode::run(data),
        "seal" => seal::run(data),
        "hashicorp" => hashicorp::run(data),
        "node" => assert_eq!(
            node::run(data),
            node::run(data),
            "node run not deterministic"
        ),
        "cluster" => assert_eq!(
            cluster::run(data),
            cluster::run(data),
            "cluster run not deterministic"
        ),
        _ => panic!("unknown fuzz target {name}"),
    }
}

/// The `fuzz/` folder of the repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file under `fuzz/<kind>/<target>/` (`kind` is `corpus` or `regressions`), sorted.
pub fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
