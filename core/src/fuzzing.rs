//! Fuzzing support, compiled only with the `arbitrary` cargo feature.
//!
//! The wire types stay crate-private; this module is the one door fuzzers and hostile-input
//! tests use to reach them. It offers an opaque [`WireMessage`] that implements
//! [`arbitrary::Arbitrary`] (so fuzzers mutate *messages*, not bytes, and reach deep protocol
//! states), encoders that wrap messages in a valid envelope (a datagram or a stream frame), the
//! same decoders the [`crate::Node`] uses, and a few constructors and accessors a harness needs
//! to answer what a node sent (acks for its pings, push-pull responses for its joins).
//!
//! The encoders here build plaintext envelopes: whatever a fuzzer builds is exactly what a node
//! without a keyring (or with `gossip_verify_incoming` off) would accept. [`seal_datagram`] and
//! [`seal_frame_body`] seal them with a given keyring (the sealed envelope of the `keyring`
//! module), and [`open_sealed`] opens one — the door fuzz targets and hostile-network tests use
//! to build sealed traffic, right or wrong.

use std::net::SocketAddr;

use crate::config::Config;
use crate::identity::{MemberStatus, Name, Tags};
use crate::wire::{
    self, Accusation, Alive, DecodeError, Digest, Envelope, Limits, Message, PushPull, PushState,
    WireStatus,
};

/// One protocol message, opaque. Build it with [`arbitrary::Arbitrary`], the constructors
/// below, or by decoding; inspect it with [`WireMessage::info`].
#[derive(Clone, Debug, PartialEq, Eq, arbitrary::Arbitrary)]
pub struct WireMessage(Message);

/// What kind of message a [`WireMessage`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Direct probe.
    Ping,
    /// Probe answer.
    Ack,
    /// Indirect probe relay got no answer.
    Nack,
    /// Request to probe someone on the sender's behalf.
    IndirectPing,
    /// Reliable-channel fallback probe.
    StreamPing,
    /// Alive announcement.
    Alive,
    /// Suspicion.
    Suspect,
    /// Failure verdict (or graceful leave when `from` is the member itself).
    Dead,
    /// Push-pull state exchange.
    PushPull,
    /// Serf leave intent.
    LeaveIntent,
    /// User event.
    UserEvent,
    /// Query.
    Query,
    /// Query ack or response.
    QueryResponse,
    /// Query response to forward.
    RelayResponse,
    /// Direct message.
    Direct,
    /// Direct message awaiting a receipt.
    DirectAcked,
    /// Receipt of an acknowledged direct message.
    DirectAck,
    /// Revival check's probe (answered with a bare ack).
    CheckPing,
}

/// The fields of a message a harness needs to answer it (absent fields are `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// The message kind.
    pub kind: MessageKind,
    /// Probe sequence number (ping, ack, nack, indirect and stream ping).
    pub seq: Option<u32>,
    /// Push-pull exchange id.
    pub id: Option<u32>,
    /// Push-pull: whether it is a request.
    pub request: Option<bool>,
    /// Probe target or the member an update is about.
    pub name: Option<Name>,
    /// Incarnation of an update.
    pub incarnation: Option<u32>,
    /// Address carried: the reply address of a stream ping or push-pull, the target address of
    /// an indirect ping, the member address of an alive message.
    pub addr: Option<SocketAddr>,
    /// Number of member states in a push-pull.
    pub states: usize,
    /// Lamport time carried (alive, intent, user event, query, query response).
    pub ltime: Option<u64>,
    /// The sender's number of an acknowledged direct message (the message and its receipt).
    pub message: Option<u64>,
}

/// One member's state for [`WireMessage::push_pull`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    /// Member name.
    pub name: Name,
    /// Member address.
    pub addr: SocketAddr,
    /// Incarnation.
    pub incarnation: u32,
    /// Status ([`MemberStatus::Failed`] travels as dead).
    pub status: MemberStatus,
    /// Tags.
    pub tags: Tags,
}

