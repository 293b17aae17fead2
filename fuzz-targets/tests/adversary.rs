//! An adversary in a running simulated cluster: one forged message, or a burst of them, from
//! an address outside the cluster (or using a member's name), against the bounds of
//! `rookery_core::plausible` and the Serf layer's per-slot limits. Each test names the attack
//! and what the cluster must still do. No keyring here: these bounds hold key or no key.

use std::net::SocketAddr;
use std::time::Duration;

use rookery_core::fuzzing::{self, StateEntry, WireMessage};
use rookery_core::{Config, Event, Input, MemberStatus, Tags};
use rookery_sim::{node_addr, NetConfig, Sim};

/// The adversary's address: no simulated node has it.
fn attacker() -> SocketAddr {
    SocketAddr::from(([127, 9, 9, 9], 7946))
}

/// An address the adversary wants traffic sent to (not a member).
fn target() -> SocketAddr {
    SocketAddr::from(([127, 8, 8, 8], 7946))
}

fn cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(seed, NetConfig::default());
    for i in 0..n {
        sim.add_node(Config::local(), &format!("node-{i}"));
        if i > 0 {
            sim.join(i, &[0]);
        }
    }
    sim.run_for(Duration::from_secs(5));
    assert!(sim.converged(), "cluster formed");
    sim
}

/// Hand every listed node the datagram, as if the adversary had sent it.
fn inject(sim: &mut Sim, nodes: impl IntoIterator<Item = usize>, msgs: &[WireMessage]) {
    let d = fuzzing::encode_datagram(None, msgs);
    for i in nodes {
        let from = attacker();
        sim.with_node(i, |node, now| node.handle_packet(now, from, &d))
            .expect("decodes");
    }
}

fn all_alive(sim: &Sim, n: usize) {
    for i in 0..n {
        let node = sim.node(i);
        assert_eq!(node.alive_count(), n, "node {i}: {:?}", node.members());
    }
}

fn failed_or_left_verdicts(sim: &Sim) -> usize {
    sim.events()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::MemberFailed(_) | Event::MemberLeft(_)))
        .count()
}

/// One datagram claiming a live member left, or failed, at an incarnation far ahead of what
/// anyone holds (once enough to evict it for good: incarnations saturated and its refutations
/// no longer counted). Refused everywhere as implausible; the member stays alive.
#[test]
fn an_accusation_far_ahead_evicts_nobody() {
    let n = 5;
    let mut sim = cluster(n, 11);
    sim.set_record_events(true);
    let far = 1 << 20;
    let forged = [
        WireMessage::dead("node-3", far, "node-3"),
        WireMessage::dead("node-3", far, "node-1"),
        WireMessage::suspect("node-3", far, "node-1"),
        WireMessage::dead("node-4", u32::MAX, "node-4"),
        WireMessage::suspect("node-4", u32::MAX - 1, "node-1"),
    ];
    inject(&mut sim, 0..n, &forged);
    sim.run_for(Duration::from_secs(30));
    all_alive(&sim, n);
    assert_eq!(failed_or_left_verdicts(&sim), 0);
    for i in [0, 1, 2] {
        assert!(
            sim.node(i).stats().far_ahead_refused >= 3,
            "node {i}: {:?}",
            sim.node(i).stats()
        );
    }
}

/// An accusation within the plausible step (a member can be that far ahead only after that
/// many refutations) is taken, and refuted: the member ends alive everywhere, at an
/// incarnation above the accusation.
#[test]
fn an_accusation_within_the_step_is_refuted_everywhere() {
    let n = 5;
    let mut sim = cluster(n, 12);
    sim.set_record_events(true);
    let inc = rookery_core::plausible::MAX_INCARNATION_STEP - 1;
    inject(
        &mut sim,
        0..n,
        &[WireMessage::suspect("node-2", inc, "node-1")],
    );
    sim.run_for(Duration::from_secs(30));
    all_alive(&sim, n);
    assert_eq!(failed_or_left_verdicts(&sim), 0);
    for i in 0..n {
        let m = sim.node(i).member("node-2").expect("known");
        assert!(m.incarnation > inc, "node {i} holds {}", m.incarnation);
    }
}

