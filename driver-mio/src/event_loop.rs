//! The mio event loop: one thread, one `Poll` over the UDP socket, the TCP listener, every TCP
//! connection and a `Waker` for commands. All protocol decisions are the [`Pump`]'s; this
//! module only moves bytes, time and calls, with non-blocking sockets throughout (partial
//! writes resume where they stopped, `WouldBlock` waits for the next readiness edge, socket
//! errors close the connection and report its undelivered frames to the core).
//!
//! The caps are the async drivers' ([`rookery_driver::guard`]): inbound connections are
//! admitted by an [`InboundTable`] (the connection idle longest evicted at a cap, a newcomer
//! refused only when none is idle), each frame must arrive whole within `tcp_timeout` of its
//! first byte, at most `max_outbound` outbound connections exist (the one idle longest is
//! closed for a new destination, else the frame waits in one bounded line for at most
//! `tcp_timeout`, else it fails as a send failure the core hears). Frames are handed to the
//! pump as they are read, so none waits for it (`max_inbound_in_flight` has nothing to cap).
//! The inbound byte budget (`max_inbound_buffered`) is the table's too: before a receive
//! buffer grows, its growth is charged, and the partial frames silent longest are closed to
//! make room ([`Refusal::InboundBudget`]). Frames never wait for the pump here, so room can
//! always be made (the budget is at least `max_stream_message` + 1 MiB).
//!
//! How connections are used follows the wire profile's rule ([`rookery_driver::exchange`],
//! shared with the async drivers): under the native profile an outbound connection carries
//! frames one way and is reused until idle; under the HashiCorp profiles (memberlist's stream
//! semantics) each outbound connection carries one message, then the peer's answers (handed to
//! the pump as the destination's) until the peer closes it or `tcp_timeout` passes, after which
//! the destination's next frame gets a fresh connection; and an answer to a peer that asked on
//! an inbound connection still open is written back on it (at most
//! [`rookery_driver::exchange::REPLY_QUEUE`] waiting; a full queue or a closed connection fails
//! the answer as a send failure the core hears), and closed once the message it brought has
//! been handled and its answers written (as memberlist closes it).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use rookery_core::wire::{DecodeError, FrameDecoder};
use rookery_core::{MessageId, TransmitKind};
use rookery_driver::exchange::{ReplyRoutes, StreamRules, REPLY_QUEUE};
use rookery_driver::guard::{pick_idle, InboundTable, Phase};
use rookery_driver::{CommandReceiver, DriverCounters, Options, OutFrame, Pump, Refusal};

pub(crate) const UDP: Token = Token(0);
pub(crate) const LISTENER: Token = Token(1);
pub(crate) const WAKER: Token = Token(2);
const FIRST_CONN: usize = 3;

/// Datagrams held while the UDP socket's send buffer is full; beyond it they are dropped and
/// counted (UDP is lossy anyway).
const UDP_QUEUE: usize = 1024;
/// Reads (or datagrams, or accepts) handled per source per loop turn before the loop looks at
/// its timers again; a source with more input is revisited at once.
const BUDGET: usize = 64;
const READ_BUF: usize = 16 * 1024;

enum ConnState {
    Connecting { deadline: Instant },
    Connected,
}

struct Outbound {
    to: SocketAddr,
    state: ConnState,
    queue: VecDeque<OutFrame>,
    /// Bytes of `queue.front()` already written.
    offset: usize,
    /// When the frame being written must be done.
    write_deadline: Option<Instant>,
    last_active: Instant,
    /// At least one frame went out whole on this connection (so a failure may be the peer's
    /// idle close, worth one retry on a fresh connection). Never set under the HashiCorp
    /// profiles, whose connections carry one message each.
    used: bool,
    /// HashiCorp profiles: splits the peer's answers on this connection.
    answers: Option<FrameDecoder>,
    /// HashiCorp profiles: the message went out whole and the peer's answers are read until
    /// this instant (or until it closes the connection); nothing more is written on it.
    answer_deadline: Option<Instant>,
}

struct Inbound {
    peer: SocketAddr,
    dec: FrameDecoder,
    last_active: Instant,
    /// While a frame is in progress: when it must be complete.
    frame_deadline: Option<Instant>,
    /// HashiCorp profiles: answers to this connection's peer, written back on it (at most
    /// [`REPLY_QUEUE`]).
    replies: VecDeque<OutFrame>,
    /// Bytes of `replies.front()` already written.
    reply_offset: usize,
    /// When the answer being written must be done.
    reply_deadline: Option<Instant>,
    /// HashiCorp profiles: the message it brought has been handled and every answer queued;
    /// it closes once they are written ([`rookery_driver::exchange::Reply::End`]).
    ending: bool,
}

