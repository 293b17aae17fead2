//! Invariants checked as the run goes. Each has a name that a failure report prints.
//!
//! An invariant is any type implementing [`Invariant`]: the simulator shows it every input a
//! node handled ([`Invariant::on_input`]) and every event a node emitted
//! ([`Invariant::on_event`]), with a read-only [`Context`] (every node, its life-cycle state,
//! the fault ledger). The liveness phase waits until every invariant is
//! [settled](Invariant::settled), and [`Invariant::at_end`] runs after it.
//!
//! The standard set ([`standard`]):
//!
//! | name | what must hold |
//! |---|---|
//! | `no-false-failure` | a member is declared failed only if it was crashed, paused, overloaded, cut off (partition, cut, isolation, lossy or slow link), gone, or datagrams were being lost — during the fault or within [`verdict_grace`] after it ([`NoFalseFailure`]) |
//! | `incarnation-monotonic` | no node's view of a member's incarnation ever goes down (per life of the observer) ([`IncarnationMonotonic`]) |
//! | `no-self-failure` | no node sees itself suspect or failed ([`NoSelfFailure`]) |
//! | `queue-bounds` | broadcast queue, member table, transmits and events per input stay within the configured bounds ([`QueueBounds`]) |
//!
//! Building blocks for more: [`Monotonic`] (a per-node counter never decreases — Lamport
//! clocks, once the Serf layer has them) and [`ExactlyOnce`] (a keyed event reaches every node
//! that stays up, exactly once — user events). Each is one line to add:
//!
//! ```
//! use rookery_core::Event;
//! use rookery_sim::invariant::{ExactlyOnce, Monotonic};
//! # let mut sim = rookery_sim::Sim::new(1, Default::default());
//! sim.add_invariant(Box::new(Monotonic::new("own-incarnation-monotonic", |n| {
//!     n.local_member().incarnation as u64
//! })));
//! sim.add_invariant(Box::new(ExactlyOnce::new("first-join-exactly-once", |e: &Event| {
//!     match e {
//!         Event::MemberJoined(m) if m.incarnation == 0 => Some(m.name.to_string()),
//!         _ => None,
//!     }
//! })));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use rookery_core::{Config, Event, MemberStatus, Name, Node, Timestamp};

use crate::ledger::{FaultKind, Ledger};
use crate::sim::{NodeState, Nodes};

/// What an input made a node produce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Transmits drained after the input.
    pub transmits: usize,
    /// Events drained after the input.
    pub events: usize,
}

/// A read-only view of the simulation for invariants.
pub struct Context<'a> {
    now: Timestamp,
    nodes: &'a Nodes,
    ledger: &'a Ledger,
    names: &'a HashMap<Name, usize>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        now: Timestamp,
        nodes: &'a Nodes,
        ledger: &'a Ledger,
        names: &'a HashMap<Name, usize>,
    ) -> Context<'a> {
        Context {
            now,
            nodes,
            ledger,
            names,
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s protocol state.
    pub fn node(&self, i: usize) -> &'a Node {
        &self.nodes[i].node
    }

    /// Node `i`'s life-cycle state.
    pub fn state(&self, i: usize) -> NodeState {
        self.nodes[i].state()
    }

    /// How many times node `i` was restarted.
    pub fn life(&self, i: usize) -> u32 {
        self.nodes[i].life
    }

    /// When node `i`'s current life started.
    pub fn started(&self, i: usize) -> Timestamp {
        self.nodes[i].started
    }

    /// Node `i`'s configuration.
    pub fn config(&self, i: usize) -> &'a Config {
        &self.nodes[i].config
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &'a str {
        &self.nodes[i].identity.name
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.get(name).copied()
    }

    /// The fault ledger.
    pub fn ledger(&self) -> &'a Ledger {
        self.ledger
    }

    /// Messages waiting in node `i`'s pause backlog.
    pub fn backlog_len(&self, i: usize) -> usize {
        self.nodes[i].backlog_len()
    }
}

