//! The simulated network: latency distributions, loss, duplication, reordering, the MTU, and
//! per-link rules (partitions, one-way cuts, lossy or slow links).
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

/// The simulated network as a whole. Per-link rules ([`LinkEffect`]) add to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// One-way latency of every message. Default uniform 1–5 ms.
    pub latency: Latency,
    /// Probability that a datagram is lost, 0.0 ..= 1.0. Reliable messages are never lost
    /// (TCP retransmits), only delayed. Default 0.
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
