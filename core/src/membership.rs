//! Applying membership updates — alive, suspect, dead/left — under SWIM's incarnation rules,
//! refuting accusations about this node, merging a push-pull's table, and the events each
//! transition reports. This is the router's own logic, not a part: every update touches the
//! member table all parts share, and coordinates them (a suspicion's timer is the failure
//! detector's, intents and clocks are the Serf layer's, news is queued for dissemination).
//!
//! Rules (memberlist's, with two deliberate differences noted):
//! - alive wins over any state of a lower incarnation; suspect and dead need an incarnation at
//!   least the current one; failed and left are final until a newer alive arrives.
//! - A live member's name claimed from another address (with a newer incarnation) is taken
//!   only if the member's known address no longer answers as it: the failure detector checks
//!   that address (`swim::addr_check`, a few pings a probe interval apart). An answer makes the
//!   claim a conflict, refused and reported ([`Event::NameConflict`]); silence makes it a move,
//!   taken as an address change ([`Event::MemberUpdated`]). memberlist refuses such claims
//!   until the old life is declared dead (and, by default, long after), so a restart at a new
//!   address before anyone noticed the crash ends in a name-conflict shutdown; and a member
//!   that failed or left may come back from a new address at once.
//! - A member failed here that announces itself alive again at the same address (it refuted
//!   the verdict, or restarted) is taken back only once it answers this node's pings, with
//!   [`crate::Config::revival_check`] (`swim::addr_check`'s revival checks): a member that
//!   loses most of its packets was rightly removed, and its refutations, which do get out now
//!   and then, otherwise bring it back only for it to fail again — memberlist's flapping of
//!   degraded members (Rapid's paper). Until it answers, nothing about it changes here and the
//!   alive message is not passed on; an unanswered check holds the next one back for a probe
//!   interval, doubling with each in a row up to [`REVIVAL_BACKOFF_MAX_PROBES`] intervals.
//! - Failed and left members stay in the table as tombstones, so stale alive gossip at an old
//!   incarnation cannot resurrect them (memberlist forgets them after a while, which let push-pull
//!   revive dead members at scale).

use crate::dissemination::SerfShare;
use crate::event::Event;
use crate::identity::{MemberStatus, Name};
use crate::members::{MemberRec, Near, Prefetched};
use crate::node::{cx, Node, RunState};
use crate::plausible;
use crate::swim::suspicion::{self, Suspicion};
use crate::wire::RawAlive;
use crate::wire::{Accusation, Alive, Intent, Message, PushPull, WireStatus};

/// The longest wait, in probe intervals, between two revival checks of one member after
/// unanswered ones (1, 2, 4, … intervals; a power of two).
pub(crate) const REVIVAL_BACKOFF_MAX_PROBES: u32 = 64;

/// Members whose revival backoff is remembered at once; beyond, the oldest name in order is
/// forgotten (it gets its next check at once).
pub(crate) const MAX_REVIVAL_BACKOFFS: usize = 1024;

/// What an alive message tells this node ([`Node::alive_is_known`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AliveNews {
    /// Nothing new: already applied (its Lamport time witnessed).
    Known,
    /// About a member this node knows: apply it.
    Update,
    /// About a member this node does not know: apply it if the sender may introduce one
    /// ([`crate::admission`]).
    NewMember,
}

impl Node {
    /// Apply an alive message; `broadcast` re-gossips it when it was news.
    /// Whether an alive message (still in its datagram's bytes) tells this node nothing new —
    /// the copy of a live member's current state that gossip delivers many times over — and
    /// if so, apply it: [`Node::apply_alive`] would only witness its Lamport time. Checked
    /// before the message is built, since most alive messages a node receives are such copies.
    pub(crate) fn alive_is_known(&mut self, a: &RawAlive<'_>, near: Near) -> AliveNews {
        let Some(rec) = self.members.get_near(a.name, near) else {
            return AliveNews::NewMember;
        };
        let known = !plausible::newer(a.incarnation, rec.incarnation)
            && rec.is_live()
            && a.ltime <= rec.status_ltime
            && !self.members.is_own(rec);
        if known {
            self.serf.witness_member_time(a.ltime);
            AliveNews::Known
        } else {
            AliveNews::Update
        }
    }

    /// Apply an alive message; `near` is where a prefetch found its member, if one did.
    pub(crate) fn apply_alive(&mut self, a: Alive, broadcast: bool, near: Near) {
        self.serf.witness_member_time(a.ltime);
        if *a.name == *self.me {
            self.alive_about_self(a);
            return;
        }
        let now = self.now;
        let Some(rec) = self.members.get_near(a.name.as_bytes(), near) else {
            if !self.forgotten.is_empty() {
                if let Some(&(addr, inc)) = self.forgotten.get(&*a.name) {
                    if addr == a.addr && !plausible::newer(a.incarnation, inc) {
                        tracing::trace!(member = %a.name, incarnation = a.incarnation,
                            "alive of a forgotten life ignored");
                        return;
                    }
                    tracing::debug!(member = %a.name, addr = %a.addr, incarnation = a.incarnation,
                        "a forgotten member is back with a new life");
                    self.forgotten.remove(&*a.name);
                }
            }
            if self.members.len() >= self.cfg.max_members
                && !self.serf.evict_tombstone(&mut cx!(self))
            {
                self.fx.stats.members_refused += 1;
                tracing::debug!(member = %a.name, "member table full: new member refused");
                return;
            }
            let name: Name = a.name.clone();
            let mut rec = MemberRec::new(name.clone(), a.addr, a.incarnation);
            // The member's intents, applied before the record goes in: one buffered while it
            // was unknown first, then the join intent the message carries (as
            // `on_alive_intent` would; the clock has seen `a.ltime` above).
            if let Some((leave, ltime)) = self.serf.take_intent(&name) {
                if ltime > rec.status_ltime {
                    rec.status_ltime = ltime;
                    rec.leaving = leave;
                }
            }
            if a.ltime > rec.status_ltime {
                rec.status_ltime = a.ltime;
                rec.leaving = false;
            }
            let pos = self.members.insert(rec, &a.tags, now, &mut self.rng);
            tracing::debug!(member = %name, addr = %a.addr, incarnation = a.incarnation, "member joined");
            let snap = self.members.member_at(pos, name.clone());
            self.emit(Event::MemberJoined(snap));
            if broadcast {
                self.enqueue_alive(name, a);
            }
            return;
        };
        let prev = rec.status();
        // The common case, a copy of what we know about a live member, is settled on the
        // fields at the head of the record (see `MemberRec`). A same-or-older claim from
        // another address is not a threat: it changes nothing, and the owner refutes it (the
        // claim is remembered, so that the claimant's name-conflict vote is answered).
        if !plausible::newer(a.incarnation, rec.incarnation) && rec.is_live() {
            if rec.addr() != a.addr {
                self.serf.note_claim(a.name.clone(), a.addr, &mut cx!(self));
                return;
            }
            if a.ltime > rec.status_ltime {
                self.serf.on_alive_intent(a.name, a.ltime, &mut cx!(self));
            }
            return;
        }
        let reclaim = rec.addr() != a.addr;
        if reclaim && rec.is_live() {
            let (name, existing) = (rec.name.to_name(), rec.addr());
            self.serf.note_claim(name.clone(), a.addr, &mut cx!(self));
            if self
                .swim
                .check_address(name.clone(), existing, &mut cx!(self))
            {
                tracing::debug!(member = %name, %existing, claimed = %a.addr,
                    "a live member's name claimed from another address: checking whether the known address still answers");
                let newer = self
                    .claims
                    .get(&name)
                    .is_none_or(|c| plausible::newer(a.incarnation, c.incarnation));
                if newer {
                    self.claims.insert(name, a);
                }
                return;
            }
            self.conflict_refused(name, existing, a.addr);
            return;
        }
        if !reclaim && !plausible::newer(a.incarnation, rec.incarnation) {
            if a.ltime > rec.status_ltime {
                self.serf.on_alive_intent(a.name, a.ltime, &mut cx!(self));
            }
            return;
        }
        if prev == MemberStatus::Failed && !reclaim && self.cfg.revival_check {
            let addr = rec.addr();
            self.revival_claimed(a, addr, broadcast);
            return;
        }
        self.take_alive(a, prev, reclaim, broadcast);
    }

