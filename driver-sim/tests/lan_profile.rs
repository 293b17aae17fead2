//! Issue 18's `Config::lan()` beside memberlist's exact LAN profile, `Config::memberlist()`.

use std::time::Duration;

use rookery_core::Config;
use rookery_sim::{scenario, NetConfig, Sim};

/// `Config::memberlist()` is memberlist's LAN profile; `Config::lan()` differs from it only in
/// issue 18's fields.
#[test]
fn lan_is_memberlist_plus_issue_18s_timing() {
    let m = Config::memberlist();
    assert_eq!(m.probe_interval, Duration::from_secs(1));
    assert_eq!(m.probe_timeout, Duration::from_millis(500));
    assert_eq!(m.indirect_checks, 3);
    assert_eq!((m.suspicion_mult, m.suspicion_max_timeout_mult), (4, 6));
    assert_eq!(m.gossip_interval, Duration::from_millis(200));
    assert_eq!((m.gossip_nodes, m.retransmit_mult), (3, 4));
    assert_eq!(m.push_pull_interval, Duration::from_secs(30));
    assert_eq!(m.suspicion_confirmations, None);
    assert_eq!(m.suspicion_unit, None);
    assert!(!m.accusation_guard && !m.probe_suspects_first && !m.join_follow_up);
    assert!(!m.revival_check);
    let lan = Config::lan();
    let back = Config {
        gossip_interval: m.gossip_interval,
        suspicion_unit: None,
        suspicion_confirmations: None,
        suspicion_max_timeout_mult: m.suspicion_max_timeout_mult,
        probe_suspects_first: false,
        join_follow_up: false,
        accusation_guard: false,
        revival_check: false,
        ..lan
    };
    assert_eq!(back, m);
    // WAN and Local stay memberlist's.
    assert!(!Config::wan().join_follow_up && !Config::local().accusation_guard);
    assert!(!Config::wan().revival_check && !Config::local().revival_check);
}

/// Every joiner of a `lan()` cluster follows its join up with one to three more push-pulls;
/// `memberlist()` never does.
#[test]
fn join_follow_ups_in_lan_only() {
    for (config, lan) in [(Config::lan(), true), (Config::memberlist(), false)] {
        let n = 30;
        let mut sim = Sim::new(1, NetConfig::default());
        assert!(scenario::form_cluster(&mut sim, n, &config).is_some());
        sim.run_for(Duration::from_secs(5));
        let follow_ups: u64 = (0..n).map(|i| sim.node(i).stats().join_follow_ups).sum();
        if lan {
            let joiners = (n - 1) as u64;
            assert!(
                (joiners..=3 * joiners).contains(&follow_ups),
                "{follow_ups}"
            );
        } else {
            assert_eq!(follow_ups, 0);
        }
    }
}
