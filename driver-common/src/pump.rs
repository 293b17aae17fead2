//! The runtime-independent heart of every driver: a [`Pump`] owns the [`Node`] and the clock,
//! turns [`Command`]s from handles into core API calls, feeds network input and timer expiry
//! into the core, resolves waiting callers when the matching events come out, and hands events
//! to the application's sink. Drivers only move what [`Pump::poll_transmit`] returns onto
//! sockets and re-arm one timer from [`Pump::deadline`].
//!
//! Adding an operation is one [`Command`] variant, one arm in [`Pump::command`] and one method
//! per handle.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rookery_core::{
    ApiError, Config, ConfigError, Event, EventClass, Identity, InputError, KeyOp, KeyOpId,
    KeyOpResult, Keyring, Member, MessageId, Name, Node, Overflow, QueryHandle, QueryId,
    QueryParams, Stats, StopReason, Tags, Timestamp, Transmit,
};

use crate::delivery::{BroadcastReceipts, Flights, Receipt, Room};
use crate::error::AgentError;
use crate::guard::{KnownPeers, Refusal, RefusalLog};
use crate::watch::MembersFeed;

/// A one-shot answer to a [`Command`], delivered by the pump on the event loop. The handles
/// (both flavors, every driver) wrap a future-aware one-shot channel in it, which the async
/// flavor awaits and the blocking flavor waits on. Dropping it unanswered tells the caller the
/// agent stopped.
pub struct Reply<T>(Box<dyn FnOnce(T) + Send>);

impl<T> Reply<T> {
    /// A reply that calls `f` with the answer.
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Reply<T> {
        Reply(Box::new(f))
    }

    /// Deliver the answer.
    pub fn send(self, value: T) {
        (self.0)(value)
    }
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

/// How [`Command::Shutdown`] stops an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShutdownMode {
    /// Leave the cluster gracefully first (others see the node as left, not failed), then stop.
    Leave,
    /// Stop at once; the others will detect the node as failed.
    Now,
}

/// One operation requested by a handle. Every driver sends these to its event loop, which
/// hands them to [`Pump::command`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Join through these seeds; answered with how many seeds answered once the join
    /// completes (joins run one at a time, in order).
    Join {
        /// Seed addresses.
        seeds: Vec<SocketAddr>,
        /// Skip user events older than the join instead of replaying them
        /// ([`Node::join_with`]).
        ignore_old: bool,
        /// The answer: seeds that answered (at least one), or why not.
        reply: Reply<Result<usize, AgentError>>,
    },
    /// Leave gracefully; answered once the departure has been announced.
    Leave {
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
    /// Replace this node's tags.
    SetTags {
        /// The new tags.
        tags: Tags,
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
    /// Every member this node knows.
    Members {
        /// The answer.
        reply: Reply<Vec<Member>>,
    },
    /// The members alive (status [`rookery_core::MemberStatus::Alive`]), this node included.
    AliveMembers {
        /// The answer.
        reply: Reply<Vec<Member>>,
    },
    /// One member by name, in any status.
    Member {
        /// The member's name.
        name: String,
        /// The answer: `None` when this node does not know it.
        reply: Reply<Option<Member>>,
    },
    /// Forget one member on this node only, until it comes back with a newer life
    /// ([`Node::forget_member`]).
    ForgetMember {
        /// The member's name.
        name: String,
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
    /// The feed of member lists ([`MembersFeed`]), made on the first request: from then on
    /// the pump publishes the member list after every membership change.
    WatchMembers {
        /// The answer.
        reply: Reply<Arc<MembersFeed>>,
    },
    /// This node as the cluster sees it.
    LocalMember {
        /// The answer.
        reply: Reply<Member>,
    },
    /// Core and driver counters.
    Stats {
        /// The answer.
        reply: Reply<AgentStats>,
    },
    /// This node's current keyring, cloned ([`Node::keyring`]; `None` when plaintext).
    Keyring {
        /// The answer.
        reply: Reply<Option<Keyring>>,
    },
    /// Stop the agent (leaving first if asked); answered by the driver once every task has
    /// ended and every socket is closed.
    Shutdown {
        /// Leave first or stop at once.
        mode: ShutdownMode,
        /// The answer, sent after teardown.
        reply: Reply<()>,
    },
    /// Send a user event to every member ([`Node::user_event`]).
    UserEvent {
        /// Event name (not empty).
        name: String,
        /// Event payload.
        payload: Bytes,
        /// Let receivers coalesce events of this name (latest wins).
        coalesce: bool,
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
    /// Ask the cluster ([`Node::query`]). The query's acks, responses and final done go to
    /// `answers` (and, as events, to the event sink too).
    Query {
        /// Query name (not empty).
        name: String,
        /// Query payload.
        payload: Bytes,
        /// Filters, ack request, relay factor, timeout.
        params: QueryParams,
        /// Where this query's answers go; dropped after the done.
        answers: AnswerSink,
        /// The answer: the query's id, or why it was refused (`answers` is then dropped).
        reply: Reply<Result<QueryId, AgentError>>,
    },
    /// Answer a query this node received as [`Event::Query`] ([`Node::respond`]).
    Respond {
        /// The handle from the [`rookery_core::IncomingQuery`].
        handle: QueryHandle,
        /// The answer.
        payload: Bytes,
        /// The answer to the caller.
        reply: Reply<Result<(), AgentError>>,
    },
    /// A direct message to one member ([`Node::send`], or with `acked` [`Node::send_acked`]).
    Send {
        /// The member's name.
        to: String,
        /// The message.
        payload: Bytes,
        /// Ask the peer's core for a receipt.
        acked: bool,
        /// The room the message holds until it is written (see [`crate::delivery`]).
        room: Room,
        /// The answer: the receipt that will tell the message's outcome.
        reply: Reply<Result<Receipt, AgentError>>,
    },
    /// A direct message to every live member ([`Node::broadcast`]).
    Broadcast {
        /// The message.
        payload: Bytes,
        /// The room the first message holds (the others take none: see [`crate::delivery`]).
        room: Room,
        /// The answer: every member it went to, with its message's receipt.
        reply: Reply<Result<BroadcastReceipts, AgentError>>,
    },
    /// Turn a failed member into a left one, or forget it at once with `prune`
    /// ([`Node::remove_failed`]).
    RemoveFailed {
        /// The failed member.
        name: String,
        /// Forget it at once instead of keeping it as left.
        prune: bool,
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
    /// A cluster-wide key operation ([`Node::install_key`], [`Node::use_key`],
    /// [`Node::remove_key`], [`Node::list_keys`]); answered with its result once every member
    /// answered or its deadline passed.
    KeyOp {
        /// Which operation.
        op: KeyOp,
        /// The key (ignored by a list).
        key: Vec<u8>,
        /// The answer.
        reply: Reply<Result<KeyOpResult, AgentError>>,
    },
    /// Replace this node's keyring and set its rolling-adoption flags ([`Node::set_keyring`],
    /// [`Node::set_gossip_verify`]).
    SetKeyring {
        /// The new keyring (`None`: plaintext).
        keyring: Option<Keyring>,
        /// `gossip_verify_incoming`.
        incoming: bool,
        /// `gossip_verify_outgoing`.
        outgoing: bool,
        /// The answer.
        reply: Reply<Result<(), AgentError>>,
    },
}

/// One answer to a query asked through a handle, in arrival order; [`QueryAnswer::Done`] is
/// the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    /// A member acknowledged the query (only with [`QueryParams::request_ack`]).
    Ack {
        /// Who acknowledged.
        from: Name,
    },
    /// A member answered.
    Response {
        /// Who answered.
        from: Name,
        /// The answer.
        payload: Bytes,
    },
    /// The query ended (every selected member answered, or the timeout passed); the answer
    /// channel closes after it. It always arrives, however full the channel is.
    Done {
        /// Acks received.
        acks: usize,
        /// Responses received.
        responses: usize,
        /// Acks and responses that did not fit the caller's channel
        /// ([`crate::Options::query_capacity`]) and were dropped (also counted in
        /// [`DriverStats::query_answers_dropped`]); 0 when the caller got every answer.
        dropped: usize,
    },
}

/// What became of one [`QueryAnswer`] handed to an [`AnswerSink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the caller.
    Delivered,
    /// The caller's channel is full: this answer is dropped (and counted).
    Full,
    /// The caller dropped its receiver: the pump forgets the query's channel.
    Closed,
}

/// The pump's side of one query's answer channel. The handles wrap a bounded channel's
/// non-blocking send in it, so a slow or vanished caller never blocks the node.
pub struct AnswerSink(Box<dyn FnMut(QueryAnswer) -> Delivery + Send>);

impl AnswerSink {
    /// A sink that hands each answer to `f` (which must not block).
    pub fn new(f: impl FnMut(QueryAnswer) -> Delivery + Send + 'static) -> AnswerSink {
        AnswerSink(Box::new(f))
    }

    /// Hand over one answer.
    pub fn deliver(&mut self, answer: QueryAnswer) -> Delivery {
        (self.0)(answer)
    }
}

impl fmt::Debug for AnswerSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswerSink")
    }
}

