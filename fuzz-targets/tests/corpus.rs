//! Replays every committed corpus file and every crash regression file of every fuzz target
//! through the same functions the cargo-fuzz targets call, on stable, in every `cargo test`.

use rookery_fuzz_targets::{files, run_target, TARGETS};

fn replay(kind: &str, target: &str) -> usize {
    let files = files(kind, target);
    for f in &files {
        let data = std::fs::read(f).expect("read corpus file");
        let r = std::panic::catch_unwind(|| run_target(target, &data));
        assert!(r.is_ok(), "{target}: {} fails", f.display());
    }
    files.len()
}

#[test]
fn corpus_decode() {
    assert!(replay("corpus", "decode") > 0, "no decode corpus");
}

#[test]
fn corpus_node() {
    assert!(replay("corpus", "node") > 0, "no node corpus");
}

#[test]
fn corpus_cluster() {
    assert!(replay("corpus", "cluster") > 0, "no cluster corpus");
}

#[test]
fn corpus_seal() {
    assert!(replay("corpus", "seal") > 0, "no seal corpus");
}

#[test]
fn corpus_hashicorp() {
    assert!(replay("corpus", "hashicorp") > 0, "no hashicorp corpus");
}

/// The captured datagrams and stream messages of the `hashicorp` corpus handed to a node
/// with a keyring (modes 6 and 7 with bit 0x40), sealed under its key (bit 0x80 too) and not.
#[test]
fn corpus_hashicorp_to_a_keyed_node() {
    let mut n = 0;
    for f in files("corpus", "hashicorp") {
        let data = std::fs::read(&f).expect("read corpus file");
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        if mode % 8 > 1 {
            continue;
        }
        for flags in [0x40, 0xc0] {
            let mut input = vec![(6 + mode % 8) | flags];
            input.extend_from_slice(rest);
            let r = std::panic::catch_unwind(|| run_target("hashicorp", &input));
            assert!(r.is_ok(), "{} with mode {:#x} fails", f.display(), input[0]);
            n += 1;
        }
    }
    assert!(
        n > 0,
        "no captured datagram or stream message in the corpus"
    );
}

#[test]
fn crash_regressions() {
    let n: usize = TARGETS.iter().map(|t| replay("regressions", t)).sum();
    assert!(n > 0, "no regression files");
}
