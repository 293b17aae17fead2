//! Protocol tuning: every interval, multiplier and bound the core uses, with the
//! presets [`Config::lan`] (rookery's, issue 18), [`Config::memberlist`] (memberlist's LAN
//! profile exactly), [`Config::wan`] and [`Config::local`] (memberlist's).

use std::time::Duration;

/// Every protocol setting. Start from a preset and adjust fields; [`Config::validate`] (called by
/// [`crate::Node::new`]) rejects inconsistent values with a typed [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Time between two failure-detection probes, before Lifeguard scaling. LAN default 1 s.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe. LAN default 500 ms.
    /// Must be shorter than `probe_interval`; not scaled by the local health score.
    pub probe_timeout: Duration,
    /// Number of members asked to ping a target indirectly when the direct ping fails. Default 3.
    pub indirect_checks: usize,
    /// Suspicion timeout multiplier: min = `suspicion_mult` · max(1, log10 n) · `probe_interval`.
    /// LAN default 4.
    pub suspicion_mult: u32,
    /// The longest suspicion timeout, as a multiple of the minimum. LAN default 16 (48 s at
    /// 100 members, as memberlist's 6 × 8 s); memberlist 6.
    pub suspicion_max_timeout_mult: u32,
    /// Independent confirmations (suspect messages from other accusers) that shrink a
    /// suspicion's timeout from the longest to the shortest. `None`: memberlist's
    /// `suspicion_mult − 2`. Clusters of fewer than k + 2 members expect none. LAN default
    /// 3; memberlist: `None` (2 at its LAN `suspicion_mult` of 4).
    pub suspicion_confirmations: Option<u32>,
    /// When set, the shortest suspicion timeout is `suspicion_unit · max(2, log10 n)` instead
    /// of memberlist's `suspicion_mult · max(1, log10 n) · probe_interval` (a finer step than
    /// whole probe intervals; the floor of 2 keeps small clusters, which expect no
    /// confirmations, at twice the unit). LAN default 1.5 s (3 s up to 100 members, 4.5 s at
    /// 1,000); memberlist: `None`.
    pub suspicion_unit: Option<Duration>,
    /// When another member's accusation makes this node suspect a member, probe that member
    /// next instead of the round-robin's next member (issue 18). A crashed member's
    /// independent confirmations then arrive within about a probe interval of the first
    /// accusation rather than whenever other members' round-robins reach it, so a suspicion
    /// shrinks to its shortest timeout sooner; a live suspect hears of its suspicion from more
    /// members (the probe carries it) and refutes sooner. No extra packets: the probe replaces
    /// one round-robin probe. Only while this node holds at most 3 members suspect, and never
    /// two probes in a row (a partition's flood of accusations would starve the
    /// round-robin). LAN default on; off in memberlist.
    pub probe_suspects_first: bool,
    /// After a join that a seed answered, exchange full state once more with a random live
    /// member a settle window later (issue 18): what gossip about the members that joined
    /// right after this one failed to bring, the second exchange does. One more push-pull per
    /// join, nothing at rest. LAN default on; off in memberlist.
    pub join_follow_up: bool,
    /// Upper bound of the Lifeguard local health multiplier; the score runs from 0 to this − 1
    /// and the probe interval is multiplied by score + 1. Default 8.
    pub awareness_max_multiplier: u32,
    /// Weigh a failed probe's evidence before accusing its target (issue 18): when the
    /// helpers asked stayed silent while other members' messages kept reaching this node, its
    /// own link is the likelier culprit and the accusation is withheld (helpers' nacks within
    /// `probe_timeout` after the close still make it; total silence for 16 health-scaled probe
    /// intervals accuses). This stops a node that loses most of its packets from getting
    /// healthy members failed. Its cost: slower verdicts when nothing but silence reaches a
    /// node — a lone survivor of a mass crash fails the dead only after the total-silence
    /// window (176–197 s instead of 42–53 s in the simulator), and a node cut off from the
    /// cluster is slower to fail the others. See the core's `swim::probe` module doc for the
    /// rule. With it on, a suspicion that expires with no independent confirmation although
    /// some were expected fails the member on this node only (the verdict is not gossiped),
    /// and a probe that the target outlived by refuting accuses nobody. LAN default on; off in
    /// [`Config::memberlist`], [`Config::wan`] and [`Config::local`] (memberlist's behaviour:
    /// every failed probe accuses).
    pub accusation_guard: bool,
    /// Take a member this node holds failed back only once it answers here (issue 18): its
    /// alive message at the same address (a refutation of the verdict, or a restart) starts a
    /// check — up to 4 pings, the next as soon as one is answered or after `probe_timeout`,
    /// 2 answers needed — and is applied (and passed on) only when the check passes. A
    /// restarted member answers within two round trips; one that loses most of its packets,
    /// which memberlist removes and takes back over and over (Rapid's paper), stays removed:
    /// at 80 % loss each way a check passes with probability 0.9 % (2 of 4 pings answered, each
    /// at 4 %), and an unanswered check holds the next one back 1, 2, 4, … up to 64 probe
    /// intervals. The checks' pings are a message of their own, sent and answered with nothing
    /// piggybacked: after a heal or a mass restart every member checks every member that
    /// comes back at once, and updates riding on those pings and acks spent their
    /// retransmissions on members that already had them (a healed 10-minute partition took
    /// 3.2–4.4 s to merge instead of 0.9–2.7 s at N=100). In the simulator's
    /// `degraded` scenario (`BENCHMARKS.md`, "Degraded members removed stably"): no rejoin in
    /// 300 s instead of 540–1,170. A member that comes back at a new address is taken at once,
    /// as before. LAN default on; off in [`Config::memberlist`], [`Config::wan`] and
    /// [`Config::local`]. In the HashiCorp profiles the check's pings go as memberlist pings
    /// (Go peers answer them like any ping).
    pub revival_check: bool,
    /// Time between two gossip ticks. LAN default 100 ms; memberlist 200 ms. Serf's default
    /// query timeout scales with it.
    pub gossip_interval: Duration,
    /// Members each gossip tick sends queued updates to. LAN default 3.
    pub gossip_nodes: usize,
    /// How long a member that failed or left is still gossiped to (and kept in the probe list
    /// until the next reshuffle). LAN default 30 s.
    pub gossip_to_the_dead_time: Duration,
    /// Retransmit multiplier: an update is sent `retransmit_mult` · ceil(log10(n + 1)) times.
    /// LAN default 4.
    pub retransmit_mult: u32,
    /// Time between two periodic push-pull exchanges, stretched by
    /// ceil(log2 n − 5) + 1 once the cluster has more than 32 members. LAN default 30 s;
    /// zero disables periodic push-pull (join still uses it).
    pub push_pull_interval: Duration,
    /// Timeout for a reliable exchange (join push-pull, reliable fallback ping) and the connect
    /// and write timeout drivers should use. LAN default 10 s.
    pub tcp_timeout: Duration,
    /// Largest datagram the node sends, in bytes; piggybacked updates fill datagrams up to it.
    /// Default 1400.
    pub mtu: usize,
    /// Largest encoded size of a member's tags, in bytes. Default 512.
    pub meta_max_size: usize,
    /// Largest accepted member name, in bytes. Default 128.
    pub max_name_len: usize,
    /// Most updates held in the broadcast queue; beyond it the most-sent, oldest updates are
    /// dropped and counted in [`crate::Stats::broadcast_drops`]. Default 4096.
    pub max_broadcast_queue: usize,
    /// Most members (any status, tombstones included) held in the member table; an update that
    /// would add more is refused and counted in [`crate::Stats::members_refused`]. Default 65,536;
    /// at most 16,777,213 (the name index stores positions in 24 bits).
    pub max_members: usize,
    /// Most events held until [`crate::Node::poll_event`] drains them; beyond it the
    /// [`crate::EventQueue`] policy applies (the oldest direct message goes first, membership
    /// events are only coalesced), counted in [`crate::Stats`] and reported by
    /// [`crate::Event::Lagged`]. Default 65,536.
    pub max_pending_events: usize,
    /// Most transmits held until [`crate::Node::poll_transmit`] drains them; beyond it the
    /// oldest is dropped and counted in [`crate::Stats::transmits_dropped`]. Default 16,384.
    pub max_pending_transmits: usize,
    /// Most indirect pings this node runs at once on behalf of others; more are refused and
    /// counted in [`crate::Stats::indirect_refused`]. Default 1024.
    pub max_indirect_relays: usize,
    /// Largest reliable (stream) message accepted or sent, in bytes, frame header excluded.
    /// Default 8 MiB.
    pub max_stream_message: usize,
    /// Optional cluster label carried in every message; messages with another label are dropped
    /// and counted. At most 255 bytes. Default none.
    pub label: Option<String>,
    /// The AES-GCM keyring: when set, this node opens sealed datagrams and frames with any of
    /// its keys and (with `gossip_verify_outgoing`) seals everything it sends with the primary
    /// key, the label authenticated with it. In the HashiCorp profile the format is
    /// memberlist's (what `serf agent -encrypt` speaks): datagrams sealed whole, stream
    /// messages framed as its encrypted message. A node with a keyring needs entropy for its nonces
    /// ([`crate::Node::with_entropy`]). Change it on a running node with
    /// [`crate::Node::set_keyring`] or cluster-wide with [`crate::Node::install_key`] and its
    /// siblings. Default none (plaintext).
    pub keyring: Option<crate::Keyring>,
    /// With a keyring: refuse plaintext input (counted in
    /// [`crate::Stats::plaintext_refused`]). Turn it off while a cluster moves to (or from)
    /// encryption node by node. Default true, as memberlist's `GossipVerifyIncoming` (the
    /// same meaning in the HashiCorp profile: off, a datagram no key opens is read as
    /// plaintext).
    pub gossip_verify_incoming: bool,
    /// With a keyring: seal everything this node sends. Turn it off while a cluster moves to
    /// (or from) encryption node by node. Default true, as memberlist's
    /// `GossipVerifyOutgoing`.
    pub gossip_verify_outgoing: bool,

    // ---- Serf layer ----
    /// How long a graceful leave waits for its announcement to go out before the node goes
    /// inert. Default 5 s.
    pub broadcast_timeout: Duration,
    /// How often failed and left members are checked for reaping. Default 15 s.
    pub reap_interval: Duration,
    /// How often a node tries to reconnect to one failed member (with probability
    /// failed/alive), so healed partitions merge back. Default 30 s; zero disables.
    pub reconnect_interval: Duration,
    /// How long a failed member is kept (and reconnected to) before it is reaped. Default 24 h.
    pub reconnect_timeout: Duration,
    /// How long a left member is kept as a tombstone before it is reaped. Default 24 h.
    pub tombstone_timeout: Duration,
    /// How long a join or leave intent about a member not yet known is kept. Default 5 min.
    pub recent_intent_timeout: Duration,
    /// Most intents about unknown members kept; beyond it the oldest is dropped (counted in
    /// [`crate::Stats::intents_dropped`]). Default 1024.
    pub max_recent_intents: usize,
    /// Slots of the user-event dedup ring (Lamport times remembered). Default 512.
    pub event_buffer: usize,
    /// Slots of the query dedup ring. Default 512.
    pub query_buffer: usize,
    /// Default query timeout multiplier: gossip_interval · `query_timeout_mult` ·
    /// ceil(log10(n + 1)). Default 16.
    pub query_timeout_mult: u32,
    /// Largest user event (name plus payload), in bytes. Default 512; at most 9 KiB.
    pub user_event_size_limit: usize,
    /// Largest query (name, payload and filters), in bytes. Default 1024.
    pub query_size_limit: usize,
    /// Largest query response payload, in bytes. Default 1024.
    pub query_response_size_limit: usize,
    /// Most queries this node has in flight; more are refused with a typed error. Default 256.
    pub max_pending_queries: usize,
    /// Member-event coalescing window: events are held at most this long. Zero (the default)
    /// disables coalescing. Serf agents use 3 s.
    pub coalesce_period: Duration,
    /// Member events are flushed once no new one arrived for this long (within the coalescing
    /// window). Default 0; Serf agents use 1 s.
    pub quiescent_period: Duration,
    /// Coalescing window for user events flagged `coalesce`. Zero (default) disables.
    pub user_coalesce_period: Duration,
    /// Quiescent period for coalesced user events. Default 0.
    pub user_quiescent_period: Duration,
    /// Depth of the Serf broadcast queue (intents, user events, queries) above which a
    /// [`crate::Event::QueueDepthWarning`] is emitted. Default 128.
    pub queue_depth_warning: usize,
    /// Most updates in the Serf broadcast queue; beyond it the most-sent, oldest update is
    /// dropped and counted in [`crate::Stats::broadcast_drops`]. Default 4096.
    pub max_queue_depth: usize,
    /// Largest direct message payload ([`crate::Node::send`], [`crate::Node::broadcast`]), in
    /// bytes. Default 64 KiB; at most `max_stream_message` minus framing.
    pub max_message_size: usize,
    /// Most received direct messages waiting in the event queue; beyond it the oldest message
    /// is dropped and a [`crate::Event::Lagged`] reports how many (see
    /// [`crate::EventQueue`]). Default 1024.
    pub max_inbox: usize,
    /// Most acknowledged direct messages ([`crate::Node::send_acked`]) waiting for their
    /// receipt; beyond it `send_acked` refuses with [`crate::ApiError::TooManyUnacked`] (nothing
    /// is sent). An unanswered message fails after twice `tcp_timeout`. Default 1024.
    pub max_unacked_messages: usize,

    // ---- Wire ----
    /// The wire protocol this node speaks: [`WireProfile::Native`] (the default) or
    /// [`WireProfile::HashiCorp`], memberlist's and Serf's protocols as Go writes them, to run
    /// in a cluster with `serf` agents or Go memberlist programs. Every node of a cluster
    /// speaks the same profile.
    pub wire: WireProfile,
}

