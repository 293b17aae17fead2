//! memberlist's encryption format (`security.go`), without any key management: this module
//! owns how one sealed datagram or stream message is laid out, sealed and opened — with given
//! raw keys (checked against the captures) or with a node's [`Keyring`] (its ciphers expanded
//! once; the same layout, the same bytes). When to seal and which flags hold belong to the
//! node (`keyring::Security`).
//!
//! A sealed message is `[encryption version][nonce: 12][AES-GCM ciphertext and 16-byte tag]`,
//! the key 16, 24 or 32 bytes (AES-128/192/256). Version 1 seals the message as is; version 0
//! (memberlist protocol 1) pads it with PKCS#7 to the AES block size first. A datagram is
//! sealed whole (no associated data, no type byte in front: the receiver's configuration says
//! it is sealed); a stream message is `[10][length: u32 big-endian][sealed]`, the five header
//! bytes being the associated data. Nonces come from the caller (the core takes no randomness
//! of its own).

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce};

use super::memberlist::MsgType;
use super::{HcError, MAX_PAYLOAD};
use crate::keyring::Keyring;

/// Bytes of a nonce.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of a GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a version-1 seal adds: version, nonce, tag.
pub(crate) const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

fn check_key(key: &[u8]) -> Result<(), HcError> {
    match key.len() {
        16 | 24 | 32 => Ok(()),
        n => Err(HcError::BadKeyLength(n)),
    }
}

