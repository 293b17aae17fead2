//! The wire format: messages, the versioned envelope, compound datagrams and stream framing.
//!
//! Every datagram is `[version][label length][label bytes][message count (varint)][messages]`,
//! each message postcard-encoded; a datagram never exceeds the configured MTU. Every reliable
//! message is a frame `[length: u32 big-endian][version][label length][label][message]`, the
//! framing shared by all drivers through [`FrameDecoder`].
//!
//! Decoding is bounded and total: any byte string either decodes to messages that pass
//! validation or yields a [`DecodeError`]; nothing panics, and no allocation exceeds what the
//! input's own length justifies (sequence lengths are checked against the bytes left, and
//! sequences are never preallocated beyond what the bytes left could hold). The commonest
//! messages — an alive message with an IPv4 address and no tags, a push-pull of such members —
//! have hand-written fast paths (`wire_fast`) that accept only what postcard accepts, with the
//! same result.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::identity::{Name, Tags};
use crate::wire_fast::RawAlive;

/// Protocol version carried in the first byte of every datagram and frame.
pub const VERSION: u8 = 1;
/// Smallest MTU the core accepts in its configuration, in bytes.
pub const MIN_MTU: usize = 512;
/// Largest datagram the core sends or accepts (the UDP payload limit), in bytes.
pub const MAX_DATAGRAM: usize = 65_507;
/// Length of a stream frame header (a big-endian `u32` body length), in bytes.
pub const FRAME_HEADER_LEN: usize = 4;
/// Hard upper bound of a stream frame body, in bytes (64 MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// Why bytes did not decode. Input that fails is ignored with no state change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Nothing to decode.
    Empty,
    /// The first byte names a protocol version this node does not speak.
    UnsupportedVersion(u8),
    /// The input ended in the middle of a field.
    Truncated,
    /// A field holds a value no message can have (bad tag, bad UTF-8, overlong varint).
    Malformed,
    /// Bytes left over after the declared messages.
    TrailingBytes,
    /// A datagram declares more messages than its bytes could hold, or none.
    BadMessageCount,
    /// A decoded message breaks a protocol limit (name or tags too long, too many members).
    Invalid(&'static str),
    /// A datagram or stream frame is larger than this node accepts.
    TooLarge {
        /// Declared or actual size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty input"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::Truncated => write!(f, "truncated input"),
            DecodeError::Malformed => write!(f, "malformed field"),
            DecodeError::TrailingBytes => write!(f, "trailing bytes"),
            DecodeError::BadMessageCount => write!(f, "bad message count"),
            DecodeError::Invalid(what) => write!(f, "invalid message: {what}"),
            DecodeError::TooLarge { len, max } => write!(f, "{len} bytes exceeds limit {max}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<postcard::Error> for DecodeError {
    fn from(e: postcard::Error) -> Self {
        match e {
            postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
            _ => DecodeError::Malformed,
        }
    }
}

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

/// Limits applied when validating decoded messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_name_len: usize,
    pub meta_max_size: usize,
    pub max_members: usize,
    pub user_event_size_limit: usize,
    pub query_size_limit: usize,
    pub query_response_size_limit: usize,
    pub max_message_size: usize,
    pub event_buffer: usize,
}

impl Limits {
    /// The limits a configuration implies.
    pub(crate) fn from_config(c: &crate::Config) -> Limits {
        Limits {
            max_name_len: c.max_name_len,
            meta_max_size: c.meta_max_size,
            max_members: c.max_members,
            user_event_size_limit: c.user_event_size_limit,
            query_size_limit: c.query_size_limit,
            query_response_size_limit: c.query_response_size_limit,
            max_message_size: c.max_message_size,
            event_buffer: c.event_buffer,
        }
    }
}

/// Size a user event counts against `user_event_size_limit`: name plus payload.
pub(crate) fn user_event_size(name: &str, payload: &[u8]) -> usize {
    name.len() + payload.len()
}

/// Size a query counts against `query_size_limit`: name, payload and filters.
pub(crate) fn query_size(q: &QueryMsg) -> usize {
    q.name.len()
        + q.payload.len()
        + q.filter_nodes.iter().map(|n| n.len()).sum::<usize>()
        + q.filter_tags
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Encoded size of a tag map (postcard: count, then length-prefixed keys and values).
pub(crate) fn tags_encoded_len(tags: &Tags) -> usize {
    varint_len(tags.len())
        + tags
            .iter()
            .map(|(k, v)| varint_len(k.len()) + k.len() + varint_len(v.len()) + v.len())
            .sum::<usize>()
}

impl Limits {
    fn name(&self, name: &str) -> Result<(), DecodeError> {
        self.name_bytes(name.as_bytes())
    }

    fn name_bytes(&self, name: &[u8]) -> Result<(), DecodeError> {
        if name.is_empty() || name.len() > self.max_name_len {
            return Err(DecodeError::Invalid("member name length"));
        }
        Ok(())
    }

    /// What [`Limits::validate`] checks of the alive message `a` stands for (its tags are
    /// empty: one byte encoded).
    fn raw_alive(&self, a: &RawAlive<'_>) -> Result<(), DecodeError> {
        self.name_bytes(a.name)?;
        if self.meta_max_size < varint_len(0) {
            return Err(DecodeError::Invalid("tags exceed meta_max_size"));
        }
        Ok(())
    }

    fn tags(&self, tags: &Tags) -> Result<(), DecodeError> {
        if tags_encoded_len(tags) > self.meta_max_size {
            return Err(DecodeError::Invalid("tags exceed meta_max_size"));
        }
        Ok(())
    }

    fn user_event(&self, e: &UserEventMsg) -> Result<(), DecodeError> {
        if e.name.is_empty() || user_event_size(&e.name, &e.payload) > self.user_event_size_limit {
            return Err(DecodeError::Invalid(
                "user event exceeds user_event_size_limit",
            ));
        }
        Ok(())
    }

    /// Check every protocol limit of one decoded message.
    pub(crate) fn validate(&self, msg: &Message) -> Result<(), DecodeError> {
        match msg {
            Message::Ping { target, .. }
            | Message::IndirectPing { target, .. }
            | Message::StreamPing { target, .. } => self.name(target),
            Message::Ack { .. } | Message::Nack { .. } => Ok(()),
            Message::Alive(a) => {
                self.name(&a.name)?;
                self.tags(&a.tags)
            }
            Message::Suspect(s) | Message::Dead(s) => {
                self.name(&s.name)?;
                self.name(&s.from)
            }
            Message::PushPull(p) => {
                self.name(&p.sender)?;
                if p.states.len() > self.max_members {
                    return Err(DecodeError::Invalid("push-pull state exceeds max_members"));
                }
                for s in &p.states {
                    self.name(&s.name)?;
                    self.tags(&s.tags)?;
                    if let Some(a) = &s.accuser {
                        self.name(a)?;
                        if s.status != WireStatus::Suspect {
                            return Err(DecodeError::Invalid("accuser on a state not suspect"));
                        }
                        if *a == s.name {
                            return Err(DecodeError::Invalid("a member accuses itself"));
                        }
                    }
                }
                if p.events.len() > 4 * self.event_buffer {
                    return Err(DecodeError::Invalid("push-pull carries too many events"));
                }
                for e in &p.events {
                    self.user_event(e)?;
                }
                Ok(())
            }
            Message::LeaveIntent(i) => self.name(&i.name),
            Message::UserEvent(e) => self.user_event(e),
            Message::Query(q) => {
                self.name(&q.from)?;
                for n in &q.filter_nodes {
                    self.name(n)?;
                }
                if q.name.is_empty() || query_size(q) > self.query_size_limit {
                    return Err(DecodeError::Invalid("query exceeds query_size_limit"));
                }
                Ok(())
            }
            Message::QueryResponse(r) | Message::RelayResponse { resp: r, .. } => {
                self.name(&r.from)?;
                if r.payload.len() > self.query_response_size_limit {
                    return Err(DecodeError::Invalid(
                        "response exceeds query_response_size_limit",
                    ));
                }
                Ok(())
            }
            Message::Direct { from, payload } => {
                self.name(from)?;
                if payload.len() > self.max_message_size {
                    return Err(DecodeError::Invalid("message exceeds max_message_size"));
                }
                Ok(())
            }
        }
    }
}

/// Encode one message body (no envelope).
#[cfg(any(test, feature = "arbitrary"))]
pub(crate) fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(msg, &mut out);
    out
}

/// A postcard output that appends to a borrowed `Vec`.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Envelope header: version and label.
pub(crate) fn header(label: Option<&str>) -> Vec<u8> {
    let label = label.unwrap_or("").as_bytes();
    let mut out = Vec::with_capacity(2 + label.len());
    out.push(VERSION);
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    out
}

/// Room the message count takes in a datagram (a varint of at most two bytes, since a
/// datagram holds fewer than 16384 messages).
pub(crate) const COUNT_RESERVE: usize = 2;

/// Longest encoding of a datagram's message count: a varint of a count below 2²¹ (a
/// datagram of at most 65,507 bytes holds fewer messages than that).
pub(crate) const COUNT_MAX_LEN: usize = 3;

/// A datagram's message count as it is encoded (a varint), and how many of the bytes it uses.
pub(crate) fn encode_count(count: usize) -> ([u8; COUNT_MAX_LEN], usize) {
    let mut out = [0; COUNT_MAX_LEN];
    let mut n = count;
    let mut len = 0;
    while n >= 0x80 && len < COUNT_MAX_LEN - 1 {
        out[len] = (n as u8 & 0x7f) | 0x80;
        n >>= 7;
        len += 1;
    }
    out[len] = n as u8;
    (out, len + 1)
}

/// Assemble a compound datagram from a header, a message count and the concatenated
/// message bodies (a node builds its datagrams in place instead).
#[cfg(any(test, feature = "arbitrary"))]
pub(crate) fn assemble_datagram_body(header: &[u8], count: usize, body: &[u8]) -> Vec<u8> {
    let (count, len) = encode_count(count);
    let mut out = Vec::with_capacity(header.len() + len + body.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&count[..len]);
    out.extend_from_slice(body);
    out
}

/// A stream frame of one message: length prefix, envelope header, the message, encoded in
/// place.
pub(crate) fn frame_message(header: &[u8], msg: &Message) -> Vec<u8> {
    let mut out = frame_start(header);
    encode_into(msg, &mut out);
    frame_finish(out)
}

/// A stream frame being built: room for the length prefix, then the envelope header; the
/// message is appended, then [`frame_finish`] writes the length.
pub(crate) fn frame_start(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + header.len() + 64);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.extend_from_slice(header);
    out
}

