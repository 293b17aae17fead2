//! The fault ledger: when each fault started and ended, per node and cluster-wide. Invariants
//! read it to tell a justified verdict (the member was crashed, paused, cut off…) from a false
//! one.

use rookery_core::Timestamp;
use serde::Serialize;
use std::time::Duration;

/// What kind of fault a [`Window`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The node was crashed (until it restarted).
    Crash,
    /// The node was paused (until it resumed).
    Pause,
    /// The node handled its input and timers late.
    Overload,
    /// Some link of the node dropped, lost or delayed messages (a partition, a cut, an
    /// isolation, a link rule).
    CutOff,
    /// The node left the cluster (until it restarted).
    Left,
    /// Datagrams were lost cluster-wide (a nonzero network loss rate).
    Loss,
    /// The node's clock ran at another rate than virtual time.
    Drift,
}

impl FaultKind {
    /// The kinds that can make a healthy protocol declare a member failed: everything except
    /// clock drift, which the protocol must tolerate.
    pub const EXCUSES: &'static [FaultKind] = &[
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Overload,
        FaultKind::CutOff,
        FaultKind::Left,
        FaultKind::Loss,
    ];
}

/// One fault's time span. `end` is [`Timestamp::MAX`] while the fault lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The kind of fault.
    pub kind: FaultKind,
    /// Distinguishes overlapping faults of one kind (a rule id, a node index).
    pub tag: u64,
    /// When it started.
    pub start: Timestamp,
    /// When it ended, or `Timestamp::MAX` while it lasts.
    pub end: Timestamp,
}

impl Window {
    fn covers(&self, t: Timestamp, grace: Duration) -> bool {
        self.start <= t && (self.end == Timestamp::MAX || t <= self.end + grace)
    }
}

/// Where a fault applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One node.
    Node(usize),
    /// Every node.
    All,
}

/// Every fault window of the run.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    nodes: Vec<Vec<Window>>,
    global: Vec<Window>,
    /// The cluster-wide datagram loss rate from each change on: (since, rate).
    loss: Vec<(Timestamp, f64)>,
    /// Force-removes: (member, when).
    removed: Vec<(usize, Timestamp)>,
}

impl Ledger {
    fn list(&mut self, scope: Scope) -> &mut Vec<Window> {
        match scope {
            Scope::Node(i) => {
                if self.nodes.len() <= i {
                    self.nodes.resize_with(i + 1, Vec::new);
                }
                &mut self.nodes[i]
            }
            Scope::All => &mut self.global,
        }
    }

    /// Open a window of `kind`/`tag` at `now`, unless one is open already.
    pub(crate) fn open(&mut self, scope: Scope, kind: FaultKind, tag: u64, now: Timestamp) {
        let list = self.list(scope);
        if list
            .iter()
            .any(|w| w.kind == kind && w.tag == tag && w.end == Timestamp::MAX)
        {
            return;
        }
        list.push(Window {
            kind,
            tag,
            start: now,
            end: Timestamp::MAX,
        });
    }

    /// Close the open window of `kind`/`tag`, if any.
    pub(crate) fn close(&mut self, scope: Scope, kind: FaultKind, tag: u64, now: Timestamp) {
        for w in self.list(scope).iter_mut() {
            if w.kind == kind && w.tag == tag && w.end == Timestamp::MAX {
                w.end = now;
            }
        }
    }

    /// Close every open window of `kind` in `scope`.
    pub(crate) fn close_kind(&mut self, scope: Scope, kind: FaultKind, now: Timestamp) {
        for w in self.list(scope).iter_mut() {
            if w.kind == kind && w.end == Timestamp::MAX {
                w.end = now;
            }
        }
    }

    /// Record the cluster-wide datagram loss rate from `now` on.
    pub(crate) fn record_loss(&mut self, now: Timestamp, rate: f64) {
        if self.loss.last().is_none_or(|&(_, r)| r != rate) {
            self.loss.push((now, rate));
        }
    }

    /// Record that some node force-removed member `i` at `now`.
    pub(crate) fn record_removal(&mut self, i: usize, now: Timestamp) {
        self.removed.push((i, now));
    }

    /// Take the last force-remove out again (the core refused it).
    pub(crate) fn forget_last_removal(&mut self) {
        self.removed.pop();
    }

    /// Whether member `i` was force-removed within `from ..= to`.
    pub fn removed(&self, i: usize, from: Timestamp, to: Timestamp) -> bool {
        self.removed
            .iter()
            .any(|&(m, t)| m == i && from <= t && t <= to)
    }

