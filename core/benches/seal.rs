//! CPU per sealed and per opened datagram (AES-256-GCM, a full 1,400-byte datagram and a
//! typical 200-byte one). Run: `cargo bench -p rookery-core --features arbitrary --bench seal`.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rookery_core::fuzzing::{open_sealed, seal_datagram};
use rookery_core::Keyring;

fn bench(c: &mut Criterion) {
    let ring = Keyring::new(&[7; 32]).expect("key");
    let mut g = c.benchmark_group("seal");
    for size in [200usize, 1400 - rookery_core::SEAL_OVERHEAD] {
        let mut plain = vec![rookery_core::wire::VERSION, 0];
        plain.resize(size, 0x5a);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| seal_datagram(&ring, None, [1; 32], p))
        });
        let sealed = seal_datagram(&ring, None, [1; 32], &plain).expect("sealed");
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| open_sealed(&ring, None, s))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