/// Write the length prefix of a frame from [`frame_start`].
pub(crate) fn frame_finish(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Postcard's variant index of [`Message::PushPull`] (checked by a test against the encoder):
/// a push-pull built straight from the member table starts with it.
pub(crate) const PUSH_PULL_VARIANT: u32 = 8;

/// Append the postcard encoding of any value — a message, or a part of one: postcard writes a
/// struct as its fields one after the other, so the parts of a message encoded in order give
/// the message's bytes. A datagram, a frame or a queue's buffer is written in place, without
/// a buffer of its own per message.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Serializing these plain data types into a Vec cannot fail; should it ever, nothing of
    // the value is left behind.
    let start = out.len();
    if postcard::serialize_with_flavor(value, Append(out)).is_err() {
        out.truncate(start);
    }
}

/// Result of reading the envelope: the rest of the input, or a label mismatch.
pub(crate) enum Envelope<'a> {
    Ours(&'a [u8]),
    OtherLabel,
}

/// Check version and label; return the bytes after the header.
pub(crate) fn open_envelope<'a>(
    data: &'a [u8],
    label: Option<&str>,
) -> Result<Envelope<'a>, DecodeError> {
    let (&version, rest) = data.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (&len, rest) = rest.split_first().ok_or(DecodeError::Truncated)?;
    let len = len as usize;
    if rest.len() < len {
        return Err(DecodeError::Truncated);
    }
    let (got, rest) = rest.split_at(len);
    if got != label.unwrap_or("").as_bytes() {
        return Ok(Envelope::OtherLabel);
    }
    Ok(Envelope::Ours(rest))
}

