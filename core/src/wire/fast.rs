//! The decoder's fast path for the message a cluster receives most: an `Alive` about a member
//! with an IPv4 address and no tags. During formation every node receives each newcomer's
//! alive message `retransmit_mult · ⌈log10(n+1)⌉` times, so this shape is most of what a
//! datagram carries; reading it field by field here skips the general (serde) decoder's
//! per-field dispatch and the construction and drop of an empty tag map.
//!
//! [`take_push_pull`] does the same for a push-pull whose member states all have that shape and
//! which carries no user events: a joiner decodes the whole table of the member it joins
//! through.
//!
//! The encoder's fast path, [`put_state`], writes a push-pull member state of the same common
//! shape (IPv4, no tags, no accuser) as postcard would: a join's push-pull carries the whole
//! member table.
//!
//! The fast path accepts only byte strings the general decoder accepts, and yields the same
//! message and the same remaining bytes (tested against it here, and by the `decode` fuzz
//! target on every input). Anything else — another message kind, an IPv6 address, tags, a
//! name that is not UTF-8, malformed bytes — is left to the general decoder, which also
//! produces the error.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::codec::PUSH_PULL_VARIANT;
use super::message::{Alive, PushPull, PushState, WireStatus};
use crate::identity::{Name, Tags};

/// Postcard's variant index of `Message::Alive` (checked by a test against the encoder).
pub(super) const ALIVE_TAG: u8 = 5;
/// Postcard's variant index of `SocketAddr::V4`.
const V4_TAG: u8 = 0;

/// A postcard varint of an unsigned type `bits` wide (16, 32 or 64): at most `⌈bits/7⌉`
/// bytes, the last of which, if all are used, may only carry the remaining `bits mod 7` bits.
/// `None` exactly where postcard fails. One byte (the usual case) takes the first branch.
#[inline(always)]
fn varint(data: &[u8], bits: u32) -> Option<(u64, &[u8])> {
    match data {
        [b, rest @ ..] if *b < 0x80 => Some((u64::from(*b), rest)),
        [b0, b1, rest @ ..] if *b1 < 0x80 => {
            // Two bytes carry 14 bits: within every width used here.
            Some((u64::from(b0 & 0x7f) | u64::from(*b1) << 7, rest))
        }
        _ => varint_long(data, bits),
    }
}

#[inline(never)]
fn varint_long(data: &[u8], bits: u32) -> Option<(u64, &[u8])> {
    let max_len = bits.div_ceil(7) as usize;
    let last_max = (1u8 << (bits % 7)) - 1;
    let mut out = 0u64;
    for (i, &b) in data.iter().enumerate().take(max_len) {
        out |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i == max_len - 1 && b > last_max {
                return None;
            }
            return Some((out, &data[i + 1..]));
        }
    }
    None
}

/// An `Alive` message in its common shape — IPv4 address, no tags — with its name still in
/// the datagram's bytes: a node checks whether it already knows all it says before building
/// anything (see `Node::alive_is_known`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawAlive<'a> {
    pub incarnation: u32,
    /// The name's bytes, valid UTF-8 (checked when decoded).
    pub name: &'a [u8],
    pub addr: SocketAddrV4,
    pub ltime: u64,
}

impl RawAlive<'_> {
    /// The message itself.
    pub(crate) fn to_alive(self) -> Alive {
        // The bytes were checked to be UTF-8, so this borrows and replaces nothing.
        let name = String::from_utf8_lossy(self.name);
        Alive {
            incarnation: self.incarnation,
            name: Name::new(&*name),
            addr: SocketAddr::V4(self.addr),
            tags: Tags::new(),
            ltime: self.ltime,
        }
    }
}

