//! # rookery-sim
//!
//! A deterministic network simulator for [`rookery_core`]: many nodes in one process, virtual
//! time, one seeded RNG for every fate (latency, loss, node seeds), and a priority queue of
//! deliveries and timer firings. The same seed and the same calls give the same run, byte for
//! byte: [`Sim::trace_hash`] folds every transmit and every event into one number that proves
//! it.
//!
//! ```
//! use rookery_core::{Config, MemberStatus};
//! use rookery_sim::{NetConfig, Sim};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(42, NetConfig::default());
//! let nodes: Vec<usize> = (0..5).map(|i| sim.add_node(Config::local(), &format!("n{i}"))).collect();
//! for &n in &nodes[1..] {
//!     sim.join(n, &[nodes[0]]);
//! }
//! sim.run_for(Duration::from_secs(5));
//! assert!(nodes.iter().all(|&n| sim.node(n).alive_count() == 5));
//!
//! sim.crash(nodes[4]);
//! sim.run_for(Duration::from_secs(30));
//! let view = sim.node(nodes[0]).member("n4").unwrap();
//! assert_eq!(view.status, MemberStatus::Failed);
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rookery_core::{wire, Config, Event, Identity, Node, Timestamp, TransmitKind};

pub mod scenario;

/// The simulated network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Shortest one-way latency. Default 1 ms.
    pub latency_min: Duration,
    /// Longest one-way latency (uniform in between). Default 5 ms.
    pub latency_max: Duration,
    /// Probability that a datagram is lost, 0.0 ..= 1.0. Reliable messages are never lost
    /// (TCP retransmits), only delayed. Default 0.
    pub loss: f64,
    /// Datagrams larger than this are dropped, in bytes. Default 1500.
    pub mtu: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: Duration::from_millis(1),
            latency_max: Duration::from_millis(5),
            loss: 0.0,
            mtu: 1500,
        }
    }
}

/// Counters the simulator keeps about the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams delivered to a running node.
    pub delivered: u64,
    /// Datagrams lost to the loss rate.
    pub lost: u64,
    /// Datagrams dropped for exceeding the MTU.
    pub oversized: u64,
    /// Messages dropped because an end was crashed or isolated.
    pub blocked: u64,
    /// Reliable messages delivered.
    pub reliable_delivered: u64,
    /// Reliable sends reported back as failed.
    pub reliable_failed: u64,
}

/// One input a node received, as recorded by the tap ([`Sim::set_tap`]): enough to replay a
/// node's life outside the simulator (the fuzz corpus generator does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapInput {
    /// [`rookery_core::Node::handle_timeout`].
    Timeout,
    /// [`rookery_core::Node::handle_packet`] of `payload` from `from`.
    Packet {
        /// Sender.
        from: SocketAddr,
        /// The datagram.
        payload: Bytes,
    },
    /// [`rookery_core::Node::handle_stream`] of `body` (a frame body) from `from`.
    Stream {
        /// Sender.
        from: SocketAddr,
        /// The frame body, length prefix removed.
        body: Bytes,
    },
    /// [`rookery_core::Node::handle_send_failure`] for `to`.
    SendFailure {
        /// The unreachable destination.
        to: SocketAddr,
    },
}

/// A recorded input: when, to which node, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapEntry {
    /// Virtual time of the input.
    pub at: Timestamp,
    /// Index of the node that received it.
    pub node: usize,
    /// The input.
    pub input: TapInput,
}

#[derive(Debug)]
enum Action {
    Deliver {
        to: usize,
        from: SocketAddr,
        kind: TransmitKind,
        payload: Bytes,
    },
    SendFailed {
        node: usize,
        to: SocketAddr,
    },
    Timer {
        node: usize,
    },
}

struct SimNode {
    node: Node,
    addr: SocketAddr,
    crashed: bool,
    isolated: bool,
    armed: Option<Timestamp>,
    tcp_timeout: Duration,
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

/// A simulated cluster.
pub struct Sim {
    now: Timestamp,
    rng: ChaCha8Rng,
    net: NetConfig,
    nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    actions: Vec<Option<Action>>,
    free: Vec<usize>,
    seq: u64,
    trace: Fnv,
    events: Vec<(Timestamp, usize, Event)>,
    record_events: bool,
    stats: NetStats,
    /// Latest delivery time of a reliable message per (from, to): a connection delivers in
    /// order, like TCP.
    last_reliable: std::collections::HashMap<(usize, usize), Timestamp>,
    tap: Option<Vec<TapEntry>>,
}

/// The address of node `i`: 127.a.b.c:7946 with a.b.c = i + 1.
pub fn node_addr(i: usize) -> SocketAddr {
    let n = (i + 1) as u32;
    let ip = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 7946))
}