impl WireMessage {
    /// `Ping { seq, target }`.
    pub fn ping(seq: u32, target: &str) -> WireMessage {
        WireMessage(Message::Ping {
            seq,
            target: Name::new(target),
            digest: None,
        })
    }

    /// `Ack { seq }`, with an optional view digest (`hash`, `stable`).
    pub fn ack(seq: u32, digest: Option<([u8; 4], bool)>) -> WireMessage {
        WireMessage(Message::Ack {
            seq,
            digest: digest.map(|(hash, stable)| Digest {
                hash,
                live: 0,
                events: 0,
                stable,
            }),
        })
    }

    /// "Probe `target` at `addr` for me" (an indirect ping request).
    pub fn indirect_ping(seq: u32, target: &str, addr: SocketAddr) -> WireMessage {
        WireMessage(Message::IndirectPing {
            seq,
            target: Name::new(target),
            addr,
        })
    }

    /// A stream (reliable-channel) ping of `target`, acked at `reply_to`.
    pub fn stream_ping(seq: u32, target: &str, reply_to: SocketAddr) -> WireMessage {
        WireMessage(Message::StreamPing {
            seq,
            target: Name::new(target),
            reply_to,
        })
    }

    /// `Nack { seq }`.
    pub fn nack(seq: u32) -> WireMessage {
        WireMessage(Message::Nack { seq })
    }

    /// "`name` at `addr` is alive at `incarnation` with `tags`."
    pub fn alive(name: &str, addr: SocketAddr, incarnation: u32, tags: Tags) -> WireMessage {
        WireMessage(Message::Alive(Alive {
            incarnation,
            name: Name::new(name),
            addr,
            tags,
            ltime: 0,
        }))
    }

    /// "`from` suspects `name` at `incarnation`."
    pub fn suspect(name: &str, incarnation: u32, from: &str) -> WireMessage {
        WireMessage(Message::Suspect(Accusation {
            incarnation,
            name: Name::new(name),
            from: Name::new(from),
        }))
    }

    /// "`from` declares `name` failed at `incarnation`" (a leave when `from == name`).
    pub fn dead(name: &str, incarnation: u32, from: &str) -> WireMessage {
        WireMessage(Message::Dead(Accusation {
            incarnation,
            name: Name::new(name),
            from: Name::new(from),
        }))
    }

    /// "`name` at `addr` is alive at `incarnation`", stamped with join-intent Lamport time
    /// `ltime`.
    pub fn alive_at(name: &str, addr: SocketAddr, incarnation: u32, ltime: u64) -> WireMessage {
        WireMessage(Message::Alive(Alive {
            incarnation,
            name: Name::new(name),
            addr,
            tags: Tags::new(),
            ltime,
        }))
    }

    /// A leave intent about `name` at member Lamport time `ltime` (`prune`: a force-remove
    /// that erases it).
    pub fn leave_intent(name: &str, ltime: u64, prune: bool) -> WireMessage {
        WireMessage(Message::LeaveIntent(wire::Intent {
            ltime,
            name: Name::new(name),
            prune,
        }))
    }

    /// A direct message claiming to come from `from`.
    pub fn direct(from: &str, payload: &[u8]) -> WireMessage {
        WireMessage(Message::Direct {
            from: Name::new(from),
            payload: bytes::Bytes::copy_from_slice(payload),
        })
    }

    /// A user event `name` with `payload` at event Lamport time `ltime`.
    pub fn user_event(ltime: u64, name: &str, payload: &[u8]) -> WireMessage {
        WireMessage(Message::UserEvent(wire::UserEventMsg {
            ltime,
            name: Name::new(name),
            payload: bytes::Bytes::copy_from_slice(payload),
            coalesce: false,
        }))
    }