/// Which bytes a node puts on the wire. The profile decides only bytes: the protocol (probes,
/// suspicion, gossip, push-pull, the Serf layer) is the same under both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireProfile {
    /// rookery's own compact format (postcard, versioned envelope, length-prefixed stream
    /// frames). Carries everything the core does, including view digests, push-pull
    /// accusers and direct messages.
    #[default]
    Native,
    /// memberlist 0.2.2's wire protocol (msgpack, compound datagrams, stream messages, its
    /// AES-GCM encryption with [`Config::keyring`]) with Serf 0.9.4's messages inside
    /// memberlist user messages, as a `serf` 0.9.4 agent speaks them (with or without
    /// `-encrypt`). What has no counterpart there is listed in
    /// `wire::hashicorp`'s docs: no view digests (views are repaired by the periodic
    /// push-pull alone), no accuser in push-pull, no direct messages
    /// ([`crate::ApiError::NotInProfile`]), no cluster label (memberlist 0.2.2 has none).
    HashiCorp,
    /// memberlist 0.2.2's wire protocol alone, without Serf's layer: to run in a cluster of Go
    /// programs that embed memberlist (not `serf` agents). The bytes are
    /// [`WireProfile::HashiCorp`]'s, with memberlist's default delegate versions (0) in the
    /// alive message instead of Serf's (2–5, which a plain memberlist cluster refuses), no
    /// Serf messages in user messages and no Serf state in push-pull. Membership — joins,
    /// probes, suspicion, failure, graceful leave (a dead message from the leaver itself) —
    /// works as in memberlist. Direct messages are memberlist's user messages: `send` and
    /// `broadcast` write a stream user message (what Go's `SendReliable` writes, handed to the
    /// Go program's `NotifyMsg`), and a user message received — stream or datagram — is an
    /// [`crate::Event::Message`] from the member at its source address (memberlist names no
    /// sender; a stream's source is its connection's port, so that address written out).
    /// Serf's features are refused with [`crate::ApiError::NotInProfile`] (user events,
    /// queries, acknowledged sends, key operations). Tags travel in the meta as Serf encodes
    /// them.
    Memberlist,
}

