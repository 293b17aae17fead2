//! Forgetting and reconnecting: every `reap_interval` failed members older than
//! `reconnect_timeout` and left members older than `tombstone_timeout` are erased (reported as
//! [`Event::MemberReaped`]) and stale buffered intents expire; every `reconnect_interval`,
//! with probability failed/alive, a push-pull with one random failed member is attempted, so a
//! healed partition merges back. Also force-removal of a failed member.
//!
//! Serf reconnects only to members it knows failed, which leaves one split for good: nodes
//! that restarted with fresh state while the network was split, and joined only the seeds
//! they could reach, form clusters that never heard of each other (found by the swarm: a
//! partition, then a mass restart on both sides). So rookery also remembers the seeds of the
//! latest join (at most [`MAX_SEEDS`]) and, from a reconnect interval after that join on,
//! when no failed member was tried, tries one seed address that no member in its table
//! holds, with probability (such seeds)/alive: nothing in a settled cluster (every seed is a
//! member's address, or a failed member's, which the failed-member path covers), otherwise
//! about one attempt per such seed and interval across the cluster — also to a seed that is
//! gone for good, which costs that one connection attempt per interval.

use rand::Rng;

use super::{Outcome, Serf, SerfTimer};
use crate::ctx::Cx;
use crate::dissemination::PushPullTo;
use crate::error::ApiError;
use crate::event::Event;
use crate::identity::{MemberStatus, Name};
use crate::node::SerfKey;
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::{Intent, Message};

/// Seeds of the latest join remembered for reconnecting (see the module doc).
pub(crate) const MAX_SEEDS: usize = 64;

impl Serf {
    pub(crate) fn reap_tick(&mut self, cx: &mut Cx<'_>) {
        cx.fx.timers.schedule(
            cx.now + cx.cfg.reap_interval,
            TimerKind::Serf(SerfTimer::Reap),
        );
        let now = cx.now;
        let (reconnect, tombstone) = (cx.cfg.reconnect_timeout, cx.cfg.tombstone_timeout);
        // Nothing failed or left (the usual case): no scan of the whole table.
        let doomed: Vec<Name> = if cx.members.failed() + cx.members.left() == 0 {
            Vec::new()
        } else {
            cx.members
                .iter()
                .filter(|r| match r.status() {
                    MemberStatus::Failed => r
                        .since()
                        .is_some_and(|t| now.saturating_since(t) > reconnect),
                    MemberStatus::Left => r
                        .since()
                        .is_some_and(|t| now.saturating_since(t) > tombstone),
                    _ => false,
                })
                .filter(|r| r.name != *cx.me)
                .map(|r| r.name.to_name())
                .collect()
        };
        for name in doomed {
            if let Some(last) = cx.members.remove(&name, now) {
                self.emit(Event::MemberReaped(last), cx);
            }
        }
        let cutoff = Timestamp::from_micros(
            now.as_micros()
                .saturating_sub(cx.cfg.recent_intent_timeout.as_micros() as u64),
        );
        self.intents.expire(cutoff);
    }

    /// The member table is full and a new member arrives: forget the oldest tombstone early
    /// (a member that left before one that failed: a failed one may still come back), reported
    /// as reaped. False when the table holds no tombstone; the new member is then refused.
    /// Without this, tombstones of members that never existed (forged, then failed) would keep
    /// a full table closed to real members for the whole tombstone timeout.
    pub(crate) fn evict_tombstone(&mut self, cx: &mut Cx<'_>) -> bool {
        if cx.members.failed() + cx.members.left() == 0 {
            return false;
        }
        let oldest = cx
            .members
            .iter()
            .filter(|r| r.name != *cx.me)
            .filter_map(|r| {
                let rank = match r.status() {
                    MemberStatus::Left => 0,
                    MemberStatus::Failed => 1,
                    _ => return None,
                };
                Some(((rank, r.since()), r.name.to_name()))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, name)| name);
        let Some(name) = oldest else {
            return false;
        };
        let Some(last) = cx.members.remove(&name, cx.now) else {
            return false;
        };
        cx.fx.stats.tombstones_evicted += 1;
        tracing::debug!(member = %name, "member table full: tombstone forgotten early");
        self.emit(Event::MemberReaped(last), cx);
        true
    }

