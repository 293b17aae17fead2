//! How reliably a query reaches every member of a small cluster by gossip alone — the premise
//! of the real-driver test `rookery_tests::scenarios::query_answered_by_all`, simulated with
//! the same timing and `retransmit_mult` 8: ten members join one by one, and right after they
//! converge one of them asks a query that everyone answers.

use std::time::Duration;

use rookery_core::{Config, Event, QueryParams};
use rookery_sim::{NetConfig, Sim};
use rookery_tests::scenarios::fast_config;

/// The real-driver tests' configuration with `retransmit_mult` set.
fn config(retransmit_mult: u32) -> Config {
    let mut c = fast_config();
    c.retransmit_mult = retransmit_mult;
    c
}

/// How many of the runs with these seeds ended with fewer than all ten answers.
fn runs_missing_a_member(seeds: std::ops::Range<u64>, retransmit_mult: u32) -> usize {
    let n = 10;
    let mut missed = 0;
    for seed in seeds {
        let mut sim = Sim::new(seed, NetConfig::default());
        for i in 0..n {
            sim.add_node(config(retransmit_mult), &format!("q-{i}"));
        }
        for i in 1..n {
            sim.join(i, &[0]);
            sim.run_for(Duration::from_millis(5));
        }
        while !(0..n).all(|i| sim.node(i).alive_count() == n) {
            sim.run_for(Duration::from_millis(5));
        }
        sim.drain_events().for_each(drop);
        let params = QueryParams {
            request_ack: true,
            timeout: Some(Duration::from_secs(20)),
            ..Default::default()
        };
        let id = sim
            .with_node(2, |node, now| node.query(now, "whoami", &b"?"[..], params))
            .expect("query accepted");
        let mut done = None;
        while done.is_none() {
            sim.run_for(Duration::from_millis(50));
            let events: Vec<_> = sim.drain_events().collect();
            for (_, i, e) in events {
                match e {
                    Event::Query(q) => {
                        let h = q.handle.clone();
                        sim.with_node(i, |node, now| node.respond(now, &h, &b"!"[..]))
                            .expect("answer accepted");
                    }
                    Event::QueryDone {
                        query, responses, ..
                    } if i == 2 && query == id => done = Some(responses),
                    _ => {}
                }
            }
        }
        missed += usize::from(done != Some(n));
    }
    missed
}

#[test]
fn with_retransmit_mult_8_every_member_answers() {
    assert_eq!(runs_missing_a_member(1..501, 8), 0);
}

#[test]
fn with_retransmit_mult_4_a_member_sometimes_misses_the_query() {
    // Gossip's odds, not a bug: 8 of 2,000 seeds miss one member; seed 53 is one.
    assert_eq!(runs_missing_a_member(53..54, 4), 1);
}
