//! The application's side of every agent, whatever drives it: the channels between the
//! handles and the event loop, and every handle operation written once for both flavors.
//!
//! Every driver offers one API shape (see the crate docs): an `AgentHandle`, an `EventStream`
//! and the `QueryAnswers` of each query, in an async flavor ([`crate::asynch`], used by
//! rookery-tokio and rookery-async-std) and a blocking one ([`crate::blocking`], used by
//! rookery-mio, and by any async agent through `into_blocking`). Both flavors are the same
//! structs around the same channels; only `.await` versus blocking differs, and the macros
//! below write each method once for both, so the two shapes cannot drift apart.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use rookery_core::{Event, Member};

use crate::error::{AgentError, TryRecvError};
use crate::options::Options;
use crate::pump::{AnswerSink, Command, Delivery, EventSink, Pump, QueryAnswer, Reply};
use crate::stream::{event_stream, EventRx};

/// The event loop's end of the command channel: every handle operation arrives here as one
/// [`Command`] for [`crate::Pump::command`]. `try_recv` tells an empty channel from one whose
/// handles are all gone (the agent should then stop).
pub type CommandReceiver = mpsc::UnboundedReceiver<Command>;

/// The event loop's ends of a new agent's channels (see [`channels`]).
pub struct LoopEnds {
    /// Where the [`crate::Pump`] puts events: give it to [`crate::Pump::new`].
    pub sink: EventSink,
    /// Where the handles' commands arrive.
    pub commands: CommandReceiver,
}

impl fmt::Debug for LoopEnds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopEnds").finish_non_exhaustive()
    }
}

/// The application's ends of a new agent's channels (see [`channels`]); they become the handle
/// and the event stream once the node exists.
#[derive(Debug)]
pub struct HandleEnds {
    cmds: mpsc::UnboundedSender<Command>,
    events: EventRx,
    query_capacity: usize,
    room: Arc<async_lock::Semaphore>,
    room_limit: usize,
}

/// Make the channels between a new agent's handles and its event loop: an unbounded command
/// channel (commands are few, and a handle must never lose one) and the event stream, bounded
/// by [`Options::event_capacity`] under the core's one overflow policy
/// ([`rookery_core::EventQueue`]: the node never waits for the application; the oldest direct
/// messages go first, membership events and the final [`Event::Stopped`] are never dropped,
/// and an [`Event::Lagged`] in the stream says how many were lost).
pub fn channels(options: &Options) -> (HandleEnds, LoopEnds) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded();
    let (mut ev_tx, ev_rx) = event_stream(options.event_capacity);
    let sink: EventSink = Box::new(move |e| ev_tx.push(e));
    let ends = HandleEnds {
        cmds: cmd_tx,
        events: ev_rx,
        query_capacity: options.query_capacity.max(1),
        room: crate::delivery::room(options.max_messages_in_flight),
        room_limit: options.max_messages_in_flight.max(1),
    };
    (
        ends,
        LoopEnds {
            sink,
            commands: cmd_rx,
        },
    )
}

impl HandleEnds {
    /// The link every clone of the handle shares; `me` is the node as it started.
    pub(crate) fn link(
        self,
        me: &Member,
        wake: Option<Box<dyn Fn() + Send + Sync>>,
        thread: Option<JoinHandle<()>>,
    ) -> (Arc<Link>, EventRx) {
        let link = Link {
            cmds: Some(self.cmds),
            wake,
            thread: Mutex::new(thread),
            addr: me.addr,
            name: Arc::from(&*me.name),
            query_capacity: self.query_capacity,
            room_limit: self.room_limit,
            room: self.room,
        };
        (Arc::new(link), self.events)
    }

    /// The blocking handle and event stream of an agent whose event loop runs on `thread`
    /// (joined by [`crate::blocking::AgentHandle::shutdown`]) and must be woken with `wake`
    /// after each command is queued. `me` is the node as it started.
    pub fn blocking(
        self,
        me: &Member,
        wake: impl Fn() + Send + Sync + 'static,
        thread: JoinHandle<()>,
    ) -> (crate::blocking::AgentHandle, crate::blocking::EventStream) {
        let (link, rx) = self.link(me, Some(Box::new(wake)), Some(thread));
        (
            crate::blocking::AgentHandle { link },
            crate::blocking::EventStream { rx },
        )
    }
}

