//! memberlist's framing around messages: this module owns how messages are put into a
//! datagram (the CRC wrapper, compound messages, LZW compression) and onto a stream (the
//! self-delimiting stream messages: push-pull, user message, stream ping and ack, error).
//!
//! Datagram: `[12][crc32 IEEE, big-endian, of the rest][message]` when the receiver speaks
//! protocol 5 (`hasCrcMsg`; the CRC covers the inner type byte), else `[message]`; a message
//! is `[type][msgpack body]`, or a compound `[7][count: u8][count × length: u16 big-endian]
//! [parts]`, or a compressed `[9][msgpack {Algo, Buf}]` whose LZW-decoded bytes are again a
//! message. Go handles compound and compressed messages recursively; here the nesting is
//! bounded ([`MAX_NESTING`]).
//!
//! Stream: no length prefix. `[type][msgpack]…`: a push-pull is the header, the states and
//! `UserStateLen` raw bytes; a user message the header and `UserMsgLen` raw bytes. Go
//! compresses every stream message when compression is on (Serf's default): `[9][msgpack
//! {Algo, Buf}]`, the inner bytes starting with their own type byte.
//!
//! Encryption (`crypt` seals and opens; the keyring comes later): an encrypted datagram has no type byte at all — it is
//! `[encryption version][nonce][ciphertext and tag]` — so only the receiver's configuration
//! says whether to open it; an encrypted stream message starts with type byte 10
//! (`encryptMsg`) and a big-endian `u32` length of the sealed bytes that follow, the five
//! header bytes authenticated as associated data. [`decode_stream`] reports such a stream
//! as [`HcError::Encrypted`]; `crypt::open_stream` opens it.

use super::memberlist::{
    Ack, Compress, ErrResp, MsgType, PacketMsg, Ping, PushPull, UserMsgHeader,
};
use super::msgpack::{Reader, Writer};
use super::{HcError, MAX_DECOMPRESSED, MAX_PAYLOAD};

/// Deepest nesting of compound and compressed wrappers accepted in a datagram.
pub(crate) const MAX_NESTING: usize = 4;

/// CRC-32 (IEEE 802.3, reflected, the checksum Go's `crc32.ChecksumIEEE` computes).
pub(crate) fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A datagram's structure, as decoded (and as it re-encodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Packet {
    /// One message.
    Msg(PacketMsg),
    /// A compound message: its parts, each again a packet.
    Compound(Vec<Packet>),
    /// An LZW-compressed packet.
    Compressed(Box<Packet>),
    /// A packet behind a valid CRC header (only at the top of a datagram).
    Crc(Box<Packet>),
}

impl Packet {
    /// The messages inside, flattened, in order.
    pub(crate) fn messages(&self) -> Vec<&PacketMsg> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a PacketMsg>) {
        match self {
            Packet::Msg(m) => out.push(m),
            Packet::Compound(parts) => parts.iter().for_each(|p| p.collect(out)),
            Packet::Compressed(p) | Packet::Crc(p) => p.collect(out),
        }
    }

    /// Encode the datagram. `None` when a compound has more than 255 parts or a part longer
    /// than 65,535 bytes (Go would silently truncate the count or lengths).
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let mut w = Writer::default();
        self.encode_into(&mut w)?;
        Some(w.out)
    }

    fn encode_into(&self, w: &mut Writer) -> Option<()> {
        match self {
            Packet::Msg(m) => m.encode(w),
            Packet::Compound(parts) => {
                let count = u8::try_from(parts.len()).ok()?;
                let bodies = parts
                    .iter()
                    .map(Packet::encode)
                    .collect::<Option<Vec<_>>>()?;
                w.out.push(MsgType::Compound as u8);
                w.out.push(count);
                for b in &bodies {
                    w.out
                        .extend_from_slice(&u16::try_from(b.len()).ok()?.to_be_bytes());
                }
                for b in &bodies {
                    w.out.extend_from_slice(b);
                }
            }
            Packet::Compressed(p) => {
                let inner = p.encode()?;
                w.out.push(MsgType::Compress as u8);
                compress(&inner).encode(w);
            }
            Packet::Crc(p) => {
                let inner = p.encode()?;
                w.out.push(MsgType::HasCrc as u8);
                w.out.extend_from_slice(&crc32_ieee(&inner).to_be_bytes());
                w.out.extend_from_slice(&inner);
            }
        }
        Some(())
    }
}

