//! Direct messaging: [`Node::send`] delivers one reliable message to a named member,
//! [`Node::broadcast`] one to every live member; receivers see [`Event::Message`] (the inbox,
//! bounded by `max_inbox`). When the driver reports the reliable channel to a member failed,
//! the messages sent to it within `tcp_timeout` are reported as [`Event::SendFailed`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::Serf;
use crate::ctx::Cx;
use crate::error::ApiError;
use crate::event::Event;
use crate::identity::Name;
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

impl Serf {
    fn check_message(&self, payload: &Bytes, cx: &Cx<'_>) -> Result<(), ApiError> {
        if payload.len() > cx.cfg.max_message_size {
            let (size, limit) = (payload.len(), cx.cfg.max_message_size);
            return Err(ApiError::TooLarge {
                what: "message",
                size,
                limit,
            });
        }
        Ok(())
    }

    fn send_direct(&mut self, to: Name, addr: SocketAddr, payload: Bytes, cx: &mut Cx<'_>) {
        let now = cx.now;
        let window = cx.cfg.tcp_timeout;
        let e = self
            .outbox
            .recent
            .entry(addr)
            .or_insert_with(|| (to, Vec::new()));
        e.1.retain(|t| now.saturating_since(*t) <= window);
        if e.1.len() < MAX_TRACKED {
            e.1.push(now);
        }
        let msg = Message::Direct {
            from: cx.me.clone(),
            payload,
        };
        cx.send_reliable(addr, &msg);
    }

    /// Send `payload` reliably to the member named `to` (alive or suspect).
    pub(crate) fn send(
        &mut self,
        to: &str,
        payload: Bytes,
        cx: &mut Cx<'_>,
    ) -> Result<(), ApiError> {
        self.check_message(&payload, cx)?;
        let Some(rec) = cx.members.get(to) else {
            return Err(ApiError::UnknownMember(to.to_string()));
        };
        if !rec.is_live() || rec.leaving {
            return Err(ApiError::NotAlive(to.to_string()));
        }
        let (name, addr) = (rec.name.to_name(), rec.addr());
        if name == *cx.me {
            cx.push_event(Event::Message {
                from: name,
                payload,
            });
            return Ok(());
        }
        self.send_direct(name, addr, payload, cx);
        Ok(())
    }

    /// Send `payload` reliably to every other live member; returns how many it went to.
    pub(crate) fn broadcast(&mut self, payload: Bytes, cx: &mut Cx<'_>) -> Result<usize, ApiError> {
        self.check_message(&payload, cx)?;
        let targets: Vec<(Name, SocketAddr)> = cx
            .members
            .iter()
            .filter(|r| r.is_live() && !r.leaving && r.name != *cx.me)
            .map(|r| (r.name.to_name(), r.addr()))
            .collect();
        let n = targets.len();
        for (name, addr) in targets {
            self.send_direct(name, addr, payload.clone(), cx);
        }
        Ok(n)
    }

    pub(crate) fn on_direct(&mut self, from: Name, payload: Bytes, cx: &mut Cx<'_>) {
        if cx.running {
            cx.push_event(Event::Message { from, payload });
        }
    }

    pub(crate) fn direct_send_failed(&mut self, to: SocketAddr, cx: &mut Cx<'_>) {
        let now = cx.now;
        let window = cx.cfg.tcp_timeout * 2;
        let Some((name, times)) = self.outbox.recent.remove(&to) else {
            return;
        };
        let messages = times
            .iter()
            .filter(|t| now.saturating_since(**t) <= window)
            .count();
        if messages > 0 {
            cx.fx.stats.messages_failed += messages as u64;
            cx.push_event(Event::SendFailed { to: name, messages });
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
