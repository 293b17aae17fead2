//! Typed errors returned by inputs and API calls. Each says whether state changed.

/// Why an input (datagram or stream message) was ignored. In every case the node's state is
/// unchanged apart from the counter in [`crate::Stats`] that records the rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputError {
    /// The bytes are not a valid message of this protocol version (counted in `decode_errors`).
    Decode(crate::wire::DecodeError),
    /// The message carries another cluster label (counted in `label_mismatches`).
    LabelMismatch,
    /// The node has left the cluster and ignores input.
    NotRunning,
}

impl core::fmt::Display for InputError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InputError::Decode(e) => write!(f, "undecodable input: {e}"),
            InputError::LabelMismatch => write!(f, "message for another cluster label"),
            InputError::NotRunning => write!(f, "node has left; input ignored"),
        }
    }
}

impl std::error::Error for InputError {}

/// Why an API call was refused. The node's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApiError::NotRunning => write!(f, "node has left the cluster"),
            ApiError::NoSeeds => write!(f, "no seed address to join"),
            ApiError::TagsTooLarge { size, limit } => {
                write!(f, "tags encode to {size} bytes, limit {limit}")
            }
        }
    }
}

impl std::error::Error for ApiError {}
