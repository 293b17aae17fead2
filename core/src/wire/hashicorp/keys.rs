//! Serf's key-management internal queries on the HashiCorp profile: what `serf keys
//! -list/-install/-use/-remove` (or a node's own key operation) asks every member, how a
//! member answers, and how the asker reads the answers. The query names
//! are Serf's (`_serf_list-keys`, `_serf_install-key`, `_serf_use-key`, `_serf_remove-key`);
//! the three changing ones carry Serf's key request (`[type 7][msgpack {Key: raw bytes}]`),
//! and every answer is Serf's key response (`[type 8][msgpack {Keys, Message, PrimaryKey,
//! Result}]`, keys in standard base64). A member acts on its own keyring: install adds a
//! secondary key (installing a held key succeeds), use makes an installed key the primary,
//! remove drops a secondary key (never the primary), list names every key and the primary.
//! Anything it cannot do is an answer with `Result` false and a message saying why; nothing
//! here panics on a hostile request. The query and its answer travel sealed like everything
//! else when the cluster is encrypted (memberlist seals the datagrams).

use bytes::Bytes;

use super::serf::{KeyRequest, KeyResponse, SerfMsg};
use crate::keyring::{KeyOp, Security};

/// The prefix of Serf's internal queries.
const PREFIX: &str = "_serf_";

/// Serf's key operation named `name` (its query name after [`PREFIX`]).
fn op_from_name(name: &str) -> Option<KeyOp> {
    Some(match name.strip_prefix(PREFIX)? {
        "list-keys" => KeyOp::List,
        "install-key" => KeyOp::Install,
        "use-key" => KeyOp::Use,
        "remove-key" => KeyOp::Remove,
        _ => return None,
    })
}

/// The query a node asks to run `op` with `key` cluster-wide, as `serf keys` does: Serf's
/// query name and its payload (the key request; empty for a list). The key travels as Serf
/// sends it, protected by memberlist's encryption of the query (a node asks only while it
/// seals what it sends).
pub(crate) fn key_request(op: KeyOp, key: &[u8]) -> (&'static str, Bytes) {
    let name = match op {
        KeyOp::Install => "_serf_install-key",
        KeyOp::Use => "_serf_use-key",
        KeyOp::Remove => "_serf_remove-key",
        KeyOp::List => return ("_serf_list-keys", Bytes::new()),
    };
    let req = SerfMsg::KeyRequest(KeyRequest {
        key: Some(key.to_vec()),
    });
    (name, Bytes::from(req.encode()))
}

