//! The messages themselves: what members say to each other, as Rust values below any codec.
//! The native codec (`codec`) encodes them with postcard; a second profile can encode the same
//! values another way without touching protocol logic.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::identity::{Name, Tags};

/// A member's state as carried in gossip and push-pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) enum WireStatus {
    Alive,
    Suspect,
    Dead,
    Left,
    /// Alive at the SWIM level, with a leave intent announced.
    Leaving,
}

/// A Serf leave intent: "`name` is leaving at member Lamport time `ltime`" (join intents ride
/// on alive messages). With `prune` the member is also erased (force-remove with prune).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intent {
    pub ltime: u64,
    pub name: Name,
    pub prune: bool,
}

/// A user event.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct UserEventMsg {
    pub ltime: u64,
    pub name: Name,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
    pub payload: Bytes,
    pub coalesce: bool,
}

/// A query, gossiped to every member; those its filters select answer the asker directly.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueryMsg {
    pub ltime: u64,
    pub id: u32,
    /// The asker's name and address (responses go there).
    pub from: Name,
    pub addr: SocketAddr,
    /// Only these members answer (empty: no name filter).
    #[serde(deserialize_with = "seq_no_prealloc")]
    pub filter_nodes: Vec<Name>,
    /// Only members whose tag `.0` matches the regular expression `.1` answer.
    #[serde(deserialize_with = "seq_no_prealloc")]
    pub filter_tags: Vec<(String, String)>,
    pub ack: bool,
    pub relay_factor: u8,
    /// Milliseconds the asker waits.
    pub timeout_ms: u32,
    pub name: Name,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
    pub payload: Bytes,
}

/// An answer to a query: an ack (empty payload) or a response.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueryResp {
    pub ltime: u64,
    pub id: u32,
    pub from: Name,
    pub ack: bool,
    #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
    pub payload: Bytes,
}

/// "`name` at `addr` is alive at `incarnation` with `tags`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) struct Alive {
    pub incarnation: u32,
    pub name: Name,
    pub addr: SocketAddr,
    pub tags: Tags,
    /// Member Lamport time of the member's latest join intent (0: none yet).
    pub ltime: u64,
}

/// "`from` suspects `name` at `incarnation`" (or, as `Dead`, declares it failed; a dead
/// message whose `from` is `name` itself announces a graceful leave).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) struct Accusation {
    pub incarnation: u32,
    pub name: Name,
    pub from: Name,
}

/// One member's full state in a push-pull exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) struct PushState {
    pub name: Name,
    pub addr: SocketAddr,
    pub incarnation: u32,
    pub status: WireStatus,
    pub tags: Tags,
    /// Member Lamport time of the member's latest join or leave intent.
    pub ltime: u64,
    /// For a suspect member, the member that started the suspicion, when the sender knows
    /// it: the receiver counts it, not the sender, as the accuser (a suspicion relayed by
    /// push-pull is not an independent confirmation). Only a suspect state carries one, and
    /// a member never accuses itself.
    pub accuser: Option<Name>,
}

/// A push-pull exchange: the sender's whole member table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) struct PushPull {
    /// Matches a response to its request.
    pub id: u32,
    /// True on a request (the receiver answers with its own table).
    pub request: bool,
    /// True when the request comes from a node joining through this one.
    pub join: bool,
    /// Where the response goes (the sender's advertised address).
    pub reply_to: SocketAddr,
    /// The sender's name (suspicions its table holds count as the accusations of the
    /// accusers they name, never as the sender's own).
    pub sender: Name,
    #[serde(deserialize_with = "seq_no_prealloc")]
    pub states: Vec<PushState>,
    /// The sender's member, event and query Lamport clocks.
    pub member_ltime: u64,
    pub event_ltime: u64,
    pub query_ltime: u64,
    /// The sender's recent user events (its dedup ring), so joiners replay them.
    #[serde(deserialize_with = "seq_no_prealloc")]
    pub events: Vec<UserEventMsg>,
}

/// A summary of a node's live member view, carried in direct pings and acks: the receiver
/// compares it with its own and repairs a difference gossip will not fix with a push-pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) struct Digest {
    /// Order-independent hash of (name, incarnation) over live members.
    pub hash: [u8; 4],
    /// How many live members the sender knows.
    pub live: u32,
    /// Lamport time of the newest user event the sender delivered: a settled peer ahead of us
    /// has an event we missed (push-pull carries recent events). Not the event clock, which
    /// every exchange moves.
    pub events: u64,
    /// True when the sender's view has not changed for a dissemination window.
    pub stable: bool,
}

/// Every message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub(crate) enum Message {
    /// Probe: answer with `Ack { seq }` if your name is `target`. A direct probe carries the
    /// prober's view digest.
    Ping {
        seq: u32,
        target: Name,
        digest: Option<Digest>,
    },
    /// Probe answered; a direct answer carries the responder's view digest.
    Ack {
        seq: u32,
        digest: Option<Digest>,
    },
    /// An indirect probe's relay got no answer from the target in time.
    Nack {
        seq: u32,
    },
    /// Please ping `target` at `addr` for me; ack (or nack) with `seq`.
    IndirectPing {
        seq: u32,
        target: Name,
        addr: SocketAddr,
    },
    /// Reliable-channel fallback probe; the ack goes to `reply_to` over the reliable channel.
    StreamPing {
        seq: u32,
        target: Name,
        reply_to: SocketAddr,
    },
    Alive(Alive),
    Suspect(Accusation),
    Dead(Accusation),
    PushPull(Box<PushPull>),
    LeaveIntent(Intent),
    UserEvent(UserEventMsg),
    Query(Box<QueryMsg>),
    QueryResponse(QueryResp),
    /// Please forward `resp` to the asker at `to` (a query's relay factor).
    RelayResponse {
        to: SocketAddr,
        resp: QueryResp,
    },
    /// A direct message from `from` (reliable channel).
    Direct {
        from: Name,
        #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
        payload: Bytes,
    },
    // New variants go last: postcard numbers variants in order.
    /// A direct message from `from` whose receipt the sender awaits: answer with
    /// [`Message::DirectAck`] carrying `id` (reliable channel).
    DirectAcked {
        from: Name,
        id: u64,
        #[cfg_attr(feature = "arbitrary", arbitrary(with = arbitrary_bytes))]
        payload: Bytes,
    },
    /// `from` received the acknowledged direct message `id` (reliable channel).
    DirectAck {
        from: Name,
        id: u64,
    },
    /// A revival check (`swim::addr_check`): answer with a bare `Ack { seq }` — no updates
    /// piggybacked — if your name is `target`. Every member that holds the target failed
    /// checks it at once (after a heal or a mass restart); acks that carried updates would
    /// spend their retransmissions on the checkers and starve the rest of the news.
    CheckPing {
        seq: u32,
        target: Name,
    },
}

/// Arbitrary payload bytes (`bytes::Bytes` has no `Arbitrary` of its own).
#[cfg(feature = "arbitrary")]
fn arbitrary_bytes(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Bytes> {
    use arbitrary::Arbitrary;
    Ok(Bytes::from(Vec::<u8>::arbitrary(u)?))
}

/// Deserialize a sequence without trusting its claimed length for preallocation.
fn seq_no_prealloc<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(core::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = seq.next_element()? {
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(core::marker::PhantomData))
}
