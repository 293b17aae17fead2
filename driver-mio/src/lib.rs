//! # rookery-mio
//!
//! The mio driver for [`rookery_core`]: one thread running a `mio::Poll` loop over the UDP
//! socket, the TCP listener and its connections, with a blocking handle API. The driver itself
//! lands with its own issue; until then this crate only re-exports the core.

pub use rookery_core as core;