impl WireProfile {
    /// Whether this profile puts memberlist's bytes on the wire ([`WireProfile::HashiCorp`]
    /// or [`WireProfile::Memberlist`]).
    pub fn is_hashicorp(self) -> bool {
        matches!(self, WireProfile::HashiCorp | WireProfile::Memberlist)
    }

    /// Whether Serf's layer rides on this profile's wire (every profile but
    /// [`WireProfile::Memberlist`]).
    pub fn has_serf(self) -> bool {
        self != WireProfile::Memberlist
    }
}

impl Config {
    /// rookery's LAN profile (issue 18): [`Config::memberlist`] with faster failure verdicts
    /// and joins at the same traffic at rest — the shortest suspicion timeout 3 s up to 100
    /// members (`suspicion_unit` 1.5 s; 4.5 s at 1,000) reached with 3 independent
    /// confirmations, the longest unchanged (48 s at 100); members probe a member others
    /// accuse next (`probe_suspects_first`); gossip every 100 ms; a second push-pull a
    /// settle window after a join (`join_follow_up`); the accusation guard on; and a member
    /// failed here taken back only once it answers (`revival_check`). In the
    /// simulator at N=100 (`BENCHMARKS.md`, "Issue 18's speed targets, met"): a crash known
    /// everywhere in 4.3–6.5 s instead of 9.4–12.6 s, a join converged in 0.28–0.42 s instead
    /// of 1.3–3.1 s, no false failed verdict under loss, slowness or degradation, members that
    /// lose most of their packets removed for good instead of flapping, no more bytes at rest.
    ///
    /// For a cluster shared with Go memberlist or Serf agents (`WireProfile::HashiCorp`,
    /// `WireProfile::Memberlist`), start from [`Config::memberlist`] (or [`Config::local`],
    /// [`Config::wan`]) to keep their timing.
    pub fn lan() -> Config {
        Config {
            gossip_interval: Duration::from_millis(100),
            suspicion_unit: Some(Duration::from_millis(1500)),
            suspicion_confirmations: Some(3),
            suspicion_max_timeout_mult: 16,
            probe_suspects_first: true,
            join_follow_up: true,
            accusation_guard: true,
            revival_check: true,
            ..Config::memberlist()
        }
    }