/// The name-conflict vote: the adversary claims a live member's name, then answers the vote
/// the member starts with invented voters (once enough to make the member stop). Only members
/// the voter-counter knows as alive count, once each: the member keeps its name and runs on.
#[test]
fn invented_voters_cannot_take_a_members_name() {
    let n = 5;
    let mut sim = cluster(n, 13);
    sim.set_tap(true);
    let victim = 2;
    inject(
        &mut sim,
        [victim],
        &[WireMessage::alive("node-2", attacker(), 1000, Tags::new())],
    );
    // Watch the vote go out, as a member the adversary controls would see it (the victim
    // asks once the others had time to check the claimed address: 12 probe intervals).
    let cfg = Config::local();
    sim.run_for(cfg.probe_interval * 12 + Duration::from_millis(500));
    let (ltime, id) = sim
        .drain_tap()
        .into_iter()
        .filter_map(|e| match e.input {
            Input::Datagram { payload, .. } => fuzzing::decode_datagram(&cfg, &payload).ok()?,
            _ => None,
        })
        .flatten()
        .find(|m| m.query_name() == Some("_rookery/conflict"))
        .map(|m| (m.info().ltime.unwrap(), m.info().id.unwrap()))
        .expect("the victim asked the cluster");
    sim.set_tap(false);
    let vote = bytes_of_addr(attacker());
    let forged: Vec<WireMessage> = (0..5)
        .map(|i| WireMessage::query_response(ltime, id, &format!("voter-{i}"), &vote))
        .chain((0..5).map(|_| WireMessage::query_response(ltime, id, "voter-0", &vote)))
        .collect();
    inject(&mut sim, [victim], &forged);
    sim.run_for(Duration::from_secs(20));
    let s = sim.node(victim).stats();
    assert_eq!(s.name_conflicts_lost, 0, "{s:?}");
    assert!(s.votes_refused >= 10, "{s:?}");
    assert!(!sim.node(victim).has_left());
    all_alive(&sim, n);
}

/// A vote answer's payload: the address the voter holds for the name (postcard, as the core
/// writes it).
fn bytes_of_addr(a: SocketAddr) -> Vec<u8> {
    // postcard: SocketAddr is an enum (V4 = 0), the four octets, then the port as a varint.
    let SocketAddr::V4(v4) = a else {
        unreachable!()
    };
    let mut out = vec![0];
    out.extend(v4.ip().octets());
    let mut port = v4.port() as u32;
    while port >= 0x80 {
        out.push((port as u8 & 0x7f) | 0x80);
        port >>= 7;
    }
    out.push(port as u8);
    out
}

/// Lamport times at the top of the range (once: the event clock saturated, and a later real
/// event with a repeated name was swallowed everywhere). Refused; clocks stay where they were;
/// a real event then reaches every member.
#[test]
fn lamport_times_far_ahead_are_refused_and_events_keep_flowing() {
    let n = 5;
    let mut sim = cluster(n, 14);
    sim.set_record_events(true);
    let top = u64::MAX;
    inject(
        &mut sim,
        0..n,
        &[
            WireMessage::user_event(top, "deploy", b"forged"),
            WireMessage::alive_at("node-3", node_addr(3), 0, top),
            WireMessage::leave_intent("node-4", top, false),
            WireMessage::query(top, 1, "node-1", node_addr(1), "q", 0, false),
        ],
    );
    for i in 0..n {
        let (m, e, q) = sim.node(i).clocks();
        assert!(
            m < 1 << 20 && e < 1 << 20 && q < 1 << 20,
            "node {i}: {m} {e} {q}"
        );
        assert!(sim.node(i).stats().far_ahead_refused >= 4);
    }
    sim.run_for(Duration::from_secs(2));
    sim.with_node(0, |node, now| {
        node.user_event(now, "deploy", &b"real"[..], false)
    })
    .unwrap();
    sim.run_for(Duration::from_secs(5));
    for i in 0..n {
        let got = sim.events().iter().any(|(_, at, e)| {
            *at == i
                && matches!(e, Event::User(u) if u.name == "deploy" && &u.payload[..] == b"real")
        });
        assert!(got, "node {i} got the real event");
    }
    all_alive(&sim, n);
    assert_eq!(failed_or_left_verdicts(&sim), 0);
}

