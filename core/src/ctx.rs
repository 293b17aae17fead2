//! What every protocol part sees: the narrow context [`Cx`] — now, the configuration, this
//! node's name and address, the RNG, the member table and the effects sink — built by the
//! router ([`crate::Node`]) for each call into a part, and the sink itself, [`Effects`]:
//! transmits, events, timers, the two broadcast queues and the counters. Sending (datagrams
//! filled with piggybacked updates, reliable frames) and queueing updates for dissemination
//! live here, once, for every part; the event queue's overflow policy is [`EventQueue`]'s.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Buf, Bytes};
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::dissemination::broadcast_queue::BroadcastQueue;
use crate::event::Event;
use crate::event_queue::EventQueue;
use crate::formulas;
use crate::identity::Name;
use crate::members::short_name::ShortName;
use crate::members::Members;
use crate::node::{SerfKey, Transmit, TransmitKind};
use crate::stats::Stats;
use crate::time::Timestamp;
use crate::timers::Timers;
use crate::wire::{self, Digest, Message};

/// Where the parts' effects go: outputs waiting to be polled, the timer queue, the broadcast
/// queues and the counters.
#[derive(Debug)]
pub(crate) struct Effects {
    pub transmits: VecDeque<Transmit>,
    /// Events waiting for [`crate::Node::poll_event`], under the one overflow policy.
    pub events: EventQueue,
    pub stats: Stats,
    pub timers: Timers,
    /// Membership updates waiting to be piggybacked.
    pub queue: BroadcastQueue<ShortName>,
    /// Intents, user events and queries waiting to be piggybacked (kept apart from membership
    /// updates so that neither starves the other).
    pub serf_queue: BroadcastQueue<SerfKey>,
    /// Whether the depth warning has fired since the Serf queue was last below half of it.
    pub depth_warned: bool,
    /// Datagrams filled so far (tags each fill so no update goes twice into one datagram).
    pub datagrams: u64,
    /// The envelope header every datagram and frame starts with.
    pub header: Vec<u8>,
    /// The keyring, its flags and the nonce source: created the first time this node has a
    /// keyring, kept from then on (see `keyring`). Everything this node sends leaves through
    /// [`Cx::finish_datagram`] or [`Cx::send_frame`], which seal it when sealing is on.
    pub sec: Option<Box<crate::keyring::Security>>,
    /// The rate-limited log of refused input, created at the first refusal.
    pub refusals: Option<Box<crate::keyring::RefusalLog>>,
    /// The HashiCorp profile's state, when the node speaks it ([`crate::WireProfile`]).
    pub hc: Option<Box<wire::hashicorp::Session>>,
}

impl Effects {
    pub(crate) fn new(cfg: &Config, rng: &mut ChaCha8Rng) -> Effects {
        use rand::Rng;
        Effects {
            queue: BroadcastQueue::new(cfg.max_broadcast_queue, rng.random()),
            serf_queue: BroadcastQueue::new(cfg.max_queue_depth, rng.random()),
            transmits: VecDeque::new(),
            events: EventQueue::new(cfg.max_pending_events, cfg.max_inbox),
            stats: Stats::default(),
            timers: Timers::default(),
            depth_warned: false,
            datagrams: 0,
            header: wire::header(cfg.label.as_deref()),
            sec: None,
            refusals: None,
            hc: cfg
                .wire
                .is_hashicorp()
                .then(|| Box::new(wire::hashicorp::Session::new(cfg.wire.has_serf()))),
        }
    }
}

impl Effects {
    /// Bytes sealing adds to each datagram and frame now (0 when not sealing): the native
    /// envelope's nonce and tag, or in the HashiCorp profile memberlist's version byte, nonce
    /// and tag (encryption version 1 has no padding).
    pub(crate) fn seal_overhead(&self) -> usize {
        match self.sec.as_deref() {
            Some(s) if self.hc.is_some() && s.sealing() => wire::hashicorp::SEAL_OVERHEAD,
            Some(s) => s.overhead(),
            None => 0,
        }
    }
}