    /// How long, within `from ..= to`, the cluster-wide datagram loss rate was at least
    /// `rate`.
    pub fn loss_at_least(&self, rate: f64, from: Timestamp, to: Timestamp) -> Duration {
        let mut total = Duration::ZERO;
        for (k, &(since, r)) in self.loss.iter().enumerate() {
            let until = self.loss.get(k + 1).map_or(Timestamp::MAX, |&(t, _)| t);
            if r >= rate && r > 0.0 {
                let (a, b) = (since.max(from), until.min(to));
                if a < b {
                    total += b.saturating_since(a);
                }
            }
        }
        total
    }

    /// Whether node `i` had a window of one of `kinds` that started within `from ..= to`
    /// (its own; with `global`, cluster-wide ones too).
    pub fn started(
        &self,
        i: usize,
        from: Timestamp,
        to: Timestamp,
        kinds: &[FaultKind],
        global: bool,
    ) -> bool {
        let g: &[Window] = if global { &self.global } else { &[] };
        self.node(i)
            .iter()
            .chain(g)
            .any(|w| kinds.contains(&w.kind) && from <= w.start && w.start <= to)
    }

    /// Windows of node `i` (not the cluster-wide ones).
    pub fn node(&self, i: usize) -> &[Window] {
        self.nodes.get(i).map_or(&[], Vec::as_slice)
    }

    /// Cluster-wide windows.
    pub fn global(&self) -> &[Window] {
        &self.global
    }

    /// Whether, at `t`, node `i` is within a window of one of `kinds` (or within `grace`
    /// after its end), its own or a cluster-wide one.
    pub fn excused(&self, i: usize, t: Timestamp, grace: Duration, kinds: &[FaultKind]) -> bool {
        self.node(i)
            .iter()
            .chain(self.global.iter())
            .any(|w| kinds.contains(&w.kind) && w.covers(t, grace))
    }

    /// Whether node `i` had a window of one of `kinds` overlapping `from ..= to`.
    pub fn touched(&self, i: usize, from: Timestamp, to: Timestamp, kinds: &[FaultKind]) -> bool {
        self.node(i)
            .iter()
            .any(|w| kinds.contains(&w.kind) && w.start <= to && w.end >= from)
    }

    /// When the last window of the run ended (`Timestamp::MAX` if one is still open), or
    /// `None` without faults.
    pub fn last_end(&self) -> Option<Timestamp> {
        self.nodes
            .iter()
            .flatten()
            .chain(self.global.iter())
            .map(|w| w.end)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_open_close_and_excuse_with_grace() {
        let mut l = Ledger::default();
        let t = Timestamp::from_secs;
        l.open(Scope::Node(2), FaultKind::Pause, 0, t(10));
        l.open(Scope::Node(2), FaultKind::Pause, 0, t(11));
        assert_eq!(l.node(2).len(), 1, "an open window is not opened twice");
        let g = Duration::from_secs(5);
        assert!(!l.excused(2, t(9), g, FaultKind::EXCUSES));
        assert!(l.excused(2, t(100), g, FaultKind::EXCUSES), "still open");
        l.close(Scope::Node(2), FaultKind::Pause, 0, t(20));
        assert!(l.excused(2, t(25), g, FaultKind::EXCUSES));
        assert!(!l.excused(2, t(26), g, FaultKind::EXCUSES));
        assert!(!l.excused(2, t(15), g, &[FaultKind::Crash]));
        l.open(Scope::All, FaultKind::Loss, 0, t(30));
        assert!(l.excused(7, t(31), g, FaultKind::EXCUSES));
        assert!(l.touched(2, t(0), t(10), &[FaultKind::Pause]));
        assert!(!l.touched(2, t(21), t(29), &[FaultKind::Pause]));
        assert_eq!(l.last_end(), Some(Timestamp::MAX));
        l.close_kind(Scope::All, FaultKind::Loss, t(40));
        assert_eq!(l.last_end(), Some(t(40)));
    }

    #[test]
    fn loss_rates_and_removals_are_remembered() {
        let mut l = Ledger::default();
        let t = Timestamp::from_secs;
        l.record_loss(t(0), 0.0);
        l.record_loss(t(10), 0.05);
        l.record_loss(t(20), 0.3);
        l.record_loss(t(30), 0.0);
        assert_eq!(l.loss_at_least(0.1, t(0), t(100)), Duration::from_secs(10));
        assert_eq!(
            l.loss_at_least(0.01, t(15), t(100)),
            Duration::from_secs(15)
        );
        assert_eq!(l.loss_at_least(0.5, t(0), t(100)), Duration::ZERO);
        l.record_removal(3, t(5));
        assert!(l.removed(3, t(0), t(5)));
        assert!(!l.removed(3, t(6), t(9)));
        assert!(!l.removed(2, t(0), t(9)));
        l.open(Scope::Node(1), FaultKind::Crash, 0, t(7));
        assert!(l.started(1, t(7), t(8), &[FaultKind::Crash], false));
        assert!(!l.started(1, t(8), t(9), &[FaultKind::Crash], false));
    }
}
