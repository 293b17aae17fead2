//! Encryption in the simulator: a running plaintext cluster moves to encryption and back node by
//! node without a false failure; cluster-wide key rotation.

use std::time::Duration;

use rookery_core::{Config, Event, Keyring, Stats};
use rookery_sim::{Sim, SimBuilder};

const KEY: [u8; 32] = [0x5a; 32];

fn cluster(seed: u64, n: usize, config: Config) -> Sim {
    let mut sim = SimBuilder::new(seed).nodes(n, config).build().unwrap();
    sim.form(Duration::from_secs(60)).unwrap();
    sim.drain_events().for_each(drop);
    sim
}

/// Failures and suspicions reported anywhere since the last drain.
fn false_verdicts(sim: &mut Sim) -> usize {
    sim.drain_events()
        .filter(|(_, _, e)| matches!(e, Event::MemberFailed(_)))
        .count()
}

/// Sum of every node's refusal counters.
fn refusals(sim: &Sim) -> u64 {
    (0..sim.len())
        .map(|i| {
            let s: &Stats = sim.node(i).stats();
            s.sealed_no_key + s.plaintext_refused + s.sealed_unexpected + s.sealed_truncated
        })
        .sum()
}

/// Apply `f` to every node, one at a time, `gap` apart.
fn node_by_node(sim: &mut Sim, gap: Duration, f: impl Fn(&mut rookery_core::Node)) {
    for i in 0..sim.len() {
        sim.with_node(i, |n, _| f(n));
        sim.run_for(gap);
    }
}

/// One step of the rolling change, on every node one by one, then a settle period; no member
/// may be reported failed.
fn step(sim: &mut Sim, what: &str, f: impl Fn(&mut rookery_core::Node)) {
    node_by_node(sim, Duration::from_millis(300), f);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(false_verdicts(sim), 0, "a false failure during: {what}");
    assert!(sim.converged(), "not converged after: {what}");
}

#[test]
fn a_plaintext_cluster_moves_to_encryption_and_back_node_by_node() {
    let mut sim = cluster(11, 24, Config::local());
    let ring = Keyring::new(&KEY).unwrap();
    step(&mut sim, "keyring, both flags off", |n| {
        n.set_keyring(Some(ring.clone())).unwrap();
        n.set_gossip_verify(false, false).unwrap();
    });
    step(&mut sim, "outgoing on", |n| {
        n.set_gossip_verify(false, true).unwrap()
    });
    step(&mut sim, "incoming on", |n| {
        n.set_gossip_verify(true, true).unwrap()
    });
    assert_eq!(refusals(&sim), 0, "no node refused a member's message");
    // Fully encrypted now: everything a node sends is sealed, and a plaintext message from
    // anyone is refused.
    let before = sim.node(0).stats().plaintext_refused;
    sim.with_node(1, |n, _| n.set_gossip_verify(true, false).unwrap());
    sim.run_for(Duration::from_secs(2));
    assert!(
        sim.node(0).stats().plaintext_refused > before,
        "plaintext reaches a node that requires encryption and is refused"
    );
    sim.with_node(1, |n, _| n.set_gossip_verify(true, true).unwrap());
    sim.run_for(Duration::from_secs(5));
    false_verdicts(&mut sim);
    let base = refusals(&sim);
    // And back.
    step(&mut sim, "incoming off", |n| {
        n.set_gossip_verify(false, true).unwrap()
    });
    step(&mut sim, "outgoing off", |n| {
        n.set_gossip_verify(false, false).unwrap()
    });
    step(&mut sim, "keyring removed", |n| {
        n.set_keyring(None).unwrap()
    });
    assert_eq!(refusals(&sim), base, "no refusals on the way back");
    sim.check().unwrap();
}

#[test]
fn turning_incoming_on_too_early_is_caught() {
    // The same change in the wrong order (incoming before every node seals): members refuse
    // each other's plaintext. This is what the rolling order avoids.
    let mut sim = cluster(12, 8, Config::local());
    let ring = Keyring::new(&KEY).unwrap();
    node_by_node(&mut sim, Duration::from_millis(100), |n| {
        n.set_keyring(Some(ring.clone())).unwrap();
        n.set_gossip_verify(true, false).unwrap();
    });
    sim.run_for(Duration::from_secs(3));
    assert!(refusals(&sim) > 0);
}

