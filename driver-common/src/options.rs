//! Driver options (everything that is not protocol: the protocol lives in
//! [`rookery_core::Config`]).

use std::net::IpAddr;
use std::time::Duration;

/// How a driver runs a node. Start from [`Options::default`] and adjust with the `with_*`
/// methods or by setting fields.
///
/// ## Caps on a hostile network
///
/// | cap | default | when reached |
/// |---|---|---|
/// | [`Options::max_inbound`] | 512 connections | the inbound connection idle longest is closed; with none idle the newcomer is refused ([`crate::DriverStats::refused_inbound_total`]) |
/// | [`Options::max_inbound_per_source`] | 256 connections from one IP | the same, among that IP's connections ([`crate::DriverStats::refused_inbound_per_source`]) |
/// | [`Options::max_outbound`] | 256 connections | the outbound connection idle longest is closed; with none idle the message waits (at most `send_queue` messages, at most `tcp_timeout`), then fails as a send failure the core hears ([`crate::DriverStats::refused_outbound`]) |
/// | [`Options::max_messages_in_flight`] | 256 direct messages | `send`/`send_acked`/`broadcast` wait for room, `try_send` returns [`crate::AgentError::SendQueueFull`]; nothing is dropped |
/// | [`Options::max_inbound_in_flight`] | 128 frames | a reader with a complete frame waits; a frame still waiting `tcp_timeout` after its first byte is dropped ([`crate::DriverStats::refused_in_flight`]) |
/// | [`Options::max_inbound_buffered`] | 64 MiB for all inbound connections together | before a receive buffer grows past it, the partial frames silent longest are closed to make room ([`crate::DriverStats::refused_inbound_budget`]); a reader waits only when frames handed to the node hold it |
/// | `Config::tcp_timeout` (core) | LAN 10 s | a frame not complete within it from its first byte closes the connection ([`crate::DriverStats::frame_deadline_closed`]) |
/// | `Config::max_stream_message` (core) | 8 MiB | a larger declared length closes the connection before anything is allocated for it ([`crate::DriverStats::frames_too_large`]) |
/// | [`Options::inbound_idle_timeout`] | 60 s | an inbound connection silent between frames is closed ([`crate::DriverStats::connections_idle_closed`]) |
///
/// "Idle" means between frames (nothing buffered), or accepted and silent for
/// [`crate::guard::FRESH_GRACE`]: closing such a connection costs a member a reconnect, so a
/// cap never refuses a member while an idle connection holds a slot (a join storm of 1,000
/// members through one seed is served with these defaults). Receive buffers grow with the
/// bytes received (never with a declared length) and are released between frames. Every
/// refusal is counted by cause and logged at warn, at most once per
/// [`crate::guard::LOG_EVERY`] per cause; none of them makes the node's event loop wait.
///
/// The core bounds what a frame may carry, with defaults at or below memberlist's 2026
/// hardening limits: push-pull state and user (direct) messages by `Config::max_stream_message`
/// (8 MiB; memberlist 20 MiB), the members a push-pull may list by `Config::max_members` (65,536;
/// memberlist 1,048,576), direct messages by `Config::max_message_size` (64 KiB). memberlist's
/// 128 concurrent push-pull exchanges are [`Options::max_inbound_in_flight`] here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Seed of the node's RNG. `None` (the default) draws one from OS entropy; set it to make a
    /// node's random choices repeatable.
    pub seed: Option<u64>,
    /// The IP other members reach this node at, when the identity's address is unspecified
    /// (`0.0.0.0` / `::`). The bound port is kept. Default `None`.
    pub advertise: Option<IpAddr>,
    /// Capacity of the event stream (events, direct messages included). The node never waits
    /// for the application; when the application does not keep up, the core's one overflow
    /// policy applies ([`rookery_core::EventQueue`]: the oldest direct messages go first,
    /// membership events and the final `Stopped` never go, an `Event::Lagged` in the stream
    /// says how many were lost), counted in [`crate::DriverStats::events_dropped`]. Default
    /// 1024.
    pub event_capacity: usize,
    /// An outbound TCP connection unused for this long is closed; an inbound one is closed after
    /// twice as long without data (so that the sender, not the receiver, closes first).
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// Most inbound TCP connections open at once. At the cap the connection idle longest is
    /// closed to make room ([`crate::DriverStats::evicted_idle_inbound`]); when none is idle the
    /// new one is accepted and closed at once ([`crate::DriverStats::refused_inbound_total`]).
    /// Default 512.
    pub max_inbound: usize,
    /// Most inbound TCP connections open at once from one IP address; at the cap the same rule
    /// as [`Options::max_inbound`] applies among that address's connections
    /// ([`crate::DriverStats::refused_inbound_per_source`]). Default 256.
    pub max_inbound_per_source: usize,
    /// Most outbound TCP connections (destinations with a writer) at once. At the cap the one
    /// idle longest is closed ([`crate::DriverStats::evicted_idle_outbound`]); when every one
    /// is busy, messages to new destinations wait in one line of at most
    /// [`Options::send_queue`] messages for at most `tcp_timeout`, and beyond that fail as
    /// send failures reported to the core ([`crate::DriverStats::refused_outbound`]).
    /// Default 256.
    pub max_outbound: usize,
    /// Most received frames waiting for the node at once (memberlist's concurrent push-pull
    /// cap). A reader holding a complete frame waits for room and stops reading; a frame still
    /// waiting `tcp_timeout` after its first byte is dropped and its connection closed
    /// ([`crate::DriverStats::refused_in_flight`]). The mio driver hands each frame to the node
    /// as soon as it is read, so it never has more than one waiting. Default 128.
    pub max_inbound_in_flight: usize,
    /// Most bytes of memory held by inbound frames being received, all connections together
    /// (receive buffers, plus received frames not yet handled by the node). Charged before a
    /// buffer grows; when the bytes do not fit, the connections holding partial frames that
    /// have gone longest without a byte are closed to make room
    /// ([`crate::DriverStats::refused_inbound_budget`]; see [`crate::guard`] for why closing
    /// and why those). Never less than `max_stream_message` + 1 MiB in effect, so one frame of
    /// the largest size always fits ([`Options::inbound_budget`]). Default 64 MiB.
    pub max_inbound_buffered: usize,
    /// Most protocol frames (push-pulls, fallback pings, query answers...) queued for one
    /// destination while its connection is being made or written; beyond it a frame fails at
    /// once (reported to the core as a send failure and counted in
    /// [`crate::DriverStats::send_queue_full`]). Direct messages are bounded by
    /// [`Options::max_messages_in_flight`] instead and never refused here. Default 256.
    pub send_queue: usize,
    /// Most direct messages between their send and their outcome's write (or failure), for the
    /// whole agent: `send`, `send_acked` and `broadcast` wait for room, `try_send` refuses
    /// with [`crate::AgentError::SendQueueFull`] (see [`crate::delivery`]). Default 256.
    pub max_messages_in_flight: usize,
    /// Capacity of the answer channel of each query asked through a handle (acks, responses
    /// and the final done). Answers that do not fit are dropped and counted in
    /// [`crate::DriverStats::query_answers_dropped`]. Default 256.
    pub query_capacity: usize,
    /// A keyring file in Serf's format (a JSON array of base64 keys, the primary first). When
    /// it exists at start, its keyring replaces the configuration's; the driver writes the
    /// node's keyring there at start and after every change (see [`crate::keyring_file`]).
    /// Default none.
    pub keyring_file: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: None,
            advertise: None,
            event_capacity: 1024,
            idle_timeout: Duration::from_secs(30),
            max_inbound: 512,
            max_inbound_per_source: 256,
            max_outbound: 256,
            max_inbound_in_flight: 128,
            max_inbound_buffered: 64 << 20,
            send_queue: 256,
            max_messages_in_flight: 256,
            query_capacity: 256,
            keyring_file: None,
        }
    }
}

