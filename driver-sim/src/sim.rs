//! The simulation engine: nodes, virtual time, the action heap, message routing under the
//! network model, node faults, and the hooks invariants and recorders hang on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rookery_core::{
    ApiError, Config, ConfigError, Event, Identity, Input, MemberStatus, MessageId, Name, Node,
    Timestamp, Transmit, TransmitKind,
};

use crate::clock::{Clock, EXACT};
use crate::invariant::{Checks, Context, Invariant, Output, Violation};
use crate::ledger::{FaultKind, Ledger, Scope};
use crate::metrics::Metrics;
use crate::net::{
    Applied, Latency, Leg, LinkEffect, NetConfig, NetStats, NodeSet, ReliableModel, Rule, RuleId,
    Rules, TcpFate, TcpPath, SEGMENT_OVERHEAD,
};
use crate::plot::Knowledge;

mod window;
pub use window::WindowStats;
use window::{Gate, Window};

/// Why a simulation call failed.
#[derive(Clone, Debug, PartialEq)]
pub enum SimError {
    /// A node index beyond the nodes added so far.
    NoSuchNode {
        /// The index asked for.
        index: usize,
        /// How many nodes exist.
        len: usize,
    },
    /// A node's configuration or identity was rejected by the core.
    Config(ConfigError),
    /// An API call on a node was refused by the core.
    Api {
        /// The node.
        node: usize,
        /// The core's error.
        error: ApiError,
    },
    /// A wait ran out of time before its condition held.
    Timeout {
        /// How long it waited (virtual time).
        waited: Duration,
    },
    /// An invariant was violated.
    Violation(Violation),
    /// A script or replay file could not be read or parsed.
    Script(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoSuchNode { index, len } => {
                write!(f, "no node {index} (the simulation has {len})")
            }
            SimError::Config(e) => write!(f, "node configuration rejected: {e}"),
            SimError::Api { node, error } => write!(f, "node {node} refused the call: {error}"),
            SimError::Timeout { waited } => {
                write!(
                    f,
                    "condition did not hold within {waited:?} of virtual time"
                )
            }
            SimError::Violation(v) => write!(f, "{v}"),
            SimError::Script(s) => write!(f, "bad script: {s}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<Violation> for SimError {
    fn from(v: Violation) -> SimError {
        SimError::Violation(v)
    }
}

/// A node's life-cycle state in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Running (possibly overloaded, drifting or cut off).
    Up,
    /// Crashed: receives nothing, sends nothing, until restarted.
    Crashed,
    /// Paused: arriving messages wait in a backlog, timers wait, until resumed.
    Paused,
    /// Left the cluster (or is leaving): inert until restarted.
    Left,
}

/// An input on its way to a simulated node: what the action heap and a window's work hold.
#[derive(Debug)]
pub(crate) struct Arrival {
    input: Input,
    /// For a failed send's report: the life of the node that made the send (a restarted node
    /// ignores its predecessor's). Unused otherwise.
    life: u32,
    /// A delivery already delayed once by the receiver's overload, or replayed from its
    /// backlog: it is not delayed again.
    late: bool,
}

impl Arrival {
    /// A delivery or a call, on time.
    pub(crate) fn new(input: Input) -> Arrival {
        Arrival {
            input,
            life: 0,
            late: false,
        }
    }

    /// The node's timer.
    pub(crate) fn timer() -> Arrival {
        Arrival::new(Input::Timeout)
    }

    /// The report that a reliable send to `to` (carrying direct message `message`, if any),
    /// made in the node's life `life`, failed.
    fn send_failed(to: SocketAddr, message: Option<MessageId>, life: u32) -> Arrival {
        Arrival {
            input: Input::SendFailed { to, message },
            life,
            late: false,
        }
    }

    /// The input, as the node is handed it.
    pub(crate) fn input(&self) -> &Input {
        &self.input
    }
}

/// What a node handled ([`Took::Handled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    Timer,
    Datagram,
    Stream,
    SendFailure,
    Call,
}

impl What {
    /// Whether the input's (time, node) goes into the trace hash (a failed send's report and a
    /// call are traced otherwise, or not at all).
    pub(crate) fn traced(self) -> bool {
        matches!(self, What::Timer | What::Datagram | What::Stream)
    }
}

/// What a simulated node did with an input ([`SimNode::take`]).
#[derive(Debug)]
pub(crate) enum Took {
    /// The node handled it: its outputs wait in its poll queues.
    Handled(What),
    /// Not for the node as it is now (a timer no longer armed, a report for an earlier life,
    /// anything but a delivery for a crashed node, a call for a paused one): ignored.
    Stale,
    /// Dropped: the node is crashed or cut off.
    Blocked,
    /// Waits in the paused node's backlog.
    Backlogged,
    /// Dropped: the paused node's backlog holds its limit of datagrams.
    BacklogFull,
    /// Not handled yet: the overloaded node takes the delivery late, by a delay uniform in
    /// `0 ..= max` that the caller draws before it schedules `arrival` (marked late) again.
    Deferred {
        /// The delivery, marked late.
        arrival: Arrival,
        /// The node's overload.
        max: Duration,
    },
}

/// A scheduled call on a node's API.
pub(crate) type NodeCall = Box<dyn FnOnce(&mut Node, Timestamp)>;

enum Action {
    /// An input for `node`: a delivery, a failed send's report, its timer.
    Input {
        node: usize,
        arrival: Arrival,
    },
    Step(Box<crate::script::Step>),
    Call {
        node: usize,
        f: NodeCall,
    },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Input { node, arrival } => write!(f, "Input({:?} to {node})", arrival.input),
            Action::Step(s) => write!(f, "Step({s:?})"),
            Action::Call { node, .. } => write!(f, "Call({node})"),
        }
    }
}

/// One simulated process.
pub(crate) struct SimNode {
    pub(crate) node: Node,
    pub(crate) addr: SocketAddr,
    pub(crate) identity: Identity,
    pub(crate) config: Arc<Config>,
    pub(crate) crashed: bool,
    pub(crate) isolated: bool,
    pub(crate) paused: bool,
    /// What arrived while paused, in order.
    backlog: Vec<Input>,
    backlog_datagrams: usize,
    /// Extra delay (uniform in 0 ..= this) on every input and timer while overloaded.
    pub(crate) overload: Option<Duration>,
    pub(crate) clock: Option<Clock>,
    /// Deadline (virtual time) the pending timer action is for.
    armed: Option<Timestamp>,
    /// When that timer action fires (later than `armed` when overloaded).
    fire_at: Timestamp,
    tcp_timeout: Duration,
    /// Starts at 0; +1 on every restart.
    pub(crate) life: u32,
    /// When the current life started.
    pub(crate) started: Timestamp,
}

impl SimNode {
    pub(crate) fn state(&self) -> NodeState {
        if self.crashed {
            NodeState::Crashed
        } else if self.paused {
            NodeState::Paused
        } else if self.node.has_left() || self.is_leaving() {
            NodeState::Left
        } else {
            NodeState::Up
        }
    }

    fn is_leaving(&self) -> bool {
        self.node
            .member(&self.identity.name)
            .is_some_and(|m| m.status == MemberStatus::Left)
    }

    pub(crate) fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// The node's clock reading at virtual time `at`.
    pub(crate) fn local(&self, at: Timestamp) -> Timestamp {
        self.clock.as_ref().map_or(at, |c| c.local(at))
    }

