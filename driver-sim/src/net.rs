//! The simulated network: latency distributions, loss, duplication, reordering, the MTU,
//! per-link rules (partitions, one-way cuts, lossy or slow links), and the model of the reliable
//! channel ([`ReliableModel`]: perfect, or TCP under the same loss as datagrams, whose timing
//! rules [`tcp_transfer`] owns).
//!
//! Every random fate is drawn from the simulator's one seeded RNG, and only when the feature
//! that needs it is switched on: a run with the default network draws exactly the numbers it
//! always drew.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// (De)serialise a [`Duration`] as whole microseconds, so scripts and replay files stay short
/// and readable.
pub(crate) mod micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// A one-way latency distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Latency {
    /// Uniform between `min` and `max` (microsecond granularity).
    Uniform {
        /// Shortest latency.
        #[serde(rename = "min_us", with = "micros")]
        min: Duration,
        /// Longest latency.
        #[serde(rename = "max_us", with = "micros")]
        max: Duration,
    },
    /// Long-tailed (Pareto): `min + scale · (U^(−1/alpha) − 1)`, capped at `max`. Most
    /// datagrams arrive a little after `min`; a few take far longer. With `alpha` = 1.5 about
    /// 1 in 30 takes longer than `min + 9·scale`.
    LongTail {
        /// The floor every datagram pays.
        #[serde(rename = "min_us", with = "micros")]
        min: Duration,
        /// The tail's scale: the median extra delay is about `0.6 · scale` at `alpha` = 1.5.
        #[serde(rename = "scale_us", with = "micros")]
        scale: Duration,
        /// Tail index; smaller is heavier (1.1 ..= 3 are typical).
        alpha: f64,
        /// The cap: nothing takes longer.
        #[serde(rename = "max_us", with = "micros")]
        max: Duration,
    },
}

impl Latency {
    /// Uniform latency between `min` and `max`.
    pub fn uniform(min: Duration, max: Duration) -> Latency {
        Latency::Uniform { min, max }
    }

    /// Pareto-tailed latency: at least `min`, typically `min` plus a fraction of `scale`,
    /// occasionally up to `max`.
    pub fn long_tail(min: Duration, scale: Duration, alpha: f64, max: Duration) -> Latency {
        Latency::LongTail {
            min,
            scale,
            alpha,
            max,
        }
    }

    /// The longest latency this distribution can produce.
    pub fn max(&self) -> Duration {
        match *self {
            Latency::Uniform { min, max } => max.max(min),
            Latency::LongTail { min, max, .. } => max.max(min),
        }
    }

    /// The shortest latency this distribution can produce (latencies are drawn in whole
    /// microseconds).
    pub fn min(&self) -> Duration {
        match *self {
            Latency::Uniform { min, .. } | Latency::LongTail { min, .. } => {
                Duration::from_micros(min.as_micros() as u64)
            }
        }
    }

    /// Draw one latency.
    pub(crate) fn sample(&self, rng: &mut ChaCha8Rng) -> Duration {
        match *self {
            Latency::Uniform { min, max } => {
                let (lo, hi) = (min.as_micros() as u64, max.as_micros() as u64);
                Duration::from_micros(if hi > lo {
                    rng.random_range(lo..=hi)
                } else {
                    lo
                })
            }
            Latency::LongTail {
                min,
                scale,
                alpha,
                max,
            } => {
                let u: f64 = rng.random();
                let alpha = if alpha.is_finite() && alpha > 0.0 {
                    alpha
                } else {
                    1.0
                };
                let extra = scale.as_secs_f64() * ((1.0 - u).powf(-1.0 / alpha) - 1.0);
                let extra = if extra.is_finite() { extra } else { f64::MAX };
                let cap = max.saturating_sub(min).as_secs_f64();
                min + Duration::from_secs_f64(extra.clamp(0.0, cap))
            }
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::uniform(Duration::from_millis(1), Duration::from_millis(5))
    }
}

/// How the simulated network carries reliable (stream) messages.
///
/// Both models deliver a message three one-way latencies after it was sent (connection set-up
/// and transfer), in order per (sender, receiver), and fail it (`Input::SendFailed` back to the
/// sender, `tcp_timeout` after the send) when a link rule drops either direction, an end is
/// isolated or the target is down. They differ under loss:
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReliableModel {
    /// Loss never touches reliable messages: the reliable channel always gets through. The
    /// default, and the model every recorded trace hash was made with (it draws nothing from
    /// the RNG beyond the three latencies).
    #[default]
    Perfect,
    /// TCP under the link's loss, as Linux behaves: every SYN, SYN-ACK and data segment is
    /// lost with the probability a datagram on that link would be; a lost handshake segment
    /// costs the SYN retransmission timeout (1 s, doubling) and a lost data segment the
    /// retransmission timeout (200 ms, doubling); a connection not established within the
    /// sender's `tcp_timeout` fails the send. The exact rules: [`tcp_transfer`].
    Tcp,
}

impl ReliableModel {
    /// Whether this is [`ReliableModel::Perfect`] (the default).
    pub fn is_perfect(&self) -> bool {
        *self == ReliableModel::Perfect
    }

