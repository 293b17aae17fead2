//! The simulator's faults, one by one: each does what it says, and the standard invariants
//! and the liveness phase hold around it.

use std::collections::BTreeMap;
use std::time::Duration;

use rookery_core::{Config, Event, MemberStatus};
use rookery_sim::{
    Latency, LinkEffect, Liveness, NetConfig, NodeState, Sim, SimBuilder, Step, TimedStep,
};

fn cluster(seed: u64, n: usize, config: Config) -> Sim {
    let mut sim = SimBuilder::new(seed).nodes(n, config).build().unwrap();
    sim.form(Duration::from_secs(30)).unwrap();
    sim.drain_events().for_each(drop);
    sim
}

fn status(sim: &Sim, observer: usize, member: usize) -> Option<MemberStatus> {
    sim.node(observer)
        .member(sim.name(member))
        .map(|m| m.status)
}

fn failed_about(sim: &mut Sim, member: &str) -> usize {
    sim.drain_events()
        .filter(|(_, _, e)| matches!(e, Event::MemberFailed(m) if &*m.name == member))
        .count()
}

#[test]
fn restart_brings_a_fresh_node_back_under_the_same_name() {
    let mut sim = cluster(1, 6, Config::local());
    let addr = sim.addr(5);
    sim.crash(5);
    sim.run_for(Duration::from_secs(20));
    assert_eq!(status(&sim, 0, 5), Some(MemberStatus::Failed));
    let old = sim.node(0).member("node-5").unwrap().incarnation;
    sim.restart(5, &[0]).unwrap();
    assert_eq!(sim.life(5), 1);
    assert_eq!(sim.addr(5), addr);
    assert_eq!(sim.node(5).num_members(), 1, "fresh state");
    sim.wait_for(Duration::from_secs(10), Sim::converged)
        .unwrap();
    let back = sim.node(0).member("node-5").unwrap();
    assert_eq!(back.status, MemberStatus::Alive);
    assert!(back.incarnation > old, "it outbid its old life");
    sim.check().unwrap();
}

#[test]
fn a_paused_node_wakes_to_its_backlog_and_refutes() {
    let mut sim = cluster(2, 6, Config::local());
    sim.pause(3);
    assert_eq!(sim.node_state(3), NodeState::Paused);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(
        status(&sim, 0, 3),
        Some(MemberStatus::Failed),
        "a stopped process looks dead"
    );
    assert!(failed_about(&mut sim, "node-3") > 0);
    let before = sim.node(3).stats().packets_in;
    sim.resume(3);
    sim.run_for(Duration::from_millis(1));
    assert!(
        sim.node(3).stats().packets_in > before + 10,
        "the backlog was handled at once"
    );
    sim.heal_and_converge(&Liveness::default()).unwrap();
    assert!(sim.node(3).stats().refutations > 0);
    sim.check().unwrap();
}

#[test]
fn a_full_backlog_drops_datagrams() {
    let mut sim = cluster(3, 5, Config::local());
    sim.set_backlog_limit(10);
    sim.pause(2);
    sim.run_for(Duration::from_secs(10));
    assert!(sim.net_stats().backlog_dropped > 0);
}

#[test]
fn overload_delays_but_lan_tolerates_it() {
    let mut sim = cluster(4, 8, Config::lan());
    sim.set_overload(7, Some(Duration::from_millis(1500)));
    let deadline = sim.now() + Duration::from_secs(120);
    let mut suspected = 0;
    sim.run_until_pred(deadline, |s, _| {
        for (_, _, e) in s.drain_events() {
            match e {
                Event::MemberSuspected { .. } => suspected += 1,
                Event::MemberFailed(m) => panic!("{} declared failed", m.name),
                _ => {}
            }
        }
        false
    });
    assert!(suspected > 0, "late acks raise suspicions");
    sim.check().unwrap();
    sim.set_overload(7, None);
    sim.heal_and_converge(&Liveness::default()).unwrap();
}

