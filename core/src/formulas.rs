//! The protocol's size-dependent formulas, in one place and exported: the core schedules by
//! them, and the simulator's bounds and invariants reckon with the same functions instead of
//! copies. `live` is the number of members alive at the failure-detection level (this node
//! included), as [`crate::Node::alive_count`] reports it.

use std::time::Duration;

use crate::config::Config;

/// memberlist's ⌈log10(n + 1)⌉, at least `floor`.
fn log10_ceil(n: usize, floor: u32) -> u32 {
    (((n as f64) + 1.0).log10().ceil() as u32).max(floor)
}

/// How many times an update is piggybacked before it leaves the broadcast queue:
/// `retransmit_mult · max(2, ⌈log10(live + 1)⌉)`. memberlist's factor has no floor of 2; below
/// ten members it sends an update only `retransmit_mult` times, and a member misses it with a
/// probability near e^-mult.
pub fn retransmit_limit(cfg: &Config, live: usize) -> u32 {
    cfg.retransmit_mult * log10_ceil(live, 2)
}

/// The limit for Serf-layer updates (intents, user events, queries): [`retransmit_limit`], but
/// at least what a retransmit multiplier of 4 (the LAN default) gives. They are rare, and unlike
/// a missed membership update no probe ever corrects a missed intent, event or query.
pub fn serf_retransmit_limit(cfg: &Config, live: usize) -> u32 {
    let limit = retransmit_limit(cfg, live);
    limit.max(limit / cfg.retransmit_mult * 4)
}

/// Time between two periodic push-pull exchanges: `push_pull_interval`, stretched by
/// `⌈log2 n − 5⌉ + 1` once more than 32 members are live (memberlist's push-pull scale).
pub fn push_pull_period(cfg: &Config, live: usize) -> Duration {
    let mut period = cfg.push_pull_interval;
    if live > 32 {
        let mult = ((live as f64).log2() - 5.0).ceil().max(0.0) as u32 + 1;
        period *= mult;
    }
    period
}

/// Lifeguard's suspicion bounds for a cluster of `live` members: the shortest timeout
/// `suspicion_mult · max(1, log10 n) · probe_interval` (`suspicion_unit · max(2, log10 n)` when
/// `suspicion_unit` is set), the longest (`suspicion_max_timeout_mult`
/// times that), and the independent confirmations `k` that shrink a suspicion to the shortest
/// (`suspicion_confirmations`, by default `suspicion_mult − 2`; none in clusters too small to
/// give them).
pub fn suspicion_bounds(cfg: &Config, live: usize) -> (Duration, Duration, u32) {
    let log = (live.max(1) as f64).log10();
    let min = match cfg.suspicion_unit {
        Some(unit) => unit.mul_f64(log.max(2.0)),
        None => cfg
            .probe_interval
            .mul_f64(cfg.suspicion_mult as f64 * log.max(1.0)),
    };
    let max = min * cfg.suspicion_max_timeout_mult;
    let mut k = cfg
        .suspicion_confirmations
        .unwrap_or(cfg.suspicion_mult.saturating_sub(2));
    if (live as u64) < k as u64 + 2 {
        k = 0;
    }
    (min, max, k)
}

/// A query's default timeout: `gossip_interval · query_timeout_mult · ⌈log10(live + 1)⌉`.
pub fn query_timeout(cfg: &Config, live: usize) -> Duration {
    cfg.gossip_interval * cfg.query_timeout_mult * log10_ceil(live, 1)
}

/// How long a view must stay unchanged to count as settled (digest repair waits for it): about
/// the time an update takes to reach the whole cluster by gossip. Each gossip round multiplies
/// the informed members by about `gossip_nodes + 1`, so `⌈log_(fanout+1)(n + 1)⌉ + 1` rounds.
pub fn settle_window(cfg: &Config, live: usize) -> Duration {
    let n = live.max(2) as f64;
    let growth = (cfg.gossip_nodes as f64 + 1.0).log2();
    let rounds = ((n + 1.0).log2() / growth).ceil() as u32 + 1;
    cfg.gossip_interval * rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_the_reference_values() {
        let cfg = Config::memberlist();
        // 4 · max(2, ⌈log10 11⌉ = 2) and 4 · ⌈log10 1001⌉ = 4 · 4.
        assert_eq!(retransmit_limit(&cfg, 10), 8);
        assert_eq!(retransmit_limit(&cfg, 1000), 16);
        assert_eq!(retransmit_limit(&cfg, 2), 8);
        // ⌈log2(100) − 5⌉ + 1 = 3.
        assert_eq!(push_pull_period(&cfg, 32), Duration::from_secs(30));
        assert_eq!(push_pull_period(&cfg, 100), Duration::from_secs(90));
        let (min, max, k) = suspicion_bounds(&cfg, 100);
        assert_eq!(
            (min, max, k),
            (Duration::from_secs(8), Duration::from_secs(48), 2)
        );
        let (min, max, _) = suspicion_bounds(&cfg, 10_000);
        assert_eq!(
            (min, max),
            (Duration::from_secs(16), Duration::from_secs(96))
        );
        // Tiny clusters: log10 floor of 1, and no confirmations expected.
        let (min, _, k) = suspicion_bounds(&cfg, 3);
        assert_eq!((min, k), (Duration::from_secs(4), 0));
        // rookery's LAN profile: 3 s at 100 members (twice the unit below), 4.5 s at 1,000;
        // the longest as memberlist's (48 s, 72 s); three confirmations.
        let lan = Config::lan();
        assert_eq!(
            suspicion_bounds(&lan, 100),
            (Duration::from_secs(3), Duration::from_secs(48), 3)
        );
        assert_eq!(
            suspicion_bounds(&lan, 1000),
            (Duration::from_millis(4500), Duration::from_secs(72), 3)
        );
        assert_eq!(
            suspicion_bounds(&lan, 4),
            (Duration::from_secs(3), Duration::from_secs(48), 0)
        );
        let mut wan = Config::lan();
        wan.retransmit_mult = 2;
        assert_eq!(serf_retransmit_limit(&wan, 10), 8);
        assert_eq!(
            query_timeout(&cfg, 9),
            cfg.gossip_interval * cfg.query_timeout_mult
        );
    }
}
