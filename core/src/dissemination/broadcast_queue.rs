//! The transmit-limited broadcast queue: updates waiting to be piggybacked on outgoing
//! datagrams. Updates sent fewer times go first; among updates never sent the newest goes
//! first, and among updates sent equally often the one sent longest ago goes first (memberlist
//! breaks ties by size, then age; round-robin keeps every update moving). A new update about
//! a member replaces the queued one. An update leaves the queue after it has been sent the
//! retransmit limit times. When the queue is full, the most-sent, oldest update is dropped and
//! counted.
//!
//! Layout: entries live in a slab (a `Vec` of slots, 32 bytes for a membership update, reused
//! through a free list) and are found by slot index; their encoded bytes sit back to back in
//! one buffer per queue (compacted once freed bytes pass a quarter of it); one FIFO of tickets
//! (slot, generation) per transmit count ("bucket"), whose spare room is given back once it is
//! under a quarter full. The key is stored once, in its slot; the key index holds slot
//! numbers only. A replaced or finished entry frees its slot at once and its stale ticket is
//! skipped when it reaches the front of a bucket. Taking an update costs O(1). Once the queue
//! drains its memory is given back: a node's formation burst (an update per newcomer) does not
//! stay allocated for the node's lifetime.
//!
//! Overflow policy: at `max` entries the most-sent, oldest entry is dropped and counted; an
//! update larger than 65,535 bytes (no datagram could carry it) is refused and counted the same
//! way.

use std::collections::VecDeque;
use std::hash::Hash;

#[derive(Debug)]
struct Slot<K> {
    /// What the update is about; `None` while the slot is free.
    key: Option<K>,
    /// Where the encoded update starts in `BroadcastQueue::bytes`.
    at: u32,
    len: u16,
    transmits: u16,
    /// Bumped each time the slot is freed, so tickets of its earlier occupants go stale.
    generation: u32,
    /// The (truncated) number of the datagram that last took this update: one datagram never
    /// carries it twice.
    datagram: u32,
}

/// A place in a bucket: a slot, valid while the slot keeps this generation.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    slot: u32,
    generation: u32,
}

/// Queued updates keyed by what they are about (`K`: a member name, an intent, an event).
#[derive(Debug)]
pub(crate) struct BroadcastQueue<K> {
    slots: Vec<Slot<K>>,
    free: Vec<u32>,
    /// Encoded updates, back to back; `garbage` of its bytes belong to freed slots.
    bytes: Vec<u8>,
    garbage: usize,
    /// Slot numbers, hashed by their slot's key. Only looked up, never iterated: order comes
    /// from `buckets` alone.
    by_key: hashbrown::HashTable<u32>,
    hasher: ahash::RandomState,
    /// `buckets[t]`: tickets of entries sent `t` times, in sending order (stale ones skipped).
    buckets: Vec<VecDeque<Ticket>>,
    /// Tickets in all buckets, stale ones included.
    tickets: usize,
    len: usize,
    max: usize,
    drops: u64,
    /// Scratch space of `fill`, kept to avoid an allocation per datagram.
    moved: Vec<(usize, Ticket)>,
    kept: Vec<Ticket>,
}

/// A datagram stops taking updates once less room than this is left, and the scan stops after
/// this many updates that did not fit.
const MIN_ROOM: usize = 4;
const MAX_MISFITS: usize = 32;
/// A drained queue keeps at most this many slots' worth of memory.
const IDLE_SLOTS: usize = 64;

/// Give back most of a bucket's capacity once it holds under a quarter of it. Every update
/// passes through every bucket, so without this each bucket would keep room for the largest
/// backlog it ever held (a formation's) for as long as the queue is not empty.
fn trim(bucket: &mut VecDeque<Ticket>) {
    if bucket.capacity() > IDLE_SLOTS && bucket.len() < bucket.capacity() / 4 {
        bucket.shrink_to(bucket.len() * 2);
    }
}

impl<K: Hash + Eq + Clone> BroadcastQueue<K> {
    /// An empty queue of at most `max` updates; its index's hasher is keyed by `keys`.
    pub(crate) fn new(max: usize, keys: [u64; 4]) -> BroadcastQueue<K> {
        BroadcastQueue {
            slots: Vec::new(),
            free: Vec::new(),
            bytes: Vec::new(),
            garbage: 0,
            by_key: hashbrown::HashTable::new(),
            hasher: ahash::RandomState::with_seeds(keys[0], keys[1], keys[2], keys[3]),
            buckets: vec![VecDeque::new()],
            tickets: 0,
            len: 0,
            max,
            drops: 0,
            moved: Vec::new(),
            kept: Vec::new(),
        }
    }

    fn slot_of(&self, key: &K) -> Option<u32> {
        self.slot_of_hashed(key, self.hasher.hash_one(key))
    }

    fn slot_of_hashed(&self, key: &K, h: u64) -> Option<u32> {
        let slots = &self.slots;
        self.by_key
            .find(h, |&i| slots[i as usize].key.as_ref() == Some(key))
            .copied()
    }

