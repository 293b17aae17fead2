//! The HashiCorp wire profile: memberlist 0.2.2's and Serf 0.9.4's messages, as the Go codec
//! writes them, beside the native postcard codec. A node speaks it when
//! [`crate::Config::wire`] is [`crate::WireProfile::HashiCorp`]; `session` is the node's side
//! of it (records, datagrams, stream messages, push-pull exchanges paired by address).
//!
//! The layers:
//! - `msgpack`: go-msgpack's default handle at the byte level (bounded reader, writer);
//! - `memberlist`: memberlist's message types and bodies (ping, indirect ping, ack, nack,
//!   suspect, alive with its six version bytes, dead, push-pull, user message headers, error,
//!   compress);
//! - `frame`: datagrams (CRC wrapper, compound, LZW compression) and stream messages;
//! - `crypt`: memberlist's encryption format (AES-GCM, versions 0 and 1) for one datagram or
//!   stream message under a given key;
//! - `serf`: Serf's messages inside memberlist user messages and push-pull user state, query
//!   filters, key and conflict payloads, tags in meta;
//! - `keys`: how a node answers Serf's key-management queries;
//! - `conflict`: how a node answers Serf's name-conflict query;
//! - `convert`: the mapping between these messages and our [`Message`](super::Message);
//! - `session`: what the node's sending and receiving paths call.
//!
//! Decoding is bounded and total: every length is checked against the bytes left before
//! anything is sliced or allocated, collections have caps ([`MAX_PUSH_NODES`] states in a
//! push-pull, [`MAX_ITEMS`] elsewhere), strings [`MAX_STRING`] bytes, payloads
//! [`MAX_PAYLOAD`], decompressed output [`MAX_DECOMPRESSED`]; failures are [`HcError`]s.
//!
//! Proven against the real peers (`tests`): every datagram and stream captured from three
//! `serf` 0.9.4 agents (`vectors/serf-0.9.4.txt`, `tests/interop/capture-serf.py`) and from Go
//! memberlist 0.2.2 (`vectors/memberlist-0.2.2.txt`, `tests/interop/memberlist-vectors`)
//! decodes to what the capture run did and re-encodes byte for byte — LZW-compressed ones
//! included. What the captures show about Go's choices, which a sender must copy:
//! - a datagram gets the CRC header only when the sender knows the receiver speaks protocol 5
//!   (pings to an address not yet in the member table go without);
//! - a datagram is compressed only when that makes it smaller; with compression on (Serf's
//!   default) every stream message is compressed;
//! - a Serf 0.9.4 agent advertises `Vsn` `[1, 5, 2, 2, 5, 5]` ([`Versions::SERF_0_9_4`]);
//! - Go's encoding is deterministic except for Go maps (Serf's tags, status times), written in
//!   random order; a decoded map keeps its order, so it re-encodes to the same bytes.
//!
//! **Versions spoken.** memberlist protocol 2 (advertising the range 1–5, as Serf 0.9.4 does)
//! and Serf protocol 5 (delegate range 2–5). Proven live against Debian's `serf` 0.9.4 agent
//! (`tests/tests/serf_interop.rs`): joins both ways, tags, failure, leave and force-leave both
//! ways, user events and queries both ways.
//!
//! **Without Serf** ([`crate::WireProfile::Memberlist`], for Go programs that embed memberlist
//! alone): the same bytes with memberlist's default versions `[1, 5, 2, 0, 0, 0]`
//! ([`Versions::MEMBERLIST_0_2_2`]; memberlist refuses a member whose delegate range does not
//! overlap everyone's, so Serf's 2–5 cannot join such a cluster), no Serf message sent or read
//! (a user message is the application's own: a direct message, `Node::send`/`broadcast` as a
//! stream user message, a received one as `Event::Message` named by its source address), no
//! Serf state in push-pull,
//! and a meta that round-trips what a Go program wrote (no tags: empty; a lone `role` tag: its
//! bytes). Proven live against Go memberlist 0.2.2 (`tests/tests/memberlist_interop.rs`):
//! joins and push-pull both ways, probes acked both ways, failure and graceful leave both ways,
//! user messages both ways (`SendReliable`, `SendBestEffort`, `NotifyMsg`).
//!
//! **What a mixed cluster does without ours.** No view digests ride on pings and acks, so
//! views are repaired by the periodic push-pull alone (as in memberlist); push-pull carries
//! no accuser (a relayed suspicion counts as no confirmation); direct messages do not exist
//! (refused with `ApiError::NotInProfile`); acks carry no Vivaldi coordinate (Serf skips an
//! empty payload).
//!
//! **Encryption.** With [`crate::Config::keyring`] a node speaks memberlist's encryption as
//! `serf agent -encrypt` does (`crypt`, through the keyring's ciphers): every datagram sealed
//! whole with the primary key (encryption version 1, the one memberlist protocol 2 uses: no
//! padding, so sealing adds [`SEAL_OVERHEAD`] = 29 bytes, reserved when a datagram is packed
//! so it still fits the MTU); every stream message sealed as memberlist's encrypted message
//! (`[10][length][sealed]`, the five header bytes authenticated); input opened with any key
//! of the keyring (versions 0 and 1). `gossip_verify_incoming` and `gossip_verify_outgoing`
//! mean what memberlist's flags do: with incoming off, a datagram no key opens is read as
//! plaintext and a plaintext stream message is accepted; with outgoing off, nothing is
//! sealed. Refusals are counted by cause in [`crate::Stats`] (no key opens it, plaintext,
//! sealed while this node has no keyring, truncated); a memberlist datagram carries no mark
//! saying it is sealed, so a datagram that fails to open counts as plaintext when it decodes
//! as such and as sealed under another key otherwise. [`crate::Node::set_keyring`] changes
//! the keyring of a running node, and Serf's key queries (`serf keys -list/-install/-use/
//! -remove` issued from a serf agent) are answered in Serf's format, each node acting on its
//! own keyring, and a node's own cluster-wide key operations (`Node::install_key` and its
//! siblings) ask those queries and read Serf's answers (`keys`).
//!
//! **Name conflicts.** Serf's name-conflict query (`_serf_conflict`, asked by a serf agent
//! whose name memberlist reports taken) is answered as a serf agent answers it (`conflict`):
//! an ack if asked for, then the node's view of the member so named as Serf's `Member` (name,
//! address, port, tags, status; as versions the range the node advertises, since it keeps no
//! other member's version bytes), nil for a name it does not know, nothing about its own
//! name. It is answered to the asker's known address or to an address seen claiming the
//! name (the claimant), never surfaced as a query, and `_serf_conflict` is a reserved query
//! name on the profile. The captured conflict answers decode, re-encode byte for byte, and
//! are what a node with the same view sends; live, a second serf agent started under a
//! taken name loses the vote on the rookery agents' answers. A rookery node's own vote asks
//! the same query with its name as payload and reads Serf's answers, so serf agents and
//! rookery nodes alike vote; live, a rookery agent started under a serf agent's name loses
//! on the serf agents' answers. The tally is rookery's, not Serf's: Serf keeps its name only
//! when a strict majority of all answers (nil ones included) hold its address and gives it up
//! when nobody answers; a rookery node gives it up only when more members hold the
//! claimant's address than its own (a tie goes to the lower address), so a forged claim
//! nobody backs never costs a node its name.
//!
//! **Not yet.** The label header of later memberlist releases (0.2.2 has none; later releases prefix
//! `[244][len][label]`), memberlist 0.3+'s and Serf 0.10's additions (labels, the
//! `RequireNodeNames` destination names, metadata-only pings), the mio driver (which refuses
//! the profile at start), and sending compressed or CRC-protected datagrams (received ones
//! are read; memberlist reads both forms).

