//! Who a node is: its unique name, the address it is reached at, and its tags; and the public
//! view of a member ([`Member`], [`MemberStatus`]).
//!
//! Identity model: a member is identified by its name. Its address may change only after the
//! cluster has seen it fail or leave (a restart elsewhere); a live member's name claimed from
//! another address is refused and reported as [`crate::Event::NameConflict`]. A restarted node
//! starts at incarnation 0, learns its old incarnation from the join push-pull and refutes it
//! with a higher one, so rejoin under the same name needs no coordination.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A member name: a small string, stored inline up to 23 bytes and cheap to clone.
pub type Name = smol_str::SmolStr;

/// A member's tags: a small string map carried with its alive messages (bounded by
/// [`crate::Config::meta_max_size`] once encoded).
pub type Tags = BTreeMap<String, String>;

/// The local node's identity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Unique member name (1 ..= `max_name_len` bytes).
    pub name: String,
    /// The address other members reach this node at (UDP and TCP on the same port).
    pub addr: SocketAddr,
    /// Initial tags.
    pub tags: Tags,
}

impl Identity {
    /// An identity with no tags.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Identity {
        Identity {
            name: name.into(),
            addr,
            tags: Tags::new(),
        }
    }

    /// The same identity with `tags`.
    pub fn with_tags(mut self, tags: Tags) -> Identity {
        self.tags = tags;
        self
    }
}

/// What this node believes about a member. Displayed (and serialized) in lower case, as
/// `serf members` prints it: `alive`, `suspect`, `leaving`, `failed`, `left`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Answering probes (or not yet suspected).
    Alive,
    /// Missed a probe; declared failed unless it refutes before the suspicion timeout.
    Suspect,
    /// Announced that it is leaving; becomes `Left` once its departure completes.
    Leaving,
    /// Declared failed: the suspicion timed out.
    Failed,
    /// Left the cluster gracefully.
    Left,
}

/// A snapshot of one member as this node sees it. Displayed as one line in the manner of
/// `serf members`: name, address, status, then the tags as `key=value` pairs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Unique member name.
    pub name: Name,
    /// Address the member is reached at.
    pub addr: SocketAddr,
    /// Status in this node's view.
    pub status: MemberStatus,
    /// The member's incarnation number (only the member itself raises it).
    pub incarnation: u32,
    /// The member's tags.
    pub tags: Arc<Tags>,
}

impl MemberStatus {
    /// The status as `serf members` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Suspect => "suspect",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Failed => "failed",
            MemberStatus::Left => "left",
        }
    }
}

impl core::fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.pad(self.as_str())
    }
}

impl core::fmt::Display for Member {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}  {}  {}", self.name, self.addr, self.status)?;
        for (i, (k, v)) in self.tags.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { "  " } else { "," })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn members_display_as_serf_members_lists_them() {
        let mut tags = Tags::new();
        tags.insert("role".into(), "web".into());
        tags.insert("dc".into(), "east".into());
        let m = Member {
            name: Name::new("node-1"),
            addr: "10.0.0.1:7946".parse().unwrap(),
            status: MemberStatus::Alive,
            incarnation: 3,
            tags: Arc::new(tags),
        };
        assert_eq!(
            m.to_string(),
            "node-1  10.0.0.1:7946  alive  dc=east,role=web"
        );
        assert_eq!(format!("{:>7}|", MemberStatus::Left), "   left|");
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"status\":\"alive\""), "{json}");
        let back: Member = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
