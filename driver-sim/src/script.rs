//! Fault scripts: faults and API calls as data, applied at chosen times. A script is what the
//! swarm tests generate and shrink, what a replay file holds, and what [`Sim::schedule_script`]
//! runs. Closures ([`Sim::call_at`]) inject anything else, at the price of not being data.
//!
//! In JSON a step is one flat object: `{"at_ms": 1500, "op": "crash", "node": 3}`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rookery_core::{Call, HandleError, Input, QueryParams, Timestamp};
use serde::{Deserialize, Serialize};

use crate::net::{LinkEffect, RuleId};
use crate::sim::{NodeState, Sim, SimError};

/// An API call on a node, as data: each becomes a [`rookery_core::Call`] handed to the node
/// through [`rookery_core::Node::handle`] (joins and leaves keep their own simulator calls,
/// [`Sim::try_join`] and [`Sim::try_leave`]). Names and members are node indices here, so a
/// script stays valid for any cluster it fits; payloads are text. Anything else goes through
/// [`Sim::with_node`] or [`Sim::call_at`].
///
/// The calls added for the whole API (`user_event`, `query`, `send`, `broadcast`,
/// `remove_failed`) are skipped on a node that is crashed or paused when they fall due: a dead
/// or frozen process makes no calls. A refusal by the core (the node has left, the member is
/// not failed...) is part of the run, not an error of the script.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum ApiCall {
    /// Join through the given nodes.
    Join {
        /// Seed node indices.
        seeds: Vec<usize>,
    },
    /// Leave gracefully.
    Leave,
    /// Replace the node's tags.
    SetTags {
        /// The new tags.
        tags: BTreeMap<String, String>,
    },
    /// Fire a user event ([`rookery_core::Node::user_event`]).
    UserEvent {
        /// Event name.
        name: String,
        /// Event payload.
        payload: String,
        /// Whether receivers may coalesce it.
        #[serde(default)]
        coalesce: bool,
    },
    /// Ask a query ([`rookery_core::Node::query`]). Every node the query selects answers
    /// once the simulator answers queries ([`Sim::set_answer_queries`]).
    Query {
        /// Query name.
        name: String,
        /// Query payload.
        payload: String,
        /// Only these nodes answer (empty: every node).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        filter: Vec<usize>,
        /// Ask the selected nodes to acknowledge at once.
        #[serde(default)]
        ack: bool,
        /// Responses also travel through this many random members.
        #[serde(default)]
        relay_factor: u8,
        /// The query's timeout in milliseconds (absent: the core's default).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Send a direct message ([`rookery_core::Node::send`]).
    Send {
        /// The receiving node.
        to: usize,
        /// The message.
        payload: String,
    },
    /// Send a direct message to every live member ([`rookery_core::Node::broadcast`]).
    Broadcast {
        /// The message.
        payload: String,
    },
    /// Force-remove a failed member ([`rookery_core::Node::remove_failed`]).
    RemoveFailed {
        /// The member's node.
        member: usize,
        /// Forget it at once instead of keeping a tombstone.
        #[serde(default)]
        prune: bool,
    },
}

impl ApiCall {
    /// The core's [`Call`] for this scripted call on `sim` (node indices become names and
    /// addresses); `None` for the calls the simulator makes itself (join, leave).
    pub fn to_call(&self, sim: &Sim) -> Option<Call> {
        let text = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        Some(match self {
            ApiCall::Join { .. } | ApiCall::Leave => return None,
            ApiCall::SetTags { tags } => Call::SetTags(tags.clone()),
            ApiCall::UserEvent {
                name,
                payload,
                coalesce,
            } => Call::UserEvent {
                name: name.clone(),
                payload: text(payload),
                coalesce: *coalesce,
            },
            ApiCall::Query {
                name,
                payload,
                filter,
                ack,
                relay_factor,
                timeout_ms,
            } => Call::Query {
                name: name.clone(),
                payload: text(payload),
                params: QueryParams {
                    filter_nodes: filter.iter().map(|&i| sim.name(i).to_string()).collect(),
                    request_ack: *ack,
                    relay_factor: *relay_factor,
                    timeout: timeout_ms.map(Duration::from_millis),
                    ..QueryParams::default()
                },
            },
            ApiCall::Send { to, payload } => Call::Send {
                to: sim.name(*to).to_string(),
                payload: text(payload),
                acked: false,
            },
            ApiCall::Broadcast { payload } => Call::Broadcast {
                payload: text(payload),
            },
            ApiCall::RemoveFailed { member, prune } => Call::RemoveFailed {
                name: sim.name(*member).to_string(),
                prune: *prune,
            },
        })
    }
}

