//! Everything the core reports to the application, drained with [`crate::Node::poll_event`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::identity::{Member, Name};
use crate::time::Timestamp;

/// Something the application may want to know. Events are queued in order, in an
/// [`crate::EventQueue`] bounded by [`crate::Config::max_pending_events`] and
/// [`crate::Config::max_inbox`]; its overflow policy (direct messages go first, membership
/// events are never dropped, every loss is reported by [`Event::Lagged`]) is written there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// The direct message `message` ([`crate::Node::send`], [`crate::Node::broadcast`],
    /// [`crate::Node::send_acked`]) did not arrive, or, for an acknowledged one, its receipt
    /// never came: `reason` says which. Exactly one outcome per message: this, or (acknowledged
    /// messages only) [`Event::MessageAcked`].
    SendFailed {
        /// The member it was for (its address written out when no member at that address is
        /// known any more).
        to: Name,
        /// The message, as its send returned it.
        message: MessageId,
        /// What went wrong.
        reason: SendFailure,
    },
    /// The application did not keep up: `dropped` events were discarded (direct messages
    /// first; membership events never, only coalesced per member) since the last `Lagged`.
    /// It comes before the events that follow the gap (see [`crate::EventQueue`]).
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
    // New variants go last: the simulator's trace hash covers events, discriminants included.
    /// A cluster-wide key operation this node started ([`crate::Node::install_key`] and its
    /// siblings) ended: every member known alive answered, or the deadline passed.
    KeyOp(crate::KeyOpResult),
    /// The agent stopped taking part: the last item of a driver's event stream, which ends
    /// after it. Emitted by the drivers (never by [`crate::Node::poll_event`]) once the node
    /// has gone inert ([`crate::Node::stop_reason`]) or the application shut it down.
    Stopped {
        /// Why it stopped.
        reason: StopReason,
    },
    /// The peer's core confirmed receipt of the acknowledged direct message `message`
    /// ([`crate::Node::send_acked`]): it reached the peer's event queue (not necessarily its
    /// application yet).
    MessageAcked {
        /// The member that confirmed.
        to: Name,
        /// The message, as `send_acked` returned it.
        message: MessageId,
    },
}

/// A direct message's number, unique per node (counting from 1 in the order of the sends): the
/// key of its outcome ([`Event::SendFailed`], [`Event::MessageAcked`]) and of the transmit that
/// carries it ([`crate::Transmit::message`]).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct MessageId(pub u64);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a direct message failed ([`Event::SendFailed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SendFailure {
    /// The driver could not write it to the peer's connection (connect or write failed, timed
    /// out, or its outbound queue was full): the peer did not get it.
    Unreachable,
    /// The node's own transmit queue (`max_pending_transmits`) overflowed before the driver
    /// took the message: it was never sent.
    Overflow,
    /// An acknowledged message got no receipt within twice `tcp_timeout`: it may or may not
    /// have arrived.
    NoReceipt,
    /// The wire profile could not carry it (no counterpart there, or too long to seal as
    /// memberlist frames a stream): it was never sent.
    NotSendable,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendFailure::Unreachable => "the peer could not be reached",
            SendFailure::Overflow => "the transmit queue overflowed",
            SendFailure::NoReceipt => "no receipt came in time",
            SendFailure::NotSendable => "the wire profile cannot carry it",
        })
    }
}

/// Why an agent stopped taking part in the cluster ([`Event::Stopped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StopReason {
    /// A graceful leave completed (asked by the application, by a shutdown that leaves, or
    /// because every handle was dropped).
    Left,
    /// Another node claimed this node's name and won the vote ([`Event::NameConflict`]): this
    /// node gave the name up and went inert. Restart it under another name (or after the other
    /// one has gone) to take part again.
    NameConflictLost,
    /// The application shut the agent down without leaving (the others will detect it as
    /// failed).
    Shutdown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Left => "left the cluster",
            StopReason::NameConflictLost => "lost its name to another node",
            StopReason::Shutdown => "shut down",
        })
    }
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
    /// Boxed: every event is as large as the largest kind, and member events are the many.
    pub(crate) origin: Box<QueryOrigin>,
    /// Answers after this are refused.
    pub deadline: Timestamp,
}

/// Which query an answer is for and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct QueryOrigin {
    pub name: Name,
    pub addr: SocketAddr,
    pub ltime: u64,
    pub id: u32,
    pub relay_factor: u8,
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

/// Payload bytes for a one-line description: UTF-8 (lossy) when short, else a byte count.
fn payload_text(p: &Bytes) -> String {
    if p.len() <= 64 {
        format!("{:?}", String::from_utf8_lossy(p))
    } else {
        format!("<{} bytes>", p.len())
    }
}