    /// Hand the node `arrival` at virtual time `at`, and count what came of it in `stats`: the
    /// rules both engines ([`Sim::step`] and the parallel windows) follow, in one place. A
    /// crashed or cut-off node loses deliveries; a paused one keeps them in its backlog (at most
    /// `backlog_limit` datagrams; reliable messages always wait, as TCP holds them) and its
    /// failed sends' reports too; an overloaded one defers a delivery once; a stale timer or a
    /// report for an earlier life is ignored; everything else goes to [`Node::handle`] at the
    /// node's clock reading.
    pub(crate) fn take(
        &mut self,
        at: Timestamp,
        arrival: Arrival,
        backlog_limit: usize,
        stats: &mut NetStats,
    ) -> Took {
        let what = match &arrival.input {
            Input::Timeout => {
                if self.crashed || self.paused || self.armed.is_none() || self.fire_at != at {
                    return Took::Stale;
                }
                self.armed = None;
                What::Timer
            }
            Input::Datagram { .. } | Input::Stream { .. } => {
                let datagram = matches!(arrival.input, Input::Datagram { .. });
                if self.crashed || self.isolated {
                    stats.blocked += 1;
                    return Took::Blocked;
                }
                if self.paused {
                    if datagram {
                        if self.backlog_datagrams >= backlog_limit {
                            stats.backlog_dropped += 1;
                            return Took::BacklogFull;
                        }
                        self.backlog_datagrams += 1;
                    }
                    self.backlog.push(arrival.input);
                    return Took::Backlogged;
                }
                if let (Some(max), false) = (self.overload, arrival.late) {
                    let arrival = Arrival {
                        late: true,
                        ..arrival
                    };
                    return Took::Deferred { arrival, max };
                }
                if datagram {
                    stats.delivered += 1;
                    What::Datagram
                } else {
                    stats.reliable_delivered += 1;
                    What::Stream
                }
            }
            Input::SendFailed { .. } => {
                if self.crashed || self.life != arrival.life {
                    return Took::Stale;
                }
                if self.paused {
                    self.backlog.push(arrival.input);
                    return Took::Backlogged;
                }
                stats.reliable_failed += 1;
                What::SendFailure
            }
            Input::Call(_) => {
                if self.crashed || self.paused {
                    return Took::Stale;
                }
                What::Call
            }
        };
        let local = self.local(at);
        // A refusal (undecodable input, a node that left) is counted by the node itself.
        let _ = self.node.handle(local, arrival.input);
        Took::Handled(what)
    }

    /// Re-arm the node's timer after an input at virtual time `now`: when its deadline
    /// changed, the time (virtual, later by `delay(max)` while overloaded by up to `max`)
    /// the new timer fires, to be scheduled.
    pub(crate) fn rearm(
        &mut self,
        now: Timestamp,
        delay: impl FnOnce(Duration) -> Duration,
    ) -> Option<Timestamp> {
        let next = self.node.poll_timeout().map(|at| {
            match &self.clock {
                Some(c) => c.sim_time(at),
                None => at,
            }
            .max(now)
        });
        if next == self.armed {
            return None;
        }
        self.armed = next;
        let at = next?;
        self.fire_at = match self.overload {
            Some(max) => at + delay(max),
            None => at,
        };
        Some(self.fire_at)
    }
}

/// The simulated processes. Each is boxed so that a window can lend it to a worker thread and
/// take it back ([`window`]); between windows every node is in place, and indexing a lent one
/// panics.
#[derive(Default)]
pub(crate) struct Nodes(Vec<Option<Box<SimNode>>>);

impl Nodes {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, n: SimNode) {
        self.0.push(Some(Box::new(n)));
    }

    /// Lend node `i` out.
    fn lend(&mut self, i: usize) -> Box<SimNode> {
        self.0[i].take().expect("node lent twice")
    }

    /// Take node `i` back.
    fn restore(&mut self, i: usize, n: Box<SimNode>) {
        debug_assert!(self.0[i].is_none());
        self.0[i] = Some(n);
    }
}

impl std::ops::Index<usize> for Nodes {
    type Output = SimNode;
    fn index(&self, i: usize) -> &SimNode {
        self.0[i].as_deref().expect("node in place")
    }
}

impl std::ops::IndexMut<usize> for Nodes {
    fn index_mut(&mut self, i: usize) -> &mut SimNode {
        self.0[i].as_deref_mut().expect("node in place")
    }
}

/// The nonce entropy a simulated node gets: derived from its seed (a restart draws a new
/// seed, so a new value), never from the simulation's RNG, so adding it changed no trace and
/// runs stay reproducible. A real driver hands in OS randomness instead.
pub fn entropy_for(seed: u64) -> [u8; 32] {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ 0x6e6f_6e63_6573_2121);
    rng.random()
}

/// The run trace's hash: FNV-1a's multiply-xor step applied to 8-byte words (the tail byte by
/// byte). Stable across platforms and runs; not for adversarial input.
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes(w.try_into().expect("8-byte chunk"));
            self.0 = (self.0 ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29);
        }
        for b in words.remainder() {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Datagrams a paused node's receive buffer holds before it drops more (reliable messages
/// always wait: TCP holds them).
pub const DEFAULT_BACKLOG_LIMIT: usize = 4096;

/// Tags of isolation windows in the ledger (rule ids count up from 1).
pub(crate) const ISOLATION_TAG: u64 = 1 << 62;

/// How long after a query reaches a node it answers, when the simulator answers queries
/// ([`Sim::set_answer_queries`]).
pub const ANSWER_DELAY: Duration = Duration::from_millis(5);

/// The answer node `name` gives to a query with `payload` when the simulator answers
/// queries: `name:payload` (so a checker can tell who answered what).
pub fn answer_payload(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1 + payload.len());
    v.extend_from_slice(name.as_bytes());
    v.push(b':');
    v.extend_from_slice(payload);
    v
}

/// Whether an observer's view of a member is right once the cluster has converged: a live
/// member alive, a crashed or departed one failed, left or not known at all.
pub(crate) fn view_ok(live: bool, seen: Option<MemberStatus>) -> bool {
    if live {
        seen == Some(MemberStatus::Alive)
    } else {
        matches!(
            seen,
            None | Some(MemberStatus::Failed) | Some(MemberStatus::Left)
        )
    }
}

/// A simulated cluster: nodes, a network, virtual time. See the crate docs.
pub struct Sim {
    now: Timestamp,
    rng: ChaCha8Rng,
    net: NetConfig,
    rules: Rules,
    next_rule: u64,
    pub(crate) nodes: Nodes,
    names: HashMap<Name, usize>,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    actions: Vec<Option<Action>>,
    free: Vec<usize>,
    seq: u64,
    trace: Fnv,
    events: Vec<(Timestamp, usize, Event)>,
    record_events: bool,
    stats: NetStats,
    pub(crate) ledger: Ledger,
    checks: Option<Box<Checks>>,
    knowledge: Option<Box<Knowledge>>,
    metrics: Metrics,
    backlog_limit: usize,
    poll: Duration,
    api_errors: u64,
    /// Recorded inputs, when the tap is on ([`Sim::set_tap`]).
    tap: Option<Vec<TapEntry>>,
    /// Latest delivery time of a reliable message per (from, to): a connection delivers in
    /// order, like TCP.
    last_reliable: HashMap<(usize, usize), Timestamp>,
    /// Addresses nodes moved to ([`Sim::restart_moved`]), beyond [`node_addr`]'s scheme.
    moved: HashMap<SocketAddr, usize>,
    /// The config the last node was added with: nodes with the same config share it (half a
    /// kilobyte a node).
    last_config: Option<Arc<Config>>,
    /// Threads [`Sim::run_until`] may use (1: step by step on the calling thread).
    threads: usize,
    /// The worker threads, when there are several.
    workers: Option<window::Workers>,
    /// What the parallel windows did and where their time went.
    windows: WindowStats,
    /// Buffers the windows reuse.
    spare: window::Spare,
    /// Scripted steps applied so far (a step can change any node: a crash, a restart).
    steps_applied: u64,
    /// Nodes overloaded now (windows need none).
    overloaded: usize,
    /// The shortest TCP timeout of any node (a failed reliable send is reported this long
    /// after it was made).
    min_tcp_timeout: Duration,
    /// Whether nodes answer the queries that select them ([`Sim::set_answer_queries`]).
    answer_queries: bool,
}

