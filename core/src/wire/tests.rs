//! The wire format's round trips, limits and damaged-input tests.

use super::*;
use crate::identity::Tags;
use bytes::Bytes;
use std::net::SocketAddr;

fn limits() -> Limits {
    Limits {
        max_members: 1000,
        ..Limits::from_config(&crate::Config::lan())
    }
}

fn sample() -> Vec<Message> {
    let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
    let mut tags = Tags::new();
    tags.insert("role".into(), "db".into());
    vec![
        Message::Ping {
            seq: 7,
            target: "b".into(),
            digest: None,
        },
        Message::Ack {
            seq: 7,
            digest: Some(Digest {
                hash: [1, 2, 3, 4],
                live: 12,
                events: 3,
                stable: true,
            }),
        },
        Message::Nack { seq: 9 },
        Message::CheckPing {
            seq: 8,
            target: "b".into(),
        },
        Message::IndirectPing {
            seq: 1,
            target: "c".into(),
            addr,
        },
        Message::StreamPing {
            seq: 2,
            target: "c".into(),
            reply_to: addr,
        },
        Message::Alive(Alive {
            incarnation: 3,
            name: "n1".into(),
            addr,
            tags: tags.clone(),
            ltime: 9,
        }),
        Message::Suspect(Accusation {
            incarnation: 3,
            name: "n1".into(),
            from: "n2".into(),
        }),
        Message::Dead(Accusation {
            incarnation: 4,
            name: "n1".into(),
            from: "n1".into(),
        }),
        Message::PushPull(Box::new(PushPull {
            id: 5,
            request: true,
            join: true,
            reply_to: addr,
            sender: "n2".into(),
            states: vec![PushState {
                name: "n1".into(),
                addr,
                incarnation: 1,
                status: WireStatus::Suspect,
                tags,
                ltime: 3,
                accuser: Some("n3".into()),
            }],
            member_ltime: 4,
            event_ltime: 5,
            query_ltime: 6,
            events: vec![UserEventMsg {
                ltime: 2,
                name: "deploy".into(),
                payload: Bytes::from_static(b"v2"),
                coalesce: true,
            }],
        })),
    ]
}

#[test]
fn compound_round_trip() {
    let msgs = sample();
    let body: Vec<u8> = msgs.iter().flat_map(encode_message).collect();
    let h = header(Some("prod"));
    let dgram = assemble_datagram_body(&h, msgs.len(), &body);
    let Envelope::Ours(body) = open_envelope(&dgram, Some("prod")).unwrap() else {
        panic!("label should match")
    };
    assert_eq!(decode_compound(body, &limits()).unwrap(), msgs);
    assert!(matches!(
        open_envelope(&dgram, None).unwrap(),
        Envelope::OtherLabel
    ));
}

#[test]
fn tags_len_matches_postcard() {
    let mut tags = Tags::new();
    for i in 0..40 {
        tags.insert(format!("key{i}"), "v".repeat(i * 5));
    }
    assert_eq!(
        tags_encoded_len(&tags),
        postcard::to_allocvec(&tags).unwrap().len()
    );
}

#[test]
fn rejects_bad_envelopes_and_counts() {
    assert_eq!(open_envelope(&[], None).err(), Some(DecodeError::Empty));
    assert_eq!(
        open_envelope(&[9, 0], None).err(),
        Some(DecodeError::UnsupportedVersion(9))
    );
    assert_eq!(
        open_envelope(&[VERSION, 5, b'a'], None).err(),
        Some(DecodeError::Truncated)
    );
    // A count far above what the bytes hold.
    assert_eq!(
        decode_compound(&[0xff, 0x7f, 1, 2], &limits()).err(),
        Some(DecodeError::BadMessageCount)
    );
    assert_eq!(
        decode_compound(&[0], &limits()).err(),
        Some(DecodeError::BadMessageCount)
    );
    // Trailing garbage after one valid message.
    let mut b = vec![1];
    b.extend(encode_message(&Message::Ack {
        seq: 1,
        digest: None,
    }));
    b.extend([0, 0, 0]);
    assert_eq!(
        decode_compound(&b, &limits()).err(),
        Some(DecodeError::TrailingBytes)
    );
}

