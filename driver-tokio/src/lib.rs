//! # rookery-tokio
//!
//! The tokio driver for [`rookery_core`]: it will own one UDP socket and one TCP listener, one
//! timer re-armed from [`rookery_core::Node::poll_timeout`], and a command channel. The driver
//! itself lands with its own issue; until then this crate only re-exports the core so that
//! programs can name the types they will use.

pub use rookery_core as core;
