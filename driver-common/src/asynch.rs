//! The async agent, written once and generic over a [`Runtime`]: rookery-tokio and
//! rookery-async-std are this module plus a runtime implementation.
//!
//! Task layout of one agent:
//! - the **pump task** owns the [`Pump`] (and so the node) and the UDP socket; it waits on the
//!   command channel, the network-input channel, the UDP socket and one timer re-armed from
//!   [`Pump::deadline`], and after every wake-up drains the node's transmits: datagrams go out
//!   on the socket, reliable frames to a per-destination writer task;
//! - the **accept task** owns the TCP listener and admits each connection by the rule of
//!   [`crate::guard::InboundTable`] (at `max_inbound`, or `max_inbound_per_source` for its IP,
//!   the connection idle longest is closed to make room; with none idle the newcomer is refused
//!   and counted), then spawns one **reader task** for it, which splits frames with
//!   [`rookery_core::wire::FrameDecoder`] and forwards them to the pump. A frame must arrive
//!   whole within `tcp_timeout` of its first byte, a connection silent between frames closes
//!   after the inbound idle timeout, a declared length above `max_stream_message` closes it
//!   before anything is allocated, garbage closes it; each is counted. At most
//!   `max_inbound_in_flight` frames wait for the pump at once (a reader holding a complete frame
//!   waits, and stops reading, until there is room). Every reader charges its buffer's growth
//!   against the shared byte budget (`max_inbound_buffered`) before it grows, and a frame stays
//!   charged until the pump dropped it: when the bytes do not fit, the partial frames silent
//!   longest are closed (their readers kicked); when only frames waiting for the pump hold the
//!   budget, the reader waits (polling every `BUDGET_RETRY`, 10 ms) until its frame deadline;
//! - one **writer task** per destination connects (with `tcp_timeout`), writes frames (with
//!   `tcp_timeout`), reuses the connection and closes it after `idle_timeout`; a frame it
//!   cannot deliver is reported back to the pump, which tells the core. At most `max_outbound`
//!   writers exist: a new destination takes the slot of the writer idle longest, or waits in
//!   one bounded line (at most `send_queue` frames, at most `tcp_timeout`) and then fails as a
//!   send failure the core hears.
//!
//! The pump task never waits for a peer: frames to writers go through `try_send`, refusals are
//! counted and reported at once.
//!
//! The agent's handle, event stream and query answers are the async flavor of the one API
//! shape every driver offers ([`crate::blocking`] is the blocking one; `into_blocking` turns
//! one into the other).
//!
//! Every helper task holds a "done" token and races a shared stop signal, so shutdown fires the
//! signal and then waits until every token is gone: when [`AgentHandle::shutdown`] returns,
//! every task has ended and every socket is closed.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use async_lock::{Semaphore, SemaphoreGuardArc};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::future::{self, Either, FutureExt, Shared};
use futures_util::{SinkExt, Stream, StreamExt};
use rookery_core::wire::DecodeError;
use rookery_core::{
    Config, Event, Identity, Member, MessageId, QueryHandle, QueryId, QueryParams, Tags,
    TransmitKind,
};

use crate::bind::{advertised_addr, bind_pair, node_seed};
use crate::delivery::OutFrame;
use crate::error::{AgentError, StartError, TryRecvError};
use crate::exchange::{Reply, ReplyRoutes, StreamRules, REPLY_QUEUE};
use crate::guard::{pick_idle, InboundTable, KnownPeers, Phase, Refusal};
use crate::handle::{channels, finish, CommandReceiver, Link, LoopEnds};
use crate::options::Options;
use crate::pump::{AgentStats, Command, DriverCounters, Pump, QueryAnswer, ShutdownMode};
use crate::runtime::Runtime;

/// Frames and failures queued from helper tasks to the pump task.
const NET_QUEUE: usize = 1024;
/// Read buffer of one inbound connection while a frame is in progress (released between
/// frames).
const READ_BUF: usize = 16 * 1024;
/// Read buffer of one inbound connection between frames.
const IDLE_READ: usize = 512;
/// How often a reader waiting for room in the inbound byte budget tries again.
const BUDGET_RETRY: Duration = Duration::from_millis(10);
/// Back-off after a failed `accept` (out of file descriptors, ...).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

