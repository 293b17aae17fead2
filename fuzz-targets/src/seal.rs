//! The `seal` target: the sealed envelope and the label path. Arbitrary bytes are (1) sealed
//! and opened again — the round trip gives them back, and under another label or with any
//! byte changed they never open — and (2) handed as a datagram and as a frame body to nodes
//! with a keyring (requiring sealed input, and in the middle of a rolling change) and to one
//! without: nothing panics, and every refusal is counted by its cause.

use rookery_core::fuzzing::{open_sealed, seal_datagram};
use rookery_core::{Config, Identity, Keyring, Node, Timestamp};

const LABELS: [Option<&str>; 3] = [None, Some("blue"), Some("red!")];

fn keyring(sel: u8) -> Keyring {
    let len = [16, 24, 32][(sel % 3) as usize];
    Keyring::new(&vec![sel; len]).expect("valid length")
}

fn node(ring: Option<Keyring>, label: Option<&str>, flags: (bool, bool)) -> Node {
    let mut c = Config::local();
    c.label = label.map(str::to_string);
    c.keyring = ring;
    c.gossip_verify_incoming = flags.0;
    c.gossip_verify_outgoing = flags.1;
    let addr = "127.0.0.1:7001".parse().expect("address");
    Node::with_entropy(
        c,
        Identity::new("target", addr),
        1,
        [3; 32],
        Timestamp::ZERO,
    )
    .expect("valid config")
}

fn refusals(n: &Node) -> u64 {
    let s = n.stats();
    s.decode_errors
        + s.label_mismatches
        + s.sealed_no_key
        + s.plaintext_refused
        + s.sealed_unexpected
        + s.sealed_truncated
}

/// Run the target on `data`.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let ring = keyring(sel);
    let label = LABELS[(sel as usize / 3) % 3];
    // (1) Round trip of a plaintext envelope built around the bytes.
    let mut plain = vec![rookery_core::wire::VERSION];
    let l = label.unwrap_or("").as_bytes();
    plain.push(l.len() as u8);
    plain.extend_from_slice(l);
    let header = plain.len();
    plain.extend_from_slice(rest);
    let sealed = seal_datagram(&ring, label, [sel; 32], &plain).expect("sealable");
    assert_eq!(sealed.len(), plain.len() + rookery_core::SEAL_OVERHEAD);
    let opened = open_sealed(&ring, label, &sealed).expect("opens");
    assert_eq!(opened, &plain[header..]);
    let other = LABELS[(sel as usize / 3 + 1) % 3];
    assert!(
        open_sealed(&ring, other, &sealed).is_none(),
        "opened under another label"
    );
    if !rest.is_empty() {
        let i = rest[0] as usize % sealed.len();
        let mut bad = sealed.clone();
        bad[i] ^= 1 | rest[rest.len() - 1];
        assert!(
            open_sealed(&ring, label, &bad).is_none(),
            "a changed byte opened"
        );
    }
    // (2) The raw bytes, and the sealed ones, into nodes.
    let from = "127.0.0.1:7002".parse().expect("address");
    for (r, flags) in [
        (Some(ring.clone()), (true, true)),
        (Some(ring.clone()), (false, false)),
        (None, (true, true)),
    ] {
        let mut n = node(r, label, flags);
        for input in [rest, &sealed[..]] {
            let before = refusals(&n);
            let a = n.handle_packet(Timestamp::ZERO, from, input);
            let b = n.handle_stream(Timestamp::ZERO, from, input);
            let refused = [a.is_err(), b.is_err()].iter().filter(|e| **e).count() as u64;
            assert_eq!(refusals(&n) - before, refused, "a refusal was not counted");
        }
    }
}
