//! The member table: every member this node knows (itself included, tombstones of failed and
//! left members kept so stale gossip cannot revive them), in shuffled probe order, with a name
//! index and live counts kept up to date on every status change.

mod chunked;
pub(crate) mod index;
pub(crate) mod short_name;

use std::cell::Cell;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::identity::{Member, MemberStatus, Name, Tags};
use crate::swim::suspicion::Suspicion;
use crate::time::Timestamp;
use chunked::Chunked;
use index::MemberIndex;
use short_name::{InlineKey, ShortName};

/// What only some members need: an IPv6 address, and — while the member is not alive — when
/// it entered its status and its suspicion. A member alive at an IPv4 address has none, so the
/// record every node keeps about every member stays at 48 bytes.
#[derive(Clone, Debug, Default)]
struct Cold {
    addr6: Option<SocketAddrV6>,
    trouble: Option<Trouble>,
}

/// The part of [`Cold`] a member has while it is suspect, failed or left.
#[derive(Clone, Debug)]
struct Trouble {
    /// When the member entered its current status.
    since: Timestamp,
    /// Identifies the current suspicion to its timers (a table-wide counter, so a new
    /// suspicion never reuses an old one's number).
    generation: u32,
    suspicion: Option<Box<Suspicion>>,
}

/// Everything kept about one member. `repr(C)` keeps the fields every gossip message checks
/// (name, incarnation, status, intent time) together at the head: at a thousand members
/// per node the table does not fit in cache, and one line per lookup matters.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct MemberRec {
    pub name: ShortName,
    /// Member Lamport time of the latest join or leave intent applied.
    pub status_ltime: u64,
    /// Read freely; write only through [`Members::set_incarnation`], which keeps the digest.
    pub incarnation: u32,
    status: MemberStatus,
    /// A leave intent was seen for the member's current life.
    pub leaving: bool,
    /// The port, and the IPv4 address unless `cold` holds an IPv6 one.
    port: u16,
    ip4: [u8; 4],
    /// Where the member's tags are in [`Members`]' tag slab (0: no tags).
    tags: u32,
    /// Present while the member is not alive or has an IPv6 address.
    cold: Option<Box<Cold>>,
}

impl MemberRec {
    /// A record of an alive member; [`Members::insert`] gives it its tags.
    pub(crate) fn new(name: Name, addr: SocketAddr, incarnation: u32) -> MemberRec {
        let mut rec = MemberRec {
            name: ShortName::new(&name),
            incarnation,
            status: MemberStatus::Alive,
            leaving: false,
            port: 0,
            ip4: [0; 4],
            status_ltime: 0,
            tags: 0,
            cold: None,
        };
        rec.set_addr(addr);
        rec
    }

    fn trouble(&self) -> Option<&Trouble> {
        self.cold.as_ref()?.trouble.as_ref()
    }

    fn trouble_mut(&mut self) -> Option<&mut Trouble> {
        self.cold.as_mut()?.trouble.as_mut()
    }

    /// Update the cold part, dropping it once it holds nothing.
    fn edit_cold(&mut self, edit: impl FnOnce(&mut Cold)) {
        let cold = self.cold.get_or_insert_with(Box::default);
        edit(cold);
        if cold.addr6.is_none() && cold.trouble.is_none() {
            self.cold = None;
        }
    }

    /// The address the member is reached at.
    pub(crate) fn addr(&self) -> SocketAddr {
        match self.cold.as_ref().and_then(|c| c.addr6) {
            Some(a) => SocketAddr::V6(a),
            None => SocketAddr::V4(SocketAddrV4::new(self.ip4.into(), self.port)),
        }
    }

    pub(crate) fn set_addr(&mut self, addr: SocketAddr) {
        self.port = addr.port();
        match addr {
            SocketAddr::V4(a) => {
                self.ip4 = a.ip().octets();
                if self.cold.as_ref().is_some_and(|c| c.addr6.is_some()) {
                    self.edit_cold(|c| c.addr6 = None);
                }
            }
            SocketAddr::V6(a) => {
                self.ip4 = [0; 4];
                self.edit_cold(|c| c.addr6 = Some(a));
            }
        }
    }

    /// Read the first byte and the incarnation, the two ends of what a lookup and a duplicate
    /// check read (a quarter of the records straddle two cache lines); see [`Members::prefetch`].
    fn touch(&self) -> u64 {
        self.name.first_byte() as u64 ^ self.incarnation as u64
    }

    /// When a member that is not alive entered its status (`None` while alive).
    pub(crate) fn since(&self) -> Option<Timestamp> {
        self.trouble().map(|t| t.since)
    }

