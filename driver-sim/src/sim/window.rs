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
//!    share first). The thread hands the node its inputs — and any timer the node arms that
//!    comes due inside the window — in exactly the order the sequential engine would, through
//!    the same [`SimNode::take`] the sequential engine calls, and keeps what came out:
//!    transmits, events, the timer it armed, the network counts.
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
//! [`Sim::run_until_every`] stops at the first step after which a per-node predicate holds
//! for every node. A window cannot contain that step while some node that fails the
//! predicate has no input in it (a node's state changes only through its inputs), so such a
//! window runs in parallel; one in which every failing node has an input is put back and
//! stepped sequentially.
//!
//! Idle workers spin for up to [`SPIN`] waiting for the next window (yielding the processor
//! after a few hundred spins), then sleep until one comes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use rookery_core::{Event, Input, Timestamp, Transmit};

use super::{Action, Arrival, Sim, SimNode, Took, What};
use crate::net::NetStats;

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

/// Where an input stands in the global order.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// Taken off the heap with this sequence number.
    Queued(u64),
    /// The timer of the node's k-th arming in this window (its number is handed out in
    /// the replay).
    Armed(u32),
}

/// One input a node handled, and what came out of it.
struct Record {
    at: Timestamp,
    order: Order,
    /// What it was (for the trace).
    what: What,
    /// How many of the node's transmits in this window came out of this input (they follow
    /// the earlier inputs' in [`Work::transmits`]).
    transmits: u32,
    /// How many of its events did (likewise, in [`Work::events`]).
    events: u32,
    /// When the timer this input armed fires, if it armed one.
    armed: Option<Timestamp>,
}

/// What the parallel windows of a simulation did ([`Sim::window_stats`]), and where their
/// wall time went: how the run divides between work spread over threads and work only the
/// calling thread does. Wall times are measured, so they vary from run to run; the counts do
/// not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Windows run.
    pub windows: u64,
    /// Of those, the windows whose nodes were shared among threads (the others were too small
    /// and ran on the calling thread).
    pub shared: u64,
    /// Windows [`Sim::run_until_every`] refused (the predicate might have come to hold inside
    /// them) and stepped instead.
    pub refused: u64,
    /// Wall time spent taking windows' inputs off the action heap (calling thread alone).
    pub taking: Duration,
    /// Wall time the nodes' work took, spread over the threads.
    pub nodes: Duration,
    /// Wall time spent replaying windows' outputs in order (calling thread alone).
    pub replay: Duration,
}

/// What [`Sim::run_window`] did.
pub(super) enum Window {
    /// Windows cannot be used now; nothing changed.
    Unusable,
    /// The gate refused the window; nothing changed. Step sequentially until this time.
    Refused(Timestamp),
    /// A window ran.
    Ran,
}

/// [`Sim::run_until_every`]'s per-node predicate and what it says of each node.
pub(super) struct Gate<'a> {
    pub(super) pred: &'a mut dyn FnMut(&rookery_core::Node) -> bool,
    /// Whether each node satisfies the predicate now.
    pub(super) ok: Vec<bool>,
    /// How many do not.
    pub(super) bad: usize,
}

impl Gate<'_> {
    /// Ask the predicate again about node `i` after it changed.
    pub(super) fn update(&mut self, i: usize, node: &rookery_core::Node) {
        let now = (self.pred)(node);
        if now != self.ok[i] {
            self.ok[i] = now;
            if now {
                self.bad -= 1;
            } else {
                self.bad += 1;
            }
        }
    }

    /// Whether a window touching exactly `nodes` (distinct) leaves some failing node
    /// untouched, so that the predicate cannot come to hold for every node inside it.
    fn admits(&self, nodes: impl Iterator<Item = usize>) -> bool {
        let touched_bad = nodes.filter(|&i| !self.ok[i]).count();
        touched_bad < self.bad
    }
}

/// One node's share of a window: its inputs, then its records, outputs and counts.
struct Work {
    node: usize,
    inputs: Vec<(Timestamp, u64, Arrival)>,
    records: Vec<Record>,
    transmits: Vec<Transmit>,
    events: Vec<Event>,
    /// What its inputs added to the network counters.
    stats: NetStats,
}

