//! Push-pull: a whole member table over the reliable channel. The frame is written straight
//! from the table ([`crate::wire::PushPullWriter`]) when it fits what a peer with the same
//! configuration accepts (`max_stream_message`); otherwise the message is built and trimmed:
//! this node first, then live members, then tombstones, as many as fit, and the newest user
//! events (counted in `push_pulls_trimmed`).

use std::net::SocketAddr;

use rand::Rng;

use super::SerfShare;
use crate::ctx::Cx;
use crate::identity::MemberStatus;
use crate::members::MemberRec;
use crate::wire::{self, Message, PushPull, PushState, UserEventMsg, WireStatus};

/// A fresh push-pull id.
pub(crate) fn new_id(cx: &mut Cx<'_>) -> u32 {
    cx.rng.random()
}

/// Send this node's table (and `serf`'s share) to `to`.
pub(crate) fn send(
    cx: &mut Cx<'_>,
    serf: &SerfShare,
    to: SocketAddr,
    id: u32,
    request: bool,
    join: bool,
) {
    // The table is written straight into a native frame; the HashiCorp profile builds the
    // message and converts it.
    if cx.fx.hc.is_none() {
        if let Some(frame) = frame(cx, serf, id, request, join) {
            cx.send_frame(to, frame);
            return;
        }
    }
    let (member_ltime, event_ltime, query_ltime) = serf.clocks;
    let mut p = PushPull {
        id,
        request,
        join,
        reply_to: *cx.addr,
        sender: cx.me.clone(),
        states: local_state(cx),
        member_ltime,
        event_ltime,
        query_ltime,
        events: serf.events.clone(),
    };
    trim(cx, &mut p);
    cx.send_reliable(to, &Message::PushPull(Box::new(p)));
}

/// What a user event is reckoned to take in a push-pull (name, payload and at most 24 bytes
/// of fields and lengths).
fn event_room(e: &UserEventMsg) -> usize {
    e.name.len() + e.payload.len() + 24
}

/// Room for member states and user events in a push-pull: a peer with the same
/// configuration refuses a frame over `max_stream_message`, which would break joins
/// through this node. The envelope (at most 257 bytes with a label), the clocks and ids
/// take under 320 bytes.
fn budget(cx: &Cx<'_>) -> usize {
    cx.cfg
        .max_stream_message
        .saturating_sub(320 + cx.fx.seal_overhead())
}

/// Every member's state, as a push-pull message carries it.
pub(super) fn local_state(cx: &Cx<'_>) -> Vec<PushState> {
    let mut states = Vec::with_capacity(cx.members.len());
    states.extend(cx.members.iter().map(|r| {
        let s = state_of(cx, r);
        PushState {
            name: r.name.to_name(),
            addr: s.addr,
            incarnation: s.incarnation,
            status: s.status,
            tags: s.tags.clone(),
            ltime: s.ltime,
            accuser: s.accuser.cloned(),
        }
    }));
    states
}

/// What a push-pull says about the member `r`, borrowed from the table.
fn state_of<'a>(cx: &'a Cx<'_>, r: &'a MemberRec) -> wire::StateRef<'a> {
    let status = match r.public_status() {
        MemberStatus::Alive => WireStatus::Alive,
        MemberStatus::Suspect => WireStatus::Suspect,
        MemberStatus::Leaving => WireStatus::Leaving,
        MemberStatus::Failed => WireStatus::Dead,
        MemberStatus::Left => WireStatus::Left,
    };
    // Only a suspect state names its accuser (the decoder refuses any other).
    let accuser = match (status, r.suspicion()) {
        (WireStatus::Suspect, Some(s)) => s.accuser().filter(|a| **a != *r.name),
        _ => None,
    };
    wire::StateRef {
        name: wire::NameBytes(r.name.bytes()),
        addr: r.addr(),
        incarnation: r.incarnation,
        status,
        tags: cx.members.tags(r),
        ltime: r.status_ltime,
        accuser,
    }
}

/// The frame of a push-pull carrying the whole table, encoded straight from the table (no
/// `PushState` built per member), or `None` when the table does not fit in
/// `max_stream_message` and must be trimmed (see [`trim`], whose size reckoning it shares).
/// Byte for byte what encoding the `PushPull` message gives (tested).
pub(super) fn frame(
    cx: &Cx<'_>,
    serf: &SerfShare,
    id: u32,
    request: bool,
    join: bool,
) -> Option<Vec<u8>> {
    let budget = budget(cx);
    let mut used: usize = serf.events.iter().map(event_room).sum();
    let mut w = wire::PushPullWriter::new(
        &cx.fx.header,
        id,
        request,
        join,
        *cx.addr,
        cx.me,
        cx.members.len(),
    );
    for r in cx.members.iter() {
        used += w.state(&state_of(cx, r));
        if used > budget {
            return None;
        }
    }
    Some(w.finish(serf.clocks, &serf.events))
}

/// Cut a push-pull whose table does not fit the budget (what [`frame`] found): send this
/// node, then live members, then tombstones, as many as fit, and the newest user events;
/// count the trim in `push_pulls_trimmed`.
fn trim(cx: &mut Cx<'_>, p: &mut PushPull) {
    let budget = budget(cx);
    let size = |x: &PushState| postcard::experimental::serialized_size(x).unwrap_or(usize::MAX);
    cx.fx.stats.push_pulls_trimmed += 1;
    let me = cx.me;
    let rank = |s: &PushState| match s.status {
        _ if s.name == *me => 0,
        WireStatus::Alive | WireStatus::Leaving => 1,
        WireStatus::Suspect => 2,
        WireStatus::Left => 3,
        WireStatus::Dead => 4,
    };
    p.states.sort_by_key(rank);
    let mut used = 0;
    p.states.retain(|s| {
        used += size(s);
        used <= budget || s.name == *me
    });
    // Newest events first, in whatever room is left.
    p.events.reverse();
    p.events.retain(|e| {
        used += event_room(e);
        used <= budget
    });
    p.events.reverse();
}
