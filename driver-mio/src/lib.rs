//! # rookery-mio
//!
//! The mio driver for [`rookery_core`], for programs without an async runtime: one thread runs
//! a `mio::Poll` loop over the UDP socket, the TCP listener and every TCP connection, with a
//! `mio::Waker` for commands from the handle. The handle's operations block until done; events
//! arrive on a [`std::sync::mpsc::Receiver`]; [`AgentHandle::shutdown`] joins the thread.
//!
//! It drives the same [`rookery_driver::Pump`] as the tokio and async-std drivers, with the
//! same operation names and the same wire traffic, so mio and async agents mix in one cluster.
//!
//! ```no_run
//! use rookery_mio::{Agent, Config, Event, Identity, Options, QueryParams, ShutdownMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::new("node-c", "127.0.0.1:0".parse()?);
//! let (agent, events) = Agent::spawn(Config::lan(), identity, Options::default())?;
//! agent.join(&["127.0.0.1:7946".parse()?])?;
//! println!("members: {:?}", agent.members()?);
//! agent.user_event("deploy", "v42", false)?; // every member gets Event::User
//! agent.send("node-a", "hello")?; // node-a gets Event::Message
//! let answers = agent.query("load", "", QueryParams::default())?;
//! for answer in answers.iter() {
//!     println!("{answer:?}"); // acks and responses, then QueryAnswer::Done
//! }
//! while let Ok(event) = events.recv_timeout(std::time::Duration::from_secs(5)) {
//!     match event {
//!         Event::Query(q) => agent.respond(&q.handle, "0.3")?,
//!         Event::MemberFailed(m) => agent.remove_failed(&m.name, false)?,
//!         other => println!("{other:?}"),
//!     }
//! }
//! agent.shutdown(ShutdownMode::Leave);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod event_loop;

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::{Interest, Poll, Waker};

pub use rookery_core as core;
pub use rookery_core::{
    ApiError, Config, Event, Identity, IncomingQuery, Member, MemberStatus, QueryHandle, QueryId,
    QueryParams, Tags, UserEvent,
};
pub use rookery_driver::{
    AgentError, AgentStats, DriverStats, Options, QueryAnswer, ShutdownMode, StartError,
};

use bytes::Bytes;
use rookery_driver::{
    advertised_addr, bind_pair, node_seed, AgentStats as Stats, AnswerSink, Command, Delivery,
    DriverCounters, EventSink, Pump, Reply,
};

use crate::event_loop::{EventLoop, LoopConfig, LISTENER, UDP, WAKER};

/// Starts mio agents.
#[derive(Clone, Copy, Debug)]
pub struct Agent;

impl Agent {
    /// Start an agent on its own thread: bind one UDP socket and one TCP listener on
    /// `identity.addr` (port 0 picks a free port; the node advertises the bound address, or
    /// [`Options::advertise`] with the bound port) and create the node seeded from
    /// [`Options::seed`] or OS entropy. Returns the handle and the event receiver (bounded by
    /// [`Options::event_capacity`]; events that do not fit are dropped and counted).
    pub fn spawn(
        config: Config,
        mut identity: Identity,
        options: Options,
    ) -> Result<(AgentHandle, Receiver<Event>), StartError> {
        let (udp, listener) = bind_pair(identity.addr)?;
        let bound = udp.local_addr().map_err(StartError::Io)?;
        identity.addr = advertised_addr(bound, &options)?;
        let seed = node_seed(&options);
        let (ev_tx, ev_rx) = mpsc::sync_channel(options.event_capacity.max(1));
        let sink: EventSink = Box::new(move |e| ev_tx.try_send(e).is_ok());
        let counters = Arc::new(DriverCounters::default());
        let query_capacity = options.query_capacity.max(1);
        let cfg = LoopConfig {
            tcp_timeout: config.tcp_timeout,
            max_stream: config.max_stream_message,
            options,
        };
        let pump = Pump::new(config, identity, seed, sink, counters)?;
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
        let waker = Arc::new(Waker::new(registry, WAKER).map_err(StartError::Io)?);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let event_loop = EventLoop::new(pump, poll, udp, listener, cmd_rx, cfg);
        let thread = std::thread::Builder::new()
            .name(format!("rookery-mio-{}", me.name))
            .spawn(move || event_loop.run())
            .map_err(StartError::Io)?;
        tracing::info!(name = %me.name, addr = %me.addr, "agent started");
        let inner = Inner {
            cmds: Some(cmd_tx),
            waker,
            addr: me.addr,
            name: Arc::from(&*me.name),
            query_capacity,
            thread: Mutex::new(Some(thread)),
        };
        Ok((
            AgentHandle {
                inner: Arc::new(inner),
            },
            ev_rx,
        ))
    }
}

#[derive(Debug)]
struct Inner {
    /// `Some` until the last handle is dropped.
    cmds: Option<Sender<Command>>,
    waker: Arc<Waker>,
    addr: SocketAddr,
    name: Arc<str>,
    query_capacity: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the command channel first, then wake the loop so that it sees every handle is
        // gone and stops.
        self.cmds = None;
        let _ = self.waker.wake();
    }
}

/// A handle on a running mio agent: cheap to clone, `Send + Sync`. Every operation blocks the
/// calling thread until the event loop has carried it out. When every handle is dropped the
/// agent stops (without leaving; the thread is then detached).
#[derive(Clone, Debug)]
pub struct AgentHandle {
    inner: Arc<Inner>,
}