/// A property checked as the run goes. Return `Err(detail)` when it is violated; the
/// simulator records a [`Violation`] with the invariant's name, the time and the node.
pub trait Invariant {
    /// The name failure reports print.
    fn name(&self) -> &'static str;

    /// Node `node` handled an input (a datagram, a stream message, a timer, an API call) and
    /// produced `out`.
    fn on_input(&mut self, cx: &Context<'_>, node: usize, out: &Output) -> Result<(), String> {
        let _ = (cx, node, out);
        Ok(())
    }

    /// Node `node` emitted `event`.
    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        let _ = (cx, node, event);
        Ok(())
    }

    /// Whether every obligation is met (the liveness phase waits for it).
    fn settled(&self, cx: &Context<'_>) -> bool {
        let _ = cx;
        true
    }

    /// Called once after the liveness phase.
    fn at_end(&mut self, cx: &Context<'_>) -> Result<(), String> {
        let _ = cx;
        Ok(())
    }
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// Virtual time of the violation.
    pub at: Timestamp,
    /// The node it was seen at, if any.
    pub node: Option<usize>,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant `{}` violated at {}", self.invariant, self.at)?;
        if let Some(n) = self.node {
            write!(f, " on node {n}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for Violation {}

/// At most this many violations are kept (per invariant: [`MAX_PER_INVARIANT`]).
pub const MAX_VIOLATIONS: usize = 100;
/// At most this many violations of one invariant are kept.
pub const MAX_PER_INVARIANT: usize = 10;

/// The invariants of one simulation and what they found.
#[derive(Default)]
pub(crate) struct Checks {
    invariants: Vec<(Box<dyn Invariant>, usize)>,
    violations: Vec<Violation>,
}

impl Checks {
    pub(crate) fn add(&mut self, inv: Box<dyn Invariant>) {
        self.invariants.push((inv, 0));
    }

    pub(crate) fn names(&self) -> Vec<&'static str> {
        self.invariants.iter().map(|(i, _)| i.name()).collect()
    }

    pub(crate) fn violations(&self) -> &[Violation] {
        &self.violations
    }

    fn record(
        violations: &mut Vec<Violation>,
        count: &mut usize,
        name: &'static str,
        at: Timestamp,
        node: Option<usize>,
        r: Result<(), String>,
    ) {
        if let Err(detail) = r {
            *count += 1;
            if *count <= MAX_PER_INVARIANT && violations.len() < MAX_VIOLATIONS {
                violations.push(Violation {
                    invariant: name,
                    at,
                    node,
                    detail,
                });
            }
        }
    }

    pub(crate) fn on_input(&mut self, cx: &Context<'_>, node: usize, out: &Output) {
        for (inv, count) in &mut self.invariants {
            let r = inv.on_input(cx, node, out);
            Self::record(
                &mut self.violations,
                count,
                inv.name(),
                cx.now,
                Some(node),
                r,
            );
        }
    }

    pub(crate) fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) {
        for (inv, count) in &mut self.invariants {
            let r = inv.on_event(cx, node, event);
            Self::record(
                &mut self.violations,
                count,
                inv.name(),
                cx.now,
                Some(node),
                r,
            );
        }
    }

    pub(crate) fn settled(&self, cx: &Context<'_>) -> bool {
        self.invariants.iter().all(|(i, _)| i.settled(cx))
    }

    pub(crate) fn at_end(&mut self, cx: &Context<'_>) {
        for (inv, count) in &mut self.invariants {
            let r = inv.at_end(cx);
            Self::record(&mut self.violations, count, inv.name(), cx.now, None, r);
        }
    }
}

/// The standard invariants: [`NoFalseFailure`], [`IncarnationMonotonic`], [`NoSelfFailure`],
/// [`QueueBounds`].
pub fn standard() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(NoFalseFailure::default()),
        Box::new(IncarnationMonotonic::default()),
        Box::new(NoSelfFailure),
        Box::new(QueueBounds),
    ]
}