    /// A member failed here announced itself alive at its known address `addr`: check that
    /// it answers there before taking it back ([`crate::Config::revival_check`]).
    fn revival_claimed(&mut self, a: Alive, addr: std::net::SocketAddr, broadcast: bool) {
        let name = a.name.clone();
        if let Some(&(_, next)) = self.revival_backoff.get(&name) {
            if self.now < next {
                self.fx.stats.revivals_deferred += 1;
                tracing::trace!(member = %name, incarnation = a.incarnation,
                    "alive of a member failed here: its last revival check went unanswered, held back");
                return;
            }
        }
        let newer = self
            .revivals
            .get(&name)
            .is_none_or(|(r, _)| plausible::newer(a.incarnation, r.incarnation));
        if !self.swim.check_revival(name.clone(), addr, &mut cx!(self)) {
            self.fx.stats.revivals_deferred += 1;
            tracing::debug!(member = %name, "alive of a member failed here: revival checks all busy, held back");
            return;
        }
        if newer {
            tracing::debug!(member = %name, %addr, incarnation = a.incarnation,
                "a member failed here announces itself alive: checking that it answers");
            self.revivals.insert(name, (a, broadcast));
        }
    }

    /// An address check ended (see `swim::addr_check`).
    pub(crate) fn check_done(&mut self, done: crate::swim::CheckDone) {
        use crate::swim::CheckKind;
        match (done.kind, done.answered) {
            (CheckKind::Claim, true) => self.address_answered(done.name, done.addr),
            (CheckKind::Claim, false) => self.address_silent(done.name, done.addr),
            (CheckKind::Revival, true) => self.revival_answered(done.name, done.addr),
            (CheckKind::Revival, false) => self.revival_unanswered(done.name, done.addr),
        }
    }

    /// A member failed here answered its revival check: take its alive message, if it is
    /// still failed at that address and the message still newer.
    fn revival_answered(&mut self, name: Name, addr: std::net::SocketAddr) {
        self.revival_backoff.remove(&name);
        let Some((a, broadcast)) = self.revivals.remove(&name) else {
            return;
        };
        let Some(rec) = self.members.get(&name) else {
            return;
        };
        if rec.status() != MemberStatus::Failed
            || rec.addr() != addr
            || !plausible::newer(a.incarnation, rec.incarnation)
        {
            return;
        }
        tracing::debug!(member = %name, %addr, "a member failed here answered its revival check");
        self.take_alive(a, MemberStatus::Failed, false, broadcast);
    }

    /// A member failed here did not answer its revival check: it stays failed, and its next
    /// check waits (1, 2, 4, … probe intervals).
    fn revival_unanswered(&mut self, name: Name, addr: std::net::SocketAddr) {
        self.revivals.remove(&name);
        self.fx.stats.revivals_unanswered += 1;
        let misses = self.revival_backoff.get(&name).map_or(0, |&(m, _)| m);
        let misses = misses.saturating_add(1);
        let doublings = u32::from(misses - 1).min(REVIVAL_BACKOFF_MAX_PROBES.trailing_zeros());
        let probes = 1u32 << doublings;
        let next = self.now + self.cfg.probe_interval * probes;
        tracing::debug!(member = %name, %addr, misses, wait_probes = probes,
            "a member failed here announced itself alive but did not answer: it stays failed");
        if !self.revival_backoff.contains_key(&name)
            && self.revival_backoff.len() >= MAX_REVIVAL_BACKOFFS
        {
            self.revival_backoff.pop_first();
        }
        self.revival_backoff.insert(name, (misses, next));
    }

    /// Take an alive message that changes what this node holds about a known member: a new
    /// life, a newer incarnation, new tags or (`reclaim`) a new address; `prev` is the status
    /// it had.
    fn take_alive(&mut self, a: Alive, prev: MemberStatus, reclaim: bool, broadcast: bool) {
        let now = self.now;
        let Some(rec) = self.members.get(&a.name) else {
            return;
        };
        let tags_changed = **self.members.tags(rec) != a.tags;
        if tags_changed {
            self.members.set_tags(&a.name, &a.tags);
        }
        let rec = self.members.get_mut(&a.name).expect("checked above");
        rec.set_addr(a.addr);
        if !rec.is_live() {
            // A new life: the old one's leave intent does not apply to it.
            rec.leaving = false;
        }
        let name = rec.name.to_name();
        self.members.set_incarnation(&name, a.incarnation, now);
        self.members.set_status(&name, MemberStatus::Alive, now);
        self.serf
            .on_alive_intent(name.clone(), a.ltime, &mut cx!(self));
        let snap = self.members.member(&name).expect("present");
        tracing::debug!(member = %name, addr = %a.addr, incarnation = a.incarnation, was = ?prev,
            "member alive");
        match prev {
            MemberStatus::Failed | MemberStatus::Left => self.emit(Event::MemberJoined(snap)),
            MemberStatus::Suspect => {
                self.emit(Event::MemberRecovered(snap.clone()));
                if tags_changed || reclaim {
                    self.emit(Event::MemberUpdated(snap));
                }
            }
            MemberStatus::Alive | MemberStatus::Leaving => {
                if tags_changed || reclaim {
                    self.emit(Event::MemberUpdated(snap));
                }
            }
        }
        if broadcast {
            self.enqueue_alive(name, a);
        }
    }

