//! Digest-triggered repair. Every ping and ack carries a digest of the sender's view (see
//! [`crate::ctx::Cx::view_digest`]). A peer whose view has settled (unchanged for a
//! dissemination window) and differs from ours means gossip has missed something — and a
//! member that missed an update entirely stays wrong until the next periodic push-pull,
//! minutes away at scale — so exchange full state with that peer now, when either
//! - our view has settled too: the difference will not heal by itself; or
//! - the settled peer knows more live members than we do: we are the one missing
//!   something, whether or not our own view is still moving;
//! - the settled peer delivered a newer user event than we did: we missed one.
//!
//! At most once per settle window.

use std::net::SocketAddr;

use super::{push_pull, Dissemination, PushPullTo};
use crate::ctx::{Cx, EventMark};
use crate::formulas;
use crate::wire::Digest;

impl Dissemination {
    /// Compare a peer's digest with ours; the push-pull to start when a repair is due.
    pub(crate) fn compare_digest(
        &mut self,
        peer: SocketAddr,
        theirs: Digest,
        running: bool,
        events: EventMark,
        cx: &mut Cx<'_>,
    ) -> Option<PushPullTo> {
        if !theirs.stable || !running {
            return None;
        }
        let mine = cx.view_digest(events);
        let window = formulas::settle_window(cx.cfg, cx.members.live());
        let due = self
            .last_repair
            .is_none_or(|t| cx.now.saturating_since(t) >= window);
        let behind = theirs.live > mine.live || theirs.events > mine.events;
        let differ = mine.hash != theirs.hash || theirs.events > mine.events;
        if !((mine.stable || behind) && differ && due) {
            return None;
        }
        self.last_repair = Some(cx.now);
        cx.fx.stats.digest_repairs += 1;
        Some(PushPullTo {
            to: peer,
            id: push_pull::new_id(cx),
        })
    }
}