    /// Query `name` (id `id`, query Lamport time `ltime`) from `from`, answers to `addr`, with
    /// no filters and a 5 s timeout.
    pub fn query(
        ltime: u64,
        id: u32,
        from: &str,
        addr: SocketAddr,
        name: &str,
        relay_factor: u8,
        ack: bool,
    ) -> WireMessage {
        WireMessage(Message::Query(Box::new(wire::QueryMsg {
            ltime,
            id,
            from: Name::new(from),
            addr,
            filter_nodes: Vec::new(),
            filter_tags: Vec::new(),
            ack,
            relay_factor,
            timeout_ms: 5000,
            name: Name::new(name),
            payload: bytes::Bytes::new(),
        })))
    }

    /// An answer from `from` to query `id` at `ltime`.
    pub fn query_response(ltime: u64, id: u32, from: &str, payload: &[u8]) -> WireMessage {
        WireMessage(Message::QueryResponse(wire::QueryResp {
            ltime,
            id,
            from: Name::new(from),
            ack: false,
            payload: bytes::Bytes::copy_from_slice(payload),
        }))
    }

    /// Ask the receiver to forward an answer to query `id` at `ltime` on to `to`.
    pub fn relay_response(to: SocketAddr, ltime: u64, id: u32, from: &str) -> WireMessage {
        WireMessage(Message::RelayResponse {
            to,
            resp: wire::QueryResp {
                ltime,
                id,
                from: Name::new(from),
                ack: false,
                payload: bytes::Bytes::new(),
            },
        })
    }

    /// The query's name, for a query.
    pub fn query_name(&self) -> Option<&str> {
        match &self.0 {
            Message::Query(q) => Some(&q.name),
            _ => None,
        }
    }

    /// A push-pull request or response carrying `states`.
    pub fn push_pull(
        id: u32,
        request: bool,
        join: bool,
        reply_to: SocketAddr,
        sender: &str,
        states: Vec<StateEntry>,
    ) -> WireMessage {
        let states = states
            .into_iter()
            .map(|s| PushState {
                name: s.name,
                addr: s.addr,
                incarnation: s.incarnation,
                status: match s.status {
                    MemberStatus::Alive => WireStatus::Alive,
                    MemberStatus::Suspect => WireStatus::Suspect,
                    MemberStatus::Leaving => WireStatus::Leaving,
                    MemberStatus::Failed => WireStatus::Dead,
                    MemberStatus::Left => WireStatus::Left,
                },
                tags: s.tags,
                ltime: 0,
                accuser: None,
            })
            .collect();
        WireMessage(Message::PushPull(Box::new(PushPull {
            id,
            request,
            join,
            reply_to,
            sender: Name::new(sender),
            states,
            member_ltime: 0,
            event_ltime: 0,
            query_ltime: 0,
            events: Vec::new(),
        })))
    }

