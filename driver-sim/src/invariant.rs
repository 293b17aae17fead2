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
//! | `no-false-failure` | a member is declared failed only if it was crashed, paused, overloaded, cut off (partition, cut, isolation, lossy or slow link) or gone — during the fault or within [`verdict_grace`] after it — or datagrams were lost heavily and long enough to cause it; declared left or seen leaving only if it left or was force-removed ([`NoFalseFailure`]) |
//! | `incarnation-monotonic` | no node's view of a member's incarnation ever goes down, as a serial number (per life of the observer, while the member keeps its address and stays in its table) ([`IncarnationMonotonic`]) |
//! | `no-self-failure` | no node sees itself suspect or failed ([`NoSelfFailure`]) |
//! | `queue-bounds` | every bounded queue of [`rookery_core::QueueDepths`], the member table, and the transmits and events one input produced stay within their bounds ([`QueueBounds`]) |
//! | `member-clock-monotonic`, `event-clock-monotonic`, `query-clock-monotonic` | no node's Lamport clocks ever go back (per life) ([`Monotonic`]) |
//! | `user-event-exactly-once` | every user event reaches every node that stays up, exactly once ([`ExactlyOnce`], [`user_event_key`]) |
//! | `message-delivered-or-reported` | a direct message (`send`, `broadcast`) to a member that stays up is delivered once, or its loss is reported to the sender ([`MessageDelivery`]) |
//! | `query-answered` | a query's answers come from members it reached, once each, before it is done; it ends exactly once; members it reached in good time answer it when nothing hurt them ([`QueryAnswers`]) |
//!
//! The last two learn what was sent and asked from the API calls the simulator shows them
//! ([`Invariant::on_call`]: scripted calls, [`crate::script::ApiCall`]); calls made behind
//! their back ([`crate::Sim::with_node`]) are not judged.
//!
//! [`Monotonic`] and [`ExactlyOnce`] are building blocks for more; each is one line to add:
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

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use bytes::Bytes;
use rookery_core::formulas::suspicion_bounds;
use rookery_core::{
    Call, Config, Event, HandleError, Handled, Member, MemberStatus, Name, Node, QueryId,
    QueueDepths, Timestamp,
};

