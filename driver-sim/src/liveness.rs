//! The liveness phase: once the fault script is over, heal everything, then every live node's
//! view must converge — every live node sees every live node alive, crashed and departed
//! nodes failed, left or not at all — and every invariant must settle, within a bound
//! derived from the configuration ([`crate::invariant::liveness_bound`]).
//!
//! Like VOPR's, the phase can first leave part of the cluster cut off
//! ([`Sim::cut_off_and_converge`]): everything else heals, a minority stays partitioned
//! away, and the majority must converge on it as failed; then the partition heals too and
//! the whole cluster must converge as above — the minority rejoins.

use std::time::Duration;

use rookery_core::MemberStatus;

use crate::invariant::{liveness_bound, Violation};
use crate::net::RuleId;
use crate::sim::{view_ok, NodeState, Sim};

/// The name liveness failures are reported under.
pub const LIVENESS: &str = "liveness";

/// How the liveness phase runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// A stand-in for an agent's `retry_join`, on top of the core's own reconnect (Serf's,
    /// a random failed member now and then, plus seeds no member holds): every
    /// `reconnect_every`, each running node that sees failed members joins through all of
    /// them (the core tries one per interval at most; trying all keeps the bound to one
    /// interval), and a node alone retries joining through every other node
    /// ([`Sim::reconnect_round`]). `None` turns it off (the core's reconnect alone). Default
    /// 30 s (Serf's `reconnect_interval`).
    pub reconnect_every: Option<Duration>,
    /// The bound; default [`liveness_bound`] of the slowest node configuration, plus
    /// `reconnect_every`.
    pub bound: Option<Duration>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            reconnect_every: Some(Duration::from_secs(30)),
            bound: None,
        }
    }
}

impl Sim {
    /// The liveness bound for this cluster under `opts`.
    pub fn liveness_bound(&self, opts: &Liveness) -> Duration {
        if let Some(b) = opts.bound {
            return b;
        }
        let n = self.len();
        let worst = (0..n)
            .map(|i| liveness_bound(self.config(i), n))
            .max()
            .unwrap_or_default();
        worst + opts.reconnect_every.unwrap_or_default()
    }

    /// Run until `done` holds, for at most the liveness bound of `opts`, with the reconnect
    /// stand-in of `opts`. Returns whether it held, and how long the run took.
    fn run_until_done(&mut self, opts: &Liveness, done: impl Fn(&Sim) -> bool) -> (bool, Duration) {
        let bound = self.liveness_bound(opts);
        let start = self.now();
        let deadline = start + bound;
        let mut next_reconnect = opts.reconnect_every.map(|d| (start + d, d));
        let poll = Duration::from_millis(10);
        loop {
            if done(self) {
                return (true, self.now().saturating_since(start));
            }
            if self.now() >= deadline {
                return (false, bound);
            }
            let mut next = (self.now() + poll).min(deadline);
            if let Some((at, every)) = next_reconnect {
                if at <= next {
                    next = at;
                    self.run_until(next);
                    self.reconnect_round();
                    next_reconnect = Some((at + every, every));
                    continue;
                }
            }
            self.run_until(next);
        }
    }

    /// Heal everything ([`Sim::heal_all`]), then run until the views converge and the
    /// invariants settle. Returns how long that took, or a `liveness` violation naming the
    /// wrong views.
    pub fn heal_and_converge(&mut self, opts: &Liveness) -> Result<Duration, Violation> {
        self.heal_all();
        let (ok, took) = self.run_until_done(opts, |s| s.converged() && s.invariants_settled());
        if ok {
            return Ok(took);
        }
        let bound = took;
        let errors = self.view_errors();
        let sample: Vec<String> = errors
            .iter()
            .take(5)
            .map(|e| {
                format!(
                    "{} sees {} {} as {}",
                    self.name(e.observer),
                    if e.live { "live" } else { "gone" },
                    self.name(e.member),
                    e.seen.map_or("unknown".to_string(), |s| format!("{s:?}"))
                )
            })
            .collect();
        let detail = if errors.is_empty() {
            format!("views converged but invariants did not settle within {bound:?}")
        } else {
            format!(
                "views did not converge within {bound:?} after healing: {} wrong \
                 entries, e.g. {}",
                errors.len(),
                sample.join("; ")
            )
        };
        Err(Violation {
            invariant: LIVENESS,
            at: self.now(),
            node: errors.first().map(|e| e.observer),
            detail,
        })
    }