    /// The model's name as the runner spells it: `perfect` or `tcp`.
    pub fn name(&self) -> &'static str {
        match self {
            ReliableModel::Perfect => "perfect",
            ReliableModel::Tcp => "tcp",
        }
    }
}

/// Linux's initial retransmission timeout of a SYN (and of a SYN-ACK), `TCP_TIMEOUT_INIT`;
/// it doubles on every retransmission.
pub const SYN_RTO: Duration = Duration::from_secs(1);

/// The retransmission timeout of a lost data segment: Linux's floor `TCP_RTO_MIN`, which is
/// what a LAN's round trips of a few milliseconds give (Linux adds the smoothed round trip,
/// 2–10 ms here, which the model leaves out); it doubles on every consecutive loss.
pub const DATA_RTO: Duration = Duration::from_millis(200);

/// Linux's cap on the retransmission timeout, `TCP_RTO_MAX`.
pub const RTO_MAX: Duration = Duration::from_secs(120);

/// Retransmissions of one data segment before the connection gives up (Linux's default
/// `tcp_retries2`, about 15 minutes at [`DATA_RTO`]); the message is then lost.
pub const DATA_RETRIES: u32 = 15;

/// IPv4 and TCP header bytes in every segment: a segment carries at most `mtu − 40` bytes of
/// the message.
pub const SEGMENT_OVERHEAD: usize = 40;

/// One of the three one-way trips of a reliable message under [`ReliableModel::Tcp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leg {
    /// Sender to receiver: the connection request.
    Syn,
    /// Receiver to sender: the answer to it (it travels the reverse link, with that link's
    /// loss).
    SynAck,
    /// Sender to receiver: the message's segments (the handshake's final ACK rides on them).
    Data,
}

/// What became of one reliable message under [`ReliableModel::Tcp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFate {
    /// Delivered `after` the send, having retransmitted `retransmits` segments (SYNs
    /// included).
    Delivered {
        /// From the send to the delivery.
        after: Duration,
        /// Segments sent again.
        retransmits: u64,
    },
    /// The connection was not established within the sender's `tcp_timeout`: the driver's
    /// connect times out and the send fails, reported `tcp_timeout` after it was made.
    ConnectTimedOut {
        /// SYNs sent again before the timeout.
        retransmits: u64,
    },
    /// A data segment was lost [`DATA_RETRIES`] + 1 times: the connection gives up and the
    /// message never arrives. The driver is not told (its write had completed).
    GaveUp {
        /// Segments sent again.
        retransmits: u64,
    },
}

/// The network path of one reliable message as [`tcp_transfer`] sees it: whether each
/// segment is lost, and each trip's latency.
pub trait TcpPath {
    /// Whether one segment of trip `leg` is lost.
    fn lost(&mut self, leg: Leg) -> bool;
    /// The one-way latency of trip `leg`.
    fn latency(&mut self, leg: Leg) -> Duration;
}

