//! The `node` target: an arbitrary sequence of inputs applied to one [`Node`], with its
//! invariants checked after every step.
//!
//! The node under test is `node-0` at [`pool_addr`]`(0)` (the simulator's address of node 0,
//! so inputs recorded in simulator runs replay here unchanged). Peers are drawn from a pool of
//! eight names and addresses (`node-k` at `pool_addr(k)`, `k = 0` being the node itself) plus
//! strangers, so arbitrary messages mostly talk about members the node knows.
//!
//! Input format ([`Script`]): a header (seed, flags, optional tight bounds), then [`Op`]s until
//! the input ends, each a tag byte and its fields (see [`Op::parse`]). Every op that hands the
//! node something does so as an [`Input`] (API calls as [`Call`]s) through [`Node::handle`], the
//! simulator's vocabulary, so recorded simulator inputs replay as they were handed.
//!
//! Checked after every step:
//! - nothing panics and every call returns; while the node runs it has a deadline, and after a
//!   timeout call (repeated, as a driver does, while the deadline is in the past: timers the
//!   handlers schedule for `now` or earlier fire at the next call) no deadline is in the past;
//! - the member table holds at most `max_members` entries with unique names, itself included,
//!   and its alive count agrees with the statuses (a leaving member counts when it is not
//!   also suspected, which the public status does not show); the broadcast queue holds at most
//!   `max_broadcast_queue` updates; the health score stays below `awareness_max_multiplier`;
//!   at most `max_pending_transmits` transmits and `max_pending_events` droppable events
//!   (direct messages included) wait (membership events, never dropped, are bounded by
//!   per-member coalescing instead: see `rookery_core::EventQueue`);
//! - everything the node sends is valid by its own limits: datagrams fit the MTU and decode
//!   (and never carry a push-pull), frames have a correct length prefix, fit
//!   `max_stream_message` and decode;
//! - the node's member, event and query Lamport clocks ([`Node::clocks`]) never decrease;
//! - the node's own incarnation never decreases (as a serial number: 0 follows `u32::MAX`); a member's incarnation, as the node sees it,
//!   decreases only when the member is re-admitted (a [`Event::MemberJoined`] in the same step:
//!   a member that failed or left coming back from a new address);
//! - input that is rejected (undecodable, wrong label) changes nothing: same members, queue,
//!   health, Lamport clocks and deadline, no transmit and no event;
//! - once the node has left, it has no deadline and refuses input.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use rookery_core::fuzzing::{self, MessageKind, StateEntry, WireMessage};
use rookery_core::wire::FrameDecoder;
use rookery_core::{
    Call, Config, Event, HandleError, Handled, Identity, Input, InputError, Member, MemberStatus,
    Name, Node, Tags, Timestamp, Transmit, TransmitKind,
};

use crate::script::{Reader, Writer};

/// Names and addresses in the pool.
pub const POOL: usize = 8;

/// Address of pool member `k` (the simulator's [`rookery_sim::node_addr`]).
pub fn pool_addr(k: usize) -> SocketAddr {
    rookery_sim::node_addr(k)
}

/// Name of pool member `k`.
pub fn pool_name(k: usize) -> Name {
    Name::new(format!("node-{k}"))
}

/// The address an address selector byte stands for: low nibble 0..8 is a pool member, 8..15 a
/// stranger on IPv4, 15 a stranger on IPv6.
pub fn addr_of(sel: u8) -> SocketAddr {
    let k = (sel & 0x0f) as usize;
    match k {
        0..POOL => pool_addr(k),
        15 => SocketAddr::from((Ipv6Addr::LOCALHOST, 7000 + (sel >> 4) as u16)),
        _ => SocketAddr::from(([127, 1, 0, sel >> 4], 7000 + k as u16)),
    }
}

/// The pool member at `addr`, if any.
pub fn pool_index(addr: SocketAddr) -> Option<usize> {
    (0..POOL).find(|&k| pool_addr(k) == addr)
}