    /// The first half of a liveness phase that leaves `minority` cut off: heal everything
    /// else ([`Sim::heal_all`]), partition `minority` from the rest, and run (with the
    /// reconnect stand-in of `opts`, whose joins towards the minority fail) until every
    /// live node of the rest sees every live node of the rest alive and every node of
    /// `minority` (and every crashed or departed node) failed, left or not at all — within
    /// the liveness bound of `opts`. Returns the partition's rule (heal it, then run
    /// [`Sim::heal_and_converge`]: the minority must rejoin) and how long the majority took,
    /// or a `liveness` violation naming the wrong views.
    pub fn cut_off_and_converge(
        &mut self,
        opts: &Liveness,
        minority: &[usize],
    ) -> Result<(RuleId, Duration), Violation> {
        self.heal_all();
        let rest: Vec<usize> = (0..self.len()).filter(|i| !minority.contains(i)).collect();
        let rule = self.partition(&[minority, &rest]);
        let (ok, took) = self.run_until_done(opts, |s| s.majority_view_errors(minority).is_empty());
        if ok {
            return Ok((rule, took));
        }
        let errors = self.majority_view_errors(minority);
        let sample: Vec<String> = errors
            .iter()
            .take(5)
            .map(|&(o, m, seen)| {
                format!(
                    "{} sees {} as {}",
                    self.name(o),
                    self.name(m),
                    seen.map_or("unknown".to_string(), |s| format!("{s:?}"))
                )
            })
            .collect();
        Err(Violation {
            invariant: LIVENESS,
            at: self.now(),
            node: errors.first().map(|e| e.0),
            detail: format!(
                "the majority did not converge on the cut-off minority {minority:?} within \
                 {took:?}: {} wrong entries, e.g. {}",
                errors.len(),
                sample.join("; ")
            ),
        })
    }

    /// Wrong entries (observer, member, status seen) in the views of the live nodes outside
    /// `minority`: see [`Sim::cut_off_and_converge`].
    fn majority_view_errors(
        &self,
        minority: &[usize],
    ) -> Vec<(usize, usize, Option<MemberStatus>)> {
        let up = |i: usize| !minority.contains(&i) && self.is_live(i);
        let mut out = Vec::new();
        for o in (0..self.len()).filter(|&o| up(o)) {
            for m in 0..self.len() {
                let seen = self.node(o).member(self.name(m)).map(|x| x.status);
                if !view_ok(up(m), seen) {
                    out.push((o, m, seen));
                }
            }
        }
        out
    }

    /// One round of the reconnect stand-in: each running node that sees failed members
    /// joins through all of them; a running node that sees no other member alive retries
    /// joining through every other node (a stand-in for an agent's `retry_join` with the
    /// whole cluster as its seed list: a node whose join found nobody up stays alone
    /// otherwise).
    pub fn reconnect_round(&mut self) {
        for i in 0..self.len() {
            if self.node_state(i) != NodeState::Up {
                continue;
            }
            if self.node(i).alive_count() <= 1 {
                let others: Vec<usize> = (0..self.len()).filter(|&j| j != i).collect();
                if !others.is_empty() {
                    let _ = self.try_join(i, &others);
                }
                continue;
            }
            let failed: Vec<usize> = self
                .node(i)
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Failed)
                .filter_map(|m| self.index_of(&m.name))
                .collect();
            if !failed.is_empty() {
                let _ = self.try_join(i, &failed);
            }
        }
    }
}