impl Options {
    /// The same options with a fixed RNG seed.
    pub fn with_seed(mut self, seed: u64) -> Options {
        self.seed = Some(seed);
        self
    }

    /// The same options with a keyring file (see [`Options::keyring_file`]).
    pub fn with_keyring_file(mut self, path: impl Into<std::path::PathBuf>) -> Options {
        self.keyring_file = Some(path.into());
        self
    }

    /// The same options with an advertised IP (for agents bound on `0.0.0.0` or `::`).
    pub fn with_advertise(mut self, ip: IpAddr) -> Options {
        self.advertise = Some(ip);
        self
    }

    /// The same options with another event stream capacity (at least 1).
    pub fn with_event_capacity(mut self, capacity: usize) -> Options {
        self.event_capacity = capacity.max(1);
        self
    }

    /// The same options with another idle timeout for reused TCP connections.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Options {
        self.idle_timeout = idle;
        self
    }

    /// The same options with other inbound connection caps (total and per source IP, each at
    /// least 1).
    pub fn with_max_inbound(mut self, total: usize, per_source: usize) -> Options {
        self.max_inbound = total.max(1);
        self.max_inbound_per_source = per_source.max(1);
        self
    }

    /// The same options with another bound on direct messages in flight (at least 1; see
    /// [`Options::max_messages_in_flight`]).
    pub fn with_max_messages_in_flight(mut self, max: usize) -> Options {
        self.max_messages_in_flight = max.max(1);
        self
    }

    /// The same options with another outbound connection cap (at least 1).
    pub fn with_max_outbound(mut self, max: usize) -> Options {
        self.max_outbound = max.max(1);
        self
    }

    /// The same options with another inbound byte budget (see
    /// [`Options::max_inbound_buffered`]).
    pub fn with_max_inbound_buffered(mut self, bytes: usize) -> Options {
        self.max_inbound_buffered = bytes;
        self
    }

    /// The inbound byte budget in effect for frames of at most `max_stream_message` bytes:
    /// [`Options::max_inbound_buffered`], but at least `max_stream_message` + 1 MiB.
    pub fn inbound_budget(&self, max_stream_message: usize) -> usize {
        self.max_inbound_buffered
            .max(max_stream_message.saturating_add(1 << 20))
    }

    /// Idle timeout of inbound connections: twice [`Options::idle_timeout`].
    pub fn inbound_idle_timeout(&self) -> Duration {
        self.idle_timeout.saturating_mul(2)
    }
}
