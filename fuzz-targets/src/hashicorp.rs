//! The `hashicorp` target: arbitrary bytes into the HashiCorp profile's decoders (memberlist
//! 0.2.2 datagrams and stream messages, Serf 0.9.4 messages, tags in meta).
//!
//! The first byte picks what the rest is (low three bits): 0 a datagram, 1 a stream message,
//! 2 a Serf message (a memberlist user message's bytes), 3 a member's meta holding tags, 4 a
//! sealed datagram, 5 a sealed stream message (memberlist's encryption, key bytes 1 to 32, the
//! key of the captured encrypted traffic), 6 a datagram and 7 a stream message handed to a
//! node speaking the profile; for 6 and 7, bit 0x40 gives that node the same key as its
//! keyring, and bit 0x80 with it seals the rest with the key first (so the node's decoding
//! behind memberlist's encryption is reached; everything the node sends must open).
//! Checked (by `rookery_core::fuzzing::check_hashicorp`): nothing panics; whatever decodes
//! re-encodes to bytes that decode to the same value, and the re-encoding is stable; the Serf
//! messages inside datagrams, user messages and push-pull state decode under the same rules;
//! a node refusing input changes nothing visible, and everything a node sends decodes.
//! The corpus is the captured traffic of real `serf` agents (`fuzz/corpus/hashicorp/`, made
//! from `core/src/wire/hashicorp/vectors/` by `tests/interop/vectors-to-corpus.py`).

use rookery_core::fuzzing;

/// Run the `hashicorp` target on one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    fuzzing::check_hashicorp(mode, rest);
}
