//! The TCP caps every driver applies on a hostile network, written once: which inbound
//! connection to admit, evict or refuse ([`InboundTable`]), which outbound connection to evict
//! ([`pick_idle`]), and the causes of a refusal ([`Refusal`]), each counted in
//! [`crate::DriverStats`] and logged at warn, at most once per [`LOG_EVERY`] per cause
//! ([`crate::DriverCounters::refuse`]).
//!
//! The rule that keeps the caps from stopping the cluster's own members: a connection between
//! frames costs its peer no more than a reconnect, so when a cap is reached the connection idle
//! longest is closed to make room, and a new connection is refused only when every slot is busy
//! (a frame in progress, which must complete within `tcp_timeout` of its first byte) or was
//! opened less than [`FRESH_GRACE`] ago and has not sent a byte yet. Members reuse connections
//! between frames; an attacker's idle connections are therefore evicted like theirs, and its
//! dribbling ones are limited per source address and by the frame deadline.
//!
//! Members come first ([`KnownPeers`]): a connection from the IP address of a member the node
//! knows is evicted only after every evictable stranger's, and when every slot is busy it takes
//! the slot of a stranger's connection that has not sent a byte yet (TCP's handshake proves the
//! source address, so a stranger cannot pass for a member without being on its host). Without
//! this, a burst of fresh connections from strangers filled the table for [`FRESH_GRACE`] and
//! refused the members' probes over TCP in the moments a datagram flood made them needed.
//!
//! The table also keeps the inbound byte budget ([`crate::Options::max_inbound_buffered`]):
//! every byte of memory the receive buffers hold, plus frames received and not yet handled by
//! the node, is charged against it before it is allocated ([`InboundTable::charge`]). When a
//! connection's next bytes do not fit, the partial frames that have gone longest without a
//! byte are closed to make room ([`Refusal::InboundBudget`]). A member streams its frame at the
//! speed of the network, while an attacker holding memory has to stop sending (or trickle)
//! to hold it, so the stalled frames are the attacker's: the cluster's own push-pulls (up to
//! `max_stream_message`, which always fits in the budget) get through. Closing rather than
//! waiting keeps an attacker from parking the budget until its frame deadlines pass; a reader
//! waits (stops reading, so TCP pushes back on its sender) only when what holds the budget
//! cannot be closed: frames handed to the node and not yet handled, and buffers kept by
//! connections between frames.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rookery_core::{Event, EventClass, MemberEventKind, Name};

/// How long a newly accepted connection that has not sent a byte is protected from eviction (a
/// member writes its frame right after connecting; the reader may not have run yet).
pub const FRESH_GRACE: Duration = Duration::from_secs(1);

/// A refusal is logged at warn at most once per this long per cause (with how many were not
/// logged since); every one is counted.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a driver refused a connection, a frame or a send. Each cause has its own counter in
/// [`crate::DriverStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// An inbound connection was closed at once: [`crate::Options::max_inbound`] connections
    /// were open and none was idle.
    InboundTotal,
    /// An inbound connection was closed at once: [`crate::Options::max_inbound_per_source`]
    /// connections from the same IP were open and none was idle.
    InboundPerSource,
    /// A reliable message to a destination without a connection failed at once (reported to
    /// the core as a send failure): [`crate::Options::max_outbound`] connections were busy and
    /// the waiting line was full, or the message waited longer than `tcp_timeout`.
    Outbound,
    /// An inbound connection was closed because a frame did not arrive whole within
    /// `tcp_timeout` of its first byte.
    FrameDeadline,
    /// An inbound connection announced a frame longer than `max_stream_message`: refused
    /// before anything was allocated for it, the connection closed.
    FrameTooLarge,
    /// A received frame was dropped (and its connection closed) because
    /// [`crate::Options::max_inbound_in_flight`] frames were waiting for the node until the
    /// frame's deadline passed.
    InFlight,
    /// An inbound connection holding a partial frame was closed to keep the bytes buffered for
    /// inbound frames within [`crate::Options::max_inbound_buffered`]: its frame had gone
    /// longest without a byte when another connection's bytes did not fit (or, rarely, a
    /// connection waited for room until its frame deadline).
    InboundBudget,
}

