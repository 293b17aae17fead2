//! SWIM failure detection with Lifeguard, as one part that owns its state: the probe cycle
//! (`probe`: direct ping, indirect pings with nacks, the reliable fallback ping, the preferred
//! helpers, and whether a failed probe's evidence points at the target or at this node's own
//! link, so that an accusation is made or withheld), the relay side of indirect pings
//! (`relay`), the local health score that stretches the probe interval (`awareness`), when a
//! message last reached this node, and the expiry of suspicions (`suspicion`: Lifeguard's
//! dynamic timeout; the suspicions themselves ride on the member records), and address
//! checks (`addr_check`: does a member's known address still answer, when its name is claimed
//! from another one).
//!
//! The part sees only the narrow context [`Cx`]. What it concludes about other members — a
//! probe failed, a suspicion expired, a peer's view digest deserves a comparison — it returns
//! as an [`Outcome`] for the router to act on; it never applies a membership update itself.
//! It owns its timers ([`SwimTimer`]) and their staleness rule ([`FailureDetector::on_timer`]).

pub(crate) mod addr_check;
mod awareness;
mod probe;
mod relay;
pub(crate) mod suspicion;

use std::net::SocketAddr;

use crate::config::Config;
use crate::ctx::{Cx, EventMark};
use crate::identity::Name;
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::{Accusation, Digest, Message};

use addr_check::AddrChecks;
pub(crate) use addr_check::CheckKind;
use awareness::Awareness;
use probe::{Probe, RecentAcks, Withheld};
use relay::Relays;

/// The failure detector's state.
#[derive(Debug)]
pub(crate) struct FailureDetector {
    awareness: Awareness,
    /// The probe in flight (at most one at a time).
    probe: Option<Box<Probe>>,
    /// The last failed probe whose accusation was withheld, while a helper's late nack may
    /// still turn it into one.
    withheld: Option<Withheld>,
    /// Members that recently answered a request: preferred indirect-probe helpers.
    recent_acks: RecentAcks,
    relays: Relays,
    checks: AddrChecks,
    /// When a message last reached this node (any message, on either channel): what makes
    /// silent helpers selective (see `probe`'s module doc).
    reached: Option<Timestamp>,
    /// The last sequence number used by a ping (probes, relays and checks share the space).
    seq: u32,
    /// A member another node just accused, to probe next instead of the round-robin's
    /// choice ([`crate::Config::probe_suspects_first`]).
    priority: Option<Name>,
    /// Whether the last probe went to [`FailureDetector::priority`]: the next one follows the
    /// round-robin, so that a flood of accusations (a partition) cannot starve it.
    priority_last: bool,
}

/// The most members held suspect at once for which an accusation still jumps the probe
/// order ([`crate::Config::probe_suspects_first`]). A crash makes one suspect; a partition
/// or a mass crash makes many, and there the round-robin finds them faster (a 100-member
/// partition took 75 s to be seen on both sides with every accusation jumping the order,
/// 27 s without).
pub(crate) const MAX_SUSPECTS_TO_PRIORITIZE: usize = 3;

/// The failure detector's timers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SwimTimer {
    /// Close the probe in flight and start the next one.
    ProbeTick,
    /// The direct ping of probe `seq` went unanswered: go indirect.
    ProbeTimeout { seq: u32 },
    /// Indirect ping relayed under `seq` got no ack in time: nack the origin.
    Relay { seq: u32 },
    /// Suspicion of `name` (generation `generation`) may have expired.
    Suspicion { name: Name, generation: u32 },
    /// Address check `seq` got no ack in this round: ping again, or call it silent.
    AddrCheck { seq: u32 },
}

/// What the router must do after a call into the failure detector.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// A verdict about another member, to apply as a membership update (and gossip).
    pub verdict: Option<Verdict>,
    /// Start the next probe (after the verdict is applied) if the node still runs.
    pub next_probe: bool,
    /// An address check ended (answered as it needed, or not).
    pub check: Option<CheckDone>,
}

/// An address check that ended (see `addr_check`).
#[derive(Debug)]
pub(crate) struct CheckDone {
    /// The member checked.
    pub name: Name,
    /// The known address it was checked at.
    pub addr: SocketAddr,
    /// Why it was checked.
    pub kind: CheckKind,
    /// Whether it answered as the check needs (else it counts as silent).
    pub answered: bool,
}

