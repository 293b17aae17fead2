//! How a wire profile uses its TCP connections: the one rule every driver follows (the async
//! agent in [`crate::asynch`] and rookery-mio's event loop alike), written once here.
//!
//! - **Native profile**: a connection per destination carries frames one way and is reused
//!   until it idles; an answer (a push-pull's state, a stream ping's ack) is a frame like any
//!   other, sent to the asker's listener. Frames are length-prefixed.
//! - **HashiCorp profiles** ([`WireProfile::HashiCorp`], [`WireProfile::Memberlist`]),
//!   memberlist's stream semantics: every reliable message or push-pull goes out on a **fresh
//!   connection**, which then carries the peer's answers back until the peer closes it or
//!   `tcp_timeout` passes, and is never reused (memberlist handles one message per connection
//!   and closes it). An answer to a peer that asked on a connection still open is **written
//!   back on that connection** (the core addresses it to the connection's remote end, an
//!   ephemeral port nobody listens on): at most [`REPLY_QUEUE`] answers wait per connection,
//!   and an answer that finds the queue full or the connection gone fails as a send failure
//!   the core hears (counted in `send_queue_full` when full). Once the node has handled the
//!   message an inbound connection brought (its answers, if any, queued in the same step), the
//!   driver queues [`Reply::End`] behind them: the connection is closed when they are written,
//!   as memberlist closes it. A peer reading answers until the connection closes — memberlist,
//!   or a rookery agent — so learns at once that the exchange is over; left open, the peer
//!   would wait `tcp_timeout` before its next message to this node (10 s on the LAN timing).
//!   Streams are split by message ([`FrameDecoder::for_profile`]), not by a length prefix.
//!
//! [`StreamRules`] answers the questions a driver asks; [`ReplyRoutes`] keeps, for the
//! HashiCorp profiles, which open inbound connection an answer to a given address goes back
//! on.

use std::collections::HashMap;
use std::net::SocketAddr;

use rookery_core::wire::FrameDecoder;
use rookery_core::WireProfile;

use crate::delivery::OutFrame;

/// Answers queued for one inbound connection (HashiCorp profiles: memberlist asks one
/// question per connection, so a handful is more than any peer asks for).
pub const REPLY_QUEUE: usize = 4;

/// What the node sends an open inbound connection (HashiCorp profiles).
#[derive(Debug)]
pub enum Reply {
    /// An answer to write on it.
    Frame(OutFrame),
    /// The message the connection brought has been handled and every answer to it queued:
    /// write those, then close the connection (memberlist handles one message per
    /// connection).
    End,
}

impl Reply {
    /// The message number of the answer, if it is one that carries a direct message.
    pub fn message(&self) -> Option<rookery_core::MessageId> {
        match self {
            Reply::Frame(f) => f.message,
            Reply::End => None,
        }
    }
}

/// How a node's wire profile uses TCP connections (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRules {
    profile: WireProfile,
    max_stream: usize,
}

impl StreamRules {
    /// The rules of `profile`, refusing stream messages larger than `max_stream` bytes
    /// (`Config::max_stream_message`).
    pub fn new(profile: WireProfile, max_stream: usize) -> StreamRules {
        StreamRules {
            profile,
            max_stream,
        }
    }

    /// The wire profile.
    pub fn profile(&self) -> WireProfile {
        self.profile
    }

    /// The largest stream message accepted, in bytes.
    pub fn max_stream(&self) -> usize {
        self.max_stream
    }

    /// A decoder splitting one connection's bytes into the profile's stream messages.
    pub fn decoder(&self) -> FrameDecoder {
        FrameDecoder::for_profile(self.max_stream, self.profile)
    }

    /// Whether a connection carries one exchange (HashiCorp profiles): an outbound connection
    /// carries one message and then the peer's answers, an inbound one carries the answers to
    /// its peer's question back. False for the native profile (connections carry frames one
    /// way and are reused).
    pub fn exchanges(&self) -> bool {
        self.profile.is_hashicorp()
    }
}

/// Where answers to the peers of open inbound connections go, HashiCorp profiles only: each
/// open inbound connection's remote address (which the core answers to) and the connection's
/// reply end `R` (a channel to its reader, a connection token, ...). Under the native profile
/// nothing is recorded and [`ReplyRoutes::route`] always says "no connection".
#[derive(Debug)]
pub struct ReplyRoutes<R> {
    rules: StreamRules,
    open: HashMap<SocketAddr, R>,
}

impl<R> ReplyRoutes<R> {
    /// No connection open yet.
    pub fn new(rules: StreamRules) -> ReplyRoutes<R> {
        ReplyRoutes {
            rules,
            open: HashMap::new(),
        }
    }

    /// An inbound connection from `peer` opened: answers to `peer` go to `reply` (nothing is
    /// recorded under the native profile).
    pub fn opened(&mut self, peer: SocketAddr, reply: R) {
        if self.rules.exchanges() {
            self.open.insert(peer, reply);
        }
    }

    /// The connection from `peer` closed.
    pub fn closed(&mut self, peer: SocketAddr) {
        self.open.remove(&peer);
    }

    /// Where a reliable frame to `to` goes: back on the open inbound connection from `to`
    /// (`Some`), or out on an outbound connection of its own (`None`).
    pub fn route(&self, to: SocketAddr) -> Option<&R> {
        self.open.get(&to)
    }

    /// How many inbound connections can take answers.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no inbound connection can take answers.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn hashicorp_profiles_answer_on_the_asking_connection() {
        for profile in [WireProfile::HashiCorp, WireProfile::Memberlist] {
            let rules = StreamRules::new(profile, 1 << 20);
            assert!(rules.exchanges());
            let mut routes = ReplyRoutes::new(rules);
            routes.opened(addr(40_000), 7u32);
            assert_eq!(routes.route(addr(40_000)), Some(&7));
            assert_eq!(routes.route(addr(40_001)), None);
            routes.closed(addr(40_000));
            assert_eq!(routes.route(addr(40_000)), None);
            assert!(routes.is_empty());
        }
    }

    #[test]
    fn native_answers_go_to_the_listener() {
        let rules = StreamRules::new(WireProfile::Native, 1 << 20);
        assert!(!rules.exchanges());
        let mut routes = ReplyRoutes::new(rules);
        routes.opened(addr(40_000), 7u32);
        assert_eq!(routes.route(addr(40_000)), None);
        assert_eq!(routes.len(), 0);
    }

    #[test]
    fn decoders_split_by_profile() {
        // A native frame: a 4-byte length, then the body.
        let mut native = StreamRules::new(WireProfile::Native, 64).decoder();
        native.push(&[0, 0, 0, 2, 9, 9]);
        assert_eq!(native.next_frame(), Ok(Some(vec![9, 9])));
        // Too large for the limit: refused before anything is buffered for it.
        let mut small = StreamRules::new(WireProfile::Native, 1).decoder();
        small.push(&[0, 0, 0, 2, 9, 9]);
        assert!(small.next_frame().is_err());
    }
}