    /// The current suspicion's number, while the member is suspect.
    pub(crate) fn suspicion_generation(&self) -> Option<u32> {
        self.trouble()
            .filter(|_| self.status == MemberStatus::Suspect)
            .map(|t| t.generation)
    }

    /// The current suspicion, while the member is suspect and one was installed.
    pub(crate) fn suspicion(&self) -> Option<&Suspicion> {
        self.trouble()?.suspicion.as_deref()
    }

    pub(crate) fn suspicion_mut(&mut self) -> Option<&mut Suspicion> {
        self.trouble_mut()?.suspicion.as_deref_mut()
    }

    /// Attach `suspicion` to a suspect member; returns the suspicion's number (`None`, and
    /// nothing attached, unless the member is suspect).
    pub(crate) fn install_suspicion(&mut self, suspicion: Suspicion) -> Option<u32> {
        if self.status != MemberStatus::Suspect {
            return None;
        }
        let t = self.trouble_mut()?;
        t.suspicion = Some(Box::new(suspicion));
        Some(t.generation)
    }

    pub(crate) fn status(&self) -> MemberStatus {
        self.status
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self.status, MemberStatus::Alive | MemberStatus::Suspect)
    }

    /// The status the application sees: the SWIM status, with `Leaving` for a live member
    /// that announced its departure.
    pub(crate) fn public_status(&self) -> MemberStatus {
        if self.leaving && self.is_live() {
            MemberStatus::Leaving
        } else {
            self.status
        }
    }
}

/// The table, in probe order.
#[derive(Debug)]
pub(crate) struct Members {
    /// In chunks: growing never copies the table.
    list: Chunked<MemberRec>,
    /// Positions in `list`, hashed by name. Only looked up, never iterated, so its order cannot
    /// leak into outputs; the hasher is keyed from the node's seeded RNG (deterministic, and not
    /// predictable by a peer flooding crafted names). Four bytes a member, so it stays in cache.
    index: MemberIndex,
    hasher: ahash::RandomState,
    probe_index: usize,
    alive: usize,
    live: usize,
    /// Members failed, and members left: the reaper and the reconnect timer skip their scans
    /// of the whole table while there are none (the usual case).
    failed: usize,
    left: usize,
    /// XOR of [`member_hash`] over live members, kept up to date by every change of
    /// liveness or incarnation.
    digest: u32,
    /// When `digest` last changed.
    digest_changed: Timestamp,
    /// Number of the last suspicion started (see `Trouble::generation`).
    suspicions: u32,
    tag_sets: TagSlab,
    /// Where the latest lookup found its member, or the latest insert put one (`u32::MAX`:
    /// nowhere). The handling of one message looks the same member up several times: a
    /// lookup by name ([`Members::get`], [`Members::get_mut`], ...) tries this position first,
    /// checking the record's name, so a stale entry (the table changed since) costs one
    /// comparison and is never wrong. A lookup with a prefetch's guess ([`Members::get_near`])
    /// tries that instead. Only the table itself sets it: no caller hints or resets
    /// anything.
    last: Cell<u32>,
    /// This node's own name, for [`Members::is_own`]: compared as a [`ShortName`] (two
    /// words), not rebuilt from a `str` at every check.
    own: ShortName,
}

/// Where [`Members::prefetch`] found the member one name of a batch most likely sits: handed
/// to [`Members::get_near`], which checks it before it looks the name up. A guess, never
/// trusted: a stale one (the table changed since) costs one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Near(u32);

impl Near {
    /// No position known.
    pub(crate) const UNKNOWN: Near = Near(u32::MAX);
}

/// The positions [`Members::prefetch`] found for a batch of names, one per name in order
/// (kept by the caller between batches to reuse its memory).
#[derive(Debug, Default)]
pub(crate) struct Prefetched(Vec<u32>);

impl Prefetched {
    /// The guess for the `i`-th name of the batch ([`Near::UNKNOWN`] past its end).
    pub(crate) fn near(&self, i: usize) -> Near {
        Near(self.0.get(i).copied().unwrap_or(u32::MAX))
    }
}

/// The tag maps of members that have tags, found by the number their record holds (0: none).
/// A number in the record instead of an `Arc` keeps the record at 48 bytes; a member without
/// tags costs nothing here, one with tags a pointer.
#[derive(Debug, Default)]
struct TagSlab {
    /// `sets[h - 1]` for number `h`; freed entries hold `empty` until reused.
    sets: Vec<Arc<Tags>>,
    free: Vec<u32>,
    /// What a member without tags reports.
    empty: Arc<Tags>,
}

impl TagSlab {
    fn get(&self, h: u32) -> &Arc<Tags> {
        match h {
            0 => &self.empty,
            h => &self.sets[h as usize - 1],
        }
    }

