//! # rookery-driver
//!
//! What every rookery driver shares, so that drivers only move bytes, time and calls:
//!
//! - [`Pump`]: the [`rookery_core::Node`] plus its clock, the [`Command`]s handles send, the
//!   callers waiting for `join`/`leave`/`shutdown` to complete, the answer channel of each
//!   query asked through a handle ([`QueryAnswer`], keyed by query id, bounded and never
//!   blocking the node), and the event sink. Used by
//!   the async drivers and by the mio driver alike.
//! - [`bind_pair`]: one UDP socket and one TCP listener on the same port (port 0 allowed).
//! - [`Options`], the typed errors [`StartError`] and [`AgentError`], and the counters
//!   [`AgentStats`] / [`DriverStats`].
//! - With the `async` feature, [`asynch`]: the whole async agent written once, generic over
//!   the small [`Runtime`] trait. `rookery-tokio` and `rookery-async-std` implement that trait
//!   for their runtime and re-export the agent; nothing else is runtime-specific.
//!
//! Applications use a driver crate (`rookery-tokio`, `rookery-async-std`, `rookery-mio`), not
//! this one directly. Driving a [`Pump`] by hand looks like this:
//!
//! ```
//! use std::sync::Arc;
//! use rookery_core::{Config, Identity};
//! use rookery_driver::{Command, DriverCounters, Pump, Reply};
//!
//! let identity = Identity::new("a", "127.0.0.1:7946".parse().unwrap());
//! let sink = Box::new(|_event| true);
//! let counters = Arc::new(DriverCounters::default());
//! let mut pump = Pump::new(Config::local(), identity, 7, sink, counters).unwrap();
//! let (tx, rx) = std::sync::mpsc::channel();
//! pump.command(Command::Members { reply: Reply::new(move |m| tx.send(m).unwrap()) });
//! assert_eq!(rx.recv().unwrap().len(), 1);
//! // A driver now sends every `pump.poll_transmit()` and sleeps until `pump.deadline()`.
//! while let Some(_transmit) = pump.poll_transmit() {}
//! assert!(pump.deadline().is_some());
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "async")]
pub mod asynch;
mod bind;
mod error;
mod options;
mod pump;
#[cfg(feature = "async")]
mod runtime;

pub use bind::{advertised_addr, bind_pair, node_seed};
pub use error::{AgentError, StartError};
pub use options::Options;
pub use pump::{
    AgentStats, AnswerSink, Command, Delivery, DriverCounters, DriverStats, EventSink, Pump,
    QueryAnswer, Reply, ShutdownMode,
};
#[cfg(feature = "async")]
pub use runtime::Runtime;
