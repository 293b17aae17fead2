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
use crate::identity::MemberStatus;
use crate::members::{MemberRec, Prefetched};
use crate::node::{Node, RunState, SerfKey};
use crate::short_name::ShortName;
use crate::timers::TimerKind;
use crate::wire::{
    self, Accusation, Alive, Digest, Intent, Message, PushPull, PushState, UserEventMsg, WireStatus,
};
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
    /// Skip the cluster's user events older than the join.
    ignore_old: bool,
}

/// What a user event is reckoned to take in a push-pull (name, payload and at most 24 bytes
/// of fields and lengths).
fn event_room(e: &UserEventMsg) -> usize {
    e.name.len() + e.payload.len() + 24
}

impl Node {
    pub(crate) fn gossip_tick(&mut self) {
        self.fx
            .timers
            .schedule(self.now + self.cfg.gossip_interval, TimerKind::GossipTick);
        if !self.fx.queue.is_empty() || !self.fx.serf_queue.is_empty() {
            let me = self.me.clone();
            let now = self.now;
            let dead_time = self.cfg.gossip_to_the_dead_time;
            let targets = self
                .members
                .random_members(self.cfg.gossip_nodes, &mut self.rng, |r| {
                    r.name != me
                        && (r.is_live()
                            || r.since()
                                .is_some_and(|t| now.saturating_since(t) < dead_time))
                });
            let addrs: Vec<SocketAddr> =
                targets.iter().map(|&i| self.members.at(i).addr()).collect();
            for to in addrs {
                if !self.send_gossip(to) {
                    break;
                }
            }
        }
        if self.run == RunState::Leaving {
            let me = self.me.clone();
            match self.leave_phase {
                1 if !self.fx.serf_queue.contains(&SerfKey::Intent(me.clone())) => {
                    self.leave_deadline(1)
                }
                2 if !self.fx.queue.contains(&ShortName::new(&me)) => self.leave_deadline(2),
                _ => {}
            }
        }
    }

    fn push_pull_period(&self) -> std::time::Duration {
        crate::formulas::push_pull_period(&self.cfg, self.members.live())
    }

    pub(crate) fn push_pull_tick(&mut self) {
        let next = self.now + self.push_pull_period();
        let generation = self.push_pull_gen;
        self.fx
            .timers
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
        let to = self.members.at(i).addr();
        let id = self.rng_id();
        self.send_push_pull(to, id, true, false);
    }

    fn rng_id(&mut self) -> u32 {
        self.rng.random()
    }

    fn local_state(&self) -> Vec<PushState> {
        let mut states = Vec::with_capacity(self.members.len());
        states.extend(self.members.iter().map(|r| {
            let s = self.state_of(r);
            PushState {
                name: r.name.to_name(),
                addr: s.addr,
                incarnation: s.incarnation,
                status: s.status,
                tags: s.tags.clone(),
                ltime: s.ltime,
                accuser: s.accuser.cloned(),
            }
        }));
        states
    }

    /// What a push-pull says about the member `r`, borrowed from the table.
    fn state_of<'a>(&'a self, r: &'a MemberRec) -> wire::StateRef<'a> {
        let status = match r.public_status() {
            MemberStatus::Alive => WireStatus::Alive,
            MemberStatus::Suspect => WireStatus::Suspect,
            MemberStatus::Leaving => WireStatus::Leaving,
            MemberStatus::Failed => WireStatus::Dead,
            MemberStatus::Left => WireStatus::Left,
        };
        // Only a suspect state names its accuser (the decoder refuses any other).
        let accuser = match (status, r.suspicion()) {
            (WireStatus::Suspect, Some(s)) => s.accuser().filter(|a| **a != *r.name),
            _ => None,
        };
        wire::StateRef {
            name: wire::NameBytes(r.name.bytes()),
            addr: r.addr(),
            incarnation: r.incarnation,
            status,
            tags: self.members.tags(r),
            ltime: r.status_ltime,
            accuser,
        }
    }