/// Run-time settings read from the script header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The node's RNG seed.
    pub seed: u64,
    /// Bit 0: cluster label `fz`; bit 1: tight bounds follow; bit 2: transmits are drained only
    /// by [`Op::Drain`]; bit 3: events likewise; bit 4: LAN profile instead of local; bit 5:
    /// start near the end of time (`u64::MAX` minus `start`).
    pub flags: u8,
    /// Tight bounds (with flag bit 1): max members, broadcast queue, pending events, pending
    /// transmits, indirect relays, MTU, stream message size (each from one byte).
    pub bounds: [u8; 7],
    /// Start time in microseconds (or its distance to `u64::MAX` with flag bit 5).
    pub start: u32,
}

impl Header {
    /// The header every simulator-derived script uses: the simulator's node config, time zero.
    pub fn sim(seed: u64) -> Header {
        Header {
            seed,
            flags: 0,
            bounds: [0; 7],
            start: 0,
        }
    }

    fn parse(r: &mut Reader<'_>) -> Header {
        let seed = r.u64();
        let flags = r.u8();
        let mut bounds = [0; 7];
        if flags & 2 != 0 {
            for b in &mut bounds {
                *b = r.u8();
            }
        }
        let start = if flags & 0x20 != 0 { r.u32() } else { 0 };
        Header {
            seed,
            flags,
            bounds,
            start,
        }
    }

    fn encode(&self, w: &mut Writer) {
        w.u64(self.seed).u8(self.flags);
        if self.flags & 2 != 0 {
            for b in self.bounds {
                w.u8(b);
            }
        }
        if self.flags & 0x20 != 0 {
            w.u32(self.start);
        }
    }

    /// The node's configuration.
    pub fn config(&self) -> Config {
        let mut cfg = if self.flags & 0x10 != 0 {
            Config::lan()
        } else {
            Config::local()
        };
        if self.flags & 1 != 0 {
            cfg.label = Some("fz".into());
        }
        if self.flags & 2 != 0 {
            let b = self.bounds.map(usize::from);
            cfg.max_members = 1 + b[0] % 48;
            cfg.max_broadcast_queue = 1 + b[1] % 32;
            cfg.max_pending_events = 1 + b[2] % 64;
            cfg.max_pending_transmits = 1 + b[3] % 64;
            cfg.max_indirect_relays = b[4] % 8;
            cfg.mtu = 512 + b[5] * 4;
            cfg.meta_max_size = cfg.meta_max_size.min(cfg.mtu / 2);
            cfg.max_stream_message = 1024 + b[6] * 256;
            // Keep the Serf-layer limits within what these transports carry.
            cfg.max_message_size = cfg.max_message_size.min(cfg.max_stream_message - 1024);
            cfg.user_event_size_limit = cfg.user_event_size_limit.min(cfg.mtu / 2);
            cfg.query_size_limit = cfg.query_size_limit.min(cfg.mtu);
            cfg.query_response_size_limit = cfg.query_response_size_limit.min(cfg.mtu);
            cfg.max_queue_depth = 1 + b[1] % 32;
            cfg.max_inbox = 1 + b[2] % 16;
        }
        cfg
    }

    fn start(&self) -> Timestamp {
        if self.flags & 0x20 != 0 {
            Timestamp::from_micros(u64::MAX - u64::from(self.start))
        } else {
            Timestamp::from_micros(u64::from(self.start))
        }
    }
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Raw datagram bytes from an address selector ([`addr_of`]): an [`Input::Datagram`].
    Packet(u8, Vec<u8>),
    /// Raw stream frame body from an address selector: an [`Input::Stream`].
    Stream(u8, Vec<u8>),
    /// Move the clock forward by this many microseconds (no timer fires).
    Advance(u32),
    /// [`Input::Timeout`] now.
    Timeout,
    /// Messages built with [`arbitrary`] from these bytes, steered towards the pool, sent as one
    /// valid datagram from an address selector.
    Msgs(u8, Vec<u8>),
    /// One message built from these bytes, sent as a valid stream frame.
    StreamMsg(u8, Vec<u8>),
    /// Answer one of the node's recent transmits (selector, how): acks for pings, nacks or
    /// acks for indirect pings, push-pull responses, or a reliable send failure.
    Answer(u8, u8),
    /// [`Call::Join`] through these address selectors.
    Join(Vec<u8>),
    /// [`Call::Leave`].
    Leave,
    /// [`Call::SetTags`] with tags built from these bytes.
    SetTags(Vec<u8>),
    /// [`Input::SendFailed`] for an address selector.
    SendFailure(u8),
    /// Drain every pending transmit and event.
    Drain,
    /// Jump to the next deadline and fire it.
    NextTimer,
    /// Jump this many seconds forward and fire what is due.
    Leap(u16),
}