/// A member's answer to a key query, read: its keys (the primary first; for a list) or why
/// it failed.
pub(crate) fn read_key_answer(payload: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let Ok(SerfMsg::KeyResponse(r)) = SerfMsg::decode(payload) else {
        return Err("unreadable answer".into());
    };
    if !r.result {
        return Err(if r.message.is_empty() {
            "failed".into()
        } else {
            r.message
        });
    }
    let mut keys = Vec::new();
    if !r.primary_key.is_empty() {
        keys.push(unbase64(&r.primary_key).ok_or("a key that is not base64")?);
    }
    for k in r.keys.unwrap_or_default() {
        let k = unbase64(&k).ok_or("a key that is not base64")?;
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    Ok(keys)
}

/// Whether a query named `name` is one of Serf's key operations (answered by the keyring,
/// never surfaced to the application).
pub(crate) fn is_key_query(name: &str) -> bool {
    op_from_name(name).is_some()
}

/// Carry out Serf's key operation `name` with `payload` on this node's keyring: the answer's
/// payload (Serf's key response) and whether the keyring changed.
pub(crate) fn answer_key_query(
    sec: Option<&mut Security>,
    name: &str,
    payload: &[u8],
) -> (Bytes, bool) {
    let Some(op) = op_from_name(name) else {
        return (failure("unknown key operation"), false);
    };
    let Some(sec) = sec.filter(|s| s.keyring.is_some()) else {
        return (failure("encryption is not enabled on this member"), false);
    };
    if let (KeyOp::List, Some(ring)) = (op, &sec.keyring) {
        let resp = KeyResponse {
            result: true,
            message: String::new(),
            keys: Some(ring.keys().map(base64).collect()),
            primary_key: base64(ring.primary()),
        };
        return (Bytes::from(SerfMsg::KeyResponse(resp).encode()), false);
    }
    let key = match SerfMsg::decode(payload) {
        Ok(SerfMsg::KeyRequest(r)) => r.key.unwrap_or_default(),
        _ => return (failure("the key request does not decode"), false),
    };
    match sec.apply_key_op(op, &key) {
        Ok(()) => {
            tracing::debug!(?op, "keyring changed by Serf's key query");
            let resp = KeyResponse {
                result: true,
                ..KeyResponse::default()
            };
            (Bytes::from(SerfMsg::KeyResponse(resp).encode()), true)
        }
        Err(e) => (failure(&e.to_string()), false),
    }
}

/// A failed key response saying `why`.
fn failure(why: &str) -> Bytes {
    let resp = KeyResponse {
        result: false,
        message: why.to_string(),
        ..KeyResponse::default()
    };
    Bytes::from(SerfMsg::KeyResponse(resp).encode())
}

/// Standard base64 with padding (how Serf names keys).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding required) back to bytes; `None` when it is not.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, quad) in b.chunks(4).enumerate() {
        let last = i + 1 == b.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::Keyring;

    fn security(keys: &[&[u8]]) -> Security {
        let mut s = Security::new(&[1; 32], &[1, 0]);
        s.keyring = Some(Keyring::from_keys(keys).unwrap());
        s
    }

    fn response(payload: &[u8]) -> KeyResponse {
        match SerfMsg::decode(payload) {
            Ok(SerfMsg::KeyResponse(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn request(key: &[u8]) -> Vec<u8> {
        SerfMsg::KeyRequest(KeyRequest {
            key: Some(key.to_vec()),
        })
        .encode()
    }

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        let k: Vec<u8> = (1..=32).collect();
        assert_eq!(base64(&k), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff; 16]), "/////////////////////w==");
        for len in 0..40u8 {
            let b: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&b)), Some(b));
        }
        for bad in ["A", "A===", "A=AA", "AA=A", "AAA*", "AA==AAAA"] {
            assert_eq!(unbase64(bad), None, "{bad}");
        }
    }

    #[test]
    fn our_requests_are_answered_and_the_answers_read() {
        let k1: Vec<u8> = (1..=32).collect();
        let k2 = [7u8; 16];
        let mut sec = security(&[&k1]);
        let (name, payload) = key_request(KeyOp::Install, &k2);
        let (answer, changed) = answer_key_query(Some(&mut sec), name, &payload);
        assert!(changed);
        assert_eq!(read_key_answer(&answer), Ok(Vec::new()));
        let (name, payload) = key_request(KeyOp::List, &[]);
        let (answer, _) = answer_key_query(Some(&mut sec), name, &payload);
        assert_eq!(read_key_answer(&answer), Ok(vec![k1.clone(), k2.to_vec()]));
        let (name, payload) = key_request(KeyOp::Remove, &k1);
        let (answer, changed) = answer_key_query(Some(&mut sec), name, &payload);
        assert!(!changed);
        assert!(read_key_answer(&answer).is_err(), "the primary stays");
        assert!(read_key_answer(b"garbage").is_err());
    }

    #[test]
    fn serfs_key_operations_act_on_the_keyring_and_answer_as_serf() {
        let k1: Vec<u8> = (1..=32).collect();
        let k2 = [7u8; 16];
        let mut sec = security(&[&k1]);
        let (p, changed) = answer_key_query(Some(&mut sec), "_serf_list-keys", b"");
        let r = response(&p);
        assert!(r.result && !changed);
        assert_eq!(r.keys, Some(vec![base64(&k1)]));
        assert_eq!(r.primary_key, base64(&k1));
        // install, use, remove the old one.
        for (name, key) in [
            ("_serf_install-key", &k2[..]),
            ("_serf_use-key", &k2[..]),
            ("_serf_remove-key", &k1[..]),
        ] {
            let (p, changed) = answer_key_query(Some(&mut sec), name, &request(key));
            assert!(response(&p).result && changed, "{name}");
        }
        let ring = sec.keyring.as_ref().unwrap();
        assert_eq!(ring.keys().collect::<Vec<_>>(), vec![&k2[..]]);
        assert_eq!(sec.version, 3);
        // Refusals: the primary, an unknown key, a bad length, garbage, no keyring.
        for (name, payload) in [
            ("_serf_remove-key", request(&k2)),
            ("_serf_use-key", request(&k1)),
            ("_serf_install-key", request(&[1; 5])),
            ("_serf_install-key", vec![0xc1, 2, 3]),
        ] {
            let (p, changed) = answer_key_query(Some(&mut sec), name, &payload);
            let r = response(&p);
            assert!(!r.result && !r.message.is_empty() && !changed, "{name}");
        }
        assert_eq!(sec.version, 3);
        let (p, _) = answer_key_query(None, "_serf_list-keys", b"");
        assert!(!response(&p).result);
        assert!(is_key_query("_serf_use-key") && !is_key_query("_serf_conflict"));
    }

    /// The encrypted capture's answer to `serf keys -list` decodes to what ours says.
    #[test]
    fn our_list_answer_has_the_captured_shape() {
        let k1: Vec<u8> = (1..=32).collect();
        let mut sec = security(&[&k1]);
        let (p, _) = answer_key_query(Some(&mut sec), "_serf_list-keys", b"");
        let back = SerfMsg::decode(&p).unwrap();
        assert_eq!(back.encode(), p.to_vec(), "re-encodes byte for byte");
        let SerfMsg::KeyResponse(r) = back else {
            panic!()
        };
        assert_eq!(
            r.primary_key,
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
        );
    }
}
