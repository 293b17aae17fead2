//! Serf 0.9.4's messages, carried in memberlist user messages (and, for Serf's push-pull, in
//! memberlist's push-pull user state): this module owns Serf's message-type byte and the
//! msgpack bodies behind it (`serf/messages.go`), the query filters, the key-operation and
//! conflict payloads (`keymanager.go`, `internal_query.go`), and the tags Serf packs into a
//! member's meta (`serf.go`: a magic byte 255, then a msgpack map; without it the whole meta
//! is the old protocol's role string).
//!
//! A Serf message is `[type][msgpack]`, except a relay: `[9][msgpack relayHeader][type]
//! [msgpack]`, the tail being the message to forward as is. Go writes maps (tags, status
//! times) in random order: a decoded map keeps the order it arrived in, so it re-encodes to the
//! same bytes, but two Go encodings of one map may differ.

use super::memberlist::GoBytes;
use super::msgpack::{Reader, Writer};
use super::{HcError, MAX_FIELDS, MAX_ITEMS, MAX_PAYLOAD, MAX_STRING};

/// Serf's message-type byte (`messageType` in `serf/messages.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum SerfType {
    /// A leave intent.
    Leave = 0,
    /// A join intent.
    Join = 1,
    /// Serf's push-pull state.
    PushPull = 2,
    /// A user event.
    UserEvent = 3,
    /// A query.
    Query = 4,
    /// A query answer or ack.
    QueryResponse = 5,
    /// The conflict query's answer payload.
    ConflictResponse = 6,
    /// A key operation's query payload.
    KeyRequest = 7,
    /// A key operation's answer payload.
    KeyResponse = 8,
    /// A message to forward.
    Relay = 9,
}

impl SerfType {
    fn from_u8(b: u8) -> Result<SerfType, HcError> {
        use SerfType::*;
        Ok(match b {
            0 => Leave,
            1 => Join,
            2 => PushPull,
            3 => UserEvent,
            4 => Query,
            5 => QueryResponse,
            6 => ConflictResponse,
            7 => KeyRequest,
            8 => KeyResponse,
            9 => Relay,
            other => return Err(HcError::UnknownType(other)),
        })
    }
}

/// Query flag: the asker wants acks.
pub(crate) const QUERY_FLAG_ACK: u32 = 1;
/// Query flag: do not rebroadcast (a relayed response's query).
pub(crate) const QUERY_FLAG_NO_BROADCAST: u32 = 2;
/// The first byte of meta holding msgpack-encoded tags.
pub(crate) const TAG_MAGIC: u8 = 255;

fn u64_field(r: &mut Reader<'_>, f: &'static str) -> Result<u64, HcError> {
    r.uint(f, u64::MAX)
}

fn u32_field(r: &mut Reader<'_>, f: &'static str) -> Result<u32, HcError> {
    Ok(r.uint(f, u64::from(u32::MAX))? as u32)
}

fn strings(r: &mut Reader<'_>, f: &'static str) -> Result<Option<Vec<String>>, HcError> {
    let Some(n) = r.array_len(f, MAX_ITEMS)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(r.string(f, MAX_STRING)?);
    }
    Ok(Some(out))
}

fn write_strings(w: &mut Writer, v: Option<&[String]>) {
    match v {
        None => w.nil(),
        Some(v) => {
            w.array(v.len());
            v.iter().for_each(|s| w.str(s));
        }
    }
}

/// A Go `map[string]string` in arrival order (`None` is a nil map).
pub(crate) type StringMap = Option<Vec<(String, String)>>;

fn string_map(r: &mut Reader<'_>, f: &'static str) -> Result<StringMap, HcError> {
    let Some(n) = r.map_len(f, MAX_ITEMS)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for _ in 0..n {
        let k = r.string(f, MAX_STRING)?;
        let v = r.string(f, MAX_STRING)?;
        out.push((k, v));
    }
    Ok(Some(out))
}

