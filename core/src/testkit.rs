//! Test helpers shared by the unit tests of the protocol modules: build nodes, hand them
//! crafted messages, and decode what they send.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;
use crate::event::Event;
use crate::identity::{Identity, Tags};
use crate::node::{Node, TransmitKind};
use crate::time::Timestamp;
use crate::wire::{self, Accusation, Alive, Envelope, Limits, Message};

pub(crate) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A node named `name` at 127.0.0.1:`port` with the local preset, created at time zero.
pub(crate) fn node(name: &str, port: u16) -> Node {
    node_with(Config::local(), name, port)
}

/// A node named `name` at 127.0.0.1:`port` with `config`, created at time zero.
pub(crate) fn node_with(config: Config, name: &str, port: u16) -> Node {
    logs_wanted();
    Node::new(
        config,
        Identity::new(name, addr(port)),
        port as u64,
        Timestamp::ZERO,
    )
    .unwrap()
}

/// Install, once per test process, a global subscriber that wants every debug log and
/// discards it. Without one, a test thread that reaches a log call site while another thread
/// installs its own scoped subscriber (the log tests) can leave that call site registered as
/// wanted by nobody, and the log test misses the line (seen: one run in two).
pub(crate) fn logs_wanted() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let sink = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        let _ = tracing::subscriber::set_global_default(sink);
    });
}

pub(crate) fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub(crate) fn limits() -> Limits {
    Limits::from_config(&Config::lan())
}

/// A datagram holding `msgs`.
pub(crate) fn datagram(msgs: &[Message]) -> Vec<u8> {
    let body: Vec<u8> = msgs.iter().flat_map(wire::encode_message).collect();
    wire::assemble_datagram_body(&wire::header(None), msgs.len(), &body)
}

/// Hand `msgs` to `n` in one datagram from `from` at `now`.
pub(crate) fn deliver(n: &mut Node, now: Timestamp, from: u16, msgs: &[Message]) {
    n.handle_packet(now, addr(from), &datagram(msgs)).unwrap();
}

/// Everything `n` sent, decoded: (destination, kind, messages).
pub(crate) fn sent(n: &mut Node) -> Vec<(SocketAddr, TransmitKind, Vec<Message>)> {
    let mut out = Vec::new();
    while let Some(t) = n.poll_transmit() {
        let bytes = match t.kind {
            TransmitKind::Datagram => &t.payload[..],
            TransmitKind::Reliable => &t.payload[wire::FRAME_HEADER_LEN..],
        };
        let Ok(Envelope::Ours(body)) = wire::open_envelope(bytes, None) else {
            panic!("node sent an undecodable envelope")
        };
        let msgs = match t.kind {
            TransmitKind::Datagram => wire::decode_compound(body, &limits()).unwrap(),
            TransmitKind::Reliable => vec![wire::decode_single(body, &limits()).unwrap()],
        };
        out.push((t.to, t.kind, msgs));
    }
    out
}

pub(crate) fn events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

pub(crate) fn alive(name: &str, port: u16, incarnation: u32) -> Message {
    Message::Alive(Alive {
        incarnation,
        name: name.into(),
        addr: addr(port),
        tags: Tags::new(),
        ltime: 0,
    })
}

pub(crate) fn suspect(name: &str, incarnation: u32, from: &str) -> Message {
    Message::Suspect(Accusation {
        incarnation,
        name: name.into(),
        from: from.into(),
    })
}

pub(crate) fn dead(name: &str, incarnation: u32, from: &str) -> Message {
    Message::Dead(Accusation {
        incarnation,
        name: name.into(),
        from: from.into(),
    })
}

/// Run `n`'s timers up to `until` in steps of `step`, discarding nothing.
pub(crate) fn tick(n: &mut Node, until: Timestamp, step: Duration) {
    let mut t = n.now;
    while t < until {
        t = t + step;
        n.handle_timeout(t);
    }
}
