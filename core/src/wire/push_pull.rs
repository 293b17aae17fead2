//! The push-pull writer: a push-pull frame encoded straight from the member table, one member
//! state at a time, without building a `PushState` per member. Byte for byte what encoding the
//! [`PushPull`] message gives (tested in `wire::tests` and by the gossip tests); states of the
//! common shape (IPv4, no tags, no accuser) go through the hand encoder in `fast`.

use std::net::SocketAddr;

use serde::Serialize;

use super::codec::{encode_into, PUSH_PULL_VARIANT};
use super::fast::{self, PlainState};
use super::frame::{frame_finish, frame_start};
#[cfg(doc)]
use super::message::PushPull;
use super::message::{UserEventMsg, WireStatus};
use crate::identity::{Name, Tags};

/// One member's push-pull state, borrowed from wherever the caller keeps it. Encodes exactly as
/// the `PushState` built from the same values (the fields in the same order, the name's bytes
/// as a string's).
#[derive(Serialize)]
pub(crate) struct StateRef<'a> {
    /// The member's name, as UTF-8 bytes.
    pub name: NameBytes<'a>,
    pub addr: SocketAddr,
    pub incarnation: u32,
    pub status: WireStatus,
    pub tags: &'a Tags,
    pub ltime: u64,
    /// Only a suspect state names its accuser (the decoder refuses any other).
    pub accuser: Option<&'a Name>,
}

/// A member name's bytes, encoded as the string they are (postcard writes a string and a byte
/// string alike: length, then bytes).
pub(crate) struct NameBytes<'a>(pub &'a [u8]);

impl Serialize for NameBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A push-pull frame being written: [`PushPullWriter::new`] with the header fields and the
/// number of states that will follow, one [`PushPullWriter::state`] per member, then
/// [`PushPullWriter::finish`] with the clocks and user events.
pub(crate) struct PushPullWriter {
    out: Vec<u8>,
}

impl PushPullWriter {
    /// Start a push-pull frame under the envelope `header`, announcing `states` member states.
    pub(crate) fn new(
        header: &[u8],
        id: u32,
        request: bool,
        join: bool,
        reply_to: SocketAddr,
        sender: &str,
        states: usize,
    ) -> PushPullWriter {
        let mut out = frame_start(header);
        encode_into(&PUSH_PULL_VARIANT, &mut out);
        encode_into(&(id, request, join, reply_to, sender), &mut out);
        encode_into(&states, &mut out);
        PushPullWriter { out }
    }

    /// Append one member state; returns the bytes it took.
    pub(crate) fn state(&mut self, s: &StateRef<'_>) -> usize {
        let before = self.out.len();
        match (s.addr, s.tags.is_empty(), s.accuser) {
            (SocketAddr::V4(addr), true, None) => {
                let plain = PlainState {
                    name: s.name.0,
                    addr,
                    incarnation: s.incarnation,
                    status: s.status as u8,
                    ltime: s.ltime,
                };
                fast::put_state(&plain, &mut self.out);
            }
            _ => encode_into(s, &mut self.out),
        }
        self.out.len() - before
    }

    /// Close the frame with the member, event and query clocks and the user events.
    pub(crate) fn finish(mut self, clocks: (u64, u64, u64), events: &[UserEventMsg]) -> Vec<u8> {
        encode_into(&(clocks, events), &mut self.out);
        frame_finish(self.out)
    }
}
