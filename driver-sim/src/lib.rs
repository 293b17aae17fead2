//! # rookery-sim
//!
//! A deterministic simulator for [`rookery_core`]: many nodes in one process, virtual time,
//! one seeded RNG for every fate (latency, loss, duplication, node seeds), and a priority
//! queue of deliveries, timer firings and scripted faults. The same seed and the same calls
//! give the same run, byte for byte: [`Sim::trace_hash`] folds every input and output of every
//! node into one number that proves it.
//!
//! Use it to test a system built on rookery the way rookery tests itself:
//!
//! - **Build** a cluster and its network with [`SimBuilder`]: latency distributions
//!   ([`Latency`], uniform or long-tailed), loss, duplication, reordering, the MTU, and the
//!   reliable channel ([`ReliableModel`]: never lost, or TCP under the same loss).
//! - **Break** it: [`Sim::partition`] (symmetric), [`Sim::cut`] (one-way),
//!   [`Sim::add_link_rule`] (this pair drops everything, that link adds 200 ms),
//!   [`Sim::isolate`]; [`Sim::crash`], [`Sim::restart`] (same name and address, fresh state,
//!   rejoins), [`Sim::pause`]/[`Sim::resume`] (a stopped process that wakes to a backlog),
//!   [`Sim::set_overload`] (input and timers handled late), [`Sim::set_clock_rate`] (clock
//!   drift); heal with [`Sim::heal`], [`Sim::heal_network`], [`Sim::heal_all`]. Faults can be
//!   scheduled as data ([`script::Step`], [`Sim::schedule_step`]).
//! - **Drive** it: [`Sim::run_for`], [`Sim::wait_for`] (run until a predicate holds, with a
//!   deadline), and API calls at chosen times — typed ([`Sim::join`], [`Sim::leave`],
//!   [`script::ApiCall`]) or any call at all through a closure over the node
//!   ([`Sim::with_node`] now, [`Sim::call_at`] later).
//! - **Observe** it: each node's view ([`Sim::node`], then `members()`), events
//!   ([`Sim::drain_events`]), convergence ([`Sim::converged`], [`Sim::view_errors`]), metrics
//!   ([`Sim::metrics_mut`]), and who knew what when ([`Knowledge`], drawn as an SVG).
//! - **Judge** it: named [invariants](invariant) checked as the run goes, and a liveness
//!   phase ([`Sim::heal_and_converge`]) after the faults.
//! - **Scale** it: [`Sim::set_threads`] (or [`SimBuilder::threads`]) spreads a big run over
//!   several threads and changes nothing in it — the trace hash is the same on any number of
//!   threads. No message arrives sooner than the network's latency floor, so the nodes'
//!   work within a window that short is independent; each window's shared effects (routing,
//!   random draws, hashing, events) are then applied in the sequential order. Windows wait
//!   while invariants or the tap are on or a node is overloaded. [`Sim::run_until_every`]
//!   runs until a test holds for every node and can use windows too (a predicate over the
//!   whole simulation, [`Sim::run_until_pred`], cannot); [`Sim::window_stats`] says where a
//!   parallel run's time went.
//!
//! A 50-node cluster split in two for 20 seconds, then healed:
//!
//! ```
//! use std::time::Duration;
//! use rookery_core::Config;
//! use rookery_sim::{Latency, Liveness, SimBuilder};
//!
//! let mut sim = SimBuilder::new(7)
//!     .nodes(50, Config::lan())
//!     .latency(Latency::long_tail(
//!         Duration::from_millis(1),   // at least 1 ms,
//!         Duration::from_millis(2),   // usually a few more,
//!         1.5,                        // with a Pareto tail
//!         Duration::from_millis(300), // up to 300 ms
//!     ))
//!     .build()?;
//! sim.form(Duration::from_secs(60))?; // every node sees all 50 alive
//!
//! let (left, right): (Vec<usize>, Vec<usize>) = (0..50).partition(|i| i % 2 == 0);
//! let split = sim.partition(&[&left, &right]);
//! // Run until node 0 has declared the other half failed (at most 60 s).
//! sim.wait_for(Duration::from_secs(60), |s| s.node(0).alive_count() == 25)?;
//! sim.run_for(Duration::from_secs(10));
//!
//! sim.heal(split);
//! let took = sim.heal_and_converge(&Liveness::default())?; // views converge in bound
//! sim.check()?; // and no invariant was violated on the way
//! println!("healed in {took:?}, trace {:016x}", sim.trace_hash());
//! # Ok::<(), rookery_sim::SimError>(())
//! ```
//!
//! The runner (`cargo run --release -p rookery-sim -- <scenario>`) is built on the same API;
//! see [`scenario`].

pub mod adversary;
mod builder;
mod clock;
pub mod invariant;
pub mod ledger;
mod liveness;
mod metrics;
mod net;
pub mod plot;
pub mod scenario;
pub mod script;
mod sim;
pub mod swarm;

pub use builder::SimBuilder;
pub use invariant::{Invariant, Violation};
pub use liveness::{Liveness, LIVENESS};
pub use metrics::Metrics;
pub use net::{Latency, LinkEffect, NetConfig, NetStats, ReliableModel, RuleId};
pub use plot::Knowledge;

/// The TCP model of the reliable channel ([`ReliableModel::Tcp`]): the timing rules
/// ([`tcp::tcp_transfer`]) and Linux's constants they use.
pub mod tcp {
    pub use crate::net::{
        tcp_transfer, Leg, TcpFate, TcpPath, DATA_RETRIES, DATA_RTO, RTO_MAX, SEGMENT_OVERHEAD,
        SYN_RTO,
    };
}
pub use script::{ApiCall, Step, TimedStep};
pub use sim::{
    answer_payload, entropy_for, node_addr, node_index, NodeState, Sim, SimError, TapEntry,
    ViewError, WindowStats, ANSWER_DELAY, DEFAULT_BACKLOG_LIMIT,
};

/// The workspace README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