/// What the Serf layer tells the view digest: when this node last delivered a new user event,
/// and the newest event's Lamport time. Not part of [`Cx`]: the router hands it only to the
/// calls that send or compare a digest (pings, acks, repair), so that building a context for
/// every other call does not copy it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventMark {
    pub changed: Timestamp,
    pub latest: u64,
}

/// The narrow context a protocol part works in (see the module docs).
pub(crate) struct Cx<'a> {
    pub now: Timestamp,
    pub cfg: &'a Config,
    pub me: &'a Name,
    pub addr: &'a SocketAddr,
    pub rng: &'a mut ChaCha8Rng,
    pub members: &'a mut Members,
    pub fx: &'a mut Effects,
    /// Whether the node runs (neither leaving nor gone).
    pub running: bool,
}

impl Cx<'_> {
    /// Queue an event for the application, bypassing coalescing, under the one overflow policy
    /// ([`EventQueue`]); what it drops or coalesces is counted in [`Stats`].
    pub(crate) fn push_event(&mut self, event: Event) {
        let fx = &mut *self.fx;
        // The bounds follow the configuration as it is now.
        fx.events
            .set_bounds(self.cfg.max_pending_events, self.cfg.max_inbox);
        let cost = fx.events.push(event);
        if !cost.is_none() {
            fx.stats.messages_dropped += cost.messages_dropped;
            fx.stats.events_dropped += cost.events_dropped;
            fx.stats.events_coalesced += cost.coalesced;
        }
    }

    /// Queue a transmit for the driver. Overflow policy: at `max_pending_transmits` the oldest
    /// transmit is dropped and counted (`transmits_dropped`); a dropped direct message is also
    /// reported as [`Event::SendFailed`] with [`crate::SendFailure::Overflow`]. (Drivers drain
    /// the queue after every input, so it overflows only when one input makes more transmits
    /// than the bound.)
    fn push_transmit(&mut self, t: Transmit) {
        if self.fx.transmits.len() >= self.cfg.max_pending_transmits {
            let dropped = self.fx.transmits.pop_front();
            self.fx.stats.transmits_dropped += 1;
            if let Some(Transmit {
                to,
                message: Some(message),
                ..
            }) = dropped
            {
                self.message_failed(to, message, crate::SendFailure::Overflow);
            }
        }
        self.fx.transmits.push_back(t);
    }

    /// Report that the direct message `message`, sent to `to`, failed: count it and tell the
    /// application ([`Event::SendFailed`]), naming the member at `to` (or the address itself
    /// when no member is known there any more).
    pub(crate) fn message_failed(
        &mut self,
        to: SocketAddr,
        message: crate::MessageId,
        reason: crate::SendFailure,
    ) {
        let name = match self.members.iter().find(|r| r.addr() == to) {
            Some(r) => r.name.to_name(),
            None => Name::from(to.to_string().as_str()),
        };
        self.fx.stats.messages_failed += 1;
        tracing::debug!(to = %name, %to, %message, %reason, "direct message failed");
        self.push_event(Event::SendFailed {
            to: name,
            message,
            reason,
        });
    }

    /// Send `msgs` in one datagram to `to`, filled up to the MTU with queued updates.
    pub(crate) fn send_datagram(&mut self, to: SocketAddr, msgs: &[Message]) {
        self.send_messages(to, msgs, true);
    }

    /// Send `msgs` in one datagram to `to` with no queued updates beside them: for pings that
    /// many members send to the same few at once (revival checks), where piggybacked updates
    /// would spend their retransmissions on those few and starve everyone else of the news.
    pub(crate) fn send_bare(&mut self, to: SocketAddr, msgs: &[Message]) {
        self.send_messages(to, msgs, false);
    }

    /// [`Cx::send_datagram`], or [`Cx::send_bare`] without `piggyback`.
    fn send_messages(&mut self, to: SocketAddr, msgs: &[Message], piggyback: bool) {
        if self.fx.hc.is_some() {
            let mut buf = Vec::with_capacity(self.cfg.mtu);
            for m in msgs {
                self.hc_records(m, &mut buf);
            }
            if piggyback {
                self.piggyback(self.hc_room(&buf), &mut buf);
            }
            self.hc_finish(to, &buf);
            return;
        }
        let mut buf = self.datagram_buf();
        for m in msgs {
            wire::encode_into(m, &mut buf);
        }
        let extra = if piggyback {
            self.piggyback(self.datagram_room(&buf), &mut buf)
        } else {
            0
        };
        self.finish_datagram(to, msgs.len() + extra, buf);
    }

    /// A datagram being built: room for the envelope header and the longest message count in
    /// front of the messages, which [`Cx::finish_datagram`] fills in place.
    fn datagram_buf(&self) -> Vec<u8> {
        let front = self.datagram_front();
        let mut buf = Vec::with_capacity(front + self.cfg.mtu);
        buf.resize(front, 0);
        buf
    }

    /// Bytes still free for messages in a [`Cx::datagram_buf`] within the MTU (the count is
    /// reckoned at [`wire::COUNT_RESERVE`] bytes; when this node seals, the nonce and tag are
    /// reserved too, so a sealed datagram still fits the MTU).
    fn datagram_room(&self, buf: &[u8]) -> usize {
        let used = self.fx.header.len() + wire::COUNT_RESERVE + buf.len() - self.datagram_front();
        self.cfg.mtu.saturating_sub(used + self.fx.seal_overhead())
    }

    /// Where the messages start in a [`Cx::datagram_buf`].
    fn datagram_front(&self) -> usize {
        self.fx.header.len() + wire::COUNT_MAX_LEN
    }

    /// Send only queued updates to `to`; false when there was nothing to send.
    pub(crate) fn send_gossip(&mut self, to: SocketAddr) -> bool {
        if self.fx.hc.is_some() {
            let mut buf = Vec::with_capacity(self.cfg.mtu);
            let n = self.piggyback(self.hc_room(&buf), &mut buf);
            self.hc_finish(to, &buf);
            return n > 0;
        }
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
    /// membership traffic at ~1000 nodes). Serf-layer updates go out at least as often as
    /// with the LAN retransmit multiplier ([`formulas::serf_retransmit_limit`]).
    fn piggyback(&mut self, room: usize, body: &mut Vec<u8>) -> usize {
        let live = self.members.live();
        let limit = formulas::retransmit_limit(self.cfg, live);
        let serf_limit = formulas::serf_retransmit_limit(self.cfg, live);
        let fx = &mut *self.fx;
        fx.datagrams += 1;
        let d = fx.datagrams;
        let start = body.len();
        let mut n = fx.serf_queue.fill(room / 2, serf_limit, d, body);
        n += fx.queue.fill(room - (body.len() - start), limit, d, body);
        n += fx
            .serf_queue
            .fill(room - (body.len() - start), serf_limit, d, body);
        n
    }

    /// Complete a datagram from [`Cx::datagram_buf`] holding `count` messages: the count
    /// and the header go right before the messages, and the datagram starts where they do
    /// (the unused front bytes are skipped, not copied over).
    fn finish_datagram(&mut self, to: SocketAddr, count: usize, mut buf: Vec<u8>) {
        let messages = self.datagram_front();
        let header = &self.fx.header;
        let (count, len) = wire::encode_count(count);
        let header_at = messages - len - header.len();
        buf[messages - len..messages].copy_from_slice(&count[..len]);
        buf[header_at..header_at + header.len()].copy_from_slice(header);
        let mut payload = Bytes::from(buf);
        payload.advance(header_at);
        if let Some(sec) = self.fx.sec.as_deref_mut() {
            if let Some(sealed) = sec.seal_datagram(&payload, header.len()) {
                payload = sealed.into();
            }
        }
        self.fx.stats.packets_out += 1;
        self.fx.stats.bytes_out += payload.len() as u64;
        self.push_transmit(Transmit {
            to,
            kind: TransmitKind::Datagram,
            payload,
            message: None,
        });
    }

    /// Append `msg` to a HashiCorp datagram being built, as records; a message with no
    /// datagram form there is counted and left out.
    fn hc_records(&mut self, msg: &Message, buf: &mut Vec<u8>) {
        let Some(hc) = self.fx.hc.as_deref() else {
            return;
        };
        let local = hc.local(self.me, *self.addr);
        if let Err(e) = hc.records(msg, &local, buf) {
            self.fx.stats.profile_skipped += 1;
            tracing::debug!(error = %e, "message not sent: no counterpart in the HashiCorp profile");
        }
    }

    /// Bytes still free for records in a HashiCorp datagram holding `buf` (the compound
    /// header reckoned, each record's length field being the compound's part length; when
    /// this node seals, memberlist's encryption overhead too, so a sealed datagram still fits
    /// the MTU).
    fn hc_room(&self, buf: &[u8]) -> usize {
        let used = wire::hashicorp::COMPOUND_HEADER + buf.len();
        self.cfg.mtu.saturating_sub(used + self.fx.seal_overhead())
    }

    /// Send the records in `buf` to `to` as HashiCorp datagrams (none when it is empty),
    /// each sealed whole when this node seals ([`Cx::hc_room`] reserved the room for it).
    fn hc_finish(&mut self, to: SocketAddr, buf: &[u8]) {
        for mut d in wire::hashicorp::datagrams(buf) {
            if let Some(sealed) = self
                .fx
                .sec
                .as_deref_mut()
                .and_then(|s| s.hc_seal_datagram(&d))
            {
                d = sealed;
            }
            self.fx.stats.packets_out += 1;
            self.fx.stats.bytes_out += d.len() as u64;
            self.push_transmit(Transmit {
                to,
                kind: TransmitKind::Datagram,
                payload: d.into(),
                message: None,
            });
        }
    }

    /// `msg` as a HashiCorp stream message to `to`; `None` (counted) when it has no stream
    /// form there.
    fn hc_stream(&mut self, to: SocketAddr, msg: &Message) -> Option<Vec<u8>> {
        let hc = self.fx.hc.as_deref_mut()?;
        let local = hc.local(self.me, *self.addr);
        match hc.stream(msg, &local, to, self.now) {
            Ok(b) => Some(b),
            Err(e) => {
                self.fx.stats.profile_skipped += 1;
                tracing::debug!(%to, error = %e, "stream message not sent: no counterpart in the HashiCorp profile");
                None
            }
        }
    }

    /// Whether a request that arrived from `from` may be answered at `reply_to`: the sender's
    /// own host (the reliable channel's peer, verified by the transport; its port is the
    /// connection's, not the listener's) or a known member's address.
    pub(crate) fn may_reply(&self, from: SocketAddr, reply_to: SocketAddr) -> bool {
        reply_to.ip() == from.ip() || self.members.iter().any(|r| r.addr() == reply_to)
    }

    /// Send one message over the reliable channel.
    pub(crate) fn send_reliable(&mut self, to: SocketAddr, msg: &Message) {
        if self.fx.hc.is_some() {
            if let Some(bytes) = self.hc_stream(to, msg) {
                self.send_frame(to, bytes);
            }
            return;
        }
        let frame = wire::frame_message(&self.fx.header, msg);
        self.send_frame(to, frame);
    }

    /// Send the direct message numbered `message` over the reliable channel (its transmit
    /// carries the number, see [`Transmit::message`]).
    pub(crate) fn send_direct(&mut self, to: SocketAddr, msg: &Message, message: crate::MessageId) {
        if self.fx.hc.is_some() {
            // `WireProfile::Memberlist`: a plain direct message is memberlist's reliable user
            // message. Everything else was refused at the API (`ApiError::NotInProfile`),
            // and a receipt has nothing to answer.
            let Some(bytes) = self.hc_stream(to, msg) else {
                self.message_failed(to, message, crate::SendFailure::NotSendable);
                return;
            };
            self.send_frame_of(to, bytes, Some(message));
            return;
        }
        let frame = wire::frame_message(&self.fx.header, msg);
        self.send_frame_of(to, frame, Some(message));
    }

    /// Send a complete stream frame (see [`wire::frame_message`]).
    pub(crate) fn send_frame(&mut self, to: SocketAddr, frame: Vec<u8>) {
        self.send_frame_of(to, frame, None);
    }

    fn send_frame_of(
        &mut self,
        to: SocketAddr,
        mut frame: Vec<u8>,
        message: Option<crate::MessageId>,
    ) {
        if let Some(sec) = self.fx.sec.as_deref_mut() {
            if self.fx.hc.is_some() {
                // A HashiCorp stream message, sealed as memberlist frames it.
                match sec.hc_seal_stream(&frame) {
                    Some(Ok(sealed)) => frame = sealed,
                    Some(Err(e)) => {
                        self.fx.stats.profile_skipped += 1;
                        tracing::debug!(%to, error = %e, "stream message not sent: too long to seal");
                        if let Some(message) = message {
                            self.message_failed(to, message, crate::SendFailure::NotSendable);
                        }
                        return;
                    }
                    None => {}
                }
            } else if let Some(sealed) = sec.seal_frame(&frame, self.fx.header.len()) {
                frame = sealed;
            }
        }
        self.fx.stats.streams_out += 1;
        self.fx.stats.stream_bytes_out += frame.len() as u64;
        self.push_transmit(Transmit {
            to,
            kind: TransmitKind::Reliable,
            payload: frame.into(),
            message,
        });
    }

    /// Queue an update about `key` for dissemination.
    pub(crate) fn enqueue(&mut self, key: Name, msg: &Message) {
        if self.fx.hc.is_some() {
            let mut rec = Vec::new();
            self.hc_records(msg, &mut rec);
            if !rec.is_empty() {
                let q = &mut self.fx.queue;
                let before = q.drops();
                q.push_with(ShortName::new(&key), |out| out.extend_from_slice(&rec));
                self.fx.stats.broadcast_drops += q.drops() - before;
            }
            return;
        }
        let q = &mut self.fx.queue;
        let before = q.drops();
        q.push_with(ShortName::new(&key), |out| wire::encode_into(msg, out));
        self.fx.stats.broadcast_drops += q.drops() - before;
    }

    /// Queue an alive message about `key` for dissemination.
    pub(crate) fn enqueue_alive(&mut self, key: Name, a: wire::Alive) {
        if self.fx.hc.is_some() {
            self.enqueue(key, &Message::Alive(a));
            return;
        }
        let q = &mut self.fx.queue;
        let before = q.drops();
        q.push_with(ShortName::new(&key), |out| wire::encode_alive_into(&a, out));
        self.fx.stats.broadcast_drops += q.drops() - before;
    }

    /// Queue a Serf-layer update (intent, user event, query) for dissemination; warn once
    /// (until it drains below half) when the queue passes `queue_depth_warning`.
    pub(crate) fn serf_enqueue(&mut self, key: SerfKey, msg: &Message) {
        let mut rec = Vec::new();
        if self.fx.hc.is_some() {
            self.hc_records(msg, &mut rec);
            if rec.is_empty() {
                return;
            }
        }
        let hc = self.fx.hc.is_some();
        let q = &mut self.fx.serf_queue;
        let before = q.drops();
        q.push_with(key, |out| {
            if hc {
                out.extend_from_slice(&rec);
            } else {
                wire::encode_into(msg, out)
            }
        });
        self.fx.stats.broadcast_drops += q.drops() - before;
        let depth = q.len();
        if depth > self.cfg.queue_depth_warning && !self.fx.depth_warned {
            self.fx.depth_warned = true;
            self.push_event(Event::QueueDepthWarning { depth });
        } else if depth <= self.cfg.queue_depth_warning / 2 {
            self.fx.depth_warned = false;
        }
    }

    /// This node's own alive message.
    pub(crate) fn self_alive(&self) -> Message {
        let rec = self
            .members
            .get(self.me)
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

    /// This node's view digest, for a ping or an ack: the live members' hash and count, the
    /// newest user event (`events`, from the Serf layer), and whether the view has stayed
    /// unchanged for a settle window.
    pub(crate) fn view_digest(&self, events: EventMark) -> Digest {
        let changed = self.members.digest_changed().max(events.changed);
        let settled = self.now.saturating_since(changed);
        Digest {
            hash: self.members.digest().to_le_bytes(),
            live: self.members.live() as u32,
            events: events.latest,
            stable: settled >= formulas::settle_window(self.cfg, self.members.live()),
        }
    }
}