/// The timing of one reliable message of `segments` segments under [`ReliableModel::Tcp`],
/// given a connect timeout of `timeout` and the `path`'s losses and latencies. The rules:
///
/// - **Handshake.** Attempt k (k = 0, 1, …) starts at `SYN_RTO · (2^k − 1)` (Linux's SYN
///   retransmissions at 0, 1, 3, 7 s…): its SYN and then its SYN-ACK each get through or are
///   lost. A lost SYN-ACK costs the same as a lost SYN (the sender's SYN timer fires and the
///   receiver answers the repeated SYN). The connection is up when an attempt's SYN-ACK
///   arrives; if that is not before `timeout`, or no attempt succeeds before it, the fate is
///   [`TcpFate::ConnectTimedOut`] (Linux's own limit, six SYN retransmissions or 127 s, lies
///   beyond every preset's `tcp_timeout` and is not modelled).
/// - **Data.** The message's `segments` segments leave together when the connection is up;
///   each is lost or not on its own, a lost one is sent again [`DATA_RTO`] later, the next
///   loss of the same segment waits twice as long (capped at [`RTO_MAX`]). One latency is
///   drawn for the data trip (the segments travel back to back); the message is delivered
///   when its last segment arrives. Fast retransmit and tail-loss probes, which repair some
///   losses within a round trip, are not modelled: every loss costs a full timeout. Data
///   delay never fails the send: the driver's write completed when the kernel took the bytes.
///
/// The path is asked, in this order: for each handshake attempt, whether the SYN is lost,
/// its latency, whether the SYN-ACK is lost, its latency (each only while the attempt still
/// stands); then for each segment whether each of its transmissions is lost; then the data
/// trip's latency. With a path that never loses, that is exactly three latencies, as
/// [`ReliableModel::Perfect`] draws them.
pub fn tcp_transfer(segments: usize, timeout: Duration, path: &mut impl TcpPath) -> TcpFate {
    let mut retransmits = 0u64;
    let mut start = Duration::ZERO;
    let mut rto = SYN_RTO;
    let established = loop {
        if start >= timeout {
            return TcpFate::ConnectTimedOut { retransmits };
        }
        if !path.lost(Leg::Syn) {
            let syn = path.latency(Leg::Syn);
            if !path.lost(Leg::SynAck) {
                let up = start + syn + path.latency(Leg::SynAck);
                if up >= timeout {
                    return TcpFate::ConnectTimedOut { retransmits };
                }
                break up;
            }
        }
        retransmits += 1;
        start += rto;
        rto = (rto * 2).min(RTO_MAX);
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..segments.max(1) {
        let mut wait = Duration::ZERO;
        let mut rto = DATA_RTO;
        let mut tries = 0;
        while path.lost(Leg::Data) {
            if tries == DATA_RETRIES {
                return TcpFate::GaveUp { retransmits };
            }
            tries += 1;
            retransmits += 1;
            wait += rto;
            rto = (rto * 2).min(RTO_MAX);
        }
        slowest = slowest.max(wait);
    }
    TcpFate::Delivered {
        after: established + slowest + path.latency(Leg::Data),
        retransmits,
    }
}

/// The simulated network as a whole. Per-link rules ([`LinkEffect`]) add to it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// One-way latency of every message. Default uniform 1–5 ms.
    pub latency: Latency,
    /// Probability that a datagram is lost, 0.0 ..= 1.0. Reliable messages are lost with the
    /// same probability under [`ReliableModel::Tcp`] (and retransmitted), never under
    /// [`ReliableModel::Perfect`]. Default 0.
    pub loss: f64,
    /// Datagrams larger than this are dropped, in bytes. Default 1500.
    pub mtu: usize,
    /// Probability that a datagram is delivered twice (the copy with its own latency).
    /// Default 0.
    pub duplicate: f64,
    /// Probability that a datagram is held back by an extra delay uniform in
    /// `0 ..= reorder_window`, so that later datagrams overtake it. Default 0.
    pub reorder: f64,
    /// The longest hold-back of a reordered datagram. Default 50 ms.
    #[serde(rename = "reorder_window_us", with = "micros")]
    pub reorder_window: Duration,
    /// How reliable messages fare under loss. Default [`ReliableModel::Perfect`] (left out of
    /// saved files and of the trace when it is the default, so old traces hash the same).
    #[serde(skip_serializing_if = "ReliableModel::is_perfect")]
    pub reliable: ReliableModel,
}

