//! Counters a node keeps about its traffic and about everything it dropped or refused.

/// Monotonic counters, read with [`crate::Node::stats`]. Every bounded queue's overflow and
/// every rejected input is counted here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Datagrams handed to [`crate::Node::handle_packet`].
    pub packets_in: u64,
    /// Bytes of those datagrams.
    pub bytes_in: u64,
    /// Datagrams produced by [`crate::Node::poll_transmit`].
    pub packets_out: u64,
    /// Bytes of those datagrams.
    pub bytes_out: u64,
    /// Reliable messages handed to [`crate::Node::handle_stream`].
    pub streams_in: u64,
    /// Bytes of those messages.
    pub stream_bytes_in: u64,
    /// Reliable messages produced (framed).
    pub streams_out: u64,
    /// Bytes of those messages, frame headers included.
    pub stream_bytes_out: u64,
    /// Inputs that did not decode or failed validation (ignored, no state change).
    pub decode_errors: u64,
    /// Inputs carrying another cluster label, plaintext or sealed (ignored).
    pub label_mismatches: u64,
    /// Sealed inputs that no key of the keyring opens (ignored). In the HashiCorp profile,
    /// whose datagrams carry no mark of being sealed, a datagram no key opens counts here
    /// unless it decodes as plaintext (then [`Stats::plaintext_refused`]).
    pub sealed_no_key: u64,
    /// Plaintext inputs refused because `gossip_verify_incoming` requires sealed ones.
    pub plaintext_refused: u64,
    /// Sealed inputs refused because this node has no keyring (in the HashiCorp profile: an
    /// encrypted stream message, or a datagram shaped like a sealed one that does not decode).
    pub sealed_unexpected: u64,
    /// Sealed inputs shorter than their header, nonce and tag.
    pub sealed_truncated: u64,
    /// Updates dropped from the full broadcast queue.
    pub broadcast_drops: u64,
    /// Events other than direct messages dropped because the application did not drain them
    /// (see [`crate::EventQueue`]; membership events are never dropped).
    pub events_dropped: u64,
    /// Transmits dropped because the driver did not drain them.
    pub transmits_dropped: u64,
    /// Updates about new members refused because the member table was full.
    pub members_refused: u64,
    /// Indirect ping requests refused because too many were in flight.
    pub indirect_refused: u64,
    /// Reliable sends the driver reported as failed.
    pub send_failures: u64,
    /// Suspicions about this node that it refuted.
    pub refutations: u64,
    /// Probes that ended without any ack.
    pub probes_failed: u64,
    /// Failed probes whose accusation this node withheld at the close because the evidence
    /// pointed at its own link: no more helpers nacked than helpers that had answered its
    /// previous request stayed silent, while other messages kept reaching it. The missed
    /// nacks still raised the local health score. See the failure detector's probe module
    /// (`swim::probe`) for the rule.
    pub accusations_withheld: u64,
    /// Of those, accusations made after all because helpers' nacks arrived shortly after the
    /// probe closed (within `probe_timeout`) and outweighed the silent ones: the helpers heard
    /// this node and could not reach the target either.
    pub accusations_on_late_nack: u64,
    /// Push-pulls started because a settled peer's view digest differed from ours.
    pub digest_repairs: u64,
    /// Push-pulls started a settle window after a join ([`crate::Config::join_follow_up`]).
    pub join_follow_ups: u64,
    /// Suspicions that expired with no independent confirmation although some were expected:
    /// with [`crate::Config::accusation_guard`] the member is failed on this node only, the
    /// verdict not gossiped.
    pub verdicts_kept_local: u64,
    /// Failed probes not turned into an accusation because the target refuted (raised its
    /// incarnation) while the probe was out ([`crate::Config::accusation_guard`]).
    pub accusations_outlived: u64,
    /// Received direct messages dropped because the application did not drain them.
    pub messages_dropped: u64,
    /// Intents about unknown members dropped from the full recent-intent buffer.
    pub intents_dropped: u64,
    /// User events refused as older than the dedup ring.
    pub events_too_old: u64,
    /// User events flagged `coalesce` that a later event of the same name superseded while
    /// held for coalescing (never delivered, by design).
    pub user_events_coalesced: u64,
    /// Reliable sends of direct messages reported failed.
    pub messages_failed: u64,
    /// Push-pulls attempted with failed members (reconnect).
    pub reconnects: u64,
    /// Name conflicts this node lost (it stopped; see [`crate::Event::NameConflict`]).
    pub name_conflicts_lost: u64,
    /// Push-pulls whose state was trimmed to fit `max_stream_message`.
    pub push_pulls_trimmed: u64,
    /// Probes answered (directly, indirectly or over the reliable channel).
    pub probes_ok: u64,
    /// Messages refused because an incarnation or Lamport time in them ran implausibly far
    /// ahead of what this node has seen (see [`crate::plausible`]).
    pub far_ahead_refused: u64,
    /// Name-conflict vote answers not counted: from a member this node does not know as
    /// alive, or a second answer from the same member.
    pub votes_refused: u64,
    /// Replies, relays and query answers not sent because their destination was neither a
    /// known member's address nor the verified sender's.
    pub replies_refused: u64,
    /// User events and queries refused because their Lamport time's slot was full.
    pub slot_full_refused: u64,
    /// Membership events (and name conflicts) replaced in the full event queue by a newer one
    /// about the same member (see [`crate::EventQueue`]).
    pub events_coalesced: u64,
    /// Tombstones (failed or left members) forgotten early to make room for a new member in
    /// a full member table.
    pub tombstones_evicted: u64,
    /// Messages with no counterpart in the node's wire profile
    /// ([`crate::WireProfile::HashiCorp`]): received ones skipped, ones to send not sent.
    pub profile_skipped: u64,
    /// HashiCorp profiles: push-pull answers that came, on a connection this node opened,
    /// after their exchange was given up (`tcp_timeout`); merged, never answered
    /// ([`crate::Node::handle_stream_answer`]).
    pub late_answers: u64,
    /// Alive messages of members failed here whose revival check went unanswered
    /// ([`crate::Config::revival_check`]): the member stays failed here.
    pub revivals_unanswered: u64,
    /// Alive messages of members failed here not checked: the member's last check went
    /// unanswered and its wait runs, or every revival check was busy. The member stays failed
    /// here until its next alive message.
    pub revivals_deferred: u64,
    /// Reconnect attempts to a seed of the latest join that no member in the table holds
    /// (nodes that never heard of each other: a split formed by restarts during a partition).
    pub seed_rejoins: u64,
}

