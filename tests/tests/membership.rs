//! Membership behaviour through the simulator: joining, convergence, crash detection within
//! the bound the configuration implies, graceful leave, refutation, loss, determinism.

use std::time::Duration;

use rookery_core::{Config, Event, MemberStatus, Timestamp};
use rookery_sim::scenario::{count_false_verdicts, form_cluster};
use rookery_sim::{NetConfig, Sim};

fn name(i: usize) -> String {
    format!("node-{i}")
}

/// Start `n` nodes (names `node-i`) that join node 0, and run until all see all alive.
fn cluster(seed: u64, n: usize, config: &Config) -> (Sim, Duration) {
    let mut sim = Sim::new(seed, NetConfig::default());
    let t = form_cluster(&mut sim, n, config).expect("cluster converges");
    (sim, t)
}

fn status(sim: &Sim, observer: usize, member: usize) -> Option<MemberStatus> {
    sim.node(observer).member(&name(member)).map(|m| m.status)
}

#[test]
fn three_nodes_join() {
    let mut sim = Sim::new(1, NetConfig::default());
    for i in 0..3 {
        sim.add_node(Config::local(), &name(i));
    }
    sim.join(1, &[0]);
    sim.join(2, &[1]);
    sim.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(sim.node(i).alive_count(), 3, "node {i}");
        for j in 0..3 {
            assert_eq!(status(&sim, i, j), Some(MemberStatus::Alive));
        }
    }
    let mut completed: Vec<(usize, Event)> = sim
        .drain_events()
        .filter(|(_, _, e)| matches!(e, Event::JoinCompleted { .. }))
        .map(|(_, i, e)| (i, e))
        .collect();
    completed.sort_by_key(|(i, _)| *i);
    assert_eq!(
        completed,
        vec![
            (
                1,
                Event::JoinCompleted {
                    answered: 1,
                    contacted: 1
                }
            ),
            (
                2,
                Event::JoinCompleted {
                    answered: 1,
                    contacted: 1
                }
            )
        ]
    );
}

#[test]
fn join_reports_unreachable_seeds() {
    let mut sim = Sim::new(2, NetConfig::default());
    let a = sim.add_node(Config::local(), "a");
    let b = sim.add_node(Config::local(), "b");
    sim.crash(b);
    let dead_seed = sim.addr(b);
    let live_seed = sim.addr(a);
    let c = sim.add_node(Config::local(), "c");
    sim.with_node(c, |n, now| n.join(now, &[dead_seed, live_seed]))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    let done: Vec<Event> = sim
        .drain_events()
        .filter(|(_, i, e)| *i == c && matches!(e, Event::JoinCompleted { .. }))
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        done,
        vec![Event::JoinCompleted {
            answered: 1,
            contacted: 2
        }]
    );
}

#[test]
fn hundred_nodes_converge() {
    let (sim, t) = cluster(3, 100, &Config::lan());
    assert!(t < Duration::from_secs(10), "converged only after {t:?}");
    for i in 0..100 {
        assert_eq!(sim.node(i).alive_count(), 100);
    }
}

/// The detection bound a configuration implies for a cluster of `n`: a few probe intervals until
/// some member's probe of the crashed node fails, the longest suspicion timeout (no
/// confirmations at all), and time for the verdict to spread.
fn detection_bound(config: &Config, n: usize) -> (Duration, Duration) {
    // The core's own bounds (`Config::lan()` sets the shortest timeout by `suspicion_unit`,
    // not by `suspicion_mult`).
    let (min, max, _) = rookery_core::formulas::suspicion_bounds(config, n);
    (
        min,
        config.probe_interval * 3 + max + config.gossip_interval * 20,
    )
}

#[test]
fn crash_is_detected_by_all_within_the_configured_bound() {
    for (seed, config) in [(4, Config::local()), (5, Config::lan())] {
        let n = 30;
        let (mut sim, _) = cluster(seed, n, &config);
        sim.run_for(Duration::from_secs(5));
        sim.drain_events().for_each(drop);
        let victim = n - 1;
        sim.crash(victim);
        let t0 = sim.now();
        let (min, bound) = detection_bound(&config, n);
        let mut failed_at = vec![None; n];
        let victim_name = name(victim);
        sim.run_until_pred(t0 + bound * 2, |sim, _| {
            for (t, i, e) in sim.drain_events() {
                if let Event::MemberFailed(m) = e {
                    if *m.name == *victim_name && failed_at[i].is_none() {
                        failed_at[i] = Some(t);
                    }
                }
            }
            failed_at[..victim].iter().all(Option::is_some)
        });
        let last = failed_at[..victim]
            .iter()
            .map(|t| t.expect("every survivor detects"))
            .max();
        let took = last.unwrap().saturating_since(t0);
        assert!(
            took <= bound,
            "all detected after {took:?}, bound {bound:?}"
        );
        let first = failed_at[..victim]
            .iter()
            .flatten()
            .min()
            .unwrap()
            .saturating_since(t0);
        assert!(
            first >= min,
            "a verdict before the minimum suspicion timeout: {first:?}"
        );
        for i in 0..victim {
            assert_eq!(status(&sim, i, victim), Some(MemberStatus::Failed));
            assert_eq!(sim.node(i).alive_count(), n - 1);
        }
    }
}