impl Work {
    fn new(node: usize) -> Work {
        Work {
            node,
            inputs: Vec::new(),
            records: Vec::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            stats: NetStats::default(),
        }
    }

    /// Emptied for another window (its buffers' room kept, unless a burst made it large).
    fn recycle(&mut self) {
        fn keep<T>(v: &mut Vec<T>) {
            v.clear();
            if v.capacity() > SPARE_ROOM {
                *v = Vec::new();
            }
        }
        keep(&mut self.inputs);
        keep(&mut self.records);
        keep(&mut self.transmits);
        keep(&mut self.events);
        self.stats = NetStats::default();
    }
}

/// Room a spare [`Work`]'s buffers keep between windows, in elements; a larger burst (a
/// joiner's join events) gives its memory back.
const SPARE_ROOM: usize = 64;

/// Buffers kept from one window to the next, so that a window allocates nothing in the
/// common case.
#[derive(Default)]
pub(super) struct Spare {
    /// Empty works, ready for a node.
    pool: Vec<Work>,
    /// Room for a window's works and its jobs.
    works: Vec<Work>,
    jobs: Vec<Job>,
    /// Each node's place in `works` while a window is taken off the heap ([`NO_WORK`] for
    /// none); all [`NO_WORK`] between windows.
    work_of: Vec<u32>,
}