fn read_varint(data: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    let mut n: usize = 0;
    for (i, &b) in data.iter().enumerate().take(4) {
        n |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((n, &data[i + 1..]));
        }
    }
    if data.len() < 4 {
        Err(DecodeError::Truncated)
    } else {
        Err(DecodeError::Malformed)
    }
}

/// One message of a datagram as [`decode_datagram`] gives it.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    /// Any message.
    Message(Message),
    /// An alive message in its most common shape, its name still in the datagram's bytes.
    Alive(RawAlive<'a>),
}

impl Decoded<'_> {
    /// The message itself.
    #[cfg(any(test, feature = "arbitrary"))]
    pub(crate) fn into_message(self) -> Message {
        match self {
            Decoded::Message(m) => m,
            Decoded::Alive(a) => Message::Alive(a.to_alive()),
        }
    }

    /// The bytes of the member name a membership update is about.
    pub(crate) fn member_name(&self) -> Option<&[u8]> {
        match self {
            Decoded::Alive(a) => Some(a.name),
            Decoded::Message(Message::Alive(a)) => Some(a.name.as_bytes()),
            Decoded::Message(Message::Suspect(s) | Message::Dead(s)) => Some(s.name.as_bytes()),
            Decoded::Message(_) => None,
        }
    }
}