#[test]
fn clock_drift_changes_a_nodes_time_and_pace() {
    let mut sim = cluster(5, 5, Config::local());
    let t0 = sim.now();
    let local0 = sim.local_now(1);
    sim.set_clock_rate(1, 2.0);
    sim.set_clock_rate(2, 0.5);
    let p1 = sim.node(1).stats().probes_ok;
    let p2 = sim.node(2).stats().probes_ok;
    sim.run_for(Duration::from_secs(40));
    assert_eq!(
        sim.local_now(1).saturating_since(local0),
        Duration::from_secs(80)
    );
    assert_eq!(
        sim.local_now(0).saturating_since(t0),
        Duration::from_secs(40)
    );
    let fast = sim.node(1).stats().probes_ok - p1;
    let slow = sim.node(2).stats().probes_ok - p2;
    assert!(fast > 3 * slow, "probes: fast {fast}, slow {slow}");
    sim.check().unwrap();
    // Back to an exact clock: time stays monotonic.
    let before = sim.local_now(1);
    sim.set_clock_rate(1, 1.0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.local_now(1).saturating_since(before),
        Duration::from_secs(1)
    );
}

#[test]
fn partitions_split_views_and_heal() {
    let mut sim = cluster(6, 6, Config::local());
    let split = sim.partition(&[&[0, 1, 2], &[3, 4, 5]]);
    sim.wait_for(Duration::from_secs(60), |s| {
        (0..6).all(|i| {
            (0..6).all(|j| {
                let want = if (i < 3) == (j < 3) {
                    MemberStatus::Alive
                } else {
                    MemberStatus::Failed
                };
                status(s, i, j) == Some(want)
            })
        })
    })
    .unwrap();
    assert_eq!(status(&sim, 4, 5), Some(MemberStatus::Alive));
    sim.heal(split);
    sim.heal_and_converge(&Liveness::default()).unwrap();
    sim.check().unwrap();
}

#[test]
fn a_one_way_cut_blocks_one_direction_only() {
    let mut sim = cluster(7, 4, Config::local());
    let delivered = sim.net_stats().delivered;
    let blocked = sim.net_stats().blocked;
    let cut = sim.cut(&[0], &[1]);
    sim.run_for(Duration::from_secs(5));
    assert!(sim.net_stats().blocked > blocked);
    assert!(sim.net_stats().delivered > delivered);
    // Node 1 still hears from everyone else and node 0 hears from node 1: indirect probes
    // keep it alive in most views; healing restores everything.
    sim.heal(cut);
    sim.heal_and_converge(&Liveness::default()).unwrap();
    sim.check().unwrap();
}

#[test]
fn a_link_that_drops_everything_isolates_a_pair_only() {
    let mut sim = cluster(8, 5, Config::local());
    let rule = sim.add_link_rule(&[0, 1], &[0, 1], LinkEffect::cut());
    sim.run_for(Duration::from_secs(30));
    // Indirect probes through the other three keep 0 and 1 alive for each other.
    assert_eq!(status(&sim, 0, 1), Some(MemberStatus::Alive));
    assert_eq!(failed_about(&mut sim, "node-1"), 0);
    sim.heal(rule);
    sim.check().unwrap();
}

#[test]
fn a_slow_link_adds_its_delay() {
    let mut sim = cluster(9, 4, Config::lan());
    sim.add_link_rule(&[2], &[3], LinkEffect::delay(Duration::from_millis(200)));
    sim.add_link_rule(&[3], &[2], LinkEffect::delay(Duration::from_millis(200)));
    sim.run_for(Duration::from_secs(60));
    assert_eq!(status(&sim, 2, 3), Some(MemberStatus::Alive));
    sim.check().unwrap();
}

#[test]
fn duplication_reordering_and_the_mtu_are_applied() {
    let net = NetConfig {
        duplicate: 0.2,
        reorder: 0.2,
        reorder_window: Duration::from_millis(30),
        latency: Latency::long_tail(
            Duration::from_millis(1),
            Duration::from_millis(3),
            1.5,
            Duration::from_millis(200),
        ),
        ..NetConfig::default()
    };
    let mut sim = SimBuilder::new(10)
        .net(net)
        .nodes(8, Config::local())
        .build()
        .unwrap();
    sim.form(Duration::from_secs(30)).unwrap();
    sim.run_for(Duration::from_secs(30));
    let s = sim.net_stats().clone();
    assert!(s.duplicated > 0 && s.reordered > 0, "{s:?}");
    sim.check().unwrap();
    // Datagrams above a 300-byte MTU are dropped: every one carrying the new 400-byte tags.
    let mut net = sim.net().clone();
    net.mtu = 300;
    sim.set_net(net);
    sim.with_node(0, |n, now| {
        let tags = BTreeMap::from([("blob".to_string(), "x".repeat(400))]);
        n.set_tags(now, tags).unwrap()
    });
    sim.run_for(Duration::from_secs(5));
    assert!(sim.net_stats().oversized > 0);
}