/// A node without work in the window being taken.
const NO_WORK: u32 = u32::MAX;

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
    /// (inclusive). With a `gate`, a window in which the gate's predicate could come to hold
    /// for every node is refused, and the gate is told about every node the window touched.
    pub(super) fn run_window(
        &mut self,
        deadline: Timestamp,
        mut gate: Option<&mut Gate<'_>>,
    ) -> Window {
        let l = self.lookahead();
        let Some(t0) = self.next_time() else {
            return Window::Unusable;
        };
        if l.is_zero() || t0 > deadline {
            return Window::Unusable;
        }
        let started = Instant::now();
        let mut end = End { at: t0 + l, seq: 0 };
        if deadline < end.at {
            end = End {
                at: deadline,
                seq: u64::MAX,
            };
        }
        // Take the window's inputs off the heap, in order, straight into each node's work; a
        // scripted step or API call ends the window just before it.
        let mut works = std::mem::take(&mut self.spare.works);
        let mut work_of = std::mem::take(&mut self.spare.work_of);
        work_of.resize(self.nodes.len(), NO_WORK);
        let mut total = 0;
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
            let Action::Input { node, arrival } = action else {
                unreachable!("checked above")
            };
            if work_of[node] == NO_WORK {
                work_of[node] = works.len() as u32;
                let mut w = self.spare.pool.pop().unwrap_or_else(|| Work::new(node));
                w.node = node;
                works.push(w);
            }
            works[work_of[node] as usize]
                .inputs
                .push((at, seq, arrival));
            total += 1;
        }
        for w in &works {
            work_of[w.node] = NO_WORK;
        }
        self.spare.work_of = work_of;
        if total == 0 {
            // The window would end before its first action (a scripted step or API call).
            self.spare.works = works;
            return Window::Unusable;
        }
        if gate
            .as_deref()
            .is_some_and(|g| !g.admits(works.iter().map(|w| w.node)))
        {
            for mut w in works.drain(..) {
                for (at, seq, arrival) in w.inputs.drain(..) {
                    let action = Action::Input {
                        node: w.node,
                        arrival,
                    };
                    self.enqueue(at, seq, action);
                }
                self.spare.pool.push(w);
            }
            self.spare.works = works;
            return Window::Refused(end.at);
        }
        let limit = self.backlog_limit;
        self.windows.windows += 1;
        let taken = Instant::now();
        self.windows.taking += taken - started;
        match &self.workers {
            Some(workers) if total >= MIN_SPLIT => {
                self.windows.shared += 1;
                // Lend the nodes out; the heaviest shares go first.
                let mut jobs = std::mem::take(&mut self.spare.jobs);
                jobs.extend(works.drain(..).map(|w| Job {
                    node: self.nodes.lend(w.node),
                    work: w,
                }));
                jobs.sort_by_key(|j| j.weight());
                workers.run(&mut jobs, end, limit);
                for j in jobs.drain(..) {
                    self.nodes.restore(j.work.node, j.node);
                    works.push(j.work);
                }
                self.spare.jobs = jobs;
            }
            _ => {
                for w in &mut works {
                    run_node(&mut self.nodes[w.node], w, end, limit);
                }
            }
        }
        let ran = Instant::now();
        self.windows.nodes += ran - taken;
        self.replay(&mut works, end);
        for mut w in works.drain(..) {
            if let Some(g) = gate.as_deref_mut() {
                g.update(w.node, &self.nodes[w.node].node);
            }
            w.recycle();
            self.spare.pool.push(w);
        }
        self.spare.works = works;
        self.windows.replay += ran.elapsed();
        Window::Ran
    }

    /// Phase 2: apply the window's outputs in the sequential engine's order (the works'
    /// outputs are drained; their buffers stay).
    fn replay(&mut self, works: &mut [Work], end: End) {
        struct Cursor<'a> {
            node: usize,
            records: std::vec::Drain<'a, Record>,
            next: Option<Record>,
            transmits: std::vec::Drain<'a, Transmit>,
            events: std::vec::Drain<'a, Event>,
            /// Sequence numbers of this window's armings, in order.
            seqs: Vec<u64>,
        }
        let mut heap = BinaryHeap::with_capacity(works.len());
        let mut cursors = Vec::with_capacity(works.len());
        for w in works.iter_mut() {
            self.stats.add(&w.stats);
            let mut records = w.records.drain(..);
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
                transmits: w.transmits.drain(..),
                events: w.events.drain(..),
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
            if r.what.traced() {
                (now, i).hash(&mut self.trace);
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
                    let arrival = Arrival::timer();
                    self.schedule(fire, Action::Input { node: i, arrival });
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
            .map(|(_, _, a)| match a.input() {
                Input::Stream { body, .. } => 1 + body.len() / 64,
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

    /// Run `jobs` on the workers and this thread; every job back in `jobs`, finished, in no
    /// order.
    fn run(&self, jobs: &mut Vec<Job>, end: End, limit: usize) {
        let s = &*self.shared;
        {
            let mut b = s.batch.lock().expect("simulator batch lock");
            s.left.store(jobs.len(), Ordering::Release);
            std::mem::swap(&mut b.todo, jobs);
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
        std::mem::swap(&mut b.done, jobs);
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
/// sequential engine's order and by the same rules ([`SimNode::take`], [`SimNode::rearm`]) as
/// [`Sim::step`] and `after_input`, keeping the outputs and the counts.
fn run_node(n: &mut SimNode, w: &mut Work, end: End, backlog_limit: usize) {
    // Timers armed inside the window that come due inside it: (time, arming number).
    let mut due: BinaryHeap<Reverse<(Timestamp, u32)>> = BinaryHeap::new();
    let mut armings: u32 = 0;
    let mut taken = std::mem::take(&mut w.inputs);
    let mut inputs = taken.drain(..).peekable();
    loop {
        // At the same instant, an input queued before the window goes first: its sequence
        // number is lower than that of any timer armed inside it.
        let armed_first = match (inputs.peek(), due.peek()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((at, _, _)), Some(Reverse((t, _)))) => t < at,
        };
        let (at, order, arrival) = if armed_first {
            let Reverse((t, k)) = due.pop().expect("peeked");
            (t, Order::Armed(k), Arrival::timer())
        } else {
            match inputs.next() {
                Some((at, seq, arrival)) => (at, Order::Queued(seq), arrival),
                None => break,
            }
        };
        let what = match n.take(at, arrival, backlog_limit, &mut w.stats) {
            Took::Handled(what) => what,
            Took::Deferred { .. } => unreachable!("windows run without overloaded nodes"),
            Took::Stale | Took::Blocked | Took::Backlogged | Took::BacklogFull => continue,
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
        let armed = n.rearm(at, |_| unreachable!("windows run without overloaded nodes"));
        if let Some(fire) = armed {
            if end.admits_armed(fire) {
                due.push(Reverse((fire, armings)));
            }
            armings += 1;
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
    drop(inputs);
    w.inputs = taken;
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
            (sim.windows.windows, sim.windows.shared),
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

    /// Run until `test` holds for every node: with `run_until_every`, or (`by_pred`) with
    /// `run_until_pred` asking every node after every step. Where it stopped and the trace
    /// there.
    fn until_all(
        sim: &mut Sim,
        by_pred: bool,
        test: impl Fn(&rookery_core::Node) -> bool,
    ) -> (bool, Timestamp, u64) {
        let deadline = sim.now() + Duration::from_secs(60);
        let ok = if by_pred {
            sim.run_until_pred(deadline, |sim, _| (0..sim.len()).all(|i| test(sim.node(i))))
        } else {
            sim.run_until_every(deadline, test)
        };
        (ok, sim.now(), sim.trace_hash())
    }

    /// Formation of `n` nodes until every node knows all, then a crash until every other node
    /// has declared it failed: where each wait stopped, and the window counters (run, shared,
    /// refused) of the waits.
    #[allow(clippy::type_complexity)]
    fn converge(
        threads: usize,
        n: usize,
        by_pred: bool,
    ) -> (
        (bool, Timestamp, u64),
        (bool, Timestamp, u64),
        (u64, u64, u64),
    ) {
        let mut sim = Sim::new(5, NetConfig::default());
        sim.set_threads(threads);
        for i in 0..n {
            sim.run_until(Timestamp::from_millis(i as u64 * 10));
            let id = sim.add_node(Config::lan(), &format!("node-{i}"));
            if id > 0 {
                sim.join(id, &[0]);
            }
        }
        let before = sim.window_stats().clone();
        let formed = until_all(&mut sim, by_pred, |node| node.alive_count() == n);
        sim.crash(7);
        let failed = until_all(&mut sim, by_pred, |node| {
            node.local_member().name.as_str() == "node-7"
                || node
                    .member("node-7")
                    .is_some_and(|m| m.status == rookery_core::MemberStatus::Failed)
        });
        let w = sim.window_stats();
        let counts = (
            w.windows - before.windows,
            w.shared - before.shared,
            w.refused - before.refused,
        );
        (formed, failed, counts)
    }

    #[test]
    fn every_stops_where_the_predicate_would() {
        let n = 150;
        let reference = converge(1, n, true);
        assert!(reference.0 .0 && reference.1 .0, "converged, and detected");
        let one = converge(1, n, false);
        assert_eq!(one.2, (0, 0, 0), "one thread: no windows");
        assert_eq!((reference.0, reference.1), (one.0, one.1));
        for threads in [2, 3] {
            let many = converge(threads, n, false);
            assert_eq!((one.0, one.1), (many.0, many.1), "{threads} threads");
            let (ran, shared, refused) = many.2;
            assert!(
                ran > 1000 && shared > 100 && refused > 1,
                "the waits ran in windows, some shared, and the last ones were stepped: {:?}",
                many.2
            );
        }
    }

    #[test]
    fn every_asks_every_node_again_after_a_scripted_step() {
        for threads in [1, 2] {
            let mut sim = Sim::new(3, NetConfig::default());
            sim.set_threads(threads);
            sim.add_node(Config::lan(), "a");
            sim.add_node(Config::lan(), "b");
            sim.join(1, &[0]);
            sim.run_for(Duration::from_secs(3));
            assert_eq!(sim.node(0).alive_count(), 2);
            // Both restarted without seeds: each knows only itself from that step on, before
            // any input reaches either.
            let at = sim.now() + Duration::from_millis(10);
            let restarts: Vec<TimedStep> = (0..2)
                .map(|node| TimedStep::new(10, Step::Restart { node, seeds: None }))
                .collect();
            sim.schedule_script(sim.now(), &restarts).unwrap();
            let alone =
                sim.run_until_every(at + Duration::from_secs(5), |node| node.alive_count() == 1);
            assert!(alone, "{threads} threads");
            assert_eq!(sim.now(), at, "stopped at the restarts, {threads} threads");
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