    /// A claim of a live member's name from `claimed` is refused: report the conflict.
    fn conflict_refused(
        &mut self,
        name: Name,
        existing: std::net::SocketAddr,
        claimed: std::net::SocketAddr,
    ) {
        tracing::debug!(member = %name, %existing, %claimed,
            "name conflict: a live member's name claimed from another address, refused");
        self.emit(Event::NameConflict {
            name,
            existing,
            claimed,
        });
    }

    /// The address check of `name` at its known address `addr` got an answer: the member still
    /// lives there, so the claim that asked for the check is a conflict.
    pub(crate) fn address_answered(&mut self, name: Name, addr: std::net::SocketAddr) {
        if let Some(claim) = self.claims.remove(&name) {
            self.conflict_refused(name, addr, claim.addr);
        }
    }

    /// The address check of `name` at its known address `addr` got no answer: its old life is
    /// gone, so the claim is a move. Taken as an address change, if the member is still live
    /// there and the claim still newer.
    pub(crate) fn address_silent(&mut self, name: Name, addr: std::net::SocketAddr) {
        let Some(a) = self.claims.remove(&name) else {
            return;
        };
        let Some(rec) = self.members.get(&name) else {
            return;
        };
        if !rec.is_live() || rec.addr() != addr || !plausible::newer(a.incarnation, rec.incarnation)
        {
            return;
        }
        let prev = rec.status();
        tracing::debug!(member = %name, old = %addr, new = %a.addr,
            "the known address of a member claimed elsewhere is silent: taking the new address");
        self.take_alive(a, prev, true, true);
    }

    fn alive_about_self(&mut self, a: Alive) {
        if self.run != RunState::Running {
            return;
        }
        let rec = self
            .members
            .get(&self.me)
            .expect("self is always in the table");
        let (addr, inc) = (rec.addr(), rec.incarnation);
        if a.addr != addr {
            // Someone else claims our name: report it, re-assert ourselves above the claim,
            // and ask the cluster, as Serf does, which address it holds for the name. The
            // minority side stops (a tie goes to the lower address) without announcing a
            // departure that would mark the name left cluster-wide.
            let ev = Event::NameConflict {
                name: self.me.clone(),
                existing: addr,
                claimed: a.addr,
            };
            tracing::debug!(existing = %addr, claimed = %a.addr,
                "name conflict: this node's name claimed from another address; asking the cluster");
            self.emit(ev);
            if !plausible::older(a.incarnation, inc) {
                self.refute(a.incarnation);
            }
            // The vote waits until the others have checked whether the claimant's address
            // still answers: a previous life of this very node (a restart at a new address)
            // is silent, and they take this address meanwhile.
            self.serf.schedule_conflict_vote(a.addr, &mut cx!(self));
            return;
        }
        // Our own state from an earlier life (a restart), or a forged one: outbid it.
        if plausible::newer(a.incarnation, rec.incarnation)
            || (a.incarnation == rec.incarnation && a.tags != **self.members.tags(rec))
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
        if !plausible::older(incarnation, inc) {
            self.refute(incarnation);
        }
        if *by == self.me || self.told_accusers.contains(by) || self.told_accusers.len() >= 16 {
            return;
        }
        let Some(addr) = self
            .members
            .get(by)
            .filter(|r| r.is_live())
            .map(|r| r.addr())
        else {
            return;
        };
        self.told_accusers.push(by.clone());
        let alive = self.self_alive();
        self.send_datagram(addr, &[alive]);
    }

    /// Raise our incarnation above `accused` and announce ourselves alive.
    ///
    /// Incarnations are serial numbers ([`plausible`]): past `u32::MAX` the next one is 0,
    /// which every member takes as newer, so there is always an incarnation that outbids an
    /// accusation.
    pub(crate) fn refute(&mut self, accused: u32) {
        let me = self.me.clone();
        let inc = self.members.get(&me).map_or(0, |r| r.incarnation);
        let now = self.now;
        let next = plausible::latest(inc, accused).wrapping_add(1);
        tracing::debug!(
            accused,
            incarnation = next,
            "refuting: announcing this node alive"
        );
        self.members.set_incarnation(&me, next, now);
        self.fx.stats.refutations += 1;
        self.told_accusers.clear();
        self.swim.refuted(&self.cfg);
        self.broadcast_self();
    }

    /// Apply a suspect message: `s.from` accuses `s.name`.
    pub(crate) fn apply_suspect(&mut self, s: Accusation, broadcast: bool, near: Near) {
        if *s.name == *self.me {
            self.accused(s.incarnation, &s.from);
            return;
        }
        self.suspect_member(s, true, broadcast, near);
    }

    /// Apply a suspect (or dead) state about `name` learned through a push-pull from
    /// `sender`, whose suspicion was started by `accuser` when the state says so. The real
    /// accuser counts, never the sender that relayed it: that would fake an independent
    /// confirmation and cut the suspicion short. When the accuser is unknown or is this node
    /// itself (an echo of our own accusation), the state counts as no confirmation at all; it
    /// starts a suspicion of a live member whose original accuser is unknown, which is not
    /// re-gossiped (gossiping it in anyone's name would be counted as that member's
    /// accusation), but the suspect itself is told at once so that it can refute.
    pub(crate) fn apply_pushed_suspicion(
        &mut self,
        name: Name,
        incarnation: u32,
        accuser: Option<Name>,
        sender: &Name,
        broadcast: bool,
        near: Near,
    ) {
        let accuser = accuser.filter(|a| *a != self.me);
        if *name == *self.me {
            self.accused(incarnation, accuser.as_ref().unwrap_or(sender));
            return;
        }
        let known = accuser.is_some();
        let from = accuser.unwrap_or_else(|| sender.clone());
        let s = Accusation {
            incarnation,
            name,
            from,
        };
        self.suspect_member(s, known, broadcast, near);
    }

