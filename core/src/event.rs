//! Everything the core reports to the application, drained with [`crate::Node::poll_event`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::identity::{Member, Name};
use crate::time::Timestamp;

/// Something the application may want to know. Events are queued in order. The queue is
/// bounded: received direct messages by [`crate::Config::max_inbox`] (oldest dropped first),
/// everything by [`crate::Config::max_pending_events`] (direct messages dropped first, then the
/// oldest event); drops are counted and reported by [`Event::Lagged`].
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
        /// Who first suspected it, as far as this node knows (for a suspicion learnt by
        /// push-pull from a state naming no accuser, the member that passed it on).
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
    /// refused. When `name` is this node's own name the lower address keeps it: if that is
    /// this node it re-asserts itself; otherwise this node stops at once (a
    /// [`Event::LeaveCompleted`] follows and [`crate::Node::has_left`] turns true).
    NameConflict {
        /// The contested name.
        name: Name,
        /// The address this node keeps for the name.
        existing: SocketAddr,
        /// The address of the refused claim.
        claimed: SocketAddr,
    },
    /// The leave announcement went out (or `broadcast_timeout` passed): the node is now
    /// inert and the driver may stop it.
    LeaveCompleted,
    /// A failed member was kept `reconnect_timeout`, or a left one `tombstone_timeout`, and is
    /// now forgotten (or it was force-removed with prune).
    MemberReaped(Member),
    /// Member events coalesced over `coalesce_period`: the latest event per member, grouped by
    /// kind (only when coalescing is on).
    MemberBatch {
        /// What happened to every member of the batch.
        kind: MemberEventKind,
        /// The members, in name order.
        members: Vec<Member>,
    },
    /// A user event, delivered once per node.
    User(UserEvent),
    /// A query selected this node: answer with [`crate::Node::respond`].
    Query(IncomingQuery),
    /// A node acknowledged this node's query (`request_ack`).
    QueryAck {
        /// The query, as returned by [`crate::Node::query`].
        query: QueryId,
        /// Who acknowledged.
        from: Name,
    },
    /// A node answered this node's query.
    QueryResponse {
        /// The query, as returned by [`crate::Node::query`].
        query: QueryId,
        /// Who answered.
        from: Name,
        /// The answer.
        payload: Bytes,
    },
    /// This node's query ended: every selected node answered, or the timeout passed.
    QueryDone {
        /// The query, as returned by [`crate::Node::query`].
        query: QueryId,
        /// Acks received.
        acks: usize,
        /// Responses received.
        responses: usize,
    },
    /// A direct message from another member ([`crate::Node::send`] or
    /// [`crate::Node::broadcast`]).
    Message {
        /// The sender.
        from: Name,
        /// The message.
        payload: Bytes,
    },
    /// The reliable channel to `to` failed: `messages` direct messages sent to it in the last
    /// `tcp_timeout` may not have arrived.
    SendFailed {
        /// The unreachable member.
        to: Name,
        /// Direct messages possibly lost.
        messages: usize,
    },
    /// The application did not keep up: `dropped` events (direct messages first; membership
    /// events only as a last resort) were discarded since the last `Lagged`.
    Lagged {
        /// Events discarded.
        dropped: u64,
    },
    /// The Serf broadcast queue (intents, user events, queries) grew past
    /// `queue_depth_warning`.
    QueueDepthWarning {
        /// Updates queued.
        depth: usize,
    },
}

/// What a coalesced batch of member events reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberEventKind {
    /// [`Event::MemberJoined`].
    Joined,
    /// [`Event::MemberLeft`].
    Left,
    /// [`Event::MemberFailed`].
    Failed,
    /// [`Event::MemberUpdated`].
    Updated,
    /// [`Event::MemberReaped`].
    Reaped,
}

/// A user event as delivered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserEvent {
    /// Event Lamport time.
    pub ltime: u64,
    /// Event name.
    pub name: Name,
    /// Event payload.
    pub payload: Bytes,
    /// Whether the sender allowed coalescing (latest per name).
    pub coalesce: bool,
}

/// This node's handle on one of its own queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u32);

/// A query that selected this node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IncomingQuery {
    /// Pass to [`crate::Node::respond`].
    pub handle: QueryHandle,
    /// Query name.
    pub name: Name,
    /// Query payload.
    pub payload: Bytes,
    /// The asker.
    pub from: Name,
}

/// What [`crate::Node::respond`] needs to answer a query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryHandle {
    pub(crate) origin: Name,
    pub(crate) addr: SocketAddr,
    pub(crate) ltime: u64,
    pub(crate) id: u32,
    pub(crate) relay_factor: u8,
    /// Answers after this are refused.
    pub deadline: Timestamp,
}

/// Options of [`crate::Node::query`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams {
    /// Only these members answer (empty: no name filter).
    pub filter_nodes: Vec<String>,
    /// Only members whose tag (first) matches the regular expression (second) answer; the
    /// expression is unanchored, as in Serf (use `^...$` to match whole values).
    pub filter_tags: Vec<(String, String)>,
    /// Ask selected members to acknowledge receipt at once.
    pub request_ack: bool,
    /// Each response is also sent through this many random members (for lossy networks).
    pub relay_factor: u8,
    /// How long to wait; default gossip_interval · query_timeout_mult · ceil(log10(n + 1)).
    pub timeout: Option<Duration>,
}
