//! The node's side of the HashiCorp profile: what this node advertises there, the push-pull
//! exchanges it started, and the calls the sending and receiving paths make — one of our
//! messages as datagram records, records as datagrams, a message as a stream message, and a
//! datagram or stream message back as ours.
//!
//! **Records.** A datagram is built the way the native profile builds one: messages and
//! piggybacked updates are appended to a buffer, each as a record `[length: u16 BE][packet
//! message]`, and [`datagrams`] turns the records into what memberlist reads — the message
//! alone when there is one, else compound messages of at most 255 parts. The record's length
//! field is the compound's per-part length, so the room a datagram leaves is reckoned exactly.
//! Datagrams go without memberlist's CRC header and uncompressed: memberlist 0.2.2 reads
//! both, and Go itself adds the CRC only for peers it knows speak protocol 5.
//!
//! **Exchanges.** memberlist pairs a push-pull request with its answer by the TCP connection:
//! the answer carries no exchange id and no request flag. The node's push-pull logic needs
//! both, so this session remembers each request it sent (destination and id, at most
//! [`MAX_EXCHANGES`], the oldest forgotten first) and takes a push-pull arriving from that
//! destination as the answer; any other push-pull is a request, answered to the address it
//! came from (drivers write that answer on the connection the request came in on).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::convert::{from_packet_msg, from_serf, push_pull_from_hashicorp, to_hashicorp};
use super::convert::{Local, Outgoing};
use super::frame::{decode_packet, decode_stream, Stream, StreamMsg};
use super::memberlist::{MsgType, PacketMsg, PushPull as HcPushPull, Versions};
use super::msgpack::Writer;
use super::serf::SerfMsg;
use super::HcError;
use crate::identity::Name;
use crate::wire::message::{Intent, Message, PushPull};

/// Most push-pull requests remembered while their answers are awaited.
pub(crate) const MAX_EXCHANGES: usize = 256;

/// Bytes a datagram spends on the compound header (type and count) before its records.
pub(crate) const COMPOUND_HEADER: usize = 2;

/// Bytes a record spends on its length.
pub(crate) const RECORD_HEADER: usize = 2;

/// One received message, as the node acts on it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One of our messages.
    Message(Message),
    /// Serf's join intent (ours rides on the alive message).
    JoinIntent(Intent),
    /// A well-formed message with no counterpart here (counted and skipped).
    Skipped(&'static str),
    /// memberlist's push-pull, to be paired with an exchange ([`Session::push_pull`]).
    PushPull(HcPushPull),
}

/// The HashiCorp profile's state in a node.
#[derive(Debug)]
pub(crate) struct Session {
    /// The protocol versions this node advertises.
    pub versions: Versions,
    /// Whether Serf's layer rides on the wire ([`crate::WireProfile::has_serf`]): without it
    /// no Serf message is sent or read and push-pull carries no Serf state.
    pub serf: bool,
    /// Push-pull requests sent and not yet answered: destination and exchange id.
    exchanges: VecDeque<(SocketAddr, u32)>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new(true)
    }
}

impl Session {
    /// A session with Serf's layer (`serf`, advertising Serf 0.9.4's versions) or without it
    /// (memberlist 0.2.2's default versions).
    pub(crate) fn new(serf: bool) -> Session {
        Session {
            versions: if serf {
                Versions::SERF_0_9_4
            } else {
                Versions::MEMBERLIST_0_2_2
            },
            serf,
            exchanges: VecDeque::new(),
        }
    }

    /// What this node says about itself.
    pub(crate) fn local(&self, name: &Name, addr: SocketAddr) -> Local {
        Local {
            name: name.clone(),
            addr,
            versions: self.versions,
            serf: self.serf,
        }
    }

    /// Append `msg` to a datagram being built, as records; the number of records. Refused
    /// when it has no datagram form in this profile.
    pub(crate) fn records(
        &self,
        msg: &Message,
        local: &Local,
        out: &mut Vec<u8>,
    ) -> Result<usize, HcError> {
        let mut n = 0;
        for o in to_hashicorp(msg, local)? {
            let Outgoing::Packet(p) = o else {
                return Err(HcError::Unmappable("a stream message in a datagram"));
            };
            let start = out.len();
            out.extend_from_slice(&[0; RECORD_HEADER]);
            let mut w = Writer::new(std::mem::take(out));
            p.encode(&mut w);
            *out = w.out;
            let len = u16::try_from(out.len() - start - RECORD_HEADER)
                .map_err(|_| HcError::Unmappable("a message longer than a datagram"))?;
            out[start..start + RECORD_HEADER].copy_from_slice(&len.to_be_bytes());
            n += 1;
        }
        Ok(n)
    }