    /// The frame of a push-pull carrying the whole table, encoded straight from the table (no
    /// `PushState` built per member), or `None` when the table does not fit in
    /// `max_stream_message` and must be trimmed (see [`Node::trim_push_pull`], whose size
    /// reckoning it shares). Byte for byte what encoding the `PushPull` message gives
    /// (tested).
    fn push_pull_frame(&self, id: u32, request: bool, join: bool) -> Option<Vec<u8>> {
        let events = self.event_ring.recent();
        let budget = self.push_pull_budget();
        let mut used: usize = events.iter().map(event_room).sum();
        let mut w = wire::PushPullWriter::new(
            &self.fx.header,
            id,
            request,
            join,
            self.addr,
            &self.me,
            self.members.len(),
        );
        for r in self.members.iter() {
            used += w.state(&self.state_of(r));
            if used > budget {
                return None;
            }
        }
        let clocks = (
            self.member_clock.time(),
            self.event_clock.time(),
            self.query_clock.time(),
        );
        Some(w.finish(clocks, &events))
    }

    pub(crate) fn send_push_pull(&mut self, to: SocketAddr, id: u32, request: bool, join: bool) {
        if let Some(frame) = self.push_pull_frame(id, request, join) {
            self.send_frame(to, frame);
            return;
        }
        let mut p = PushPull {
            id,
            request,
            join,
            reply_to: self.addr,
            sender: self.me.clone(),
            states: self.local_state(),
            member_ltime: self.member_clock.time(),
            event_ltime: self.event_clock.time(),
            query_ltime: self.query_clock.time(),
            events: self.event_ring.recent(),
        };
        self.trim_push_pull(&mut p);
        self.send_reliable(to, &Message::PushPull(Box::new(p)));
    }

    /// Room for member states and user events in a push-pull: a peer with the same
    /// configuration refuses a frame over `max_stream_message`, which would break joins
    /// through this node. The envelope (at most 257 bytes with a label), the clocks and ids
    /// take under 320 bytes.
    fn push_pull_budget(&self) -> usize {
        self.cfg.max_stream_message.saturating_sub(320)
    }

    /// Cut a push-pull whose table does not fit [`Node::push_pull_budget`] (what
    /// [`Node::push_pull_frame`] found): send this node, then live members, then tombstones,
    /// as many as fit, and the newest user events; count the trim in `push_pulls_trimmed`.
    fn trim_push_pull(&mut self, p: &mut PushPull) {
        let budget = self.push_pull_budget();
        let size = |x: &PushState| postcard::experimental::serialized_size(x).unwrap_or(usize::MAX);
        self.fx.stats.push_pulls_trimmed += 1;
        let rank = |s: &PushState| match s.status {
            _ if s.name == self.me => 0,
            WireStatus::Alive | WireStatus::Leaving => 1,
            WireStatus::Suspect => 2,
            WireStatus::Left => 3,
            WireStatus::Dead => 4,
        };
        p.states.sort_by_key(rank);
        let mut used = 0;
        let me = self.me.clone();
        p.states.retain(|s| {
            used += size(s);
            used <= budget || s.name == me
        });
        // Newest events first, in whatever room is left.
        p.events.reverse();
        p.events.retain(|e| {
            used += event_room(e);
            used <= budget
        });
        p.events.reverse();
    }

