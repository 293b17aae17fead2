//! Regression tests for bugs the fuzz targets found (fuzz/README.md lists them). Each crash
//! input is also kept under fuzz/regressions/ and replayed by the fuzz-targets tests.

use std::net::SocketAddr;
use std::time::Duration;

use rookery_core::{wire, Config, Identity, Node, Timestamp, TransmitKind};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Hand every transmit of `src` to `dst`; true if there was any.
fn deliver(src: &mut Node, dst: &mut Node, now: Timestamp) -> bool {
    let from = src.local_member().addr;
    let mut moved = false;
    while let Some(t) = src.poll_transmit() {
        moved = true;
        let _ = match t.kind {
            TransmitKind::Datagram => dst.handle_packet(now, from, &t.payload),
            TransmitKind::Reliable => {
                dst.handle_stream(now, from, &t.payload[wire::FRAME_HEADER_LEN..])
            }
        };
    }
    moved
}

/// Node::new staggered its first timers with a raw `u64` addition: a driver whose clock origin
/// put `now` near `u64::MAX` overflowed (a panic in debug builds, a wrap to the past in release).
/// Timestamp arithmetic saturates; so do the stagger and the post-join push-pull re-arm now.
/// Saturation then exposed a hang: at `Timestamp::MAX` every periodic timer re-armed at `MAX`,
/// was due again at once, and `handle_timeout` never returned. It now fires only the timers
/// that were due when it was called.
#[test]
fn clock_near_the_end_of_time_does_not_overflow() {
    let end = Timestamp::MAX - Duration::from_millis(1);
    let mut a = Node::new(Config::local(), Identity::new("a", addr(1)), 1, end).unwrap();
    let mut b = Node::new(Config::local(), Identity::new("b", addr(2)), 2, end).unwrap();
    assert!(a.poll_timeout().unwrap() >= end);
    // A join that is answered re-arms push-pull at a random point of its period.
    b.join(end, &[addr(1)]).unwrap();
    while deliver(&mut a, &mut b, end) | deliver(&mut b, &mut a, end) {}
    assert_eq!(b.alive_count(), 2);
    for n in [&mut a, &mut b] {
        n.handle_timeout(Timestamp::MAX);
        assert!(n.poll_timeout().is_some());
    }
}

/// A datagram holding one `Suspect { incarnation, name, from }`, encoded by hand (postcard:
/// variant 6, varint incarnation, length-prefixed strings).
fn suspect_datagram(incarnation: u32, name: &str, from: &str) -> Vec<u8> {
    let mut d = vec![wire::VERSION, 0, 1, 6];
    let mut n = incarnation;
    while n >= 0x80 {
        d.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    d.push(n as u8);
    for s in [name, from] {
        d.push(s.len() as u8);
        d.extend(s.as_bytes());
    }
    d
}

/// `refute` once computed `max(own, accused).wrapping_add(1)` while incarnations compared as
/// plain integers: an accusation at `u32::MAX` wrapped this node's incarnation to 0, older than
/// anything the cluster held. Saturating instead left an accusation at `u32::MAX` that could
/// never be outbid (one forged datagram evicted a live member for good). Incarnations now
/// compare as serial numbers (`rookery_core::plausible`): the range has no top, and a node
/// walked all the way round by accusations (each within half the range) still refutes every
/// one of them. (Found by the hostile-input tests of fuzz-targets.)
#[test]
fn own_incarnation_refutes_across_the_top_of_the_range() {
    let now = Timestamp::ZERO;
    let mut a = Node::new(Config::local(), Identity::new("a", addr(1)), 1, now).unwrap();
    let q = 1u32 << 30;
    for inc in [q, 2 * q, 3 * q, u32::MAX] {
        a.handle_packet(now, addr(2), &suspect_datagram(inc, "a", "b"))
            .unwrap();
        assert_eq!(a.local_member().incarnation, inc.wrapping_add(1));
    }
    assert_eq!(a.local_member().incarnation, 0, "past the top comes 0");
    // An accusation at the top is now behind this node: nothing to refute.
    let refuted = a.stats().refutations;
    a.handle_packet(now, addr(2), &suspect_datagram(u32::MAX, "a", "b"))
        .unwrap();
    assert_eq!(a.stats().refutations, refuted);
    a.set_tags(now, Default::default()).unwrap();
    assert_eq!(a.local_member().incarnation, 1);
}

/// Joining announces the join intent with a new incarnation: at `u32::MAX` the next one is 0,
/// which every member takes as newer (`node` target, input
/// `regressions/node/join-wraps-own-incarnation`, found when incarnations compared as plain
/// integers and 0 was older than anything).
#[test]
fn joining_at_the_top_of_the_range_announces_a_newer_incarnation() {
    let now = Timestamp::ZERO;
    let mut a = Node::new(Config::local(), Identity::new("a", addr(1)), 1, now).unwrap();
    let q = 1u32 << 30;
    for inc in [q, 2 * q, 3 * q, u32::MAX - 1] {
        a.handle_packet(now, addr(2), &suspect_datagram(inc, "a", "b"))
            .unwrap();
    }
    assert_eq!(a.local_member().incarnation, u32::MAX);
    a.join(now, &[addr(2)]).unwrap();
    assert_eq!(a.local_member().incarnation, 0);
}
