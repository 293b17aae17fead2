//! The async agent, written once and generic over a [`Runtime`]: rookery-tokio and
//! rookery-async-std are this module plus a runtime implementation.
//!
//! Task layout of one agent:
//! - the **pump task** owns the [`Pump`] (and so the node) and the UDP socket; it waits on the
//!   command channel, the network-input channel, the UDP socket and one timer re-armed from
//!   [`Pump::deadline`], and after every wake-up drains the node's transmits: datagrams go out
//!   on the socket, reliable frames to a per-destination writer task;
//! - the **accept task** owns the TCP listener and spawns one **reader task** per inbound
//!   connection, which splits frames with [`rookery_core::wire::FrameDecoder`] and forwards
//!   them to the pump (garbage closes the connection and is counted);
//! - one **writer task** per destination connects (with `tcp_timeout`), writes frames (with
//!   `tcp_timeout`), reuses the connection and closes it after `idle_timeout`; a frame it
//!   cannot deliver is reported back to the pump, which tells the core.
//!
//! The agent's handle, event stream and query answers are the async flavor of the one API
//! shape every driver offers ([`crate::blocking`] is the blocking one; `into_blocking` turns
//! one into the other).
//!
//! Every helper task holds a "done" token and races a shared stop signal, so shutdown fires the
//! signal and then waits until every token is gone: when [`AgentHandle::shutdown`] returns,
//! every task has ended and every socket is closed.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::future::{self, Either, FutureExt, Shared};
use futures_util::{SinkExt, Stream, StreamExt};
use rookery_core::wire::FrameDecoder;
use rookery_core::{
    Config, Event, Identity, Member, QueryHandle, QueryId, QueryParams, Tags, TransmitKind,
};

use crate::bind::{advertised_addr, bind_pair, node_seed};
use crate::error::{AgentError, StartError, TryRecvError};
use crate::handle::{channels, finish, CommandReceiver, Link, LoopEnds};
use crate::options::Options;
use crate::pump::{AgentStats, Command, DriverCounters, Pump, QueryAnswer, Reply, ShutdownMode};
use crate::runtime::Runtime;

/// Frames and failures queued from helper tasks to the pump task.
const NET_QUEUE: usize = 1024;
/// Read buffer of one inbound connection.
const READ_BUF: usize = 16 * 1024;
/// Back-off after a failed `accept` (out of file descriptors, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Outbound writer map size above which entries of ended writers are pruned.
const WRITERS_PRUNE: usize = 64;

enum NetInput {
    Frame {
        from: SocketAddr,
        body: Vec<u8>,
        bad: Arc<AtomicBool>,
    },
    SendFailed(SocketAddr),
}

#[derive(Clone)]
struct TaskCtx {
    net: mpsc::Sender<NetInput>,
    stop: Shared<oneshot::Receiver<()>>,
    done: mpsc::Sender<()>,
    counters: Arc<DriverCounters>,
    tcp_timeout: Duration,
    idle: Duration,
    inbound_idle: Duration,
    max_stream: usize,
    max_inbound: usize,
    inbound: Arc<AtomicUsize>,
    send_queue: usize,
}

