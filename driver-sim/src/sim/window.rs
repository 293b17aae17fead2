//! Parallel windows: the simulation's work spread over threads without changing a byte of
//! the run.
//!
//! No message reaches another node sooner than the network's shortest one-way latency `L`
//! after it was sent (a failed reliable send is reported no sooner than the sender's TCP
//! timeout, which counts too). So within a window `[t, t + L)` each node's inputs are fixed
//! when the window opens: the only new input a node can get inside it is its own timer. A
//! window is run in two phases:
//!
//! 1. **Nodes, in parallel.** Every node with inputs in the window is lent, with its inputs,
//!    to whichever thread takes it first (the calling thread and the [`Workers`], heaviest
//!    share first). The thread handles the inputs — and any timer the node arms that comes
//!    due inside the window — in exactly the order the sequential engine would, and keeps
//!    what came out: transmits, events, the timer it armed.
//! 2. **The shared effects, in order, on the calling thread.** The nodes are taken back and
//!    their outputs replayed in the sequential engine's global order (time, then scheduling
//!    sequence number; a timer armed inside the window gets its sequence number here, when
//!    the input that armed it is replayed): trace hashing, routing (every random draw of the
//!    network model), scheduling, events, counters.
//!
//! The result is the sequential run's, byte for byte — same trace hash, same counters, same
//! events — whatever the thread count (tested here and by a swarm property test). Windows
//! are used only when nothing needs the shared state *during* a node's input: no invariants
//! (they read every node's view at every event), no tap, no overloaded node (its extra delays
//! are drawn from the shared random stream as inputs arrive), and a latency floor above zero.
//! Otherwise [`Sim::run_until`] steps sequentially.
//!
//! Idle workers spin for up to [`SPIN`] waiting for the next window (yielding the processor
//! after a few hundred spins), then sleep until one comes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use rookery_core::{wire, Event, Timestamp, Transmit, TransmitKind};

use super::{Action, Pending, Sim, SimNode};

/// Windows with fewer inputs than this run on the calling thread alone: handing them to a
/// worker would cost more than it saves.
const MIN_SPLIT: usize = 8;

/// Where a window ends, as a position in the global order `(time, sequence number)`:
/// everything strictly before it is in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct End {
    at: Timestamp,
    seq: u64,
}

impl End {
    /// Whether a timer armed inside the window at `at` is in it. Such a timer's sequence
    /// number exceeds every number handed out before the window opened, so it is in only
    /// if it is earlier than the end, or at the end's very time when the end is a deadline
    /// (which admits every sequence number).
    fn admits_armed(&self, at: Timestamp) -> bool {
        at < self.at || (at == self.at && self.seq == u64::MAX)
    }
}

/// A node's input taken off the action heap.
enum Input {
    Deliver {
        from: SocketAddr,
        kind: TransmitKind,
        payload: Bytes,
    },
    SendFailed {
        to: SocketAddr,
        life: u32,
    },
    Timer,
}

/// Where an input stands in the global order.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Taken off the heap with this sequence number.
    Queued(u64),
    /// The timer of the node's k-th arming in this window (its number is handed out in
    /// the replay).
    Armed(u32),
}

/// What a handled input was, for the trace and the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Timer,
    Datagram,
    Stream,
    SendFailure,
}

/// One input a node handled, and what came out of it.
struct Record {
    at: Timestamp,
    order: Order,
    what: What,
    /// How many of the node's transmits in this window came out of this input (they follow
    /// the earlier inputs' in [`Work::transmits`]).
    transmits: u32,
    /// How many of its events did (likewise, in [`Work::events`]).
    events: u32,
    /// When the timer this input armed fires, if it armed one.
    armed: Option<Timestamp>,
}

/// One node's share of a window: its inputs, then its records and outputs.
struct Work {
    node: usize,
    inputs: Vec<(Timestamp, u64, Input)>,
    records: Vec<Record>,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
    blocked: u64,
    backlog_dropped: u64,
}

impl Work {
    fn new(node: usize) -> Work {
        Work {
            node,
            inputs: Vec::new(),
            records: Vec::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            blocked: 0,
            backlog_dropped: 0,
        }
    }
}

impl Sim {
    /// The shortest time between an output and the input it causes at another node; zero
    /// when windows cannot be used at all.
    fn lookahead(&self) -> Duration {
        if self.threads < 2
            || self.checks.is_some()
            || self.tap.is_some()
            || self.overloaded > 0
            || self.nodes.is_empty()
        {
            return Duration::ZERO;
        }
        let mut l = self.net.latency.min().min(self.min_tcp_timeout);
        if let Some(r) = self.rules.min_latency() {
            l = l.min(r);
        }
        l
    }