impl Refusal {
    /// Every cause, in counter order.
    pub const ALL: [Refusal; 7] = [
        Refusal::InboundTotal,
        Refusal::InboundPerSource,
        Refusal::Outbound,
        Refusal::FrameDeadline,
        Refusal::FrameTooLarge,
        Refusal::InFlight,
        Refusal::InboundBudget,
    ];

    /// What the warning says.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::InboundTotal => "inbound connection refused: max_inbound busy",
            Refusal::InboundPerSource => "inbound connection refused: max_inbound_per_source busy",
            Refusal::Outbound => "reliable send refused: max_outbound busy",
            Refusal::FrameDeadline => "inbound frame not complete within tcp_timeout",
            Refusal::FrameTooLarge => "inbound frame longer than max_stream_message",
            Refusal::InFlight => "inbound frame dropped: max_inbound_in_flight waiting",
            Refusal::InboundBudget => {
                "inbound partial frame closed: max_inbound_buffered reached, it stalled longest"
            }
        }
    }

    pub(crate) fn index(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|&r| r == self)
            .unwrap_or_default()
    }
}

/// What an inbound connection is doing, as the eviction rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, no byte received yet.
    Fresh,
    /// Between frames: nothing buffered.
    Idle,
    /// Part of a frame received.
    InFrame,
}

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    /// The IP was a known member's when the connection was admitted.
    member: bool,
    phase: Phase,
    /// When the phase began (accept, end of the last frame, first byte of this frame).
    since: Instant,
    /// Bytes charged to this connection against the budget (its receive buffer).
    held: usize,
    /// When its last bytes arrived (or it was accepted).
    last_byte: Instant,
}

impl Entry {
    fn evictable(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Idle => true,
            Phase::Fresh => now.saturating_duration_since(self.since) >= FRESH_GRACE,
            Phase::InFrame => false,
        }
    }
}

/// The inbound connections of one agent, for the admission rule: at most `max_total` open, at
/// most `max_per_source` from one IP; at either cap the connection idle longest (between
/// frames, or silent since [`FRESH_GRACE`] after its accept) is evicted, else the newcomer is
/// refused. Keyed by whatever the driver names its connections by. It also keeps the byte
/// budget of inbound frames (see the module docs): [`InboundTable::charge`] before a buffer
/// grows, [`InboundTable::settle`] after frames came out of it, [`InboundTable::release`] when
/// the node is done with a frame handed to it.
#[derive(Debug)]
pub struct InboundTable<K> {
    max_total: usize,
    max_per_source: usize,
    conns: HashMap<K, Entry>,
    per_source: HashMap<IpAddr, usize>,
    budget: usize,
    /// Bytes charged: every connection's `held` plus frames handed out and not released.
    buffered: usize,
}

impl<K: Copy + Eq + Hash> InboundTable<K> {
    /// An empty table with these caps (each at least 1) and no byte budget.
    pub fn new(max_total: usize, max_per_source: usize) -> InboundTable<K> {
        InboundTable {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            conns: HashMap::new(),
            per_source: HashMap::new(),
            budget: usize::MAX,
            buffered: 0,
        }
    }

    /// The same table with a budget of `bytes` for inbound frames (see
    /// [`crate::Options::inbound_budget`] for the one a driver uses).
    pub fn with_budget(mut self, bytes: usize) -> InboundTable<K> {
        self.budget = bytes;
        self
    }