/// A conclusion about another member.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A probe failed: suspect the target.
    Suspect(Accusation),
    /// A suspicion expired: declare the member dead, and gossip the verdict when the flag is
    /// true. With [`crate::Config::accusation_guard`], a suspicion that no other member
    /// confirmed although confirmations were expected (k > 0) fails the member on this node
    /// only: the accusation may never have left a node that loses most of its packets (one
    /// such node's lone verdict otherwise fails a healthy member everywhere). A crashed
    /// member is probed and accused by the others as well; each of them reaches its own
    /// verdict, confirmed or not.
    Dead(Accusation, bool),
}

impl FailureDetector {
    /// A detector whose ping sequence numbers start after `seq`.
    pub(crate) fn new(seq: u32) -> FailureDetector {
        FailureDetector {
            awareness: Awareness::default(),
            probe: None,
            withheld: None,
            recent_acks: RecentAcks::default(),
            relays: Relays::default(),
            checks: AddrChecks::default(),
            reached: None,
            seq,
            priority: None,
            priority_last: false,
        }
    }

    /// Schedule the first probe at `at`.
    pub(crate) fn arm(cx: &mut Cx<'_>, at: Timestamp) {
        cx.fx
            .timers
            .schedule(at, TimerKind::Swim(SwimTimer::ProbeTick));
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Lifeguard's local health score.
    pub(crate) fn health(&self) -> u32 {
        self.awareness.score()
    }

    /// This node refuted a suspicion about itself: worsen the health score by one.
    pub(crate) fn refuted(&mut self, cfg: &Config) {
        self.awareness.adjust(1, cfg);
    }

    /// Another member accused `name` (news to this node): with
    /// [`crate::Config::probe_suspects_first`], probe it next, so that a crashed member's
    /// independent confirmations (or a live one's refutation, which the probe's buddy-system
    /// suspect message asks for) come within a probe interval instead of whenever the
    /// round-robin gets to it. Only for isolated accusations (`suspects`, the members this
    /// node now holds suspect, at most [`MAX_SUSPECTS_TO_PRIORITIZE`]), and at most every
    /// other probe: a flood of accusations (a partition, half the cluster accused at once)
    /// would otherwise starve the round-robin of the members nobody accused yet.
    pub(crate) fn prioritize(&mut self, name: Name, suspects: usize, cfg: &Config) {
        if cfg.probe_suspects_first && suspects <= MAX_SUSPECTS_TO_PRIORITIZE {
            self.priority = Some(name);
        }
    }

    /// A message reached this node at `now`.
    pub(crate) fn reached(&mut self, now: Timestamp) {
        self.reached = Some(now);
    }

    /// Indirect probes being relayed for others.
    pub(crate) fn relays_len(&self) -> usize {
        self.relays.len()
    }

    /// Stop probing (a graceful leave began): the probe in flight is dropped without a verdict.
    pub(crate) fn stop_probing(&mut self) {
        self.probe = None;
        self.withheld = None;
    }

    /// Stop everything (the node left).
    pub(crate) fn stop(&mut self) {
        self.probe = None;
        self.withheld = None;
        self.relays.clear();
        self.checks.clear();
    }

    /// Check whether `name`'s known address `addr` still answers as `name`, because its name
    /// is claimed from another address (see `addr_check`). True when a check runs (started
    /// now or already running); false when [`addr_check::MAX_CHECKS`] are running and none
    /// could start.
    pub(crate) fn check_address(&mut self, name: Name, addr: SocketAddr, cx: &mut Cx<'_>) -> bool {
        self.start_check(name, addr, CheckKind::Claim, cx)
    }

    /// Check whether `name`, failed here, answers at its known address `addr` before it is
    /// taken back (see `addr_check`, [`crate::Config::revival_check`]). True when a check
    /// runs (started now or already running); false when [`addr_check::MAX_REVIVAL_CHECKS`]
    /// are running and none could start.
    pub(crate) fn check_revival(&mut self, name: Name, addr: SocketAddr, cx: &mut Cx<'_>) -> bool {
        self.start_check(name, addr, CheckKind::Revival, cx)
    }

    fn start_check(
        &mut self,
        name: Name,
        addr: SocketAddr,
        kind: CheckKind,
        cx: &mut Cx<'_>,
    ) -> bool {
        if self.checks.checking(&name, kind) {
            return true;
        }
        let cap = match kind {
            CheckKind::Claim => addr_check::MAX_CHECKS,
            CheckKind::Revival => addr_check::MAX_REVIVAL_CHECKS,
        };
        if self.checks.len(kind) >= cap {
            return false;
        }
        let seq = self.next_seq();
        self.checks.start(seq, name.clone(), addr, kind);
        self.check_ping(seq, name, addr, kind, cx);
        true
    }

    /// Send check `seq`'s ping and arm its timer: a claim check waits a probe interval, a
    /// revival check the probe timeout.
    fn check_ping(
        &mut self,
        seq: u32,
        name: Name,
        addr: SocketAddr,
        kind: CheckKind,
        cx: &mut Cx<'_>,
    ) {
        match kind {
            CheckKind::Claim => cx.send_datagram(
                addr,
                &[Message::Ping {
                    seq,
                    target: name,
                    digest: None,
                }],
            ),
            CheckKind::Revival => cx.send_bare(addr, &[Message::CheckPing { seq, target: name }]),
        }
        let wait = match kind {
            CheckKind::Claim => cx.cfg.probe_interval,
            CheckKind::Revival => cx.cfg.probe_timeout,
        };
        let at = cx.now + wait;
        cx.fx
            .timers
            .schedule(at, TimerKind::Swim(SwimTimer::AddrCheck { seq }));
    }

    /// A revival check's ping `seq` was answered (or not, `answered` false, its timer fired):
    /// the check's verdict once it has one, else its next ping (under a new sequence number,
    /// so that a duplicated ack counts once).
    fn revival_step(&mut self, seq: u32, answered: bool, cx: &mut Cx<'_>) -> Option<CheckDone> {
        let c = self.checks.get_mut(seq)?;
        if answered {
            c.answers += 1;
        }
        let (answers, tries) = (c.answers, c.tries);
        let done = if answers >= addr_check::REVIVAL_ANSWERS {
            Some(true)
        } else if answers + (addr_check::REVIVAL_TRIES - tries) < addr_check::REVIVAL_ANSWERS {
            Some(false)
        } else {
            None
        };
        let mut c = self.checks.take(seq).expect("present");
        if let Some(answered) = done {
            return Some(CheckDone {
                name: c.name,
                addr: c.addr,
                kind: CheckKind::Revival,
                answered,
            });
        }
        c.tries += 1;
        let next = self.next_seq();
        let (name, addr) = (c.name.clone(), c.addr);
        self.checks.insert(next, c);
        self.check_ping(next, name, addr, CheckKind::Revival, cx);
        None
    }

    /// An ack under `seq` from `from`: the end of an address check when it is one's and
    /// settles it. `None` when `seq` is no check's, or the check goes on.
    pub(crate) fn check_answered(
        &mut self,
        from: SocketAddr,
        seq: u32,
        cx: &mut Cx<'_>,
    ) -> Option<CheckDone> {
        let c = self.checks.get_mut(seq)?;
        if c.addr != from {
            return None;
        }
        match c.kind {
            CheckKind::Claim => self.checks.take(seq).map(|c| CheckDone {
                name: c.name,
                addr: c.addr,
                kind: CheckKind::Claim,
                answered: true,
            }),
            CheckKind::Revival => self.revival_step(seq, true, cx),
        }
    }

    /// A timer fired. Stale timers (a probe or relay already closed, a suspicion refuted or
    /// shortened) are recognised here and do nothing.
    pub(crate) fn on_timer(&mut self, t: SwimTimer, cx: &mut Cx<'_>) -> Outcome {
        match t {
            SwimTimer::ProbeTick => Outcome {
                verdict: self.close_probe(cx).map(Verdict::Suspect),
                next_probe: true,
                check: None,
            },
            SwimTimer::ProbeTimeout { seq } => {
                if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
                    self.go_indirect(cx);
                }
                Outcome::default()
            }
            SwimTimer::Relay { seq } => {
                if let Some(r) = self.relays.take(seq) {
                    cx.send_datagram(r.origin, &[Message::Nack { seq: r.origin_seq }]);
                }
                Outcome::default()
            }
            SwimTimer::Suspicion { name, generation } => Outcome {
                verdict: suspicion::expire(cx, &name, generation)
                    .map(|(d, gossip)| Verdict::Dead(d, gossip)),
                ..Outcome::default()
            },
            SwimTimer::AddrCheck { seq } => {
                let Some(c) = self.checks.get_mut(seq) else {
                    return Outcome::default();
                };
                if c.kind == CheckKind::Revival {
                    return Outcome {
                        check: self.revival_step(seq, false, cx),
                        ..Outcome::default()
                    };
                }
                if c.tries >= addr_check::TRIES {
                    let c = self.checks.take(seq).expect("present");
                    return Outcome {
                        check: Some(CheckDone {
                            name: c.name,
                            addr: c.addr,
                            kind: CheckKind::Claim,
                            answered: false,
                        }),
                        ..Outcome::default()
                    };
                }
                c.tries += 1;
                let (name, addr) = (c.name.clone(), c.addr);
                self.check_ping(seq, name, addr, CheckKind::Claim, cx);
                Outcome::default()
            }
        }
    }

