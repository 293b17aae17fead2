//! The node's internal timer queue: every protocol deadline (probe tick, probe timeout, gossip,
//! push-pull, suspicion, relay, join and leave deadlines) as data in one min-heap. Timers are
//! never removed early: a handler checks that the timer is still current when it fires (lazy
//! cancellation), so a stale entry costs at most one spurious wake-up.

use crate::dissemination::DissTimer;
use crate::lifecycle::LifeTimer;
use crate::serf::SerfTimer;
use crate::swim::SwimTimer;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Timestamp;

/// What a timer is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// The failure detector's timers (see [`SwimTimer`]).
    Swim(SwimTimer),
    /// Dissemination's timers (see [`DissTimer`]).
    Dissemination(DissTimer),
    /// The lifecycle's timers (see [`LifeTimer`]).
    Lifecycle(LifeTimer),
    /// The Serf layer's timers (see [`SerfTimer`]).
    Serf(SerfTimer),
}

/// A min-heap of (deadline, insertion order, kind); ties fire in insertion order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Timestamp, u64, TimerKind)>>,
    next: u64,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Timestamp, kind: TimerKind) {
        self.next += 1;
        self.heap.push(Reverse((at, self.next, kind)));
    }

    /// The earliest deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// A mark of the timers scheduled so far, for [`Timers::pop_due`].
    pub(crate) fn mark(&self) -> u64 {
        self.next
    }

    /// Remove and return the earliest timer due at or before `now` that was scheduled before
    /// `mark` was taken. Timers scheduled after the mark wait for the next call, so a handler
    /// that re-arms at `now` (time saturates at [`Timestamp::MAX`]) cannot loop forever.
    pub(crate) fn pop_due(&mut self, now: Timestamp, mark: u64) -> Option<TimerKind> {
        match self.heap.peek() {
            Some(Reverse((at, seq, _))) if *at <= now && *seq <= mark => {
                self.heap.pop().map(|Reverse((_, _, k))| k)
            }
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_then_insertion_order() {
        let mut t = Timers::default();
        t.schedule(
            Timestamp::from_millis(20),
            TimerKind::Dissemination(DissTimer::GossipTick),
        );
        t.schedule(
            Timestamp::from_millis(10),
            TimerKind::Swim(SwimTimer::ProbeTick),
        );
        t.schedule(
            Timestamp::from_millis(10),
            TimerKind::Dissemination(DissTimer::PushPullTick { generation: 0 }),
        );
        assert_eq!(t.next_deadline(), Some(Timestamp::from_millis(10)));
        let m = t.mark();
        assert_eq!(t.pop_due(Timestamp::from_millis(5), m), None);
        assert_eq!(
            t.pop_due(Timestamp::from_millis(15), m),
            Some(TimerKind::Swim(SwimTimer::ProbeTick))
        );
        assert_eq!(
            t.pop_due(Timestamp::from_millis(15), m),
            Some(TimerKind::Dissemination(DissTimer::PushPullTick {
                generation: 0
            }))
        );
        assert_eq!(t.pop_due(Timestamp::from_millis(15), m), None);
        assert_eq!(t.len(), 1);
        // A timer scheduled after the mark waits, even when due.
        t.schedule(
            Timestamp::from_millis(1),
            TimerKind::Dissemination(DissTimer::GossipTick),
        );
        assert_eq!(t.pop_due(Timestamp::from_millis(15), m), None);
        assert_eq!(
            t.pop_due(Timestamp::from_millis(15), t.mark()),
            Some(TimerKind::Dissemination(DissTimer::GossipTick))
        );
        t.clear();
        assert_eq!(t.next_deadline(), None);
    }
}