/// Counters kept by a driver (the core keeps its own in [`Stats`]). Shared between the event
/// loop and the driver's helper tasks, hence atomic.
#[derive(Debug, Default)]
pub struct DriverCounters {
    /// See [`DriverStats::events_dropped`].
    pub events_dropped: AtomicU64,
    /// See [`DriverStats::messages_dropped`].
    pub messages_dropped: AtomicU64,
    /// See [`DriverStats::events_coalesced`].
    pub events_coalesced: AtomicU64,
    /// See [`DriverStats::bad_connections`].
    pub bad_connections: AtomicU64,
    /// See [`DriverStats::connections_accepted`].
    pub connections_accepted: AtomicU64,
    /// See [`DriverStats::connections_refused`].
    pub connections_refused: AtomicU64,
    /// See [`DriverStats::connections_opened`].
    pub connections_opened: AtomicU64,
    /// See [`DriverStats::connections_idle_closed`].
    pub connections_idle_closed: AtomicU64,
    /// See [`DriverStats::send_queue_full`].
    pub send_queue_full: AtomicU64,
    /// See [`DriverStats::datagram_send_errors`].
    pub datagram_send_errors: AtomicU64,
    /// See [`DriverStats::io_errors`].
    pub io_errors: AtomicU64,
    /// See [`DriverStats::query_answers_dropped`].
    pub query_answers_dropped: AtomicU64,
    /// See [`DriverStats::evicted_idle_inbound`].
    pub evicted_idle_inbound: AtomicU64,
    /// See [`DriverStats::evicted_idle_outbound`].
    pub evicted_idle_outbound: AtomicU64,
    /// Refusals by cause, in [`Refusal::ALL`] order (see [`DriverCounters::refuse`]).
    pub refused: [AtomicU64; Refusal::ALL.len()],
    log: Mutex<RefusalLog>,
}

impl DriverCounters {
    /// Add one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count what the event stream's overflow policy discarded for one event.
    pub fn lost(&self, cost: Overflow) {
        if cost.is_none() {
            return;
        }
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(
            &self.events_dropped,
            cost.messages_dropped + cost.events_dropped,
        );
        add(&self.messages_dropped, cost.messages_dropped);
        add(&self.events_coalesced, cost.coalesced);
    }