    pub(crate) fn reconnect_tick(&mut self, cx: &mut Cx<'_>) -> Outcome {
        cx.fx.timers.schedule(
            cx.now + cx.cfg.reconnect_interval,
            TimerKind::Serf(SerfTimer::Reconnect),
        );
        if !cx.running {
            return Outcome::Nothing;
        }
        match self.reconnect_failed(cx) {
            Outcome::Nothing => self.reconnect_seed(cx),
            out => out,
        }
    }

    /// Serf's reconnect: with probability failed/alive, a push-pull with a random failed member.
    fn reconnect_failed(&mut self, cx: &mut Cx<'_>) -> Outcome {
        let failed = cx.members.failed();
        if failed == 0 {
            return Outcome::Nothing;
        }
        let alive = cx.members.alive().max(1);
        let p = (failed as f64 / alive as f64).min(1.0);
        if !cx.rng.random_bool(p) {
            return Outcome::Nothing;
        }
        let Some(&i) = cx
            .members
            .random_members(1, cx.rng, |r| r.status() == MemberStatus::Failed)
            .first()
        else {
            return Outcome::Nothing;
        };
        let addr = cx.members.at(i).addr();
        cx.fx.stats.reconnects += 1;
        let id = cx.rng.random();
        Outcome::PushPull(PushPullTo { to: addr, id })
    }

