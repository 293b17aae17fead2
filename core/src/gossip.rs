//! Dissemination and anti-entropy: the gossip tick (queued updates to a few random members,
//! recently failed ones included), periodic push-pull of the whole member table over the
//! reliable channel, joining through seeds, and the graceful-leave announcement.
//!
//! Join storms: state a fresh node pulls from its seed is not re-gossiped (the seed's cluster
//! already knows it); only the seed gossips the newcomer. A node that already had peers when it
//! joined (two clusters merging) re-gossips what it learns, so both sides hear of each other.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::event::Event;
use crate::identity::{MemberStatus, Name};
use crate::node::{Node, RunState};
use crate::timers::TimerKind;
use crate::wire::{Accusation, Alive, Digest, Message, PushPull, PushState, WireStatus};
use rand::Rng;

/// A join waiting for its seeds.
#[derive(Clone, Debug)]
pub(crate) struct PendingJoin {
    /// Push-pull ids and seed addresses still outstanding.
    outstanding: BTreeSet<(u32, SocketAddr)>,
    answered: usize,
    contacted: usize,
    /// Whether this node knew other live members when the join started.
    had_peers: bool,
}

impl Node {
    pub(crate) fn gossip_tick(&mut self) {
        self.timers
            .schedule(self.now + self.cfg.gossip_interval, TimerKind::GossipTick);
        if !self.queue.is_empty() {
            let me = self.me.clone();
            let now = self.now;
            let dead_time = self.cfg.gossip_to_the_dead_time;
            let targets = self
                .members
                .random_members(self.cfg.gossip_nodes, &mut self.rng, |r| {
                    r.name != me
                        && (r.is_live() || now.saturating_since(r.state_change) < dead_time)
                });
            let addrs: Vec<SocketAddr> = targets.iter().map(|&i| self.members.at(i).addr).collect();
            for to in addrs {
                if !self.send_gossip(to) {
                    break;
                }
            }
        }
        if self.run == RunState::Leaving && !self.queue.contains(&self.me) {
            self.finish_leave();
        }
    }

    fn push_pull_period(&self) -> std::time::Duration {
        let n = self.members.live();
        let mut period = self.cfg.push_pull_interval;
        if n > 32 {
            let mult = ((n as f64).log2() - 5.0).ceil().max(0.0) as u32 + 1;
            period *= mult;
        }
        period
    }

    pub(crate) fn push_pull_tick(&mut self) {
        let next = self.now + self.push_pull_period();
        let generation = self.push_pull_gen;
        self.timers
            .schedule(next, TimerKind::PushPullTick { generation });
        self.push_pull_random();
    }

    /// Start a push-pull exchange with one random alive member.
    pub(crate) fn push_pull_random(&mut self) {
        if self.run != RunState::Running {
            return;
        }
        let me = self.me.clone();
        let Some(&i) = self
            .members
            .random_members(1, &mut self.rng, |r| {
                r.status() == MemberStatus::Alive && r.name != me
            })
            .first()
        else {
            return;
        };
        let to = self.members.at(i).addr;
        let id = self.rng_id();
        self.send_push_pull(to, id, true, false);
    }

    fn rng_id(&mut self) -> u32 {
        self.rng.random()
    }

    fn local_state(&self) -> Vec<PushState> {
        self.members
            .iter()
            .map(|r| PushState {
                name: r.name.clone(),
                addr: r.addr,
                incarnation: r.incarnation,
                status: match r.status() {
                    MemberStatus::Alive => WireStatus::Alive,
                    MemberStatus::Suspect => WireStatus::Suspect,
                    MemberStatus::Failed => WireStatus::Dead,
                    MemberStatus::Left => WireStatus::Left,
                },
                tags: (*r.tags).clone(),
            })
            .collect()
    }

    fn send_push_pull(&mut self, to: SocketAddr, id: u32, request: bool, join: bool) {
        let msg = Message::PushPull(PushPull {
            id,
            request,
            join,
            reply_to: self.addr,
            sender: self.me.clone(),
            states: self.local_state(),
        });
        self.send_reliable(to, &msg);
    }

    pub(crate) fn on_push_pull(&mut self, p: PushPull) {
        if p.request {
            if self.run == RunState::Running {
                // Answer with our table as it was before merging theirs.
                self.send_push_pull(p.reply_to, p.id, false, false);
            }
            self.merge(p.states, &p.sender, true);
            return;
        }
        let join = self.joins.iter().find_map(|(&j, pj)| {
            pj.outstanding
                .iter()
                .find(|(id, _)| *id == p.id)
                .map(|&key| (j, key))
        });
        match join {
            Some((j, key)) => {
                let pj = self.joins.get_mut(&j).expect("found above");
                pj.outstanding.remove(&key);
                pj.answered += 1;
                let rebroadcast = pj.had_peers;
                self.merge(p.states, &p.sender, rebroadcast);
                self.maybe_finish_join(j);
            }
            None => self.merge(p.states, &p.sender, true),
        }
    }