    /// Count a refusal by its cause and log it at warn, at most once per
    /// [`crate::guard::LOG_EVERY`] per cause (with the number not logged since).
    pub fn refuse(&self, cause: Refusal, peer: SocketAddr) {
        DriverCounters::bump(&self.refused[cause.index()]);
        if matches!(cause, Refusal::InboundTotal | Refusal::InboundPerSource) {
            DriverCounters::bump(&self.connections_refused);
        }
        let log = self
            .log
            .lock()
            .map(|mut l| l.should_log(cause, Instant::now()));
        if let Ok(Some(skipped)) = log {
            tracing::warn!(%peer, cause = ?cause, not_logged_since = skipped, "{}", cause.describe());
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> DriverStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let r = |cause: Refusal| g(&self.refused[cause.index()]);
        DriverStats {
            events_dropped: g(&self.events_dropped),
            messages_dropped: g(&self.messages_dropped),
            events_coalesced: g(&self.events_coalesced),
            bad_connections: g(&self.bad_connections),
            connections_accepted: g(&self.connections_accepted),
            connections_refused: g(&self.connections_refused),
            connections_opened: g(&self.connections_opened),
            connections_idle_closed: g(&self.connections_idle_closed),
            send_queue_full: g(&self.send_queue_full),
            datagram_send_errors: g(&self.datagram_send_errors),
            io_errors: g(&self.io_errors),
            query_answers_dropped: g(&self.query_answers_dropped),
            refused_inbound_total: r(Refusal::InboundTotal),
            refused_inbound_per_source: r(Refusal::InboundPerSource),
            refused_outbound: r(Refusal::Outbound),
            frame_deadline_closed: r(Refusal::FrameDeadline),
            frames_too_large: r(Refusal::FrameTooLarge),
            refused_in_flight: r(Refusal::InFlight),
            refused_inbound_budget: r(Refusal::InboundBudget),
            evicted_idle_inbound: g(&self.evicted_idle_inbound),
            evicted_idle_outbound: g(&self.evicted_idle_outbound),
        }
    }
}

/// A snapshot of a driver's own counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DriverStats {
    /// Events not delivered because the application's event stream was full (or dropped),
    /// under the one overflow policy ([`rookery_core::EventQueue`]): direct messages first,
    /// then other droppable events, never membership events nor [`Event::Stopped`]. Each loss
    /// is also reported in the stream by [`Event::Lagged`].
    pub events_dropped: u64,
    /// The direct messages ([`Event::Message`]) among [`DriverStats::events_dropped`].
    pub messages_dropped: u64,
    /// Membership events the full event stream replaced by a newer one about the same member
    /// (not dropped: the application still gets each member's latest event; also reported by
    /// [`Event::Lagged`]).
    pub events_coalesced: u64,
    /// Inbound TCP connections closed for carrying garbage: a frame longer than
    /// `max_stream_message` (also counted in [`DriverStats::frames_too_large`]), or a frame
    /// the core could not decode.
    pub bad_connections: u64,
    /// Inbound TCP connections accepted.
    pub connections_accepted: u64,
    /// Inbound TCP connections closed at once by a cap: the sum of
    /// [`DriverStats::refused_inbound_total`] and [`DriverStats::refused_inbound_per_source`].
    pub connections_refused: u64,
    /// Outbound TCP connections established.
    pub connections_opened: u64,
    /// TCP connections (either direction) closed for being idle.
    pub connections_idle_closed: u64,
    /// Reliable messages failed at once because their destination's queue was full.
    pub send_queue_full: u64,
    /// Datagrams the socket refused to send.
    pub datagram_send_errors: u64,
    /// Other socket errors (receive, accept) that the driver survived.
    pub io_errors: u64,
    /// Query answers not delivered because the query's answer channel was full.
    pub query_answers_dropped: u64,
    /// Inbound connections refused because [`crate::Options::max_inbound`] were open, none of
    /// them idle ([`Refusal::InboundTotal`]).
    pub refused_inbound_total: u64,
    /// Inbound connections refused because [`crate::Options::max_inbound_per_source`] from the
    /// same IP were open, none of them idle ([`Refusal::InboundPerSource`]).
    pub refused_inbound_per_source: u64,
    /// Reliable messages failed (and reported to the core) because
    /// [`crate::Options::max_outbound`] connections were busy ([`Refusal::Outbound`]).
    pub refused_outbound: u64,
    /// Inbound connections closed because a frame was not complete within `tcp_timeout` of
    /// its first byte ([`Refusal::FrameDeadline`]).
    pub frame_deadline_closed: u64,
    /// Inbound frames refused before allocation for declaring a length above
    /// `max_stream_message` ([`Refusal::FrameTooLarge`]).
    pub frames_too_large: u64,
    /// Inbound frames dropped because [`crate::Options::max_inbound_in_flight`] frames were
    /// waiting for the node past the frame's deadline ([`Refusal::InFlight`]).
    pub refused_in_flight: u64,
    /// Inbound connections holding a partial frame closed to keep buffered inbound bytes
    /// within [`crate::Options::max_inbound_buffered`] ([`Refusal::InboundBudget`]).
    pub refused_inbound_budget: u64,
    /// Idle inbound connections closed to make room for a new one at a cap (not refusals: the
    /// peer reconnects when it next has something to send).
    pub evicted_idle_inbound: u64,
    /// Idle outbound connections closed to make room for a new destination at
    /// [`crate::Options::max_outbound`].
    pub evicted_idle_outbound: u64,
}

/// Everything [`Command::Stats`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStats {
    /// The core's traffic and drop counters (decode errors of garbage datagrams and frames
    /// included).
    pub core: Stats,
    /// The driver's connection and delivery counters.
    pub driver: DriverStats,
    /// Lifeguard local health score (0 is healthy).
    pub health_score: u32,
    /// Members with status alive, this node included.
    pub alive: usize,
    /// Members known in any status.
    pub members: usize,
    /// Direct messages sent through the handles whose outcome is not known yet (written,
    /// acknowledged or failed; see [`crate::delivery`]).
    pub messages_in_flight: usize,
}

