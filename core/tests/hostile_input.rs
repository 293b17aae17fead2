//! Bytes from the network are hostile: random bytes, truncated and mutated valid packets must
//! never panic the node, and input that is rejected must leave its state exactly as it was.

use std::net::SocketAddr;

use proptest::prelude::*;
use rookery_core::{wire, Config, Identity, Member, Node, Timestamp, TransmitKind};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A node "a" that knows "b" and "c", plus valid datagrams and stream frames sent by "b".
fn setup() -> (Node, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let t0 = Timestamp::ZERO;
    let mut a = Node::new(Config::local(), Identity::new("a", addr(1)), 1, t0).unwrap();
    let mut b = Node::new(Config::local(), Identity::new("b", addr(2)), 2, t0).unwrap();
    let mut c = Node::new(Config::local(), Identity::new("c", addr(3)), 3, t0).unwrap();
    b.join(t0, &[addr(1)]).unwrap();
    c.join(t0, &[addr(1)]).unwrap();
    let mut datagrams = Vec::new();
    let mut frames = Vec::new();
    // Deliver everything among the three for a few simulated seconds, keeping b's output.
    for step in 0..300u64 {
        let now = Timestamp::from_millis(step * 10);
        for n in [&mut a, &mut b, &mut c] {
            n.handle_timeout(now);
        }
        let mut moved = true;
        while moved {
            moved = false;
            let outs: Vec<(SocketAddr, rookery_core::Transmit)> = [&mut a, &mut b, &mut c]
                .into_iter()
                .flat_map(|n| {
                    let from = n.local_member().addr;
                    std::iter::from_fn(move || n.poll_transmit().map(|t| (from, t)))
                        .collect::<Vec<_>>()
                })
                .collect();
            for (from, t) in outs {
                moved = true;
                if from == addr(2) {
                    match t.kind {
                        TransmitKind::Datagram => datagrams.push(t.payload.to_vec()),
                        TransmitKind::Reliable => {
                            frames.push(t.payload[wire::FRAME_HEADER_LEN..].to_vec())
                        }
                    }
                }
                let dst = match t.to.port() {
                    1 => &mut a,
                    2 => &mut b,
                    _ => &mut c,
                };
                let _ = match t.kind {
                    TransmitKind::Datagram => dst.handle_packet(now, from, &t.payload),
                    TransmitKind::Reliable => {
                        dst.handle_stream(now, from, &t.payload[wire::FRAME_HEADER_LEN..])
                    }
                };
            }
        }
        while a.poll_event().is_some() {}
    }
    assert_eq!(a.alive_count(), 3, "set-up cluster formed");
    assert!(!datagrams.is_empty() && !frames.is_empty());
    (a, datagrams, frames)
}

/// Everything observable about a node's protocol state.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    members: Vec<Member>,
    health: u32,
    queue: usize,
    deadline: Option<Timestamp>,
    alive: usize,
}

fn fingerprint(n: &Node) -> Fingerprint {
    Fingerprint {
        members: n.members(),
        health: n.health_score(),
        queue: n.broadcast_queue_len(),
        deadline: n.poll_timeout(),
        alive: n.alive_count(),
    }
}

fn now() -> Timestamp {
    Timestamp::from_secs(3)
}

/// Feed `bytes` as a datagram (or a stream message); if rejected, nothing may have changed.
fn feed(node: &mut Node, bytes: &[u8], stream: bool) -> bool {
    let before = fingerprint(node);
    let errors_before = node.stats().inputs_refused();
    let r = if stream {
        node.handle_stream(now(), addr(9), bytes)
    } else {
        node.handle_packet(now(), addr(9), bytes)
    };
    if r.is_err() {
        assert_eq!(
            fingerprint(node),
            before,
            "rejected input changed state: {r:?}"
        );
        assert!(
            node.poll_transmit().is_none(),
            "rejected input produced a transmit"
        );
        assert!(
            node.poll_event().is_none(),
            "rejected input produced an event"
        );
        assert_eq!(
            node.stats().inputs_refused(),
            errors_before + 1,
            "rejection counted"
        );
    }
    r.is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_are_rejected_without_change(bytes in proptest::collection::vec(any::<u8>(), 0..2048), stream in any::<bool>()) {
        let (mut node, _, _) = setup();
        feed(&mut node, &bytes, stream);
    }

    #[test]
    fn truncated_packets_are_rejected_without_change(pick in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), stream in any::<bool>()) {
        let (mut node, datagrams, frames) = setup();
        let pool = if stream { &frames } else { &datagrams };
        let valid = pick.get(pool);
        let len = cut.index(valid.len());
        prop_assert!(!feed(&mut node, &valid[..len], stream), "a strict prefix decoded");
    }

    #[test]
    fn mutated_packets_never_panic(pick in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), stream in any::<bool>()) {
        let (mut node, datagrams, frames) = setup();
        let pool = if stream { &frames } else { &datagrams };
        let mut bytes = pick.get(pool).clone();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        // Accepted mutations are valid messages; rejected ones must change nothing.
        feed(&mut node, &bytes, stream);
        // The node keeps working afterwards.
        node.handle_timeout(Timestamp::from_secs(60));
        prop_assert!(node.poll_timeout().is_some());
    }
}

#[test]
fn valid_packets_from_the_corpus_are_accepted() {
    let (mut node, datagrams, frames) = setup();
    for d in &datagrams {
        node.handle_packet(now(), addr(2), d).unwrap();
    }
    for f in &frames {
        node.handle_stream(now(), addr(2), f).unwrap();
    }
}

#[test]
fn oversized_and_mislabelled_input_is_rejected() {
    let (mut node, datagrams, _) = setup();
    let huge = vec![wire::VERSION; wire::MAX_DATAGRAM + 1];
    assert!(!feed(&mut node, &huge, false));
    // A labelled node refuses unlabelled traffic, counted apart from decode errors.
    let mut cfg = Config::local();
    cfg.label = Some("prod".into());
    let mut labelled = Node::new(cfg, Identity::new("x", addr(7)), 5, Timestamp::ZERO).unwrap();
    let before = fingerprint(&labelled);
    assert_eq!(
        labelled.handle_packet(now(), addr(2), &datagrams[0]),
        Err(rookery_core::InputError::LabelMismatch)
    );
    assert_eq!(labelled.stats().label_mismatches, 1);
    assert_eq!(fingerprint(&labelled), before);
}
