//! The mapping between our [`Message`] and the HashiCorp messages: this module owns what
//! each of our messages becomes on a HashiCorp wire and back, and says what has no
//! counterpart. It decides no protocol: the node will use it once the profile plugs in.
//!
//! Ours → HashiCorp ([`to_hashicorp`]):
//! - `Ping`, `Ack`, `Nack`, `IndirectPing`, `Suspect`, `Dead` map one to one; our view
//!   **digests** on pings and acks have no counterpart and are dropped (a mixed cluster
//!   repairs views by memberlist's periodic push-pull only). An ack's payload (Serf's Vivaldi
//!   coordinate) is left empty: we have no coordinates yet.
//! - `StreamPing` becomes a stream ping; its `reply_to` has no counterpart (memberlist acks on
//!   the same connection).
//! - `Alive` becomes an alive message with the tags packed into meta the Serf way and our
//!   advertised [`Versions`]; its join-intent Lamport time, when set, becomes a separate Serf
//!   join intent (a user message).
//! - `LeaveIntent`, `UserEvent`, `Query`, `QueryResponse` become Serf messages in user
//!   messages; `RelayResponse` a Serf relay, with an empty `DestName` (we do not carry the
//!   asker's name there; memberlist 0.2.2 only needs it with `RequireNodeNames`).
//! - `PushPull` becomes memberlist's stream push-pull with Serf's push-pull as user state.
//!   Our exchange **id**, **request** flag, **reply_to** and **sender** have no counterpart
//!   (the TCP connection pairs request and answer); our per-state **accuser** is dropped (a
//!   Go peer counts the relayed suspicion as its sender's); our `Leaving` state travels as
//!   alive (Serf learns of a leave from the leave intent, not the state).
//! - `Direct` (direct messages) has no counterpart: Serf has no direct messaging, and a Serf
//!   agent logs an unknown user message type. Refused with [`HcError::Unmappable`].
//!
//! HashiCorp → ours ([`from_packet_msg`], [`from_serf`], [`push_pull_from_hashicorp`]):
//! - memberlist's ping `SourceAddr`/`SourcePort`/`SourceNode` and an indirect ping's source
//!   fields have no counterpart (we answer the datagram's source address); the indirect
//!   ping's `Nack` flag is dropped (we always nack).
//! - An alive message's `Vsn` is checked (six bytes) and dropped; its meta becomes tags.
//! - Serf's join intent has no message of ours (our join time rides on `Alive`):
//!   [`HcError::Unmappable`]; the node will have to apply it to the member's state.
//! - Serf's query flag `NoBroadcast` has no counterpart; the timeout is rounded down to
//!   milliseconds; several node filters are merged into one list.
//! - A relay's `DestName` is dropped; a relay of anything but a query response is refused.
//! - Serf's conflict response and key request/response are payloads of internal queries, not
//!   messages of ours: they decode (`serf`), but map to nothing here.
//! - memberlist's push-pull carries no exchange id, request flag or sender: the caller says
//!   them. Serf's `LeftMembers` mark states left; `StatusLTimes` give each state's Lamport
//!   time; the event buffer is flattened.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::frame::StreamMsg;
use super::memberlist::{
    Accuse, Ack, Alive as HcAlive, IndirectPing, Nack, NodeState, PacketMsg, Ping, PushNodeState,
    PushPull as HcPushPull, Versions,
};
use super::serf::{
    decode_tags, encode_tags, EventEntry, Events, Filter, Join, Leave, Query, QueryResponse,
    RelayHeader, SerfMsg, SerfPushPull, QUERY_FLAG_ACK,
};
use super::HcError;
use crate::identity::{Name, Tags};
use crate::wire::message::{
    Accusation, Alive, Intent, Message, PushPull, PushState, QueryMsg, QueryResp, UserEventMsg,
    WireStatus,
};

/// What this node says about itself on a HashiCorp wire.
#[derive(Clone, Debug)]
pub(crate) struct Local {
    /// Our member name.
    pub name: Name,
    /// Our advertised address.
    pub addr: SocketAddr,
    /// The protocol versions we advertise.
    pub versions: Versions,
    /// Whether Serf's layer rides on the wire (its messages, its push-pull state).
    pub serf: bool,
}

/// One of our messages on a HashiCorp wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A message for a datagram (or a compound part).
    Packet(PacketMsg),
    /// A message for a stream.
    Stream(StreamMsg),
}