    /// The fields a harness needs to answer this message.
    pub fn info(&self) -> MessageInfo {
        let mut i = MessageInfo {
            kind: MessageKind::Ping,
            seq: None,
            id: None,
            request: None,
            name: None,
            incarnation: None,
            addr: None,
            states: 0,
            ltime: None,
            message: None,
        };
        match &self.0 {
            Message::Ping { seq, target, .. } => {
                i.seq = Some(*seq);
                i.name = Some(target.clone());
            }
            Message::CheckPing { seq, target } => {
                i.kind = MessageKind::CheckPing;
                i.seq = Some(*seq);
                i.name = Some(target.clone());
            }
            Message::Ack { seq, .. } => {
                i.kind = MessageKind::Ack;
                i.seq = Some(*seq);
            }
            Message::Nack { seq } => {
                i.kind = MessageKind::Nack;
                i.seq = Some(*seq);
            }
            Message::IndirectPing { seq, target, addr } => {
                i.kind = MessageKind::IndirectPing;
                i.seq = Some(*seq);
                i.name = Some(target.clone());
                i.addr = Some(*addr);
            }
            Message::StreamPing {
                seq,
                target,
                reply_to,
            } => {
                i.kind = MessageKind::StreamPing;
                i.seq = Some(*seq);
                i.name = Some(target.clone());
                i.addr = Some(*reply_to);
            }
            Message::Alive(a) => {
                i.kind = MessageKind::Alive;
                i.name = Some(a.name.clone());
                i.incarnation = Some(a.incarnation);
                i.addr = Some(a.addr);
                i.ltime = Some(a.ltime);
            }
            Message::Suspect(s) | Message::Dead(s) => {
                i.kind = if matches!(self.0, Message::Suspect(_)) {
                    MessageKind::Suspect
                } else {
                    MessageKind::Dead
                };
                i.name = Some(s.name.clone());
                i.incarnation = Some(s.incarnation);
            }
            Message::PushPull(p) => {
                i.kind = MessageKind::PushPull;
                i.id = Some(p.id);
                i.request = Some(p.request);
                i.name = Some(p.sender.clone());
                i.addr = Some(p.reply_to);
                i.states = p.states.len();
            }
            Message::LeaveIntent(x) => {
                i.kind = MessageKind::LeaveIntent;
                i.name = Some(x.name.clone());
                i.ltime = Some(x.ltime);
            }
            Message::UserEvent(e) => {
                i.kind = MessageKind::UserEvent;
                i.name = Some(e.name.clone());
                i.ltime = Some(e.ltime);
            }
            Message::Query(q) => {
                i.kind = MessageKind::Query;
                i.id = Some(q.id);
                i.name = Some(q.from.clone());
                i.addr = Some(q.addr);
                i.ltime = Some(q.ltime);
            }
            Message::QueryResponse(r) => {
                i.kind = MessageKind::QueryResponse;
                i.id = Some(r.id);
                i.name = Some(r.from.clone());
                i.ltime = Some(r.ltime);
            }
            Message::RelayResponse { to, resp } => {
                i.kind = MessageKind::RelayResponse;
                i.id = Some(resp.id);
                i.name = Some(resp.from.clone());
                i.addr = Some(*to);
            }
            Message::Direct { from, .. } => {
                i.kind = MessageKind::Direct;
                i.name = Some(from.clone());
            }
            Message::DirectAcked { from, id, .. } => {
                i.kind = MessageKind::DirectAcked;
                i.name = Some(from.clone());
                i.message = Some(*id);
            }
            Message::DirectAck { from, id } => {
                i.kind = MessageKind::DirectAck;
                i.name = Some(from.clone());
                i.message = Some(*id);
            }
        }
        i
    }

    /// Replace member names (probe targets, update subjects, accusers, push-pull senders and
    /// states): `f` returns the replacement, or `None` to keep the name.
    pub fn map_names(&mut self, mut f: impl FnMut(&str) -> Option<Name>) {
        let mut name = |n: &mut Name| {
            if let Some(new) = f(n) {
                *n = new;
            }
        };
        match &mut self.0 {
            Message::Ping { target, .. }
            | Message::CheckPing { target, .. }
            | Message::IndirectPing { target, .. }
            | Message::StreamPing { target, .. } => name(target),
            Message::Ack { .. } | Message::Nack { .. } => {}
            Message::Alive(a) => name(&mut a.name),
            Message::Suspect(s) | Message::Dead(s) => {
                name(&mut s.name);
                name(&mut s.from);
            }
            Message::PushPull(p) => {
                name(&mut p.sender);
                for s in &mut p.states {
                    name(&mut s.name);
                    if let Some(a) = &mut s.accuser {
                        name(a);
                    }
                }
            }
            Message::LeaveIntent(x) => name(&mut x.name),
            Message::UserEvent(_) => {}
            Message::Query(q) => name(&mut q.from),
            Message::QueryResponse(r) | Message::RelayResponse { resp: r, .. } => name(&mut r.from),
            Message::Direct { from, .. }
            | Message::DirectAcked { from, .. }
            | Message::DirectAck { from, .. } => name(from),
        }
    }