impl Op {
    /// Read one op (tag byte, then fields).
    pub fn parse(r: &mut Reader<'_>) -> Op {
        match r.u8() % 14 {
            0 => Op::Packet(r.u8(), r.blob16().to_vec()),
            1 => Op::Stream(r.u8(), r.blob16().to_vec()),
            2 => Op::Advance(r.u32()),
            3 => Op::Timeout,
            4 => Op::Msgs(r.u8(), r.blob8().to_vec()),
            5 => Op::StreamMsg(r.u8(), r.blob8().to_vec()),
            6 => Op::Answer(r.u8(), r.u8()),
            7 => {
                let n = r.u8() % 4;
                Op::Join((0..n).map(|_| r.u8()).collect())
            }
            8 => Op::Leave,
            9 => Op::SetTags(r.blob8().to_vec()),
            10 => Op::SendFailure(r.u8()),
            11 => Op::Drain,
            12 => Op::NextTimer,
            _ => Op::Leap(r.u16()),
        }
    }

    /// Write the op as [`Op::parse`] reads it.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Op::Packet(a, b) => w.u8(0).u8(*a).blob16(b),
            Op::Stream(a, b) => w.u8(1).u8(*a).blob16(b),
            Op::Advance(us) => w.u8(2).u32(*us),
            Op::Timeout => w.u8(3),
            Op::Msgs(a, b) => w.u8(4).u8(*a).blob8(b),
            Op::StreamMsg(a, b) => w.u8(5).u8(*a).blob8(b),
            Op::Answer(s, h) => w.u8(6).u8(*s).u8(*h),
            Op::Join(seeds) => {
                w.u8(7).u8(seeds.len().min(3) as u8);
                for s in seeds.iter().take(3) {
                    w.u8(*s);
                }
                w
            }
            Op::Leave => w.u8(8),
            Op::SetTags(b) => w.u8(9).blob8(b),
            Op::SendFailure(a) => w.u8(10).u8(*a),
            Op::Drain => w.u8(11),
            Op::NextTimer => w.u8(12),
            Op::Leap(s) => w.u8(13).u16(*s),
        };
    }
}

/// A parsed `node` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Settings.
    pub header: Header,
    /// Steps.
    pub ops: Vec<Op>,
}

/// Most ops run from one input (longer inputs are cut).
pub const MAX_OPS: usize = 4096;

impl Script {
    /// Parse an input; every byte string is a script.
    pub fn parse(data: &[u8]) -> Script {
        let mut r = Reader::new(data);
        let header = Header::parse(&mut r);
        let mut ops = Vec::new();
        while !r.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::parse(&mut r));
        }
        Script { header, ops }
    }

    /// The input bytes of this script.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.header.encode(&mut w);
        for op in &self.ops {
            op.encode(&mut w);
        }
        w.out
    }
}

/// Steer arbitrary messages towards the pool: most names, addresses and incarnations are
/// replaced by pool members and small numbers (or the largest incarnations), using more bytes
/// of `u`.
pub fn steer(msg: &mut WireMessage, u: &mut Unstructured<'_>) {
    msg.map_names(|_| {
        let b = u.arbitrary::<u8>().unwrap_or(0);
        (b < 224).then(|| pool_name(b as usize % POOL))
    });
    msg.map_addrs(|a| {
        let b = u.arbitrary::<u8>().unwrap_or(0);
        if b < 224 {
            pool_addr(b as usize % POOL)
        } else {
            a
        }
    });
    msg.map_incarnations(|i| {
        let b = u.arbitrary::<u8>().unwrap_or(0);
        match b {
            0..192 => u32::from(b % 8),
            192..224 => i,
            _ => u32::MAX - u32::from(b % 4),
        }
    });
}

