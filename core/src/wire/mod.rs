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
//! have hand-written fast paths (`fast`) that accept only what postcard accepts, with the
//! same result.
//!
//! The layers: `message` holds the message types (what is said, below any codec); `limits`
//! validates decoded messages against the configuration; `codec` is the native profile's
//! postcard encoding of datagrams and messages, with its hand-written fast paths (`fast`) and
//! the push-pull writer (`push_pull`) behind `encode_*`/writer functions; `frame` is the stream
//! framing every driver shares; `hashicorp` is the second profile, memberlist's and Serf's
//! protocols as Go writes them ([`crate::WireProfile::HashiCorp`]). Protocol code builds and reads message values and calls these
//! functions: it never knows a byte layout.

mod codec;
mod fast;
mod frame;
// Parts of the codec (encryption, Serf's key and conflict payloads) are proven against the
// real peers before the node uses them.
#[allow(dead_code)]
pub(crate) mod hashicorp;
mod limits;
mod message;
mod push_pull;
#[cfg(test)]
mod tests;

pub(crate) use codec::*;
pub(crate) use fast::RawAlive;
#[cfg(feature = "arbitrary")]
pub(crate) use fast::{take_alive, take_push_pull};
pub use frame::FrameDecoder;
pub(crate) use limits::*;
pub(crate) use message::*;
pub(crate) use push_pull::{NameBytes, PushPullWriter, StateRef};

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
#[non_exhaustive]
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