    /// Bytes charged against the budget now.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Connection `key` received bytes at `now`, and its buffer is about to grow by `grow`
    /// bytes. Charges them, first closing partial frames (other than `key`'s) to make room,
    /// those that have gone longest without a byte first: returns the connections to close
    /// (already out of the table; count each as [`Refusal::InboundBudget`]). Refused with
    /// [`Refusal::InboundBudget`], nothing closed or charged, when even closing every other
    /// partial frame would not make room: the caller waits for room or closes `key`. An
    /// unknown `key` (already closed) is granted without a charge.
    pub fn charge(&mut self, key: K, grow: usize, now: Instant) -> Result<Vec<K>, Refusal> {
        let Some(e) = self.conns.get_mut(&key) else {
            return Ok(Vec::new());
        };
        e.last_byte = now;
        let need = self.buffered.saturating_add(grow);
        if need <= self.budget {
            self.buffered = need;
            e.held += grow;
            return Ok(Vec::new());
        }
        let mut victims: Vec<(K, Instant, usize)> = self
            .conns
            .iter()
            .filter(|(k, e)| **k != key && e.phase == Phase::InFrame && e.held > 0)
            .map(|(k, e)| (*k, e.last_byte, e.held))
            .collect();
        let freeable: usize = victims.iter().map(|v| v.2).sum();
        if need - freeable.min(need) > self.budget {
            return Err(Refusal::InboundBudget);
        }
        victims.sort_by_key(|v| v.1);
        let mut closed = Vec::new();
        for (k, _, _) in victims {
            if self.buffered.saturating_add(grow) <= self.budget {
                break;
            }
            self.remove(k);
            closed.push(k);
        }
        self.buffered += grow;
        if let Some(e) = self.conns.get_mut(&key) {
            e.held += grow;
        }
        Ok(closed)
    }

    /// Connection `key`'s buffer now holds `held` bytes, and `handed` bytes of frames came out
    /// of it to the node (still charged until [`InboundTable::release`]). False, nothing
    /// charged, when `key` is no longer in the table (then nothing is to be released).
    pub fn settle(&mut self, key: K, held: usize, handed: usize) -> bool {
        let Some(e) = self.conns.get_mut(&key) else {
            return false;
        };
        self.buffered = self.buffered - e.held + held + handed;
        e.held = held;
        true
    }

    /// The node is done with `bytes` of frames handed out by [`InboundTable::settle`].
    pub fn release(&mut self, bytes: usize) {
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Admit connection `key` from `ip` (`member`: the IP is a known member's, see
    /// [`KnownPeers`]): the connections to close to make room for it (the caller closes them;
    /// they are already out of the table), or why it is refused. At the total cap the evictable
    /// connection idle longest among strangers' goes first, then among members'; when none is
    /// evictable, a member's newcomer takes the slot of the stranger's fresh connection accepted
    /// first.
    pub fn admit(
        &mut self,
        key: K,
        ip: IpAddr,
        member: bool,
        now: Instant,
    ) -> Result<Vec<K>, Refusal> {
        let mut evict = Vec::new();
        if self.per_source.get(&ip).copied().unwrap_or(0) >= self.max_per_source {
            match pick_idle(
                self.conns
                    .iter()
                    .filter(|(_, e)| e.ip == ip && e.evictable(now))
                    .map(|(k, e)| (*k, e.since)),
            ) {
                Some(k) => {
                    self.remove(k);
                    evict.push(k);
                }
                None => return Err(Refusal::InboundPerSource),
            }
        }
        if self.conns.len() >= self.max_total {
            let idle = |members: bool| {
                pick_idle(
                    self.conns
                        .iter()
                        .filter(|(_, e)| e.member == members && e.evictable(now))
                        .map(|(k, e)| (*k, e.since)),
                )
            };
            let fresh_stranger = || {
                pick_idle(
                    self.conns
                        .iter()
                        .filter(|(_, e)| member && !e.member && e.phase == Phase::Fresh)
                        .map(|(k, e)| (*k, e.since)),
                )
            };
            match idle(false).or_else(|| idle(true)).or_else(fresh_stranger) {
                Some(k) => {
                    self.remove(k);
                    evict.push(k);
                }
                None => return Err(Refusal::InboundTotal),
            }
        }
        self.conns.insert(
            key,
            Entry {
                ip,
                member,
                phase: Phase::Fresh,
                since: now,
                held: 0,
                last_byte: now,
            },
        );
        *self.per_source.entry(ip).or_default() += 1;
        Ok(evict)
    }

    /// Connection `key` entered `phase` at `now` (a repeated phase keeps its start, except
    /// [`Phase::Idle`], which restarts: the longest idle is evicted first).
    pub fn set_phase(&mut self, key: K, phase: Phase, now: Instant) {
        if let Some(e) = self.conns.get_mut(&key) {
            if e.phase != phase || phase == Phase::Idle {
                e.phase = phase;
                e.since = now;
            }
        }
    }

    /// Connection `key` closed (harmless when it was evicted already).
    pub fn remove(&mut self, key: K) {
        if let Some(e) = self.conns.remove(&key) {
            self.buffered -= e.held;
            if let Some(n) = self.per_source.get_mut(&e.ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&e.ip);
                }
            }
        }
    }
}

