//! # rookery-core
//!
//! Cluster membership, failure detection and gossip as a pure, deterministic state machine —
//! SWIM with the Lifeguard refinements, piggybacked dissemination and push-pull anti-entropy,
//! in the tradition of HashiCorp's memberlist, with no IO of its own.
//!
//! A [`Node`] is one cluster member. Drivers feed it timestamped inputs — datagrams
//! ([`Node::handle_packet`]), reliable messages ([`Node::handle_stream`]), timer expiry
//! ([`Node::handle_timeout`]) and API calls ([`Node::join`], [`Node::leave`],
//! [`Node::set_tags`]) — then drain its outputs: [`Node::poll_transmit`],
//! [`Node::poll_event`], and the single next deadline [`Node::poll_timeout`]. The node never
//! reads a clock, never touches a socket and takes its randomness from one seeded RNG, so the
//! same seed and inputs always give the same outputs, byte for byte.
//!
//! ```
//! use rookery_core::{Config, Event, Identity, Input, Node, Timestamp};
//!
//! // Hand every transmit of `src` to `dst` (a perfect network with no delay).
//! fn deliver(src: &mut Node, dst: &mut Node, now: Timestamp) -> bool {
//!     let from = src.local_member().addr;
//!     let mut moved = false;
//!     while let Some(t) = src.poll_transmit() {
//!         moved = true;
//!         let _ = dst.handle(now, Input::from_transmit(from, t));
//!     }
//!     moved
//! }
//!
//! let t0 = Timestamp::ZERO;
//! let a_addr = "127.0.0.1:7001".parse().unwrap();
//! let b_addr = "127.0.0.1:7002".parse().unwrap();
//! let mut a = Node::new(Config::local(), Identity::new("a", a_addr), 1, t0).unwrap();
//! let mut b = Node::new(Config::local(), Identity::new("b", b_addr), 2, t0).unwrap();
//!
//! b.join(t0, &[a_addr]).unwrap(); // a push-pull exchange with a
//! while deliver(&mut a, &mut b, t0) | deliver(&mut b, &mut a, t0) {}
//!
//! assert_eq!(a.alive_count(), 2);
//! assert_eq!(b.alive_count(), 2);
//! let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
//! assert!(events.contains(&Event::JoinCompleted { answered: 1, contacted: 1 }));
//! assert!(events.iter().any(|e| matches!(e, Event::MemberJoined(m) if &*m.name == "a")));
//! // The driver re-arms its single timer here:
//! assert!(a.poll_timeout().is_some());
//! ```
//!
//! Every input can also be handed over as data: [`Input`] (a datagram, a stream frame's body,
//! a send failure, a timeout, or an API [`Call`]) through [`Node::handle`]. The simulator, its
//! traces, the fuzz targets and replay files use that one vocabulary.
//!
//! ## How the core is laid out
//!
//! [`Node`] (`node.rs`) is the router: it decodes inputs, hands each message and timer to the
//! part that owns it, and acts on what the parts return. The parts own their state and timers
//! and see only a narrow context (`ctx.rs`: now, config, identity, RNG, the member table and the
//! effects sink of transmits, events, timers, broadcast queues and counters):
//!
//! | folder | what it owns |
//! |---|---|
//! | `swim/` | SWIM failure detection with Lifeguard: the probe cycle, indirect probes and relays, the local health score (awareness), suspicion expiry |
//! | `dissemination/` | the broadcast queues' policy, the gossip tick, push-pull anti-entropy and digest repair |
//! | `lifecycle/` | joining through seeds and the graceful leave's phases |
//! | `serf/` | the Serf layer: Lamport clocks, intents, user events, queries and the name-conflict vote, coalescing, direct messages, reaping and reconnects |
//! | `members/` | the member table (probe order, name index, prefetching lookups) |
//! | `membership.rs` | the router's membership state machine: alive/suspect/dead under incarnation rules, refutation, push-pull merges |
//! | `keyring/` | the AES-GCM keyring, the sealed envelope, the nonce source, rolling adoption, refusal log, and cluster-wide key operations |
//! | `wire/` | message types, the postcard codec with its fast paths, the push-pull writer, stream framing; `wire/hashicorp/`, memberlist's and Serf's wire formats (msgpack, compound, CRC, compression, their encryption), checked against captured traffic of the real peers, spoken when [`Config::wire`] is [`WireProfile::HashiCorp`] (with Serf's layer) or [`WireProfile::Memberlist`] (without) |
//! | `event_queue.rs` | the one event-overflow policy ([`EventQueue`]), used by the node and by every driver's event stream |
//! | `admission.rs` | how many new members one datagram or one sending host may introduce |
//! | `plausible.rs` | what a message may claim: incarnations as serial numbers, how far an accusation or a Lamport time may run ahead |
//! | `input.rs`, `formulas.rs` | the one input vocabulary ([`Input`]) and the size-dependent formulas ([`formulas`]) |
//!
//! ## Encryption
//!
//! With [`Config::keyring`] set, every datagram and frame is sealed with AES-GCM under the
//! [`Keyring`]'s primary key and opened with any of its keys; the cluster label is associated
//! data, so traffic of another cluster never opens. The format, the nonce construction (a
//! ChaCha20 CSPRNG seeded with 32 bytes of driver entropy draws a random 64-bit prefix; a 32-bit
//! counter follows it; nonces are never drawn from the seeded RNG, so they do not repeat across
//! restarts with a fixed seed) and the rolling adoption are documented in the `keyring` module
//! (`core/src/keyring/mod.rs`).
//!
//! With [`WireProfile::HashiCorp`] the same keyring speaks memberlist's encryption instead, as
//! `serf agent -encrypt` does (Serf 0.9.4, memberlist 0.2.2): each datagram sealed whole with
//! the primary key (encryption version 1; the 29 bytes it adds are reserved, so a sealed
//! datagram fits [`Config::mtu`]), each stream message as memberlist's encrypted message,
//! input opened with any key, [`Config::gossip_verify_incoming`] and
//! [`Config::gossip_verify_outgoing`] with memberlist's meaning, [`Node::set_keyring`] at
//! runtime, and Serf's key-management queries (`serf keys -list/-install/-use/-remove` from a
//! serf agent) answered in Serf's format, each node acting on its own keyring;
//! [`Node::install_key`] and its siblings ask the same queries.
//!
//! ```
//! use rookery_core::{Config, Event, Identity, Keyring, Node, Timestamp};
//!
//! let mut config = Config::local();
//! config.keyring = Some(Keyring::new(&[7; 32]).unwrap());
//! let me = Identity::new("a", "127.0.0.1:7001".parse().unwrap());
//! // A keyring needs entropy for nonces (a real driver passes OS randomness).
//! let mut a = Node::with_entropy(config, me, 1, [42; 32], Timestamp::ZERO).unwrap();
//! // Rotate cluster-wide: install, then use, then remove the old key.
//! let id = a.install_key(Timestamp::ZERO, &[9; 16]).unwrap();
//! let done = std::iter::from_fn(|| a.poll_event())
//!     .find_map(|e| match e { Event::KeyOp(r) if r.id == id => Some(r), _ => None })
//!     .unwrap();
//! assert!(done.complete()); // a cluster of one: this node answered itself
//! a.use_key(Timestamp::ZERO, &[9; 16]).unwrap();
//! assert_eq!(a.keyring().unwrap().primary(), &[9; 16]);
//! ```
//!
//! ## Panic policy
//!
//! - **Bytes from the network never panic the core.** Decoding is bounded and total: a datagram
//!   or frame is either a valid message or refused with an [`InputError`], counted in
//!   [`Stats`], and changes nothing else. The decode, node and cluster fuzz targets hold the
//!   core to this.
//! - **API misuse never panics**: it returns a typed [`ApiError`] and changes nothing.
//! - **Time never panics**: [`Timestamp`] arithmetic saturates, a `now` earlier than the last
//!   one is taken as the last one, and every timer fires at most once per
//!   [`Node::handle_timeout`] call, even at [`Timestamp::MAX`].
//! - **Counters saturate or wrap by design**, never overflow-panic: incarnations wrap and
//!   compare as serial numbers, so a member can always refute ([`plausible`]); Lamport clocks
//!   saturate, and a message may move them at most [`plausible::MAX_LAMPORT_STEP`] at once;
//!   sequence numbers wrap.
//! - A panic is reserved for a broken internal invariant the core established itself (for
//!   example "this node is always in its own member table"): it is a bug in rookery, not a
//!   condition a caller or a peer can cause. Such sites use `expect` with the invariant's
//!   statement.

