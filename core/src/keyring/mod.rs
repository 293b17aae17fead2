//! The keyring and sealing: AES-GCM keys (one primary, any number of secondaries), the sealed
//! envelope every datagram and frame body travels in when a keyring is configured, the nonce
//! source, rolling adoption (`gossip_verify_incoming` / `gossip_verify_outgoing`), the
//! rate-limited refusal log, and the cluster-wide key operations carried by internal queries
//! (`manager`).
//!
//! This module owns everything secret: no other part of the core sees a key. The ciphers are
//! RustCrypto's `aes-gcm` (no hand-written cryptography); the raw key bytes are zeroed when a
//! key is dropped (`zeroize`).
//!
//! # The sealed envelope
//!
//! A plaintext datagram or frame body starts with the envelope header
//! `[version = 1][label length][label]` (see [`crate::wire`]). A sealed one is
//!
//! ```text
//! [SEALED_VERSION = 0x81][label length][label][nonce: 12 bytes][AES-GCM ciphertext][tag: 16 bytes]
//! ```
//!
//! The plaintext is exactly what follows the plaintext header (a datagram's message count and
//! messages, or a frame's message). The associated data is the sealed header itself — the
//! sealed version byte and the label — so a message sealed for another cluster label never
//! opens here, and the version byte cannot be swapped. The label stays readable in front so
//! that a message for another cluster is refused as such (a clear "wrong label", not a vague
//! "no key"). The sealed version byte has its high bit set: it can never be taken for the
//! plaintext envelope's version, and its low bits leave room for a later format. Sealing adds
//! exactly [`SEAL_OVERHEAD`] (28) bytes; a node that seals reserves them when it packs a
//! datagram, so a sealed datagram still fits `Config::mtu`.
//!
//! # Nonces
//!
//! The node's seeded RNG is not the nonce source: a fixed seed (the simulator's, or a user's)
//! would repeat nonces after every restart, and every member of a cluster shares the key. The
//! driver hands the node 32 bytes of entropy at creation ([`crate::Node::with_entropy`]; OS
//! randomness in the real drivers, values derived from the node's seed in the simulator so
//! its traces stay reproducible). A node with a keyring and no entropy is refused with
//! [`crate::ConfigError::KeyringWithoutEntropy`].
//!
//! The construction: a ChaCha20 CSPRNG seeded with the entropy draws a random 64-bit prefix;
//! each nonce is that prefix followed by a 32-bit counter (big-endian), and when the counter
//! has used all 2³² values a fresh prefix is drawn. Two nonces of one node never repeat (the
//! counter never repeats under one prefix, and the CSPRNG's prefixes repeat with probability
//! 2⁻⁶⁴ per pair). Across nodes and boots, nonces can only collide when two prefixes do:
//! with P prefixes ever drawn under one key (one per boot per member, plus one per 2³²
//! messages) that is about P²/2⁶⁵ — for a million boots, 2⁻²⁶ — whereas fully random 96-bit
//! nonces (memberlist's) reach that bound after about 2³⁵ messages cluster-wide. The prefix
//! and counter cost nothing per message beyond an increment.
//!
//! # Rolling adoption
//!
//! As in memberlist: `gossip_verify_outgoing` seals what this node sends; `gossip_verify_incoming`
//! refuses plaintext. With a keyring and both off, a node reads both forms and sends plaintext;
//! a cluster moves to encryption node by node — install keyrings with both off, then turn
//! outgoing on everywhere, then incoming — and back the same way in reverse, without a false
//! failure (tested in the simulator). A node always opens sealed input when it has a keyring,
//! whatever the flags.

mod manager;
mod seal;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

pub(crate) use manager::{precheck, KeyManager, KEY_QUERY_PREFIX};
pub use manager::{KeyOp, KeyOpId, KeyOpResult};
#[cfg(feature = "arbitrary")]
pub(crate) use seal::split_sealed;
pub(crate) use seal::{refuse_without_keyring, Opened, Refusal, RefusalLog, Security};