    /// rookery's addition (module doc): with probability (unknown seeds)/alive, a push-pull
    /// with a seed of the latest join that no member in the table holds.
    fn reconnect_seed(&mut self, cx: &mut Cx<'_>) -> Outcome {
        // Not while the join itself may still be under way.
        if self.seeds.is_empty()
            || cx.now.saturating_since(self.seeds_at) < cx.cfg.reconnect_interval
        {
            return Outcome::Nothing;
        }
        let held: std::collections::HashSet<std::net::SocketAddr> =
            cx.members.iter().map(|r| r.addr()).collect();
        let unknown: Vec<std::net::SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|a| !held.contains(a))
            .collect();
        if unknown.is_empty() {
            return Outcome::Nothing;
        }
        let alive = cx.members.alive().max(1);
        let p = (unknown.len() as f64 / alive as f64).min(1.0);
        if !cx.rng.random_bool(p) {
            return Outcome::Nothing;
        }
        let to = unknown[cx.rng.random_range(0..unknown.len())];
        cx.fx.stats.seed_rejoins += 1;
        tracing::debug!(seed = %to, "reconnect: trying a seed no member holds");
        let id = cx.rng.random();
        Outcome::PushPull(PushPullTo { to, id })
    }

    /// Remember the seeds of a join started at `now` (distinct, without this node), the first
    /// [`MAX_SEEDS`].
    pub(crate) fn remember_seeds(&mut self, seeds: &[std::net::SocketAddr], now: Timestamp) {
        self.seeds = seeds.iter().copied().take(MAX_SEEDS).collect();
        self.seeds_at = now;
    }

    /// Force a failed member to left across the cluster (a leave intent on its behalf); with
    /// `prune` every member also erases it at once instead of keeping a tombstone. A name this
    /// node does not know (never heard of, or already reaped) is announced all the same, as
    /// Serf's force-leave does: the members that still hold it as failed apply and pass it on,
    /// so an operator can clear a failed member from any node.
    pub(crate) fn remove_failed(
        &mut self,
        name: &str,
        prune: bool,
        cx: &mut Cx<'_>,
    ) -> Result<(), ApiError> {
        let Some(rec) = cx.members.get(name) else {
            if name.is_empty() {
                return Err(ApiError::EmptyName);
            }
            if name.len() > cx.cfg.max_name_len {
                let (size, limit) = (name.len(), cx.cfg.max_name_len);
                return Err(ApiError::TooLarge {
                    what: "name",
                    size,
                    limit,
                });
            }
            let i = Intent {
                ltime: self.member_clock.increment(),
                name: Name::from(name),
                prune,
            };
            tracing::debug!(member = %name, prune, "force-remove of a member this node does not know: announced anyway");
            self.remember_leave_intent(&i, cx);
            cx.serf_enqueue(SerfKey::Intent(i.name.clone()), &Message::LeaveIntent(i));
            return Ok(());
        };
        let removable =
            rec.status() == MemberStatus::Failed || (prune && rec.status() == MemberStatus::Left);
        if !removable {
            return Err(ApiError::NotFailed(name.to_string()));
        }
        let ltime = self.member_clock.increment();
        let i = Intent {
            ltime,
            name: rec.name.to_name(),
            prune,
        };
        self.on_leave_intent(i, true, cx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::error::ApiError;
    use crate::event::Event;
    use crate::identity::MemberStatus;
    use crate::testkit::*;

    #[test]
    fn failed_and_left_members_are_reaped_after_their_timeouts() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).reconnect_timeout = Duration::from_secs(100);
        std::sync::Arc::make_mut(&mut a.cfg).tombstone_timeout = Duration::from_secs(200);
        deliver(
            &mut a,
            at(0),
            2,
            &[
                alive("b", 2, 0),
                alive("c", 3, 0),
                dead("b", 0, "x"),
                dead("c", 0, "c"),
            ],
        );
        events(&mut a);
        tick(&mut a, at(150_000), Duration::from_secs(1));
        assert!(
            a.member("b").is_none(),
            "failed member reaped after reconnect_timeout"
        );
        assert_eq!(a.member("c").unwrap().status, MemberStatus::Left);
        tick(&mut a, at(250_000), Duration::from_secs(1));
        assert!(
            a.member("c").is_none(),
            "left member reaped after tombstone_timeout"
        );
        let reaped = events(&mut a)
            .iter()
            .filter(|e| matches!(e, Event::MemberReaped(_)))
            .count();
        assert_eq!(reaped, 2);
    }

    #[test]
    fn remove_failed_forces_left_or_prunes() {
        let mut a = node("a", 1);
        deliver(
            &mut a,
            at(0),
            2,
            &[alive("b", 2, 0), alive("c", 3, 0), alive("d", 4, 0)],
        );
        assert_eq!(
            a.remove_failed(at(1), "b", false),
            Err(ApiError::NotFailed("b".into()))
        );
        // A member this node never heard of: announced anyway, as Serf's force-leave does.
        a.remove_failed(at(1), "zz", false).unwrap();
        assert_eq!(
            a.serf_queue_len(),
            1,
            "the removal of an unknown member is gossiped"
        );
        assert_eq!(a.remove_failed(at(1), "", false), Err(ApiError::EmptyName));
        deliver(&mut a, at(2), 3, &[dead("b", 0, "c"), dead("d", 0, "c")]);
        a.remove_failed(at(3), "b", false).unwrap();
        assert_eq!(a.member("b").unwrap().status, MemberStatus::Left);
        a.remove_failed(at(3), "d", true).unwrap();
        assert!(a.member("d").is_none(), "pruned");
        let intents = sent(&mut a);
        let _ = intents;
        assert!(a.serf_queue_len() >= 3, "every removal is gossiped");
    }

    #[test]
    fn reconnect_tries_a_failed_member() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).reconnect_interval = Duration::from_secs(1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0), dead("b", 0, "x")]);
        sent(&mut a);
        // failed/alive = 1/1: every tick tries.
        a.handle_timeout(at(30_000));
        tick(&mut a, at(33_000), Duration::from_millis(100));
        assert!(a.stats().reconnects >= 1);
        assert!(sent(&mut a).iter().any(|(to, kind, m)| *to == addr(2)
            && *kind == crate::node::TransmitKind::Reliable
            && matches!(&m[0], crate::wire::Message::PushPull(p) if p.request)));
    }

    /// A seed of the latest join that no member holds (two clusters that never heard of each
    /// other) is tried by reconnect; a seed that is a member's address never is.
    #[test]
    fn reconnect_tries_a_seed_no_member_holds() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).reconnect_interval = Duration::from_secs(1);
        a.join(at(0), &[addr(2), addr(5)]).unwrap();
        // Seed 2 was member b (it left since: its address is still held); seed 5 never
        // answered.
        deliver(&mut a, at(10), 2, &[alive("b", 2, 0), dead("b", 0, "b")]);
        sent(&mut a);
        let pushes_to = |a: &mut crate::Node, port: u16| {
            sent(a)
                .iter()
                .filter(|(to, kind, m)| {
                    *to == addr(port)
                        && *kind == crate::node::TransmitKind::Reliable
                        && matches!(&m[0], crate::wire::Message::PushPull(p) if p.request)
                })
                .count()
        };
        // (The first reconnect tick comes within the configured interval of the start.)
        let mut to_unknown = 0;
        for k in 30..=50u64 {
            tick(&mut a, at(k * 1_000 + 500), Duration::from_millis(250));
            to_unknown += pushes_to(&mut a, 5);
        }
        // unknown/alive = 1/1: every interval tries it, and every seed reconnect went there,
        // none to the seed that is member b's address.
        assert!(to_unknown >= 15, "{to_unknown}");
        assert_eq!(a.stats().seed_rejoins, to_unknown as u64);
    }
}