/// Thousands of forged user events at one Lamport time (once piled into one unbounded slot;
/// every push-pull then exceeded what receivers accept, breaking joins cluster-wide). The slot
/// keeps a bounded number; the rest are refused and counted; a new member still joins.
#[test]
fn one_lamport_slot_holds_a_bounded_number_of_events() {
    let n = 4;
    let mut sim = cluster(n, 15);
    sim.set_record_events(true);
    let forged: Vec<WireMessage> = (0..3000u32)
        .map(|i| WireMessage::user_event(3, "spam", &i.to_le_bytes()))
        .collect();
    for chunk in forged.chunks(40) {
        inject(&mut sim, [0], chunk);
    }
    let delivered = sim
        .events()
        .iter()
        .filter(|(_, at, e)| *at == 0 && matches!(e, Event::User(_)))
        .count();
    assert!(delivered <= 32, "{delivered} delivered");
    assert!(sim.node(0).stats().slot_full_refused >= 3000 - 32);
    let joiner = sim.add_node(Config::local(), "late");
    sim.join(joiner, &[0]);
    sim.run_for(Duration::from_secs(10));
    all_alive(&sim, n + 1);
}

/// Requests that name an address of the adversary's choosing: a query asking every member to
/// answer (and relay, and ack) there, a relay request, an indirect probe of a member at a
/// wrong address, a stream ping and a push-pull whose reply address is elsewhere (once, one
/// query made a 3-node cluster send 18 datagrams to the chosen address). Nothing goes there.
#[test]
fn the_cluster_is_no_amplifier() {
    let n = 4;
    let mut sim = cluster(n, 16);
    sim.set_record_events(true);
    let aim = target();
    let to_aim = |sim: &mut Sim, i: usize, input: Input| -> usize {
        sim.with_node(i, |node, now| {
            let _ = node.handle(now, input);
            std::iter::from_fn(|| node.poll_transmit())
                .filter(|t| t.to == aim)
                .count()
        })
    };
    let datagram = |msgs: &[WireMessage]| Input::Datagram {
        from: attacker(),
        payload: fuzzing::encode_datagram(None, msgs).into(),
    };
    let stream = |msg: &WireMessage| Input::Stream {
        from: attacker(),
        body: fuzzing::encode_frame_body(None, msg).into(),
    };
    let mut sent = 0;
    for i in 0..n {
        sent += to_aim(
            &mut sim,
            i,
            datagram(&[WireMessage::query(5, 9, "ghost", aim, "q", 255, true)]),
        );
        sent += to_aim(
            &mut sim,
            i,
            datagram(&[WireMessage::relay_response(aim, 5, 9, "node-1")]),
        );
        let indirect = WireMessage::indirect_ping(2, "node-1", aim);
        sent += to_aim(&mut sim, i, datagram(&[indirect]));
        let stream_ping = WireMessage::stream_ping(3, &format!("node-{i}"), aim);
        sent += to_aim(&mut sim, i, stream(&stream_ping));
        let pp = WireMessage::push_pull(4, true, false, aim, "ghost", Vec::new());
        sent += to_aim(&mut sim, i, stream(&pp));
    }
    // The query still travels (every member passes a query on); nobody answers it there.
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sent, 0);
    let answered = sim
        .events()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Query(q) if q.from == "ghost"))
        .count();
    assert_eq!(
        answered, 0,
        "a query whose reply address is not its asker's is not surfaced"
    );
    for i in 0..n {
        assert!(sim.node(i).stats().replies_refused >= 4, "node {i}");
    }
    all_alive(&sim, n);
    // The relay factor a node may ask for is capped too.
    let r = sim.with_node(0, |node, now| {
        let params = rookery_core::QueryParams {
            relay_factor: 200,
            ..Default::default()
        };
        node.query(now, "q", bytes::Bytes::new(), params)
    });
    assert!(matches!(
        r,
        Err(rookery_core::ApiError::RelayFactorTooLarge(200))
    ));
}

/// One push-pull request from outside listing thousands of members (once, 65,536 fake members
/// filled a node's table, a real member never appeared there and a real crash went undetected
/// for 90 s). At most `MAX_NEW_MEMBERS_UNASKED` are taken; a real member still joins.
#[test]
fn one_push_pull_cannot_fill_the_member_table() {
    let n = 4;
    let mut sim = cluster(n, 17);
    let states: Vec<StateEntry> = (0..5000u32)
        .map(|i| StateEntry {
            name: format!("fake-{i}").as_str().into(),
            addr: SocketAddr::from(([127, 7, (i >> 8) as u8, i as u8], 7946)),
            incarnation: 0,
            status: MemberStatus::Alive,
            tags: Tags::new(),
        })
        .collect();
    let pp = WireMessage::push_pull(1, true, false, attacker(), "ghost", states);
    let body = fuzzing::encode_frame_body(None, &pp);
    sim.with_node(0, |node, now| node.handle_stream(now, attacker(), &body))
        .expect("decodes");
    let cap = rookery_core::plausible::MAX_NEW_MEMBERS_UNASKED;
    assert!(sim.node(0).num_members() <= n + cap);
    assert!(sim.node(0).stats().members_refused >= (5000 - cap) as u64);
    let joiner = sim.add_node(Config::local(), "late");
    sim.join(joiner, &[1]);
    sim.run_for(Duration::from_secs(10));
    for i in 0..=n {
        assert!(
            sim.node(i).member("late").is_some(),
            "node {i} knows the joiner"
        );
    }
}

