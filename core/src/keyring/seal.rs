//! A node's security state: its keyring (if any), the rolling-adoption flags, the nonce source
//! seeded from the driver's entropy, and the sealing and opening of whole datagrams and frames
//! in the sealed envelope (see the module docs of [`super`]); plus the refusal log.

use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{Keyring, NONCE_LEN, SEALED_VERSION, SEAL_OVERHEAD};
use crate::time::Timestamp;
use crate::wire::hashicorp::{self, HcError};
use crate::wire::FRAME_HEADER_LEN;

/// Nonces: a random 64-bit prefix from a ChaCha20 CSPRNG seeded with the driver's entropy,
/// then a 32-bit counter; a fresh prefix when the counter has used every value (see the
/// module docs of [`super`] for why).
#[derive(Clone)]
struct NonceSource {
    rng: ChaCha20Rng,
    prefix: [u8; 8],
    counter: u32,
}

impl NonceSource {
    fn new(entropy: &[u8; 32]) -> NonceSource {
        let mut rng = ChaCha20Rng::from_seed(*entropy);
        let prefix = rng.random();
        NonceSource {
            rng,
            prefix,
            counter: 0,
        }
    }

    fn next(&mut self) -> [u8; NONCE_LEN] {
        let mut n = [0; NONCE_LEN];
        n[..8].copy_from_slice(&self.prefix);
        n[8..].copy_from_slice(&self.counter.to_be_bytes());
        if self.counter == u32::MAX {
            self.prefix = self.rng.random();
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        n
    }
}

/// Why an incoming datagram or frame was refused before decoding (each has its counter in
/// [`crate::Stats`] and its [`crate::InputError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Sealed, and no key of the keyring opens it.
    NoKey,
    /// It carries another cluster label.
    Label,
    /// Plaintext, while this node requires sealed input.
    Plaintext,
    /// Sealed, while this node has no keyring.
    Unexpected,
    /// Sealed, and shorter than its header, nonce and tag.
    Truncated,
    /// Not a valid message once opened (or plaintext that does not decode).
    Undecodable,
}

impl Refusal {
    const ALL: usize = 6;

    fn index(self) -> usize {
        self as usize
    }

    fn cause(self) -> &'static str {
        match self {
            Refusal::NoKey => "no key of the keyring opens it",
            Refusal::Label => "another cluster label",
            Refusal::Plaintext => "plaintext while encryption is required",
            Refusal::Unexpected => "encrypted while no keyring is configured",
            Refusal::Truncated => "truncated sealed message",
            Refusal::Undecodable => "undecodable or invalid",
        }
    }
}

/// At most one debug line per refusal cause per second of the node's time, with the count of
/// the refusals not logged since.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefusalLog {
    last: [Option<Timestamp>; Refusal::ALL],
    suppressed: [u64; Refusal::ALL],
    /// Lines logged per cause.
    logged: [u64; Refusal::ALL],
}

impl RefusalLog {
    pub(crate) fn note(&mut self, now: Timestamp, r: Refusal, from: SocketAddr) {
        let i = r.index();
        let due = self.last[i].is_none_or(|t| now.saturating_since(t) >= Duration::from_secs(1));
        if !due {
            self.suppressed[i] += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed[i]);
        self.last[i] = Some(now);
        self.logged[i] += 1;
        tracing::debug!(%from, cause = r.cause(), suppressed, "refused a message");
    }
}

#[cfg(test)]
impl RefusalLog {
    /// Lines logged for `r` so far.
    pub(crate) fn logged(&self, r: Refusal) -> u64 {
        self.logged[r.index()]
    }
}

/// The nonce source, for tests.
#[cfg(test)]
pub(crate) struct NonceSourceProbe(NonceSource);

#[cfg(test)]
impl NonceSourceProbe {
    pub(crate) fn new() -> NonceSourceProbe {
        NonceSourceProbe(NonceSource::new(&[7; 32]))
    }
    pub(crate) fn next(&mut self) -> [u8; NONCE_LEN] {
        self.0.next()
    }
    pub(crate) fn set_counter(&mut self, c: u32) {
        self.0.counter = c;
    }
}

/// What [`Security::open`] made of incoming bytes.
pub(crate) enum Opened<'a> {
    /// Plaintext: check the envelope as without a keyring.
    Plain(&'a [u8]),
    /// Sealed and opened: the bytes after the envelope (give the buffer back with
    /// [`Security::recycle`]).
    Sealed(Vec<u8>),
}

/// A node's keyring, flags and nonce source. Created the first time the node has a keyring
/// and kept from then on, so the nonce source is never rebuilt from the same entropy.
#[derive(Clone)]
pub(crate) struct Security {
    pub keyring: Option<Keyring>,
    /// Refuse plaintext input.
    pub verify_incoming: bool,
    /// Seal output.
    pub verify_outgoing: bool,
    /// Bumped at every change of the keyring (drivers write their keyring file on a change).
    pub version: u64,
    nonces: NonceSource,
    /// The sealed envelope header (also the associated data).
    header: Vec<u8>,
    /// A buffer for opened plaintext, reused.
    buf: Vec<u8>,
}

impl core::fmt::Debug for Security {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Security")
            .field("keyring", &self.keyring)
            .field("verify_incoming", &self.verify_incoming)
            .field("verify_outgoing", &self.verify_outgoing)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Security state for a node whose plaintext envelope header is `plain_header`.
    pub(crate) fn new(entropy: &[u8; 32], plain_header: &[u8]) -> Security {
        let mut header = plain_header.to_vec();
        header[0] = SEALED_VERSION;
        Security {
            keyring: None,
            verify_incoming: true,
            verify_outgoing: true,
            version: 0,
            nonces: NonceSource::new(entropy),
            header,
            buf: Vec::new(),
        }
    }

