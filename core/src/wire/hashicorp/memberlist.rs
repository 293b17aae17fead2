//! memberlist 0.2.2's messages, as values and as Go's codec writes them: this module owns the
//! message-type bytes and the msgpack body of every message memberlist sends (the framing
//! around them — compound, CRC, compression, streams — is `frame`'s).
//!
//! Each struct lists its fields in the order go-msgpack writes them (sorted by Go field name);
//! `encode` writes exactly that, `decode` accepts any order and skips unknown fields, as Go
//! does. A Go `[]byte` that may be nil is an `Option<Vec<u8>>` (`None` is nil), so a decoded
//! message re-encodes to the same bytes.

use super::msgpack::{Reader, Writer};
use super::{HcError, MAX_FIELDS, MAX_PAYLOAD, MAX_PUSH_NODES, MAX_STRING};

/// A Go `[]byte` field that is written even when empty: `None` is Go's nil.
pub(crate) type GoBytes = Option<Vec<u8>>;

/// memberlist's message-type byte (`net.go`), the first byte of every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum MsgType {
    /// A direct probe.
    Ping = 0,
    /// A request to probe someone.
    IndirectPing = 1,
    /// A probe answer.
    Ack = 2,
    /// A suspicion.
    Suspect = 3,
    /// An alive announcement.
    Alive = 4,
    /// A failure verdict or a leave.
    Dead = 5,
    /// A push-pull state exchange (streams).
    PushPull = 6,
    /// Several messages in one datagram.
    Compound = 7,
    /// A delegate (Serf) message.
    User = 8,
    /// A compressed message.
    Compress = 9,
    /// An encrypted stream message.
    Encrypt = 10,
    /// An indirect probe's negative answer.
    Nack = 11,
    /// A CRC-checked datagram.
    HasCrc = 12,
    /// An error answer on a stream.
    Err = 13,
}

impl MsgType {
    /// The type a byte names.
    pub(crate) fn from_u8(b: u8) -> Result<MsgType, HcError> {
        use MsgType::*;
        Result::Ok(match b {
            0 => Ping,
            1 => IndirectPing,
            2 => Ack,
            3 => Suspect,
            4 => Alive,
            5 => Dead,
            6 => PushPull,
            7 => Compound,
            8 => User,
            9 => Compress,
            10 => Encrypt,
            11 => Nack,
            12 => HasCrc,
            13 => Err,
            other => return Result::Err(HcError::UnknownType(other)),
        })
    }
}

/// The protocol versions a member speaks, the six `Vsn` bytes of alive messages and push-pull
/// states: memberlist protocol min/max/current, then the delegate's (Serf's) min/max/current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Versions {
    /// Lowest memberlist protocol understood.
    pub pmin: u8,
    /// Highest memberlist protocol understood.
    pub pmax: u8,
    /// memberlist protocol spoken.
    pub pcur: u8,
    /// Lowest delegate (Serf) protocol understood.
    pub dmin: u8,
    /// Highest delegate protocol understood.
    pub dmax: u8,
    /// Delegate protocol spoken.
    pub dcur: u8,
}

impl Versions {
    /// What a Serf 0.9.4 agent on memberlist 0.2.2 advertises (seen in the capture):
    /// memberlist protocol 1..5 speaking 2, Serf delegate protocol 2..5 speaking 5.
    pub(crate) const SERF_0_9_4: Versions = Versions {
        pmin: 1,
        pmax: 5,
        pcur: 2,
        dmin: 2,
        dmax: 5,
        dcur: 5,
    };

    /// What a Go program on memberlist 0.2.2 with its default configuration advertises:
    /// memberlist protocol 1..5 speaking 2, delegate protocol 0 (memberlist refuses a member
    /// whose delegate range does not overlap every other member's, so a plain memberlist
    /// cluster refuses Serf's 2..5).
    pub(crate) const MEMBERLIST_0_2_2: Versions = Versions {
        pmin: 1,
        pmax: 5,
        pcur: 2,
        dmin: 0,
        dmax: 0,
        dcur: 0,
    };

