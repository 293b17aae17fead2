//! The [`Node`]: the public face of the state machine. It owns the member table, the broadcast
//! queue, the timer queue, the RNG and the output queues; it decodes inputs, dispatches
//! messages to the protocol modules (`probe`, `updates`, `gossip`) and encodes what they send.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::broadcast_queue::BroadcastQueue;
use crate::coalesce::Coalescer;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, InputError};
use crate::event::Event;
use crate::gossip::PendingJoin;
use crate::identity::{Identity, Member, Name, Tags};
use crate::input::{Call, HandleError, Handled, Input};
use crate::intents::RecentIntents;
use crate::lamport::LamportClock;
use crate::members::{MemberRec, Members, Near, Prefetched};
use crate::messaging::Outbox;
use crate::probe::{Probe, RecentAcks, Relay};
use crate::query::Queries;
use crate::short_name::ShortName;
use crate::stats::{QueueDepths, Stats};
use crate::time::Timestamp;
use crate::timers::{TimerKind, Timers};
use crate::user_events::EventRing;
use crate::wire::{self, Decoded, Envelope, Limits, Message};

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
    pub(crate) cfg: Arc<Config>,
    pub(crate) me: Name,
    pub(crate) addr: SocketAddr,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Timestamp,
    pub(crate) run: RunState,
    pub(crate) members: Members,
    pub(crate) queue: BroadcastQueue<ShortName>,
    pub(crate) timers: Timers,
    /// Lifeguard local health score, 0 ..= awareness_max_multiplier − 1.
    pub(crate) awareness: u32,
    pub(crate) probe: Option<Box<Probe>>,
    /// Members that recently answered a direct ping: preferred indirect-probe helpers.
    pub(crate) recent_acks: RecentAcks,
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
    // ---- Serf layer ----
    /// Intents, user events and queries waiting to be piggybacked (kept apart from membership
    /// updates so that neither starves the other).
    pub(crate) serf_queue: BroadcastQueue<SerfKey>,
    /// Whether the depth warning has fired since the Serf queue was last below half of it.
    pub(crate) depth_warned: bool,
    pub(crate) member_clock: LamportClock,
    pub(crate) event_clock: LamportClock,
    pub(crate) query_clock: LamportClock,
    pub(crate) intents: RecentIntents,
    pub(crate) event_ring: EventRing,
    pub(crate) queries: Queries,
    pub(crate) coalescer: Coalescer,
    pub(crate) outbox: Outbox,
    /// Leaving: 1 while the leave intent goes out, 2 while the SWIM departure goes out.
    pub(crate) leave_phase: u8,
    /// When this node last delivered a new user event (part of its digest's settledness).
    pub(crate) events_changed: Timestamp,
    /// Datagrams filled so far (tags each fill so no update goes twice into one datagram).
    pub(crate) datagrams: u64,
    /// Direct messages waiting in `events`.
    pub(crate) inbox_len: usize,
    /// Events dropped since the last [`Event::Lagged`].
    pub(crate) lagged: u64,
    /// Where [`Members::prefetch`] found a datagram's members (kept to reuse its memory).
    prefetched: Prefetched,
    pub(crate) header: Vec<u8>,
    limits: Limits,
}

/// What an update in the Serf broadcast queue is about; a newer update replaces an older one
/// with the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SerfKey {
    /// The latest join or leave intent about a member.
    Intent(Name),
    /// One user event (Lamport time and a hash of name and payload).
    Event(u64, u64),
    /// One query (Lamport time, id).
    Query(u64, u32),
}

/// Give back a drained output queue's memory: a burst (a join's push-pull reports every
/// member at once) should not stay allocated, and a thousand idle nodes in one simulation
/// should not each hold even a small queue (their events are drained after every input).
fn release_burst<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