#[test]
fn validation_limits_names_and_tags() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let long = Message::Ping {
        seq: 1,
        target: "x".repeat(200).into(),
        digest: None,
    };
    assert!(limits().validate(&long).is_err());
    let mut tags = Tags::new();
    tags.insert("k".into(), "v".repeat(600));
    let fat = Message::Alive(Alive {
        incarnation: 0,
        name: "a".into(),
        addr,
        tags,
        ltime: 0,
    });
    assert!(limits().validate(&fat).is_err());
    let empty = Message::Suspect(Accusation {
        incarnation: 0,
        name: "".into(),
        from: "b".into(),
    });
    assert!(limits().validate(&empty).is_err());
}

#[test]
fn a_push_pull_accuser_is_validated() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let with = |status: WireStatus, accuser: &str| {
        Message::PushPull(Box::new(PushPull {
            id: 1,
            request: false,
            join: false,
            reply_to: addr,
            sender: "n2".into(),
            states: vec![PushState {
                name: "n1".into(),
                addr,
                incarnation: 1,
                status,
                tags: Tags::new(),
                ltime: 0,
                accuser: Some(accuser.into()),
            }],
            member_ltime: 0,
            event_ltime: 0,
            query_ltime: 0,
            events: vec![],
        }))
    };
    let ok = with(WireStatus::Suspect, "n3");
    assert_eq!(limits().validate(&ok), Ok(()));
    let bytes = encode_message(&ok);
    assert_eq!(decode_single(&bytes, &limits()), Ok(ok));
    for bad in [
        with(WireStatus::Alive, "n3"),
        with(WireStatus::Dead, "n3"),
        with(WireStatus::Suspect, "n1"),
        with(WireStatus::Suspect, ""),
        with(WireStatus::Suspect, &"x".repeat(200)),
    ] {
        assert!(limits().validate(&bad).is_err(), "{bad:?}");
        let bytes = encode_message(&bad);
        assert!(decode_single(&bytes, &limits()).is_err(), "{bad:?}");
    }
}

#[test]
fn huge_claimed_sequence_does_not_preallocate() {
    // A push-pull claiming 2^28 states in a tiny buffer fails fast with Truncated.
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let pp = Message::PushPull(Box::new(PushPull {
        id: 1,
        request: true,
        join: false,
        reply_to: addr,
        sender: "n2".into(),
        states: vec![],
        member_ltime: 0,
        event_ltime: 0,
        query_ltime: 0,
        events: vec![],
    }));
    let mut b = encode_message(&pp);
    b.pop(); // the empty-vec length
    b.extend([0xff, 0xff, 0xff, 0x7f]);
    assert_eq!(
        decode_single(&b, &limits()).err(),
        Some(DecodeError::Truncated)
    );
}

#[test]
fn frame_decoder_splits_and_bounds() {
    let h = header(None);
    let f1 = frame_message(
        &h,
        &Message::Ack {
            seq: 1,
            digest: None,
        },
    );
    let f2 = frame_message(
        &h,
        &Message::Ack {
            seq: 2,
            digest: None,
        },
    );
    let mut all = f1.clone();
    all.extend(&f2);
    let mut d = FrameDecoder::new(1024);
    // Byte by byte.
    let mut got = vec![];
    for b in &all {
        d.push(&[*b]);
        while let Some(f) = d.next_frame().unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, vec![f1[4..].to_vec(), f2[4..].to_vec()]);
    assert_eq!(d.buffered(), 0);
    let mut d = FrameDecoder::new(1024);
    d.push(&[0, 1, 0, 0]);
    assert_eq!(
        d.next_frame(),
        Err(DecodeError::TooLarge {
            len: 65536,
            max: 1024
        })
    );
}