    /// `msg` as one stream message. Remembers a push-pull request as an exchange.
    pub(crate) fn stream(
        &mut self,
        msg: &Message,
        local: &Local,
        to: SocketAddr,
    ) -> Result<Vec<u8>, HcError> {
        let mut out = to_hashicorp(msg, local)?;
        if out.len() != 1 {
            return Err(HcError::Unmappable("more than one message on one stream"));
        }
        let stream = match out.remove(0) {
            Outgoing::Stream(s) => s,
            Outgoing::Packet(PacketMsg::Ack(a)) => StreamMsg::Ack(a),
            Outgoing::Packet(PacketMsg::Ping(p)) => StreamMsg::Ping(p),
            Outgoing::Packet(PacketMsg::User(b)) => StreamMsg::User(b),
            Outgoing::Packet(_) => return Err(HcError::Unmappable("no stream form")),
        };
        if let Message::PushPull(p) = msg {
            if p.request {
                self.exchange_started(to, p.id);
            }
        }
        Ok(Stream {
            compressed: false,
            msg: stream,
        }
        .encode())
    }

    /// Remember a push-pull request sent to `to`.
    pub(crate) fn exchange_started(&mut self, to: SocketAddr, id: u32) {
        if self.exchanges.len() >= MAX_EXCHANGES {
            self.exchanges.pop_front();
        }
        self.exchanges.push_back((to, id));
    }

    /// memberlist's push-pull from `from` as ours: the answer to the exchange this node
    /// started with `from`, if any (its id, not a request), else a request answered at
    /// `from`. `sender` names the member at `from`, when known.
    pub(crate) fn push_pull(
        &mut self,
        p: &HcPushPull,
        from: SocketAddr,
        sender: Name,
    ) -> Result<PushPull, HcError> {
        let answered = self.exchanges.iter().position(|(to, _)| *to == from);
        let (id, request) = match answered.and_then(|i| self.exchanges.remove(i)) {
            Some((_, id)) => (id, false),
            None => (0, true),
        };
        push_pull_from_hashicorp(p, id, request, sender, from, self.serf)
    }
}

/// Turn a buffer of records into datagrams: the message alone when there is one, else
/// compound messages of at most 255 parts. Empty when there are no records.
pub(crate) fn datagrams(records: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = records;
    while rest.len() >= RECORD_HEADER {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let Some(body) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            break;
        };
        parts.push(body);
        rest = &rest[RECORD_HEADER + len..];
    }
    if parts.len() == 1 {
        return vec![parts[0].to_vec()];
    }
    parts
        .chunks(255)
        .map(|chunk| {
            let total: usize = chunk.iter().map(|b| RECORD_HEADER + b.len()).sum();
            let mut out = Vec::with_capacity(COMPOUND_HEADER + total);
            out.push(MsgType::Compound as u8);
            out.push(chunk.len() as u8);
            for b in chunk {
                out.extend_from_slice(&(b.len() as u16).to_be_bytes());
            }
            for b in chunk {
                out.extend_from_slice(b);
            }
            out
        })
        .collect()
}

/// One message of a datagram as the node acts on it; without Serf's layer (`serf` false) a
/// user message is the peer program's own and skipped.
fn incoming(m: &PacketMsg, serf: bool) -> Incoming {
    if let PacketMsg::User(b) = m {
        if !serf {
            return Incoming::Skipped("a user message with no Serf layer to read it");
        }
        return match SerfMsg::decode(b) {
            Ok(SerfMsg::Join(j)) => Incoming::JoinIntent(Intent {
                ltime: j.ltime,
                name: Name::new(&j.node),
                prune: false,
            }),
            Ok(s) => match from_serf(&s) {
                Ok(msg) => Incoming::Message(msg),
                Err(HcError::Unmappable(why)) => Incoming::Skipped(why),
                Err(_) => Incoming::Skipped("undecodable Serf message"),
            },
            Err(_) => Incoming::Skipped("undecodable Serf message"),
        };
    }
    match from_packet_msg(m) {
        Ok(msg) => Incoming::Message(msg),
        Err(HcError::Unmappable(why)) => Incoming::Skipped(why),
        Err(_) => Incoming::Skipped("unmappable field"),
    }
}