enum NetInput {
    Frame {
        from: SocketAddr,
        body: Vec<u8>,
        /// Read on a connection this driver opened (the peer's answer).
        answer: bool,
        bad: Arc<AtomicBool>,
        /// Room among `max_inbound_in_flight`, given back once the pump handled the frame.
        _permit: SemaphoreGuardArc,
        /// The frame's bytes in the inbound budget, given back once the pump handled it.
        _charge: Charged,
    },
    /// A reliable frame to this address failed, with the direct message it carried.
    SendFailed(SocketAddr, Option<MessageId>),
    /// The frame carrying this direct message was written whole.
    Written(MessageId),
    /// A writer task ended (idle, or its queue closed).
    WriterDone { to: SocketAddr, id: u64 },
}

/// The inbound connections, shared by the accept task and the readers.
struct Inbound {
    table: InboundTable<u64>,
    /// How to close each admitted connection (its reader races this), and its peer.
    kicks: HashMap<u64, (oneshot::Sender<()>, SocketAddr)>,
    /// HashiCorp profiles: where an answer to each open inbound connection's peer goes (its
    /// reader writes it on the connection: memberlist answers on the connection it asked on).
    replies: ReplyRoutes<mpsc::Sender<Reply>>,
    next_id: u64,
}

impl Inbound {
    /// Close connections evicted from the table: kick their readers. Their peers.
    fn kick(&mut self, evicted: Vec<u64>) -> Vec<SocketAddr> {
        evicted
            .into_iter()
            .filter_map(|k| {
                let (kick, peer) = self.kicks.remove(&k)?;
                let _ = kick.send(());
                Some(peer)
            })
            .collect()
    }
}

/// Bytes of a received frame charged against the inbound budget, released when dropped.
struct Charged {
    inbound: Arc<Mutex<Inbound>>,
    bytes: usize,
}

impl Drop for Charged {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut inb = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
            inb.table.release(self.bytes);
        }
    }
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
    inbound: Arc<Mutex<Inbound>>,
    in_flight: Arc<Semaphore>,
    max_outbound: usize,
    send_queue: usize,
    /// Room of a writer's queue: `send_queue` protocol frames plus every message in flight.
    writer_queue: usize,
    /// How the node's wire profile uses connections ([`crate::exchange`]): how streams are
    /// split, and whether answers go back on the connection that asked (HashiCorp) or to the
    /// asker's listener (native).
    rules: StreamRules,
    /// The members' IP addresses (kept by the pump): the admission rule favours them.
    known: Arc<KnownPeers>,
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
    let rules = StreamRules::new(config.wire, max_stream);
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
        inbound: Arc::new(Mutex::new(Inbound {
            table: InboundTable::new(options.max_inbound, options.max_inbound_per_source)
                .with_budget(options.inbound_budget(max_stream)),
            kicks: HashMap::new(),
            replies: ReplyRoutes::new(rules),
            next_id: 0,
        })),
        in_flight: Arc::new(Semaphore::new(options.max_inbound_in_flight.max(1))),
        max_outbound: options.max_outbound.max(1),
        send_queue: options.send_queue.max(1),
        writer_queue: options.send_queue.max(1) + options.max_messages_in_flight.max(1),
        rules,
        known: pump.known_peers(),
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

