//! Lamport clocks: the member clock (join and leave intents), the event clock (user events)
//! and the query clock. Witnessing time `t` moves the clock to max(current, t + 1); a clock
//! never goes back.

/// A Lamport clock. Starts at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LamportClock(u64);

impl Default for LamportClock {
    fn default() -> Self {
        LamportClock(1)
    }
}

impl LamportClock {
    /// The current time.
    pub(crate) fn time(&self) -> u64 {
        self.0
    }

    /// Advance by one and return the new time.
    pub(crate) fn increment(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Another node's time `t` was seen: move past it.
    pub(crate) fn witness(&mut self, t: u64) {
        if t >= self.0 {
            self.0 = t.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_moves_past_and_never_back() {
        let mut c = LamportClock::default();
        assert_eq!(c.time(), 1);
        assert_eq!(c.increment(), 2);
        c.witness(10);
        assert_eq!(c.time(), 11);
        c.witness(3);
        assert_eq!(c.time(), 11, "an older time does not move the clock back");
        c.witness(11);
        assert_eq!(c.time(), 12);
        c.witness(u64::MAX);
        assert_eq!(c.time(), u64::MAX, "saturates instead of wrapping");
    }
}
