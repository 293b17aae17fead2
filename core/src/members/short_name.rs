//! [`ShortName`]: a member name as the member table stores it, in 16 bytes — up to 15 bytes
//! inline, a longer name behind one pointer. The table holds one per known member on every
//! node, so these 8 bytes less than [`Name`]'s 24 are a ninth of the record; an inline name
//! compares as two fixed-size words, with no call to `memcmp`; a lookup computes those words
//! from the name's bytes ([`InlineKey`]) and compares records against them.

use std::fmt;
use std::ops::Deref;

use crate::identity::Name;

/// The longest name kept inline.
const INLINE: usize = 15;

/// The length of an inline name. An enum rather than a `u8` so that its 240 unused values
/// can tell the two forms of [`ShortName`] apart without a separate tag byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
#[rustfmt::skip]
pub(crate) enum InlineLen { L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15 }

impl InlineLen {
    const ALL: [InlineLen; INLINE + 1] = [
        InlineLen::L0,
        InlineLen::L1,
        InlineLen::L2,
        InlineLen::L3,
        InlineLen::L4,
        InlineLen::L5,
        InlineLen::L6,
        InlineLen::L7,
        InlineLen::L8,
        InlineLen::L9,
        InlineLen::L10,
        InlineLen::L11,
        InlineLen::L12,
        InlineLen::L13,
        InlineLen::L14,
        InlineLen::L15,
    ];
}

/// A member name in 16 bytes (see the module docs).
#[derive(Clone, Eq)]
pub(crate) enum ShortName {
    /// Up to 15 bytes, zero-padded (so equal names have equal padding).
    Inline(InlineLen, [u8; INLINE]),
    /// Longer names.
    Boxed(Box<Box<str>>),
}

impl ShortName {
    pub(crate) fn new(name: &str) -> ShortName {
        ShortName::inline(name).unwrap_or_else(|| ShortName::Boxed(Box::new(name.into())))
    }

    /// The inline form of `name`, if it is short enough (never allocates).
    pub(crate) fn inline(name: &str) -> Option<ShortName> {
        ShortName::inline_bytes(name.as_bytes())
    }

    /// [`ShortName::inline`] of a name in bytes (read back as a `str` only when the bytes
    /// came from one). Written as the two words comparisons read (the second overlaps the
    /// first by one byte, of the same value), each with one store, so that a comparison right
    /// after finds each word where one store put it.
    pub(crate) fn inline_bytes(s: &[u8]) -> Option<ShortName> {
        let key = InlineKey::new(s)?;
        let mut b = [0u8; INLINE];
        b[..8].copy_from_slice(&key.lo.to_le_bytes());
        b[INLINE - 8..].copy_from_slice(&key.hi.to_le_bytes());
        Some(ShortName::Inline(key.len, b))
    }

    /// Whether this is the inline name `key` stands for.
    pub(crate) fn matches(&self, key: &InlineKey) -> bool {
        match self {
            ShortName::Inline(len, b) => *len == key.len && words(b) == (key.lo, key.hi),
            ShortName::Boxed(_) => false,
        }
    }

    /// The byte that tells the two forms apart (for touching a record's first cache line).
    pub(crate) fn first_byte(&self) -> u8 {
        match self {
            ShortName::Inline(len, _) => *len as u8,
            ShortName::Boxed(_) => u8::MAX,
        }
    }

    /// The name's bytes (what the member index hashes).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            ShortName::Inline(len, bytes) => &bytes[..*len as usize],
            ShortName::Boxed(s) => s.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            ShortName::Inline(..) => std::str::from_utf8(self.bytes())
                .expect("an inline name is copied whole from a str"),
            ShortName::Boxed(s) => s,
        }
    }

    /// The name as the public [`Name`] type.
    pub(crate) fn to_name(&self) -> Name {
        Name::new(self.as_str())
    }
}

/// An inline name's bytes as two (overlapping) words, for a comparison without a loop.
fn words(b: &[u8; INLINE]) -> (u64, u64) {
    let lo: [u8; 8] = b[..8].try_into().expect("8 of 15 bytes");
    let hi: [u8; 8] = b[INLINE - 8..].try_into().expect("8 of 15 bytes");
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// What a lookup compares records against: a name of at most 15 bytes as [`words`] reads its
/// inline form, computed from the bytes directly. Building the zero-padded copy instead costs
/// a stall on every lookup: the processor cannot forward its overlapping stores to the word
/// loads that follow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InlineKey {
    len: InlineLen,
    lo: u64,
    hi: u64,
}

