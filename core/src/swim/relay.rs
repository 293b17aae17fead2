//! The relay side of indirect probing: pings this node sends on another member's behalf,
//! bounded by `max_indirect_relays`; an ack is forwarded to the origin, silence ends in a nack.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// An indirect ping this node runs for another member.
#[derive(Clone, Debug)]
pub(super) struct Relay {
    pub origin: SocketAddr,
    pub origin_seq: u32,
}

/// The relays in flight, by the sequence number of our own ping.
#[derive(Debug, Default)]
pub(super) struct Relays(BTreeMap<u32, Relay>);

impl Relays {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn start(&mut self, seq: u32, origin: SocketAddr, origin_seq: u32) {
        self.0.insert(seq, Relay { origin, origin_seq });
    }

    /// The relay under `seq`, closed; `None` if it is closed already.
    pub(super) fn take(&mut self, seq: u32) -> Option<Relay> {
        self.0.remove(&seq)
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}