    /// A ping from `from`: ack it with our view digest when it is for us, and return the
    /// sender's digest for comparison.
    pub(crate) fn on_ping(
        &mut self,
        from: SocketAddr,
        seq: u32,
        target: &str,
        theirs: Option<Digest>,
        events: EventMark,
        cx: &mut Cx<'_>,
    ) -> Option<Digest> {
        if target != &**cx.me {
            return None;
        }
        let digest = Some(cx.view_digest(events));
        cx.send_datagram(from, &[Message::Ack { seq, digest }]);
        theirs
    }

    /// A revival check's ping from `from` (see `addr_check`): ack it bare when it is for us.
    pub(crate) fn on_check_ping(
        &mut self,
        from: SocketAddr,
        seq: u32,
        target: &str,
        cx: &mut Cx<'_>,
    ) {
        if target == &**cx.me {
            cx.send_bare(from, &[Message::Ack { seq, digest: None }]);
        }
    }

    /// A ping over the reliable channel (a prober's fallback): ack it the same way.
    /// The ack goes only to the connection's peer or to a known member's address.
    pub(crate) fn on_stream_ping(
        &mut self,
        from: SocketAddr,
        seq: u32,
        target: &str,
        reply_to: SocketAddr,
        cx: &mut Cx<'_>,
    ) {
        if target != &**cx.me {
            return;
        }
        if !cx.may_reply(from, reply_to) {
            cx.fx.stats.replies_refused += 1;
            tracing::debug!(%from, %reply_to, "stream ping not answered: reply address unverified");
            return;
        }
        cx.send_reliable(reply_to, &Message::Ack { seq, digest: None });
    }