/// One fault, heal or API call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// Crash a node ([`Sim::crash`]).
    Crash {
        /// The node.
        node: usize,
    },
    /// Restart a node with fresh state ([`Sim::restart`]), joining through `seeds`, or
    /// through every other node when `seeds` is absent (a static seed list naming the whole
    /// cluster, as deployments usually configure it).
    Restart {
        /// The node.
        node: usize,
        /// Nodes to join through; `None`: all the others.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seeds: Option<Vec<usize>>,
    },
    /// Restart several nodes at once with fresh state (issue 18's mass restart), each joining
    /// through every node not restarted (or, when all are, through none: a cluster formed
    /// again by later joins).
    MassRestart {
        /// The nodes.
        nodes: Vec<usize>,
    },
    /// Restart a node with fresh state under the same name at a new address
    /// ([`Sim::restart_moved`]: a container rescheduled with a new IP), joining through every
    /// other node.
    RestartMoved {
        /// The node.
        node: usize,
    },
    /// Pause a node ([`Sim::pause`]).
    Pause {
        /// The node.
        node: usize,
    },
    /// Resume a paused node ([`Sim::resume`]).
    Resume {
        /// The node.
        node: usize,
    },
    /// Overload a node: inputs and timers late by up to `max_extra_ms`; 0 ends it
    /// ([`Sim::set_overload`]).
    Overload {
        /// The node.
        node: usize,
        /// The longest extra delay, in milliseconds.
        max_extra_ms: u64,
    },
    /// Set a node's clock rate ([`Sim::set_clock_rate`]).
    ClockRate {
        /// The node.
        node: usize,
        /// Local time per unit of virtual time.
        rate: f64,
    },
    /// Cut a node off the network or reconnect it ([`Sim::isolate`]).
    Isolate {
        /// The node.
        node: usize,
        /// Cut off (true) or reconnected (false).
        on: bool,
    },
    /// Split the network into groups ([`Sim::partition`]).
    Partition {
        /// The groups.
        groups: Vec<Vec<usize>>,
    },
    /// A one-way partition ([`Sim::cut`]).
    Cut {
        /// Senders whose messages are dropped…
        from: Vec<usize>,
        /// …on their way to these nodes.
        to: Vec<usize>,
    },
    /// A per-link rule ([`Sim::add_link_rule`]).
    Link {
        /// Senders.
        from: Vec<usize>,
        /// Receivers.
        to: Vec<usize>,
        /// What happens to their messages.
        effect: LinkEffect,
    },
    /// Remove one partition, cut or rule; ids count from 1 in order of creation
    /// ([`Sim::heal`]).
    Heal {
        /// The rule.
        rule: RuleId,
    },
    /// Remove every partition, cut and rule; reconnect isolated nodes
    /// ([`Sim::heal_network`]).
    HealNetwork,
    /// Heal everything that can heal ([`Sim::heal_all`]).
    HealAll,
    /// Set the datagram loss rate ([`Sim::set_loss`]).
    Loss {
        /// 0.0 ..= 1.0.
        rate: f64,
    },
    /// Forged messages from outside the cluster, handed to the nodes `to` that are up
    /// ([`crate::adversary`]).
    Forge {
        /// The receiving nodes.
        to: Vec<usize>,
        /// What is forged.
        #[serde(flatten)]
        attack: crate::adversary::Attack,
    },
    /// An API call on a node.
    Api {
        /// The node.
        node: usize,
        /// The call.
        #[serde(flatten)]
        call: ApiCall,
    },
}

