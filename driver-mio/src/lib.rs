//! # rookery-mio
//!
//! The mio driver for [`rookery_core`], for programs without an async runtime: one thread runs
//! a `mio::Poll` loop over the UDP socket, the TCP listener and every TCP connection, with a
//! `mio::Waker` for commands from the handle. [`AgentHandle::shutdown`] joins the thread.
//!
//! It drives the same [`rookery_driver::Pump`] as the tokio and async-std drivers, with the
//! same wire traffic, so mio and async agents mix in one cluster, and offers the same API
//! shape: [`Agent::start`] returns an [`AgentHandle`] and an [`EventStream`], a query returns
//! [`QueryAnswers`], `stats` returns [`AgentStats`] — the very types of the async drivers'
//! `into_blocking` flavor ([`rookery_driver::blocking`]), whose methods are the async ones
//! with the same arguments and results, blocking the calling thread instead of returning a
//! future.
//!
//! It speaks every wire profile ([`rookery_core::WireProfile`]): the native one, and
//! HashiCorp's memberlist + Serf (`HashiCorp`) or memberlist alone (`Memberlist`), so a mio
//! agent joins clusters of `serf` agents and of Go programs embedding memberlist. Under the
//! HashiCorp profiles it uses TCP as memberlist does ([`rookery_driver::exchange`], the rule
//! the async drivers follow too): each reliable message or push-pull goes out on a fresh
//! connection that then carries the peer's answers back, and an answer to a peer that asked
//! on a connection is written back on that connection.
//!
//! ```no_run
//! use rookery_mio::{Agent, Config, Event, Identity, Options, QueryParams, ShutdownMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::new("node-c", "127.0.0.1:0".parse()?);
//! let (agent, mut events) = Agent::start(Config::lan(), identity, Options::default())?;
//! agent.join(&["127.0.0.1:7946".parse()?])?;
//! println!("members: {:?}", agent.members()?);
//! agent.user_event("deploy", "v42", false)?; // every member gets Event::User
//! agent.send("node-a", "hello")?.wait()?; // written to node-a, which gets Event::Message
//! let mut answers = agent.query("load", "", QueryParams::default())?;
//! while let Some(answer) = answers.recv() {
//!     println!("{answer:?}"); // acks and responses, then QueryAnswer::Done
//! }
//! while let Some(event) = events.recv() {
//!     match event {
//!         Event::Query(q) => agent.respond(&q.handle, "0.3")?,
//!         Event::MemberFailed(m) => {
//!             agent.remove_failed(&m.name, false)?;
//!             break;
//!         }
//!         other => println!("{other:?}"),
//!     }
//! }
//! agent.shutdown(ShutdownMode::Leave);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod event_loop;

use std::sync::Arc;

use mio::{Interest, Poll, Waker};

pub use rookery_core as core;
pub use rookery_core::{
    ApiError, Config, Event, Identity, IncomingQuery, Member, MemberStatus, QueryHandle, QueryId,
    QueryParams, Tags, UserEvent,
};
pub use rookery_driver::blocking::{AgentHandle, EventStream, QueryAnswers};
pub use rookery_driver::{
    AgentError, AgentStats, DriverStats, Options, QueryAnswer, ShutdownMode, StartError,
    TryRecvError,
};

use rookery_driver::exchange::StreamRules;
use rookery_driver::{
    advertised_addr, bind_pair, channels, node_seed, DriverCounters, LoopEnds, Pump,
};

use crate::event_loop::{EventLoop, LoopConfig, LISTENER, UDP, WAKER};

/// Starts mio agents.
#[derive(Clone, Copy, Debug)]
pub struct Agent;

impl Agent {
    /// Start an agent on its own thread: bind one UDP socket and one TCP listener on
    /// `identity.addr` (port 0 picks a free port; the node advertises the bound address, or
    /// [`Options::advertise`] with the bound port), create the node seeded from
    /// [`Options::seed`] or OS entropy, and run its event loop on a new thread. Returns the
    /// handle and the event stream (bounded by [`Options::event_capacity`] under the core's
    /// overflow policy, [`rookery_core::EventQueue`]).
    pub fn start(
        mut config: Config,
        mut identity: Identity,
        options: Options,
    ) -> Result<(AgentHandle, EventStream), StartError> {
        let (udp, listener) = bind_pair(identity.addr)?;
        let bound = udp.local_addr().map_err(StartError::Io)?;
        identity.addr = advertised_addr(bound, &options)?;
        let seed = node_seed(&options);
        let (ends, LoopEnds { sink, commands }) = channels(&options);
        let counters = Arc::new(DriverCounters::default());
        rookery_driver::keyring_file::apply_keyring_file(&mut config, &options)?;
        let keyring_file = options.keyring_file.clone();
        let cfg = LoopConfig {
            tcp_timeout: config.tcp_timeout,
            rules: StreamRules::new(config.wire, config.max_stream_message),
            options,
        };
        let mut pump = Pump::new(config, identity, seed, sink, counters)?;
        if let Some(path) = keyring_file {
            pump.set_keyring_file(path);
        }
        let me = pump.node().local_member();

        let poll = Poll::new().map_err(StartError::Io)?;
        let mut udp = mio::net::UdpSocket::from_std(udp);
        let mut listener = mio::net::TcpListener::from_std(listener);
        let registry = poll.registry();
        registry
            .register(&mut udp, UDP, Interest::READABLE | Interest::WRITABLE)
            .map_err(StartError::Io)?;
        registry
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(StartError::Io)?;
        let waker = Waker::new(registry, WAKER).map_err(StartError::Io)?;
        let event_loop = EventLoop::new(pump, poll, udp, listener, commands, cfg);
        let thread = std::thread::Builder::new()
            .name(format!("rookery-mio-{}", me.name))
            .spawn(move || event_loop.run())
            .map_err(StartError::Io)?;
        tracing::info!(name = %me.name, addr = %me.addr, "agent started");
        // The loop sleeps in `Poll::poll`: every queued command (and the last handle's drop)
        // wakes it.
        let wake = move || {
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "cannot wake the event loop");
            }
        };
        Ok(ends.blocking(&me, wake, thread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn handle_is_clone_send_sync() {
        assert_send_sync::<AgentHandle>();
    }
}
