//! Lamport clocks: the member clock (join and leave intents), the event clock (user events)
//! and the query clock. Witnessing time `t` moves the clock to max(current, t + 1); a clock
//! never goes back.

/// A Lamport clock, as Serf's `LamportClock`: the core keeps three (members, user events,
/// queries; [`crate::Node::clocks`] reads them), and applications may keep their own to order
/// what they gossip (say, in a user event's payload). Starts at 1; witnessing time `t` moves it
/// past `t`; it never goes back, and saturates at `u64::MAX` (a message may move the core's
/// clocks only [`crate::plausible::MAX_LAMPORT_STEP`] at once).
///
/// ```
/// use rookery_core::LamportClock;
///
/// let mut mine = LamportClock::default();
/// let sent = mine.increment(); // stamp something we send
/// let mut theirs = LamportClock::default();
/// theirs.witness(sent); // the receiver moves past it
/// assert!(theirs.time() > sent);
/// ```
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct LamportClock(u64);

impl Default for LamportClock {
    fn default() -> Self {
        LamportClock(1)
    }
}

impl LamportClock {
    /// The current time.
    pub fn time(&self) -> u64 {
        self.0
    }

    /// Advance by one and return the new time.
    pub fn increment(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Another node's time `t` was seen: move past it.
    pub fn witness(&mut self, t: u64) {
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