    /// Suspect `s.name` on `s.from`'s word. With `known` false, `s.from` is only who told us
    /// (the original accuser is unknown): no confirmation is counted and nothing is gossiped.
    fn suspect_member(&mut self, s: Accusation, known: bool, broadcast: bool, near: Near) {
        let now = self.now;
        let live = self.members.live();
        let Some(rec) = self.members.get_mut_near(s.name.as_bytes(), near) else {
            return;
        };
        if plausible::older(s.incarnation, rec.incarnation) {
            return;
        }
        if plausible::accusation_too_far(s.incarnation, rec.incarnation) {
            self.fx.stats.far_ahead_refused += 1;
            tracing::debug!(member = %s.name, by = %s.from, incarnation = s.incarnation,
                known = rec.incarnation, "refused: suspicion implausibly far ahead");
            return;
        }
        match rec.status() {
            MemberStatus::Failed | MemberStatus::Left => {}
            MemberStatus::Suspect => {
                if !known {
                    return;
                }
                let Some(generation) = rec.suspicion_generation() else {
                    return;
                };
                let name = rec.name.to_name();
                let Some(susp) = rec.suspicion_mut() else {
                    return;
                };
                if susp.confirm(&s.from) {
                    let deadline = susp.deadline();
                    tracing::trace!(member = %name, by = %s.from, ?deadline,
                        "suspicion confirmed independently");
                    suspicion::arm(&mut self.fx.timers, deadline, name.clone(), generation);
                    if broadcast {
                        self.enqueue(name, &Message::Suspect(s));
                    }
                }
            }
            MemberStatus::Alive | MemberStatus::Leaving => {
                let (min, max, k) = crate::formulas::suspicion_bounds(&self.cfg, live);
                let from: Name = s.from.clone();
                let susp = Suspicion::new(known.then(|| from.clone()), now, min, max, k);
                let deadline = susp.deadline();
                let name = rec.name.to_name();
                self.members.set_incarnation(&name, s.incarnation, now);
                self.members.set_status(&name, MemberStatus::Suspect, now);
                let rec = self.members.get_mut(&name).expect("present");
                let generation = rec.install_suspicion(susp).expect("just made suspect");
                let addr = rec.addr();
                let member = self.members.member(&name).expect("present");
                suspicion::arm(&mut self.fx.timers, deadline, name.clone(), generation);
                tracing::debug!(member = %name, by = %from, incarnation = s.incarnation,
                    timeout_min = ?min, timeout_max = ?max, "member suspected");
                self.emit(Event::MemberSuspected {
                    member,
                    by: from.clone(),
                });
                if from != self.me {
                    let suspects = self.members.live() - self.members.alive();
                    self.swim.prioritize(name.clone(), suspects, &self.cfg);
                }
                if !known {
                    // Buddy system without gossip: only the suspect hears of it, in our name.
                    let tell = Message::Suspect(Accusation {
                        incarnation: s.incarnation,
                        name,
                        from: self.me.clone(),
                    });
                    self.send_datagram(addr, &[tell]);
                } else if broadcast {
                    self.enqueue(name, &Message::Suspect(s));
                }
            }
        }
    }

    /// Apply a dead message (a graceful leave when it comes from the member itself).
    pub(crate) fn apply_dead(&mut self, d: Accusation, broadcast: bool, near: Near) {
        if *d.name == *self.me {
            self.accused(d.incarnation, &d.from);
            return;
        }
        let now = self.now;
        let Some(rec) = self.members.get_mut_near(d.name.as_bytes(), near) else {
            return;
        };
        // A member that announced it was leaving and then stops answering has left (Serf).
        let left = d.from == d.name || rec.leaving;
        // A member's own leave announcement also overrides a failure verdict this node reached
        // while the announcement was on its way: the member left, it did not crash.
        let late_leave = left && rec.status() == MemberStatus::Failed;
        if plausible::older(d.incarnation, rec.incarnation) || !(rec.is_live() || late_leave) {
            return;
        }
        if plausible::accusation_too_far(d.incarnation, rec.incarnation) {
            self.fx.stats.far_ahead_refused += 1;
            tracing::debug!(member = %d.name, by = %d.from, incarnation = d.incarnation,
                known = rec.incarnation, "refused: failure or leave implausibly far ahead");
            return;
        }
        let name = rec.name.to_name();
        let suspected_for = (rec.status() == MemberStatus::Suspect)
            .then(|| rec.since().map(|t| now.saturating_since(t)))
            .flatten();
        tracing::debug!(member = %name, by = %d.from, incarnation = d.incarnation, left,
            ?suspected_for, "member {}", if left { "left" } else { "failed" });
        self.members.set_incarnation(&name, d.incarnation, now);
        let status = if left {
            MemberStatus::Left
        } else {
            MemberStatus::Failed
        };
        self.members.set_status(&name, status, now);
        let snap = self.members.member(&name).expect("present");
        self.emit(if left {
            Event::MemberLeft(snap)
        } else {
            Event::MemberFailed(snap)
        });
        if broadcast {
            self.enqueue(name, &Message::Dead(d));
        }
    }

    /// A push-pull arrived: a request is answered with our table (as it was before merging
    /// theirs); an answer may complete a pending join. Either way the table is merged.
    pub(crate) fn on_push_pull(&mut self, from: std::net::SocketAddr, p: PushPull) {
        if p.request {
            if !cx!(self).may_reply(from, p.reply_to) {
                // Not answered (the state is still merged): nobody can have our table sent
                // to an address of their choosing.
                self.fx.stats.replies_refused += 1;
                tracing::debug!(%from, reply_to = %p.reply_to, "push-pull not answered: reply address unverified");
            } else if self.run == RunState::Running {
                // Answer with our table as it was before merging theirs.
                self.send_push_pull(p.reply_to, p.id, false, false);
            }
            self.merge(p, true, false, plausible::MAX_NEW_MEMBERS_UNASKED);
            return;
        }
        match self.life.push_pull_answered(p.id) {
            Some(a) => {
                self.merge(p, a.rebroadcast, a.ignore_old, usize::MAX);
                if let Some(done) = self.life.join_over_if_done(a.join) {
                    self.join_completed(done);
                }
            }
            None => self.merge(p, true, false, plausible::MAX_NEW_MEMBERS_UNASKED),
        }
    }

    /// A push-pull answer no exchange waits for any more (HashiCorp profiles: it came late on
    /// a connection this node opened): merged like any state nobody asked for, never answered.
    pub(crate) fn on_late_push_pull(&mut self, p: PushPull) {
        self.merge(p, true, false, plausible::MAX_NEW_MEMBERS_UNASKED);
    }