    /// The six bytes in wire order.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        vec![
            self.pmin, self.pmax, self.pcur, self.dmin, self.dmax, self.dcur,
        ]
    }

    /// The versions in a `Vsn` field, when it holds at least six bytes (Go reads the first
    /// six; a shorter field carries none).
    pub(crate) fn from_bytes(b: &[u8]) -> Option<Versions> {
        match b {
            [pmin, pmax, pcur, dmin, dmax, dcur, ..] => Some(Versions {
                pmin: *pmin,
                pmax: *pmax,
                pcur: *pcur,
                dmin: *dmin,
                dmax: *dmax,
                dcur: *dcur,
            }),
            _ => None,
        }
    }
}

fn u32_field(r: &mut Reader<'_>, f: &'static str) -> Result<u32, HcError> {
    Ok(r.uint(f, u64::from(u32::MAX))? as u32)
}

fn u16_field(r: &mut Reader<'_>, f: &'static str) -> Result<u16, HcError> {
    Ok(r.uint(f, u64::from(u16::MAX))? as u16)
}

/// A Go `int` holding a length: not negative, at most `max`.
fn len_field(r: &mut Reader<'_>, f: &'static str, max: usize) -> Result<usize, HcError> {
    let v = r.int(f)?;
    if v < 0 {
        return Err(HcError::OutOfRange(f));
    }
    let v = v as u64;
    if v > max as u64 {
        return Err(HcError::TooLong {
            field: f,
            len: usize::try_from(v).unwrap_or(usize::MAX),
            max,
        });
    }
    Ok(v as usize)
}

/// A direct probe (`ping`). The source fields are `omitempty`: absent when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ping {
    /// Go field `SeqNo`.
    pub seq_no: u32,
    /// Go field `Node`: the name the prober expects to reach.
    pub node: String,
    /// Go field `SourceAddr`: the prober's IP (4 or 16 bytes).
    pub source_addr: Vec<u8>,
    /// Go field `SourcePort`.
    pub source_port: u16,
    /// Go field `SourceNode`.
    pub source_node: String,
}