/// As derived, but with `reliable` shown only when it is not the default: the simulator hashes
/// this text into the trace when the network changes, and a run with the perfect reliable
/// channel must hash as it always did.
impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("NetConfig");
        d.field("latency", &self.latency)
            .field("loss", &self.loss)
            .field("mtu", &self.mtu)
            .field("duplicate", &self.duplicate)
            .field("reorder", &self.reorder)
            .field("reorder_window", &self.reorder_window);
        if !self.reliable.is_perfect() {
            d.field("reliable", &self.reliable);
        }
        d.finish()
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Latency::default(),
            loss: 0.0,
            mtu: 1500,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_window: Duration::from_millis(50),
            reliable: ReliableModel::Perfect,
        }
    }
}

/// Counters the simulator keeps about the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams delivered to a running node.
    pub delivered: u64,
    /// Datagrams lost to the loss rate (global or per link).
    pub lost: u64,
    /// Datagrams dropped for exceeding the MTU.
    pub oversized: u64,
    /// Messages dropped because an end was crashed, isolated or cut off by a rule.
    pub blocked: u64,
    /// Reliable messages delivered.
    pub reliable_delivered: u64,
    /// Reliable sends reported back as failed.
    pub reliable_failed: u64,
    /// Segments of reliable messages sent again after a loss, SYNs included
    /// ([`ReliableModel::Tcp`] only).
    pub reliable_retransmits: u64,
    /// Reliable messages whose connection gave up after [`DATA_RETRIES`] retransmissions of a
    /// segment: never delivered, and not reported to the sender ([`ReliableModel::Tcp`] only).
    pub reliable_given_up: u64,
    /// Extra copies of datagrams delivered (duplication).
    pub duplicated: u64,
    /// Datagrams held back to be reordered.
    pub reordered: u64,
    /// Datagrams that arrived at a paused node whose receive backlog was full (dropped).
    pub backlog_dropped: u64,
    /// Datagrams and reliable messages addressed to [`crate::adversary::AIM`], the address
    /// the swarm's adversary asks the cluster to send to (also counted in `blocked` or
    /// `reliable_failed`). A swarm case fails when this is not zero.
    pub to_aim: u64,
}

impl NetStats {
    /// Add `other`'s counts to these (a window's per-node counts to the simulation's).
    pub(crate) fn add(&mut self, other: &NetStats) {
        let NetStats {
            delivered,
            lost,
            oversized,
            blocked,
            reliable_delivered,
            reliable_failed,
            reliable_retransmits,
            reliable_given_up,
            duplicated,
            reordered,
            backlog_dropped,
            to_aim,
        } = other;
        self.delivered += delivered;
        self.lost += lost;
        self.oversized += oversized;
        self.blocked += blocked;
        self.reliable_delivered += reliable_delivered;
        self.reliable_failed += reliable_failed;
        self.reliable_retransmits += reliable_retransmits;
        self.reliable_given_up += reliable_given_up;
        self.duplicated += duplicated;
        self.reordered += reordered;
        self.backlog_dropped += backlog_dropped;
        self.to_aim += to_aim;
    }
}

/// What a link rule does to the messages it matches. Effects of several matching rules add
/// up: any `drop` drops, losses combine, delays add, the last `latency` replaces the network's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkEffect {
    /// Drop every message (datagrams vanish; reliable sends fail after the TCP timeout).
    pub drop: bool,
    /// Extra datagram loss on this link, 0.0 ..= 1.0.
    pub loss: f64,
    /// Extra one-way delay added to every message.
    #[serde(rename = "delay_us", with = "micros")]
    pub delay: Duration,
    /// A latency distribution replacing the network's on this link.
    pub latency: Option<Latency>,
}

impl LinkEffect {
    /// Drop everything.
    pub fn cut() -> LinkEffect {
        LinkEffect {
            drop: true,
            ..LinkEffect::default()
        }
    }