/// A plaintext datagram's messages (`serf`: whether Serf's layer reads user messages). A
/// message that decodes but has no counterpart is [`Incoming::Skipped`]; bytes that do not
/// decode refuse the whole datagram.
pub(crate) fn decode_datagram(buf: &[u8], serf: bool) -> Result<Vec<Incoming>, HcError> {
    let packet = decode_packet(buf)?;
    Ok(packet
        .messages()
        .into_iter()
        .map(|m| incoming(m, serf))
        .collect())
}

/// A plaintext stream message (exactly one, as [`stream_message_len`] split it) that arrived
/// from `from`: a stream ping is answered on its connection, so its reply address is `from`.
/// `serf`: whether Serf's layer reads user messages.
pub(crate) fn decode_stream_message(
    buf: &[u8],
    from: SocketAddr,
    serf: bool,
) -> Result<Incoming, HcError> {
    let (s, used) = decode_stream(buf)?;
    if used != buf.len() {
        return Err(HcError::TrailingBytes);
    }
    Ok(match s.msg {
        StreamMsg::PushPull(p) => Incoming::PushPull(p),
        StreamMsg::Ping(p) => Incoming::Message(Message::StreamPing {
            seq: p.seq_no,
            target: Name::new(&p.node),
            reply_to: from,
        }),
        StreamMsg::Ack(a) => incoming(&PacketMsg::Ack(a), serf),
        StreamMsg::User(b) => incoming(&PacketMsg::User(b), serf),
        StreamMsg::Err(_) => Incoming::Skipped("error message from the peer"),
    })
}