/// Start an agent on runtime `R`: bind one UDP socket and one TCP listener on the identity's
/// address (port 0 picks a free port; the node is created with the bound address), create the
/// node, spawn the tasks. Must be called from within the runtime.
pub async fn start<R: Runtime>(
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
    let tcp_timeout = config.tcp_timeout;
    let max_stream = config.max_stream_message;
    crate::keyring_file::apply_keyring_file(&mut config, &options)?;
    let mut pump = Pump::new(config, identity, seed, sink, counters.clone())?;
    if let Some(path) = options.keyring_file.clone() {
        pump.set_keyring_file(path);
    }
    let me = pump.node().local_member();
    let udp = R::udp(udp).map_err(StartError::Io)?;
    let listener = R::listener(listener).map_err(StartError::Io)?;

    let (net_tx, net_rx) = mpsc::channel(NET_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = mpsc::channel(0);
    let ctx = TaskCtx {
        net: net_tx,
        stop: stop_rx.shared(),
        done: done_tx,
        counters,
        tcp_timeout,
        idle: options.idle_timeout,
        inbound_idle: options.inbound_idle_timeout(),
        max_stream,
        max_inbound: options.max_inbound,
        inbound: Arc::new(AtomicUsize::new(0)),
        send_queue: options.send_queue.max(1),
    };
    spawn_task::<R>(&ctx, accept_loop::<R>(listener, ctx.clone()));
    R::spawn(pump_loop::<R>(
        pump, udp, commands, net_rx, ctx, stop_tx, done_rx,
    ));
    tracing::info!(name = %me.name, addr = %me.addr, "agent started");
    let (link, rx) = ends.link(&me, None, None);
    Ok((AgentHandle { link }, EventStream { rx }))
}

/// Spawn a helper task that ends when its body does or when the stop signal fires, and holds a
/// done token until then.
fn spawn_task<R: Runtime>(ctx: &TaskCtx, body: impl Future<Output = ()> + Send + 'static) {
    let stop = ctx.stop.clone();
    let done = ctx.done.clone();
    R::spawn(async move {
        let _done = done;
        let body = pin!(body);
        let _ = future::select(body, stop).await;
    });
}

/// `fut`, or `None` if it takes longer than `limit`.
async fn timeout<R: Runtime, T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let sleep = pin!(R::sleep_until(Instant::now() + limit));
    match future::select(fut, sleep).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

enum Wake {
    Timer,
    Command(Command),
    HandlesGone,
    Net(NetInput),
    Udp(std::io::Result<(usize, SocketAddr)>),
}

async fn pump_loop<R: Runtime>(
    mut pump: Pump,
    udp: R::Udp,
    mut cmds: CommandReceiver,
    mut net_rx: mpsc::Receiver<NetInput>,
    ctx: TaskCtx,
    stop_tx: oneshot::Sender<()>,
    mut done_rx: mpsc::Receiver<()>,
) {
    let mut writers: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = vec![0u8; rookery_core::wire::MAX_DATAGRAM];
    loop {
        flush::<R>(&mut pump, &udp, &mut writers, &ctx).await;
        if pump.should_stop() {
            break;
        }
        let deadline = pump.deadline();
        let wake = {
            let mut sleep = pin!(deadline.map(R::sleep_until));
            let mut recv = pin!(R::recv_from(&udp, &mut buf));
            poll_fn(|cx| {
                // The timer first, so that a flood of input cannot starve failure detection.
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timer);
                    }
                }
                match cmds.poll_next_unpin(cx) {
                    Poll::Ready(Some(c)) => return Poll::Ready(Wake::Command(c)),
                    Poll::Ready(None) => return Poll::Ready(Wake::HandlesGone),
                    Poll::Pending => {}
                }
                if let Poll::Ready(Some(n)) = net_rx.poll_next_unpin(cx) {
                    return Poll::Ready(Wake::Net(n));
                }
                if let Poll::Ready(r) = recv.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Udp(r));
                }
                Poll::Pending
            })
            .await
        };
        match wake {
            Wake::Timer => pump.timer(),
            Wake::Command(c) => pump.command(c),
            Wake::HandlesGone => {
                tracing::info!("every handle dropped: stopping");
                pump.command(Command::Shutdown {
                    mode: ShutdownMode::Now,
                    reply: Reply::new(|()| {}),
                });
            }
            Wake::Net(NetInput::Frame { from, body, bad }) => {
                if !pump.frame(from, &body) && !bad.swap(true, Ordering::Relaxed) {
                    DriverCounters::bump(&ctx.counters.bad_connections);
                }
            }
            Wake::Net(NetInput::SendFailed(to)) => pump.send_failure(to),
            Wake::Udp(Ok((n, from))) => pump.datagram(from, &buf[..n]),
            Wake::Udp(Err(e)) => {
                tracing::debug!(error = %e, "udp receive error");
                DriverCounters::bump(&ctx.counters.io_errors);
            }
        }
    }
    // Teardown: end every helper task (their queues close and the stop signal fires), wait for
    // their done tokens, close the UDP socket, then answer the shutdown callers.
    drop(writers);
    drop(stop_tx);
    drop(ctx);
    net_rx.close();
    while done_rx.next().await.is_some() {}
    drop(udp);
    let name = pump.node().local_member().name;
    finish(pump, &mut cmds);
    tracing::info!(%name, "agent stopped");
}

/// Put every pending transmit on its way.
async fn flush<R: Runtime>(
    pump: &mut Pump,
    udp: &R::Udp,
    writers: &mut HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    ctx: &TaskCtx,
) {
    while let Some(t) = pump.poll_transmit() {
        match t.kind {
            TransmitKind::Datagram => {
                if let Err(e) = R::send_to(udp, &t.payload, t.to).await {
                    tracing::debug!(to = %t.to, error = %e, "datagram not sent");
                    DriverCounters::bump(&ctx.counters.datagram_send_errors);
                }
            }
            TransmitKind::Reliable => route_reliable::<R>(pump, writers, ctx, t.to, t.payload),
        }
    }
}