    /// Merge a remote member table: alive as alive; suspect and dead as suspicion (a remote
    /// node's verdict is not a death certificate here), counted as an accusation by the
    /// original accuser a suspect state names, and as no confirmation at all when it names
    /// none or names this node (memberlist counts it as the receiver's own accusation, and
    /// counting it as the sender's would be no better: both fake independent confirmations);
    /// left as left. Each member's intent Lamport time is merged as a join or leave intent;
    /// the sender's clocks are witnessed and its recent user events replayed (not re-gossiped:
    /// the cluster already has them), or skipped when joining with `ignore_old`.
    /// At most `new_cap` members this node does not know are added (see
    /// [`plausible::MAX_NEW_MEMBERS_UNASKED`]).
    fn merge(&mut self, p: PushPull, broadcast: bool, ignore_old: bool, new_cap: usize) {
        let PushPull {
            sender,
            states,
            member_ltime,
            event_ltime,
            query_ltime,
            events,
            ..
        } = p;
        let share = SerfShare {
            clocks: (member_ltime, event_ltime, query_ltime),
            events,
        };
        self.serf.merge_share(share, ignore_old, &mut cx!(self));
        let sender = &sender;
        let mut unknown = 0;
        let mut found = Prefetched::default();
        // Per state: where the prefetch found it, and whether it is a member we do not know.
        let mut nears = Vec::with_capacity(states.len());
        for chunk in states.chunks(64) {
            self.members
                .prefetch(chunk.iter().map(|s| Some(s.name.as_bytes())), &mut found);
            for (i, s) in chunk.iter().enumerate() {
                let near = found.near(i);
                let new = self.members.get_near(s.name.as_bytes(), near).is_none();
                nears.push((near, new));
                unknown += usize::from(new);
            }
        }
        let room = self.cfg.max_members.saturating_sub(self.members.len());
        self.members.reserve_index(unknown.min(room).min(new_cap));
        let mut new_left = new_cap;
        for (s, (near, new)) in states.into_iter().zip(nears) {
            if new {
                if new_left == 0 {
                    self.fx.stats.members_refused += 1;
                    continue;
                }
                new_left -= 1;
            }
            let leaving = matches!(s.status, WireStatus::Leaving | WireStatus::Left);
            let intent = Intent {
                ltime: s.ltime,
                name: s.name.clone(),
                prune: false,
            };
            match s.status {
                WireStatus::Alive | WireStatus::Leaving => {
                    // The intent time is applied below, as a join or a leave intent.
                    let a = Alive {
                        incarnation: s.incarnation,
                        name: s.name,
                        addr: s.addr,
                        tags: s.tags,
                        ltime: 0,
                    };
                    self.apply_alive(a, broadcast, near);
                }
                WireStatus::Suspect | WireStatus::Dead => {
                    self.apply_pushed_suspicion(
                        s.name,
                        s.incarnation,
                        s.accuser,
                        sender,
                        broadcast,
                        near,
                    );
                }
                WireStatus::Left => {
                    let acc = Accusation {
                        incarnation: s.incarnation,
                        from: s.name.clone(),
                        name: s.name,
                    };
                    self.apply_dead(acc, broadcast, near);
                }
            }
            if s.ltime > 0 {
                if leaving {
                    self.serf.on_leave_intent(intent, false, &mut cx!(self));
                } else {
                    self.serf.on_join_intent(intent, &mut cx!(self));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::Event;
    use crate::identity::MemberStatus;
    use crate::testkit::*;
    use crate::wire::Message;
    use crate::Node;

    fn status(n: &crate::Node, name: &str) -> (MemberStatus, u32) {
        let m = n.member(name).unwrap();
        (m.status, m.incarnation)
    }

    fn alive_at(name: &str, port: u16, incarnation: u32, ltime: u64) -> crate::wire::Message {
        let mut m = alive(name, port, incarnation);
        if let crate::wire::Message::Alive(a) = &mut m {
            a.ltime = ltime;
        }
        m
    }

    /// Copies of what a node knows take the shortcut (only their Lamport time is witnessed);
    /// a copy carrying a newer join intent does not — alone in a datagram or among many.
    #[test]
    fn alive_copies_change_nothing_but_a_newer_intent_applies() {
        for crowd in [0u16, 8] {
            let mut a = node("a", 1);
            let others: Vec<_> = (0..crowd)
                .map(|i| alive(&format!("o{i}"), 10 + i, 1))
                .collect();
            let with = |m: crate::wire::Message| {
                let mut v = others.clone();
                v.push(m);
                v
            };
            deliver(&mut a, at(1), 2, &with(alive_at("b", 2, 3, 4)));
            assert_eq!(a.members.get("b").unwrap().status_ltime, 4);
            events(&mut a);
            let clock = a.clocks().0;
            deliver(&mut a, at(2), 3, &with(alive_at("b", 2, 3, 4)));
            deliver(&mut a, at(3), 3, &with(alive_at("b", 2, 2, 1)));
            assert!(events(&mut a).is_empty(), "copies are not news");
            assert_eq!(a.clocks().0, clock, "times already witnessed");
            assert_eq!(a.members.get("b").unwrap().status_ltime, 4);
            deliver(&mut a, at(4), 3, &with(alive_at("b", 2, 3, 9)));
            assert_eq!(a.members.get("b").unwrap().status_ltime, 9, "crowd {crowd}");
            assert!(a.clocks().0 > 9);
            assert_eq!(status(&a, "b"), (MemberStatus::Alive, 3));
        }
    }

    #[test]
    fn alive_adds_once_and_newer_incarnations_win() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 3)]);
        assert!(matches!(&events(&mut a)[..], [Event::MemberJoined(m)] if &*m.name == "b"));
        assert!(a.fx.queue.contains(&"b".into()), "news is re-gossiped");
        deliver(&mut a, at(2), 2, &[alive("b", 2, 3), alive("b", 2, 2)]);
        assert!(
            events(&mut a).is_empty(),
            "same or older incarnation is ignored"
        );
        let mut m = crate::wire::Alive {
            incarnation: 4,
            name: "b".into(),
            addr: addr(2),
            tags: Default::default(),
            ltime: 0,
        };
        m.tags.insert("role".into(), "db".into());
        deliver(&mut a, at(3), 2, &[crate::wire::Message::Alive(m)]);
        assert!(
            matches!(&events(&mut a)[..], [Event::MemberUpdated(m)] if m.tags.get("role").is_some())
        );
        assert_eq!(status(&a, "b"), (MemberStatus::Alive, 4));
    }