/// Decode one `Alive` message in its common shape from the front of `data`; the remaining
/// bytes with it. `None`: not that shape (the general decoder decides).
pub(crate) fn take_alive(data: &[u8]) -> Option<(RawAlive<'_>, &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if tag != ALIVE_TAG {
        return None;
    }
    let (incarnation, rest) = varint(rest, 32)?;
    let (len, rest) = varint(rest, 64)?;
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (name, rest) = rest.split_at(len);
    if !name.is_ascii() && std::str::from_utf8(name).is_err() {
        return None;
    }
    let (&[family, a, b, c, d], rest) = rest.split_first_chunk::<5>()?;
    if family != V4_TAG {
        return None;
    }
    let (port, rest) = varint(rest, 16)?;
    let (&tags, rest) = rest.split_first()?;
    if tags != 0 {
        return None;
    }
    let (ltime, rest) = varint(rest, 64)?;
    let alive = RawAlive {
        incarnation: incarnation as u32,
        name,
        addr: SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port as u16),
        ltime,
    };
    Some((alive, rest))
}

/// A postcard `bool`: one byte, 0 or 1.
fn take_bool(data: &[u8]) -> Option<(bool, &[u8])> {
    match data.split_first()? {
        (0, rest) => Some((false, rest)),
        (1, rest) => Some((true, rest)),
        _ => None,
    }
}

/// A postcard string: its length, then that many bytes of UTF-8.
fn take_str(data: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = varint(data, 64)?;
    let len = usize::try_from(len).ok()?;
    if rest.len() < len {
        return None;
    }
    let (s, rest) = rest.split_at(len);
    Some((std::str::from_utf8(s).ok()?, rest))
}

/// A postcard `SocketAddr` holding an IPv4 address.
fn take_v4(data: &[u8]) -> Option<(SocketAddrV4, &[u8])> {
    let (&[family, a, b, c, d], rest) = data.split_first_chunk::<5>()?;
    if family != V4_TAG {
        return None;
    }
    let (port, rest) = varint(rest, 16)?;
    Some((
        SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port as u16),
        rest,
    ))
}

/// The fewest bytes a member state of the common shape takes (an empty name, one-byte
/// varints): a claimed count of states preallocates no more than the bytes could hold.
const MIN_STATE_LEN: usize = 12;

/// One member state of the common shape.
fn take_state(data: &[u8]) -> Option<(PushState, &[u8])> {
    let (name, rest) = take_str(data)?;
    let (addr, rest) = take_v4(rest)?;
    let (incarnation, rest) = varint(rest, 32)?;
    let (&[status, tags], rest) = rest.split_first_chunk::<2>()?;
    let status = match status {
        0 => WireStatus::Alive,
        1 => WireStatus::Suspect,
        2 => WireStatus::Dead,
        3 => WireStatus::Left,
        4 => WireStatus::Leaving,
        _ => return None,
    };
    if tags != 0 {
        return None;
    }
    let (ltime, rest) = varint(rest, 64)?;
    let (&accuser, rest) = rest.split_first()?;
    if accuser != 0 {
        return None;
    }
    let state = PushState {
        name: Name::new(name),
        addr: SocketAddr::V4(addr),
        incarnation: incarnation as u32,
        status,
        tags: Tags::new(),
        ltime,
        accuser: None,
    };
    Some((state, rest))
}

/// Decode a push-pull message (its variant tag first) whose reply address is IPv4, whose
/// member states all have the common shape and which carries no user events; the remaining
/// bytes with it. `None`: anything else (the general decoder decides).
pub(crate) fn take_push_pull(data: &[u8]) -> Option<(PushPull, &[u8])> {
    let (&tag, rest) = data.split_first()?;
    if u32::from(tag) != PUSH_PULL_VARIANT {
        return None;
    }
    let (id, rest) = varint(rest, 32)?;
    let (request, rest) = take_bool(rest)?;
    let (join, rest) = take_bool(rest)?;
    let (reply_to, rest) = take_v4(rest)?;
    let (sender, rest) = take_str(rest)?;
    let (count, mut rest) = varint(rest, 64)?;
    let count = usize::try_from(count).ok()?;
    let mut states = Vec::with_capacity(count.min(rest.len() / MIN_STATE_LEN));
    for _ in 0..count {
        let (state, tail) = take_state(rest)?;
        states.push(state);
        rest = tail;
    }
    let (member_ltime, rest) = varint(rest, 64)?;
    let (event_ltime, rest) = varint(rest, 64)?;
    let (query_ltime, rest) = varint(rest, 64)?;
    let (&events, rest) = rest.split_first()?;
    if events != 0 {
        return None;
    }
    let p = PushPull {
        id: id as u32,
        request,
        join,
        reply_to: SocketAddr::V4(reply_to),
        sender: Name::new(sender),
        states,
        member_ltime,
        event_ltime,
        query_ltime,
        events: Vec::new(),
    };
    Some((p, rest))
}

