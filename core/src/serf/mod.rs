//! The Serf layer on top of SWIM: Lamport clocks (`lamport`), join and leave intents with a
//! buffer for intents about members not yet known (`intents`), user events with their dedup
//! ring (`user_events`), queries with filters, acks, relays and deadlines, and the name-conflict
//! vote (`query`), event coalescing (`coalesce`), direct messaging (`messaging`), and the reaping
//! of failed and left members with reconnect attempts and force-removal (`reaper`).
//!
//! [`Serf`] holds the layer's state, apart from the member table it shares with the other parts.

pub(crate) mod coalesce;
pub(crate) mod intents;
pub(crate) mod lamport;
pub(crate) mod messaging;
pub(crate) mod query;
mod reaper;
pub(crate) mod user_events;

use crate::config::Config;
use crate::time::Timestamp;

use coalesce::Coalescer;
use intents::RecentIntents;
use lamport::LamportClock;
use messaging::Outbox;
use query::Queries;
use user_events::EventRing;

/// The Serf layer's state.
#[derive(Debug)]
pub(crate) struct Serf {
    /// Orders join and leave intents.
    pub member_clock: LamportClock,
    /// Orders user events.
    pub event_clock: LamportClock,
    /// Orders queries.
    pub query_clock: LamportClock,
    /// Intents about members not yet known.
    pub intents: RecentIntents,
    /// User events delivered, for dedup (and for push-pull).
    pub event_ring: EventRing,
    /// Queries seen, this node's own in flight, and those it may still answer.
    pub queries: Queries,
    /// Events held for coalescing.
    pub coalescer: Coalescer,
    /// Direct messages recently sent, for failure reports.
    pub outbox: Outbox,
    /// When this node last delivered a new user event (part of its digest's settledness).
    pub events_changed: Timestamp,
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
        }
    }
}