impl InlineKey {
    /// The key of `name`, if it is short enough to be stored inline.
    pub(crate) fn new(name: &[u8]) -> Option<InlineKey> {
        let len = name.len();
        if len > INLINE {
            return None;
        }
        let le8 = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let le4 = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
        let (lo, hi) = if len >= 8 {
            // The high word starts at byte 7: the last 8 bytes, shifted past those beyond
            // the name's end (zero in the padded form).
            (
                le8(&name[..8]),
                le8(&name[len - 8..]) >> (8 * (INLINE - len)),
            )
        } else if len >= 4 {
            (
                le4(&name[..4]) | le4(&name[len - 4..]) << (8 * (len - 4)),
                0,
            )
        } else {
            (name.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)), 0)
        };
        Some(InlineKey {
            len: InlineLen::ALL[len],
            lo,
            hi,
        })
    }
}

impl PartialEq for ShortName {
    #[inline]
    fn eq(&self, other: &ShortName) -> bool {
        match (self, other) {
            (ShortName::Inline(la, a), ShortName::Inline(lb, b)) => {
                la == lb && words(a) == words(b)
            }
            (ShortName::Boxed(a), ShortName::Boxed(b)) => a == b,
            _ => false,
        }
    }
}

impl std::hash::Hash for ShortName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.bytes());
    }
}

impl From<&str> for ShortName {
    fn from(name: &str) -> ShortName {
        ShortName::new(name)
    }
}

impl Deref for ShortName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ShortName {
    fn eq(&self, other: &str) -> bool {
        match (self, InlineKey::new(other.as_bytes())) {
            (ShortName::Inline(..), Some(key)) => self.matches(&key),
            (ShortName::Boxed(s), None) => ***s == *other,
            _ => false,
        }
    }
}

impl PartialEq<Name> for ShortName {
    fn eq(&self, other: &Name) -> bool {
        *self == **other
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly_the_inline_names_they_stand_for() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in 0..=INLINE {
            for _ in 0..200 {
                let name: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let key = InlineKey::new(&name).unwrap();
                assert!(
                    ShortName::inline_bytes(&name).unwrap().matches(&key),
                    "{name:?}"
                );
                // Any other name of any length, and a boxed name, do not match.
                let mut other = name.clone();
                match next() % 3 {
                    0 if len > 0 => other[next() as usize % len] ^= 1 + (next() % 255) as u8,
                    1 if len > 0 => {
                        other.pop();
                    }
                    _ => other.push(next() as u8),
                }
                if let Some(o) = ShortName::inline_bytes(&other) {
                    assert!(!o.matches(&key), "{other:?} matched {name:?}");
                }
            }
        }
        assert!(InlineKey::new(&[b'x'; INLINE + 1]).is_none());
        assert!(
            !ShortName::new("a-name-longer-than-fifteen").matches(&InlineKey::new(b"a").unwrap())
        );
    }

    #[test]
    fn sixteen_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<ShortName>(), 16);
        for s in [
            "",
            "a",
            "node-42",
            "exactly-15-byte",
            "sixteen-bytes-xx",
            "ünïcödé-名前",
            "a-much-longer-name.example.com",
        ] {
            let n = ShortName::new(s);
            assert_eq!((n.as_str(), n.bytes()), (s, s.as_bytes()));
            assert_eq!(n.to_name(), Name::new(s));
            assert!(n == *s && n == Name::new(s));
            assert_eq!(matches!(n, ShortName::Inline(..)), s.len() <= 15, "{s}");
        }
    }

    #[test]
    fn different_names_differ() {
        let names = [
            "",
            "a",
            "ab",
            "a\0",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefgi",
            "bbcdefgh",
            "exactly-15-byte",
            "exactly-15-bytf",
            "fxactly-15-byte",
        ];
        let long = ["sixteen-bytes-xx", "sixteen-bytes-xy"];
        for a in names.iter().chain(long.iter()) {
            for b in names.iter().chain(long.iter()) {
                assert_eq!(
                    ShortName::new(a) == ShortName::new(b),
                    a == b,
                    "{a:?} {b:?}"
                );
                assert_eq!(ShortName::new(a) == **b, a == b, "{a:?} {b:?}");
            }
        }
    }
}