/// State the harness keeps between steps.
struct Harness {
    cfg: Config,
    node: Node,
    now: Timestamp,
    lazy_transmits: bool,
    lazy_events: bool,
    /// Recent transmits, for [`Op::Answer`].
    outbox: VecDeque<Transmit>,
    /// Members as of the last check.
    seen: HashMap<Name, Member>,
    self_inc: u32,
    /// The node's (member, event, query) Lamport clocks as of the last check.
    clocks: (u64, u64, u64),
    /// Events drained during the current step.
    step_events: Vec<Event>,
    /// Whether every event of the current step was seen (drained, none dropped).
    events_complete: bool,
    trace: std::hash::DefaultHasher,
}

/// Everything observable about the node's protocol state, for "rejected input changes nothing".
#[derive(Debug, PartialEq)]
struct Fingerprint {
    members: Vec<Member>,
    health: u32,
    queue: usize,
    clocks: (u64, u64, u64),
    deadline: Option<Timestamp>,
    alive: usize,
    left: bool,
}

fn fingerprint(n: &Node) -> Fingerprint {
    Fingerprint {
        members: n.members(),
        health: n.health_score(),
        queue: n.broadcast_queue_len(),
        clocks: n.clocks(),
        deadline: n.poll_timeout(),
        alive: n.alive_count(),
        left: n.has_left(),
    }
}

impl Harness {
    fn new(header: &Header) -> Harness {
        let cfg = header.config();
        let now = header.start();
        let node = Node::new(
            cfg.clone(),
            Identity::new(pool_name(0).as_str(), pool_addr(0)),
            header.seed,
            now,
        )
        .expect("harness configs are valid");
        let mut h = Harness {
            cfg,
            node,
            now,
            lazy_transmits: header.flags & 4 != 0,
            lazy_events: header.flags & 8 != 0,
            outbox: VecDeque::new(),
            seen: HashMap::new(),
            self_inc: 0,
            clocks: (0, 0, 0),
            step_events: Vec::new(),
            events_complete: true,
            trace: std::hash::DefaultHasher::new(),
        };
        h.drain(false);
        h.check();
        h
    }

    /// Drain transmits and events (all of them when `all`, else as the flags say).
    fn drain(&mut self, all: bool) {
        if all || !self.lazy_transmits {
            let mut n = 0;
            while let Some(t) = self.node.poll_transmit() {
                n += 1;
                self.check_transmit(&t);
                t.hash(&mut self.trace);
                if self.outbox.len() >= 32 {
                    self.outbox.pop_front();
                }
                self.outbox.push_back(t);
            }
            assert!(n <= self.cfg.max_pending_transmits, "{n} transmits pending");
        }
        if all || !self.lazy_events {
            let mut n = 0;
            while let Some(e) = self.node.poll_event() {
                // A `Lagged` report is not held in the queue: it stands for what was dropped.
                // Only droppable events count against the bound (see the module docs).
                if matches!(
                    e.class(),
                    rookery_core::EventClass::Message | rookery_core::EventClass::Droppable
                ) {
                    n += 1;
                }
                e.hash(&mut self.trace);
                self.step_events.push(e);
            }
            assert!(
                n <= self.cfg.max_pending_events,
                "{n} droppable events pending"
            );
        }
    }

    fn check_transmit(&self, t: &Transmit) {
        match t.kind {
            TransmitKind::Datagram => {
                assert!(
                    t.payload.len() <= self.cfg.mtu,
                    "datagram of {} bytes above the MTU {}",
                    t.payload.len(),
                    self.cfg.mtu
                );
                let msgs = fuzzing::decode_datagram(&self.cfg, &t.payload)
                    .unwrap_or_else(|e| panic!("own datagram does not decode: {e}"))
                    .expect("own label");
                assert!(msgs.iter().all(|m| m.info().kind != MessageKind::PushPull));
            }
            TransmitKind::Reliable => {
                // Read as a receiver's stream reads it: exactly one frame, within
                // `max_stream_message`.
                let mut frames = FrameDecoder::new(self.cfg.max_stream_message);
                frames.push(&t.payload);
                let body = frames
                    .next_frame()
                    .unwrap_or_else(|e| panic!("frame body above max_stream_message: {e}"))
                    .expect("frame shorter than its length prefix");
                assert_eq!(frames.buffered(), 0, "frame longer than its length prefix");
                fuzzing::decode_frame_body(&self.cfg, &body)
                    .unwrap_or_else(|e| panic!("own frame does not decode: {e}"))
                    .expect("own label");
            }
        }
    }

