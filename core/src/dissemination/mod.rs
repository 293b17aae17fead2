//! Dissemination and anti-entropy, as one part that owns its state: the gossip tick (queued
//! updates to a few random members, recently failed ones included), periodic push-pull of the
//! whole member table over the reliable channel (`push_pull`: the period, the writer, trimming
//! to what a peer accepts), and digest-triggered repair (`repair`). The broadcast queues
//! themselves sit in the effects sink ([`crate::ctx::Effects`]), since every part queues
//! updates; this part decides when and to whom they go.
//!
//! What a push-pull carries of the Serf layer (its clocks and recent user events) is handed
//! in by the router as a [`SerfShare`]; merging a received table is the router's (it touches
//! membership, the Serf layer and pending joins). The part owns its timers ([`DissTimer`]) and
//! their staleness rule ([`Dissemination::on_timer`]).

pub(crate) mod broadcast_queue;
pub(crate) mod push_pull;
mod repair;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;

use crate::ctx::Cx;
use crate::formulas;
use crate::identity::MemberStatus;
use crate::time::Timestamp;
use crate::timers::TimerKind;
use crate::wire::UserEventMsg;

/// The part's state.
#[derive(Debug, Default)]
pub(crate) struct Dissemination {
    /// Generation of the live periodic push-pull timer: re-arming it (when a join tells the
    /// cluster's size) makes the older one stale.
    push_pull_gen: u32,
    /// When the last digest-triggered push-pull started.
    last_repair: Option<Timestamp>,
    /// Join follow-ups ([`crate::Config::join_follow_up`]): the members known when the last
    /// one was scheduled, and how many more may follow.
    follow_up: Option<(usize, u32)>,
}

/// The most push-pulls a join follows up with while the view keeps growing.
const MAX_FOLLOW_UPS: u32 = 3;

/// The part's timers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DissTimer {
    /// Send queued updates to a few random members.
    GossipTick,
    /// Exchange full state with one random member (stale unless `generation` is current).
    PushPullTick { generation: u32 },
    /// A settle window after a join: exchange full state once more with one random member
    /// ([`crate::Config::join_follow_up`]).
    JoinFollowUp,
}

/// What a push-pull carries of the Serf layer: the member, event and query Lamport clocks
/// and the user events remembered for dedup, oldest first.
#[derive(Debug)]
pub(crate) struct SerfShare {
    pub clocks: (u64, u64, u64),
    pub events: Vec<UserEventMsg>,
}

/// A push-pull request the router must send (with a [`SerfShare`]) to `to` under `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PushPullTo {
    pub to: SocketAddr,
    pub id: u32,
}

impl Dissemination {
    /// Schedule the first gossip tick at `gossip_at` and, when periodic push-pull is on, the
    /// first push-pull at `push_pull_at`.
    pub(crate) fn arm(cx: &mut Cx<'_>, gossip_at: Timestamp, push_pull_at: Option<Timestamp>) {
        cx.fx
            .timers
            .schedule(gossip_at, TimerKind::Dissemination(DissTimer::GossipTick));
        if let Some(at) = push_pull_at {
            cx.fx.timers.schedule(
                at,
                TimerKind::Dissemination(DissTimer::PushPullTick { generation: 0 }),
            );
        }
    }

    /// A timer fired; a stale push-pull tick does nothing. A push-pull tick returns the
    /// exchange to start, when the node runs and has a live peer.
    pub(crate) fn on_timer(
        &mut self,
        t: DissTimer,
        running: bool,
        cx: &mut Cx<'_>,
    ) -> Option<PushPullTo> {
        match t {
            DissTimer::GossipTick => {
                self.gossip_tick(cx);
                None
            }
            DissTimer::PushPullTick { generation } => {
                if generation != self.push_pull_gen {
                    return None;
                }
                let next = cx.now + formulas::push_pull_period(cx.cfg, cx.members.live());
                let t = DissTimer::PushPullTick { generation };
                cx.fx.timers.schedule(next, TimerKind::Dissemination(t));
                if !running {
                    return None;
                }
                random_peer(cx)
            }
            DissTimer::JoinFollowUp => {
                let (known, left) = self.follow_up.take()?;
                if !running {
                    return None;
                }
                // The first follow-up always goes; another only while the view is still
                // growing (the cluster is still forming around this node).
                let now_known = cx.members.len();
                let first = left == MAX_FOLLOW_UPS;
                if !first && now_known <= known {
                    return None;
                }
                if left > 1 {
                    self.follow_up = Some((now_known, left - 1));
                    let at = cx.now + formulas::settle_window(cx.cfg, cx.members.live());
                    cx.fx
                        .timers
                        .schedule(at, TimerKind::Dissemination(DissTimer::JoinFollowUp));
                }
                cx.fx.stats.join_follow_ups += 1;
                // The periodic push-pull was armed when the join completed, for the cluster
                // size known then (an early joiner of a forming cluster: the unstretched
                // period); re-arm it for the size known now.
                self.rearm_push_pull(cx);
                random_peer(cx)
            }
        }
    }