/// The IP addresses of the members an agent knows (in any state, until reaped), kept by the
/// pump from the node's membership events ([`KnownPeers::note`]) and read by the admission
/// rule ([`InboundTable::admit`]). Shared between the pump and the accept loop.
#[derive(Debug, Default)]
pub struct KnownPeers(Mutex<PeerIps>);

#[derive(Debug, Default)]
struct PeerIps {
    /// Each member's IP address as last heard.
    by_name: HashMap<Name, IpAddr>,
    /// How many members have each IP address.
    count: HashMap<IpAddr, usize>,
}

impl PeerIps {
    fn forget(&mut self, name: &Name) {
        if let Some(ip) = self.by_name.remove(name) {
            if let Some(n) = self.count.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.count.remove(&ip);
                }
            }
        }
    }
}

impl KnownPeers {
    /// Take in one event of the node: a membership event records each member's address (a
    /// moved member's new one replaces its old), a reap forgets the member.
    pub fn note(&self, event: &Event) {
        let EventClass::Membership(members) = event.class() else {
            return;
        };
        let reaped = matches!(
            event,
            Event::MemberReaped(_)
                | Event::MemberBatch {
                    kind: MemberEventKind::Reaped,
                    ..
                }
        );
        let mut ips = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for m in members {
            ips.forget(&m.name);
            if !reaped {
                ips.by_name.insert(m.name.clone(), m.addr.ip());
                *ips.count.entry(m.addr.ip()).or_default() += 1;
            }
        }
    }

    /// Whether some known member has this IP address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ips = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ips.count.contains_key(&ip)
    }
}

/// The candidate idle longest: the smallest `since`.
pub fn pick_idle<K>(candidates: impl Iterator<Item = (K, Instant)>) -> Option<K> {
    candidates.min_by_key(|(_, since)| *since).map(|(k, _)| k)
}

/// Per-cause warn rate limiter, kept in [`crate::DriverCounters`].
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    /// Per cause: when it was last logged and how many were not logged since.
    last: [Option<(Instant, u64)>; Refusal::ALL.len()],
}