    /// Run one window starting at the next scheduled action, bounded by `deadline`
    /// (inclusive). Returns false, having changed nothing, when windows cannot be used.
    pub(super) fn run_window(&mut self, deadline: Timestamp) -> bool {
        let l = self.lookahead();
        let Some(t0) = self.next_time() else {
            return false;
        };
        if l.is_zero() || t0 > deadline {
            return false;
        }
        let mut end = End { at: t0 + l, seq: 0 };
        if deadline < end.at {
            end = End {
                at: deadline,
                seq: u64::MAX,
            };
        }
        // Take the window's inputs off the heap, in order; a scripted step or API call ends
        // the window just before it.
        let mut taken: Vec<(usize, Timestamp, u64, Input)> = Vec::new();
        while let Some(&Reverse((at, seq, slot))) = self.queue.peek() {
            if (at, seq) >= (end.at, end.seq) {
                break;
            }
            if matches!(
                self.actions[slot],
                Some(Action::Step(_) | Action::Call { .. })
            ) {
                end = End { at, seq };
                break;
            }
            self.queue.pop();
            let action = self.actions[slot].take().expect("scheduled action present");
            self.free.push(slot);
            let (node, input) = match action {
                Action::Deliver {
                    to,
                    from,
                    kind,
                    payload,
                    late: _,
                } => (
                    to,
                    Input::Deliver {
                        from,
                        kind,
                        payload,
                    },
                ),
                Action::SendFailed { node, to, life } => (node, Input::SendFailed { to, life }),
                Action::Timer { node } => (node, Input::Timer),
                Action::Step(_) | Action::Call { .. } => unreachable!("checked above"),
            };
            taken.push((node, at, seq, input));
        }
        let total = taken.len();
        if total == 0 {
            // The window would end before its first action (a scripted step or API call).
            return false;
        }
        // Group by node, keeping each node's inputs in order (the sort is stable).
        taken.sort_by_key(|t| t.0);
        let mut works: Vec<Work> = Vec::new();
        for (node, at, seq, input) in taken {
            if works.last().is_none_or(|w| w.node != node) {
                works.push(Work::new(node));
            }
            works
                .last_mut()
                .expect("just pushed")
                .inputs
                .push((at, seq, input));
        }
        let limit = self.backlog_limit;
        self.windows.0 += 1;
        match &self.workers {
            Some(workers) if total >= MIN_SPLIT => {
                self.windows.1 += 1;
                // Lend the nodes out; the heaviest shares go first.
                let mut jobs: Vec<Job> = works
                    .into_iter()
                    .map(|w| Job {
                        node: self.nodes.lend(w.node),
                        work: w,
                    })
                    .collect();
                jobs.sort_by_key(|j| j.weight());
                let done = workers.run(jobs, end, limit);
                works = Vec::with_capacity(done.len());
                for j in done {
                    self.nodes.restore(j.work.node, j.node);
                    works.push(j.work);
                }
            }
            _ => {
                for w in &mut works {
                    run_node(&mut self.nodes[w.node], w, end, limit);
                }
            }
        }
        self.replay(works, end);
        true
    }