    /// Replace every socket address the message carries.
    pub fn map_addrs(&mut self, mut f: impl FnMut(SocketAddr) -> SocketAddr) {
        match &mut self.0 {
            Message::Ping { .. }
            | Message::CheckPing { .. }
            | Message::Ack { .. }
            | Message::Nack { .. }
            | Message::Suspect(_)
            | Message::Dead(_) => {}
            Message::IndirectPing { addr, .. } => *addr = f(*addr),
            Message::StreamPing { reply_to, .. } => *reply_to = f(*reply_to),
            Message::Alive(a) => a.addr = f(a.addr),
            Message::PushPull(p) => {
                p.reply_to = f(p.reply_to);
                for s in &mut p.states {
                    s.addr = f(s.addr);
                }
            }
            Message::Query(q) => q.addr = f(q.addr),
            Message::RelayResponse { to, .. } => *to = f(*to),
            Message::LeaveIntent(_)
            | Message::UserEvent(_)
            | Message::QueryResponse(_)
            | Message::Direct { .. }
            | Message::DirectAcked { .. }
            | Message::DirectAck { .. } => {}
        }
    }

    /// Replace every incarnation number the message carries.
    pub fn map_incarnations(&mut self, mut f: impl FnMut(u32) -> u32) {
        match &mut self.0 {
            Message::Alive(a) => a.incarnation = f(a.incarnation),
            Message::Suspect(s) | Message::Dead(s) => s.incarnation = f(s.incarnation),
            Message::PushPull(p) => {
                for s in &mut p.states {
                    s.incarnation = f(s.incarnation);
                }
            }
            _ => {}
        }
    }

    /// The message's postcard body, without envelope.
    pub fn encode_body(&self) -> Vec<u8> {
        wire::encode_message(&self.0)
    }
}

fn limits(cfg: &Config) -> Limits {
    Limits::from_config(cfg)
}

/// Check `msg` against the protocol limits of `cfg` (name lengths, tag sizes, push-pull size):
/// the check every decoded message passes before a node acts on it.
pub fn validate(cfg: &Config, msg: &WireMessage) -> Result<(), DecodeError> {
    limits(cfg).validate(&msg.0)
}

/// A complete datagram (envelope with `label`, message count, messages). No MTU is applied.
pub fn encode_datagram(label: Option<&str>, msgs: &[WireMessage]) -> Vec<u8> {
    let body: Vec<u8> = msgs
        .iter()
        .flat_map(|m| wire::encode_message(&m.0))
        .collect();
    wire::assemble_datagram_body(&wire::header(label), msgs.len(), &body)
}

/// A complete stream frame: length prefix, envelope with `label`, one message.
pub fn encode_frame(label: Option<&str>, msg: &WireMessage) -> Vec<u8> {
    wire::frame_message(&wire::header(label), &msg.0)
}

/// A stream frame body (what [`crate::Node::handle_stream`] takes): envelope and message,
/// without the length prefix.
pub fn encode_frame_body(label: Option<&str>, msg: &WireMessage) -> Vec<u8> {
    let mut out = wire::header(label);
    out.extend(wire::encode_message(&msg.0));
    out
}

/// Check the decoder's fast paths (alive messages, push-pulls) against the general decoder on
/// `data` (bytes starting where a message starts): whatever a fast path accepts, the general
/// decoder accepts too, as the same message with the same bytes left over.
///
/// # Panics
/// On any disagreement (that is the finding).
pub fn check_fast_path(data: &[u8]) {
    if let Some((alive, rest)) = crate::wire::take_alive(data) {
        let (msg, tail) = postcard::take_from_bytes::<wire::Message>(data)
            .expect("the general decoder accepts what the fast path accepts");
        assert_eq!(
            msg,
            wire::Message::Alive(alive.to_alive()),
            "fast path message"
        );
        assert_eq!(tail, rest, "fast path remaining bytes");
    }
    if let Some((p, rest)) = crate::wire::take_push_pull(data) {
        let (msg, tail) = postcard::take_from_bytes::<wire::Message>(data)
            .expect("the general decoder accepts what the push-pull fast path accepts");
        assert_eq!(
            msg,
            wire::Message::PushPull(Box::new(p)),
            "push-pull fast path message"
        );
        assert_eq!(tail, rest, "push-pull fast path remaining bytes");
    }
}