mod conflict;
mod convert;
mod crypt;
mod frame;
mod keys;
mod memberlist;
mod msgpack;
mod serf;
mod session;
#[cfg(test)]
mod tests;

pub(crate) use conflict::{
    answer_conflict_query, conflict_answer_addr, is_conflict_query, serf_member, CONFLICT_QUERY,
};
#[allow(unused_imports)]
pub(crate) use convert::*;
#[allow(unused_imports)]
pub(crate) use crypt::*;
#[allow(unused_imports)]
pub(crate) use frame::*;
pub(crate) use keys::{answer_key_query, is_key_query, key_request, read_key_answer};
#[allow(unused_imports)]
pub(crate) use memberlist::*;
#[allow(unused_imports)]
pub(crate) use serf::*;
pub(crate) use session::*;

/// Most member states a push-pull may carry (memberlist's 2026 hardening limit).
pub(crate) const MAX_PUSH_NODES: usize = 1_048_576;
/// Most entries in any other decoded collection (filters, keys, events, tags, status times).
pub(crate) const MAX_ITEMS: usize = 1_048_576;
/// Most fields a decoded struct may have (Go structs here have at most 11).
pub(crate) const MAX_FIELDS: usize = 64;
/// Longest name, address or other short string field, in bytes.
pub(crate) const MAX_STRING: usize = 64 << 10;
/// Longest payload, user message or push-pull user state, in bytes (memberlist's 20 MiB).
pub(crate) const MAX_PAYLOAD: usize = 20 << 20;
/// Most bytes a compressed message may expand to (memberlist's 40 MiB).
pub(crate) const MAX_DECOMPRESSED: usize = 40 << 20;

