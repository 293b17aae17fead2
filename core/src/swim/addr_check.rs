//! Address checks: does a live member's known address still answer as that member? Asked when
//! its name is claimed from another address (a process restarted elsewhere, or an impostor):
//! a ping to the known address, resent every `probe_interval` up to [`TRIES`] times. An ack
//! means the member still lives there (the claim is a conflict); silence means its old life
//! is gone (the claim is a move). Checks only ever go to an address the member table already
//! holds, never to one a message named, and at most [`MAX_CHECKS`] run at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::identity::Name;

/// Pings sent to the known address before it counts as silent.
pub(crate) const TRIES: u8 = 3;

/// Checks running at once; a claim beyond them is refused as a conflict without a check.
pub(crate) const MAX_CHECKS: usize = 16;

/// One check in flight.
#[derive(Clone, Debug)]
pub(super) struct Check {
    pub name: Name,
    pub addr: SocketAddr,
    /// Pings sent so far.
    pub tries: u8,
}

/// The checks in flight, by the sequence number of their pings.
#[derive(Debug, Default)]
pub(super) struct AddrChecks(BTreeMap<u32, Check>);

impl AddrChecks {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `name` is being checked already.
    pub(super) fn checking(&self, name: &str) -> bool {
        self.0.values().any(|c| &*c.name == name)
    }

    pub(super) fn start(&mut self, seq: u32, name: Name, addr: SocketAddr) {
        self.0.insert(
            seq,
            Check {
                name,
                addr,
                tries: 1,
            },
        );
    }

    pub(super) fn get_mut(&mut self, seq: u32) -> Option<&mut Check> {
        self.0.get_mut(&seq)
    }

    /// The check under `seq`, closed; `None` if it is closed already.
    pub(super) fn take(&mut self, seq: u32) -> Option<Check> {
        self.0.remove(&seq)
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}
