//! Direct messages on their way out of a driver: the room they take (backpressure), the frames
//! that carry their numbers to the writers, and the receipts that tell each caller what became
//! of its message.
//!
//! What the outcomes mean:
//! - [`Delivered::Written`]: the whole frame was written to the peer's TCP connection (handed
//!   to the operating system). Not that the peer read it, nor that its application did: a
//!   connection that breaks afterwards loses what the kernel had not yet sent, and a write
//!   into a reused connection the peer closed a moment earlier (before this side saw the
//!   close) can still be accepted. This is what Go's memberlist means by a reliable send; use
//!   `send_acked` when the difference matters.
//! - [`Delivered::Acknowledged`] (`send_acked` only): the peer's core received the message and
//!   put it in its event queue, and said so.
//! - [`AgentError::NotDelivered`]: the message failed ([`rookery_core::SendFailure`] says how); for a plain
//!   send, the peer did not get it.
//!
//! Every message has exactly one outcome. A caller that keeps its [`Receipt`] gets it there.
//! A failure is also always put on the event stream ([`rookery_core::Event::SendFailed`], once
//! per message), whether or not anyone holds the receipt, so a failure is never lost without a
//! word — not even when a receipt is dropped after its outcome arrived. An acknowledgement
//! goes to the receipt, or to the event stream ([`rookery_core::Event::MessageAcked`]) when
//! the receipt was dropped. A successful plain write is reported on the receipt only (it is
//! the normal case).
//!
//! Backpressure: at most [`crate::Options::max_messages_in_flight`] messages are between a
//! `send` and their write (or failure) at once. `send`, `send_acked` and `broadcast` wait for
//! room; `try_send` refuses with [`AgentError::SendQueueFull`] instead. A `broadcast` waits for
//! one unit of room and then goes to every member, taking whatever room there is for the
//! others: it may overshoot the bound by its member count, once. A writer never refuses a
//! message frame for lack of queue space (protocol frames are bounded by
//! [`crate::Options::send_queue`]; messages by the room), so with backpressure no message is
//! ever dropped by the driver: it is written, or its connection failed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_lock::{Semaphore, SemaphoreGuardArc};
use bytes::Bytes;
use futures_channel::oneshot;
use rookery_core::{Event, MessageId, Name};

use crate::error::AgentError;

/// How a direct message reached its peer (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivered {
    /// Written whole to the peer's TCP connection.
    Written,
    /// The peer's core confirmed receipt (`send_acked`).
    Acknowledged,
}

/// What a caller waits on to learn the outcome of one direct message: `.await` it (async
/// flavor) or [`Receipt::wait`] (blocking flavor). Dropping it is fine: failures and
/// acknowledgements then arrive on the event stream instead (see the module docs).
pub struct Receipt {
    message: MessageId,
    rx: oneshot::Receiver<Result<Delivered, AgentError>>,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Receipt {
    /// The message's number, as [`rookery_core::Event::SendFailed`] and
    /// [`rookery_core::Event::MessageAcked`] name it.
    pub fn message(&self) -> MessageId {
        self.message
    }

    /// Block the calling thread until the outcome is known. [`AgentError::Stopped`] if the
    /// agent stopped first (the message's fate is then unknown).
    pub fn wait(self) -> Result<Delivered, AgentError> {
        crate::handle::Wait::wait(self)
    }
}

impl Future for Receipt {
    type Output = Result<Delivered, AgentError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(AgentError::Stopped)))
    }
}

/// The room one message holds until its frame is written or fails (a permit of the agent's
/// shared room; `None` for a broadcast's overshoot).
pub type Room = Option<SemaphoreGuardArc>;

/// The shared room for messages in flight, [`crate::Options::max_messages_in_flight`] units.
pub(crate) fn room(capacity: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(capacity.max(1)))
}

/// A reliable frame on its way to a writer, with the direct message it carries, if any.
#[derive(Clone, Debug)]
pub struct OutFrame {
    /// The framed bytes, as the core made them.
    pub bytes: Bytes,
    /// The message the frame carries ([`rookery_core::Transmit::message`]).
    pub message: Option<MessageId>,
}

/// One message between its send and its outcome.
struct Flight {
    room: Room,
    receipt: oneshot::Sender<Result<Delivered, AgentError>>,
    /// Waiting for the peer's receipt after the write.
    acked: bool,
}

/// The pump's record of the messages in flight (see the module docs).
#[derive(Default)]
pub(crate) struct Flights {
    map: HashMap<MessageId, Flight>,
}

impl fmt::Debug for Flights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &self.map.len())
            .finish()
    }
}

impl Flights {
    /// Follow the message `message` the core just accepted; the returned receipt resolves with
    /// its outcome.
    pub(crate) fn start(&mut self, message: MessageId, room: Room, acked: bool) -> Receipt {
        let (tx, rx) = oneshot::channel();
        self.map.insert(
            message,
            Flight {
                room,
                receipt: tx,
                acked,
            },
        );
        Receipt { message, rx }
    }

    /// The frame carrying `message` was written whole: a plain message is delivered; an
    /// acknowledged one frees its room and waits for the receipt.
    pub(crate) fn written(&mut self, message: MessageId) {
        let Some(f) = self.map.get_mut(&message) else {
            return;
        };
        if f.acked {
            f.room = None;
            return;
        }
        if let Some(f) = self.map.remove(&message) {
            let _ = f.receipt.send(Ok(Delivered::Written));
        }
    }

    /// Hand an outcome event to the receipt waiting for it. Returns the event when it must
    /// (also) go on the event stream: it is not an outcome, it is a failure (always reported
    /// there too), nobody follows that message, or its receipt was dropped.
    pub(crate) fn claim(&mut self, event: Event) -> Option<Event> {
        let (message, outcome) = match &event {
            Event::SendFailed {
                message, reason, ..
            } => (*message, Err(AgentError::NotDelivered(*reason))),
            Event::MessageAcked { message, .. } => (*message, Ok(Delivered::Acknowledged)),
            _ => return Some(event),
        };
        let failed = outcome.is_err();
        let Some(f) = self.map.remove(&message) else {
            return Some(event);
        };
        if f.receipt.is_canceled() || f.receipt.send(outcome).is_err() || failed {
            return Some(event);
        }
        None
    }

    /// Messages still in flight.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The recipients of a broadcast, each with the receipt of its message.
pub type BroadcastReceipts = Vec<(Name, Receipt)>;
