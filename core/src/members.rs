//! The member table: every member this node knows (itself included, tombstones of failed and
//! left members kept so stale gossip cannot revive them), in shuffled probe order, with a name
//! index and live counts kept up to date on every status change.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::identity::{Member, MemberStatus, Name, Tags};
use crate::member_index::{MemberIndex, PARKED};
use crate::suspicion::Suspicion;
use crate::time::Timestamp;

/// A member's address in 16 bytes instead of `SocketAddr`'s 32: IPv4 inline, IPv6 (with its
/// flow info and scope id) boxed. Most clusters are IPv4 and the record is most of a node's
/// memory.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PackedAddr {
    V4([u8; 4], u16),
    V6(Box<SocketAddrV6>),
}

impl PackedAddr {
    fn new(addr: SocketAddr) -> PackedAddr {
        match addr {
            SocketAddr::V4(a) => PackedAddr::V4(a.ip().octets(), a.port()),
            SocketAddr::V6(a) => PackedAddr::V6(Box::new(a)),
        }
    }

    fn get(&self) -> SocketAddr {
        match self {
            PackedAddr::V4(ip, port) => SocketAddr::V4(SocketAddrV4::new((*ip).into(), *port)),
            PackedAddr::V6(a) => SocketAddr::V6(**a),
        }
    }
}

/// What only a member in trouble (suspect, failed or left) needs. An alive member has none,
/// so the record every node keeps about every member stays at 72 bytes.
#[derive(Clone, Debug)]
struct Trouble {
    /// When the member entered its current status.
    since: Timestamp,
    /// Identifies the current suspicion to its timers (a table-wide counter, so a new
    /// suspicion never reuses an old one's number).
    generation: u32,
    suspicion: Option<Suspicion>,
}

/// Everything kept about one member. `repr(C)` keeps the fields every gossip message checks
/// (name, incarnation, status, intent time) together at the head: at a thousand members
/// per node the table does not fit in cache, and one line per lookup matters.
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct MemberRec {
    pub name: Name,
    /// Read freely; write only through [`Members::set_incarnation`], which keeps the digest.
    pub incarnation: u32,
    status: MemberStatus,
    /// A leave intent was seen for the member's current life.
    pub leaving: bool,
    /// Member Lamport time of the latest join or leave intent applied.
    pub status_ltime: u64,
    addr: PackedAddr,
    pub tags: Arc<Tags>,
    /// Present while the member is not alive; written only by [`Members::set_status`].
    trouble: Option<Box<Trouble>>,
}

impl MemberRec {
    pub(crate) fn new(
        name: Name,
        addr: SocketAddr,
        incarnation: u32,
        tags: Arc<Tags>,
    ) -> MemberRec {
        MemberRec {
            name,
            addr: PackedAddr::new(addr),
            incarnation,
            status: MemberStatus::Alive,
            tags,
            trouble: None,
            status_ltime: 0,
            leaving: false,
        }
    }

    /// The address the member is reached at.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    pub(crate) fn set_addr(&mut self, addr: SocketAddr) {
        self.addr = PackedAddr::new(addr);
    }

    /// When a member that is not alive entered its status (`None` while alive).
    pub(crate) fn since(&self) -> Option<Timestamp> {
        self.trouble.as_ref().map(|t| t.since)
    }

    /// The current suspicion's number, while the member is suspect.
    pub(crate) fn suspicion_generation(&self) -> Option<u32> {
        self.trouble
            .as_ref()
            .filter(|_| self.status == MemberStatus::Suspect)
            .map(|t| t.generation)
    }

    /// The current suspicion, while the member is suspect and one was installed.
    pub(crate) fn suspicion(&self) -> Option<&Suspicion> {
        self.trouble.as_ref().and_then(|t| t.suspicion.as_ref())
    }

    pub(crate) fn suspicion_mut(&mut self) -> Option<&mut Suspicion> {
        self.trouble.as_mut().and_then(|t| t.suspicion.as_mut())
    }

    /// Attach `suspicion` to a suspect member; returns the suspicion's number (`None`, and
    /// nothing attached, unless the member is suspect).
    pub(crate) fn install_suspicion(&mut self, suspicion: Suspicion) -> Option<u32> {
        if self.status != MemberStatus::Suspect {
            return None;
        }
        let t = self.trouble.as_mut()?;
        t.suspicion = Some(suspicion);
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

    pub(crate) fn snapshot(&self) -> Member {
        Member {
            name: self.name.clone(),
            addr: self.addr(),
            status: self.public_status(),
            incarnation: self.incarnation,
            tags: self.tags.clone(),
        }
    }
}

