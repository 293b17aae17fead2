//! The keyring, the sealed envelope and the refusals, on single nodes.

use std::collections::HashSet;

use super::*;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, InputError};
use crate::identity::Identity;
use crate::node::{Node, TransmitKind};
use crate::testkit::*;
use crate::time::Timestamp;
use crate::wire::{self, FRAME_HEADER_LEN};

const K1: [u8; 32] = [1; 32];
const K2: [u8; 16] = [2; 16];
const K3: [u8; 24] = [3; 24];

fn cfg(keys: Option<&[&[u8]]>, label: Option<&str>) -> Config {
    let mut c = Config::local();
    c.keyring = keys.map(|k| Keyring::from_keys(k).unwrap());
    c.label = label.map(str::to_string);
    c
}

fn sealed_node(name: &str, port: u16, keys: &[&[u8]], entropy: u8) -> Node {
    Node::with_entropy(
        cfg(Some(keys), None),
        Identity::new(name, addr(port)),
        port as u64,
        [entropy; 32],
        Timestamp::ZERO,
    )
    .unwrap()
}

/// Every datagram `n` sent, as sent.
fn datagrams(n: &mut Node) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| n.poll_transmit())
        .filter(|t| t.kind == TransmitKind::Datagram)
        .map(|t| t.payload.to_vec())
        .collect()
}

#[test]
fn keyring_operations_and_their_errors() {
    assert_eq!(Keyring::new(&[0; 15]), Err(KeyringError::BadKeyLength(15)));
    assert_eq!(Keyring::from_keys::<&[u8]>(&[]), Err(KeyringError::Empty));
    assert_eq!(
        Keyring::from_keys(&[&K1[..], &K1[..]]),
        Err(KeyringError::Duplicate)
    );
    let mut r = Keyring::from_keys(&[&K1[..], &K2[..]]).unwrap();
    r.install(&K3).unwrap();
    r.install(&K3).unwrap(); // idempotent
    assert_eq!(r.len(), 3);
    assert_eq!(r.install(&[0; 33]), Err(KeyringError::BadKeyLength(33)));
    assert_eq!(r.use_key(&[9; 16]), Err(KeyringError::UnknownKey));
    assert_eq!(r.remove(&K1), Err(KeyringError::RemovePrimary));
    assert_eq!(r.remove(&[9; 16]), Err(KeyringError::UnknownKey));
    r.use_key(&K3).unwrap();
    assert_eq!(r.primary(), &K3[..]);
    r.remove(&K1).unwrap();
    assert_eq!(r.keys().collect::<Vec<_>>(), vec![&K3[..], &K2[..]]);
    assert!(!format!("{r:?}").contains('3'), "Debug shows no key: {r:?}");
}

#[test]
fn a_keyring_without_entropy_is_a_config_error() {
    let c = cfg(Some(&[&K1]), None);
    let err = Node::new(c, Identity::new("a", addr(1)), 1, Timestamp::ZERO).unwrap_err();
    assert_eq!(err, ConfigError::KeyringWithoutEntropy);
    let mut plain = node("a", 1);
    assert_eq!(
        plain.set_keyring(Some(Keyring::new(&K1).unwrap())),
        Err(ApiError::NoEntropy)
    );
    assert_eq!(
        plain.set_gossip_verify(false, false),
        Err(ApiError::NoEntropy)
    );
}

#[test]
fn sealed_datagrams_round_trip_and_carry_no_plaintext() {
    let mut a = sealed_node("alpha-node", 1, &[&K1], 7);
    let mut b = sealed_node("b", 2, &[&K1], 8);
    deliver_sealed(&mut a, &[alive("b", 2, 0)]);
    a.handle_timeout(at(2_000));
    let out = datagrams(&mut a);
    assert!(!out.is_empty());
    for d in &out {
        assert_eq!(d[0], SEALED_VERSION);
        assert!(d.len() <= Config::local().mtu);
        assert!(
            !d.windows(10).any(|w| w == b"alpha-node"),
            "the node's name shows through"
        );
        b.handle_packet(at(2_000), addr(1), d).unwrap();
    }
    assert!(b.member("alpha-node").is_some());
    assert_eq!(b.stats().decode_errors, 0);
}

#[test]
fn sealed_frames_round_trip() {
    let mut a = sealed_node("a", 1, &[&K1], 7);
    let mut b = sealed_node("b", 2, &[&K1], 8);
    a.join(at(0), &[addr(2)]).unwrap();
    let t = a.poll_transmit().unwrap();
    assert_eq!(t.kind, TransmitKind::Reliable);
    let len = u32::from_be_bytes(t.payload[..4].try_into().unwrap()) as usize;
    assert_eq!(len, t.payload.len() - FRAME_HEADER_LEN);
    assert_eq!(t.payload[FRAME_HEADER_LEN], SEALED_VERSION);
    b.handle_stream(at(0), addr(1), &t.payload[FRAME_HEADER_LEN..])
        .unwrap();
    assert!(b.member("a").is_some());
}