/// Decode a datagram as a node configured with `cfg` does: `Ok(None)` when it carries another
/// cluster label. (A node additionally refuses datagrams that carry a push-pull.)
pub fn decode_datagram(cfg: &Config, data: &[u8]) -> Result<Option<Vec<WireMessage>>, DecodeError> {
    match wire::open_envelope(data, cfg.label.as_deref())? {
        Envelope::OtherLabel => Ok(None),
        Envelope::Ours(body) => Ok(Some(
            wire::decode_compound(body, &limits(cfg))?
                .into_iter()
                .map(WireMessage)
                .collect(),
        )),
    }
}

/// Decode a stream frame body as a node configured with `cfg` does: `Ok(None)` when it carries
/// another cluster label.
pub fn decode_frame_body(cfg: &Config, data: &[u8]) -> Result<Option<WireMessage>, DecodeError> {
    match wire::open_envelope(data, cfg.label.as_deref())? {
        Envelope::OtherLabel => Ok(None),
        Envelope::Ours(body) => Ok(Some(WireMessage(wire::decode_single(body, &limits(cfg))?))),
    }
}

/// Seal a plaintext datagram (as [`encode_datagram`] builds it, for `label`) with `keyring`'s
/// primary key, using `entropy` to seed the nonces: the bytes a node with that keyring sends.
/// `None` when `datagram` is shorter than its envelope.
pub fn seal_datagram(
    keyring: &crate::Keyring,
    label: Option<&str>,
    entropy: [u8; 32],
    datagram: &[u8],
) -> Option<Vec<u8>> {
    let header = wire::header(label);
    let mut sec = crate::keyring::Security::new(&entropy, &header);
    sec.keyring = Some(keyring.clone());
    sec.seal_datagram(datagram, header.len())
}

/// Seal a plaintext frame body (as [`encode_frame_body`] builds it) with `keyring`'s primary
/// key: the body a node with that keyring sends (without the length prefix).
pub fn seal_frame_body(
    keyring: &crate::Keyring,
    label: Option<&str>,
    entropy: [u8; 32],
    body: &[u8],
) -> Option<Vec<u8>> {
    // A datagram and a frame body share the envelope; only the length prefix differs.
    seal_datagram(keyring, label, entropy, body)
}

/// Open a sealed datagram or frame body with `keyring` under `label`: the plaintext after
/// the envelope, or `None` when it is not a sealed envelope for that label that a key opens.
pub fn open_sealed(keyring: &crate::Keyring, label: Option<&str>, data: &[u8]) -> Option<Vec<u8>> {
    let label = label.unwrap_or("").as_bytes();
    let (header, sealed) = crate::keyring::split_sealed(data, label).ok()?;
    let mut out = Vec::new();
    keyring.open_into(header, sealed, &mut out).then_some(out)
}

