//! What a message from the network may claim: how incarnations compare, and how far an
//! incarnation or a Lamport time may run ahead of what this node has seen. Without these
//! bounds one forged message could end a member's life for good (an accusation at the top of
//! the incarnation range cannot be outbid) or wedge a Lamport clock at its top.
//!
//! **Incarnations are serial numbers** (RFC 1982 arithmetic on `u32`): `b` is newer than `a`
//! when `b - a`, wrapping, lies in `1..2^31`. The range has no top: after `u32::MAX` comes 0,
//! which is newer, so a member can always refute an accusation by taking the accused
//! incarnation plus one. (Two values exactly 2^31 apart count as older both ways; no honest
//! member moves that far between two messages someone hears.)
//!
//! **Accusations may not run far ahead.** A suspect, dead or left message about a member this
//! node knows may carry at most [`MAX_INCARNATION_STEP`] more than the incarnation this node
//! holds for it; further ahead it is refused and counted ([`crate::Stats::far_ahead_refused`]).
//! A member's incarnation moves by one per refutation, so an honest accuser is never that far
//! ahead of anyone. Alive messages are not bounded (a member refuting from far behind must be
//! heard everywhere); at worst a forged alive makes its subject refute once more.
//!
//! **Replies go to members.** Relays, indirect probes and query answers go only to an address
//! this node holds for a known member, and a stream ping or push-pull is answered only at a
//! known member's address or at the address the request came from (the reliable channel's
//! peer, which the transport verified); a query's relay factor is capped at
//! [`MAX_RELAY_FACTOR`]. Refusals are counted in [`crate::Stats::replies_refused`]. So nobody
//! can point the cluster at an address of their choosing.
//!
//! **Lamport times may not run far ahead.** A message whose member, event or query time lies
//! more than [`MAX_LAMPORT_STEP`] (2^32) above the receiving clock is refused whole and counted.
//! Clocks advance by one per intent, event or query, so no cluster comes near that step; with it
//! the top of the `u64` range is at least 2^32 forged messages away, and at the top a clock
//! saturates (it stays at `u64::MAX`; see the `serf` layer's clocks).

use crate::wire::{Message, PushPull, UserEventMsg};

/// How far ahead of the known incarnation an accusation about a known member may be.
pub const MAX_INCARNATION_STEP: u32 = 1 << 16;

/// How far ahead of the receiving clock a Lamport time from the network may be.
pub const MAX_LAMPORT_STEP: u64 = 1 << 32;

/// The most members this node learns of from one push-pull it did not ask for (a request from
/// another node, or an answer to no exchange of its own); the rest are refused and counted in
/// [`crate::Stats::members_refused`]. Answers to its own exchanges (join, periodic, repair)
/// are not capped: it chose whom to ask. Honest unsolicited state is a joiner's own few
/// members, or after a partition heals the members that joined the other side meanwhile (the
/// rest follow by gossip and later exchanges); forged state could otherwise fill the table in
/// one message.
pub const MAX_NEW_MEMBERS_UNASKED: usize = 128;

/// The most relays a query may ask each answering member for (larger factors are refused by
/// [`crate::Node::query`] and capped on receipt): with it one query cannot make the cluster
/// send more than a few datagrams per member anywhere.
pub const MAX_RELAY_FACTOR: u8 = 5;

const HALF: u32 = 1 << 31;

/// `b` is a newer incarnation than `a`.
pub fn newer(b: u32, a: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < HALF
}

/// `b` is an older incarnation than `a` (neither the same nor newer).
pub fn older(b: u32, a: u32) -> bool {
    b != a && !newer(b, a)
}

/// The newer of two incarnations.
pub(crate) fn latest(a: u32, b: u32) -> u32 {
    if newer(b, a) {
        b
    } else {
        a
    }
}

/// An accusation at `claimed` about a member known at `known` runs implausibly far ahead.
pub(crate) fn accusation_too_far(claimed: u32, known: u32) -> bool {
    newer(claimed, known) && claimed.wrapping_sub(known) > MAX_INCARNATION_STEP
}