    /// Queue `bytes` (one encoded message) about `key`, replacing any queued update about it.
    #[cfg(test)]
    pub(crate) fn push(&mut self, key: K, bytes: Vec<u8>) {
        self.push_with(key, |out| out.extend_from_slice(&bytes));
    }

    /// Queue the message `encode` appends to the buffer it is given (one encoded message)
    /// about `key`, replacing any queued update about it.
    pub(crate) fn push_with(&mut self, key: K, encode: impl FnOnce(&mut Vec<u8>)) {
        let h = self.hasher.hash_one(&key);
        if let Some(old) = self.slot_of_hashed(&key, h) {
            self.unindex(old);
            self.release(old);
        }
        let at = self.bytes.len();
        encode(&mut self.bytes);
        let Ok(len) = u16::try_from(self.bytes.len() - at) else {
            self.bytes.truncate(at);
            self.drops += 1;
            return;
        };
        let at = at as u32;
        let slot = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.key = Some(key);
                s.at = at;
                s.len = len;
                s.transmits = 0;
                s.datagram = 0;
                i
            }
            None => {
                self.slots.push(Slot {
                    key: Some(key),
                    at,
                    len,
                    transmits: 0,
                    generation: 0,
                    datagram: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let BroadcastQueue {
            slots,
            by_key,
            hasher,
            ..
        } = self;
        by_key.insert_unique(h, slot, |&i| {
            hasher.hash_one(
                slots[i as usize]
                    .key
                    .as_ref()
                    .expect("indexed slots are used"),
            )
        });
        let generation = self.slots[slot as usize].generation;
        self.buckets[0].push_front(Ticket { slot, generation });
        self.tickets += 1;
        self.len += 1;
        while self.len > self.max {
            self.drop_most_sent();
        }
        // Replaced entries leave stale tickets behind; drop them before they outnumber the
        // live ones, so the queue's memory stays bounded even if some bucket is never scanned.
        if self.tickets > self.len + self.len / 2 + IDLE_SLOTS {
            self.compact_tickets();
        }
        if self.garbage > self.bytes.len() / 4 && self.bytes.len() > 64 * IDLE_SLOTS {
            self.compact_bytes();
        }
    }

    /// Remove a used slot from the key index.
    fn unindex(&mut self, slot: u32) {
        let key = self.slots[slot as usize].key.as_ref().expect("used slot");
        let h = self.hasher.hash_one(key);
        if let Ok(e) = self.by_key.find_entry(h, |&i| i == slot) {
            e.remove();
        }
    }

    /// Free a slot (already out of the key index); the caller resets a queue it emptied.
    fn free_slot(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.key = None;
        s.generation = s.generation.wrapping_add(1);
        self.garbage += s.len as usize;
        self.free.push(slot);
        self.len -= 1;
    }

    /// Free a slot (already out of the key index), resetting the queue if it is now empty.
    fn release(&mut self, slot: u32) {
        self.free_slot(slot);
        if self.len == 0 {
            self.reset();
        }
    }

    /// The queue is empty: start the byte buffer over, and give back what a burst allocated.
    fn reset(&mut self) {
        self.bytes.clear();
        self.garbage = 0;
        if self.slots.len() > IDLE_SLOTS {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.bytes = Vec::new();
            self.by_key = hashbrown::HashTable::new();
            self.buckets = vec![VecDeque::new()];
            self.tickets = 0;
            self.moved = Vec::new();
            self.kept = Vec::new();
        }
    }

    fn is_current(&self, t: Ticket, bucket: usize) -> bool {
        let s = &self.slots[t.slot as usize];
        s.generation == t.generation && s.key.is_some() && s.transmits as usize == bucket
    }

    fn drop_most_sent(&mut self) {
        for b in (0..self.buckets.len()).rev() {
            while let Some(t) = self.buckets[b].pop_front() {
                self.tickets -= 1;
                if self.is_current(t, b) {
                    self.unindex(t.slot);
                    self.drops += 1;
                    self.release(t.slot);
                    return;
                }
            }
        }
    }

    fn compact_tickets(&mut self) {
        for b in 0..self.buckets.len() {
            let mut q = std::mem::take(&mut self.buckets[b]);
            q.retain(|&t| self.is_current(t, b));
            self.buckets[b] = q;
        }
        self.tickets = self.buckets.iter().map(VecDeque::len).sum();
    }

    /// Copy the live updates' bytes into a fresh buffer (slot order: deterministic).
    fn compact_bytes(&mut self) {
        let live = self.bytes.len() - self.garbage;
        let mut fresh = Vec::with_capacity(live + live / 4);
        for s in self.slots.iter_mut().filter(|s| s.key.is_some()) {
            let from = s.at as usize;
            s.at = fresh.len() as u32;
            fresh.extend_from_slice(&self.bytes[from..from + s.len as usize]);
        }
        self.bytes = fresh;
        self.garbage = 0;
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
        if self.len == 0 {
            return 0;
        }
        // Stamps are compared for equality only: truncating the counter can at worst keep an
        // update out of one datagram after 2^32 of them, never put it in twice.
        let stamp = (datagram as u32).max(1);
        let limit = limit.clamp(1, u16::MAX as u32) as u16;
        let mut taken = 0;
        let mut misfits = 0;
        let mut b = 0;
        // Taken updates join the next bucket only after the scan, so none goes out twice in
        // one datagram.
        let mut moved = std::mem::take(&mut self.moved);
        let mut kept = std::mem::take(&mut self.kept);
        while b < self.buckets.len() && room >= MIN_ROOM && misfits < MAX_MISFITS {
            while room >= MIN_ROOM && misfits < MAX_MISFITS {
                let Some(t) = self.buckets[b].pop_front() else {
                    break;
                };
                let s = &mut self.slots[t.slot as usize];
                if s.generation != t.generation || s.key.is_none() || s.transmits as usize != b {
                    self.tickets -= 1;
                    continue;
                }
                if s.datagram == stamp {
                    kept.push(t);
                    continue;
                }
                let len = s.len as usize;
                if len > room {
                    misfits += 1;
                    kept.push(t);
                    continue;
                }
                s.datagram = stamp;
                s.transmits += 1;
                let done = s.transmits >= limit;
                let at = s.at as usize;
                body.extend_from_slice(&self.bytes[at..at + len]);
                room -= len;
                taken += 1;
                if done {
                    // Reset (if this emptied the queue) only after the scan.
                    self.tickets -= 1;
                    self.unindex(t.slot);
                    self.free_slot(t.slot);
                } else {
                    moved.push((b + 1, t));
                }
            }
            // Updates that did not fit keep their place at the front of their bucket.
            for &t in kept.iter().rev() {
                self.buckets[b].push_front(t);
            }
            kept.clear();
            trim(&mut self.buckets[b]);
            b += 1;
        }
        for &(bucket, t) in &moved {
            if self.buckets.len() <= bucket {
                self.buckets.resize_with(bucket + 1, VecDeque::new);
            }
            self.buckets[bucket].push_back(t);
        }
        moved.clear();
        self.moved = moved;
        self.kept = kept;
        if self.len == 0 {
            self.reset();
        }
        taken
    }

    /// Whether an update about `key` is still queued.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.slot_of(key).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Updates dropped because the queue was full (or the update too large), since creation.
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
        assert!(
            q.tickets <= q.len + q.len / 2 + IDLE_SLOTS,
            "stale tickets are compacted"
        );
        assert_eq!(
            q.tickets,
            q.buckets.iter().map(VecDeque::len).sum::<usize>()
        );
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

    #[test]
    fn a_reused_slot_does_not_answer_to_its_old_ticket() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10, [1, 2, 3, 4]);
        q.push("a".into(), vec![1; 4]);
        // Replaced: "a"'s first ticket is stale, its slot free and then reused by "b".
        q.push("a".into(), vec![2; 4]);
        q.push("b".into(), vec![3; 4]);
        let mut body = vec![];
        assert_eq!(q.fill(100, 1, 1, &mut body), 2);
        assert_eq!(body, [vec![3; 4], vec![2; 4]].concat());
        assert!(q.is_empty());
        assert_eq!(q.fill(100, 1, 2, &mut body), 0);
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(4096, [1, 2, 3, 4]);
        for i in 0..1000 {
            q.push(format!("n{i}").as_str().into(), vec![7; 30]);
        }
        assert_eq!(q.len(), 1000);
        let mut d = 0;
        while !q.is_empty() {
            d += 1;
            let mut body = vec![];
            q.fill(1400, 3, d, &mut body);
        }
        assert_eq!(d, 3 * 1000_u64.div_ceil(1400 / 30));
        assert!(q.slots.capacity() <= IDLE_SLOTS && q.free.capacity() <= IDLE_SLOTS);
        assert_eq!(q.bytes.capacity(), 0);
        assert_eq!(std::mem::size_of::<Slot<crate::identity::Name>>(), 40);
        assert_eq!((q.tickets, q.buckets.len()), (0, 1));
        // And it still works.
        q.push("x".into(), vec![1; 4]);
        let mut body = vec![];
        assert_eq!(q.fill(100, 3, d + 1, &mut body), 1);
    }

    #[test]
    fn bytes_survive_compaction_and_oversized_updates_are_refused() {
        let mut q = BroadcastQueue::<crate::identity::Name>::new(10_000, [1, 2, 3, 4]);
        // Keep "keep" queued while thousands of replacements turn the buffer into garbage.
        q.push("keep".into(), vec![42; 10]);
        for i in 0..5000u32 {
            q.push("churn".into(), i.to_le_bytes().to_vec());
        }
        assert!(
            q.bytes.len() < 2 * 64 * IDLE_SLOTS,
            "freed bytes are compacted away"
        );
        let mut body = vec![];
        assert_eq!(q.fill(100, 5, 1, &mut body), 2);
        assert_eq!(
            body,
            [4999u32.to_le_bytes().to_vec(), vec![42; 10]].concat()
        );
        q.push("huge".into(), vec![0; 70_000]);
        assert!(!q.contains(&"huge".into()));
        assert_eq!(q.drops(), 1);
    }
}