#[test]
fn loss_excuses_verdicts_only_while_it_lasts() {
    let mut sim = cluster(11, 5, Config::local());
    sim.set_loss(0.3);
    sim.run_for(Duration::from_secs(20));
    sim.set_loss(0.0);
    let w = sim.ledger().global().to_vec();
    assert_eq!(w.len(), 1);
    assert!(w[0].end == sim.now());
    sim.heal_and_converge(&Liveness::default()).unwrap();
    sim.check().unwrap();
}

#[test]
fn a_scheduled_script_runs_at_its_times() {
    let mut sim = cluster(12, 6, Config::local());
    let start = sim.now();
    let script = vec![
        TimedStep::new(
            1_000,
            Step::Partition {
                groups: vec![vec![0, 1, 2], vec![3, 4, 5]],
            },
        ),
        TimedStep::new(20_000, Step::HealNetwork),
        TimedStep::new(21_000, Step::Crash { node: 5 }),
    ];
    sim.schedule_script(start, &script).unwrap();
    sim.run_for(Duration::from_millis(999));
    assert!(sim.ledger().node(0).is_empty());
    sim.run_for(Duration::from_millis(2));
    assert_eq!(
        sim.ledger().node(0).len(),
        1,
        "the partition started at 1 s"
    );
    sim.run_for(Duration::from_secs(25));
    assert_eq!(sim.node_state(5), NodeState::Crashed);
    sim.heal_and_converge(&Liveness::default()).unwrap();
    sim.check().unwrap();
    assert!(sim
        .schedule_script(start, &[TimedStep::new(0, Step::Crash { node: 9 })])
        .is_err());
}

#[test]
fn calls_at_chosen_times_reach_the_node() {
    let mut sim = cluster(13, 4, Config::local());
    let at = sim.now() + Duration::from_secs(3);
    sim.call_at(at, 2, |n, now| {
        let tags = BTreeMap::from([("role".to_string(), "db".to_string())]);
        n.set_tags(now, tags).unwrap();
    });
    sim.run_for(Duration::from_secs(2));
    assert!(sim.node(0).member("node-2").unwrap().tags.is_empty());
    sim.run_for(Duration::from_secs(3));
    let m = sim.node(0).member("node-2").unwrap();
    assert_eq!(m.tags.get("role").map(String::as_str), Some("db"));
    sim.metrics_mut().set("tagged", 1);
    assert_eq!(sim.metrics().get("tagged"), Some(&serde_json::json!(1)));
}

/// Issue 18's mass restart (memberlist issue 311: members stuck dead after a mass restart): a
/// third of the cluster restarts at once with fresh state, before and after the others declared
/// it failed; on every seed every live node's view is right again within 30 s and stays right,
/// and the run is the same run again with the same seed.
#[test]
fn after_a_mass_restart_no_member_stays_marked_failed() {
    use rookery_sim::scenario::{mass_restart, Options};
    for seed in 1..=3 {
        for downtime in [5, 20] {
            let opts = Options {
                nodes: 60,
                seed,
                downtime: Duration::from_secs(downtime),
                duration: Duration::from_secs(60),
                ..Options::default()
            };
            let m = mass_restart(&opts);
            let what = format!("seed {seed}, down {downtime} s: {m:?}");
            assert_eq!(m["restarted"], 20, "{what}");
            assert_eq!(m["stale_views"], 0, "{what}");
            let t = m["t_views_correct_ms"]
                .as_f64()
                .expect("views became right");
            assert!(t <= 30_000.0, "{what}");
            let again = mass_restart(&opts);
            assert_eq!(m["trace_hash"], again["trace_hash"], "{what}");
        }
    }
}