/// Append `n` as a postcard (LEB128) varint.
#[inline(always)]
fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Append the alive message `a` stands for exactly as postcard encodes it (tested against it).
pub(crate) fn put_alive(a: &RawAlive<'_>, out: &mut Vec<u8>) {
    out.push(ALIVE_TAG);
    put_varint(u64::from(a.incarnation), out);
    put_varint(a.name.len() as u64, out);
    out.extend_from_slice(a.name);
    out.push(V4_TAG);
    out.extend_from_slice(&a.addr.ip().octets());
    put_varint(u64::from(a.addr.port()), out);
    // An empty tag map, then the join intent's time.
    out.push(0);
    put_varint(a.ltime, out);
}

/// A push-pull member state in its common shape — IPv4 address, no tags, no accuser — with
/// the wire status as its variant index (the fields of `PushState` in its order).
pub(crate) struct PlainState<'a> {
    pub name: &'a [u8],
    pub addr: SocketAddrV4,
    pub incarnation: u32,
    pub status: u8,
    pub ltime: u64,
}

/// Append `s` exactly as postcard encodes the `PushState` it stands for (tested against it).
pub(crate) fn put_state(s: &PlainState<'_>, out: &mut Vec<u8>) {
    put_varint(s.name.len() as u64, out);
    out.extend_from_slice(s.name);
    out.push(V4_TAG);
    out.extend_from_slice(&s.addr.ip().octets());
    put_varint(u64::from(s.addr.port()), out);
    put_varint(u64::from(s.incarnation), out);
    put_varint(u64::from(s.status), out);
    // An empty tag map, the ltime, no accuser.
    out.push(0);
    put_varint(s.ltime, out);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_message, Message};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::net::SocketAddrV6;

    fn general(data: &[u8]) -> Option<(Message, &[u8])> {
        postcard::take_from_bytes::<Message>(data).ok()
    }

    /// Whatever the fast path accepts, the general decoder accepts too, with the same result.
    fn agrees(data: &[u8]) -> bool {
        match take_alive(data) {
            None => false,
            Some((a, rest)) => {
                let (msg, tail) = general(data).expect("the general decoder accepts it");
                assert_eq!(msg, Message::Alive(a.to_alive()));
                assert_eq!(tail, rest);
                true
            }
        }
    }

    fn alive(name: &str, incarnation: u32, addr: SocketAddr, tags: Tags, ltime: u64) -> Vec<u8> {
        let a = Alive {
            incarnation,
            name: name.into(),
            addr,
            tags,
            ltime,
        };
        encode_message(&Message::Alive(a))
    }

    #[test]
    fn the_tags_match_the_encoder() {
        let v4 = "10.0.0.1:7946".parse().unwrap();
        let bytes = alive("n", 0, v4, Tags::new(), 0);
        assert_eq!(bytes[0], ALIVE_TAG);
        assert_eq!(bytes[4], V4_TAG);
    }

    #[test]
    fn common_shapes_take_the_fast_path_and_agree() {
        let long = "a-member-name-longer-than-twenty-three-bytes";
        for name in ["n", "node-17", "exactly-23-bytes-long!!", long] {
            for incarnation in [0, 1, 127, 128, 300, (1 << 21) - 1, 1 << 28, u32::MAX] {
                for port in [0, 1, 127, 128, 7946, 16383, 16384, 65535] {
                    for ltime in [0, 1, 1 << 40, (1 << 63) - 1, 1 << 63, u64::MAX] {
                        let addr = SocketAddr::from(([10, 1, 2, 3], port));
                        let mut bytes = alive(name, incarnation, addr, Tags::new(), ltime);
                        bytes.extend_from_slice(&[7, 7]);
                        assert!(agrees(&bytes), "{name} {incarnation} {port} {ltime}");
                        let mut again = Vec::new();
                        put_alive(&take_alive(&bytes).unwrap().0, &mut again);
                        assert_eq!(again, bytes[..bytes.len() - 2], "the encoder agrees too");
                        assert_eq!(take_alive(&bytes).unwrap().1, [7, 7]);
                    }
                }
            }
        }
    }

    #[test]
    fn plain_states_encode_as_postcard_does() {
        use crate::wire::{PushState, WireStatus};
        let long = "n".repeat(200);
        let statuses = [
            WireStatus::Alive,
            WireStatus::Suspect,
            WireStatus::Dead,
            WireStatus::Left,
            WireStatus::Leaving,
        ];
        for name in ["n", "node-17", long.as_str()] {
            for incarnation in [0, 127, 128, 16384, u32::MAX] {
                for port in [0, 127, 128, 7946, 65535] {
                    for ltime in [0, 1, 127, 128, 1 << 40, u64::MAX] {
                        for status in statuses {
                            let addr = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), port);
                            let state = PushState {
                                name: name.into(),
                                addr: SocketAddr::V4(addr),
                                incarnation,
                                status,
                                tags: Tags::new(),
                                ltime,
                                accuser: None,
                            };
                            let plain = PlainState {
                                name: name.as_bytes(),
                                addr,
                                incarnation,
                                status: status as u8,
                                ltime,
                            };
                            let mut out = vec![9];
                            put_state(&plain, &mut out);
                            let mut want = Vec::new();
                            crate::wire::encode_into(&state, &mut want);
                            assert_eq!(out[1..], want[..], "{name} {incarnation} {port} {ltime}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn other_shapes_are_left_to_the_general_decoder() {
        let v4 = SocketAddr::from(([10, 1, 2, 3], 7946));
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7946, 0, 0));
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        let cases = [
            alive("n", 0, v6, Tags::new(), 0),
            alive("n", 0, v4, tags, 0),
            encode_message(&Message::Nack { seq: 5 }),
        ];
        for bytes in cases {
            assert!(general(&bytes).is_some());
            assert!(take_alive(&bytes).is_none(), "{bytes:?}");
        }
    }

    /// `base` with 1 to `edits` random edits (a byte overwritten, the tail cut, a byte
    /// inserted), its first byte (the message kind) kept as `tag`.
    fn damaged(rng: &mut ChaCha8Rng, base: &[u8], edits: usize, tag: u8) -> Vec<u8> {
        let mut bytes = base.to_vec();
        for _ in 0..rng.random_range(1..=edits) {
            match rng.random_range(0..3) {
                0 => {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                1 => {
                    let i = rng.random_range(0..bytes.len());
                    bytes.truncate(i);
                }
                _ => {
                    let i = rng.random_range(0..=bytes.len());
                    bytes.insert(i, rng.random());
                }
            }
            if bytes.is_empty() {
                bytes.push(tag);
            }
        }
        bytes[0] = tag;
        bytes
    }

    #[test]
    fn damaged_bytes_never_take_the_fast_path_wrongly() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let v4 = SocketAddr::from(([192, 168, 0, 9], 7946));
        let base = alive("node-42", 300, v4, Tags::new(), 1 << 20);
        let mut fast = 0;
        for _ in 0..200_000 {
            let bytes = damaged(&mut rng, &base, 3, ALIVE_TAG);
            fast += usize::from(agrees(&bytes));
        }
        // The damage leaves many inputs in the fast path's shape: the comparison did run.
        assert!(fast > 10_000, "only {fast} inputs took the fast path");
    }

    use crate::wire::{PushState, UserEventMsg, WireStatus};

    /// Whatever the push-pull fast path accepts, the general decoder accepts too, with the
    /// same result.
    fn push_pull_agrees(data: &[u8]) -> bool {
        match take_push_pull(data) {
            None => false,
            Some((p, rest)) => {
                let (msg, tail) = general(data).expect("the general decoder accepts it");
                assert_eq!(msg, Message::PushPull(Box::new(p)));
                assert_eq!(tail, rest);
                true
            }
        }
    }

    fn state(name: &str, incarnation: u32, port: u16, status: WireStatus, ltime: u64) -> PushState {
        PushState {
            name: name.into(),
            addr: SocketAddr::from(([10, 0, 0, 7], port)),
            incarnation,
            status,
            tags: Tags::new(),
            ltime,
            accuser: None,
        }
    }

    fn push_pull(
        reply_to: SocketAddr,
        states: Vec<PushState>,
        events: Vec<UserEventMsg>,
    ) -> Vec<u8> {
        encode_message(&Message::PushPull(Box::new(PushPull {
            id: 300,
            request: true,
            join: false,
            reply_to,
            sender: "node-1".into(),
            states,
            member_ltime: 1 << 35,
            event_ltime: 7,
            query_ltime: 128,
            events,
        })))
    }

    fn every_state_shape() -> Vec<PushState> {
        let long = "m".repeat(150);
        let mut out = Vec::new();
        for (i, status) in [
            WireStatus::Alive,
            WireStatus::Suspect,
            WireStatus::Dead,
            WireStatus::Left,
            WireStatus::Leaving,
        ]
        .into_iter()
        .enumerate()
        {
            for (j, incarnation) in [0, 127, 128, u32::MAX].into_iter().enumerate() {
                let name = if j == 3 {
                    long.clone()
                } else {
                    format!("n{i}-{j}")
                };
                let port = [0, 127, 128, 65535][j];
                let ltime = [0, 127, 1 << 40, u64::MAX][(i + j) % 4];
                out.push(state(&name, incarnation, port, status, ltime));
            }
        }
        out
    }

    #[test]
    fn common_push_pulls_take_the_fast_path_and_agree() {
        let v4 = SocketAddr::from(([192, 168, 1, 2], 7946));
        for states in [Vec::new(), every_state_shape()] {
            let mut bytes = push_pull(v4, states, Vec::new());
            bytes.extend_from_slice(&[7, 7]);
            assert!(push_pull_agrees(&bytes));
            assert_eq!(take_push_pull(&bytes).unwrap().1, [7, 7]);
        }
    }

    #[test]
    fn other_push_pulls_are_left_to_the_general_decoder() {
        let v4 = SocketAddr::from(([192, 168, 1, 2], 7946));
        let v6 = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 7946, 0, 0));
        let mut tagged = state("t", 1, 2, WireStatus::Alive, 3);
        tagged.tags.insert("role".into(), "web".into());
        let mut accused = state("s", 1, 2, WireStatus::Suspect, 3);
        accused.accuser = Some("a".into());
        let mut six = state("six", 1, 2, WireStatus::Alive, 3);
        six.addr = v6;
        let event = UserEventMsg {
            ltime: 1,
            name: "deploy".into(),
            payload: bytes::Bytes::from_static(b"x"),
            coalesce: false,
        };
        let plain = || state("p", 1, 2, WireStatus::Alive, 3);
        let cases = [
            push_pull(v6, vec![plain()], Vec::new()),
            push_pull(v4, vec![plain(), tagged], Vec::new()),
            push_pull(v4, vec![accused, plain()], Vec::new()),
            push_pull(v4, vec![six], Vec::new()),
            push_pull(v4, vec![plain()], vec![event]),
        ];
        for bytes in cases {
            assert!(general(&bytes).is_some());
            assert!(take_push_pull(&bytes).is_none(), "{bytes:?}");
        }
    }

    #[test]
    fn damaged_push_pulls_never_take_the_fast_path_wrongly() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let v4 = SocketAddr::from(([192, 168, 1, 2], 7946));
        let base = push_pull(v4, every_state_shape()[..4].to_vec(), Vec::new());
        let mut fast = 0;
        for _ in 0..100_000 {
            let bytes = damaged(&mut rng, &base, 2, PUSH_PULL_VARIANT as u8);
            fast += usize::from(push_pull_agrees(&bytes));
        }
        assert!(fast > 5_000, "only {fast} inputs took the fast path");
    }
}