impl AgentHandle {
    /// The address this agent is reached at (UDP and TCP, the same port).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// This agent's member name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, AgentError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let cmd = make(Reply::new(move |v| {
            let _ = tx.send(v);
        }));
        let cmds = self.inner.cmds.as_ref().ok_or(AgentError::Stopped)?;
        cmds.send(cmd).map_err(|_| AgentError::Stopped)?;
        self.inner.waker.wake().map_err(|_| AgentError::Stopped)?;
        rx.recv().map_err(|_| AgentError::Stopped)
    }

    /// Join a cluster through `seeds` (push-pull with each); returns how many answered, or
    /// [`AgentError::NobodyReached`] when none did (after at most `tcp_timeout`).
    pub fn join(&self, seeds: &[SocketAddr]) -> Result<usize, AgentError> {
        self.join_with(seeds, false)
    }

    /// [`AgentHandle::join`], choosing whether to replay the cluster's recent user events
    /// (`ignore_old` false, as `join` does) or to skip every user event older than the join.
    pub fn join_with(&self, seeds: &[SocketAddr], ignore_old: bool) -> Result<usize, AgentError> {
        let seeds = seeds.to_vec();
        self.call(|reply| Command::Join {
            seeds,
            ignore_old,
            reply,
        })?
    }

    /// Leave the cluster gracefully; returns once the departure has been gossiped (or
    /// `tcp_timeout` passed). The agent keeps running, inert, until [`AgentHandle::shutdown`].
    pub fn leave(&self) -> Result<(), AgentError> {
        self.call(|reply| Command::Leave { reply })?
    }

    /// Stop the agent: leave first if `mode` says so, then close every connection and socket
    /// and join the event-loop thread; returns when that is done (at once if it had already
    /// stopped).
    pub fn shutdown(&self, mode: ShutdownMode) {
        let _ = self.call(|reply| Command::Shutdown { mode, reply });
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Every member this agent knows, itself included, failed and left members included.
    pub fn members(&self) -> Result<Vec<Member>, AgentError> {
        self.call(|reply| Command::Members { reply })
    }

    /// This agent as the cluster sees it.
    pub fn local_member(&self) -> Result<Member, AgentError> {
        self.call(|reply| Command::LocalMember { reply })
    }

    /// Replace this agent's tags (announced with a new incarnation).
    pub fn set_tags(&self, tags: Tags) -> Result<(), AgentError> {
        self.call(|reply| Command::SetTags { tags, reply })?
    }

    /// Core and driver counters.
    pub fn stats(&self) -> Result<Stats, AgentError> {
        self.call(|reply| Command::Stats { reply })
    }

    /// Send a user event to every member: each (this one included) gets
    /// [`Event::User`] once. With `coalesce`, receivers may keep only the latest event of
    /// this name.
    pub fn user_event(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
        coalesce: bool,
    ) -> Result<(), AgentError> {
        let (name, payload) = (name.to_string(), payload.into());
        self.call(|reply| Command::UserEvent {
            name,
            payload,
            coalesce,
            reply,
        })?
    }

    /// Ask the cluster: members that `params` selects get [`Event::Query`] and answer with
    /// [`AgentHandle::respond`]. Returns a receiver of this query's acks and responses,
    /// ending with [`QueryAnswer::Done`] after which it disconnects (bounded by
    /// [`Options::query_capacity`]; dropping it early is fine). The answers also arrive as
    /// events.
    pub fn query(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
        params: QueryParams,
    ) -> Result<Receiver<QueryAnswer>, AgentError> {
        let (name, payload) = (name.to_string(), payload.into());
        let (tx, rx) = mpsc::sync_channel(self.inner.query_capacity);
        let answers = AnswerSink::new(move |a| match tx.try_send(a) {
            Ok(()) => Delivery::Delivered,
            Err(mpsc::TrySendError::Full(_)) => Delivery::Full,
            Err(mpsc::TrySendError::Disconnected(_)) => Delivery::Closed,
        });
        self.call(|reply| Command::Query {
            name,
            payload,
            params,
            answers,
            reply,
        })??;
        Ok(rx)
    }

    /// Answer a query this agent received as [`Event::Query`] (once per query, before its
    /// deadline).
    pub fn respond(
        &self,
        handle: &QueryHandle,
        payload: impl Into<Bytes>,
    ) -> Result<(), AgentError> {
        let (handle, payload) = (handle.clone(), payload.into());
        self.call(|reply| Command::Respond {
            handle,
            payload,
            reply,
        })?
    }

    /// Send a direct message to the member named `to` (reliable channel); it arrives as
    /// [`Event::Message`]. A channel that fails later is reported as [`Event::SendFailed`].
    pub fn send(&self, to: &str, payload: impl Into<Bytes>) -> Result<(), AgentError> {
        let (to, payload) = (to.to_string(), payload.into());
        self.call(|reply| Command::Send { to, payload, reply })?
    }

    /// Send a direct message to every other live member; returns how many it went to.
    pub fn broadcast(&self, payload: impl Into<Bytes>) -> Result<usize, AgentError> {
        let payload = payload.into();
        self.call(|reply| Command::Broadcast { payload, reply })?
    }

    /// Turn the failed member `name` into a left one on every member (or, with `prune`,
    /// forget it at once).
    pub fn remove_failed(&self, name: &str, prune: bool) -> Result<(), AgentError> {
        let name = name.to_string();
        self.call(|reply| Command::RemoveFailed { name, prune, reply })?
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