/// `fut`, or `None` if `deadline` passes first.
async fn until<R: Runtime, T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let sleep = pin!(R::sleep_until(deadline));
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
    let mut writers = Writers::default();
    let mut buf = vec![0u8; rookery_core::wire::MAX_DATAGRAM];
    // Once every handle is gone the agent leaves (see `Pump::handles_gone`); the closed
    // command channel is not polled again.
    let mut handles_gone = false;
    // HashiCorp profiles: the inbound connection whose message the last wake handed over.
    let mut handled: Option<SocketAddr> = None;
    loop {
        flush::<R>(&mut pump, &udp, &mut writers, &ctx).await;
        if let Some(peer) = handled.take() {
            // Its answers are queued on it now: end the exchange behind them.
            let reply = {
                let inb = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
                inb.replies.route(peer).cloned()
            };
            if let Some(mut tx) = reply {
                // A full queue (or a closed connection) keeps the connection to its idle
                // timeout, as before the rule.
                let _ = tx.try_send(Reply::End);
            }
        }
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
                if !handles_gone {
                    match cmds.poll_next_unpin(cx) {
                        Poll::Ready(Some(c)) => return Poll::Ready(Wake::Command(c)),
                        Poll::Ready(None) => return Poll::Ready(Wake::HandlesGone),
                        Poll::Pending => {}
                    }
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
                handles_gone = true;
                pump.handles_gone();
            }
            Wake::Net(NetInput::Frame {
                from,
                body,
                answer,
                bad,
                _permit,
                _charge,
            }) => {
                let ok = if answer {
                    pump.answer_frame(from, &body)
                } else {
                    pump.frame(from, &body)
                };
                if !ok && !bad.swap(true, Ordering::Relaxed) {
                    DriverCounters::bump(&ctx.counters.bad_connections);
                }
                if ctx.rules.exchanges() {
                    handled = Some(from);
                }
            }
            Wake::Net(NetInput::SendFailed(to, message)) => pump.send_failure(to, message),
            Wake::Net(NetInput::Written(message)) => pump.message_written(message),
            Wake::Net(NetInput::WriterDone { to, id }) => {
                if writers.map.get(&to).is_some_and(|w| w.id == id) {
                    writers.map.remove(&to);
                }
            }
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
    finish(pump, &mut cmds);
}

/// One destination's writer task, as the pump sees it.
struct WriterSlot {
    /// Tells this writer's `WriterDone` from a later writer's for the same destination.
    id: u64,
    tx: mpsc::Sender<OutFrame>,
    /// Frames queued or being written: zero means idle.
    busy: Arc<AtomicUsize>,
    last_used: Instant,
}

/// The outbound writers (at most `max_outbound`) and the line of frames waiting for a slot.
#[derive(Default)]
struct Writers {
    map: HashMap<SocketAddr, WriterSlot>,
    /// Frames to destinations without a writer, waiting for a slot: (to, frame, queued at).
    waiting: VecDeque<(SocketAddr, OutFrame, Instant)>,
    next_id: u64,
}

/// Put every pending transmit on its way.
async fn flush<R: Runtime>(pump: &mut Pump, udp: &R::Udp, writers: &mut Writers, ctx: &TaskCtx) {
    loop {
        while let Some(t) = pump.poll_transmit() {
            match t.kind {
                TransmitKind::Datagram => {
                    if let Err(e) = R::send_to(udp, &t.payload, t.to).await {
                        tracing::debug!(to = %t.to, error = %e, "datagram not sent");
                        DriverCounters::bump(&ctx.counters.datagram_send_errors);
                    }
                }
                TransmitKind::Reliable => {
                    let frame = OutFrame {
                        bytes: t.payload,
                        message: t.message,
                    };
                    route_reliable::<R>(pump, writers, ctx, t.to, frame, Instant::now())
                }
            }
        }
        if writers.waiting.is_empty() || !serve_waiting::<R>(pump, writers, ctx) {
            return;
        }
    }
}