/// The application's side of the event stream: queues the event without waiting and returns
/// what the overflow policy ([`rookery_core::EventQueue`]) discarded to make room (everything,
/// once the application dropped its stream); the pump counts it in [`DriverStats`].
pub type EventSink = Box<dyn FnMut(Event) -> Overflow + Send>;

type JoinReply = Reply<Result<usize, AgentError>>;

/// A join waiting its turn: seeds, `ignore_old`, the caller.
type QueuedJoin = (Vec<SocketAddr>, bool, JoinReply);

/// The node plus the bookkeeping every driver needs. See the module docs.
pub struct Pump {
    node: Node,
    start: Instant,
    sink: EventSink,
    counters: Arc<DriverCounters>,
    join_active: Option<JoinReply>,
    join_queue: VecDeque<QueuedJoin>,
    /// Each query asked through a handle: its answer sink and the answers dropped so far.
    queries: HashMap<QueryId, (AnswerSink, usize)>,
    key_ops: HashMap<KeyOpId, Reply<Result<KeyOpResult, AgentError>>>,
    leave_waiters: Vec<Reply<Result<(), AgentError>>>,
    shutdown_waiters: Vec<Reply<()>>,
    /// Leave callers whose leave completed, answered after teardown (so that `leave` returns
    /// once the agent has stopped).
    left_waiters: Vec<Reply<Result<(), AgentError>>>,
    stop: bool,
    /// Why the application stopped the agent, when the node itself did not go inert first.
    stopped_by: Option<StopReason>,
    /// Every handle is gone (see [`Pump::handles_gone`]).
    handles_gone: bool,
    /// The member-list feed, once a handle asked for it.
    members_feed: Option<Arc<MembersFeed>>,
    /// Where the keyring is kept, if anywhere.
    keyring_file: Option<std::path::PathBuf>,
    /// The keyring version last written there.
    keyring_saved: u64,
    refusals: RefusalWarnings,
    /// Direct messages between their send and their outcome.
    flights: Flights,
    /// The members' IP addresses, for the inbound admission rule ([`Pump::known_peers`]).
    known: Arc<KnownPeers>,
    /// The final event went out and the stream ended ([`Pump::end_stream`]).
    stream_ended: bool,
}

/// Warnings about refused input (wrong key, wrong label, plaintext where encryption is
/// required...): at most one line per cause per second, with the count of refusals not logged
/// since. Every refusal is counted in the core's stats whether logged or not.
#[derive(Debug, Default)]
struct RefusalWarnings {
    last: HashMap<&'static str, (Instant, u64)>,
}

impl RefusalWarnings {
    fn note(&mut self, from: SocketAddr, e: &InputError) {
        let cause = match e {
            InputError::NoKeyOpens => "no key of the keyring opens it",
            InputError::LabelMismatch => "another cluster label",
            InputError::PlaintextRefused => "plaintext while encryption is required",
            InputError::SealedWithoutKeyring => "encrypted while no keyring is configured",
            InputError::SealedTruncated => "truncated sealed message",
            _ => return,
        };
        let now = Instant::now();
        if let Some((at, suppressed)) = self.last.get_mut(cause) {
            if now.duration_since(*at) < Duration::from_secs(1) {
                *suppressed += 1;
                return;
            }
        }
        let suppressed = self.last.insert(cause, (now, 0)).map_or(0, |(_, n)| n);
        tracing::warn!(%from, cause, suppressed, "refused a message");
    }
}

