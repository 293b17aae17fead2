//! The one input vocabulary: everything that can happen to a node, as data. The simulator and
//! its parallel windows, the trace tap, the fuzz targets and replay files all hand a node its
//! inputs as [`Input`]s through [`crate::Node::handle`]; drivers may call the typed methods
//! (`handle_packet`, `join`, ...) that `handle` routes to.
//!
//! Reliable frames: a [`crate::TransmitKind::Reliable`] transmit is a whole frame (length prefix
//! and body). A receiver that reads a byte stream splits it with [`crate::wire::FrameDecoder`],
//! which yields bodies; one that hands a transmit over in one piece (a simulator, a test) uses
//! [`Input::from_transmit`], which strips the prefix. Either way [`Input::Stream`] carries the
//! body alone: the core never sees a length prefix.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::{ApiError, InputError};
use crate::event::{QueryHandle, QueryId, QueryParams};
use crate::identity::Tags;
use crate::node::{Transmit, TransmitKind};
use crate::wire::FRAME_HEADER_LEN;

/// One input to a node. Exhaustive on purpose (unlike the error and event enums): whoever
/// hands a node its inputs — a driver, the simulator, a fuzzer — must handle every kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A datagram arrived from `from` ([`crate::Node::handle_packet`]).
    Datagram {
        /// Sender.
        from: SocketAddr,
        /// The datagram's bytes.
        payload: Bytes,
    },
    /// A reliable message arrived from `from` ([`crate::Node::handle_stream`]).
    Stream {
        /// Sender.
        from: SocketAddr,
        /// The frame body, without its length prefix.
        body: Bytes,
    },
    /// A reliable transmit to `to` could not be delivered ([`crate::Node::handle_send_failure`]).
    SendFailed {
        /// The unreachable destination.
        to: SocketAddr,
        /// The direct message the transmit carried ([`crate::Transmit::message`]), if any.
        message: Option<crate::MessageId>,
    },
    /// The deadline from [`crate::Node::poll_timeout`] passed ([`crate::Node::handle_timeout`]).
    Timeout,
    /// The application called the API (boxed: calls are rare, and every datagram's input
    /// would otherwise be as large as the largest call). `Input::from(call)` boxes it.
    Call(Box<Call>),
}

/// An API call as data: each variant names the [`crate::Node`] method it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// [`crate::Node::join_with`].
    Join {
        /// Seed addresses.
        seeds: Vec<SocketAddr>,
        /// Skip user events older than the join.
        ignore_old: bool,
    },
    /// [`crate::Node::leave`].
    Leave,
    /// [`crate::Node::set_tags`].
    SetTags(Tags),
    /// [`crate::Node::user_event`].
    UserEvent {
        /// Event name.
        name: String,
        /// Event payload.
        payload: Bytes,
        /// Whether receivers may coalesce it (latest per name).
        coalesce: bool,
    },
    /// [`crate::Node::query`].
    Query {
        /// Query name.
        name: String,
        /// Query payload.
        payload: Bytes,
        /// Filters, acks, relays, timeout.
        params: QueryParams,
    },
    /// [`crate::Node::respond`].
    Respond {
        /// The handle from [`crate::Event::Query`].
        query: QueryHandle,
        /// The answer.
        payload: Bytes,
    },
    /// [`crate::Node::send`], or with `acked` [`crate::Node::send_acked`].
    Send {
        /// The member's name.
        to: String,
        /// The message.
        payload: Bytes,
        /// Ask the receiver's core for a receipt.
        acked: bool,
    },
    /// [`crate::Node::broadcast`].
    Broadcast {
        /// The message.
        payload: Bytes,
    },
    /// [`crate::Node::remove_failed`].
    RemoveFailed {
        /// The failed member's name.
        name: String,
        /// Forget it at once (a tombstone is kept otherwise).
        prune: bool,
    },
}

/// What a successful [`crate::Node::handle`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// The input was taken; its outputs wait in the poll queues.
    Done,
    /// A [`Call::Query`] started: its id.
    Query(QueryId),
    /// A [`Call::Send`] went out: the message's number.
    Sent(crate::MessageId),
    /// A [`Call::Broadcast`] went to these members, with each message's number.
    Broadcast(Vec<(crate::Name, crate::MessageId)>),
}

/// Why [`crate::Node::handle`] refused an input. Nothing changed in either case, apart from
/// the counters that record the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// Network input was refused (undecodable, another cluster's, or the node has left).
    Input(InputError),
    /// An API call was refused.
    Api(ApiError),
}

impl From<InputError> for HandleError {
    fn from(e: InputError) -> Self {
        HandleError::Input(e)
    }
}

impl From<ApiError> for HandleError {
    fn from(e: ApiError) -> Self {
        HandleError::Api(e)
    }
}

impl core::fmt::Display for HandleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandleError::Input(e) => e.fmt(f),
            HandleError::Api(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HandleError {}

impl From<Call> for Input {
    fn from(call: Call) -> Input {
        Input::Call(Box::new(call))
    }
}

impl Input {
    /// The input that receiving `payload` of `kind` from `from` makes, when the transport hands
    /// over a reliable transmit in one piece (a simulator, a test): the frame's length prefix
    /// is stripped here (a frame shorter than its prefix becomes an empty body, which the node
    /// refuses as undecodable).
    pub fn received(from: SocketAddr, kind: TransmitKind, payload: Bytes) -> Input {
        match kind {
            TransmitKind::Datagram => Input::Datagram { from, payload },
            TransmitKind::Reliable => Input::Stream {
                from,
                body: payload.slice(FRAME_HEADER_LEN.min(payload.len())..),
            },
        }
    }

    /// [`Input::received`] for a node speaking `profile`: a HashiCorp stream message has no
    /// length prefix, so its transmit's payload is the whole body.
    pub fn received_as(
        profile: crate::WireProfile,
        from: SocketAddr,
        kind: TransmitKind,
        payload: Bytes,
    ) -> Input {
        match kind {
            TransmitKind::Reliable if profile.is_hashicorp() => Input::Stream {
                from,
                body: payload,
            },
            _ => Input::received(from, kind, payload),
        }
    }

    /// [`Input::received`] for a transmit `from` sent (its `to` is the receiver).
    pub fn from_transmit(from: SocketAddr, t: Transmit) -> Input {
        Input::received(from, t.kind, t.payload)
    }
}