impl Stats {
    /// Inputs refused whole, every cause together: undecodable or invalid, another cluster's
    /// label, and each keyring refusal (no key opens it, plaintext where encryption is
    /// required, sealed where no keyring is configured, truncated sealed bytes).
    pub fn inputs_refused(&self) -> u64 {
        self.decode_errors
            + self.label_mismatches
            + self.sealed_no_key
            + self.plaintext_refused
            + self.sealed_unexpected
            + self.sealed_truncated
    }
}

/// How full each of the node's bounded queues is, with its bound, read with
/// [`crate::Node::queue_depths`]: each field is `(held now, most it may hold)`. A checker can
/// hold every queue to its bound without knowing the node's insides.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct QueueDepths {
    /// Membership updates waiting to be piggybacked (`max_broadcast_queue`).
    pub broadcast: (usize, usize),
    /// Serf-layer updates waiting to be piggybacked (`max_queue_depth`).
    pub serf: (usize, usize),
    /// Events not yet drained by `poll_event`; the bound is `max_pending_events` plus
    /// `max_members`, since membership events are never dropped, only coalesced per member
    /// (see [`crate::EventQueue`]).
    pub events: (usize, usize),
    /// Direct messages among those events (`max_inbox`).
    pub inbox: (usize, usize),
    /// Transmits not yet drained by `poll_transmit` (`max_pending_transmits`).
    pub transmits: (usize, usize),
    /// Join and leave intents buffered for members not yet known (`max_recent_intents`).
    pub intents: (usize, usize),
    /// Lamport times with delivered user events remembered for dedup (`event_buffer`).
    pub event_ring: (usize, usize),
    /// This node's own queries still collecting answers (`max_pending_queries`).
    pub pending_queries: (usize, usize),
    /// Indirect probes this node relays for others (`max_indirect_relays`).
    pub relays: (usize, usize),
}
