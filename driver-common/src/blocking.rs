//! The blocking flavor of the agent API: [`AgentHandle`], [`EventStream`] and [`QueryAnswers`]
//! with the same methods, argument types and result types as the async flavor
//! ([`crate::asynch`]), each call blocking the calling thread instead of returning a future.
//!
//! rookery-mio hands these out from its `Agent::start`; an async agent (rookery-tokio,
//! rookery-async-std) turns its handle and streams into these with `into_blocking`, for
//! threads outside the runtime. Never block a runtime's own worker thread with them.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::mpsc;
use rookery_core::{Event, Member, QueryHandle, QueryId, QueryParams, Tags};

use crate::error::{AgentError, TryRecvError};
use crate::handle::{Link, Wait};
use crate::pump::{AgentStats, Command, QueryAnswer, ShutdownMode};

/// A handle on a running agent, blocking flavor: cheap to clone, `Send + Sync`; every
/// operation is a message to the agent's event loop and blocks until it was carried out. When
/// every handle (of either flavor) is dropped the agent leaves gracefully, then stops (an
/// async agent only while its runtime still runs: see [`crate::asynch::AgentHandle`]).
#[derive(Clone, Debug)]
pub struct AgentHandle {
    pub(crate) link: Arc<Link>,
}

impl AgentHandle {
    handle_operations!(; .wait());
}

/// The agent's events, in order, blocking flavor. Bounded by
/// [`crate::Options::event_capacity`] under the core's one overflow policy
/// ([`rookery_core::EventQueue`]): the node never waits; when the application falls behind,
/// the oldest direct messages go first, membership events are never dropped (only coalesced
/// per member), and an [`Event::Lagged`] comes before the events that follow the gap, saying
/// how many were lost. Its last item is [`Event::Stopped`] with the reason (never dropped),
/// after which it ends. Also an [`Iterator`] (whose `next` is [`EventStream::recv`]).
#[derive(Debug)]
pub struct EventStream {
    pub(crate) rx: crate::stream::EventRx,
}

impl EventStream {
    receiver_operations!(Event; ; .wait());
}

impl Iterator for EventStream {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}

/// The member list after every membership change, newest wins, blocking flavor (see
/// [`AgentHandle::watch_members`]). Also an [`Iterator`] of member lists (whose `next` is
/// [`MembersWatch::changed`]).
#[derive(Debug)]
pub struct MembersWatch {
    pub(crate) rx: crate::watch::WatchRx,
}

impl MembersWatch {
    watch_operations!(; .wait());
}

impl Iterator for MembersWatch {
    type Item = Vec<Member>;

    fn next(&mut self) -> Option<Vec<Member>> {
        self.changed()
    }
}

/// The answers to one query asked with [`AgentHandle::query`], in arrival order, ending after
/// [`QueryAnswer::Done`], blocking flavor. Also an [`Iterator`].
#[derive(Debug)]
pub struct QueryAnswers {
    pub(crate) id: QueryId,
    pub(crate) rx: mpsc::Receiver<QueryAnswer>,
}

impl QueryAnswers {
    answers_operations!(; .wait());
    receiver_operations!(QueryAnswer; ; .wait());
}

impl Iterator for QueryAnswers {
    type Item = QueryAnswer;

    fn next(&mut self) -> Option<QueryAnswer> {
        self.recv()
    }
}