    /// memberlist's LAN profile, exactly (what `Config::lan` was before issue 18): probe 1 s
    /// / 500 ms, 3 indirect checks, suspicion 4 / 6, gossip every 200 ms to 3 members,
    /// retransmit mult 4, push-pull every 30 s; none of rookery's additions to the failure
    /// detector (no accusation guard, no suspect-first probing, no join follow-up).
    pub fn memberlist() -> Config {
        Config {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            suspicion_confirmations: None,
            suspicion_unit: None,
            probe_suspects_first: false,
            join_follow_up: false,
            awareness_max_multiplier: 8,
            accusation_guard: false,
            revival_check: false,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead_time: Duration::from_secs(30),
            retransmit_mult: 4,
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            mtu: 1400,
            meta_max_size: 512,
            max_name_len: 128,
            max_broadcast_queue: 4096,
            max_members: 65_536,
            max_pending_events: 65_536,
            max_pending_transmits: 16_384,
            max_indirect_relays: 1024,
            max_stream_message: 8 << 20,
            label: None,
            keyring: None,
            gossip_verify_incoming: true,
            gossip_verify_outgoing: true,
            broadcast_timeout: Duration::from_secs(5),
            reap_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            recent_intent_timeout: Duration::from_secs(300),
            max_recent_intents: 1024,
            event_buffer: 512,
            query_buffer: 512,
            query_timeout_mult: 16,
            user_event_size_limit: 512,
            query_size_limit: 1024,
            query_response_size_limit: 1024,
            max_pending_queries: 256,
            coalesce_period: Duration::ZERO,
            quiescent_period: Duration::ZERO,
            user_coalesce_period: Duration::ZERO,
            user_quiescent_period: Duration::ZERO,
            queue_depth_warning: 128,
            max_queue_depth: 4096,
            max_message_size: 64 << 10,
            max_inbox: 1024,
            max_unacked_messages: 1024,
            wire: WireProfile::Native,
        }
    }

