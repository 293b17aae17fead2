//! The native profile's codec: postcard-encoded messages in a versioned envelope, compound
//! datagrams with a message count, in-place encoding into datagrams, frames and queue buffers,
//! and the bounded decoders (with the fast paths of `fast` for the commonest shapes).

use serde::Serialize;

use super::fast::{self, RawAlive};
use super::frame::{frame_finish, frame_start};
use super::limits::Limits;
use super::message::*;
use super::{DecodeError, VERSION};

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
/// [`super::fast`]).
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
        if let Some((alive, tail)) = fast::take_alive(rest) {
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
    let (msg, rest) = match fast::take_push_pull(body) {
        Some((p, rest)) => (Message::PushPull(Box::new(p)), rest),
        None => postcard::take_from_bytes::<Message>(body)?,
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    limits.validate(&msg)?;
    Ok(msg)
}

/// A stream frame of one message: length prefix, envelope header, the message, encoded in
/// place.
pub(crate) fn frame_message(header: &[u8], msg: &Message) -> Vec<u8> {
    let mut out = frame_start(header);
    encode_into(msg, &mut out);
    frame_finish(out)
}

/// Append an alive message: the common shape (an IPv4 address, no tags: every newcomer's alive
/// is queued by every member) through the hand encoder, anything else through postcard — the
/// same bytes either way (tested).
pub(crate) fn encode_alive_into(a: &Alive, out: &mut Vec<u8>) {
    match a.addr {
        std::net::SocketAddr::V4(addr) if a.tags.is_empty() => {
            let raw = RawAlive {
                incarnation: a.incarnation,
                name: a.name.as_bytes(),
                addr,
                ltime: a.ltime,
            };
            fast::put_alive(&raw, out);
        }
        _ => {
            encode_into(&u32::from(fast::ALIVE_TAG), out);
            encode_into(a, out);
        }
    }
}