/// A recorded input ([`Sim::set_tap`]): when (the node's own clock), to which node, what —
/// enough to replay a node's life outside the simulator with [`Node::handle`] (the fuzz corpus
/// generator does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapEntry {
    /// The timestamp the node was handed.
    pub at: Timestamp,
    /// Index of the node that received it.
    pub node: usize,
    /// The input, as the node was handed it (a reliable message's frame body, say).
    pub input: Input,
}

/// One-way latency on a link: the link rules' latency (or the network's `base`) plus their
/// delay, drawn from `rng`.
fn one_way(rng: &mut ChaCha8Rng, base: &Latency, link: Option<&Applied>) -> Duration {
    match link {
        None => base.sample(rng),
        Some(l) => {
            let lat = match &l.latency {
                Some(lat) => lat.sample(rng),
                None => base.sample(rng),
            };
            lat + l.delay
        }
    }
}

/// One reliable message's path under [`ReliableModel::Tcp`]: the link's losses (the network's
/// and the rules', drawn one after the other as for a datagram) and latencies, the SYN-ACK on
/// the reverse link.
struct SimPath<'a> {
    rng: &'a mut ChaCha8Rng,
    net: &'a NetConfig,
    /// Rules on sender → receiver (`None`: no rules in force).
    fwd: Option<&'a Applied>,
    /// Rules on receiver → sender.
    back: Option<&'a Applied>,
}

impl<'a> SimPath<'a> {
    fn link(&self, leg: Leg) -> Option<&'a Applied> {
        match leg {
            Leg::SynAck => self.back,
            Leg::Syn | Leg::Data => self.fwd,
        }
    }
}

impl TcpPath for SimPath<'_> {
    fn lost(&mut self, leg: Leg) -> bool {
        let link_loss = self.link(leg).map_or(0.0, |l| l.loss);
        (self.net.loss > 0.0 && self.rng.random_bool(self.net.loss.min(1.0)))
            || (link_loss > 0.0 && self.rng.random_bool(link_loss.min(1.0)))
    }

    fn latency(&mut self, leg: Leg) -> Duration {
        let link = self.link(leg);
        one_way(self.rng, &self.net.latency, link)
    }
}

/// An extra delay uniform in `0 ..= max` (whole microseconds), drawn from `rng`.
fn extra_delay(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    Duration::from_micros(rng.random_range(0..=max.as_micros() as u64))
}

/// The address of node `i`: 127.a.b.c:7946 with a.b.c = i + 1.
pub fn node_addr(i: usize) -> SocketAddr {
    let n = (i + 1) as u32;
    let ip = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 7946))
}

/// The node index of a simulated address (the inverse of [`node_addr`]).
pub fn node_index(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == 7946 => {
            let o = v4.ip().octets();
            let n = (o[1] as usize) << 16 | (o[2] as usize) << 8 | o[3] as usize;
            (o[0] == 127 && n > 0).then(|| n - 1)
        }
        _ => None,
    }
}

impl Sim {
    /// An empty simulation at time zero.
    pub fn new(seed: u64, net: NetConfig) -> Sim {
        let mut trace = Fnv(0xcbf2_9ce4_8422_2325);
        seed.hash(&mut trace);
        let mut ledger = Ledger::default();
        if net.loss > 0.0 {
            ledger.open(Scope::All, FaultKind::Loss, 0, Timestamp::ZERO);
        }
        ledger.record_loss(Timestamp::ZERO, net.loss);
        Sim {
            now: Timestamp::ZERO,
            rng: ChaCha8Rng::seed_from_u64(seed),
            net,
            rules: Rules::default(),
            next_rule: 0,
            nodes: Nodes::default(),
            names: HashMap::new(),
            queue: BinaryHeap::new(),
            actions: Vec::new(),
            free: Vec::new(),
            seq: 0,
            trace,
            events: Vec::new(),
            record_events: true,
            stats: NetStats::default(),
            ledger,
            checks: None,
            knowledge: None,
            metrics: Metrics::default(),
            backlog_limit: DEFAULT_BACKLOG_LIMIT,
            poll: Duration::from_millis(10),
            api_errors: 0,
            tap: None,
            last_reliable: HashMap::new(),
            moved: HashMap::new(),
            last_config: None,
            threads: 1,
            workers: None,
            windows: WindowStats::default(),
            spare: window::Spare::default(),
            steps_applied: 0,
            overloaded: 0,
            min_tcp_timeout: Duration::MAX,
            answer_queries: false,
        }
    }

