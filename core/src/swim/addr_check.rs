//! Address checks: does a member's known address answer as that member? Two kinds, both
//! only ever to an address the member table already holds, never to one a message named:
//!
//! - **Claim** ([`CheckKind::Claim`]): a live member's name is claimed from another address (a
//!   process restarted elsewhere, or an impostor). A ping to the known address, resent every
//!   `probe_interval` up to [`TRIES`] times. One ack means the member still lives there (the
//!   claim is a conflict); silence means its old life is gone (the claim is a move). At most
//!   [`MAX_CHECKS`] run at once.
//! - **Revival** ([`CheckKind::Revival`], [`crate::Config::revival_check`]): a member this
//!   node holds failed announces itself alive again at the same address (it refuted the
//!   verdict, or restarted). It is taken back once it answers [`REVIVAL_ANSWERS`] of up to
//!   [`REVIVAL_TRIES`] pings, the next ping sent as soon as one is answered or after
//!   `probe_timeout`: a restarted or recovered member answers within two round trips; one
//!   that loses most of its packets — the member the failure detector rightly removed —
//!   almost never does (at 80 % loss each way a check passes with probability 0.9 %), so its
//!   refutations no longer bring it back only to fail it again. At most
//!   [`MAX_REVIVAL_CHECKS`] run at once. Their pings are [`crate::wire::Message::CheckPing`],
//!   sent and acked with nothing piggybacked (every member checks a returning member at once
//!   after a heal or a mass restart; piggybacked updates would spend their retransmissions on
//!   it).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::identity::Name;

/// Pings sent to the known address before it counts as silent.
pub(crate) const TRIES: u8 = 3;

/// Checks running at once; a claim beyond them is refused as a conflict without a check.
pub(crate) const MAX_CHECKS: usize = 16;

/// Pings a revival check sends at most.
pub(crate) const REVIVAL_TRIES: u8 = 4;

/// Answers a revival check needs.
pub(crate) const REVIVAL_ANSWERS: u8 = 2;

/// Revival checks running at once; an alive message beyond them is dropped (the member stays
/// failed here until its next one).
pub(crate) const MAX_REVIVAL_CHECKS: usize = 256;

/// Why a member's known address is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckKind {
    /// Its name is claimed from another address while it is live here.
    Claim,
    /// It is failed here and announced itself alive again at this address.
    Revival,
}

/// One check in flight.
#[derive(Clone, Debug)]
pub(super) struct Check {
    pub name: Name,
    pub addr: SocketAddr,
    pub kind: CheckKind,
    /// Pings sent so far.
    pub tries: u8,
    /// Acks received so far.
    pub answers: u8,
}

/// The checks in flight, by the sequence number of their pings.
#[derive(Debug, Default)]
pub(super) struct AddrChecks(BTreeMap<u32, Check>);

impl AddrChecks {
    /// Checks of `kind` in flight.
    pub(super) fn len(&self, kind: CheckKind) -> usize {
        self.0.values().filter(|c| c.kind == kind).count()
    }

    /// Whether `name` is being checked already (for `kind`).
    pub(super) fn checking(&self, name: &str, kind: CheckKind) -> bool {
        self.0.values().any(|c| c.kind == kind && &*c.name == name)
    }

    pub(super) fn start(&mut self, seq: u32, name: Name, addr: SocketAddr, kind: CheckKind) {
        self.0.insert(
            seq,
            Check {
                name,
                addr,
                kind,
                tries: 1,
                answers: 0,
            },
        );
    }

    /// Put `check` back under a new sequence number (its next ping's).
    pub(super) fn insert(&mut self, seq: u32, check: Check) {
        self.0.insert(seq, check);
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