/// The first byte of a sealed datagram or frame body (see the module docs): the high bit marks
/// a sealed envelope (the plaintext envelope's version is 1), the low bits name format 1.
pub const SEALED_VERSION: u8 = 0x81;
/// Length of an AES-GCM nonce, in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an AES-GCM authentication tag, in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes sealing adds to a datagram or frame body: the nonce and the tag (the sealed version
/// byte takes the place of the plaintext version byte).
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a key or a keyring change was refused. The keyring is unchanged in every case.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// A key is not 16, 24 or 32 bytes long (AES-128, AES-192 or AES-256).
    BadKeyLength(usize),
    /// A keyring needs at least one key (its primary).
    Empty,
    /// The same key was listed twice.
    Duplicate,
    /// The key is not in the keyring.
    UnknownKey,
    /// The primary key cannot be removed: make another key primary first.
    RemovePrimary,
}

impl core::fmt::Display for KeyringError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            KeyringError::BadKeyLength(n) => {
                write!(f, "key of {n} bytes; keys are 16, 24 or 32 bytes")
            }
            KeyringError::Empty => write!(f, "a keyring needs a primary key"),
            KeyringError::Duplicate => write!(f, "the same key is listed twice"),
            KeyringError::UnknownKey => write!(f, "key not in the keyring"),
            KeyringError::RemovePrimary => write!(f, "the primary key cannot be removed"),
        }
    }
}

impl std::error::Error for KeyringError {}

/// One key's cipher, its key schedule expanded once.
#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<AesGcm<Aes192, U12>>),
    A256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Cipher, KeyringError> {
        let bad = |_| KeyringError::BadKeyLength(key.len());
        Ok(match key.len() {
            16 => Cipher::A128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
            24 => Cipher::A192(Box::new(
                AesGcm::<Aes192, U12>::new_from_slice(key).map_err(bad)?,
            )),
            32 => Cipher::A256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            n => return Err(KeyringError::BadKeyLength(n)),
        })
    }

    /// Encrypt `buf` in place; the tag.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Option<Tag> {
        let nonce = Nonce::<U12>::from_slice(nonce);
        match self {
            Cipher::A128(c) => c.encrypt_in_place_detached(nonce, aad, buf),
            Cipher::A192(c) => c.encrypt_in_place_detached(nonce, aad, buf),
            Cipher::A256(c) => c.encrypt_in_place_detached(nonce, aad, buf),
        }
        .ok()
    }

    /// Decrypt `buf` in place; false (and `buf` garbage) when the tag does not verify.
    fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let nonce = Nonce::<U12>::from_slice(nonce);
        let tag = Tag::from_slice(tag);
        match self {
            Cipher::A128(c) => c.decrypt_in_place_detached(nonce, aad, buf, tag),
            Cipher::A192(c) => c.decrypt_in_place_detached(nonce, aad, buf, tag),
            Cipher::A256(c) => c.decrypt_in_place_detached(nonce, aad, buf, tag),
        }
        .is_ok()
    }
}

/// One key: its bytes (zeroed on drop) and its cipher.
#[derive(Clone)]
struct Entry {
    bytes: Zeroizing<Vec<u8>>,
    cipher: Cipher,
}

impl Entry {
    fn new(key: &[u8]) -> Result<Entry, KeyringError> {
        Ok(Entry {
            cipher: Cipher::new(key)?,
            bytes: Zeroizing::new(key.to_vec()),
        })
    }
}