    /// Let [`Sim::run_until`] (and so [`Sim::run_for`], [`Sim::wait_for`] and formation)
    /// spread the nodes' work over `threads` threads: the calling thread and `threads − 1`
    /// workers (1, the default: everything on the calling thread). The run is the same byte
    /// for byte whatever the number — same trace hash, events and counters — because the
    /// threads only compute what each node does within a window shorter than the network's
    /// shortest latency, and everything shared is applied afterwards in the sequential order.
    /// Windows are skipped (the run steps sequentially) while invariants or the tap are on, a
    /// node is overloaded, or the latency floor is zero. Idle workers spin for up to 2 ms
    /// between windows: use no more threads than free cores.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
        self.workers = (self.threads > 1).then(|| window::Workers::start(self.threads - 1));
    }

    /// Threads [`Sim::run_until`] may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Record every input handed to a node (off by default); read with [`Sim::drain_tap`].
    /// API calls are not recorded; what waited in a paused node's backlog is recorded when the
    /// node takes it, on resuming.
    pub fn set_tap(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// Inputs recorded since the last call, in the order the nodes received them.
    pub fn drain_tap(&mut self) -> Vec<TapEntry> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn record(&mut self, node: usize, at: Timestamp, input: Input) {
        if let Some(tap) = &mut self.tap {
            tap.push(TapEntry { at, node, input });
        }
    }

    /// Keep events for [`Sim::drain_events`] (default) or only hash them (and show them to
    /// invariants and the knowledge recorder).
    pub fn set_record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// What the parallel windows did so far, and the wall time they took (all zero on one
    /// thread).
    pub fn window_stats(&self) -> &WindowStats {
        &self.windows
    }

    /// Whether events are kept for [`Sim::drain_events`].
    pub fn records_events(&self) -> bool {
        self.record_events
    }

    /// How often [`Sim::wait_for`] checks its condition, in virtual time. Default 10 ms.
    pub fn set_poll_interval(&mut self, every: Duration) {
        self.poll = every.max(Duration::from_micros(1));
    }

    /// How many datagrams a paused node's backlog holds. Default [`DEFAULT_BACKLOG_LIMIT`].
    pub fn set_backlog_limit(&mut self, datagrams: usize) {
        self.backlog_limit = datagrams;
    }

    /// Change the network (latency, loss, duplication, reordering, MTU) from now on.
    pub fn set_net(&mut self, net: NetConfig) {
        if net.loss > 0.0 {
            self.ledger.open(Scope::All, FaultKind::Loss, 0, self.now);
        } else {
            self.ledger.close(Scope::All, FaultKind::Loss, 0, self.now);
        }
        self.ledger.record_loss(self.now, net.loss);
        self.hash_input(b"net", &format!("{net:?}"));
        self.net = net;
    }

    /// Set the datagram loss rate from now on (0.0 ..= 1.0).
    pub fn set_loss(&mut self, loss: f64) {
        let net = NetConfig {
            loss: loss.clamp(0.0, 1.0),
            ..self.net.clone()
        };
        self.set_net(net);
    }

    /// The network settings.
    pub fn net(&self) -> &NetConfig {
        &self.net
    }

    /// Current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Network counters.
    pub fn net_stats(&self) -> &NetStats {
        &self.stats
    }

    /// A hash over every input (deliveries, timer firings, faults, API calls) and every
    /// output (transmits, events) so far, and the seed. Same seed and calls, same hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace.0
    }

    /// Number of nodes ever added.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Start a node named `name` now, at [`node_addr`] of its index. Panics if `config` or
    /// `name` is invalid (a simulation set-up error); [`Sim::try_add_node`] returns the error.
    pub fn add_node(&mut self, config: Config, name: &str) -> usize {
        self.try_add_node(config, Identity::new(name, node_addr(self.nodes.len())))
            .expect("simulation node config must be valid")
    }

    /// Start a node with `identity` now; its address is replaced by [`node_addr`] of its
    /// index (the simulator routes by address).
    pub fn try_add_node(
        &mut self,
        config: Config,
        mut identity: Identity,
    ) -> Result<usize, SimError> {
        let i = self.nodes.len();
        let addr = node_addr(i);
        identity.addr = addr;
        let seed = self.rng.random();
        let tcp_timeout = config.tcp_timeout;
        self.min_tcp_timeout = self.min_tcp_timeout.min(tcp_timeout);
        let config = match &self.last_config {
            Some(c) if **c == config => c.clone(),
            _ => Arc::new(config),
        };
        let node = Node::with_entropy(
            config.clone(),
            identity.clone(),
            seed,
            entropy_for(seed),
            self.now,
        )
        .map_err(SimError::Config)?;
        self.last_config = Some(config.clone());
        self.names.insert(Name::new(&identity.name), i);
        self.nodes.push(SimNode {
            node,
            addr,
            identity,
            config,
            crashed: false,
            isolated: false,
            paused: false,
            backlog: Vec::new(),
            backlog_datagrams: 0,
            overload: None,
            clock: None,
            armed: None,
            fire_at: Timestamp::ZERO,
            tcp_timeout,
            life: 0,
            started: self.now,
        });
        self.after_input(i);
        Ok(i)
    }

    fn check_node(&self, i: usize) -> Result<(), SimError> {
        if i < self.nodes.len() {
            Ok(())
        } else {
            Err(SimError::NoSuchNode {
                index: i,
                len: self.nodes.len(),
            })
        }
    }

    /// The node at index `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// The name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].identity.name
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// Whether node `i` has crashed.
    pub fn is_crashed(&self, i: usize) -> bool {
        self.nodes[i].crashed
    }

    /// Node `i`'s life-cycle state.
    pub fn node_state(&self, i: usize) -> NodeState {
        self.nodes[i].state()
    }

    /// How many times node `i` was restarted.
    pub fn life(&self, i: usize) -> u32 {
        self.nodes[i].life
    }

    /// The fault ledger: when each fault started and ended.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Node `i`'s local clock reading now (virtual time unless its clock drifts).
    pub fn local_now(&self, i: usize) -> Timestamp {
        self.nodes[i].local(self.now)
    }

    /// Node `i` joins through the nodes `seeds`. A refusal by the core (the node has left,
    /// or no seed other than itself) is counted and otherwise ignored; use
    /// [`Sim::try_join`] to see it.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let _ = self.try_join(i, seeds);
    }

    /// Node `i` joins through the nodes `seeds`, reporting a refusal.
    pub fn try_join(&mut self, i: usize, seeds: &[usize]) -> Result<(), SimError> {
        self.check_node(i)?;
        for &s in seeds {
            self.check_node(s)?;
        }
        let addrs: Vec<SocketAddr> = seeds.iter().map(|&s| self.nodes[s].addr).collect();
        self.hash_input(b"join", &(i, seeds));
        let r = self.call(i, |n, now| n.join(now, &addrs));
        r.map_err(|error| {
            self.api_errors += 1;
            SimError::Api { node: i, error }
        })
    }

    /// Node `i` leaves gracefully. A refusal (already left) is counted and ignored.
    pub fn leave(&mut self, i: usize) {
        let _ = self.try_leave(i);
    }

    /// Node `i` leaves gracefully, reporting a refusal.
    pub fn try_leave(&mut self, i: usize) -> Result<(), SimError> {
        self.check_node(i)?;
        self.hash_input(b"leave", &i);
        let r = self.call(i, |n, now| n.leave(now));
        if r.is_ok() {
            self.ledger
                .open(Scope::Node(i), FaultKind::Left, 0, self.now);
        }
        r.map_err(|error| {
            self.api_errors += 1;
            SimError::Api { node: i, error }
        })
    }

    /// API calls refused by the core so far (joins after leaving, and the like).
    pub fn api_errors(&self) -> u64 {
        self.api_errors
    }

    /// Run an API call (or any access) on node `i` at the current time — the node's local
    /// time, which differs from [`Sim::now`] when its clock drifts — then collect what it
    /// sent and emitted. This is how any API call, present or future, is injected. On a
    /// crashed or paused node the call runs (to read its state, say) but what it sends is
    /// dropped.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Timestamp) -> R) -> R {
        self.hash_input(b"call", &i);
        self.call(i, f)
    }

    fn call<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Timestamp) -> R) -> R {
        let now = self.local_now(i);
        let r = f(&mut self.nodes[i].node, now);
        self.after_input(i);
        r
    }

    /// Run `f` on node `i` at virtual time `at` (or now, if `at` has passed). Calls on a
    /// crashed or paused node are skipped.
    pub fn call_at(
        &mut self,
        at: Timestamp,
        i: usize,
        f: impl FnOnce(&mut Node, Timestamp) + 'static,
    ) {
        let at = at.max(self.now);
        self.schedule(
            at,
            Action::Call {
                node: i,
                f: Box::new(f),
            },
        );
    }

    /// Apply `step` at virtual time `at` (or now, if `at` has passed).
    pub fn schedule_step(&mut self, at: Timestamp, step: crate::script::Step) {
        let at = at.max(self.now);
        self.schedule(at, Action::Step(Box::new(step)));
    }

    /// Crash node `i`: from now on nothing reaches it and it sends nothing.
    pub fn crash(&mut self, i: usize) {
        self.hash_input(b"crash", &i);
        let n = &mut self.nodes[i];
        n.crashed = true;
        n.paused = false;
        n.backlog.clear();
        n.backlog_datagrams = 0;
        self.ledger
            .open(Scope::Node(i), FaultKind::Crash, 0, self.now);
    }

    /// Restart node `i` under the same name and address with fresh protocol state (a new
    /// process: a new seed, incarnation 0, an empty member table), then join through `seeds`
    /// (none: it stays alone). A running node is crashed first. Overload ends; its clock
    /// (and drift) carries on.
    pub fn restart(&mut self, i: usize, seeds: &[usize]) -> Result<(), SimError> {
        self.check_node(i)?;
        for &s in seeds {
            self.check_node(s)?;
        }
        if !self.nodes[i].crashed {
            self.crash(i);
        }
        self.hash_input(b"restart", &(i, seeds));
        let seed: u64 = self.rng.random();
        let local = self.local_now(i);
        let now = self.now;
        let n = &mut self.nodes[i];
        let node = Node::with_entropy(
            n.config.clone(),
            n.identity.clone(),
            seed,
            entropy_for(seed),
            local,
        )
        .map_err(SimError::Config)?;
        n.node = node;
        n.crashed = false;
        n.paused = false;
        n.backlog.clear();
        n.backlog_datagrams = 0;
        if n.overload.take().is_some() {
            self.overloaded -= 1;
        }
        n.armed = None;
        n.life += 1;
        n.started = now;
        for kind in [
            FaultKind::Crash,
            FaultKind::Left,
            FaultKind::Pause,
            FaultKind::Overload,
        ] {
            self.ledger.close_kind(Scope::Node(i), kind, now);
        }
        self.after_input(i);
        if !seeds.is_empty() {
            let _ = self.try_join(i, seeds);
        }
        Ok(())
    }

    /// Restart node `i` as [`Sim::restart`] does, under the same name but at a new address (a
    /// container rescheduled with a new IP: here the same host, the next port). Its old address
    /// reaches nobody from then on. Returns the new address.
    pub fn restart_moved(&mut self, i: usize, seeds: &[usize]) -> Result<SocketAddr, SimError> {
        self.check_node(i)?;
        let old = self.nodes[i].addr;
        let port = old.port().checked_add(1).unwrap_or(1);
        let new = SocketAddr::new(old.ip(), port);
        self.hash_input(b"move", &(i, new));
        if !self.nodes[i].crashed {
            self.crash(i);
        }
        self.moved.insert(new, i);
        let n = &mut self.nodes[i];
        n.addr = new;
        n.identity.addr = new;
        self.restart(i, seeds)?;
        Ok(new)
    }

    /// The node reachable at `to` now: the one whose current address it is.
    fn index_at(&self, to: SocketAddr) -> Option<usize> {
        let j = match node_index(to) {
            Some(j) => j,
            None => *self.moved.get(&to)?,
        };
        (j < self.nodes.len() && self.nodes[j].addr == to).then_some(j)
    }

    /// Pause node `i` (a stopped process): arriving messages wait in its backlog (datagrams
    /// beyond the backlog limit are dropped), its timers wait, it sends nothing.
    pub fn pause(&mut self, i: usize) {
        self.hash_input(b"pause", &i);
        let n = &mut self.nodes[i];
        if n.crashed || n.paused {
            return;
        }
        n.paused = true;
        self.ledger
            .open(Scope::Node(i), FaultKind::Pause, 0, self.now);
    }

    /// Resume a paused node: it handles its backlog in arrival order, then every timer that
    /// came due while it was paused.
    pub fn resume(&mut self, i: usize) {
        self.hash_input(b"resume", &i);
        let now = self.now;
        let n = &mut self.nodes[i];
        if !n.paused {
            return;
        }
        n.paused = false;
        let life = n.life;
        let backlog = std::mem::take(&mut n.backlog);
        n.backlog_datagrams = 0;
        let missed_timer = n.armed.is_some() && n.fire_at <= now;
        if missed_timer {
            n.fire_at = now;
        }
        self.ledger.close(Scope::Node(i), FaultKind::Pause, 0, now);
        for input in backlog {
            // Replayed as it arrived, not delayed again; a failed send's report is for the
            // life that made the send, which is this one (a restart empties the backlog).
            let arrival = Arrival {
                input,
                life,
                late: true,
            };
            self.schedule(now, Action::Input { node: i, arrival });
        }
        if missed_timer {
            let arrival = Arrival::timer();
            self.schedule(now, Action::Input { node: i, arrival });
        }
    }

    /// Overload node `i` (`Some(max)`): every message it receives is handled late by an
    /// extra delay uniform in `0 ..= max`, and every timer fires late by such a delay.
    /// `None` ends the overload.
    pub fn set_overload(&mut self, i: usize, max_extra: Option<Duration>) {
        self.hash_input(b"overload", &(i, max_extra));
        let was = self.nodes[i].overload.is_some();
        self.nodes[i].overload = max_extra.filter(|d| !d.is_zero());
        match (was, self.nodes[i].overload.is_some()) {
            (false, true) => self.overloaded += 1,
            (true, false) => self.overloaded -= 1,
            _ => {}
        }
        if self.nodes[i].overload.is_some() {
            self.ledger
                .open(Scope::Node(i), FaultKind::Overload, 0, self.now);
        } else {
            self.ledger
                .close(Scope::Node(i), FaultKind::Overload, 0, self.now);
        }
    }

    /// Make node `i`'s clock run `rate` times as fast as virtual time from now on (1.0: exact;
    /// clamped to 0.01 ..= 100). Its time stays monotonic: a rate change continues from the
    /// current reading.
    pub fn set_clock_rate(&mut self, i: usize, rate: f64) {
        let ppm = if rate.is_finite() {
            (rate.clamp(0.01, 100.0) * EXACT as f64).round() as u64
        } else {
            EXACT
        };
        self.hash_input(b"drift", &(i, ppm));
        let now = self.now;
        match &mut self.nodes[i].clock {
            Some(c) => c.retune(now, ppm),
            None if ppm == EXACT => return,
            None => self.nodes[i].clock = Some(Clock::new(now, ppm)),
        }
        if ppm == EXACT {
            self.ledger.close(Scope::Node(i), FaultKind::Drift, 0, now);
        } else {
            self.ledger.open(Scope::Node(i), FaultKind::Drift, 0, now);
        }
        if !self.nodes[i].crashed {
            // The deadline maps to another virtual time now.
            self.nodes[i].armed = None;
            self.after_input(i);
        }
    }

    /// Node `i`'s clock rate (1.0 unless it drifts).
    pub fn clock_rate(&self, i: usize) -> f64 {
        self.nodes[i]
            .clock
            .map_or(1.0, |c| c.rate_ppm() as f64 / EXACT as f64)
    }

    /// Cut node `i` off the network (`true`) or reconnect it (`false`); unlike a crash its
    /// timers keep running.
    pub fn isolate(&mut self, i: usize, on: bool) {
        self.hash_input(b"isolate", &(i, on));
        self.nodes[i].isolated = on;
        // Every node's link to `i` is cut: any of them may be declared failed by `i`, and
        // `i`'s verdicts spread once it is back.
        if on {
            self.ledger.open(
                Scope::All,
                FaultKind::CutOff,
                ISOLATION_TAG + i as u64,
                self.now,
            );
        } else {
            self.ledger.close(
                Scope::All,
                FaultKind::CutOff,
                ISOLATION_TAG + i as u64,
                self.now,
            );
        }
    }

    fn new_rule_id(&mut self) -> RuleId {
        self.next_rule += 1;
        RuleId(self.next_rule)
    }

    fn add_rule_inner(&mut self, id: RuleId, from: &[usize], to: &[usize], effect: LinkEffect) {
        if effect.degrades() {
            for &i in from.iter().chain(to) {
                self.ledger
                    .open(Scope::Node(i), FaultKind::CutOff, id.0, self.now);
            }
        }
        self.rules.add(Rule {
            id,
            from: NodeSet::from_nodes(from),
            to: NodeSet::from_nodes(to),
            effect,
        });
    }

    /// Split the network into `groups`: no message crosses from one group to another, in
    /// either direction. Nodes in no group reach everyone. Heal with [`Sim::heal`].
    pub fn partition(&mut self, groups: &[&[usize]]) -> RuleId {
        let id = self.new_rule_id();
        self.hash_input(b"partition", &(id.0, groups));
        for (a, g) in groups.iter().enumerate() {
            for (b, h) in groups.iter().enumerate() {
                if a != b {
                    self.add_rule_inner(id, g, h, LinkEffect::cut());
                }
            }
        }
        id
    }

    /// A one-way partition: messages from `from` to `to` are dropped (the other direction
    /// works). Reliable messages need both directions, so they fail either way.
    pub fn cut(&mut self, from: &[usize], to: &[usize]) -> RuleId {
        let id = self.new_rule_id();
        self.hash_input(b"cut", &(id.0, from, to));
        self.add_rule_inner(id, from, to, LinkEffect::cut());
        id
    }

    /// A per-link rule: messages from a node of `from` to a node of `to` get `effect`
    /// (drop, extra loss, extra delay, another latency distribution).
    pub fn add_link_rule(&mut self, from: &[usize], to: &[usize], effect: LinkEffect) -> RuleId {
        let id = self.new_rule_id();
        self.hash_input(b"rule", &(id.0, from, to, format!("{effect:?}")));
        self.add_rule_inner(id, from, to, effect);
        id
    }

    /// Remove the partition, cut or link rule `id`.
    pub fn heal(&mut self, id: RuleId) {
        self.hash_input(b"heal", &id.0);
        let now = self.now;
        for i in self.rules.remove(id) {
            self.ledger
                .close(Scope::Node(i), FaultKind::CutOff, id.0, now);
        }
    }

    /// Remove every partition, cut and link rule, and reconnect isolated nodes.
    pub fn heal_network(&mut self) {
        for id in self.rules.ids() {
            self.heal(id);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].isolated {
                self.isolate(i, false);
            }
        }
    }

    /// Heal everything that can heal: the network (rules, isolation, loss back to 0),
    /// paused nodes resume, overloads end, drifting clocks run exact again. Crashed nodes
    /// stay crashed; nodes that left stay left.
    pub fn heal_all(&mut self) {
        self.heal_network();
        if self.net.loss > 0.0 {
            self.set_loss(0.0);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                self.resume(i);
            }
            if self.nodes[i].overload.is_some() {
                self.set_overload(i, None);
            }
            if self.nodes[i].clock.is_some_and(|c| c.rate_ppm() != EXACT) {
                self.set_clock_rate(i, 1.0);
            }
        }
    }

    /// Events collected since the last call: (time, node index, event).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, (Timestamp, usize, Event)> {
        self.events.drain(..)
    }

    /// Events collected and not yet drained.
    pub fn events(&self) -> &[(Timestamp, usize, Event)] {
        &self.events
    }

    /// Check invariants as the run goes (see [`crate::invariant`]). Violations are kept;
    /// read them with [`Sim::violations`] or [`Sim::check`].
    pub fn add_invariant(&mut self, inv: Box<dyn Invariant>) {
        self.checks.get_or_insert_with(Default::default).add(inv);
    }

    /// Check the standard invariants ([`crate::invariant::standard`]).
    pub fn add_standard_invariants(&mut self) {
        for inv in crate::invariant::standard() {
            self.add_invariant(inv);
        }
    }

    /// Names of the invariants being checked.
    pub fn invariant_names(&self) -> Vec<&'static str> {
        self.checks.as_ref().map_or(Vec::new(), |c| c.names())
    }

    /// Every violation so far (at most 100 are kept).
    pub fn violations(&self) -> &[Violation] {
        self.checks.as_ref().map_or(&[], |c| c.violations())
    }

    /// The first violation, if any.
    pub fn check(&self) -> Result<(), Violation> {
        match self.violations().first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Run every invariant's end-of-run check (after the liveness phase); the first
    /// violation, if any.
    pub fn finish_checks(&mut self) -> Result<(), Violation> {
        if let Some(c) = self.checks.as_mut() {
            let cx = Context::new(self.now, &self.nodes, &self.ledger, &self.names);
            c.at_end(&cx);
        }
        self.check()
    }

    /// Show the invariants an API call node `i` took and what it answered (the scripted
    /// calls of [`crate::script::ApiCall`] report here).
    pub(crate) fn observe_call(
        &mut self,
        i: usize,
        call: &rookery_core::Call,
        result: &Result<rookery_core::Handled, rookery_core::HandleError>,
    ) {
        if let Some(c) = self.checks.as_mut() {
            let cx = Context::new(self.now, &self.nodes, &self.ledger, &self.names);
            c.on_call(&cx, i, call, result);
        }
    }

    /// Let every node answer each query that selects it ([`Event::Query`]) with
    /// [`answer_payload`], [`ANSWER_DELAY`] (at least the network's latency floor) after the
    /// query reached it — as an application would. Off by default.
    pub fn set_answer_queries(&mut self, on: bool) {
        self.answer_queries = on;
    }

    /// Schedule node `i`'s answer to `q` (a scheduled call: the same on any number of
    /// threads, since it falls after the window the query arrived in).
    fn answer(&mut self, i: usize, q: &rookery_core::IncomingQuery) {
        let at = self.now + ANSWER_DELAY.max(self.net.latency.min());
        let handle = q.handle.clone();
        let payload = Bytes::from(answer_payload(self.name(i), &q.payload));
        self.call_at(at, i, move |n, now| {
            let _ = n.respond(now, &handle, payload);
        });
    }

    /// Whether every invariant considers its obligations met (e.g. every user event reached
    /// every node that must have it); the liveness phase waits for this too.
    pub fn invariants_settled(&self) -> bool {
        match &self.checks {
            Some(c) => {
                let cx = Context::new(self.now, &self.nodes, &self.ledger, &self.names);
                c.settled(&cx)
            }
            None => true,
        }
    }

    /// Record which node learned which fact when (for `--plot`); see [`Knowledge`]. Joins
    /// of about 32 of the `expected_nodes` are followed, and every failure and leave.
    pub fn enable_knowledge(&mut self, expected_nodes: usize) {
        if self.knowledge.is_none() {
            self.knowledge = Some(Box::new(Knowledge::new(expected_nodes)));
        }
    }

    /// The knowledge recorder, when enabled.
    pub fn knowledge(&self) -> Option<&Knowledge> {
        self.knowledge.as_deref()
    }

    /// Metrics recorded by the user (and by scenarios).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Record metrics.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    fn hash_input<T: Hash + ?Sized>(&mut self, tag: &[u8], x: &T) {
        self.now.hash(&mut self.trace);
        tag.hash(&mut self.trace);
        x.hash(&mut self.trace);
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.seq += 1;
        self.enqueue(at, self.seq, action);
    }

    /// Put `action` on the heap at `(at, seq)`.
    fn enqueue(&mut self, at: Timestamp, seq: u64, action: Action) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.actions[s] = Some(action);
                s
            }
            None => {
                self.actions.push(Some(action));
                self.actions.len() - 1
            }
        };
        self.queue.push(Reverse((at, seq, slot)));
    }

    fn extra_delay(&mut self, max: Duration) -> Duration {
        extra_delay(&mut self.rng, max)
    }

    /// Route one datagram from node `i`.
    fn route_datagram(&mut self, i: usize, to: SocketAddr, payload: Bytes) {
        let now = self.now;
        let target = self.index_at(to);
        let from = self.nodes[i].addr;
        if payload.len() > self.net.mtu {
            self.stats.oversized += 1;
            return;
        }
        let Some(j) = target else {
            self.stats.blocked += 1;
            self.stats.to_aim += u64::from(to == crate::adversary::AIM);
            return;
        };
        if self.nodes[i].isolated || self.nodes[j].isolated {
            self.stats.blocked += 1;
            return;
        }
        let link = (!self.rules.is_empty()).then(|| self.rules.apply(i, j));
        if link.as_ref().is_some_and(|l| l.drop) {
            self.stats.blocked += 1;
            return;
        }
        if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss.min(1.0)) {
            self.stats.lost += 1;
            return;
        }
        if let Some(l) = &link {
            if l.loss > 0.0 && self.rng.random_bool(l.loss.min(1.0)) {
                self.stats.lost += 1;
                return;
            }
        }
        let copies =
            if self.net.duplicate > 0.0 && self.rng.random_bool(self.net.duplicate.min(1.0)) {
                self.stats.duplicated += 1;
                2
            } else {
                1
            };
        for _ in 0..copies {
            let mut at = now + self.latency(link.as_ref());
            if self.net.reorder > 0.0 && self.rng.random_bool(self.net.reorder.min(1.0)) {
                self.stats.reordered += 1;
                let w = self.net.reorder_window;
                at = at + self.extra_delay(w);
            }
            let payload = payload.clone();
            let arrival = Arrival::new(Input::Datagram { from, payload });
            self.schedule(at, Action::Input { node: j, arrival });
        }
    }

    /// One-way latency on a link, rules included.
    fn latency(&mut self, link: Option<&Applied>) -> Duration {
        one_way(&mut self.rng, &self.net.latency, link)
    }

    /// Route one reliable message from node `i`.
    fn route_reliable(
        &mut self,
        i: usize,
        to: SocketAddr,
        payload: Bytes,
        message: Option<MessageId>,
    ) {
        let now = self.now;
        let target = self.index_at(to);
        self.stats.to_aim += u64::from(to == crate::adversary::AIM);
        let from = self.nodes[i].addr;
        let blocked = self.nodes[i].isolated
            || target.is_none_or(|j| self.nodes[j].isolated)
            || (!self.rules.is_empty()
                && target.is_some_and(|j| self.rules.drops(i, j) || self.rules.drops(j, i)));
        let up = target.is_some_and(|j| !self.nodes[j].crashed);
        match target {
            Some(j) if !blocked && up => {
                let link = (!self.rules.is_empty()).then(|| self.rules.apply(i, j));
                // Connection set-up and transfer: three one-way trips; in order per
                // (sender, receiver), as over one TCP connection.
                let mut at = match self.net.reliable {
                    ReliableModel::Perfect => {
                        now + self.latency(link.as_ref())
                            + self.latency(link.as_ref())
                            + self.latency(link.as_ref())
                    }
                    ReliableModel::Tcp => {
                        let back = (!self.rules.is_empty()).then(|| self.rules.apply(j, i));
                        let mss = self.net.mtu.saturating_sub(SEGMENT_OVERHEAD).max(1);
                        let segments = payload.len().div_ceil(mss).max(1);
                        let mut path = SimPath {
                            rng: &mut self.rng,
                            net: &self.net,
                            fwd: link.as_ref(),
                            back: back.as_ref(),
                        };
                        let timeout = self.nodes[i].tcp_timeout;
                        match crate::net::tcp_transfer(segments, timeout, &mut path) {
                            TcpFate::Delivered { after, retransmits } => {
                                self.stats.reliable_retransmits += retransmits;
                                now + after
                            }
                            TcpFate::ConnectTimedOut { retransmits } => {
                                self.stats.reliable_retransmits += retransmits;
                                let arrival = Arrival::send_failed(to, message, self.nodes[i].life);
                                self.schedule(now + timeout, Action::Input { node: i, arrival });
                                return;
                            }
                            TcpFate::GaveUp { retransmits } => {
                                self.stats.reliable_retransmits += retransmits;
                                self.stats.reliable_given_up += 1;
                                return;
                            }
                        }
                    }
                };
                let last = self.last_reliable.entry((i, j)).or_insert(at);
                at = at.max(*last);
                *last = at;
                let input = Input::received_as(
                    self.nodes[j].config.wire,
                    from,
                    TransmitKind::Reliable,
                    payload,
                );
                self.schedule(
                    at,
                    Action::Input {
                        node: j,
                        arrival: Arrival::new(input),
                    },
                );
            }
            _ => {
                self.stats.blocked += 1;
                let at = now + self.nodes[i].tcp_timeout;
                let arrival = Arrival::send_failed(to, message, self.nodes[i].life);
                self.schedule(at, Action::Input { node: i, arrival });
            }
        }
    }

    /// Hash a transmit of node `i` into the trace and route it (a mute node's is blocked).
    fn emit_transmit(&mut self, i: usize, t: Transmit, mute: bool) {
        self.now.hash(&mut self.trace);
        i.hash(&mut self.trace);
        t.hash(&mut self.trace);
        if mute {
            self.stats.blocked += 1;
            return;
        }
        match t.kind {
            TransmitKind::Datagram => self.route_datagram(i, t.to, t.payload),
            TransmitKind::Reliable => self.route_reliable(i, t.to, t.payload, t.message),
        }
    }

    /// Hash an event of node `i` into the trace, show it to the knowledge recorder and the
    /// invariants, and keep it if events are recorded.
    fn emit_event(&mut self, i: usize, e: Event) {
        let now = self.now;
        now.hash(&mut self.trace);
        i.hash(&mut self.trace);
        e.hash(&mut self.trace);
        if let Some(k) = self.knowledge.as_mut() {
            k.observe(now, i, &e, &self.names);
        }
        if let Some(c) = self.checks.as_mut() {
            let cx = Context::new(now, &self.nodes, &self.ledger, &self.names);
            c.on_event(&cx, i, &e);
        }
        if let (true, Event::Query(q)) = (self.answer_queries, &e) {
            self.answer(i, q);
        }
        if self.record_events {
            self.events.push((now, i, e));
        }
    }

    /// Drain node `i`'s transmits and events, re-arm its timer, and run the invariants.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        let mut transmits = 0;
        // A crashed or paused process sends nothing, whatever a direct call made it produce.
        let mute = self.nodes[i].crashed || self.nodes[i].paused;
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            transmits += 1;
            self.emit_transmit(i, t, mute);
        }
        let mut events = 0;
        while let Some(e) = self.nodes[i].node.poll_event() {
            events += 1;
            self.emit_event(i, e);
        }
        // `armed` holds the deadline the pending timer action is for.
        let rng = &mut self.rng;
        if let Some(fire) = self.nodes[i].rearm(now, |max| extra_delay(rng, max)) {
            let arrival = Arrival::timer();
            self.schedule(fire, Action::Input { node: i, arrival });
        }
        if let Some(c) = self.checks.as_mut() {
            let cx = Context::new(now, &self.nodes, &self.ledger, &self.names);
            c.on_input(&cx, i, &Output { transmits, events });
        }
    }

    /// Time of the next scheduled action.
    pub fn next_time(&self) -> Option<Timestamp> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Process the next scheduled action. Returns the index of the node it touched (if any),
    /// or `None` when nothing is scheduled at all.
    pub fn step(&mut self) -> Option<Option<usize>> {
        let Reverse((at, _, slot)) = self.queue.pop()?;
        let action = self.actions[slot].take().expect("scheduled action present");
        self.free.push(slot);
        if at > self.now {
            self.now = at;
        }
        let now = self.now;
        Some(match action {
            Action::Input { node, arrival } => {
                let tapped = self.tap.is_some().then(|| arrival.input.clone());
                let took = self.nodes[node].take(now, arrival, self.backlog_limit, &mut self.stats);
                match took {
                    Took::Handled(what) => {
                        if what.traced() {
                            (now, node).hash(&mut self.trace);
                        }
                        if let Some(input) = tapped {
                            let local = self.nodes[node].local(now);
                            self.record(node, local, input);
                        }
                        self.after_input(node);
                        Some(node)
                    }
                    Took::Deferred { arrival, max } => {
                        let at = now + self.extra_delay(max);
                        self.schedule(at, Action::Input { node, arrival });
                        None
                    }
                    Took::Stale | Took::Blocked | Took::Backlogged | Took::BacklogFull => None,
                }
            }
            Action::Step(step) => {
                let _ = self.apply(&step);
                self.steps_applied += 1;
                None
            }
            Action::Call { node, f } => {
                if node >= self.nodes.len() || self.nodes[node].crashed || self.nodes[node].paused {
                    return Some(None);
                }
                self.hash_input(b"call", &node);
                self.call(node, f);
                Some(node)
            }
        })
    }

    /// Run every action scheduled up to `deadline`, then set the clock to it.
    pub fn run_until(&mut self, deadline: Timestamp) {
        while self.next_time().is_some_and(|t| t <= deadline) {
            if self.threads < 2 || !matches!(self.run_window(deadline, None), Window::Ran) {
                self.step();
            }
        }
        if deadline > self.now {
            self.now = deadline;
        }
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline);
    }

    /// Run until `pred` holds (checked after every step that touched a node) or `deadline`
    /// passes. Returns whether `pred` held.
    pub fn run_until_pred(
        &mut self,
        deadline: Timestamp,
        mut pred: impl FnMut(&mut Sim, Option<usize>) -> bool,
    ) -> bool {
        if pred(self, None) {
            return true;
        }
        while self.next_time().is_some_and(|t| t <= deadline) {
            if let Some(Some(i)) = self.step() {
                if pred(self, Some(i)) {
                    return true;
                }
            }
        }
        if deadline > self.now {
            self.now = deadline;
        }
        pred(self, None)
    }

    /// Run until `pred` holds for every node (asked of a node after every step that touched
    /// it, and of every node after a scripted step) or `deadline` passes. Returns whether it
    /// held. The run stops exactly where [`Sim::run_until_pred`] asking the same of the
    /// touched node (and of all after a scripted step) would, but it can use parallel windows
    /// ([`Sim::set_threads`]): a window is run in parallel when some node that fails `pred`
    /// has no input in it, and stepped otherwise.
    pub fn run_until_every(
        &mut self,
        deadline: Timestamp,
        mut pred: impl FnMut(&Node) -> bool,
    ) -> bool {
        let mut gate = Gate {
            pred: &mut pred,
            ok: vec![false; self.nodes.len()],
            bad: self.nodes.len(),
        };
        self.ask_all(&mut gate);
        let mut stepped_until = None;
        while gate.bad > 0 {
            let Some(next) = self.next_time().filter(|&t| t <= deadline) else {
                break;
            };
            if self.threads >= 2 && stepped_until.is_none_or(|u| next >= u) {
                match self.run_window(deadline, Some(&mut gate)) {
                    Window::Ran => continue,
                    Window::Refused(until) => {
                        self.windows.refused += 1;
                        stepped_until = Some(until);
                    }
                    Window::Unusable => {}
                }
            }
            let steps = self.steps_applied;
            if let Some(Some(i)) = self.step() {
                gate.update(i, &self.nodes[i].node);
            }
            if self.steps_applied != steps {
                self.ask_all(&mut gate);
            }
        }
        if gate.bad > 0 && deadline > self.now {
            self.now = deadline;
        }
        gate.bad == 0
    }

    /// Ask `gate`'s predicate about every node (nodes added since it was made included).
    fn ask_all(&self, gate: &mut Gate<'_>) {
        let n = self.nodes.len();
        if gate.ok.len() < n {
            gate.bad += n - gate.ok.len();
            gate.ok.resize(n, false);
        }
        for i in 0..n {
            gate.update(i, &self.nodes[i].node);
        }
    }

    /// Run until `pred` holds, checking it every poll interval of virtual time (10 ms unless
    /// [`Sim::set_poll_interval`] says otherwise), for at most `within`. Returns how long it
    /// took, or [`SimError::Timeout`].
    pub fn wait_for(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, SimError> {
        let start = self.now;
        let deadline = start + within;
        loop {
            if pred(self) {
                return Ok(self.now.saturating_since(start));
            }
            if self.now >= deadline {
                return Err(SimError::Timeout { waited: within });
            }
            let next = (self.now + self.poll).min(deadline);
            self.run_until(next);
        }
    }

    /// Whether node `i` counts as a live member of the cluster: not crashed, not left or
    /// leaving. (A paused node is live: it will resume.)
    pub fn is_live(&self, i: usize) -> bool {
        matches!(self.nodes[i].state(), NodeState::Up | NodeState::Paused)
    }

    /// Every wrong entry in live nodes' views: a live node that does not see a live member
    /// alive, or sees a crashed or departed member alive or suspect.
    pub fn view_errors(&self) -> Vec<ViewError> {
        let live: Vec<bool> = (0..self.nodes.len()).map(|i| self.is_live(i)).collect();
        let mut out = Vec::new();
        for (o, &lo) in live.iter().enumerate() {
            if !lo {
                continue;
            }
            let node = &self.nodes[o].node;
            for (m, &lm) in live.iter().enumerate() {
                let seen = node.member(&self.nodes[m].identity.name).map(|x| x.status);
                if !view_ok(lm, seen) {
                    out.push(ViewError {
                        observer: o,
                        member: m,
                        seen,
                        live: lm,
                    });
                }
            }
        }
        out
    }

    /// Whether every live node sees every live node alive and every crashed or departed
    /// node failed, left or not at all. Cheap when it does not hold: alive counts are
    /// compared first.
    pub fn converged(&self) -> bool {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_live(i)).collect();
        if live
            .iter()
            .any(|&i| self.nodes[i].node.alive_count() != live.len())
        {
            return false;
        }
        self.view_errors().is_empty()
    }

    /// How many (live observer, member) view entries are wrong (see [`Sim::view_errors`]).
    pub fn stale_views(&self) -> usize {
        self.view_errors().len()
    }

    /// Run until [`Sim::converged`], for at most `within`.
    pub fn form(&mut self, within: Duration) -> Result<Duration, SimError> {
        self.wait_for(within, Sim::converged)
    }

    /// Draw a number from the simulation's RNG (for scenario decisions that must be part of
    /// the seeded run).
    pub fn random_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        if range.is_empty() {
            return range.start;
        }
        self.rng.random_range(range)
    }

    /// Draw a uniform float in `0.0 .. 1.0` from the simulation's RNG.
    pub fn random_f64(&mut self) -> f64 {
        self.rng.random()
    }

    /// The configuration node `i` was started with.
    pub fn config(&self, i: usize) -> &Config {
        &self.nodes[i].config
    }
}

