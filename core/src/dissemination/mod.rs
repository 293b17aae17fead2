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
}

/// The part's timers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DissTimer {
    /// Send queued updates to a few random members.
    GossipTick,
    /// Exchange full state with one random member (stale unless `generation` is current).
    PushPullTick { generation: u32 },
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
        }
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