    /// After a timeout call: timers that its handlers scheduled for `now` or earlier wait for
    /// the next call, as a driver makes when `poll_timeout` says so. A few such calls must
    /// leave no deadline in the past (nothing re-arms itself in the past forever).
    fn settle_timers(&mut self) {
        for _ in 0..4 {
            match self.node.poll_timeout() {
                Some(at) if at < self.now => {
                    let _ = self.input(Input::Timeout);
                    self.drain(false);
                }
                _ => return,
            }
        }
        let at = self.node.poll_timeout();
        assert!(
            at.is_none_or(|at| at >= self.now),
            "timers stay due: deadline {at:?} < now {}",
            self.now
        );
    }

    /// Check every invariant after a step.
    fn check(&mut self) {
        let n = &self.node;
        let cfg = &self.cfg;
        match n.poll_timeout() {
            None => assert!(n.has_left(), "a running node has no deadline"),
            Some(_) => assert!(!n.has_left(), "a node that left still has a deadline"),
        }
        let members = n.members();
        assert!(members.len() <= cfg.max_members, "member table over bound");
        assert_eq!(members.len(), n.num_members());
        // A leaving member shows as `Leaving` whether it is alive or suspected underneath, and
        // only an alive one counts: the count lies between the two.
        let count = |f: fn(MemberStatus) -> bool| members.iter().filter(|m| f(m.status)).count();
        let alive = count(|s| s == MemberStatus::Alive);
        let leaving = count(|s| s == MemberStatus::Leaving);
        assert!(
            (alive..=alive + leaving).contains(&n.alive_count()),
            "alive count drifted: {} with {alive} alive and {leaving} leaving",
            n.alive_count()
        );
        assert!(
            n.serf_queue_len() <= cfg.max_queue_depth,
            "Serf queue over bound"
        );
        assert!(n.broadcast_queue_len() <= cfg.max_broadcast_queue);
        assert!(n.health_score() < cfg.awareness_max_multiplier);
        let me = n.local_member();
        assert_eq!(me.name, pool_name(0));
        assert!(
            !rookery_core::plausible::older(me.incarnation, self.self_inc),
            "own incarnation went down: {} -> {}",
            self.self_inc,
            me.incarnation
        );
        self.self_inc = me.incarnation;
        let clocks = n.clocks();
        let names = ["member", "event", "query"];
        let (old, new) = (
            [self.clocks.0, self.clocks.1, self.clocks.2],
            [clocks.0, clocks.1, clocks.2],
        );
        for k in 0..3 {
            assert!(
                new[k] >= old[k],
                "{} Lamport clock went down: {} -> {}",
                names[k],
                old[k],
                new[k]
            );
        }
        self.clocks = clocks;
        let mut now_seen = HashMap::with_capacity(members.len());
        for m in members {
            if let Some(prev) = self.seen.get(&m.name) {
                let down = rookery_core::plausible::older(m.incarnation, prev.incarnation);
                if down && self.events_complete {
                    let readmitted = self
                        .step_events
                        .iter()
                        .any(|e| matches!(e, Event::MemberJoined(j) if j.name == m.name));
                    assert!(
                        readmitted,
                        "incarnation of {} went down without re-admission: {prev:?} -> {m:?}",
                        m.name
                    );
                }
            }
            assert!(
                now_seen.insert(m.name.clone(), m).is_none(),
                "duplicate member name"
            );
        }
        self.seen = now_seen;
        self.step_events.clear();
    }

    /// Hand the node `input` now.
    fn input(&mut self, input: Input) -> Result<Handled, HandleError> {
        self.node.handle(self.now, input)
    }

