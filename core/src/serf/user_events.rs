//! User events: named payloads stamped with the event Lamport clock and gossiped to every
//! member, delivered once per node. A ring of `event_buffer` slots (indexed by Lamport time)
//! remembers what was delivered; an event older than the ring can hold is refused. The ring
//! travels in push-pull, so a node that joins replays recent events unless it joins with
//! `ignore_old`.

use std::hash::{Hash, Hasher};

use bytes::Bytes;

use super::{Recorded, Serf, MAX_PER_SLOT};
use crate::ctx::Cx;
use crate::error::ApiError;
use crate::event::{Event, UserEvent};
use crate::identity::Name;
use crate::node::SerfKey;
use crate::wire::{self, Message, UserEventMsg};

/// One slot: the events delivered at one Lamport time.
#[derive(Debug, Clone)]
struct Slot {
    ltime: u64,
    events: Vec<UserEventMsg>,
}

/// The dedup ring.
#[derive(Debug)]
pub(crate) struct EventRing {
    /// Allocated on the first event (most nodes of a big simulation never see one).
    slots: Vec<Option<Slot>>,
    size: usize,
    /// Events below this Lamport time are ignored (set by a join with `ignore_old`).
    pub(crate) min_time: u64,
    /// The highest Lamport time of an event delivered here (or skipped by `ignore_old`).
    pub(crate) latest: u64,
}

impl EventRing {
    pub(crate) fn new(size: usize) -> EventRing {
        EventRing {
            slots: Vec::new(),
            size: size.max(1),
            min_time: 0,
            latest: 0,
        }
    }

    /// Record `e` unless it was already delivered or its slot is full.
    fn insert(&mut self, e: &UserEventMsg) -> Recorded {
        if self.slots.is_empty() {
            self.slots = vec![None; self.size];
        }
        let i = (e.ltime % self.slots.len() as u64) as usize;
        match &mut self.slots[i] {
            Some(slot) if slot.ltime == e.ltime => {
                if slot
                    .events
                    .iter()
                    .any(|x| x.name == e.name && x.payload == e.payload)
                {
                    return Recorded::Seen;
                }
                if slot.events.len() >= MAX_PER_SLOT {
                    return Recorded::Full;
                }
                slot.events.push(e.clone());
            }
            other => {
                *other = Some(Slot {
                    ltime: e.ltime,
                    events: vec![e.clone()],
                })
            }
        }
        self.latest = self.latest.max(e.ltime);
        Recorded::New
    }

    /// Lamport times with remembered events (at most the ring's size).
    pub(crate) fn times_held(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Every remembered event, oldest first.
    pub(crate) fn recent(&self) -> Vec<UserEventMsg> {
        let mut slots: Vec<&Slot> = self.slots.iter().flatten().collect();
        slots.sort_by_key(|s| s.ltime);
        slots
            .into_iter()
            .flat_map(|s| s.events.iter().cloned())
            .collect()
    }
}

fn event_key(e: &UserEventMsg) -> SerfKey {
    let mut h = std::hash::DefaultHasher::new();
    e.name.hash(&mut h);
    e.payload.hash(&mut h);
    SerfKey::Event(e.ltime, h.finish())
}

impl Serf {
    /// Fire a user event: every member (this one included) receives it once, as
    /// [`Event::User`]. `coalesce` lets receivers that coalesce user events keep only the
    /// latest per name. Name plus payload may not exceed `user_event_size_limit`.
    pub(crate) fn user_event(
        &mut self,
        name: &str,
        payload: Bytes,
        coalesce: bool,
        cx: &mut Cx<'_>,
    ) -> Result<(), ApiError> {
        if name.is_empty() {
            return Err(ApiError::EmptyName);
        }
        let size = wire::user_event_size(name, &payload);
        if size > cx.cfg.user_event_size_limit {
            let limit = cx.cfg.user_event_size_limit;
            return Err(ApiError::TooLarge {
                what: "user event",
                size,
                limit,
            });
        }
        let ltime = self.event_clock.time();
        self.event_clock.increment();
        let e = UserEventMsg {
            ltime,
            name: Name::new(name),
            payload,
            coalesce,
        };
        self.on_user_event(e, true, true, cx);
        Ok(())
    }