enum Role {
    Out(Outbound),
    In(Inbound),
}

struct Conn {
    stream: TcpStream,
    role: Role,
}

/// Settings the loop needs besides the pump.
pub(crate) struct LoopConfig {
    pub(crate) tcp_timeout: Duration,
    /// How the wire profile uses connections.
    pub(crate) rules: StreamRules,
    pub(crate) options: Options,
}

pub(crate) struct EventLoop {
    pub(crate) pump: Pump,
    pub(crate) poll: Poll,
    pub(crate) udp: UdpSocket,
    pub(crate) listener: TcpListener,
    pub(crate) cmds: CommandReceiver,
    pub(crate) counters: Arc<DriverCounters>,
    pub(crate) cfg: LoopConfig,
    conns: HashMap<Token, Conn>,
    outbound: HashMap<SocketAddr, Token>,
    inbound: InboundTable<Token>,
    /// HashiCorp profiles: the open inbound connection an answer to each peer goes back on.
    replies: ReplyRoutes<Token>,
    /// Frames to new destinations waiting for an outbound slot: (to, frame, queued at).
    waiting: VecDeque<(SocketAddr, OutFrame, Instant)>,
    next_token: usize,
    udp_queue: VecDeque<(SocketAddr, Bytes)>,
    /// Reliable sends that failed, to report to the pump once the current drain is over.
    failures: Vec<(SocketAddr, Option<MessageId>)>,
    /// Direct messages whose frames were written whole, to report to the pump.
    written: Vec<MessageId>,
    /// Sources that still had input when their budget ran out.
    again: Vec<Token>,
    buf: Vec<u8>,
}

/// Why a connection's deadline closes it.
enum Expired {
    /// A frame from this peer did not arrive whole in time.
    Frame(SocketAddr),
    /// Idle too long.
    Idle,
    /// Connect or write timed out.
    Failed,
    /// HashiCorp profiles: the time for the peer's answers is over.
    Answered,
}

enum Closed {
    /// Closed without fault (idle, peer done).
    Quietly,
    /// Failed: report what was not delivered (outbound) or count it (inbound garbage).
    Failed,
    /// Inbound connection carried garbage.
    Garbage,
    /// HashiCorp profiles: an outbound connection's exchange is over (the peer closed it after
    /// answering, or the time for answers passed); frames still queued for the destination go
    /// out on a fresh connection.
    Answered,
}

impl EventLoop {
    pub(crate) fn new(
        pump: Pump,
        poll: Poll,
        udp: UdpSocket,
        listener: TcpListener,
        cmds: CommandReceiver,
        cfg: LoopConfig,
    ) -> EventLoop {
        let inbound =
            InboundTable::new(cfg.options.max_inbound, cfg.options.max_inbound_per_source)
                .with_budget(cfg.options.inbound_budget(cfg.rules.max_stream()));
        let replies = ReplyRoutes::new(cfg.rules);
        EventLoop {
            counters: pump.counters().clone(),
            pump,
            poll,
            udp,
            listener,
            cmds,
            cfg,
            conns: HashMap::new(),
            outbound: HashMap::new(),
            inbound,
            replies,
            waiting: VecDeque::new(),
            next_token: FIRST_CONN,
            udp_queue: VecDeque::new(),
            failures: Vec::new(),
            written: Vec::new(),
            again: Vec::new(),
            buf: vec![0; rookery_core::wire::MAX_DATAGRAM],
        }
    }

