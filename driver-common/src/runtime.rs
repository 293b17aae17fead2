//! The small trait an async runtime implements so that one generic agent
//! ([`crate::asynch`]) runs on it. rookery-tokio and rookery-async-std each implement it in a
//! few dozen lines; everything else is shared.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// An async runtime's sockets, timer and task spawner, as the generic agent needs them.
///
/// Implementations must make `read`, `recv_from` and `accept` cancel-safe (dropping the future
/// before it completes loses no data), as readiness-based runtimes do: the agent polls them
/// in a select loop and drops them when another source wins.
pub trait Runtime: Send + Sync + 'static {
    /// A UDP socket registered with the runtime.
    type Udp: Send + Sync + 'static;
    /// A TCP listener registered with the runtime.
    type Listener: Send + Sync + 'static;
    /// A TCP stream registered with the runtime.
    type Stream: Send + 'static;

    /// Run `future` as a detached task.
    fn spawn<F>(future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Complete at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send;

    /// Register a bound, non-blocking std UDP socket.
    fn udp(socket: std::net::UdpSocket) -> io::Result<Self::Udp>;

    /// Register a bound, non-blocking std TCP listener.
    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Receive one datagram.
    fn recv_from<'a>(
        udp: &'a Self::Udp,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;

    /// Send one datagram.
    fn send_to<'a>(
        udp: &'a Self::Udp,
        data: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// Accept one connection (with `TCP_NODELAY` set).
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_;

    /// Connect to `addr` (with `TCP_NODELAY` set). The agent bounds it with its own timeout.
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Read some bytes; `Ok(0)` at end of stream.
    fn read<'a>(
        stream: &'a mut Self::Stream,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// Write all of `data`.
    fn write_all<'a>(
        stream: &'a mut Self::Stream,
        data: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
}
