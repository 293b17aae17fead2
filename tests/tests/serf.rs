//! The Serf layer through the simulator: user events, queries, coalescing, reaping, reconnect
//! after a partition, force-remove, direct messages and their limits, leave and rejoin.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rookery_core::{
    ApiError, Config, Event, MemberEventKind, MemberStatus, QueryParams, Tags, Timestamp,
};
use rookery_sim::scenario::form_cluster;
use rookery_sim::{NetConfig, Sim};

fn name(i: usize) -> String {
    format!("node-{i}")
}

fn cluster(seed: u64, n: usize, config: &Config) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    form_cluster(&mut sim, n, config).expect("cluster converges");
    sim.drain_events().for_each(drop);
    sim
}

#[test]
fn a_user_event_reaches_each_of_100_nodes_exactly_once_under_loss() {
    let n = 100;
    let mut sim = cluster(21, n, &Config::lan());
    sim.set_net(NetConfig {
        loss: 0.10,
        ..NetConfig::default()
    });
    sim.with_node(17, |node, now| {
        node.user_event(now, "deploy", &b"v42"[..], false)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(20));
    let mut got = vec![0usize; n];
    for (_, i, e) in sim.drain_events() {
        if let Event::User(u) = e {
            assert_eq!(&*u.name, "deploy");
            assert_eq!(&u.payload[..], b"v42");
            got[i] += 1;
        }
    }
    assert!(got.iter().all(|&c| c == 1), "deliveries per node: {got:?}");
}

#[test]
fn a_late_joiner_replays_recent_events_unless_it_ignores_old_ones() {
    let n = 10;
    let mut sim = cluster(22, n, &Config::local());
    sim.with_node(0, |node, now| {
        node.user_event(now, "old-news", &b"1"[..], false)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(5));
    let replays = sim.add_node(Config::local(), "late-replay");
    let ignores = sim.add_node(Config::local(), "late-ignore");
    let seed = sim.addr(0);
    sim.with_node(replays, |node, now| node.join(now, &[seed]))
        .unwrap();
    sim.with_node(ignores, |node, now| node.join_with(now, &[seed], true))
        .unwrap();
    sim.run_for(Duration::from_secs(30));
    let mut seen = vec![0usize; sim.len()];
    for (_, i, e) in sim.drain_events() {
        if matches!(&e, Event::User(u) if &*u.name == "old-news") {
            seen[i] += 1;
        }
    }
    assert_eq!(seen[replays], 1, "the late joiner got it once");
    assert_eq!(seen[ignores], 0, "ignore_old skips it");
    assert!(
        seen[..n].iter().all(|&c| c == 1),
        "everyone else exactly once: {seen:?}"
    );
}

/// Answer every query event at once with the responder's name.
fn answer_queries(sim: &mut Sim) -> Vec<(Timestamp, usize, Event)> {
    let mut rest = Vec::new();
    let evs: Vec<_> = sim.drain_events().collect();
    for (t, i, e) in evs {
        if let Event::Query(q) = &e {
            let handle = q.handle.clone();
            sim.with_node(i, |node, now| {
                node.respond(now, &handle, name(i).into_bytes())
            })
            .unwrap();
        }
        rest.push((t, i, e));
    }
    rest
}

#[test]
fn a_filtered_query_gets_answers_from_exactly_the_selected_nodes_and_ends_early() {
    let n = 20;
    let mut sim = cluster(23, n, &Config::lan());
    for i in 0..n {
        let mut tags = Tags::new();
        tags.insert(
            "role".into(),
            if i % 3 == 0 {
                "db-primary".into()
            } else {
                "web".into()
            },
        );
        sim.with_node(i, |node, now| node.set_tags(now, tags))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(5));
    sim.drain_events().for_each(drop);
    // Selected: role starts with "db" and the name is one of a list.
    let names: Vec<String> = [0, 3, 4, 6, 9, 10].iter().map(|&i| name(i)).collect();
    let params = QueryParams {
        filter_nodes: names,
        filter_tags: vec![("role".into(), "^db".into())],
        request_ack: true,
        timeout: Some(Duration::from_secs(30)),
        ..QueryParams::default()
    };
    let asker = 5;
    let t0 = sim.now();
    let id = sim
        .with_node(asker, |node, now| node.query(now, "who", &b""[..], params))
        .unwrap();
    let mut responders = BTreeSet::new();
    let mut ackers = BTreeSet::new();
    let mut done = None;
    while done.is_none() && sim.now() < t0 + Duration::from_secs(40) {
        sim.run_for(Duration::from_millis(10));
        for (t, i, e) in answer_queries(&mut sim) {
            match e {
                Event::QueryResponse {
                    query,
                    from,
                    payload,
                } if i == asker && query == id => {
                    assert_eq!(payload, from.as_bytes().to_vec());
                    assert!(responders.insert(from.to_string()), "one response per node");
                }
                Event::QueryAck { query, from } if i == asker && query == id => {
                    ackers.insert(from.to_string());
                }
                Event::QueryDone {
                    query,
                    responses,
                    acks,
                } if i == asker && query == id => {
                    done = Some((t, responses, acks));
                }
                _ => {}
            }
        }
    }
    let selected: BTreeSet<String> = [0, 3, 6, 9].iter().map(|&i| name(i)).collect();
    assert_eq!(responders, selected);
    assert_eq!(ackers, selected);
    let (t, responses, acks) = done.expect("query finished");
    assert_eq!((responses, acks), (4, 4));
    assert!(
        t.saturating_since(t0) < Duration::from_secs(5),
        "ended early, not at the 30 s timeout"
    );
}

#[test]
fn five_joins_within_a_coalesce_window_arrive_as_one_batch() {
    let config = Config {
        coalesce_period: Duration::from_secs(3),
        quiescent_period: Duration::from_secs(1),
        ..Config::local()
    };
    let mut sim = Sim::new(24, NetConfig::default());
    let first = sim.add_node(config.clone(), "first");
    sim.run_for(Duration::from_secs(1));
    for i in 0..5 {
        let id = sim.add_node(config.clone(), &name(i));
        sim.join(id, &[first]);
        sim.run_for(Duration::from_millis(200));
    }
    sim.run_for(Duration::from_secs(5));
    let batches: Vec<(MemberEventKind, Vec<String>)> = sim
        .drain_events()
        .filter(|(_, i, _)| *i == first)
        .filter_map(|(_, _, e)| match e {
            Event::MemberBatch { kind, members } => {
                Some((kind, members.iter().map(|m| m.name.to_string()).collect()))
            }
            Event::MemberJoined(m) => panic!("uncoalesced join of {}", m.name),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (0..5).map(name).collect();
    assert_eq!(batches, vec![(MemberEventKind::Joined, want)]);
}

#[test]
fn failed_and_left_members_are_reaped_after_a_simulated_day() {
    let mut sim = cluster(25, 8, &Config::local());
    sim.crash(6);
    sim.leave(7);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(
        sim.node(0).member(&name(6)).unwrap().status,
        MemberStatus::Failed
    );
    assert_eq!(
        sim.node(0).member(&name(7)).unwrap().status,
        MemberStatus::Left
    );
    sim.drain_events().for_each(drop);
    sim.run_for(Duration::from_secs(24 * 3600 + 60));
    let mut reaped: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (_, i, e) in sim.drain_events() {
        if let Event::MemberReaped(m) = e {
            reaped.entry(i).or_default().insert(m.name.to_string());
        }
    }
    for i in 0..6 {
        assert!(
            sim.node(i).member(&name(6)).is_none(),
            "node {i} forgot the failed member"
        );
        assert!(
            sim.node(i).member(&name(7)).is_none(),
            "node {i} forgot the left member"
        );
        assert_eq!(reaped[&i], [name(6), name(7)].into_iter().collect());
        assert_eq!(sim.node(i).num_members(), 6);
    }
}

#[test]
fn a_healed_partition_merges_back_through_reconnect() {
    let config = Config {
        reconnect_interval: Duration::from_secs(5),
        ..Config::local()
    };
    let n = 8;
    let mut sim = cluster(26, n, &config);
    let cut = 3;
    sim.isolate(cut, true);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(
        sim.node(0).member(&name(cut)).unwrap().status,
        MemberStatus::Failed
    );
    assert_eq!(
        sim.node(cut).alive_count(),
        1,
        "the cut-off node sees everyone failed"
    );
    sim.isolate(cut, false);
    let healed = sim.run_until_pred(sim.now() + Duration::from_secs(120), |sim, _| {
        (0..n).all(|i| sim.node(i).alive_count() == n)
    });
    assert!(
        healed,
        "views after healing: {:?}",
        (0..n)
            .map(|i| sim.node(i).alive_count())
            .collect::<Vec<_>>()
    );
    let reconnects: u64 = (0..n).map(|i| sim.node(i).stats().reconnects).sum();
    assert!(reconnects > 0);
}

#[test]
fn force_remove_turns_a_failed_member_left_everywhere_and_prune_erases_it() {
    let mut sim = cluster(27, 8, &Config::local());
    sim.crash(6);
    sim.crash(7);
    sim.run_for(Duration::from_secs(60));
    assert_eq!(
        sim.with_node(0, |node, now| node.remove_failed(now, "node-1", false)),
        Err(ApiError::NotFailed("node-1".into()))
    );
    sim.with_node(0, |node, now| node.remove_failed(now, "node-6", false))
        .unwrap();
    sim.with_node(1, |node, now| node.remove_failed(now, "node-7", true))
        .unwrap();
    sim.run_for(Duration::from_secs(10));
    for i in 0..6 {
        assert_eq!(
            sim.node(i).member("node-6").unwrap().status,
            MemberStatus::Left,
            "node {i}"
        );
        assert!(
            sim.node(i).member("node-7").is_none(),
            "node {i} pruned node-7"
        );
    }
}

#[test]
fn send_and_broadcast_arrive_and_failures_are_reported() {
    let n = 6;
    let mut sim = cluster(28, n, &Config::local());
    sim.with_node(0, |node, now| node.send(now, "node-4", &b"hello"[..]))
        .unwrap();
    let sent = sim
        .with_node(2, |node, now| node.broadcast(now, &b"to all"[..]))
        .unwrap();
    assert_eq!(sent.len(), n - 1);
    sim.run_for(Duration::from_secs(1));
    let mut got: Vec<(usize, String, Vec<u8>)> = sim
        .drain_events()
        .filter_map(|(_, i, e)| match e {
            Event::Message { from, payload } => Some((i, from.to_string(), payload.to_vec())),
            _ => None,
        })
        .collect();
    got.sort();
    let mut want = vec![(4, name(0), b"hello".to_vec())];
    want.extend(
        (0..n)
            .filter(|&i| i != 2)
            .map(|i| (i, name(2), b"to all".to_vec())),
    );
    want.sort();
    assert_eq!(got, want);
    // A member that crashed: the send goes out, the channel fails, the failure is reported.
    sim.crash(5);
    let lost = sim
        .with_node(0, |node, now| node.send(now, "node-5", &b"anyone?"[..]))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    let failed: Vec<Event> = sim
        .drain_events()
        .filter(|(_, i, e)| *i == 0 && matches!(e, Event::SendFailed { .. }))
        .map(|(_, _, e)| e)
        .collect();
    assert_eq!(
        failed,
        vec![Event::SendFailed {
            to: "node-5".into(),
            message: lost,
            reason: rookery_core::SendFailure::Unreachable
        }]
    );
    // Limits are typed errors.
    let cfg = Config::local();
    let big = vec![0u8; cfg.max_message_size + 1];
    assert!(matches!(
        sim.with_node(0, |n, now| n.send(now, "node-1", big.clone())),
        Err(ApiError::TooLarge {
            what: "message",
            ..
        })
    ));
    assert!(matches!(
        sim.with_node(0, |n, now| n.broadcast(now, big)),
        Err(ApiError::TooLarge {
            what: "message",
            ..
        })
    ));
    assert_eq!(
        sim.with_node(0, |n, now| n.send(now, "nobody", &b""[..])),
        Err(ApiError::UnknownMember("nobody".into()))
    );
    let ev = vec![0u8; cfg.user_event_size_limit];
    assert!(matches!(
        sim.with_node(0, |n, now| n.user_event(now, "e", ev, false)),
        Err(ApiError::TooLarge {
            what: "user event",
            ..
        })
    ));
    let q = vec![0u8; cfg.query_size_limit];
    assert!(matches!(
        sim.with_node(0, |n, now| n.query(now, "q", q, QueryParams::default())),
        Err(ApiError::TooLarge { what: "query", .. })
    ));
}

#[test]
fn a_graceful_leave_passes_through_leaving_and_a_rejoin_wins_over_it() {
    let mut sim = cluster(30, 6, &Config::local());
    sim.leave(5);
    // Right after the intent went out, others see the node leaving, then left.
    let mut saw_leaving = false;
    let deadline = sim.now() + Duration::from_secs(20);
    sim.run_until_pred(deadline, |sim, _| {
        saw_leaving |= sim
            .node(0)
            .member("node-5")
            .is_some_and(|m| m.status == MemberStatus::Leaving);
        sim.node(0)
            .member("node-5")
            .is_some_and(|m| m.status == MemberStatus::Left)
    });
    assert!(saw_leaving, "leaving was visible before left");
    sim.run_for(Duration::from_secs(5));
    // The same name comes back from a new process (a fresh node, fresh clocks).
    let back = sim.add_node(Config::local(), "node-5");
    sim.join(back, &[0]);
    sim.run_for(Duration::from_secs(10));
    for i in 0..5 {
        let m = sim.node(i).member("node-5").unwrap();
        assert_eq!(m.status, MemberStatus::Alive, "node {i}");
        assert_eq!(m.addr, sim.addr(back));
    }
    assert_eq!(sim.node(back).alive_count(), 6);
}

#[test]
fn a_duplicate_name_is_voted_out_and_the_original_keeps_it() {
    let n = 6;
    let mut sim = cluster(31, n, &Config::local());
    let original = sim.addr(2);
    let dup = sim.add_node(Config::local(), "node-2");
    sim.join(dup, &[0]);
    sim.run_for(Duration::from_secs(30));
    let conflicts = sim
        .drain_events()
        .filter(|(_, _, e)| matches!(e, Event::NameConflict { .. }))
        .count();
    assert!(conflicts > 0, "the conflict was reported");
    assert!(
        sim.node(dup).has_left(),
        "the newcomer lost the vote and stopped"
    );
    assert!(!sim.node(2).has_left());
    for i in 0..n {
        let m = sim.node(i).member("node-2").unwrap();
        assert_eq!(
            (m.addr, m.status),
            (original, MemberStatus::Alive),
            "node {i}"
        );
        assert_eq!(sim.node(i).alive_count(), n, "node {i}");
    }
}

/// Serf's force-leave works from any node, also one that does not know the failed member (it
/// forgot it, or reaped it already): the leave intent is announced anyway, and the members
/// that still hold the member as failed turn it left.
#[test]
fn force_remove_from_a_node_that_does_not_know_the_member() {
    let mut sim = cluster(29, 6, &Config::local());
    sim.crash(5);
    sim.run_for(Duration::from_secs(60));
    for i in 0..5 {
        assert_eq!(
            sim.node(i).member("node-5").map(|m| m.status),
            Some(MemberStatus::Failed),
            "node {i}"
        );
    }
    // Node 0 no longer knows node-5 at all.
    sim.with_node(0, |node, now| node.forget_member(now, "node-5"))
        .unwrap();
    assert!(sim.node(0).member("node-5").is_none());
    sim.with_node(0, |node, now| node.remove_failed(now, "node-5", false))
        .unwrap();
    sim.run_for(Duration::from_secs(10));
    for i in 1..5 {
        assert_eq!(
            sim.node(i).member("node-5").map(|m| m.status),
            Some(MemberStatus::Left),
            "node {i}"
        );
    }
}
