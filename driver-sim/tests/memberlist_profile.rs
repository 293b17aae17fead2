//! Whole simulations of nodes speaking `WireProfile::Memberlist` (memberlist's wire without
//! Serf's layer): joins, failure and a graceful leave work on memberlist's messages alone.

use std::time::Duration;

use rookery_core::{Config, MemberStatus, WireProfile};
use rookery_sim::{NetConfig, Sim};

fn status(sim: &Sim, i: usize, name: &str) -> Option<MemberStatus> {
    sim.node(i).member(name).map(|m| m.status)
}

#[test]
fn joins_failure_and_leave_on_memberlist_messages_alone() {
    let config = Config {
        wire: WireProfile::Memberlist,
        ..Config::memberlist()
    };
    let mut sim = Sim::new(3, NetConfig::default());
    for i in 0..4 {
        sim.add_node(config.clone(), &format!("n{i}"));
    }
    for i in 1..4 {
        sim.join(i, &[0]);
    }
    sim.run_for(Duration::from_secs(5));
    for i in 0..4 {
        for j in 0..4 {
            assert_eq!(
                status(&sim, i, &format!("n{j}")),
                Some(MemberStatus::Alive),
                "n{i} sees n{j} alive"
            );
        }
    }
    sim.leave(3);
    sim.run_for(Duration::from_secs(10));
    for i in 0..3 {
        assert_eq!(
            status(&sim, i, "n3"),
            Some(MemberStatus::Left),
            "n{i}: n3 left"
        );
    }
    sim.crash(2);
    sim.run_for(Duration::from_secs(20));
    for i in 0..2 {
        assert_eq!(
            status(&sim, i, "n2"),
            Some(MemberStatus::Failed),
            "n{i}: n2 failed"
        );
    }
}