    /// Phase 2: apply the window's outputs in the sequential engine's order.
    fn replay(&mut self, works: Vec<Work>, end: End) {
        struct Cursor {
            node: usize,
            records: std::vec::IntoIter<Record>,
            next: Option<Record>,
            transmits: std::vec::IntoIter<Transmit>,
            events: std::vec::IntoIter<Event>,
            /// Sequence numbers of this window's armings, in order.
            seqs: Vec<u64>,
        }
        let mut heap = BinaryHeap::with_capacity(works.len());
        let mut cursors = Vec::with_capacity(works.len());
        for w in works {
            self.stats.blocked += w.blocked;
            self.stats.backlog_dropped += w.backlog_dropped;
            let mut records = w.records.into_iter();
            let next = records.next();
            if let Some(r) = &next {
                let Order::Queued(seq) = r.order else {
                    unreachable!("a node's first input in a window was queued before it")
                };
                heap.push(Reverse((r.at, seq, cursors.len())));
            }
            cursors.push(Cursor {
                node: w.node,
                records,
                next,
                transmits: w.transmits.into_iter(),
                events: w.events.into_iter(),
                seqs: Vec::new(),
            });
        }
        while let Some(Reverse((at, _, ci))) = heap.pop() {
            let c = &mut cursors[ci];
            let r = c.next.take().expect("a cursor on the heap has a record");
            c.next = c.records.next();
            let i = c.node;
            if at > self.now {
                self.now = at;
            }
            let now = self.now;
            match r.what {
                What::Timer => (now, i).hash(&mut self.trace),
                What::Datagram => {
                    (now, i).hash(&mut self.trace);
                    self.stats.delivered += 1;
                }
                What::Stream => {
                    (now, i).hash(&mut self.trace);
                    self.stats.reliable_delivered += 1;
                }
                What::SendFailure => self.stats.reliable_failed += 1,
            }
            // What `after_input` does with the node's outputs.
            let mute = self.nodes[i].crashed || self.nodes[i].paused;
            for _ in 0..r.transmits {
                let t = cursors[ci].transmits.next().expect("recorded transmit");
                self.emit_transmit(i, t, mute);
            }
            for _ in 0..r.events {
                let e = cursors[ci].events.next().expect("recorded event");
                self.emit_event(i, e);
            }
            if let Some(fire) = r.armed {
                if end.admits_armed(fire) {
                    // Handled inside the window already: it only takes its number.
                    self.seq += 1;
                } else {
                    self.schedule(fire, Action::Timer { node: i });
                }
                cursors[ci].seqs.push(self.seq);
            }
            let c = &mut cursors[ci];
            if let Some(n) = &c.next {
                let seq = match n.order {
                    Order::Queued(s) => s,
                    Order::Armed(k) => c.seqs[k as usize],
                };
                heap.push(Reverse((n.at, seq, ci)));
            }
        }
    }
}

/// A node lent to a worker with its share of the window.
struct Job {
    node: Box<SimNode>,
    work: Work,
}

impl Job {
    /// A guess at the work, for handing out the heaviest first: a reliable message (a
    /// push-pull: a whole member table) weighs as much as many datagrams.
    fn weight(&self) -> usize {
        self.work
            .inputs
            .iter()
            .map(|(_, _, i)| match i {
                Input::Deliver {
                    kind: TransmitKind::Reliable,
                    payload,
                    ..
                } => 1 + payload.len() / 64,
                _ => 1,
            })
            .sum()
    }
}

/// How long an idle worker spins for the next window before it sleeps.
const SPIN: Duration = Duration::from_millis(2);

/// The worker threads of a simulation: they wait for a window's jobs (spinning a little,
/// then sleeping), take jobs one at a time alongside the calling thread, and hand them back.
pub(super) struct Workers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// What the calling thread and the workers share.
struct Shared {
    batch: Mutex<Batch>,
    /// Rung when a batch is published (or the workers must stop).
    bell: Condvar,
    /// Bumped (under the lock) when a batch is published.
    epoch: AtomicU64,
    /// Jobs of the current batch not finished yet.
    left: AtomicUsize,
}

/// One window's jobs.
#[derive(Default)]
struct Batch {
    /// Still to take, heaviest last (taken from the end).
    todo: Vec<Job>,
    done: Vec<Job>,
    end: Option<End>,
    limit: usize,
    stop: bool,
    /// A worker's panic, to be raised again on the calling thread.
    panic: Option<Box<dyn std::any::Any + Send>>,
}