/// Queue a frame on the writer task of its destination, starting one if there is a slot
/// (taking the slot of the writer idle longest at `max_outbound`), else put it in the waiting
/// line, else fail it. Protocol frames are bounded by `send_queue` per writer and in the line;
/// message frames only by the messages in flight (see [`crate::delivery`]).
fn route_reliable<R: Runtime>(
    pump: &mut Pump,
    writers: &mut Writers,
    ctx: &TaskCtx,
    to: SocketAddr,
    mut frame: OutFrame,
    queued: Instant,
) {
    if ctx.rules.exchanges() {
        // An answer to a peer that asked on a connection still open goes back on it.
        let reply = {
            let inb = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
            inb.replies.route(to).cloned()
        };
        if let Some(mut tx) = reply {
            if let Err(e) = tx.try_send(Reply::Frame(frame)) {
                // The connection closed (or holds more answers than anyone asks for): an
                // answer on a fresh connection would reach nobody.
                DriverCounters::bump(&ctx.counters.send_queue_full);
                pump.send_failure(to, e.into_inner().message());
            }
            return;
        }
    }
    if let Some(w) = writers.map.get_mut(&to) {
        let full = frame.message.is_none() && w.busy.load(Ordering::Relaxed) >= ctx.send_queue;
        let sent = if full {
            Err(None)
        } else {
            w.tx.try_send(frame).map_err(Some)
        };
        match sent {
            Ok(()) => {
                w.busy.fetch_add(1, Ordering::Relaxed);
                w.last_used = Instant::now();
                return;
            }
            Err(None) => {
                DriverCounters::bump(&ctx.counters.send_queue_full);
                pump.send_failure(to, None);
                return;
            }
            Err(Some(e)) if e.is_full() => {
                DriverCounters::bump(&ctx.counters.send_queue_full);
                pump.send_failure(to, e.into_inner().message);
                return;
            }
            // The writer went idle and ended: start a new one.
            Err(Some(e)) => {
                frame = e.into_inner();
                writers.map.remove(&to);
            }
        }
    }
    let in_line = writers.waiting.iter().any(|(d, _, _)| *d == to);
    if !in_line && free_slot(writers, ctx) {
        start_writer::<R>(writers, ctx, to, frame);
        return;
    }
    let protocol_in_line = || {
        writers
            .waiting
            .iter()
            .filter(|(_, f, _)| f.message.is_none())
            .count()
    };
    if frame.message.is_some() || protocol_in_line() < ctx.send_queue {
        writers.waiting.push_back((to, frame, queued));
    } else {
        ctx.counters.refuse(Refusal::Outbound, to);
        pump.send_failure(to, None);
    }
}

/// Make sure a new writer fits under `max_outbound`: prune ended writers, else end the one
/// idle longest. False when every writer is busy.
fn free_slot(writers: &mut Writers, ctx: &TaskCtx) -> bool {
    if writers.map.len() < ctx.max_outbound {
        return true;
    }
    writers.map.retain(|_, w| !w.tx.is_closed());
    if writers.map.len() < ctx.max_outbound {
        return true;
    }
    let idle = pick_idle(
        writers
            .map
            .iter()
            .filter(|(_, w)| w.busy.load(Ordering::Relaxed) == 0)
            .map(|(to, w)| (*to, w.last_used)),
    );
    match idle {
        Some(to) => {
            // Dropping its sender ends the writer (it has nothing left to write).
            writers.map.remove(&to);
            DriverCounters::bump(&ctx.counters.evicted_idle_outbound);
            true
        }
        None => false,
    }
}

fn start_writer<R: Runtime>(writers: &mut Writers, ctx: &TaskCtx, to: SocketAddr, frame: OutFrame) {
    let (mut tx, rx) = mpsc::channel(ctx.writer_queue - 1);
    // A fresh channel always has room for one.
    let _ = tx.try_send(frame);
    let busy = Arc::new(AtomicUsize::new(1));
    let id = writers.next_id;
    writers.next_id += 1;
    writers.map.insert(
        to,
        WriterSlot {
            id,
            tx,
            busy: busy.clone(),
            last_used: Instant::now(),
        },
    );
    spawn_task::<R>(ctx, writer::<R>(to, id, rx, busy, ctx.clone()));
}

/// Move waiting frames to writers while slots free up, in order; fail the ones that waited
/// `tcp_timeout`. True when the pump has new input (failures reported).
fn serve_waiting<R: Runtime>(pump: &mut Pump, writers: &mut Writers, ctx: &TaskCtx) -> bool {
    let now = Instant::now();
    let mut failed = false;
    while let Some((to, _, queued)) = writers.waiting.front() {
        let (to, queued) = (*to, *queued);
        if now.saturating_duration_since(queued) >= ctx.tcp_timeout {
            let message = writers.waiting.pop_front().and_then(|(_, f, _)| f.message);
            ctx.counters.refuse(Refusal::Outbound, to);
            pump.send_failure(to, message);
            failed = true;
            continue;
        }
        if !writers.map.contains_key(&to) && !free_slot(writers, ctx) {
            break;
        }
        // This destination's frames, in order: the first starts its writer.
        let mut rest = VecDeque::with_capacity(writers.waiting.len());
        let mut mine = Vec::new();
        for (d, f, q) in writers.waiting.drain(..) {
            if d == to {
                mine.push((f, q));
            } else {
                rest.push_back((d, f, q));
            }
        }
        writers.waiting = rest;
        for (f, q) in mine {
            route_reliable::<R>(pump, writers, ctx, to, f, q);
        }
        failed = true;
    }
    failed
}