/// Check the HashiCorp profile's decoders (memberlist and Serf, `wire::hashicorp`) on `data`:
/// `mode` 0 reads a datagram, 1 a stream message, 2 a Serf message (a user message's bytes),
/// 3 tags from member meta, 4 a sealed datagram and 5 a sealed stream message (memberlist's
/// encryption, opened with the key bytes 1 to 32, then read as modes 0 and 1; what opens seals
/// again, with its nonce, to the same bytes), 6 and 7 hand it to a node speaking the profile as
/// a datagram or a stream message (with bit 0x40 of `mode` set the node has that key as its
/// keyring; with bit 0x80 as well, `data` is sealed with it first, so the node's decoding
/// behind the encryption is reached). Whatever decodes re-encodes to bytes that decode to the same
/// value, and that re-encoding is stable (encoding again gives the same bytes); a datagram's
/// and a stream's Serf contents are decoded too; a stream message never claims more bytes
/// than it was given. Decoding never panics (that is the check of everything else).
///
/// # Panics
/// On any broken property (that is the finding).
pub fn check_hashicorp(mode: u8, data: &[u8]) {
    use crate::wire::hashicorp as hc;
    let key: Vec<u8> = (1..=32).collect();
    match mode % 8 {
        0 => {
            if let Ok(p) = hc::decode_packet(data) {
                for m in p.messages() {
                    if let hc::PacketMsg::User(u) = m {
                        check_serf(u);
                    }
                    let _ = hc::from_packet_msg(m);
                }
                // A compound with more than 255 parts or a part over 64 KiB cannot be written.
                if let Some(bytes) = p.encode() {
                    let again = hc::decode_packet(&bytes).expect("re-encoded datagram decodes");
                    assert_eq!(again, p, "datagram round trip");
                    assert_eq!(
                        again.encode(),
                        Some(bytes),
                        "datagram encoding is not stable"
                    );
                }
            }
        }
        1 => {
            if let Ok((s, used)) = hc::decode_stream(data) {
                assert!(
                    used <= data.len(),
                    "stream message claims bytes it was not given"
                );
                match &s.msg {
                    hc::StreamMsg::User(u) => check_serf(u),
                    hc::StreamMsg::PushPull(p) => {
                        if !p.user_state.is_empty() {
                            check_serf(&p.user_state);
                        }
                        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
                        let _ =
                            hc::push_pull_from_hashicorp(p, 0, false, Name::new("x"), addr, true);
                    }
                    _ => {}
                }
                let bytes = s.encode();
                let (again, n) = hc::decode_stream(&bytes).expect("re-encoded stream decodes");
                assert_eq!(n, bytes.len(), "re-encoded stream length");
                assert_eq!(again, s, "stream round trip");
                assert_eq!(again.encode(), bytes, "stream encoding is not stable");
            }
        }
        2 => check_serf(data),
        4 => {
            if let Ok(plain) = hc::open(&[&key], data, &[]) {
                if data.first() == Some(&1) {
                    let mut nonce = [0u8; hc::NONCE_LEN];
                    nonce.copy_from_slice(&data[1..1 + hc::NONCE_LEN]);
                    let again = hc::seal(&key, nonce, &plain, &[]).expect("seals");
                    assert_eq!(again, data, "datagram re-sealed differently");
                }
                check_hashicorp(0, &plain);
            }
        }
        5 => {
            if let Ok((plain, used)) = hc::open_stream(&[&key], data) {
                assert!(
                    used <= data.len(),
                    "sealed stream claims bytes it was not given"
                );
                if data.get(5) == Some(&1) {
                    let mut nonce = [0u8; hc::NONCE_LEN];
                    nonce.copy_from_slice(&data[6..6 + hc::NONCE_LEN]);
                    let again = hc::seal_stream(&key, nonce, &plain).expect("seals");
                    assert_eq!(again, data[..used], "stream re-sealed differently");
                }
                check_hashicorp(1, &plain);
            }
        }
        3 => {
            if let Ok(tags) = hc::decode_tags(data) {
                let bytes = hc::encode_tags(&tags);
                assert_eq!(hc::decode_tags(&bytes), Ok(tags), "tags round trip");
            }
        }
        6 | 7 => {
            let keyed = (mode & 0x40 != 0).then_some(mode & 0x80 != 0);
            for profile in [
                crate::WireProfile::HashiCorp,
                crate::WireProfile::Memberlist,
            ] {
                check_hashicorp_node(profile, mode % 8 == 7, keyed, data);
            }
        }
        _ => {}
    }
}