/// The longest a healthy cluster may take, after every fault has healed, until every live
/// node's view is right — derived from the configuration:
///
/// - until some node probes a crashed member: `probe_interval · (awareness_max_multiplier +
///   min(n, 16))` (health-scaled probe intervals, round-robin order);
/// - the longest suspicion timeout: `suspicion_mult · max(1, log10 n) · probe_interval ·
///   suspicion_max_timeout_mult`;
/// - dissemination: `gossip_interval · retransmit_mult · max(2, ceil(log10(n + 1)))`;
/// - one push-pull period (stretched for n > 32) for anti-entropy;
/// - two `tcp_timeout`s (joins and reconnects that hit dead nodes).
///
/// The liveness phase adds the reconnect interval when it stands in for Serf's reconnect.
pub fn liveness_bound(cfg: &Config, n: usize) -> Duration {
    let n = n.max(2);
    let (_, susp_max, _) = rookery_core::formulas::suspicion_bounds(cfg, n);
    let first_probe = cfg.probe_interval * (cfg.awareness_max_multiplier + n.min(16) as u32);
    let dissemination = cfg.gossip_interval * rookery_core::formulas::retransmit_limit(cfg, n);
    let push_pull = rookery_core::formulas::push_pull_period(cfg, n);
    first_probe + susp_max + dissemination + push_pull + cfg.tcp_timeout * 2
}

/// How long after a fault ended a failed verdict it caused may still arrive: the longest
/// suspicion timeout (a suspicion started just before the fault ended), the worst
/// health-scaled probe interval, one dissemination round of the verdict, and a
/// `tcp_timeout`.
pub fn verdict_grace(cfg: &Config, n: usize) -> Duration {
    let n = n.max(2);
    let (_, susp_max, _) = rookery_core::formulas::suspicion_bounds(cfg, n);
    susp_max
        + cfg.probe_interval * cfg.awareness_max_multiplier
        + cfg.gossip_interval * rookery_core::formulas::retransmit_limit(cfg, n)
        + cfg.tcp_timeout
}

/// `no-false-failure`: a [`Event::MemberFailed`] verdict about a member that is up and was
/// never crashed, paused, overloaded, cut off, gone, nor exposed to datagram loss — neither
/// at the time nor within [`verdict_grace`] before — is a violation. Clock drift is not an
/// excuse: the protocol must tolerate it.
///
/// Two refinements:
/// - a verdict reached by an observer that was itself paused or overloaded (within the
///   grace) is excused — a late observer acts on stale news, like a "member failed" message
///   that waited in its backlog while the member has long since refuted. The same verdict
///   spreading to healthy observers is still judged;
/// - a verdict that echoes a justified one is excused: the member had an excusing fault
///   once, and some other running node still holds it failed (the cluster has not yet
///   learned that it is back — after a long partition, until something reconnects the
///   halves). A verdict about a member that never had a fault is judged however many
///   nodes already share it.
#[derive(Clone, Debug)]
pub struct NoFalseFailure {
    kinds: Vec<FaultKind>,
}

impl Default for NoFalseFailure {
    fn default() -> Self {
        NoFalseFailure {
            kinds: FaultKind::EXCUSES.to_vec(),
        }
    }
}

impl NoFalseFailure {
    /// The same check with another set of excusing fault kinds.
    pub fn excusing(kinds: &[FaultKind]) -> NoFalseFailure {
        NoFalseFailure {
            kinds: kinds.to_vec(),
        }
    }
}