    /// Whether this node seals what it sends.
    pub(crate) fn sealing(&self) -> bool {
        self.keyring.is_some() && self.verify_outgoing
    }

    /// Bytes sealing adds to each datagram and frame now.
    pub(crate) fn overhead(&self) -> usize {
        if self.sealing() {
            SEAL_OVERHEAD
        } else {
            0
        }
    }

    /// Seal bytes `after` the plaintext envelope (`plain_header_len` bytes of `payload` are the
    /// plaintext header) into a sealed envelope, `prefix` zero bytes in front. `None` when not
    /// sealing.
    fn seal_after(&mut self, prefix: usize, plain: &[u8]) -> Option<Vec<u8>> {
        if !self.verify_outgoing {
            return None;
        }
        let ring = self.keyring.as_ref()?;
        let mut out = Vec::with_capacity(prefix + self.header.len() + SEAL_OVERHEAD + plain.len());
        out.resize(prefix, 0);
        out.extend_from_slice(&self.header);
        let nonce = self.nonces.next();
        ring.seal_into(&nonce, &self.header, plain, &mut out);
        Some(out)
    }

    /// A datagram (plaintext envelope of `header_len` bytes first) sealed, or `None` when not
    /// sealing.
    pub(crate) fn seal_datagram(&mut self, payload: &[u8], header_len: usize) -> Option<Vec<u8>> {
        self.seal_after(0, payload.get(header_len..)?)
    }

    /// A stream frame (length prefix, then a plaintext envelope of `header_len` bytes) sealed
    /// and framed again, or `None` when not sealing.
    pub(crate) fn seal_frame(&mut self, frame: &[u8], header_len: usize) -> Option<Vec<u8>> {
        let mut out = self.seal_after(
            FRAME_HEADER_LEN,
            frame.get(FRAME_HEADER_LEN + header_len..)?,
        )?;
        let len = (out.len() - FRAME_HEADER_LEN) as u32;
        out[..FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Some(out)
    }

    /// Seal an arbitrary payload (a key operation's secret) with the primary key under `aad`:
    /// `nonce ‖ ciphertext ‖ tag`; `None` without a keyring.
    pub(crate) fn seal_payload(&mut self, aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let ring = self.keyring.as_ref()?;
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
        let nonce = self.nonces.next();
        ring.seal_into(&nonce, aad, plain, &mut out);
        Some(out)
    }

    /// Open a payload from [`Security::seal_payload`] with any key of the keyring.
    pub(crate) fn open_payload(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let ring = self.keyring.as_ref()?;
        let mut out = Vec::new();
        ring.open_into(aad, sealed, &mut out).then_some(out)
    }

    /// Check incoming bytes against the keyring and flags: plaintext to be checked as without a
    /// keyring, the opened plaintext of a sealed envelope (the bytes after its header), or why
    /// it is refused. `label` is this node's cluster label.
    pub(crate) fn open<'a>(&mut self, data: &'a [u8], label: &[u8]) -> Result<Opened<'a>, Refusal> {
        if data.first() != Some(&SEALED_VERSION) {
            if self.keyring.is_some() && self.verify_incoming {
                return Err(Refusal::Plaintext);
            }
            return Ok(Opened::Plain(data));
        }
        let Some(ring) = self.keyring.as_ref() else {
            return Err(Refusal::Unexpected);
        };
        let (header, sealed) = split_sealed(data, label)?;
        let mut buf = std::mem::take(&mut self.buf);
        if ring.open_into(header, sealed, &mut buf) {
            Ok(Opened::Sealed(buf))
        } else {
            self.buf = buf;
            Err(Refusal::NoKey)
        }
    }

    /// HashiCorp profile: a datagram sealed whole in memberlist's format (encryption version
    /// 1, no associated data), or `None` when not sealing.
    pub(crate) fn hc_seal_datagram(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        if !self.verify_outgoing {
            return None;
        }
        let ring = self.keyring.as_ref()?;
        let nonce = self.nonces.next();
        Some(hashicorp::seal_with(ring, nonce, plain, &[]))
    }

    /// HashiCorp profile: a stream message sealed as memberlist frames it (`[10][length][sealed]`,
    /// the header authenticated), or `None` when not sealing; an error only for a message
    /// longer than memberlist accepts.
    pub(crate) fn hc_seal_stream(&mut self, plain: &[u8]) -> Option<Result<Vec<u8>, HcError>> {
        if !self.verify_outgoing {
            return None;
        }
        let ring = self.keyring.as_ref()?;
        let nonce = self.nonces.next();
        Some(hashicorp::seal_stream_with(ring, nonce, plain))
    }

    /// Give back the buffer of an [`Opened::Sealed`].
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        if buf.capacity() <= 64 * 1024 {
            self.buf = buf;
        }
    }
}

/// Split a sealed envelope into its header (the associated data) and the sealed bytes,
/// checking the label.
pub(crate) fn split_sealed<'a>(
    data: &'a [u8],
    label: &[u8],
) -> Result<(&'a [u8], &'a [u8]), Refusal> {
    let len = *data.get(1).ok_or(Refusal::Truncated)? as usize;
    let header_len = 2 + len;
    if data.len() < header_len {
        return Err(Refusal::Truncated);
    }
    let (header, sealed) = data.split_at(header_len);
    if &header[2..] != label {
        return Err(Refusal::Label);
    }
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Refusal::Truncated);
    }
    Ok((header, sealed))
}

/// The refusal of incoming bytes that a node without security state sees: sealed bytes are
/// unexpected, anything else goes on as plaintext.
pub(crate) fn refuse_without_keyring(data: &[u8]) -> Option<Refusal> {
    (data.first() == Some(&SEALED_VERSION)).then_some(Refusal::Unexpected)
}