/// Hand `data` to a node speaking `profile` (one of the HashiCorp profiles, with or without
/// Serf's layer), as a datagram or a stream message: refused input changes nothing visible
/// (no transmit, no event); whatever the node sends then, and after its timers run, is valid
/// in the profile (datagrams fit the MTU and decode, each stream transmit is exactly one
/// stream message that decodes; without Serf's layer no user message is sent). With `keyed`,
/// the node has the key bytes 1 to 32 as its keyring (`Some(true)`: `data` is sealed with it
/// first) and everything it sends must open with that key before it decodes.
fn check_hashicorp_node(
    profile: crate::WireProfile,
    stream: bool,
    keyed: Option<bool>,
    data: &[u8],
) {
    use crate::wire::hashicorp as hc;
    let key: Vec<u8> = (1..=32).collect();
    let cfg = Config {
        wire: profile,
        keyring: keyed.map(|_| crate::Keyring::new(&key).expect("a valid key")),
        ..Config::lan()
    };
    let sealed;
    let data = match keyed {
        Some(true) if stream => {
            sealed = hc::seal_stream(&key, [3; hc::NONCE_LEN], data).expect("seals");
            &sealed[..]
        }
        Some(true) => {
            sealed = hc::seal(&key, [3; hc::NONCE_LEN], data, &[]).expect("seals");
            &sealed[..]
        }
        _ => data,
    };
    let mtu = cfg.mtu;
    let me = SocketAddr::from(([127, 0, 0, 1], 7946));
    let from = SocketAddr::from(([127, 0, 0, 1], 7000));
    let mut node = crate::Node::with_entropy(
        cfg,
        crate::Identity::new("node-0", me),
        1,
        [9; 32],
        crate::Timestamp::ZERO,
    )
    .expect("a valid configuration");
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    let now = crate::Timestamp::ZERO + std::time::Duration::from_millis(1);
    let handled = if stream {
        node.handle_stream(now, from, data)
    } else {
        node.handle_packet(now, from, data)
    };
    if handled.is_err() {
        assert!(
            node.poll_transmit().is_none(),
            "refused input made a transmit"
        );
        assert!(node.poll_event().is_none(), "refused input made an event");
        return;
    }
    for step in 1..=3u64 {
        while let Some(t) = node.poll_transmit() {
            match t.kind {
                crate::TransmitKind::Datagram => {
                    assert!(t.payload.len() <= mtu, "datagram over the MTU");
                    let plain = match keyed {
                        Some(_) => hc::open(&[&key], &t.payload, &[]).expect("a datagram opens"),
                        None => t.payload.to_vec(),
                    };
                    let p = hc::decode_packet(&plain).expect("a sent datagram decodes");
                    assert!(
                        profile.has_serf()
                            || !p
                                .messages()
                                .iter()
                                .any(|m| matches!(m, hc::PacketMsg::User(_))),
                        "a user message sent without Serf's layer"
                    );
                }
                crate::TransmitKind::Reliable => {
                    assert_eq!(
                        hc::stream_message_len(&t.payload),
                        Ok(Some(t.payload.len())),
                        "a stream transmit is one whole stream message"
                    );
                    let plain = match keyed {
                        Some(_) => {
                            hc::open_stream(&[&key], &t.payload)
                                .expect("a stream opens")
                                .0
                        }
                        None => t.payload.to_vec(),
                    };
                    let m = hc::decode_stream_message(&plain, from, true)
                        .expect("a sent stream message decodes");
                    if let hc::Incoming::PushPull(p) = m {
                        assert!(
                            profile.has_serf() || p.user_state.is_empty(),
                            "Serf state in a push-pull without Serf's layer"
                        );
                    }
                }
            }
        }
        node.handle_timeout(crate::Timestamp::ZERO + std::time::Duration::from_secs(step));
    }
}

fn check_serf(data: &[u8]) {
    use crate::wire::hashicorp as hc;
    if let Ok(m) = hc::SerfMsg::decode(data) {
        let _ = hc::from_serf(&m);
        let bytes = m.encode();
        let again = hc::SerfMsg::decode(&bytes).expect("re-encoded Serf message decodes");
        assert_eq!(again, m, "Serf message round trip");
        assert_eq!(again.encode(), bytes, "Serf encoding is not stable");
    }
}