    pub(crate) fn on_push_pull(&mut self, p: PushPull) {
        if p.request {
            if self.run == RunState::Running {
                // Answer with our table as it was before merging theirs.
                self.send_push_pull(p.reply_to, p.id, false, false);
            }
            self.merge(p, true, false);
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
                let (rebroadcast, ignore_old) = (pj.had_peers, pj.ignore_old);
                self.merge(p, rebroadcast, ignore_old);
                self.maybe_finish_join(j);
            }
            None => self.merge(p, true, false),
        }
    }

    /// Merge a remote member table: alive as alive; suspect and dead as suspicion (a remote
    /// node's verdict is not a death certificate here), counted as an accusation by the
    /// original accuser a suspect state names, and as no confirmation at all when it names
    /// none or names this node (memberlist counts it as the receiver's own accusation, and
    /// counting it as the sender's would be no better: both fake independent confirmations);
    /// left as left. Each member's intent Lamport time is merged as a join or leave intent;
    /// the sender's clocks are witnessed and its recent user events replayed (not re-gossiped:
    /// the cluster already has them), or skipped when joining with `ignore_old`.
    fn merge(&mut self, p: PushPull, broadcast: bool, ignore_old: bool) {
        let PushPull {
            sender,
            states,
            member_ltime,
            event_ltime,
            query_ltime,
            events,
            ..
        } = p;
        self.member_clock.witness(member_ltime);
        self.query_clock.witness(query_ltime);
        if ignore_old {
            self.event_ring.min_time = self.event_ring.min_time.max(event_ltime);
            let newest = events.iter().map(|e| e.ltime).max().unwrap_or(0);
            self.event_ring.latest = self.event_ring.latest.max(newest);
        }
        self.event_clock.witness(event_ltime);
        for e in events {
            self.on_user_event(e, false, true);
        }
        let sender = &sender;
        let mut unknown = 0;
        let mut found = Prefetched::default();
        for chunk in states.chunks(64) {
            self.members
                .prefetch(chunk.iter().map(|s| Some(s.name.as_bytes())), &mut found);
            for (i, s) in chunk.iter().enumerate() {
                let near = found.near(i);
                unknown += usize::from(self.members.get_near(s.name.as_bytes(), near).is_none());
            }
        }
        let room = self.cfg.max_members.saturating_sub(self.members.len());
        self.members.reserve_index(unknown.min(room));
        for s in states {
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
                    self.apply_alive(a, broadcast);
                }
                WireStatus::Suspect | WireStatus::Dead => {
                    self.apply_pushed_suspicion(
                        s.name,
                        s.incarnation,
                        s.accuser,
                        sender,
                        broadcast,
                    );
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
            if s.ltime > 0 {
                if leaving {
                    self.on_leave_intent(intent, false);
                } else {
                    self.on_join_intent(intent);
                }
            }
        }
    }

    /// How long a view must stay unchanged to count as settled: about the time an update
    /// takes to reach the whole cluster by gossip. Each gossip round multiplies the informed
    /// members by about fanout + 1 (4 by default), so log4(n + 1) rounds, plus one.
    fn settle_window(&self) -> std::time::Duration {
        crate::formulas::settle_window(&self.cfg, self.members.live())
    }

    /// Digest-triggered repair. A peer whose view has settled (unchanged for a dissemination
    /// window) and differs from ours means gossip has missed something — and a member that
    /// missed an update entirely stays wrong until the next periodic push-pull, minutes away
    /// at scale — so exchange full state with that peer now, when either
    /// - our view has settled too: the difference will not heal by itself; or
    /// - the settled peer knows more live members than we do: we are the one missing
    ///   something, whether or not our own view is still moving;
    /// - the settled peer delivered a newer user event than we did: we missed one.
    ///
    /// At most once per settle window.
    pub(crate) fn compare_digest(&mut self, peer: SocketAddr, theirs: Digest) {
        if !theirs.stable || self.run != RunState::Running {
            return;
        }
        let mine = self.cx().view_digest();
        let window = self.settle_window();
        let due = self
            .last_repair
            .is_none_or(|t| self.now.saturating_since(t) >= window);
        let behind = theirs.live > mine.live || theirs.events > mine.events;
        let differ = mine.hash != theirs.hash || theirs.events > mine.events;
        if (mine.stable || behind) && differ && due {
            self.last_repair = Some(self.now);
            self.fx.stats.digest_repairs += 1;
            let id = self.rng_id();
            self.send_push_pull(peer, id, true, false);
        }
    }

    pub(crate) fn start_join(&mut self, seeds: Vec<SocketAddr>, ignore_old: bool) {
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
            ignore_old,
        };
        self.joins.insert(j, pj);
        self.fx.timers.schedule(
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
                self.fx
                    .timers
                    .schedule(at, TimerKind::PushPullTick { generation });
            }
        }
    }

    /// Graceful leave, Serf's way: phase 1 gossips a leave intent (others mark this node
    /// leaving); phase 2 gossips the departure itself (others mark it left); each phase ends
    /// when its message has been sent the retransmit limit or after `broadcast_timeout`.
    pub(crate) fn start_leave(&mut self) {
        self.run = RunState::Leaving;
        self.swim.stop_probing();
        self.announce_leave();
        if self.members.live() <= 1 {
            self.finish_leave();
            return;
        }
        self.leave_phase = 1;
        let at = self.now + self.cfg.broadcast_timeout;
        self.fx
            .timers
            .schedule(at, TimerKind::LeaveDeadline { phase: 1 });
    }

    /// Leave phase `phase` is over (sent out, or timed out).
    pub(crate) fn leave_deadline(&mut self, phase: u8) {
        if self.run != RunState::Leaving || self.leave_phase != phase {
            return;
        }
        if phase == 2 {
            self.finish_leave();
            return;
        }
        self.leave_phase = 2;
        let me = self.me.clone();
        let inc = self.members.get(&me).map_or(0, |r| r.incarnation);
        self.members.set_status(&me, MemberStatus::Left, self.now);
        let msg = Message::Dead(Accusation {
            incarnation: inc,
            name: me.clone(),
            from: me.clone(),
        });
        self.enqueue(me, &msg);
        let at = self.now + self.cfg.broadcast_timeout;
        self.fx
            .timers
            .schedule(at, TimerKind::LeaveDeadline { phase: 2 });
    }

    pub(crate) fn finish_leave(&mut self) {
        if self.run == RunState::Left {
            return;
        }
        let me = self.me.clone();
        self.members.set_status(&me, MemberStatus::Left, self.now);
        self.run = RunState::Left;
        self.fx.timers.clear();
        self.swim.stop();
        self.emit(Event::LeaveCompleted);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::event::Event;
    use crate::node::TransmitKind;
    use crate::testkit::*;
    use crate::wire::{Digest, Message, PushPull, PushState, WireStatus};

    fn state(name: &str, port: u16, status: WireStatus) -> PushState {
        PushState {
            name: name.into(),
            addr: addr(port),
            incarnation: 0,
            status,
            tags: Default::default(),
            ltime: 0,
            accuser: None,
        }
    }

    /// The push-pull frame built straight from the table is byte for byte the encoding of the
    /// `PushPull` message built state by state — for every kind of member: alive, suspect
    /// (with its accuser), failed, left, leaving, with tags, at an IPv6 address, with a long
    /// name — and with user events in the ring; and a table too large for
    /// `max_stream_message` is left to the trimming path.
    #[test]
    fn push_pull_from_the_table_encodes_as_the_message() {
        let mut a = node("a", 1);
        let v6: std::net::SocketAddr = "[fe80::7]:7946".parse().unwrap();
        let mut tagged = crate::wire::Alive {
            incarnation: 3,
            name: "tagged".into(),
            addr: addr(5),
            tags: Default::default(),
            ltime: 7,
        };
        tagged.tags.insert("role".into(), "db".into());
        let six = crate::wire::Alive {
            incarnation: 1,
            name: "a-member-with-a-rather-long-name".into(),
            addr: v6,
            tags: Default::default(),
            ltime: 0,
        };
        let mut msgs = vec![Message::Alive(tagged), Message::Alive(six)];
        msgs.extend(
            [("b", 2), ("c", 3), ("d", 4), ("e", 6), ("f", 7)].map(|(n, p)| alive(n, p, 1)),
        );
        deliver(&mut a, at(0), 2, &msgs);
        deliver(&mut a, at(10), 3, &[suspect("c", 1, "b")]);
        deliver(&mut a, at(20), 4, &[dead("d", 1, "b")]);
        deliver(&mut a, at(30), 6, &[dead("e", 1, "e")]);
        a.user_event(at(40), "deploy", &b"v2"[..], false).unwrap();
        let _ = (sent(&mut a), events(&mut a));
        let statuses: Vec<_> = a.local_state().iter().map(|s| s.status).collect();
        for want in [
            WireStatus::Alive,
            WireStatus::Suspect,
            WireStatus::Dead,
            WireStatus::Left,
        ] {
            assert!(statuses.contains(&want), "{want:?} in {statuses:?}");
        }
        for (id, request, join) in [(1, true, true), (9, false, false)] {
            let slow = PushPull {
                id,
                request,
                join,
                reply_to: a.addr,
                sender: a.me.clone(),
                states: a.local_state(),
                member_ltime: a.member_clock.time(),
                event_ltime: a.event_clock.time(),
                query_ltime: a.query_clock.time(),
                events: a.event_ring.recent(),
            };
            assert!(!slow.events.is_empty());
            let want = crate::wire::frame_message(&a.fx.header, &Message::PushPull(Box::new(slow)));
            assert_eq!(a.push_pull_frame(id, request, join), Some(want));
        }
        std::sync::Arc::make_mut(&mut a.cfg).max_stream_message = 400;
        assert_eq!(
            a.push_pull_frame(1, true, false),
            None,
            "too large: trimmed instead"
        );
        // The trimming path: counted, within the limit, this node first, then live members.
        a.send_push_pull(addr(2), 1, true, false);
        assert_eq!(a.fx.stats.push_pulls_trimmed, 1);
        let t = a.poll_transmit().expect("a push-pull frame");
        assert!(t.payload.len() <= 400, "{} bytes", t.payload.len());
        let Some(Message::PushPull(p)) = sent_message(&t.payload) else {
            panic!("not a push-pull");
        };
        let sent: Vec<_> = p.states.iter().map(|s| (&*s.name, s.status)).collect();
        assert_eq!(sent[0], ("a", WireStatus::Alive), "{sent:?}");
        assert!(sent.len() < statuses.len(), "{sent:?}");
        assert!(sent.iter().all(|s| s.1 == WireStatus::Alive), "{sent:?}");
    }

    fn sent_message(frame: &[u8]) -> Option<Message> {
        let body = &frame[crate::wire::FRAME_HEADER_LEN..];
        match crate::wire::open_envelope(body, None).ok()? {
            crate::wire::Envelope::Ours(rest) => crate::wire::decode_single(rest, &limits()).ok(),
            crate::wire::Envelope::OtherLabel => None,
        }
    }

    /// Node `a` (local preset) knowing b, c, d and x, all alive at incarnation 0: five live
    /// members, so a suspicion runs from 18 s down to 3 s with one independent confirmation.
    fn five() -> crate::Node {
        let mut a = node("a", 1);
        let msgs: Vec<Message> = [("b", 2), ("c", 3), ("d", 4), ("x", 9)]
            .iter()
            .map(|&(n, p)| alive(n, p, 0))
            .collect();
        deliver(&mut a, at(0), 2, &msgs);
        assert_eq!(a.alive_count(), 5);
        let _ = sent(&mut a);
        let _ = events(&mut a);
        a
    }

    /// Hand `a` a push-pull response from `sender` (port 3) carrying one state of x.
    /// The stream frame body (after the length prefix) of a push-pull from `sender` at
    /// `addr(port)`.
    fn push_pull_frame(
        id: u32,
        (request, join): (bool, bool),
        sender: &str,
        port: u16,
        states: Vec<PushState>,
    ) -> Vec<u8> {
        let msg = Message::PushPull(Box::new(PushPull {
            id,
            request,
            join,
            reply_to: addr(port),
            sender: sender.into(),
            states,
            member_ltime: 0,
            event_ltime: 0,
            query_ltime: 0,
            events: vec![],
        }));
        let frame = crate::wire::frame_message(&crate::wire::header(None), &msg);
        frame[4..].to_vec()
    }

    fn push_x(a: &mut crate::Node, now: u64, status: WireStatus, accuser: Option<&str>) {
        let mut x = state("x", 9, status);
        x.accuser = accuser.map(Into::into);
        let frame = push_pull_frame(77, (false, false), "c", 3, vec![x]);
        a.handle_stream(at(now), addr(3), &frame).unwrap();
    }

    /// (confirmations, deadline in ms) of x's suspicion.
    fn suspicion_of_x(a: &crate::Node) -> (u32, u64) {
        let s = a.members.get("x").unwrap().suspicion().unwrap();
        (s.confirmations(), s.deadline().as_micros() / 1000)
    }

    #[test]
    fn a_suspicion_relayed_by_push_pull_is_not_the_senders_confirmation() {
        // b suspects x at 1 s: the suspicion runs for the full 18 s.
        let mut a = five();
        deliver(&mut a, at(1_000), 2, &[suspect("x", 0, "b")]);
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        // c merely relays b's suspicion in its push-pull state, naming b: no confirmation.
        push_x(&mut a, 1_100, WireStatus::Suspect, Some("b"));
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        // Nor when the state names no accuser (the sender's word is not an accusation),
        // nor when it names this node (an echo of our own accusation), nor a dead state.
        push_x(&mut a, 1_200, WireStatus::Suspect, None);
        push_x(&mut a, 1_300, WireStatus::Suspect, Some("a"));
        push_x(&mut a, 1_400, WireStatus::Dead, None);
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        a.handle_timeout(at(4_500));
        assert_eq!(
            a.member("x").map(|m| m.status),
            Some(crate::MemberStatus::Suspect),
            "not failed at the 3 s minimum"
        );
        // A state naming another accuser (d) is an independent confirmation: the timeout
        // drops to its 3 s minimum, already past.
        push_x(&mut a, 4_600, WireStatus::Suspect, Some("d"));
        assert_eq!(suspicion_of_x(&a), (1, 4_000));
        a.handle_timeout(at(4_600));
        assert_eq!(
            a.member("x").map(|m| m.status),
            Some(crate::MemberStatus::Failed)
        );
    }

    #[test]
    fn a_suspicion_learned_by_push_pull_keeps_its_original_accuser() {
        let mut a = five();
        push_x(&mut a, 1_000, WireStatus::Suspect, Some("b"));
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        assert!(events(&mut a).iter().any(|e| matches!(e,
            Event::MemberSuspected { member, by } if &*member.name == "x" && &**by == "b")));
        // b's own suspect message is the same accusation, not a confirmation.
        deliver(&mut a, at(1_100), 2, &[suspect("x", 0, "b")]);
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        // Another accuser named by a push-pull state confirms, and is re-gossiped in its
        // own name.
        let _ = sent(&mut a);
        push_x(&mut a, 1_150, WireStatus::Suspect, Some("d"));
        assert_eq!(suspicion_of_x(&a), (1, 4_000));
        a.handle_timeout(at(1_160) + a.cfg.gossip_interval);
        let gossiped: Vec<Message> = sent(&mut a).into_iter().flat_map(|(_, _, m)| m).collect();
        assert!(
            gossiped
                .iter()
                .any(|m| matches!(m, Message::Suspect(s) if &*s.name == "x" && &*s.from == "d")),
            "{gossiped:?}"
        );
        // Our own table names b as the accuser.
        let frame = push_pull_frame(5, (true, false), "d", 4, vec![]);
        let _ = sent(&mut a);
        a.handle_stream(at(1_200), addr(4), &frame).unwrap();
        let out = sent(&mut a);
        let Some(Message::PushPull(p)) = out.iter().find_map(|(_, _, m)| m.first()) else {
            panic!("no push-pull answer: {out:?}")
        };
        let x = p.states.iter().find(|s| &*s.name == "x").unwrap();
        assert_eq!(
            (x.status, x.accuser.as_deref()),
            (WireStatus::Suspect, Some("b"))
        );
        assert!(p
            .states
            .iter()
            .all(|s| s.accuser.is_none() || s.status == WireStatus::Suspect));
    }

    #[test]
    fn a_dead_state_starts_a_suspicion_with_no_known_accuser() {
        let mut a = five();
        push_x(&mut a, 1_000, WireStatus::Dead, None);
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        // The suspect itself is told, so that it can refute; nobody else is (a gossiped
        // suspicion would count as the accusation of whoever it names).
        a.handle_timeout(at(1_000) + a.cfg.gossip_interval * 3);
        let out = sent(&mut a);
        let told = |m: &Message| matches!(m, Message::Suspect(s) if &*s.name == "x");
        assert!(out.iter().any(|(to, _, m)| *to == addr(9)
            && matches!(&m[0], Message::Suspect(s) if &*s.name == "x" && &*s.from == "a")));
        assert!(
            out.iter()
                .all(|(to, _, m)| *to == addr(9) || !m.iter().any(told)),
            "{out:?}"
        );
        // The first accuser heard of may be the original one: no confirmation yet.
        deliver(&mut a, at(1_100), 2, &[suspect("x", 0, "b")]);
        assert_eq!(suspicion_of_x(&a), (0, 19_000));
        // A second, different accuser is one.
        deliver(&mut a, at(1_200), 4, &[suspect("x", 0, "d")]);
        assert_eq!(suspicion_of_x(&a), (1, 4_000));
    }

    #[test]
    fn push_pull_period_stretches_past_32_members() {
        let mut a = node("a", 1);
        assert_eq!(a.push_pull_period(), Duration::from_secs(15));
        let msgs: Vec<Message> = (0..99)
            .map(|i| alive(&format!("m{i}"), 100 + i, 0))
            .collect();
        for chunk in msgs.chunks(20) {
            deliver(&mut a, at(1), 100, chunk);
        }
        assert_eq!(a.members.live(), 100);
        // ceil(log2(100) - 5) + 1 = 3
        assert_eq!(a.push_pull_period(), Duration::from_secs(45));
    }

    #[test]
    fn join_pulls_state_without_regossiping_it() {
        let mut a = node("a", 1);
        a.join(at(0), &[addr(2)]).unwrap();
        let out = sent(&mut a);
        let id = match &out[..] {
            [(to, TransmitKind::Reliable, m)] if *to == addr(2) => match &m[0] {
                Message::PushPull(p) if p.request && p.join => p.id,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let states = vec![
            state("b", 2, WireStatus::Alive),
            state("c", 3, WireStatus::Alive),
            state("d", 4, WireStatus::Dead),
        ];
        let frame = push_pull_frame(id, (false, false), "b", 2, states);
        a.handle_stream(at(5), addr(2), &frame).unwrap();
        let ev = events(&mut a);
        assert!(ev.contains(&Event::JoinCompleted {
            answered: 1,
            contacted: 1
        }));
        assert_eq!(a.alive_count(), 3);
        assert!(
            a.member("d").is_none(),
            "a remote verdict about an unknown member is not taken on trust"
        );
        assert!(
            !a.fx.queue.contains(&"b".into()) && !a.fx.queue.contains(&"c".into()),
            "pulled state is not re-gossiped"
        );
    }

    #[test]
    fn a_push_pull_request_is_answered_and_merged_with_regossip() {
        let mut a = node("a", 1);
        let states = vec![state("b", 2, WireStatus::Alive)];
        let frame = push_pull_frame(9, (true, true), "b", 2, states);
        a.handle_stream(at(1), addr(40000), &frame).unwrap();
        let out = sent(&mut a);
        assert!(matches!(&out[..], [(to, TransmitKind::Reliable, m)]
            if *to == addr(2) && matches!(&m[0], Message::PushPull(p) if !p.request && p.id == 9 && p.states.len() == 1)));
        assert!(
            a.fx.queue.contains(&"b".into()),
            "the newcomer is gossiped by its seed"
        );
    }

    #[test]
    fn unreachable_seeds_complete_the_join_with_zero() {
        let mut a = node("a", 1);
        assert_eq!(a.join(at(0), &[addr(1)]), Err(crate::ApiError::NoSeeds));
        a.join(at(0), &[addr(2), addr(3)]).unwrap();
        a.handle_send_failure(at(10), addr(2));
        assert!(events(&mut a).is_empty());
        a.handle_send_failure(at(20), addr(3));
        assert_eq!(
            events(&mut a),
            vec![Event::JoinCompleted {
                answered: 0,
                contacted: 2
            }]
        );
        // Without any failure report, the deadline (tcp_timeout) completes it.
        a.join(at(30), &[addr(4)]).unwrap();
        a.handle_timeout(at(30) + a.cfg.tcp_timeout);
        assert!(events(&mut a).contains(&Event::JoinCompleted {
            answered: 0,
            contacted: 1
        }));
    }

    #[test]
    fn leave_announces_then_goes_inert() {
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
        sent(&mut a);
        a.leave(at(1)).unwrap();
        assert_eq!(a.leave(at(1)), Err(crate::ApiError::NotRunning));
        let mut announced = 0;
        for step in 1..200 {
            a.handle_timeout(at(1 + step * 10));
            for (_, _, msgs) in sent(&mut a) {
                announced += msgs
                    .iter()
                    .filter(|m| matches!(m, Message::Dead(d) if d.name == "a" && d.from == "a"))
                    .count();
            }
        }
        assert!(announced >= 1);
        assert!(events(&mut a).contains(&Event::LeaveCompleted));
        assert!(a.has_left());
        assert_eq!(a.poll_timeout(), None);
        assert_eq!(
            a.handle_packet(at(3000), addr(2), &datagram(&[alive("c", 3, 0)])),
            Err(crate::InputError::NotRunning)
        );
    }

    #[test]
    fn a_settled_disagreeing_digest_triggers_one_repair() {
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
        sent(&mut a);
        // Settle, then find the probe of b.
        let mut seq = None;
        for step in 1..400 {
            a.handle_timeout(at(step * 10));
            for (_, _, msgs) in sent(&mut a) {
                for m in msgs {
                    if let Message::Ping { seq: s, .. } = m {
                        if a.now >= at(1000) {
                            seq = Some(s);
                        }
                    }
                }
            }
            if seq.is_some() {
                break;
            }
        }
        let seq = seq.expect("a probe after settling");
        let theirs = Digest {
            hash: [9, 9, 9, 9],
            live: 2,
            events: 1,
            stable: true,
        };
        let now = a.now;
        deliver(
            &mut a,
            now,
            2,
            &[Message::Ack {
                seq,
                digest: Some(theirs),
            }],
        );
        let out = sent(&mut a);
        assert!(out.iter().any(|(to, kind, m)| *to == addr(2)
            && *kind == TransmitKind::Reliable
            && matches!(&m[0], Message::PushPull(p) if p.request)));
        assert_eq!(a.stats().digest_repairs, 1);
        // An unsettled peer's digest is not acted on.
        let before = a.stats().digest_repairs;
        a.compare_digest(
            addr(2),
            Digest {
                hash: [1, 1, 1, 1],
                live: 50,
                events: 1,
                stable: false,
            },
        );
        assert_eq!(a.stats().digest_repairs, before);
    }
}
