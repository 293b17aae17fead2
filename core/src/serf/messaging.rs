//! Direct messaging: [`Node::send`](crate::Node::send) delivers one reliable message to a
//! named member, [`Node::broadcast`](crate::Node::broadcast) one to every live member, and
//! [`Node::send_acked`](crate::Node::send_acked) one whose receiver's core confirms receipt;
//! receivers see [`Event::Message`] (the inbox, bounded by `max_inbox`).
//!
//! Every message gets a number ([`MessageId`]) that its transmit carries
//! ([`crate::Transmit::message`]), so every outcome is per message, never a guess: a driver
//! that cannot deliver the transmit hands the number back and the node reports
//! [`Event::SendFailed`] for that message alone. An acknowledged message also waits, here, for
//! the receiver's [`Message::DirectAck`]: [`Event::MessageAcked`] when it comes,
//! [`Event::SendFailed`] with [`SendFailure::NoReceipt`] when it has not come after twice
//! `tcp_timeout`. Waiting messages are bounded by `max_unacked_messages` (a send beyond it is
//! refused, so nothing is dropped).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::{Serf, SerfTimer};
use crate::ctx::Cx;
use crate::error::ApiError;
use crate::event::{Event, MessageId, SendFailure};
use crate::identity::Name;
use crate::timers::TimerKind;
use crate::wire::Message;

/// Message numbering and the acknowledged messages still waiting for their receipt.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// The last number given out.
    last: u64,
    /// Acknowledged messages awaiting a receipt: number → (member, its address).
    unacked: BTreeMap<MessageId, (Name, SocketAddr)>,
}

