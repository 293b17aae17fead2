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
//! came from (drivers write that answer on the connection the request came in on). A request
//! unanswered for longer than `tcp_timeout` is forgotten when the next push-pull arrives:
//! drivers stop reading for its answer then (and a join gives up on it), so left in place it
//! would take the answer of a later exchange with the same address — a join retried after a
//! refused answer (a wrong key) would never see its own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::convert::{from_packet_msg, from_serf, push_pull_from_hashicorp, to_hashicorp};
use super::convert::{Local, Outgoing};
use super::frame::{decode_packet, decode_stream, Stream, StreamMsg};
use super::memberlist::{MsgType, PacketMsg, PushPull as HcPushPull, Versions};
use super::msgpack::Writer;
use super::serf::SerfMsg;
use super::HcError;
use crate::identity::Name;
use crate::time::Timestamp;
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
    /// Without Serf's layer ([`crate::WireProfile::Memberlist`]): a user message of the peer
    /// program (memberlist's `SendBestEffort`/`SendReliable`, or a delegate's broadcast),
    /// delivered to the application as a direct message.
    User(bytes::Bytes),
}

/// The HashiCorp profile's state in a node.
#[derive(Debug)]
pub(crate) struct Session {
    /// The protocol versions this node advertises.
    pub versions: Versions,
    /// Whether Serf's layer rides on the wire ([`crate::WireProfile::has_serf`]): without it
    /// no Serf message is sent or read and push-pull carries no Serf state.
    pub serf: bool,
    /// Push-pull requests sent and not yet answered: destination, exchange id, when sent.
    exchanges: VecDeque<(SocketAddr, u32, Timestamp)>,
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

