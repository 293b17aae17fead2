//! The Serf layer on top of SWIM: Lamport clocks (`lamport`), join and leave intents with a
//! buffer for intents about members not yet known (`intents`), user events with their dedup
//! ring (`user_events`), queries with filters, acks, relays and deadlines, and the name-conflict
//! vote (`query`), event coalescing (`coalesce`), direct messaging (`messaging`), and the reaping
//! of failed and left members with reconnect attempts and force-removal (`reaper`).
//!
//! [`Serf`] holds the layer's state, apart from the member table it shares with the other parts,
//! and works through the narrow context [`Cx`]. What needs the router — this node lost its
//! name, a reconnect push-pull to send with the layer's share — comes back as an [`Outcome`].
//! Every event the node reports passes through [`Serf::emit`] (coalescing is the layer's). The
//! layer owns its timers ([`SerfTimer`]) and their staleness rule ([`Serf::on_timer`]).

pub(crate) mod coalesce;
pub(crate) mod intents;
pub(crate) mod lamport;
pub(crate) mod messaging;
pub(crate) mod query;
mod reaper;
pub(crate) mod user_events;

use crate::config::Config;
use crate::ctx::Cx;
use crate::dissemination::PushPullTo;
use crate::event::Event;
use crate::time::Timestamp;
use crate::timers::TimerKind;

use coalesce::Coalescer;
use intents::RecentIntents;
use lamport::LamportClock;
use messaging::Outbox;
use query::Queries;
use user_events::EventRing;

/// How many different user events, or queries, one Lamport time's dedup slot remembers. Honest
/// events share a time only when members fire them concurrently, a handful at most; without a
/// bound, forged ones piled into one slot until every push-pull (which carries the ring)
/// exceeded what receivers accept. When a slot is full, a further event or query at that time
/// is refused, counted in [`crate::Stats::slot_full_refused`].
pub(crate) const MAX_PER_SLOT: usize = 32;

/// What a dedup ring made of a user event or query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// First seen: deliver it.
    New,
    /// Seen before: ignore it.
    Seen,
    /// Its Lamport time's slot is full ([`MAX_PER_SLOT`]): refused.
    Full,
}

impl Recorded {
    /// Whether to go on with what was recorded: only a new one; a full slot is counted and
    /// logged (`what` names it).
    pub(crate) fn is_new(self, cx: &mut Cx<'_>, what: &'static str, ltime: u64) -> bool {
        match self {
            Recorded::New => true,
            Recorded::Seen => false,
            Recorded::Full => {
                cx.fx.stats.slot_full_refused += 1;
                tracing::debug!(what, ltime, "refused: its Lamport time's slot is full");
                false
            }
        }
    }
}

/// The Serf layer's state.
#[derive(Debug)]
pub(crate) struct Serf {
    /// Orders join and leave intents.
    pub(super) member_clock: LamportClock,
    /// Orders user events.
    pub(super) event_clock: LamportClock,
    /// Orders queries.
    pub(super) query_clock: LamportClock,
    /// Intents about members not yet known.
    pub(super) intents: RecentIntents,
    /// User events delivered, for dedup (and for push-pull).
    pub(super) event_ring: EventRing,
    /// Queries seen, this node's own in flight, and those it may still answer.
    pub(super) queries: Queries,
    /// Events held for coalescing.
    pub(super) coalescer: Coalescer,
    /// Direct-message numbering and the acknowledged messages awaiting receipts.
    pub(super) outbox: Outbox,
    /// When this node last delivered a new user event (part of its digest's settledness).
    pub(super) events_changed: Timestamp,
    /// The seeds of the latest join, at most [`reaper::MAX_SEEDS`], and when it started:
    /// reconnect tries those no member holds, a reconnect interval after (see `reaper`).
    pub(super) seeds: Vec<std::net::SocketAddr>,
    pub(super) seeds_at: Timestamp,
}

impl Serf {
    pub(crate) fn new(cfg: &Config, now: Timestamp) -> Serf {
        Serf {
            member_clock: LamportClock::default(),
            event_clock: LamportClock::default(),
            query_clock: LamportClock::default(),
            intents: RecentIntents::default(),
            event_ring: EventRing::new(cfg.event_buffer),
            queries: Queries::new(cfg.query_buffer),
            coalescer: Coalescer::default(),
            outbox: Outbox::default(),
            events_changed: now,
            seeds: Vec::new(),
            seeds_at: now,
        }
    }
}

/// The Serf layer's timers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SerfTimer {
    /// Reap failed and left members past their timeouts.
    Reap,
    /// Maybe reconnect to one failed member.
    Reconnect,
    /// This node's query `id` times out (stale once the query ended).
    QueryDeadline { id: u32 },
    /// Flush coalesced events that are due.
    CoalesceFlush,
    /// The receipt of this node's acknowledged direct message `id` is due (stale once it came).
    ReceiptDeadline { id: crate::event::MessageId },
    /// Start the name-conflict vote about this node's name claimed from `theirs`.
    ConflictVote { theirs: std::net::SocketAddr },
}