/// Queue a frame on the writer task of its destination, starting one if needed.
fn route_reliable<R: Runtime>(
    pump: &mut Pump,
    writers: &mut HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    ctx: &TaskCtx,
    to: SocketAddr,
    mut frame: Bytes,
) {
    if let Some(tx) = writers.get_mut(&to) {
        match tx.try_send(frame) {
            Ok(()) => return,
            Err(e) if e.is_full() => {
                DriverCounters::bump(&ctx.counters.send_queue_full);
                pump.send_failure(to);
                return;
            }
            // The writer went idle and ended: start a new one.
            Err(e) => {
                frame = e.into_inner();
                writers.remove(&to);
            }
        }
    }
    if writers.len() >= WRITERS_PRUNE {
        writers.retain(|_, tx| !tx.is_closed());
    }
    let (mut tx, rx) = mpsc::channel(ctx.send_queue - 1);
    // A fresh channel always has room for one.
    let _ = tx.try_send(frame);
    writers.insert(to, tx);
    spawn_task::<R>(ctx, writer::<R>(to, rx, ctx.clone()));
}

enum Step {
    Frame(Option<Bytes>),
    Peer(std::io::Result<usize>),
    Idle,
}

/// One destination's outbound connection: connect on demand, write frames in order, notice
/// when the peer closes, close when idle.
async fn writer<R: Runtime>(to: SocketAddr, mut rx: mpsc::Receiver<Bytes>, ctx: TaskCtx) {
    let mut conn: Option<R::Stream> = None;
    let mut used = false;
    let mut net = ctx.net.clone();
    let mut scratch = [0u8; 256];
    loop {
        let idle_at = Instant::now() + ctx.idle;
        let step = {
            let mut next = rx.next();
            let mut idle = pin!(R::sleep_until(idle_at));
            let mut peer = pin!(conn.as_mut().map(|s| R::read(s, &mut scratch)));
            poll_fn(|cx| {
                if let Poll::Ready(f) = next.poll_unpin(cx) {
                    return Poll::Ready(Step::Frame(f));
                }
                if let Some(p) = peer.as_mut().as_pin_mut() {
                    if let Poll::Ready(r) = p.poll(cx) {
                        return Poll::Ready(Step::Peer(r));
                    }
                }
                if idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::Idle);
                }
                Poll::Pending
            })
            .await
        };
        match step {
            Step::Frame(Some(f)) => {
                deliver::<R>(to, &f, &mut conn, &mut used, &ctx, &mut net).await
            }
            Step::Frame(None) => return,
            // The peer never writes on our connection: ignore stray bytes.
            Step::Peer(Ok(n)) if n > 0 => {}
            // The peer closed it (idle close on its side, restart): reconnect on the next frame.
            Step::Peer(_) => {
                conn = None;
                used = false;
            }
            Step::Idle => {
                if conn.is_some() {
                    DriverCounters::bump(&ctx.counters.connections_idle_closed);
                }
                // Refuse new frames, then deliver what raced in before the close.
                rx.close();
                while let Ok(f) = rx.try_recv() {
                    deliver::<R>(to, &f, &mut conn, &mut used, &ctx, &mut net).await;
                }
                return;
            }
        }
    }
}

/// Write one frame, connecting if needed. A reused connection that fails is retried once on a
/// fresh one (the peer may have closed it while idle); any other failure is reported.
async fn deliver<R: Runtime>(
    to: SocketAddr,
    frame: &Bytes,
    conn: &mut Option<R::Stream>,
    used: &mut bool,
    ctx: &TaskCtx,
    net: &mut mpsc::Sender<NetInput>,
) {
    for attempt in 0..2 {
        if conn.is_none() {
            match timeout::<R, _>(ctx.tcp_timeout, R::connect(to)).await {
                Some(Ok(s)) => {
                    DriverCounters::bump(&ctx.counters.connections_opened);
                    *conn = Some(s);
                    *used = false;
                }
                Some(Err(e)) => {
                    tracing::debug!(%to, error = %e, "connect failed");
                    break;
                }
                None => {
                    tracing::debug!(%to, "connect timed out");
                    break;
                }
            }
        }
        let Some(stream) = conn.as_mut() else { break };
        match timeout::<R, _>(ctx.tcp_timeout, R::write_all(stream, frame)).await {
            Some(Ok(())) => {
                *used = true;
                return;
            }
            _ => {
                let retry = *used && attempt == 0;
                *conn = None;
                *used = false;
                if !retry {
                    break;
                }
            }
        }
    }
    let _ = net.send(NetInput::SendFailed(to)).await;
}