    #[test]
    fn suspect_then_refuting_alive_recovers() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 1), alive("c", 3, 1)]);
        events(&mut a);
        deliver(&mut a, at(2), 3, &[suspect("b", 0, "c")]);
        assert!(
            events(&mut a).is_empty(),
            "a suspicion older than the member is ignored"
        );
        deliver(&mut a, at(3), 3, &[suspect("b", 1, "c")]);
        assert!(matches!(&events(&mut a)[..], [Event::MemberSuspected { by, .. }] if by == "c"));
        assert_eq!(status(&a, "b"), (MemberStatus::Suspect, 1));
        deliver(&mut a, at(4), 2, &[alive("b", 2, 1)]);
        assert!(
            events(&mut a).is_empty(),
            "refuting needs a higher incarnation"
        );
        deliver(&mut a, at(5), 2, &[alive("b", 2, 2)]);
        assert!(matches!(&events(&mut a)[..], [Event::MemberRecovered(_)]));
        assert_eq!(status(&a, "b"), (MemberStatus::Alive, 2));
    }

    #[test]
    fn dead_is_final_until_a_newer_alive() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 1), alive("c", 3, 1)]);
        events(&mut a);
        deliver(&mut a, at(2), 3, &[dead("b", 1, "c"), dead("c", 1, "c")]);
        let ev = events(&mut a);
        assert!(
            matches!(&ev[..], [Event::MemberFailed(b), Event::MemberLeft(c)] if &*b.name == "b" && &*c.name == "c")
        );
        // Stale alive gossip cannot resurrect a tombstone.
        deliver(&mut a, at(3), 2, &[alive("b", 2, 1), suspect("b", 1, "x")]);
        assert!(events(&mut a).is_empty());
        assert_eq!(status(&a, "b"), (MemberStatus::Failed, 1));
        assert_eq!(a.alive_count(), 1);
        deliver(&mut a, at(4), 2, &[alive("b", 2, 2)]);
        assert!(matches!(&events(&mut a)[..], [Event::MemberJoined(_)]));
        assert_eq!(a.alive_count(), 2);
    }

    /// The revival checks' pings to `to` for `name` that `n` sent, by sequence number; each
    /// goes alone, nothing piggybacked.
    fn pings_to(n: &mut Node, to: u16, name: &str) -> Vec<u32> {
        sent(n)
            .into_iter()
            .filter(|(dst, _, _)| *dst == addr(to))
            .filter_map(|(_, _, msgs)| match &msgs[..] {
                [Message::CheckPing { seq, target }] if &**target == name => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_failed_member_is_taken_back_only_once_it_answers() {
        let config = crate::Config {
            revival_check: true,
            ..crate::Config::local()
        };
        let mut a = node_with(config, "a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 1), alive("c", 3, 1)]);
        deliver(&mut a, at(2), 3, &[dead("b", 1, "c")]);
        events(&mut a);
        sent(&mut a);
        let timeout = a.cfg.probe_timeout.as_millis() as u64;

        // b refutes: nothing changes until it answers two pings, sent one after the other.
        deliver(&mut a, at(10), 2, &[alive("b", 2, 2)]);
        assert!(events(&mut a).is_empty(), "held until checked");
        assert_eq!(status(&a, "b"), (MemberStatus::Failed, 1));
        let first = pings_to(&mut a, 2, "b");
        assert_eq!(first.len(), 1, "{first:?}");
        let ack = Message::Ack {
            seq: first[0],
            digest: None,
        };
        for _ in 0..2 {
            deliver(&mut a, at(11), 2, std::slice::from_ref(&ack));
        }
        assert!(
            events(&mut a).is_empty(),
            "one answer (twice) is not enough"
        );
        let second = pings_to(&mut a, 2, "b");
        assert_eq!(second.len(), 1, "the next ping at once: {second:?}");
        assert_ne!(second[0], first[0]);
        deliver(
            &mut a,
            at(12),
            2,
            &[Message::Ack {
                seq: second[0],
                digest: None,
            }],
        );
        assert!(matches!(&events(&mut a)[..], [Event::MemberJoined(m)] if &*m.name == "b"));
        assert_eq!(status(&a, "b"), (MemberStatus::Alive, 2));

        // Failed again, b refutes but stays silent: it stays failed, and its next alive
        // message within the wait starts no check.
        deliver(&mut a, at(20), 3, &[dead("b", 2, "c")]);
        events(&mut a);
        sent(&mut a);
        deliver(&mut a, at(30), 2, &[alive("b", 2, 3)]);
        let mut pings = pings_to(&mut a, 2, "b").len();
        for k in 1..=4 {
            a.handle_timeout(at(30 + k * timeout));
            pings += pings_to(&mut a, 2, "b").len();
        }
        assert_eq!(pings, 3, "after 3 silent pings 2 answers cannot come");
        assert_eq!(status(&a, "b"), (MemberStatus::Failed, 2));
        assert!(events(&mut a).is_empty());
        assert_eq!(a.stats().revivals_unanswered, 1);
        let t = 30 + 4 * timeout;
        deliver(&mut a, at(t), 2, &[alive("b", 2, 4)]);
        assert_eq!(a.stats().revivals_deferred, 1, "within the wait");
        assert!(pings_to(&mut a, 2, "b").is_empty());
        // After the wait (one probe interval after the first miss), a check starts again.
        let after = 30 + 3 * timeout + a.cfg.probe_interval.as_millis() as u64 + 1;
        deliver(&mut a, at(after.max(t + 1)), 2, &[alive("b", 2, 5)]);
        assert_eq!(pings_to(&mut a, 2, "b").len(), 1);

        // Checked itself, a node answers with a bare ack (even with updates queued).
        deliver(&mut a, at(after + 5), 4, &[alive("d", 4, 1)]);
        assert!(!a.fx.queue.is_empty());
        let check = Message::CheckPing {
            seq: 77,
            target: "a".into(),
        };
        deliver(&mut a, at(after + 10), 3, &[check]);
        let acks: Vec<_> = sent(&mut a)
            .into_iter()
            .filter(|(dst, _, _)| *dst == addr(3))
            .map(|(_, _, msgs)| msgs)
            .collect();
        assert_eq!(
            acks,
            vec![vec![Message::Ack {
                seq: 77,
                digest: None
            }]]
        );
    }

    #[test]
    fn a_late_leave_announcement_turns_failed_into_left() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 3)]);
        deliver(&mut a, at(2), 3, &[dead("b", 3, "c")]);
        events(&mut a);
        deliver(&mut a, at(3), 3, &[dead("b", 2, "b")]);
        assert!(events(&mut a).is_empty(), "an older leave does not count");
        deliver(&mut a, at(4), 3, &[dead("b", 3, "b")]);
        assert!(matches!(&events(&mut a)[..], [Event::MemberLeft(m)] if &*m.name == "b"));
        assert_eq!(status(&a, "b"), (MemberStatus::Left, 3));
        deliver(&mut a, at(5), 3, &[dead("b", 3, "c"), dead("b", 3, "b")]);
        assert!(events(&mut a).is_empty(), "left is final");
    }

    /// The ping of the address check `n` sent to `to` for `name`, if it sent one.
    fn check_ping(n: &mut Node, to: u16, name: &str) -> Option<u32> {
        sent(n).into_iter().find_map(|(dst, _, msgs)| {
            msgs.into_iter().find_map(|m| match m {
                Message::Ping { seq, target, .. } if dst == addr(to) && &*target == name => {
                    Some(seq)
                }
                _ => None,
            })
        })
    }

    #[test]
    fn a_live_name_claimed_from_another_address_is_refused_while_the_known_one_answers() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 1)]);
        events(&mut a);
        sent(&mut a);
        deliver(&mut a, at(2), 9, &[alive("b", 9, 5)]);
        assert!(
            events(&mut a).is_empty(),
            "nothing decided before the check"
        );
        let seq = check_ping(&mut a, 2, "b").expect("the known address is checked");
        assert!(
            sent(&mut a).iter().all(|(to, _, _)| *to != addr(9)),
            "never the claimed one"
        );
        // b answers at its known address: a conflict, refused.
        deliver(&mut a, at(3), 2, &[Message::Ack { seq, digest: None }]);
        assert_eq!(
            events(&mut a),
            vec![Event::NameConflict {
                name: "b".into(),
                existing: addr(2),
                claimed: addr(9)
            }]
        );
        assert_eq!(a.member("b").unwrap().addr, addr(2));
        // Once b has failed, a restart elsewhere may take the name at once.
        deliver(&mut a, at(4), 3, &[dead("b", 1, "c")]);
        deliver(&mut a, at(5), 9, &[alive("b", 9, 0)]);
        let ev = events(&mut a);
        assert!(
            matches!(&ev[..], [Event::MemberFailed(_), Event::MemberJoined(m)] if m.addr == addr(9))
        );
    }

    #[test]
    fn a_live_name_claimed_while_the_known_address_is_silent_is_a_move() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 1)]);
        events(&mut a);
        sent(&mut a);
        deliver(&mut a, at(2), 9, &[alive("b", 9, 5)]);
        let interval = a.cfg.probe_interval.as_millis() as u64;
        let mut pings = 0;
        for k in 0..=crate::swim::addr_check::TRIES as u64 {
            a.handle_timeout(at(2 + k * interval));
            pings += sent(&mut a)
                .iter()
                .filter(|(to, _, m)| {
                    *to == addr(2)
                        && matches!(&m[0], Message::Ping { target, .. } if &**target == "b")
                })
                .count();
        }
        assert!(
            pings >= crate::swim::addr_check::TRIES as usize - 1,
            "resent each round (besides the regular probes)"
        );
        let ev = events(&mut a);
        // (The regular probes found b silent too: suspected, then recovered at its new address.)
        assert!(
            matches!(ev.last(), Some(Event::MemberUpdated(m)) if m.addr == addr(9) && m.incarnation == 5),
            "{ev:?}"
        );
        assert_eq!(a.member("b").unwrap().addr, addr(9));
        assert!(!ev.iter().any(|e| matches!(e, Event::NameConflict { .. })));
    }

    #[test]
    fn a_name_conflict_is_settled_by_the_cluster_s_vote() {
        use crate::wire::{Message, QueryResp};
        // b at port 9 claims to be "a"; a (port 1) knows members c and d.
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 3, &[alive("c", 3, 0), alive("d", 4, 0)]);
        events(&mut a);
        deliver(&mut a, at(1), 9, &[alive("a", 9, 3)]);
        assert_eq!(
            a.local_member().incarnation,
            4,
            "re-asserted above the claim"
        );
        assert!(
            matches!(events(&mut a).first(), Some(Event::NameConflict { claimed, .. }) if *claimed == addr(9))
        );
        // The vote waits while the others check whether the claimant's address answers.
        let before = a.serf.last_query_id();
        let delay = a.cfg.probe_interval * crate::serf::query::CONFLICT_VOTE_DELAY_PROBES;
        a.handle_timeout(at(delay.as_millis() as u64));
        assert_eq!(a.serf.last_query_id(), before, "not yet");
        a.handle_timeout(at(1 + delay.as_millis() as u64));
        assert_ne!(a.serf.last_query_id(), before, "the vote started");
        let (ltime, id) = (a.clocks().2 - 1, a.serf.last_query_id());
        let vote = |from: &str, port: u16| {
            Message::QueryResponse(QueryResp {
                ltime,
                id,
                from: from.into(),
                ack: false,
                payload: postcard::to_allocvec(&addr(port)).unwrap().into(),
            })
        };
        // Both members hold the other address: a is the minority and stops.
        deliver(
            &mut a,
            at(2),
            3,
            &[vote("c", 9), vote("d", 9), vote("d", 9)],
        );
        tick(&mut a, at(60_000), std::time::Duration::from_secs(1));
        assert!(a.has_left());
        assert_eq!(a.stats().name_conflicts_lost, 1);
        // Nobody answering (a forged claim, or a node alone) never costs a node its name.
        let mut lone = node("a", 5);
        deliver(&mut lone, at(1), 1, &[alive("a", 1, 0)]);
        tick(&mut lone, at(60_000), std::time::Duration::from_secs(1));
        assert!(!lone.has_left());
    }

    /// A name-conflict vote that arrives before the claim it is about (the claimant's alive
    /// message travels on its own) is answered once the claim arrives, in time.
    #[test]
    fn a_vote_that_outruns_its_claim_is_answered_when_the_claim_arrives() {
        use crate::wire::{Message, QueryMsg};
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 1)]);
        events(&mut a);
        sent(&mut a);
        // A restarted "b" at port 9 asks the cluster who "b" is.
        let vote = |from: &str, id: u32| {
            Message::Query(Box::new(QueryMsg {
                ltime: 1,
                id,
                from: from.into(),
                addr: addr(9),
                filter_nodes: Vec::new(),
                filter_tags: Vec::new(),
                ack: false,
                relay_factor: 0,
                timeout_ms: 5_000,
                name: "_rookery/conflict".into(),
                payload: bytes::Bytes::copy_from_slice(from.as_bytes()),
            }))
        };
        let answers = |a: &mut Node| {
            sent(a)
                .into_iter()
                .filter(|(to, _, m)| {
                    *to == addr(9) && m.iter().any(|m| matches!(m, Message::QueryResponse(_)))
                })
                .count()
        };
        deliver(&mut a, at(10), 3, &[vote("b", 7)]);
        assert_eq!(answers(&mut a), 0, "no claim from port 9 seen yet");
        // Its alive arrives: the claim (b's known address is checked), and the vote answered.
        deliver(&mut a, at(20), 9, &[alive("b", 9, 2)]);
        assert_eq!(answers(&mut a), 1);
        // Past its deadline a vote is not answered any more, and is counted as refused.
        let refused = a.stats().replies_refused;
        deliver(&mut a, at(30), 3, &[alive("c", 3, 1)]);
        deliver(&mut a, at(40), 3, &[vote("c", 8)]);
        deliver(&mut a, at(6_000), 9, &[alive("c", 9, 2)]);
        assert_eq!(answers(&mut a), 0, "too late");
        assert_eq!(a.stats().replies_refused, refused + 1);
    }

    #[test]
    fn accusations_about_self_are_refuted() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 0)]);
        sent(&mut a);
        deliver(&mut a, at(2), 2, &[suspect("a", 0, "b")]);
        assert_eq!(a.local_member().incarnation, 1);
        assert_eq!(a.stats().refutations, 1);
        assert_eq!(a.health_score(), 1, "refuting costs a health point");
        // The accuser hears the refutation directly.
        let out = sent(&mut a);
        assert!(out.iter().any(|(to, _, msgs)| *to == addr(2)
            && msgs.iter().any(|m| matches!(m, crate::wire::Message::Alive(x) if &*x.name == "a" && x.incarnation == 1))));
        // A death certificate with a future incarnation is outbid too.
        deliver(&mut a, at(3), 2, &[dead("a", 7, "b")]);
        assert_eq!(a.local_member().incarnation, 8);
        assert_eq!(a.local_member().status, MemberStatus::Alive);
        // Our own state from an earlier life is outbid.
        deliver(&mut a, at(4), 2, &[alive("a", 1, 9)]);
        assert_eq!(a.local_member().incarnation, 10);
        // Someone else claiming our name is reported.
        deliver(&mut a, at(5), 9, &[alive("a", 9, 0)]);
        assert!(events(&mut a)
            .iter()
            .any(|e| matches!(e, Event::NameConflict { claimed, .. } if *claimed == addr(9))));
    }

    #[test]
    fn a_forgotten_member_stays_out_until_a_newer_life() {
        use crate::error::ApiError;
        use crate::wire::{Message, PushPull};
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 3), alive("c", 3, 0)]);
        events(&mut a);
        sent(&mut a);
        assert_eq!(a.forget_member(at(1), "a"), Err(ApiError::IsSelf));
        assert_eq!(
            a.forget_member(at(1), "zz"),
            Err(ApiError::UnknownMember("zz".into()))
        );
        a.forget_member(at(1), "b").unwrap();
        assert!(a.member("b").is_none(), "dropped from the view");
        assert!(matches!(&events(&mut a)[..], [Event::MemberReaped(m)] if &*m.name == "b"));
        // Gossip of the life it forgot, and a push-pull carrying it, change nothing.
        deliver(&mut a, at(2), 3, &[alive("b", 2, 3), alive("b", 2, 1)]);
        let b_state = crate::wire::PushState {
            name: "b".into(),
            addr: addr(2),
            incarnation: 3,
            status: crate::wire::WireStatus::Alive,
            tags: Default::default(),
            ltime: 0,
            accuser: None,
        };
        let msg = Message::PushPull(Box::new(PushPull {
            id: 5,
            request: false,
            join: false,
            reply_to: addr(3),
            sender: "c".into(),
            states: vec![b_state],
            member_ltime: 0,
            event_ltime: 0,
            query_ltime: 0,
            events: vec![],
        }));
        let frame = crate::wire::frame_message(&crate::wire::header(None), &msg);
        a.handle_stream(at(2), addr(3), &frame[4..]).unwrap();
        assert!(
            a.member("b").is_none(),
            "stale gossip does not bring it back"
        );
        assert!(events(&mut a).is_empty());
        // No probe, gossip or reconnect goes to it any more.
        tick(&mut a, at(30_000), std::time::Duration::from_millis(100));
        let to_b = sent(&mut a)
            .iter()
            .filter(|(to, ..)| *to == addr(2))
            .count();
        assert_eq!(to_b, 0, "nothing sent to the forgotten member");
        // It rejoins: a newer incarnation brings it back.
        deliver(&mut a, at(30_100), 2, &[alive("b", 2, 4)]);
        assert_eq!(a.member("b").unwrap().incarnation, 4);
        assert!(events(&mut a)
            .iter()
            .any(|e| matches!(e, Event::MemberJoined(m) if &*m.name == "b")));
        assert!(
            a.forgotten.is_empty(),
            "the guard is gone with the old life"
        );
    }
}