/// How long the stream message at the front of `buf` is: `Ok(None)` until all of it is in.
/// An encrypted message is measured by its header; any other is decoded (memberlist's stream
/// messages carry no length).
pub(crate) fn stream_message_len(buf: &[u8]) -> Result<Option<usize>, HcError> {
    match decode_stream(buf) {
        Ok((_, used)) => Ok(Some(used)),
        Err(HcError::Empty | HcError::Truncated) => Ok(None),
        Err(HcError::Encrypted { len }) => Ok((buf.len() >= 5 + len).then_some(5 + len)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{addr, at};
    use crate::wire::message::{Accusation, PushState, WireStatus};
    use crate::wire::FrameDecoder;
    use crate::{ApiError, Config, ConfigError, WireProfile};

    fn local() -> Local {
        Session::default().local(&Name::new("me"), addr(1))
    }

    fn suspect(name: &str) -> Message {
        Message::Suspect(Accusation {
            incarnation: 3,
            name: Name::new(name),
            from: Name::new("me"),
        })
    }

    #[test]
    fn records_become_one_message_or_a_compound_and_decode_back() {
        let s = Session::default();
        let mut one = Vec::new();
        s.records(&suspect("a"), &local(), &mut one).unwrap();
        let d = datagrams(&one);
        assert_eq!(d.len(), 1);
        assert_ne!(
            d[0][0],
            MsgType::Compound as u8,
            "a single message goes bare"
        );
        let mut many = Vec::new();
        for n in ["a", "b", "c"] {
            assert_eq!(s.records(&suspect(n), &local(), &mut many).unwrap(), 1);
        }
        let d = datagrams(&many);
        assert_eq!((d.len(), d[0][0]), (1, MsgType::Compound as u8));
        let back: Vec<Message> = decode_datagram(&d[0], true)
            .unwrap()
            .into_iter()
            .map(|i| match i {
                Incoming::Message(m) => m,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, vec![suspect("a"), suspect("b"), suspect("c")]);
        // More than 255 records: several compounds.
        let mut lots = Vec::new();
        for i in 0..300 {
            s.records(&suspect(&format!("n{i}")), &local(), &mut lots)
                .unwrap();
        }
        let d = datagrams(&lots);
        assert_eq!(d.len(), 2);
        let total: usize = d
            .iter()
            .map(|x| decode_datagram(x, true).unwrap().len())
            .sum();
        assert_eq!(total, 300);
    }

    #[test]
    fn a_push_pull_from_the_asked_address_is_the_answer() {
        let mut s = Session::default();
        let p = PushPull {
            id: 77,
            request: true,
            join: true,
            reply_to: addr(1),
            sender: Name::new("me"),
            states: vec![PushState {
                name: Name::new("me"),
                addr: addr(1),
                incarnation: 1,
                status: WireStatus::Alive,
                tags: Default::default(),
                ltime: 0,
                accuser: None,
            }],
            member_ltime: 1,
            event_ltime: 0,
            query_ltime: 0,
            events: Vec::new(),
        };
        let bytes = s
            .stream(&Message::PushPull(Box::new(p)), &local(), addr(2))
            .unwrap();
        let Incoming::PushPull(hc) = decode_stream_message(&bytes, addr(2), true).unwrap() else {
            panic!("a push-pull")
        };
        // From another address: a request, answered where it came from.
        let other = s.push_pull(&hc, addr(3), Name::new("x")).unwrap();
        assert!(other.request);
        assert_eq!(other.reply_to, addr(3));
        // From the asked address: the answer to exchange 77, once.
        let answer = s.push_pull(&hc, addr(2), Name::new("y")).unwrap();
        assert_eq!((answer.request, answer.id), (false, 77));
        assert!(s.push_pull(&hc, addr(2), Name::new("y")).unwrap().request);
    }

    /// `WireProfile::Memberlist`: memberlist's default delegate versions, the meta a Go
    /// program wrote, no Serf message out, none read in, no Serf state in push-pull, and
    /// Serf's features refused at the API.
    #[test]
    fn the_memberlist_profile_carries_memberlist_alone() {
        use crate::identity::Tags;
        use crate::wire::hashicorp::{decode_packet, PacketMsg};
        use crate::wire::message::{Alive, UserEventMsg};
        let (plain, serf) = (Session::new(false), Session::default());
        let me = Name::new("me");
        let (pl, sl) = (plain.local(&me, addr(1)), serf.local(&me, addr(1)));
        let alive = |tags: Tags| {
            Message::Alive(Alive {
                incarnation: 2,
                name: me.clone(),
                addr: addr(1),
                tags,
                ltime: 9,
            })
        };
        let sent = |s: &Session, l: &Local, m: &Message| -> Vec<PacketMsg> {
            let mut buf = Vec::new();
            s.records(m, l, &mut buf).unwrap();
            let d = datagrams(&buf);
            assert_eq!(d.len(), 1);
            let p = decode_packet(&d[0]).unwrap();
            p.messages().into_iter().cloned().collect()
        };
        // An alive with a join time: Serf's join intent rides beside it only with Serf.
        assert_eq!(sent(&serf, &sl, &alive(Tags::new())).len(), 2);
        let msgs = sent(&plain, &pl, &alive(Tags::new()));
        let [PacketMsg::Alive(a)] = &msgs[..] else {
            panic!("one alive: {msgs:?}")
        };
        assert_eq!(a.vsn.as_deref(), Some(&[1, 5, 2, 0, 0, 0][..]));
        assert_eq!(a.meta.as_deref(), Some(&[][..]), "no tags: an empty meta");
        // A meta without Serf's magic byte reads as tag `role` and goes back as it came.
        let role: Tags = [("role".to_owned(), "web".to_owned())]
            .into_iter()
            .collect();
        let msgs = sent(&plain, &pl, &alive(role.clone()));
        let [PacketMsg::Alive(a)] = &msgs[..] else {
            panic!("one alive: {msgs:?}")
        };
        assert_eq!(a.meta.as_deref(), Some(&b"web"[..]));
        let msgs = sent(&serf, &sl, &alive(role));
        let PacketMsg::Alive(a) = &msgs[0] else {
            panic!("an alive first: {msgs:?}")
        };
        assert_eq!(a.meta.as_deref().and_then(|m| m.first()), Some(&255));
        // Serf's messages are not sent (the caller counts them in `profile_skipped`).
        let event = Message::UserEvent(UserEventMsg {
            ltime: 1,
            name: Name::new("deploy"),
            payload: bytes::Bytes::from_static(b"v1"),
            coalesce: false,
        });
        assert!(plain.records(&event, &pl, &mut Vec::new()).is_err());
        // ... nor read: a user message is the Go program's own.
        let mut buf = Vec::new();
        serf.records(&event, &sl, &mut buf).unwrap();
        let d = datagrams(&buf);
        assert!(matches!(
            &decode_datagram(&d[0], true).unwrap()[..],
            [Incoming::Message(Message::UserEvent(_))]
        ));
        assert!(matches!(
            &decode_datagram(&d[0], false).unwrap()[..],
            [Incoming::Skipped(_)]
        ));
        // Push-pull: no Serf state in it.
        let pp = |s: &mut Session, l: &Local| {
            let p = PushPull {
                id: 5,
                request: true,
                join: false,
                reply_to: addr(1),
                sender: me.clone(),
                states: Vec::new(),
                member_ltime: 3,
                event_ltime: 0,
                query_ltime: 0,
                events: Vec::new(),
            };
            let bytes = s
                .stream(&Message::PushPull(Box::new(p)), l, addr(2))
                .unwrap();
            let Incoming::PushPull(hc) = decode_stream_message(&bytes, addr(2), true).unwrap()
            else {
                panic!("a push-pull")
            };
            hc.user_state
        };
        let (mut plain, mut serf) = (plain, serf);
        assert!(pp(&mut plain, &pl).is_empty());
        assert!(!pp(&mut serf, &sl).is_empty());
        // The node refuses Serf's features, typed, with nothing sent.
        let cfg = Config {
            wire: WireProfile::Memberlist,
            ..Config::lan()
        };
        let mut n = crate::Node::new(cfg, crate::Identity::new("me", addr(1)), 1, at(0)).unwrap();
        assert_eq!(
            n.user_event(at(1), "deploy", "v1", false),
            Err(ApiError::NotInProfile)
        );
        assert_eq!(
            n.query(at(1), "q", "x", Default::default()).map(|_| ()),
            Err(ApiError::NotInProfile)
        );
        assert_eq!(n.send(at(1), "you", "x"), Err(ApiError::NotInProfile));
        assert!(n.poll_transmit().is_none(), "nothing sent");
    }

    #[test]
    fn the_frame_decoder_splits_unprefixed_stream_messages() {
        let mut s = Session::default();
        let ping = Message::StreamPing {
            seq: 9,
            target: Name::new("you"),
            reply_to: addr(1),
        };
        let a = s.stream(&ping, &local(), addr(2)).unwrap();
        let ack = Message::Ack {
            seq: 9,
            digest: None,
        };
        let b = s.stream(&ack, &local(), addr(2)).unwrap();
        let mut dec = FrameDecoder::for_profile(1 << 20, WireProfile::HashiCorp);
        let mut out = Vec::new();
        for byte in a.iter().chain(b.iter()) {
            dec.push(&[*byte]);
            while let Some(m) = dec.next_frame().unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, vec![a.clone(), b]);
        // A stream ping is answered on its connection: its reply address is the sender.
        match decode_stream_message(&a, addr(5), true).unwrap() {
            Incoming::Message(Message::StreamPing { seq, reply_to, .. }) => {
                assert_eq!((seq, reply_to), (9, addr(5)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(dec.buffered(), 0);
        // Garbage is an error, not a wait.
        dec.push(&[0xee, 1, 2]);
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn what_the_profile_cannot_carry_is_refused_typed() {
        let hc = Config {
            wire: WireProfile::HashiCorp,
            ..Config::lan()
        };
        let labelled = Config {
            label: Some("prod".into()),
            ..hc.clone()
        };
        assert_eq!(
            labelled.validate(),
            Err(ConfigError::NotInProfile { field: "label" })
        );
        let keyed = Config {
            keyring: Some(crate::Keyring::new(&[7; 32]).unwrap()),
            ..hc.clone()
        };
        assert_eq!(
            keyed.validate(),
            Err(ConfigError::NotInProfile { field: "keyring" })
        );
        let mut n = crate::Node::new(hc, crate::Identity::new("me", addr(1)), 1, at(0)).unwrap();
        assert_eq!(n.send(at(1), "you", "x"), Err(ApiError::NotInProfile));
        assert_eq!(n.broadcast(at(1), "x"), Err(ApiError::NotInProfile));
        assert_eq!(n.set_keyring(None), Err(ApiError::NotInProfile));
    }
}
