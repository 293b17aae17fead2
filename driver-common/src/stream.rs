//! The event stream between an agent's event loop and the application: one
//! [`rookery_core::EventQueue`] shared by the pump (which pushes, never waiting) and the
//! `EventStream` of either flavor (which pops, waiting when it is empty). The queue is bounded
//! by [`crate::Options::event_capacity`] under the core's one overflow policy, written in
//! [`rookery_core::EventQueue`]: the oldest direct messages go first, membership events are
//! never dropped (only coalesced per member), and an `Event::Lagged` in the stream itself says
//! how many were lost. The final `Event::Stopped` is never dropped, and the stream ends after
//! it, once the pump's end is gone.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use rookery_core::{Event, EventClass, EventQueue, Overflow};

use crate::error::TryRecvError;

/// What both ends share.
struct Shared {
    state: Mutex<State>,
}

struct State {
    queue: EventQueue,
    /// The reader waiting for an event (one stream, one waker).
    waker: Option<Waker>,
    /// The pump's end is gone: nothing more will come.
    sender_gone: bool,
    /// The application dropped its stream: events are discarded at once.
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new stream holding at most `capacity` events (direct messages included) under the
/// [`EventQueue`] policy: the pump's end and the application's end.
pub(crate) fn event_stream(capacity: usize) -> (EventTx, EventRx) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: EventQueue::new(capacity, capacity),
            waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (EventTx(shared.clone()), EventRx(shared))
}

/// The pump's end of the event stream; dropping it ends the stream (after what it holds).
pub(crate) struct EventTx(Arc<Shared>);

impl EventTx {
    /// Queue `event` for the application without waiting; returns what the overflow policy
    /// discarded (everything, once the application dropped its stream).
    pub(crate) fn push(&mut self, event: Event) -> Overflow {
        let (cost, waker) = {
            let mut s = self.0.lock();
            if s.receiver_gone {
                let mut cost = Overflow::default();
                if matches!(event.class(), EventClass::Message) {
                    cost.messages_dropped = 1;
                } else {
                    cost.events_dropped = 1;
                }
                return cost;
            }
            let behind = s.queue.lagged() > 0;
            let cost = s.queue.push(event);
            if !cost.is_none() && !behind {
                tracing::warn!(
                    capacity = s.queue.capacity(),
                    "the application falls behind its event stream: dropping the oldest \
                     direct messages first (membership events are kept or coalesced); an \
                     Event::Lagged will say how many"
                );
            }
            (cost, s.waker.take())
        };
        if let Some(w) = waker {
            w.wake();
        }
        cost
    }
}

impl Drop for EventTx {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.0.lock();
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The application's end of the event stream (both flavors of `EventStream` wrap it).
pub(crate) struct EventRx(Arc<Shared>);

impl fmt::Debug for EventRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.lock();
        f.debug_struct("EventRx")
            .field("len", &s.queue.len())
            .field("capacity", &s.queue.capacity())
            .field("lagged", &s.queue.lagged())
            .field("ended", &s.sender_gone)
            .finish()
    }
}

impl EventRx {
    /// The next event if one is waiting (`Lagged` first after a loss), `Closed` once the
    /// pump's end is gone and everything was read.
    pub(crate) fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        let mut s = self.0.lock();
        match s.queue.pop() {
            Some(e) => Ok(e),
            None if s.sender_gone => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl futures_util::Stream for EventRx {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut s = self.0.lock();
        if let Some(e) = s.queue.pop() {
            return Poll::Ready(Some(e));
        }
        if s.sender_gone {
            return Poll::Ready(None);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for EventRx {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.receiver_gone = true;
        s.waker = None;
        while s.queue.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use rookery_core::{Member, MemberStatus, StopReason};

    use super::*;
    use crate::handle::Wait;

    fn msg(i: u32) -> Event {
        Event::Message {
            from: "peer".into(),
            payload: Bytes::from(i.to_string()),
        }
    }

    fn failed(name: &str) -> Event {
        Event::MemberFailed(Member {
            name: name.into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            status: MemberStatus::Failed,
            incarnation: 1,
            tags: Default::default(),
        })
    }

    #[test]
    fn a_slow_reader_loses_the_oldest_messages_and_learns_it_first() {
        let (mut tx, mut rx) = event_stream(3);
        for i in 0..5 {
            tx.push(msg(i));
        }
        let cost = tx.push(failed("a"));
        assert_eq!(cost.messages_dropped, 1, "room made for the member event");
        let stopped = Event::Stopped {
            reason: StopReason::Shutdown,
        };
        let cost = tx.push(stopped.clone());
        assert_eq!(
            cost.messages_dropped, 1,
            "the final event is never the one dropped"
        );
        drop(tx);
        let got: Vec<Event> = std::iter::from_fn(|| rx.next().wait()).collect();
        assert_eq!(
            got,
            vec![Event::Lagged { dropped: 4 }, msg(4), failed("a"), stopped]
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_waiting_reader_is_woken() {
        let (mut tx, mut rx) = event_stream(2);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let reader = std::thread::spawn(move || {
            let first = rx.next().wait();
            (first, rx.next().wait())
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        tx.push(msg(1));
        drop(tx);
        assert_eq!(reader.join().unwrap(), (Some(msg(1)), None));
    }

    #[test]
    fn events_for_a_dropped_stream_are_counted_lost() {
        let (mut tx, rx) = event_stream(2);
        drop(rx);
        assert_eq!(tx.push(msg(1)).messages_dropped, 1);
        assert_eq!(tx.push(failed("a")).events_dropped, 1);
    }
}