/// The core's logs say why: who suspected whom, how long a suspicion ran before the failure
/// verdict, refutations, name conflicts, refused input with its cause and sender, join progress.
#[cfg(test)]
mod log_tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::testkit::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[test]
    fn verdicts_and_refusals_are_logged_with_names_and_reasons() {
        logs_wanted();
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let mut a = node("a", 1);
            deliver(&mut a, at(1), 2, &[alive("b", 2, 0), alive("c", 3, 0)]);
            deliver(&mut a, at(2), 3, &[suspect("b", 0, "c")]);
            tick(&mut a, at(60_000), Duration::from_millis(100));
            deliver(&mut a, at(60_001), 3, &[suspect("a", 0, "c")]);
            deliver(&mut a, at(60_002), 9, &[alive("a", 9, 5)]);
            a.handle_packet(at(60_003), addr(7), b"\x01garbage")
                .unwrap_err();
            a.join(at(60_004), &[addr(3)]).unwrap();
        });
        let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        for needle in [
            "member joined",
            "member suspected member=b by=c",
            "member failed",
            "suspected_for=Some(",
            "refuting",
            "name conflict",
            "claimed=127.0.0.1:9",
            "refused a message from=127.0.0.1:7 cause=\"undecodable or invalid\"",
            "join: asking the seeds",
        ] {
            assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
        }
    }
}