#[test]
fn frame_decoder_memory_follows_the_bytes_received() {
    let max = 8 << 20;
    let mut d = FrameDecoder::new(max);
    // A header declaring the largest accepted frame, then a trickle: nothing is reserved for
    // the declared length.
    d.push(&(max as u32).to_be_bytes());
    d.push(&[7; 100]);
    assert_eq!(d.next_frame(), Ok(None));
    assert!(
        d.capacity() <= 4096,
        "capacity {} after 104 bytes",
        d.capacity()
    );
    // Growth stops at the frame's end, whatever the chunks.
    let mut sent = 100;
    while sent < max {
        let n = (max - sent).min(60_000);
        d.push(&vec![7; n]);
        sent += n;
        assert!(d.capacity() <= 2 * (sent + 4) + 256);
    }
    assert_eq!(d.capacity(), max + 4, "no more than the frame");
    let body = d.next_frame().unwrap().unwrap();
    assert_eq!(body.len(), max);
    assert!(body.iter().all(|&b| b == 7));
    // Released once the frame is out; small frames keep a small buffer.
    assert_eq!(d.capacity(), 0);
    assert_eq!(d.buffered(), 0);
    d.push(&[0, 0, 0, 2, 1, 2, 0, 0]);
    assert_eq!(d.next_frame(), Ok(Some(vec![1, 2])));
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.buffered(), 2);
    d.push(&[0, 0, 0]);
    assert_eq!(d.next_frame(), Ok(Some(vec![])));
    assert_eq!(d.buffered(), 1);
    assert!(d.capacity() <= 256);
    // A large frame followed by part of the next: copied out, the buffer released after the
    // next one completes.
    let mut d = FrameDecoder::new(max);
    let mut data = (100_000u32).to_be_bytes().to_vec();
    data.extend(vec![3; 100_000]);
    data.extend([0, 0, 0, 1]);
    d.push(&data);
    assert_eq!(d.next_frame().unwrap().map(|b| b.len()), Some(100_000));
    assert_eq!(d.next_frame(), Ok(None));
    d.push(&[9]);
    assert_eq!(d.next_frame(), Ok(Some(vec![9])));
    assert_eq!(d.capacity(), 0);
}

#[test]
fn alive_encoder_gives_postcards_bytes_in_every_shape() {
    let mut tags = Tags::new();
    tags.insert("role".into(), "db".into());
    for addr in ["10.1.2.3:7946", "[::1]:7946"] {
        for tags in [Tags::new(), tags.clone()] {
            let a = Alive {
                incarnation: 300,
                name: "node-7".into(),
                addr: addr.parse().unwrap(),
                tags,
                ltime: 1 << 40,
            };
            let mut out = vec![9];
            encode_alive_into(&a, &mut out);
            let mut want = vec![9];
            encode_into(&Message::Alive(a), &mut want);
            assert_eq!(out, want, "{addr}");
        }
    }
}

#[test]
fn frame_decoder_capacity_after_predicts_push() {
    let max = 8 << 20;
    let mut d = FrameDecoder::new(max);
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    // Frames of assorted sizes cut into assorted chunks: before every push, capacity_after
    // says what the capacity becomes.
    let mut stream = Vec::new();
    for len in [0usize, 3, 300, 70_000, 5, 1 << 20, 17] {
        stream.extend((len as u32).to_be_bytes());
        stream.extend(std::iter::repeat_n(1u8, len));
    }
    let mut at = 0;
    while at < stream.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (1 + (x % 40_000) as usize).min(stream.len() - at);
        let predicted = d.capacity_after(n);
        d.push(&stream[at..at + n]);
        assert_eq!(d.capacity(), predicted, "push of {n} at {at}");
        at += n;
        while let Ok(Some(_)) = d.next_frame() {}
    }
}