    /// Add `d` to every message's latency.
    pub fn delay(d: Duration) -> LinkEffect {
        LinkEffect {
            delay: d,
            ..LinkEffect::default()
        }
    }

    /// Lose datagrams with probability `p`.
    pub fn lossy(p: f64) -> LinkEffect {
        LinkEffect {
            loss: p,
            ..LinkEffect::default()
        }
    }

    /// Whether this effect can make a node look failed (it drops, loses or delays).
    pub(crate) fn degrades(&self) -> bool {
        self.drop || self.loss > 0.0 || !self.delay.is_zero() || self.latency.is_some()
    }
}

/// Identifies a network fault (a partition, a cut, a link rule) so it can be healed alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleId(pub u64);

/// A set of node indices as a bitmap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeSet(Vec<u64>);

impl NodeSet {
    pub(crate) fn from_nodes(nodes: &[usize]) -> NodeSet {
        let mut bits = Vec::new();
        for &i in nodes {
            let w = i / 64;
            if bits.len() <= w {
                bits.resize(w + 1, 0);
            }
            bits[w] |= 1u64 << (i % 64);
        }
        NodeSet(bits)
    }

    #[inline]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64)
                .filter(move |b| bits & (1u64 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

/// One directed rule: messages from a node of `from` to a node of `to` get `effect`.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub id: RuleId,
    pub from: NodeSet,
    pub to: NodeSet,
    pub effect: LinkEffect,
}

/// The combined effect of every rule matching one link.
#[derive(Clone, Debug, Default)]
pub(crate) struct Applied {
    pub drop: bool,
    pub loss: f64,
    pub delay: Duration,
    pub latency: Option<Latency>,
}

/// Every rule in force.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn add(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// Remove every rule with `id`; the nodes they touched.
    pub(crate) fn remove(&mut self, id: RuleId) -> Vec<usize> {
        let mut touched = Vec::new();
        self.rules.retain(|r| {
            if r.id == id {
                touched.extend(r.from.iter());
                touched.extend(r.to.iter());
                false
            } else {
                true
            }
        });
        touched.sort_unstable();
        touched.dedup();
        touched
    }

    /// Ids in force, each once.
    pub(crate) fn ids(&self) -> Vec<RuleId> {
        let mut ids: Vec<RuleId> = self.rules.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The combined effect on messages from `a` to `b`.
    pub(crate) fn apply(&self, a: usize, b: usize) -> Applied {
        let mut out = Applied::default();
        let mut keep = 1.0;
        for r in &self.rules {
            if r.from.contains(a) && r.to.contains(b) {
                out.drop |= r.effect.drop;
                keep *= 1.0 - r.effect.loss.clamp(0.0, 1.0);
                out.delay += r.effect.delay;
                if r.effect.latency.is_some() {
                    out.latency.clone_from(&r.effect.latency);
                }
            }
        }
        out.loss = 1.0 - keep;
        out
    }

    /// The shortest latency of any rule's own distribution (rules' delays only add).
    pub(crate) fn min_latency(&self) -> Option<Duration> {
        self.rules
            .iter()
            .filter_map(|r| r.effect.latency.as_ref().map(Latency::min))
            .min()
    }

    /// Whether any rule drops messages from `a` to `b`.
    pub(crate) fn drops(&self, a: usize, b: usize) -> bool {
        self.rules
            .iter()
            .any(|r| r.effect.drop && r.from.contains(a) && r.to.contains(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A scripted path: the listed losses in order (then none), every latency 1 ms, and a
    /// record of what was asked.
    #[derive(Default)]
    struct Script {
        losses: std::collections::VecDeque<bool>,
        asked: Vec<(Leg, &'static str)>,
    }

    impl Script {
        fn losing(losses: &[bool]) -> Script {
            Script {
                losses: losses.iter().copied().collect(),
                asked: Vec::new(),
            }
        }
    }

    impl TcpPath for Script {
        fn lost(&mut self, leg: Leg) -> bool {
            self.asked.push((leg, "lost"));
            self.losses.pop_front().unwrap_or(false)
        }
        fn latency(&mut self, leg: Leg) -> Duration {
            self.asked.push((leg, "latency"));
            MS
        }
    }

    const MS: Duration = Duration::from_millis(1);
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn delivered(after: Duration, retransmits: u64) -> TcpFate {
        TcpFate::Delivered { after, retransmits }
    }

    #[test]
    fn tcp_without_loss_takes_three_trips_as_perfect_does() {
        let mut p = Script::default();
        assert_eq!(tcp_transfer(1, TIMEOUT, &mut p), delivered(3 * MS, 0));
        let latencies: Vec<Leg> = p
            .asked
            .iter()
            .filter(|(_, q)| *q == "latency")
            .map(|(l, _)| *l)
            .collect();
        assert_eq!(latencies, vec![Leg::Syn, Leg::SynAck, Leg::Data]);
        // Four segments: one data latency, four loss decisions.
        let mut p = Script::default();
        assert_eq!(tcp_transfer(4, TIMEOUT, &mut p), delivered(3 * MS, 0));
        assert_eq!(p.asked.len(), 2 * 2 + 4 + 1);
    }

    #[test]
    fn tcp_lost_data_segment_costs_the_rto_doubling() {
        // SYN, SYN-ACK through; the data segment lost once, then twice in a row.
        let mut p = Script::losing(&[false, false, true]);
        let once = tcp_transfer(1, TIMEOUT, &mut p);
        assert_eq!(once, delivered(3 * MS + DATA_RTO, 1));
        let mut p = Script::losing(&[false, false, true, true]);
        let twice = tcp_transfer(1, TIMEOUT, &mut p);
        assert_eq!(twice, delivered(3 * MS + DATA_RTO * 3, 2));
        // Data delay never fails the send, even past the connect timeout.
        let mut p = Script::losing(&[false, false, true, true, true, true, true, true]);
        let late = tcp_transfer(1, TIMEOUT, &mut p);
        assert_eq!(late, delivered(3 * MS + DATA_RTO * 63, 6));
        assert!(3 * MS + DATA_RTO * 63 > TIMEOUT);
    }

    #[test]
    fn tcp_lost_syn_or_syn_ack_costs_the_syn_rto_doubling() {
        let mut p = Script::losing(&[true]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            delivered(SYN_RTO + 3 * MS, 1)
        );
        let mut p = Script::losing(&[false, true]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            delivered(SYN_RTO + 3 * MS, 1)
        );
        // SYN lost, then SYN-ACK lost: the third attempt starts at 1 s + 2 s.
        let mut p = Script::losing(&[true, false, true]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            delivered(SYN_RTO * 3 + 3 * MS, 2)
        );
    }

    #[test]
    fn tcp_connect_times_out_at_the_timeout() {
        // Every SYN lost: attempts at 0, 1, 3 and 7 s; the next would start at 15 s.
        let mut p = Script::losing(&[true; 100]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            TcpFate::ConnectTimedOut { retransmits: 4 }
        );
        assert_eq!(p.asked.len(), 4, "nothing drawn past the timeout");
        // The fourth attempt (at 7 s) gets through under a 10 s timeout, not under a 7 s one.
        let mut p = Script::losing(&[true, true, true]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            delivered(SYN_RTO * 7 + 3 * MS, 3)
        );
        let mut p = Script::losing(&[true, true, true]);
        assert_eq!(
            tcp_transfer(1, SYN_RTO * 7, &mut p),
            TcpFate::ConnectTimedOut { retransmits: 3 }
        );
        // A SYN-ACK arriving at the timeout is too late.
        let mut p = Script::default();
        assert_eq!(
            tcp_transfer(1, 2 * MS, &mut p),
            TcpFate::ConnectTimedOut { retransmits: 0 }
        );
    }

    #[test]
    fn tcp_message_waits_for_its_slowest_segment() {
        // Three segments: the first through, the second lost twice, the third lost once.
        let mut p = Script::losing(&[false, false, false, true, true, false, true, false]);
        assert_eq!(
            tcp_transfer(3, TIMEOUT, &mut p),
            delivered(3 * MS + DATA_RTO * 3, 3)
        );
    }

    #[test]
    fn tcp_gives_up_after_its_data_retries() {
        let mut losses = vec![false, false];
        losses.extend(std::iter::repeat_n(true, DATA_RETRIES as usize + 1));
        let mut p = Script::losing(&losses);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            TcpFate::GaveUp {
                retransmits: u64::from(DATA_RETRIES)
            }
        );
        // One loss fewer: delivered, after every timeout: 0.2 s doubling to 102.4 s (ten of
        // them), then five at the cap.
        let mut p = Script::losing(&losses[..losses.len() - 1]);
        assert_eq!(
            tcp_transfer(1, TIMEOUT, &mut p),
            delivered(3 * MS + DATA_RTO * 1023 + RTO_MAX * 5, 15)
        );
    }

    #[test]
    fn the_default_reliable_model_stays_out_of_the_trace_and_saved_files() {
        let perfect = NetConfig::default();
        let text = format!("{perfect:?}");
        assert!(text.starts_with("NetConfig { latency: Uniform"), "{text}");
        assert!(!text.contains("reliable"), "{text}");
        assert!(!serde_json::to_string(&perfect)
            .unwrap()
            .contains("reliable"));
        let tcp = NetConfig {
            reliable: ReliableModel::Tcp,
            ..NetConfig::default()
        };
        assert!(format!("{tcp:?}").ends_with(", reliable: Tcp }"));
        let s = serde_json::to_string(&tcp).unwrap();
        assert!(s.contains(r#""reliable":"tcp""#), "{s}");
        assert_eq!(serde_json::from_str::<NetConfig>(&s).unwrap(), tcp);
    }

    #[test]
    fn long_tail_stays_within_bounds_and_has_a_tail() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let l = Latency::long_tail(
            Duration::from_millis(1),
            Duration::from_millis(2),
            1.5,
            Duration::from_millis(500),
        );
        let xs: Vec<Duration> = (0..10_000).map(|_| l.sample(&mut rng)).collect();
        assert!(xs.iter().all(|&d| d >= Duration::from_millis(1)));
        assert!(xs.iter().all(|&d| d <= Duration::from_millis(500)));
        let slow = xs
            .iter()
            .filter(|&&d| d > Duration::from_millis(20))
            .count();
        assert!(
            (50..1000).contains(&slow),
            "a tail: {slow} of 10000 over 20 ms"
        );
        let mut sorted = xs.clone();
        sorted.sort();
        assert!(
            sorted[5000] < Duration::from_millis(4),
            "median {:?}",
            sorted[5000]
        );
    }

    #[test]
    fn node_sets_and_rules_combine() {
        let s = NodeSet::from_nodes(&[0, 3, 64, 200]);
        assert!(s.contains(3) && s.contains(200) && !s.contains(4) && !s.contains(1000));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 64, 200]);
        let mut rules = Rules::default();
        rules.add(Rule {
            id: RuleId(1),
            from: NodeSet::from_nodes(&[0]),
            to: NodeSet::from_nodes(&[1, 2]),
            effect: LinkEffect::lossy(0.5),
        });
        rules.add(Rule {
            id: RuleId(2),
            from: NodeSet::from_nodes(&[0]),
            to: NodeSet::from_nodes(&[1]),
            effect: LinkEffect::lossy(0.5),
        });
        let a = rules.apply(0, 1);
        assert!((a.loss - 0.75).abs() < 1e-9);
        assert!(!a.drop);
        assert_eq!(rules.apply(1, 0).loss, 0.0, "rules are one-way");
        assert_eq!(rules.remove(RuleId(1)), vec![0, 1, 2]);
        assert_eq!(rules.ids(), vec![RuleId(2)]);
    }

    #[test]
    fn net_config_round_trips_through_json() {
        let n = NetConfig {
            latency: Latency::long_tail(
                Duration::from_millis(1),
                Duration::from_millis(3),
                1.5,
                Duration::from_millis(800),
            ),
            duplicate: 0.01,
            ..NetConfig::default()
        };
        let s = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<NetConfig>(&s).unwrap(), n);
        let d: NetConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, NetConfig::default());
    }
}
