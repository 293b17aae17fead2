//! The `cluster` target: a small fault script run through the simulator, with invariants.
//!
//! Input format ([`ClusterScript`]): seed (`u64`), cluster size byte (2 ..= 6 nodes), then
//! [`Fault`]s until the input ends (at most [`MAX_FAULTS`], and at most [`MAX_SCRIPT_TIME`] of
//! virtual time). The nodes (`node-i`, [`Config::local`]) first form a cluster through node 0.
//!
//! Checked:
//! - while the script runs, after every fault: every running node stays within its bounds
//!   (member table, broadcast queue, health score) and its own incarnation never decreases;
//! - then the network heals (no loss, no isolation) and, within [`DETECTION_BOUND`], every
//!   crashed node is failed (or left) in the view of every node still running and not
//!   leaving: failure detection survives whatever happened before;
//! - when the script only degraded the network (loss, latency, tag changes, joins through live
//!   nodes: no crash, isolation or leave), every running node sees every node alive within
//!   [`CONVERGENCE_BOUND`] of the heal: false verdicts are always refuted.
//!
//! The same script always gives the same [`rookery_sim::Sim::trace_hash`] (the replay test
//! runs each corpus file twice).

use std::time::Duration;

use rookery_core::{Call, Config, Input, MemberStatus, Tags, Timestamp};
use rookery_sim::{NetConfig, Sim};

use crate::script::{Reader, Writer};

/// Most faults run from one input.
pub const MAX_FAULTS: usize = 48;
/// Most virtual time the script itself may take.
pub const MAX_SCRIPT_TIME: Duration = Duration::from_secs(600);
/// Time allowed after the heal for every crashed node to be declared failed. With the local
/// profile and at most eight nodes: a full probe round at the worst health score (7 others ×
/// 1 s × 8), the longest suspicion (3 s × 6), and slack for a suspicion started just before.
pub const DETECTION_BOUND: Duration = Duration::from_secs(120);
/// Time allowed after the heal for a merely degraded cluster to see everyone alive again.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(120);
/// Most nodes (the initial ones plus [`Fault::AddNode`]).
pub const MAX_NODES: usize = 8;

/// One step of a fault script. Node indices are taken modulo the number of nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Run the simulation for this many milliseconds.
    Run(u16),
    /// Crash a node.
    Crash(u8),
    /// Cut a node off the network (`true`) or reconnect it.
    Isolate(u8, bool),
    /// A node leaves gracefully.
    Leave(u8),
    /// Node `.0` joins through node `.1`.
    Join(u8, u8),
    /// A node changes its tags (to `{"v": value}`).
    SetTags(u8, u8),
    /// Datagram loss rate in percent (at most 50).
    Loss(u8),
    /// Largest one-way latency in milliseconds (at least 1).
    Latency(u8),
    /// Start a new node that joins through this one.
    AddNode(u8),
}

impl Fault {
    /// Read one fault (tag byte, then fields).
    pub fn parse(r: &mut Reader<'_>) -> Fault {
        match r.u8() % 9 {
            0 => Fault::Run(r.u16()),
            1 => Fault::Crash(r.u8()),
            2 => Fault::Isolate(r.u8(), r.u8() & 1 == 1),
            3 => Fault::Leave(r.u8()),
            4 => Fault::Join(r.u8(), r.u8()),
            5 => Fault::SetTags(r.u8(), r.u8()),
            6 => Fault::Loss(r.u8()),
            7 => Fault::Latency(r.u8()),
            _ => Fault::AddNode(r.u8()),
        }
    }