/// Decode the messages of a datagram body (after the envelope), validating each: alive
/// messages in their common shape are left with their names in `body` (see
/// [`crate::wire_fast`]).
pub(crate) fn decode_datagram<'a>(
    body: &'a [u8],
    limits: &Limits,
) -> Result<Vec<Decoded<'a>>, DecodeError> {
    let (count, mut rest) = read_varint(body)?;
    // Every message takes at least two bytes (kind and one field).
    if count == 0 || count > rest.len() / 2 {
        return Err(DecodeError::BadMessageCount);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some((alive, tail)) = crate::wire_fast::take_alive(rest) {
            limits.raw_alive(&alive)?;
            out.push(Decoded::Alive(alive));
            rest = tail;
            continue;
        }
        let (msg, tail) = postcard::take_from_bytes::<Message>(rest)?;
        limits.validate(&msg)?;
        out.push(Decoded::Message(msg));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(out)
}

/// Decode the messages of a datagram body (after the envelope), validating each.
#[cfg(any(test, feature = "arbitrary"))]
pub(crate) fn decode_compound(body: &[u8], limits: &Limits) -> Result<Vec<Message>, DecodeError> {
    Ok(decode_datagram(body, limits)?
        .into_iter()
        .map(Decoded::into_message)
        .collect())
}

