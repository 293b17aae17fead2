//! Typed errors returned by inputs and API calls. Each says whether state changed.

/// Why an input (datagram or stream message) was ignored. In every case the node's state is
/// unchanged apart from the counter in [`crate::Stats`] that records the rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// The bytes are not a valid message of this protocol version (counted in `decode_errors`).
    Decode(crate::wire::DecodeError),
    /// The message carries another cluster label (counted in `label_mismatches`).
    LabelMismatch,
    /// The message is sealed and no key of the keyring opens it (counted in `sealed_no_key`).
    NoKeyOpens,
    /// The message is plaintext and this node requires sealed input (`gossip_verify_incoming`;
    /// counted in `plaintext_refused`).
    PlaintextRefused,
    /// The message is sealed and this node has no keyring (counted in `sealed_unexpected`).
    SealedWithoutKeyring,
    /// The message is sealed and shorter than its header, nonce and tag (counted in
    /// `sealed_truncated`).
    SealedTruncated,
    /// The node has left the cluster and ignores input.
    NotRunning,
}

impl core::fmt::Display for InputError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InputError::Decode(e) => write!(f, "undecodable input: {e}"),
            InputError::LabelMismatch => write!(f, "message for another cluster label"),
            InputError::NoKeyOpens => write!(f, "sealed message no key of the keyring opens"),
            InputError::PlaintextRefused => {
                write!(f, "plaintext message while encryption is required")
            }
            InputError::SealedWithoutKeyring => {
                write!(f, "sealed message while no keyring is configured")
            }
            InputError::SealedTruncated => write!(f, "truncated sealed message"),
            InputError::NotRunning => write!(f, "node has left; input ignored"),
        }
    }
}

impl std::error::Error for InputError {}

/// Why an API call was refused. The node's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// The node has left (or is leaving) the cluster.
    NotRunning,
    /// `join` was called with no seed addresses other than this node's own.
    NoSeeds,
    /// The tags encode to more than `meta_max_size` bytes.
    TagsTooLarge {
        /// Encoded size of the tags.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A user event, query, response or direct message is larger than its configured limit.
    TooLarge {
        /// What was too large: "user event", "query", "response" or "message".
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// No member of that name is known.
    UnknownMember(String),
    /// The member is not alive (direct messages go to alive or suspect members only).
    NotAlive(String),
    /// `remove_failed` on a member that has not failed.
    NotFailed(String),
    /// `max_pending_queries` of this node's queries are still running.
    TooManyQueries,
    /// A query tag filter is not a valid regular expression.
    BadFilter(String),
    /// The query has already been answered by this node, or its deadline has passed.
    QueryClosed,
    /// An event or query name is empty.
    EmptyName,
    /// A query's relay factor exceeds [`crate::plausible::MAX_RELAY_FACTOR`].
    RelayFactorTooLarge(u8),
    /// A keyring was set on a node created without entropy for nonces (see
    /// [`crate::Node::with_entropy`]).
    NoEntropy,
    /// The keyring refused the change.
    Keyring(crate::KeyringError),
    /// A cluster-wide key operation needs this node to seal what it sends (a keyring and
    /// `gossip_verify_outgoing`): its query would otherwise travel in plaintext.
    EncryptionDisabled,
    /// Query names starting with the reserved prefix `_rookery/` are the core's own (and,
    /// under [`crate::WireProfile::HashiCorp`], Serf's key-query names and `_serf_conflict`).
    ReservedName,
    /// The operation names this node itself (it cannot forget itself).
    IsSelf,
    /// `max_unacked_messages` acknowledged direct messages are still waiting for their
    /// receipts; nothing was sent.
    TooManyUnacked {
        /// The configured limit.
        limit: usize,
    },
    /// The node's wire profile has no counterpart for the call (under
    /// [`crate::WireProfile::HashiCorp`]: direct messages, which Serf has none of); nothing
    /// was sent.
    NotInProfile,
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApiError::NotRunning => write!(f, "node has left the cluster"),
            ApiError::NoSeeds => write!(f, "no seed address to join"),
            ApiError::TagsTooLarge { size, limit } => {
                write!(f, "tags encode to {size} bytes, limit {limit}")
            }
            ApiError::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} bytes exceeds the limit of {limit}")
            }
            ApiError::UnknownMember(n) => write!(f, "no member named {n:?}"),
            ApiError::NotAlive(n) => write!(f, "member {n:?} is not alive"),
            ApiError::NotFailed(n) => write!(f, "member {n:?} has not failed"),
            ApiError::TooManyQueries => write!(f, "too many queries in flight"),
            ApiError::BadFilter(e) => write!(f, "bad tag filter: {e}"),
            ApiError::QueryClosed => write!(f, "query already answered or expired"),
            ApiError::EmptyName => write!(f, "name must not be empty"),
            ApiError::RelayFactorTooLarge(n) => write!(
                f,
                "relay factor {n} exceeds {}",
                crate::plausible::MAX_RELAY_FACTOR
            ),
            ApiError::NoEntropy => write!(f, "node has no entropy for nonces"),
            ApiError::Keyring(e) => write!(f, "keyring: {e}"),
            ApiError::EncryptionDisabled => write!(f, "outgoing encryption is off"),
            ApiError::ReservedName => write!(f, "names starting with _rookery/ are reserved"),
            ApiError::IsSelf => write!(f, "the member named is this node itself"),
            ApiError::TooManyUnacked { limit } => {
                write!(f, "{limit} acknowledged messages already wait for receipts")
            }
            ApiError::NotInProfile => write!(f, "the wire profile has no counterpart for this"),
        }
    }
}

impl std::error::Error for ApiError {}
