//! The member table's name index: an open-addressing hash table of 4-byte slots, each holding
//! a member's position in the table (24 bits) and an 8-bit fingerprint of its name's hash.
//!
//! Why not a general hash map: a lookup here is one cache miss for the slot (sixteen slots to a
//! line, linear probing stays in it) and one for the member record, which the caller reads
//! anyway; a map that keeps control bytes and values apart costs a third. At a thousand
//! members per node and a thousand nodes per simulation nothing of it stays in cache, and
//! member lookups are the hottest path of the core (every gossiped update is one).
//!
//! The index stores no hashes and no names: the caller passes each entry's hash, and a closure
//! that hashes the name at a position whenever the table must recompute one (growth, removal).

/// Positions are stored plus one in 24 bits (0 marks an empty slot); positions run below
/// this.
pub(crate) const MAX_POSITIONS: usize = (1 << 24) - 2;
const POS_MASK: u32 = (1 << 24) - 1;

#[derive(Debug, Default)]
pub(crate) struct MemberIndex {
    slots: Vec<u32>,
    len: usize,
}

fn fingerprint(hash: u64) -> u32 {
    (hash >> 56) as u32
}

impl MemberIndex {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask()
    }

    /// Read the slot where a search for `hash` starts (the value means nothing to the caller):
    /// see [`crate::members::Members::prefetch`].
    pub(crate) fn touch(&self, hash: u64) -> u32 {
        if self.len == 0 {
            return 0;
        }
        self.slots[self.home(hash)]
    }

    /// The position of the entry with `hash` for which `is` holds.
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let fp = fingerprint(hash);
        let mut i = self.home(hash);
        loop {
            let v = self.slots[i];
            if v == 0 {
                return None;
            }
            if v >> 24 == fp {
                let pos = (v & POS_MASK) as usize - 1;
                if is(pos) {
                    return Some(pos);
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The slot holding position `pos`, whose name hashes to `hash`.
    fn slot_of(&self, hash: u64, pos: usize) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let want = pos as u32 + 1;
        let mut i = self.home(hash);
        loop {
            let v = self.slots[i];
            if v == 0 {
                return None;
            }
            if v & POS_MASK == want {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Make room for `additional` more entries (load at most three quarters).
    pub(crate) fn reserve(&mut self, additional: usize, hash_at: impl Fn(usize) -> u64) {
        let need = self.len + additional;
        if need * 4 <= self.slots.len() * 3 {
            return;
        }
        let cap = (need * 4 / 3 + 1).next_power_of_two().max(8);
        let old = std::mem::replace(&mut self.slots, vec![0; cap]);
        for v in old.into_iter().filter(|&v| v != 0) {
            let pos = (v & POS_MASK) as usize - 1;
            self.place(hash_at(pos), v);
        }
    }

    fn place(&mut self, hash: u64, v: u32) {
        let mut i = self.home(hash);
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = v;
    }

    /// Add position `pos` (not present) whose name hashes to `hash`.
    pub(crate) fn insert(&mut self, hash: u64, pos: usize, hash_at: impl Fn(usize) -> u64) {
        debug_assert!(pos < MAX_POSITIONS);
        self.reserve(1, hash_at);
        self.place(hash, (fingerprint(hash) << 24) | (pos as u32 + 1));
        self.len += 1;
    }

    /// The entries for positions `p` (name hash `hp`) and `q` (name hash `hq`) trade
    /// positions: both slots are found first, so neither search can meet the other's
    /// rewritten entry.
    pub(crate) fn swap(&mut self, hp: u64, p: usize, hq: u64, q: usize) {
        let (sp, sq) = (self.slot_of(hp, p), self.slot_of(hq, q));
        for (slot, to) in [(sp, q), (sq, p)] {
            if let Some(i) = slot {
                self.slots[i] = (self.slots[i] & !POS_MASK) | ((to as u32 + 1) & POS_MASK);
            }
        }
    }

    /// Remove the entry for position `pos` (name hash `hash`), shifting later entries of its
    /// probe run back so that no lookup stops early at the hole.
    pub(crate) fn remove(&mut self, hash: u64, pos: usize, hash_at: impl Fn(usize) -> u64) {
        let Some(mut hole) = self.slot_of(hash, pos) else {
            return;
        };
        let mask = self.mask();
        let mut k = hole;
        loop {
            k = (k + 1) & mask;
            let v = self.slots[k];
            if v == 0 {
                break;
            }
            let home = hash_at((v & POS_MASK) as usize - 1) as usize & mask;
            // The entry at k may fill the hole unless its home lies cyclically in (hole, k].
            let stays = if hole <= k {
                hole < home && home <= k
            } else {
                hole < home || home <= k
            };
            if !stays {
                self.slots[hole] = v;
                hole = k;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }

    /// Forget every entry, keeping the capacity.
    pub(crate) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|v| *v = 0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Names are numbers here; their "hash" is a fixed scramble with deliberate collisions in
    /// the low bits, so probe runs are long and wrap around the table.
    fn h(name: u64) -> u64 {
        (name.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFF00_0000_0000_0000) | (name % 7)
    }

    #[test]
    fn matches_a_model_under_random_inserts_moves_and_removals() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        // list[pos] = name, as the member table keeps it.
        let mut list: Vec<u64> = Vec::new();
        let mut idx = MemberIndex::default();
        let mut next = 0u64;
        for step in 0..20_000 {
            match rng.random_range(0..10) {
                0..=4 => {
                    let pos = list.len();
                    list.push(next);
                    idx.insert(h(next), pos, |p| h(list[p]));
                    next += 1;
                }
                5..=6 if list.len() > 1 => {
                    let (p, q) = (
                        rng.random_range(0..list.len()),
                        rng.random_range(0..list.len()),
                    );
                    if p != q {
                        let (hp, hq) = (h(list[p]), h(list[q]));
                        list.swap(p, q);
                        idx.swap(hp, p, hq, q);
                    }
                }
                7..=8 if !list.is_empty() => {
                    // Remove as the table does: swap with the last, drop the last.
                    let i = rng.random_range(0..list.len());
                    let last = list.len() - 1;
                    let (hi, hl) = (h(list[i]), h(list[last]));
                    if i != last {
                        list.swap(i, last);
                        idx.swap(hi, i, hl, last);
                    }
                    idx.remove(hi, last, |p| h(list[p]));
                    list.pop();
                }
                _ => {}
            }
            if step % 97 == 0 {
                assert_eq!(idx.len, list.len());
                for (pos, &name) in list.iter().enumerate() {
                    assert_eq!(
                        idx.find(h(name), |p| list[p] == name),
                        Some(pos),
                        "step {step}"
                    );
                }
                for gone in (next..next + 5).chain(0..3) {
                    if !list.contains(&gone) {
                        assert_eq!(idx.find(h(gone), |p| list[p] == gone), None);
                    }
                }
            }
        }
    }

    #[test]
    fn clear_keeps_capacity_and_finds_nothing() {
        let list: Vec<u64> = (0..100).collect();
        let mut idx = MemberIndex::default();
        for (pos, &n) in list.iter().enumerate() {
            idx.insert(h(n), pos, |p| h(list[p]));
        }
        let cap = idx.slots.len();
        assert!(cap >= 134 && cap.is_power_of_two());
        idx.clear();
        assert_eq!(idx.slots.len(), cap);
        assert_eq!(idx.find(h(5), |p| list[p] == 5), None);
    }
}