/// What every clone of one agent's handle shares: the command sender and what the handle
/// reports without asking the event loop. When the last clone is dropped, the command channel
/// closes and the agent leaves, then stops ([`crate::Pump::handles_gone`]).
pub(crate) struct Link {
    /// `Some` until dropped (taken first so that the loop, once woken, sees it closed).
    cmds: Option<mpsc::UnboundedSender<Command>>,
    /// Wakes an event loop that does not watch the command channel itself (mio).
    wake: Option<Box<dyn Fn() + Send + Sync>>,
    /// The event loop's own thread, joined after shutdown (mio).
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) addr: SocketAddr,
    pub(crate) name: Arc<str>,
    query_capacity: usize,
    /// Room for direct messages in flight (see [`crate::delivery`]).
    pub(crate) room: Arc<async_lock::Semaphore>,
    /// Its size.
    pub(crate) room_limit: usize,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cmds = None;
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

impl Link {
    /// Queue the command `make` builds; its answer arrives on the returned future.
    pub(crate) fn request<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> impl Future<Output = Result<T, AgentError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let cmd = make(Reply::new(move |v| {
            let _ = tx.send(v);
        }));
        let queued = self
            .cmds
            .as_ref()
            .is_some_and(|c| c.unbounded_send(cmd).is_ok());
        if queued {
            if let Some(wake) = &self.wake {
                wake();
            }
        }
        async move {
            if !queued {
                return Err(AgentError::Stopped);
            }
            rx.await.map_err(|_| AgentError::Stopped)
        }
    }

    /// A new query's answer channel: the pump's sink and the caller's receiver.
    pub(crate) fn answer_channel(&self) -> (AnswerSink, mpsc::Receiver<QueryAnswer>) {
        let (mut tx, rx) = mpsc::channel(self.query_capacity - 1);
        // A second sender, used once, for the final `Done`: every sender of a bounded futures
        // channel owns one slot beyond the buffer, so the done (which says how many answers
        // were dropped) always fits.
        let mut last_tx = Some(tx.clone());
        let sink = AnswerSink::new(move |a| {
            let sent = match (&a, last_tx.take()) {
                (QueryAnswer::Done { .. }, Some(mut last)) => last.try_send(a),
                (_, last) => {
                    last_tx = last;
                    tx.try_send(a)
                }
            };
            match sent {
                Ok(()) => Delivery::Delivered,
                Err(e) if e.is_full() => Delivery::Full,
                Err(_) => Delivery::Closed,
            }
        });
        (sink, rx)
    }

    /// True once the event loop has stopped (or every handle is gone).
    pub(crate) fn is_stopped(&self) -> bool {
        self.cmds.as_ref().is_none_or(|c| c.is_closed())
    }

    /// After shutdown: wait for the event loop's thread to end, if it has one.
    pub(crate) fn join_thread(&self) {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The end of an event loop's teardown (every task or connection ended, every socket closed):
/// close the command channel, so that every handle reports the agent stopped, answer the
/// shutdown callers ([`Pump::finish`]) and the shutdowns that raced them; other commands still
/// queued are dropped, so their callers get [`AgentError::Stopped`].
pub fn finish(mut pump: Pump, commands: &mut CommandReceiver) {
    // The stream ends first: once a handle sees the agent stopped, its stream has ended.
    pump.end_stream();
    commands.close();
    pump.finish();
    while let Ok(cmd) = commands.try_recv() {
        if let Command::Shutdown { reply, .. } = cmd {
            reply.send(());
        }
    }
}

/// The join command, for `join` and `join_with`.
pub(crate) fn join(
    seeds: &[SocketAddr],
    ignore_old: bool,
) -> impl FnOnce(Reply<Result<usize, AgentError>>) -> Command {
    let seeds = seeds.to_vec();
    move |reply| Command::Join {
        seeds,
        ignore_old,
        reply,
    }
}

/// `join_hosts_with`: resolve the seeds (see [`resolve`]), then join through every address.
pub(crate) fn join_hosts<S: AsRef<str>>(
    link: &Arc<Link>,
    seeds: &[S],
    ignore_old: bool,
) -> impl Future<Output = Result<usize, AgentError>> + Send + 'static {
    let seeds: Vec<String> = seeds.iter().map(|s| s.as_ref().to_string()).collect();
    let link = link.clone();
    async move {
        let addrs = resolve(seeds, link.addr.port(), RESOLVE_TIMEOUT).await?;
        link.request(join(&addrs, ignore_old)).await?
    }
}

