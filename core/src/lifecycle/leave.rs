//! Graceful leave, Serf's way: phase 1 gossips a leave intent (others mark this node leaving;
//! the router announces it); phase 2 gossips the departure itself (others mark it left); each
//! phase ends when its message has been sent the retransmit limit (checked after each gossip
//! tick) or after `broadcast_timeout`.

use super::{LifeTimer, Lifecycle, Outcome, RunState};
use crate::ctx::Cx;
use crate::identity::MemberStatus;
use crate::members::short_name::ShortName;
use crate::node::SerfKey;
use crate::timers::TimerKind;
use crate::wire::{Accusation, Message};

impl Lifecycle {
    /// The leave intent is announced: phase 1 runs until it is out or its deadline.
    pub(crate) fn leave_started(&mut self, cx: &mut Cx<'_>) {
        self.leave_phase = 1;
        tracing::debug!("leave: announcing the leave intent");
        let at = cx.now + cx.cfg.broadcast_timeout;
        let t = LifeTimer::LeaveDeadline { phase: 1 };
        cx.fx.timers.schedule(at, TimerKind::Lifecycle(t));
    }

    /// After a gossip tick: end the current phase if its message has gone out.
    pub(crate) fn leave_progress(&mut self, run: RunState, cx: &mut Cx<'_>) -> Outcome {
        if run != RunState::Leaving {
            return Outcome::Nothing;
        }
        let me = cx.me.clone();
        match self.leave_phase {
            1 if !cx.fx.serf_queue.contains(&SerfKey::Intent(me.clone())) => {
                self.leave_phase_over(1, run, cx)
            }
            2 if !cx.fx.queue.contains(&ShortName::new(&me)) => self.leave_phase_over(2, run, cx),
            _ => Outcome::Nothing,
        }
    }

    /// Leave phase `phase` is over (sent out, or timed out): start phase 2 — this node marks
    /// itself left and gossips its departure — or, after it, tell the router the node left.
    pub(super) fn leave_phase_over(
        &mut self,
        phase: u8,
        run: RunState,
        cx: &mut Cx<'_>,
    ) -> Outcome {
        if run != RunState::Leaving || self.leave_phase != phase {
            return Outcome::Nothing;
        }
        if phase == 2 {
            tracing::debug!("leave: departure gossiped; this node has left");
            return Outcome::Left;
        }
        tracing::debug!("leave: intent out; gossiping the departure");
        self.leave_phase = 2;
        let me = cx.me.clone();
        let inc = cx.members.get(&me).map_or(0, |r| r.incarnation);
        cx.members.set_status(&me, MemberStatus::Left, cx.now);
        let msg = Message::Dead(Accusation {
            incarnation: inc,
            name: me.clone(),
            from: me.clone(),
        });
        cx.enqueue(me, &msg);
        let at = cx.now + cx.cfg.broadcast_timeout;
        let t = LifeTimer::LeaveDeadline { phase: 2 };
        cx.fx.timers.schedule(at, TimerKind::Lifecycle(t));
        Outcome::Nothing
    }
}
