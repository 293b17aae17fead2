//! How many new members one sender may introduce by gossip: the bound that keeps one host, or
//! one datagram, from filling the member table. (Push-pulls have their own bound,
//! [`crate::plausible::MAX_NEW_MEMBERS_UNASKED`]; answers to this node's own exchanges are not
//! bounded.)
//!
//! - **Per datagram**: at most `mtu /` [`ALIVE_MIN_BYTES`] members this node does not know
//!   yet (175 at the default MTU of 1,400). An honest datagram fits the MTU and an alive
//!   message takes at least that many bytes, so only a forged jumbo datagram (up to 64 KiB,
//!   thousands of alive messages) meets the bound.
//! - **Per sending host** (the source IP: a port costs an attacker nothing): a token bucket of
//!   [`SENDER_BURST`] new members, refilled at [`SENDER_REFILL_PER_SEC`] per second. A host
//!   that runs a whole cluster (every member on one loopback address) still introduces a
//!   thousand members at once, and any number at that rate. Buckets are kept for the
//!   [`MAX_SENDERS`] hosts heard from most recently; a host beyond those starts with a full
//!   bucket when its entry is evicted (the one idle longest).
//!
//! A member refused here is counted in [`crate::Stats::members_refused`] and comes back with
//! the next copy of its news (gossip retransmits it, push-pull carries it), so honest news is
//! delayed, never lost.

use std::net::IpAddr;

use crate::time::Timestamp;

/// The fewest bytes an alive message takes on the wire (kind, incarnation, a one-byte name,
/// an IPv4 address and port, no tags, Lamport time): a datagram of the MTU holds at most
/// `mtu / ALIVE_MIN_BYTES` of them, the most new members one datagram may introduce.
pub const ALIVE_MIN_BYTES: usize = 8;
/// New members one sending host may introduce at once.
pub const SENDER_BURST: u32 = 1024;
/// New members one sending host may introduce per second, once its burst is spent.
pub const SENDER_REFILL_PER_SEC: u32 = 256;
/// Sending hosts whose buckets are kept.
pub const MAX_SENDERS: usize = 16;

/// One host's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    host: IpAddr,
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Timestamp,
}

/// The per-host buckets and the current datagram's count.
#[derive(Debug)]
pub(crate) struct Admission {
    /// Allocated on the first new member (most nodes of a big simulation settle early).
    buckets: Vec<Bucket>,
    /// New members the input being handled introduced so far.
    in_datagram: usize,
    /// New members one input may introduce (`mtu / ALIVE_MIN_BYTES`).
    per_input: usize,
}

impl Admission {
    /// The bounds for a node whose datagrams are at most `mtu` bytes.
    pub(crate) fn new(mtu: usize) -> Admission {
        Admission {
            buckets: Vec::new(),
            in_datagram: 0,
            per_input: (mtu / ALIVE_MIN_BYTES).max(1),
        }
    }

    /// A new datagram (or stream message) begins.
    pub(crate) fn begin_input(&mut self) {
        self.in_datagram = 0;
    }

    /// Whether `from` may introduce one more new member at `now`; takes a token if so.
    pub(crate) fn admit(&mut self, from: IpAddr, now: Timestamp) -> bool {
        if self.in_datagram >= self.per_input {
            return false;
        }
        let i = match self.buckets.iter().position(|b| b.host == from) {
            Some(i) => i,
            None => {
                let fresh = Bucket {
                    host: from,
                    tokens: SENDER_BURST,
                    at: now,
                };
                if self.buckets.len() < MAX_SENDERS {
                    self.buckets.push(fresh);
                    self.buckets.len() - 1
                } else {
                    let (i, _) = self
                        .buckets
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.at)
                        .expect("MAX_SENDERS > 0");
                    self.buckets[i] = fresh;
                    i
                }
            }
        };
        let b = &mut self.buckets[i];
        let micros = now.saturating_since(b.at).as_micros();
        let refill = micros.saturating_mul(SENDER_REFILL_PER_SEC as u128) / 1_000_000;
        if refill > 0 {
            let tokens = b.tokens as u128 + refill;
            if tokens >= SENDER_BURST as u128 {
                b.tokens = SENDER_BURST;
                b.at = now;
            } else {
                // Advance by exactly the time the new tokens stand for, so that frequent
                // calls do not lose the fractions.
                b.tokens = tokens as u32;
                let spent = refill * 1_000_000 / SENDER_REFILL_PER_SEC as u128;
                b.at = b.at + std::time::Duration::from_micros(spent as u64);
            }
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        self.in_datagram += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn one_datagram_introduces_a_bounded_number() {
        let mut a = Admission::new(512);
        a.begin_input();
        let t = Timestamp::ZERO;
        let admitted = (0..100).filter(|_| a.admit(ip(1), t)).count();
        assert_eq!(admitted, 512 / ALIVE_MIN_BYTES);
        a.begin_input();
        assert!(a.admit(ip(1), t), "the next datagram starts afresh");
    }

    #[test]
    fn one_host_introduces_a_burst_then_at_the_refill_rate() {
        let mut a = Admission::new(512);
        let t = Timestamp::ZERO;
        let mut admitted = 0;
        for _ in 0..100 {
            a.begin_input();
            admitted += (0..64).filter(|_| a.admit(ip(1), t)).count();
        }
        assert_eq!(admitted, SENDER_BURST as usize);
        // Another host is not affected.
        a.begin_input();
        assert!(a.admit(ip(2), t));
        // A second later, a second's worth more.
        let later = t + Duration::from_secs(1);
        let mut more = 0;
        for _ in 0..10 {
            a.begin_input();
            more += (0..64).filter(|_| a.admit(ip(1), later)).count();
        }
        assert_eq!(more, SENDER_REFILL_PER_SEC as usize);
        // Asked every millisecond, a bucket still refills at the stated rate.
        let mut a = Admission::new(512);
        let mut t = Timestamp::ZERO;
        let mut admitted = 0;
        for _ in 0..2000 {
            a.begin_input();
            admitted += (0..64).filter(|_| a.admit(ip(1), t)).count();
            t = t + Duration::from_millis(1);
        }
        let expected = SENDER_BURST as usize + 2 * SENDER_REFILL_PER_SEC as usize;
        assert!(admitted.abs_diff(expected) <= 2, "{admitted} vs {expected}");
    }

    #[test]
    fn the_bucket_table_is_bounded() {
        let mut a = Admission::new(512);
        for n in 0..100u8 {
            a.begin_input();
            assert!(a.admit(ip(n), Timestamp::from_millis(n as u64)));
        }
        assert_eq!(a.buckets.len(), MAX_SENDERS);
    }
}
