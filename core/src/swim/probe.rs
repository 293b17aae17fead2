//! The probe cycle: one member at a time in round-robin order, a direct ping, then indirect
//! pings through `indirect_checks` members (with nacks, Lifeguard) plus a reliable-channel
//! fallback ping; the probe closes when the next one starts, failed if nobody vouched for the
//! target. Members that answered recently are the preferred helpers.
//!
//! # Accusing from the accused side: whose fault is a failed probe? (issue 18)
//!
//! A failed probe is evidence against the target or against this node's own link, and a
//! node that misses packets (a lossy link, an overloaded process) would otherwise accuse the
//! healthy members it cannot hear; an accusation that never leaves such a node still expires
//! there into a failed verdict that does. Lifeguard's local health score only slows such a
//! node down; rookery also weighs who stayed silent before it accuses. The helpers' answers
//! are the evidence:
//!
//! - a **nack** points at the target: the helper heard this node's request and could not
//!   reach the target either;
//! - **silence from a trusted helper** — one that answered this node's previous request to it
//!   (it was among [`RecentAcks`] when asked) — points at this node: a member that answered
//!   a moment ago is silent now, so this node's request or the answer was lost on the way;
//! - silence from an untrusted helper (never answered, or silent last time: maybe crashed)
//!   points nowhere.
//!
//! The rule, when a probe closes without an ack. The node **accuses** (suspects the target)
//! when
//!
//! 1. no helper could be asked (as memberlist does), or
//! 2. more helpers nacked than trusted helpers stayed silent, or
//! 3. nothing at all reached this node — no message of any kind, on either channel — for
//!    [`REACHED_WINDOW`] health-scaled probe intervals (**total silence**).
//!
//! Otherwise it **withholds** the accusation (counted in
//! [`crate::Stats::accusations_withheld`]): the silence is *selective* — other members keep
//! reaching this node while the helpers it asks do not answer — so its own link is the
//! likelier culprit. The missed nacks still raise the health score as Lifeguard says, so the
//! node probes less often, and the target stays in the probe order. A withheld probe stays
//! open to nacks for `probe_timeout` after its close ([`Withheld`]): a helper nacks
//! `probe_timeout` after it was asked, itself `probe_timeout` into the probe, so with LAN's
//! `probe_interval` = 2 · `probe_timeout` and a healthy score every nack lands a round trip
//! after the close (memberlist's helpers too). When the late nacks outweigh the trusted
//! silences (rule 2), the accusation is made then
//! ([`crate::Stats::accusations_on_late_nack`]).
//!
//! Why both cases come out right:
//!
//! - **A degraded node** (it loses most of its packets): its helpers are silent, while some
//!   of the cluster's traffic still reaches it — selective silence, withheld. Its helpers
//!   rarely nack about a healthy target (they reach it fine; their relayed acks are what it
//!   loses). The window is long (16 intervals, up to 128 s at the worst score) because such a
//!   node, once the others hold it failed, hears from them only every minute or so.
//! - **A mass crash that took the target and every helper**: crashed members send nothing.
//!   Silent helpers are forgotten as trusted after one silence, so they stop counting against
//!   this node; a survivor picked as helper nacks, and one nack against no trusted silence
//!   accuses (rule 2). A survivor with nobody left hears nothing, and total silence accuses
//!   (rule 3) once the window has passed — bounded, if slower than a single crash (see
//!   `survivors_fail_crashed_members_even_when_every_helper_crashed_too`). From inside, a node
//!   alone after a mass crash and a node cut off both ways look the same: both accuse.
//! - **A crash in a healthy cluster**: all three helpers are trusted and all nack (late, by
//!   the round trip above): accused at the second nack, a few milliseconds after the close.
//!
//! The rule is [`crate::Config::accusation_guard`]: on in [`crate::Config::lan`], off in
//! [`crate::Config::memberlist`], [`crate::Config::wan`] and [`crate::Config::local`], where
//! every failed probe accuses as in memberlist (nothing withheld, no late-nack window). Under
//! the guard two more rules weigh the evidence: a probe that its target outlived by refuting
//! (its incarnation rose while the probe was out) accuses nobody, and a suspicion that expires
//! with no independent confirmation although some were expected fails the member on this
//! node only, without gossiping the verdict ([`super::Verdict::Dead`]). The total-silence
//! window is one health-scaled interval per live member, between 4 and 16
//! ([`reached_window`]). Its cost is slower verdicts when nothing reaches a node: a lone
//! survivor of a mass crash waits out the total-silence window (132–148 s with `lan()` in
//! `survivors_fail_crashed_members_even_when_every_helper_crashed_too`, 42–53 s under
//! memberlist's rules; 176–197 s with the former fixed 16 intervals), and an isolated node
//! fails the others later (so a healed partition may be noticed later too).
//!
//! A message reaching this node is whatever it accepts as input (it is not authenticated
//! beyond what the keyring does): someone who can send to this node can keep its silence
//! selective, which delays only rule 3, the lone-survivor case.

