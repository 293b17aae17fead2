//! The "members changed" feed: the current member list after every membership change,
//! newest wins. The pump publishes into one [`MembersFeed`] (made on the first
//! `watch_members` call); each `MembersWatch` (async flavor in [`crate::asynch`], blocking in
//! [`crate::blocking`]) remembers the last version it returned. A feed holds one list, never a
//! queue: a watcher that falls behind skips straight to the newest list, so nothing grows.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use rookery_core::Member;

use crate::error::TryRecvError;

/// The member list the pump last published, shared with every watcher (see the module docs).
pub struct MembersFeed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    /// Bumped on every publish; watchers start at 0, so the first list is always news.
    version: u64,
    members: Arc<Vec<Member>>,
    /// Watchers waiting for news, by watcher id (one waker each, however often polled).
    wakers: BTreeMap<u64, Waker>,
    next_id: u64,
    closed: bool,
}

impl fmt::Debug for MembersFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("MembersFeed")
            .field("version", &s.version)
            .field("members", &s.members.len())
            .field("closed", &s.closed)
            .finish()
    }
}

impl MembersFeed {
    /// A feed holding `members` as its first list.
    pub(crate) fn new(members: Vec<Member>) -> Arc<MembersFeed> {
        let feed = MembersFeed {
            state: Mutex::new(FeedState::default()),
        };
        feed.publish(members);
        Arc::new(feed)
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the list and wake every waiting watcher.
    pub(crate) fn publish(&self, members: Vec<Member>) {
        let wakers = {
            let mut s = self.lock();
            s.version += 1;
            s.members = Arc::new(members);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers.into_values() {
            w.wake();
        }
    }

    /// The agent stopped: watchers get what they have not seen yet, then `None`.
    pub(crate) fn close(&self) {
        let wakers = {
            let mut s = self.lock();
            s.closed = true;
            std::mem::take(&mut s.wakers)
        };
        for w in wakers.into_values() {
            w.wake();
        }
    }

    /// A new watcher (it has seen nothing yet).
    pub(crate) fn watcher(self: Arc<Self>) -> WatchRx {
        let id = {
            let mut s = self.lock();
            s.next_id += 1;
            s.next_id
        };
        WatchRx {
            feed: self,
            seen: 0,
            id,
        }
    }
}

/// One watcher's side of a [`MembersFeed`]; both flavors of `MembersWatch` wrap it.
#[derive(Debug)]
pub(crate) struct WatchRx {
    feed: Arc<MembersFeed>,
    seen: u64,
    id: u64,
}

impl WatchRx {
    /// News if there is any (the newest list), `Err(Closed)` once the agent stopped and
    /// everything was seen.
    pub(crate) fn try_changed(&mut self) -> Result<Vec<Member>, TryRecvError> {
        let s = self.feed.lock();
        if s.version > self.seen {
            self.seen = s.version;
            return Ok(s.members.to_vec());
        }
        Err(if s.closed {
            TryRecvError::Closed
        } else {
            TryRecvError::Empty
        })
    }

    /// [`WatchRx::try_changed`], registering to be woken when empty.
    pub(crate) fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<Option<Vec<Member>>> {
        let mut s = self.feed.lock();
        if s.version > self.seen {
            self.seen = s.version;
            return Poll::Ready(Some(s.members.to_vec()));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.wakers.insert(self.id, cx.waker().clone());
        Poll::Pending
    }

    /// The list published last, whether seen or not.
    pub(crate) fn current(&self) -> Vec<Member> {
        self.feed.lock().members.to_vec()
    }
}

impl Drop for WatchRx {
    fn drop(&mut self) {
        self.feed.lock().wakers.remove(&self.id);
    }
}

/// `changed`, `try_changed` and `current` of a `MembersWatch` (a struct with a [`WatchRx`]
/// `rx`), for one flavor, as `handle_operations`.
macro_rules! watch_operations {
    ($($async:ident)?; $($wait:tt)*) => {
        /// The member list after the next membership change, waiting for one; the first call
        /// returns the list as it was when the watch began. Only the newest list is kept: a
        /// watcher that falls behind gets the latest, never a backlog. `None` once the agent
        /// has stopped.
        pub $($async)? fn changed(&mut self) -> Option<Vec<Member>> {
            std::future::poll_fn(|cx| self.rx.poll_changed(cx)) $($wait)*
        }

        /// The newest list if it was not returned yet: [`TryRecvError::Empty`] when nothing
        /// changed since, [`TryRecvError::Closed`] once the agent has stopped.
        pub fn try_changed(&mut self) -> Result<Vec<Member>, TryRecvError> {
            self.rx.try_changed()
        }

        /// The newest list, whether returned already or not.
        pub fn current(&self) -> Vec<Member> {
            self.rx.current()
        }
    };
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rookery_core::MemberStatus;

    use super::*;
    use crate::handle::Wait;

    fn list(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16));
                Member {
                    name: format!("m{i}").into(),
                    addr,
                    status: MemberStatus::Alive,
                    incarnation: 0,
                    tags: Default::default(),
                }
            })
            .collect()
    }

    #[test]
    fn newest_wins_and_the_watch_ends_after_close() {
        let feed = MembersFeed::new(list(1));
        let mut w = feed.clone().watcher();
        assert_eq!(
            w.try_changed().map(|l| l.len()),
            Ok(1),
            "the first list is news"
        );
        assert_eq!(w.try_changed(), Err(TryRecvError::Empty));
        for n in 2..=100 {
            feed.publish(list(n));
        }
        assert_eq!(w.try_changed().map(|l| l.len()), Ok(100), "only the newest");
        assert_eq!(w.try_changed(), Err(TryRecvError::Empty), "no backlog");
        feed.publish(list(3));
        feed.close();
        assert_eq!(
            w.try_changed().map(|l| l.len()),
            Ok(3),
            "unseen news survives close"
        );
        assert_eq!(w.try_changed(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_waiting_watcher_is_woken() {
        let feed = MembersFeed::new(list(1));
        let mut w = feed.clone().watcher();
        let _ = w.try_changed();
        let publisher = std::thread::spawn({
            let feed = feed.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                feed.publish(list(2));
                std::thread::sleep(std::time::Duration::from_millis(50));
                feed.close();
            }
        });
        let got = std::future::poll_fn(|cx| w.poll_changed(cx)).wait();
        assert_eq!(got.map(|l| l.len()), Some(2));
        let end = std::future::poll_fn(|cx| w.poll_changed(cx)).wait();
        assert_eq!(end, None, "ends once the agent stopped");
        publisher.join().unwrap();
        assert!(feed.lock().wakers.is_empty(), "no waker left behind");
    }
}