    /// Run until shutdown; returns once every connection and socket is closed and the
    /// shutdown callers were answered.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            self.commands();
            self.flush();
            if self.pump.should_stop() {
                break;
            }
            let now = Instant::now();
            let timeout = if self.again.is_empty() {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "poll failed: stopping");
                    break;
                }
            }
            let mut ready: Vec<(Token, bool, bool)> = events
                .iter()
                .map(|e| {
                    let r = e.is_readable() || e.is_read_closed() || e.is_error();
                    let w = e.is_writable() || e.is_write_closed() || e.is_error();
                    (e.token(), r, w)
                })
                .collect();
            for t in self.again.drain(..) {
                ready.push((t, true, false));
            }
            for (token, readable, writable) in ready {
                match token {
                    WAKER => {}
                    UDP => {
                        if writable {
                            self.flush_udp_queue();
                        }
                        if readable {
                            self.udp_readable();
                        }
                    }
                    LISTENER => self.accept(),
                    t => self.conn_ready(t, readable, writable),
                }
                self.flush();
                // A turn with many busy connections can take a while: the core's timer (the
                // probe cycle, suspicion expiry) fires between them, never only after them.
                self.core_timer_if_due();
            }
            self.timers();
        }
        self.teardown();
    }

    fn teardown(mut self) {
        // Best effort: datagrams still queued (the last leave gossip) go out now.
        while let Some(t) = self.pump.poll_transmit() {
            if t.kind == TransmitKind::Datagram {
                let _ = self.udp.send_to(&t.payload, t.to);
            }
        }
        for (_, mut c) in self.conns.drain() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        let EventLoop {
            pump,
            udp,
            listener,
            mut cmds,
            ..
        } = self;
        drop(udp);
        drop(listener);
        rookery_driver::finish(pump, &mut cmds);
    }

    fn commands(&mut self) {
        loop {
            match self.cmds.try_recv() {
                Ok(cmd) => {
                    self.pump.command(cmd);
                    self.flush();
                }
                Err(e) if !e.is_closed() => return,
                Err(_) => {
                    // Leave gracefully, then stop (once: later calls do nothing).
                    self.pump.handles_gone();
                    return;
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.pump.deadline();
        let mut consider = |d: Instant| {
            next = Some(next.map_or(d, |n: Instant| n.min(d)));
        };
        for c in self.conns.values() {
            for d in self.conn_deadlines(c).into_iter().flatten() {
                consider(d);
            }
        }
        next
    }

    fn conn_deadlines(&self, c: &Conn) -> [Option<Instant>; 2] {
        match &c.role {
            Role::In(i) => [
                Some(
                    i.frame_deadline
                        .unwrap_or(i.last_active + self.cfg.options.inbound_idle_timeout()),
                ),
                i.reply_deadline,
            ],
            Role::Out(o) if o.answer_deadline.is_some() => [o.answer_deadline, None],
            Role::Out(o) => match o.state {
                ConnState::Connecting { deadline } => [Some(deadline), None],
                ConnState::Connected if o.queue.is_empty() => {
                    [Some(o.last_active + self.cfg.options.idle_timeout), None]
                }
                ConnState::Connected => [o.write_deadline, None],
            },
        }
    }

    /// Fire the core's timer if it is due.
    fn core_timer_if_due(&mut self) {
        if self.pump.deadline().is_some_and(|d| d <= Instant::now()) {
            self.pump.timer();
            self.flush();
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        self.core_timer_if_due();
        let mut expired = Vec::new();
        for (&t, c) in &self.conns {
            if self
                .conn_deadlines(c)
                .into_iter()
                .flatten()
                .any(|d| d <= now)
            {
                let why = match &c.role {
                    Role::In(i) if i.reply_deadline.is_some_and(|d| d <= now) => Expired::Failed,
                    Role::In(i) if i.frame_deadline.is_some() => Expired::Frame(i.peer),
                    Role::In(_) => Expired::Idle,
                    Role::Out(o) if o.answer_deadline.is_some() => Expired::Answered,
                    Role::Out(o)
                        if matches!(o.state, ConnState::Connected) && o.queue.is_empty() =>
                    {
                        Expired::Idle
                    }
                    Role::Out(_) => Expired::Failed,
                };
                expired.push((t, why));
            }
        }
        for (t, why) in expired {
            if let Expired::Frame(peer) = why {
                self.counters.refuse(Refusal::FrameDeadline, peer);
                self.close(t, Closed::Quietly);
            } else if matches!(why, Expired::Idle) {
                DriverCounters::bump(&self.counters.connections_idle_closed);
                self.close(t, Closed::Quietly);
            } else if matches!(why, Expired::Answered) {
                self.close(t, Closed::Answered);
            } else {
                tracing::debug!("connect or write timed out");
                self.close(t, Closed::Failed);
            }
        }
        self.flush();
    }

    /// Drain the pump's transmits onto the sockets, and report failed reliable sends back
    /// into the pump until nothing is left.
    fn flush(&mut self) {
        loop {
            while let Some(t) = self.pump.poll_transmit() {
                match t.kind {
                    TransmitKind::Datagram => self.send_datagram(t.to, t.payload),
                    TransmitKind::Reliable => {
                        let frame = OutFrame {
                            bytes: t.payload,
                            message: t.message,
                        };
                        self.send_reliable(t.to, frame)
                    }
                }
            }
            if !self.waiting.is_empty() {
                self.serve_waiting();
            }
            for m in std::mem::take(&mut self.written) {
                self.pump.message_written(m);
            }
            if self.failures.is_empty() {
                return;
            }
            for (to, message) in std::mem::take(&mut self.failures) {
                self.pump.send_failure(to, message);
            }
        }
    }

    // ---- UDP ----

    fn send_datagram(&mut self, to: SocketAddr, data: Bytes) {
        if self.udp_queue.is_empty() {
            match self.udp.send_to(&data, to) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(%to, error = %e, "datagram not sent");
                    DriverCounters::bump(&self.counters.datagram_send_errors);
                    return;
                }
            }
        }
        if self.udp_queue.len() >= UDP_QUEUE {
            DriverCounters::bump(&self.counters.datagram_send_errors);
            return;
        }
        self.udp_queue.push_back((to, data));
    }

    fn flush_udp_queue(&mut self) {
        while let Some((to, data)) = self.udp_queue.front() {
            match self.udp.send_to(data, *to) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => DriverCounters::bump(&self.counters.datagram_send_errors),
            }
            self.udp_queue.pop_front();
        }
    }

    fn udp_readable(&mut self) {
        for _ in 0..BUDGET {
            match self.udp.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.pump.datagram(from, &self.buf[..n]);
                    self.flush();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    DriverCounters::bump(&self.counters.io_errors);
                }
            }
        }
        self.again.push(UDP);
    }

    // ---- TCP ----

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    fn accept(&mut self) {
        for _ in 0..BUDGET {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    DriverCounters::bump(&self.counters.connections_accepted);
                    let t = self.token();
                    let member = self.pump.known_peers().contains(peer.ip());
                    match self.inbound.admit(t, peer.ip(), member, Instant::now()) {
                        Ok(evicted) => {
                            for e in evicted {
                                DriverCounters::bump(&self.counters.evicted_idle_inbound);
                                self.close(e, Closed::Quietly);
                            }
                        }
                        Err(cause) => {
                            self.counters.refuse(cause, peer);
                            continue;
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    // Answers are written back on the connection under the HashiCorp profiles.
                    let interest = if self.cfg.rules.exchanges() {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    if let Err(e) = self.poll.registry().register(&mut stream, t, interest) {
                        tracing::warn!(error = %e, "cannot register connection");
                        DriverCounters::bump(&self.counters.io_errors);
                        self.inbound.remove(t);
                        continue;
                    }
                    let role = Role::In(Inbound {
                        peer,
                        dec: self.cfg.rules.decoder(),
                        last_active: Instant::now(),
                        frame_deadline: None,
                        replies: VecDeque::new(),
                        reply_offset: 0,
                        reply_deadline: None,
                        ending: false,
                    });
                    self.conns.insert(t, Conn { stream, role });
                    self.replies.opened(peer, t);
                    // Data may already be waiting.
                    self.again.push(t);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors and the like: try again on the next turn.
                    tracing::warn!(error = %e, "accept failed");
                    DriverCounters::bump(&self.counters.io_errors);
                    return;
                }
            }
        }
        self.again.push(LISTENER);
    }

    /// Queue a frame for `to`: protocol frames are bounded by `send_queue` per connection and
    /// in the waiting line; message frames only by the messages in flight (see
    /// [`rookery_driver::delivery`]).
    fn send_reliable(&mut self, to: SocketAddr, frame: OutFrame) {
        // HashiCorp profiles: an answer to a peer that asked on a connection still open goes
        // back on it.
        if let Some(t) = self.replies.route(to).copied() {
            self.reply(t, frame);
            return;
        }
        let protocol = frame.message.is_none();
        // A connection the peer has closed (it restarted, or shut down) is noticed before the
        // frame is queued on it: a frame is reported written only on one still open. (Under
        // the HashiCorp profiles a connection is never reused: it is read for answers anyway.)
        if let Some(&t) = self
            .outbound
            .get(&to)
            .filter(|_| !self.cfg.rules.exchanges())
        {
            if matches!(self.conns.get(&t), Some(Conn { role: Role::Out(o), .. }) if matches!(o.state, ConnState::Connected))
            {
                self.read_out(t);
            }
        }
        if let Some(&t) = self.outbound.get(&to) {
            if let Some(Conn {
                role: Role::Out(o), ..
            }) = self.conns.get_mut(&t)
            {
                let queued = o.queue.iter().filter(|f| f.message.is_none()).count();
                if protocol && queued >= self.cfg.options.send_queue.max(1) {
                    DriverCounters::bump(&self.counters.send_queue_full);
                    self.failures.push((to, None));
                    return;
                }
                o.queue.push_back(frame);
                self.write_out(t);
                return;
            }
        }
        let in_line = self.waiting.iter().any(|(d, _, _)| *d == to);
        let protocol_in_line = |w: &VecDeque<(SocketAddr, OutFrame, Instant)>| {
            w.iter().filter(|(_, f, _)| f.message.is_none()).count()
        };
        if !in_line && self.free_outbound_slot() {
            self.open(to, VecDeque::from([frame]));
        } else if !protocol || protocol_in_line(&self.waiting) < self.cfg.options.send_queue.max(1)
        {
            self.waiting.push_back((to, frame, Instant::now()));
        } else {
            self.counters.refuse(Refusal::Outbound, to);
            self.failures.push((to, None));
        }
    }

    /// Queue an answer on inbound connection `t` (HashiCorp profiles) and write what the
    /// socket takes; a full queue fails it (counted in `send_queue_full`).
    fn reply(&mut self, t: Token, frame: OutFrame) {
        let Some(Conn {
            role: Role::In(i), ..
        }) = self.conns.get_mut(&t)
        else {
            return;
        };
        if i.replies.len() >= REPLY_QUEUE {
            // More answers than anyone asks for on one connection.
            DriverCounters::bump(&self.counters.send_queue_full);
            self.failures.push((i.peer, frame.message));
            return;
        }
        i.replies.push_back(frame);
        self.write_in(t);
    }

    /// Write as many of an inbound connection's answers as the socket takes (HashiCorp
    /// profiles); a failed write closes the connection, failing the answers not yet written.
    fn write_in(&mut self, t: Token) {
        let Some(Conn {
            stream,
            role: Role::In(i),
        }) = self.conns.get_mut(&t)
        else {
            return;
        };
        let now = Instant::now();
        let expire = now + self.cfg.tcp_timeout;
        let result = loop {
            let step = write_front(
                stream,
                &mut i.replies,
                &mut i.reply_offset,
                &mut i.reply_deadline,
                expire,
            );
            match step {
                Ok(Wrote::Whole(f)) => {
                    i.last_active = now;
                    if let Some(m) = f.message {
                        self.written.push(m);
                    }
                }
                Ok(Wrote::Part) => i.last_active = now,
                Ok(Wrote::Nothing) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %i.peer, error = %e, "answer not written");
            self.close(t, Closed::Failed);
        } else if i.ending && i.replies.is_empty() {
            // The exchange is over (memberlist handles one message per connection).
            self.close(t, Closed::Quietly);
        }
    }

    /// Make sure one more outbound connection fits under `max_outbound`, closing the one idle
    /// longest if needed. False when every one is busy.
    fn free_outbound_slot(&mut self) -> bool {
        if self.outbound.len() < self.cfg.options.max_outbound.max(1) {
            return true;
        }
        let idle = pick_idle(
            self.outbound
                .values()
                .filter_map(|t| match self.conns.get(t) {
                    Some(Conn {
                        role: Role::Out(o), ..
                    }) if matches!(o.state, ConnState::Connected)
                        && o.queue.is_empty()
                        && o.answer_deadline.is_none() =>
                    {
                        Some((*t, o.last_active))
                    }
                    _ => None,
                }),
        );
        match idle {
            Some(t) => {
                DriverCounters::bump(&self.counters.evicted_idle_outbound);
                self.close(t, Closed::Quietly);
                true
            }
            None => false,
        }
    }

    /// Open connections for waiting frames while slots free up, in order; fail the ones that
    /// waited `tcp_timeout`.
    fn serve_waiting(&mut self) {
        let now = Instant::now();
        while let Some(&(to, _, queued)) = self.waiting.front() {
            if now.saturating_duration_since(queued) >= self.cfg.tcp_timeout {
                let message = self.waiting.pop_front().and_then(|(_, f, _)| f.message);
                self.counters.refuse(Refusal::Outbound, to);
                self.failures.push((to, message));
                continue;
            }
            if !self.outbound.contains_key(&to) && !self.free_outbound_slot() {
                return;
            }
            let mut mine = VecDeque::new();
            self.waiting.retain(|(d, f, _)| {
                if *d == to {
                    mine.push_back(f.clone());
                    false
                } else {
                    true
                }
            });
            match self.outbound.get(&to) {
                Some(_) => {
                    for f in mine {
                        self.send_reliable(to, f);
                    }
                }
                None => self.open(to, mine),
            }
        }
    }

    /// Start a connection to `to` carrying `queue`.
    fn open(&mut self, to: SocketAddr, queue: VecDeque<OutFrame>) {
        let mut stream = match TcpStream::connect(to) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%to, error = %e, "connect failed");
                self.failures.extend(queue.iter().map(|f| (to, f.message)));
                return;
            }
        };
        let t = self.token();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
        {
            tracing::warn!(error = %e, "cannot register connection");
            DriverCounters::bump(&self.counters.io_errors);
            self.failures.extend(queue.iter().map(|f| (to, f.message)));
            return;
        }
        let now = Instant::now();
        let role = Role::Out(Outbound {
            to,
            state: ConnState::Connecting {
                deadline: now + self.cfg.tcp_timeout,
            },
            queue,
            offset: 0,
            write_deadline: None,
            last_active: now,
            used: false,
            answers: self.cfg.rules.exchanges().then(|| self.cfg.rules.decoder()),
            answer_deadline: None,
        });
        self.conns.insert(t, Conn { stream, role });
        self.outbound.insert(to, t);
    }

    fn conn_ready(&mut self, t: Token, readable: bool, writable: bool) {
        let (inbound, connecting) = match self.conns.get(&t).map(|c| &c.role) {
            None => return,
            Some(Role::In(_)) => (true, false),
            Some(Role::Out(o)) => (false, matches!(o.state, ConnState::Connecting { .. })),
        };
        if inbound {
            if writable {
                self.write_in(t);
            }
            if readable {
                self.read_in(t);
            }
            return;
        }
        if connecting {
            let Some(conn) = self.conns.get_mut(&t) else {
                return;
            };
            match connect_result(&conn.stream) {
                Ok(true) => {
                    let _ = conn.stream.set_nodelay(true);
                    if let Role::Out(o) = &mut conn.role {
                        o.state = ConnState::Connected;
                        o.last_active = Instant::now();
                    }
                    DriverCounters::bump(&self.counters.connections_opened);
                }
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "connect failed");
                    self.close(t, Closed::Failed);
                    return;
                }
            }
        }
        if readable && !self.read_out(t) {
            return;
        }
        self.write_out(t);
    }

    /// Read what the peer sent on our outbound connection (nothing, normally; under the
    /// HashiCorp profiles its answers): returns false if the connection ended.
    fn read_out(&mut self, t: Token) -> bool {
        if self.cfg.rules.exchanges() {
            return self.read_answers(t);
        }
        let Some(conn) = self.conns.get_mut(&t) else {
            return false;
        };
        let mut scratch = [0u8; 256];
        loop {
            match conn.stream.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // The peer closed (its idle close, or it went away).
        let pending = matches!(&conn.role, Role::Out(o) if !o.queue.is_empty());
        self.close(
            t,
            if pending {
                Closed::Failed
            } else {
                Closed::Quietly
            },
        );
        false
    }

    /// HashiCorp profiles: read the peer's answers on our outbound connection and hand each
    /// to the pump as the destination's; returns false if the connection ended. The peer
    /// closing it ends the exchange once the message went out whole (frames still queued get
    /// a fresh connection), and fails the message before that; garbage ends it too.
    fn read_answers(&mut self, t: Token) -> bool {
        let mut frames = Vec::new();
        let mut again = false;
        let (to, answered, mut ended) = {
            let Some(Conn {
                stream,
                role: Role::Out(o),
            }) = self.conns.get_mut(&t)
            else {
                return false;
            };
            let Some(dec) = o.answers.as_mut() else {
                return true;
            };
            let mut buf = [0u8; READ_BUF];
            let mut reads = 0;
            let ended = loop {
                if reads == BUDGET {
                    again = true;
                    break false;
                }
                reads += 1;
                match stream.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => {
                        dec.push(&buf[..n]);
                        if let Err(e) = split(dec, &mut frames) {
                            tracing::debug!(to = %o.to, error = %e, "bad answer: closing");
                            DriverCounters::bump(&self.counters.bad_connections);
                            break true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            (o.to, o.answer_deadline.is_some(), ended)
        };
        for body in frames {
            if !self.pump.answer_frame(to, &body) {
                DriverCounters::bump(&self.counters.bad_connections);
                ended = true;
                break;
            }
        }
        if !ended {
            if again {
                self.again.push(t);
            }
            return true;
        }
        // Over once the message went out whole; before that, the message failed.
        let how = if answered {
            Closed::Answered
        } else {
            Closed::Failed
        };
        self.close(t, how);
        false
    }

    /// Write as much of the queue as the socket takes (under the HashiCorp profiles, the
    /// connection's one message).
    fn write_out(&mut self, t: Token) {
        let Some(Conn {
            stream,
            role: Role::Out(o),
        }) = self.conns.get_mut(&t)
        else {
            return;
        };
        if !matches!(o.state, ConnState::Connected) || o.answer_deadline.is_some() {
            return;
        }
        let now = Instant::now();
        let expire = now + self.cfg.tcp_timeout;
        let result = loop {
            if o.answer_deadline.is_some() {
                break Ok(());
            }
            match write_front(
                stream,
                &mut o.queue,
                &mut o.offset,
                &mut o.write_deadline,
                expire,
            ) {
                Ok(Wrote::Whole(f)) => {
                    o.last_active = now;
                    if let Some(m) = f.message {
                        self.written.push(m);
                    }
                    if o.answers.is_some() {
                        // One message per connection: now its answers.
                        o.answer_deadline = Some(expire);
                    } else {
                        o.used = true;
                    }
                }
                Ok(Wrote::Part) => o.last_active = now,
                Ok(Wrote::Nothing) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            tracing::debug!(to = %o.to, error = %e, "write failed");
            self.close(t, Closed::Failed);
        }
    }

    fn read_in(&mut self, t: Token) {
        let mut outcome = None;
        let mut frames = Vec::new();
        let mut again = false;
        // Partial frames closed to make room in the byte budget.
        let mut victims = Vec::new();
        {
            let Some(Conn {
                stream,
                role: Role::In(i),
            }) = self.conns.get_mut(&t)
            else {
                return;
            };
            let mut buf = [0u8; READ_BUF];
            let mut reads = 0;
            while outcome.is_none() {
                if reads == BUDGET {
                    again = true;
                    break;
                }
                reads += 1;
                match stream.read(&mut buf) {
                    Ok(0) => outcome = Some(Closed::Quietly),
                    Ok(n) => {
                        let now = Instant::now();
                        i.last_active = now;
                        let grow = i.dec.capacity_after(n).saturating_sub(i.dec.capacity());
                        match self.inbound.charge(t, grow, now) {
                            Ok(closed) => victims.extend(closed),
                            Err(cause) => {
                                // Only when the budget is smaller than this one frame.
                                self.counters.refuse(cause, i.peer);
                                outcome = Some(Closed::Quietly);
                                break;
                            }
                        }
                        i.dec.push(&buf[..n]);
                        let started = i.frame_deadline.is_none();
                        let mut deadline = i.frame_deadline.unwrap_or(now + self.cfg.tcp_timeout);
                        loop {
                            match i.dec.next_frame() {
                                Ok(Some(body)) => {
                                    frames.push(body);
                                    // The next frame's bytes came with it: its deadline
                                    // starts now.
                                    deadline = now + self.cfg.tcp_timeout;
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!(peer = %i.peer, error = %e, "bad frame");
                                    if matches!(e, DecodeError::TooLarge { .. }) {
                                        self.counters.refuse(Refusal::FrameTooLarge, i.peer);
                                    }
                                    outcome = Some(Closed::Garbage);
                                    break;
                                }
                            }
                        }
                        // Frames go to the pump (and are dropped) before the next read.
                        self.inbound.settle(t, i.dec.capacity(), 0);
                        if i.dec.buffered() == 0 {
                            i.frame_deadline = None;
                            self.inbound.set_phase(t, Phase::Idle, now);
                        } else {
                            i.frame_deadline = Some(deadline);
                            if started {
                                self.inbound.set_phase(t, Phase::InFrame, now);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => outcome = Some(Closed::Quietly),
                }
            }
            let peer = i.peer;
            for v in victims {
                // Out of the table already: count and close.
                if let Some(Conn {
                    role: Role::In(vi), ..
                }) = self.conns.get(&v)
                {
                    self.counters.refuse(Refusal::InboundBudget, vi.peer);
                }
                self.close(v, Closed::Quietly);
            }
            let handled = !frames.is_empty();
            for body in frames {
                if !self.pump.frame(peer, &body) {
                    outcome = Some(Closed::Garbage);
                    break;
                }
            }
            if handled && self.cfg.rules.exchanges() {
                // Its answers are queued by the flush below: end the exchange behind them.
                if let Some(Conn {
                    role: Role::In(i), ..
                }) = self.conns.get_mut(&t)
                {
                    i.ending = true;
                }
            }
        }
        self.flush();
        match outcome {
            Some(how) => self.close(t, how),
            None if self.answered(t) => self.close(t, Closed::Quietly),
            None if again => self.again.push(t),
            None => {}
        }
    }

    /// Whether inbound connection `t` has ended its exchange: its message handled and every
    /// answer written.
    fn answered(&self, t: Token) -> bool {
        matches!(self.conns.get(&t), Some(Conn { role: Role::In(i), .. }) if i.ending && i.replies.is_empty())
    }

    fn close(&mut self, t: Token, how: Closed) {
        let Some(mut conn) = self.conns.remove(&t) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        drop(conn.stream);
        match conn.role {
            Role::In(i) => {
                self.inbound.remove(t);
                if self.replies.route(i.peer).is_some_and(|r| *r == t) {
                    self.replies.closed(i.peer);
                }
                if matches!(how, Closed::Garbage) {
                    DriverCounters::bump(&self.counters.bad_connections);
                }
                // Answers the connection can no longer carry (a fresh connection to the
                // peer's port would reach nobody).
                self.failures
                    .extend(i.replies.iter().map(|f| (i.peer, f.message)));
            }
            Role::Out(o) => {
                if self.outbound.get(&o.to) == Some(&t) {
                    self.outbound.remove(&o.to);
                }
                if o.queue.is_empty() {
                    return;
                }
                let connected = matches!(o.state, ConnState::Connected);
                if matches!(how, Closed::Answered) {
                    // The next message to this destination, on a connection of its own.
                    self.open(o.to, o.queue);
                } else if matches!(how, Closed::Failed) && connected && o.used {
                    // A reused connection failed: maybe the peer closed it while idle. One
                    // fresh connection gets the frames not yet fully written.
                    self.open(o.to, o.queue);
                } else {
                    self.failures
                        .extend(o.queue.iter().map(|f| (o.to, f.message)));
                }
            }
        }
    }
}

/// Move every complete message in `dec` to `frames`; an error when the stream is garbage (or
/// declares a message larger than the limit).
fn split(dec: &mut FrameDecoder, frames: &mut Vec<Vec<u8>>) -> Result<(), DecodeError> {
    while let Some(body) = dec.next_frame()? {
        frames.push(body);
    }
    Ok(())
}

/// Whether a non-blocking connect finished: `Ok(true)` connected, `Ok(false)` still in
/// progress, `Err` failed.
fn connect_result(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// What one [`write_front`] did.
enum Wrote {
    /// The front frame went out whole (it is off the queue).
    Whole(OutFrame),
    /// Part of it went out.
    Part,
    /// Nothing: the socket takes no more now, or nothing is queued.
    Nothing,
}

/// Write what `stream` takes of the front frame of a connection's queue (`offset` bytes of it
/// already out), inbound answers and outbound frames alike. The frame's write deadline is set
/// to `expire` when it starts and cleared when it is done or nothing is queued.
fn write_front(
    stream: &mut TcpStream,
    frames: &mut VecDeque<OutFrame>,
    offset: &mut usize,
    deadline: &mut Option<Instant>,
    expire: Instant,
) -> io::Result<Wrote> {
    let Some(front) = frames.front() else {
        *deadline = None;
        return Ok(Wrote::Nothing);
    };
    deadline.get_or_insert(expire);
    loop {
        match stream.write(&front.bytes[*offset..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => {
                *offset += n;
                if *offset < front.bytes.len() {
                    return Ok(Wrote::Part);
                }
                *offset = 0;
                *deadline = None;
                let whole = frames.pop_front().expect("the front frame");
                return Ok(Wrote::Whole(whole));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Wrote::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