/// How long `join_hosts` waits for its seed names to resolve. Resolution runs on helper
/// threads (the system resolver blocks), never on the event loop or a runtime's worker; a
/// lookup still running after this is abandoned (its thread ends when the system resolver
/// gives up) and counts as unresolved.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A seed as `join_hosts` reads it: `host:port`, `[v6]:port`, or a host (name or address)
/// alone, which takes `default_port`. Returns the host and port to resolve.
pub(crate) fn split_seed(seed: &str, default_port: u16) -> (String, u16) {
    let seed = seed.trim();
    if let Ok(a) = seed.parse::<SocketAddr>() {
        return (a.ip().to_string(), a.port());
    }
    if let Ok(ip) = seed.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return (ip.to_string(), default_port);
    }
    match seed.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse::<u16>() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (seed.to_string(), default_port),
        },
        _ => (seed.to_string(), default_port),
    }
}

/// Resolve every seed to all its addresses, each on its own helper thread, waiting at most
/// `limit` in all. Ok with every address found (duplicates removed); the seeds that gave
/// nothing are logged at warn; [`AgentError::NothingResolved`] when none gave anything.
pub(crate) fn resolve(
    seeds: Vec<String>,
    default_port: u16,
    limit: Duration,
) -> impl Future<Output = Result<Vec<SocketAddr>, AgentError>> + Send + 'static {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rookery-resolve".into())
        .spawn(move || {
            let _ = tx.send(resolve_blocking(&seeds, default_port, limit));
        });
    async move {
        if let Err(e) = spawned {
            return Err(AgentError::NothingResolved {
                seeds: vec![(
                    String::new(),
                    format!("cannot start a resolver thread: {e}"),
                )],
            });
        }
        rx.await.map_err(|_| AgentError::Stopped)?
    }
}

fn resolve_blocking(
    seeds: &[String],
    default_port: u16,
    limit: Duration,
) -> Result<Vec<SocketAddr>, AgentError> {
    use std::net::ToSocketAddrs;
    let deadline = std::time::Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, seed) in seeds.iter().enumerate() {
        let (host, port) = split_seed(seed, default_port);
        let (tx, tx_err) = (tx.clone(), tx.clone());
        let lookup = move || {
            let r = (host.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send((i, r.map_err(|e| e.to_string())));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("rookery-resolve".into())
            .spawn(lookup)
        {
            let _ = tx_err.send((i, Err(format!("cannot start a resolver thread: {e}"))));
        }
    }
    drop(tx);
    let mut why: Vec<Option<String>> = vec![Some("timed out".into()); seeds.len()];
    let mut found = Vec::new();
    while let Ok((i, r)) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        match r {
            Ok(addrs) if !addrs.is_empty() => {
                why[i] = None;
                found.extend(addrs);
            }
            Ok(_) => why[i] = Some("no address".into()),
            Err(e) => why[i] = Some(e),
        }
    }
    let failed: Vec<(String, String)> = seeds
        .iter()
        .zip(why)
        .filter_map(|(s, w)| w.map(|w| (s.clone(), w)))
        .collect();
    for (seed, why) in &failed {
        tracing::warn!(%seed, %why, "seed did not resolve");
    }
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(AgentError::NothingResolved { seeds: failed });
    }
    Ok(found)
}

/// A receive that does not wait, on either kind of receiver `receiver_operations` serves.
pub(crate) trait TryRecv<T> {
    /// The next item if it is already there.
    fn try_take(&mut self) -> Result<T, TryRecvError>;
}

impl<T> TryRecv<T> for mpsc::Receiver<T> {
    fn try_take(&mut self) -> Result<T, TryRecvError> {
        self.try_recv().map_err(|e| {
            if e.is_closed() {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            }
        })
    }
}

impl TryRecv<Event> for EventRx {
    fn try_take(&mut self) -> Result<Event, TryRecvError> {
        self.try_recv()
    }
}

/// Waiting for a future on the calling thread (the blocking flavor): `.wait()` where the async
/// flavor writes `.await`.
pub(crate) trait Wait: Future + Sized {
    /// Park the calling thread until the future completes.
    fn wait(self) -> Self::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(self);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}

impl<F: Future> Wait for F {}

