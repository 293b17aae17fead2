//! The probe cycle: one member at a time in round-robin order, a direct ping, then indirect
//! pings through `indirect_checks` members (with nacks, Lifeguard) plus a reliable-channel
//! fallback ping; the probe closes when the next one starts, failed if nobody vouched for the
//! target. Members that answered recently are the preferred helpers.

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
}

/// A member asked to ping a probe's target on this node's behalf.
#[derive(Clone, Debug)]
pub(crate) struct Helper {
    pub name: Name,
    pub addr: SocketAddr,
    pub answered: bool,
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
    /// accusation to apply when its target is still live.
    pub(super) fn close_probe(&mut self, cx: &mut Cx<'_>) -> Option<Accusation> {
        let p = *self.probe.take()?;
        cx.fx.stats.probes_failed += 1;
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
        let Some(i) = cx.members.next_probe_target(cx.me, cx.rng) else {
            return;
        };
        let rec = cx.members.at(i);
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
        let helper = |r: &MemberRec| Helper {
            name: r.name.to_name(),
            addr: r.addr(),
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
            .map(helper)
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
            out.extend(more.iter().map(|&i| helper(cx.members.at(i))));
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

    /// A helper of our probe in flight could not reach the target.
    pub(crate) fn on_nack(&mut self, from: SocketAddr, seq: u32) {
        if self.probe.as_ref().is_none_or(|p| p.seq != seq) {
            return;
        }
        let _ = self.helper_answered(from);
        if let Some(p) = &mut self.probe {
            if p.nacks < p.expected_nacks {
                p.nacks += 1;
            }
        }
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
        let cfg = Config {
            indirect_checks,
            ..Config::local()
        };
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
                answered: false,
            }]
            .into_iter()
            .collect(),
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
}