async fn accept_loop<R: Runtime>(listener: R::Listener, ctx: TaskCtx) {
    loop {
        match R::accept(&listener).await {
            Ok((stream, peer)) => {
                DriverCounters::bump(&ctx.counters.connections_accepted);
                if ctx.inbound.load(Ordering::Relaxed) >= ctx.max_inbound {
                    DriverCounters::bump(&ctx.counters.connections_refused);
                    drop(stream);
                    continue;
                }
                ctx.inbound.fetch_add(1, Ordering::Relaxed);
                spawn_task::<R>(&ctx, reader::<R>(stream, peer, ctx.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                DriverCounters::bump(&ctx.counters.io_errors);
                R::sleep_until(Instant::now() + ACCEPT_BACKOFF).await;
            }
        }
    }
}

struct InboundGuard(Arc<AtomicUsize>);

impl Drop for InboundGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One inbound connection: split frames and hand them to the pump until the peer closes, the
/// connection idles, or it turns out to carry garbage.
async fn reader<R: Runtime>(mut stream: R::Stream, peer: SocketAddr, ctx: TaskCtx) {
    let _guard = InboundGuard(ctx.inbound.clone());
    let mut dec = FrameDecoder::new(ctx.max_stream);
    let bad = Arc::new(AtomicBool::new(false));
    let mut buf = vec![0u8; READ_BUF];
    let mut net = ctx.net.clone();
    loop {
        let n = match timeout::<R, _>(ctx.inbound_idle, R::read(&mut stream, &mut buf)).await {
            None => {
                DriverCounters::bump(&ctx.counters.connections_idle_closed);
                return;
            }
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(n)) => n,
        };
        dec.push(&buf[..n]);
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    let input = NetInput::Frame {
                        from: peer,
                        body,
                        bad: bad.clone(),
                    };
                    if net.send(input).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bad frame: closing connection");
                    if !bad.swap(true, Ordering::Relaxed) {
                        DriverCounters::bump(&ctx.counters.bad_connections);
                    }
                    return;
                }
            }
        }
        if bad.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// A handle on a running agent, async flavor: cheap to clone, `Send + Sync`; every operation
/// is a message to the agent's pump task. When every handle (of either flavor) is dropped the
/// agent stops (without leaving).
#[derive(Clone, Debug)]
pub struct AgentHandle {
    link: Arc<Link>,
}

impl AgentHandle {
    handle_operations!(async; .await);

    /// The same handle, blocking flavor ([`crate::blocking::AgentHandle`]), for threads
    /// outside the runtime.
    pub fn into_blocking(self) -> crate::blocking::AgentHandle {
        crate::blocking::AgentHandle { link: self.link }
    }
}

/// The agent's events, in order, async flavor. Bounded by [`Options::event_capacity`]: when
/// the application falls behind, new events are dropped and counted (the node never waits).
/// Ends after the agent stops. Also a [`futures_util::Stream`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
}

impl EventStream {
    receiver_operations!(Event; async; .await);

    /// The same stream, blocking flavor ([`crate::blocking::EventStream`]), for threads
    /// outside the runtime.
    pub fn into_blocking(self) -> crate::blocking::EventStream {
        crate::blocking::EventStream { rx: self.rx }
    }
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Event>> {
        self.rx.poll_next_unpin(cx)
    }
}

/// The answers to one query asked with [`AgentHandle::query`], in arrival order, ending after
/// [`QueryAnswer::Done`], async flavor. Also a [`futures_util::Stream`].
#[derive(Debug)]
pub struct QueryAnswers {
    id: QueryId,
    rx: mpsc::Receiver<QueryAnswer>,
}

impl QueryAnswers {
    answers_operations!(async; .await);
    receiver_operations!(QueryAnswer; async; .await);

    /// The same answers, blocking flavor ([`crate::blocking::QueryAnswers`]), for threads
    /// outside the runtime.
    pub fn into_blocking(self) -> crate::blocking::QueryAnswers {
        crate::blocking::QueryAnswers {
            id: self.id,
            rx: self.rx,
        }
    }
}

impl Stream for QueryAnswers {
    type Item = QueryAnswer;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<QueryAnswer>> {
        self.rx.poll_next_unpin(cx)
    }
}