fn write_string_map(w: &mut Writer, m: &StringMap) {
    match m {
        None => w.nil(),
        Some(m) => {
            w.map(m.len());
            for (k, v) in m {
                w.str(k);
                w.str(v);
            }
        }
    }
}

/// A join intent (`messageJoin`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Join {
    /// Go field `LTime`: member Lamport time.
    pub ltime: u64,
    /// Go field `Node`.
    pub node: String,
}

/// A leave intent (`messageLeave`); with `prune` a force-leave that erases the member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Leave {
    /// Go field `LTime`.
    pub ltime: u64,
    /// Go field `Node`.
    pub node: String,
    /// Go field `Prune`.
    pub prune: bool,
}

/// A user event (`messageUserEvent`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserEvent {
    /// Go field `LTime`: event Lamport time.
    pub ltime: u64,
    /// Go field `Name`.
    pub name: String,
    /// Go field `Payload`.
    pub payload: GoBytes,
    /// Go field `CC`: may be coalesced.
    pub cc: bool,
}

/// A query filter, as one entry of a query's `Filters` (`[type][msgpack]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Type 0, `filterNode`: only these members answer.
    Nodes(Vec<String>),
    /// Type 1, `filterTag`: only members whose tag `tag` matches the regular expression `expr`.
    Tag {
        /// Go field `Tag`.
        tag: String,
        /// Go field `Expr`.
        expr: String,
    },
}

impl Filter {
    /// `[filter type][msgpack]`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Filter::Nodes(n) => {
                w.out.push(0);
                write_strings(&mut w, Some(n));
            }
            Filter::Tag { tag, expr } => {
                w.out.push(1);
                w.map(2);
                w.key("Expr");
                w.str(expr);
                w.key("Tag");
                w.str(tag);
            }
        }
        w.out
    }

    /// Read one filter entry.
    pub(crate) fn decode(buf: &[u8]) -> Result<Filter, HcError> {
        let (&t, body) = buf.split_first().ok_or(HcError::Empty)?;
        let mut r = Reader::new(body);
        match t {
            0 => Ok(Filter::Nodes(
                strings(&mut r, "filterNode")?.unwrap_or_default(),
            )),
            1 => {
                let (mut tag, mut expr) = (String::new(), String::new());
                r.fields("filterTag", MAX_FIELDS, |k, r| {
                    match k {
                        b"Tag" => tag = r.string("Tag", MAX_STRING)?,
                        b"Expr" => expr = r.string("Expr", MAX_STRING)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                Ok(Filter::Tag { tag, expr })
            }
            other => Err(HcError::UnknownType(other)),
        }
    }
}

/// A query (`messageQuery`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Query {
    /// Go field `LTime`: query Lamport time.
    pub ltime: u64,
    /// Go field `ID`.
    pub id: u32,
    /// Go field `Addr`: where answers go.
    pub addr: GoBytes,
    /// Go field `Port`.
    pub port: u16,
    /// Go field `SourceNode`.
    pub source_node: String,
    /// Go field `Filters` (`None`: nil, no filters).
    pub filters: Option<Vec<Filter>>,
    /// Go field `Flags`: [`QUERY_FLAG_ACK`], [`QUERY_FLAG_NO_BROADCAST`].
    pub flags: u32,
    /// Go field `RelayFactor`.
    pub relay_factor: u8,
    /// Go field `Timeout`: a `time.Duration`, nanoseconds.
    pub timeout_ns: i64,
    /// Go field `Name`.
    pub name: String,
    /// Go field `Payload`.
    pub payload: GoBytes,
}

/// An answer to a query (`messageQueryResponse`): an ack when the flags say so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueryResponse {
    /// Go field `LTime`.
    pub ltime: u64,
    /// Go field `ID`.
    pub id: u32,
    /// Go field `From`.
    pub from: String,
    /// Go field `Flags`.
    pub flags: u32,
    /// Go field `Payload`.
    pub payload: GoBytes,
}

/// One user event of Serf's push-pull (`userEvent`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EventEntry {
    /// Go field `Name`.
    pub name: String,
    /// Go field `Payload`.
    pub payload: GoBytes,
}

