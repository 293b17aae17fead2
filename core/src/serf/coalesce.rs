//! Event coalescing (off by default). Member events are held for up to `coalesce_period`,
//! keeping only the latest per member, and flushed as one [`Event::MemberBatch`] per kind once
//! `quiescent_period` passes without a new one or the period ends. User events flagged
//! `coalesce` are held the same way under `user_coalesce_period` / `user_quiescent_period`,
//! keeping, per event name, every event at the latest Lamport time (as Serf does: two
//! different events with one name and one time, from two senders, are both delivered); each
//! event superseded by a later time is counted in `Stats::user_events_coalesced`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Serf, SerfTimer};
use crate::ctx::Cx;
use crate::event::{Event, MemberEventKind, UserEvent};
use crate::identity::{Member, Name};
use crate::time::Timestamp;
use crate::timers::TimerKind;

/// Events held for coalescing.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    members: BTreeMap<Name, (MemberEventKind, Member)>,
    members_window: Option<(Timestamp, Timestamp)>,
    /// Per name: every held event at the latest Lamport time seen.
    users: BTreeMap<Name, Vec<UserEvent>>,
    users_window: Option<(Timestamp, Timestamp)>,
}

fn member_kind(e: &Event) -> Option<(MemberEventKind, &Member)> {
    match e {
        Event::MemberJoined(m) => Some((MemberEventKind::Joined, m)),
        Event::MemberLeft(m) => Some((MemberEventKind::Left, m)),
        Event::MemberFailed(m) => Some((MemberEventKind::Failed, m)),
        Event::MemberUpdated(m) => Some((MemberEventKind::Updated, m)),
        Event::MemberReaped(m) => Some((MemberEventKind::Reaped, m)),
        _ => None,
    }
}

/// When a window (first, last) is due: the period since the first event, or the quiescent
/// period since the last, whichever comes first.
fn due_at(window: (Timestamp, Timestamp), period: Duration, quiescent: Duration) -> Timestamp {
    let by_period = window.0 + period;
    if quiescent.is_zero() {
        by_period
    } else {
        by_period.min(window.1 + quiescent)
    }
}

impl Serf {
    /// Hold `event` if coalescing applies to it; otherwise hand it back.
    pub(crate) fn coalesce(&mut self, event: Event, cx: &mut Cx<'_>) -> Option<Event> {
        let now = cx.now;
        if !cx.cfg.coalesce_period.is_zero() {
            if let Some((kind, m)) = member_kind(&event) {
                let c = &mut self.coalescer;
                c.members.insert(m.name.clone(), (kind, m.clone()));
                let w = c.members_window.get_or_insert((now, now));
                w.1 = now;
                let at = due_at(*w, cx.cfg.coalesce_period, cx.cfg.quiescent_period);
                cx.fx
                    .timers
                    .schedule(at, TimerKind::Serf(SerfTimer::CoalesceFlush));
                return None;
            }
        }
        if !cx.cfg.user_coalesce_period.is_zero() {
            if let Event::User(u) = &event {
                if u.coalesce {
                    let c = &mut self.coalescer;
                    let held = c.users.entry(u.name.clone()).or_default();
                    let latest = held.first().map(|old| old.ltime);
                    match latest {
                        Some(t) if t > u.ltime => {
                            cx.fx.stats.user_events_coalesced += 1;
                        }
                        Some(t) if t == u.ltime => held.push(u.clone()),
                        _ => {
                            cx.fx.stats.user_events_coalesced += held.len() as u64;
                            held.clear();
                            held.push(u.clone());
                        }
                    }
                    let w = c.users_window.get_or_insert((now, now));
                    w.1 = now;
                    let at = due_at(
                        *w,
                        cx.cfg.user_coalesce_period,
                        cx.cfg.user_quiescent_period,
                    );
                    cx.fx
                        .timers
                        .schedule(at, TimerKind::Serf(SerfTimer::CoalesceFlush));
                    return None;
                }
            }
        }
        Some(event)
    }