/// Run AES-GCM `seal` (`true`) or `open` with `key` (checked to be 16, 24 or 32 bytes).
fn gcm(key: &[u8], seal: bool, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, HcError> {
    check_key(key)?;
    let nonce = Nonce::<U12>::from_slice(nonce);
    let p = Payload { msg, aad };
    let bad = |_| HcError::Unopened;
    let r = match key.len() {
        16 => {
            let c = Aes128Gcm::new_from_slice(key).map_err(|_| HcError::BadKeyLength(16))?;
            if seal {
                c.encrypt(nonce, p)
            } else {
                c.decrypt(nonce, p)
            }
        }
        24 => {
            let c = AesGcm::<Aes192, U12>::new_from_slice(key)
                .map_err(|_| HcError::BadKeyLength(24))?;
            if seal {
                c.encrypt(nonce, p)
            } else {
                c.decrypt(nonce, p)
            }
        }
        _ => {
            let c = Aes256Gcm::new_from_slice(key).map_err(|_| HcError::BadKeyLength(32))?;
            if seal {
                c.encrypt(nonce, p)
            } else {
                c.decrypt(nonce, p)
            }
        }
    };
    r.map_err(bad)
}

/// Seal `plain` with encryption version 1 under `key` and `nonce`, `aad` authenticated.
pub(crate) fn seal(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, HcError> {
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
    out.push(1);
    out.extend_from_slice(&nonce);
    out.extend(gcm(key, true, &nonce, plain, aad)?);
    Ok(out)
}

/// Seal `plain` with encryption version 1 under `ring`'s primary key and `nonce`, `aad`
/// authenticated (the bytes [`seal`] gives with that key).
pub(crate) fn seal_with(
    ring: &Keyring,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_OVERHEAD + plain.len());
    out.push(1);
    ring.seal_into(&nonce, aad, plain, &mut out);
    out
}

/// Open a sealed message with the first of `keys` that opens it (versions 0 and 1).
pub(crate) fn open(keys: &[&[u8]], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HcError> {
    open_by(sealed, |rest| {
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        keys.iter()
            .find_map(|key| gcm(key, false, nonce, ct, aad).ok())
    })
}

/// Open a sealed message with any key of `ring` (the primary first; versions 0 and 1).
pub(crate) fn open_with(ring: &Keyring, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HcError> {
    open_by(sealed, |rest| {
        let mut out = Vec::new();
        ring.open_into(aad, rest, &mut out).then_some(out)
    })
}

/// The layout of a sealed message around `attempt`, which opens what follows the version byte
/// (nonce, ciphertext, tag) or says no key does: the version checked first, version 0's
/// padding last.
fn open_by(
    sealed: &[u8],
    attempt: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, HcError> {
    let (&vsn, rest) = sealed.split_first().ok_or(HcError::Empty)?;
    if vsn > 1 {
        return Err(HcError::UnknownEncryption(vsn));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(HcError::Truncated);
    }
    let mut plain = attempt(rest).ok_or(HcError::Unopened)?;
    if vsn == 0 {
        // PKCS#7: the last byte says how many padding bytes (1..=16) there are.
        let pad = usize::from(*plain.last().ok_or(HcError::BadPadding)?);
        if pad == 0 || pad > 16 || pad > plain.len() {
            return Err(HcError::BadPadding);
        }
        plain.truncate(plain.len() - pad);
    }
    Ok(plain)
}

/// The five header bytes of a sealed stream message whose sealed part is `sealed_len` bytes.
fn stream_header(sealed_len: usize) -> Result<[u8; 5], HcError> {
    let len = u32::try_from(sealed_len)
        .ok()
        .filter(|&l| l as usize <= MAX_PAYLOAD)
        .ok_or(HcError::TooLong {
            field: "encrypted stream",
            len: sealed_len,
            max: MAX_PAYLOAD,
        })?;
    let mut header = [MsgType::Encrypt as u8, 0, 0, 0, 0];
    header[1..].copy_from_slice(&len.to_be_bytes());
    Ok(header)
}

/// Seal a stream message: `[10][length][sealed]`, the header authenticated.
pub(crate) fn seal_stream(
    key: &[u8],
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
) -> Result<Vec<u8>, HcError> {
    let header = stream_header(SEAL_OVERHEAD + plain.len())?;
    let mut out = header.to_vec();
    out.extend(seal(key, nonce, plain, &header)?);
    Ok(out)
}

/// [`seal_stream`] under `ring`'s primary key.
pub(crate) fn seal_stream_with(
    ring: &Keyring,
    nonce: [u8; NONCE_LEN],
    plain: &[u8],
) -> Result<Vec<u8>, HcError> {
    let header = stream_header(SEAL_OVERHEAD + plain.len())?;
    let mut out = header.to_vec();
    out.extend(seal_with(ring, nonce, plain, &header));
    Ok(out)
}

/// Open a sealed stream message from the front of `buf`: the plaintext (a stream message,
/// starting with its type byte) and the bytes taken. [`HcError::Truncated`] until the whole
/// sealed message has arrived (the declared length is bounded by [`MAX_PAYLOAD`] first).
pub(crate) fn open_stream(keys: &[&[u8]], buf: &[u8]) -> Result<(Vec<u8>, usize), HcError> {
    let (header, sealed) = split_stream(buf)?;
    Ok((open(keys, sealed, header)?, 5 + sealed.len()))
}

/// [`open_stream`] with any key of `ring`.
pub(crate) fn open_stream_with(ring: &Keyring, buf: &[u8]) -> Result<(Vec<u8>, usize), HcError> {
    let (header, sealed) = split_stream(buf)?;
    Ok((open_with(ring, sealed, header)?, 5 + sealed.len()))
}

/// A sealed stream message at the front of `buf`: its header and its sealed part.
fn split_stream(buf: &[u8]) -> Result<(&[u8], &[u8]), HcError> {
    let header = buf.get(..5).ok_or(HcError::Truncated)?;
    if header[0] != MsgType::Encrypt as u8 {
        return Err(HcError::Misplaced(header[0]));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(HcError::TooLong {
            field: "encrypted stream",
            len,
            max: MAX_PAYLOAD,
        });
    }
    let sealed = buf.get(5..5 + len).ok_or(HcError::Truncated)?;
    Ok((header, sealed))
}