#[test]
fn a_secondary_key_opens_and_the_primary_seals() {
    let mut a = sealed_node("a", 1, &[&K2, &K1], 7);
    let mut b = sealed_node("b", 2, &[&K1, &K2], 8);
    let mut c = sealed_node("c", 3, &[&K3], 9);
    deliver_sealed(&mut a, &[alive("b", 2, 0)]);
    a.handle_timeout(at(2_000));
    let out = datagrams(&mut a);
    for d in &out {
        b.handle_packet(at(2_000), addr(1), d).unwrap();
        assert_eq!(
            c.handle_packet(at(2_000), addr(1), d),
            Err(InputError::NoKeyOpens)
        );
    }
    assert_eq!(c.stats().sealed_no_key, out.len() as u64);
    assert!(b.member("a").is_some());
    assert!(c.member("a").is_none());
}

#[test]
fn every_refusal_is_counted_by_cause() {
    let plain_dgram = datagram(&[alive("x", 9, 0)]);
    // Plaintext where encryption is required.
    let mut a = sealed_node("a", 1, &[&K1], 7);
    assert_eq!(
        a.handle_packet(at(0), addr(9), &plain_dgram),
        Err(InputError::PlaintextRefused)
    );
    assert_eq!(a.stats().plaintext_refused, 1);
    // Sealed where no keyring is configured.
    let mut src = sealed_node("s", 3, &[&K1], 1);
    deliver_sealed(&mut src, &[alive("b", 2, 0)]);
    src.handle_timeout(at(2_000));
    let sealed = datagrams(&mut src).remove(0);
    let mut plain = node("p", 4);
    assert_eq!(
        plain.handle_packet(at(0), addr(3), &sealed),
        Err(InputError::SealedWithoutKeyring)
    );
    assert_eq!(plain.stats().sealed_unexpected, 1);
    // Truncated: every prefix of a sealed datagram is refused, none panics.
    let mut b = sealed_node("b", 2, &[&K1], 8);
    for n in 1..sealed.len() {
        let r = b.handle_packet(at(0), addr(3), &sealed[..n]);
        assert!(
            matches!(r, Err(InputError::SealedTruncated | InputError::NoKeyOpens)),
            "{n}: {r:?}"
        );
    }
    // Up to the header, nonce and tag: truncated; past them, the tag does not verify.
    assert_eq!(b.stats().sealed_truncated, 1 + SEAL_OVERHEAD as u64);
    assert_eq!(
        b.stats().sealed_no_key,
        (sealed.len() - 2 - SEAL_OVERHEAD) as u64
    );
    // A flipped bit anywhere is refused.
    for i in 2..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x10;
        assert_eq!(
            b.handle_packet(at(0), addr(3), &bad),
            Err(InputError::NoKeyOpens)
        );
    }
    assert!(b.member("s").is_none());
    b.handle_packet(at(0), addr(3), &sealed).unwrap();
    assert!(b.member("s").is_some());
    assert_eq!(b.stats().decode_errors, 0);
}

#[test]
fn the_label_is_authenticated() {
    let make = |label: &str, port: u16| {
        Node::with_entropy(
            cfg(Some(&[&K1]), Some(label)),
            Identity::new(format!("n{port}"), addr(port)),
            port as u64,
            [port as u8; 32],
            Timestamp::ZERO,
        )
        .unwrap()
    };
    let mut a = make("blue", 1);
    let mut b = make("blue", 2);
    let mut c = make("red!", 3);
    deliver_with_label(&mut a);
    let out = datagrams(&mut a);
    for d in &out {
        b.handle_packet(at(2_000), addr(1), d).unwrap();
        assert_eq!(
            c.handle_packet(at(2_000), addr(1), d),
            Err(InputError::LabelMismatch)
        );
        // Rewriting the readable label (same length) to ours does not open it either: the
        // label is authenticated.
        let mut forged = d.clone();
        forged[2..6].copy_from_slice(b"red!");
        assert_eq!(
            c.handle_packet(at(2_000), addr(1), &forged),
            Err(InputError::NoKeyOpens)
        );
    }
    assert_eq!(c.stats().label_mismatches, out.len() as u64);
    assert_eq!(c.stats().sealed_no_key, out.len() as u64);
    assert!(c.member("n1").is_none());
}

/// Hand labelled node `a` a sealed announcement of a peer, then run its timers so it sends.
fn deliver_with_label(a: &mut Node) {
    let msg = datagram_sealed_like(a);
    a.handle_packet(at(0), addr(9), &msg).unwrap();
    a.handle_timeout(at(2_000));
}

/// A sealed datagram announcing "peer" to `a`, sealed by a node with `a`'s configuration.
fn datagram_sealed_like(a: &Node) -> Vec<u8> {
    let mut sec = Security::new(&[42; 32], &wire::header(a.cfg.label.as_deref()));
    sec.keyring = a.keyring().cloned();
    let plain = datagram_labelled(a.cfg.label.as_deref(), &[alive("peer", 9, 0)]);
    let hl = wire::header(a.cfg.label.as_deref()).len();
    sec.seal_datagram(&plain, hl).unwrap()
}