enum Step {
    Frame(Option<OutFrame>),
    Peer(std::io::Result<usize>),
    Idle,
}

/// One destination's outbound connection: connect on demand, write frames in order, notice
/// when the peer closes, close when idle.
async fn writer<R: Runtime>(
    to: SocketAddr,
    id: u64,
    mut rx: mpsc::Receiver<OutFrame>,
    busy: Arc<AtomicUsize>,
    ctx: TaskCtx,
) {
    writer_body::<R>(to, &mut rx, &busy, &ctx).await;
    // Frees the slot at once (the pump would otherwise notice on the next full map).
    let _ = ctx.net.clone().send(NetInput::WriterDone { to, id }).await;
}

async fn writer_body<R: Runtime>(
    to: SocketAddr,
    rx: &mut mpsc::Receiver<OutFrame>,
    busy: &AtomicUsize,
    ctx: &TaskCtx,
) {
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
                // The peer first: a connection it closed (it restarted, or shut down) is noticed
                // before the next frame is written into it, so a frame is reported written
                // only on a connection the peer has not already closed.
                if let Some(p) = peer.as_mut().as_pin_mut() {
                    if let Poll::Ready(r) = p.poll(cx) {
                        return Poll::Ready(Step::Peer(r));
                    }
                }
                if let Poll::Ready(f) = next.poll_unpin(cx) {
                    return Poll::Ready(Step::Frame(f));
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
                deliver::<R>(to, &f, &mut conn, &mut used, ctx, &mut net).await;
                if ctx.rules.exchanges() {
                    // memberlist handles one message per connection and answers on it.
                    answers::<R>(to, &mut conn, ctx, &mut net).await;
                    used = false;
                }
                busy.fetch_sub(1, Ordering::Relaxed);
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
                    deliver::<R>(to, &f, &mut conn, &mut used, ctx, &mut net).await;
                    busy.fetch_sub(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// Write one frame, connecting if needed, and report the outcome of the message it carries: a
/// reused connection that fails is retried once on a fresh one (the peer may have closed it
/// while idle); any other failure is reported.
async fn deliver<R: Runtime>(
    to: SocketAddr,
    frame: &OutFrame,
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
        match timeout::<R, _>(ctx.tcp_timeout, R::write_all(stream, &frame.bytes)).await {
            Some(Ok(())) => {
                *used = true;
                if let Some(m) = frame.message {
                    let _ = net.send(NetInput::Written(m)).await;
                }
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
    let _ = net.send(NetInput::SendFailed(to, frame.message)).await;
}

/// HashiCorp profile: read what the peer answers on the connection a message just went out
/// on (a push-pull's answer, a stream ping's ack) until it closes the connection or
/// `tcp_timeout` passes, hand each message to the pump, then drop the connection.
async fn answers<R: Runtime>(
    to: SocketAddr,
    conn: &mut Option<R::Stream>,
    ctx: &TaskCtx,
    net: &mut mpsc::Sender<NetInput>,
) {
    let Some(mut stream) = conn.take() else {
        return;
    };
    let deadline = Instant::now() + ctx.tcp_timeout;
    let mut dec = ctx.rules.decoder();
    let mut buf = vec![0u8; READ_BUF];
    let bad = Arc::new(AtomicBool::new(false));
    loop {
        let n = match until::<R, _>(deadline, R::read(&mut stream, &mut buf)).await {
            Some(Ok(n)) if n > 0 => n,
            _ => return,
        };
        dec.push(&buf[..n]);
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    let Some(permit) = until::<R, _>(deadline, ctx.in_flight.acquire_arc()).await
                    else {
                        ctx.counters.refuse(Refusal::InFlight, to);
                        return;
                    };
                    let input = NetInput::Frame {
                        from: to,
                        body,
                        answer: true,
                        bad: bad.clone(),
                        _permit: permit,
                        _charge: Charged {
                            inbound: ctx.inbound.clone(),
                            bytes: 0,
                        },
                    };
                    if net.send(input).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%to, error = %e, "bad answer: closing connection");
                    DriverCounters::bump(&ctx.counters.bad_connections);
                    return;
                }
            }
        }
    }
}

async fn accept_loop<R: Runtime>(listener: R::Listener, ctx: TaskCtx) {
    loop {
        match R::accept(&listener).await {
            Ok((stream, peer)) => {
                DriverCounters::bump(&ctx.counters.connections_accepted);
                let (kick_tx, kick_rx) = oneshot::channel();
                let admitted = {
                    let mut guard = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
                    let inb = &mut *guard;
                    let id = inb.next_id;
                    inb.next_id += 1;
                    let member = ctx.known.contains(peer.ip());
                    match inb.table.admit(id, peer.ip(), member, Instant::now()) {
                        Ok(evicted) => {
                            for _ in inb.kick(evicted) {
                                DriverCounters::bump(&ctx.counters.evicted_idle_inbound);
                            }
                            inb.kicks.insert(id, (kick_tx, peer));
                            Ok(id)
                        }
                        Err(cause) => Err(cause),
                    }
                };
                match admitted {
                    Ok(id) => {
                        spawn_task::<R>(&ctx, reader::<R>(stream, peer, id, kick_rx, ctx.clone()));
                        // Let the reader take in what already arrived before the next accept
                        // (a burst of accepts would otherwise find every slot fresh).
                        yield_now().await;
                    }
                    Err(cause) => {
                        ctx.counters.refuse(cause, peer);
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                DriverCounters::bump(&ctx.counters.io_errors);
                R::sleep_until(Instant::now() + ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Give the executor one turn (a future pending once, which wakes itself).
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Takes a reader's connection out of the inbound table when the reader ends.
struct InboundGuard(Arc<Mutex<Inbound>>, u64);

impl InboundGuard {
    fn phase(&self, phase: Phase, now: Instant) {
        let mut inb = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inb.table.set_phase(self.1, phase, now);
    }
}

impl Drop for InboundGuard {
    fn drop(&mut self) {
        let mut inb = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inb.table.remove(self.1);
        if let Some((_, peer)) = inb.kicks.remove(&self.1) {
            inb.replies.closed(peer);
        }
    }
}

enum ReadStep {
    Read(std::io::Result<usize>),
    Reply(Reply),
    Deadline,
    Kicked,
}

/// Charge `grow` bytes of connection `id`'s buffer against the inbound budget, closing the
/// partial frames silent longest to make room; when only frames waiting for the pump hold it,
/// wait for room until `deadline` (false then, counted, or when kicked meanwhile: close).
async fn charge<R: Runtime>(
    ctx: &TaskCtx,
    id: u64,
    peer: SocketAddr,
    grow: usize,
    deadline: Instant,
    kick: &mut oneshot::Receiver<()>,
) -> bool {
    loop {
        let result = {
            let mut inb = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
            inb.table
                .charge(id, grow, Instant::now())
                .map(|evicted| inb.kick(evicted))
        };
        match result {
            Ok(victims) => {
                for v in victims {
                    ctx.counters.refuse(Refusal::InboundBudget, v);
                }
                return true;
            }
            Err(cause) if Instant::now() >= deadline => {
                ctx.counters.refuse(cause, peer);
                return false;
            }
            Err(_) => {
                let retry = Instant::now() + BUDGET_RETRY;
                let mut sleep = pin!(R::sleep_until(retry.min(deadline)));
                let kicked = poll_fn(|cx| {
                    if kick.poll_unpin(cx).is_ready() {
                        return Poll::Ready(true);
                    }
                    sleep.as_mut().poll(cx).map(|()| false)
                })
                .await;
                if kicked {
                    return false;
                }
            }
        }
    }
}

/// One inbound connection: split frames and hand them to the pump until the peer closes, a
/// frame misses its deadline, the connection idles or is evicted, or it turns out to carry
/// garbage.
async fn reader<R: Runtime>(
    mut stream: R::Stream,
    peer: SocketAddr,
    id: u64,
    mut kick: oneshot::Receiver<()>,
    ctx: TaskCtx,
) {
    let guard = InboundGuard(ctx.inbound.clone(), id);
    let mut dec = ctx.rules.decoder();
    // HashiCorp profile: answers to this connection's peer come here to be written on it.
    let mut replies = ctx.rules.exchanges().then(|| {
        // Room for the answers and the end of the exchange behind them.
        let (tx, rx) = mpsc::channel(REPLY_QUEUE + 1);
        let mut inb = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
        inb.replies.opened(peer, tx);
        rx
    });
    let bad = Arc::new(AtomicBool::new(false));
    let mut small = [0u8; IDLE_READ];
    let mut big: Vec<u8> = Vec::new();
    let mut net = ctx.net.clone();
    // Set while a frame is in progress: when it must be complete.
    let mut frame_deadline: Option<Instant> = None;
    let mut idle_deadline = Instant::now() + ctx.inbound_idle;
    loop {
        let deadline = frame_deadline.unwrap_or(idle_deadline);
        let buf: &mut [u8] = if frame_deadline.is_some() {
            if big.is_empty() {
                big = vec![0; READ_BUF];
            }
            &mut big
        } else {
            &mut small
        };
        let step = {
            let mut read = pin!(R::read(&mut stream, buf));
            let mut sleep = pin!(R::sleep_until(deadline));
            poll_fn(|cx| {
                if kick.poll_unpin(cx).is_ready() {
                    return Poll::Ready(ReadStep::Kicked);
                }
                if let Some(rx) = replies.as_mut() {
                    if let Poll::Ready(Some(f)) = rx.poll_next_unpin(cx) {
                        return Poll::Ready(ReadStep::Reply(f));
                    }
                }
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(ReadStep::Read(r));
                }
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(ReadStep::Deadline);
                }
                Poll::Pending
            })
            .await
        };
        let n = match step {
            // Counted by the accept task, which evicted it.
            ReadStep::Kicked => return,
            // memberlist handles one message per connection: the exchange is over.
            ReadStep::Reply(Reply::End) => return,
            ReadStep::Reply(Reply::Frame(f)) => {
                let written = timeout::<R, _>(ctx.tcp_timeout, R::write_all(&mut stream, &f.bytes))
                    .await
                    .is_some_and(|r| r.is_ok());
                let report = match (written, f.message) {
                    (true, Some(m)) => Some(NetInput::Written(m)),
                    (true, None) => None,
                    (false, message) => Some(NetInput::SendFailed(peer, message)),
                };
                if let Some(r) = report {
                    let _ = net.send(r).await;
                }
                if !written {
                    return;
                }
                continue;
            }
            ReadStep::Deadline if frame_deadline.is_some() => {
                ctx.counters.refuse(Refusal::FrameDeadline, peer);
                return;
            }
            ReadStep::Deadline => {
                DriverCounters::bump(&ctx.counters.connections_idle_closed);
                return;
            }
            ReadStep::Read(Ok(0)) | ReadStep::Read(Err(_)) => return,
            ReadStep::Read(Ok(n)) => n,
        };
        let now = Instant::now();
        let data = if frame_deadline.is_some() {
            &big[..n]
        } else {
            &small[..n]
        };
        // Room in the inbound budget before the buffer grows.
        let grow = dec.capacity_after(n).saturating_sub(dec.capacity());
        let wait_until = frame_deadline.unwrap_or(now + ctx.tcp_timeout);
        if !charge::<R>(&ctx, id, peer, grow, wait_until, &mut kick).await {
            return;
        }
        dec.push(data);
        let frame_started = frame_deadline.is_none();
        // Every complete frame, and when the one after them started.
        let mut frames = Vec::new();
        let mut deadline = frame_deadline.unwrap_or(now + ctx.tcp_timeout);
        let mut next_deadline = deadline;
        let garbage = loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    frames.push((body, deadline));
                    // Bytes of the next frame came with this one: its deadline starts now.
                    deadline = now + ctx.tcp_timeout;
                    next_deadline = deadline;
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        // What the buffer holds now, and the frames out of it (charged until the pump is done).
        let handed: usize = frames.iter().map(|(b, _)| b.capacity()).sum();
        let accounted = {
            let mut inb = ctx.inbound.lock().unwrap_or_else(|e| e.into_inner());
            inb.table.settle(id, dec.capacity(), handed)
        };
        let frames: Vec<(Vec<u8>, Instant, Charged)> = frames
            .into_iter()
            .map(|(body, deadline)| {
                let bytes = if accounted { body.capacity() } else { 0 };
                let inbound = ctx.inbound.clone();
                (body, deadline, Charged { inbound, bytes })
            })
            .collect();
        // The connection's state before any waiting: everything read is in hand, so closing
        // it between frames loses nothing.
        if dec.buffered() == 0 {
            // Between frames: release the large read buffer, wait with the idle timeout.
            frame_deadline = None;
            big = Vec::new();
            idle_deadline = now + ctx.inbound_idle;
            guard.phase(Phase::Idle, now);
        } else {
            frame_deadline = Some(next_deadline);
            if frame_started || !frames.is_empty() {
                guard.phase(Phase::InFrame, now);
            }
        }
        for (body, deadline, charged) in frames {
            let permit = match ctx.in_flight.try_acquire_arc() {
                Some(p) => p,
                None => match until::<R, _>(deadline, ctx.in_flight.acquire_arc()).await {
                    Some(p) => p,
                    None => {
                        ctx.counters.refuse(Refusal::InFlight, peer);
                        return;
                    }
                },
            };
            let input = NetInput::Frame {
                from: peer,
                body,
                answer: false,
                bad: bad.clone(),
                _permit: permit,
                _charge: charged,
            };
            if net.send(input).await.is_err() {
                return;
            }
        }
        if let Some(e) = garbage {
            if matches!(e, DecodeError::TooLarge { .. }) {
                ctx.counters.refuse(Refusal::FrameTooLarge, peer);
            }
            tracing::debug!(%peer, error = %e, "bad frame: closing connection");
            if !bad.swap(true, Ordering::Relaxed) {
                DriverCounters::bump(&ctx.counters.bad_connections);
            }
            return;
        }
        if bad.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// A handle on a running agent, async flavor: cheap to clone, `Send + Sync`; every operation
/// is a message to the agent's pump task.
///
/// **Dropping the last handle** (of either flavor) without `shutdown` makes the agent leave
/// gracefully and then stop — *if its runtime is still running*: the leave is work the pump
/// task does after the drop. When the runtime has been shut down (or is dropped before the
/// leave is over, e.g. at the end of `main`), the task is gone with it: no leave is sent, the
/// others detect the node as **failed**, and the event stream ends without a final
/// [`Event::Stopped`]. Call [`AgentHandle::shutdown`] before the runtime ends.
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

/// The agent's events, in order, async flavor. Bounded by [`Options::event_capacity`] under
/// the core's one overflow policy ([`rookery_core::EventQueue`]): the node never waits; when
/// the application falls behind, the oldest direct messages go first, membership events are
/// never dropped (only coalesced per member), and an [`Event::Lagged`] comes before the events
/// that follow the gap, saying how many were lost. Its last item is [`Event::Stopped`] with the
/// reason (never dropped), after which it ends (see [`AgentHandle`] for the one case without
/// it). Also a [`futures_util::Stream`].
#[derive(Debug)]
pub struct EventStream {
    rx: crate::stream::EventRx,
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

/// The member list after every membership change, newest wins, async flavor (see
/// [`AgentHandle::watch_members`]). Also a [`futures_util::Stream`] of member lists.
#[derive(Debug)]
pub struct MembersWatch {
    rx: crate::watch::WatchRx,
}

impl MembersWatch {
    watch_operations!(async; .await);

    /// The same watch, blocking flavor ([`crate::blocking::MembersWatch`]), for threads
    /// outside the runtime.
    pub fn into_blocking(self) -> crate::blocking::MembersWatch {
        crate::blocking::MembersWatch { rx: self.rx }
    }
}

impl Stream for MembersWatch {
    type Item = Vec<Member>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Vec<Member>>> {
        self.rx.poll_changed(cx)
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