    /// Merge a remote member table: alive as alive; suspect and dead as suspicion (a remote
    /// node's verdict is not a death certificate here), counted as an accusation by the sender
    /// (memberlist counts it as the receiver's own, which fakes independent confirmations);
    /// left as left.
    fn merge(&mut self, states: Vec<PushState>, sender: &Name, broadcast: bool) {
        for s in states {
            match s.status {
                WireStatus::Alive => {
                    let a = Alive {
                        incarnation: s.incarnation,
                        name: s.name,
                        addr: s.addr,
                        tags: s.tags,
                    };
                    self.apply_alive(a, broadcast);
                }
                WireStatus::Suspect | WireStatus::Dead => {
                    let from = sender.clone();
                    let acc = Accusation {
                        incarnation: s.incarnation,
                        name: s.name,
                        from,
                    };
                    self.apply_suspect(acc, broadcast);
                }
                WireStatus::Left => {
                    let acc = Accusation {
                        incarnation: s.incarnation,
                        from: s.name.clone(),
                        name: s.name,
                    };
                    self.apply_dead(acc, broadcast);
                }
            }
        }
    }

    /// How long a view must stay unchanged to count as settled: about the time an update
    /// takes to reach the whole cluster by gossip. Each gossip round multiplies the informed
    /// members by about fanout + 1 (4 by default), so log4(n + 1) rounds, plus one.
    fn settle_window(&self) -> std::time::Duration {
        let n = self.members.live().max(2) as f64;
        let growth = (self.cfg.gossip_nodes as f64 + 1.0).log2();
        let rounds = ((n + 1.0).log2() / growth).ceil() as u32 + 1;
        self.cfg.gossip_interval * rounds
    }

    /// This node's digest for an ack.
    pub(crate) fn view_digest(&self) -> Digest {
        let settled = self.now.saturating_since(self.members.digest_changed());
        Digest {
            hash: self.members.digest().to_le_bytes(),
            stable: settled >= self.settle_window(),
        }
    }

    /// Digest-triggered repair: when both this node's view and the acking peer's have been
    /// settled for a dissemination window and still differ, gossip has missed something (a
    /// member that missed an update entirely stays wrong until the next periodic push-pull,
    /// minutes away at scale): exchange full state with that peer now. At most once per
    /// settle window.
    pub(crate) fn compare_digest(&mut self, peer: SocketAddr, theirs: Digest) {
        if !theirs.stable || self.run != RunState::Running {
            return;
        }
        let mine = self.view_digest();
        let window = self.settle_window();
        let due = self
            .last_repair
            .is_none_or(|t| self.now.saturating_since(t) >= window);
        if mine.stable && mine.hash != theirs.hash && due {
            self.last_repair = Some(self.now);
            self.stats.digest_repairs += 1;
            let id = self.rng_id();
            self.send_push_pull(peer, id, true, false);
        }
    }

    pub(crate) fn start_join(&mut self, seeds: Vec<SocketAddr>) {
        self.next_join = self.next_join.wrapping_add(1);
        let j = self.next_join;
        let mut outstanding = BTreeSet::new();
        for &seed in &seeds {
            let id = self.rng_id();
            outstanding.insert((id, seed));
            self.send_push_pull(seed, id, true, true);
        }
        let had_peers = self.members.live() > 1;
        let pj = PendingJoin {
            outstanding,
            answered: 0,
            contacted: seeds.len(),
            had_peers,
        };
        self.joins.insert(j, pj);
        self.timers.schedule(
            self.now + self.cfg.tcp_timeout,
            TimerKind::JoinDeadline { join: j },
        );
    }

    pub(crate) fn join_seed_failed(&mut self, addr: SocketAddr) {
        let js: Vec<u32> = self.joins.keys().copied().collect();
        for j in js {
            if let Some(pj) = self.joins.get_mut(&j) {
                pj.outstanding.retain(|(_, a)| *a != addr);
            }
            self.maybe_finish_join(j);
        }
    }

    fn maybe_finish_join(&mut self, j: u32) {
        if self
            .joins
            .get(&j)
            .is_some_and(|pj| pj.outstanding.is_empty())
        {
            self.join_deadline(j);
        }
    }

    pub(crate) fn join_deadline(&mut self, j: u32) {
        if let Some(pj) = self.joins.remove(&j) {
            self.emit(Event::JoinCompleted {
                answered: pj.answered,
                contacted: pj.contacted,
            });
            if pj.answered > 0 && !self.cfg.push_pull_interval.is_zero() {
                // The cluster size is known now: re-arm periodic push-pull at a random point
                // of its stretched period, so a thousand nodes started together do not all
                // exchange full state within the first unstretched period.
                self.push_pull_gen = self.push_pull_gen.wrapping_add(1);
                let generation = self.push_pull_gen;
                let period = self.push_pull_period().as_micros().max(1) as u64;
                let at =
                    self.now + std::time::Duration::from_micros(self.rng.random_range(0..period));
                self.timers
                    .schedule(at, TimerKind::PushPullTick { generation });
            }
        }
    }

    pub(crate) fn start_leave(&mut self) {
        let me = self.me.clone();
        let inc = self.members.get(&me).map_or(0, |r| r.incarnation);
        self.run = RunState::Leaving;
        self.probe = None;
        self.members.set_status(&me, MemberStatus::Left, self.now);
        let msg = Message::Dead(Accusation {
            incarnation: inc,
            name: me.clone(),
            from: me.clone(),
        });
        self.enqueue(me, &msg);
        if self.members.live() == 0 {
            self.finish_leave();
            return;
        }
        self.timers
            .schedule(self.now + self.cfg.tcp_timeout, TimerKind::LeaveDeadline);
    }

    pub(crate) fn finish_leave(&mut self) {
        if self.run == RunState::Left {
            return;
        }
        self.run = RunState::Left;
        self.timers.clear();
        self.probe = None;
        self.relays.clear();
        self.emit(Event::LeaveCompleted);
    }
}