/// One wrong view entry (see [`Sim::view_errors`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewError {
    /// The node whose view is wrong.
    pub observer: usize,
    /// The member it is wrong about.
    pub member: usize,
    /// What the observer sees (`None`: it does not know the member).
    pub seen: Option<MemberStatus>,
    /// Whether the member is live.
    pub live: bool,
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} sees {} {} as {:?}",
            self.observer,
            if self.live { "live" } else { "gone" },
            self.member,
            self.seen
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 254, 255, 256, 70_000] {
            assert_eq!(node_index(node_addr(i)), Some(i));
        }
        assert_eq!(node_index("127.0.0.1:80".parse().unwrap()), None);
    }

    /// The tap records what a node was handed, as the core's inputs: a fresh node with the
    /// same seed, handed node 0's recorded inputs through `Node::handle`, ends where node 0
    /// did — push-pulls (frames) and a pause's backlog included.
    #[test]
    fn the_tap_replays_a_node() {
        let mut sim = Sim::new(21, NetConfig::default());
        sim.set_tap(true);
        for i in 0..4 {
            sim.add_node(Config::local(), &format!("node-{i}"));
        }
        for i in 1..4 {
            sim.join(i, &[0]);
        }
        sim.run_for(Duration::from_secs(3));
        sim.pause(0);
        sim.run_for(Duration::from_millis(1500));
        assert!(sim.nodes[0].backlog_len() > 0, "a backlog waits");
        sim.resume(0);
        sim.run_for(Duration::from_secs(20));
        let tap: Vec<TapEntry> = sim
            .drain_tap()
            .into_iter()
            .filter(|e| e.node == 0)
            .collect();
        assert!(tap.iter().any(|e| matches!(e.input, Input::Stream { .. })));
        let seed = ChaCha8Rng::seed_from_u64(21).random();
        let me = Identity::new("node-0", node_addr(0));
        let mut node = Node::new(Config::local(), me, seed, Timestamp::ZERO).expect("node");
        for e in tap {
            node.handle(e.at, e.input).expect("taken");
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
        }
        let sim_node = sim.node(0);
        assert_eq!(node.stats(), sim_node.stats());
        assert_eq!(node.members(), sim_node.members());
        assert_eq!(node.poll_timeout(), sim_node.poll_timeout());
    }

    #[test]
    fn nodes_added_with_the_same_config_share_it() {
        let mut sim = Sim::new(1, NetConfig::default());
        let a = sim.add_node(Config::local(), "a");
        let b = sim.add_node(Config::local(), "b");
        let c = sim.add_node(Config::lan(), "c");
        let d = sim.add_node(Config::lan(), "d");
        let cfg = |sim: &Sim, i: usize| sim.nodes[i].config.clone();
        assert!(Arc::ptr_eq(&cfg(&sim, a), &cfg(&sim, b)));
        assert!(Arc::ptr_eq(&cfg(&sim, c), &cfg(&sim, d)));
        assert!(!Arc::ptr_eq(&cfg(&sim, b), &cfg(&sim, c)));
        sim.restart(a, &[b]).expect("restart");
        assert!(
            Arc::ptr_eq(&cfg(&sim, a), &cfg(&sim, b)),
            "a restart keeps the shared config"
        );
    }
}
