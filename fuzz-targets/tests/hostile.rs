//! Hostile input: floods of new members, huge length prefixes, oversized messages, stale and
//! future incarnations, messages that claim to come from the node itself. The node stays within
//! its documented bounds (fuzz/README.md, "Bounds") and keeps detecting failures.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rookery_core::fuzzing::{self, StateEntry, WireMessage};
use rookery_core::wire::{DecodeError, FrameDecoder, VERSION};
use rookery_core::{
    Config, Event, Identity, InputError, MemberStatus, Node, Tags, Timestamp, TransmitKind,
};
use rookery_sim::{node_addr, NetConfig, Sim};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An address no simulated node has (traffic to it goes nowhere).
fn fake_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 9, (i >> 8) as u8, i as u8], 9000))
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// `n` alive messages about fake members, packed 20 to a datagram.
fn flood_datagrams(n: usize, tag: &str) -> Vec<Vec<u8>> {
    let msgs: Vec<WireMessage> = (0..n)
        .map(|i| WireMessage::alive(&format!("{tag}-{i}"), fake_addr(i), 0, Tags::new()))
        .collect();
    msgs.chunks(20)
        .map(|c| fuzzing::encode_datagram(None, c))
        .collect()
}

fn drain(n: &mut Node) -> (usize, usize) {
    let tx = std::iter::from_fn(|| n.poll_transmit()).count();
    // A `Lagged` report is not held in the queue: it stands for what was dropped.
    let ev = std::iter::from_fn(|| n.poll_event())
        .filter(|e| !matches!(e, rookery_core::Event::Lagged { .. }))
        .count();
    (tx, ev)
}