/// Every method of an `AgentHandle`, for one flavor: `handle_operations!(async; .await)` or
/// `handle_operations!(; .wait())`. The expansion site imports the names used here and defines
/// the flavor's `QueryAnswers`.
macro_rules! handle_operations {
    ($($async:ident)?; $($wait:tt)*) => {
        /// The address this agent is reached at (UDP and TCP, the same port).
        pub fn local_addr(&self) -> SocketAddr {
            self.link.addr
        }

        /// This agent's member name.
        pub fn name(&self) -> &str {
            &self.link.name
        }

        /// True once the agent has stopped: shut down, left (a completed `leave`), or gone inert
        /// after losing its name to another node. The event stream's last item,
        /// [`Event::Stopped`], says which.
        pub fn is_stopped(&self) -> bool {
            self.link.is_stopped()
        }

        /// Join a cluster through `seeds` (push-pull with each); returns how many answered, or
        /// [`AgentError::NobodyReached`] when none did (after at most `tcp_timeout`).
        pub $($async)? fn join(&self, seeds: &[SocketAddr]) -> Result<usize, AgentError> {
            self.link.request(crate::handle::join(seeds, false)) $($wait)* ?
        }

        /// `join` by name: each seed is `"host:port"`, `"[v6]:port"`, or a host alone (a DNS
        /// name or an address), which takes this agent's own port; a name joins through every
        /// address it resolves to. Names resolve on helper threads (never on the event loop)
        /// within [`crate::handle::RESOLVE_TIMEOUT`]; seeds that resolve to nothing are logged
        /// and skipped, and when none resolves the answer is
        /// [`AgentError::NothingResolved`]. Otherwise as `join`.
        pub $($async)? fn join_hosts<S: AsRef<str>>(&self, seeds: &[S]) -> Result<usize, AgentError> {
            crate::handle::join_hosts(&self.link, seeds, false) $($wait)*
        }

        /// `join_hosts`, choosing whether to replay the cluster's recent user events
        /// (`ignore_old` false, as `join_hosts` does) or to skip every user event older than
        /// the join (Serf's `Join(addrs, ignoreOld)` taking names).
        pub $($async)? fn join_hosts_with<S: AsRef<str>>(
            &self,
            seeds: &[S],
            ignore_old: bool,
        ) -> Result<usize, AgentError> {
            crate::handle::join_hosts(&self.link, seeds, ignore_old) $($wait)*
        }

        /// `join`, choosing whether to replay the cluster's recent user events (`ignore_old`
        /// false, as `join` does) or to skip every user event older than the join.
        pub $($async)? fn join_with(
            &self,
            seeds: &[SocketAddr],
            ignore_old: bool,
        ) -> Result<usize, AgentError> {
            self.link.request(crate::handle::join(seeds, ignore_old)) $($wait)* ?
        }

        /// Leave the cluster gracefully; returns once the departure has been gossiped (or
        /// `broadcast_timeout` passed) and the agent has stopped (`is_stopped()` is then true
        /// and the event stream ends with `Event::Stopped { reason: StopReason::Left }`).
        pub $($async)? fn leave(&self) -> Result<(), AgentError> {
            self.link.request(|reply| Command::Leave { reply }) $($wait)* ?
        }

        /// Stop the agent: leave first if `mode` says so, then end every task (or the
        /// event-loop thread, which is joined) and close every socket; returns when that is
        /// done (at once if the agent had already stopped), with `is_stopped()` true.
        pub $($async)? fn shutdown(&self, mode: ShutdownMode) {
            let _ = self.link.request(|reply| Command::Shutdown { mode, reply }) $($wait)*;
            self.link.join_thread();
        }

        /// Every member this agent knows, itself included, failed and left members included.
        pub $($async)? fn members(&self) -> Result<Vec<Member>, AgentError> {
            self.link.request(|reply| Command::Members { reply }) $($wait)*
        }

        /// The members alive (status [`rookery_core::MemberStatus::Alive`]), this agent
        /// included.
        pub $($async)? fn alive_members(&self) -> Result<Vec<Member>, AgentError> {
            self.link.request(|reply| Command::AliveMembers { reply }) $($wait)*
        }

        /// The member named `name`, in any status (`None` when this agent does not know it).
        pub $($async)? fn member(&self, name: &str) -> Result<Option<Member>, AgentError> {
            let name = name.to_string();
            self.link.request(|reply| Command::Member { name, reply }) $($wait)*
        }

        /// Close one remote: forget the member `name` on this agent only. It leaves this
        /// agent's view at once ([`Event::MemberReaped`]); this agent stops probing,
        /// gossiping to and reconnecting to it, and ignores gossip about the life it forgot;
        /// it comes back ([`Event::MemberJoined`]) when it shows a newer life — it rejoined,
        /// changed its tags, refuted a suspicion, or restarted elsewhere. The other members
        /// keep it (compare [`Self::remove_failed`], which acts cluster-wide).
        pub $($async)? fn forget_member(&self, name: &str) -> Result<(), AgentError> {
            let name = name.to_string();
            self.link.request(|reply| Command::ForgetMember { name, reply }) $($wait)* ?
        }

        /// Watch the member list: a `MembersWatch` whose `changed` gives the current list
        /// first, then the list after each membership change (joined, updated, suspected,
        /// recovered, failed, left, reaped or forgotten). Newest wins — a watcher that falls
        /// behind gets the latest list, never a backlog, so a watch cannot grow; it ends when
        /// the agent stops. Many watchers may exist; the list is built once per change while
        /// any does.
        pub $($async)? fn watch_members(&self) -> Result<MembersWatch, AgentError> {
            let feed = self.link.request(|reply| Command::WatchMembers { reply }) $($wait)* ?;
            Ok(MembersWatch { rx: feed.watcher() })
        }

        /// This agent as the cluster sees it.
        pub $($async)? fn local_member(&self) -> Result<Member, AgentError> {
            self.link.request(|reply| Command::LocalMember { reply }) $($wait)*
        }

        /// Replace this agent's tags (announced with a new incarnation).
        pub $($async)? fn set_tags(&self, tags: Tags) -> Result<(), AgentError> {
            self.link.request(|reply| Command::SetTags { tags, reply }) $($wait)* ?
        }

        /// Core and driver counters.
        pub $($async)? fn stats(&self) -> Result<AgentStats, AgentError> {
            self.link.request(|reply| Command::Stats { reply }) $($wait)*
        }

        /// Send a user event to every member: each (this one included) gets
        /// [`Event::User`] once. With `coalesce`, receivers may keep only the latest event of
        /// this name.
        pub $($async)? fn user_event(
            &self,
            name: &str,
            payload: impl Into<Bytes>,
            coalesce: bool,
        ) -> Result<(), AgentError> {
            let (name, payload) = (name.to_string(), payload.into());
            self.link.request(|reply| Command::UserEvent {
                name,
                payload,
                coalesce,
                reply,
            }) $($wait)* ?
        }

        /// Ask the cluster: members that `params` selects get [`Event::Query`] and answer with
        /// `respond`. Returns this query's acks and responses, ending with
        /// [`QueryAnswer::Done`] (bounded by [`crate::Options::query_capacity`]; dropping them early
        /// is fine). The answers also arrive as events on the event stream.
        pub $($async)? fn query(
            &self,
            name: &str,
            payload: impl Into<Bytes>,
            params: QueryParams,
        ) -> Result<QueryAnswers, AgentError> {
            let (name, payload) = (name.to_string(), payload.into());
            let (answers, rx) = self.link.answer_channel();
            let id = self.link.request(|reply| Command::Query {
                name,
                payload,
                params,
                answers,
                reply,
            }) $($wait)* ??;
            Ok(QueryAnswers { id, rx })
        }

        /// Answer a query this agent received as [`Event::Query`] (once per query, before its
        /// deadline).
        pub $($async)? fn respond(
            &self,
            handle: &QueryHandle,
            payload: impl Into<Bytes>,
        ) -> Result<(), AgentError> {
            let (handle, payload) = (handle.clone(), payload.into());
            self.link.request(|reply| Command::Respond {
                handle,
                payload,
                reply,
            }) $($wait)* ?
        }

        /// Send a direct message to the member named `to` (reliable channel); it arrives as
        /// [`Event::Message`]. Waits for room first when
        /// [`crate::Options::max_messages_in_flight`] messages are on their way
        /// (backpressure), then returns once the node accepted it: the [`crate::Receipt`]
        /// tells whether it was written to the peer's connection ([`crate::Delivered::Written`])
        /// or failed ([`AgentError::NotDelivered`]). Drop the receipt to fire and forget: a
        /// failure then arrives on the event stream as [`Event::SendFailed`]. See
        /// [`crate::delivery`] for what delivered means.
        pub $($async)? fn send(&self, to: &str, payload: impl Into<Bytes>) -> Result<crate::Receipt, AgentError> {
            let room = self.link.room.acquire_arc() $($wait)*;
            let (to, payload) = (to.to_string(), payload.into());
            self.link.request(|reply| Command::Send { to, payload, acked: false, room: Some(room), reply }) $($wait)* ?
        }

        /// [`Self::send`] without waiting for room: [`AgentError::SendQueueFull`] when
        /// [`crate::Options::max_messages_in_flight`] messages are on their way (nothing sent).
        pub $($async)? fn try_send(&self, to: &str, payload: impl Into<Bytes>) -> Result<crate::Receipt, AgentError> {
            let Some(room) = self.link.room.try_acquire_arc() else {
                return Err(AgentError::SendQueueFull { limit: self.link.room_limit });
            };
            let (to, payload) = (to.to_string(), payload.into());
            self.link.request(|reply| Command::Send { to, payload, acked: false, room: Some(room), reply }) $($wait)* ?
        }

        /// [`Self::send`], and the peer's core confirms receipt: the [`crate::Receipt`]
        /// resolves to [`crate::Delivered::Acknowledged`] once the message reached the peer's
        /// event queue, or to [`AgentError::NotDelivered`] (unreachable, or no receipt within
        /// twice `tcp_timeout`). A dropped receipt's outcome arrives on the event stream
        /// ([`Event::MessageAcked`] or [`Event::SendFailed`]).
        pub $($async)? fn send_acked(&self, to: &str, payload: impl Into<Bytes>) -> Result<crate::Receipt, AgentError> {
            let room = self.link.room.acquire_arc() $($wait)*;
            let (to, payload) = (to.to_string(), payload.into());
            self.link.request(|reply| Command::Send { to, payload, acked: true, room: Some(room), reply }) $($wait)* ?
        }

        /// Send a direct message to every other live member (waiting for room as
        /// [`Self::send`] does); returns each member it went to with its message's receipt.
        pub $($async)? fn broadcast(&self, payload: impl Into<Bytes>) -> Result<crate::BroadcastReceipts, AgentError> {
            let room = self.link.room.acquire_arc() $($wait)*;
            let payload = payload.into();
            self.link.request(|reply| Command::Broadcast { payload, room: Some(room), reply }) $($wait)* ?
        }

        /// Turn the failed member `name` into a left one on every member (or, with `prune`,
        /// forget it at once).
        pub $($async)? fn remove_failed(&self, name: &str, prune: bool) -> Result<(), AgentError> {
            let name = name.to_string();
            self.link.request(|reply| Command::RemoveFailed { name, prune, reply }) $($wait)* ?
        }

        /// Install `key` in every member's keyring as a secondary key (step one of a rotation:
        /// install, use, remove). Returns how many members answered and which failed; needs
        /// this agent to seal what it sends. The keyring file, if any, is written on every
        /// member that changed.
        pub $($async)? fn install_key(&self, key: &[u8]) -> Result<rookery_core::KeyOpResult, AgentError> {
            let key = key.to_vec();
            let op = rookery_core::KeyOp::Install;
            self.link.request(|reply| Command::KeyOp { op, key, reply }) $($wait)* ?
        }

        /// Make `key`, installed everywhere, every member's primary key.
        pub $($async)? fn use_key(&self, key: &[u8]) -> Result<rookery_core::KeyOpResult, AgentError> {
            let key = key.to_vec();
            let op = rookery_core::KeyOp::Use;
            self.link.request(|reply| Command::KeyOp { op, key, reply }) $($wait)* ?
        }

        /// Remove `key` from every member's keyring (each member refuses to remove its primary).
        pub $($async)? fn remove_key(&self, key: &[u8]) -> Result<rookery_core::KeyOpResult, AgentError> {
            let key = key.to_vec();
            let op = rookery_core::KeyOp::Remove;
            self.link.request(|reply| Command::KeyOp { op, key, reply }) $($wait)* ?
        }

        /// List the keys every member holds: how many members hold each key, and use each as
        /// primary.
        pub $($async)? fn list_keys(&self) -> Result<rookery_core::KeyOpResult, AgentError> {
            let (key, op) = (Vec::new(), rookery_core::KeyOp::List);
            self.link.request(|reply| Command::KeyOp { op, key, reply }) $($wait)* ?
        }

        /// This agent's current keyring, cloned (`None` when it runs in plaintext): a local
        /// read, no message leaves the agent (compare [`Self::list_keys`], which asks every
        /// member).
        pub $($async)? fn keyring(&self) -> Result<Option<rookery_core::Keyring>, AgentError> {
            self.link.request(|reply| Command::Keyring { reply }) $($wait)*
        }

        /// Replace this agent's keyring (`None`: plaintext) and set its rolling-adoption flags
        /// (`incoming`: refuse plaintext; `outgoing`: seal what it sends), on this agent only:
        /// how a running cluster moves to encryption and back node by node.
        pub $($async)? fn set_keyring(
            &self,
            keyring: Option<rookery_core::Keyring>,
            incoming: bool,
            outgoing: bool,
        ) -> Result<(), AgentError> {
            self.link.request(|reply| Command::SetKeyring { keyring, incoming, outgoing, reply }) $($wait)* ?
        }
    };
}