/// Decode one stream message body (after the envelope), validating it.
pub(crate) fn decode_single(body: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
    let (msg, rest) = match crate::wire_fast::take_push_pull(body) {
        Some((p, rest)) => (Message::PushPull(Box::new(p)), rest),
        None => postcard::take_from_bytes::<Message>(body)?,
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    limits.validate(&msg)?;
    Ok(msg)
}

/// Splits a byte stream into frames (`[len: u32 BE][body]`). Drivers feed it whatever the
/// reliable channel delivered and hand each body to [`crate::Node::handle_stream`].
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that refuses bodies larger than `max` bytes (use
    /// [`crate::Config::max_stream_message`]).
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max: max.min(MAX_FRAME),
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame body, `Ok(None)` when more bytes are needed, or an error when
    /// the declared length exceeds the limit (the connection should then be closed).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        let avail = &self.buf[self.start..];
        if avail.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > self.max {
            return Err(DecodeError::TooLarge { len, max: self.max });
        }
        if avail.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let body = avail[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(body))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_members: 1000,
            ..Limits::from_config(&crate::Config::lan())
        }
    }

    fn sample() -> Vec<Message> {
        let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        let mut tags = Tags::new();
        tags.insert("role".into(), "db".into());
        vec![
            Message::Ping {
                seq: 7,
                target: "b".into(),
                digest: None,
            },
            Message::Ack {
                seq: 7,
                digest: Some(Digest {
                    hash: [1, 2, 3, 4],
                    live: 12,
                    events: 3,
                    stable: true,
                }),
            },
            Message::Nack { seq: 9 },
            Message::IndirectPing {
                seq: 1,
                target: "c".into(),
                addr,
            },
            Message::StreamPing {
                seq: 2,
                target: "c".into(),
                reply_to: addr,
            },
            Message::Alive(Alive {
                incarnation: 3,
                name: "n1".into(),
                addr,
                tags: tags.clone(),
                ltime: 9,
            }),
            Message::Suspect(Accusation {
                incarnation: 3,
                name: "n1".into(),
                from: "n2".into(),
            }),
            Message::Dead(Accusation {
                incarnation: 4,
                name: "n1".into(),
                from: "n1".into(),
            }),
            Message::PushPull(Box::new(PushPull {
                id: 5,
                request: true,
                join: true,
                reply_to: addr,
                sender: "n2".into(),
                states: vec![PushState {
                    name: "n1".into(),
                    addr,
                    incarnation: 1,
                    status: WireStatus::Suspect,
                    tags,
                    ltime: 3,
                    accuser: Some("n3".into()),
                }],
                member_ltime: 4,
                event_ltime: 5,
                query_ltime: 6,
                events: vec![UserEventMsg {
                    ltime: 2,
                    name: "deploy".into(),
                    payload: Bytes::from_static(b"v2"),
                    coalesce: true,
                }],
            })),
        ]
    }

    #[test]
    fn compound_round_trip() {
        let msgs = sample();
        let body: Vec<u8> = msgs.iter().flat_map(encode_message).collect();
        let h = header(Some("prod"));
        let dgram = assemble_datagram_body(&h, msgs.len(), &body);
        let Envelope::Ours(body) = open_envelope(&dgram, Some("prod")).unwrap() else {
            panic!("label should match")
        };
        assert_eq!(decode_compound(body, &limits()).unwrap(), msgs);
        assert!(matches!(
            open_envelope(&dgram, None).unwrap(),
            Envelope::OtherLabel
        ));
    }

    #[test]
    fn tags_len_matches_postcard() {
        let mut tags = Tags::new();
        for i in 0..40 {
            tags.insert(format!("key{i}"), "v".repeat(i * 5));
        }
        assert_eq!(
            tags_encoded_len(&tags),
            postcard::to_allocvec(&tags).unwrap().len()
        );
    }

    #[test]
    fn rejects_bad_envelopes_and_counts() {
        assert_eq!(open_envelope(&[], None).err(), Some(DecodeError::Empty));
        assert_eq!(
            open_envelope(&[9, 0], None).err(),
            Some(DecodeError::UnsupportedVersion(9))
        );
        assert_eq!(
            open_envelope(&[VERSION, 5, b'a'], None).err(),
            Some(DecodeError::Truncated)
        );
        // A count far above what the bytes hold.
        assert_eq!(
            decode_compound(&[0xff, 0x7f, 1, 2], &limits()).err(),
            Some(DecodeError::BadMessageCount)
        );
        assert_eq!(
            decode_compound(&[0], &limits()).err(),
            Some(DecodeError::BadMessageCount)
        );
        // Trailing garbage after one valid message.
        let mut b = vec![1];
        b.extend(encode_message(&Message::Ack {
            seq: 1,
            digest: None,
        }));
        b.extend([0, 0, 0]);
        assert_eq!(
            decode_compound(&b, &limits()).err(),
            Some(DecodeError::TrailingBytes)
        );
    }

    #[test]
    fn validation_limits_names_and_tags() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let long = Message::Ping {
            seq: 1,
            target: "x".repeat(200).into(),
            digest: None,
        };
        assert!(limits().validate(&long).is_err());
        let mut tags = Tags::new();
        tags.insert("k".into(), "v".repeat(600));
        let fat = Message::Alive(Alive {
            incarnation: 0,
            name: "a".into(),
            addr,
            tags,
            ltime: 0,
        });
        assert!(limits().validate(&fat).is_err());
        let empty = Message::Suspect(Accusation {
            incarnation: 0,
            name: "".into(),
            from: "b".into(),
        });
        assert!(limits().validate(&empty).is_err());
    }

    #[test]
    fn a_push_pull_accuser_is_validated() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let with = |status: WireStatus, accuser: &str| {
            Message::PushPull(Box::new(PushPull {
                id: 1,
                request: false,
                join: false,
                reply_to: addr,
                sender: "n2".into(),
                states: vec![PushState {
                    name: "n1".into(),
                    addr,
                    incarnation: 1,
                    status,
                    tags: Tags::new(),
                    ltime: 0,
                    accuser: Some(accuser.into()),
                }],
                member_ltime: 0,
                event_ltime: 0,
                query_ltime: 0,
                events: vec![],
            }))
        };
        let ok = with(WireStatus::Suspect, "n3");
        assert_eq!(limits().validate(&ok), Ok(()));
        let bytes = encode_message(&ok);
        assert_eq!(decode_single(&bytes, &limits()), Ok(ok));
        for bad in [
            with(WireStatus::Alive, "n3"),
            with(WireStatus::Dead, "n3"),
            with(WireStatus::Suspect, "n1"),
            with(WireStatus::Suspect, ""),
            with(WireStatus::Suspect, &"x".repeat(200)),
        ] {
            assert!(limits().validate(&bad).is_err(), "{bad:?}");
            let bytes = encode_message(&bad);
            assert!(decode_single(&bytes, &limits()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_claimed_sequence_does_not_preallocate() {
        // A push-pull claiming 2^28 states in a tiny buffer fails fast with Truncated.
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let pp = Message::PushPull(Box::new(PushPull {
            id: 1,
            request: true,
            join: false,
            reply_to: addr,
            sender: "n2".into(),
            states: vec![],
            member_ltime: 0,
            event_ltime: 0,
            query_ltime: 0,
            events: vec![],
        }));
        let mut b = encode_message(&pp);
        b.pop(); // the empty-vec length
        b.extend([0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(
            decode_single(&b, &limits()).err(),
            Some(DecodeError::Truncated)
        );
    }

    #[test]
    fn frame_decoder_splits_and_bounds() {
        let h = header(None);
        let f1 = frame_message(
            &h,
            &Message::Ack {
                seq: 1,
                digest: None,
            },
        );
        let f2 = frame_message(
            &h,
            &Message::Ack {
                seq: 2,
                digest: None,
            },
        );
        let mut all = f1.clone();
        all.extend(&f2);
        let mut d = FrameDecoder::new(1024);
        // Byte by byte.
        let mut got = vec![];
        for b in &all {
            d.push(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
        assert_eq!(d.buffered(), 0);
        let mut d = FrameDecoder::new(1024);
        d.push(&[0, 1, 0, 0]);
        assert_eq!(
            d.next_frame(),
            Err(DecodeError::TooLarge {
                len: 65536,
                max: 1024
            })
        );
    }
}