impl Node {
    /// Create a node. It knows only itself until [`Node::join`]; its timers start at `now`
    /// (staggered randomly so that nodes started together do not tick together). `config` is
    /// a [`Config`] or an `Arc<Config>` (nodes simulated together can share one).
    pub fn new(
        config: impl Into<Arc<Config>>,
        identity: Identity,
        seed: u64,
        now: Timestamp,
    ) -> Result<Node, ConfigError> {
        let config: Arc<Config> = config.into();
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
            MemberRec::new(me.clone(), identity.addr, 0),
            &identity.tags,
            now,
            &mut rng,
        );
        let header = wire::header(config.label.as_deref());
        let limits = Limits::from_config(&config);
        let mut node = Node {
            queue: BroadcastQueue::new(config.max_broadcast_queue, rng.random()),
            serf_queue: BroadcastQueue::new(config.max_queue_depth, rng.random()),
            depth_warned: false,
            member_clock: LamportClock::default(),
            event_clock: LamportClock::default(),
            query_clock: LamportClock::default(),
            intents: RecentIntents::default(),
            event_ring: EventRing::new(config.event_buffer),
            queries: Queries::new(config.query_buffer),
            coalescer: Coalescer::default(),
            outbox: Outbox::default(),
            leave_phase: 0,
            datagrams: 0,
            events_changed: now,
            inbox_len: 0,
            lagged: 0,
            me,
            addr: identity.addr,
            rng,
            now,
            run: RunState::Running,
            members,
            timers: Timers::default(),
            awareness: 0,
            probe: None,
            recent_acks: RecentAcks::default(),
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
            prefetched: Prefetched::default(),
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
        let reap = node.cfg.reap_interval;
        let at = stagger(&mut node, reap);
        node.timers.schedule(at, TimerKind::ReapTick);
        let reconnect = node.cfg.reconnect_interval;
        if !reconnect.is_zero() {
            let at = stagger(&mut node, reconnect);
            node.timers.schedule(at, TimerKind::ReconnectTick);
        }
        Ok(node)
    }

    pub(crate) fn advance(&mut self, now: Timestamp) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Hand the node one [`Input`]: the single entry point every input can take (the typed
    /// methods below are its parts). Outputs wait in the poll queues as after any input.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Result<Handled, HandleError> {
        match input {
            Input::Datagram { from, payload } => self.handle_packet(now, from, &payload)?,
            Input::Stream { from, body } => self.handle_stream(now, from, &body)?,
            Input::SendFailed { to } => self.handle_send_failure(now, to),
            Input::Timeout => self.handle_timeout(now),
            Input::Call(call) => return self.call(now, call),
        }
        Ok(Handled::Done)
    }

    fn call(&mut self, now: Timestamp, call: Call) -> Result<Handled, HandleError> {
        match call {
            Call::Join { seeds, ignore_old } => self.join_with(now, &seeds, ignore_old)?,
            Call::Leave => self.leave(now)?,
            Call::SetTags(tags) => self.set_tags(now, tags)?,
            Call::UserEvent {
                name,
                payload,
                coalesce,
            } => self.user_event(now, &name, payload, coalesce)?,
            Call::Query {
                name,
                payload,
                params,
            } => return Ok(Handled::Query(self.query(now, &name, payload, params)?)),
            Call::Respond { query, payload } => self.respond(now, &query, payload)?,
            Call::Send { to, payload } => self.send(now, &to, payload)?,
            Call::Broadcast { payload } => {
                return Ok(Handled::Broadcast(self.broadcast(now, payload)?))
            }
            Call::RemoveFailed { name, prune } => self.remove_failed(now, &name, prune)?,
        }
        Ok(Handled::Done)
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
        let msgs = wire::decode_datagram(body, &self.limits).map_err(|e| self.rejected(e))?;
        if msgs
            .iter()
            .any(|m| matches!(m, Decoded::Message(Message::PushPull(_))))
        {
            let e = wire::DecodeError::Invalid("push-pull in a datagram");
            return Err(self.rejected(e));
        }
        let mut found = std::mem::take(&mut self.prefetched);
        if msgs.len() > 4 {
            self.members
                .prefetch(msgs.iter().map(Decoded::member_name), &mut found);
        }
        for (i, msg) in msgs.into_iter().enumerate() {
            self.handle_decoded(from, msg, found.near(i));
        }
        self.prefetched = found;
        Ok(())
    }