use crate::ledger::{FaultKind, Ledger};
use crate::sim::{answer_payload, NodeState, Nodes, ISOLATION_TAG};

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
    /// The first view asked for ([`Context::view`]): several invariants read the view of
    /// the node that just handled an input, and a snapshot is the costly part.
    view: OnceCell<(usize, Vec<Member>)>,
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
            view: OnceCell::new(),
        }
    }

    /// Node `i`'s view: every member it knows ([`Node::members`]), taken once per context
    /// for the first node asked about.
    pub fn view(&self, i: usize) -> Cow<'_, [Member]> {
        let (j, members) = self.view.get_or_init(|| (i, self.node(i).members()));
        if *j == i {
            Cow::Borrowed(members)
        } else {
            Cow::Owned(self.node(i).members())
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

    /// Node `node` took the API call `call` (a scripted one) and answered `result`; the
    /// events the call produced were shown first.
    fn on_call(
        &mut self,
        cx: &Context<'_>,
        node: usize,
        call: &Call,
        result: &Result<Handled, HandleError>,
    ) -> Result<(), String> {
        let _ = (cx, node, call, result);
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

    pub(crate) fn on_call(
        &mut self,
        cx: &Context<'_>,
        node: usize,
        call: &Call,
        result: &Result<Handled, HandleError>,
    ) {
        for (inv, count) in &mut self.invariants {
            let r = inv.on_call(cx, node, call, result);
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
/// [`QueueBounds`], the three Lamport clocks [`Monotonic`], user events [`ExactlyOnce`],
/// [`MessageDelivery`] and [`QueryAnswers`] (the table in the [module docs](self)).
pub fn standard() -> Vec<Box<dyn Invariant>> {
    vec![
        Box::new(NoFalseFailure::default()),
        Box::new(IncarnationMonotonic::default()),
        Box::new(NoSelfFailure),
        Box::new(QueueBounds),
        Box::new(Monotonic::new("member-clock-monotonic", |n: &Node| {
            n.clocks().0
        })),
        Box::new(Monotonic::new("event-clock-monotonic", |n: &Node| {
            n.clocks().1
        })),
        Box::new(Monotonic::new("query-clock-monotonic", |n: &Node| {
            n.clocks().2
        })),
        Box::new(ExactlyOnce::new("user-event-exactly-once", user_event_key)),
        Box::new(MessageDelivery::default()),
        Box::new(QueryAnswers::default()),
    ]
}

/// The key [`ExactlyOnce`] follows user events by: Lamport time, name and payload, for the
/// events that may not be coalesced (a receiver that coalesces keeps only the latest per
/// name, so those are not owed to everyone).
pub fn user_event_key(e: &Event) -> Option<(u64, Name, Bytes)> {
    match e {
        Event::User(u) if !u.coalesce => Some((u.ltime, u.name.clone(), u.payload.clone())),
        _ => None,
    }
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

/// The lowest cluster-wide datagram loss rate that may excuse a failure verdict (see
/// [`NoFalseFailure`]).
pub const LOSS_EXCUSE_RATE: f64 = 0.1;

/// `no-false-failure`: no healthy member is declared failed, declared left, or seen leaving.
///
/// **Failed.** An [`Event::MemberFailed`] verdict about a member that is up and was never
/// crashed, paused, overloaded, cut off or gone — neither at the time nor within
/// [`verdict_grace`] before — is a violation. Clock drift is not an excuse: the protocol must
/// tolerate it.
///
/// **Loss.** Cluster-wide datagram loss excuses a failure verdict only when it could
/// plausibly have caused it: within the [`verdict_grace`] before the verdict, the loss rate
/// was at least [`LOSS_EXCUSE_RATE`] for at least the shortest suspicion timeout
/// ([`suspicion_bounds`]) of the observer's configuration. A verdict needs a suspicion that
/// nobody refuted for that long: the member's probes failing (a direct ping, the indirect
/// pings, each over several datagrams) and every copy of its refutation lost — its
/// retransmissions and the direct word to each accuser. A trickle of loss, or a burst shorter
/// than the timeout a refutation has to arrive in, cannot do that to a healthy member; such a
/// verdict is judged as if there had been no loss. (Loss on particular links — lossy link
/// rules — is a cut-off of those nodes and excuses as before.)
///
/// **Left and leaving.** An [`Event::MemberLeft`] verdict, or a member shown as
/// [`MemberStatus::Leaving`] in an observer's view, about a member that is up is a violation
/// unless the member left (called `leave`) or was force-removed (`remove_failed`) at some
/// time before. A departure in an earlier life still excuses: a restarted process starts
/// again from incarnation 0 and from a fresh member clock, so its earlier life's departure
/// (a "dead" message at an equal incarnation, a leave intent with a later Lamport time) can
/// apply to the new life until the member refutes it — memberlist's and Serf's behaviour; the
/// liveness phase judges that it does refute. What is judged is a member that never left and
/// was never removed, declared left or shown leaving.
///
/// Refinements, for every verdict:
/// - a verdict reached by an observer that was itself paused or overloaded (within the
///   grace) is excused — a late observer acts on stale news, like a "member failed" message
///   that waited in its backlog while the member has long since refuted. The same verdict
///   spreading to healthy observers is still judged;
/// - a failure verdict that echoes a justified one is excused: the member had an excusing
///   fault once, and some other running node still holds it failed (the cluster has not yet
///   learned that it is back — after a long partition, until something reconnects the
///   halves). A verdict about a member that never had a fault is judged however many
///   nodes already share it.
#[derive(Clone, Debug)]
pub struct NoFalseFailure {
    kinds: Vec<FaultKind>,
    loss_rate: f64,
    /// (observer, its life, member) shown leaving, already judged.
    leaving: HashSet<(usize, u32, usize)>,
}

impl Default for NoFalseFailure {
    fn default() -> Self {
        NoFalseFailure::excusing(FaultKind::EXCUSES)
    }
}

/// What a verdict said about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Failed,
    Left,
    Leaving,
}

impl NoFalseFailure {
    /// The same check with another set of excusing fault kinds ([`FaultKind::Loss`] among
    /// them: loss excuses by the rule above).
    pub fn excusing(kinds: &[FaultKind]) -> NoFalseFailure {
        NoFalseFailure {
            kinds: kinds.to_vec(),
            loss_rate: LOSS_EXCUSE_RATE,
            leaving: HashSet::new(),
        }
    }

    /// The same check with another loss rate threshold (1.0 or more: loss never excuses).
    pub fn loss_rate(mut self, rate: f64) -> NoFalseFailure {
        self.loss_rate = rate;
        self
    }

    /// The excusing kinds other than cluster-wide loss.
    fn faults(&self) -> impl Fn(&FaultKind) -> bool + '_ {
        |k| *k != FaultKind::Loss && self.kinds.contains(k)
    }

    /// Whether cluster-wide loss within `from ..= to` could have caused a verdict of
    /// `observer` (the rule above).
    fn loss_excuses(
        &self,
        cx: &Context<'_>,
        observer: usize,
        from: Timestamp,
        to: Timestamp,
    ) -> bool {
        if !self.kinds.contains(&FaultKind::Loss) || self.loss_rate > 1.0 {
            return false;
        }
        let (min, _, _) = suspicion_bounds(cx.config(observer), cx.len());
        cx.ledger().loss_at_least(self.loss_rate, from, to) >= min
    }

    fn judge(
        &self,
        cx: &Context<'_>,
        node: usize,
        m: &Member,
        verdict: Verdict,
    ) -> Result<(), String> {
        let Some(x) = cx.index_of(&m.name) else {
            return Ok(());
        };
        if cx.state(x) != NodeState::Up || x == node {
            return Ok(());
        }
        let now = cx.now();
        let grace = verdict_grace(cx.config(node), cx.len());
        let late = [FaultKind::Pause, FaultKind::Overload];
        if cx.ledger().excused(node, now, grace, &late) {
            return Ok(());
        }
        if verdict != Verdict::Failed {
            let left = cx
                .ledger()
                .touched(x, Timestamp::ZERO, now, &[FaultKind::Left]);
            if left || cx.ledger().removed(x, Timestamp::ZERO, now) {
                return Ok(());
            }
            return Err(format!(
                "{} {} {} (incarnation {}), though it never left and was not force-removed",
                cx.name(node),
                if verdict == Verdict::Left {
                    "declared"
                } else {
                    "sees"
                },
                if verdict == Verdict::Left {
                    format!("{} left", m.name)
                } else {
                    format!("{} leaving", m.name)
                },
                m.incarnation
            ));
        }
        let kinds: Vec<FaultKind> = self.kinds.iter().copied().filter(self.faults()).collect();
        if cx.ledger().excused(x, now, grace, &kinds)
            || self.loss_excuses(cx, node, now - grace, now)
        {
            return Ok(());
        }
        let had_fault = cx.ledger().touched(x, Timestamp::ZERO, now, &kinds)
            || cx.ledger().global().iter().any(|w| kinds.contains(&w.kind))
            || self.loss_excuses(cx, node, Timestamp::ZERO, now);
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
             overloaded, cut off or gone, nor was loss heavy and long enough to excuse it",
            cx.name(node),
            m.name,
            m.incarnation
        ))
    }
}

impl Invariant for NoFalseFailure {
    fn name(&self) -> &'static str {
        "no-false-failure"
    }

    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        match event {
            Event::MemberFailed(m) => self.judge(cx, node, m, Verdict::Failed),
            Event::MemberLeft(m) => self.judge(cx, node, m, Verdict::Left),
            _ => Ok(()),
        }
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, _: &Output) -> Result<(), String> {
        let life = cx.life(node);
        let mut result = Ok(());
        for m in cx.view(node).iter() {
            let Some(x) = cx.index_of(&m.name) else {
                continue;
            };
            let key = (node, life, x);
            if m.status != MemberStatus::Leaving {
                if !self.leaving.is_empty() {
                    self.leaving.remove(&key);
                }
                continue;
            }
            if self.leaving.insert(key) && result.is_ok() {
                result = self.judge(cx, node, m, Verdict::Leaving);
            }
        }
        result
    }
}