/// `recv` and `try_recv` of an `EventStream` or a `QueryAnswers` (a struct with a receiver
/// `rx` of `$item`: an event stream's or a futures channel's), for one flavor, as
/// `handle_operations`.
macro_rules! receiver_operations {
    ($item:ty; $($async:ident)?; $($wait:tt)*) => {
        /// The next one, waiting for it; `None` once the stream has ended (the agent stopped,
        /// or the query is done) and everything was read.
        pub $($async)? fn recv(&mut self) -> Option<$item> {
            futures_util::StreamExt::next(&mut self.rx) $($wait)*
        }

        /// The next one if it is already there: [`TryRecvError::Empty`] when nothing is
        /// waiting yet, [`TryRecvError::Closed`] once the stream has ended.
        pub fn try_recv(&mut self) -> Result<$item, TryRecvError> {
            crate::handle::TryRecv::try_take(&mut self.rx)
        }
    };
}

/// `id` and `collect_all` of a `QueryAnswers`, for one flavor, as `handle_operations`.
macro_rules! answers_operations {
    ($($async:ident)?; $($wait:tt)*) => {
        /// The query's id (as in the query events).
        pub fn id(&self) -> QueryId {
            self.id
        }

        /// Every answer until the done (the done included).
        pub $($async)? fn collect_all(mut self) -> Vec<QueryAnswer> {
            let mut all = Vec::new();
            while let Some(a) = futures_util::StreamExt::next(&mut self.rx) $($wait)* {
                all.push(a);
            }
            all
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rookery_core::{Config, Identity, QueryParams};

    use super::*;
    use crate::blocking::{AgentHandle, EventStream};
    use crate::pump::ShutdownMode;

    /// An agent whose event loop (on its own thread) carries out commands and nothing else;
    /// the counter says how often the handles woke it.
    fn agent() -> (AgentHandle, EventStream, Arc<AtomicUsize>) {
        let (ends, LoopEnds { sink, mut commands }) = channels(&Options::default());
        let identity = Identity::new("solo", SocketAddr::from(([127, 0, 0, 1], 9100)));
        let mut pump = Pump::new(Config::local(), identity, 1, sink, Arc::default()).unwrap();
        let me = pump.node().local_member();
        let thread = std::thread::spawn(move || {
            while let Some(cmd) = futures_util::StreamExt::next(&mut commands).wait() {
                pump.command(cmd);
                while pump.poll_transmit().is_some() {}
                if pump.should_stop() {
                    break;
                }
            }
            finish(pump, &mut commands);
        });
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let wake = move || {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        let (handle, events) = ends.blocking(&me, wake, thread);
        (handle, events, woken)
    }

    #[test]
    fn blocking_calls_query_answers_and_shutdown() {
        let (handle, mut events, woken) = agent();
        assert_eq!((handle.name(), handle.local_addr().port()), ("solo", 9100));
        assert_eq!(handle.members().unwrap().len(), 1);
        assert_eq!(handle.stats().unwrap().members, 1);
        assert_eq!(
            woken.load(Ordering::Relaxed),
            2,
            "each command woke the loop"
        );

        let mut answers = handle
            .query("q", "?", QueryParams::default())
            .expect("query");
        let Some(Event::Query(q)) = events.recv() else {
            panic!("the asker is selected too");
        };
        assert_eq!(&*q.name, "q");
        handle.respond(&q.handle, "me").expect("respond");
        let got: Vec<QueryAnswer> = answers.by_ref().collect();
        assert!(matches!(&got[0], QueryAnswer::Response { payload, .. } if &payload[..] == b"me"));
        assert_eq!(
            got.last(),
            Some(&QueryAnswer::Done {
                acks: 0,
                responses: 1,
                dropped: 0
            })
        );
        assert_eq!(answers.try_recv(), Err(TryRecvError::Closed));
        // The answers were events too (the done reaches the event stream just after the
        // answers' channel closes).
        let done = events.by_ref().find_map(|e| match e {
            Event::QueryDone { query, .. } => Some(query),
            _ => None,
        });
        assert_eq!(done, Some(answers.id()));
        assert_eq!(events.try_recv(), Err(TryRecvError::Empty));

        handle.shutdown(ShutdownMode::Now);
        assert!(handle.is_stopped());
        assert_eq!(handle.members(), Err(AgentError::Stopped));
        assert_eq!(
            events.try_recv(),
            Ok(Event::Stopped {
                reason: rookery_core::StopReason::Shutdown
            }),
            "the final event says why"
        );
        assert_eq!(
            events.try_recv(),
            Err(TryRecvError::Closed),
            "the loop has ended"
        );
        handle.shutdown(ShutdownMode::Now); // harmless
    }

    #[test]
    fn dropping_every_handle_stops_the_loop() {
        let (handle, events, woken) = agent();
        let clone = handle.clone();
        drop(handle);
        assert_eq!(woken.load(Ordering::Relaxed), 0);
        drop(clone);
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "the last drop woke the loop"
        );
        // This loop stops when the commands end (a real driver leaves first).
        assert_eq!(
            events.collect::<Vec<_>>(),
            vec![Event::Stopped {
                reason: rookery_core::StopReason::Shutdown
            }],
            "the stream ends with the reason"
        );
    }

    #[test]
    fn seeds_split_into_host_and_port() {
        let s = |seed| split_seed(seed, 7946);
        assert_eq!(s("10.0.0.1:4000"), ("10.0.0.1".into(), 4000));
        assert_eq!(s("[::1]:4000"), ("::1".into(), 4000));
        assert_eq!(s("::1"), ("::1".into(), 7946));
        assert_eq!(s("[fe80::1]"), ("fe80::1".into(), 7946));
        assert_eq!(s("10.0.0.1"), ("10.0.0.1".into(), 7946));
        assert_eq!(s(" seed.example:80 "), ("seed.example".into(), 80));
        assert_eq!(s("seed.example"), ("seed.example".into(), 7946));
    }

    #[test]
    fn resolution_gives_every_address_or_a_typed_error() {
        let got = resolve_blocking(
            &[
                "127.0.0.1:9".into(),
                "127.0.0.1:9".into(),
                "127.0.0.2".into(),
            ],
            7,
            Duration::from_secs(5),
        );
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.2:7".parse().unwrap(),
        ];
        assert_eq!(got, Ok(want));
        let bad = resolve_blocking(
            &["no such host.invalid:1".into()],
            7,
            Duration::from_secs(5),
        );
        assert!(
            matches!(&bad, Err(AgentError::NothingResolved { seeds }) if seeds.len() == 1),
            "{bad:?}"
        );
        // A lookup that does not finish in time counts as unresolved, and the caller is not
        // kept waiting for it.
        let start = std::time::Instant::now();
        let slow = resolve_blocking(&["localhost:1".into()], 7, Duration::ZERO);
        assert!(start.elapsed() < Duration::from_secs(1), "{slow:?}");
    }

    #[test]
    fn the_final_event_fits_a_full_stream() {
        let options = Options {
            event_capacity: 2,
            ..Options::default()
        };
        let (ends, LoopEnds { mut sink, .. }) = channels(&options);
        let mut kept = 0;
        while sink(Event::QueueDepthWarning { depth: kept }).is_none() {
            kept += 1;
        }
        assert_eq!(kept, 2, "the stream is full");
        let stopped = Event::Stopped {
            reason: rookery_core::StopReason::Left,
        };
        assert_eq!(
            sink(stopped.clone()).events_dropped,
            1,
            "the final event still goes in, the oldest droppable one out"
        );
        drop(sink);
        let got: Vec<Event> = crate::blocking::EventStream { rx: ends.events }.collect();
        assert_eq!(
            got,
            vec![
                Event::Lagged { dropped: 2 },
                Event::QueueDepthWarning { depth: 2 },
                stopped
            ],
            "the loss is reported first, the final event comes last"
        );
    }
}