use std::net::SocketAddr;

use rand::Rng;
use smallvec::SmallVec;

use super::{FailureDetector, SwimTimer};
use crate::ctx::{Cx, EventMark};
use crate::identity::{MemberStatus, Name};
use crate::members::MemberRec;
use crate::timers::TimerKind;
use crate::wire::{Accusation, Message};

/// The probe in flight (at most one at a time).
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub seq: u32,
    pub target: Name,
    pub addr: SocketAddr,
    /// Indirect pings sent (each owes a nack if it gets no ack).
    pub expected_nacks: u32,
    pub nacks: u32,
    /// The members asked to ping the target for us, and whether each has answered (a nack,
    /// or the target's ack relayed).
    pub helpers: SmallVec<[Helper; 4]>,
    /// The target's incarnation when the probe started (`None`: not recorded). With the
    /// accusation guard, a probe that the target outlived by refuting (its incarnation rose
    /// meanwhile) is no evidence against the new incarnation.
    pub incarnation: Option<u32>,
}

/// A failed probe whose accusation was withheld (see the module doc): helpers' nacks that
/// arrive within `probe_timeout` after the close still count, and make the accusation once
/// they outweigh the trusted helpers' silence. A helper nacks `probe_timeout` after it was asked, which is itself
/// `probe_timeout` into the probe; with `probe_interval` = 2 · `probe_timeout` (LAN) and a
/// healthy score, the nack lands a round trip after the close, so without this grace no nack
/// would ever count against a crashed target.
#[derive(Clone, Debug)]
pub(crate) struct Withheld {
    pub seq: u32,
    pub target: Name,
    /// The helpers asked: only their nacks count.
    pub helpers: SmallVec<[Helper; 4]>,
    /// The end of the grace.
    pub until: crate::time::Timestamp,
}

/// Whether the helpers' answers point at the target: more of them nacked than trusted ones
/// (that answered this node's previous request) stayed silent.
fn outweighs(helpers: &[Helper]) -> bool {
    let nacks = helpers.iter().filter(|h| h.answered).count();
    let silent = helpers.iter().filter(|h| h.trusted && !h.answered).count();
    nacks > silent
}

/// A member asked to ping a probe's target on this node's behalf.
#[derive(Clone, Debug)]
pub(crate) struct Helper {
    pub name: Name,
    pub addr: SocketAddr,
    /// It answered this node's previous request to it (it was among [`RecentAcks`] when
    /// asked): its silence now points at this node's link rather than at itself.
    pub trusted: bool,
    pub answered: bool,
}

/// How far back, in health-scaled probe intervals counted from a failed probe's close, a
/// message reaching this node makes its helpers' silence selective rather than total (see the
/// module doc): 16 s at a healthy score, 128 s at LAN's worst — in clusters of 16 live
/// members or more; smaller ones use one interval per live member, at least
/// [`MIN_REACHED_WINDOW`] ([`reached_window`]).
pub(crate) const REACHED_WINDOW: u32 = 16;

/// The shortest total-silence window, in health-scaled probe intervals.
pub(crate) const MIN_REACHED_WINDOW: u32 = 4;

/// The total-silence window for a node that counts `live` live members, in health-scaled
/// probe intervals: `live` clamped to [`MIN_REACHED_WINDOW`] ..= [`REACHED_WINDOW`]. The long
/// window is for a degraded member that the others already hold failed and hear from only
/// now and then; a lone survivor of a mass crash in a small cluster should not wait 16
/// intervals at the worst health score (128 s at LAN's) before it accuses the dead (issue 18).
/// Since unconfirmed verdicts stay local under the guard ([`super::Verdict::Dead`]), a
/// degraded member's accusations after a shorter window still fail nobody elsewhere.
pub(crate) fn reached_window(live: usize) -> u32 {
    (live.min(u32::MAX as usize) as u32).clamp(MIN_REACHED_WINDOW, REACHED_WINDOW)
}

/// How many members that answered this node's latest request are remembered.
pub(crate) const RECENT_ACKS: usize = 32;

/// Members that answered the latest request this node sent them — an ack to a direct ping, or
/// as an indirect-probe helper a nack or a relayed ack — distinct, newest last, at most
/// [`RECENT_ACKS`]: the preferred indirect-probe helpers. A member that failed to answer (a
/// direct probe that failed, a helper that sent nothing back) is forgotten until it answers
/// again. A member that never answers (a fake member claimed by a hostile datagram, at an
/// address nobody listens on; a member that crashed) sends no nack either, so picking it as a
/// helper would count against this node's own health score and leave a lost ping
/// unrescued. Fixed capacity: updates scan at most 32 names and allocate nothing once full.
#[derive(Debug, Default)]
pub(crate) struct RecentAcks {
    names: std::collections::VecDeque<Name>,
}