/// Decode a plaintext datagram as memberlist does: an optional CRC header (checked), then a
/// message, compound or compressed message. A compound's parts that its bytes cannot hold
/// (Go logs them as truncated and handles the rest) are an error here.
pub(crate) fn decode_packet(buf: &[u8]) -> Result<Packet, HcError> {
    if buf.len() >= 5 && buf[0] == MsgType::HasCrc as u8 {
        let expected = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let body = &buf[5..];
        let actual = crc32_ieee(body);
        if actual != expected {
            return Err(HcError::BadChecksum { expected, actual });
        }
        return Ok(Packet::Crc(Box::new(decode_command(body, 0)?)));
    }
    decode_command(buf, 0)
}

fn decode_command(buf: &[u8], depth: usize) -> Result<Packet, HcError> {
    if depth > MAX_NESTING {
        return Err(HcError::TooDeep);
    }
    let (&t, body) = buf.split_first().ok_or(HcError::Empty)?;
    match MsgType::from_u8(t)? {
        MsgType::Compound => {
            let (&count, rest) = body.split_first().ok_or(HcError::Truncated)?;
            let count = usize::from(count);
            let lens = rest.get(..2 * count).ok_or(HcError::Truncated)?;
            let mut data = &rest[2 * count..];
            let mut parts = Vec::with_capacity(count);
            for l in lens.chunks_exact(2) {
                let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
                let part = data.get(..len).ok_or(HcError::BadCompound)?;
                data = &data[len..];
                parts.push(decode_command(part, depth + 1)?);
            }
            if !data.is_empty() {
                return Err(HcError::TrailingBytes);
            }
            Ok(Packet::Compound(parts))
        }
        MsgType::Compress => {
            let mut r = Reader::new(body);
            let c = Compress::decode(&mut r)?;
            let plain = decompress(&c)?;
            Ok(Packet::Compressed(Box::new(decode_command(
                &plain,
                depth + 1,
            )?)))
        }
        t => {
            let mut r = Reader::new(body);
            Ok(Packet::Msg(PacketMsg::decode(t, &mut r)?))
        }
    }
}

/// LZW-compress `data` as memberlist's `compressPayload` does (LSB first, 8-bit literals).
pub(crate) fn compress(data: &[u8]) -> Compress {
    let buf = weezl::encode::Encoder::new(weezl::BitOrder::Lsb, 8)
        .encode(data)
        .unwrap_or_default();
    Compress {
        algo: 0,
        buf: Some(buf),
    }
}

/// Decompress a [`Compress`] payload, refusing output beyond [`MAX_DECOMPRESSED`] bytes
/// (decompression bombs) before it is produced.
pub(crate) fn decompress(c: &Compress) -> Result<Vec<u8>, HcError> {
    if c.algo != 0 {
        return Err(HcError::UnknownCompression(c.algo));
    }
    let input = c.buf.as_deref().unwrap_or(&[]);
    let mut dec = weezl::decode::Decoder::new(weezl::BitOrder::Lsb, 8);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut consumed = 0;
    loop {
        let res = dec.decode_bytes(input.get(consumed..).unwrap_or(&[]), &mut chunk);
        consumed += res.consumed_in;
        if out.len() + res.consumed_out > MAX_DECOMPRESSED {
            return Err(HcError::TooLong {
                field: "decompressed",
                len: out.len() + res.consumed_out,
                max: MAX_DECOMPRESSED,
            });
        }
        out.extend_from_slice(chunk.get(..res.consumed_out).unwrap_or(&[]));
        let stalled = res.consumed_in == 0 && res.consumed_out == 0;
        match res.status {
            Ok(weezl::LzwStatus::Done) => return Ok(out),
            Ok(weezl::LzwStatus::Ok) if !stalled => {}
            Ok(weezl::LzwStatus::Ok) => return Err(HcError::BadCompression),
            // Go's reader takes the end of the input as the end of the data.
            Ok(weezl::LzwStatus::NoProgress) => {
                return if consumed >= input.len() {
                    Ok(out)
                } else {
                    Err(HcError::BadCompression)
                };
            }
            Err(_) => return Err(HcError::BadCompression),
        }
    }
}