/// Issue 18's flapping member (up 5 s, down 5 s): every other node hears at most a few
/// membership events about it per cycle, the traffic stays within two and a half times the
/// traffic at rest, and once it stays up every view is right.
///
/// The bound was twice the rest traffic under memberlist's timing (1.53–1.88 here). With
/// `Config::lan()` the flapping traffic is about the same (121–147 bytes per node per second
/// against 124–142, seeds 1–3) but the rest traffic it is measured against is lower (57–75
/// against 75–81: the periodic push-pull is re-armed for the cluster's size at the join
/// follow-ups, so early joiners no longer exchange state on the unstretched period in the
/// first minute), which puts the ratio at 1.95–2.13.
#[test]
fn a_flapping_member_costs_bounded_events_and_traffic() {
    use rookery_sim::scenario::{flap, Options};
    for seed in 1..=3 {
        let opts = Options {
            nodes: 40,
            seed,
            downtime: Duration::from_secs(5),
            duration: Duration::from_secs(60),
            ..Options::default()
        };
        let m = flap(&opts);
        let what = format!("seed {seed}: {m:?}");
        assert_eq!(m["cycles"], 6, "{what}");
        let per_cycle = m["events_per_observer_per_cycle"].as_f64().unwrap();
        assert!(per_cycle > 0.0 && per_cycle <= 4.0, "{what}");
        let (rest, flapping) = (
            m["bytes_per_node_s_at_rest"].as_f64().unwrap(),
            m["bytes_per_node_s"].as_f64().unwrap(),
        );
        assert!(flapping <= 2.5 * rest, "{what}");
        assert_eq!(m["stale_views"], 0, "{what}");
    }
}

/// Issue 18's "same name, new address" once the old life was declared failed: the member keeps
/// its name, and every node holds it alive at its new address within 2 s of the restart, with
/// no name conflict.
#[test]
fn a_member_back_at_a_new_address_keeps_its_name() {
    use rookery_sim::scenario::{moved, Options};
    for seed in 1..=3 {
        let opts = Options {
            nodes: 40,
            seed,
            downtime: Duration::from_secs(20),
            duration: Duration::from_secs(30),
            ..Options::default()
        };
        let m = moved(&opts);
        let what = format!("seed {seed}: {m:?}");
        let t = m["t_all_know_new_addr_ms"]
            .as_f64()
            .expect("address learnt");
        assert!(t <= 2_000.0, "{what}");
        assert_eq!(m["name_conflicts"], 0, "{what}");
        assert_eq!(m["gave_up_name"], false, "{what}");
        assert_eq!(m["stale_views"], 0, "{what}");
    }
}

/// The harder half: back at a new address at once, before the others noticed the old life
/// died. The others check the known (old) address before refusing the claim, find it silent
/// and take the new one; the restarted node, hearing of its own previous life, waits for that
/// before asking the cluster, and keeps its name.
#[test]
fn a_member_back_at_a_new_address_at_once_keeps_its_name() {
    use rookery_sim::scenario::{moved, Options};
    for seed in 1..=3 {
        for downtime in [0, 2, 5] {
            let opts = Options {
                nodes: 40,
                seed,
                downtime: Duration::from_secs(downtime),
                duration: Duration::from_secs(60),
                ..Options::default()
            };
            let m = moved(&opts);
            let what = format!("seed {seed}, down {downtime} s: {m:?}");
            assert_eq!(m["gave_up_name"], false, "{what}");
            let t = m["t_all_know_new_addr_ms"]
                .as_f64()
                .expect("address learnt");
            assert!(t <= 15_000.0, "{what}");
            assert_eq!(m["stale_views"], 0, "{what}");
        }
    }
}