#[test]
fn graceful_leave_gives_left_not_failed() {
    let n = 12;
    let (mut sim, _) = cluster(6, n, &Config::local());
    sim.drain_events().for_each(drop);
    let leaver = 7;
    sim.leave(leaver);
    sim.run_for(Duration::from_secs(30));
    let events: Vec<(Timestamp, usize, Event)> = sim.drain_events().collect();
    assert!(events
        .iter()
        .any(|(_, i, e)| *i == leaver && *e == Event::LeaveCompleted));
    for i in (0..n).filter(|&i| i != leaver) {
        assert_eq!(
            status(&sim, i, leaver),
            Some(MemberStatus::Left),
            "node {i}"
        );
        assert_eq!(sim.node(i).alive_count(), n - 1);
    }
    let failed = events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::MemberFailed(_)))
        .count();
    assert_eq!(failed, 0, "nobody is declared failed");
    assert!(sim.node(leaver).has_left());
    assert_eq!(sim.node(leaver).poll_timeout(), None);
}

#[test]
fn falsely_suspected_node_refutes_and_stays_alive() {
    let seeds: u64 = std::env::var("ROOKERY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    for seed in 0..seeds {
        refute_case(seed);
    }
}

fn refute_case(seed: u64) {
    let n = 10;
    let config = Config::local();
    let (mut sim, _) = cluster(seed, n, &config);
    sim.run_for(Duration::from_secs(2));
    sim.drain_events().for_each(drop);
    let victim = 4;
    // Cut it off until someone suspects it, then heal at once: it must refute in time.
    sim.isolate(victim, true);
    let victim_name = name(victim);
    let mut suspected = 0;
    let deadline = sim.now() + Duration::from_secs(20);
    sim.run_until_pred(deadline, |sim, _| {
        for (_, _, e) in sim.drain_events() {
            if matches!(&e, Event::MemberSuspected { member, .. } if *member.name == *victim_name) {
                suspected += 1;
            }
        }
        suspected > 0
    });
    sim.isolate(victim, false);
    sim.run_for(Duration::from_secs(40));
    let events: Vec<(Timestamp, usize, Event)> = sim.drain_events().collect();
    assert!(suspected > 0, "seed {seed}: the cut-off node was suspected");
    assert!(
        sim.node(victim).stats().refutations > 0,
        "seed {seed}: and refuted"
    );
    let failed: Vec<_> = events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::MemberFailed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "seed {seed}: nobody was declared failed: {failed:?}"
    );
    for i in 0..n {
        let m = sim.node(i).member(&name(victim)).unwrap();
        assert_eq!(m.status, MemberStatus::Alive, "node {i}");
        assert!(m.incarnation >= 1, "the refutation raised the incarnation");
        assert_eq!(sim.node(i).alive_count(), n);
    }
}

#[test]
fn ten_percent_loss_for_300s_gives_no_false_failure() {
    let n = 50;
    let (mut sim, _) = cluster(8, n, &Config::lan());
    sim.set_net(NetConfig {
        loss: 0.10,
        ..NetConfig::default()
    });
    let v = count_false_verdicts(&mut sim, Duration::from_secs(300));
    assert_eq!(
        v.failed, 0,
        "false failed verdicts ({} suspicions)",
        v.suspect
    );
    let net = sim.net_stats();
    let rate = net.lost as f64 / (net.lost + net.delivered) as f64;
    assert!((0.08..0.12).contains(&rate), "the loss was real: {net:?}");
    for i in 0..n {
        assert_eq!(sim.node(i).alive_count(), n, "node {i}");
    }
}

fn traced_run(seed: u64) -> (u64, Vec<String>) {
    let n = 20;
    let mut sim = Sim::new(
        seed,
        NetConfig {
            loss: 0.05,
            ..NetConfig::default()
        },
    );
    form_cluster(&mut sim, n, &Config::local()).expect("converges");
    sim.crash(3);
    sim.leave(5);
    sim.run_for(Duration::from_secs(30));
    let views = (0..n)
        .map(|i| format!("{:?}", sim.node(i).members()))
        .collect();
    (sim.trace_hash(), views)
}

#[test]
fn same_seed_gives_identical_runs() {
    let (h1, v1) = traced_run(11);
    let (h2, v2) = traced_run(11);
    assert_eq!(h1, h2, "trace hashes differ");
    assert_eq!(v1, v2);
    let (h3, _) = traced_run(12);
    assert_ne!(h1, h3, "a different seed gives a different run");
}