#![forbid(unsafe_code)]

pub mod admission;
mod config;
mod ctx;
mod dissemination;
mod error;
mod event;
mod event_queue;
pub mod formulas;
#[cfg(feature = "arbitrary")]
pub mod fuzzing;
mod identity;
mod input;
mod keyring;
mod lifecycle;
mod members;
mod membership;
mod node;
pub mod plausible;
mod serf;
mod stats;
mod swim;
#[cfg(test)]
mod testkit;
mod timers;
pub mod wire;

pub use config::{Config, ConfigError, WireProfile};
pub use error::{ApiError, InputError};
pub use event::{
    Event, IncomingQuery, MemberEventKind, MessageId, QueryHandle, QueryId, QueryParams,
    SendFailure, StopReason, UserEvent,
};
pub use event_queue::{EventClass, EventQueue, Overflow};
pub use identity::{Identity, Member, MemberStatus, Name, Tags};
pub use input::{Call, HandleError, Handled, Input};
pub use keyring::{
    KeyOp, KeyOpId, KeyOpResult, Keyring, KeyringError, NONCE_LEN, SEALED_VERSION, SEAL_OVERHEAD,
    TAG_LEN,
};
pub use node::{Node, Transmit, TransmitKind};
pub use serf::lamport::LamportClock;
pub use stats::{QueueDepths, Stats};
pub use time::Timestamp;

mod time;
