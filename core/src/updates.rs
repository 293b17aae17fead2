//! Applying membership updates — alive, suspect, dead/left — under SWIM's incarnation rules,
//! refuting accusations about this node, and the events each transition reports.
//!
//! Rules (memberlist's, with two deliberate differences noted):
//! - alive wins over any state of a lower incarnation; suspect and dead need an incarnation at
//!   least the current one; failed and left are final until a newer alive arrives.
//! - A live member's name claimed from another address is refused and reported. Unlike
//!   memberlist's default, a member that failed or left may come back from a new address at
//!   once (a restart elsewhere).
//! - Failed and left members stay in the table as tombstones, so stale alive gossip at an old
//!   incarnation cannot resurrect them (memberlist forgets them after a while, which let push-pull
//!   revive dead members at scale).

use std::sync::Arc;

use crate::event::Event;
use crate::identity::{MemberStatus, Name};
use crate::members::MemberRec;
use crate::node::{Node, RunState};
use crate::suspicion::{self, Suspicion};
use crate::timers::TimerKind;
use crate::wire::{Accusation, Alive, Message};

impl Node {
    /// Apply an alive message; `broadcast` re-gossips it when it was news.
    pub(crate) fn apply_alive(&mut self, a: Alive, broadcast: bool) {
        if *a.name == *self.me {
            self.alive_about_self(a);
            return;
        }
        let now = self.now;
        let Some(rec) = self.members.get(&a.name) else {
            if self.members.len() >= self.cfg.max_members {
                self.stats.members_refused += 1;
                return;
            }
            let name: Name = a.name.clone();
            let rec = MemberRec::new(
                name.clone(),
                a.addr,
                a.incarnation,
                Arc::new(a.tags.clone()),
                now,
            );
            let snap = rec.snapshot();
            self.members.insert(rec, &mut self.rng);
            self.emit(Event::MemberJoined(snap));
            if broadcast {
                self.enqueue(name, &Message::Alive(a));
            }
            return;
        };
        let prev = rec.status();
        let reclaim = rec.addr != a.addr;
        if reclaim && rec.is_live() {
            let ev = Event::NameConflict {
                name: rec.name.clone(),
                existing: rec.addr,
                claimed: a.addr,
            };
            self.emit(ev);
            return;
        }
        if !reclaim && a.incarnation <= rec.incarnation {
            return;
        }
        let tags_changed = *rec.tags != a.tags;
        let rec = self.members.get_mut(&a.name).expect("checked above");
        rec.addr = a.addr;
        if tags_changed {
            rec.tags = Arc::new(a.tags.clone());
        }
        let name = rec.name.clone();
        self.members.set_incarnation(&name, a.incarnation, now);
        self.members.set_status(&name, MemberStatus::Alive, now);
        let snap = self.members.get(&name).expect("present").snapshot();
        match prev {
            MemberStatus::Failed | MemberStatus::Left => self.emit(Event::MemberJoined(snap)),
            MemberStatus::Suspect => {
                self.emit(Event::MemberRecovered(snap.clone()));
                if tags_changed || reclaim {
                    self.emit(Event::MemberUpdated(snap));
                }
            }
            MemberStatus::Alive => {
                if tags_changed || reclaim {
                    self.emit(Event::MemberUpdated(snap));
                }
            }
        }
        if broadcast {
            self.enqueue(name, &Message::Alive(a));
        }
    }

    fn alive_about_self(&mut self, a: Alive) {
        if self.run != RunState::Running {
            return;
        }
        let rec = self
            .members
            .get(&self.me)
            .expect("self is always in the table");
        let (addr, inc) = (rec.addr, rec.incarnation);
        if a.addr != addr {
            // Someone else claims our name: report it and re-assert ourselves above it.
            let ev = Event::NameConflict {
                name: self.me.clone(),
                existing: addr,
                claimed: a.addr,
            };
            self.emit(ev);
            if a.incarnation >= inc {
                self.refute(a.incarnation);
            }
            return;
        }
        // Our own state from an earlier life (a restart), or a forged one: outbid it.
        if a.incarnation > rec.incarnation
            || (a.incarnation == rec.incarnation && a.tags != *rec.tags)
        {
            self.refute(a.incarnation);
        }
    }

