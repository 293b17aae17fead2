//! The `decode` target: arbitrary bytes into the wire decoder.
//!
//! The first byte picks a mode (low two bits) and the limits (bit 2: a cluster label; bit 3:
//! tight limits so validation is exercised); the rest is the input:
//! - mode 0: a datagram; mode 1: a stream frame body; mode 2: a raw byte stream cut into
//!   chunks and split by [`FrameDecoder`], each frame body decoded;
//! - mode 3: structure-aware: the rest builds messages with [`arbitrary`], which are encoded,
//!   decoded and compared.
//!
//! Checked: nothing panics; whatever decodes re-encodes and decodes to the same messages, and
//! the re-encoding is stable (encoding the decoded messages again gives the same bytes); the
//! decoder's fast path for alive messages agrees with the general decoder on every input;
//! encodable messages that pass validation always decode back to themselves, and those that
//! fail it never decode; the frame decoder returns exactly the bytes it was fed, in order.

use std::net::{SocketAddr, SocketAddrV6};

use arbitrary::{Arbitrary, Unstructured};
use rookery_core::fuzzing::{self, WireMessage};
use rookery_core::wire::{FrameDecoder, FRAME_HEADER_LEN};
use rookery_core::Config;

/// The configuration the decoder runs with, picked by the mode byte.
pub fn config(mode: u8) -> Config {
    let mut cfg = Config::local();
    if mode & 4 != 0 {
        cfg.label = Some("fz".into());
    }
    if mode & 8 != 0 {
        cfg.max_name_len = 8;
        cfg.meta_max_size = 32;
        cfg.max_members = 4;
        cfg.max_stream_message = 1024;
    }
    cfg
}

fn roundtrip_datagram(cfg: &Config, msgs: &[WireMessage]) {
    let label = cfg.label.as_deref();
    let bytes = fuzzing::encode_datagram(label, msgs);
    let again = fuzzing::decode_datagram(cfg, &bytes)
        .expect("re-encoded datagram decodes")
        .expect("re-encoded datagram has our label");
    assert_eq!(again, msgs, "datagram round trip changed the messages");
    assert_eq!(
        fuzzing::encode_datagram(label, &again),
        bytes,
        "datagram encoding is not stable"
    );
}

fn roundtrip_frame(cfg: &Config, msg: &WireMessage) {
    let label = cfg.label.as_deref();
    let body = fuzzing::encode_frame_body(label, msg);
    let again = fuzzing::decode_frame_body(cfg, &body)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame has our label");
    assert_eq!(&again, msg, "frame round trip changed the message");
    let frame = fuzzing::encode_frame(label, msg);
    assert_eq!(frame[FRAME_HEADER_LEN..], body[..]);
    assert_eq!(
        u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize,
        body.len()
    );
}

/// Run the `decode` target on one input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let cfg = config(mode);
    fuzzing::check_fast_path(rest);
    match mode & 3 {
        0 => {
            if let Ok(Some(msgs)) = fuzzing::decode_datagram(&cfg, rest) {
                assert!(!msgs.is_empty(), "a datagram decoded to no message");
                roundtrip_datagram(&cfg, &msgs);
            }
        }
        1 => {
            if let Ok(Some(msg)) = fuzzing::decode_frame_body(&cfg, rest) {
                roundtrip_frame(&cfg, &msg);
            }
        }
        2 => frame_stream(&cfg, rest),
        _ => structured(&cfg, rest),
    }
}

/// Feed `data` to a [`FrameDecoder`] in chunks whose sizes come from the data itself.
fn frame_stream(cfg: &Config, data: &[u8]) {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = chunk as usize % 64 + 1;
    let mut dec = FrameDecoder::new(cfg.max_stream_message);
    let mut fed = 0;
    let mut consumed = 0;
    for piece in data.chunks(chunk) {
        dec.push(piece);
        fed += piece.len();
        loop {
            match dec.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= cfg.max_stream_message);
                    let start = consumed + FRAME_HEADER_LEN;
                    assert_eq!(body[..], data[start..start + body.len()], "frame bytes");
                    consumed = start + body.len();
                    if let Ok(Some(msg)) = fuzzing::decode_frame_body(cfg, &body) {
                        roundtrip_frame(cfg, &msg);
                    }
                }
                Ok(None) => break,
                // A declared length above the limit: the connection would be closed.
                Err(_) => return,
            }
        }
        assert_eq!(dec.buffered(), fed - consumed, "buffered bytes");
    }
}

/// `addr` as the wire carries it: IPv6 flow info and scope id dropped.
pub fn wire_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
        v4 => v4,
    }
}

/// Build messages from the bytes, then check encoder and decoder agree about them.
fn structured(cfg: &Config, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mut msgs) = Vec::<WireMessage>::arbitrary(&mut u) else {
        return;
    };
    // The wire carries an IPv6 address as address and port only (serde's encoding): flow info
    // and scope id do not travel, so messages built with them cannot round-trip.
    for m in &mut msgs {
        m.map_addrs(wire_addr);
    }
    let valid = msgs.iter().all(|m| fuzzing::validate(cfg, m).is_ok());
    if !msgs.is_empty() && msgs.len() < 16_384 {
        let bytes = fuzzing::encode_datagram(cfg.label.as_deref(), &msgs);
        match fuzzing::decode_datagram(cfg, &bytes) {
            Ok(Some(got)) => {
                assert!(valid, "a message failing validation decoded");
                assert_eq!(got, msgs);
            }
            Ok(None) => panic!("our own label was not recognised"),
            Err(e) => assert!(!valid, "valid messages did not decode: {e}"),
        }
    }
    for m in &msgs {
        fuzzing::check_fast_path(&m.encode_body());
        let body = fuzzing::encode_frame_body(cfg.label.as_deref(), m);
        let ok = fuzzing::validate(cfg, m).is_ok();
        match fuzzing::decode_frame_body(cfg, &body) {
            Ok(Some(got)) => {
                assert!(ok, "a message failing validation decoded");
                assert_eq!(&got, m);
            }
            Ok(None) => panic!("our own label was not recognised"),
            Err(e) => assert!(!ok, "a valid message did not decode: {e}"),
        }
    }
}