/// The user events seen at one event Lamport time (`userEvents`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Events {
    /// Go field `LTime`.
    pub ltime: u64,
    /// Go field `Events`.
    pub events: Option<Vec<EventEntry>>,
}

/// Serf's push-pull state, the user state of a memberlist push-pull (`messagePushPull`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SerfPushPull {
    /// Go field `LTime`: the member clock.
    pub ltime: u64,
    /// Go field `StatusLTimes`: each member's latest intent time, in arrival order.
    pub status_ltimes: Option<Vec<(String, u64)>>,
    /// Go field `LeftMembers`.
    pub left_members: Option<Vec<String>>,
    /// Go field `EventLTime`: the event clock.
    pub event_ltime: u64,
    /// Go field `Events`: the event buffer (slots may be nil).
    pub events: Option<Vec<Option<Events>>>,
    /// Go field `QueryLTime`: the query clock.
    pub query_ltime: u64,
}

/// Serf's `Member` (the conflict query's answer).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Member {
    /// Go field `Name`.
    pub name: String,
    /// Go field `Addr` (`net.IP`).
    pub addr: GoBytes,
    /// Go field `Port`.
    pub port: u16,
    /// Go field `Tags`.
    pub tags: StringMap,
    /// Go field `Status`: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: i64,
    /// Go fields `ProtocolMin`, `ProtocolMax`, `ProtocolCur`, `DelegateMin`, `DelegateMax`,
    /// `DelegateCur`, in that order.
    pub versions: [u8; 6],
}

/// A key operation's payload (`keyRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyRequest {
    /// Go field `Key`: the raw key (16, 24 or 32 bytes).
    pub key: GoBytes,
}

/// A member's answer to a key operation (`nodeKeyResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyResponse {
    /// Go field `Result`.
    pub result: bool,
    /// Go field `Message`.
    pub message: String,
    /// Go field `Keys` (base64 keys, for a list).
    pub keys: Option<Vec<String>>,
    /// Go field `PrimaryKey`.
    pub primary_key: String,
}

/// The head of a relayed message (`relayHeader`): forward the rest to `DestAddr`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RelayHeader {
    /// Go field `DestAddr.IP`.
    pub ip: GoBytes,
    /// Go field `DestAddr.Port` (a Go `int`).
    pub port: i64,
    /// Go field `DestAddr.Zone`.
    pub zone: String,
    /// Go field `DestName`.
    pub dest_name: String,
}

/// Every Serf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SerfMsg {
    /// Type 0.
    Leave(Leave),
    /// Type 1.
    Join(Join),
    /// Type 2 (memberlist push-pull user state).
    PushPull(SerfPushPull),
    /// Type 3.
    UserEvent(UserEvent),
    /// Type 4.
    Query(Query),
    /// Type 5.
    QueryResponse(QueryResponse),
    /// The conflict query's answer: the member the responder knows by that name (nil: none).
    ConflictResponse(Option<Member>),
    /// Type 7 (a key query's payload).
    KeyRequest(KeyRequest),
    /// Type 8 (a key query's answer payload).
    KeyResponse(KeyResponse),
    /// A message to forward to another member (a query's relay factor); the inner message is
    /// never itself a relay.
    Relay(RelayHeader, Box<SerfMsg>),
}