impl Workers {
    /// Start `n` worker threads.
    pub(super) fn start(n: usize) -> Workers {
        let shared = Arc::new(Shared {
            batch: Mutex::new(Batch::default()),
            bell: Condvar::new(),
            epoch: AtomicU64::new(0),
            left: AtomicUsize::new(0),
        });
        let threads = (0..n)
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("rookery-sim-{i}"))
                    .spawn(move || work(&shared))
                    .expect("spawn a simulator worker thread")
            })
            .collect();
        Workers { shared, threads }
    }

    /// Run `jobs` on the workers and this thread; every job back, finished, in no order.
    fn run(&self, jobs: Vec<Job>, end: End, limit: usize) -> Vec<Job> {
        let s = &*self.shared;
        {
            let mut b = s.batch.lock().expect("simulator batch lock");
            s.left.store(jobs.len(), Ordering::Release);
            b.todo = jobs;
            b.end = Some(end);
            b.limit = limit;
            s.epoch.fetch_add(1, Ordering::AcqRel);
        }
        s.bell.notify_all();
        take_jobs(s);
        // The workers finish the jobs they took.
        let mut spins = 0u32;
        while s.left.load(Ordering::Acquire) != 0 {
            pause(&mut spins);
        }
        let mut b = s.batch.lock().expect("simulator batch lock");
        if let Some(p) = b.panic.take() {
            std::panic::resume_unwind(p);
        }
        std::mem::take(&mut b.done)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if let Ok(mut b) = self.shared.batch.lock() {
            b.stop = true;
            self.shared.epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.bell.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A worker thread: wait for a batch, take its jobs, repeat until told to stop.
fn work(s: &Shared) {
    let mut seen = 0;
    loop {
        let spin_until = Instant::now() + SPIN;
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen {
            if !spins.is_multiple_of(64) || Instant::now() < spin_until {
                pause(&mut spins);
                continue;
            }
            let mut b = s.batch.lock().expect("simulator batch lock");
            while s.epoch.load(Ordering::Acquire) == seen && !b.stop {
                b = s.bell.wait(b).expect("simulator batch lock");
            }
            break;
        }
        seen = s.epoch.load(Ordering::Acquire);
        if s.batch.lock().map_or(true, |b| b.stop) {
            return;
        }
        take_jobs(s);
    }
}

/// One round of waiting for another thread: a few hundred spins, then yields, so that a
/// thread that has the work gets the processor when there are more threads than cores.
fn pause(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if *spins < 512 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Take jobs off the current batch until none is left.
fn take_jobs(s: &Shared) {
    loop {
        let (job, end, limit) = {
            let mut b = s.batch.lock().expect("simulator batch lock");
            match (b.todo.pop(), b.end) {
                (Some(j), Some(end)) => (j, end, b.limit),
                _ => return,
            }
        };
        let mut job = job;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_node(&mut job.node, &mut job.work, end, limit)
        }));
        {
            let mut b = s.batch.lock().expect("simulator batch lock");
            if let Err(p) = ran {
                b.panic.get_or_insert(p);
            }
            b.done.push(job);
        }
        s.left.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Phase 1 for one node: handle its inputs and the timers it arms inside the window, in the
/// sequential engine's order, exactly as [`Sim::step`] and `after_input` would, keeping the
/// outputs.
fn run_node(n: &mut SimNode, w: &mut Work, end: End, backlog_limit: usize) {
    // Timers armed inside the window that come due inside it: (time, arming number).
    let mut due: BinaryHeap<Reverse<(Timestamp, u32)>> = BinaryHeap::new();
    let mut armings: u32 = 0;
    let mut inputs = std::mem::take(&mut w.inputs).into_iter().peekable();
    loop {
        // At the same instant, an input queued before the window goes first: its sequence
        // number is lower than that of any timer armed inside it.
        let armed_first = match (inputs.peek(), due.peek()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((at, _, _)), Some(Reverse((t, _)))) => t < at,
        };
        let (at, order, input) = if armed_first {
            let Reverse((t, k)) = due.pop().expect("peeked");
            (t, Order::Armed(k), Input::Timer)
        } else {
            match inputs.next() {
                Some((at, seq, input)) => (at, Order::Queued(seq), input),
                None => break,
            }
        };
        let local = n.clock.as_ref().map_or(at, |c| c.local(at));
        let what = match input {
            Input::Timer => {
                if n.crashed || n.paused || n.armed.is_none() || n.fire_at != at {
                    continue;
                }
                n.armed = None;
                n.node.handle_timeout(local);
                What::Timer
            }
            Input::Deliver {
                from,
                kind,
                payload,
            } => {
                if n.crashed || n.isolated {
                    w.blocked += 1;
                    continue;
                }
                if n.paused {
                    if kind == TransmitKind::Datagram {
                        if n.backlog_datagrams >= backlog_limit {
                            w.backlog_dropped += 1;
                            continue;
                        }
                        n.backlog_datagrams += 1;
                    }
                    n.backlog.push(Pending::Deliver {
                        from,
                        kind,
                        payload,
                    });
                    continue;
                }
                match kind {
                    TransmitKind::Datagram => {
                        let _ = n.node.handle_packet(local, from, &payload);
                        What::Datagram
                    }
                    TransmitKind::Reliable => {
                        let body = payload.slice(wire::FRAME_HEADER_LEN.min(payload.len())..);
                        let _ = n.node.handle_stream(local, from, &body);
                        What::Stream
                    }
                }
            }
            Input::SendFailed { to, life } => {
                if n.crashed || n.life != life {
                    continue;
                }
                if n.paused {
                    n.backlog.push(Pending::SendFailed { to });
                    continue;
                }
                n.node.handle_send_failure(local, to);
                What::SendFailure
            }
        };
        let before = w.transmits.len();
        while let Some(t) = n.node.poll_transmit() {
            w.transmits.push(t);
        }
        let transmits = (w.transmits.len() - before) as u32;
        let before = w.events.len();
        while let Some(e) = n.node.poll_event() {
            w.events.push(e);
        }
        let events = (w.events.len() - before) as u32;
        let next = n.node.poll_timeout().map(|t| {
            match &n.clock {
                Some(c) => c.sim_time(t),
                None => t,
            }
            .max(at)
        });
        let mut armed = None;
        if next != n.armed {
            n.armed = next;
            if let Some(fire) = next {
                n.fire_at = fire;
                armed = Some(fire);
                if end.admits_armed(fire) {
                    due.push(Reverse((fire, armings)));
                }
                armings += 1;
            }
        }
        w.records.push(Record {
            at,
            order,
            what,
            transmits,
            events,
            armed,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rookery_core::{Config, Timestamp};

    use crate::script::{Step, TimedStep};
    use crate::{NetConfig, NetStats, Sim};

    /// 120 nodes (windows big enough to be shared among threads), formation, then faults
    /// scheduled as steps and a call made through `call_at` in the middle of windows.
    fn run(threads: usize) -> (u64, NetStats, Vec<String>, Timestamp, (u64, u64)) {
        let mut sim = Sim::new(17, NetConfig::default());
        sim.set_threads(threads);
        let n = 120;
        for i in 0..n {
            sim.run_until(Timestamp::from_millis(i as u64 * 10));
            let id = sim.add_node(Config::lan(), &format!("node-{i}"));
            if id > 0 {
                sim.join(id, &[0]);
            }
        }
        sim.run_for(Duration::from_secs(5));
        let start = sim.now();
        let script = [
            (100, Step::Pause { node: 7 }),
            (350, Step::ClockRate { node: 9, rate: 1.3 }),
            (
                600,
                Step::Partition {
                    groups: vec![(0..60).collect(), (60..120).collect()],
                },
            ),
            (2_500, Step::Crash { node: 30 }),
            (3_000, Step::Resume { node: 7 }),
            (4_000, Step::HealNetwork),
            (4_500, Step::Isolate { node: 11, on: true }),
            (
                5_000,
                Step::Restart {
                    node: 30,
                    seeds: Some(vec![0]),
                },
            ),
            (
                6_000,
                Step::Isolate {
                    node: 11,
                    on: false,
                },
            ),
        ];
        let script: Vec<TimedStep> = script
            .into_iter()
            .map(|(at, step)| TimedStep::new(at, step))
            .collect();
        sim.schedule_script(start, &script).unwrap();
        sim.call_at(start + Duration::from_micros(1_234_567), 3, |node, now| {
            node.user_event(now, "deploy", b"v2".to_vec(), false)
                .expect("a user event");
        });
        sim.run_for(Duration::from_secs(40));
        let events = sim
            .drain_events()
            .map(|(t, i, e)| format!("{t:?} {i} {e:?}"))
            .collect();
        (
            sim.trace_hash(),
            sim.net_stats().clone(),
            events,
            sim.now(),
            sim.windows,
        )
    }

    #[test]
    fn windows_reproduce_the_sequential_run() {
        let one = run(1);
        assert!(one.1.delivered > 10_000, "a busy run: {:?}", one.1);
        assert_eq!(one.4, (0, 0), "one thread: no windows");
        for threads in [2, 4] {
            let many = run(threads);
            assert_eq!(one.0, many.0, "trace hash, {threads} threads");
            assert_eq!(one.1, many.1, "counters, {threads} threads");
            assert_eq!(one.2, many.2, "events, {threads} threads");
            assert_eq!(one.3, many.3);
            let (windows, shared) = many.4;
            assert!(
                shared > 100 && windows > 2 * shared,
                "windows used, some shared, some not: {windows}, {shared}"
            );
        }
    }

    #[test]
    fn windows_wait_for_a_latency_floor() {
        let mut sim = Sim::new(1, NetConfig::default());
        sim.add_node(Config::lan(), "a");
        assert!(sim.lookahead().is_zero(), "one thread: no windows");
        sim.set_threads(2);
        assert_eq!(sim.lookahead(), Duration::from_millis(1));
        let zero = NetConfig {
            latency: crate::Latency::uniform(Duration::ZERO, Duration::from_millis(3)),
            ..NetConfig::default()
        };
        sim.set_net(zero);
        assert!(sim.lookahead().is_zero(), "no latency floor: no windows");
        sim.set_net(NetConfig::default());
        sim.set_overload(0, Some(Duration::from_millis(5)));
        assert!(sim.lookahead().is_zero(), "an overloaded node: no windows");
        sim.set_overload(0, None);
        assert_eq!(sim.lookahead(), Duration::from_millis(1));
        sim.add_standard_invariants();
        assert!(sim.lookahead().is_zero(), "invariants on: no windows");
    }
}
