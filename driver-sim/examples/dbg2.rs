//! debug
use rookery_core::*;
use rookery_sim::*;
use std::time::Duration;
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut sim = Sim::new(1, NetConfig::default());
    for i in 0..n {
        sim.run_until(Timestamp::from_millis(i as u64 * 10));
        let id = sim.add_node(Config::lan(), &format!("node-{i}"));
        if i > 0 {
            sim.join(id, &[0]);
        }
    }
    for _ in 0..25 {
        sim.run_for(Duration::from_millis(100));
        let mut missing = vec![];
        for k in 0..n {
            for j in 0..n {
                if sim
                    .node(k)
                    .member(&format!("node-{j}"))
                    .is_none_or(|m| m.status != MemberStatus::Alive)
                {
                    missing.push((k, j));
                }
            }
        }
        let rep: u64 = (0..n).map(|k| sim.node(k).stats().digest_repairs).sum();
        let pp: u64 = (0..n).map(|k| sim.node(k).stats().streams_out).sum();
        println!(
            "{} repairs {rep} streams {pp} missing {:?}",
            sim.now(),
            &missing[..missing.len().min(12)]
        );
    }
    for (t, i, e) in sim.drain_events() {
        if !matches!(e, Event::MemberJoined(_) | Event::JoinCompleted { .. }) {
            println!("{t} {i} {e:?}");
        }
    }
}