/// The bytes of an IP address as Go's `net.IP` holds them on the wire: 4 for IPv4, 16 for
/// IPv6.
pub(crate) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An address from a Go `net.IP` and port: 4 bytes, or 16 (an IPv4-mapped IPv6 address
/// becomes IPv4, as Go prints it).
pub(crate) fn socket_addr(ip: Option<&[u8]>, port: u16) -> Result<SocketAddr, HcError> {
    let ip = match ip.unwrap_or(&[]) {
        [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
        b if b.len() == 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            let v6 = Ipv6Addr::from(o);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return Err(HcError::Unmappable("address is neither 4 nor 16 bytes")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Tags as a member's meta: Serf's encoding (magic byte, msgpack map). Without Serf's layer
/// (`serf` false) the meta reads back to the bytes a Go program put there: no tags are an
/// empty meta, and a lone `role` tag (how a meta without Serf's magic byte is read) its bytes.
fn tags_to_meta(tags: &Tags, serf: bool) -> Vec<u8> {
    if !serf {
        if tags.is_empty() {
            return Vec::new();
        }
        // (A string never starts with the magic byte 255, which is not UTF-8.)
        if let (1, Some(role)) = (tags.len(), tags.get("role")) {
            return role.as_bytes().to_vec();
        }
    }
    let list: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    encode_tags(&list)
}

fn meta_to_tags(meta: Option<&[u8]>) -> Result<Tags, HcError> {
    let meta = meta.unwrap_or(&[]);
    if meta.is_empty() {
        return Ok(Tags::new());
    }
    Ok(decode_tags(meta)?.into_iter().collect())
}

fn user(m: SerfMsg) -> Outgoing {
    Outgoing::Packet(PacketMsg::User(m.encode()))
}

/// A payload as Go holds it: an empty one is nil (what Serf sends for no payload).
fn opt_bytes(b: &Bytes) -> Option<Vec<u8>> {
    (!b.is_empty()).then(|| b.to_vec())
}

fn query_to_serf(q: &QueryMsg) -> Query {
    let mut filters = Vec::new();
    if !q.filter_nodes.is_empty() {
        filters.push(Filter::Nodes(
            q.filter_nodes.iter().map(|n| n.to_string()).collect(),
        ));
    }
    for (tag, expr) in &q.filter_tags {
        filters.push(Filter::Tag {
            tag: tag.clone(),
            expr: expr.clone(),
        });
    }
    Query {
        ltime: q.ltime,
        id: q.id,
        addr: Some(ip_bytes(q.addr.ip())),
        port: q.addr.port(),
        source_node: q.from.to_string(),
        filters: (!filters.is_empty()).then_some(filters),
        flags: if q.ack { QUERY_FLAG_ACK } else { 0 },
        relay_factor: q.relay_factor,
        timeout_ns: i64::from(q.timeout_ms) * 1_000_000,
        name: q.name.to_string(),
        payload: opt_bytes(&q.payload),
    }
}

fn resp_to_serf(r: &QueryResp) -> QueryResponse {
    QueryResponse {
        ltime: r.ltime,
        id: r.id,
        from: r.from.to_string(),
        flags: if r.ack { QUERY_FLAG_ACK } else { 0 },
        payload: opt_bytes(&r.payload),
    }
}

fn resp_from_serf(r: &QueryResponse) -> QueryResp {
    QueryResp {
        ltime: r.ltime,
        id: r.id,
        from: Name::new(&r.from),
        ack: r.flags & QUERY_FLAG_ACK != 0,
        payload: Bytes::from(r.payload.clone().unwrap_or_default()),
    }
}

fn status_to_state(s: WireStatus) -> NodeState {
    match s {
        WireStatus::Alive | WireStatus::Leaving => NodeState::Alive,
        WireStatus::Suspect => NodeState::Suspect,
        WireStatus::Dead => NodeState::Dead,
        WireStatus::Left => NodeState::Left,
    }
}

/// Our push-pull as memberlist's stream push-pull carrying Serf's push-pull (none without
/// Serf's layer, `serf` false).
pub(crate) fn push_pull_to_hashicorp(p: &PushPull, versions: Versions, serf: bool) -> HcPushPull {
    let states = p
        .states
        .iter()
        .map(|s| PushNodeState {
            name: s.name.to_string(),
            addr: Some(ip_bytes(s.addr.ip())),
            port: s.addr.port(),
            meta: Some(tags_to_meta(&s.tags, serf)),
            incarnation: s.incarnation,
            state: status_to_state(s.status),
            vsn: Some(versions.to_bytes()),
        })
        .collect();
    if !serf {
        return HcPushPull {
            join: p.join,
            states,
            user_state: Vec::new(),
        };
    }
    let left: Vec<String> = p
        .states
        .iter()
        .filter(|s| s.status == WireStatus::Left)
        .map(|s| s.name.to_string())
        .collect();
    let mut events: Vec<Events> = Vec::new();
    for e in &p.events {
        let entry = EventEntry {
            name: e.name.to_string(),
            payload: opt_bytes(&e.payload),
        };
        match events.iter_mut().find(|g| g.ltime == e.ltime) {
            Some(g) => g.events.get_or_insert_with(Vec::new).push(entry),
            None => events.push(Events {
                ltime: e.ltime,
                events: Some(vec![entry]),
            }),
        }
    }
    let serf = SerfPushPull {
        ltime: p.member_ltime,
        status_ltimes: Some(
            p.states
                .iter()
                .map(|s| (s.name.to_string(), s.ltime))
                .collect(),
        ),
        left_members: Some(left),
        event_ltime: p.event_ltime,
        events: Some(events.into_iter().map(Some).collect()),
        query_ltime: p.query_ltime,
    };
    HcPushPull {
        join: p.join,
        states,
        user_state: SerfMsg::PushPull(serf).encode(),
    }
}

/// memberlist's push-pull (and the Serf push-pull in its user state, when it holds one) as
/// ours; the exchange `id`, `request` flag, `sender` and `reply_to` come from the caller.
pub(crate) fn push_pull_from_hashicorp(
    p: &HcPushPull,
    id: u32,
    request: bool,
    sender: Name,
    reply_to: SocketAddr,
    with_serf: bool,
) -> Result<PushPull, HcError> {
    // Without Serf's layer the user state is the peer program's own: not ours to read.
    let serf = if p.user_state.is_empty() || !with_serf {
        None
    } else {
        match SerfMsg::decode(&p.user_state)? {
            SerfMsg::PushPull(s) => Some(s),
            _ => return Err(HcError::Unmappable("push-pull user state is not Serf's")),
        }
    };
    let mut states = Vec::new();
    for s in &p.states {
        if s.versions().is_none() {
            return Err(HcError::Unmappable("state without six version bytes"));
        }
        let left = serf
            .as_ref()
            .and_then(|x| x.left_members.as_ref())
            .is_some_and(|l| l.contains(&s.name));
        let ltime = serf
            .as_ref()
            .and_then(|x| x.status_ltimes.as_ref())
            .and_then(|m| m.iter().find(|(n, _)| *n == s.name))
            .map_or(0, |(_, t)| *t);
        states.push(PushState {
            name: Name::new(&s.name),
            addr: socket_addr(s.addr.as_deref(), s.port)?,
            incarnation: s.incarnation,
            status: match s.state {
                _ if left => WireStatus::Left,
                NodeState::Alive => WireStatus::Alive,
                NodeState::Suspect => WireStatus::Suspect,
                NodeState::Dead => WireStatus::Dead,
                NodeState::Left => WireStatus::Left,
            },
            tags: meta_to_tags(s.meta.as_deref())?,
            ltime,
            accuser: None,
        });
    }
    let mut events = Vec::new();
    if let Some(s) = &serf {
        for slot in s.events.iter().flatten().flatten() {
            for e in slot.events.iter().flatten() {
                events.push(UserEventMsg {
                    ltime: slot.ltime,
                    name: Name::new(&e.name),
                    payload: Bytes::from(e.payload.clone().unwrap_or_default()),
                    coalesce: false,
                });
            }
        }
    }
    Ok(PushPull {
        id,
        request,
        join: p.join,
        reply_to,
        sender,
        states,
        member_ltime: serf.as_ref().map_or(0, |s| s.ltime),
        event_ltime: serf.as_ref().map_or(0, |s| s.event_ltime),
        query_ltime: serf.as_ref().map_or(0, |s| s.query_ltime),
        events,
    })
}

/// One of our messages as the HashiCorp messages that say it (usually one; an alive message
/// with a join time is two). Without Serf's layer (`local.serf` false) Serf's messages are
/// left out, and a message that is nothing but Serf's is refused.
pub(crate) fn to_hashicorp(msg: &Message, local: &Local) -> Result<Vec<Outgoing>, HcError> {
    if let (Message::Direct { payload, .. }, false) = (msg, local.serf) {
        // Without Serf's layer a user message is the application's own: memberlist's
        // `SendReliable`/`NotifyMsg`, with no sender name on the wire.
        return Ok(vec![Outgoing::Packet(PacketMsg::User(payload.to_vec()))]);
    }
    let out = to_hashicorp_all(msg, local)?;
    if local.serf {
        return Ok(out);
    }
    let out: Vec<Outgoing> = out
        .into_iter()
        .filter(|o| !matches!(o, Outgoing::Packet(PacketMsg::User(_))))
        .collect();
    if out.is_empty() {
        return Err(HcError::Unmappable("a Serf message with no Serf layer"));
    }
    Ok(out)
}

/// [`to_hashicorp`] with Serf's layer.
fn to_hashicorp_all(msg: &Message, local: &Local) -> Result<Vec<Outgoing>, HcError> {
    let source_addr = ip_bytes(local.addr.ip());
    Ok(match msg {
        // memberlist has no bare-answered ping: a revival check is a ping there.
        Message::Ping { seq, target, .. } | Message::CheckPing { seq, target } => {
            vec![Outgoing::Packet(PacketMsg::Ping(Ping {
                seq_no: *seq,
                node: target.to_string(),
                source_addr,
                source_port: local.addr.port(),
                source_node: local.name.to_string(),
            }))]
        }
        Message::Ack { seq, .. } => vec![Outgoing::Packet(PacketMsg::Ack(Ack {
            seq_no: *seq,
            payload: None,
        }))],
        Message::Nack { seq } => vec![Outgoing::Packet(PacketMsg::Nack(Nack { seq_no: *seq }))],
        Message::IndirectPing { seq, target, addr } => {
            vec![Outgoing::Packet(PacketMsg::IndirectPing(IndirectPing {
                seq_no: *seq,
                target: Some(ip_bytes(addr.ip())),
                port: addr.port(),
                node: target.to_string(),
                nack: true,
                source_addr,
                source_port: local.addr.port(),
                source_node: local.name.to_string(),
            }))]
        }
        Message::StreamPing { seq, target, .. } => vec![Outgoing::Stream(StreamMsg::Ping(Ping {
            seq_no: *seq,
            node: target.to_string(),
            source_addr,
            source_port: local.addr.port(),
            source_node: local.name.to_string(),
        }))],
        Message::Alive(a) => {
            let mut out = vec![Outgoing::Packet(PacketMsg::Alive(HcAlive {
                incarnation: a.incarnation,
                node: a.name.to_string(),
                addr: Some(ip_bytes(a.addr.ip())),
                port: a.addr.port(),
                meta: Some(tags_to_meta(&a.tags, local.serf)),
                vsn: Some(local.versions.to_bytes()),
            }))];
            if a.ltime != 0 {
                out.push(user(SerfMsg::Join(Join {
                    ltime: a.ltime,
                    node: a.name.to_string(),
                })));
            }
            out
        }
        Message::Suspect(s) | Message::Dead(s) => {
            let m = Accuse {
                incarnation: s.incarnation,
                node: s.name.to_string(),
                from: s.from.to_string(),
            };
            vec![Outgoing::Packet(if matches!(msg, Message::Suspect(_)) {
                PacketMsg::Suspect(m)
            } else {
                PacketMsg::Dead(m)
            })]
        }
        Message::PushPull(p) => vec![Outgoing::Stream(StreamMsg::PushPull(
            push_pull_to_hashicorp(p, local.versions, local.serf),
        ))],
        Message::LeaveIntent(i) => vec![user(SerfMsg::Leave(Leave {
            ltime: i.ltime,
            node: i.name.to_string(),
            prune: i.prune,
        }))],
        Message::UserEvent(e) => vec![user(SerfMsg::UserEvent(super::serf::UserEvent {
            ltime: e.ltime,
            name: e.name.to_string(),
            payload: opt_bytes(&e.payload),
            cc: e.coalesce,
        }))],
        Message::Query(q) => vec![user(SerfMsg::Query(query_to_serf(q)))],
        Message::QueryResponse(r) => vec![user(SerfMsg::QueryResponse(resp_to_serf(r)))],
        Message::RelayResponse { to, resp } => vec![user(SerfMsg::Relay(
            RelayHeader {
                ip: Some(ip_bytes(to.ip())),
                port: i64::from(to.port()),
                zone: String::new(),
                dest_name: String::new(),
            },
            Box::new(SerfMsg::QueryResponse(resp_to_serf(resp))),
        ))],
        Message::Direct { .. } | Message::DirectAcked { .. } | Message::DirectAck { .. } => {
            return Err(HcError::Unmappable(
                "direct messages have no Serf counterpart",
            ))
        }
    })
}

/// A memberlist datagram message as ours (a user message through [`from_serf`]).
pub(crate) fn from_packet_msg(m: &PacketMsg) -> Result<Message, HcError> {
    Ok(match m {
        PacketMsg::Ping(p) => Message::Ping {
            seq: p.seq_no,
            target: Name::new(&p.node),
            digest: None,
        },
        PacketMsg::IndirectPing(p) => Message::IndirectPing {
            seq: p.seq_no,
            target: Name::new(&p.node),
            addr: socket_addr(p.target.as_deref(), p.port)?,
        },
        PacketMsg::Ack(a) => Message::Ack {
            seq: a.seq_no,
            digest: None,
        },
        PacketMsg::Nack(n) => Message::Nack { seq: n.seq_no },
        PacketMsg::Suspect(s) | PacketMsg::Dead(s) => {
            let a = Accusation {
                incarnation: s.incarnation,
                name: Name::new(&s.node),
                from: Name::new(&s.from),
            };
            if matches!(m, PacketMsg::Suspect(_)) {
                Message::Suspect(a)
            } else {
                Message::Dead(a)
            }
        }
        PacketMsg::Alive(a) => {
            if a.versions().is_none() {
                return Err(HcError::Unmappable("alive without six version bytes"));
            }
            Message::Alive(Alive {
                incarnation: a.incarnation,
                name: Name::new(&a.node),
                addr: socket_addr(a.addr.as_deref(), a.port)?,
                tags: meta_to_tags(a.meta.as_deref())?,
                ltime: 0,
            })
        }
        PacketMsg::User(b) => from_serf(&SerfMsg::decode(b)?)?,
    })
}

/// A Serf message as ours.
pub(crate) fn from_serf(m: &SerfMsg) -> Result<Message, HcError> {
    Ok(match m {
        SerfMsg::Leave(l) => Message::LeaveIntent(Intent {
            ltime: l.ltime,
            name: Name::new(&l.node),
            prune: l.prune,
        }),
        SerfMsg::UserEvent(e) => Message::UserEvent(UserEventMsg {
            ltime: e.ltime,
            name: Name::new(&e.name),
            payload: Bytes::from(e.payload.clone().unwrap_or_default()),
            coalesce: e.cc,
        }),
        SerfMsg::Query(q) => {
            let mut filter_nodes = Vec::new();
            let mut filter_tags = Vec::new();
            for f in q.filters.iter().flatten() {
                match f {
                    Filter::Nodes(n) => filter_nodes.extend(n.iter().map(Name::new)),
                    Filter::Tag { tag, expr } => filter_tags.push((tag.clone(), expr.clone())),
                }
            }
            let ms = (q.timeout_ns.max(0) / 1_000_000).min(i64::from(u32::MAX));
            Message::Query(Box::new(QueryMsg {
                ltime: q.ltime,
                id: q.id,
                from: Name::new(&q.source_node),
                addr: socket_addr(q.addr.as_deref(), q.port)?,
                filter_nodes,
                filter_tags,
                ack: q.flags & QUERY_FLAG_ACK != 0,
                relay_factor: q.relay_factor,
                timeout_ms: ms as u32,
                name: Name::new(&q.name),
                payload: Bytes::from(q.payload.clone().unwrap_or_default()),
            }))
        }
        SerfMsg::QueryResponse(r) => Message::QueryResponse(resp_from_serf(r)),
        SerfMsg::Relay(h, inner) => match inner.as_ref() {
            SerfMsg::QueryResponse(r) => Message::RelayResponse {
                to: socket_addr(
                    h.ip.as_deref(),
                    u16::try_from(h.port).map_err(|_| HcError::OutOfRange("DestAddr.Port"))?,
                )?,
                resp: resp_from_serf(r),
            },
            _ => {
                return Err(HcError::Unmappable(
                    "relay of a message other than a response",
                ))
            }
        },
        SerfMsg::Join(_) => {
            return Err(HcError::Unmappable(
                "a join intent rides on our alive message",
            ))
        }
        SerfMsg::PushPull(_) => {
            return Err(HcError::Unmappable(
                "Serf push-pull travels inside memberlist's",
            ))
        }
        SerfMsg::ConflictResponse(_) | SerfMsg::KeyRequest(_) | SerfMsg::KeyResponse(_) => {
            return Err(HcError::Unmappable("internal query payload, not a message"))
        }
    })
}
