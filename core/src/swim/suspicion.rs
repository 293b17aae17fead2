//! Lifeguard's dynamic suspicion timeout. A suspicion starts at the longest timeout and shrinks
//! towards the shortest as independent confirmations (suspect messages from other members)
//! arrive: timeout = max(min, max − (max − min) · ln(c + 1) / ln(k + 1)).
//!
//! A suspicion knows who started it (the original accuser) when the news came from a suspect
//! message, or from a push-pull state that names its accuser. When it does not (a dead state
//! learned through push-pull), the first accuser heard of afterwards is taken as the original
//! one, not as a confirmation: only accusations that are certainly independent shorten the
//! timeout.

use crate::identity::Name;
use std::time::Duration;

use super::SwimTimer;
use crate::ctx::Cx;
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::Accusation;

/// Schedule the expiry check of suspicion `generation` of `name` at `deadline`.
pub(crate) fn arm(
    timers: &mut crate::timers::Timers,
    deadline: Timestamp,
    name: Name,
    generation: u32,
) {
    timers.schedule(
        deadline,
        TimerKind::Swim(SwimTimer::Suspicion { name, generation }),
    );
}

/// A suspicion timer fired: if it is still the same suspicion (`generation`) and its
/// (possibly shortened) deadline has passed, the member is to be declared dead — returned as
/// the accusation to apply, and whether to gossip it. A timer for a suspicion that was refuted or replaced does nothing;
/// one that fires before a deadline that moved re-arms itself.
pub(super) fn expire(cx: &mut Cx<'_>, name: &str, generation: u32) -> Option<(Accusation, bool)> {
    let rec = cx.members.get(name)?;
    if rec.suspicion_generation() != Some(generation) {
        return None;
    }
    let deadline = rec.suspicion().map_or(Timestamp::ZERO, |s| s.deadline());
    if deadline > cx.now {
        let name: Name = rec.name.to_name();
        arm(&mut cx.fx.timers, deadline, name, generation);
        return None;
    }
    // With the accusation guard, a suspicion that nobody confirmed although confirmations
    // were expected stays this node's own conclusion: the member is failed here, but the
    // verdict is not gossiped (see [`Verdict::Dead`]).
    let gossip = !(cx.cfg.accusation_guard
        && rec
            .suspicion()
            .is_some_and(|s| s.k > 0 && s.confirmations() == 0));
    if !gossip {
        cx.fx.stats.verdicts_kept_local += 1;
    }
    Some((
        Accusation {
            incarnation: rec.incarnation,
            name: rec.name.to_name(),
            from: cx.me.clone(),
        },
        gossip,
    ))
}

/// One member's suspicion: when it started, its bounds and who confirmed it.
#[derive(Clone, Debug)]
pub(crate) struct Suspicion {
    start: Timestamp,
    min: Duration,
    max: Duration,
    k: u32,
    /// The members that have accused, the original accuser first; empty while the original
    /// accuser is unknown.
    accusers: Vec<Name>,
}

impl Suspicion {
    /// A suspicion started by `from` (`None`: the original accuser is unknown).
    pub(crate) fn new(
        from: Option<Name>,
        start: Timestamp,
        min: Duration,
        max: Duration,
        k: u32,
    ) -> Suspicion {
        Suspicion {
            start,
            min,
            max,
            k,
            accusers: from.into_iter().collect(),
        }
    }

    /// The member that started the suspicion, when known.
    pub(crate) fn accuser(&self) -> Option<&Name> {
        self.accusers.first()
    }

    /// Independent confirmations so far (accusers other than the original one).
    pub(crate) fn confirmations(&self) -> u32 {
        self.accusers.len().saturating_sub(1) as u32
    }

    /// The current timeout.
    pub(crate) fn timeout(&self) -> Duration {
        if self.k == 0 {
            return self.min;
        }
        let c = self.confirmations().min(self.k) as f64;
        let frac = (c + 1.0).ln() / (self.k as f64 + 1.0).ln();
        let shrink = (self.max - self.min).mul_f64(frac);
        (self.max - shrink).max(self.min)
    }

    /// When the suspected member is declared failed unless it refutes.
    pub(crate) fn deadline(&self) -> Timestamp {
        self.start + self.timeout()
    }

    /// Record an accusation from `from`. True when it is a new independent confirmation that
    /// still shortens the timeout (and so is worth re-gossiping). While the original accuser
    /// is unknown, the first accuser heard of is taken as the original one.
    pub(crate) fn confirm(&mut self, from: &str) -> bool {
        if self.accusers.is_empty() {
            self.accusers.push(Name::new(from));
            return false;
        }
        if self.confirmations() >= self.k || self.accusers.iter().any(|a| &**a == from) {
            return false;
        }
        self.accusers.push(Name::new(from));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_shrinks_with_confirmations() {
        let min = Duration::from_secs(8);
        let max = Duration::from_secs(48);
        let t0 = Timestamp::from_secs(100);
        let mut s = Suspicion::new(Some("a".into()), t0, min, max, 2);
        assert_eq!(s.deadline(), t0 + max);
        assert!(!s.confirm("a"), "the first accuser does not confirm itself");
        assert!(s.confirm("b"));
        let one = s.timeout();
        assert!(one < max && one > min, "{one:?}");
        assert!(!s.confirm("b"), "same accuser twice");
        assert!(s.confirm("c"));
        assert_eq!(s.timeout(), min);
        assert!(!s.confirm("d"), "k reached: nothing more to gain");
        let s0 = Suspicion::new(Some("a".into()), t0, min, max, 0);
        assert_eq!(s0.timeout(), min);
    }

    #[test]
    fn an_unknown_original_accuser_is_not_confused_with_a_confirmation() {
        let min = Duration::from_secs(3);
        let max = Duration::from_secs(18);
        let t0 = Timestamp::from_secs(1);
        let mut s = Suspicion::new(None, t0, min, max, 1);
        assert_eq!(s.accuser(), None);
        assert_eq!(s.timeout(), max);
        assert!(
            !s.confirm("b"),
            "the first accuser heard of may be the original one"
        );
        assert_eq!(s.accuser().map(|n| &**n), Some("b"));
        assert_eq!((s.confirmations(), s.timeout()), (0, max));
        assert!(s.confirm("c"));
        assert_eq!((s.confirmations(), s.timeout()), (1, min));
    }
}
