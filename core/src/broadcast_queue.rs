//! The transmit-limited broadcast queue: updates waiting to be piggybacked on outgoing
//! datagrams. Ordered by times sent (fewest first), then size (larger first), then age (newer
//! first). A new update about a member replaces the queued one. An update leaves the queue after
//! it has been sent the retransmit limit times. When the queue is full, the most-sent, oldest
//! update is dropped and counted.

use crate::identity::Name;
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

type OrderKey = (u32, Reverse<usize>, Reverse<u64>);

#[derive(Debug)]
struct Entry {
    key: Name,
    bytes: Vec<u8>,
    transmits: u32,
}

/// Queued updates keyed by the member they are about.
#[derive(Debug)]
pub(crate) struct BroadcastQueue {
    // Both maps are only looked up, never iterated: order comes from `order` alone.
    entries: HashMap<u64, Entry, ahash::RandomState>,
    by_key: HashMap<Name, u64, ahash::RandomState>,
    order: BTreeSet<OrderKey>,
    next_id: u64,
    max: usize,
    drops: u64,
}

/// A datagram stops taking updates once less room than this is left, and the scan stops after
/// this many updates that did not fit.
const MIN_ROOM: usize = 4;
const MAX_MISFITS: usize = 32;

impl BroadcastQueue {
    /// An empty queue of at most `max` updates; its maps' hasher is keyed by `keys`.
    pub(crate) fn new(max: usize, keys: [u64; 4]) -> BroadcastQueue {
        let state = ahash::RandomState::with_seeds(keys[0], keys[1], keys[2], keys[3]);
        BroadcastQueue {
            entries: HashMap::with_hasher(state.clone()),
            by_key: HashMap::with_hasher(state),
            order: BTreeSet::new(),
            next_id: 0,
            max,
            drops: 0,
        }
    }

    /// Queue `bytes` (one encoded message) about `key`, replacing any queued update about it.
    pub(crate) fn push(&mut self, key: Name, bytes: Vec<u8>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.remove_id(old);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.order.insert((0, Reverse(bytes.len()), Reverse(id)));
        self.by_key.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                key,
                bytes,
                transmits: 0,
            },
        );
        while self.entries.len() > self.max {
            // The last in order: most sent, then smallest, then oldest.
            let Some(&(_, _, Reverse(victim))) = self.order.iter().next_back() else {
                break;
            };
            self.remove_id(victim);
            self.drops += 1;
        }
    }

    fn remove_id(&mut self, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            self.order
                .remove(&(e.transmits, Reverse(e.bytes.len()), Reverse(id)));
            if self.by_key.get(&e.key) == Some(&id) {
                self.by_key.remove(&e.key);
            }
        }
    }

    /// Append queued updates to `body` while they fit in `room` bytes; each taken update counts
    /// one transmission and leaves the queue once sent `limit` times. Returns how many were
    /// appended.
    pub(crate) fn fill(&mut self, mut room: usize, limit: u32, body: &mut Vec<u8>) -> usize {
        let mut taken: Vec<OrderKey> = Vec::new();
        let mut misfits = 0;
        for key in self.order.iter() {
            if room < MIN_ROOM || misfits >= MAX_MISFITS {
                break;
            }
            let e = &self.entries[&key.2 .0];
            if e.bytes.len() <= room {
                body.extend_from_slice(&e.bytes);
                room -= e.bytes.len();
                taken.push(*key);
            } else {
                misfits += 1;
            }
        }
        for key in &taken {
            self.order.remove(key);
            let id = key.2 .0;
            let e = self.entries.get_mut(&id).expect("ordered entry exists");
            e.transmits += 1;
            if e.transmits >= limit {
                let key = e.key.clone();
                self.entries.remove(&id);
                self.by_key.remove(&key);
            } else {
                self.order
                    .insert((e.transmits, Reverse(e.bytes.len()), Reverse(id)));
            }
        }
        taken.len()
    }

    /// Whether an update about `key` is still queued.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Updates dropped because the queue was full, since creation.
    pub(crate) fn drops(&self) -> u64 {
        self.drops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_sent_first_and_limit_removes() {
        let mut q = BroadcastQueue::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 10]);
        q.push("b".into(), vec![2; 20]);
        let mut body = vec![];
        // Room for only the larger one: it goes first.
        assert_eq!(q.fill(25, 2, &mut body), 1);
        assert_eq!(body, vec![2; 20]);
        // Now "a" has been sent fewer times: it leads.
        body.clear();
        assert_eq!(q.fill(10, 2, &mut body), 1);
        assert_eq!(body, vec![1; 10]);
        body.clear();
        assert_eq!(q.fill(100, 2, &mut body), 2);
        assert!(q.is_empty(), "both reached the limit of 2");
        assert_eq!(q.fill(100, 2, &mut body), 0);
    }

    #[test]
    fn newer_update_replaces_older() {
        let mut q = BroadcastQueue::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 5]);
        q.push("a".into(), vec![9; 6]);
        assert_eq!(q.len(), 1);
        let mut body = vec![];
        q.fill(100, 5, &mut body);
        assert_eq!(body, vec![9; 6]);
        assert!(q.contains("a"));
        assert!(!q.contains("b"));
    }

    #[test]
    fn overflow_drops_most_sent_and_counts() {
        let mut q = BroadcastQueue::new(2, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 5]);
        let mut body = vec![];
        q.fill(100, 10, &mut body); // a sent once
        q.push("b".into(), vec![2; 5]);
        q.push("c".into(), vec![3; 5]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.drops(), 1);
        assert!(!q.contains("a"), "the most-sent update is the one dropped");
    }
}