    /// `by` says this node is suspect or dead at `incarnation`: refute it if it is current,
    /// and tell the accuser directly. Gossip alone may take a while to reach the one member
    /// whose suspicion timer is running; the direct message is sent once per accuser and
    /// refutation.
    fn accused(&mut self, incarnation: u32, by: &Name) {
        if self.run != RunState::Running {
            return;
        }
        let inc = self.members.get(&self.me).map_or(0, |r| r.incarnation);
        if incarnation >= inc {
            self.refute(incarnation);
        }
        if *by == self.me || self.told_accusers.contains(by) || self.told_accusers.len() >= 16 {
            return;
        }
        let Some(addr) = self.members.get(by).filter(|r| r.is_live()).map(|r| r.addr) else {
            return;
        };
        self.told_accusers.push(by.clone());
        let alive = self.self_alive();
        self.send_datagram(addr, &[alive]);
    }

    /// Raise our incarnation above `accused` and announce ourselves alive.
    ///
    /// The incarnation saturates at `u32::MAX` instead of wrapping to 0: a wrapped incarnation
    /// is older than anything the cluster holds, so every later refutation would be ignored
    /// and the node could never clear a suspicion again. At the ceiling an accusation at
    /// `u32::MAX` cannot be outbid (only a forged one can get there: 2^32 real refutations
    /// take centuries).
    pub(crate) fn refute(&mut self, accused: u32) {
        let me = self.me.clone();
        let inc = self.members.get(&me).map_or(0, |r| r.incarnation);
        let now = self.now;
        self.members
            .set_incarnation(&me, inc.max(accused).saturating_add(1), now);
        self.stats.refutations += 1;
        self.told_accusers.clear();
        self.health_penalty();
        self.broadcast_self();
    }

    /// Apply a suspect message.
    pub(crate) fn apply_suspect(&mut self, s: Accusation, broadcast: bool) {
        if *s.name == *self.me {
            self.accused(s.incarnation, &s.from);
            return;
        }
        let now = self.now;
        let live = self.members.live();
        let Some(rec) = self.members.get_mut(&s.name) else {
            return;
        };
        if s.incarnation < rec.incarnation {
            return;
        }
        match rec.status() {
            MemberStatus::Failed | MemberStatus::Left => {}
            MemberStatus::Suspect => {
                let generation = rec.suspicion_gen;
                let name = rec.name.clone();
                let Some(susp) = rec.suspicion.as_mut() else {
                    return;
                };
                if susp.confirm(&s.from) {
                    let deadline = susp.deadline();
                    self.timers.schedule(
                        deadline,
                        TimerKind::Suspicion {
                            name: name.clone(),
                            generation,
                        },
                    );
                    if broadcast {
                        self.enqueue(name, &Message::Suspect(s));
                    }
                }
            }
            MemberStatus::Alive => {
                let (min, max, k) = suspicion::parameters(
                    live,
                    self.cfg.suspicion_mult,
                    self.cfg.suspicion_max_timeout_mult,
                    self.cfg.probe_interval,
                );
                let from: Name = s.from.clone();
                let susp = Suspicion::new(from.clone(), now, min, max, k);
                let deadline = susp.deadline();
                rec.suspicion_gen += 1;
                let generation = rec.suspicion_gen;
                let name = rec.name.clone();
                self.members.set_incarnation(&name, s.incarnation, now);
                self.members.set_status(&name, MemberStatus::Suspect, now);
                let rec = self.members.get_mut(&name).expect("present");
                rec.suspicion = Some(Box::new(susp));
                let member = rec.snapshot();
                self.timers.schedule(
                    deadline,
                    TimerKind::Suspicion {
                        name: name.clone(),
                        generation,
                    },
                );
                self.emit(Event::MemberSuspected { member, by: from });
                if broadcast {
                    self.enqueue(name, &Message::Suspect(s));
                }
            }
        }
    }

    /// Apply a dead message (a graceful leave when it comes from the member itself).
    pub(crate) fn apply_dead(&mut self, d: Accusation, broadcast: bool) {
        if *d.name == *self.me {
            self.accused(d.incarnation, &d.from);
            return;
        }
        let now = self.now;
        let Some(rec) = self.members.get_mut(&d.name) else {
            return;
        };
        if d.incarnation < rec.incarnation || !rec.is_live() {
            return;
        }
        let left = d.from == d.name;
        let name = rec.name.clone();
        self.members.set_incarnation(&name, d.incarnation, now);
        let status = if left {
            MemberStatus::Left
        } else {
            MemberStatus::Failed
        };
        self.members.set_status(&name, status, now);
        let snap = self.members.get(&name).expect("present").snapshot();
        self.emit(if left {
            Event::MemberLeft(snap)
        } else {
            Event::MemberFailed(snap)
        });
        if broadcast {
            self.enqueue(name, &Message::Dead(d));
        }
    }
}
