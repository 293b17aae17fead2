//! Direct messaging: [`Node::send`] delivers one reliable message to a named member,
//! [`Node::broadcast`] one to every live member; receivers see [`Event::Message`] (the inbox,
//! bounded by `max_inbox`). When the driver reports the reliable channel to a member failed,
//! the messages sent to it within `tcp_timeout` are reported as [`Event::SendFailed`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::ApiError;
use crate::event::Event;
use crate::identity::Name;
use crate::node::{Node, RunState};
use crate::time::Timestamp;
use crate::wire::Message;

/// Direct messages recently sent, per destination, for failure reports.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// address → (member name, send times)
    recent: BTreeMap<SocketAddr, (Name, Vec<Timestamp>)>,
}

/// Most send times remembered per destination.
const MAX_TRACKED: usize = 1024;

impl Node {
    fn check_message(&self, payload: &Bytes) -> Result<(), ApiError> {
        if self.run != RunState::Running {
            return Err(ApiError::NotRunning);
        }
        if payload.len() > self.cfg.max_message_size {
            let (size, limit) = (payload.len(), self.cfg.max_message_size);
            return Err(ApiError::TooLarge {
                what: "message",
                size,
                limit,
            });
        }
        Ok(())
    }

    fn send_direct(&mut self, to: Name, addr: SocketAddr, payload: Bytes) {
        let now = self.now;
        let window = self.cfg.tcp_timeout;
        let e = self
            .serf
            .outbox
            .recent
            .entry(addr)
            .or_insert_with(|| (to, Vec::new()));
        e.1.retain(|t| now.saturating_since(*t) <= window);
        if e.1.len() < MAX_TRACKED {
            e.1.push(now);
        }
        let msg = Message::Direct {
            from: self.me.clone(),
            payload,
        };
        self.send_reliable(addr, &msg);
    }

    /// Send `payload` reliably to the member named `to` (alive or suspect).
    pub fn send(
        &mut self,
        now: Timestamp,
        to: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), ApiError> {
        self.advance(now);
        let payload = payload.into();
        self.check_message(&payload)?;
        let Some(rec) = self.members.get(to) else {
            return Err(ApiError::UnknownMember(to.to_string()));
        };
        if !rec.is_live() || rec.leaving {
            return Err(ApiError::NotAlive(to.to_string()));
        }
        let (name, addr) = (rec.name.to_name(), rec.addr());
        if name == self.me {
            self.push_event(Event::Message {
                from: name,
                payload,
            });
            return Ok(());
        }
        self.send_direct(name, addr, payload);
        Ok(())
    }

    /// Send `payload` reliably to every other live member; returns how many it went to.
    pub fn broadcast(
        &mut self,
        now: Timestamp,
        payload: impl Into<Bytes>,
    ) -> Result<usize, ApiError> {
        self.advance(now);
        let payload = payload.into();
        self.check_message(&payload)?;
        let targets: Vec<(Name, SocketAddr)> = self
            .members
            .iter()
            .filter(|r| r.is_live() && !r.leaving && r.name != self.me)
            .map(|r| (r.name.to_name(), r.addr()))
            .collect();
        let n = targets.len();
        for (name, addr) in targets {
            self.send_direct(name, addr, payload.clone());
        }
        Ok(n)
    }

    pub(crate) fn on_direct(&mut self, from: Name, payload: Bytes) {
        if self.run == RunState::Running {
            self.push_event(Event::Message { from, payload });
        }
    }

    pub(crate) fn direct_send_failed(&mut self, to: SocketAddr) {
        let now = self.now;
        let window = self.cfg.tcp_timeout * 2;
        let Some((name, times)) = self.serf.outbox.recent.remove(&to) else {
            return;
        };
        let messages = times
            .iter()
            .filter(|t| now.saturating_since(**t) <= window)
            .count();
        if messages > 0 {
            self.fx.stats.messages_failed += messages as u64;
            self.push_event(Event::SendFailed { to: name, messages });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::event::Event;
    use crate::node::TransmitKind;
    use crate::testkit::*;
    use crate::wire::Message;

    #[test]
    fn send_and_broadcast_go_reliable_to_live_members() {
        let mut a = node("a", 1);
        deliver(
            &mut a,
            at(0),
            2,
            &[
                alive("b", 2, 0),
                alive("c", 3, 0),
                alive("d", 4, 0),
                dead("d", 0, "x"),
            ],
        );
        sent(&mut a);
        a.send(at(1), "b", &b"hi"[..]).unwrap();
        assert_eq!(
            a.send(at(1), "zz", &b""[..]),
            Err(ApiError::UnknownMember("zz".into()))
        );
        assert_eq!(
            a.send(at(1), "d", &b""[..]),
            Err(ApiError::NotAlive("d".into()))
        );
        assert!(matches!(
            a.send(at(1), "b", vec![0u8; 70_000]),
            Err(ApiError::TooLarge {
                what: "message",
                ..
            })
        ));
        assert_eq!(a.broadcast(at(1), &b"all"[..]), Ok(2));
        let out = sent(&mut a);
        let mut direct: Vec<_> = out
            .iter()
            .filter(|(_, k, m)| {
                *k == TransmitKind::Reliable && matches!(m[0], Message::Direct { .. })
            })
            .map(|(to, _, _)| to.port())
            .collect();
        direct.sort();
        assert_eq!(direct, vec![2, 2, 3]);
        // Delivery on the other side.
        let mut b = node("b", 2);
        let frame = crate::wire::frame_message(
            &crate::wire::header(None),
            &Message::Direct {
                from: "a".into(),
                payload: (&b"hi"[..]).into(),
            },
        );
        b.handle_stream(at(2), addr(1), &frame[4..]).unwrap();
        assert!(events(&mut b).contains(&Event::Message {
            from: "a".into(),
            payload: (&b"hi"[..]).into()
        }));
    }

    #[test]
    fn a_failed_channel_reports_the_messages_sent_on_it() {
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
        events(&mut a);
        a.send(at(1), "b", &b"1"[..]).unwrap();
        a.send(at(2), "b", &b"2"[..]).unwrap();
        a.handle_send_failure(at(3), addr(2));
        assert_eq!(
            events(&mut a),
            vec![Event::SendFailed {
                to: "b".into(),
                messages: 2
            }]
        );
        a.handle_send_failure(at(4), addr(2));
        assert!(events(&mut a).is_empty(), "reported once");
    }

    #[test]
    fn the_inbox_is_bounded_and_lag_is_reported() {
        let mut b = node("b", 2);
        std::sync::Arc::make_mut(&mut b.cfg).max_inbox = 3;
        for i in 0..5u8 {
            let m = Message::Direct {
                from: "a".into(),
                payload: vec![i].into(),
            };
            let frame = crate::wire::frame_message(&crate::wire::header(None), &m);
            b.handle_stream(at(1), addr(1), &frame[4..]).unwrap();
        }
        b.user_event(at(2), "membership-like", &b""[..], false)
            .unwrap();
        let got = events(&mut b);
        assert_eq!(got[0], Event::Lagged { dropped: 2 });
        let payloads: Vec<u8> = got
            .iter()
            .filter_map(|e| match e {
                Event::Message { payload, .. } => Some(payload[0]),
                _ => None,
            })
            .collect();
        assert_eq!(payloads, vec![2, 3, 4], "the oldest messages went first");
        assert!(got.iter().any(|e| matches!(e, Event::User(_))));
        assert_eq!(b.stats().messages_dropped, 2);
    }
}