impl Invariant for NoFalseFailure {
    fn name(&self) -> &'static str {
        "no-false-failure"
    }

    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        let Event::MemberFailed(m) = event else {
            return Ok(());
        };
        let Some(x) = cx.index_of(&m.name) else {
            return Ok(());
        };
        if cx.state(x) != NodeState::Up {
            return Ok(());
        }
        let grace = verdict_grace(cx.config(node), cx.len());
        if cx.ledger().excused(x, cx.now(), grace, &self.kinds) {
            return Ok(());
        }
        let late = [FaultKind::Pause, FaultKind::Overload];
        if cx.ledger().excused(node, cx.now(), grace, &late) {
            return Ok(());
        }
        let had_fault = cx
            .ledger()
            .touched(x, Timestamp::ZERO, cx.now(), &self.kinds)
            || cx
                .ledger()
                .global()
                .iter()
                .any(|w| self.kinds.contains(&w.kind));
        let echo = had_fault
            && (0..cx.len()).any(|p| {
                p != node
                    && p != x
                    && cx.state(p) == NodeState::Up
                    && cx
                        .node(p)
                        .member(&m.name)
                        .is_some_and(|v| v.status == MemberStatus::Failed)
            });
        if echo {
            return Ok(());
        }
        Err(format!(
            "{} declared {} failed (incarnation {}), though it was never crashed, paused, \
             overloaded, cut off or gone",
            cx.name(node),
            m.name,
            m.incarnation
        ))
    }
}

/// `incarnation-monotonic`: a node's view of a member's incarnation never goes down, for as
/// long as the node lives (a restarted node starts a fresh view) and the member stays in its
/// table.
#[derive(Clone, Debug, Default)]
pub struct IncarnationMonotonic {
    seen: Vec<(u32, HashMap<Name, u32>)>,
}

impl Invariant for IncarnationMonotonic {
    fn name(&self) -> &'static str {
        "incarnation-monotonic"
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, _: &Output) -> Result<(), String> {
        if self.seen.len() <= node {
            self.seen.resize_with(node + 1, Default::default);
        }
        let (life, map) = &mut self.seen[node];
        if *life != cx.life(node) {
            *life = cx.life(node);
            map.clear();
        }
        let mut err = None;
        for m in cx.node(node).members() {
            match map.get_mut(&m.name) {
                Some(v) => {
                    if m.incarnation < *v && err.is_none() {
                        err = Some(format!(
                            "{}'s view of {} went from incarnation {} to {}",
                            cx.name(node),
                            m.name,
                            v,
                            m.incarnation
                        ));
                    }
                    *v = m.incarnation;
                }
                None => {
                    map.insert(m.name, m.incarnation);
                }
            }
        }
        err.map_or(Ok(()), Err)
    }
}

/// `no-self-failure`: no node sees itself suspect or failed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSelfFailure;

impl Invariant for NoSelfFailure {
    fn name(&self) -> &'static str {
        "no-self-failure"
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, _: &Output) -> Result<(), String> {
        let me = cx.node(node).local_member();
        match me.status {
            MemberStatus::Failed | MemberStatus::Suspect => Err(format!(
                "{} sees itself as {:?} at incarnation {}",
                me.name, me.status, me.incarnation
            )),
            _ => Ok(()),
        }
    }
}

/// `queue-bounds`: after every input, the broadcast queue and the member table are within
/// `max_broadcast_queue` and `max_members`, and the transmits and events the input produced
/// within `max_pending_transmits` and `max_pending_events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueBounds;

impl Invariant for QueueBounds {
    fn name(&self) -> &'static str {
        "queue-bounds"
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, out: &Output) -> Result<(), String> {
        let n = cx.node(node);
        let cfg = cx.config(node);
        let checks = [
            (
                "broadcast queue",
                n.broadcast_queue_len(),
                cfg.max_broadcast_queue,
            ),
            ("member table", n.num_members(), cfg.max_members),
            ("transmits", out.transmits, cfg.max_pending_transmits),
            ("events", out.events, cfg.max_pending_events),
        ];
        for (what, len, max) in checks {
            if len > max {
                return Err(format!("{} {what} holds {len}, bound {max}", cx.name(node)));
            }
        }
        Ok(())
    }
}

/// A per-node number that must never decrease during one life of the node (it may restart
/// from anything after a restart). For Lamport clocks once the Serf layer has them:
/// `Monotonic::new("event-clock-monotonic", |n| n.event_clock())`.
pub struct Monotonic<F> {
    name: &'static str,
    read: F,
    last: Vec<Option<(u32, u64)>>,
}

impl<F: Fn(&Node) -> u64> Monotonic<F> {
    /// Check that `read(node)` never decreases; reported under `name`.
    pub fn new(name: &'static str, read: F) -> Monotonic<F> {
        Monotonic {
            name,
            read,
            last: Vec::new(),
        }
    }
}