/// A message as carried on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamMsg {
    /// A push-pull request or answer.
    PushPull(PushPull),
    /// A user (delegate) message sent reliably.
    User(Vec<u8>),
    /// A stream (TCP fallback) ping.
    Ping(Ping),
    /// The ack answering a stream ping.
    Ack(Ack),
    /// An error the other side relays.
    Err(ErrResp),
}

/// One stream message and how it was wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stream {
    /// Whether the message was LZW-compressed.
    pub compressed: bool,
    /// The message.
    pub msg: StreamMsg,
}

impl Stream {
    /// Encode the stream message (compressed when `compressed`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match &self.msg {
            StreamMsg::PushPull(p) => {
                w.out.push(MsgType::PushPull as u8);
                p.encode(&mut w);
            }
            StreamMsg::User(b) => {
                w.out.push(MsgType::User as u8);
                UserMsgHeader {
                    user_msg_len: b.len(),
                }
                .encode(&mut w);
                w.out.extend_from_slice(b);
            }
            StreamMsg::Ping(p) => {
                w.out.push(MsgType::Ping as u8);
                p.encode(&mut w);
            }
            StreamMsg::Ack(a) => {
                w.out.push(MsgType::Ack as u8);
                a.encode(&mut w);
            }
            StreamMsg::Err(e) => {
                w.out.push(MsgType::Err as u8);
                e.encode(&mut w);
            }
        }
        if !self.compressed {
            return w.out;
        }
        let mut outer = Writer::default();
        outer.out.push(MsgType::Compress as u8);
        compress(&w.out).encode(&mut outer);
        outer.out
    }
}

/// Decode one plaintext stream message from the front of `buf`: the message and the bytes it
/// took. [`HcError::Truncated`] means more bytes are needed (nothing is allocated for bytes
/// that have not arrived).
pub(crate) fn decode_stream(buf: &[u8]) -> Result<(Stream, usize), HcError> {
    let (&t, _) = buf.split_first().ok_or(HcError::Empty)?;
    match MsgType::from_u8(t)? {
        MsgType::Encrypt => {
            let len = buf.get(1..5).ok_or(HcError::Truncated)?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(HcError::TooLong {
                    field: "encrypted stream",
                    len,
                    max: MAX_PAYLOAD,
                });
            }
            Err(HcError::Encrypted { len })
        }
        MsgType::Compress => {
            let mut r = Reader::new(&buf[1..]);
            let c = Compress::decode(&mut r)?;
            let plain = decompress(&c)?;
            let (&inner_t, _) = plain.split_first().ok_or(HcError::Empty)?;
            if inner_t == MsgType::Compress as u8 || inner_t == MsgType::Encrypt as u8 {
                return Err(HcError::Misplaced(inner_t));
            }
            let (s, used) = decode_stream(&plain)?;
            if used != plain.len() {
                return Err(HcError::TrailingBytes);
            }
            Ok((
                Stream {
                    compressed: true,
                    msg: s.msg,
                },
                1 + r.pos(),
            ))
        }
        t => {
            let mut r = Reader::new(&buf[1..]);
            let msg = match t {
                MsgType::PushPull => StreamMsg::PushPull(PushPull::decode(&mut r)?),
                MsgType::User => {
                    let h = UserMsgHeader::decode(&mut r)?;
                    StreamMsg::User(r.take(h.user_msg_len)?.to_vec())
                }
                MsgType::Ping => StreamMsg::Ping(Ping::decode(&mut r)?),
                MsgType::Ack => StreamMsg::Ack(Ack::decode(&mut r)?),
                MsgType::Err => StreamMsg::Err(ErrResp::decode(&mut r)?),
                other => return Err(HcError::Misplaced(other as u8)),
            };
            Ok((
                Stream {
                    compressed: false,
                    msg,
                },
                1 + r.pos(),
            ))
        }
    }
}