/// Issue 18's trap for a node that withholds accusations when its helpers stay silent
/// (`Config::accusation_guard`, on in `Config::lan()`): after
/// a mass crash that took the target and every helper a survivor could ask, the survivors
/// must still fail every crashed member, in bounded time. Two shapes: a few survivors among
/// many crashed (helpers often all crashed; the survivors keep reaching each other, so their
/// silence is selective until a survivor is asked and nacks), and a lone survivor (nothing
/// reaches it: total silence accuses, once the probe's window has passed).
///
/// Measured with `Config::lan()` (seeds in the order below): 57.8, 74.5, 113.2, 132.3 and
/// 148.0 s. `Config::memberlist()` with the guard on: 39.6, 39.7, 82.7, 84.3, 117.0 s (42–53 s
/// for the lone survivor without the guard; 176–197 s with the guard's former fixed window
/// of 16 intervals, now one per live member between 4 and 16). `lan()` is slower when few
/// survive: it expects three independent confirmations (two survivors can give only two, so
/// a suspicion shrinks to 12.3 s, not to its shortest 3 s).
#[test]
fn survivors_fail_crashed_members_even_when_every_helper_crashed_too() {
    for (seed, n, survivors, within) in [
        (1, 10, 3, 90),
        (2, 10, 3, 90),
        (3, 12, 2, 150),
        (4, 5, 1, 240),
        (5, 6, 1, 240),
    ] {
        let config = Config::lan();
        let mut sim = cluster(seed, n, config);
        for i in survivors..n {
            sim.crash(i);
        }
        let all_failed = |sim: &Sim| {
            (0..survivors)
                .all(|o| (survivors..n).all(|c| status(sim, o, c) == Some(MemberStatus::Failed)))
        };
        let took = sim.wait_for(Duration::from_secs(within), all_failed);
        assert!(
            took.is_ok(),
            "seed {seed}: {survivors} of {n} survived, crashed ones not all failed within {within} s"
        );
        // Nothing false either: no survivor was ever failed by another.
        for o in 0..survivors {
            for s in 0..survivors {
                assert_ne!(status(&sim, o, s), Some(MemberStatus::Failed));
            }
        }
    }
}

/// Issue 18's degraded members (a tenth lose 80 % of their packets both ways, TCP model of
/// the reliable channel): they miss the acks of healthy members, and their accusations used
/// to fail healthy members (50 false failed verdicts per 120 s at N=30 before the probe
/// weighed its evidence). With `Config::accusation_guard` on they withhold them: no healthy member is marked failed by a
/// healthy one, and healthy members are barely suspected (base: 589–708 suspicions).
#[test]
fn a_degraded_member_does_not_get_healthy_members_failed() {
    use rookery_sim::scenario::{degraded, Options};
    use rookery_sim::ReliableModel;
    for seed in 1..=3 {
        let opts = Options {
            nodes: 30,
            seed,
            loss: 0.8,
            duration: Duration::from_secs(120),
            reliable: ReliableModel::Tcp,
            config: Config {
                accusation_guard: true,
                ..Config::lan()
            },
            ..Options::default()
        };
        let m = degraded(&opts);
        assert_eq!(m["healthy_false_failed"], 0, "seed {seed}: {m:?}");
        let suspected = m["healthy_false_suspect"].as_u64().unwrap();
        assert!(suspected < 60, "seed {seed}: {m:?}");
        // Removed stably (`Config::revival_check`): once failed, a degraded member's
        // refutations no longer bring it back. Without the check: 27, 0 and 27 rejoins.
        assert_eq!(m["degraded_rejoins"], 0, "seed {seed}: {m:?}");
        let (first, last) = (
            m["degraded_failed_share_first"].as_f64().unwrap(),
            m["degraded_failed_share_last"].as_f64().unwrap(),
        );
        assert!(last >= first, "seed {seed}: {m:?}");
    }
}

/// Issue 18's long partition: two halves for 10 minutes (longer than the reconnect interval,
/// every suspicion timeout and the time the failed are gossiped to), then healed with no
/// operator and no reconnect stand-in: both sides merge again through the core's own
/// reconnect attempts, on every seed (3.6–5.1 s after the heal at N=30 with
/// `Config::lan()`), after each side had failed the other whole.
#[test]
fn a_long_partition_heals_without_an_operator() {
    use rookery_sim::scenario::{partition, Options};
    use rookery_sim::ReliableModel;
    for seed in 1..=3 {
        let opts = Options {
            nodes: 30,
            seed,
            duration: Duration::from_secs(600),
            reliable: ReliableModel::Tcp,
            ..Options::default()
        };
        let m = partition(&opts);
        let what = format!("seed {seed}: {m:?}");
        assert!(m["t_split_detect_ms"].as_f64().is_some(), "{what}");
        assert_eq!(
            m["failed_verdicts"],
            2 * 15 * 15,
            "each side failed the other: {what}"
        );
        let healed = m["t_heal_converge_ms"].as_f64().expect("merged again");
        assert!(healed <= 30_000.0, "{what}");
    }
}