fn datagram_labelled(label: Option<&str>, msgs: &[wire::Message]) -> Vec<u8> {
    let body: Vec<u8> = msgs.iter().flat_map(wire::encode_message).collect();
    wire::assemble_datagram_body(&wire::header(label), msgs.len(), &body)
}

#[test]
fn sealed_datagrams_still_fit_the_mtu() {
    let mut a = sealed_node("a", 1, &[&K1], 7);
    // Many updates queued: the gossip fills datagrams up to the MTU.
    let msgs: Vec<_> = (0..200u16)
        .map(|i| alive(&format!("member-with-a-long-name-{i:04}"), 100 + i, 0))
        .collect();
    for chunk in msgs.chunks(20) {
        let mut sec = Security::new(&[5; 32], &wire::header(None));
        sec.keyring = Some(Keyring::new(&K1).unwrap());
        let d = sec.seal_datagram(&datagram(chunk), 2).unwrap();
        a.handle_packet(at(0), addr(100), &d).unwrap();
    }
    a.handle_timeout(at(1_000));
    let out = datagrams(&mut a);
    let mtu = Config::local().mtu;
    assert!(out.iter().all(|d| d.len() <= mtu));
    assert!(
        out.iter().any(|d| d.len() > mtu - 100),
        "datagrams are packed up to the MTU: {:?}",
        out.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[test]
fn nonces_never_repeat_even_with_the_same_seed() {
    let hdr = wire::header(None);
    let mut seen = HashSet::new();
    // Two nodes with the same seed and different entropy, and a restart of the first one
    // (same seed, fresh entropy): no nonce repeats.
    for entropy in [[1u8; 32], [2; 32], [3; 32]] {
        let mut sec = Security::new(&entropy, &hdr);
        sec.keyring = Some(Keyring::new(&K1).unwrap());
        for _ in 0..20_000 {
            let d = sec.seal_datagram(&[1, 1, 0, 0], 2).unwrap();
            assert!(seen.insert(d[2..2 + NONCE_LEN].to_vec()), "nonce repeated");
        }
    }
    // Through whole nodes built from the same seed.
    let mut nonces = HashSet::new();
    for entropy in [10u8, 11] {
        let mut a = Node::with_entropy(
            cfg(Some(&[&K1]), None),
            Identity::new("a", addr(1)),
            77,
            [entropy; 32],
            Timestamp::ZERO,
        )
        .unwrap();
        deliver_sealed(&mut a, &[alive("b", 2, 0)]);
        for s in 1..50 {
            a.handle_timeout(at(s * 1_000));
            for d in datagrams(&mut a) {
                assert!(nonces.insert(d[2..2 + NONCE_LEN].to_vec()));
            }
        }
    }
    assert!(nonces.len() >= 20, "{}", nonces.len());
}

#[test]
fn the_counter_rolls_over_to_a_fresh_prefix() {
    let mut n = NonceSourceProbe::new();
    let first = n.next();
    n.set_counter(u32::MAX);
    let last = n.next();
    let after = n.next();
    assert_eq!(first[..8], last[..8]);
    assert_eq!(last[8..], [0xff; 4]);
    assert_ne!(after[..8], last[..8]);
    assert_eq!(after[8..], [0; 4]);
}

/// Hand `n` a datagram sealed with its own keyring.
fn deliver_sealed(n: &mut Node, msgs: &[wire::Message]) {
    let mut sec = Security::new(&[99; 32], &wire::header(None));
    sec.keyring = n.keyring().cloned();
    let d = sec.seal_datagram(&datagram(msgs), 2).unwrap();
    n.handle_packet(at(0), addr(2), &d).unwrap();
}

use super::seal::NonceSourceProbe;

#[test]
fn rolling_flags_accept_both_forms() {
    let mut a = sealed_node("a", 1, &[&K1], 7);
    a.set_gossip_verify(false, false).unwrap();
    // Plaintext accepted, and what it sends is plaintext.
    deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
    a.handle_timeout(at(2_000));
    assert!(datagrams(&mut a).iter().all(|d| d[0] == wire::VERSION));
    // Sealed accepted too.
    deliver_sealed(&mut a, &[alive("c", 3, 0)]);
    assert!(a.member("c").is_some());
    a.set_gossip_verify(false, true).unwrap();
    a.handle_timeout(at(4_000));
    assert!(datagrams(&mut a).iter().all(|d| d[0] == SEALED_VERSION));
    // Keyring removed: plaintext again, and sealed input is unexpected.
    a.set_keyring(None).unwrap();
    assert_eq!(a.keyring(), None);
    a.handle_timeout(at(6_000));
    assert!(datagrams(&mut a).iter().all(|d| d[0] == wire::VERSION));
}

#[test]
fn refusals_are_logged_at_most_once_per_cause_per_second() {
    let mut log = RefusalLog::default();
    for ms in 0..3_000u64 {
        log.note(at(ms), Refusal::NoKey, addr(1));
    }
    assert_eq!(log.logged(Refusal::NoKey), 3);
    assert_eq!(log.logged(Refusal::Plaintext), 0);
}