impl<F: Fn(&Node) -> u64> Invariant for Monotonic<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, _: &Output) -> Result<(), String> {
        if self.last.len() <= node {
            self.last.resize(node + 1, None);
        }
        let v = (self.read)(cx.node(node));
        let life = cx.life(node);
        let prev = self.last[node].replace((life, v));
        match prev {
            Some((l, p)) if l == life && v < p => {
                Err(format!("{}: went from {p} to {v}", cx.name(node)))
            }
            _ => Ok(()),
        }
    }
}

/// Keyed events (e.g. user events, keyed by Lamport time and name) must reach every node that
/// stays up, each exactly once per life of the node. A node must have a key when its current
/// life began before the key was first emitted anywhere and it has not crashed, paused or
/// left since. A second delivery is a violation at once; a missing one is reported by
/// [`Invariant::at_end`], and the liveness phase waits until none is missing.
pub struct ExactlyOnce<K, F> {
    name: &'static str,
    key: F,
    first: HashMap<K, Timestamp>,
    got: HashMap<(K, usize, u32), u32>,
}

impl<K, F> ExactlyOnce<K, F>
where
    K: Clone + Eq + Hash + fmt::Debug,
    F: Fn(&Event) -> Option<K>,
{
    /// Events for which `key` returns `Some(k)` must each reach every node exactly once.
    pub fn new(name: &'static str, key: F) -> ExactlyOnce<K, F> {
        ExactlyOnce {
            name,
            key,
            first: HashMap::new(),
            got: HashMap::new(),
        }
    }

    /// (key, node) pairs still owed, sorted by node.
    fn owed(&self, cx: &Context<'_>) -> Vec<(K, usize)> {
        let mut out = Vec::new();
        for (k, &t) in &self.first {
            for i in 0..cx.len() {
                let must = cx.state(i) == NodeState::Up
                    && cx.started(i) <= t
                    && !cx.ledger().touched(
                        i,
                        t,
                        cx.now(),
                        &[FaultKind::Crash, FaultKind::Pause, FaultKind::Left],
                    );
                if must && !self.got.contains_key(&(k.clone(), i, cx.life(i))) {
                    out.push((k.clone(), i));
                }
            }
        }
        out.sort_by_key(|(_, i)| *i);
        out
    }
}

