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
            rec.addr,
            rec.incarnation,
            rec.status() == MemberStatus::Suspect,
        );
        let seq = self.next_seq();
        let ping = Message::Ping {
            seq,
            target: target.to_string(),
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
            helpers.iter().map(|&i| self.members.at(i).addr).collect();
        for h in &helper_addrs {
            let msg = Message::IndirectPing {
                seq,
                target: target.to_string(),
                addr,
            };
            self.send_datagram(*h, &[msg]);
        }
        if let Some(p) = &mut self.probe {
            p.expected_nacks = helper_addrs.len() as u32;
        }
        let ping = Message::StreamPing {
            seq,
            target: target.to_string(),
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
        target: String,
        addr: SocketAddr,
    ) {
        if self.relays.len() >= self.cfg.max_indirect_relays {
            self.stats.indirect_refused += 1;
            return;
        }
        let seq = self.next_seq();
        self.relays.insert(seq, Relay { origin, origin_seq });
        self.send_datagram(addr, &[Message::Ping { seq, target }]);
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
        if rec.status() != MemberStatus::Suspect || rec.suspicion_gen != generation {
            return;
        }
        let deadline = rec
            .suspicion
            .as_ref()
            .map_or(Timestamp::ZERO, |s| s.deadline());
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