    /// A join completed with answers: with [`crate::Config::join_follow_up`], exchange full
    /// state once more with a random member a settle window from now. The seed's answer was
    /// the cluster as the seed knew it at the join; the members that join right after this
    /// one reach it only by gossip, and while a cluster forms, updates about them compete
    /// with ever newer ones for room in each datagram and run out of retransmissions before
    /// every member heard them (an early joiner missing a member that joined a few tens of
    /// milliseconds later is what kept `join` from converging for up to a further 2 s; digest
    /// repair heals it only once views have settled). The second exchange, once gossip about
    /// the newcomers has had a settle window to spread, hands over what the first missed.
    /// While the view keeps growing from one follow-up to the next (a forming cluster),
    /// another follows a settle window later, at most [`MAX_FOLLOW_UPS`] in all.
    pub(crate) fn schedule_follow_up(&mut self, cx: &mut Cx<'_>) {
        if !cx.cfg.join_follow_up || self.follow_up.is_some() {
            return;
        }
        self.follow_up = Some((cx.members.len(), MAX_FOLLOW_UPS));
        let at = cx.now + formulas::settle_window(cx.cfg, cx.members.live());
        cx.fx
            .timers
            .schedule(at, TimerKind::Dissemination(DissTimer::JoinFollowUp));
    }

    fn gossip_tick(&mut self, cx: &mut Cx<'_>) {
        let next = cx.now + cx.cfg.gossip_interval;
        cx.fx
            .timers
            .schedule(next, TimerKind::Dissemination(DissTimer::GossipTick));
        if cx.fx.queue.is_empty() && cx.fx.serf_queue.is_empty() {
            return;
        }
        let me = cx.me;
        let now = cx.now;
        let dead_time = cx.cfg.gossip_to_the_dead_time;
        let targets = cx.members.random_members(cx.cfg.gossip_nodes, cx.rng, |r| {
            r.name != *me
                && (r.is_live()
                    || r.since()
                        .is_some_and(|t| now.saturating_since(t) < dead_time))
        });
        let addrs: Vec<SocketAddr> = targets.iter().map(|&i| cx.members.at(i).addr()).collect();
        for to in addrs {
            if !cx.send_gossip(to) {
                break;
            }
        }
    }

    /// A join completed with answers: the cluster size is known now, so re-arm periodic
    /// push-pull at a random point of its stretched period (the older timer goes stale), so
    /// that a thousand nodes started together do not all exchange full state within the first
    /// unstretched period.
    pub(crate) fn rearm_push_pull(&mut self, cx: &mut Cx<'_>) {
        if cx.cfg.push_pull_interval.is_zero() {
            return;
        }
        self.push_pull_gen = self.push_pull_gen.wrapping_add(1);
        let generation = self.push_pull_gen;
        let period = formulas::push_pull_period(cx.cfg, cx.members.live())
            .as_micros()
            .max(1) as u64;
        let at = cx.now + Duration::from_micros(cx.rng.random_range(0..period));
        let t = DissTimer::PushPullTick { generation };
        cx.fx.timers.schedule(at, TimerKind::Dissemination(t));
    }
}

/// A push-pull request to one random alive member, if there is one.
pub(crate) fn random_peer(cx: &mut Cx<'_>) -> Option<PushPullTo> {
    let me = cx.me;
    let &i = cx
        .members
        .random_members(1, cx.rng, |r| {
            r.status() == MemberStatus::Alive && r.name != *me
        })
        .first()?;
    let to = cx.members.at(i).addr();
    Some(PushPullTo {
        to,
        id: push_pull::new_id(cx),
    })
}
