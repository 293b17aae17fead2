//! The one overflow policy for events waiting for the application: [`EventQueue`] owns it —
//! which event goes when the queue is full, how membership events are coalesced instead of
//! dropped, and how every loss is counted and reported in-band by [`Event::Lagged`]. The
//! node's own queue ([`crate::Node::poll_event`]) and every driver's event stream hold their
//! events in one of these, so the rule is written here once; [`Event::class`] says which
//! kind each event is.

use std::collections::VecDeque;

use crate::event::Event;
use crate::identity::{Member, Name};

/// How the overflow policy of an [`EventQueue`] treats one event ([`Event::class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventClass<'a> {
    /// A received direct message ([`Event::Message`]): the first to go.
    Message,
    /// Any other event that may be dropped (user events, queries and their answers, send
    /// failures, warnings, key operation results): goes, oldest first, when no direct
    /// message is left to drop.
    Droppable,
    /// A membership event about these members: never dropped; when the queue is full of
    /// events that may not be dropped, coalesced per member (the newest event about a member
    /// replaces the oldest one still waiting about it).
    Membership(&'a [Member]),
    /// [`Event::NameConflict`] about this name: never dropped; coalesced per name like a
    /// membership event.
    NameConflict(&'a Name),
    /// Never dropped nor coalesced: the one-off events an application waits for
    /// ([`Event::JoinCompleted`], [`Event::LeaveCompleted`], [`Event::Stopped`]).
    Kept,
    /// [`Event::Lagged`]: not queued; its count is added to the queue's own (see
    /// [`EventQueue::push`]).
    Lagged,
}

/// What one [`EventQueue::push`] cost: how many events it discarded to stay within the bounds.
/// All zero when nothing overflowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overflow {
    /// Direct messages dropped (the oldest waiting, or the new one).
    pub messages_dropped: u64,
    /// Other droppable events dropped (the oldest waiting, or the new one).
    pub events_dropped: u64,
    /// Membership events (or name conflicts) replaced by a newer one about the same member
    /// (a member's entry in an [`Event::MemberBatch`] counts as one).
    pub coalesced: u64,
}

impl Overflow {
    /// Events lost in all: what the next [`Event::Lagged`] adds for this push.
    pub fn total(&self) -> u64 {
        self.messages_dropped + self.events_dropped + self.coalesced
    }

    /// True when nothing was lost.
    pub fn is_none(&self) -> bool {
        self.total() == 0
    }
}

/// A bounded queue of events for the application, with rookery's one overflow policy (the
/// node's event queue and every driver's event stream are one of these):
///
/// 1. **Direct messages** ([`Event::Message`]) beyond `max_inbox` drop the oldest message.
/// 2. When the queue holds `capacity` events, a new event makes room by dropping the **oldest
///    direct message**; failing that, the **oldest event that may be dropped**
///    ([`EventClass::Droppable`]); failing that, a new droppable event or message is itself
///    dropped.
/// 3. **Membership events** (joined, updated, left, failed, suspected, recovered, reaped,
///    batches), **name conflicts** and the one-off events (`JoinCompleted`, `LeaveCompleted`,
///    `Stopped`) are **never dropped**. When the queue is full of such events, a new
///    membership event about member X is **coalesced**: the oldest event still waiting about X
///    is removed (for a batch, X's entry in it) and the new one is queued last, so the
///    application still learns every member's latest state, in order (Serf's member-event
///    coalescing); a name conflict likewise replaces the oldest one about the same name. With
///    nothing to coalesce, the event is kept beyond `capacity`. So beyond `capacity` the queue
///    only grows by news about a member (or contested name) it holds nothing about, and by the
///    one-off events: membership events are bounded by the member table, and the hard bound is
///    `capacity` plus one event per member named (members forgotten while the application lags
///    included; a batch whose entries are named again may briefly add one more) plus those
///    one-offs (one per `join` or `leave` asked for, and `Stopped`).
/// 4. **Every loss is counted and reported in-band**: dropped and coalesced events alike add to
///    the count that [`EventQueue::pop`] returns first, as [`Event::Lagged`]`{ dropped }`,
///    before the events that follow the gap. Pushing an [`Event::Lagged`] (from a queue
///    upstream) adds its count to this queue's own, so one `Lagged` reports both.
///
/// With nothing overflowing, events come out exactly as they went in.
#[derive(Clone, Debug)]
pub struct EventQueue {
    events: VecDeque<Event>,
    capacity: usize,
    max_inbox: usize,
    /// Direct messages waiting in `events`.
    inbox: usize,
    /// Events lost since the last [`Event::Lagged`].
    lagged: u64,
    /// Everything lost so far, by cause.
    total: Overflow,
}