    /// Deliver `e` if it is new; `broadcast` re-gossips it, `deliver` emits it.
    pub(crate) fn on_user_event(
        &mut self,
        e: UserEventMsg,
        broadcast: bool,
        deliver: bool,
        cx: &mut Cx<'_>,
    ) {
        self.event_clock.witness(e.ltime);
        if e.ltime < self.event_ring.min_time {
            return;
        }
        let buffer = cx.cfg.event_buffer as u64;
        let now = self.event_clock.time();
        if now > buffer && e.ltime < now - buffer {
            cx.fx.stats.events_too_old += 1;
            return;
        }
        if !self.event_ring.insert(&e).is_new(cx, "user event", e.ltime) {
            return;
        }
        self.events_changed = cx.now;
        if deliver {
            let ev = UserEvent {
                ltime: e.ltime,
                name: e.name.clone(),
                payload: e.payload.clone(),
                coalesce: e.coalesce,
            };
            self.emit(Event::User(ev), cx);
        }
        if broadcast {
            let key = event_key(&e);
            cx.serf_enqueue(key, &Message::UserEvent(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::event::Event;
    use crate::testkit::*;
    use crate::wire::{Message, UserEventMsg};

    fn ev(ltime: u64, name: &str, payload: &'static [u8]) -> Message {
        Message::UserEvent(UserEventMsg {
            ltime,
            name: name.into(),
            payload: payload.into(),
            coalesce: false,
        })
    }

    #[test]
    fn delivered_once_and_stamped_with_the_event_clock() {
        let mut a = node("a", 1);
        a.user_event(at(1), "deploy", &b"v1"[..], false).unwrap();
        let got = events(&mut a);
        assert!(matches!(&got[..], [Event::User(u)] if u.name == "deploy" && u.ltime == 1));
        assert_eq!(a.serf.event_clock.time(), 2);
        deliver(
            &mut a,
            at(2),
            2,
            &[ev(5, "x", b"p"), ev(5, "x", b"p"), ev(5, "y", b"p")],
        );
        let got = events(&mut a);
        assert_eq!(
            got.len(),
            2,
            "duplicate dropped, same time other name kept: {got:?}"
        );
        assert_eq!(a.serf.event_clock.time(), 6);
    }

    #[test]
    fn too_old_and_too_large_are_refused() {
        let mut a = node("a", 1);
        a.serf.event_clock.witness(10_000);
        deliver(&mut a, at(1), 2, &[ev(10, "old", b"")]);
        assert!(events(&mut a).is_empty());
        assert_eq!(a.stats().events_too_old, 1);
        let big = vec![0u8; 600];
        assert!(matches!(
            a.user_event(at(2), "big", big, false),
            Err(ApiError::TooLarge {
                what: "user event",
                ..
            })
        ));
        assert_eq!(
            a.user_event(at(2), "", &b""[..], false),
            Err(ApiError::EmptyName)
        );
    }

    #[test]
    fn a_deep_serf_queue_warns_once_and_stays_bounded() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).queue_depth_warning = 10;
        a.fx.serf_queue =
            crate::dissemination::broadcast_queue::BroadcastQueue::new(20, [1, 2, 3, 4]);
        for i in 0..30u32 {
            a.user_event(at(1), "e", i.to_le_bytes().to_vec(), false)
                .unwrap();
        }
        let warnings: Vec<Event> = events(&mut a)
            .into_iter()
            .filter(|e| matches!(e, Event::QueueDepthWarning { .. }))
            .collect();
        assert_eq!(warnings, vec![Event::QueueDepthWarning { depth: 11 }]);
        assert_eq!(a.serf_queue_len(), 20);
        assert_eq!(a.stats().broadcast_drops, 10);
    }

    #[test]
    fn the_ring_keeps_recent_events_in_order() {
        let mut a = node("a", 1);
        for t in [3u64, 1, 2] {
            deliver(&mut a, at(t), 2, &[ev(t, "e", b"")]);
        }
        let times: Vec<u64> = a.serf.event_ring.recent().iter().map(|e| e.ltime).collect();
        assert_eq!(times, vec![1, 2, 3]);
    }
}