/// The table, in probe order.
#[derive(Debug)]
pub(crate) struct Members {
    list: Vec<MemberRec>,
    /// Positions in `list`, hashed by name. Only looked up, never iterated, so its order cannot
    /// leak into outputs; the hasher is keyed from the node's seeded RNG (deterministic, and not
    /// predictable by a peer flooding crafted names). Four bytes a member, so it stays in cache.
    index: MemberIndex,
    hasher: ahash::RandomState,
    probe_index: usize,
    alive: usize,
    live: usize,
    /// XOR of [`member_hash`] over live members, kept up to date by every change of
    /// liveness or incarnation.
    digest: u32,
    /// When `digest` last changed.
    digest_changed: Timestamp,
    /// Number of the last suspicion started (see `Trouble::generation`).
    suspicions: u32,
}

/// FNV-1a over a member's name and incarnation: its contribution to the table digest.
fn member_hash(name: &str, incarnation: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name
        .as_bytes()
        .iter()
        .chain(incarnation.to_le_bytes().iter())
    {
        h ^= *b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Members {
    /// An empty table whose index hasher is keyed from `rng`.
    pub(crate) fn new(rng: &mut ChaCha8Rng) -> Members {
        let state =
            ahash::RandomState::with_seeds(rng.random(), rng.random(), rng.random(), rng.random());
        Members {
            list: Vec::new(),
            index: MemberIndex::default(),
            hasher: state,
            probe_index: 0,
            alive: 0,
            live: 0,
            digest: 0,
            digest_changed: Timestamp::ZERO,
            suspicions: 0,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        let h = self.hasher.hash_one(name);
        self.index.find(h, |i| *self.list[i].name == *name)
    }

    /// Swap the members at positions `p` and `q`, keeping the index right.
    fn swap(&mut self, p: usize, q: usize) {
        if p == q {
            return;
        }
        let hp = self.hasher.hash_one(&*self.list[p].name);
        let hq = self.hasher.hash_one(&*self.list[q].name);
        self.list.swap(p, q);
        // Park one entry so the two moves cannot match each other's.
        self.index.repoint(hp, p, PARKED);
        self.index.repoint(hq, q, p);
        self.index.repoint(hp, PARKED, q);
    }

    /// Rebuild the index from `list`.
    fn reindex(&mut self) {
        let Members {
            list,
            index,
            hasher,
            ..
        } = self;
        index.clear();
        for (i, rec) in list.iter().enumerate() {
            let h = hasher.hash_one(&*rec.name);
            index.insert(h, i, |j| hasher.hash_one(&*list[j].name));
        }
    }

    /// Erase a member (reaped or pruned), returning its record.
    pub(crate) fn remove(&mut self, name: &str, now: Timestamp) -> Option<MemberRec> {
        let i = self.position(name)?;
        let last = self.list.len() - 1;
        self.swap(i, last);
        let h = self.hasher.hash_one(name);
        let Members {
            list,
            index,
            hasher,
            ..
        } = self;
        index.remove(h, last, |j| hasher.hash_one(&*list[j].name));
        let rec = self.list.pop()?;
        self.count(rec.status, -1);
        if rec.is_live() {
            self.toggle_digest(&rec.name, rec.incarnation, now);
        }
        if self.probe_index > self.list.len() {
            self.probe_index = self.list.len();
        }
        Some(rec)
    }

    /// Look up every name first, before any of them is used: the lookups are independent, so
    /// the processor overlaps their cache misses instead of taking them one at a time when the
    /// messages of a datagram are applied in order.
    /// Returns how many of the names are not in the table.
    pub(crate) fn warm<'a>(&self, names: impl Iterator<Item = &'a str>) -> usize {
        let mut acc = 0u32;
        let mut unknown = 0;
        for name in names {
            if let Some(i) = self.position(name) {
                acc = acc.wrapping_add(self.list[i].incarnation);
            } else {
                unknown += 1;
            }
        }
        std::hint::black_box(acc);
        unknown
    }

    /// Make room for `additional` more members without over-allocating (a push-pull merge
    /// knows how many newcomers it brings).
    pub(crate) fn reserve_exact(&mut self, additional: usize) {
        let (len, spare) = (self.list.len(), self.list.capacity() - self.list.len());
        if additional > spare {
            self.list.reserve_exact(additional.max(len / 8));
        }
        let Members {
            list,
            index,
            hasher,
            ..
        } = self;
        index.reserve(additional, |i| hasher.hash_one(&*list[i].name));
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

    pub(crate) fn get(&self, name: &str) -> Option<&MemberRec> {
        self.position(name).map(|i| &self.list[i])
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut MemberRec> {
        let i = self.position(name)?;
        Some(&mut self.list[i])
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
    }

    /// Add a new member at a random position of the probe order.
    pub(crate) fn insert(&mut self, rec: MemberRec, now: Timestamp, rng: &mut ChaCha8Rng) {
        debug_assert!(self.position(&rec.name).is_none());
        if rec.is_live() {
            self.toggle_digest(&rec.name, rec.incarnation, now);
        }
        self.count(rec.status, 1);
        let last = self.list.len();
        if last == self.list.capacity() {
            // Grow by an eighth, not by doubling: the table is most of a node's memory, and a
            // doubled one is up to half empty for good.
            self.list.reserve_exact((last / 8).max(8));
        }
        let h = self.hasher.hash_one(&*rec.name);
        self.list.push(rec);
        let Members {
            list,
            index,
            hasher,
            ..
        } = self;
        index.insert(h, last, |i| hasher.hash_one(&*list[i].name));
        let pos = rng.random_range(0..=last);
        self.swap(pos, last);
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
        rec.trouble = (status != MemberStatus::Alive).then(|| {
            Box::new(Trouble {
                since: now,
                generation,
                suspicion: None,
            })
        });
        if was_live != rec.is_live() {
            let (name, inc) = (rec.name.clone(), rec.incarnation);
            self.toggle_digest(&name, inc, now);
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
            let name = rec.name.clone();
            self.toggle_digest(&name, old, now);
            self.toggle_digest(&name, incarnation, now);
        }
    }

    fn toggle_digest(&mut self, name: &str, incarnation: u32, now: Timestamp) {
        self.digest ^= member_hash(name, incarnation);
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
            if rec.is_live() && &*rec.name != me {
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
        MemberRec::new(
            name.into(),
            "127.0.0.1:1".parse().unwrap(),
            0,
            Arc::default(),
        )
    }

    #[test]
    fn the_record_stays_small() {
        assert_eq!(std::mem::size_of::<MemberRec>(), 72);
        let v6: SocketAddr = "[fe80::1%7]:7946".parse().unwrap();
        let v4: SocketAddr = "10.1.2.3:7946".parse().unwrap();
        for a in [v4, v6] {
            let mut r = rec("x");
            r.set_addr(a);
            assert_eq!(r.addr(), a, "scope id and port survive packing");
        }
    }

    #[test]
    fn trouble_exists_only_while_not_alive() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = Members::new(&mut rng);
        m.insert(rec("a"), Timestamp::ZERO, &mut rng);
        assert_eq!(m.get("a").unwrap().since(), None);
        m.set_status("a", MemberStatus::Suspect, Timestamp::from_secs(1));
        let first = m.get("a").unwrap().suspicion_generation().unwrap();
        m.set_status("a", MemberStatus::Alive, Timestamp::from_secs(2));
        assert!(m.get("a").unwrap().trouble.is_none());
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
        let mut m = Members::new(&mut rng);
        for i in 0..50 {
            m.insert(rec(&format!("n{i}")), Timestamp::ZERO, &mut rng);
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
    fn probe_order_visits_every_live_member_once_per_pass() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut m = Members::new(&mut rng);
        for i in 0..10 {
            m.insert(rec(&format!("n{i}")), Timestamp::ZERO, &mut rng);
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
        let mut a = Members::new(&mut rng);
        let mut b = Members::new(&mut rng);
        for i in 0..20 {
            a.insert(rec(&format!("n{i}")), Timestamp::ZERO, &mut rng);
            b.insert(rec(&format!("n{}", 19 - i)), Timestamp::ZERO, &mut rng);
        }
        assert_eq!(a.digest(), b.digest());
        let full = |m: &Members| {
            m.iter()
                .filter(|r| r.is_live())
                .fold(0, |acc, r| acc ^ member_hash(&r.name, r.incarnation))
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
        let mut m = Members::new(&mut rng);
        for i in 0..20 {
            m.insert(rec(&format!("n{i}")), Timestamp::ZERO, &mut rng);
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
