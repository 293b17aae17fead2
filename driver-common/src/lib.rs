//! # rookery-driver
//!
//! What every rookery driver shares, so that drivers only move bytes, time and calls:
//!
//! - [`Pump`]: the [`rookery_core::Node`] plus its clock, the [`Command`]s handles send, the
//!   callers waiting for `join`/`leave`/`shutdown` to complete, the answer channel of each
//!   query asked through a handle ([`QueryAnswer`], keyed by query id, bounded and never
//!   blocking the node), and the event sink (an [`rookery_core::EventQueue`] shared with the
//!   application's event stream, under the core's one overflow policy). Used by
//!   the async drivers and by the mio driver alike.
//! - [`bind_pair`]: one UDP socket and one TCP listener on the same port (port 0 allowed).
//! - [`guard`]: the TCP caps on a hostile network, written once for every driver — which
//!   inbound connection to admit, evict or refuse, which outbound one to evict, and the
//!   [`Refusal`] causes counted in [`DriverStats`] (the caps and their defaults are listed in
//!   [`Options`]).
//! - [`exchange`]: how a wire profile uses its TCP connections (the native profile's reused
//!   one-way connections; the HashiCorp profiles' one exchange per connection, answers written
//!   back on the connection that asked), written once for every driver.
//! - [`Options`], the typed errors [`StartError`], [`AgentError`] and [`TryRecvError`], and the
//!   counters [`AgentStats`] / [`DriverStats`].
//! - The application's side of every agent, written once: [`channels`] between the handles and
//!   the event loop, and the handle, event stream and query answers in two flavors with one
//!   shape — [`asynch`] (with the `async` feature) and [`blocking`].
//! - With the `async` feature, [`asynch`]: the whole async agent written once, generic over
//!   the small [`Runtime`] trait. `rookery-tokio` and `rookery-async-std` implement that trait
//!   for their runtime and re-export the agent; nothing else is runtime-specific.
//!
//! ## One API shape
//!
//! Every driver offers the same operations with the same names and the same types; the async
//! drivers (`rookery-tokio`, `rookery-async-std`) hand out the [`asynch`] flavor, the mio
//! driver the [`blocking`] flavor, whose methods take the same arguments and return the same
//! results, blocking the calling thread where the async flavor returns a future. Both flavors
//! are the same structs around the same channels, their methods generated from one definition
//! (so they cannot drift apart), and an async handle or stream becomes a blocking one with
//! `into_blocking` (for threads outside the runtime; the driver tests write each scenario once
//! against the blocking flavor and run it on every driver this way).
//!
//! | operation | async (tokio, async-std) | blocking (mio) |
//! |---|---|---|
//! | start | `Agent::start(Config, Identity, Options).await -> Result<(AgentHandle, EventStream), StartError>` | `Agent::start(Config, Identity, Options) -> Result<(AgentHandle, EventStream), StartError>` |
//! | join | `handle.join(&[SocketAddr]).await -> Result<usize, AgentError>` (and `join_with(seeds, ignore_old)`) | `handle.join(&[SocketAddr]) -> Result<usize, AgentError>` (and `join_with`) |
//! | join by name | `handle.join_hosts(&["host:port"]).await -> Result<usize, AgentError>` (every address a name resolves to) | the same, blocking |
//! | leave, set_tags, user_event, respond, remove_failed, forget_member | `….await -> Result<(), AgentError>` | `… -> Result<(), AgentError>` |
//! | send, try_send, send_acked | `handle.send(to, payload).await -> Result<Receipt, AgentError>` (waits for room; `try_send` refuses with `SendQueueFull`); `receipt.await -> Result<Delivered, AgentError>` ([`delivery`]) | the same, blocking; `receipt.wait()` |
//! | members, alive_members, member, local_member | `….await -> Result<Vec<Member>, AgentError>`, `Result<Option<Member>, AgentError>`, `Result<Member, AgentError>` | the same, blocking |
//! | watch_members | `handle.watch_members().await -> Result<MembersWatch, AgentError>`; `watch.changed().await -> Option<Vec<Member>>`, `try_changed()`, `current()`; a `Stream` | the same, blocking; an `Iterator` |
//! | broadcast | `handle.broadcast(payload).await -> Result<BroadcastReceipts, AgentError>` (each member with its receipt) | `handle.broadcast(payload) -> Result<BroadcastReceipts, AgentError>` |
//! | stats | `handle.stats().await -> Result<AgentStats, AgentError>` | `handle.stats() -> Result<AgentStats, AgentError>` |
//! | shutdown | `handle.shutdown(ShutdownMode).await` | `handle.shutdown(ShutdownMode)` (joins the loop thread) |
//! | query | `handle.query(name, payload, QueryParams).await -> Result<QueryAnswers, AgentError>` | `handle.query(name, payload, QueryParams) -> Result<QueryAnswers, AgentError>` |
//! | answers | `answers.recv().await -> Option<QueryAnswer>`, `try_recv() -> Result<QueryAnswer, TryRecvError>`, `collect_all().await`, `id()`; a `Stream` | `answers.recv() -> Option<QueryAnswer>`, `try_recv()`, `collect_all()`, `id()`; an `Iterator` |
//! | events | `events.recv().await -> Option<Event>`, `try_recv() -> Result<Event, TryRecvError>`; a `Stream` (bounded by `Options::event_capacity` under [`rookery_core::EventQueue`]'s policy: oldest direct messages first, membership events never, `Event::Lagged` in the stream) | `events.recv() -> Option<Event>`, `try_recv() -> Result<Event, TryRecvError>`; an `Iterator` (the same) |
//! | local_addr, name, is_stopped | `-> SocketAddr`, `-> &str`, `-> bool` (no waiting) | the same |
//!
//! Payloads are `impl Into<Bytes>`; core refusals are [`AgentError::Rejected`]; an agent that
//! stopped answers [`AgentError::Stopped`]. An agent that stops (shut down, left, or lost its
//! name) ends its event stream with `Event::Stopped { reason }`. Dropping every handle makes
//! the agent leave, then stop (an async agent only while its runtime runs).
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
//! let sink = Box::new(|_event| rookery_core::Overflow::default());
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

#[macro_use]
mod handle;
#[macro_use]
mod watch;
#[cfg(feature = "async")]
pub mod asynch;
mod bind;
pub mod blocking;
pub mod delivery;
mod error;
pub mod exchange;
pub mod guard;
pub mod keyring_file;
mod options;
mod pump;
#[cfg(feature = "async")]
mod runtime;
mod stream;

pub use bind::{advertised_addr, bind_pair, node_seed};
pub use delivery::{BroadcastReceipts, Delivered, OutFrame, Receipt};
pub use error::{AgentError, StartError, TryRecvError};
pub use guard::Refusal;
pub use handle::{channels, finish, CommandReceiver, HandleEnds, LoopEnds, RESOLVE_TIMEOUT};
pub use options::Options;
pub use pump::{
    AgentStats, AnswerSink, Command, Delivery, DriverCounters, DriverStats, EventSink, Pump,
    QueryAnswer, Reply, ShutdownMode,
};
#[cfg(feature = "async")]
pub use runtime::Runtime;
pub use watch::MembersFeed;