/// Which rule applies to an event, without borrowing it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    Message,
    Droppable,
    Coalesce,
    Keep,
}

impl EventQueue {
    /// An empty queue holding at most `capacity` events (see the type docs for membership
    /// events), of which at most `max_inbox` direct messages.
    pub fn new(capacity: usize, max_inbox: usize) -> EventQueue {
        EventQueue {
            events: VecDeque::new(),
            capacity,
            max_inbox,
            inbox: 0,
            lagged: 0,
            total: Overflow::default(),
        }
    }

    /// Change the bounds (for events queued from now on; nothing is dropped now).
    pub fn set_bounds(&mut self, capacity: usize, max_inbox: usize) {
        self.capacity = capacity;
        self.max_inbox = max_inbox;
    }

    /// Queue `event` under the overflow policy (see the type docs); returns what it cost.
    pub fn push(&mut self, event: Event) -> Overflow {
        let mut cost = Overflow::default();
        let rule = match event.class() {
            EventClass::Lagged => {
                if let Event::Lagged { dropped } = event {
                    self.lagged = self.lagged.saturating_add(dropped);
                }
                return cost;
            }
            EventClass::Message => Rule::Message,
            EventClass::Droppable => Rule::Droppable,
            EventClass::Membership(_) | EventClass::NameConflict(_) => Rule::Coalesce,
            EventClass::Kept => Rule::Keep,
        };
        if rule == Rule::Message && self.inbox >= self.max_inbox && self.drop_oldest_message() {
            cost.messages_dropped += 1;
        }
        let mut queue = true;
        if self.events.len() >= self.capacity {
            if self.drop_oldest_message() {
                cost.messages_dropped += 1;
            } else if self.drop_oldest_droppable() {
                cost.events_dropped += 1;
            } else {
                match rule {
                    Rule::Message => {
                        cost.messages_dropped += 1;
                        queue = false;
                    }
                    Rule::Droppable => {
                        cost.events_dropped += 1;
                        queue = false;
                    }
                    Rule::Coalesce => cost.coalesced += self.coalesce(&event),
                    Rule::Keep => {}
                }
            }
        }
        if queue {
            if rule == Rule::Message {
                self.inbox += 1;
            }
            self.events.push_back(event);
        }
        if !cost.is_none() {
            self.lagged = self.lagged.saturating_add(cost.total());
            self.total.messages_dropped += cost.messages_dropped;
            self.total.events_dropped += cost.events_dropped;
            self.total.coalesced += cost.coalesced;
            tracing::trace!(?cost, lagged = self.lagged, "event queue overflow");
        }
        cost
    }

    /// The next event: [`Event::Lagged`] first when anything was lost since the last one.
    pub fn pop(&mut self) -> Option<Event> {
        if self.lagged > 0 {
            let dropped = std::mem::take(&mut self.lagged);
            return Some(Event::Lagged { dropped });
        }
        let Some(e) = self.events.pop_front() else {
            crate::node::release_burst(&mut self.events);
            return None;
        };
        if matches!(e.class(), EventClass::Message) {
            self.inbox -= 1;
        }
        Some(e)
    }

