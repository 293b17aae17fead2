//! Typed errors shared by every driver.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use rookery_core::{ApiError, ConfigError};

/// Why an agent could not start. Nothing is left running after this error.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Binding the UDP socket or the TCP listener on the requested address failed (address in
    /// use, not local, no permission...).
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The agent was bound on an unspecified address (`0.0.0.0` or `::`) and
    /// [`crate::Options::advertise`] was not set, so there is no address other members could
    /// reach it at.
    NoAdvertiseAddress {
        /// The bound address.
        bound: SocketAddr,
    },
    /// The core refused the configuration or the identity.
    Config(ConfigError),
    /// The driver could not set up its event loop, reactor registration or thread.
    Io(io::Error),
    /// The keyring file ([`crate::Options::keyring_file`]) could not be read.
    KeyringFile(crate::keyring_file::KeyringFileError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            StartError::NoAdvertiseAddress { bound } => {
                write!(
                    f,
                    "bound on {bound}, which others cannot reach: set an advertise address"
                )
            }
            StartError::Config(e) => write!(f, "configuration refused: {e}"),
            StartError::Io(e) => write!(f, "driver setup failed: {e}"),
            StartError::KeyringFile(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } => Some(source),
            StartError::Config(e) => Some(e),
            StartError::Io(e) => Some(e),
            StartError::KeyringFile(e) => Some(e),
            StartError::NoAdvertiseAddress { .. } => None,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// Why an operation on a running (or stopped) agent failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent has shut down (or its event loop ended), so the operation did not run.
    Stopped,
    /// `join` contacted its seeds but none of them answered.
    NobodyReached {
        /// How many seeds were contacted.
        contacted: usize,
    },
    /// The core refused the call, leaving its state unchanged: the node has left (or is
    /// leaving), no usable seed was given, the tags or a payload are too large
    /// ([`ApiError::TooLarge`]), the member is unknown, not alive or not failed
    /// (`send`, `remove_failed`), too many queries are running, a query filter is invalid,
    /// the query to answer is closed, or an event or query name is empty. The
    /// [`ApiError`] says which.
    Rejected(ApiError),
    /// `join_hosts`: none of the seed names resolved to an address (within
    /// [`crate::handle::RESOLVE_TIMEOUT`]); each with why.
    NothingResolved {
        /// Every seed as given, with the resolver's error (or "timed out", "no address").
        seeds: Vec<(String, String)>,
    },
    /// A direct message's outcome ([`crate::Receipt`]): it failed, for the reason given (see
    /// [`rookery_core::SendFailure`]).
    NotDelivered(rookery_core::SendFailure),
    /// `try_send`: [`crate::Options::max_messages_in_flight`] messages are already on their
    /// way; nothing was sent (`send` would have waited for room).
    SendQueueFull {
        /// The configured bound.
        limit: usize,
    },
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Stopped => write!(f, "the agent has stopped"),
            AgentError::NobodyReached { contacted } => {
                write!(f, "none of the {contacted} seeds answered")
            }
            AgentError::Rejected(e) => write!(f, "refused: {e}"),
            AgentError::NothingResolved { seeds } => {
                write!(f, "no seed resolved:")?;
                for (seed, why) in seeds {
                    write!(f, " {seed} ({why});")?;
                }
                Ok(())
            }
            AgentError::NotDelivered(reason) => write!(f, "message not delivered: {reason}"),
            AgentError::SendQueueFull { limit } => {
                write!(f, "{limit} messages already on their way: none sent")
            }
        }
    }
}

impl std::error::Error for AgentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AgentError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ApiError> for AgentError {
    fn from(e: ApiError) -> Self {
        AgentError::Rejected(e)
    }
}

/// Why a non-waiting receive (`try_recv` on an event stream or a query's answers) returned
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TryRecvError {
    /// Nothing is waiting now; more may come.
    Empty,
    /// Nothing is waiting and nothing more will come: the agent stopped (event stream) or the
    /// query is done (its answers).
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => write!(f, "nothing waiting"),
            TryRecvError::Closed => write!(f, "the stream has ended"),
        }
    }
}

impl std::error::Error for TryRecvError {}
