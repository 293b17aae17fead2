//! The [`Node`]: the public face of the state machine. It owns the member table, the broadcast
//! queue, the timer queue, the RNG and the output queues; it decodes inputs, dispatches
//! messages to the protocol modules (`probe`, `updates`, `gossip`) and encodes what they send.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::broadcast_queue::BroadcastQueue;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, InputError};
use crate::event::Event;
use crate::gossip::PendingJoin;
use crate::identity::{Identity, Member, Name, Tags};
use crate::members::{MemberRec, Members};
use crate::probe::{Probe, Relay};
use crate::stats::Stats;
use crate::time::Timestamp;
use crate::timers::{TimerKind, Timers};
use crate::wire::{self, Envelope, Limits, Message};

/// How a transmit must travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransmitKind {
    /// One UDP datagram, at most [`Config::mtu`] bytes.
    Datagram,
    /// One reliable message (TCP), already framed: write the payload as is. The receiver
    /// splits frames with [`crate::wire::FrameDecoder`] and hands each body to
    /// [`Node::handle_stream`]. If it cannot be delivered, tell the node with
    /// [`Node::handle_send_failure`].
    Reliable,
}

/// Bytes the driver must send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transmit {
    /// Destination address.
    pub to: SocketAddr,
    /// Datagram or reliable message.
    pub kind: TransmitKind,
    /// The bytes to send.
    pub payload: Bytes,
}

/// Whether the node takes part in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Announcing its departure until the announcement is out or the deadline passes.
    Leaving,
    /// Gone: ignores every input.
    Left,
}

/// One cluster member's protocol state machine. See the crate docs for the driving loop.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) me: Name,
    pub(crate) addr: SocketAddr,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Timestamp,
    pub(crate) run: RunState,
    pub(crate) members: Members,
    pub(crate) queue: BroadcastQueue,
    pub(crate) timers: Timers,
    /// Lifeguard local health score, 0 ..= awareness_max_multiplier − 1.
    pub(crate) awareness: u32,
    pub(crate) probe: Option<Probe>,
    pub(crate) relays: BTreeMap<u32, Relay>,
    pub(crate) next_seq: u32,
    pub(crate) joins: BTreeMap<u32, PendingJoin>,
    /// Generation of the live periodic push-pull timer.
    pub(crate) push_pull_gen: u32,
    pub(crate) next_join: u32,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
    /// Accusers told of the current incarnation directly (at most 16; cleared on refutation).
    pub(crate) told_accusers: Vec<Name>,
    /// When the last digest-triggered push-pull started.
    pub(crate) last_repair: Option<Timestamp>,
    header: Vec<u8>,
    limits: Limits,
}

impl Node {
    /// Create a node. It knows only itself until [`Node::join`]; its timers start at `now`
    /// (staggered randomly so that nodes started together do not tick together).
    pub fn new(
        config: Config,
        identity: Identity,
        seed: u64,
        now: Timestamp,
    ) -> Result<Node, ConfigError> {
        config.validate()?;
        if identity.name.is_empty() || identity.name.len() > config.max_name_len {
            return Err(ConfigError::BadName);
        }
        let tags_len = wire::tags_encoded_len(&identity.tags);
        if tags_len > config.meta_max_size {
            return Err(ConfigError::TagsTooLarge { size: tags_len });
        }
        let me: Name = Name::new(&identity.name);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut members = Members::new(&mut rng);
        members.insert(
            MemberRec::new(me.clone(), identity.addr, 0, Arc::new(identity.tags), now),
            &mut rng,
        );
        let header = wire::header(config.label.as_deref());
        let limits = Limits {
            max_name_len: config.max_name_len,
            meta_max_size: config.meta_max_size,
            max_members: config.max_members,
        };
        let mut node = Node {
            queue: BroadcastQueue::new(config.max_broadcast_queue, rng.random()),
            me,
            addr: identity.addr,
            rng,
            now,
            run: RunState::Running,
            members,
            timers: Timers::default(),
            awareness: 0,
            probe: None,
            relays: BTreeMap::new(),
            next_seq: 0,
            joins: BTreeMap::new(),
            push_pull_gen: 0,
            next_join: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            last_repair: None,
            told_accusers: Vec::new(),
            header,
            limits,
            cfg: config,
        };
        node.next_seq = node.rng.random();
        node.broadcast_self();
        let stagger = |n: &mut Node, d: std::time::Duration| {
            let micros = d.as_micros().max(1) as u64;
            // Timestamp arithmetic saturates: a driver may start its clock anywhere.
            now + std::time::Duration::from_micros(n.rng.random_range(0..micros))
        };
        let (probe, gossip, push_pull) = (
            node.cfg.probe_interval,
            node.cfg.gossip_interval,
            node.cfg.push_pull_interval,
        );
        let at = stagger(&mut node, probe);
        node.timers.schedule(at, TimerKind::ProbeTick);
        let at = stagger(&mut node, gossip);
        node.timers.schedule(at, TimerKind::GossipTick);
        if !push_pull.is_zero() {
            let at = stagger(&mut node, push_pull);
            node.timers
                .schedule(at, TimerKind::PushPullTick { generation: 0 });
        }
        Ok(node)
    }