/// The receiving clocks, (member, event, query), as [`crate::Node::clocks`] reports them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clocks {
    pub(crate) member: u64,
    pub(crate) event: u64,
    pub(crate) query: u64,
}

fn far(t: u64, clock: u64) -> bool {
    t > clock.saturating_add(MAX_LAMPORT_STEP)
}

impl Clocks {
    /// Whether any Lamport time `msg` carries lies implausibly far ahead of these clocks.
    pub(crate) fn too_far(&self, msg: &Message) -> bool {
        match msg {
            Message::Alive(a) => far(a.ltime, self.member),
            Message::LeaveIntent(i) => far(i.ltime, self.member),
            Message::UserEvent(e) => far(e.ltime, self.event),
            Message::Query(q) => far(q.ltime, self.query),
            Message::QueryResponse(r) | Message::RelayResponse { resp: r, .. } => {
                far(r.ltime, self.query)
            }
            Message::PushPull(p) => self.push_pull_too_far(p),
            Message::Ping { .. }
            | Message::CheckPing { .. }
            | Message::StreamPing { .. }
            | Message::Ack { .. }
            | Message::Nack { .. }
            | Message::IndirectPing { .. }
            | Message::Suspect(_)
            | Message::Dead(_)
            | Message::Direct { .. }
            | Message::DirectAcked { .. }
            | Message::DirectAck { .. } => false,
        }
    }

    fn push_pull_too_far(&self, p: &PushPull) -> bool {
        far(p.member_ltime, self.member)
            || far(p.event_ltime, self.event)
            || far(p.query_ltime, self.query)
            || p.states.iter().any(|s| far(s.ltime, self.member))
            || p.events
                .iter()
                .any(|e: &UserEventMsg| far(e.ltime, self.event))
    }

    /// Whether a member time (an alive message's, read off the fast path) is too far ahead.
    pub(crate) fn member_too_far(&self, ltime: u64) -> bool {
        far(ltime, self.member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_compare_as_serial_numbers() {
        assert!(newer(1, 0));
        assert!(!newer(0, 0));
        assert!(older(0, 1));
        assert!(newer(0, u32::MAX), "after the top comes 0, which is newer");
        assert!(older(u32::MAX, 0));
        assert!(newer(5, u32::MAX - 5));
        assert_eq!(latest(u32::MAX, 3), 3);
        assert_eq!(latest(7, 3), 7);
        // Exactly half the range apart: older both ways, never newer.
        assert!(!newer(HALF, 0) && !newer(0, HALF));
        assert!(older(HALF, 0) && older(0, HALF));
    }

    #[test]
    fn accusations_may_run_only_a_step_ahead() {
        assert!(!accusation_too_far(10, 10));
        assert!(!accusation_too_far(10 + MAX_INCARNATION_STEP, 10));
        assert!(accusation_too_far(11 + MAX_INCARNATION_STEP, 10));
        assert!(accusation_too_far(1 << 30, 0));
        assert!(older(u32::MAX, 0), "the top is far behind 0, not ahead");
        assert!(accusation_too_far(u32::MAX, HALF + 5));
        assert!(
            !accusation_too_far(3, 10),
            "an older accusation is not too far, it is old"
        );
        assert!(
            !accusation_too_far(2, u32::MAX - 2),
            "a step across the wrap is a step"
        );
    }

    #[test]
    fn lamport_times_may_run_only_a_step_ahead() {
        let c = Clocks {
            member: 10,
            event: 0,
            query: u64::MAX,
        };
        assert!(!c.member_too_far(10 + MAX_LAMPORT_STEP));
        assert!(c.member_too_far(11 + MAX_LAMPORT_STEP));
        assert!(!far(u64::MAX, c.query), "a saturated clock accepts the top");
        assert!(far(u64::MAX, c.event));
    }
}