    /// Events waiting (not counting a pending [`Event::Lagged`]).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when [`EventQueue::pop`] has nothing to return (no event and no pending `Lagged`).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.lagged == 0
    }

    /// Direct messages waiting.
    pub fn inbox_len(&self) -> usize {
        self.inbox
    }

    /// The bound on events (see the type docs for the membership events kept beyond it).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bound on direct messages.
    pub fn max_inbox(&self) -> usize {
        self.max_inbox
    }

    /// Events lost since the last [`Event::Lagged`] (what the next one will report).
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    /// Everything lost since the queue was made, by cause.
    pub fn lost(&self) -> Overflow {
        self.total
    }

    /// Drop the oldest direct message; false when there is none.
    fn drop_oldest_message(&mut self) -> bool {
        if self.inbox == 0 {
            return false;
        }
        let Some(i) = self
            .events
            .iter()
            .position(|e| matches!(e.class(), EventClass::Message))
        else {
            return false;
        };
        self.events.remove(i);
        self.inbox -= 1;
        true
    }

    /// Drop the oldest droppable event that is not a direct message; false when there is none.
    fn drop_oldest_droppable(&mut self) -> bool {
        let Some(i) = self
            .events
            .iter()
            .position(|e| matches!(e.class(), EventClass::Droppable))
        else {
            return false;
        };
        self.events.remove(i);
        true
    }

    /// Make way for `new` (a membership event or a name conflict): remove the oldest event
    /// still waiting about each member it names (a batch loses only that member's entry, and
    /// goes when it has none left). Returns how many were removed.
    fn coalesce(&mut self, new: &Event) -> u64 {
        match new.class() {
            EventClass::Membership(members) => {
                let names: Vec<Name> = members.iter().map(|m| m.name.clone()).collect();
                names.iter().map(|n| u64::from(self.remove_about(n))).sum()
            }
            EventClass::NameConflict(name) => {
                let name = name.clone();
                let i = self
                    .events
                    .iter()
                    .position(|e| matches!(e.class(), EventClass::NameConflict(n) if *n == name));
                u64::from(i.and_then(|i| self.events.remove(i)).is_some())
            }
            _ => 0,
        }
    }

    /// Remove the oldest membership event about `name` (its entry, from a batch naming
    /// others too); false when none waits.
    fn remove_about(&mut self, name: &Name) -> bool {
        let Some(i) = self.events.iter().position(|e| {
            matches!(e.class(), EventClass::Membership(ms) if ms.iter().any(|m| m.name == *name))
        }) else {
            return false;
        };
        if let Event::MemberBatch { members, .. } = &mut self.events[i] {
            if members.iter().any(|m| m.name != *name) {
                members.retain(|m| m.name != *name);
                return true;
            }
        }
        self.events.remove(i);
        true
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::event::{MemberEventKind, StopReason, UserEvent};
    use crate::MemberStatus;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            addr: "10.0.0.1:7946".parse().unwrap(),
            status: MemberStatus::Alive,
            incarnation: 1,
            tags: Default::default(),
        }
    }

    fn msg(i: u32) -> Event {
        Event::Message {
            from: "peer".into(),
            payload: Bytes::from(i.to_string()),
        }
    }

    fn user(i: u32) -> Event {
        Event::User(UserEvent {
            ltime: u64::from(i),
            name: "u".into(),
            payload: Bytes::new(),
            coalesce: false,
        })
    }

    fn drain(q: &mut EventQueue) -> Vec<Event> {
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn without_overflow_events_come_out_as_they_went_in() {
        let mut q = EventQueue::new(8, 8);
        let all = vec![msg(1), user(2), Event::MemberJoined(member("a")), msg(3)];
        for e in all.clone() {
            assert!(q.push(e).is_none());
        }
        assert_eq!((q.len(), q.inbox_len()), (4, 2));
        assert_eq!(drain(&mut q), all);
        assert!(q.is_empty());
        assert_eq!(q.lost(), Overflow::default());
    }

    #[test]
    fn messages_beyond_the_inbox_drop_the_oldest_message() {
        let mut q = EventQueue::new(100, 2);
        q.push(msg(1));
        q.push(user(9));
        q.push(msg(2));
        let cost = q.push(msg(3));
        assert_eq!(cost.messages_dropped, 1);
        assert_eq!(q.inbox_len(), 2);
        assert_eq!(
            drain(&mut q),
            vec![Event::Lagged { dropped: 1 }, user(9), msg(2), msg(3)]
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_message_first_then_the_oldest_droppable() {
        let mut q = EventQueue::new(3, 10);
        q.push(user(1));
        q.push(msg(2));
        q.push(user(3));
        let joined = Event::MemberJoined(member("a"));
        assert_eq!(
            q.push(joined.clone()).messages_dropped,
            1,
            "the message goes"
        );
        assert_eq!(
            q.push(user(4)).events_dropped,
            1,
            "then the oldest droppable"
        );
        assert_eq!(
            drain(&mut q),
            vec![Event::Lagged { dropped: 2 }, user(3), joined, user(4)]
        );
        assert_eq!(q.lost().messages_dropped, 1);
        assert_eq!(q.lost().events_dropped, 1);
    }

    #[test]
    fn a_droppable_event_with_nothing_older_to_drop_is_itself_dropped() {
        let mut q = EventQueue::new(2, 2);
        let (a, b) = (member("a"), member("b"));
        q.push(Event::MemberJoined(a.clone()));
        q.push(Event::MemberJoined(b.clone()));
        assert_eq!(q.push(msg(1)).messages_dropped, 1);
        assert_eq!(q.push(user(2)).events_dropped, 1);
        assert_eq!(q.len(), 2);
        assert_eq!(
            drain(&mut q),
            vec![
                Event::Lagged { dropped: 2 },
                Event::MemberJoined(a),
                Event::MemberJoined(b)
            ]
        );
    }

    #[test]
    fn membership_events_coalesce_per_member_and_are_never_dropped() {
        let mut q = EventQueue::new(2, 2);
        let (a, b, c) = (member("a"), member("b"), member("c"));
        q.push(Event::MemberJoined(a.clone()));
        q.push(Event::MemberJoined(b.clone()));
        // About a: its oldest waiting event goes, the new one is queued last.
        let failed = Event::MemberFailed(a.clone());
        assert_eq!(q.push(failed.clone()).coalesced, 1);
        assert_eq!(q.len(), 2);
        // About c: nothing to coalesce with, kept beyond the bound.
        let joined_c = Event::MemberJoined(c.clone());
        assert!(q.push(joined_c.clone()).is_none());
        assert_eq!(q.len(), 3);
        // A batch loses only the entries of the members named again.
        let batch = Event::MemberBatch {
            kind: MemberEventKind::Left,
            members: vec![b.clone(), c.clone()],
        };
        q.push(Event::MemberLeft(b.clone()));
        assert_eq!(q.len(), 3, "b's join replaced");
        assert_eq!(q.push(batch.clone()).coalesced, 2, "b's left and c's join");
        let reaped = Event::MemberReaped(b.clone());
        assert_eq!(
            q.push(reaped.clone()).coalesced,
            1,
            "b's entry in the batch"
        );
        let got = drain(&mut q);
        assert_eq!(got[0], Event::Lagged { dropped: 5 });
        assert_eq!(
            got[1..],
            [
                failed,
                Event::MemberBatch {
                    kind: MemberEventKind::Left,
                    members: vec![c],
                },
                reaped
            ]
        );
        assert_eq!(q.lost().coalesced, 5);
    }

    #[test]
    fn name_conflicts_coalesce_per_name() {
        let mut q = EventQueue::new(1, 1);
        let conflict = |port: u16| Event::NameConflict {
            name: "x".into(),
            existing: "10.0.0.1:1".parse().unwrap(),
            claimed: ([10, 0, 0, 2], port).into(),
        };
        q.push(conflict(1));
        assert_eq!(q.push(conflict(2)).coalesced, 1);
        assert_eq!(q.len(), 1);
        assert_eq!(
            drain(&mut q),
            vec![Event::Lagged { dropped: 1 }, conflict(2)]
        );
    }

    #[test]
    fn lagged_comes_first_with_the_count_since_the_last_one() {
        let mut q = EventQueue::new(1, 1);
        q.push(msg(1));
        q.push(msg(2));
        q.push(msg(3));
        assert_eq!(q.lagged(), 2);
        assert_eq!(q.pop(), Some(Event::Lagged { dropped: 2 }));
        assert_eq!(q.pop(), Some(msg(3)));
        q.push(msg(4));
        q.push(msg(5));
        assert_eq!(
            drain(&mut q),
            vec![Event::Lagged { dropped: 1 }, msg(5)],
            "counted afresh after each Lagged"
        );
        // A Lagged from upstream adds to this queue's count instead of taking a slot.
        q.push(msg(6));
        assert!(q.push(Event::Lagged { dropped: 7 }).is_none());
        q.push(msg(7));
        assert_eq!(drain(&mut q), vec![Event::Lagged { dropped: 8 }, msg(7)]);
    }

    #[test]
    fn the_one_off_events_are_never_dropped() {
        let mut q = EventQueue::new(1, 1);
        let stopped = Event::Stopped {
            reason: StopReason::Left,
        };
        q.push(Event::LeaveCompleted);
        q.push(Event::JoinCompleted {
            answered: 1,
            contacted: 1,
        });
        assert!(q.push(stopped.clone()).is_none());
        q.push(msg(1));
        q.push(user(1));
        let got = drain(&mut q);
        assert_eq!(got[0], Event::Lagged { dropped: 2 });
        assert_eq!(got.len(), 4);
        assert_eq!(got.last(), Some(&stopped));
    }
}
