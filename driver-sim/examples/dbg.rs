//! debug
use rookery_core::*;
use rookery_sim::*;
use std::time::Duration;
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut sim = Sim::new(1, NetConfig::default());
    sim.set_record_events(false);
    let t = std::time::Instant::now();
    let conv = scenario::form_cluster(&mut sim, n, &Config::lan());
    let s = (0..n).fold((0u64, 0u64, 0u64, 0u64), |a, k| {
        let s = sim.node(k).stats();
        (
            a.0 + s.packets_in,
            a.1 + s.bytes_in,
            a.2 + s.stream_bytes_in,
            a.3 + s.digest_repairs,
        )
    });
    println!(
        "{conv:?} wall {:?} sim {} pkts_in {} bytes_in {} stream_bytes_in {} repairs {}",
        t.elapsed(),
        sim.now(),
        s.0,
        s.1,
        s.2,
        s.3
    );
    let t = std::time::Instant::now();
    sim.run_for(Duration::from_secs(60));
    println!("quiet 10s wall {:?}", t.elapsed());
}
