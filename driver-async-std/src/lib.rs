//! # rookery-async-std
//!
//! The async-std driver for [`rookery_core`]: the same agent as `rookery-tokio` — one UDP
//! socket and one TCP listener on the same port, one task owning the node with one timer,
//! TCP with connect/write timeouts, connection reuse and idle close, failed sends reported to
//! the core, a bounded event stream — with the same API shape (`Agent::start`,
//! [`AgentHandle`], [`EventStream`], [`QueryAnswers`], [`AgentStats`]); `rookery-mio` offers
//! its [`blocking`] flavor, which every handle and stream here also becomes with
//! `into_blocking`.
//!
//! No pump logic lives here: the agent is written once in [`rookery_driver::asynch`], generic
//! over [`rookery_driver::Runtime`], and this crate only implements that trait for async-std
//! ([`AsyncStd`]).
//!
//! ```no_run
//! use rookery_async_std::{Agent, Config, Event, Identity, Options, QueryParams, ShutdownMode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = Identity::new("node-b", "127.0.0.1:0".parse()?);
//! let (agent, mut events) = Agent::start(Config::lan(), identity, Options::default()).await?;
//! agent.join(&["127.0.0.1:7946".parse()?]).await?;
//! for m in agent.members().await? {
//!     println!("{} {} {:?}", m.name, m.addr, m.status);
//! }
//! agent.user_event("deploy", "v42", false).await?;
//! let sent_to = agent.broadcast("hi all").await?.len();
//! let answers = agent.query("load", "", QueryParams::default()).await?;
//! println!("{sent_to} got the broadcast; answers: {:?}", answers.collect_all().await);
//! if let Some(Event::Query(q)) = events.recv().await {
//!     agent.respond(&q.handle, "0.3").await?;
//! }
//! agent.shutdown(ShutdownMode::Leave).await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_std::io::{ReadExt, WriteExt};

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

/// The async-std runtime, as [`rookery_driver::Runtime`] sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl rookery_driver::Runtime for AsyncStd {
    type Udp = async_std::net::UdpSocket;
    type Listener = async_std::net::TcpListener;
    type Stream = async_std::net::TcpStream;

    fn spawn<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        async_std::task::spawn(future);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send {
        async_std::task::sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn udp(socket: std::net::UdpSocket) -> io::Result<Self::Udp> {
        Ok(async_std::net::UdpSocket::from(socket))
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        Ok(async_std::net::TcpListener::from(listener))
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
        let stream = async_std::net::TcpStream::connect(addr).await?;
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

/// Starts async-std agents.
#[derive(Clone, Copy, Debug)]
pub struct Agent;

impl Agent {
    /// Start an agent: bind one UDP socket and one TCP listener on `identity.addr` (port 0
    /// picks a free port; the node advertises the bound address, or
    /// [`Options::advertise`] with the bound port), create the node seeded from
    /// [`Options::seed`] or OS entropy, and spawn its tasks on async-std's executor.
    pub async fn start(
        config: Config,
        identity: Identity,
        options: Options,
    ) -> Result<(AgentHandle, EventStream), StartError> {
        rookery_driver::asynch::start::<AsyncStd>(config, identity, options).await
    }
}