impl SerfMsg {
    /// `[type][msgpack]` (a relay: `[9][header][type][msgpack]`).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode_into(&mut w);
        w.out
    }

    fn encode_into(&self, w: &mut Writer) {
        match self {
            SerfMsg::Leave(m) => {
                w.out.push(SerfType::Leave as u8);
                w.map(3);
                w.key("LTime");
                w.uint(m.ltime);
                w.key("Node");
                w.str(&m.node);
                w.key("Prune");
                w.bool(m.prune);
            }
            SerfMsg::Join(m) => {
                w.out.push(SerfType::Join as u8);
                w.map(2);
                w.key("LTime");
                w.uint(m.ltime);
                w.key("Node");
                w.str(&m.node);
            }
            SerfMsg::PushPull(m) => {
                w.out.push(SerfType::PushPull as u8);
                w.map(6);
                w.key("EventLTime");
                w.uint(m.event_ltime);
                w.key("Events");
                match &m.events {
                    None => w.nil(),
                    Some(evs) => {
                        w.array(evs.len());
                        for e in evs {
                            match e {
                                None => w.nil(),
                                Some(e) => encode_events(w, e),
                            }
                        }
                    }
                }
                w.key("LTime");
                w.uint(m.ltime);
                w.key("LeftMembers");
                write_strings(w, m.left_members.as_deref());
                w.key("QueryLTime");
                w.uint(m.query_ltime);
                w.key("StatusLTimes");
                match &m.status_ltimes {
                    None => w.nil(),
                    Some(s) => {
                        w.map(s.len());
                        for (k, v) in s {
                            w.str(k);
                            w.uint(*v);
                        }
                    }
                }
            }
            SerfMsg::UserEvent(m) => {
                w.out.push(SerfType::UserEvent as u8);
                w.map(4);
                w.key("CC");
                w.bool(m.cc);
                w.key("LTime");
                w.uint(m.ltime);
                w.key("Name");
                w.str(&m.name);
                w.key("Payload");
                w.opt_raw(m.payload.as_deref());
            }
            SerfMsg::Query(m) => {
                w.out.push(SerfType::Query as u8);
                w.map(11);
                w.key("Addr");
                w.opt_raw(m.addr.as_deref());
                w.key("Filters");
                match &m.filters {
                    None => w.nil(),
                    Some(f) => {
                        w.array(f.len());
                        f.iter().for_each(|f| w.raw(&f.encode()));
                    }
                }
                w.key("Flags");
                w.uint(u64::from(m.flags));
                w.key("ID");
                w.uint(u64::from(m.id));
                w.key("LTime");
                w.uint(m.ltime);
                w.key("Name");
                w.str(&m.name);
                w.key("Payload");
                w.opt_raw(m.payload.as_deref());
                w.key("Port");
                w.uint(u64::from(m.port));
                w.key("RelayFactor");
                w.uint(u64::from(m.relay_factor));
                w.key("SourceNode");
                w.str(&m.source_node);
                w.key("Timeout");
                w.int(m.timeout_ns);
            }
            SerfMsg::QueryResponse(m) => {
                w.out.push(SerfType::QueryResponse as u8);
                w.map(5);
                w.key("Flags");
                w.uint(u64::from(m.flags));
                w.key("From");
                w.str(&m.from);
                w.key("ID");
                w.uint(u64::from(m.id));
                w.key("LTime");
                w.uint(m.ltime);
                w.key("Payload");
                w.opt_raw(m.payload.as_deref());
            }
            SerfMsg::ConflictResponse(m) => {
                w.out.push(SerfType::ConflictResponse as u8);
                match m {
                    None => w.nil(),
                    Some(m) => {
                        let v = m.versions;
                        w.map(11);
                        w.key("Addr");
                        w.opt_raw(m.addr.as_deref());
                        w.key("DelegateCur");
                        w.uint(u64::from(v[5]));
                        w.key("DelegateMax");
                        w.uint(u64::from(v[4]));
                        w.key("DelegateMin");
                        w.uint(u64::from(v[3]));
                        w.key("Name");
                        w.str(&m.name);
                        w.key("Port");
                        w.uint(u64::from(m.port));
                        w.key("ProtocolCur");
                        w.uint(u64::from(v[2]));
                        w.key("ProtocolMax");
                        w.uint(u64::from(v[1]));
                        w.key("ProtocolMin");
                        w.uint(u64::from(v[0]));
                        w.key("Status");
                        w.int(m.status);
                        w.key("Tags");
                        write_string_map(w, &m.tags);
                    }
                }
            }
            SerfMsg::KeyRequest(m) => {
                w.out.push(SerfType::KeyRequest as u8);
                w.map(1);
                w.key("Key");
                w.opt_raw(m.key.as_deref());
            }
            SerfMsg::KeyResponse(m) => {
                w.out.push(SerfType::KeyResponse as u8);
                w.map(4);
                w.key("Keys");
                write_strings(w, m.keys.as_deref());
                w.key("Message");
                w.str(&m.message);
                w.key("PrimaryKey");
                w.str(&m.primary_key);
                w.key("Result");
                w.bool(m.result);
            }
            SerfMsg::Relay(h, inner) => {
                w.out.push(SerfType::Relay as u8);
                w.map(2);
                w.key("DestAddr");
                w.map(3);
                w.key("IP");
                w.opt_raw(h.ip.as_deref());
                w.key("Port");
                w.int(h.port);
                w.key("Zone");
                w.str(&h.zone);
                w.key("DestName");
                w.str(&h.dest_name);
                inner.encode_into(w);
            }
        }
    }

    /// Decode a Serf message (a memberlist user message's bytes). Like Go, bytes after the
    /// message's msgpack value are ignored.
    pub(crate) fn decode(buf: &[u8]) -> Result<SerfMsg, HcError> {
        Self::decode_depth(buf, false)
    }

    fn decode_depth(buf: &[u8], relayed: bool) -> Result<SerfMsg, HcError> {
        let (&t, body) = buf.split_first().ok_or(HcError::Empty)?;
        let mut r = Reader::new(body);
        let r = &mut r;
        Ok(match SerfType::from_u8(t)? {
            SerfType::Leave => {
                let mut m = Leave::default();
                r.fields("messageLeave", MAX_FIELDS, |k, r| {
                    match k {
                        b"LTime" => m.ltime = u64_field(r, "LTime")?,
                        b"Node" => m.node = r.string("Node", MAX_STRING)?,
                        b"Prune" => m.prune = r.bool("Prune")?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                SerfMsg::Leave(m)
            }
            SerfType::Join => {
                let mut m = Join::default();
                r.fields("messageJoin", MAX_FIELDS, |k, r| {
                    match k {
                        b"LTime" => m.ltime = u64_field(r, "LTime")?,
                        b"Node" => m.node = r.string("Node", MAX_STRING)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                SerfMsg::Join(m)
            }
            SerfType::PushPull => SerfMsg::PushPull(decode_push_pull(r)?),
            SerfType::UserEvent => {
                let mut m = UserEvent::default();
                r.fields("messageUserEvent", MAX_FIELDS, |k, r| {
                    match k {
                        b"LTime" => m.ltime = u64_field(r, "LTime")?,
                        b"Name" => m.name = r.string("Name", MAX_STRING)?,
                        b"Payload" => m.payload = r.bytes("Payload", MAX_PAYLOAD)?,
                        b"CC" => m.cc = r.bool("CC")?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                SerfMsg::UserEvent(m)
            }
            SerfType::Query => SerfMsg::Query(decode_query(r)?),
            SerfType::QueryResponse => {
                let mut m = QueryResponse::default();
                r.fields("messageQueryResponse", MAX_FIELDS, |k, r| {
                    match k {
                        b"LTime" => m.ltime = u64_field(r, "LTime")?,
                        b"ID" => m.id = u32_field(r, "ID")?,
                        b"From" => m.from = r.string("From", MAX_STRING)?,
                        b"Flags" => m.flags = u32_field(r, "Flags")?,
                        b"Payload" => m.payload = r.bytes("Payload", MAX_PAYLOAD)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                SerfMsg::QueryResponse(m)
            }
            SerfType::ConflictResponse => {
                if r.nil()? {
                    SerfMsg::ConflictResponse(None)
                } else {
                    SerfMsg::ConflictResponse(Some(decode_member(r)?))
                }
            }
            SerfType::KeyRequest => {
                let mut m = KeyRequest::default();
                r.fields("keyRequest", MAX_FIELDS, |k, r| {
                    if k == b"Key" {
                        m.key = r.bytes("Key", MAX_STRING)?;
                        return Ok(true);
                    }
                    Ok(false)
                })?;
                SerfMsg::KeyRequest(m)
            }
            SerfType::KeyResponse => {
                let mut m = KeyResponse::default();
                r.fields("nodeKeyResponse", MAX_FIELDS, |k, r| {
                    match k {
                        b"Result" => m.result = r.bool("Result")?,
                        b"Message" => m.message = r.string("Message", MAX_STRING)?,
                        b"Keys" => m.keys = strings(r, "Keys")?,
                        b"PrimaryKey" => m.primary_key = r.string("PrimaryKey", MAX_STRING)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                SerfMsg::KeyResponse(m)
            }
            SerfType::Relay => {
                if relayed {
                    return Err(HcError::Misplaced(t));
                }
                let mut h = RelayHeader::default();
                r.fields("relayHeader", MAX_FIELDS, |k, r| {
                    match k {
                        b"DestName" => h.dest_name = r.string("DestName", MAX_STRING)?,
                        b"DestAddr" => r.fields("DestAddr", MAX_FIELDS, |k, r| {
                            match k {
                                b"IP" => h.ip = r.bytes("IP", MAX_STRING)?,
                                b"Port" => h.port = r.int("Port")?,
                                b"Zone" => h.zone = r.string("Zone", MAX_STRING)?,
                                _ => return Ok(false),
                            }
                            Ok(true)
                        })?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let inner = Self::decode_depth(r.rest(), true)?;
                SerfMsg::Relay(h, Box::new(inner))
            }
        })
    }
}

fn encode_events(w: &mut Writer, e: &Events) {
    w.map(2);
    w.key("Events");
    match &e.events {
        None => w.nil(),
        Some(list) => {
            w.array(list.len());
            for ev in list {
                w.map(2);
                w.key("Name");
                w.str(&ev.name);
                w.key("Payload");
                w.opt_raw(ev.payload.as_deref());
            }
        }
    }
    w.key("LTime");
    w.uint(e.ltime);
}

fn decode_events(r: &mut Reader<'_>) -> Result<Events, HcError> {
    let mut e = Events::default();
    r.fields("userEvents", MAX_FIELDS, |k, r| {
        match k {
            b"LTime" => e.ltime = u64_field(r, "LTime")?,
            b"Events" => {
                e.events = match r.array_len("Events", MAX_ITEMS)? {
                    None => None,
                    Some(n) => {
                        let mut list = Vec::new();
                        for _ in 0..n {
                            let mut ev = EventEntry::default();
                            r.fields("userEvent", MAX_FIELDS, |k, r| {
                                match k {
                                    b"Name" => ev.name = r.string("Name", MAX_STRING)?,
                                    b"Payload" => ev.payload = r.bytes("Payload", MAX_PAYLOAD)?,
                                    _ => return Ok(false),
                                }
                                Ok(true)
                            })?;
                            list.push(ev);
                        }
                        Some(list)
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(e)
}

fn decode_push_pull(r: &mut Reader<'_>) -> Result<SerfPushPull, HcError> {
    let mut m = SerfPushPull::default();
    r.fields("messagePushPull", MAX_FIELDS, |k, r| {
        match k {
            b"LTime" => m.ltime = u64_field(r, "LTime")?,
            b"EventLTime" => m.event_ltime = u64_field(r, "EventLTime")?,
            b"QueryLTime" => m.query_ltime = u64_field(r, "QueryLTime")?,
            b"LeftMembers" => m.left_members = strings(r, "LeftMembers")?,
            b"StatusLTimes" => {
                m.status_ltimes = match r.map_len("StatusLTimes", MAX_ITEMS)? {
                    None => None,
                    Some(n) => {
                        let mut out = Vec::new();
                        for _ in 0..n {
                            let k = r.string("StatusLTimes", MAX_STRING)?;
                            out.push((k, u64_field(r, "StatusLTimes")?));
                        }
                        Some(out)
                    }
                }
            }
            b"Events" => {
                m.events = match r.array_len("Events", MAX_ITEMS)? {
                    None => None,
                    Some(n) => {
                        let mut out = Vec::new();
                        for _ in 0..n {
                            if r.nil()? {
                                out.push(None);
                            } else {
                                out.push(Some(decode_events(r)?));
                            }
                        }
                        Some(out)
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(m)
}

fn decode_query(r: &mut Reader<'_>) -> Result<Query, HcError> {
    let mut m = Query::default();
    r.fields("messageQuery", MAX_FIELDS, |k, r| {
        match k {
            b"LTime" => m.ltime = u64_field(r, "LTime")?,
            b"ID" => m.id = u32_field(r, "ID")?,
            b"Addr" => m.addr = r.bytes("Addr", MAX_STRING)?,
            b"Port" => m.port = r.uint("Port", u64::from(u16::MAX))? as u16,
            b"SourceNode" => m.source_node = r.string("SourceNode", MAX_STRING)?,
            b"Filters" => {
                m.filters = match r.array_len("Filters", MAX_ITEMS)? {
                    None => None,
                    Some(n) => {
                        let mut out = Vec::new();
                        for _ in 0..n {
                            let raw = r.raw("Filters", MAX_PAYLOAD)?.unwrap_or(&[]);
                            out.push(Filter::decode(raw)?);
                        }
                        Some(out)
                    }
                }
            }
            b"Flags" => m.flags = u32_field(r, "Flags")?,
            b"RelayFactor" => m.relay_factor = r.uint("RelayFactor", u64::from(u8::MAX))? as u8,
            b"Timeout" => m.timeout_ns = r.int("Timeout")?,
            b"Name" => m.name = r.string("Name", MAX_STRING)?,
            b"Payload" => m.payload = r.bytes("Payload", MAX_PAYLOAD)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(m)
}

fn decode_member(r: &mut Reader<'_>) -> Result<Member, HcError> {
    let mut m = Member::default();
    r.fields("Member", MAX_FIELDS, |k, r| {
        let slot = match k {
            b"ProtocolMin" => 0,
            b"ProtocolMax" => 1,
            b"ProtocolCur" => 2,
            b"DelegateMin" => 3,
            b"DelegateMax" => 4,
            b"DelegateCur" => 5,
            b"Name" => {
                m.name = r.string("Name", MAX_STRING)?;
                return Ok(true);
            }
            b"Addr" => {
                m.addr = r.bytes("Addr", MAX_STRING)?;
                return Ok(true);
            }
            b"Port" => {
                m.port = r.uint("Port", u64::from(u16::MAX))? as u16;
                return Ok(true);
            }
            b"Tags" => {
                m.tags = string_map(r, "Tags")?;
                return Ok(true);
            }
            b"Status" => {
                m.status = r.int("Status")?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        m.versions[slot] = r.uint("version", u64::from(u8::MAX))? as u8;
        Ok(true)
    })?;
    Ok(m)
}

/// Tags as Serf (delegate protocol 3 and later) packs them into meta: the magic byte, then a
/// msgpack map, in the order given.
pub(crate) fn encode_tags(tags: &[(String, String)]) -> Vec<u8> {
    let mut w = Writer::new(vec![TAG_MAGIC]);
    w.map(tags.len());
    for (k, v) in tags {
        w.str(k);
        w.str(v);
    }
    w.out
}

/// Tags from a member's meta, as Serf reads them: after the magic byte a msgpack map;
/// without it (an old member or no meta) the whole meta is the value of tag `role`.
pub(crate) fn decode_tags(meta: &[u8]) -> Result<Vec<(String, String)>, HcError> {
    match meta.split_first() {
        Some((&TAG_MAGIC, body)) => {
            let mut r = Reader::new(body);
            Ok(string_map(&mut r, "tags")?.unwrap_or_default())
        }
        _ => {
            let role = core::str::from_utf8(meta).map_err(|_| HcError::BadUtf8("role"))?;
            Ok(vec![("role".to_owned(), role.to_owned())])
        }
    }
}