impl fmt::Debug for Pump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pump")
            .field("node", &self.node.local_member().name)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl Pump {
    /// Create the node (its identity must carry the address it is reachable at) with its clock
    /// starting now.
    pub fn new(
        config: Config,
        identity: Identity,
        seed: u64,
        sink: EventSink,
        counters: Arc<DriverCounters>,
    ) -> Result<Pump, ConfigError> {
        let start = Instant::now();
        // Nonces come from OS randomness, never from the seed (which a user may fix). Without
        // it a keyring is refused by the core (a typed error), never silently seeded.
        let mut entropy = [0u8; 32];
        let node = match getrandom::fill(&mut entropy) {
            Ok(()) => Node::with_entropy(config, identity, seed, entropy, Timestamp::ZERO)?,
            Err(_) => Node::new(config, identity, seed, Timestamp::ZERO)?,
        };
        Ok(Pump {
            node,
            start,
            sink,
            counters,
            join_active: None,
            join_queue: VecDeque::new(),
            queries: HashMap::new(),
            key_ops: HashMap::new(),
            leave_waiters: Vec::new(),
            shutdown_waiters: Vec::new(),
            left_waiters: Vec::new(),
            stop: false,
            stopped_by: None,
            handles_gone: false,
            members_feed: None,
            keyring_file: None,
            keyring_saved: 0,
            refusals: RefusalWarnings::default(),
            known: Arc::default(),
            flights: Flights::default(),
            stream_ended: false,
        })
    }

    /// Keep the node's keyring in the keyring file at `path` (Serf's format): written now when
    /// the node has a keyring, and after every change of it from then on.
    pub fn set_keyring_file(&mut self, path: std::path::PathBuf) {
        self.keyring_file = Some(path);
        self.keyring_saved = u64::MAX;
        self.save_keyring();
    }

    /// Write the keyring file if the node's keyring changed since it was last written.
    fn save_keyring(&mut self) {
        let version = self.node.keyring_version();
        if version == self.keyring_saved {
            return;
        }
        let (Some(path), Some(ring)) = (&self.keyring_file, self.node.keyring()) else {
            return;
        };
        match crate::keyring_file::save_keyring(path, ring) {
            Ok(()) => {
                self.keyring_saved = version;
                tracing::info!(path = %path.display(), keys = ring.len(), "keyring file written");
            }
            Err(e) => {
                // Tried again after the next input.
                tracing::warn!(error = %e, "cannot write the keyring file");
            }
        }
    }

    /// Wall time as the core's [`Timestamp`]: microseconds since the pump started.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The instant of a core timestamp.
    pub fn instant_of(&self, t: Timestamp) -> Instant {
        self.start + Duration::from_micros(t.as_micros())
    }

    /// When the driver must call [`Pump::timer`] next; `None` once the node has left.
    pub fn deadline(&self) -> Option<Instant> {
        self.node.poll_timeout().map(|t| self.instant_of(t))
    }

    /// The node, for read-only queries.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The driver counters shared with the driver's tasks.
    pub fn counters(&self) -> &Arc<DriverCounters> {
        &self.counters
    }

    /// True once a shutdown is due: the driver should send what is left, stop its tasks, close
    /// its sockets and then call [`Pump::finish`].
    pub fn should_stop(&self) -> bool {
        self.stop
    }

    /// The next transmit to put on the wire. Drain after every call into the pump.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.node.poll_transmit()
    }

    /// One datagram arrived. Garbage is counted by the core and changes nothing.
    pub fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        let now = self.now();
        if let Err(e) = self.node.handle_packet(now, from, data) {
            self.refusals.note(from, &e);
            tracing::debug!(%from, error = %e, "datagram ignored");
        }
        self.process_events();
    }

    /// One complete reliable message (frame body) arrived on a connection from `from`.
    /// Returns false when it was garbage: the driver should close that connection (and count
    /// it in [`DriverStats::bad_connections`]).
    pub fn frame(&mut self, from: SocketAddr, body: &[u8]) -> bool {
        self.stream_in(from, body, false)
    }

    /// [`Pump::frame`] for a message read on a connection this driver opened to send `from`
    /// a message (HashiCorp profiles: the peer's answer; see
    /// [`rookery_core::Node::handle_stream_answer`]).
    pub fn answer_frame(&mut self, from: SocketAddr, body: &[u8]) -> bool {
        self.stream_in(from, body, true)
    }

    fn stream_in(&mut self, from: SocketAddr, body: &[u8], answer: bool) -> bool {
        let now = self.now();
        let handled = if answer {
            self.node.handle_stream_answer(now, from, body)
        } else {
            self.node.handle_stream(now, from, body)
        };
        let ok = match handled {
            Ok(()) => true,
            Err(InputError::Decode(e)) => {
                tracing::debug!(%from, error = %e, "undecodable stream message");
                false
            }
            Err(InputError::NotRunning) => true,
            Err(e @ InputError::LabelMismatch) => {
                self.refusals.note(from, &e);
                true
            }
            // Refused by the keyring or the label: counted by the core; the connection is
            // closed, as for garbage.
            Err(e) => {
                self.refusals.note(from, &e);
                false
            }
        };
        self.process_events();
        ok
    }

    /// A reliable transmit to `to` could not be delivered; `message` is the direct message it
    /// carried ([`rookery_core::Transmit::message`]), whose caller learns it failed.
    pub fn send_failure(&mut self, to: SocketAddr, message: Option<MessageId>) {
        let now = self.now();
        self.node.handle_send_failure(now, to, message);
        self.process_events();
    }

    /// The reliable transmit carrying the direct message `message` was written whole to the
    /// peer's connection: its caller learns it was delivered ([`crate::Delivered::Written`]).
    pub fn message_written(&mut self, message: MessageId) {
        self.flights.written(message);
    }

    /// The deadline from [`Pump::deadline`] has passed (calling early is harmless).
    pub fn timer(&mut self) {
        let now = self.now();
        self.node.handle_timeout(now);
        self.process_events();
    }

    /// Carry out one command from a handle.
    pub fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Join {
                seeds,
                ignore_old,
                reply,
            } => {
                self.join_queue.push_back((seeds, ignore_old, reply));
                self.start_next_join();
            }
            Command::Leave { reply } => {
                if self.node.has_left() {
                    reply.send(Ok(()));
                } else {
                    // Err(NotRunning) here means a leave is already under way: wait for it.
                    let _ = self.node.leave(now);
                    self.leave_waiters.push(reply);
                }
            }
            Command::SetTags { tags, reply } => {
                reply.send(self.node.set_tags(now, tags).map_err(AgentError::from));
            }
            Command::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            } => reply.send(
                self.node
                    .user_event(now, &name, payload, coalesce)
                    .map_err(AgentError::from),
            ),
            Command::Query {
                name,
                payload,
                params,
                answers,
                reply,
            } => match self.node.query(now, &name, payload, params) {
                Ok(id) => {
                    self.queries.insert(id, (answers, 0));
                    reply.send(Ok(id));
                }
                Err(e) => reply.send(Err(e.into())),
            },
            Command::Respond {
                handle,
                payload,
                reply,
            } => reply.send(
                self.node
                    .respond(now, &handle, payload)
                    .map_err(AgentError::from),
            ),
            Command::Send {
                to,
                payload,
                acked,
                room,
                reply,
            } => {
                let sent = if acked {
                    self.node.send_acked(now, &to, payload)
                } else {
                    self.node.send(now, &to, payload)
                };
                // Followed before the node's events are drained: a message to itself has its
                // outcome among them already.
                reply.send(match sent {
                    Ok(id) => Ok(self.flights.start(id, room, acked)),
                    Err(e) => Err(e.into()),
                });
            }
            Command::Broadcast {
                payload,
                room,
                reply,
            } => match self.node.broadcast(now, payload) {
                Ok(went) => {
                    let mut room = Some(room);
                    let receipts = went
                        .into_iter()
                        .map(|(name, id)| {
                            let r = self.flights.start(id, room.take().flatten(), false);
                            (name, r)
                        })
                        .collect();
                    reply.send(Ok(receipts));
                }
                Err(e) => reply.send(Err(e.into())),
            },
            Command::RemoveFailed { name, prune, reply } => reply.send(
                self.node
                    .remove_failed(now, &name, prune)
                    .map_err(AgentError::from),
            ),
            Command::KeyOp { op, key, reply } => {
                let r = match op {
                    KeyOp::Install => self.node.install_key(now, &key),
                    KeyOp::Use => self.node.use_key(now, &key),
                    KeyOp::Remove => self.node.remove_key(now, &key),
                    KeyOp::List => self.node.list_keys(now),
                };
                match r {
                    Ok(id) => {
                        self.key_ops.insert(id, reply);
                    }
                    Err(e) => reply.send(Err(e.into())),
                }
            }
            Command::SetKeyring {
                keyring,
                incoming,
                outgoing,
                reply,
            } => {
                let r = self
                    .node
                    .set_keyring(keyring)
                    .and_then(|()| self.node.set_gossip_verify(incoming, outgoing));
                reply.send(r.map_err(AgentError::from));
            }
            Command::Members { reply } => reply.send(self.node.members()),
            Command::AliveMembers { reply } => {
                let mut all = self.node.members();
                all.retain(|m| m.status == rookery_core::MemberStatus::Alive);
                reply.send(all)
            }
            Command::Member { name, reply } => reply.send(self.node.member(&name)),
            Command::WatchMembers { reply } => {
                let node = &self.node;
                let feed = self
                    .members_feed
                    .get_or_insert_with(|| MembersFeed::new(node.members()));
                if Arc::strong_count(feed) == 1 {
                    // Nobody watched since the last publish: the list may be stale.
                    feed.publish(node.members());
                }
                reply.send(feed.clone())
            }
            Command::ForgetMember { name, reply } => {
                let r = self.node.forget_member(now, &name);
                if r.is_ok() {
                    tracing::info!(member = %name, "member forgotten until it comes back");
                }
                // Its event and the new member list go out before the caller returns.
                self.process_events();
                reply.send(r.map_err(AgentError::from))
            }
            Command::LocalMember { reply } => reply.send(self.node.local_member()),
            Command::Stats { reply } => reply.send(self.stats()),
            Command::Keyring { reply } => reply.send(self.node.keyring().cloned()),
            Command::Shutdown { mode, reply } => {
                self.shutdown_waiters.push(reply);
                match mode {
                    ShutdownMode::Now => {
                        self.stop = true;
                        self.stopped_by.get_or_insert(StopReason::Shutdown);
                    }
                    ShutdownMode::Leave if self.node.has_left() => self.stop = true,
                    ShutdownMode::Leave => {
                        let _ = self.node.leave(now);
                    }
                }
            }
        }
        self.process_events();
    }

    /// Core and driver counters.
    pub fn stats(&self) -> AgentStats {
        AgentStats {
            core: self.node.stats().clone(),
            driver: self.counters.snapshot(),
            health_score: self.node.health_score(),
            alive: self.node.alive_count(),
            members: self.node.num_members(),
            messages_in_flight: self.flights.len(),
        }
    }

    /// Every handle is gone: leave gracefully (the node's departure is gossiped, then the
    /// agent stops) unless it has already left. Calling it again is harmless.
    pub fn handles_gone(&mut self) {
        if self.handles_gone {
            return;
        }
        self.handles_gone = true;
        tracing::info!(name = %self.node.local_member().name, "every handle dropped: leaving, then stopping");
        if self.node.has_left() {
            self.stop = true;
        } else {
            // Err(NotRunning): a leave is already under way; its completion stops the agent.
            let _ = self.node.leave(self.now());
        }
        self.process_events();
    }

    /// Why the agent stops: the node's own reason once it went inert (it left, or lost its
    /// name), else the application's shutdown.
    pub fn stop_reason(&self) -> StopReason {
        self.node
            .stop_reason()
            .or(self.stopped_by)
            .unwrap_or(StopReason::Shutdown)
    }

    /// Teardown is complete: put the final [`Event::Stopped`] on the event stream (which
    /// ends after it), then answer every shutdown and leave caller. Callers still waiting for
    /// other operations learn that the agent stopped.
    pub fn finish(mut self) {
        self.end_stream();
        let Pump {
            shutdown_waiters,
            left_waiters,
            ..
        } = self;
        for w in left_waiters {
            w.send(Ok(()));
        }
        for w in shutdown_waiters {
            w.send(());
        }
    }

    /// Put the final [`Event::Stopped`] on the event stream and end it, and end the
    /// member-list feed. [`crate::finish`] calls it before the handles can see the agent
    /// stopped, so that once `is_stopped()` is true the stream has ended; later calls (and
    /// [`Pump::finish`]) do nothing more.
    pub fn end_stream(&mut self) {
        if self.stream_ended {
            return;
        }
        self.stream_ended = true;
        let reason = self.stop_reason();
        if let Some(feed) = self.members_feed.take() {
            feed.close();
        }
        tracing::info!(name = %self.node.local_member().name, %reason, "agent stopped");
        let mut sink: EventSink =
            std::mem::replace(&mut self.sink, Box::new(|_| Overflow::default()));
        self.counters.lost(sink(Event::Stopped { reason }));
        drop(sink);
    }

    fn start_next_join(&mut self) {
        while self.join_active.is_none() {
            let Some((seeds, ignore_old, reply)) = self.join_queue.pop_front() else {
                return;
            };
            let now = self.now();
            match self.node.join_with(now, &seeds, ignore_old) {
                Ok(()) => self.join_active = Some(reply),
                Err(e) => reply.send(Err(AgentError::Rejected(e))),
            }
        }
    }

    /// The IP addresses of the members this node knows, kept up to date from its events: the
    /// driver's accept path passes [`KnownPeers::contains`] to
    /// [`crate::guard::InboundTable::admit`] so that members come before strangers.
    pub fn known_peers(&self) -> Arc<KnownPeers> {
        self.known.clone()
    }

    /// Hand every core event to the sink, then answer the callers it completes (in that
    /// order, so a caller that returns from `join`/`leave` finds the event already queued).
    fn process_events(&mut self) {
        if self.keyring_file.is_some() {
            self.save_keyring();
        }
        let mut members_changed = false;
        while let Some(event) = self.node.poll_event() {
            // A message's outcome goes to its receipt when someone waits there.
            let Some(event) = self.flights.claim(event) else {
                continue;
            };
            members_changed |= matches!(event.class(), EventClass::Membership(_))
                || matches!(event, Event::LeaveCompleted);
            self.known.note(&event);
            let done = match &event {
                Event::JoinCompleted {
                    answered,
                    contacted,
                } => Some(Done::Join {
                    answered: *answered,
                    contacted: *contacted,
                }),
                Event::LeaveCompleted => Some(Done::Leave),
                Event::QueryAck { query, from } => {
                    self.answer(*query, QueryAnswer::Ack { from: from.clone() });
                    None
                }
                Event::QueryResponse {
                    query,
                    from,
                    payload,
                } => {
                    self.answer(
                        *query,
                        QueryAnswer::Response {
                            from: from.clone(),
                            payload: payload.clone(),
                        },
                    );
                    None
                }
                Event::QueryDone {
                    query,
                    acks,
                    responses,
                } => {
                    self.answer(
                        *query,
                        QueryAnswer::Done {
                            acks: *acks,
                            responses: *responses,
                            dropped: 0,
                        },
                    );
                    // The channel closes: the caller's stream ends after the done.
                    self.queries.remove(query);
                    None
                }
                Event::KeyOp(r) => {
                    if let Some(reply) = self.key_ops.remove(&r.id) {
                        reply.send(Ok(r.clone()));
                    }
                    None
                }
                _ => None,
            };
            let cost = (self.sink)(event);
            self.counters.lost(cost);
            match done {
                Some(Done::Join {
                    answered,
                    contacted,
                }) => {
                    if let Some(reply) = self.join_active.take() {
                        reply.send(if answered > 0 {
                            Ok(answered)
                        } else {
                            Err(AgentError::NobodyReached { contacted })
                        });
                    }
                    self.start_next_join();
                }
                Some(Done::Leave) => {
                    // The node is inert (it left, or lost its name): the agent stops, and the
                    // leave callers are answered once it has.
                    self.left_waiters.append(&mut self.leave_waiters);
                    self.stop = true;
                    // A join still running, or queued behind the leave, can no longer finish.
                    if let Some(reply) = self.join_active.take() {
                        reply.send(Err(AgentError::Rejected(ApiError::NotRunning)));
                    }
                    self.start_next_join();
                }
                None => {}
            }
        }
        if members_changed {
            // Only while someone watches: the list is cloned once per call, not per event.
            if let Some(feed) = self
                .members_feed
                .as_ref()
                .filter(|f| Arc::strong_count(f) > 1)
            {
                feed.publish(self.node.members());
            }
        }
    }
}