impl Outbox {
    fn next(&mut self) -> MessageId {
        self.last += 1;
        MessageId(self.last)
    }
}

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

    /// The live member named `to`: its name and address.
    fn recipient(&self, to: &str, cx: &Cx<'_>) -> Result<(Name, SocketAddr), ApiError> {
        let Some(rec) = cx.members.get(to) else {
            return Err(ApiError::UnknownMember(to.to_string()));
        };
        if !rec.is_live() || rec.leaving {
            return Err(ApiError::NotAlive(to.to_string()));
        }
        Ok((rec.name.to_name(), rec.addr()))
    }

    /// Send `payload` reliably to the member named `to` (alive or suspect); with `acked`, ask
    /// for a receipt. Returns the message's number.
    pub(crate) fn send(
        &mut self,
        to: &str,
        payload: Bytes,
        acked: bool,
        cx: &mut Cx<'_>,
    ) -> Result<MessageId, ApiError> {
        self.check_message(&payload, cx)?;
        let (name, addr) = self.recipient(to, cx)?;
        if acked && self.outbox.unacked.len() >= cx.cfg.max_unacked_messages {
            let limit = cx.cfg.max_unacked_messages;
            return Err(ApiError::TooManyUnacked { limit });
        }
        let id = self.outbox.next();
        if name == *cx.me {
            cx.push_event(Event::Message {
                from: name.clone(),
                payload,
            });
            if acked {
                cx.push_event(Event::MessageAcked {
                    to: name,
                    message: id,
                });
            }
            return Ok(id);
        }
        let from = cx.me.clone();
        let msg = if acked {
            self.outbox.unacked.insert(id, (name, addr));
            let at = cx.now + cx.cfg.tcp_timeout * 2;
            cx.fx
                .timers
                .schedule(at, TimerKind::Serf(SerfTimer::ReceiptDeadline { id }));
            Message::DirectAcked {
                from,
                id: id.0,
                payload,
            }
        } else {
            Message::Direct { from, payload }
        };
        cx.send_direct(addr, &msg, id);
        Ok(id)
    }

    /// Send `payload` reliably to every other live member; returns each member with the number
    /// of its message.
    pub(crate) fn broadcast(
        &mut self,
        payload: Bytes,
        cx: &mut Cx<'_>,
    ) -> Result<Vec<(Name, MessageId)>, ApiError> {
        self.check_message(&payload, cx)?;
        let targets: Vec<(Name, SocketAddr)> = cx
            .members
            .iter()
            .filter(|r| r.is_live() && !r.leaving && r.name != *cx.me)
            .map(|r| (r.name.to_name(), r.addr()))
            .collect();
        let mut sent = Vec::with_capacity(targets.len());
        for (name, addr) in targets {
            let id = self.outbox.next();
            let msg = Message::Direct {
                from: cx.me.clone(),
                payload: payload.clone(),
            };
            cx.send_direct(addr, &msg, id);
            sent.push((name, id));
        }
        Ok(sent)
    }

    pub(crate) fn on_direct(&mut self, from: Name, payload: Bytes, cx: &mut Cx<'_>) {
        if cx.running {
            cx.push_event(Event::Message { from, payload });
        }
    }

    /// An acknowledged direct message arrived over the connection from `peer`: deliver it,
    /// then send the receipt to the sender's member address — only when the sender is a known
    /// member on the connection's host (a receipt never goes to an address a message chose).
    pub(crate) fn on_direct_acked(
        &mut self,
        peer: SocketAddr,
        from: Name,
        id: u64,
        payload: Bytes,
        cx: &mut Cx<'_>,
    ) {
        if !cx.running {
            return;
        }
        let reply_to = match cx.members.get(&from) {
            Some(rec) if rec.addr().ip() == peer.ip() => Some(rec.addr()),
            _ => None,
        };
        cx.push_event(Event::Message {
            from: from.clone(),
            payload,
        });
        match reply_to {
            Some(addr) => {
                let ack = Message::DirectAck {
                    from: cx.me.clone(),
                    id,
                };
                cx.send_reliable(addr, &ack);
            }
            None => {
                cx.fx.stats.replies_refused += 1;
                tracing::debug!(%from, %peer, "no receipt sent: the sender is not a known member on that host");
            }
        }
    }

    /// `from` confirmed receipt of the acknowledged message `id`.
    pub(crate) fn on_direct_ack(&mut self, from: Name, id: u64, cx: &mut Cx<'_>) {
        let id = MessageId(id);
        match self.outbox.unacked.get(&id) {
            Some((to, _)) if *to == from => {
                self.outbox.unacked.remove(&id);
                tracing::trace!(to = %from, message = %id, "direct message acknowledged");
                cx.push_event(Event::MessageAcked {
                    to: from,
                    message: id,
                });
            }
            // Late (already failed), or not from the member it went to: nothing to do.
            _ => {
                tracing::trace!(%from, message = %id, "receipt ignored: no such message waits for it")
            }
        }
    }

    /// The receipt of acknowledged message `id` is due: if it has not come, the message failed.
    pub(crate) fn receipt_deadline(&mut self, id: MessageId, cx: &mut Cx<'_>) {
        if let Some((_, addr)) = self.outbox.unacked.remove(&id) {
            cx.message_failed(addr, id, SendFailure::NoReceipt);
        }
    }

    /// The driver could not deliver the transmit carrying message `id` to `to`.
    pub(crate) fn message_undelivered(&mut self, to: SocketAddr, id: MessageId, cx: &mut Cx<'_>) {
        let to = match self.outbox.unacked.remove(&id) {
            Some((_, addr)) => addr,
            None => to,
        };
        cx.message_failed(to, id, SendFailure::Unreachable);
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ApiError;
    use crate::event::{Event, MessageId, SendFailure};
    use crate::node::{Node, TransmitKind};
    use crate::testkit::*;
    use crate::wire::Message;

    fn frame(m: &Message) -> Vec<u8> {
        let f = crate::wire::frame_message(&crate::wire::header(None), m);
        f[crate::wire::FRAME_HEADER_LEN..].to_vec()
    }

    /// `a` (port 1) and `b` (port 2), each knowing the other.
    fn pair() -> (Node, Node) {
        let mut a = node("a", 1);
        deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
        let mut b = node("b", 2);
        deliver(&mut b, at(0), 1, &[alive("a", 1, 0)]);
        events(&mut a);
        events(&mut b);
        sent(&mut a);
        sent(&mut b);
        (a, b)
    }

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
        assert_eq!(a.send(at(1), "b", &b"hi"[..]), Ok(MessageId(1)));
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
        let all = a.broadcast(at(1), &b"all"[..]).unwrap();
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["b", "c"]);
        let mut ids: Vec<MessageId> = all.iter().map(|(_, id)| *id).collect();
        ids.sort();
        assert_eq!(
            ids,
            vec![MessageId(2), MessageId(3)],
            "one number per member"
        );
        let mut numbered = Vec::new();
        while let Some(t) = a.poll_transmit() {
            if t.kind == TransmitKind::Reliable {
                numbered.push((t.to.port(), t.message.expect("names its message")));
            }
        }
        numbered.sort();
        let port = |name: &str| if name == "b" { 2 } else { 3 };
        let mut expected = vec![(2, MessageId(1))];
        expected.extend(all.iter().map(|(n, id)| (port(n), *id)));
        expected.sort();
        assert_eq!(numbered, expected, "every transmit names its message");
        // Delivery on the other side.
        let mut b = node("b", 2);
        let m = Message::Direct {
            from: "a".into(),
            payload: (&b"hi"[..]).into(),
        };
        b.handle_stream(at(2), addr(1), &frame(&m)).unwrap();
        assert!(events(&mut b).contains(&Event::Message {
            from: "a".into(),
            payload: (&b"hi"[..]).into()
        }));
    }

    #[test]
    fn a_failed_transmit_reports_exactly_its_message() {
        let (mut a, _) = pair();
        let one = a.send(at(1), "b", &b"1"[..]).unwrap();
        let two = a.send(at(2), "b", &b"2"[..]).unwrap();
        assert_ne!(one, two);
        // The channel failed for the first message only; the second was written.
        a.handle_send_failure(at(3), addr(2), Some(one));
        assert_eq!(
            events(&mut a),
            vec![Event::SendFailed {
                to: "b".into(),
                message: one,
                reason: SendFailure::Unreachable
            }]
        );
        // A protocol frame's failure names no message and reports none.
        a.handle_send_failure(at(4), addr(2), None);
        assert!(events(&mut a).is_empty());
        assert_eq!(a.stats().messages_failed, 1);
    }

    #[test]
    fn an_acknowledged_message_gets_exactly_one_outcome() {
        let (mut a, mut b) = pair();
        let id = a.send_acked(at(1), "b", &b"x"[..]).unwrap();
        let out = sent(&mut a);
        assert_eq!(out.len(), 1);
        let (to, kind, msgs) = &out[0];
        assert_eq!((*to, *kind), (addr(2), TransmitKind::Reliable));
        // b delivers it and answers with a receipt at a's member address.
        b.handle_stream(at(2), addr(1), &frame(&msgs[0])).unwrap();
        assert!(events(&mut b).contains(&Event::Message {
            from: "a".into(),
            payload: (&b"x"[..]).into()
        }));
        let receipt = sent(&mut b);
        assert_eq!(receipt.len(), 1);
        assert_eq!(receipt[0].0, addr(1));
        assert_eq!(
            receipt[0].2[0],
            Message::DirectAck {
                from: "b".into(),
                id: id.0
            }
        );
        a.handle_stream(at(3), addr(2), &frame(&receipt[0].2[0]))
            .unwrap();
        assert_eq!(
            events(&mut a),
            vec![Event::MessageAcked {
                to: "b".into(),
                message: id
            }]
        );
        // The deadline passes harmlessly; a second receipt is ignored.
        a.handle_timeout(at(60_000));
        a.handle_stream(at(60_001), addr(2), &frame(&receipt[0].2[0]))
            .unwrap();
        assert!(events(&mut a)
            .iter()
            .all(|e| !matches!(e, Event::SendFailed { .. } | Event::MessageAcked { .. })));
    }

    #[test]
    fn a_missing_receipt_fails_the_message_once_at_its_deadline() {
        let (mut a, _) = pair();
        let id = a.send_acked(at(0), "b", &b"x"[..]).unwrap();
        let deadline = at(2 * a.cfg.tcp_timeout.as_millis() as u64);
        a.handle_timeout(at(deadline.as_millis() - 1));
        assert!(!events(&mut a)
            .iter()
            .any(|e| matches!(e, Event::SendFailed { .. })));
        a.handle_timeout(deadline);
        let failed: Vec<Event> = events(&mut a)
            .into_iter()
            .filter(|e| matches!(e, Event::SendFailed { .. }))
            .collect();
        assert_eq!(
            failed,
            vec![Event::SendFailed {
                to: "b".into(),
                message: id,
                reason: SendFailure::NoReceipt
            }]
        );
        // A receipt after the verdict changes nothing.
        let late = Message::DirectAck {
            from: "b".into(),
            id: id.0,
        };
        a.handle_stream(deadline, addr(2), &frame(&late)).unwrap();
        assert!(events(&mut a).is_empty());
        // A transport failure ends the wait at once, and only once.
        let id2 = a.send_acked(deadline, "b", &b"y"[..]).unwrap();
        a.handle_send_failure(deadline, addr(2), Some(id2));
        a.handle_timeout(at(10 * deadline.as_millis()));
        let failed: Vec<Event> = events(&mut a)
            .into_iter()
            .filter(|e| matches!(e, Event::SendFailed { .. }))
            .collect();
        assert_eq!(
            failed,
            vec![Event::SendFailed {
                to: "b".into(),
                message: id2,
                reason: SendFailure::Unreachable
            }]
        );
    }

    #[test]
    fn receipts_go_only_to_known_members_on_the_connections_host() {
        let mut b = node("b", 2);
        let m = Message::DirectAcked {
            from: "stranger".into(),
            id: 7,
            payload: (&b"x"[..]).into(),
        };
        b.handle_stream(at(1), addr(1), &frame(&m)).unwrap();
        assert!(sent(&mut b).is_empty(), "no receipt to an unknown sender");
        assert_eq!(b.stats().replies_refused, 1);
        // A known member's name on another host gets none either.
        deliver(&mut b, at(2), 1, &[alive("a", 1, 0)]);
        sent(&mut b);
        let other: std::net::SocketAddr = "10.9.9.9:1".parse().unwrap();
        let m = Message::DirectAcked {
            from: "a".into(),
            id: 8,
            payload: (&b"x"[..]).into(),
        };
        b.handle_stream(at(3), other, &frame(&m)).unwrap();
        assert!(sent(&mut b).is_empty());
        assert_eq!(b.stats().replies_refused, 2);
    }

    #[test]
    fn unacked_messages_are_bounded_and_refused_beyond() {
        let (mut a, _) = pair();
        std::sync::Arc::make_mut(&mut a.cfg).max_unacked_messages = 2;
        a.send_acked(at(1), "b", &b"1"[..]).unwrap();
        a.send_acked(at(1), "b", &b"2"[..]).unwrap();
        sent(&mut a);
        assert_eq!(
            a.send_acked(at(1), "b", &b"3"[..]),
            Err(ApiError::TooManyUnacked { limit: 2 })
        );
        assert!(sent(&mut a).is_empty(), "a refused send sends nothing");
        // Plain sends are not limited by it.
        assert!(a.send(at(1), "b", &b"4"[..]).is_ok());
    }

    #[test]
    fn a_message_lost_to_transmit_overflow_is_reported() {
        let (mut a, _) = pair();
        std::sync::Arc::make_mut(&mut a.cfg).max_pending_transmits = 2;
        let ids: Vec<MessageId> = (0..3u8)
            .map(|i| a.send(at(1), "b", vec![i]).unwrap())
            .collect();
        assert_eq!(sent(&mut a).len(), 2);
        assert_eq!(
            events(&mut a),
            vec![Event::SendFailed {
                to: "b".into(),
                message: ids[0],
                reason: SendFailure::Overflow
            }]
        );
    }

    #[test]
    fn sending_to_oneself_delivers_and_acknowledges_at_once() {
        let mut a = node("a", 1);
        let id = a.send_acked(at(1), "a", &b"me"[..]).unwrap();
        assert_eq!(
            events(&mut a),
            vec![
                Event::Message {
                    from: "a".into(),
                    payload: (&b"me"[..]).into()
                },
                Event::MessageAcked {
                    to: "a".into(),
                    message: id
                }
            ]
        );
        assert!(sent(&mut a).is_empty());
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