/// What the router must do after a call into the Serf layer.
#[must_use = "the router acts on the outcome"]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing more.
    Nothing,
    /// This node lost a name-conflict vote: it must stop.
    NameLost,
    /// Send a push-pull request (with the layer's share): a reconnect attempt.
    PushPull(PushPullTo),
    /// An answer to one of this node's key-operation queries (`keyring::manager`); `done`
    /// when every member selected at query time has answered.
    KeyResponse {
        /// The answer.
        resp: crate::wire::QueryResp,
        /// Whether it was the last one expected.
        done: bool,
    },
    /// One of this node's key-operation queries ended (its id).
    KeyDone(u32),
}

impl Serf {
    /// Key-operation queries received since the last call (see `keyring::manager`).
    pub(crate) fn take_key_inbox(&mut self) -> Vec<crate::wire::QueryMsg> {
        std::mem::take(&mut self.queries.key_inbox)
    }

    /// Schedule the first reap at `reap_at` and, when reconnecting is on, the first reconnect
    /// attempt at `reconnect_at`.
    pub(crate) fn arm(cx: &mut Cx<'_>, reap_at: Timestamp, reconnect_at: Option<Timestamp>) {
        cx.fx
            .timers
            .schedule(reap_at, TimerKind::Serf(SerfTimer::Reap));
        if let Some(at) = reconnect_at {
            cx.fx
                .timers
                .schedule(at, TimerKind::Serf(SerfTimer::Reconnect));
        }
    }

    /// A timer fired.
    pub(crate) fn on_timer(&mut self, t: SerfTimer, cx: &mut Cx<'_>) -> Outcome {
        match t {
            SerfTimer::Reap => {
                self.reap_tick(cx);
                Outcome::Nothing
            }
            SerfTimer::Reconnect => self.reconnect_tick(cx),
            SerfTimer::QueryDeadline { id } => self.query_deadline(id, cx),
            SerfTimer::CoalesceFlush => {
                self.coalesce_flush(cx);
                Outcome::Nothing
            }
            SerfTimer::ReceiptDeadline { id } => {
                self.receipt_deadline(id, cx);
                Outcome::Nothing
            }
            SerfTimer::ConflictVote { theirs } => {
                self.conflict_vote_due(theirs, cx);
                Outcome::Nothing
            }
        }
    }

    /// Report an event to the application, through the coalescer when coalescing is on.
    pub(crate) fn emit(&mut self, event: Event, cx: &mut Cx<'_>) {
        if let Some(event) = self.coalesce(event, cx) {
            cx.push_event(event);
        }
    }

    /// What the view digest needs of this layer (see [`crate::ctx::EventMark`]).
    pub(crate) fn event_mark(&self) -> crate::ctx::EventMark {
        crate::ctx::EventMark {
            changed: self.events_changed,
            latest: self.event_ring.latest,
        }
    }

    /// The member, event and query Lamport clocks.
    pub(crate) fn clocks(&self) -> (u64, u64, u64) {
        (
            self.member_clock.time(),
            self.event_clock.time(),
            self.query_clock.time(),
        )
    }

    /// Fill and bounds of the layer's queues: buffered intents, the event ring's Lamport
    /// times, this node's pending queries.
    pub(crate) fn depths(&self, cfg: &Config) -> [(usize, usize); 3] {
        [
            (self.intents.len(), cfg.max_recent_intents),
            (self.event_ring.times_held(), cfg.event_buffer.max(1)),
            (self.queries.pending_len(), cfg.max_pending_queries),
        ]
    }

    /// A membership update carried member Lamport time `t` (a join intent's time).
    pub(crate) fn witness_member_time(&mut self, t: u64) {
        self.member_clock.witness(t);
    }

    /// The intent buffered about `name` while it was unknown, if any: (leave?, Lamport time).
    pub(crate) fn take_intent(&mut self, name: &str) -> Option<(bool, u64)> {
        self.intents.take(name)
    }

    /// The Serf layer's half of merging a push-pull (before its member states): witness the
    /// sender's clocks and replay its recent user events (not re-gossiped: the cluster already
    /// has them) — or, joining with `ignore_old`, skip every event up to the sender's clock.
    pub(crate) fn merge_share(
        &mut self,
        share: crate::dissemination::SerfShare,
        ignore_old: bool,
        cx: &mut Cx<'_>,
    ) {
        let (member_ltime, event_ltime, query_ltime) = share.clocks;
        self.member_clock.witness(member_ltime);
        self.query_clock.witness(query_ltime);
        if ignore_old {
            self.event_ring.min_time = self.event_ring.min_time.max(event_ltime);
            let newest = share.events.iter().map(|e| e.ltime).max().unwrap_or(0);
            self.event_ring.latest = self.event_ring.latest.max(newest);
        }
        self.event_clock.witness(event_ltime);
        for e in share.events {
            self.on_user_event(e, false, true, cx);
        }
    }

    /// The id of the latest query this node asked.
    #[cfg(test)]
    pub(crate) fn last_query_id(&self) -> u32 {
        self.queries.last_id()
    }

    /// What a push-pull carries of this layer.
    pub(crate) fn share(&self) -> crate::dissemination::SerfShare {
        crate::dissemination::SerfShare {
            clocks: self.clocks(),
            events: self.event_ring.recent(),
        }
    }
}