/// Why bytes did not decode as a HashiCorp message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HcError {
    /// Nothing to decode.
    Empty,
    /// The input ended inside a value (on a stream: more bytes are needed).
    Truncated,
    /// A message-type byte (memberlist's, Serf's or a filter's) names no known type.
    UnknownType(u8),
    /// A known message type where it cannot appear (a compound on a stream, a relay inside a
    /// relay, a compressed message inside a compressed stream message).
    Misplaced(u8),
    /// A field holds a msgpack value of the wrong kind.
    WrongType(&'static str),
    /// An integer field holds a value its Go type cannot (negative length, port over 65,535).
    OutOfRange(&'static str),
    /// A string, byte or length field exceeds its limit.
    TooLong {
        /// The field.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A collection holds more entries than its limit.
    TooMany {
        /// The field.
        field: &'static str,
        /// Its declared count.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string field is not UTF-8.
    BadUtf8(&'static str),
    /// Values nested deeper than the decoder follows.
    TooDeep,
    /// A datagram's CRC header does not match its bytes.
    BadChecksum {
        /// The CRC the header carries.
        expected: u32,
        /// The CRC of the bytes.
        actual: u32,
    },
    /// A compound message's lengths exceed its bytes.
    BadCompound,
    /// Bytes left over after a compound message's parts or a compressed message.
    TrailingBytes,
    /// A compression algorithm other than LZW (0).
    UnknownCompression(u8),
    /// LZW data that does not decode.
    BadCompression,
    /// An encrypted stream message (not opened by this codec yet).
    Encrypted {
        /// The sealed bytes that follow the five-byte header.
        len: usize,
    },
    /// An encryption key that is not 16, 24 or 32 bytes long.
    BadKeyLength(usize),
    /// An encryption version other than 0 or 1.
    UnknownEncryption(u8),
    /// No key opens the sealed message (or it was altered).
    Unopened,
    /// A version-0 sealed message whose PKCS#7 padding is wrong.
    BadPadding,
    /// A decoded message has no counterpart in our protocol, or lacks what ours needs (no
    /// address, short version field, unknown state).
    Unmappable(&'static str),
}

impl core::fmt::Display for HcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HcError::Empty => write!(f, "empty input"),
            HcError::Truncated => write!(f, "truncated input"),
            HcError::UnknownType(t) => write!(f, "unknown message type {t}"),
            HcError::Misplaced(t) => write!(f, "message type {t} not allowed here"),
            HcError::WrongType(field) => write!(f, "wrong msgpack type for {field}"),
            HcError::OutOfRange(field) => write!(f, "value out of range for {field}"),
            HcError::TooLong { field, len, max } => {
                write!(f, "{field}: {len} bytes exceeds limit {max}")
            }
            HcError::TooMany { field, len, max } => {
                write!(f, "{field}: {len} entries exceeds limit {max}")
            }
            HcError::BadUtf8(field) => write!(f, "{field} is not UTF-8"),
            HcError::TooDeep => write!(f, "nested too deep"),
            HcError::BadChecksum { expected, actual } => {
                write!(f, "checksum {actual:08x}, header says {expected:08x}")
            }
            HcError::BadCompound => write!(f, "compound lengths exceed the message"),
            HcError::TrailingBytes => write!(f, "trailing bytes"),
            HcError::UnknownCompression(a) => write!(f, "unknown compression algorithm {a}"),
            HcError::BadCompression => write!(f, "bad LZW data"),
            HcError::Encrypted { len } => write!(f, "encrypted stream message ({len} bytes)"),
            HcError::BadKeyLength(n) => write!(f, "{n}-byte key (16, 24 or 32 expected)"),
            HcError::UnknownEncryption(v) => write!(f, "unknown encryption version {v}"),
            HcError::Unopened => write!(f, "no key opens the message"),
            HcError::BadPadding => write!(f, "bad PKCS#7 padding"),
            HcError::Unmappable(what) => write!(f, "no counterpart: {what}"),
        }
    }
}

impl std::error::Error for HcError {}

impl From<HcError> for super::DecodeError {
    fn from(e: HcError) -> super::DecodeError {
        use super::DecodeError as D;
        match e {
            HcError::Empty => D::Empty,
            HcError::Truncated => D::Truncated,
            HcError::TooLong { len, max, .. } | HcError::TooMany { len, max, .. } => {
                D::TooLarge { len, max }
            }
            HcError::TrailingBytes => D::TrailingBytes,
            HcError::Unmappable(what) => D::Invalid(what),
            _ => D::Malformed,
        }
    }
}