impl Step {
    /// Every node index the step mentions.
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Step::Crash { node }
            | Step::Pause { node }
            | Step::Resume { node }
            | Step::Overload { node, .. }
            | Step::ClockRate { node, .. }
            | Step::Isolate { node, .. }
            | Step::RestartMoved { node } => vec![*node],
            Step::MassRestart { nodes } => nodes.clone(),
            Step::Restart { node, seeds } => std::iter::once(*node)
                .chain(seeds.iter().flatten().copied())
                .collect(),
            Step::Partition { groups } => groups.iter().flatten().copied().collect(),
            Step::Cut { from, to } | Step::Link { from, to, .. } => {
                from.iter().chain(to).copied().collect()
            }
            Step::Heal { .. } | Step::HealNetwork | Step::HealAll | Step::Loss { .. } => vec![],
            Step::Forge { to, attack } => to.iter().copied().chain(attack.nodes()).collect(),
            Step::Api { node, call } => {
                let mut v = vec![*node];
                match call {
                    ApiCall::Join { seeds } => v.extend(seeds),
                    ApiCall::Query { filter, .. } => v.extend(filter),
                    ApiCall::Send { to, .. } => v.push(*to),
                    ApiCall::RemoveFailed { member, .. } => v.push(*member),
                    ApiCall::Leave
                    | ApiCall::SetTags { .. }
                    | ApiCall::UserEvent { .. }
                    | ApiCall::Broadcast { .. } => {}
                }
                v
            }
        }
    }
}

/// A step and when it happens, in milliseconds after the script starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimedStep {
    /// Milliseconds after the script's start.
    pub at_ms: u64,
    /// What happens.
    #[serde(flatten)]
    pub step: Step,
}

impl TimedStep {
    /// `step` at `at_ms`.
    pub fn new(at_ms: u64, step: Step) -> TimedStep {
        TimedStep { at_ms, step }
    }
}

/// Check that every step of `script` names existing nodes (of `nodes`).
pub fn validate(script: &[TimedStep], nodes: usize) -> Result<(), SimError> {
    for s in script {
        if let Some(&bad) = s.step.nodes().iter().find(|&&i| i >= nodes) {
            return Err(SimError::NoSuchNode {
                index: bad,
                len: nodes,
            });
        }
    }
    Ok(())
}

impl Sim {
    /// Apply one step now.
    pub fn apply(&mut self, step: &Step) -> Result<(), SimError> {
        validate(
            std::slice::from_ref(&TimedStep::new(0, step.clone())),
            self.len(),
        )?;
        match step {
            Step::Crash { node } => self.crash(*node),
            Step::Restart { node, seeds } => {
                let all: Vec<usize>;
                let seeds = match seeds {
                    Some(s) => s.as_slice(),
                    None => {
                        all = (0..self.len()).filter(|j| j != node).collect();
                        &all
                    }
                };
                self.restart(*node, seeds)?
            }
            Step::MassRestart { nodes } => {
                let seeds: Vec<usize> = (0..self.len()).filter(|j| !nodes.contains(j)).collect();
                for &i in nodes {
                    self.restart(i, &seeds)?;
                }
            }
            Step::RestartMoved { node } => {
                let seeds: Vec<usize> = (0..self.len()).filter(|j| j != node).collect();
                self.restart_moved(*node, &seeds)?;
            }
            Step::Pause { node } => self.pause(*node),
            Step::Resume { node } => self.resume(*node),
            Step::Overload { node, max_extra_ms } => self.set_overload(
                *node,
                (*max_extra_ms > 0).then(|| Duration::from_millis(*max_extra_ms)),
            ),
            Step::ClockRate { node, rate } => self.set_clock_rate(*node, *rate),
            Step::Isolate { node, on } => self.isolate(*node, *on),
            Step::Partition { groups } => {
                let gs: Vec<&[usize]> = groups.iter().map(Vec::as_slice).collect();
                self.partition(&gs);
            }
            Step::Cut { from, to } => {
                self.cut(from, to);
            }
            Step::Link { from, to, effect } => {
                self.add_link_rule(from, to, effect.clone());
            }
            Step::Heal { rule } => self.heal(*rule),
            Step::HealNetwork => self.heal_network(),
            Step::HealAll => self.heal_all(),
            Step::Loss { rate } => self.set_loss(*rate),
            Step::Forge { to, attack } => {
                let inputs = attack.inputs(self);
                for &i in to {
                    if self.node_state(i) != crate::sim::NodeState::Up {
                        continue;
                    }
                    for input in &inputs {
                        let input = input.clone();
                        // Refusals are the point: they are counted in the node's stats.
                        let _ = self.with_node(i, |n, now| n.handle(now, input));
                    }
                }
            }
            Step::Api { node, call } => match call {
                ApiCall::Join { seeds } => self.try_join(*node, seeds)?,
                ApiCall::Leave => self.try_leave(*node)?,
                ApiCall::SetTags { tags } => {
                    let tags = tags.clone();
                    let i = *node;
                    self.with_node(i, |n, now| n.set_tags(now, tags))
                        .map_err(|error| SimError::Api { node: i, error })?;
                }
                other => {
                    let i = *node;
                    if matches!(self.node_state(i), NodeState::Crashed | NodeState::Paused) {
                        return Ok(());
                    }
                    let call = other.to_call(self).expect("a call of the core's");
                    // A force-remove is in the ledger before its verdicts are judged (they
                    // come out of the call itself); a refused one is taken out again.
                    let removal = match other {
                        ApiCall::RemoveFailed { member, .. } => Some(*member),
                        _ => None,
                    };
                    if let Some(m) = removal {
                        let now = self.now();
                        self.ledger.record_removal(m, now);
                    }
                    let r = self.with_node(i, |n, now| n.handle(now, Input::from(call.clone())));
                    if removal.is_some() && r.is_err() {
                        self.ledger.forget_last_removal();
                    }
                    self.observe_call(i, &call, &r);
                    return match r {
                        Ok(_) => Ok(()),
                        Err(HandleError::Api(error)) => Err(SimError::Api { node: i, error }),
                        Err(HandleError::Input(e)) => Err(SimError::Script(e.to_string())),
                        Err(e) => Err(SimError::Script(e.to_string())),
                    };
                }
            },
        }
        Ok(())
    }

