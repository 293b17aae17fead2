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
}