    /// Flush whatever is due.
    pub(crate) fn coalesce_flush(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        if let Some(w) = self.coalescer.members_window {
            if due_at(w, cx.cfg.coalesce_period, cx.cfg.quiescent_period) <= now {
                self.coalescer.members_window = None;
                let held = std::mem::take(&mut self.coalescer.members);
                let mut batches: BTreeMap<MemberEventKind, Vec<Member>> = BTreeMap::new();
                for (_, (kind, m)) in held {
                    batches.entry(kind).or_default().push(m);
                }
                for (kind, members) in batches {
                    cx.push_event(Event::MemberBatch { kind, members });
                }
            }
        }
        if let Some(w) = self.coalescer.users_window {
            if due_at(w, cx.cfg.user_coalesce_period, cx.cfg.user_quiescent_period) <= now {
                self.coalescer.users_window = None;
                let held = std::mem::take(&mut self.coalescer.users);
                let mut latest: Vec<UserEvent> = held.into_values().flatten().collect();
                // Stable: events of one time keep their arrival order.
                latest.sort_by_key(|u| u.ltime);
                for u in latest {
                    cx.push_event(Event::User(u));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::event::{Event, MemberEventKind};
    use crate::testkit::*;

    #[test]
    fn member_events_flush_as_one_batch_after_quiet() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).coalesce_period = Duration::from_secs(3);
        std::sync::Arc::make_mut(&mut a.cfg).quiescent_period = Duration::from_secs(1);
        for (i, t) in [(2u16, 100u64), (3, 200), (4, 300), (5, 400), (6, 500)] {
            deliver(&mut a, at(t), i, &[alive(&format!("n{i}"), i, 0)]);
        }
        assert!(events(&mut a).is_empty());
        a.handle_timeout(at(1400));
        assert!(
            events(&mut a).is_empty(),
            "still within the quiescent period"
        );
        a.handle_timeout(at(1500));
        let got = events(&mut a);
        assert!(
            matches!(&got[..], [Event::MemberBatch { kind: MemberEventKind::Joined, members }] if members.len() == 5),
            "{got:?}"
        );
    }

    /// Serf's coalescer keeps every event at the latest Lamport time of a name: two different
    /// events with one name and one time, from two senders, are both delivered; only events
    /// of an earlier time are superseded, and each is counted.
    #[test]
    fn coalescing_keeps_every_event_at_the_latest_time() {
        use crate::wire::{Message, UserEventMsg};
        let ev = |ltime: u64, payload: &'static [u8]| {
            Message::UserEvent(UserEventMsg {
                ltime,
                name: "deploy".into(),
                payload: payload.into(),
                coalesce: true,
            })
        };
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).user_coalesce_period = Duration::from_secs(2);
        deliver(&mut a, at(0), 2, &[ev(5, b"old")]);
        deliver(&mut a, at(10), 2, &[ev(7, b"from-b")]);
        deliver(&mut a, at(20), 3, &[ev(7, b"from-c")]);
        deliver(&mut a, at(30), 3, &[ev(6, b"late")]);
        a.handle_timeout(at(2_000));
        let got: Vec<(u64, Vec<u8>)> = events(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                Event::User(u) => Some((u.ltime, u.payload.to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![(7, b"from-b".to_vec()), (7, b"from-c".to_vec())],
            "both events of the latest time, in arrival order"
        );
        assert_eq!(a.stats().user_events_coalesced, 2, "old and late, counted");
    }

    #[test]
    fn the_period_caps_the_wait_and_user_events_keep_the_latest_per_name() {
        let mut a = node("a", 1);
        std::sync::Arc::make_mut(&mut a.cfg).user_coalesce_period = Duration::from_secs(2);
        std::sync::Arc::make_mut(&mut a.cfg).user_quiescent_period = Duration::from_secs(1);
        for t in 0..5u64 {
            a.user_event(at(t * 500), "deploy", format!("v{t}").into_bytes(), true)
                .unwrap();
        }
        a.handle_timeout(at(2050));
        a.user_event(at(2100), "other", &b"x"[..], false).unwrap();
        let got = events(&mut a);
        // The flush came at 2 s (the period), before the quiescent gap could.
        let users: Vec<String> = got
            .iter()
            .filter_map(|e| match e {
                Event::User(u) => Some(String::from_utf8_lossy(&u.payload).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(users, vec!["v4".to_string(), "x".to_string()], "{got:?}");
    }
}