fn node_index(addr: SocketAddr) -> Option<usize> {
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
        Sim {
            now: Timestamp::ZERO,
            rng: ChaCha8Rng::seed_from_u64(seed),
            net,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            actions: Vec::new(),
            free: Vec::new(),
            seq: 0,
            trace,
            events: Vec::new(),
            record_events: true,
            stats: NetStats::default(),
            last_reliable: std::collections::HashMap::new(),
            tap: None,
        }
    }

    /// Keep events for [`Sim::drain_events`] (default) or only hash them.
    pub fn set_record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Record every input handed to a node (off by default); read with [`Sim::drain_tap`].
    /// API calls made through [`Sim::join`], [`Sim::leave`] and [`Sim::with_node`] are not
    /// recorded: the caller knows them.
    pub fn set_tap(&mut self, on: bool) {
        self.tap = on.then(Vec::new);
    }

    /// Inputs recorded since the last call, in the order the nodes received them.
    pub fn drain_tap(&mut self) -> Vec<TapEntry> {
        self.tap.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn record(&mut self, node: usize, input: TapInput) {
        if let Some(tap) = &mut self.tap {
            tap.push(TapEntry {
                at: self.now,
                node,
                input,
            });
        }
    }

    /// Change the network (loss, latency, MTU) from now on.
    pub fn set_net(&mut self, net: NetConfig) {
        self.net = net;
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

    /// A hash over every transmit and every event so far (and the seed).
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

    /// Start a node named `name` now, at [`node_addr`] of its index. Panics if `config` is
    /// invalid (a simulation set-up error).
    pub fn add_node(&mut self, config: Config, name: &str) -> usize {
        let i = self.nodes.len();
        let addr = node_addr(i);
        let seed = self.rng.random();
        let tcp_timeout = config.tcp_timeout;
        let node = Node::new(config, Identity::new(name, addr), seed, self.now)
            .expect("simulation node config must be valid");
        self.nodes.push(SimNode {
            node,
            addr,
            crashed: false,
            isolated: false,
            armed: None,
            tcp_timeout,
        });
        self.after_input(i);
        i
    }

    /// The node at index `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// Whether node `i` has crashed.
    pub fn is_crashed(&self, i: usize) -> bool {
        self.nodes[i].crashed
    }

    /// Node `i` joins through the nodes `seeds`.
    pub fn join(&mut self, i: usize, seeds: &[usize]) {
        let addrs: Vec<SocketAddr> = seeds.iter().map(|&s| self.nodes[s].addr).collect();
        let now = self.now;
        let _ = self.nodes[i].node.join(now, &addrs);
        self.after_input(i);
    }

    /// Node `i` leaves gracefully.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        let _ = self.nodes[i].node.leave(now);
        self.after_input(i);
    }

    /// Run an API call (or any access) on node `i` at the current time, then collect what it
    /// sent and emitted.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Timestamp) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].node, now);
        self.after_input(i);
        r
    }

    /// Crash node `i`: from now on nothing reaches it and it sends nothing.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].crashed = true;
    }

    /// Cut node `i` off the network (`true`) or reconnect it (`false`); unlike a crash its
    /// timers keep running.
    pub fn isolate(&mut self, i: usize, on: bool) {
        self.nodes[i].isolated = on;
    }

    /// Events collected since the last call: (time, node index, event).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, (Timestamp, usize, Event)> {
        self.events.drain(..)
    }

    fn schedule(&mut self, at: Timestamp, action: Action) {
        self.seq += 1;
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
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = (
            self.net.latency_min.as_micros() as u64,
            self.net.latency_max.as_micros() as u64,
        );
        Duration::from_micros(if hi > lo {
            self.rng.random_range(lo..=hi)
        } else {
            lo
        })
    }

    /// Drain node `i`'s transmits and events, and re-arm its timer.
    fn after_input(&mut self, i: usize) {
        let now = self.now;
        while let Some(t) = self.nodes[i].node.poll_transmit() {
            now.hash(&mut self.trace);
            i.hash(&mut self.trace);
            t.hash(&mut self.trace);
            let from = self.nodes[i].addr;
            let target = node_index(t.to).filter(|&j| j < self.nodes.len());
            let blocked = self.nodes[i].isolated || target.is_none_or(|j| self.nodes[j].isolated);
            match t.kind {
                TransmitKind::Datagram => {
                    if t.payload.len() > self.net.mtu {
                        self.stats.oversized += 1;
                    } else if blocked || target.is_none() {
                        self.stats.blocked += 1;
                    } else if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss.min(1.0)) {
                        self.stats.lost += 1;
                    } else {
                        let at = now + self.latency();
                        let to = target.expect("checked");
                        self.schedule(
                            at,
                            Action::Deliver {
                                to,
                                from,
                                kind: t.kind,
                                payload: t.payload,
                            },
                        );
                    }
                }
                TransmitKind::Reliable => {
                    let up = target.is_some_and(|j| !self.nodes[j].crashed);
                    if blocked || !up {
                        self.stats.blocked += 1;
                        let at = now + self.nodes[i].tcp_timeout;
                        self.schedule(at, Action::SendFailed { node: i, to: t.to });
                    } else {
                        // Connection set-up and transfer: three one-way trips; in order per
                        // (sender, receiver), as over one TCP connection.
                        let to = target.expect("checked");
                        let mut at = now + self.latency() + self.latency() + self.latency();
                        let last = self.last_reliable.entry((i, to)).or_insert(at);
                        at = at.max(*last);
                        *last = at;
                        self.schedule(
                            at,
                            Action::Deliver {
                                to,
                                from,
                                kind: t.kind,
                                payload: t.payload,
                            },
                        );
                    }
                }
            }
        }
        while let Some(e) = self.nodes[i].node.poll_event() {
            now.hash(&mut self.trace);
            i.hash(&mut self.trace);
            e.hash(&mut self.trace);
            if self.record_events {
                self.events.push((now, i, e));
            }
        }
        // `armed` holds the time the pending timer action was scheduled for.
        let next = self.nodes[i].node.poll_timeout().map(|at| at.max(now));
        if next != self.nodes[i].armed {
            self.nodes[i].armed = next;
            if let Some(at) = next {
                self.schedule(at, Action::Timer { node: i });
            }
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
            Action::Timer { node } => {
                let n = &mut self.nodes[node];
                if n.crashed || n.armed != Some(at) {
                    return Some(None);
                }
                n.armed = None;
                n.node.handle_timeout(now);
                self.record(node, TapInput::Timeout);
                self.after_input(node);
                Some(node)
            }
            Action::Deliver {
                to,
                from,
                kind,
                payload,
            } => {
                let n = &mut self.nodes[to];
                if n.crashed || n.isolated {
                    self.stats.blocked += 1;
                    return Some(None);
                }
                let input = match kind {
                    TransmitKind::Datagram => {
                        self.stats.delivered += 1;
                        let _ = n.node.handle_packet(now, from, &payload);
                        TapInput::Packet { from, payload }
                    }
                    TransmitKind::Reliable => {
                        self.stats.reliable_delivered += 1;
                        let body = payload.slice(wire::FRAME_HEADER_LEN.min(payload.len())..);
                        let _ = n.node.handle_stream(now, from, &body);
                        TapInput::Stream { from, body }
                    }
                };
                self.record(to, input);
                self.after_input(to);
                Some(to)
            }
            Action::SendFailed { node, to } => {
                if self.nodes[node].crashed {
                    return Some(None);
                }
                self.stats.reliable_failed += 1;
                self.nodes[node].node.handle_send_failure(now, to);
                self.record(node, TapInput::SendFailure { to });
                self.after_input(node);
                Some(node)
            }
        })
    }

    /// Run every action scheduled up to `deadline`, then set the clock to it.
    pub fn run_until(&mut self, deadline: Timestamp) {
        while self.next_time().is_some_and(|t| t <= deadline) {
            self.step();
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
}
