//! Driver options (everything that is not protocol: the protocol lives in
//! [`rookery_core::Config`]).

use std::net::IpAddr;
use std::time::Duration;

/// How a driver runs a node. Start from [`Options::default`] and adjust with the `with_*`
/// methods or by setting fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Seed of the node's RNG. `None` (the default) draws one from OS entropy; set it to make a
    /// node's random choices repeatable.
    pub seed: Option<u64>,
    /// The IP other members reach this node at, when the identity's address is unspecified
    /// (`0.0.0.0` / `::`). The bound port is kept. Default `None`.
    pub advertise: Option<IpAddr>,
    /// Capacity of the event stream (events). When the application does not keep up, new
    /// events are dropped and counted in [`crate::DriverStats::events_dropped`]; the node
    /// itself never waits for the application. Default 1024.
    pub event_capacity: usize,
    /// An outbound TCP connection unused for this long is closed; an inbound one is closed after
    /// twice as long without data (so that the sender, not the receiver, closes first).
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// Most inbound TCP connections open at once; more are accepted and closed at once and
    /// counted in [`crate::DriverStats::connections_refused`]. Default 256.
    pub max_inbound: usize,
    /// Most reliable messages queued for one destination while its connection is being made or
    /// written; beyond it a message fails at once (reported to the core as a send failure and
    /// counted in [`crate::DriverStats::send_queue_full`]). Default 256.
    pub send_queue: usize,
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
            max_inbound: 256,
            send_queue: 256,
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

    /// Idle timeout of inbound connections: twice [`Options::idle_timeout`].
    pub fn inbound_idle_timeout(&self) -> Duration {
        self.idle_timeout.saturating_mul(2)
    }
}
