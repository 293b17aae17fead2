//! Serf's join and leave intents, ordered by the member Lamport clock: a member's status moves
//! only for an intent newer than the last one applied, so a leave and a rejoin delivered in
//! either order end in the right status. Intents about members not yet known wait in a bounded
//! buffer (`max_recent_intents`, oldest dropped first) for `recent_intent_timeout`. A node
//! refutes a leave intent about itself while it is not leaving.

use std::collections::BTreeMap;

use super::Serf;
use crate::ctx::Cx;
use crate::event::Event;
use crate::identity::{MemberStatus, Name};
use crate::node::SerfKey;
use crate::time::Timestamp;
use crate::wire::{Intent, Message};

/// The latest intent seen about each member not yet known.
#[derive(Debug, Default)]
pub(crate) struct RecentIntents {
    /// name → (leave?, ltime, received at)
    map: BTreeMap<Name, (bool, u64, Timestamp)>,
}

impl RecentIntents {
    fn remember(
        &mut self,
        name: Name,
        leave: bool,
        ltime: u64,
        now: Timestamp,
        max: usize,
    ) -> bool {
        if let Some(e) = self.map.get_mut(&name) {
            if ltime > e.1 {
                *e = (leave, ltime, now);
            }
            return false;
        }
        let mut dropped = false;
        if self.map.len() >= max {
            // Drop the oldest-received intent.
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, v)| v.2)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
                dropped = true;
            }
        }
        self.map.insert(name, (leave, ltime, now));
        dropped
    }

    pub(crate) fn take(&mut self, name: &str) -> Option<(bool, u64)> {
        self.map.remove(name).map(|(l, t, _)| (l, t))
    }

    /// Forget intents received before `cutoff`.
    pub(crate) fn expire(&mut self, cutoff: Timestamp) {
        self.map.retain(|_, v| v.2 >= cutoff);
    }

    /// Intents held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl Serf {
    /// Buffer a leave intent about a member not known yet (a force-remove of an unknown name).
    pub(crate) fn remember_leave_intent(&mut self, i: &Intent, cx: &mut Cx<'_>) {
        self.remember_intent(i, true, cx);
    }

    fn remember_intent(&mut self, i: &Intent, leave: bool, cx: &mut Cx<'_>) {
        let max = cx.cfg.max_recent_intents;
        if self
            .intents
            .remember(i.name.clone(), leave, i.ltime, cx.now, max)
        {
            cx.fx.stats.intents_dropped += 1;
        }
    }

    /// Announce that this node joined, at a new member Lamport time. The join intent rides
    /// on this node's own alive message (with a new incarnation, so everyone takes it as
    /// news): Serf gossips it separately, which doubles the traffic of a join storm.
    pub(crate) fn announce_join(&mut self, cx: &mut Cx<'_>) {
        let ltime = self.member_clock.increment();
        let me = cx.me.clone();
        let now = cx.now;
        let Some(rec) = cx.members.get_mut(&me) else {
            return;
        };
        rec.status_ltime = ltime;
        rec.leaving = false;
        // Wraps, as every raise of our own incarnation does (see `Node::refute`).
        let inc = rec.incarnation.wrapping_add(1);
        cx.members.set_incarnation(&me, inc, now);
        cx.broadcast_self();
    }

    /// Announce that this node is leaving.
    pub(crate) fn announce_leave(&mut self, cx: &mut Cx<'_>) {
        let ltime = self.member_clock.increment();
        let me = cx.me.clone();
        if let Some(rec) = cx.members.get_mut(&me) {
            rec.status_ltime = ltime;
            rec.leaving = true;
        }
        let i = Intent {
            ltime,
            name: me.clone(),
            prune: false,
        };
        cx.serf_enqueue(SerfKey::Intent(me), &Message::LeaveIntent(i));
    }

    /// A join intent (carried by an alive message or a push-pull state).
    /// The join intent an alive message about `name` carries (`ltime` 0: none).
    pub(crate) fn on_alive_intent(&mut self, name: Name, ltime: u64, cx: &mut Cx<'_>) {
        if ltime > 0 {
            self.on_join_intent(
                Intent {
                    ltime,
                    name,
                    prune: false,
                },
                cx,
            );
        }
    }

    pub(crate) fn on_join_intent(&mut self, i: Intent, cx: &mut Cx<'_>) {
        self.member_clock.witness(i.ltime);
        let Some(rec) = cx.members.get_mut(&i.name) else {
            self.remember_intent(&i, false, cx);
            return;
        };
        // A join at the very time of the leave this node holds wins the tie. Such a pair is
        // two events (a force-remove by one node, a join by the member at the same Lamport
        // time), or a member that refuted a leave others had applied (its new life carries
        // the leave's time as its status time); left to the order of arrival, some nodes keep
        // a live member leaving for good (the swarm: `force-removed-live-member-stays-leaving`).
        let tie_to_join = i.ltime == rec.status_ltime && rec.leaving && rec.is_live();
        if i.ltime <= rec.status_ltime && !tie_to_join {
            return;
        }
        rec.status_ltime = i.ltime;
        rec.leaving = false;
    }

    pub(crate) fn on_leave_intent(&mut self, i: Intent, broadcast: bool, cx: &mut Cx<'_>) {
        self.member_clock.witness(i.ltime);
        if i.name == *cx.me {
            // A leave intent about us while we are not leaving (an old one from an earlier
            // life, or a force-remove): refute it with a newer join intent.
            let ours = cx.members.get(cx.me).map_or(0, |r| r.status_ltime);
            if cx.running && i.ltime >= ours {
                self.announce_join(cx);
            }
            return;
        }
        let now = cx.now;
        let Some(rec) = cx.members.get_mut(&i.name) else {
            self.remember_intent(&i, true, cx);
            return;
        };
        // A leave intent about a member this node considers failed always applies: failed to
        // left is the whole point of a force-remove, and the remover's member clock may lag
        // behind the member's own last join intent.
        let failed = rec.status() == MemberStatus::Failed;
        if i.ltime <= rec.status_ltime && !failed {
            return;
        }
        rec.status_ltime = rec.status_ltime.max(i.ltime);
        let name = rec.name.to_name();
        match rec.status() {
            MemberStatus::Alive | MemberStatus::Suspect | MemberStatus::Leaving => {
                rec.leaving = true;
            }
            MemberStatus::Failed => {
                // Serf: a failed member that is (force-)removed has left.
                cx.members.set_status(&name, MemberStatus::Left, now);
                let snap = cx.members.member(&name).expect("present");
                self.emit(Event::MemberLeft(snap), cx);
            }
            MemberStatus::Left => {}
        }
        if i.prune {
            // Erased whatever its status (Serf prunes a leaving member too): the application
            // hears of it, never a silent disappearance.
            if let Some(last) = cx.members.remove(&name, now) {
                self.emit(Event::MemberReaped(last), cx);
            }
        }
        if broadcast {
            cx.serf_enqueue(SerfKey::Intent(name), &Message::LeaveIntent(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::identity::MemberStatus;
    use crate::testkit::*;
    use crate::wire::{Intent, Message};

    fn join(name: &str, ltime: u64) -> Message {
        Message::Alive(crate::wire::Alive {
            incarnation: ltime as u32,
            name: name.into(),
            addr: addr(if name == "b" { 2 } else { 3 }),
            tags: Default::default(),
            ltime,
        })
    }

    fn leave(name: &str, ltime: u64) -> Message {
        Message::LeaveIntent(Intent {
            ltime,
            name: name.into(),
            prune: false,
        })
    }

    #[test]
    fn intents_in_either_order_end_in_the_right_status() {
        // b leaves (ltime 5) then rejoins (ltime 7); a hears the rejoin first.
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 0)]);
        deliver(&mut a, at(2), 2, &[join("b", 7), leave("b", 5)]);
        assert_eq!(a.member("b").unwrap().status, MemberStatus::Alive);
        // c joins (ltime 3) then leaves (ltime 4); a hears the leave first.
        deliver(
            &mut a,
            at(3),
            3,
            &[alive("c", 3, 0), leave("c", 4), join("c", 3)],
        );
        assert_eq!(a.member("c").unwrap().status, MemberStatus::Leaving);
        assert!(
            a.serf.member_clock.time() > 7,
            "the member clock witnessed every intent"
        );
    }

    #[test]
    fn intents_about_unknown_members_wait_in_a_bounded_buffer() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).max_recent_intents = 2;
        deliver(&mut a, at(1), 2, &[leave("x", 4), leave("y", 4)]);
        deliver(&mut a, at(2), 2, &[leave("z", 4)]);
        assert_eq!(a.serf.intents.len(), 2);
        assert_eq!(a.stats().intents_dropped, 1);
        deliver(&mut a, at(3), 2, &[alive("z", 9, 0)]);
        assert_eq!(a.member("z").unwrap().status, MemberStatus::Leaving);
        a.serf.intents.expire(at(10));
        assert_eq!(a.serf.intents.len(), 0);
    }

    #[test]
    fn a_stale_leave_intent_about_self_is_refuted() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 0)]);
        let before = a.serf.member_clock.time();
        deliver(&mut a, at(2), 2, &[leave("a", before + 3)]);
        let rec = a.members.get("a").unwrap();
        assert!(
            rec.status_ltime > before + 3,
            "refuted with a newer join intent"
        );
        assert!(!rec.leaving);
        assert!(
            a.fx.queue.contains(&"a".into()),
            "the refutation rides on a new alive"
        );
    }

    #[test]
    fn a_leave_intent_turns_failed_into_left() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 0), dead("b", 0, "c")]);
        events(&mut a);
        deliver(&mut a, at(2), 2, &[leave("b", 9)]);
        assert_eq!(a.member("b").unwrap().status, MemberStatus::Left);
        assert!(events(&mut a)
            .iter()
            .any(|e| matches!(e, crate::Event::MemberLeft(_))));
    }

    /// A join intent at the very Lamport time of the leave intent a node applied to a live
    /// member wins the tie: the member is alive, not leaving, whichever came first.
    #[test]
    fn a_join_at_the_time_of_a_leave_wins_the_tie() {
        let mut a = node("a", 1);
        deliver(&mut a, at(1), 2, &[alive("b", 2, 0), join("b", 2)]);
        deliver(&mut a, at(2), 3, &[leave("b", 9)]);
        assert_eq!(a.member("b").unwrap().status, MemberStatus::Leaving);
        deliver(&mut a, at(3), 3, &[join("b", 9)]);
        assert_eq!(
            a.member("b").unwrap().status,
            MemberStatus::Alive,
            "the tie"
        );
        deliver(&mut a, at(4), 3, &[leave("b", 9)]);
        assert_eq!(
            a.member("b").unwrap().status,
            MemberStatus::Alive,
            "the same leave again changes nothing"
        );
        deliver(&mut a, at(5), 3, &[leave("b", 10)]);
        assert_eq!(
            a.member("b").unwrap().status,
            MemberStatus::Leaving,
            "a newer leave does"
        );
    }
}