    /// memberlist's WAN profile: probe 5 s / 3 s, suspicion 6 / 6, gossip every 500 ms to 4
    /// members, push-pull every 60 s, TCP timeout 30 s, gossip to the dead for 60 s.
    pub fn wan() -> Config {
        Config {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            gossip_to_the_dead_time: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            tcp_timeout: Duration::from_secs(30),
            ..Config::memberlist()
        }
    }

    /// memberlist's Local profile (loopback, tests): probe 1 s / 200 ms, 1 indirect check,
    /// suspicion 3 / 6, gossip every 100 ms to 3 members, retransmit mult 2, push-pull every
    /// 15 s, TCP timeout 1 s, gossip to the dead for 15 s.
    pub fn local() -> Config {
        Config {
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            suspicion_mult: 3,
            gossip_interval: Duration::from_millis(100),
            retransmit_mult: 2,
            push_pull_interval: Duration::from_secs(15),
            tcp_timeout: Duration::from_secs(1),
            gossip_to_the_dead_time: Duration::from_secs(15),
            ..Config::memberlist()
        }
    }

    /// Check that the settings are consistent. [`crate::Node::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("gossip_interval", self.gossip_interval),
            ("tcp_timeout", self.tcp_timeout),
            ("broadcast_timeout", self.broadcast_timeout),
            ("reap_interval", self.reap_interval),
        ];
        for (field, d) in nonzero {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeoutNotBelowInterval);
        }
        let counts = [
            ("suspicion_mult", self.suspicion_mult as usize),
            (
                "suspicion_max_timeout_mult",
                self.suspicion_max_timeout_mult as usize,
            ),
            (
                "awareness_max_multiplier",
                self.awareness_max_multiplier as usize,
            ),
            ("retransmit_mult", self.retransmit_mult as usize),
            ("gossip_nodes", self.gossip_nodes),
            ("max_broadcast_queue", self.max_broadcast_queue),
            ("max_members", self.max_members),
            ("max_pending_events", self.max_pending_events),
            ("max_pending_transmits", self.max_pending_transmits),
            ("max_name_len", self.max_name_len),
            ("event_buffer", self.event_buffer),
            ("query_buffer", self.query_buffer),
            ("query_timeout_mult", self.query_timeout_mult as usize),
            ("max_pending_queries", self.max_pending_queries),
            ("max_queue_depth", self.max_queue_depth),
            ("max_inbox", self.max_inbox),
            ("max_unacked_messages", self.max_unacked_messages),
            ("max_recent_intents", self.max_recent_intents),
        ];
        for (field, n) in counts {
            if n == 0 {
                return Err(ConfigError::ZeroCount { field });
            }
        }
        if !(crate::wire::MIN_MTU..=crate::wire::MAX_DATAGRAM).contains(&self.mtu) {
            return Err(ConfigError::MtuOutOfRange { mtu: self.mtu });
        }
        if self.meta_max_size > self.mtu / 2 {
            return Err(ConfigError::MetaTooLarge {
                meta_max_size: self.meta_max_size,
            });
        }
        if self.max_members >= crate::members::index::MAX_POSITIONS {
            return Err(ConfigError::LimitTooLarge {
                field: "max_members",
            });
        }
        if self.max_name_len > 255 {
            return Err(ConfigError::NameLimitTooLarge {
                max_name_len: self.max_name_len,
            });
        }
        if self.max_stream_message < 1024 || self.max_stream_message > crate::wire::MAX_FRAME {
            return Err(ConfigError::StreamLimitOutOfRange {
                max: self.max_stream_message,
            });
        }
        if self.user_event_size_limit > 9 * 1024 || self.user_event_size_limit > self.mtu / 2 {
            return Err(ConfigError::LimitTooLarge {
                field: "user_event_size_limit",
            });
        }
        if self.query_size_limit > self.mtu || self.query_response_size_limit > self.mtu {
            return Err(ConfigError::LimitTooLarge {
                field: "query_size_limit",
            });
        }
        if self.max_message_size + 1024 > self.max_stream_message {
            return Err(ConfigError::LimitTooLarge {
                field: "max_message_size",
            });
        }
        if let Some(label) = &self.label {
            if label.is_empty() || label.len() > 255 {
                return Err(ConfigError::BadLabel);
            }
            if self.wire.is_hashicorp() {
                return Err(ConfigError::NotInProfile { field: "label" });
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

/// Why a [`Config`] (or an [`crate::Identity`] given with it) was rejected. Nothing was created.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    ZeroDuration {
        /// The offending field.
        field: &'static str,
    },
    /// A count or multiplier that must be positive is zero.
    ZeroCount {
        /// The offending field.
        field: &'static str,
    },
    /// `probe_timeout` must be shorter than `probe_interval`.
    ProbeTimeoutNotBelowInterval,
    /// `mtu` is outside 512..=65507 bytes.
    MtuOutOfRange {
        /// The configured MTU.
        mtu: usize,
    },
    /// `meta_max_size` exceeds half the MTU, so an alive message could not fit a datagram.
    MetaTooLarge {
        /// The configured limit.
        meta_max_size: usize,
    },
    /// `max_name_len` exceeds 255 bytes.
    NameLimitTooLarge {
        /// The configured limit.
        max_name_len: usize,
    },
    /// `max_stream_message` is outside 1 KiB ..= 64 MiB.
    StreamLimitOutOfRange {
        /// The configured limit.
        max: usize,
    },
    /// The cluster label is empty or longer than 255 bytes.
    BadLabel,
    /// A size limit exceeds what the transport can carry (user events: 9 KiB and half the
    /// MTU; queries and responses: the MTU; direct messages: `max_stream_message` minus 1 KiB).
    LimitTooLarge {
        /// The offending field.
        field: &'static str,
    },
    /// The identity's name is empty or longer than `max_name_len`.
    BadName,
    /// A keyring is configured but the node was given no entropy for its nonces (create it
    /// with [`crate::Node::with_entropy`]): nonces are never drawn from the seeded RNG.
    KeyringWithoutEntropy,
    /// A setting the chosen [`WireProfile`] cannot carry (the HashiCorp profile has no
    /// cluster label).
    NotInProfile {
        /// The offending field.
        field: &'static str,
    },
    /// The identity's tags encode to more than `meta_max_size` bytes.
    TagsTooLarge {
        /// Encoded size of the tags.
        size: usize,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::ZeroDuration { field } => write!(f, "{field} must be positive"),
            ConfigError::ZeroCount { field } => write!(f, "{field} must be positive"),
            ConfigError::ProbeTimeoutNotBelowInterval => {
                write!(f, "probe_timeout must be shorter than probe_interval")
            }
            ConfigError::MtuOutOfRange { mtu } => write!(f, "mtu {mtu} outside 512..=65507"),
            ConfigError::MetaTooLarge { meta_max_size } => {
                write!(f, "meta_max_size {meta_max_size} exceeds half the mtu")
            }
            ConfigError::NameLimitTooLarge { max_name_len } => {
                write!(f, "max_name_len {max_name_len} exceeds 255")
            }
            ConfigError::StreamLimitOutOfRange { max } => {
                write!(f, "max_stream_message {max} outside 1 KiB..=64 MiB")
            }
            ConfigError::BadLabel => write!(f, "label must be 1..=255 bytes"),
            ConfigError::NotInProfile { field } => {
                write!(f, "{field} cannot be carried by the chosen wire profile")
            }
            ConfigError::LimitTooLarge { field } => {
                write!(f, "{field} exceeds what the transport can carry")
            }
            ConfigError::BadName => write!(f, "name must be 1..=max_name_len bytes"),
            ConfigError::KeyringWithoutEntropy => {
                write!(f, "a keyring needs entropy for nonces (Node::with_entropy)")
            }
            ConfigError::TagsTooLarge { size } => {
                write!(f, "tags encode to {size} bytes, above meta_max_size")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        for c in [Config::lan(), Config::wan(), Config::local()] {
            c.validate().unwrap();
        }
        assert_eq!(Config::wan().probe_interval, Duration::from_secs(5));
        assert_eq!(Config::local().indirect_checks, 1);
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut c = Config::lan();
        c.probe_timeout = c.probe_interval;
        assert_eq!(c.validate(), Err(ConfigError::ProbeTimeoutNotBelowInterval));
        let mut c = Config::lan();
        c.gossip_nodes = 0;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroCount {
                field: "gossip_nodes"
            })
        );
        let mut c = Config::lan();
        c.mtu = 100;
        assert_eq!(c.validate(), Err(ConfigError::MtuOutOfRange { mtu: 100 }));
        let mut c = Config::lan();
        c.probe_interval = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroDuration {
                field: "probe_interval"
            })
        );
        let mut c = Config::lan();
        c.label = Some(String::new());
        assert_eq!(c.validate(), Err(ConfigError::BadLabel));
        let mut c = Config::lan();
        c.meta_max_size = 1000;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::MetaTooLarge { .. })
        ));
    }
}