    /// Schedule every step of `script` at `start` + its `at_ms`.
    pub fn schedule_script(
        &mut self,
        start: Timestamp,
        script: &[TimedStep],
    ) -> Result<(), SimError> {
        validate(script, self.len())?;
        for s in script {
            self.schedule_step(start + Duration::from_millis(s.at_ms), s.step.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_flat_json() {
        let script = vec![
            TimedStep::new(1500, Step::Crash { node: 3 }),
            TimedStep::new(
                2000,
                Step::Partition {
                    groups: vec![vec![0, 1], vec![2, 3]],
                },
            ),
            TimedStep::new(
                2500,
                Step::Api {
                    node: 1,
                    call: ApiCall::Join { seeds: vec![0] },
                },
            ),
            TimedStep::new(3000, Step::HealNetwork),
        ];
        let s = serde_json::to_string(&script).unwrap();
        assert!(s.contains(r#"{"at_ms":1500,"op":"crash","node":3}"#), "{s}");
        assert!(
            s.contains(r#""op":"api","node":1,"call":"join","seeds":[0]"#),
            "{s}"
        );
        let back: Vec<TimedStep> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, script);
        let calls = [
            r#"{"at_ms":1,"op":"api","node":0,"call":"user_event","name":"e","payload":"p","coalesce":false}"#,
            r#"{"at_ms":2,"op":"api","node":0,"call":"query","name":"q","payload":"p","filter":[1],"ack":true,"relay_factor":1,"timeout_ms":3000}"#,
            r#"{"at_ms":3,"op":"api","node":0,"call":"send","to":2,"payload":"p"}"#,
            r#"{"at_ms":4,"op":"api","node":0,"call":"broadcast","payload":"p"}"#,
            r#"{"at_ms":5,"op":"api","node":0,"call":"remove_failed","member":3,"prune":true}"#,
        ];
        for c in calls {
            let step: TimedStep = serde_json::from_str(c).unwrap();
            assert_eq!(serde_json::to_string(&step).unwrap(), c);
        }
        let short: TimedStep = serde_json::from_str(
            r#"{"at_ms":0,"op":"api","node":0,"call":"query","name":"q","payload":"p"}"#,
        )
        .unwrap();
        assert!(matches!(
            short.step,
            Step::Api {
                call: ApiCall::Query {
                    ack: false,
                    relay_factor: 0,
                    timeout_ms: None,
                    ..
                },
                ..
            }
        ));
        let send: TimedStep = serde_json::from_str(calls[2]).unwrap();
        assert_eq!(send.step.nodes(), vec![0, 2]);
        assert!(validate(&[send], 2).is_err());
        assert!(validate(&script, 4).is_ok());
        assert_eq!(
            validate(&script, 3),
            Err(SimError::NoSuchNode { index: 3, len: 3 })
        );
    }
}
