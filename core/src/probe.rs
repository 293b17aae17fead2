//! SWIM failure detection with Lifeguard's local health: the probe cycle (direct ping, then
//! indirect pings through `indirect_checks` members with nacks, plus a reliable-channel
//! fallback ping), the relay side of indirect pings, and the awareness score that stretches the
//! probe interval when this node itself is struggling.

use std::net::SocketAddr;

use crate::identity::{MemberStatus, Name};
use crate::node::{Node, RunState};
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::{Accusation, Digest, Message};

/// The probe in flight (at most one at a time).
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub seq: u32,
    pub target: Name,
    pub addr: SocketAddr,
    /// Indirect pings sent (each owes a nack if it gets no ack).
    pub expected_nacks: u32,
    pub nacks: u32,
}

/// An indirect ping this node runs for another member.
#[derive(Clone, Debug)]
pub(crate) struct Relay {
    pub origin: SocketAddr,
    pub origin_seq: u32,
}

impl Node {
    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn adjust_awareness(&mut self, delta: i64) {
        let max = self.cfg.awareness_max_multiplier as i64 - 1;
        self.awareness = (self.awareness as i64 + delta).clamp(0, max) as u32;
    }

    /// Worsen the health score by one (used when refuting a suspicion about ourselves).
    pub(crate) fn health_penalty(&mut self) {
        self.adjust_awareness(1);
    }

    /// Close the previous probe (failed if still open), then start the next one.
    pub(crate) fn probe_tick(&mut self) {
        if let Some(p) = self.probe.take() {
            self.probe_failed(p);
        }
        if self.run != RunState::Running {
            return;
        }
        let interval = self.cfg.probe_interval * (self.awareness + 1);
        let next = self.now + interval;
        self.timers.schedule(next, TimerKind::ProbeTick);
        let me = self.me.clone();
        let Some(i) = self.members.next_probe_target(&me, &mut self.rng) else {
            return;
        };
        let rec = self.members.at(i);
        let (target, addr, inc, suspect) = (
            rec.name.clone(),
            rec.addr(),
            rec.incarnation,
            rec.status() == MemberStatus::Suspect,
        );
        let seq = self.next_seq();
        let ping = Message::Ping {
            seq,
            target: target.clone(),
            digest: Some(self.view_digest()),
        };
        if suspect {
            // Buddy system: the suspect hears of its suspicion with the ping and can refute.
            let s = Message::Suspect(Accusation {
                incarnation: inc,
                name: target.clone(),
                from: me.clone(),
            });
            // The accusation goes first: the target refutes before it acks, so its ack
            // carries the refutation back to us.
            self.send_datagram(addr, &[s, ping]);
        } else {
            self.send_datagram(addr, &[ping]);
        }
        self.probe = Some(Probe {
            seq,
            target,
            addr,
            expected_nacks: 0,
            nacks: 0,
        });
        self.timers.schedule(
            self.now + self.cfg.probe_timeout,
            TimerKind::ProbeTimeout { seq },
        );
    }

    /// The direct ping went unanswered: ask others, and try the reliable channel.
    pub(crate) fn probe_timeout(&mut self, seq: u32) {
        let Some(p) = &self.probe else { return };
        if p.seq != seq {
            return;
        }
        let (target, addr) = (p.target.clone(), p.addr);
        let me = self.me.clone();
        let helpers = self
            .members
            .random_members(self.cfg.indirect_checks, &mut self.rng, |r| {
                r.status() == MemberStatus::Alive && r.name != me && r.name != target
            });
        let helper_addrs: Vec<SocketAddr> =
            helpers.iter().map(|&i| self.members.at(i).addr()).collect();
        for h in &helper_addrs {
            let msg = Message::IndirectPing {
                seq,
                target: target.clone(),
                addr,
            };
            self.send_datagram(*h, &[msg]);
        }
        if let Some(p) = &mut self.probe {
            p.expected_nacks = helper_addrs.len() as u32;
        }
        let ping = Message::StreamPing {
            seq,
            target: target.clone(),
            reply_to: self.addr,
        };
        self.send_reliable(addr, &ping);
    }

    fn probe_failed(&mut self, p: Probe) {
        self.stats.probes_failed += 1;
        let missed = if p.expected_nacks > 0 {
            p.expected_nacks.saturating_sub(p.nacks)
        } else {
            1
        };
        self.adjust_awareness(missed as i64);
        let Some(rec) = self.members.get(&p.target) else {
            return;
        };
        if !rec.is_live() {
            return;
        }
        let s = Accusation {
            incarnation: rec.incarnation,
            name: p.target.clone(),
            from: self.me.clone(),
        };
        self.apply_suspect(s, true);
    }

    pub(crate) fn on_ack(&mut self, from: SocketAddr, seq: u32, digest: Option<Digest>) {
        if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
            self.probe = None;
            self.stats.probes_ok += 1;
            self.adjust_awareness(-1);
            if let Some(d) = digest {
                self.compare_digest(from, d);
            }
            return;
        }
        if let Some(r) = self.relays.remove(&seq) {
            let ack = Message::Ack {
                seq: r.origin_seq,
                digest: None,
            };
            self.send_datagram(r.origin, &[ack]);
        }
    }

    pub(crate) fn on_nack(&mut self, seq: u32) {
        if let Some(p) = &mut self.probe {
            if p.seq == seq && p.nacks < p.expected_nacks {
                p.nacks += 1;
            }
        }
    }

    pub(crate) fn on_indirect_ping(
        &mut self,
        origin: SocketAddr,
        origin_seq: u32,
        target: Name,
        addr: SocketAddr,
    ) {
        if self.relays.len() >= self.cfg.max_indirect_relays {
            self.stats.indirect_refused += 1;
            return;
        }
        let seq = self.next_seq();
        self.relays.insert(seq, Relay { origin, origin_seq });
        let ping = Message::Ping {
            seq,
            target,
            digest: None,
        };
        self.send_datagram(addr, &[ping]);
        self.timers
            .schedule(self.now + self.cfg.probe_timeout, TimerKind::Relay { seq });
    }

    pub(crate) fn relay_timeout(&mut self, seq: u32) {
        if let Some(r) = self.relays.remove(&seq) {
            self.send_datagram(r.origin, &[Message::Nack { seq: r.origin_seq }]);
        }
    }

    /// A suspicion timer fired: declare the member failed if it is still the same suspicion
    /// and its (possibly shortened) deadline has passed.
    pub(crate) fn suspicion_timeout(&mut self, name: &str, generation: u32) {
        let Some(rec) = self.members.get(name) else {
            return;
        };
        if rec.suspicion_generation() != Some(generation) {
            return;
        }
        let deadline = rec.suspicion().map_or(Timestamp::ZERO, |s| s.deadline());
        if deadline > self.now {
            let name: Name = rec.name.clone();
            self.timers
                .schedule(deadline, TimerKind::Suspicion { name, generation });
            return;
        }
        let d = Accusation {
            incarnation: rec.incarnation,
            name: rec.name.clone(),
            from: self.me.clone(),
        };
        self.apply_dead(d, true);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::identity::{Identity, MemberStatus};
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
    fn an_ack_ends_the_probe_and_heals() {
        let mut a = cluster_node(1);
        a.awareness = 3;
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