    /// Write the fault as [`Fault::parse`] reads it.
    pub fn encode(&self, w: &mut Writer) {
        match *self {
            Fault::Run(ms) => w.u8(0).u16(ms),
            Fault::Crash(i) => w.u8(1).u8(i),
            Fault::Isolate(i, on) => w.u8(2).u8(i).u8(on as u8),
            Fault::Leave(i) => w.u8(3).u8(i),
            Fault::Join(i, j) => w.u8(4).u8(i).u8(j),
            Fault::SetTags(i, v) => w.u8(5).u8(i).u8(v),
            Fault::Loss(p) => w.u8(6).u8(p),
            Fault::Latency(ms) => w.u8(7).u8(ms),
            Fault::AddNode(j) => w.u8(8).u8(j),
        };
    }
}

/// A parsed `cluster` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterScript {
    /// Simulation seed.
    pub seed: u64,
    /// Initial cluster size (2 ..= 6).
    pub nodes: usize,
    /// The faults, in order.
    pub faults: Vec<Fault>,
}

impl ClusterScript {
    /// Parse an input; every byte string is a script.
    pub fn parse(data: &[u8]) -> ClusterScript {
        let mut r = Reader::new(data);
        let seed = r.u64();
        let nodes = 2 + r.u8() as usize % 5;
        let mut faults = Vec::new();
        while !r.is_empty() && faults.len() < MAX_FAULTS {
            faults.push(Fault::parse(&mut r));
        }
        ClusterScript {
            seed,
            nodes,
            faults,
        }
    }

    /// The input bytes of this script.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u64(self.seed).u8((self.nodes.clamp(2, 6) - 2) as u8);
        for f in &self.faults {
            f.encode(&mut w);
        }
        w.out
    }
}

fn name(i: usize) -> String {
    format!("node-{i}")
}

/// Per-node facts the checks need.
#[derive(Clone, Copy, Debug, Default)]
struct NodeFate {
    crashed: bool,
    left: bool,
    isolated: bool,
    self_inc: u32,
}

fn check_bounds(sim: &Sim, fates: &mut [NodeFate], cfg: &Config) {
    for (i, f) in fates.iter_mut().enumerate() {
        if f.crashed {
            continue;
        }
        let n = sim.node(i);
        assert!(n.num_members() <= cfg.max_members);
        assert!(
            n.num_members() <= sim.len(),
            "node {i} knows members that do not exist"
        );
        assert!(n.broadcast_queue_len() <= cfg.max_broadcast_queue);
        assert!(n.health_score() < cfg.awareness_max_multiplier);
        let inc = n.local_member().incarnation;
        assert!(
            !rookery_core::plausible::older(inc, f.self_inc),
            "node {i}: own incarnation went down"
        );
        f.self_inc = inc;
    }
}

/// Run the `cluster` target on one input; returns the simulation's trace hash.
pub fn run(data: &[u8]) -> u64 {
    run_script(&ClusterScript::parse(data))
}

