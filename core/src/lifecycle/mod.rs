//! The node's life in the cluster, as one part that owns its state: joining through seeds
//! (`join`: push-pull requests to each seed, completion when all answered or failed, or at
//! `tcp_timeout`) and the graceful leave's phases (`leave`: a leave intent, then the departure
//! itself, each until it is sent out or `broadcast_timeout` passes).
//!
//! The run state itself ([`RunState`]) is the router's: this part tells it, as outcomes, when
//! a join completed and when the node is done leaving. It owns its timers ([`LifeTimer`]) and
//! their staleness rule ([`Lifecycle::on_timer`]).

mod join;
mod leave;

use std::collections::BTreeMap;

use crate::ctx::Cx;

pub(crate) use join::JoinDone;
use join::PendingJoin;

/// Whether the node takes part in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Announcing its departure until the announcement is out or the deadline passes.
    Leaving,
    /// Gone: ignores every input.
    Left,
}

/// The part's state.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// Joins waiting for their seeds, by number.
    joins: BTreeMap<u32, PendingJoin>,
    next_join: u32,
    /// Leaving: 1 while the leave intent goes out, 2 while the SWIM departure goes out.
    leave_phase: u8,
}

/// The part's timers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LifeTimer {
    /// Join number `join` has waited long enough for its seeds.
    JoinDeadline { join: u32 },
    /// Leave phase `phase` has had `broadcast_timeout` to go out.
    LeaveDeadline { phase: u8 },
}

/// What the router must do after a call into the lifecycle part.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing more.
    Nothing,
    /// A join completed: report it (and re-arm push-pull when someone answered).
    Joined(JoinDone),
    /// The leave is over: the node goes inert.
    Left,
}

impl Lifecycle {
    /// A timer fired; one for a join already completed or a leave phase already over does
    /// nothing.
    pub(crate) fn on_timer(&mut self, t: LifeTimer, run: RunState, cx: &mut Cx<'_>) -> Outcome {
        match t {
            LifeTimer::JoinDeadline { join } => match self.join_over(join) {
                Some(done) => Outcome::Joined(done),
                None => Outcome::Nothing,
            },
            LifeTimer::LeaveDeadline { phase } => self.leave_phase_over(phase, run, cx),
        }
    }
}
