//! The transmit-limited broadcast queue: updates waiting to be piggybacked on outgoing
//! datagrams. Updates sent fewer times go first; among updates never sent the newest goes
//! first, and among updates sent equally often the one sent longest ago goes first (memberlist
//! breaks ties by size, then age; round-robin keeps every update moving). A new update about
//! a member replaces the queued one. An update leaves the queue after it has been sent the
//! retransmit limit times. When the queue is full, the most-sent, oldest update is dropped and
//! counted.
//!
//! Layout: one FIFO of entry ids per transmit count ("bucket"); entries are found by id, so a
//! replaced or finished entry is dropped lazily when its stale id reaches the front of a
//! bucket. Taking an update costs O(1).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Typical updates (an alive message without tags is about 25 bytes) are stored inside the
/// entry itself: one cache miss fewer per update piggybacked.
type Encoded = smallvec::SmallVec<[u8; 40]>;

#[derive(Debug)]
struct Entry<K> {
    key: K,
    bytes: Encoded,
    transmits: u32,
    /// The datagram that last took this update: one datagram never carries it twice.
    datagram: u64,
}

/// Queued updates keyed by what they are about (`K`: a member name, an intent, an event).
#[derive(Debug)]
pub(crate) struct BroadcastQueue<K> {
    // Both maps are only looked up, never iterated: order comes from `buckets` alone.
    entries: HashMap<u64, Entry<K>, ahash::RandomState>,
    by_key: HashMap<K, u64, ahash::RandomState>,
    /// `buckets[t]`: ids of entries sent `t` times, in sending order (stale ids skipped).
    buckets: Vec<VecDeque<u64>>,
    next_id: u64,
    max: usize,
    drops: u64,
}

/// A datagram stops taking updates once less room than this is left, and the scan stops after
/// this many updates that did not fit.
const MIN_ROOM: usize = 4;
const MAX_MISFITS: usize = 32;

impl<K: Hash + Eq + Clone> BroadcastQueue<K> {
    /// An empty queue of at most `max` updates; its maps' hasher is keyed by `keys`.
    pub(crate) fn new(max: usize, keys: [u64; 4]) -> BroadcastQueue<K> {
        let state = ahash::RandomState::with_seeds(keys[0], keys[1], keys[2], keys[3]);
        BroadcastQueue {
            entries: HashMap::with_hasher(state.clone()),
            by_key: HashMap::with_hasher(state),
            buckets: vec![VecDeque::new()],
            next_id: 0,
            max,
            drops: 0,
        }
    }

    /// Queue `bytes` (one encoded message) about `key`, replacing any queued update about it.
    pub(crate) fn push(&mut self, key: K, bytes: Vec<u8>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.entries.remove(&old);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.buckets[0].push_front(id);
        self.by_key.insert(key.clone(), id);
        let bytes = Encoded::from_vec(bytes);
        self.entries.insert(
            id,
            Entry {
                key,
                bytes,
                transmits: 0,
                datagram: 0,
            },
        );
        while self.entries.len() > self.max {
            self.drop_most_sent();
        }
        // Replaced entries leave stale ids behind; drop them before they outnumber the live
        // ones, so the queue's memory stays bounded even if some bucket is never scanned.
        if self.buckets[0].len() > 2 * self.max
            || (id.is_multiple_of(256)
                && self.buckets.iter().map(VecDeque::len).sum::<usize>() > 2 * self.max)
        {
            self.compact();
        }
    }