    /// Deliver raw bytes (a datagram, or a frame body); rejected input must change nothing.
    fn raw(&mut self, input: Input) {
        let before = fingerprint(&self.node);
        let errors = self.node.stats().inputs_refused();
        let r = self.input(input);
        let not_running = HandleError::Input(InputError::NotRunning);
        match &r {
            Ok(_) => {}
            Err(e) if *e == not_running => assert!(before.left, "refused while running"),
            Err(e) => {
                assert_eq!(
                    fingerprint(&self.node),
                    before,
                    "rejected input ({e}) changed state"
                );
                let counted = self.node.stats().inputs_refused();
                assert_eq!(counted, errors + 1, "rejection not counted");
                if !self.lazy_transmits {
                    assert!(self.node.poll_transmit().is_none(), "rejected input sent");
                }
                if !self.lazy_events {
                    assert!(self.node.poll_event().is_none(), "rejected input emitted");
                }
            }
        }
        if before.left {
            assert!(r == Err(not_running), "a node that left took input");
        }
    }

    fn label(&self) -> Option<&str> {
        self.cfg.label.as_deref()
    }

    fn answer(&mut self, sel: u8, how: u8) {
        if self.outbox.is_empty() {
            return;
        }
        let i = sel as usize % self.outbox.len();
        let Some(t) = self.outbox.remove(i) else {
            return;
        };
        // The transmit as its receiver, the peer `to`, is handed it.
        let (to, message) = (t.to, t.message);
        match Input::from_transmit(pool_addr(0), t) {
            Input::Datagram { payload, .. } => {
                let Ok(Some(msgs)) = fuzzing::decode_datagram(&self.cfg, &payload) else {
                    return;
                };
                let mut replies = Vec::new();
                for m in msgs {
                    let info = m.info();
                    let Some(seq) = info.seq else { continue };
                    match info.kind {
                        MessageKind::Ping if how & 1 == 0 => {
                            let digest = (how & 2 != 0).then_some(([how, sel, 0, 1], how & 4 != 0));
                            replies.push(WireMessage::ack(seq, digest));
                        }
                        MessageKind::CheckPing if how & 1 == 0 => {
                            replies.push(WireMessage::ack(seq, None));
                        }
                        MessageKind::IndirectPing => replies.push(if how & 8 != 0 {
                            WireMessage::nack(seq)
                        } else {
                            WireMessage::ack(seq, None)
                        }),
                        _ => {}
                    }
                }
                if !replies.is_empty() {
                    let payload = fuzzing::encode_datagram(self.label(), &replies).into();
                    let _ = self.input(Input::Datagram { from: to, payload });
                }
            }
            Input::Stream { body, .. } => {
                if how & 0x80 != 0 {
                    let _ = self.input(Input::SendFailed { to, message });
                    return;
                }
                let Ok(Some(m)) = fuzzing::decode_frame_body(&self.cfg, &body) else {
                    return;
                };
                let info = m.info();
                let reply = match (info.kind, info.seq, info.id) {
                    (MessageKind::StreamPing, Some(seq), _) if how & 1 == 0 => {
                        WireMessage::ack(seq, None)
                    }
                    (MessageKind::PushPull, _, Some(id)) if info.request == Some(true) => {
                        self.push_pull_reply(id, to, how)
                    }
                    _ => return,
                };
                let body = fuzzing::encode_frame_body(self.label(), &reply).into();
                let _ = self.input(Input::Stream { from: to, body });
            }
            other => unreachable!("a transmit arrives as a datagram or a stream: {other:?}"),
        }
    }

    /// A push-pull response from `peer`: the node's own view, the peer itself alive, and
    /// (as `how` says) one member's status changed.
    fn push_pull_reply(&self, id: u32, peer: SocketAddr, how: u8) -> WireMessage {
        let sender = pool_index(peer).map_or_else(|| Name::new("stranger"), pool_name);
        let mut states: Vec<StateEntry> = self
            .node
            .members()
            .into_iter()
            .map(|m| StateEntry {
                name: m.name,
                addr: m.addr,
                incarnation: m.incarnation,
                status: m.status,
                tags: (*m.tags).clone(),
            })
            .collect();
        if !states.iter().any(|s| s.name == sender) {
            states.push(StateEntry {
                name: sender.clone(),
                addr: peer,
                incarnation: 0,
                status: MemberStatus::Alive,
                tags: Tags::new(),
            });
        }
        if how & 0x10 != 0 && !states.is_empty() {
            let k = (how >> 5) as usize % states.len();
            states[k].status = match how & 0x60 {
                0x00 => MemberStatus::Suspect,
                0x20 => MemberStatus::Failed,
                _ => MemberStatus::Left,
            };
            states[k].incarnation = states[k].incarnation.wrapping_add(u32::from(how & 1));
        }
        states.truncate(self.cfg.max_members);
        WireMessage::push_pull(id, false, false, peer, &sender, states)
    }