    /// `msg` as one stream message, sent at `now`. Remembers a push-pull request as an
    /// exchange.
    pub(crate) fn stream(
        &mut self,
        msg: &Message,
        local: &Local,
        to: SocketAddr,
        now: Timestamp,
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
                self.exchange_started(to, p.id, now);
            }
        }
        Ok(Stream {
            compressed: false,
            msg: stream,
        }
        .encode())
    }

    /// Remember a push-pull request sent to `to` at `now`.
    pub(crate) fn exchange_started(&mut self, to: SocketAddr, id: u32, now: Timestamp) {
        if self.exchanges.len() >= MAX_EXCHANGES {
            self.exchanges.pop_front();
        }
        self.exchanges.push_back((to, id, now));
    }

    /// memberlist's push-pull from `from`, arrived at `now`, as ours: the answer to the
    /// oldest exchange this node started with `from` within `timeout` (its id, not a
    /// request), else a request answered at `from`. Exchanges older than `timeout` are
    /// forgotten first (see the module docs). `sender` names the member at `from`, when
    /// known.
    /// `answer`: it came on a connection this node opened, so it is an answer whatever this
    /// session remembers. The flag returned is true for such an answer when no exchange with
    /// `from` is remembered any more (it came late): its state is still the peer's, but no
    /// exchange is paired with it and it is never answered.
    pub(crate) fn push_pull(
        &mut self,
        p: &HcPushPull,
        from: SocketAddr,
        sender: Name,
        now: Timestamp,
        timeout: Duration,
        answer: bool,
    ) -> Result<(PushPull, bool), HcError> {
        self.exchanges
            .retain(|(_, _, sent)| now.saturating_since(*sent) <= timeout);
        let answered = self.exchanges.iter().position(|(to, _, _)| *to == from);
        let (id, request, late) = match answered.and_then(|i| self.exchanges.remove(i)) {
            Some((_, id, _)) => (id, false, false),
            None if answer => (0, false, true),
            None => (0, true, false),
        };
        push_pull_from_hashicorp(p, id, request, sender, from, self.serf).map(|pp| (pp, late))
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
/// user message is the peer program's own, for the application.
fn incoming(m: &PacketMsg, serf: bool) -> Incoming {
    if let PacketMsg::User(b) = m {
        if !serf {
            return Incoming::User(bytes::Bytes::copy_from_slice(b));
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
            .stream(&Message::PushPull(Box::new(p)), &local(), addr(2), at(0))
            .unwrap();
        let Incoming::PushPull(hc) = decode_stream_message(&bytes, addr(2), true).unwrap() else {
            panic!("a push-pull")
        };
        // From another address: a request, answered where it came from.
        let t = Duration::from_secs(1);
        let other = s
            .push_pull(&hc, addr(3), Name::new("x"), at(10), t, false)
            .unwrap()
            .0;
        assert!(other.request);
        assert_eq!(other.reply_to, addr(3));
        // From the asked address: the answer to exchange 77, once.
        let answer = s
            .push_pull(&hc, addr(2), Name::new("y"), at(20), t, false)
            .unwrap()
            .0;
        assert_eq!((answer.request, answer.id), (false, 77));
        assert!(
            s.push_pull(&hc, addr(2), Name::new("y"), at(30), t, false)
                .unwrap()
                .0
                .request
        );
        // An exchange unanswered past the timeout is forgotten: a later exchange with the
        // same address gets its own answer (a join retried after a refused answer).
        s.exchange_started(addr(2), 1, at(100));
        s.exchange_started(addr(2), 2, at(5_000));
        let answer = s
            .push_pull(&hc, addr(2), Name::new("y"), at(5_100), t, false)
            .unwrap()
            .0;
        assert_eq!((answer.request, answer.id), (false, 2));
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
        // ... nor read as Serf's: a user message is the Go program's own, its bytes handed on.
        let mut buf = Vec::new();
        serf.records(&event, &sl, &mut buf).unwrap();
        let d = datagrams(&buf);
        assert!(matches!(
            &decode_datagram(&d[0], true).unwrap()[..],
            [Incoming::Message(Message::UserEvent(_))]
        ));
        let PacketMsg::User(raw) = &decode_packet(&d[0]).unwrap().messages()[0].clone() else {
            panic!("a user message")
        };
        assert!(matches!(
            &decode_datagram(&d[0], false).unwrap()[..],
            [Incoming::User(b)] if b[..] == raw[..]
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
                .stream(&Message::PushPull(Box::new(p)), l, addr(2), at(0))
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
        assert_eq!(n.send_acked(at(1), "you", "x"), Err(ApiError::NotInProfile));
        let keyed = Config {
            wire: WireProfile::Memberlist,
            keyring: Some(crate::Keyring::new(&[7; 32]).unwrap()),
            ..Config::lan()
        };
        let mut k = crate::Node::with_entropy(
            keyed,
            crate::Identity::new("me", addr(1)),
            1,
            [9; 32],
            at(0),
        )
        .unwrap();
        assert_eq!(
            k.install_key(at(1), &[8; 32]).map(|_| ()),
            Err(ApiError::NotInProfile),
            "Serf's key queries need Serf's layer"
        );
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
        let a = s.stream(&ping, &local(), addr(2), at(0)).unwrap();
        let ack = Message::Ack {
            seq: 9,
            digest: None,
        };
        let b = s.stream(&ack, &local(), addr(2), at(0)).unwrap();
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
        assert_eq!(keyed.validate(), Ok(()), "a keyring is carried");
        let mut n = crate::Node::with_entropy(
            keyed,
            crate::Identity::new("me", addr(1)),
            1,
            [1; 32],
            at(0),
        )
        .unwrap();
        assert_eq!(n.send_acked(at(1), "you", "x"), Err(ApiError::NotInProfile));
        assert_eq!(n.broadcast(at(1), "x"), Err(ApiError::NotInProfile));
        // Serf's key-query names are the core's own there.
        let q = crate::QueryParams::default();
        assert_eq!(
            n.query(at(1), "_serf_use-key", "", q),
            Err(ApiError::ReservedName)
        );
    }

    #[test]
    fn key_operations_run_as_serfs_key_queries() {
        let mut nodes = vec![hc_node("a", 1, Some(&[&K1])), hc_node("b", 2, Some(&[&K1]))];
        nodes[1].join(at(0), &[addr(1)]).unwrap();
        run(&mut nodes, 0, 2_000, |_, _| {});
        assert_eq!(nodes[0].alive_count(), 2);
        let mut t = 2_100;
        let op = |nodes: &mut Vec<Node>,
                  t: &mut u64,
                  f: &dyn Fn(&mut Node, crate::Timestamp) -> crate::KeyOpId| {
            let id = f(&mut nodes[0], at(*t));
            let mut done = None;
            run(nodes, *t, 3_000, |_, tr| {
                opened_raw(&K1, tr);
            });
            *t += 3_100;
            while let Some(e) = nodes[0].poll_event() {
                if let crate::Event::KeyOp(r) = e {
                    if r.id == id {
                        done = Some(r);
                    }
                }
            }
            done.expect("the operation ends")
        };
        let r = op(&mut nodes, &mut t, &|n, now| {
            n.install_key(now, &K2).unwrap()
        });
        assert!(r.complete() && r.answered == 2, "{r:?}");
        for n in &nodes {
            assert_eq!(
                n.keyring().unwrap().keys().collect::<Vec<_>>(),
                vec![&K1[..], &K2[..]]
            );
        }
        let r = op(&mut nodes, &mut t, &|n, now| n.list_keys(now).unwrap());
        assert!(r.complete(), "{r:?}");
        assert_eq!(r.keys.get(K2.as_slice()), Some(&2));
        assert_eq!(r.primary_keys.get(K1.as_slice()), Some(&2));
        // Nothing reached the applications as a query.
        for n in nodes.iter_mut() {
            assert!(
                !std::iter::from_fn(|| n.poll_event()).any(|e| matches!(e, crate::Event::Query(_)))
            );
        }
    }

    // ---- The keyring on the profile: memberlist's encryption format ----

    use crate::node::{Node, TransmitKind};
    use crate::wire::hashicorp::{
        decode_packet, decode_stream, open, open_stream, seal, NONCE_LEN, SEAL_OVERHEAD,
    };
    use crate::{Identity, InputError, Keyring, MemberStatus};

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 16] = [2; 16];

    fn hc_config(keys: Option<&[&[u8]]>) -> Config {
        Config {
            wire: WireProfile::HashiCorp,
            keyring: keys.map(|k| Keyring::from_keys(k).unwrap()),
            ..Config::local()
        }
    }

    /// A node speaking the profile at 127.0.0.1:`port` with `keys` (primary first), if any.
    fn hc_node(name: &str, port: u16, keys: Option<&[&[u8]]>) -> Node {
        Node::with_entropy(
            hc_config(keys),
            Identity::new(name, addr(port)),
            u64::from(port),
            [port as u8; 32],
            at(0),
        )
        .unwrap()
    }

    /// One thing a node sent: destination, kind, bytes.
    type Sent = (SocketAddr, TransmitKind, Vec<u8>);

    fn drain(n: &mut Node) -> Vec<Sent> {
        std::iter::from_fn(|| n.poll_transmit())
            .map(|t| (t.to, t.kind, t.payload.to_vec()))
            .collect()
    }

    /// Hand `t`, sent by the node at `from`, to `n` as its driver would.
    fn hand(
        n: &mut Node,
        now: crate::Timestamp,
        from: SocketAddr,
        t: &Sent,
    ) -> Result<(), InputError> {
        match t.1 {
            TransmitKind::Datagram => n.handle_packet(now, from, &t.2),
            TransmitKind::Reliable => n.handle_stream(now, from, &t.2),
        }
    }

    /// Run `nodes` (at ports 1, 2, ...) for `ms` milliseconds in 50 ms steps, delivering
    /// everything each sends to the node it is addressed to; `check` sees every transmit and
    /// the index of its sender.
    fn run(nodes: &mut [Node], from_ms: u64, ms: u64, mut check: impl FnMut(usize, &Sent)) {
        let mut now = from_ms;
        while now <= from_ms + ms {
            for n in nodes.iter_mut() {
                n.handle_timeout(at(now));
            }
            for _ in 0..20 {
                let mut moved = false;
                for i in 0..nodes.len() {
                    let from = addr(i as u16 + 1);
                    for t in drain(&mut nodes[i]) {
                        check(i, &t);
                        moved = true;
                        let j = usize::from(t.0.port()) - 1;
                        if let Some(n) = nodes.get_mut(j) {
                            let _ = hand(n, at(now), from, &t);
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
            now += 50;
        }
    }

    /// What the raw, capture-proven format makes of a transmit sealed under `key`: the
    /// plaintext, which decodes as memberlist's.
    fn opened_raw(key: &[u8], t: &Sent) -> Vec<u8> {
        match t.1 {
            TransmitKind::Datagram => {
                assert_eq!(t.2[0], 1, "encryption version 1");
                let plain = open(&[key], &t.2, &[]).expect("opens with the key");
                decode_packet(&plain).expect("a memberlist datagram inside");
                plain
            }
            TransmitKind::Reliable => {
                assert_eq!(
                    t.2[0],
                    MsgType::Encrypt as u8,
                    "memberlist's encrypted message"
                );
                let len = u32::from_be_bytes(t.2[1..5].try_into().unwrap()) as usize;
                assert_eq!(len + 5, t.2.len(), "the length counts the sealed bytes");
                let (plain, used) = open_stream(&[key], &t.2).expect("opens with the key");
                assert_eq!(used, t.2.len());
                let (_, n) = decode_stream(&plain).expect("a memberlist stream message inside");
                assert_eq!(n, plain.len());
                plain
            }
        }
    }

    #[test]
    fn keyed_nodes_join_and_everything_they_send_is_sealed_in_memberlist_format() {
        let mut nodes = vec![
            hc_node("a", 1, Some(&[&K1])),
            hc_node("b", 2, Some(&[&K1])),
            hc_node("c", 3, Some(&[&K1])),
        ];
        nodes[1].join(at(0), &[addr(1)]).unwrap();
        nodes[2].join(at(0), &[addr(2)]).unwrap();
        let (mut datagrams, mut streams) = (0, 0);
        run(&mut nodes, 0, 10_000, |_, t| {
            let plain = opened_raw(&K1, t);
            assert!(
                !t.2.windows(plain.len().min(8))
                    .any(|w| w == &plain[..w.len()]),
                "plaintext shows through"
            );
            match t.1 {
                TransmitKind::Datagram => datagrams += 1,
                TransmitKind::Reliable => streams += 1,
            }
        });
        assert!(
            datagrams > 10 && streams >= 2,
            "{datagrams} datagrams, {streams} streams"
        );
        for n in &nodes {
            for name in ["a", "b", "c"] {
                assert_eq!(
                    n.member(name).map(|m| m.status),
                    Some(MemberStatus::Alive),
                    "{name} on {:?}",
                    n.local_member().name
                );
            }
            let s = n.stats();
            assert_eq!(
                (
                    s.decode_errors,
                    s.sealed_no_key,
                    s.plaintext_refused,
                    s.sealed_truncated
                ),
                (0, 0, 0, 0)
            );
        }
    }

    /// Whether `t` opens with `key` alone.
    fn opens_with(key: &[u8], t: &Sent) -> bool {
        match t.1 {
            TransmitKind::Datagram => open(&[key], &t.2, &[]).is_ok(),
            TransmitKind::Reliable => open_stream(&[key], &t.2).is_ok(),
        }
    }

    #[test]
    fn a_secondary_key_opens_the_primary_seals() {
        // a seals with K1 and holds K2 as a secondary; b the other way round.
        let mut nodes = vec![
            hc_node("a", 1, Some(&[&K1, &K2])),
            hc_node("b", 2, Some(&[&K2, &K1])),
        ];
        nodes[1].join(at(0), &[addr(1)]).unwrap();
        let mut sent = [0; 2];
        run(&mut nodes, 0, 3_000, |i, t| {
            let (primary, secondary) = if i == 0 {
                (K1.as_slice(), K2.as_slice())
            } else {
                (K2.as_slice(), K1.as_slice())
            };
            assert!(opens_with(primary, t) && !opens_with(secondary, t));
            sent[i] += 1;
        });
        assert!(sent[0] > 0 && sent[1] > 0, "{sent:?}");
        assert_eq!((nodes[0].alive_count(), nodes[1].alive_count()), (2, 2));
        assert_eq!(
            nodes[0].stats().sealed_no_key + nodes[1].stats().sealed_no_key,
            0
        );
    }

    #[test]
    fn a_wrong_key_is_refused_and_counted_by_cause() {
        let mut a = hc_node("a", 1, Some(&[&K1]));
        let mut other = hc_node("x", 2, Some(&[&K2]));
        let mut keyless = hc_node("y", 3, None);
        a.join(at(0), &[addr(2)]).unwrap();
        let join = drain(&mut a);
        let stream = join
            .iter()
            .find(|t| t.1 == TransmitKind::Reliable)
            .expect("the join's push-pull");
        assert_eq!(
            hand(&mut other, at(1), addr(1), stream),
            Err(InputError::NoKeyOpens)
        );
        assert_eq!(
            hand(&mut keyless, at(1), addr(1), stream),
            Err(InputError::SealedWithoutKeyring)
        );
        // A datagram: a's ping once it knows x.
        let alive = {
            let mut recs = Vec::new();
            let s = Session::default();
            s.records(
                &crate::testkit::alive("x", 2, 1),
                &s.local(&Name::new("x"), addr(2)),
                &mut recs,
            )
            .unwrap();
            seal(&K1, [5; NONCE_LEN], &datagrams(&recs)[0], &[]).unwrap()
        };
        a.handle_packet(at(2), addr(2), &alive).unwrap();
        a.handle_timeout(at(2_000));
        let pings: Vec<Sent> = drain(&mut a)
            .into_iter()
            .filter(|t| t.1 == TransmitKind::Datagram)
            .collect();
        assert!(!pings.is_empty());
        for t in &pings {
            assert_eq!(
                hand(&mut other, at(3), addr(1), t),
                Err(InputError::NoKeyOpens)
            );
            assert_eq!(
                hand(&mut keyless, at(3), addr(1), t),
                Err(InputError::SealedWithoutKeyring)
            );
        }
        let n = pings.len() as u64;
        assert_eq!(other.stats().sealed_no_key, 1 + n);
        assert_eq!(keyless.stats().sealed_unexpected, 1 + n);
        // A sealed message cut short: truncated, not a panic.
        let cut = &pings[0].2[..SEAL_OVERHEAD - 1];
        assert_eq!(
            other.handle_packet(at(4), addr(1), cut),
            Err(InputError::SealedTruncated)
        );
        assert_eq!(other.stats().sealed_truncated, 1);
        let short_stream = &stream.2[..stream.2.len() - 1];
        let _ = other.handle_stream(at(4), addr(1), short_stream);
        assert_eq!(other.stats().sealed_truncated, 2);
        // Nothing was learnt from any of it.
        assert_eq!((other.num_members(), keyless.num_members()), (1, 1));
    }

    #[test]
    fn plaintext_is_refused_while_verify_incoming_and_read_without_it() {
        let mut keyed = hc_node("k", 1, Some(&[&K1]));
        let mut plain = hc_node("p", 2, None);
        plain.join(at(0), &[addr(1)]).unwrap();
        let push_pull = drain(&mut plain).remove(0);
        assert_eq!(push_pull.1, TransmitKind::Reliable);
        assert_eq!(
            hand(&mut keyed, at(1), addr(2), &push_pull),
            Err(InputError::PlaintextRefused)
        );
        let mut recs = Vec::new();
        let s = Session::default();
        s.records(
            &crate::testkit::alive("p", 2, 1),
            &s.local(&Name::new("p"), addr(2)),
            &mut recs,
        )
        .unwrap();
        let datagram = datagrams(&recs).remove(0);
        assert_eq!(
            keyed.handle_packet(at(1), addr(2), &datagram),
            Err(InputError::PlaintextRefused)
        );
        assert_eq!(keyed.stats().plaintext_refused, 2);
        assert!(keyed.member("p").is_none());
        // Rolling adoption, as memberlist's flags: incoming off reads plaintext (and sealed),
        // outgoing off sends plaintext.
        keyed.set_gossip_verify(false, false).unwrap();
        keyed.handle_packet(at(2), addr(2), &datagram).unwrap();
        hand(&mut keyed, at(2), addr(2), &push_pull).unwrap();
        assert!(keyed.member("p").is_some());
        let out = drain(&mut keyed);
        assert!(!out.is_empty());
        for t in &out {
            hand(&mut plain, at(3), addr(1), t).expect("plaintext goes out");
        }
        assert!(plain.member("k").is_some());
        assert_eq!(plain.stats().decode_errors, 0);
        // A datagram sealed under a key it lacks, read as plaintext, is counted as such.
        let foreign = seal(&K2, [1; NONCE_LEN], &datagram, &[]).unwrap();
        assert!(keyed.handle_packet(at(4), addr(2), &foreign).is_err());
        assert_eq!(keyed.stats().sealed_no_key, 1);
    }

    #[test]
    fn set_keyring_switches_a_running_node_between_plaintext_and_sealed() {
        let mut nodes = vec![hc_node("a", 1, None), hc_node("b", 2, None)];
        nodes[1].join(at(0), &[addr(1)]).unwrap();
        run(&mut nodes, 0, 2_000, |_, t| {
            if t.1 == TransmitKind::Datagram {
                decode_packet(&t.2).expect("plaintext");
            }
        });
        assert!(nodes[0].member("b").is_some());
        for n in nodes.iter_mut() {
            n.set_keyring(Some(Keyring::new(&K1).unwrap())).unwrap();
            assert_eq!(n.keyring_version(), 1);
        }
        let mut sealed = 0;
        run(&mut nodes, 2_050, 5_000, |_, t| {
            opened_raw(&K1, t);
            sealed += 1;
        });
        assert!(sealed > 5);
        for n in &nodes {
            assert_eq!(n.alive_count(), 2);
            assert_eq!(
                (n.stats().decode_errors, n.stats().plaintext_refused),
                (0, 0)
            );
        }
        // Back to plaintext.
        for n in nodes.iter_mut() {
            n.set_keyring(None).unwrap();
        }
        run(&mut nodes, 7_100, 2_000, |_, t| {
            if t.1 == TransmitKind::Datagram {
                decode_packet(&t.2).expect("plaintext again");
            }
        });
        assert_eq!(nodes[0].alive_count(), 2);
    }

    #[test]
    fn a_full_datagram_still_fits_the_mtu_once_sealed() {
        let mut a = hc_node("a", 1, Some(&[&K1]));
        let mtu = a.cfg.mtu;
        // Many members to gossip about: their alive messages fill every datagram.
        let s = Session::default();
        for i in 0..200u16 {
            let name = format!("member-with-a-longish-name-{i:03}");
            let mut recs = Vec::new();
            s.records(
                &crate::testkit::alive(&name, 100 + i, 1),
                &s.local(&Name::new(&name), addr(100 + i)),
                &mut recs,
            )
            .unwrap();
            let sealed = seal(&K1, [i as u8; NONCE_LEN], &datagrams(&recs)[0], &[]).unwrap();
            a.handle_packet(at(1), addr(100 + i), &sealed).unwrap();
        }
        assert_eq!(a.num_members(), 201);
        let mut lens = Vec::new();
        let mut t = 1;
        while t < 3_000 {
            t += 50;
            a.handle_timeout(at(t));
            for x in drain(&mut a) {
                if x.1 == TransmitKind::Datagram {
                    opened_raw(&K1, &x);
                    lens.push(x.2.len());
                }
            }
        }
        let longest = *lens.iter().max().expect("datagrams");
        assert!(
            longest <= mtu,
            "a sealed datagram of {longest} bytes, MTU {mtu}"
        );
        assert!(
            longest > mtu - 64,
            "datagrams were filled ({longest} of {mtu}): the test must reach the MTU"
        );
    }

    // ---- Serf's name-conflict query ----

    /// Serf's query responses among `sent` to `to`: (whether an ack, payload).
    fn serf_responses(sent: &[Sent], to: SocketAddr) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        for t in sent
            .iter()
            .filter(|t| t.0 == to && t.1 == TransmitKind::Datagram)
        {
            let p = decode_packet(&t.2).expect("a memberlist datagram");
            for m in p.messages() {
                if let PacketMsg::User(b) = m {
                    if let Ok(SerfMsg::QueryResponse(r)) = SerfMsg::decode(b) {
                        let ack = r.flags & crate::wire::hashicorp::QUERY_FLAG_ACK != 0;
                        out.push((ack, r.payload.unwrap_or_default()));
                    }
                }
            }
        }
        out
    }

    /// A datagram with the `_serf_conflict` query about `name` as serf agent `from` at
    /// 127.0.0.1:`port` sends it (asking for acks).
    fn conflict_query(from: &str, port: u16, ltime: u64, name: &str) -> Sent {
        let q = crate::wire::hashicorp::Query {
            ltime,
            id: ltime as u32,
            addr: Some(vec![127, 0, 0, 1]),
            port,
            source_node: from.into(),
            flags: crate::wire::hashicorp::QUERY_FLAG_ACK,
            timeout_ns: 5_000_000_000,
            name: "_serf_conflict".into(),
            payload: Some(name.as_bytes().to_vec()),
            ..Default::default()
        };
        let msg = crate::wire::hashicorp::Packet::Msg(PacketMsg::User(SerfMsg::Query(q).encode()));
        (addr(2), TransmitKind::Datagram, msg.encode().unwrap())
    }

    #[test]
    fn serfs_conflict_query_is_answered_with_our_view_and_never_surfaced() {
        let tags = crate::Tags::from([
            ("dc".to_string(), "east".to_string()),
            ("role".to_string(), "web".to_string()),
        ]);
        let a = Node::with_entropy(
            hc_config(None),
            Identity::new("a", addr(1)).with_tags(tags.clone()),
            1,
            [1; 32],
            at(0),
        )
        .unwrap();
        let mut nodes = vec![a, hc_node("b", 2, None), hc_node("c", 3, None)];
        for n in &mut nodes[1..] {
            n.join(at(0), &[addr(1)]).unwrap();
        }
        run(&mut nodes, 0, 3_000, |_, _| {});
        assert_eq!(nodes[1].alive_count(), 3);
        let b = &mut nodes[1];
        while b.poll_event().is_some() {}
        drain(b);

        // c asks b about a: an ack, then b's view of a as Serf's Member.
        hand(b, at(3_100), addr(3), &conflict_query("c", 3, 10, "a")).unwrap();
        let sent = drain(b);
        let r = serf_responses(&sent, addr(3));
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0], (true, Vec::new()), "the ack first");
        let (false, p) = &r[1] else { panic!("{r:?}") };
        let Ok(SerfMsg::ConflictResponse(Some(m))) = SerfMsg::decode(p) else {
            panic!("{p:?}")
        };
        assert_eq!(m.name, "a");
        assert_eq!((m.addr.as_deref(), m.port), (Some(&[127, 0, 0, 1][..]), 1));
        assert_eq!(
            m.tags,
            Some(vec![
                ("dc".into(), "east".into()),
                ("role".into(), "web".into())
            ])
        );
        assert_eq!(m.status, 1, "alive");
        assert_eq!(m.versions.to_vec(), Versions::SERF_0_9_4.to_bytes());

        // A name b does not know: nil, as Serf answers.
        hand(b, at(3_200), addr(3), &conflict_query("c", 3, 11, "ghost")).unwrap();
        let r = serf_responses(&drain(b), addr(3));
        assert_eq!(r, vec![(true, Vec::new()), (false, vec![6, 0xc0])]);

        // About b itself: acked, not answered (Serf's agents do not vote on their own name).
        hand(b, at(3_300), addr(3), &conflict_query("c", 3, 12, "b")).unwrap();
        let r = serf_responses(&drain(b), addr(3));
        assert_eq!(r, vec![(true, Vec::new())]);

        // A second "a" at port 9 claims the name, then asks: b answers it (at the claiming
        // address) with the a it knows, at port 1 — the claimant loses Serf's vote.
        let _ = hand(b, at(3_400), addr(9), &alive_datagram(2, "a", 9, 0));
        drain(b);
        assert_eq!(
            b.member("a").map(|m| m.addr),
            Some(addr(1)),
            "the claim is refused"
        );
        hand(b, at(3_500), addr(9), &conflict_query("a", 9, 13, "a")).unwrap();
        let r = serf_responses(&drain(b), addr(9));
        assert_eq!(r.len(), 2, "{r:?}");
        let Ok(SerfMsg::ConflictResponse(Some(m))) = SerfMsg::decode(&r[1].1) else {
            panic!("{r:?}")
        };
        assert_eq!((m.name.as_str(), m.port), ("a", 1));
        // A stranger that claimed nothing is not answered.
        hand(b, at(3_600), addr(8), &conflict_query("a", 8, 14, "a")).unwrap();
        assert!(serf_responses(&drain(b), addr(8)).is_empty());

        // Nothing reached the application as a query; the name is reserved there.
        for n in nodes.iter_mut() {
            assert!(
                !std::iter::from_fn(|| n.poll_event()).any(|e| matches!(e, crate::Event::Query(_)))
            );
        }
        assert_eq!(
            nodes[0]
                .query(
                    at(3_700),
                    "_serf_conflict",
                    "a",
                    crate::QueryParams::default()
                )
                .map(|_| ()),
            Err(ApiError::ReservedName)
        );
    }

    /// A datagram to 127.0.0.1:`to` holding serf agent `node`'s alive message at
    /// 127.0.0.1:`port`, `incarnation`.
    fn alive_datagram(to: u16, node: &str, port: u16, incarnation: u32) -> Sent {
        let alive = crate::wire::hashicorp::Alive {
            incarnation,
            node: node.into(),
            addr: Some(vec![127, 0, 0, 1]),
            port,
            meta: None,
            vsn: Some(Versions::SERF_0_9_4.to_bytes()),
        };
        let msg = crate::wire::hashicorp::Packet::Msg(PacketMsg::Alive(alive));
        (addr(to), TransmitKind::Datagram, msg.encode().unwrap())
    }

    /// The `_serf_conflict` queries in the datagram `t`.
    fn conflict_queries(t: &Sent) -> Vec<crate::wire::hashicorp::Query> {
        let Ok(p) = decode_packet(&t.2) else {
            return Vec::new();
        };
        p.messages()
            .into_iter()
            .filter_map(|m| match m {
                PacketMsg::User(b) => match SerfMsg::decode(b) {
                    Ok(SerfMsg::Query(q)) if q.name == "_serf_conflict" => Some(q),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_nodes_own_name_vote_asks_serfs_query_and_counts_serfs_answers() {
        // a, b, c at ports 1–3; a second "a" at port 4 joins through b.
        let mut nodes = vec![
            hc_node("a", 1, None),
            hc_node("b", 2, None),
            hc_node("c", 3, None),
        ];
        for n in &mut nodes[1..] {
            n.join(at(0), &[addr(1)]).unwrap();
        }
        run(&mut nodes, 0, 3_000, |_, _| {});
        assert_eq!(nodes[0].alive_count(), 3);
        nodes.push(hc_node("a", 4, None));
        nodes[3].join(at(3_000), &[addr(2)]).unwrap();
        let mut asked = std::collections::BTreeSet::new();
        run(&mut nodes, 3_000, 40_000, |i, t| {
            for q in conflict_queries(t) {
                let payload = q.payload.unwrap_or_default();
                assert_eq!(
                    (q.source_node.as_str(), &payload[..]),
                    ("a", &b"a"[..]),
                    "sent by {i}"
                );
                asked.insert(q.port);
            }
            assert!(
                !t.2.windows(17).any(|w| w == b"_rookery/conflict"),
                "rookery's own conflict query on the HashiCorp profile, sent by {i}"
            );
        });
        // The newcomer, told of the first "a" by b's push-pull, asked Serf's query ...
        assert!(asked.contains(&4), "the askers' ports: {asked:?}");
        // ... and b's and c's answers, Serf's conflict responses holding port 1, settled it.
        assert!(nodes[3].has_left(), "the newcomer lost its name");
        assert_eq!(nodes[3].stats().name_conflicts_lost, 1);
        assert!(!nodes[0].has_left(), "the first a keeps it");
        assert_eq!(nodes[0].stats().name_conflicts_lost, 0);
        for n in &nodes[1..3] {
            assert_eq!(n.member("a").map(|m| m.addr), Some(addr(1)));
        }

        // The tally reads Serf's answers as a serf agent writes them: a lone node whose name
        // two members hold at another address gives it up; nil answers count for no one.
        let mut lone = hc_node("z", 5, None);
        // p, q, r never answer a probe here: their alives come again each second, at a newer
        // incarnation, so they are live whenever their answers arrive.
        let peers_alive = |lone: &mut Node, now: u64| {
            for (peer, port) in [("p", 6), ("q", 7), ("r", 8)] {
                let t = alive_datagram(5, peer, port, (now / 1_000) as u32 + 1);
                hand(lone, at(now), addr(port), &t).unwrap();
            }
        };
        peers_alive(&mut lone, 0);
        let _ = hand(&mut lone, at(1), addr(9), &alive_datagram(5, "z", 9, 0));
        let mut query = None;
        let mut now = 1;
        while query.is_none() && now < 30_000 {
            now += 50;
            lone.handle_timeout(at(now));
            if now % 1_000 == 0 {
                peers_alive(&mut lone, now);
            }
            for t in drain(&mut lone) {
                if let Some(q) = conflict_queries(&t).pop() {
                    query = Some((q.ltime, q.id));
                }
            }
        }
        let (ltime, id) = query.expect("the vote asked Serf's query");
        let answer = |from: &str, held: Option<u16>| {
            let member = held.map(|p| {
                crate::wire::hashicorp::serf_member(
                    "z",
                    addr(p),
                    &crate::Tags::new(),
                    MemberStatus::Alive,
                    Versions::SERF_0_9_4,
                )
            });
            let r = crate::wire::hashicorp::QueryResponse {
                ltime,
                id,
                from: from.into(),
                payload: Some(SerfMsg::ConflictResponse(member).encode()),
                ..Default::default()
            };
            let msg = crate::wire::hashicorp::Packet::Msg(PacketMsg::User(
                SerfMsg::QueryResponse(r).encode(),
            ));
            (addr(5), TransmitKind::Datagram, msg.encode().unwrap())
        };
        hand(&mut lone, at(now), addr(6), &answer("p", Some(9))).unwrap();
        hand(&mut lone, at(now), addr(7), &answer("q", Some(9))).unwrap();
        hand(&mut lone, at(now), addr(8), &answer("r", None)).unwrap();
        for _ in 0..600 {
            now += 50;
            lone.handle_timeout(at(now));
            drain(&mut lone);
        }
        assert!(
            lone.has_left(),
            "two of three answers hold the claimant's address"
        );
        assert_eq!(lone.stats().name_conflicts_lost, 1);
    }

    #[test]
    fn without_serf_direct_messages_are_memberlists_user_messages() {
        let ml = |name: &str, port: u16| {
            let cfg = Config {
                wire: WireProfile::Memberlist,
                ..Config::local()
            };
            Node::new(cfg, Identity::new(name, addr(port)), u64::from(port), at(0)).unwrap()
        };
        let mut nodes = vec![ml("a", 1), ml("b", 2), ml("c", 3)];
        for n in &mut nodes[1..] {
            n.join(at(0), &[addr(1)]).unwrap();
        }
        run(&mut nodes, 0, 3_000, |_, _| {});
        assert_eq!(nodes[0].alive_count(), 3);
        for n in nodes.iter_mut() {
            while n.poll_event().is_some() {}
            drain(n);
        }
        // a's message to b: a reliable transmit numbered by the send, holding memberlist's
        // stream user message with the payload as is (what Go's `NotifyMsg` is handed).
        let id = nodes[0].send(at(3_100), "b", "hello").unwrap();
        let t: Vec<_> = std::iter::from_fn(|| nodes[0].poll_transmit()).collect();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            (t[0].to, t[0].kind, t[0].message),
            (addr(2), TransmitKind::Reliable, Some(id))
        );
        let (stream, _) = decode_stream(&t[0].payload).unwrap();
        let StreamMsg::User(raw) = stream.msg else {
            panic!("a stream user message: {stream:?}")
        };
        assert_eq!(raw, b"hello");
        // b reads it as a direct message from the member at the sender's address ...
        let sent = (addr(2), TransmitKind::Reliable, t[0].payload.to_vec());
        hand(&mut nodes[1], at(3_100), addr(1), &sent).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| nodes[1].poll_event()).collect();
        assert_eq!(
            got,
            vec![crate::Event::Message {
                from: Name::new("a"),
                payload: bytes::Bytes::from_static(b"hello")
            }]
        );
        // ... and from a connection's port no member advertises, as that address.
        hand(&mut nodes[1], at(3_200), addr(40_000), &sent).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| nodes[1].poll_event()).collect();
        assert!(
            matches!(&got[..], [crate::Event::Message { from, .. }] if &**from == "127.0.0.1:40000"),
            "{got:?}"
        );
        // A Go program's best-effort user message comes as a datagram.
        let d = crate::wire::hashicorp::Packet::Msg(PacketMsg::User(b"from go".to_vec()));
        let d = (addr(2), TransmitKind::Datagram, d.encode().unwrap());
        hand(&mut nodes[1], at(3_300), addr(3), &d).unwrap();
        let got: Vec<_> = std::iter::from_fn(|| nodes[1].poll_event()).collect();
        assert_eq!(
            got,
            vec![crate::Event::Message {
                from: Name::new("c"),
                payload: bytes::Bytes::from_static(b"from go")
            }]
        );
        // Broadcast: one numbered user message per other live member.
        let to = nodes[2].broadcast(at(3_400), "all").unwrap();
        let t: Vec<_> = std::iter::from_fn(|| nodes[2].poll_transmit())
            .filter(|t| t.kind == TransmitKind::Reliable)
            .collect();
        assert_eq!(to.len(), 2);
        assert_eq!(
            t.iter().map(|t| (t.to, t.message)).collect::<Vec<_>>(),
            to.iter()
                .map(|(n, id)| (nodes[2].member(n).unwrap().addr, Some(*id)))
                .collect::<Vec<_>>()
        );
        // A receipt has no counterpart in memberlist; Serf's layer has no direct messages.
        assert_eq!(
            nodes[0].send_acked(at(3_500), "b", "x"),
            Err(ApiError::NotInProfile)
        );
        let mut serf = hc_node("s", 9, None);
        assert_eq!(serf.send(at(1), "s", "x"), Err(ApiError::NotInProfile));
        assert_eq!(serf.broadcast(at(1), "x"), Err(ApiError::NotInProfile));
    }

    #[test]
    fn a_push_pull_on_our_own_connection_is_an_answer_never_a_request() {
        let mut a = hc_node("a", 1, None);
        let mut b = hc_node("b", 2, None);
        a.join(at(0), &[addr(2)]).unwrap();
        let req: Vec<Sent> = drain(&mut a)
            .into_iter()
            .filter(|t| t.1 == TransmitKind::Reliable)
            .collect();
        assert_eq!(req.len(), 1, "the join's push-pull");
        hand(&mut b, at(1), addr(1), &req[0]).unwrap();
        let answer: Vec<Sent> = drain(&mut b)
            .into_iter()
            .filter(|t| t.1 == TransmitKind::Reliable && t.0 == addr(1))
            .collect();
        assert_eq!(answer.len(), 1, "b answers");
        // Read on a's own connection: the join's answer.
        a.handle_stream_answer(at(2), addr(2), &answer[0].2)
            .unwrap();
        assert_eq!(a.alive_count(), 2);
        assert_eq!(a.stats().late_answers, 0);
        drain(&mut a);
        // The same answer again (as if late): no exchange waits for it, so it is dropped,
        // counted, and not answered — answering would start an exchange b takes for a request.
        a.handle_stream_answer(at(3), addr(2), &answer[0].2)
            .unwrap();
        assert_eq!(a.stats().late_answers, 1);
        assert!(
            drain(&mut a).iter().all(|t| t.1 != TransmitKind::Reliable),
            "nothing sent back"
        );
        // Without the driver's word, a push-pull with no exchange is taken as a request.
        a.handle_stream(at(4), addr(2), &answer[0].2).unwrap();
        assert!(drain(&mut a)
            .iter()
            .any(|t| t.1 == TransmitKind::Reliable && t.0 == addr(2)));
        assert_eq!(a.stats().late_answers, 1);
    }
}