const K2: [u8; 16] = [0x77; 16];

/// Run `op` on node 0 and the simulation until its [`Event::KeyOp`] arrives; the result, and
/// failures reported meanwhile.
fn key_op(
    sim: &mut Sim,
    op: impl FnOnce(&mut rookery_core::Node, rookery_core::Timestamp) -> rookery_core::KeyOpId,
) -> (rookery_core::KeyOpResult, usize) {
    let id = sim.with_node(0, op);
    let mut failed = 0;
    for _ in 0..60 {
        sim.run_for(Duration::from_millis(500));
        let mut result = None;
        for (_, i, e) in sim.drain_events() {
            match e {
                Event::MemberFailed(_) => failed += 1,
                Event::KeyOp(r) if i == 0 && r.id == id => result = Some(r),
                _ => {}
            }
        }
        if let Some(r) = result {
            return (r, failed);
        }
    }
    panic!("key operation {id:?} never finished");
}

/// Repeat `op` until every member answered without error (answers lost to the network are
/// asked again, as an operator re-runs a Serf key command).
fn until_complete(
    sim: &mut Sim,
    what: &str,
    op: impl Fn(&mut rookery_core::Node, rookery_core::Timestamp) -> rookery_core::KeyOpId,
) -> rookery_core::KeyOpResult {
    for attempt in 0..5 {
        let (r, failed) = key_op(sim, &op);
        assert_eq!(failed, 0, "a false failure during {what}");
        if r.complete() {
            eprintln!(
                "{what}: {}/{} answered (attempt {attempt})",
                r.answered, r.members
            );
            return r;
        }
        eprintln!(
            "{what}: {}/{} answered, failed {:?}",
            r.answered, r.members, r.failed
        );
    }
    panic!("{what} never reached every member");
}