    fn advance(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Handle one datagram received from `from`. Undecodable input is counted and ignored
    /// without any state change.
    pub fn handle_packet(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), InputError> {
        self.advance(now);
        if self.run == RunState::Left {
            return Err(InputError::NotRunning);
        }
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.len() as u64;
        if data.len() > wire::MAX_DATAGRAM {
            let max = wire::MAX_DATAGRAM;
            return Err(self.rejected(wire::DecodeError::TooLarge {
                len: data.len(),
                max,
            }));
        }
        let body = self.open(data)?;
        let msgs = wire::decode_compound(body, &self.limits).map_err(|e| self.rejected(e))?;
        if msgs.iter().any(|m| matches!(m, Message::PushPull(_))) {
            let e = wire::DecodeError::Invalid("push-pull in a datagram");
            return Err(self.rejected(e));
        }
        for msg in msgs {
            self.handle_message(from, msg);
        }
        Ok(())
    }

    /// Handle one complete reliable message (a frame body, without the length prefix) from
    /// `from`. Undecodable input is counted and ignored without any state change.
    pub fn handle_stream(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        frame: &[u8],
    ) -> Result<(), InputError> {
        self.advance(now);
        if self.run == RunState::Left {
            return Err(InputError::NotRunning);
        }
        self.stats.streams_in += 1;
        self.stats.stream_bytes_in += frame.len() as u64;
        if frame.len() > self.cfg.max_stream_message {
            let max = self.cfg.max_stream_message;
            return Err(self.rejected(wire::DecodeError::TooLarge {
                len: frame.len(),
                max,
            }));
        }
        let body = self.open(frame)?;
        let msg = wire::decode_single(body, &self.limits).map_err(|e| self.rejected(e))?;
        self.handle_message(from, msg);
        Ok(())
    }

    /// Count a decode failure and turn it into the input error.
    fn rejected(&mut self, e: wire::DecodeError) -> InputError {
        self.stats.decode_errors += 1;
        InputError::Decode(e)
    }

    /// Check version and label; the bytes after the envelope.
    fn open<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], InputError> {
        match wire::open_envelope(data, self.cfg.label.as_deref()) {
            Ok(Envelope::Ours(body)) => Ok(body),
            Ok(Envelope::OtherLabel) => {
                self.stats.label_mismatches += 1;
                Err(InputError::LabelMismatch)
            }
            Err(e) => Err(self.rejected(e)),
        }
    }

    fn handle_message(&mut self, from: SocketAddr, msg: Message) {
        match msg {
            Message::Ping { seq, target } => {
                if *target == *self.me {
                    let digest = Some(self.view_digest());
                    self.send_datagram(from, &[Message::Ack { seq, digest }]);
                }
            }
            Message::StreamPing {
                seq,
                target,
                reply_to,
            } => {
                if *target == *self.me {
                    self.send_reliable(reply_to, &Message::Ack { seq, digest: None });
                }
            }
            Message::Ack { seq, digest } => self.on_ack(from, seq, digest),
            Message::Nack { seq } => self.on_nack(seq),
            Message::IndirectPing { seq, target, addr } => {
                self.on_indirect_ping(from, seq, target, addr)
            }
            Message::Alive(a) => self.apply_alive(a, true),
            Message::Suspect(s) => self.apply_suspect(s, true),
            Message::Dead(d) => self.apply_dead(d, true),
            // Datagrams carrying push-pull were rejected before anything was applied.
            Message::PushPull(p) => self.on_push_pull(p),
        }
    }