    /// Keep `tags`; returns their number (0 for none, which keeps nothing).
    fn add(&mut self, tags: &Tags) -> u32 {
        if tags.is_empty() {
            return 0;
        }
        let tags = Arc::new(tags.clone());
        match self.free.pop() {
            Some(h) => {
                self.sets[h as usize - 1] = tags;
                h
            }
            None => {
                self.sets.push(tags);
                self.sets.len() as u32
            }
        }
    }

    fn release(&mut self, h: u32) {
        if h != 0 {
            self.sets[h as usize - 1] = self.empty.clone();
            self.free.push(h);
        }
    }
}

/// FNV-1a over a member's name and incarnation: its contribution to the table digest.
fn member_hash(name: &[u8], incarnation: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.iter().chain(incarnation.to_le_bytes().iter()) {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Members {
    /// An empty table of the node named `own`, whose index hasher is keyed from `rng`.
    pub(crate) fn new(own: &str, rng: &mut ChaCha8Rng) -> Members {
        let state =
            ahash::RandomState::with_seeds(rng.random(), rng.random(), rng.random(), rng.random());
        Members {
            list: Chunked::default(),
            index: MemberIndex::default(),
            hasher: state,
            probe_index: 0,
            alive: 0,
            live: 0,
            failed: 0,
            left: 0,
            digest: 0,
            digest_changed: Timestamp::ZERO,
            suspicions: 0,
            tag_sets: TagSlab::default(),
            last: Cell::new(u32::MAX),
            own: ShortName::new(own),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.position_of_bytes(name.as_bytes())
    }

    /// Where the member whose name has these bytes sits: a follow-up lookup, most likely of
    /// the member the latest lookup found, so that position is tried before the index.
    fn position_of_bytes(&self, name: &[u8]) -> Option<usize> {
        self.find(name, self.last.get())
    }

    /// Where the member whose name has these bytes sits, trying `near` (where a prefetch found
    /// the name) — or, without one, the latest lookup's position — before the index.
    #[inline]
    fn position_near(&self, name: &[u8], near: Near) -> Option<usize> {
        self.find(name, self.guess(near))
    }

    /// The position a lookup tries first: `near`, or without one the latest lookup's.
    #[inline(always)]
    fn guess(&self, near: Near) -> u32 {
        if near == Near::UNKNOWN {
            self.last.get()
        } else {
            near.0
        }
    }

    /// The record at `guess` if it is the member whose name has these bytes (`key`: the
    /// name's [`InlineKey`]); it becomes the latest lookup's.
    #[inline(always)]
    fn at_guess(&self, name: &[u8], key: &Option<InlineKey>, guess: u32) -> Option<&MemberRec> {
        let rec = self.list.get(guess as usize)?;
        let hit = match key {
            Some(key) => rec.name.matches(key),
            None => matches!(&rec.name, ShortName::Boxed(b) if b.as_bytes() == name),
        };
        if !hit {
            return None;
        }
        self.last.set(guess);
        Some(rec)
    }

    /// Where the member whose name has these bytes sits, trying `guess` before the index; the
    /// position found becomes the latest lookup's. The guess is checked here, inline in the
    /// caller (most lookups end there: a prefetch's guess or a follow-up lookup of the same
    /// member); the index search is [`Members::find_indexed`], out of line.
    #[inline(always)]
    fn find(&self, name: &[u8], guess: u32) -> Option<usize> {
        let key = InlineKey::new(name);
        if self.at_guess(name, &key, guess).is_some() {
            return Some(guess as usize);
        }
        self.find_indexed(name, key)
    }

    /// [`Members::find`] past a wrong guess: the index search.
    #[inline(never)]
    fn find_indexed(&self, name: &[u8], key: Option<InlineKey>) -> Option<usize> {
        let is = |i: usize| match (&key, &self.list[i].name) {
            (Some(key), rec) => rec.matches(key),
            (None, ShortName::Boxed(rec)) => rec.as_bytes() == name,
            (None, ShortName::Inline(..)) => false,
        };
        let h = self.hasher.hash_one(name);
        let found = self.index.find(h, is);
        if let Some(i) = found {
            self.last.set(i as u32);
        }
        found
    }

    /// The member whose name has these bytes (a name not yet read as a `str`), trying first
    /// where a [`Members::prefetch`] found the name.
    #[inline(always)]
    pub(crate) fn get_near(&self, name: &[u8], near: Near) -> Option<&MemberRec> {
        let key = InlineKey::new(name);
        if let Some(rec) = self.at_guess(name, &key, self.guess(near)) {
            return Some(rec);
        }
        self.find_indexed(name, key).map(|i| &self.list[i])
    }

    /// Swap the members at positions `p` and `q`, keeping the index right.
    fn swap(&mut self, p: usize, q: usize) {
        let hq = self.hasher.hash_one(self.list[q].name.bytes());
        self.swap_hashed(p, q, hq);
    }

    /// [`Members::swap`] when the hash of the name at `q` is already known.
    fn swap_hashed(&mut self, p: usize, q: usize, hq: u64) {
        if p == q {
            return;
        }
        let hp = self.hasher.hash_one(self.list[p].name.bytes());
        self.list.swap(p, q);
        self.index.swap(hp, p, hq, q);
    }

    /// Rebuild the index from `list`.
    fn reindex(&mut self) {
        let n = self.list.len();
        let (index, hash_at) = self.index_and_hash_at();
        index.clear();
        for i in 0..n {
            index.insert(hash_at(i), i, &hash_at);
        }
    }

    /// The index, with what it asks when it moves entries: the hash of the name at a position.
    fn index_and_hash_at(&mut self) -> (&mut MemberIndex, impl Fn(usize) -> u64 + '_) {
        let Members {
            list,
            index,
            hasher,
            ..
        } = self;
        let (list, hasher) = (&*list, &*hasher);
        (index, move |i| hasher.hash_one(list[i].name.bytes()))
    }

    /// Erase a member (reaped or pruned), returning what it last was.
    pub(crate) fn remove(&mut self, name: &str, now: Timestamp) -> Option<Member> {
        let i = self.position(name)?;
        let last = self.list.len() - 1;
        self.swap(i, last);
        let h = self.hasher.hash_one(name.as_bytes());
        let (index, hash_at) = self.index_and_hash_at();
        index.remove(h, last, hash_at);
        let rec = self.list.pop()?;
        self.count(rec.status, -1);
        if rec.is_live() {
            self.toggle_digest(rec.name.bytes(), rec.incarnation, now);
        }
        if self.probe_index > self.list.len() {
            self.probe_index = self.list.len();
        }
        let last = self.snapshot(&rec);
        self.tag_sets.release(rec.tags);
        Some(last)
    }

    /// Bring the index slots and records of the named members into cache before any of them is
    /// used, 64 names at a time, with loads that do not wait on each other — first every slot,
    /// then every record the slots point to — so that the processor overlaps their cache misses
    /// instead of taking them one at a time as the messages of a datagram are applied in
    /// order. Changes nothing; fills `out` with one guess per item, the position the lookup
    /// will most likely want (unchecked: hand it to [`Members::get_near`], which verifies it),
    /// unknown for an item without a name or a name not found.
    pub(crate) fn prefetch<'a>(
        &self,
        names: impl Iterator<Item = Option<&'a [u8]>>,
        out: &mut Prefetched,
    ) {
        let hints = &mut out.0;
        hints.clear();
        const NO_HINT: u32 = u32::MAX;
        const BATCH: usize = 64;
        let mut hashes = [None::<u64>; BATCH];
        let mut n = 0;
        let mut acc = 0u64;
        // Passes per batch, each a loop of independent loads: the hashes first (no loads), so
        // that the loop touching the index slots is a few instructions per name and the
        // processor keeps many of its misses in flight at once; then the positions the slots
        // give, then the records at those positions.
        let mut flush = |hashes: &[Option<u64>], acc: &mut u64| {
            for h in hashes.iter().flatten() {
                *acc ^= self.index.touch(*h) as u64;
            }
            // The first fingerprint match, unchecked: the record the lookup will most likely
            // want.
            let from = hints.len();
            hints.extend(hashes.iter().map(|h| {
                h.and_then(|h| self.index.find(h, |_| true))
                    .map_or(NO_HINT, |i| i as u32)
            }));
            for &i in &hints[from..] {
                if i != NO_HINT {
                    *acc ^= self.list[i as usize].touch();
                }
            }
        };
        for name in names {
            hashes[n] = name.map(|name| self.hasher.hash_one(name));
            n += 1;
            if n == BATCH {
                flush(&hashes, &mut acc);
                n = 0;
            }
        }
        flush(&hashes[..n], &mut acc);
        std::hint::black_box(acc);
    }

    /// Make room in the name index for `additional` more members (a push-pull merge knows
    /// how many newcomers it brings; the records themselves grow a chunk at a time).
    pub(crate) fn reserve_index(&mut self, additional: usize) {
        let (index, hash_at) = self.index_and_hash_at();
        index.reserve(additional, hash_at);
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Members with status alive (this node included while it runs).
    pub(crate) fn alive(&self) -> usize {
        self.alive
    }

    /// Members alive or suspect.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Members with status failed.
    pub(crate) fn failed(&self) -> usize {
        self.failed
    }

    /// Members with status left.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    /// Whether `rec` is this node's own record.
    #[inline]
    pub(crate) fn is_own(&self, rec: &MemberRec) -> bool {
        rec.name == self.own
    }

    pub(crate) fn get(&self, name: &str) -> Option<&MemberRec> {
        self.position(name).map(|i| &self.list[i])
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut MemberRec> {
        self.get_mut_near(name.as_bytes(), Near::UNKNOWN)
    }

    /// [`Members::get_mut`], trying first where a [`Members::prefetch`] found the name.
    #[inline]
    pub(crate) fn get_mut_near(&mut self, name: &[u8], near: Near) -> Option<&mut MemberRec> {
        let i = self.position_near(name, near)?;
        Some(&mut self.list[i])
    }

    /// A member's tags.
    pub(crate) fn tags(&self, rec: &MemberRec) -> &Arc<Tags> {
        self.tag_sets.get(rec.tags)
    }

    /// Replace a member's tags.
    pub(crate) fn set_tags(&mut self, name: &str, tags: &Tags) {
        let Some(i) = self.position(name) else {
            return;
        };
        let old = self.list[i].tags;
        self.tag_sets.release(old);
        self.list[i].tags = self.tag_sets.add(tags);
    }

    /// The member as the application sees it.
    pub(crate) fn snapshot(&self, rec: &MemberRec) -> Member {
        self.snapshot_named(rec, rec.name.to_name())
    }

    /// [`Members::snapshot`] given the member's name (saves building it from the record).
    fn snapshot_named(&self, rec: &MemberRec, name: Name) -> Member {
        Member {
            name,
            addr: rec.addr(),
            status: rec.public_status(),
            incarnation: rec.incarnation,
            tags: self.tags(rec).clone(),
        }
    }

    /// The member at position `pos`, called `name`, as the application sees it.
    pub(crate) fn member_at(&self, pos: usize, name: Name) -> Member {
        debug_assert!(*self.list[pos].name == *name);
        self.snapshot_named(&self.list[pos], name)
    }

    /// The member called `name`, as the application sees it.
    pub(crate) fn member(&self, name: &str) -> Option<Member> {
        self.get(name)
            .map(|rec| self.snapshot_named(rec, Name::new(name)))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &MemberRec> {
        self.list.iter()
    }

    fn count(&mut self, status: MemberStatus, delta: isize) {
        if status == MemberStatus::Alive {
            self.alive = self.alive.wrapping_add_signed(delta);
        }
        if matches!(status, MemberStatus::Alive | MemberStatus::Suspect) {
            self.live = self.live.wrapping_add_signed(delta);
        }
        match status {
            MemberStatus::Failed => self.failed = self.failed.wrapping_add_signed(delta),
            MemberStatus::Left => self.left = self.left.wrapping_add_signed(delta),
            _ => {}
        }
    }

    /// Add a new member with `tags` at a random position of the probe order, and return that
    /// position.
    pub(crate) fn insert(
        &mut self,
        mut rec: MemberRec,
        tags: &Tags,
        now: Timestamp,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        rec.tags = self.tag_sets.add(tags);
        debug_assert!(self.position(&rec.name).is_none());
        if rec.is_live() {
            self.toggle_digest(rec.name.bytes(), rec.incarnation, now);
        }
        self.count(rec.status, 1);
        let last = self.list.len();
        let h = self.hasher.hash_one(rec.name.bytes());
        self.list.push(rec);
        let (index, hash_at) = self.index_and_hash_at();
        index.insert(h, last, hash_at);
        let pos = rng.random_range(0..=last);
        self.swap_hashed(pos, last, h);
        // Lookups that follow an insert are most likely about the new member.
        self.last.set(pos as u32);
        pos
    }

    /// Change a member's status, keeping counts and the state-change time.
    pub(crate) fn set_status(&mut self, name: &str, status: MemberStatus, now: Timestamp) {
        let Some(i) = self.position(name) else {
            return;
        };
        let old = self.list[i].status;
        if old == status {
            return;
        }
        self.count(old, -1);
        self.count(status, 1);
        let was_live = self.list[i].is_live();
        if status == MemberStatus::Suspect {
            self.suspicions = self.suspicions.wrapping_add(1);
        }
        let generation = self.suspicions;
        let rec = &mut self.list[i];
        rec.status = status;
        rec.edit_cold(|c| {
            c.trouble = (status != MemberStatus::Alive).then_some(Trouble {
                since: now,
                generation,
                suspicion: None,
            })
        });
        if was_live != rec.is_live() {
            let hash = member_hash(rec.name.bytes(), rec.incarnation);
            self.flip_digest(hash, now);
        }
    }

    /// Set a member's incarnation, keeping the digest.
    pub(crate) fn set_incarnation(&mut self, name: &str, incarnation: u32, now: Timestamp) {
        let Some(i) = self.position(name) else {
            return;
        };
        let rec = &mut self.list[i];
        let old = rec.incarnation;
        if old == incarnation {
            return;
        }
        rec.incarnation = incarnation;
        if rec.is_live() {
            let hash =
                member_hash(rec.name.bytes(), old) ^ member_hash(rec.name.bytes(), incarnation);
            self.flip_digest(hash, now);
        }
    }

    fn toggle_digest(&mut self, name: &[u8], incarnation: u32, now: Timestamp) {
        self.flip_digest(member_hash(name, incarnation), now);
    }

    fn flip_digest(&mut self, hash: u32, now: Timestamp) {
        self.digest ^= hash;
        self.digest_changed = now;
    }

    /// A digest of the live members (name and incarnation of every alive or suspect member,
    /// combined order-independently). Two nodes with the same live view have the same digest.
    pub(crate) fn digest(&self) -> u32 {
        self.digest
    }

    /// When the digest last changed.
    pub(crate) fn digest_changed(&self) -> Timestamp {
        self.digest_changed
    }

    /// The next member to probe: round-robin over the shuffled list, reshuffled at each wrap,
    /// skipping `me` and members that are not live.
    pub(crate) fn next_probe_target(&mut self, me: &str, rng: &mut ChaCha8Rng) -> Option<usize> {
        let me = ShortName::new(me);
        if self.live <= 1 {
            return None;
        }
        for _ in 0..=self.list.len() {
            if self.probe_index >= self.list.len() {
                self.probe_index = 0;
                self.shuffle(rng);
            }
            let i = self.probe_index;
            self.probe_index += 1;
            let rec = &self.list[i];
            if rec.is_live() && rec.name != me {
                return Some(i);
            }
        }
        None
    }

    pub(crate) fn at(&self, i: usize) -> &MemberRec {
        &self.list[i]
    }

    fn shuffle(&mut self, rng: &mut ChaCha8Rng) {
        self.list.shuffle(rng);
        self.reindex();
    }

    /// Up to `k` distinct random members passing `keep`, sampled as memberlist does (at most
    /// 3·len tries), then topped up by a scan from a random start when the sample fell short.
    pub(crate) fn random_members(
        &self,
        k: usize,
        rng: &mut ChaCha8Rng,
        mut keep: impl FnMut(&MemberRec) -> bool,
    ) -> Vec<usize> {
        let n = self.list.len();
        let mut out: Vec<usize> = Vec::with_capacity(k);
        if n == 0 || k == 0 {
            return out;
        }
        for _ in 0..3 * n {
            if out.len() >= k {
                return out;
            }
            let i = rng.random_range(0..n);
            if !out.contains(&i) && keep(&self.list[i]) {
                out.push(i);
            }
        }
        let start = rng.random_range(0..n);
        for j in 0..n {
            if out.len() >= k {
                break;
            }
            let i = (start + j) % n;
            if !out.contains(&i) && keep(&self.list[i]) {
                out.push(i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rec(name: &str) -> MemberRec {
        MemberRec::new(name.into(), "127.0.0.1:1".parse().unwrap(), 0)
    }

    #[test]
    fn the_record_stays_small() {
        assert_eq!(std::mem::size_of::<MemberRec>(), 48);
        let v6: SocketAddr = "[fe80::1%7]:7946".parse().unwrap();
        let v4: SocketAddr = "10.1.2.3:7946".parse().unwrap();
        for a in [v4, v6] {
            let mut r = rec("x");
            r.set_addr(a);
            assert_eq!(r.addr(), a, "scope id and port survive packing");
        }
    }

    #[test]
    fn lookups_are_right_whatever_the_hint() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut m = Members::new("self", &mut rng);
        let long = "a-name-too-long-to-be-kept-inline";
        let names = ["a", "node-7", long, "exactly-15-byte"];
        for n in names {
            m.insert(rec(n), &Tags::new(), Timestamp::ZERO, &mut rng);
        }
        let mut found = Prefetched::default();
        m.prefetch(
            names.iter().map(|n| Some(n.as_bytes())).chain([None]),
            &mut found,
        );
        assert_eq!(found.0.len(), names.len() + 1, "one guess per item");
        assert_eq!(found.near(names.len()), Near::UNKNOWN);
        assert_eq!(found.near(names.len() + 7), Near::UNKNOWN);
        let right: Vec<u32> = names
            .iter()
            .map(|n| m.position(n).unwrap() as u32)
            .collect();
        assert_eq!(
            found.0[..names.len()],
            right[..],
            "no fingerprint collision among four"
        );
        // Every guess — right, another member's, out of range, none — and whatever the latest
        // lookup found gives the same answer.
        for h in right.iter().copied().chain([u32::MAX, 99]) {
            for (n, &pos) in names.iter().zip(&right) {
                assert_eq!(
                    m.get_near(n.as_bytes(), Near(h)).map(|r| &*r.name),
                    Some(*n)
                );
                assert_eq!(m.position(n), Some(pos as usize));
                assert_eq!(*m.get_near(n.as_bytes(), Near::UNKNOWN).unwrap().name, **n);
            }
            assert!(m.get_near(b"node-8", Near(h)).is_none());
            assert!(m.get("node-8").is_none());
            assert!(m
                .get_near(b"a-name-too-long-to-be-kept-inlinX", Near(h))
                .is_none());
        }
    }

    #[test]
    fn tags_follow_their_member_through_changes_and_removal() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut m = Members::new("self", &mut rng);
        let tagged = |v: &str| Tags::from([("role".to_string(), v.to_string())]);
        m.insert(rec("a"), &tagged("db"), Timestamp::ZERO, &mut rng);
        m.insert(rec("b"), &Tags::new(), Timestamp::ZERO, &mut rng);
        m.insert(rec("c"), &tagged("web"), Timestamp::ZERO, &mut rng);
        let tags_of = |m: &Members, n: &str| (*m.member(n).unwrap().tags).clone();
        assert_eq!(tags_of(&m, "a"), tagged("db"));
        assert!(tags_of(&m, "b").is_empty());
        assert_eq!(m.get("b").unwrap().tags, 0, "no tags, no slab entry");
        m.set_tags("b", &tagged("cache"));
        m.set_tags("a", &Tags::new());
        assert!(tags_of(&m, "a").is_empty());
        assert_eq!(tags_of(&m, "b"), tagged("cache"));
        let gone = m.remove("c", Timestamp::ZERO).unwrap();
        assert_eq!((&*gone.name, &*gone.tags), ("c", &tagged("web")));
        // Freed numbers are reused, and never shared by two live members.
        m.insert(rec("d"), &tagged("queue"), Timestamp::ZERO, &mut rng);
        m.insert(rec("e"), &tagged("log"), Timestamp::ZERO, &mut rng);
        assert_eq!(m.tag_sets.sets.len(), 3);
        assert_eq!(tags_of(&m, "b"), tagged("cache"));
        assert_eq!(tags_of(&m, "d"), tagged("queue"));
        assert_eq!(tags_of(&m, "e"), tagged("log"));
    }

    #[test]
    fn trouble_exists_only_while_not_alive() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = Members::new("self", &mut rng);
        m.insert(rec("a"), &Tags::new(), Timestamp::ZERO, &mut rng);
        assert_eq!(m.get("a").unwrap().since(), None);
        m.set_status("a", MemberStatus::Suspect, Timestamp::from_secs(1));
        let first = m.get("a").unwrap().suspicion_generation().unwrap();
        m.set_status("a", MemberStatus::Alive, Timestamp::from_secs(2));
        assert!(m.get("a").unwrap().cold.is_none());
        assert_eq!(m.get("a").unwrap().suspicion_generation(), None);
        m.set_status("a", MemberStatus::Suspect, Timestamp::from_secs(3));
        let second = m.get("a").unwrap().suspicion_generation().unwrap();
        assert_ne!(
            first, second,
            "a stale suspicion timer cannot match a new suspicion"
        );
        m.set_status("a", MemberStatus::Failed, Timestamp::from_secs(4));
        let r = m.get("a").unwrap();
        assert_eq!(
            (r.since(), r.suspicion_generation()),
            (Some(Timestamp::from_secs(4)), None)
        );
    }

    #[test]
    fn insert_index_and_counts() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = Members::new("self", &mut rng);
        for i in 0..50 {
            m.insert(
                rec(&format!("n{i}")),
                &Tags::new(),
                Timestamp::ZERO,
                &mut rng,
            );
        }
        assert_eq!((m.len(), m.alive(), m.live()), (50, 50, 50));
        for i in 0..50 {
            assert_eq!(&*m.get(&format!("n{i}")).unwrap().name, format!("n{i}"));
        }
        m.set_status("n3", MemberStatus::Suspect, Timestamp::from_secs(1));
        assert_eq!((m.alive(), m.live()), (49, 50));
        m.set_status("n3", MemberStatus::Failed, Timestamp::from_secs(2));
        assert_eq!((m.alive(), m.live()), (49, 49));
        assert_eq!(m.get("n3").unwrap().since(), Some(Timestamp::from_secs(2)));
    }

    #[test]
    fn status_counts_match_a_scan_through_any_history() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut m = Members::new("self", &mut rng);
        let statuses = [
            MemberStatus::Alive,
            MemberStatus::Suspect,
            MemberStatus::Leaving,
            MemberStatus::Failed,
            MemberStatus::Left,
        ];
        let count = |m: &Members, s: MemberStatus| m.iter().filter(|r| r.status() == s).count();
        for step in 0..5_000 {
            let name = format!("n{}", rng.random_range(0..60));
            let t = Timestamp::from_secs(step);
            match rng.random_range(0..4) {
                0 if m.get(&name).is_none() => {
                    m.insert(rec(&name), &Tags::new(), t, &mut rng);
                }
                1 => {
                    m.remove(&name, t);
                }
                _ => {
                    let s = statuses[rng.random_range(0..statuses.len())];
                    m.set_status(&name, s, t);
                }
            }
            assert_eq!(m.alive(), count(&m, MemberStatus::Alive), "step {step}");
            assert_eq!(m.failed(), count(&m, MemberStatus::Failed), "step {step}");
            assert_eq!(m.left(), count(&m, MemberStatus::Left), "step {step}");
            let live = count(&m, MemberStatus::Alive) + count(&m, MemberStatus::Suspect);
            assert_eq!(m.live(), live, "step {step}");
        }
    }

    #[test]
    fn probe_order_visits_every_live_member_once_per_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut m = Members::new("self", &mut rng);
        for i in 0..10 {
            m.insert(
                rec(&format!("n{i}")),
                &Tags::new(),
                Timestamp::ZERO,
                &mut rng,
            );
        }
        m.set_status("n5", MemberStatus::Failed, Timestamp::ZERO);
        let mut seen = vec![];
        for _ in 0..8 {
            let i = m.next_probe_target("n0", &mut rng).unwrap();
            seen.push(m.at(i).name.to_string());
        }
        seen.sort();
        let want: Vec<String> = (1..10)
            .filter(|i| *i != 5)
            .map(|i| format!("n{i}"))
            .collect();
        // One full pass (8 live members other than n0), possibly split across a reshuffle.
        assert_eq!(seen.len(), want.len());
        for i in 0..40 {
            let t = m.next_probe_target("n0", &mut rng).unwrap();
            assert_ne!(&*m.at(t).name, "n0", "step {i}");
            assert_ne!(&*m.at(t).name, "n5");
        }
        // Index stays right after reshuffles.
        for i in 0..10 {
            assert_eq!(&*m.get(&format!("n{i}")).unwrap().name, format!("n{i}"));
        }
    }

    #[test]
    fn digest_depends_on_live_set_not_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut a = Members::new("self", &mut rng);
        let mut b = Members::new("self", &mut rng);
        for i in 0..20 {
            a.insert(
                rec(&format!("n{i}")),
                &Tags::new(),
                Timestamp::ZERO,
                &mut rng,
            );
            b.insert(
                rec(&format!("n{}", 19 - i)),
                &Tags::new(),
                Timestamp::ZERO,
                &mut rng,
            );
        }
        assert_eq!(a.digest(), b.digest());
        let full = |m: &Members| {
            m.iter()
                .filter(|r| r.is_live())
                .fold(0, |acc, r| acc ^ member_hash(r.name.bytes(), r.incarnation))
        };
        assert_eq!(a.digest(), full(&a));
        a.set_incarnation("n4", 1, Timestamp::from_secs(3));
        assert_eq!(a.digest_changed(), Timestamp::from_secs(3));
        assert_eq!(a.digest(), full(&a));
        assert_ne!(a.digest(), b.digest());
        b.set_incarnation("n4", 1, Timestamp::ZERO);
        assert_eq!(a.digest(), b.digest());
        a.set_status("n5", MemberStatus::Failed, Timestamp::ZERO);
        assert_ne!(a.digest(), b.digest());
        b.set_status("n5", MemberStatus::Left, Timestamp::ZERO);
        assert_eq!(
            a.digest(),
            b.digest(),
            "failed and left both leave the live set"
        );
        a.set_status("n5", MemberStatus::Alive, Timestamp::ZERO);
        a.set_status("n6", MemberStatus::Suspect, Timestamp::ZERO);
        assert_eq!(a.digest(), full(&a));
    }

    #[test]
    fn random_members_are_distinct_and_filtered() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut m = Members::new("self", &mut rng);
        for i in 0..20 {
            m.insert(
                rec(&format!("n{i}")),
                &Tags::new(),
                Timestamp::ZERO,
                &mut rng,
            );
        }
        let picks = m.random_members(5, &mut rng, |r| &*r.name != "n1");
        assert_eq!(picks.len(), 5);
        let mut d = picks.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5);
        assert!(picks.iter().all(|&i| &*m.at(i).name != "n1"));
        let only = m.random_members(5, &mut rng, |r| &*r.name == "n7");
        assert_eq!(only.len(), 1);
    }
}