impl RefusalLog {
    /// Whether to log this refusal now, and how many of its cause went unlogged before it.
    pub(crate) fn should_log(&mut self, cause: Refusal, now: Instant) -> Option<u64> {
        let slot = &mut self.last[cause.index()];
        match slot {
            Some((at, skipped)) if now.saturating_duration_since(*at) < LOG_EVERY => {
                *skipped += 1;
                None
            }
            _ => {
                let skipped = slot.map_or(0, |(_, s)| s);
                *slot = Some((now, 0));
                Some(skipped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn idle_longest_is_evicted_busy_ones_never() {
        let t0 = Instant::now();
        let mut t = InboundTable::new(3, 3);
        assert_eq!(t.admit(1, ip(1), false, t0), Ok(vec![]));
        assert_eq!(t.admit(2, ip(1), false, t0), Ok(vec![]));
        assert_eq!(t.admit(3, ip(2), false, t0), Ok(vec![]));
        // Every slot fresh (within the grace): refused.
        assert_eq!(t.admit(4, ip(3), false, t0), Err(Refusal::InboundTotal));
        t.set_phase(1, Phase::InFrame, t0);
        t.set_phase(3, Phase::Idle, t0 + Duration::from_millis(5));
        t.set_phase(2, Phase::Idle, t0 + Duration::from_millis(9));
        // 3 has been idle longest.
        assert_eq!(
            t.admit(4, ip(3), false, t0 + Duration::from_millis(10)),
            Ok(vec![3])
        );
        assert_eq!(
            t.admit(5, ip(3), false, t0 + Duration::from_millis(11)),
            Ok(vec![2])
        );
        // 1 is in a frame, 4 and 5 fresh: refused until the grace passes.
        assert_eq!(
            t.admit(6, ip(4), false, t0 + Duration::from_millis(12)),
            Err(Refusal::InboundTotal)
        );
        let later = t0 + FRESH_GRACE + Duration::from_millis(10);
        assert_eq!(t.admit(6, ip(4), false, later), Ok(vec![4]));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn members_come_before_strangers() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = InboundTable::new(3, 3);
        // A member's connection, idle since 1 ms; a stranger's, idle since 5 ms.
        t.admit(1, ip(1), true, t0).unwrap();
        t.admit(2, ip(2), false, t0).unwrap();
        t.set_phase(1, Phase::Idle, ms(1));
        t.set_phase(2, Phase::Idle, ms(5));
        t.admit(3, ip(3), false, ms(6)).unwrap();
        // The stranger's goes first although the member's has been idle longer.
        assert_eq!(t.admit(4, ip(3), false, ms(7)), Ok(vec![2]));
        // Only the member's is evictable now: it goes for a stranger too (it only costs the
        // member a reconnect).
        assert_eq!(t.admit(5, ip(4), false, ms(8)), Ok(vec![1]));
        // 3, 4, 5: strangers' fresh connections. Another stranger is refused...
        assert_eq!(t.admit(6, ip(5), false, ms(9)), Err(Refusal::InboundTotal));
        // ...a member takes the slot of the one accepted first.
        assert_eq!(t.admit(6, ip(1), true, ms(9)), Ok(vec![3]));
        // A stranger's frame in progress is never cut, nor a member's fresh connection.
        t.set_phase(4, Phase::InFrame, ms(10));
        t.set_phase(5, Phase::InFrame, ms(10));
        assert_eq!(t.admit(7, ip(1), true, ms(11)), Err(Refusal::InboundTotal));
    }

    #[test]
    fn known_peers_follow_membership_events() {
        use rookery_core::{Member, MemberStatus, Tags};
        let member = |name: &str, last: u8| Member {
            name: name.into(),
            addr: std::net::SocketAddr::new(ip(last), 7946),
            status: MemberStatus::Alive,
            incarnation: 1,
            tags: std::sync::Arc::new(Tags::default()),
        };
        let k = KnownPeers::default();
        assert!(!k.contains(ip(1)));
        k.note(&Event::MemberJoined(member("a", 1)));
        k.note(&Event::MemberJoined(member("b", 1)));
        k.note(&Event::MemberFailed(member("c", 2)));
        assert!(k.contains(ip(1)) && k.contains(ip(2)));
        // a moves to .3: .1 is still b's.
        k.note(&Event::MemberUpdated(member("a", 3)));
        assert!(k.contains(ip(1)) && k.contains(ip(3)));
        k.note(&Event::MemberReaped(member("b", 1)));
        assert!(!k.contains(ip(1)));
        k.note(&Event::MemberBatch {
            kind: MemberEventKind::Reaped,
            members: vec![member("a", 3), member("c", 2)],
        });
        assert!(!k.contains(ip(2)) && !k.contains(ip(3)));
    }

    #[test]
    fn per_source_cap_evicts_within_the_source_only() {
        let t0 = Instant::now();
        let mut t = InboundTable::new(10, 2);
        t.admit(1, ip(9), false, t0).unwrap();
        t.admit(2, ip(8), false, t0).unwrap();
        t.admit(3, ip(9), false, t0).unwrap();
        t.set_phase(2, Phase::Idle, t0);
        t.set_phase(1, Phase::InFrame, t0);
        t.set_phase(3, Phase::InFrame, t0);
        assert_eq!(t.admit(4, ip(9), false, t0), Err(Refusal::InboundPerSource));
        t.set_phase(3, Phase::Idle, t0);
        assert_eq!(t.admit(4, ip(9), false, t0), Ok(vec![3]));
        t.remove(4);
        t.remove(4);
        assert_eq!(t.admit(5, ip(9), false, t0), Ok(vec![]));
    }

    #[test]
    fn budget_closes_the_partial_frames_stalled_longest() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = InboundTable::new(10, 10).with_budget(100);
        for k in 1..=4 {
            t.admit(k, ip(1), false, t0).unwrap();
        }
        // 1, 2, 3 hold partial frames; 2 stalled first, then 1; 3 is still streaming.
        for (k, at) in [(2, 1), (1, 2), (3, 3)] {
            t.set_phase(k, Phase::InFrame, ms(at));
            assert_eq!(t.charge(k, 30, ms(at)), Ok(vec![]));
        }
        assert_eq!(t.charge(3, 0, ms(50)), Ok(vec![]));
        assert_eq!(t.buffered(), 90);
        // 4 starts a frame needing 40: 2 (silent since 1 ms) goes, then nothing more is needed.
        t.set_phase(4, Phase::InFrame, ms(60));
        assert_eq!(t.charge(4, 40, ms(60)), Ok(vec![2]));
        assert_eq!(t.buffered(), 100);
        // 3 grows by 50: 1 (silent since 2 ms), then 4 (since 60 ms) go; 3 is never its own
        // victim.
        assert_eq!(t.charge(3, 50, ms(70)), Ok(vec![1, 4]));
        assert_eq!(t.buffered(), 80);
        // More than the budget even alone: refused, nothing charged or closed.
        assert_eq!(t.charge(3, 30, ms(71)), Err(Refusal::InboundBudget));
        assert_eq!(t.buffered(), 80);
        // Frames handed out stay charged until released; a connection between frames is no
        // victim.
        assert!(t.settle(3, 10, 70));
        t.set_phase(3, Phase::Idle, ms(72));
        assert_eq!(t.buffered(), 80);
        t.admit(5, ip(2), false, ms(73)).unwrap();
        t.set_phase(5, Phase::InFrame, ms(73));
        assert_eq!(t.charge(5, 30, ms(73)), Err(Refusal::InboundBudget));
        t.release(70);
        assert_eq!(t.charge(5, 30, ms(74)), Ok(vec![]));
        assert_eq!(t.buffered(), 40);
        t.remove(3);
        t.remove(5);
        assert_eq!(t.buffered(), 0);
        // A closed connection is granted without a charge, and settles nothing.
        assert_eq!(t.charge(3, 1000, ms(80)), Ok(vec![]));
        assert!(!t.settle(3, 5, 5));
        assert_eq!(t.buffered(), 0);
    }

    #[test]
    fn log_is_rate_limited_per_cause() {
        let mut l = RefusalLog::default();
        let t0 = Instant::now();
        assert_eq!(l.should_log(Refusal::Outbound, t0), Some(0));
        assert_eq!(l.should_log(Refusal::Outbound, t0), None);
        assert_eq!(l.should_log(Refusal::FrameDeadline, t0), Some(0));
        assert_eq!(l.should_log(Refusal::Outbound, t0 + LOG_EVERY), Some(1));
    }
}