    fn step(&mut self, op: &Op) {
        let mut fired = false;
        let dropped = self.node.stats().events_dropped + self.node.stats().events_coalesced;
        match op {
            Op::Packet(a, b) => self.raw(Input::Datagram {
                from: addr_of(*a),
                payload: Bytes::copy_from_slice(b),
            }),
            Op::Stream(a, b) => self.raw(Input::Stream {
                from: addr_of(*a),
                body: Bytes::copy_from_slice(b),
            }),
            Op::Advance(us) => {
                self.now =
                    Timestamp::from_micros(self.now.as_micros().saturating_add(u64::from(*us)))
            }
            Op::Timeout => {
                let _ = self.input(Input::Timeout);
                fired = true;
            }
            Op::Msgs(a, b) => {
                let mut u = Unstructured::new(b);
                let mut msgs: Vec<WireMessage> = Vec::arbitrary(&mut u).unwrap_or_default();
                msgs.truncate(64);
                if msgs.is_empty() {
                    return;
                }
                for m in &mut msgs {
                    steer(m, &mut u);
                }
                let payload = fuzzing::encode_datagram(self.label(), &msgs).into();
                let _ = self.input(Input::Datagram {
                    from: addr_of(*a),
                    payload,
                });
            }
            Op::StreamMsg(a, b) => {
                let mut u = Unstructured::new(b);
                let Ok(mut m) = WireMessage::arbitrary(&mut u) else {
                    return;
                };
                steer(&mut m, &mut u);
                let body = fuzzing::encode_frame_body(self.label(), &m).into();
                let _ = self.input(Input::Stream {
                    from: addr_of(*a),
                    body,
                });
            }
            Op::Answer(s, h) => self.answer(*s, *h),
            Op::Join(seeds) => {
                let seeds: Vec<SocketAddr> = seeds.iter().map(|&s| addr_of(s)).collect();
                let ignore_old = false;
                let _ = self.input(Input::from(Call::Join { seeds, ignore_old }));
            }
            Op::Leave => {
                let _ = self.input(Input::from(Call::Leave));
            }
            Op::SetTags(b) => {
                let tags = Tags::arbitrary(&mut Unstructured::new(b)).unwrap_or_default();
                let _ = self.input(Input::from(Call::SetTags(tags)));
            }
            Op::SendFailure(a) => {
                let to = addr_of(*a);
                let _ = self.input(Input::SendFailed { to, message: None });
            }
            Op::Drain => {}
            Op::NextTimer => {
                if let Some(at) = self.node.poll_timeout() {
                    self.now = self.now.max(at);
                }
                let _ = self.input(Input::Timeout);
                fired = true;
            }
            Op::Leap(s) => {
                self.now = self.now + Duration::from_secs(u64::from(*s));
                let _ = self.input(Input::Timeout);
                fired = true;
            }
        }
        self.drain(*op == Op::Drain);
        if fired {
            self.settle_timers();
        }
        let lost = self.node.stats().events_dropped + self.node.stats().events_coalesced;
        self.events_complete = !self.lazy_events && lost == dropped;
        self.check();
    }
}

/// Run the `node` target on one input; returns a hash of everything the node sent and emitted
/// (the same input must always give the same hash).
pub fn run(data: &[u8]) -> u64 {
    run_script(&Script::parse(data))
}

/// Run a parsed script.
pub fn run_script(script: &Script) -> u64 {
    run_script_view(script).0
}

/// Run a parsed script; returns the trace hash and the node's final member view.
pub fn run_script_view(script: &Script) -> (u64, Vec<Member>) {
    let mut h = Harness::new(&script.header);
    for op in &script.ops {
        h.step(op);
    }
    h.drain(true);
    let members = h.node.members();
    members.hash(&mut h.trace);
    (h.trace.finish(), members)
}
