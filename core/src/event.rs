//! Everything the core reports to the application, drained with [`crate::Node::poll_event`].

use std::net::SocketAddr;

use crate::identity::{Member, Name};

/// Something the application may want to know. Events are queued in order and bounded by
/// [`crate::Config::max_pending_events`] (oldest dropped first, counted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A member became known, or came back after failing or leaving.
    MemberJoined(Member),
    /// A live member changed its tags or address.
    MemberUpdated(Member),
    /// A member left gracefully.
    MemberLeft(Member),
    /// A member was declared failed.
    MemberFailed(Member),
    /// A member is suspected of failure (observability; it may still refute).
    MemberSuspected {
        /// The suspected member.
        member: Member,
        /// Who first suspected it, as far as this node knows.
        by: Name,
    },
    /// A suspected member refuted the suspicion and is alive again.
    MemberRecovered(Member),
    /// A [`crate::Node::join`] finished: every seed answered, failed, or the time ran out.
    JoinCompleted {
        /// How many seeds answered the join push-pull.
        answered: usize,
        /// How many seeds were contacted.
        contacted: usize,
    },
    /// Another node claims the name of a live member from a different address; the claim was
    /// refused (when `name` is this node's own name, this node also re-asserted itself).
    NameConflict {
        /// The contested name.
        name: Name,
        /// The address this node keeps for the name.
        existing: SocketAddr,
        /// The address of the refused claim.
        claimed: SocketAddr,
    },
    /// The leave announcement went out (or `tcp_timeout` passed): the node is now inert and
    /// the driver may stop it.
    LeaveCompleted,
}