#[test]
fn rotation_on_100_nodes_under_5_percent_loss() {
    let n = 100;
    let mut config = Config::local();
    config.keyring = Some(Keyring::new(&KEY).unwrap());
    let mut sim = cluster(21, n, config);
    sim.set_loss(0.05);
    until_complete(&mut sim, "install", |node, now| {
        node.install_key(now, &K2).unwrap()
    });
    let l = until_complete(&mut sim, "list after install", |node, now| {
        node.list_keys(now).unwrap()
    });
    assert_eq!(
        l.keys.get(&K2[..]),
        Some(&n),
        "every member holds the new key"
    );
    until_complete(&mut sim, "use", |node, now| node.use_key(now, &K2).unwrap());
    let l = until_complete(&mut sim, "list after use", |node, now| {
        node.list_keys(now).unwrap()
    });
    assert_eq!(
        l.primary_keys.get(&K2[..]),
        Some(&n),
        "every member seals with it"
    );
    // Removing the primary is refused, locally and by each member.
    let refused = sim.with_node(0, |node, now| node.remove_key(now, &K2));
    assert_eq!(
        refused,
        Err(rookery_core::ApiError::Keyring(
            rookery_core::KeyringError::RemovePrimary
        ))
    );
    until_complete(&mut sim, "remove", |node, now| {
        node.remove_key(now, &KEY).unwrap()
    });
    let l = until_complete(&mut sim, "list after remove", |node, now| {
        node.list_keys(now).unwrap()
    });
    assert_eq!(
        l.keys.len(),
        1,
        "only the new key is left: {:?}",
        l.keys.values()
    );
    for i in 0..n {
        assert_eq!(
            sim.node(i).keyring().unwrap().keys().collect::<Vec<_>>(),
            vec![&K2[..]]
        );
    }
    // No member is left unable to read the others: they all converge and nothing is refused.
    sim.set_loss(0.0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(false_verdicts(&mut sim), 0);
    assert!(sim.converged());
    let before = refusals(&sim);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(refusals(&sim), before, "members still refuse each other");
    sim.check().unwrap();
}

/// Replays of captured sealed traffic: they open (they are authentic: a member said them), and
/// change nothing. Every user event, query, intent and membership update they carry is a copy
/// of something already applied — deduplicated by Lamport time and id, or older than or equal
/// to what each member holds — so no event is delivered twice, no query surfaces twice, and no
/// member's state moves.
#[test]
fn replayed_sealed_traffic_changes_nothing() {
    let mut config = Config::local();
    config.keyring = Some(Keyring::new(&KEY).unwrap());
    let n = 6;
    let mut sim = cluster(21, n, config);
    sim.set_record_events(true);
    sim.set_answer_queries(true);
    sim.set_tap(true);
    sim.with_node(0, |node, now| {
        node.user_event(now, "deploy", &b"v1"[..], false).unwrap();
        node.query(now, "who", &b""[..], Default::default())
            .unwrap();
    });
    sim.with_node(2, |node, now| node.leave(now).unwrap());
    sim.run_for(Duration::from_secs(15));
    let captured: Vec<(usize, rookery_core::Input)> = sim
        .drain_tap()
        .into_iter()
        .filter(|e| {
            matches!(
                e.input,
                rookery_core::Input::Datagram { .. } | rookery_core::Input::Stream { .. }
            )
        })
        .map(|e| (e.node, e.input))
        .collect();
    sim.set_tap(false);
    assert!(captured.len() > 100, "{} inputs captured", captured.len());
    let count = |sim: &Sim, f: &dyn Fn(&Event) -> bool| {
        sim.events().iter().filter(|(_, _, e)| f(e)).count()
    };
    let users = |e: &Event| matches!(e, Event::User(_));
    let queries = |e: &Event| matches!(e, Event::Query(_));
    let changes = |e: &Event| {
        matches!(
            e,
            Event::MemberJoined(_)
                | Event::MemberLeft(_)
                | Event::MemberFailed(_)
                | Event::MemberSuspected { .. }
                | Event::MemberUpdated(_)
        )
    };
    let (u0, q0, c0) = (
        count(&sim, &users),
        count(&sim, &queries),
        count(&sim, &changes),
    );
    assert_eq!(u0, n, "the event reached every member once");
    assert!(q0 >= n - 1, "the query reached the members ({q0})");
    let sealed = captured
        .iter()
        .filter(|(_, i)| matches!(i, rookery_core::Input::Datagram { payload, .. } if payload[0] == 0x81))
        .count();
    let datagrams = captured
        .iter()
        .filter(|(_, i)| matches!(i, rookery_core::Input::Datagram { .. }))
        .count();
    assert_eq!(sealed, datagrams, "every captured datagram is sealed");
    let views: Vec<_> = (0..n)
        .filter(|&i| i != 2)
        .map(|i| sim.node(i).members())
        .collect();
    // Replay everything, to every node still in the cluster, twice.
    for _ in 0..2 {
        for (_, input) in &captured {
            for i in (0..n).filter(|&i| i != 2) {
                let input = input.clone();
                let _ = sim.with_node(i, |node, now| node.handle(now, input));
            }
        }
    }
    sim.run_for(Duration::from_secs(5));
    assert_eq!(count(&sim, &users), u0, "no user event delivered twice");
    assert_eq!(count(&sim, &queries), q0, "no query surfaced twice");
    assert_eq!(count(&sim, &changes), c0, "no membership change");
    let after: Vec<_> = (0..n)
        .filter(|&i| i != 2)
        .map(|i| sim.node(i).members())
        .collect();
    let key = |v: &Vec<rookery_core::Member>| {
        let mut v: Vec<_> = v
            .iter()
            .map(|m| (m.name.to_string(), m.status, m.incarnation))
            .collect();
        v.sort();
        v
    };
    for (b, a) in views.iter().zip(&after) {
        assert_eq!(key(b), key(a));
    }
    assert_eq!(refusals(&sim), 0, "replays open: they are authentic");
}