/// `incarnation-monotonic`: a node's view of a member's incarnation never goes down, for as
/// long as the node lives (a restarted node starts a fresh view) and the member stays in its
/// table at the same address (a failed or left member may come back from a new address, with
/// a fresh incarnation: a restart elsewhere).
#[derive(Clone, Debug, Default)]
pub struct IncarnationMonotonic {
    /// Per observer: its life, and (address, incarnation) per member it sees.
    seen: Vec<(u32, AddrIncarnations)>,
}

type AddrIncarnations = HashMap<Name, (std::net::SocketAddr, u32)>;

impl Invariant for IncarnationMonotonic {
    fn name(&self) -> &'static str {
        "incarnation-monotonic"
    }

    /// A member erased from the table (forgotten, reaped, pruned by a force-remove) starts
    /// afresh when it comes back: the observer keeps nothing of the erased life. (Events come
    /// before the input's check, so an erase and a return within one input are seen.)
    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        if let (Event::MemberReaped(m), Some((life, map))) = (event, self.seen.get_mut(node)) {
            if *life == cx.life(node) {
                map.remove(&m.name);
            }
        }
        Ok(())
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
        for m in cx.view(node).iter() {
            match map.get_mut(&m.name) {
                Some((addr, v)) => {
                    // Incarnations are serial numbers: 0 follows u32::MAX.
                    let down = *addr == m.addr && rookery_core::plausible::older(m.incarnation, *v);
                    if down && err.is_none() {
                        err = Some(format!(
                            "{}'s view of {} went from incarnation {} to {}",
                            cx.name(node),
                            m.name,
                            v,
                            m.incarnation
                        ));
                    }
                    *v = m.incarnation;
                    *addr = m.addr;
                }
                None => {
                    map.insert(m.name.clone(), (m.addr, m.incarnation));
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

/// `queue-bounds`: after every input, every bounded queue the node reports
/// ([`Node::queue_depths`]: broadcast, serf, events, inbox, transmits, intents, event ring,
/// pending queries, relays) holds no more than its bound, the member table no more than
/// `max_members`, and the transmits and events the input produced no more than
/// `max_pending_transmits` and `max_pending_events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueBounds;

impl Invariant for QueueBounds {
    fn name(&self) -> &'static str {
        "queue-bounds"
    }

    fn on_input(&mut self, cx: &Context<'_>, node: usize, out: &Output) -> Result<(), String> {
        let n = cx.node(node);
        let cfg = cx.config(node);
        // Destructured, so that a queue added to `QueueDepths` must be added here too.
        let QueueDepths {
            broadcast,
            serf,
            events,
            inbox,
            transmits,
            intents,
            event_ring,
            pending_queries,
            relays,
        } = n.queue_depths();
        let checks = [
            ("broadcast queue", broadcast),
            ("serf queue", serf),
            ("event queue", events),
            ("inbox", inbox),
            ("transmit queue", transmits),
            ("intent buffer", intents),
            ("event ring", event_ring),
            ("pending queries", pending_queries),
            ("relays", relays),
            ("member table", (n.num_members(), cfg.max_members)),
            (
                "transmits of one input",
                (out.transmits, cfg.max_pending_transmits),
            ),
            ("events of one input", (out.events, cfg.max_pending_events)),
        ];
        for (what, (len, max)) in checks {
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
/// left since — as long as some node that has the key is still up in the life it got it in
/// (when every holder crashed, restarted or left before passing it on — the originator cut
/// off, say, then gone — nobody can deliver it any more). A second delivery is a violation
/// at once; a missing one is reported by [`Invariant::at_end`], and the liveness phase waits
/// until none is missing.
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
            let held = (0..cx.len()).any(|h| {
                cx.state(h) == NodeState::Up && self.got.contains_key(&(k.clone(), h, cx.life(h)))
            });
            if !held {
                continue;
            }
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
        let owed = self.owed(cx).into_iter();
        unmet(
            "missing deliveries",
            owed.map(|(k, i)| format!("{k:?} never reached {}", cx.name(i))),
        )
    }
}

/// A direct message the sender handed to the core, not yet delivered nor reported lost.
#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    from_life: u32,
    to: usize,
    payload: Bytes,
    at: Timestamp,
    /// The number the core gave the message.
    id: rookery_core::MessageId,
}

/// `message-delivered-or-reported`: a direct message ([`rookery_core::Node::send`], each
/// recipient of [`rookery_core::Node::broadcast`]) the core accepted is either delivered to
/// its recipient ([`Event::Message`], once) or reported lost to its sender
/// ([`Event::SendFailed`] naming that very message by its number, after the send). Never
/// silently dropped.
///
/// What counts as "stays up", that is, when the obligation holds: from the send on,
/// - the **sender** keeps its life — it does not crash, restart or leave (a dead process
///   reports nothing; the simulator drops a failure report meant for an earlier life);
/// - the **recipient** does not crash or restart, is not isolated, after the send (the
///   simulator drops a reliable message in flight to a node that crashed or was cut off
///   meanwhile, as a connection reset loses unacknowledged data), and does not leave or
///   stay left at any time of it (a left node ignores what reaches it; its address still
///   accepts connections in the simulator).
///
/// A recipient that was already crashed, cut off or partitioned at the time of the send
/// does not excuse anything: the channel fails, and the core must report it. Pauses and
/// overloads excuse nothing either (the message waits, the report waits). A recipient that
/// reported dropping events ([`Event::Lagged`]: its inbox or event queue overflowed) has
/// reported the loss itself: what was sent to it before is settled. A broadcast must go to
/// exactly the members the sender's view holds alive or suspect, itself excepted.
///
/// A second delivery of a message is a violation at once; what is still owed is reported by
/// [`Invariant::at_end`], and the liveness phase waits until nothing is owed. Only calls the
/// simulator shows it ([`Invariant::on_call`]) are followed.
#[derive(Clone, Debug, Default)]
pub struct MessageDelivery {
    pending: Vec<Sent>,
    /// (from, to, payload) → (sent, delivered).
    counts: HashMap<(usize, usize, Bytes), (u32, u32)>,
}

impl MessageDelivery {
    fn sent(
        &mut self,
        cx: &Context<'_>,
        (from, to): (usize, usize),
        payload: &Bytes,
        id: rookery_core::MessageId,
    ) {
        self.pending.push(Sent {
            from,
            from_life: cx.life(from),
            to,
            payload: payload.clone(),
            at: cx.now(),
            id,
        });
        self.counts
            .entry((from, to, payload.clone()))
            .or_default()
            .0 += 1;
    }

    /// Whether `s` is no longer owed because a party did not stay up (the rule above).
    fn excused(cx: &Context<'_>, s: &Sent) -> bool {
        let (now, l) = (cx.now(), cx.ledger());
        let gone = [FaultKind::Crash, FaultKind::Left];
        cx.life(s.from) != s.from_life
            || l.started(s.from, s.at, now, &gone, false)
            || l.started(s.to, s.at, now, &[FaultKind::Crash], false)
            || l.touched(s.to, s.at, now, &[FaultKind::Left])
            || l.global().iter().any(|w| {
                w.kind == FaultKind::CutOff
                    && w.tag == ISOLATION_TAG + s.to as u64
                    && s.at <= w.start
                    && w.start <= now
            })
    }

    fn owed<'a>(&'a self, cx: &'a Context<'_>) -> impl Iterator<Item = &'a Sent> + 'a {
        self.pending.iter().filter(move |s| !Self::excused(cx, s))
    }
}

impl Invariant for MessageDelivery {
    fn name(&self) -> &'static str {
        "message-delivered-or-reported"
    }

    fn on_call(
        &mut self,
        cx: &Context<'_>,
        node: usize,
        call: &Call,
        result: &Result<Handled, HandleError>,
    ) -> Result<(), String> {
        match (call, result) {
            // A message to itself the core delivers within the call, before the call is
            // shown here: nothing to follow.
            (Call::Send { to, payload, .. }, Ok(Handled::Sent(id))) => {
                if let Some(j) = cx.index_of(to).filter(|&j| j != node) {
                    self.sent(cx, (node, j), payload, *id);
                }
                Ok(())
            }
            (Call::Broadcast { payload }, Ok(Handled::Broadcast(went))) => {
                let me = cx.name(node);
                let mut targets: Vec<usize> = cx
                    .view(node)
                    .iter()
                    .filter(|m| {
                        matches!(m.status, MemberStatus::Alive | MemberStatus::Suspect)
                            && &*m.name != me
                    })
                    .filter_map(|m| cx.index_of(&m.name))
                    .collect();
                let mut to: Vec<usize> = went.iter().filter_map(|(n, _)| cx.index_of(n)).collect();
                targets.sort_unstable();
                to.sort_unstable();
                if targets != to {
                    return Err(format!(
                        "{me}'s broadcast went to {} members, its view holds {} alive or \
                         suspect",
                        went.len(),
                        targets.len()
                    ));
                }
                for (name, id) in went {
                    if let Some(j) = cx.index_of(name) {
                        self.sent(cx, (node, j), payload, *id);
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        match event {
            Event::Message { from, payload } => {
                let Some(a) = cx.index_of(from) else {
                    return Ok(());
                };
                let Some(c) = self.counts.get_mut(&(a, node, payload.clone())) else {
                    return Ok(()); // a call this invariant did not see
                };
                c.1 += 1;
                if c.1 > c.0 {
                    return Err(format!(
                        "{} received {:?} from {from} {} times, sent {} times",
                        cx.name(node),
                        payload,
                        c.1,
                        c.0
                    ));
                }
                if let Some(k) = self
                    .pending
                    .iter()
                    .position(|s| s.from == a && s.to == node && s.payload == *payload)
                {
                    self.pending.remove(k);
                }
                Ok(())
            }
            Event::SendFailed { message, .. } | Event::MessageAcked { message, .. } => {
                self.pending
                    .retain(|s| !(s.from == node && s.id == *message));
                Ok(())
            }
            Event::Lagged { .. } => {
                self.pending.retain(|s| s.to != node);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn settled(&self, cx: &Context<'_>) -> bool {
        self.owed(cx).next().is_none()
    }

    fn at_end(&mut self, cx: &Context<'_>) -> Result<(), String> {
        let owed = self.owed(cx).map(|s| {
            format!(
                "{:?} from {} to {} at {} neither delivered nor reported lost",
                s.payload,
                cx.name(s.from),
                cx.name(s.to),
                s.at
            )
        });
        unmet("messages silently dropped", owed)
    }
}

/// How long before a query ends a member it reached must have been reached for its answer to
/// be owed ([`QueryAnswers`]): the answer delay, a long network tail, reordering and a
/// relay's extra hop.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// One query a node asked, as [`QueryAnswers`] follows it.
#[derive(Clone, Debug, Default)]
struct Asked {
    asker: usize,
    life: u32,
    id: u32,
    /// The payload (known once the call is seen).
    payload: Option<Bytes>,
    at: Timestamp,
    /// Members the query reached ([`Event::Query`]), when.
    reached: Vec<(usize, Timestamp)>,
    acks: BTreeSet<usize>,
    responders: BTreeSet<usize>,
    done: Option<Timestamp>,
}

/// `query-answered`: queries behave, with the simulator answering every query that reaches
/// a node ([`crate::Sim::set_answer_queries`]).
///
/// - An answer ([`Event::QueryResponse`]) comes from a member the query reached, carrying
///   that member's answer to that query ([`crate::answer_payload`]), at most once per
///   member, and never after the query is done; an ack ([`Event::QueryAck`]) at most once per
///   member, never after it is done.
/// - A query ends with exactly one [`Event::QueryDone`], whose counts are the acks and
///   answers reported before it — unless the asker crashed, restarted or left meanwhile.
/// - The asked members answer: a member the query reached at least [`ANSWER_MARGIN`] before
///   it ended has its answer counted, when neither it nor the asker had any fault the ledger
///   knows (crash, pause, overload, cut-off, leave, drift) from the query's start to its end,
///   and no cluster-wide fault (loss, an isolation) touched that span.
///
/// Only queries the simulator shows it ([`Invariant::on_call`]) are followed; a query is
/// recognised where it arrives by its asker and payload (scripts give each query its own).
#[derive(Clone, Debug, Default)]
pub struct QueryAnswers {
    asked: Vec<Asked>,
}

impl QueryAnswers {
    fn entry(&mut self, asker: usize, life: u32, id: u32) -> &mut Asked {
        let k = match self
            .asked
            .iter()
            .position(|q| q.asker == asker && q.life == life && q.id == id)
        {
            Some(k) => k,
            None => {
                self.asked.push(Asked {
                    asker,
                    life,
                    id,
                    ..Asked::default()
                });
                self.asked.len() - 1
            }
        };
        &mut self.asked[k]
    }

    fn unfinished<'a>(&'a self, cx: &'a Context<'_>) -> impl Iterator<Item = &'a Asked> + 'a {
        self.asked.iter().filter(move |q| {
            q.done.is_none()
                && q.payload.is_some()
                && cx.life(q.asker) == q.life
                && !cx.ledger().started(
                    q.asker,
                    q.at,
                    cx.now(),
                    &[FaultKind::Crash, FaultKind::Left],
                    false,
                )
                && !cx
                    .ledger()
                    .touched(q.asker, q.at, cx.now(), &[FaultKind::Left])
        })
    }
}

impl Invariant for QueryAnswers {
    fn name(&self) -> &'static str {
        "query-answered"
    }

    fn on_call(
        &mut self,
        cx: &Context<'_>,
        node: usize,
        call: &Call,
        result: &Result<Handled, HandleError>,
    ) -> Result<(), String> {
        if let (Call::Query { payload, .. }, Ok(Handled::Query(QueryId(id)))) = (call, result) {
            let now = cx.now();
            // The asker's own copy of the query, if it selected itself, came first.
            let own = self
                .asked
                .iter()
                .position(|q| {
                    q.asker == node && q.id == u32::MAX && q.payload.as_ref() == Some(payload)
                })
                .map(|k| self.asked.remove(k).reached)
                .unwrap_or_default();
            let q = self.entry(node, cx.life(node), *id);
            q.payload = Some(payload.clone());
            q.at = now;
            q.reached.extend(own);
        }
        Ok(())
    }

    fn on_event(&mut self, cx: &Context<'_>, node: usize, event: &Event) -> Result<(), String> {
        let now = cx.now();
        let life = cx.life(node);
        match event {
            Event::Query(iq) => {
                let Some(a) = cx.index_of(&iq.from) else {
                    return Ok(());
                };
                // The asker's own copy arrives before its call is seen: it is recorded
                // below, when the call's payload is known — or here, for later copies.
                if let Some(q) = self
                    .asked
                    .iter_mut()
                    .rev()
                    .find(|q| q.asker == a && q.payload.as_ref() == Some(&iq.payload))
                {
                    q.reached.push((node, now));
                } else if a == node {
                    self.asked.push(Asked {
                        asker: a,
                        life,
                        id: u32::MAX,
                        payload: Some(iq.payload.clone()),
                        at: now,
                        reached: vec![(node, now)],
                        ..Asked::default()
                    });
                }
                Ok(())
            }
            Event::QueryAck { query, from } => {
                let f = cx.index_of(from).unwrap_or(usize::MAX);
                let q = self.entry(node, life, query.0);
                if q.done.is_some() {
                    return Err(format!(
                        "{} acked query {} after it was done",
                        from, query.0
                    ));
                }
                if !q.acks.insert(f) {
                    return Err(format!("{from} acked query {} twice", query.0));
                }
                Ok(())
            }
            Event::QueryResponse {
                query,
                from,
                payload,
            } => {
                let f = cx.index_of(from).unwrap_or(usize::MAX);
                let q = self.entry(node, life, query.0);
                if q.done.is_some() {
                    return Err(format!(
                        "{from} answered query {} after it was done",
                        query.0
                    ));
                }
                if !q.responders.insert(f) {
                    return Err(format!("{from} answered query {} twice", query.0));
                }
                if let Some(p) = &q.payload {
                    if **payload != *answer_payload(from, p) {
                        return Err(format!(
                            "{from}'s answer to query {} is {payload:?}, not its answer to \
                             {p:?}",
                            query.0
                        ));
                    }
                }
                Ok(())
            }
            Event::QueryDone {
                query,
                acks,
                responses,
            } => {
                let q = self.entry(node, life, query.0);
                if q.done.is_some() {
                    return Err(format!("query {} done twice", query.0));
                }
                q.done = Some(now);
                if (*acks, *responses) != (q.acks.len(), q.responders.len()) {
                    return Err(format!(
                        "query {} done with {acks} acks and {responses} answers; {} and {} were \
                         reported",
                        query.0,
                        q.acks.len(),
                        q.responders.len()
                    ));
                }
                let q = q.clone();
                let l = cx.ledger();
                let hurt = |i: usize| {
                    l.touched(i, q.at, now, FaultKind::EXCUSES)
                        || l.touched(i, q.at, now, &[FaultKind::Drift])
                };
                let global = l.global().iter().any(|w| w.start <= now && w.end >= q.at);
                if q.payload.is_none() || global || hurt(q.asker) {
                    return Ok(());
                }
                let missing: Vec<&str> = q
                    .reached
                    .iter()
                    .filter(|&&(b, t)| {
                        t + ANSWER_MARGIN <= now && !hurt(b) && !q.responders.contains(&b)
                    })
                    .map(|&(b, _)| cx.name(b))
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "query {} of {} ended without the answers of {} (reached in good time, \
                         nothing hurt them)",
                        query.0,
                        cx.name(node),
                        missing.join(", ")
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn settled(&self, cx: &Context<'_>) -> bool {
        self.unfinished(cx).next().is_none()
    }

    fn at_end(&mut self, cx: &Context<'_>) -> Result<(), String> {
        let open = self
            .unfinished(cx)
            .map(|q| format!("query {} of {} at {}", q.id, cx.name(q.asker), q.at));
        unmet("queries never ended", open)
    }
}

/// What [`Invariant::at_end`] reports for obligations still unmet: nothing when there are
/// none, else how many and the first five.
fn unmet(what: &str, items: impl Iterator<Item = String>) -> Result<(), String> {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return Ok(());
    }
    let first = items[..items.len().min(5)].join("; ");
    Err(format!("{} {what}: {first}", items.len()))
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
    fn a_short_loss_burst_does_not_excuse_a_failure_verdict() {
        // Node 4 is cut off behind the simulator's back during a 1 s burst of 30 % loss:
        // shorter than the shortest suspicion timeout, the burst cannot excuse the verdicts.
        let mut sim = cluster(7, 5);
        sim.set_loss(0.3);
        sim.nodes[4].isolated = true;
        sim.run_for(Duration::from_secs(1));
        sim.set_loss(0.0);
        sim.run_for(Duration::from_secs(40));
        let v = sim.check().unwrap_err();
        assert_eq!(v.invariant, "no-false-failure");
        assert!(v.detail.contains("node-4 failed"), "{v}");
        // A long heavy loss does excuse them.
        let mut sim = cluster(7, 5);
        sim.set_loss(0.3);
        sim.nodes[4].isolated = true;
        sim.run_for(Duration::from_secs(40));
        sim.check().unwrap();
    }

    #[test]
    fn a_departure_the_ledger_does_not_know_of_is_a_false_left_verdict() {
        let mut sim = cluster(8, 4);
        // Leave behind the simulator's back: no leave window excuses the verdicts.
        sim.with_node(3, |n, now| n.leave(now).unwrap());
        sim.run_for(Duration::from_secs(10));
        let v: Vec<&str> = sim.violations().iter().map(|v| v.detail.as_str()).collect();
        assert!(
            v.iter()
                .any(|d| d.contains("node-3 leaving") || d.contains("node-3 left")),
            "{v:?}"
        );
        // The same leave, known to the simulator, is excused.
        let mut sim = cluster(8, 4);
        sim.leave(3);
        sim.run_for(Duration::from_secs(10));
        sim.check().unwrap();
    }

    #[test]
    fn scripted_messages_events_and_queries_are_followed() {
        use crate::script::{ApiCall, Step};
        let mut sim = cluster(9, 4);
        sim.set_answer_queries(true);
        let api = |node, call| Step::Api { node, call };
        let steps = [
            api(
                0,
                ApiCall::Send {
                    to: 1,
                    payload: "m".into(),
                },
            ),
            api(
                1,
                ApiCall::Broadcast {
                    payload: "b".into(),
                },
            ),
            api(
                2,
                ApiCall::UserEvent {
                    name: "e".into(),
                    payload: "u".into(),
                    coalesce: false,
                },
            ),
            api(
                3,
                ApiCall::Query {
                    name: "q".into(),
                    payload: "q".into(),
                    filter: Vec::new(),
                    ack: true,
                    relay_factor: 1,
                    timeout_ms: Some(3_000),
                },
            ),
        ];
        for s in &steps {
            sim.apply(s).unwrap();
        }
        // A message to a crashed member is reported lost.
        sim.crash(2);
        sim.apply(&api(
            0,
            ApiCall::Send {
                to: 2,
                payload: "lost".into(),
            },
        ))
        .unwrap();
        assert!(!sim.invariants_settled(), "deliveries and answers are owed");
        sim.run_for(Duration::from_secs(5));
        sim.check().unwrap();
        assert!(sim.invariants_settled());
        sim.finish_checks().unwrap();
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