/// Run a parsed script.
pub fn run_script(script: &ClusterScript) -> u64 {
    let cfg = Config::local();
    let mut sim = Sim::new(script.seed, NetConfig::default());
    let mut fates = vec![NodeFate::default(); script.nodes];
    for i in 0..script.nodes {
        sim.add_node(cfg.clone(), &name(i));
        if i > 0 {
            sim.join(i, &[0]);
        }
    }
    let n0 = script.nodes;
    let formed = sim.run_until_pred(Timestamp::from_secs(30), |sim, _| {
        sim.drain_events().for_each(drop);
        (0..n0).all(|i| sim.node(i).alive_count() == n0)
    });
    assert!(formed, "the initial cluster did not form");
    let start = sim.now();
    // Whether the script did anything beyond degrading the network.
    let mut disruptive = false;
    let mut net = NetConfig::default();
    for f in &script.faults {
        if sim.now().saturating_since(start) >= MAX_SCRIPT_TIME {
            break;
        }
        let len = sim.len();
        let pick = |i: u8| i as usize % len;
        let usable = |fates: &[NodeFate], j: usize| {
            let f = fates[j];
            !f.crashed && !f.left && !f.isolated
        };
        match *f {
            Fault::Run(ms) => sim.run_for(Duration::from_millis(u64::from(ms))),
            Fault::Crash(i) => {
                let i = pick(i);
                sim.crash(i);
                fates[i].crashed = true;
                disruptive = true;
            }
            Fault::Isolate(i, on) => {
                let i = pick(i);
                sim.isolate(i, on);
                fates[i].isolated = on;
                disruptive |= on;
            }
            Fault::Leave(i) => {
                let i = pick(i);
                if !fates[i].crashed {
                    sim.leave(i);
                    fates[i].left = true;
                    disruptive = true;
                }
            }
            Fault::Join(i, j) => {
                let (i, j) = (pick(i), pick(j));
                if !fates[i].crashed {
                    disruptive |= !usable(&fates, j) || !usable(&fates, i);
                    sim.join(i, &[j]);
                }
            }
            Fault::SetTags(i, v) => {
                let i = pick(i);
                if !fates[i].crashed {
                    let tags: Tags = [("v".to_string(), v.to_string())].into();
                    let call = Input::from(Call::SetTags(tags));
                    let _ = sim.with_node(i, |n, now| n.handle(now, call));
                }
            }
            Fault::Loss(p) => {
                net.loss = f64::from(p % 51) / 100.0;
                sim.set_net(net.clone());
            }
            Fault::Latency(ms) => {
                net.latency = rookery_sim::Latency::Uniform {
                    min: Duration::from_millis(1),
                    max: Duration::from_millis(u64::from(ms.max(1))),
                };
                sim.set_net(net.clone());
            }
            Fault::AddNode(j) => {
                if len < MAX_NODES {
                    let j = pick(j);
                    disruptive |= !usable(&fates, j);
                    let i = sim.add_node(cfg.clone(), &name(len));
                    sim.join(i, &[j]);
                    fates.push(NodeFate::default());
                }
            }
        }
        sim.drain_events().for_each(drop);
        check_bounds(&sim, &mut fates, &cfg);
    }
    // Heal, then check failure detection and (for merely degraded runs) convergence.
    sim.set_net(NetConfig::default());
    for (i, f) in fates.iter_mut().enumerate() {
        if f.isolated {
            sim.isolate(i, false);
            f.isolated = false;
        }
    }
    let healed = sim.now();
    let running: Vec<usize> = (0..sim.len())
        .filter(|&i| !fates[i].crashed && !sim.node(i).has_left())
        .collect();
    let crashed: Vec<usize> = (0..sim.len()).filter(|&i| fates[i].crashed).collect();
    // A node that is leaving (or has left) stops probing: its view no longer counts.
    let leaving = |sim: &Sim, r: usize| sim.node(r).local_member().status == MemberStatus::Left;
    let detected = |sim: &Sim| {
        running.iter().filter(|&&r| !leaving(sim, r)).all(|&r| {
            crashed.iter().all(|&c| {
                sim.node(r)
                    .member(&name(c))
                    .is_none_or(|m| matches!(m.status, MemberStatus::Failed | MemberStatus::Left))
            })
        })
    };
    let ok = sim.run_until_pred(healed + DETECTION_BOUND, |sim, _| {
        sim.drain_events().for_each(drop);
        detected(sim)
    });
    if !ok {
        let views: Vec<_> = running
            .iter()
            .filter(|&&r| !leaving(&sim, r))
            .map(|&r| (r, sim.node(r).members()))
            .collect();
        panic!("crashed nodes {crashed:?} not detected within the bound: {views:#?}");
    }
    check_bounds(&sim, &mut fates, &cfg);
    if !disruptive {
        let total = sim.len();
        let converged = sim.run_until_pred(healed + CONVERGENCE_BOUND, |sim, _| {
            sim.drain_events().for_each(drop);
            running.iter().all(|&r| sim.node(r).alive_count() == total)
        });
        if !converged {
            let views: Vec<_> = running
                .iter()
                .map(|&r| (r, sim.node(r).members()))
                .collect();
            panic!("degraded cluster did not converge after the heal: {views:#?}");
        }
    }
    sim.trace_hash()
}
