//! # rookery-tokio
//!
//! The tokio driver for [`rookery_core`]: one UDP socket and one TCP listener on the same port,
//! one task owning the node with a single timer re-armed from the core's next deadline, TCP
//! for reliable messages (connect and write timeouts, connection reuse with idle close,
//! failed sends reported to the core), and a bounded event stream.
//!
//! The agent itself is written once in [`rookery_driver::asynch`], generic over a small
//! [`rookery_driver::Runtime`] trait; this crate implements that trait for tokio ([`Tokio`])
//! and re-exports the agent. `rookery-async-std` does the same for async-std, and
//! `rookery-mio` drives the same [`rookery_driver::Pump`] from a mio event loop. All three
//! offer one API shape (`Agent::start`, [`AgentHandle`], [`EventStream`], [`QueryAnswers`],
//! [`AgentStats`]); mio's is the [`blocking`] flavor, which every handle and stream here also
//! becomes with `into_blocking`, for threads outside the runtime.
//!
//! ```no_run
//! use rookery_tokio::{Agent, Config, Event, Identity, Options, QueryParams, ShutdownMode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::new("node-a", "127.0.0.1:0".parse()?);
//! let (agent, mut events) = Agent::start(Config::lan(), identity, Options::default()).await?;
//! println!("listening on {}", agent.local_addr());
//! let answered = agent.join(&["127.0.0.1:7946".parse()?]).await?;
//! println!("{answered} seed(s) answered; members: {:?}", agent.members().await?);
//! agent.user_event("deploy", "v42", false).await?; // every member gets Event::User
//! agent.send("node-b", "hello").await?.await?; // written to node-b, which gets Event::Message
//! let mut answers = agent.query("load", "", QueryParams::default()).await?;
//! while let Some(answer) = answers.recv().await {
//!     println!("{answer:?}"); // acks and responses, then QueryAnswer::Done
//! }
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Query(q) => agent.respond(&q.handle, "0.3").await?,
//!         Event::Message { from, payload } => println!("{from}: {payload:?}"),
//!         Event::MemberFailed(m) => {
//!             println!("{} failed", m.name);
//!             agent.remove_failed(&m.name, false).await?; // left everywhere
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! agent.shutdown(ShutdownMode::Leave).await;
//! # Ok(())
//! # }
//! ```
//!
//! Must run inside a tokio runtime with the IO and time drivers enabled.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use rookery_core as core;
pub use rookery_core::{
    ApiError, Config, Event, Identity, IncomingQuery, Member, MemberStatus, QueryHandle, QueryId,
    QueryParams, Tags, UserEvent,
};
pub use rookery_driver::asynch::{AgentHandle, EventStream, QueryAnswers};
pub use rookery_driver::blocking;
pub use rookery_driver::{
    AgentError, AgentStats, DriverStats, Options, QueryAnswer, ShutdownMode, StartError,
    TryRecvError,
};

/// The tokio runtime, as [`rookery_driver::Runtime`] sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl rookery_driver::Runtime for Tokio {
    type Udp = tokio::net::UdpSocket;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    fn spawn<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(future);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(deadline.into())
    }

    fn udp(socket: std::net::UdpSocket) -> io::Result<Self::Udp> {
        tokio::net::UdpSocket::from_std(socket)
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(listener)
    }

    fn recv_from<'a>(
        udp: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a {
        udp.recv_from(buf)
    }

    fn send_to<'a>(
        udp: &'a Self::Udp,
        data: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        udp.send_to(data, to)
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn read<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        stream.read(buf)
    }

    fn write_all<'a>(
        stream: &'a mut Self::Stream,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        stream.write_all(data)
    }
}

/// Starts tokio agents.
#[derive(Clone, Copy, Debug)]
pub struct Agent;

impl Agent {
    /// Start an agent: bind one UDP socket and one TCP listener on `identity.addr` (port 0
    /// picks a free port; the node advertises the bound address, or
    /// [`Options::advertise`] with the bound port), create the node seeded from
    /// [`Options::seed`] or OS entropy, and spawn its tasks on the current tokio runtime.
    pub async fn start(
        config: Config,
        identity: Identity,
        options: Options,
    ) -> Result<(AgentHandle, EventStream), StartError> {
        rookery_driver::asynch::start::<Tokio>(config, identity, options).await
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