/// A full member table whose extra members failed (forged, never answering): their tombstones
/// make room for a real member at once, instead of keeping the table closed for the tombstone
/// timeout.
#[test]
fn tombstones_make_room_for_real_members() {
    let n = 4;
    let mut cfg = Config::local();
    cfg.max_members = 12;
    let mut sim = Sim::new(18, NetConfig::default());
    for i in 0..n {
        sim.add_node(cfg.clone(), &format!("node-{i}"));
        if i > 0 {
            sim.join(i, &[0]);
        }
    }
    sim.run_for(Duration::from_secs(5));
    let fakes: Vec<WireMessage> = (0..8u8)
        .map(|i| {
            WireMessage::alive(
                &format!("fake-{i}"),
                SocketAddr::from(([127, 7, 0, i], 7946)),
                0,
                Tags::new(),
            )
        })
        .collect();
    inject(&mut sim, 0..n, &fakes);
    assert_eq!(sim.node(0).num_members(), 12, "table full");
    // The fakes never answer: they fail, and stay as tombstones.
    sim.run_for(Duration::from_secs(60));
    let failed = sim
        .node(0)
        .members()
        .iter()
        .filter(|m| m.status == MemberStatus::Failed)
        .count();
    assert_eq!(failed, 8);
    let joiner = sim.add_node(cfg.clone(), "late");
    sim.join(joiner, &[0]);
    sim.run_for(Duration::from_secs(10));
    for i in 0..=n {
        assert!(
            sim.node(i).member("late").is_some(),
            "node {i} knows the joiner"
        );
    }
    assert!(sim.node(0).stats().tombstones_evicted >= 1);
}

/// One jumbo datagram (up to 64 KiB) of alive messages about thousands of invented members, and
/// then a stream of full datagrams from one host: a datagram introduces at most
/// `mtu / ALIVE_MIN_BYTES` new members, a host at most `SENDER_BURST` at once and then
/// `SENDER_REFILL_PER_SEC` a second. (What invented members that did get in cost — a longer
/// probe round — is measured in `hostile.rs`, `failures_are_still_detected_after_a_member_flood`.)
#[test]
fn one_datagram_or_one_host_introduces_a_bounded_number_of_members() {
    use rookery_core::admission::{ALIVE_MIN_BYTES, SENDER_BURST, SENDER_REFILL_PER_SEC};
    let n = 4;
    let mut sim = cluster(n, 19);
    let cfg = Config::local();
    let fake = |i: u32| {
        WireMessage::alive(
            &format!("f{i}"),
            SocketAddr::from(([127, 6, (i >> 8) as u8, i as u8], 7946)),
            0,
            Tags::new(),
        )
    };
    let jumbo: Vec<WireMessage> = (0..3000).map(fake).collect();
    inject(&mut sim, [0], &jumbo);
    let per_datagram = cfg.mtu / ALIVE_MIN_BYTES;
    assert_eq!(sim.node(0).num_members(), n + per_datagram);
    // Many datagrams at once from the same host: the burst, then nothing more.
    for k in 0..40u32 {
        let msgs: Vec<WireMessage> = (0..60).map(|j| fake(10_000 + k * 60 + j)).collect();
        inject(&mut sim, [1], &msgs);
    }
    assert_eq!(sim.node(1).num_members(), n + SENDER_BURST as usize);
    // A second later, about a second's worth more.
    sim.run_for(Duration::from_secs(1));
    let before = sim.node(1).num_members();
    for k in 0..20u32 {
        let msgs: Vec<WireMessage> = (0..60).map(|j| fake(20_000 + k * 60 + j)).collect();
        inject(&mut sim, [1], &msgs);
    }
    let more = sim.node(1).num_members() - before;
    assert!(
        more.abs_diff(SENDER_REFILL_PER_SEC as usize) <= 8,
        "{more} more after a second"
    );
    assert!(sim.node(1).stats().members_refused > 0);
}