/// A one-line, human-readable description (for logs and examples); `Debug` has every field.
impl core::fmt::Display for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Event::MemberJoined(m) => write!(f, "{} joined ({})", m.name, m.addr),
            Event::MemberUpdated(m) => write!(f, "{} updated: {:?}", m.name, m.tags),
            Event::MemberLeft(m) => write!(f, "{} left", m.name),
            Event::MemberFailed(m) => write!(f, "{} failed", m.name),
            Event::MemberSuspected { member, by } => {
                write!(f, "{} suspected by {by}", member.name)
            }
            Event::MemberRecovered(m) => write!(f, "{} recovered", m.name),
            Event::JoinCompleted {
                answered,
                contacted,
            } => write!(f, "join completed: {answered}/{contacted} seeds answered"),
            Event::NameConflict {
                name,
                existing,
                claimed,
            } => write!(f, "name {name} held by {existing} is claimed by {claimed}"),
            Event::LeaveCompleted => f.write_str("leave completed"),
            Event::Stopped { reason } => write!(f, "stopped: {reason}"),
            Event::MemberReaped(m) => write!(f, "{} reaped", m.name),
            Event::MemberBatch { kind, members } => {
                write!(f, "{} member(s) {kind:?}:", members.len())?;
                for m in members {
                    write!(f, " {}", m.name)?;
                }
                Ok(())
            }
            Event::User(u) => write!(f, "user event {} {}", u.name, payload_text(&u.payload)),
            Event::Query(q) => {
                let p = payload_text(&q.payload);
                write!(f, "query {} from {} {p}", q.name, q.from)
            }
            Event::QueryAck { query, from } => write!(f, "query {} acked by {from}", query.0),
            Event::QueryResponse {
                query,
                from,
                payload,
            } => write!(
                f,
                "query {} answered by {from}: {}",
                query.0,
                payload_text(payload)
            ),
            Event::KeyOp(r) => write!(
                f,
                "key operation {:?} done: {}/{} answered, {} failed",
                r.op,
                r.answered,
                r.members,
                r.failed.len()
            ),
            Event::QueryDone {
                query,
                acks,
                responses,
            } => write!(
                f,
                "query {} done: {acks} acks, {responses} responses",
                query.0
            ),
            Event::Message { from, payload } => {
                write!(f, "message from {from}: {}", payload_text(payload))
            }
            Event::SendFailed {
                to,
                message,
                reason,
            } => write!(f, "message {message} to {to} failed: {reason}"),
            Event::MessageAcked { to, message } => {
                write!(f, "message {message} to {to} acknowledged")
            }
            Event::Lagged { dropped } => write!(f, "lagged: {dropped} event(s) dropped"),
            Event::QueueDepthWarning { depth } => write!(f, "broadcast queue depth {depth}"),
        }
    }
}

impl Event {
    /// How the one overflow policy ([`crate::EventQueue`]) treats this event: the direct
    /// messages, the other droppable events, the membership events (never dropped, coalesced
    /// per member), name conflicts (coalesced per name) and the one-off events an application
    /// waits for (never dropped). An event not named here may be dropped.
    pub fn class(&self) -> crate::EventClass<'_> {
        use crate::EventClass;
        match self {
            Event::MemberJoined(m)
            | Event::MemberUpdated(m)
            | Event::MemberLeft(m)
            | Event::MemberFailed(m)
            | Event::MemberRecovered(m)
            | Event::MemberReaped(m)
            | Event::MemberSuspected { member: m, .. } => {
                EventClass::Membership(std::slice::from_ref(m))
            }
            Event::MemberBatch { members, .. } => EventClass::Membership(members),
            Event::NameConflict { name, .. } => EventClass::NameConflict(name),
            Event::JoinCompleted { .. } | Event::LeaveCompleted | Event::Stopped { .. } => {
                EventClass::Kept
            }
            Event::Lagged { .. } => EventClass::Lagged,
            Event::Message { .. } => EventClass::Message,
            _ => EventClass::Droppable,
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn events_read_as_one_line() {
        let m = Member {
            name: "web-1".into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            status: crate::MemberStatus::Alive,
            incarnation: 3,
            tags: Default::default(),
        };
        let cases = [
            (
                Event::MemberJoined(m.clone()),
                "web-1 joined (10.0.0.1:7946)",
            ),
            (
                Event::MemberSuspected {
                    member: m.clone(),
                    by: "db-2".into(),
                },
                "web-1 suspected by db-2",
            ),
            (
                Event::Message {
                    from: "db-2".into(),
                    payload: Bytes::from_static(b"hi"),
                },
                "message from db-2: \"hi\"",
            ),
            (
                Event::Message {
                    from: "db-2".into(),
                    payload: Bytes::from(vec![0u8; 100]),
                },
                "message from db-2: <100 bytes>",
            ),
            (
                Event::MemberBatch {
                    kind: MemberEventKind::Failed,
                    members: vec![m.clone(), m],
                },
                "2 member(s) Failed: web-1 web-1",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
            assert!(!want.contains('\n'));
        }
    }
}
