//! Per-node clocks for clock drift. A drifting node's timestamps run `rate` times as fast as
//! virtual time; changing the rate re-anchors the clock at the current instant, so a node's
//! time never jumps and never runs backwards.

use rookery_core::Timestamp;

/// Rates are parts per million of virtual time: 1,000,000 is an exact clock.
pub(crate) const EXACT: u64 = 1_000_000;

/// A node's local clock: `local = local_anchor + (sim − sim_anchor) · rate / 10⁶`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clock {
    sim_anchor: u64,
    local_anchor: u64,
    rate_ppm: u64,
}

impl Clock {
    /// A clock showing `sim` now and running at `rate_ppm` from now on.
    pub(crate) fn new(sim: Timestamp, rate_ppm: u64) -> Clock {
        Clock {
            sim_anchor: sim.as_micros(),
            local_anchor: sim.as_micros(),
            rate_ppm: rate_ppm.max(1),
        }
    }

    pub(crate) fn rate_ppm(&self) -> u64 {
        self.rate_ppm
    }

    /// The local time at virtual time `sim` (not earlier than the anchor).
    pub(crate) fn local(&self, sim: Timestamp) -> Timestamp {
        let d = sim.as_micros().saturating_sub(self.sim_anchor) as u128;
        let l = d * self.rate_ppm as u128 / EXACT as u128;
        Timestamp::from_micros(
            self.local_anchor
                .saturating_add(u64::try_from(l).unwrap_or(u64::MAX)),
        )
    }

    /// The earliest virtual time at which the local clock shows at least `local`.
    pub(crate) fn sim_time(&self, local: Timestamp) -> Timestamp {
        let l = local.as_micros();
        if l <= self.local_anchor {
            return Timestamp::from_micros(self.sim_anchor);
        }
        let d = (l - self.local_anchor) as u128 * EXACT as u128;
        let s = d.div_ceil(self.rate_ppm as u128);
        Timestamp::from_micros(
            self.sim_anchor
                .saturating_add(u64::try_from(s).unwrap_or(u64::MAX)),
        )
    }

    /// Run at `rate_ppm` from virtual time `sim` on, continuing from the current local time.
    pub(crate) fn retune(&mut self, sim: Timestamp, rate_ppm: u64) {
        self.local_anchor = self.local(sim).as_micros();
        self.sim_anchor = sim.as_micros();
        self.rate_ppm = rate_ppm.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_monotonic_and_inverts() {
        let mut c = Clock::new(Timestamp::from_secs(10), 1_500_000);
        assert_eq!(c.local(Timestamp::from_secs(10)), Timestamp::from_secs(10));
        assert_eq!(c.local(Timestamp::from_secs(12)), Timestamp::from_secs(13));
        assert_eq!(
            c.sim_time(Timestamp::from_secs(13)),
            Timestamp::from_secs(12)
        );
        for l in [10_000_001u64, 11_234_567, 99_999_999] {
            let s = c.sim_time(Timestamp::from_micros(l));
            assert!(c.local(s).as_micros() >= l);
            assert!(
                c.local(Timestamp::from_micros(s.as_micros() - 1))
                    .as_micros()
                    < l
            );
        }
        c.retune(Timestamp::from_secs(12), 500_000);
        assert_eq!(c.local(Timestamp::from_secs(12)), Timestamp::from_secs(13));
        assert_eq!(c.local(Timestamp::from_secs(14)), Timestamp::from_secs(14));
        let mut last = Timestamp::ZERO;
        for s in (12_000_000..20_000_000u64).step_by(7_777) {
            let l = c.local(Timestamp::from_micros(s));
            assert!(l >= last);
            last = l;
        }
    }
}