impl<K, F> Invariant for ExactlyOnce<K, F>
where
    K: Clone + Eq + Hash + fmt::Debug,
    F: Fn(&Event) -> Option<K>,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        let Some(k) = (self.key)(event) else {
            return Ok(());
        };
        self.first.entry(k.clone()).or_insert(cx.now());
        let c = self
            .got
            .entry((k.clone(), node, cx.life(node)))
            .or_insert(0);
        *c += 1;
        if *c > 1 {
            return Err(format!("{} received {k:?} {} times", cx.name(node), c));
        }
        Ok(())
    }

    fn settled(&self, cx: &Context<'_>) -> bool {
        self.owed(cx).is_empty()
    }

    fn at_end(&mut self, cx: &Context<'_>) -> Result<(), String> {
        let owed = self.owed(cx);
        if owed.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = owed
            .iter()
            .take(5)
            .map(|(k, i)| format!("{k:?} never reached {}", cx.name(*i)))
            .collect();
        Err(format!(
            "{} missing deliveries: {}",
            owed.len(),
            list.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Liveness, SimBuilder};
    use rookery_core::Config;

    fn cluster(seed: u64, n: usize) -> crate::Sim {
        let mut sim = SimBuilder::new(seed)
            .nodes(n, Config::local())
            .build()
            .unwrap();
        sim.form(Duration::from_secs(30)).unwrap();
        sim
    }

    #[test]
    fn a_crash_the_ledger_does_not_know_of_is_a_false_failure() {
        let mut sim = cluster(1, 5);
        // Cut node 4 off behind the simulator's back: nothing excuses the verdicts.
        sim.nodes[4].isolated = true;
        sim.run_for(Duration::from_secs(40));
        let v = sim.check().unwrap_err();
        assert_eq!(v.invariant, "no-false-failure");
        assert!(v.detail.contains("node-4"), "{v}");
        assert!(v
            .to_string()
            .starts_with("invariant `no-false-failure` violated at"));
    }

    #[test]
    fn a_known_crash_is_excused_and_liveness_holds() {
        let mut sim = cluster(2, 5);
        sim.crash(4);
        sim.run_for(Duration::from_secs(40));
        sim.check().unwrap();
        let took = sim.heal_and_converge(&Liveness::default()).unwrap();
        assert!(took < Duration::from_secs(1), "already converged: {took:?}");
        assert!(sim.finish_checks().is_ok());
    }

    #[test]
    fn a_forgotten_incarnation_is_caught() {
        let mut sim = cluster(3, 4);
        sim.with_node(1, |n, now| n.set_tags(now, Default::default()).unwrap());
        sim.run_for(Duration::from_secs(2));
        sim.check().unwrap();
        // Swap in a fresh node behind the simulator's back (no restart recorded): its
        // view of itself drops back to incarnation 0.
        let fresh = rookery_core::Node::new(
            Config::local(),
            sim.nodes[1].identity.clone(),
            99,
            sim.now(),
        )
        .unwrap();
        sim.nodes[1].node = fresh;
        sim.run_for(Duration::from_secs(1));
        let v: Vec<&str> = sim.violations().iter().map(|v| v.invariant).collect();
        assert!(v.contains(&"incarnation-monotonic"), "{v:?}");
    }

    #[test]
    fn a_healed_partition_merges_through_the_core_s_reconnect() {
        let mut sim = cluster(4, 6);
        let split = sim.partition(&[&[0, 1, 2], &[3, 4, 5]]);
        sim.run_for(Duration::from_secs(60));
        sim.heal(split);
        // No reconnect stand-in: the core's own reconnect (every `reconnect_interval`, with
        // probability failed/alive) merges the halves.
        let opts = Liveness {
            reconnect_every: None,
            bound: None,
        };
        sim.heal_and_converge(&opts).unwrap();
        sim.check().unwrap();
    }

    #[test]
    fn exactly_once_reports_duplicates_and_missing_deliveries() {
        let mut sim = SimBuilder::new(5)
            .nodes(4, Config::local())
            .invariants(false)
            .build()
            .unwrap();
        sim.add_invariant(Box::new(ExactlyOnce::new(
            "first-join",
            |e: &Event| match e {
                Event::MemberJoined(m) if &*m.name == "node-3" => Some("node-3 joined"),
                _ => None,
            },
        )));
        sim.form(Duration::from_secs(30)).unwrap();
        // Everyone but node 3 itself heard node-3 join, once.
        assert!(!sim.invariants_settled());
        sim.check().unwrap();
        // Node 3 fails and comes back: everyone hears it join a second time.
        sim.isolate(3, true);
        sim.run_for(Duration::from_secs(30));
        sim.isolate(3, false);
        sim.heal_and_converge(&Liveness {
            bound: Some(Duration::from_secs(60)),
            ..Liveness::default()
        })
        .unwrap_err();
        let v = sim.check().unwrap_err();
        assert_eq!(v.invariant, "first-join");
        assert!(v.detail.contains("2 times"), "{v}");
        let _ = sim.finish_checks();
        let last = sim.violations().last().unwrap();
        assert!(last.detail.contains("never reached node-3"), "{last}");
    }

    #[test]
    fn monotonic_tracks_each_life() {
        let mut sim = cluster(6, 3);
        sim.add_invariant(Box::new(Monotonic::new("own-incarnation", |n| {
            n.local_member().incarnation as u64
        })));
        sim.with_node(2, |n, now| n.set_tags(now, Default::default()).unwrap());
        sim.run_for(Duration::from_secs(1));
        sim.restart(2, &[0]).unwrap();
        sim.run_for(Duration::from_secs(5));
        sim.check().unwrap();
    }
}