/// AES-GCM keys: one primary key, which seals everything this node sends, and any number of
/// secondary keys, which (with the primary) open what it receives. Keys are 16, 24 or 32 bytes
/// (AES-128, AES-192, AES-256), as Serf accepts. The key bytes are zeroed on drop; `Debug`
/// shows only how many keys there are.
///
/// ```
/// use rookery_core::{Keyring, KeyringError};
///
/// let mut ring = Keyring::new(&[1; 32]).unwrap();
/// ring.install(&[2; 16]).unwrap(); // a secondary: opens, never seals
/// ring.use_key(&[2; 16]).unwrap(); // now the primary
/// assert_eq!(ring.remove(&[2; 16]), Err(KeyringError::RemovePrimary));
/// ring.remove(&[1; 32]).unwrap();
/// assert_eq!(ring.keys().collect::<Vec<_>>(), vec![&[2u8; 16][..]]);
/// ```
#[derive(Clone)]
pub struct Keyring {
    /// The primary first.
    keys: Vec<Entry>,
}

impl core::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Keyring) -> bool {
        self.keys().eq(other.keys())
    }
}

impl Eq for Keyring {}

impl Keyring {
    /// A keyring holding only `primary`.
    pub fn new(primary: &[u8]) -> Result<Keyring, KeyringError> {
        Ok(Keyring {
            keys: vec![Entry::new(primary)?],
        })
    }

    /// A keyring from a list of keys, the primary first (the order of a keyring file).
    pub fn from_keys<K: AsRef<[u8]>>(keys: &[K]) -> Result<Keyring, KeyringError> {
        let (primary, rest) = keys.split_first().ok_or(KeyringError::Empty)?;
        let mut ring = Keyring::new(primary.as_ref())?;
        for k in rest {
            if ring.contains(k.as_ref()) {
                return Err(KeyringError::Duplicate);
            }
            ring.keys.push(Entry::new(k.as_ref())?);
        }
        Ok(ring)
    }

    /// Whether `key` is in the keyring.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|e| e.bytes.as_slice() == key)
    }

    /// Add `key` as a secondary key (it opens incoming messages from now on). Installing a key
    /// already held changes nothing and succeeds, so a cluster-wide install can be repeated.
    pub fn install(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        let entry = Entry::new(key)?;
        if !self.contains(key) {
            self.keys.push(entry);
        }
        Ok(())
    }

    /// Make `key`, which must be installed, the primary key (the former primary stays as a
    /// secondary).
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        let i = self.position(key).ok_or(KeyringError::UnknownKey)?;
        let e = self.keys.remove(i);
        self.keys.insert(0, e);
        Ok(())
    }

    /// Remove a secondary key. The primary key cannot be removed.
    pub fn remove(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        match self.position(key) {
            None => Err(KeyringError::UnknownKey),
            Some(0) => Err(KeyringError::RemovePrimary),
            Some(i) => {
                self.keys.remove(i);
                Ok(())
            }
        }
    }

    /// The primary key's bytes.
    pub fn primary(&self) -> &[u8] {
        &self.keys[0].bytes
    }

    /// Every key's bytes, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.keys.iter().map(|e| e.bytes.as_slice())
    }

    /// Number of keys (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a keyring holds at least its primary key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|e| e.bytes.as_slice() == key)
    }

    /// Seal `plain` with the primary key under `aad` and `nonce`: `nonce ‖ ciphertext ‖ tag`
    /// appended to `out`.
    pub(crate) fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plain: &[u8],
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        match self.keys[0].cipher.seal(nonce, aad, &mut out[start..]) {
            Some(tag) => out.extend_from_slice(&tag),
            // AES-GCM refuses only inputs beyond 64 GiB, which no frame reaches; leave nothing
            // half-sealed behind should it happen.
            None => out.truncate(start - NONCE_LEN),
        }
    }

    /// Open `sealed` (`nonce ‖ ciphertext ‖ tag`) under `aad` with the primary, then each
    /// secondary key: the plaintext is left in `out` (cleared first). False when no key opens
    /// it or it is shorter than a nonce and a tag.
    pub(crate) fn open_into(&self, aad: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> bool {
        if sealed.len() < SEAL_OVERHEAD {
            return false;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        for e in &self.keys {
            out.clear();
            out.extend_from_slice(ct);
            if e.cipher.open(nonce, aad, out, tag) {
                return true;
            }
        }
        out.clear();
        false
    }
}

#[cfg(test)]
mod tests;