    fn is_current(&self, id: u64, bucket: usize) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| e.transmits as usize == bucket)
    }

    fn drop_most_sent(&mut self) {
        for t in (0..self.buckets.len()).rev() {
            while let Some(id) = self.buckets[t].pop_front() {
                if self.is_current(id, t) {
                    let e = self.entries.remove(&id).expect("current entry");
                    self.by_key.remove(&e.key);
                    self.drops += 1;
                    return;
                }
            }
        }
    }

    fn compact(&mut self) {
        for t in 0..self.buckets.len() {
            let mut b = std::mem::take(&mut self.buckets[t]);
            b.retain(|&id| self.is_current(id, t));
            self.buckets[t] = b;
        }
    }

    /// Append queued updates to `body` while they fit in `room` bytes; each taken update counts
    /// one transmission and leaves the queue once sent `limit` times. `datagram` identifies the
    /// datagram being filled (non-zero): an update already in it is not taken again. Returns
    /// how many were appended.
    pub(crate) fn fill(
        &mut self,
        mut room: usize,
        limit: u32,
        datagram: u64,
        body: &mut Vec<u8>,
    ) -> usize {
        if self.entries.is_empty() {
            return 0;
        }
        let mut taken = 0;
        let mut misfits = 0;
        let mut t = 0;
        // Taken updates join the next bucket only after the scan, so none goes out twice in
        // one datagram.
        let mut moved: Vec<(usize, u64)> = Vec::new();
        while t < self.buckets.len() && room >= MIN_ROOM && misfits < MAX_MISFITS {
            let mut kept: Vec<u64> = Vec::new();
            while room >= MIN_ROOM && misfits < MAX_MISFITS {
                let Some(id) = self.buckets[t].pop_front() else {
                    break;
                };
                let Some(e) = self.entries.get_mut(&id) else {
                    continue;
                };
                if e.transmits as usize != t {
                    continue;
                }
                if e.datagram == datagram {
                    kept.push(id);
                    continue;
                }
                if e.bytes.len() > room {
                    misfits += 1;
                    kept.push(id);
                    continue;
                }
                e.datagram = datagram;
                body.extend_from_slice(&e.bytes);
                room -= e.bytes.len();
                taken += 1;
                e.transmits += 1;
                if e.transmits >= limit {
                    let key = e.key.clone();
                    self.entries.remove(&id);
                    self.by_key.remove(&key);
                } else {
                    moved.push((t + 1, id));
                }
            }
            // Updates that did not fit keep their place at the front of their bucket.
            for id in kept.into_iter().rev() {
                self.buckets[t].push_front(id);
            }
            t += 1;
        }
        for (bucket, id) in moved {
            if self.buckets.len() <= bucket {
                self.buckets.resize_with(bucket + 1, VecDeque::new);
            }
            self.buckets[bucket].push_back(id);
        }
        taken
    }

    /// Whether an update about `key` is still queued.
    pub(crate) fn contains(&self, key: &K) -> bool {
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
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 10]);
        q.push("b".into(), vec![2; 20]);
        let mut body = vec![];
        // Never sent: the newest goes first.
        assert_eq!(q.fill(25, 2, 1, &mut body), 1);
        assert_eq!(body, vec![2; 20]);
        // Now "a" has been sent fewer times: it leads.
        body.clear();
        assert_eq!(q.fill(10, 2, 2, &mut body), 1);
        assert_eq!(body, vec![1; 10]);
        body.clear();
        assert_eq!(q.fill(100, 2, 3, &mut body), 2);
        assert!(q.is_empty(), "both reached the limit of 2");
        assert_eq!(q.fill(100, 2, 4, &mut body), 0);
    }

    #[test]
    fn newer_update_replaces_older() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 5]);
        q.push("a".into(), vec![9; 6]);
        assert_eq!(q.len(), 1);
        let mut body = vec![];
        q.fill(100, 5, 5, &mut body);
        assert_eq!(body, vec![9; 6]);
        assert!(q.contains(&"a".into()));
        assert!(!q.contains(&"b".into()));
    }

    #[test]
    fn misfits_keep_their_place_and_equal_counts_round_robin() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 8]);
        q.push("b".into(), vec![2; 30]);
        q.push("c".into(), vec![3; 8]);
        let mut body = vec![];
        // c (newest) fits, b does not, a fits.
        assert_eq!(q.fill(20, 5, 6, &mut body), 2);
        assert_eq!(body, [vec![3; 8], vec![1; 8]].concat());
        body.clear();
        // b, never sent, now leads; then c and a in the order they were last sent.
        assert_eq!(q.fill(100, 5, 7, &mut body), 3);
        assert_eq!(body, [vec![2; 30], vec![3; 8], vec![1; 8]].concat());
    }

    #[test]
    fn one_datagram_never_carries_an_update_twice() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 4]);
        let mut body = vec![];
        assert_eq!(q.fill(100, 10, 7, &mut body), 1);
        assert_eq!(q.fill(100, 10, 7, &mut body), 0, "same datagram");
        assert_eq!(q.fill(100, 10, 8, &mut body), 1, "next datagram");
    }

    #[test]
    fn replaced_entries_are_skipped_and_compacted() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(4, [1, 2, 3, 4]);
        for i in 0..100u8 {
            q.push("a".into(), vec![i; 3]);
        }
        assert_eq!(q.len(), 1);
        assert!(q.buckets[0].len() <= 9, "stale ids are compacted");
        let mut body = vec![];
        assert_eq!(q.fill(100, 5, 8, &mut body), 1);
        assert_eq!(body, vec![99; 3]);
    }

    #[test]
    fn overflow_drops_most_sent_and_counts() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(2, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 5]);
        let mut body = vec![];
        q.fill(100, 10, 9, &mut body); // a sent once
        q.push("b".into(), vec![2; 5]);
        q.push("c".into(), vec![3; 5]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.drops(), 1);
        assert!(
            !q.contains(&"a".into()),
            "the most-sent update is the one dropped"
        );
    }
}
