//! Joining through seeds: a push-pull request to each (the router sends them), completion
//! once every seed answered or failed, or after `tcp_timeout`.
//!
//! Join storms: state a fresh node pulls from its seed is not re-gossiped (the seed's cluster
//! already knows it); only the seed gossips the newcomer. A node that already had peers when it
//! joined (two clusters merging) re-gossips what it learns, so both sides hear of each other.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::{LifeTimer, Lifecycle};
use crate::ctx::Cx;
use crate::dissemination::{push_pull, PushPullTo};
use crate::timers::TimerKind;

/// A join waiting for its seeds.
#[derive(Clone, Debug)]
pub(super) struct PendingJoin {
    /// Push-pull ids and seed addresses still outstanding.
    outstanding: BTreeSet<(u32, SocketAddr)>,
    answered: usize,
    contacted: usize,
    /// Whether this node knew other live members when the join started.
    had_peers: bool,
    /// Skip the cluster's user events older than the join.
    ignore_old: bool,
}

/// A push-pull answer belongs to a pending join: how to merge it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JoinAnswer {
    /// The join's number (see [`Lifecycle::join_over_if_done`]).
    pub join: u32,
    /// Re-gossip what it brings (this node had peers before: two clusters merging).
    pub rebroadcast: bool,
    /// Skip user events older than the join.
    pub ignore_old: bool,
}

/// A join completed: how many seeds answered out of how many were contacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JoinDone {
    pub answered: usize,
    pub contacted: usize,
}

impl Lifecycle {
    /// Start a join through `seeds` (distinct, not this node): the push-pull requests the
    /// router must send, one per seed.
    pub(crate) fn start_join(
        &mut self,
        seeds: &[SocketAddr],
        ignore_old: bool,
        cx: &mut Cx<'_>,
    ) -> Vec<PushPullTo> {
        self.next_join = self.next_join.wrapping_add(1);
        let j = self.next_join;
        let mut requests = Vec::with_capacity(seeds.len());
        let mut outstanding = BTreeSet::new();
        for &seed in seeds {
            let id = push_pull::new_id(cx);
            outstanding.insert((id, seed));
            requests.push(PushPullTo { to: seed, id });
        }
        let pj = PendingJoin {
            outstanding,
            answered: 0,
            contacted: seeds.len(),
            had_peers: cx.members.live() > 1,
            ignore_old,
        };
        self.joins.insert(j, pj);
        tracing::debug!(join = j, ?seeds, "join: asking the seeds for their state");
        let at = cx.now + cx.cfg.tcp_timeout;
        let t = LifeTimer::JoinDeadline { join: j };
        cx.fx.timers.schedule(at, TimerKind::Lifecycle(t));
        requests
    }

    /// A push-pull answer with `id` arrived: if a pending join asked for it, the seed answered.
    pub(crate) fn push_pull_answered(&mut self, id: u32) -> Option<JoinAnswer> {
        let (j, key) = self.joins.iter().find_map(|(&j, pj)| {
            pj.outstanding
                .iter()
                .find(|(i, _)| *i == id)
                .map(|&key| (j, key))
        })?;
        let pj = self.joins.get_mut(&j).expect("found above");
        pj.outstanding.remove(&key);
        pj.answered += 1;
        Some(JoinAnswer {
            join: j,
            rebroadcast: pj.had_peers,
            ignore_old: pj.ignore_old,
        })
    }

    /// The reliable channel to `addr` failed: seeds there will not answer. The joins this
    /// completes, in order.
    pub(crate) fn seed_failed(&mut self, addr: SocketAddr) -> Vec<JoinDone> {
        let js: Vec<u32> = self.joins.keys().copied().collect();
        let mut done = Vec::new();
        for j in js {
            if let Some(pj) = self.joins.get_mut(&j) {
                pj.outstanding.retain(|(_, a)| *a != addr);
            }
            done.extend(self.join_over_if_done(j));
        }
        done
    }

    /// Join `j` is over if no seed is outstanding.
    pub(crate) fn join_over_if_done(&mut self, j: u32) -> Option<JoinDone> {
        if self
            .joins
            .get(&j)
            .is_some_and(|pj| pj.outstanding.is_empty())
        {
            return self.join_over(j);
        }
        None
    }

    /// Join `j` is over (all seeds heard from, or its deadline); `None` if it already was.
    pub(super) fn join_over(&mut self, j: u32) -> Option<JoinDone> {
        let pj = self.joins.remove(&j)?;
        Some(JoinDone {
            answered: pj.answered,
            contacted: pj.contacted,
        })
    }
}