#[test]
fn member_flood_is_refused_beyond_max_members_and_counted() {
    let mut cfg = Config::local();
    cfg.max_members = 100;
    cfg.max_broadcast_queue = 64;
    cfg.max_pending_events = 50;
    cfg.max_pending_transmits = 10;
    let mut n = Node::new(cfg.clone(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    for d in flood_datagrams(5000, "flood") {
        n.handle_packet(t(1), addr(2), &d).unwrap();
    }
    assert_eq!(n.num_members(), 100, "table capped at max_members");
    assert_eq!(n.stats().members_refused, 5000 - 99);
    assert!(n.broadcast_queue_len() <= 64);
    assert!(n.stats().broadcast_drops > 0, "queue overflow counted");
    // Events and transmits are bounded even when the application never drains them.
    for s in 0..200 {
        n.handle_timeout(t(1 + s * 100));
    }
    // Membership events are never dropped, only coalesced per member: the event queue's bound
    // is max_pending_events plus one per member (see `EventQueue`).
    let (tx, ev) = drain(&mut n);
    assert!(
        tx <= 10 && ev <= 50 + 100,
        "{tx} transmits, {ev} events pending"
    );
    let s = n.stats();
    assert!(s.events_dropped + s.events_coalesced > 0 && s.transmits_dropped > 0);
}

#[test]
fn member_flood_with_default_bounds_stays_bounded() {
    let cfg = Config::local();
    let mut n = Node::new(cfg.clone(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    let start = Instant::now();
    // Each datagram from another host (spoofed sources): one host alone may introduce only
    // `admission::SENDER_BURST` members at once.
    for (i, d) in flood_datagrams(20_000, "flood").into_iter().enumerate() {
        let from = SocketAddr::from(([127, 5, (i >> 8) as u8, i as u8], 9000));
        n.handle_packet(t(1), from, &d).unwrap();
        drain(&mut n);
    }
    assert_eq!(n.num_members(), 20_001);
    assert!(n.broadcast_queue_len() <= cfg.max_broadcast_queue);
    // Probing thousands of unreachable members: one probe per interval, bounded relays.
    for s in 0..100 {
        n.handle_timeout(t(1 + s * 100));
        drain(&mut n);
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "flood handling is not quadratic"
    );
}

/// A five-node cluster whose node 0 is flooded with thousands of fake members (spoofed from a
/// real peer, so the flood spreads by gossip) still declares a really crashed node failed,
/// within one probe round over a full table plus the longest suspicion: fake members (at
/// unreachable addresses) are never picked as indirect-probe helpers while members that
/// answered recently are available, so they cannot withhold nacks and drive the health score
/// (which stretches the probe interval up to `awareness_max_multiplier` times) up.
#[test]
fn failures_are_still_detected_after_a_member_flood() {
    let mut cfg = Config::local();
    cfg.max_members = 256;
    let mut sim = Sim::new(7, NetConfig::default());
    let n = 5;
    for i in 0..n {
        sim.add_node(cfg.clone(), &format!("node-{i}"));
        if i > 0 {
            sim.join(i, &[0]);
        }
    }
    sim.run_for(Duration::from_secs(5));
    assert!((0..n).all(|i| sim.node(i).alive_count() == n));
    let from = node_addr(1);
    for d in flood_datagrams(5000, "flood") {
        sim.with_node(0, |node, now| node.handle_packet(now, from, &d))
            .unwrap();
    }
    assert_eq!(sim.node(0).num_members(), 256);
    sim.run_for(Duration::from_secs(5));
    for i in 0..n {
        assert!(
            sim.node(i).num_members() <= 256,
            "node {i} over max_members"
        );
        assert!(sim.node(i).broadcast_queue_len() <= cfg.max_broadcast_queue);
    }
    sim.drain_events().for_each(drop);
    sim.crash(4);
    let crashed = sim.now();
    let mut worst_health = 0;
    let detected = sim.run_until_pred(crashed + Duration::from_secs(2200), |sim, _| {
        sim.drain_events().for_each(drop);
        worst_health = (0..4)
            .map(|i| sim.node(i).health_score())
            .max()
            .unwrap_or(0)
            .max(worst_health);
        (0..4).all(|i| {
            sim.node(i)
                .member("node-4")
                .is_some_and(|m| m.status == MemberStatus::Failed)
        })
    });
    let took = sim.now().saturating_since(crashed);
    assert!(detected, "crash not detected after the flood ({took:?})");
    // Detection in an unflooded five-node local cluster takes seconds. Here a probe round
    // covers up to 256 members, fake ones included, so the bound is one round at the plain
    // probe interval, plus the longest suspicion at 256 members (3 · log10(256) · 6 = 43 s),
    // plus a few seconds of gossip. Before helpers were chosen among members that recently
    // acked, fake helpers withheld nacks, the health score climbed to its maximum and
    // detection took about 540 s (the bound then was 256 · 8 s + 43 s).
    let bound = cfg.probe_interval * 256 + Duration::from_secs(43 + 10);
    assert!(
        took < bound,
        "detection took {took:?}, bound {bound:?}, worst health score {worst_health}"
    );
    assert!(
        worst_health < cfg.awareness_max_multiplier - 1,
        "health score climbed to {worst_health}"
    );
    // The real members are still alive everywhere.
    for i in 0..4 {
        for j in 0..4 {
            let m = sim.node(i).member(&format!("node-{j}")).unwrap();
            assert_eq!(m.status, MemberStatus::Alive, "node {i} sees node {j}");
        }
    }
}

#[test]
fn huge_length_prefixes_are_refused_without_allocating() {
    // Stream framing: a 4 GiB length prefix is refused at once.
    let mut d = FrameDecoder::new(Config::local().max_stream_message);
    d.push(&[0xff, 0xff, 0xff, 0xff, VERSION, 0]);
    assert!(matches!(d.next_frame(), Err(DecodeError::TooLarge { .. })));
    // A frame body above max_stream_message is refused by the node, counted.
    let mut n = Node::new(Config::local(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    let big = vec![VERSION; Config::local().max_stream_message + 1];
    assert!(n.handle_stream(t(1), addr(2), &big).is_err());
    // A datagram whose count claims 2^28 messages, and a push-pull whose state list claims
    // 2^28 entries: both fail fast on the bytes actually present.
    let started = Instant::now();
    let r = n.handle_packet(t(1), addr(2), &[VERSION, 0, 0xff, 0xff, 0xff, 0x7f, 1, 2]);
    assert_eq!(r, Err(InputError::Decode(DecodeError::BadMessageCount)));
    let pp = WireMessage::push_pull(1, true, false, addr(2), "b", vec![]);
    let mut body = fuzzing::encode_frame_body(None, &pp);
    body.pop(); // the empty list's length
    body.extend([0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(
        n.handle_stream(t(1), addr(2), &body),
        Err(InputError::Decode(DecodeError::Truncated))
    );
    // Tag maps and names claiming huge lengths.
    let mut alive =
        fuzzing::encode_datagram(None, &[WireMessage::alive("b", addr(2), 1, Tags::new())]);
    alive.truncate(alive.len() - 2); // the join intent time, then the empty tag map
    alive.extend([0xff, 0xff, 0xff, 0x0f]);
    assert!(n.handle_packet(t(1), addr(2), &alive).is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(n.stats().decode_errors, 4);
    assert_eq!(n.num_members(), 1, "nothing was applied");
}

#[test]
fn oversized_messages_are_refused() {
    let cfg = Config::local();
    let mut n = Node::new(cfg.clone(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    let long_name = "x".repeat(cfg.max_name_len + 1);
    let mut fat_tags = Tags::new();
    fat_tags.insert("k".into(), "v".repeat(cfg.meta_max_size));
    let refused = [
        fuzzing::encode_datagram(
            None,
            &[WireMessage::alive(&long_name, addr(2), 0, Tags::new())],
        ),
        fuzzing::encode_datagram(
            None,
            &[WireMessage::alive("b", addr(2), 0, fat_tags.clone())],
        ),
        fuzzing::encode_datagram(None, &[WireMessage::suspect("", 0, "b")]),
        // A push-pull is refused in a datagram, whatever it holds.
        fuzzing::encode_datagram(
            None,
            &[WireMessage::push_pull(1, true, false, addr(2), "b", vec![])],
        ),
        vec![VERSION; 70_000],
    ];
    for d in &refused {
        assert!(n.handle_packet(t(1), addr(2), d).is_err());
    }
    // A push-pull with more states than max_members, over the stream.
    let mut small = cfg.clone();
    small.max_members = 10;
    let mut m = Node::new(small, Identity::new("a", addr(1)), 1, t(0)).unwrap();
    let states = (0..11)
        .map(|i| StateEntry {
            name: format!("s{i}").into(),
            addr: fake_addr(i),
            incarnation: 0,
            status: MemberStatus::Alive,
            tags: Tags::new(),
        })
        .collect();
    let pp = WireMessage::push_pull(1, true, false, addr(2), "b", states);
    assert!(m
        .handle_stream(t(1), addr(2), &fuzzing::encode_frame_body(None, &pp))
        .is_err());
    assert_eq!((n.num_members(), m.num_members()), (1, 1));
}

/// Node "a" that knows "b" (incarnation 5).
fn node_knowing_b() -> Node {
    let mut n = Node::new(Config::local(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    let d = fuzzing::encode_datagram(None, &[WireMessage::alive("b", addr(2), 5, Tags::new())]);
    n.handle_packet(t(1), addr(2), &d).unwrap();
    drain(&mut n);
    n
}

#[test]
fn stale_incarnations_are_ignored() {
    let mut n = node_knowing_b();
    let before = n.members();
    let stale = [
        WireMessage::alive("b", addr(2), 4, Tags::new()),
        WireMessage::suspect("b", 4, "c"),
        WireMessage::dead("b", 3, "c"),
        WireMessage::dead("b", 4, "b"),
    ];
    for m in &stale {
        n.handle_packet(
            t(2),
            addr(3),
            &fuzzing::encode_datagram(None, std::slice::from_ref(m)),
        )
        .unwrap();
    }
    assert_eq!(n.members(), before);
    assert_eq!(drain(&mut n).1, 0, "no event");
}

#[test]
fn future_incarnations_compare_as_serial_numbers() {
    let mut n = node_knowing_b();
    // A peer's incarnation may move far ahead by alive messages (a member refuting from far
    // behind must be heard), and round the top of the range, where 0 follows u32::MAX.
    let q = 1u32 << 30;
    for inc in [5 + q, 5 + 2 * q, 5 + 3 * q, u32::MAX, 2] {
        let d =
            fuzzing::encode_datagram(None, &[WireMessage::alive("b", addr(2), inc, Tags::new())]);
        n.handle_packet(t(2), addr(2), &d).unwrap();
        assert_eq!(n.member("b").unwrap().incarnation, inc);
    }
    // More than half the range ahead is behind: ignored.
    let d = fuzzing::encode_datagram(
        None,
        &[WireMessage::alive("b", addr(2), 2 + 3 * q, Tags::new())],
    );
    n.handle_packet(t(2), addr(2), &d).unwrap();
    assert_eq!(n.member("b").unwrap().incarnation, 2);
    // Accusations of this node walking it round the whole range: it refutes every one (the
    // next incarnation after u32::MAX is 0, newer than u32::MAX for everyone).
    for inc in [q, 2 * q, 3 * q, u32::MAX] {
        for m in [
            WireMessage::suspect("a", inc, "b"),
            WireMessage::dead("a", inc, "b"),
        ] {
            n.handle_packet(t(3), addr(2), &fuzzing::encode_datagram(None, &[m]))
                .unwrap();
            assert_eq!(n.local_member().incarnation, inc.wrapping_add(1));
            assert_eq!(n.local_member().status, MemberStatus::Alive);
        }
    }
    n.set_tags(t(4), Tags::new()).unwrap();
    assert_eq!(n.local_member().incarnation, 1);
}

#[test]
fn messages_claiming_to_be_from_the_node_itself() {
    let mut n = node_knowing_b();
    let me = addr(1);
    // A forged leave and a forged failure of this node, sent "from" its own address: refuted.
    for m in [
        WireMessage::dead("a", 0, "a"),
        WireMessage::dead("a", 1, "b"),
    ] {
        n.handle_packet(t(2), me, &fuzzing::encode_datagram(None, &[m]))
            .unwrap();
        assert_eq!(n.local_member().status, MemberStatus::Alive);
    }
    assert!(n.local_member().incarnation >= 2);
    // Its own name claimed from another address: refused, reported, re-asserted.
    drain(&mut n);
    let d = fuzzing::encode_datagram(None, &[WireMessage::alive("a", addr(9), 50, Tags::new())]);
    n.handle_packet(t(3), addr(9), &d).unwrap();
    assert_eq!(n.local_member().addr, me);
    assert!(n.local_member().incarnation > 50);
    let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::NameConflict { claimed, .. } if *claimed == addr(9))));
    // A push-pull whose sender and states claim to be this node, listing it as dead.
    let ahead = n.local_member().incarnation + 1000;
    let states = vec![StateEntry {
        name: "a".into(),
        addr: me,
        incarnation: ahead,
        status: MemberStatus::Failed,
        tags: Tags::new(),
    }];
    let pp = WireMessage::push_pull(9, true, false, me, "a", states);
    n.handle_stream(t(4), me, &fuzzing::encode_frame_body(None, &pp))
        .unwrap();
    assert_eq!(n.local_member().status, MemberStatus::Alive);
    assert!(n.local_member().incarnation > ahead);
    // A ping from itself to itself is just answered.
    drain(&mut n);
    let d = fuzzing::encode_datagram(None, &[WireMessage::ping(7, "a")]);
    n.handle_packet(t(5), me, &d).unwrap();
    let acks: Vec<_> = std::iter::from_fn(|| n.poll_transmit()).collect();
    assert_eq!(acks.len(), 1);
    assert_eq!((acks[0].to, acks[0].kind), (me, TransmitKind::Datagram));
    assert_eq!(n.num_members(), 2);
}

/// Forged accusations of a live member, in a running cluster: it refutes, and nobody keeps it
/// failed.
#[test]
fn forged_accusations_are_refuted_in_the_cluster() {
    let mut sim = Sim::new(3, NetConfig::default());
    let n = 4;
    for i in 0..n {
        sim.add_node(Config::local(), &format!("node-{i}"));
        if i > 0 {
            sim.join(i, &[0]);
        }
    }
    sim.run_for(Duration::from_secs(5));
    let forged = fuzzing::encode_datagram(
        None,
        &[
            WireMessage::dead("node-3", 0, "node-1"),
            WireMessage::suspect("node-2", 0, "node-1"),
        ],
    );
    for i in 0..2 {
        let from = node_addr(1);
        sim.with_node(i, |node, now| node.handle_packet(now, from, &forged))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(30));
    for i in 0..n {
        assert_eq!(
            sim.node(i).alive_count(),
            n,
            "node {i}: {:?}",
            sim.node(i).members()
        );
    }
    assert!(
        sim.node(3).local_member().incarnation >= 1,
        "node-3 refuted"
    );
}

/// A node's own push-pull stays within `max_stream_message` even when its whole table would
/// not (here 20 members with 400-byte tags: 8 KiB against a 1 KiB limit): the state is trimmed,
/// this node and live members first.
#[test]
fn own_push_pull_fits_max_stream_message() {
    let mut cfg = Config::local();
    cfg.max_stream_message = 1024;
    cfg.max_message_size = 0;
    let mut n = Node::new(cfg.clone(), Identity::new("a", addr(1)), 1, t(0)).unwrap();
    for i in 0..20 {
        let mut tags = Tags::new();
        tags.insert("k".into(), "v".repeat(400));
        let alive = WireMessage::alive(&format!("m{i}"), fake_addr(i), 0, tags);
        n.handle_packet(t(0), addr(3), &fuzzing::encode_datagram(None, &[alive]))
            .unwrap();
    }
    drain(&mut n);
    n.join(t(0), &[addr(9)]).unwrap();
    while let Some(tx) = n.poll_transmit() {
        assert!(
            tx.payload.len() - 4 <= cfg.max_stream_message,
            "{:?} of {} bytes",
            tx.kind,
            tx.payload.len()
        );
    }
    assert_eq!(n.stats().push_pulls_trimmed, 1);
}