    /// Another member asks us to ping `target` at `addr` on its behalf.
    pub(crate) fn on_indirect_ping(
        &mut self,
        origin: SocketAddr,
        origin_seq: u32,
        target: Name,
        addr: SocketAddr,
        cx: &mut Cx<'_>,
    ) {
        if self.relays.len() >= cx.cfg.max_indirect_relays {
            cx.fx.stats.indirect_refused += 1;
            return;
        }
        // Probe only a known member at the address this node holds for it.
        if cx.members.get(&target).map(|r| r.addr()) != Some(addr) {
            cx.fx.stats.replies_refused += 1;
            tracing::debug!(%origin, %target, %addr, "indirect ping refused: not a known member's address");
            return;
        }
        let seq = self.next_seq();
        self.relays.start(seq, origin, origin_seq);
        let ping = Message::Ping {
            seq,
            target,
            digest: None,
        };
        cx.send_datagram(addr, &[ping]);
        let at = cx.now + cx.cfg.probe_timeout;
        cx.fx
            .timers
            .schedule(at, TimerKind::Swim(SwimTimer::Relay { seq }));
    }

    /// An ack: ends our probe (the target's own, or relayed by a helper), or is forwarded to
    /// the member we relay for. Returns the acker's digest when it ended our probe.
    pub(crate) fn on_ack(
        &mut self,
        from: SocketAddr,
        seq: u32,
        digest: Option<Digest>,
        cx: &mut Cx<'_>,
    ) -> Option<Digest> {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe_answered(from, cx);
            return digest;
        }
        if let Some(r) = self.relays.take(seq) {
            let ack = Message::Ack {
                seq: r.origin_seq,
                digest: None,
            };
            cx.send_datagram(r.origin, &[ack]);
        }
        None
    }
}