    /// Tell the node that a reliable transmit to `to` could not be delivered (connect or write
    /// failed, or timed out).
    pub fn handle_send_failure(&mut self, now: Timestamp, to: SocketAddr) {
        self.advance(now);
        self.stats.send_failures += 1;
        self.join_seed_failed(to);
    }

    /// Fire every internal timer due at `now`. Call when the deadline from
    /// [`Node::poll_timeout`] has passed; calling early or late is harmless. A timer that the
    /// handlers schedule for `now` or earlier fires at the next call (`poll_timeout` reports
    /// it), so the call always returns, even at [`Timestamp::MAX`].
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        // Only timers due when the call began: re-armed ones wait for the next call.
        let mark = self.timers.mark();
        while let Some(kind) = self.timers.pop_due(self.now, mark) {
            if self.run == RunState::Left {
                return;
            }
            match kind {
                TimerKind::ProbeTick => self.probe_tick(),
                TimerKind::ProbeTimeout { seq } => self.probe_timeout(seq),
                TimerKind::GossipTick => self.gossip_tick(),
                TimerKind::PushPullTick { generation } => {
                    if generation == self.push_pull_gen {
                        self.push_pull_tick();
                    }
                }
                TimerKind::Suspicion { name, generation } => {
                    self.suspicion_timeout(&name, generation)
                }
                TimerKind::Relay { seq } => self.relay_timeout(seq),
                TimerKind::JoinDeadline { join } => self.join_deadline(join),
                TimerKind::LeaveDeadline => self.finish_leave(),
            }
        }
    }

    /// Join a cluster through `seeds`: a push-pull exchange with each (this node's own address
    /// is skipped). [`Event::JoinCompleted`] reports how many answered, once all have answered
    /// or failed, or after `tcp_timeout`.
    pub fn join(&mut self, now: Timestamp, seeds: &[SocketAddr]) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        let mut seeds: Vec<SocketAddr> =
            seeds.iter().copied().filter(|a| *a != self.addr).collect();
        seeds.sort();
        seeds.dedup();
        if seeds.is_empty() {
            return Err(ApiError::NoSeeds);
        }
        self.start_join(seeds);
        Ok(())
    }

    /// Leave the cluster gracefully: announce the departure (others mark this node left, not
    /// failed), keep gossiping until the announcement has been sent out or `tcp_timeout`
    /// passed, then emit [`Event::LeaveCompleted`] and go inert.
    pub fn leave(&mut self, now: Timestamp) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        self.start_leave();
        Ok(())
    }

    /// Replace this node's tags and announce them with a new incarnation.
    pub fn set_tags(&mut self, now: Timestamp, tags: Tags) -> Result<(), ApiError> {
        self.advance(now);
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        let size = wire::tags_encoded_len(&tags);
        if size > self.cfg.meta_max_size {
            return Err(ApiError::TagsTooLarge {
                size,
                limit: self.cfg.meta_max_size,
            });
        }
        let me = self.me.clone();
        let now = self.now;
        let rec = self
            .members
            .get_mut(&me)
            .expect("self is always in the table");
        rec.tags = Arc::new(tags);
        // Incarnations never wrap: at u32::MAX the node stays there (see `refute`).
        let inc = rec.incarnation.saturating_add(1);
        self.members.set_incarnation(&me, inc, now);
        self.broadcast_self();
        Ok(())
    }

    /// The next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next deadline at which [`Node::handle_timeout`] must be called; `None` once the
    /// node has left.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.run == RunState::Left {
            return None;
        }
        self.timers.next_deadline()
    }

    /// Every member this node knows, itself included, failed and left tombstones included.
    pub fn members(&self) -> Vec<Member> {
        self.members.iter().map(MemberRec::snapshot).collect()
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.get(name).map(MemberRec::snapshot)
    }

    /// This node as the cluster sees it.
    pub fn local_member(&self) -> Member {
        self.members
            .get(&self.me)
            .expect("self is always in the table")
            .snapshot()
    }

    /// Members with status alive, this node included (while it runs).
    pub fn alive_count(&self) -> usize {
        self.members.alive()
    }

    /// Members known, in any status.
    pub fn num_members(&self) -> usize {
        self.members.len()
    }

    /// Traffic and drop counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard's local health score: 0 is healthy; each point stretches the probe interval.
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    /// Updates waiting in the broadcast queue.
    pub fn broadcast_queue_len(&self) -> usize {
        self.queue.len()
    }

    /// True once the node has left and ignores input.
    pub fn has_left(&self) -> bool {
        self.run == RunState::Left
    }

    // ---- helpers shared by the protocol modules ----

    pub(crate) fn emit(&mut self, event: Event) {
        if self.events.len() >= self.cfg.max_pending_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= self.cfg.max_pending_transmits {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.transmits.push_back(t);
    }

    pub(crate) fn retransmit_limit(&self) -> u32 {
        let n = self.members.live() as f64;
        // memberlist's mult·ceil(log10(n + 1)), with the log factor at least 2: below ten
        // members memberlist sends an update only `mult` times, and a member misses it with
        // a probability near e^-mult.
        self.cfg.retransmit_mult * ((n + 1.0).log10().ceil() as u32).max(2)
    }

    /// Send `msgs` in one datagram to `to`, filled up to the MTU with queued updates.
    pub(crate) fn send_datagram(&mut self, to: SocketAddr, msgs: &[Message]) {
        let mut body = Vec::with_capacity(self.cfg.mtu);
        for m in msgs {
            body.extend(wire::encode_message(m));
        }
        let used = self.header.len() + wire::COUNT_RESERVE + body.len();
        let limit = self.retransmit_limit();
        let extra = self
            .queue
            .fill(self.cfg.mtu.saturating_sub(used), limit, &mut body);
        self.finish_datagram(to, msgs.len() + extra, &body);
    }

    /// Send only queued updates to `to`; false when there was nothing to send.
    pub(crate) fn send_gossip(&mut self, to: SocketAddr) -> bool {
        let mut body = Vec::with_capacity(self.cfg.mtu);
        let room = self.cfg.mtu - self.header.len() - wire::COUNT_RESERVE;
        let limit = self.retransmit_limit();
        let n = self.queue.fill(room, limit, &mut body);
        if n > 0 {
            self.finish_datagram(to, n, &body);
        }
        n > 0
    }

    fn finish_datagram(&mut self, to: SocketAddr, count: usize, body: &[u8]) {
        let payload = wire::assemble_datagram_body(&self.header, count, body);
        self.stats.packets_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        self.push_transmit(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload: payload.into(),
        });
    }

    pub(crate) fn send_reliable(&mut self, to: SocketAddr, msg: &Message) {
        let body = wire::encode_message(msg);
        let frame = wire::assemble_frame(&self.header, &body);
        self.stats.streams_out += 1;
        self.stats.stream_bytes_out += frame.len() as u64;
        self.push_transmit(Transmit {
            to,
            kind: TransmitKind::Reliable,
            payload: frame.into(),
        });
    }

    /// Queue an update about `key` for dissemination.
    pub(crate) fn enqueue(&mut self, key: Name, msg: &Message) {
        let before = self.queue.drops();
        self.queue.push(key, wire::encode_message(msg));
        self.stats.broadcast_drops += self.queue.drops() - before;
    }

    /// This node's own alive message.
    pub(crate) fn self_alive(&self) -> Message {
        let rec = self
            .members
            .get(&self.me)
            .expect("self is always in the table");
        Message::Alive(wire::Alive {
            incarnation: rec.incarnation,
            name: rec.name.clone(),
            addr: rec.addr,
            tags: (*rec.tags).clone(),
        })
    }

    /// Queue this node's own alive message.
    pub(crate) fn broadcast_self(&mut self) {
        let msg = self.self_alive();
        self.enqueue(self.me.clone(), &msg);
    }
}