impl Ping {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let n = 2
            + usize::from(!self.source_addr.is_empty())
            + usize::from(!self.source_node.is_empty())
            + usize::from(self.source_port != 0);
        w.map(n);
        w.key("Node");
        w.str(&self.node);
        w.key("SeqNo");
        w.uint(u64::from(self.seq_no));
        if !self.source_addr.is_empty() {
            w.key("SourceAddr");
            w.raw(&self.source_addr);
        }
        if !self.source_node.is_empty() {
            w.key("SourceNode");
            w.str(&self.source_node);
        }
        if self.source_port != 0 {
            w.key("SourcePort");
            w.uint(u64::from(self.source_port));
        }
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Ping, HcError> {
        let mut m = Ping::default();
        r.fields("ping", MAX_FIELDS, |k, r| {
            match k {
                b"SeqNo" => m.seq_no = u32_field(r, "SeqNo")?,
                b"Node" => m.node = r.string("Node", MAX_STRING)?,
                b"SourceAddr" => {
                    m.source_addr = r.bytes("SourceAddr", MAX_STRING)?.unwrap_or_default()
                }
                b"SourcePort" => m.source_port = u16_field(r, "SourcePort")?,
                b"SourceNode" => m.source_node = r.string("SourceNode", MAX_STRING)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// A request to probe `node` at `target:port` on the sender's behalf (`indirectPingReq`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndirectPing {
    /// Go field `SeqNo`: the sequence number the ack (or nack) must carry.
    pub seq_no: u32,
    /// Go field `Target`: the IP to probe.
    pub target: GoBytes,
    /// Go field `Port`.
    pub port: u16,
    /// Go field `Node`: the name to probe.
    pub node: String,
    /// Go field `Nack`: whether a nack is wanted when the probe fails.
    pub nack: bool,
    /// Go field `SourceAddr` (`omitempty`).
    pub source_addr: Vec<u8>,
    /// Go field `SourcePort` (`omitempty`).
    pub source_port: u16,
    /// Go field `SourceNode` (`omitempty`).
    pub source_node: String,
}

impl IndirectPing {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        let n = 5
            + usize::from(!self.source_addr.is_empty())
            + usize::from(!self.source_node.is_empty())
            + usize::from(self.source_port != 0);
        w.map(n);
        w.key("Nack");
        w.bool(self.nack);
        w.key("Node");
        w.str(&self.node);
        w.key("Port");
        w.uint(u64::from(self.port));
        w.key("SeqNo");
        w.uint(u64::from(self.seq_no));
        if !self.source_addr.is_empty() {
            w.key("SourceAddr");
            w.raw(&self.source_addr);
        }
        if !self.source_node.is_empty() {
            w.key("SourceNode");
            w.str(&self.source_node);
        }
        if self.source_port != 0 {
            w.key("SourcePort");
            w.uint(u64::from(self.source_port));
        }
        w.key("Target");
        w.opt_raw(self.target.as_deref());
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<IndirectPing, HcError> {
        let mut m = IndirectPing::default();
        r.fields("indirectPingReq", MAX_FIELDS, |k, r| {
            match k {
                b"SeqNo" => m.seq_no = u32_field(r, "SeqNo")?,
                b"Target" => m.target = r.bytes("Target", MAX_STRING)?,
                b"Port" => m.port = u16_field(r, "Port")?,
                b"Node" => m.node = r.string("Node", MAX_STRING)?,
                b"Nack" => m.nack = r.bool("Nack")?,
                b"SourceAddr" => {
                    m.source_addr = r.bytes("SourceAddr", MAX_STRING)?.unwrap_or_default()
                }
                b"SourcePort" => m.source_port = u16_field(r, "SourcePort")?,
                b"SourceNode" => m.source_node = r.string("SourceNode", MAX_STRING)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// A probe answer (`ackResp`); Serf puts its Vivaldi coordinate in the payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Go field `SeqNo`.
    pub seq_no: u32,
    /// Go field `Payload` (the ping delegate's `AckPayload`).
    pub payload: GoBytes,
}

impl Ack {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(2);
        w.key("Payload");
        w.opt_raw(self.payload.as_deref());
        w.key("SeqNo");
        w.uint(u64::from(self.seq_no));
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Ack, HcError> {
        let mut m = Ack::default();
        r.fields("ackResp", MAX_FIELDS, |k, r| {
            match k {
                b"SeqNo" => m.seq_no = u32_field(r, "SeqNo")?,
                b"Payload" => m.payload = r.bytes("Payload", MAX_PAYLOAD)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// An indirect probe's relay heard nothing from the target (`nackResp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nack {
    /// Go field `SeqNo`.
    pub seq_no: u32,
}

impl Nack {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(1);
        w.key("SeqNo");
        w.uint(u64::from(self.seq_no));
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Nack, HcError> {
        let mut m = Nack::default();
        r.fields("nackResp", MAX_FIELDS, |k, r| {
            if k == b"SeqNo" {
                m.seq_no = u32_field(r, "SeqNo")?;
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(m)
    }
}

/// `suspect` and `dead` share this shape: `from` accuses `node` at `incarnation` (a dead
/// message whose `from` is `node` itself is a graceful leave).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Accuse {
    /// Go field `Incarnation`.
    pub incarnation: u32,
    /// Go field `Node`.
    pub node: String,
    /// Go field `From`.
    pub from: String,
}

impl Accuse {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(3);
        w.key("From");
        w.str(&self.from);
        w.key("Incarnation");
        w.uint(u64::from(self.incarnation));
        w.key("Node");
        w.str(&self.node);
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Accuse, HcError> {
        let mut m = Accuse::default();
        r.fields("suspect/dead", MAX_FIELDS, |k, r| {
            match k {
                b"Incarnation" => m.incarnation = u32_field(r, "Incarnation")?,
                b"Node" => m.node = r.string("Node", MAX_STRING)?,
                b"From" => m.from = r.string("From", MAX_STRING)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// "`node` at `addr:port` is alive at `incarnation`" (`alive`), with its meta (Serf's tags)
/// and the protocol versions it speaks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Alive {
    /// Go field `Incarnation`.
    pub incarnation: u32,
    /// Go field `Node`.
    pub node: String,
    /// Go field `Addr` (4 or 16 bytes).
    pub addr: GoBytes,
    /// Go field `Port`.
    pub port: u16,
    /// Go field `Meta` (at most 512 bytes in Go's own checks).
    pub meta: GoBytes,
    /// Go field `Vsn`: see [`Versions`].
    pub vsn: GoBytes,
}

impl Alive {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(6);
        w.key("Addr");
        w.opt_raw(self.addr.as_deref());
        w.key("Incarnation");
        w.uint(u64::from(self.incarnation));
        w.key("Meta");
        w.opt_raw(self.meta.as_deref());
        w.key("Node");
        w.str(&self.node);
        w.key("Port");
        w.uint(u64::from(self.port));
        w.key("Vsn");
        w.opt_raw(self.vsn.as_deref());
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Alive, HcError> {
        let mut m = Alive::default();
        r.fields("alive", MAX_FIELDS, |k, r| {
            match k {
                b"Incarnation" => m.incarnation = u32_field(r, "Incarnation")?,
                b"Node" => m.node = r.string("Node", MAX_STRING)?,
                b"Addr" => m.addr = r.bytes("Addr", MAX_STRING)?,
                b"Port" => m.port = u16_field(r, "Port")?,
                b"Meta" => m.meta = r.bytes("Meta", MAX_STRING)?,
                b"Vsn" => m.vsn = r.bytes("Vsn", MAX_STRING)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }

    /// The versions carried, when `Vsn` holds six bytes.
    pub(crate) fn versions(&self) -> Option<Versions> {
        Versions::from_bytes(self.vsn.as_deref()?)
    }
}

/// memberlist's view of a member's state in push-pull (`NodeStateType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NodeState {
    /// `StateAlive` (0).
    Alive,
    /// `StateSuspect` (1).
    Suspect,
    /// `StateDead` (2).
    Dead,
    /// `StateLeft` (3).
    Left,
}

impl NodeState {
    fn from_int(v: i64) -> Result<NodeState, HcError> {
        Ok(match v {
            0 => NodeState::Alive,
            1 => NodeState::Suspect,
            2 => NodeState::Dead,
            3 => NodeState::Left,
            _ => return Err(HcError::OutOfRange("State")),
        })
    }

    fn to_int(self) -> i64 {
        self as i64
    }
}

/// One member's state in a push-pull exchange (`pushNodeState`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PushNodeState {
    /// Go field `Name`.
    pub name: String,
    /// Go field `Addr`.
    pub addr: GoBytes,
    /// Go field `Port`.
    pub port: u16,
    /// Go field `Meta`.
    pub meta: GoBytes,
    /// Go field `Incarnation`.
    pub incarnation: u32,
    /// Go field `State`.
    pub state: NodeState,
    /// Go field `Vsn`.
    pub vsn: GoBytes,
}

impl PushNodeState {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(7);
        w.key("Addr");
        w.opt_raw(self.addr.as_deref());
        w.key("Incarnation");
        w.uint(u64::from(self.incarnation));
        w.key("Meta");
        w.opt_raw(self.meta.as_deref());
        w.key("Name");
        w.str(&self.name);
        w.key("Port");
        w.uint(u64::from(self.port));
        w.key("State");
        w.int(self.state.to_int());
        w.key("Vsn");
        w.opt_raw(self.vsn.as_deref());
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PushNodeState, HcError> {
        let mut m = PushNodeState {
            name: String::new(),
            addr: None,
            port: 0,
            meta: None,
            incarnation: 0,
            state: NodeState::Alive,
            vsn: None,
        };
        r.fields("pushNodeState", MAX_FIELDS, |k, r| {
            match k {
                b"Name" => m.name = r.string("Name", MAX_STRING)?,
                b"Addr" => m.addr = r.bytes("Addr", MAX_STRING)?,
                b"Port" => m.port = u16_field(r, "Port")?,
                b"Meta" => m.meta = r.bytes("Meta", MAX_STRING)?,
                b"Incarnation" => m.incarnation = u32_field(r, "Incarnation")?,
                b"State" => m.state = NodeState::from_int(r.int("State")?)?,
                b"Vsn" => m.vsn = r.bytes("Vsn", MAX_STRING)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }

    /// The versions carried, when `Vsn` holds six bytes.
    pub(crate) fn versions(&self) -> Option<Versions> {
        Versions::from_bytes(self.vsn.as_deref()?)
    }
}

/// The head of a push-pull stream (`pushPullHeader`): how many states follow, then how many
/// bytes of user (Serf) state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PushPullHeader {
    /// Go field `Nodes`.
    pub nodes: usize,
    /// Go field `UserStateLen`.
    pub user_state_len: usize,
    /// Go field `Join`.
    pub join: bool,
}

impl PushPullHeader {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(3);
        w.key("Join");
        w.bool(self.join);
        w.key("Nodes");
        w.uint(self.nodes as u64);
        w.key("UserStateLen");
        w.uint(self.user_state_len as u64);
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PushPullHeader, HcError> {
        let mut m = PushPullHeader::default();
        r.fields("pushPullHeader", MAX_FIELDS, |k, r| {
            match k {
                b"Nodes" => m.nodes = len_field(r, "Nodes", MAX_PUSH_NODES)?,
                b"UserStateLen" => m.user_state_len = len_field(r, "UserStateLen", MAX_PAYLOAD)?,
                b"Join" => m.join = r.bool("Join")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// A whole push-pull message as it travels on a stream: the header's join flag, the states,
/// and the user state (Serf's push-pull, with its own type byte; empty when none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PushPull {
    /// Whether this is a join's exchange.
    pub join: bool,
    /// The sender's member states.
    pub states: Vec<PushNodeState>,
    /// The delegate's local state (`UserStateLen` bytes after the states).
    pub user_state: Vec<u8>,
}

impl PushPull {
    /// The body after the type byte.
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        PushPullHeader {
            nodes: self.states.len(),
            user_state_len: self.user_state.len(),
            join: self.join,
        }
        .encode(w);
        for s in &self.states {
            s.encode(w);
        }
        w.out.extend_from_slice(&self.user_state);
    }

    /// Decode the body after the type byte. The states are read one by one as their bytes
    /// arrive (the header's count only bounds the loop, it sizes no allocation).
    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PushPull, HcError> {
        let h = PushPullHeader::decode(r)?;
        // Each state is at least a one-byte map header.
        if h.nodes > r.remaining() {
            return Err(HcError::Truncated);
        }
        let mut states = Vec::new();
        for _ in 0..h.nodes {
            states.push(PushNodeState::decode(r)?);
        }
        let user_state = r.take(h.user_state_len)?.to_vec();
        Ok(PushPull {
            join: h.join,
            states,
            user_state,
        })
    }
}

/// The head of a user message sent on a stream (`userMsgHeader`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserMsgHeader {
    /// Go field `UserMsgLen`: the bytes that follow.
    pub user_msg_len: usize,
}

impl UserMsgHeader {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(1);
        w.key("UserMsgLen");
        w.uint(self.user_msg_len as u64);
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<UserMsgHeader, HcError> {
        let mut m = UserMsgHeader::default();
        r.fields("userMsgHeader", MAX_FIELDS, |k, r| {
            if k == b"UserMsgLen" {
                m.user_msg_len = len_field(r, "UserMsgLen", MAX_PAYLOAD)?;
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(m)
    }
}

/// An error relayed on a stream (`errResp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ErrResp {
    /// Go field `Error`.
    pub error: String,
}

impl ErrResp {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(1);
        w.key("Error");
        w.str(&self.error);
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ErrResp, HcError> {
        let mut m = ErrResp::default();
        r.fields("errResp", MAX_FIELDS, |k, r| {
            if k == b"Error" {
                m.error = r.string("Error", MAX_STRING)?;
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(m)
    }
}

/// A compressed payload (`compress`): algorithm 0 is LZW (LSB first, 8-bit literals).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Compress {
    /// Go field `Algo`.
    pub algo: u8,
    /// Go field `Buf`.
    pub buf: GoBytes,
}

impl Compress {
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.map(2);
        w.key("Algo");
        w.uint(u64::from(self.algo));
        w.key("Buf");
        w.opt_raw(self.buf.as_deref());
    }

    /// Read the msgpack body (fields in any order, unknown ones skipped).
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Compress, HcError> {
        let mut m = Compress::default();
        r.fields("compress", MAX_FIELDS, |k, r| {
            match k {
                b"Algo" => m.algo = r.uint("Algo", u64::from(u8::MAX))? as u8,
                b"Buf" => m.buf = r.bytes("Buf", MAX_PAYLOAD)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(m)
    }
}

/// One message as carried in a datagram (after any CRC, compound or compression wrapper).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PacketMsg {
    /// Type 0.
    Ping(Ping),
    /// Type 1.
    IndirectPing(IndirectPing),
    /// Type 2.
    Ack(Ack),
    /// Type 11.
    Nack(Nack),
    /// Type 3.
    Suspect(Accuse),
    /// Type 4.
    Alive(Alive),
    /// Type 5.
    Dead(Accuse),
    /// A user (delegate) message: for Serf, one Serf message with its own type byte.
    User(Vec<u8>),
}

impl PacketMsg {
    /// The type byte and the body.
    /// Write the msgpack body, fields in go-msgpack's order.
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            PacketMsg::Ping(m) => {
                w.out.push(MsgType::Ping as u8);
                m.encode(w)
            }
            PacketMsg::IndirectPing(m) => {
                w.out.push(MsgType::IndirectPing as u8);
                m.encode(w)
            }
            PacketMsg::Ack(m) => {
                w.out.push(MsgType::Ack as u8);
                m.encode(w)
            }
            PacketMsg::Nack(m) => {
                w.out.push(MsgType::Nack as u8);
                m.encode(w)
            }
            PacketMsg::Suspect(m) => {
                w.out.push(MsgType::Suspect as u8);
                m.encode(w)
            }
            PacketMsg::Alive(m) => {
                w.out.push(MsgType::Alive as u8);
                m.encode(w)
            }
            PacketMsg::Dead(m) => {
                w.out.push(MsgType::Dead as u8);
                m.encode(w)
            }
            PacketMsg::User(b) => {
                w.out.push(MsgType::User as u8);
                w.out.extend_from_slice(b);
            }
        }
    }

    /// Decode the body of a message of type `t` (the type byte already read). Go decodes a
    /// message from the front of its buffer and ignores what follows; so does this.
    pub(crate) fn decode(t: MsgType, r: &mut Reader<'_>) -> Result<PacketMsg, HcError> {
        Ok(match t {
            MsgType::Ping => PacketMsg::Ping(Ping::decode(r)?),
            MsgType::IndirectPing => PacketMsg::IndirectPing(IndirectPing::decode(r)?),
            MsgType::Ack => PacketMsg::Ack(Ack::decode(r)?),
            MsgType::Nack => PacketMsg::Nack(Nack::decode(r)?),
            MsgType::Suspect => PacketMsg::Suspect(Accuse::decode(r)?),
            MsgType::Alive => PacketMsg::Alive(Alive::decode(r)?),
            MsgType::Dead => PacketMsg::Dead(Accuse::decode(r)?),
            MsgType::User => {
                let n = r.remaining();
                PacketMsg::User(r.take(n)?.to_vec())
            }
            other => return Err(HcError::Misplaced(other as u8)),
        })
    }
}