    fn handle_decoded(&mut self, from: SocketAddr, msg: Decoded<'_>, near: Near) {
        match msg {
            Decoded::Message(msg) => self.handle_message(from, msg),
            Decoded::Alive(a) => {
                if !self.alive_is_known(&a, near) {
                    self.apply_alive(a.to_alive(), true);
                }
            }
        }
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
            Message::Ping {
                seq,
                target,
                digest: theirs,
            } => {
                if *target == *self.me {
                    let digest = Some(self.view_digest());
                    self.send_datagram(from, &[Message::Ack { seq, digest }]);
                    if let Some(d) = theirs {
                        self.compare_digest(from, d);
                    }
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
            Message::Nack { seq } => self.on_nack(from, seq),
            Message::IndirectPing { seq, target, addr } => {
                self.on_indirect_ping(from, seq, target, addr)
            }
            Message::Alive(a) => self.apply_alive(a, true),
            Message::Suspect(s) => self.apply_suspect(s, true),
            Message::Dead(d) => self.apply_dead(d, true),
            // Datagrams carrying push-pull were rejected before anything was applied.
            Message::PushPull(p) => self.on_push_pull(*p),
            Message::LeaveIntent(i) => self.on_leave_intent(i, true),
            Message::UserEvent(e) => self.on_user_event(e, true, true),
            Message::Query(q) => self.on_query(*q),
            Message::QueryResponse(r) => self.on_query_response(r),
            Message::RelayResponse { to, resp } => {
                self.send_datagram(to, &[Message::QueryResponse(resp)]);
            }
            Message::Direct { from, payload } => self.on_direct(from, payload),
        }
    }

    /// Tell the node that a reliable transmit to `to` could not be delivered (connect or write
    /// failed, or timed out).
    pub fn handle_send_failure(&mut self, now: Timestamp, to: SocketAddr) {
        self.advance(now);
        self.stats.send_failures += 1;
        self.join_seed_failed(to);
        self.direct_send_failed(to);
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
                TimerKind::LeaveDeadline { phase } => self.leave_deadline(phase),
                TimerKind::ReapTick => self.reap_tick(),
                TimerKind::ReconnectTick => self.reconnect_tick(),
                TimerKind::QueryDeadline { id } => self.query_deadline(id),
                TimerKind::CoalesceFlush => self.coalesce_flush(),
            }
        }
    }

    /// Join a cluster through `seeds`: a push-pull exchange with each (this node's own address
    /// is skipped). [`Event::JoinCompleted`] reports how many answered, once all have answered
    /// or failed, or after `tcp_timeout`.
    pub fn join(&mut self, now: Timestamp, seeds: &[SocketAddr]) -> Result<(), ApiError> {
        self.join_with(now, seeds, false)
    }

    /// [`Node::join`], choosing whether to replay the cluster's recent user events
    /// (`ignore_old` false, as `join` does) or to skip every event older than the join.
    pub fn join_with(
        &mut self,
        now: Timestamp,
        seeds: &[SocketAddr],
        ignore_old: bool,
    ) -> Result<(), ApiError> {
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
        // The join intent (a new incarnation of our alive) first, so that the push-pull
        // carries it and the seeds do not gossip the old incarnation as news.
        self.announce_join();
        self.start_join(seeds, ignore_old);
        Ok(())
    }

    /// Leave the cluster gracefully: announce a leave intent (others mark this node leaving),
    /// then the departure itself (others mark it left, not failed), each until it has been sent
    /// out or `broadcast_timeout` passed; then emit [`Event::LeaveCompleted`] and go inert.
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
        self.members.set_tags(&me, &tags);
        let rec = self.members.get(&me).expect("self is always in the table");
        // Incarnations never wrap: at u32::MAX the node stays there (see `refute`).
        let inc = rec.incarnation.saturating_add(1);
        self.members.set_incarnation(&me, inc, now);
        self.broadcast_self();
        Ok(())
    }

    /// The next bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_none() {
            release_burst(&mut self.transmits);
        }
        t
    }

    /// The next event, if any. A [`Event::Lagged`] comes first when events were dropped.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.lagged > 0 {
            let dropped = std::mem::take(&mut self.lagged);
            return Some(Event::Lagged { dropped });
        }
        let Some(e) = self.events.pop_front() else {
            release_burst(&mut self.events);
            return None;
        };
        if matches!(e, Event::Message { .. }) {
            self.inbox_len -= 1;
        }
        Some(e)
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
        self.members
            .iter()
            .map(|r| self.members.snapshot(r))
            .collect()
    }

    /// One member by name.
    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.member(name)
    }

    /// This node as the cluster sees it.
    pub fn local_member(&self) -> Member {
        self.members
            .member(&self.me)
            .expect("self is always in the table")
    }

    /// Members alive at the failure-detection level — status [`crate::MemberStatus::Alive`], or
    /// [`crate::MemberStatus::Leaving`] while the departure goes out — this node included while it
    /// runs. A leaving member that is also suspected is listed as `Leaving` by
    /// [`Node::members`] but is not counted here: it is not alive at that level.
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

    /// How full each bounded queue is, with its bound.
    pub fn queue_depths(&self) -> QueueDepths {
        let c = &self.cfg;
        QueueDepths {
            broadcast: (self.queue.len(), c.max_broadcast_queue),
            serf: (self.serf_queue.len(), c.max_queue_depth),
            events: (self.events.len(), c.max_pending_events),
            inbox: (self.inbox_len, c.max_inbox),
            transmits: (self.transmits.len(), c.max_pending_transmits),
            intents: (self.intents.len(), c.max_recent_intents),
            event_ring: (self.event_ring.times_held(), c.event_buffer.max(1)),
            pending_queries: (self.queries.pending_len(), c.max_pending_queries),
            relays: (self.relays.len(), c.max_indirect_relays),
        }
    }

    /// Lifeguard's local health score: 0 is healthy; each point stretches the probe interval.
    pub fn health_score(&self) -> u32 {
        self.awareness
    }

    /// Updates waiting in the membership broadcast queue.
    pub fn broadcast_queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Updates waiting in the Serf broadcast queue (intents, user events, queries).
    pub fn serf_queue_len(&self) -> usize {
        self.serf_queue.len()
    }

    /// The member, event and query Lamport clocks.
    pub fn clocks(&self) -> (u64, u64, u64) {
        (
            self.member_clock.time(),
            self.event_clock.time(),
            self.query_clock.time(),
        )
    }

    /// True once the node has left and ignores input.
    pub fn has_left(&self) -> bool {
        self.run == RunState::Left
    }

    // ---- helpers shared by the protocol modules ----

    /// Report an event, through the coalescer when coalescing is on.
    pub(crate) fn emit(&mut self, event: Event) {
        if let Some(event) = self.coalesce(event) {
            self.push_event(event);
        }
    }

    /// Queue an event for the application. Overflow policy: received direct messages beyond
    /// `max_inbox` drop the oldest message; a full queue drops the oldest direct message, or
    /// failing that the oldest event. Every drop is counted and reported by `Lagged`.
    pub(crate) fn push_event(&mut self, event: Event) {
        let is_message = matches!(event, Event::Message { .. });
        if is_message && self.inbox_len >= self.cfg.max_inbox {
            self.drop_oldest_message();
        }
        if self.events.len() >= self.cfg.max_pending_events && !self.drop_oldest_message() {
            self.events.pop_front();
            self.stats.events_dropped += 1;
            self.lagged += 1;
        }
        if is_message {
            self.inbox_len += 1;
        }
        self.events.push_back(event);
    }

    fn drop_oldest_message(&mut self) -> bool {
        let Some(i) = self
            .events
            .iter()
            .position(|e| matches!(e, Event::Message { .. }))
        else {
            return false;
        };
        self.events.remove(i);
        self.inbox_len -= 1;
        self.stats.messages_dropped += 1;
        self.lagged += 1;
        true
    }

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= self.cfg.max_pending_transmits {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.transmits.push_back(t);
    }

    pub(crate) fn retransmit_limit(&self) -> u32 {
        crate::formulas::retransmit_limit(&self.cfg, self.members.live())
    }

    /// Send `msgs` in one datagram to `to`, filled up to the MTU with queued updates.
    pub(crate) fn send_datagram(&mut self, to: SocketAddr, msgs: &[Message]) {
        let mut buf = self.datagram_buf();
        for m in msgs {
            wire::encode_into(m, &mut buf);
        }
        let extra = self.piggyback(self.datagram_room(&buf), &mut buf);
        self.finish_datagram(to, msgs.len() + extra, buf);
    }

    /// A datagram being built: room for the envelope header and the longest message count in
    /// front of the messages, which [`Node::finish_datagram`] fills in place.
    fn datagram_buf(&self) -> Vec<u8> {
        let front = self.datagram_front();
        let mut buf = Vec::with_capacity(front + self.cfg.mtu);
        buf.resize(front, 0);
        buf
    }

    /// Bytes still free for messages in a [`Node::datagram_buf`] within the MTU (the count is
    /// reckoned at [`wire::COUNT_RESERVE`] bytes).
    fn datagram_room(&self, buf: &[u8]) -> usize {
        let used = self.header.len() + wire::COUNT_RESERVE + buf.len() - self.datagram_front();
        self.cfg.mtu.saturating_sub(used)
    }

    /// Where the messages start in a [`Node::datagram_buf`].
    fn datagram_front(&self) -> usize {
        self.header.len() + wire::COUNT_MAX_LEN
    }

    /// Send only queued updates to `to`; false when there was nothing to send.
    pub(crate) fn send_gossip(&mut self, to: SocketAddr) -> bool {
        let mut buf = self.datagram_buf();
        let n = self.piggyback(self.datagram_room(&buf), &mut buf);
        if n > 0 {
            self.finish_datagram(to, n, buf);
        }
        n > 0
    }

    /// Fill `room` bytes from both queues. The Serf queue (intents, user events, queries) may
    /// take half the room first, membership updates the rest, then the Serf queue what is
    /// left: neither kind starves the other (memberlist's user broadcasts starved behind
    /// membership traffic at ~1000 nodes).
    ///
    /// Serf-layer updates are sent at least as often as with a retransmit multiplier of 4
    /// (the LAN default), whatever `retransmit_mult` says: they are rare, and unlike a missed
    /// membership update no probe ever corrects a missed intent, event or query.
    fn piggyback(&mut self, room: usize, body: &mut Vec<u8>) -> usize {
        let limit = self.retransmit_limit();
        let serf_limit = crate::formulas::serf_retransmit_limit(&self.cfg, self.members.live());
        self.datagrams += 1;
        let d = self.datagrams;
        let start = body.len();
        let mut n = self.serf_queue.fill(room / 2, serf_limit, d, body);
        n += self.queue.fill(room - (body.len() - start), limit, d, body);
        n += self
            .serf_queue
            .fill(room - (body.len() - start), serf_limit, d, body);
        n
    }

    /// Queue a Serf-layer update (intent, user event, query) for dissemination.
    pub(crate) fn serf_enqueue(&mut self, key: SerfKey, msg: &Message) {
        let before = self.serf_queue.drops();
        self.serf_queue
            .push_with(key, |out| wire::encode_into(msg, out));
        self.stats.broadcast_drops += self.serf_queue.drops() - before;
        let depth = self.serf_queue.len();
        if depth > self.cfg.queue_depth_warning && !self.depth_warned {
            self.depth_warned = true;
            self.push_event(Event::QueueDepthWarning { depth });
        } else if depth <= self.cfg.queue_depth_warning / 2 {
            self.depth_warned = false;
        }
    }

    /// Complete a datagram from [`Node::datagram_buf`] holding `count` messages: the count
    /// and the header go right before the messages, and the datagram starts where they do
    /// (the unused front bytes are skipped, not copied over).
    fn finish_datagram(&mut self, to: SocketAddr, count: usize, mut buf: Vec<u8>) {
        let messages = self.datagram_front();
        let (count, len) = wire::encode_count(count);
        let header_at = messages - len - self.header.len();
        buf[messages - len..messages].copy_from_slice(&count[..len]);
        buf[header_at..header_at + self.header.len()].copy_from_slice(&self.header);
        let mut payload = Bytes::from(buf);
        payload.advance(header_at);
        self.stats.packets_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        self.push_transmit(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload,
        });
    }

    pub(crate) fn send_reliable(&mut self, to: SocketAddr, msg: &Message) {
        let frame = wire::frame_message(&self.header, msg);
        self.send_frame(to, frame);
    }

    /// Send a complete stream frame (see [`wire::frame_message`]).
    pub(crate) fn send_frame(&mut self, to: SocketAddr, frame: Vec<u8>) {
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
        self.queue
            .push_with(ShortName::new(&key), |out| wire::encode_into(msg, out));
        self.stats.broadcast_drops += self.queue.drops() - before;
    }

    /// Queue an alive message about `key` for dissemination.
    pub(crate) fn enqueue_alive(&mut self, key: Name, a: wire::Alive) {
        let before = self.queue.drops();
        self.queue
            .push_with(ShortName::new(&key), |out| wire::encode_alive_into(&a, out));
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
            name: rec.name.to_name(),
            addr: rec.addr(),
            tags: (**self.members.tags(rec)).clone(),
            ltime: rec.status_ltime,
        })
    }

    /// Queue this node's own alive message.
    pub(crate) fn broadcast_self(&mut self) {
        let msg = self.self_alive();
        self.enqueue(self.me.clone(), &msg);
    }
}