impl Pump {
    /// Route one answer to the channel of the query it belongs to (if asked through a handle
    /// whose receiver is still alive).
    fn answer(&mut self, query: QueryId, answer: QueryAnswer) {
        let Some((sink, dropped)) = self.queries.get_mut(&query) else {
            return;
        };
        let answer = match answer {
            QueryAnswer::Done {
                acks, responses, ..
            } => QueryAnswer::Done {
                acks,
                responses,
                dropped: *dropped,
            },
            a => a,
        };
        match sink.deliver(answer) {
            Delivery::Delivered => {}
            Delivery::Full => {
                *dropped += 1;
                DriverCounters::bump(&self.counters.query_answers_dropped);
            }
            Delivery::Closed => {
                self.queries.remove(&query);
            }
        }
    }
}

/// A completion the pump must answer callers for.
enum Done {
    Join { answered: usize, contacted: usize },
    Leave,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pump(name: &str, port: u16) -> (Pump, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let sink: EventSink = Box::new(move |e| {
            let _ = tx.send(e);
            Overflow::default()
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let p = Pump::new(
            Config::local(),
            Identity::new(name, addr),
            1,
            sink,
            Arc::default(),
        )
        .unwrap();
        (p, rx)
    }

    fn answer<T: Send + 'static>() -> (Reply<T>, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel();
        (
            Reply::new(move |v| {
                let _ = tx.send(v);
            }),
            rx,
        )
    }

    #[test]
    fn joins_run_one_at_a_time_and_fail_when_nobody_answers() {
        let (mut p, events) = pump("a", 9001);
        let seed = SocketAddr::from(([127, 0, 0, 1], 9002));
        let (r1, a1) = answer();
        let (r2, a2) = answer();
        p.command(Command::Join {
            seeds: vec![seed],
            ignore_old: false,
            reply: r1,
        });
        p.command(Command::Join {
            seeds: vec![seed],
            ignore_old: true,
            reply: r2,
        });
        let reliable: Vec<_> = std::iter::from_fn(|| p.poll_transmit())
            .filter(|t| t.kind == rookery_core::TransmitKind::Reliable)
            .collect();
        assert_eq!(reliable.len(), 1, "the second join waits for the first");
        p.send_failure(seed, None);
        assert_eq!(
            a1.try_recv().unwrap(),
            Err(AgentError::NobodyReached { contacted: 1 })
        );
        // The event reached the sink before the caller was answered.
        assert!(events
            .try_iter()
            .any(|e| matches!(e, Event::JoinCompleted { answered: 0, .. })));
        assert!(a2.try_recv().is_err(), "second join now running");
        p.send_failure(seed, None);
        assert!(matches!(
            a2.try_recv().unwrap(),
            Err(AgentError::NobodyReached { .. })
        ));
        let (r3, a3) = answer();
        p.command(Command::Join {
            seeds: vec![SocketAddr::from(([127, 0, 0, 1], 9001))],
            ignore_old: false,
            reply: r3,
        });
        assert_eq!(
            a3.try_recv().unwrap(),
            Err(AgentError::Rejected(ApiError::NoSeeds))
        );
    }

    #[test]
    fn leave_alone_completes_and_shutdown_waits_for_finish() {
        let (mut p, events) = pump("solo", 9003);
        let (r, left) = answer();
        p.command(Command::Leave { reply: r });
        assert!(p.node().has_left());
        assert!(p.deadline().is_none());
        assert!(p.should_stop(), "a node that left stops");
        assert!(left.try_recv().is_err(), "answered once the agent stopped");
        let (r, a) = answer();
        p.command(Command::Leave { reply: r });
        assert_eq!(a.try_recv().unwrap(), Ok(()), "leaving twice is harmless");
        let (r, a) = answer();
        p.command(Command::Shutdown {
            mode: ShutdownMode::Leave,
            reply: r,
        });
        assert!(a.try_recv().is_err(), "answered only after teardown");
        assert_eq!(p.stop_reason(), StopReason::Left);
        p.finish();
        assert_eq!(a.try_recv(), Ok(()));
        assert_eq!(left.try_recv(), Ok(Ok(())));
        let all: Vec<Event> = events.try_iter().collect();
        assert_eq!(
            all.last(),
            Some(&Event::Stopped {
                reason: StopReason::Left
            })
        );
        assert!(matches!(
            events.try_recv(),
            Err(mpsc::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn handles_gone_leaves_once() {
        let (mut p, _events) = pump("solo", 9006);
        p.handles_gone();
        assert!(p.node().has_left(), "left gracefully");
        assert!(p.should_stop());
        p.handles_gone(); // harmless
        assert_eq!(p.stop_reason(), StopReason::Left);
    }

    #[test]
    fn the_done_says_how_many_answers_the_caller_lost() {
        let (mut p, events) = pump("solo", 9007);
        let (tx, rx) = mpsc::channel();
        // A caller whose channel is full for every answer but the done.
        let answers = AnswerSink::new(move |a| match a {
            QueryAnswer::Done { .. } => {
                let _ = tx.send(a);
                Delivery::Delivered
            }
            _ => Delivery::Full,
        });
        let (r, id) = answer();
        p.command(Command::Query {
            name: "q".into(),
            payload: Bytes::new(),
            params: QueryParams::default(),
            answers,
            reply: r,
        });
        assert!(id.try_recv().unwrap().is_ok());
        let Ok(Event::Query(q)) = events.try_recv() else {
            panic!("the asker is selected too");
        };
        let (r, _) = answer();
        p.command(Command::Respond {
            handle: q.handle.clone(),
            payload: Bytes::from_static(b"me"),
            reply: r,
        });
        assert_eq!(
            rx.try_recv(),
            Ok(QueryAnswer::Done {
                acks: 0,
                responses: 1,
                dropped: 1
            })
        );
        assert_eq!(p.stats().driver.query_answers_dropped, 1);
    }

    #[test]
    fn query_answers_route_to_their_channel_and_end_with_done() {
        let (mut p, _events) = pump("solo", 9005);
        let (tx, rx) = mpsc::sync_channel(8);
        let answers = AnswerSink::new(move |a| match tx.try_send(a) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::TrySendError::Full(_)) => Delivery::Full,
            Err(mpsc::TrySendError::Disconnected(_)) => Delivery::Closed,
        });
        let (r, id) = answer();
        p.command(Command::Query {
            name: "q".into(),
            payload: Bytes::new(),
            params: QueryParams::default(),
            answers,
            reply: r,
        });
        assert!(id.try_recv().unwrap().is_ok());
        let mut seen = Vec::new();
        while let Ok(Event::Query(q)) = _events.try_recv() {
            seen.push(q);
        }
        assert_eq!(seen.len(), 1, "the asker is selected too");
        let (r, done) = answer();
        p.command(Command::Respond {
            handle: seen[0].handle.clone(),
            payload: Bytes::from_static(b"me"),
            reply: r,
        });
        assert_eq!(done.try_recv().unwrap(), Ok(()));
        let got: Vec<_> = rx.try_iter().collect();
        assert!(matches!(&got[0], QueryAnswer::Response { payload, .. } if &payload[..] == b"me"));
        assert_eq!(
            got.last(),
            Some(&QueryAnswer::Done {
                acks: 0,
                responses: 1,
                dropped: 0
            })
        );
        assert!(
            matches!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected)),
            "the channel closes after the done"
        );
        // A dropped receiver never blocks: the query still runs and its channel is forgotten.
        let (r, _id) = answer();
        p.command(Command::Query {
            name: "q2".into(),
            payload: Bytes::new(),
            params: QueryParams::default(),
            answers: AnswerSink::new(|_| Delivery::Closed),
            reply: r,
        });
        assert!(p.queries.len() <= 1);
    }

    #[test]
    fn full_sink_drops_and_counts() {
        let sink: EventSink = Box::new(|_| Overflow {
            messages_dropped: 0,
            events_dropped: 1,
            coalesced: 0,
        });
        let counters = Arc::new(DriverCounters::default());
        let addr = SocketAddr::from(([127, 0, 0, 1], 9004));
        let mut p = Pump::new(
            Config::local(),
            Identity::new("x", addr),
            1,
            sink,
            counters.clone(),
        )
        .unwrap();
        let (r, _a) = answer();
        p.command(Command::Leave { reply: r });
        assert_eq!(p.stats().driver.events_dropped, 1);
        assert_eq!(p.stats().driver.messages_dropped, 0);
    }
}