impl RecentAcks {
    /// `name` answered just now.
    pub(crate) fn record(&mut self, name: &Name) {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.names.remove(i);
        } else if self.names.len() >= RECENT_ACKS {
            self.names.pop_front();
        }
        self.names.push_back(name.clone());
    }

    /// `name` failed to answer.
    pub(crate) fn forget(&mut self, name: &str) {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            self.names.remove(i);
        }
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> impl Iterator<Item = &Name> {
        self.names.iter()
    }
}

impl FailureDetector {
    /// Close the probe in flight, if any: failed, since nobody answered in time. Returns the
    /// accusation to apply when its target is still live and the evidence points at the
    /// target rather than at this node's own link (see the module doc).
    pub(super) fn close_probe(&mut self, cx: &mut Cx<'_>) -> Option<Accusation> {
        let p = *self.probe.take()?;
        cx.fx.stats.probes_failed += 1;
        // Off (`Config::accusation_guard`; memberlist's rule), every failed probe accuses: nothing
        // is withheld, so no late nack is ever waited for.
        let own_link_in_doubt = cx.cfg.accusation_guard && !p.helpers.is_empty() && {
            let window = self.awareness.probe_interval(cx.cfg) * reached_window(cx.members.live());
            let reached = self
                .reached
                .is_some_and(|t| cx.now.saturating_since(t) <= window);
            reached && !outweighs(&p.helpers)
        };
        self.recent_acks.forget(&p.target);
        for h in p.helpers.iter().filter(|h| !h.answered) {
            self.recent_acks.forget(&h.name);
        }
        let missed = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks)
        } else {
            1
        };
        self.awareness.adjust(missed as i64, cx.cfg);
        let rec = cx.members.get(&p.target)?;
        if !rec.is_live() {
            return None;
        }
        if cx.cfg.accusation_guard && p.incarnation.is_some_and(|i| i != rec.incarnation) {
            // The target refuted while this probe was out: its silence was the old
            // incarnation's, and accusing the new one would start a fresh suspicion.
            cx.fx.stats.accusations_outlived += 1;
            return None;
        }
        if own_link_in_doubt {
            cx.fx.stats.accusations_withheld += 1;
            tracing::debug!(target = %p.target, "accusation withheld: every helper silent while others reach us");
            self.withheld = Some(Withheld {
                seq: p.seq,
                target: p.target.clone(),
                helpers: p.helpers.clone(),
                until: cx.now + cx.cfg.probe_timeout,
            });
            return None;
        }
        Some(Accusation {
            incarnation: rec.incarnation,
            name: p.target.clone(),
            from: cx.me.clone(),
        })
    }

    /// Schedule the next probe tick (the interval stretched by the health score) and ping the
    /// next member in probe order (the ping carries the view digest, with `events` from the
    /// Serf layer).
    pub(crate) fn start_probe(&mut self, events: EventMark, cx: &mut Cx<'_>) {
        let next = cx.now + self.awareness.probe_interval(cx.cfg);
        cx.fx
            .timers
            .schedule(next, TimerKind::Swim(SwimTimer::ProbeTick));
        let first = if self.priority_last {
            None
        } else {
            self.priority.take()
        };
        let first = first.filter(|n| {
            **n != **cx.me
                && cx
                    .members
                    .get(n)
                    .is_some_and(|r| r.status() == MemberStatus::Suspect)
        });
        self.priority_last = first.is_some();
        let rec = match first {
            Some(n) => cx.members.get(&n).expect("checked above"),
            None => {
                let Some(i) = cx.members.next_probe_target(cx.me, cx.rng) else {
                    return;
                };
                cx.members.at(i)
            }
        };
        let (target, addr, inc, suspect) = (
            rec.name.to_name(),
            rec.addr(),
            rec.incarnation,
            rec.status() == MemberStatus::Suspect,
        );
        let seq = self.next_seq();
        let ping = Message::Ping {
            seq,
            target: target.clone(),
            digest: Some(cx.view_digest(events)),
        };
        if suspect {
            // Buddy system: the suspect hears of its suspicion with the ping and can refute.
            let s = Message::Suspect(Accusation {
                incarnation: inc,
                name: target.clone(),
                from: cx.me.clone(),
            });
            // The accusation goes first: the target refutes before it acks, so its ack
            // carries the refutation back to us.
            cx.send_datagram(addr, &[s, ping]);
        } else {
            cx.send_datagram(addr, &[ping]);
        }
        self.probe = Some(Box::new(Probe {
            seq,
            target,
            addr,
            expected_nacks: 0,
            nacks: 0,
            helpers: SmallVec::new(),
            incarnation: Some(inc),
        }));
        let at = cx.now + cx.cfg.probe_timeout;
        cx.fx
            .timers
            .schedule(at, TimerKind::Swim(SwimTimer::ProbeTimeout { seq }));
    }

    /// The direct ping went unanswered: ask others, and try the reliable channel.
    pub(super) fn go_indirect(&mut self, cx: &mut Cx<'_>) {
        let Some(p) = &self.probe else { return };
        let (seq, target, addr) = (p.seq, p.target.clone(), p.addr);
        let helpers = self.indirect_helpers(&target, cx);
        for h in &helpers {
            let msg = Message::IndirectPing {
                seq,
                target: target.clone(),
                addr,
            };
            cx.send_datagram(h.addr, &[msg]);
        }
        if let Some(p) = &mut self.probe {
            p.expected_nacks = helpers.len() as u32;
            p.helpers = helpers;
        }
        let ping = Message::StreamPing {
            seq,
            target: target.clone(),
            reply_to: *cx.addr,
        };
        cx.send_reliable(addr, &ping);
    }

    /// Up to `indirect_checks` alive members (not this node, not `target`) to ping `target`
    /// on our behalf: first, in random order, members that answered our latest request to
    /// them ([`RecentAcks`]); then, when too few of those are alive, random members.
    pub(super) fn indirect_helpers(
        &mut self,
        target: &Name,
        cx: &mut Cx<'_>,
    ) -> SmallVec<[Helper; 4]> {
        let k = cx.cfg.indirect_checks;
        let mut out: SmallVec<[Helper; 4]> = SmallVec::new();
        let helper = |r: &MemberRec, trusted: bool| Helper {
            name: r.name.to_name(),
            addr: r.addr(),
            trusted,
            answered: false,
        };
        let me = cx.me;
        let mut recent: SmallVec<[Helper; RECENT_ACKS]> = self
            .recent_acks
            .names
            .iter()
            .filter(|n| *n != target && *n != me)
            .filter_map(|n| cx.members.get(n))
            .filter(|r| r.status() == MemberStatus::Alive)
            .map(|r| helper(r, true))
            .collect();
        while out.len() < k && !recent.is_empty() {
            let i = cx.rng.random_range(0..recent.len());
            out.push(recent.swap_remove(i));
        }
        if out.len() < k {
            let more = cx.members.random_members(k - out.len(), cx.rng, |r| {
                r.status() == MemberStatus::Alive
                    && r.name != *me
                    && r.name != *target
                    && !out.iter().any(|h| r.name == h.name)
            });
            out.extend(more.iter().map(|&i| helper(cx.members.at(i), false)));
        }
        out
    }

    /// If `from` is a helper of the probe in flight, it answered: true.
    #[must_use = "false: the answer did not come from a helper"]
    fn helper_answered(&mut self, from: SocketAddr) -> bool {
        let Some(p) = &mut self.probe else {
            return false;
        };
        let Some(h) = p.helpers.iter_mut().find(|h| h.addr == from) else {
            return false;
        };
        if !h.answered {
            h.answered = true;
            self.recent_acks.record(&h.name);
        }
        true
    }

    /// The probe in flight was acked, by its target or relayed by a helper (the helper
    /// answered; the target's path to us is in doubt): it succeeded, health improves.
    pub(super) fn probe_answered(&mut self, from: SocketAddr, cx: &mut Cx<'_>) {
        if !self.helper_answered(from) {
            if let Some(p) = &self.probe {
                let target = p.target.clone();
                self.recent_acks.record(&target);
            }
        }
        self.probe = None;
        cx.fx.stats.probes_ok += 1;
        self.awareness.adjust(-1, cx.cfg);
    }

    /// A helper of our probe in flight could not reach the target. A helper of the last
    /// withheld probe could not either: its nack, within the grace, makes the accusation
    /// after all (returned, to apply) — the helper heard this node, so its link is not the
    /// one in doubt.
    pub(crate) fn on_nack(
        &mut self,
        from: SocketAddr,
        seq: u32,
        cx: &mut Cx<'_>,
    ) -> Option<Accusation> {
        if self.probe.as_ref().is_none_or(|p| p.seq != seq) {
            let w = self.withheld.as_ref()?;
            if w.seq != seq {
                return None;
            }
            if cx.now > w.until {
                self.withheld = None;
                return None;
            }
            let w = self.withheld.as_mut().expect("present");
            let h = w.helpers.iter_mut().find(|h| h.addr == from)?;
            if h.answered {
                return None;
            }
            h.answered = true;
            let helper = h.name.clone();
            self.recent_acks.record(&helper);
            if !outweighs(&w.helpers) {
                return None;
            }
            let w = self.withheld.take().expect("present");
            let rec = cx.members.get(&w.target)?;
            if !rec.is_live() {
                return None;
            }
            cx.fx.stats.accusations_on_late_nack += 1;
            return Some(Accusation {
                incarnation: rec.incarnation,
                name: w.target,
                from: cx.me.clone(),
            });
        }
        let _ = self.helper_answered(from);
        if let Some(p) = &mut self.probe {
            if p.nacks < p.expected_nacks {
                p.nacks += 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::SwimTimer;
    use super::{Helper, Probe, RecentAcks, RECENT_ACKS};
    use crate::config::Config;
    use crate::identity::{Identity, MemberStatus};
    use crate::node::cx;
    use crate::node::{Node, TransmitKind};
    use crate::testkit::*;
    use crate::wire::Message;

    fn cluster_node(indirect_checks: usize) -> Node {
        node_with(Config {
            indirect_checks,
            ..Config::local()
        })
    }

    /// [`cluster_node`] with the accusation guard on (`Config::accusation_guard`).
    fn guarded_node(indirect_checks: usize) -> Node {
        node_with(Config {
            indirect_checks,
            accusation_guard: true,
            ..Config::local()
        })
    }

    fn node_with(cfg: Config) -> Node {
        let mut a = Node::new(cfg, Identity::new("a", addr(1)), 1, at(0)).unwrap();
        deliver(
            &mut a,
            at(0),
            2,
            &[alive("b", 2, 0), alive("c", 3, 0), alive("d", 4, 0)],
        );
        sent(&mut a);
        a
    }

    /// Run until `a` sends a probe; return (target port, seq).
    fn next_ping(a: &mut Node) -> (u16, u32) {
        for _ in 0..2000 {
            let t = a.now + Duration::from_millis(5);
            a.handle_timeout(t);
            for (to, _, msgs) in sent(a) {
                for m in msgs {
                    if let Message::Ping { seq, .. } = m {
                        return (to.port(), seq);
                    }
                }
            }
        }
        panic!("no probe sent")
    }

    #[test]
    fn unanswered_probe_goes_indirect_then_suspects_and_hurts_health() {
        let mut a = cluster_node(2);
        let (target, seq) = next_ping(&mut a);
        let start = a.now;
        tick(
            &mut a,
            start + Duration::from_millis(210),
            Duration::from_millis(5),
        );
        let out = sent(&mut a);
        let indirect: Vec<u16> = out
            .iter()
            .filter(|(_, _, m)| matches!(m[0], Message::IndirectPing { seq: s, .. } if s == seq))
            .map(|(to, _, _)| to.port())
            .collect();
        assert_eq!(indirect.len(), 2, "asks indirect_checks members");
        assert!(!indirect.contains(&target));
        assert!(out.iter().any(|(to, kind, m)| to.port() == target
            && *kind == TransmitKind::Reliable
            && matches!(m[0], Message::StreamPing { seq: s, .. } if s == seq)));
        // One helper answers with a nack: one missed nack counts against our health.
        let now = a.now;
        deliver(&mut a, now, indirect[0], &[Message::Nack { seq }]);
        tick(
            &mut a,
            start + Duration::from_millis(1010),
            Duration::from_millis(5),
        );
        let target_name = ["b", "c", "d"][(target - 2) as usize];
        assert_eq!(a.member(target_name).unwrap().status, MemberStatus::Suspect);
        assert_eq!(a.health_score(), 1);
        assert_eq!(a.stats().probes_failed, 1);
    }

    #[test]
    fn helpers_are_members_that_answered_their_latest_request() {
        // b answered recently; thirty members never did (a flood of fakes).
        let mut a = cluster_node(1);
        let fakes: Vec<Message> = (0..30)
            .map(|i| alive(&format!("fake-{i}"), 100 + i, 0))
            .collect();
        deliver(&mut a, at(0), 2, &fakes);
        let _ = sent(&mut a);
        a.swim.recent_acks.record(&"b".into());
        let target: crate::identity::Name = "fake-0".into();
        for _ in 0..20 {
            let h = a.swim.indirect_helpers(&target, &mut cx!(a));
            assert_eq!(h.len(), 1);
            assert_eq!((&*h[0].name, h[0].addr), ("b", addr(2)));
        }
        // With more helpers wanted than members answered: the rest are random, distinct,
        // never this node nor the target.
        std::sync::Arc::make_mut(&mut a.cfg).indirect_checks = 3;
        for _ in 0..20 {
            let h = a.swim.indirect_helpers(&target, &mut cx!(a));
            assert_eq!(h.len(), 3);
            assert_eq!(&*h[0].name, "b");
            assert!(h.iter().all(|x| &*x.name != "a" && x.name != target));
            assert!(h[1].name != h[2].name && h[1].name != h[0].name && h[2].name != h[0].name);
        }
        // A member that is not alive is never asked, even if it answered before.
        std::sync::Arc::make_mut(&mut a.cfg).indirect_checks = 1;
        deliver(&mut a, at(10), 3, &[suspect("b", 0, "c")]);
        let h = a.swim.indirect_helpers(&target, &mut cx!(a));
        assert_ne!(&*h[0].name, "b");
    }

    #[test]
    fn a_helper_that_stays_silent_is_no_longer_preferred() {
        let mut a = cluster_node(1);
        let recent = |a: &Node| -> Vec<String> {
            a.swim.recent_acks.names().map(|n| n.to_string()).collect()
        };
        // A direct ack records the target.
        let (target, seq) = next_ping(&mut a);
        let now = a.now;
        deliver(&mut a, now, target, &[Message::Ack { seq, digest: None }]);
        let name = ["b", "c", "d"][(target - 2) as usize];
        assert_eq!(recent(&a), vec![name]);
        a.swim.recent_acks.record(&"b".into());
        a.swim.recent_acks.record(&"c".into());
        let probe = |seq: u32, target: &str, port: u16| Probe {
            seq,
            target: target.into(),
            addr: addr(port),
            expected_nacks: 1,
            nacks: 0,
            helpers: [Helper {
                name: "b".into(),
                addr: addr(2),
                trusted: true,
                answered: false,
            }]
            .into_iter()
            .collect(),
            incarnation: None,
        };
        // c is probed through b; b nacks (a nack from a non-helper records nobody), c stays
        // silent: b stays preferred, c is forgotten.
        a.swim.probe = Some(Box::new(probe(500, "c", 3)));
        let now = a.now;
        deliver(&mut a, now, 4, &[Message::Nack { seq: 500 }]);
        deliver(&mut a, now, 2, &[Message::Nack { seq: 500 }]);
        assert_eq!(a.swim.probe.as_ref().map(|p| p.nacks), Some(1));
        a.on_swim_timer(SwimTimer::ProbeTick);
        let r = recent(&a);
        assert!(
            r.contains(&"b".to_string()) && !r.contains(&"c".to_string()),
            "{r:?}"
        );
        // d is probed through b; b says nothing: b is forgotten.
        a.swim.probe = Some(Box::new(probe(501, "d", 4)));
        a.on_swim_timer(SwimTimer::ProbeTick);
        let r = recent(&a);
        assert!(
            !r.contains(&"b".to_string()) && !r.contains(&"d".to_string()),
            "{r:?}"
        );
        // A helper relaying the target's ack answered; the target's own path is in doubt.
        a.swim.probe = Some(Box::new(probe(502, "c", 3)));
        let now = a.now;
        deliver(
            &mut a,
            now,
            2,
            &[Message::Ack {
                seq: 502,
                digest: None,
            }],
        );
        let r = recent(&a);
        assert!(
            r.contains(&"b".to_string()) && !r.contains(&"c".to_string()),
            "{r:?}"
        );
    }

    /// A probe of d through b and c (trusted or not), failed so far.
    fn failed_probe(seq: u32, trusted: bool) -> Probe {
        let h = |name: &str, port| Helper {
            name: name.into(),
            addr: addr(port),
            trusted,
            answered: false,
        };
        Probe {
            seq,
            target: "d".into(),
            addr: addr(4),
            expected_nacks: 2,
            nacks: 0,
            helpers: [h("b", 2), h("c", 3)].into_iter().collect(),
            incarnation: None,
        }
    }

    #[test]
    fn selective_silence_withholds_until_late_nacks_outweigh_it() {
        let mut a = guarded_node(2);
        // Both helpers answered us before and are silent now, while others reach us.
        a.swim.probe = Some(Box::new(failed_probe(600, true)));
        a.swim.reached = Some(a.now);
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Alive);
        assert_eq!(a.stats().accusations_withheld, 1);
        assert_eq!(a.health_score(), 2, "the missed nacks still count");
        // One late nack against one trusted silence: not yet; the second outweighs it.
        let now = a.now + Duration::from_millis(5);
        deliver(&mut a, now, 2, &[Message::Nack { seq: 600 }]);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Alive);
        deliver(&mut a, now, 2, &[Message::Nack { seq: 600 }]);
        assert_eq!(
            a.member("d").unwrap().status,
            MemberStatus::Alive,
            "same helper twice"
        );
        deliver(&mut a, now, 3, &[Message::Nack { seq: 600 }]);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Suspect);
        assert_eq!(a.stats().accusations_on_late_nack, 1);
    }

    #[test]
    fn nacks_after_the_grace_count_for_nothing() {
        let mut a = guarded_node(2);
        a.swim.probe = Some(Box::new(failed_probe(601, true)));
        a.swim.reached = Some(a.now);
        a.on_swim_timer(SwimTimer::ProbeTick);
        let late = a.now + a.cfg.probe_timeout + Duration::from_millis(1);
        deliver(&mut a, late, 2, &[Message::Nack { seq: 601 }]);
        deliver(&mut a, late, 3, &[Message::Nack { seq: 601 }]);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Alive);
        assert_eq!(a.stats().accusations_on_late_nack, 0);
    }

    #[test]
    fn total_silence_still_accuses() {
        // The helpers crashed with the target and nothing has reached this node since.
        let mut a = guarded_node(2);
        a.swim.probe = Some(Box::new(failed_probe(602, true)));
        a.swim.reached = None;
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Suspect);
        assert_eq!(a.stats().accusations_withheld, 0);
        // The same when the last message is older than the window.
        let mut a = guarded_node(2);
        a.swim.probe = Some(Box::new(failed_probe(603, true)));
        let window =
            a.swim.awareness.probe_interval(&a.cfg) * super::reached_window(a.members.live());
        a.swim.reached = Some(a.now);
        a.now = a.now + window + Duration::from_millis(1);
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Suspect);
    }

    #[test]
    fn silence_of_untrusted_helpers_does_not_outweigh_a_nack() {
        // b nacks; c never answered us before (maybe crashed): the nack points at d.
        let mut a = guarded_node(2);
        let mut p = failed_probe(604, false);
        p.helpers[0].answered = true;
        p.nacks = 1;
        a.swim.probe = Some(Box::new(p));
        a.swim.reached = Some(a.now);
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Suspect);
        // With c trusted, one nack against one trusted silence is withheld.
        let mut a = guarded_node(2);
        let mut p = failed_probe(605, true);
        p.helpers[0].answered = true;
        p.nacks = 1;
        a.swim.probe = Some(Box::new(p));
        a.swim.reached = Some(a.now);
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Alive);
        assert_eq!(a.stats().accusations_withheld, 1);
    }

    #[test]
    fn without_the_guard_selective_silence_accuses_as_before() {
        // The default: the same evidence as above, and the probe accuses at its close.
        let mut a = cluster_node(2);
        assert!(!a.cfg.accusation_guard);
        a.swim.probe = Some(Box::new(failed_probe(606, true)));
        a.swim.reached = Some(a.now);
        a.on_swim_timer(SwimTimer::ProbeTick);
        assert_eq!(a.member("d").unwrap().status, MemberStatus::Suspect);
        assert_eq!(a.stats().accusations_withheld, 0);
        assert!(a.swim.withheld.is_none(), "no late-nack window");
    }

    #[test]
    fn recent_acks_are_bounded_distinct_and_newest_last() {
        let mut r = RecentAcks::default();
        for i in 0..100 {
            r.record(&format!("m{}", i % 40).into());
        }
        let names: Vec<String> = r.names().map(|n| n.to_string()).collect();
        assert_eq!(names.len(), RECENT_ACKS);
        assert_eq!(names.last().map(String::as_str), Some("m19"));
        let mut d = names.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), RECENT_ACKS);
        r.record(&"m0".into());
        r.forget("m0");
        r.forget("nobody");
        assert_eq!(r.names().count(), RECENT_ACKS - 1);
    }

    #[test]
    fn an_ack_ends_the_probe_and_heals() {
        let mut a = cluster_node(1);
        a.swim.awareness.set(3);
        let (target, seq) = next_ping(&mut a);
        let now = a.now;
        deliver(&mut a, now, target, &[Message::Ack { seq, digest: None }]);
        assert_eq!(a.health_score(), 2);
        assert_eq!(a.stats().probes_ok, 1);
        let now = a.now;
        tick(
            &mut a,
            now + Duration::from_secs(1),
            Duration::from_millis(5),
        );
        assert!(a.members().iter().all(|m| m.status == MemberStatus::Alive));
        // The probe interval stretches with the health score.
        let (_, _) = next_ping(&mut a);
        let t1 = a.now;
        let (_, _) = next_ping(&mut a);
        let gap = a.now.saturating_since(t1);
        assert!(
            gap >= Duration::from_millis(2900),
            "interval scaled by score + 1: {gap:?}"
        );
    }

    #[test]
    fn relays_forward_acks_and_nack_on_silence() {
        let mut a = cluster_node(1);
        deliver(&mut a, at(1), 3, &[alive("x", 9, 0), alive("y", 8, 0)]);
        sent(&mut a);
        // A request to probe someone at an address this node does not hold for them is
        // refused: nobody can aim our pings at an address of their choosing.
        deliver(
            &mut a,
            at(1),
            3,
            &[Message::IndirectPing {
                seq: 76,
                target: "x".into(),
                addr: addr(10),
            }],
        );
        assert!(sent(&mut a).is_empty());
        assert_eq!(a.stats().replies_refused, 1);
        deliver(
            &mut a,
            at(1),
            3,
            &[Message::IndirectPing {
                seq: 77,
                target: "x".into(),
                addr: addr(9),
            }],
        );
        let out = sent(&mut a);
        let relay_seq = match &out[..] {
            [(to, _, msgs)] if *to == addr(9) => match msgs[0] {
                Message::Ping {
                    seq, ref target, ..
                } if target == "x" => seq,
                _ => panic!("{msgs:?}"),
            },
            _ => panic!("{out:?}"),
        };
        deliver(
            &mut a,
            at(2),
            9,
            &[Message::Ack {
                seq: relay_seq,
                digest: None,
            }],
        );
        let out = sent(&mut a);
        assert!(
            matches!(&out[..], [(to, _, m)] if *to == addr(3) && matches!(m[0], Message::Ack { seq: 77, .. }))
        );
        // A second relay whose target stays silent ends in a nack to the origin.
        deliver(
            &mut a,
            at(3),
            4,
            &[Message::IndirectPing {
                seq: 78,
                target: "y".into(),
                addr: addr(8),
            }],
        );
        sent(&mut a);
        a.handle_timeout(at(3) + Duration::from_millis(250));
        let out = sent(&mut a);
        assert!(out
            .iter()
            .any(|(to, _, m)| *to == addr(4) && matches!(m[0], Message::Nack { seq: 78 })));
    }

    #[test]
    fn probing_a_suspect_carries_the_accusation_first() {
        let mut a = cluster_node(1);
        for (name, port) in [("b", 2), ("c", 3), ("d", 4)] {
            deliver(&mut a, at(0), port, &[suspect(name, 0, "z")]);
        }
        sent(&mut a);
        for _ in 0..400 {
            let t = a.now + Duration::from_millis(5);
            a.handle_timeout(t);
            for (_, _, msgs) in sent(&mut a) {
                if msgs.iter().any(|m| matches!(m, Message::Ping { .. })) {
                    assert!(matches!(msgs[0], Message::Suspect(_)), "buddy: {msgs:?}");
                    assert!(matches!(msgs[1], Message::Ping { .. }));
                    return;
                }
            }
        }
        panic!("no probe");
    }
    /// `Config::probe_suspects_first`: a member another node accuses is probed next, ahead
    /// of the round-robin.
    #[test]
    fn a_member_another_accuses_is_probed_next() {
        let mut a = node_with(Config {
            probe_suspects_first: true,
            ..Config::local()
        });
        let names = [("b", 2u16), ("c", 3), ("d", 4)];
        let (first, _) = next_ping(&mut a);
        let mut accused = vec![first];
        for round in 0..2 {
            let &(name, port) = names
                .iter()
                .find(|(n, p)| {
                    !accused.contains(p)
                        && a.member(n).is_some_and(|m| m.status == MemberStatus::Alive)
                })
                .expect("an alive member left to accuse");
            let now = a.now;
            deliver(&mut a, now, 9, &[suspect(name, 0, "z")]);
            sent(&mut a);
            let (target, _) = next_ping(&mut a);
            if round == 0 {
                assert_eq!(target, port, "{name} accused by z is probed next");
            } else {
                // The last probe went to an accused member: this one follows the
                // round-robin, and the accused member comes next (unless the round-robin
                // picked it anyway).
                let (after, _) = next_ping(&mut a);
                assert!(
                    target == port || after == port,
                    "{name} probed within two: {target}, {after}"
                );
            }
            accused.push(port);
        }
    }

    /// With the accusation guard, a suspicion that expires with no independent confirmation
    /// although one was expected fails the member here only; without the guard (or once
    /// confirmed) the verdict is gossiped.
    #[test]
    fn an_unconfirmed_verdict_stays_local_under_the_guard() {
        for guard in [true, false] {
            let mut a = if guard {
                guarded_node(1)
            } else {
                cluster_node(1)
            };
            let now = a.now;
            deliver(&mut a, now, 2, &[suspect("d", 0, "b")]);
            let generation = a
                .members
                .get("d")
                .and_then(|r| r.suspicion_generation())
                .expect("suspected");
            a.now = a.now + Duration::from_secs(60);
            a.on_swim_timer(SwimTimer::Suspicion {
                name: "d".into(),
                generation,
            });
            assert_eq!(a.member("d").unwrap().status, MemberStatus::Failed);
            assert_eq!(
                a.stats().verdicts_kept_local,
                u64::from(guard),
                "guard {guard}"
            );
        }
    }

    /// With the accusation guard, a probe whose target refuted (raised its incarnation) while
    /// the probe was out accuses nobody: the silence was the old incarnation's.
    #[test]
    fn a_probe_the_target_outlived_by_refuting_accuses_nobody() {
        for guard in [true, false] {
            let mut a = if guard {
                guarded_node(1)
            } else {
                cluster_node(1)
            };
            let (target, _) = next_ping(&mut a);
            let name = ["b", "c", "d"][(target - 2) as usize];
            let now = a.now;
            deliver(&mut a, now, target, &[alive(name, target, 1)]);
            a.now = a.now + Duration::from_secs(1);
            a.on_swim_timer(SwimTimer::ProbeTick);
            let status = a.member(name).unwrap().status;
            if guard {
                assert_eq!(status, MemberStatus::Alive);
                assert_eq!(a.stats().accusations_outlived, 1);
            } else {
                assert_eq!(status, MemberStatus::Suspect);
                assert_eq!(a.stats().accusations_outlived, 0);
            }
        }
    }
}
