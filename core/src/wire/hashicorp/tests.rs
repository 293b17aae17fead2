//! Tests of the HashiCorp profile: the traffic of real `serf` 0.9.4 agents (captured by
//! `tests/interop/capture-serf.py` into `vectors/serf-0.9.4.txt`) decodes to what the capture
//! run did and re-encodes byte for byte; the byte-level rules of go-msgpack; hostile input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::frame::{crc32_ieee, decode_packet, decode_stream, Packet, Stream, StreamMsg};
use super::memberlist::{PacketMsg, Versions};
use super::msgpack::{Reader, Writer};
use super::serf::{decode_tags, Filter, SerfMsg, QUERY_FLAG_ACK};
use super::*;
use crate::wire::message::Message;

const SERF_VECTORS: &str = include_str!("vectors/serf-0.9.4.txt");
const MEMBERLIST_VECTORS: &str = include_str!("vectors/memberlist-0.2.2.txt");
const SERF_ENCRYPTED_VECTORS: &str = include_str!("vectors/serf-0.9.4-encrypted.txt");

/// One captured record.
struct Record {
    /// The sending member of a datagram.
    from: String,
    /// The receiving member (datagram) or the dialled one (stream).
    to: String,
    udp: bool,
    /// `from>to` for a datagram, `conn/dir/to` for a stream.
    what: String,
    bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn records() -> Vec<Record> {
    records_of(SERF_VECTORS)
}

fn records_of(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["udp", from, to, h] => out.push(Record {
                from: from.to_string(),
                to: to.to_string(),
                udp: true,
                what: format!("{from}>{to}"),
                bytes: hex(h),
            }),
            ["tcp", conn, dir, to, h] => out.push(Record {
                from: String::new(),
                to: to.to_string(),
                udp: false,
                what: format!("{conn}/{dir}/{to}"),
                bytes: hex(h),
            }),
            _ => panic!("bad vector line {line}"),
        }
    }
    out
}

/// Everything the capture holds, decoded.
#[derive(Default)]
struct Capture {
    packets: Vec<Packet>,
    streams: Vec<Stream>,
    msgs: Vec<PacketMsg>,
    serf: Vec<SerfMsg>,
}

fn capture() -> Capture {
    capture_of(records())
}

/// The encrypted serf capture, every record opened with the agents' key and checked to
/// re-seal (with its own nonce) to the captured bytes.
fn opened_encrypted_serf_records() -> Vec<Record> {
    let key = capture_key();
    let mut out = Vec::new();
    for mut r in records_of(SERF_ENCRYPTED_VECTORS) {
        let plain = if r.udp {
            let plain = open(&[&key], &r.bytes, &[]).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&r.bytes[1..1 + NONCE_LEN]);
            assert_eq!(
                seal(&key, nonce, &plain, &[]).as_ref(),
                Ok(&r.bytes),
                "{}",
                r.what
            );
            plain
        } else {
            let (plain, used) =
                open_stream(&[&key], &r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(used, r.bytes.len(), "{}", r.what);
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&r.bytes[6..6 + NONCE_LEN]);
            assert_eq!(
                seal_stream(&key, nonce, &plain).as_ref(),
                Ok(&r.bytes),
                "{}",
                r.what
            );
            plain
        };
        r.bytes = plain;
        out.push(r);
    }
    out
}

/// The query responses a capture holds, relayed ones included.
fn query_responses(c: &Capture) -> impl Iterator<Item = &super::serf::QueryResponse> {
    c.serf.iter().filter_map(|m| match m {
        SerfMsg::QueryResponse(r) => Some(r),
        SerfMsg::Relay(_, inner) => match inner.as_ref() {
            SerfMsg::QueryResponse(r) => Some(r),
            _ => None,
        },
        _ => None,
    })
}

fn capture_of(records: Vec<Record>) -> Capture {
    let mut c = Capture::default();
    for r in records {
        if r.udp {
            let p = decode_packet(&r.bytes)
                .unwrap_or_else(|e| panic!("datagram {} does not decode: {e}", r.what));
            for m in p.messages() {
                if let PacketMsg::User(b) = m {
                    c.serf.push(
                        SerfMsg::decode(b)
                            .unwrap_or_else(|e| panic!("serf message in {}: {e}", r.what)),
                    );
                }
                c.msgs.push(m.clone());
            }
            c.packets.push(p);
        } else {
            let (s, used) = decode_stream(&r.bytes)
                .unwrap_or_else(|e| panic!("stream {} does not decode: {e}", r.what));
            assert_eq!(used, r.bytes.len(), "stream {} has trailing bytes", r.what);
            match &s.msg {
                StreamMsg::PushPull(p) if !p.user_state.is_empty() => c
                    .serf
                    .push(SerfMsg::decode(&p.user_state).expect("push-pull user state is Serf's")),
                StreamMsg::User(b) => c.serf.push(SerfMsg::decode(b).expect("serf message")),
                _ => {}
            }
            c.streams.push(s);
        }
    }
    c
}

/// Every message type the capture must show, with how many.
#[test]
fn the_capture_holds_every_message_kind() {
    let c = capture();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &c.msgs {
        let k = match m {
            PacketMsg::Ping(_) => "ping",
            PacketMsg::IndirectPing(_) => "indirect-ping",
            PacketMsg::Ack(_) => "ack",
            PacketMsg::Nack(_) => "nack",
            PacketMsg::Suspect(_) => "suspect",
            PacketMsg::Alive(_) => "alive",
            PacketMsg::Dead(_) => "dead",
            PacketMsg::User(_) => "user",
        };
        *kinds.entry(k).or_default() += 1;
    }
    for s in &c.serf {
        let k = match s {
            SerfMsg::Leave(_) => "serf-leave",
            SerfMsg::Join(_) => "serf-join",
            SerfMsg::PushPull(_) => "serf-push-pull",
            SerfMsg::UserEvent(_) => "serf-user-event",
            SerfMsg::Query(_) => "serf-query",
            SerfMsg::QueryResponse(_) => "serf-query-response",
            SerfMsg::Relay(..) => "serf-relay",
            SerfMsg::ConflictResponse(_) | SerfMsg::KeyRequest(_) | SerfMsg::KeyResponse(_) => {
                "serf-other"
            }
        };
        *kinds.entry(k).or_default() += 1;
    }
    let mut wrappers: BTreeMap<&str, usize> = BTreeMap::new();
    fn walk(p: &Packet, w: &mut BTreeMap<&'static str, usize>) {
        match p {
            Packet::Msg(_) => {}
            Packet::Compound(parts) => {
                *w.entry("compound").or_default() += 1;
                parts.iter().for_each(|p| walk(p, w));
            }
            Packet::Compressed(p) => {
                *w.entry("compressed").or_default() += 1;
                walk(p, w);
            }
            Packet::Crc(p) => {
                *w.entry("crc").or_default() += 1;
                walk(p, w);
            }
        }
    }
    c.packets.iter().for_each(|p| walk(p, &mut wrappers));
    for k in [
        "ping",
        "indirect-ping",
        "ack",
        "nack",
        "suspect",
        "alive",
        "dead",
        "user",
        "serf-leave",
        "serf-join",
        "serf-push-pull",
        "serf-user-event",
        "serf-query",
        "serf-query-response",
        "serf-relay",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} in the capture: {kinds:?}"
        );
    }
    for w in ["compound", "crc"] {
        assert!(wrappers.contains_key(w), "no {w} datagram: {wrappers:?}");
    }
    assert!(
        c.streams
            .iter()
            .any(|s| matches!(s.msg, StreamMsg::PushPull(_)) && s.compressed),
        "no compressed push-pull stream"
    );
}

/// Every captured datagram re-encodes to exactly its bytes (msgpack maps from Go structs are
/// in sorted field order, deterministic; Serf's tag maps keep the order they arrived in).
#[test]
fn captured_datagrams_reencode_byte_identically() {
    let mut n = 0;
    for r in records().into_iter().filter(|r| r.udp) {
        let p = decode_packet(&r.bytes).expect("decodes");
        assert_eq!(
            p.encode().as_deref(),
            Some(&r.bytes[..]),
            "datagram {} re-encodes differently",
            r.what
        );
        n += 1;
    }
    assert!(n > 50, "only {n} datagrams captured");
}

/// Every captured stream message decodes whole and re-encodes byte for byte — compressed ones
/// too: our LZW encoder writes what Go's `compress/lzw` writes (LSB first, 8-bit literals), as
/// the compressed datagrams above show as well.
#[test]
fn captured_streams_reencode_byte_identically() {
    let mut n = 0;
    for r in records().into_iter().filter(|r| !r.udp) {
        let (s, _) = decode_stream(&r.bytes).expect("decodes");
        if s.compressed {
            let plain = Stream {
                compressed: false,
                msg: s.msg.clone(),
            }
            .encode();
            let mut rd = Reader::new(&r.bytes[1..]);
            let c = Compress::decode(&mut rd).expect("compress wrapper");
            assert_eq!(
                decompress(&c).expect("lzw"),
                plain,
                "stream {} body",
                r.what
            );
        }
        assert_eq!(
            s.encode(),
            r.bytes,
            "stream {} re-encodes differently",
            r.what
        );
        n += 1;
    }
    assert!(n >= 4, "only {n} streams captured");
}

fn tags(pairs: &[(&str, &str)]) -> crate::identity::Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Alive messages name the agents with their `-tag`s and the versions Serf 0.9.4 speaks.
#[test]
fn captured_alive_messages_carry_names_tags_and_versions() {
    let c = capture();
    let mut seen = BTreeMap::new();
    for m in &c.msgs {
        if let PacketMsg::Alive(a) = m {
            assert_eq!(a.versions(), Some(Versions::SERF_0_9_4), "{a:?}");
            let Message::Alive(ours) = from_packet_msg(m).expect("maps") else {
                panic!("alive maps to alive")
            };
            assert_eq!(ours.addr.ip(), SocketAddr::from(([127, 0, 0, 1], 0)).ip());
            seen.insert((a.node.clone(), a.port), ours.tags);
        }
    }
    // Agent i advertises port 18000 + i; the second `a` (the name conflict) has no tags.
    let at = |n: &str, port| seen.get(&(n.to_string(), port));
    assert_eq!(
        at("a", 18000),
        Some(&tags(&[("role", "web"), ("dc", "east")]))
    );
    assert_eq!(at("b", 18001), Some(&tags(&[("role", "db")])));
    assert_eq!(
        at("c", 18002),
        Some(&tags(&[("role", "db"), ("rack", "r2")]))
    );
    assert_eq!(at("a", 18003), Some(&tags(&[])));
}

/// Push-pull streams carry every agent's state and Serf's clocks and intents.
#[test]
fn captured_push_pulls_carry_states_and_serf_state() {
    let c = capture();
    let mut names = BTreeSet::new();
    let mut joined = BTreeSet::new();
    let mut joins = 0;
    for s in &c.streams {
        if let StreamMsg::PushPull(p) = &s.msg {
            joins += usize::from(p.join);
            let ours = push_pull_from_hashicorp(
                p,
                7,
                true,
                crate::identity::Name::new("x"),
                SocketAddr::from(([127, 0, 0, 1], 1)),
                true,
            )
            .expect("maps");
            assert_eq!(ours.states.len(), p.states.len());
            assert!(ours.member_ltime > 0, "serf member clock");
            for st in &ours.states {
                names.insert(st.name.to_string());
                if st.ltime > 0 {
                    joined.insert(st.name.to_string());
                }
            }
        }
    }
    assert!(joins > 0, "a join push-pull");
    assert!(
        ["a", "b", "c"].iter().all(|n| names.contains(*n)),
        "{names:?}"
    );
    // Serf's status times carry the join intents' Lamport times (b, joined by a, may
    // have none yet); c joined last, through a.
    assert!(joined.contains("a") && joined.contains("c"), "{joined:?}");
}

/// The user events, queries (filters, flags, relay factor), responses, intents, key and
/// conflict payloads of the capture run.
#[test]
fn captured_serf_messages_say_what_the_run_did() {
    let c = capture();
    let events: BTreeMap<String, (Vec<u8>, bool)> = c
        .serf
        .iter()
        .filter_map(|m| match m {
            SerfMsg::UserEvent(e) => Some((
                e.name.clone(),
                (e.payload.clone().unwrap_or_default(), e.cc),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(events.get("deploy"), Some(&(b"v1.2.3".to_vec(), true)));
    assert_eq!(events.get("restart"), Some(&(Vec::new(), false)));

    let queries: BTreeMap<String, &super::serf::Query> = c
        .serf
        .iter()
        .filter_map(|m| match m {
            SerfMsg::Query(q) => Some((q.name.clone(), q)),
            _ => None,
        })
        .collect();
    let uptime = queries.get("uptime").expect("uptime query");
    assert_eq!(uptime.payload.as_deref(), Some(&b"how long"[..]));
    assert_eq!(uptime.flags & QUERY_FLAG_ACK, QUERY_FLAG_ACK);
    assert_eq!(uptime.timeout_ns, 2_000_000_000);
    assert_eq!(uptime.source_node, "a");
    assert_eq!(uptime.filters, None);
    let filtered = queries.get("filtered").expect("filtered query");
    assert_eq!(filtered.relay_factor, 1);
    let filters = filtered.filters.clone().expect("filters");
    assert!(
        filters.contains(&Filter::Nodes(vec!["c".into()])),
        "{filters:?}"
    );
    assert!(filters.contains(&Filter::Tag {
        tag: "role".into(),
        expr: "d.*".into()
    }));
    let Message::Query(ours) = from_serf(&SerfMsg::Query((*filtered).clone())).expect("maps")
    else {
        panic!("query maps to query")
    };
    assert_eq!(ours.filter_nodes, vec![crate::identity::Name::new("c")]);
    assert_eq!(
        ours.filter_tags,
        vec![("role".to_string(), "d.*".to_string())]
    );
    assert_eq!(ours.timeout_ms, 2000);
    assert_eq!(
        queries.get("quiet").expect("quiet").flags & QUERY_FLAG_ACK,
        0
    );
    assert_eq!(
        queries
            .get("_serf_conflict")
            .and_then(|q| q.payload.as_deref()),
        Some(&b"a"[..])
    );
    let install = queries.get("_serf_install-key").expect("install-key query");
    match SerfMsg::decode(install.payload.as_deref().unwrap_or(&[])).expect("key request") {
        SerfMsg::KeyRequest(k) => assert_eq!(k.key.map(|k| k.len()), Some(32)),
        other => panic!("install-key payload: {other:?}"),
    }
    assert!(queries.contains_key("_serf_list-keys"));

    // Responses: handler output, key-operation errors, the conflict answer, acks.
    let mut answers = Vec::new();
    let mut key_messages = BTreeSet::new();
    let mut conflict = false;
    let mut acks = 0;
    let responses = query_responses(&c);
    for r in responses {
        if r.flags & QUERY_FLAG_ACK != 0 {
            acks += 1;
            continue;
        }
        let p = r.payload.clone().unwrap_or_default();
        match SerfMsg::decode(&p) {
            Ok(SerfMsg::KeyResponse(k)) => {
                key_messages.insert(k.message);
            }
            Ok(SerfMsg::ConflictResponse(Some(m))) => {
                conflict |= m.name == "a" && m.tags.is_some_and(|t| !t.is_empty());
            }
            _ => answers.push(String::from_utf8_lossy(&p).into_owned()),
        }
    }
    assert!(acks > 0);
    assert!(
        answers
            .iter()
            .any(|a| a.contains("answer from c to filtered: x")),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.contains("to uptime: how long")),
        "{answers:?}"
    );
    assert!(key_messages
        .iter()
        .any(|m| m.contains("encryption not enabled")));
    assert!(conflict, "a conflict response naming a with its tags");
    let relay = c.serf.iter().find_map(|m| match m {
        SerfMsg::Relay(h, _) => Some(h),
        _ => None,
    });
    let relay = relay.expect("a relayed response");
    // The asker's address as the member table holds it: a 4-byte net.IP.
    assert_eq!(relay.ip.as_deref(), Some(&[127, 0, 0, 1][..]));

    // Intents: the force-leave with prune of c, b's graceful leave, join intents.
    let leaves: Vec<(String, bool)> = c
        .serf
        .iter()
        .filter_map(|m| match m {
            SerfMsg::Leave(l) => Some((l.node.clone(), l.prune)),
            _ => None,
        })
        .collect();
    assert!(leaves.contains(&("c".into(), true)), "{leaves:?}");
    assert!(leaves.contains(&("b".into(), false)), "{leaves:?}");
    assert!(c
        .serf
        .iter()
        .any(|m| matches!(m, SerfMsg::Join(j) if j.node == "c" && j.ltime > 0)));
}

/// The killed agent: indirect probes of c (with nacks wanted), nacks, suspicion, failure.
#[test]
fn captured_failure_detection() {
    let c = capture();
    assert!(c
        .msgs
        .iter()
        .any(|m| matches!(m, PacketMsg::IndirectPing(p) if p.node == "c" && p.nack && p.port > 0)));
    assert!(c.msgs.iter().any(|m| matches!(m, PacketMsg::Nack(_))));
    assert!(c
        .msgs
        .iter()
        .any(|m| matches!(m, PacketMsg::Suspect(s) if s.node == "c" && s.from != "c")));
    assert!(c
        .msgs
        .iter()
        .any(|m| matches!(m, PacketMsg::Dead(d) if d.node == "c" && d.from != "c")));
    // b's graceful leave: a dead message from b about itself.
    assert!(c
        .msgs
        .iter()
        .any(|m| matches!(m, PacketMsg::Dead(d) if d.node == "b" && d.from == "b")));
    // Serf's acks carry its Vivaldi coordinate.
    assert!(c.msgs.iter().any(
        |m| matches!(m, PacketMsg::Ack(a) if a.payload.as_ref().is_some_and(|p| !p.is_empty()))
    ));
}

/// Captured messages that map cleanly go to ours and back to the same bytes.
#[test]
fn captured_messages_map_to_ours_and_back() {
    let c = capture();
    let local = Local {
        name: crate::identity::Name::new("a"),
        addr: SocketAddr::from(([127, 0, 0, 1], 18000)),
        versions: Versions::SERF_0_9_4,
        serf: true,
    };
    let mut n = 0;
    for m in &c.msgs {
        let exact = match m {
            PacketMsg::Nack(_) | PacketMsg::Suspect(_) | PacketMsg::Dead(_) => true,
            PacketMsg::User(b) => matches!(
                SerfMsg::decode(b),
                Ok(SerfMsg::Leave(_) | SerfMsg::UserEvent(_) | SerfMsg::QueryResponse(_))
            ),
            _ => false,
        };
        if !exact {
            continue;
        }
        let ours = from_packet_msg(m).expect("maps");
        let back = to_hashicorp(&ours, &local).expect("maps back");
        assert_eq!(back, vec![Outgoing::Packet(m.clone())], "{ours:?}");
        n += 1;
    }
    assert!(n > 10, "only {n} mapped");
    // Pings keep their sequence number and target.
    for m in &c.msgs {
        if let PacketMsg::Ping(p) = m {
            let ours = from_packet_msg(m).expect("maps");
            assert!(matches!(&ours, Message::Ping { seq, target, .. }
                if *seq == p.seq_no && target.as_str() == p.node));
        }
    }
}

/// Our messages with no counterpart are refused, not silently mangled.
#[test]
fn direct_messages_have_no_counterpart() {
    let local = Local {
        name: crate::identity::Name::new("a"),
        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        versions: Versions::SERF_0_9_4,
        serf: true,
    };
    let m = Message::Direct {
        from: "a".into(),
        payload: bytes::Bytes::from_static(b"x"),
    };
    assert!(matches!(
        to_hashicorp(&m, &local),
        Err(HcError::Unmappable(_))
    ));
}

/// go-msgpack's forms: smallest unsigned form, raw strings without str8, nil vs empty.
#[test]
fn msgpack_writes_what_go_msgpack_writes() {
    let mut w = Writer::default();
    for v in [
        0u64,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX) + 1,
    ] {
        w.uint(v);
    }
    assert_eq!(
        w.out,
        hex("007fcc80ccffcd0100cdffffce00010000cf0000000100000000")
    );
    let mut w = Writer::default();
    w.int(-1);
    w.int(-33);
    w.int(-129);
    w.int(5);
    assert_eq!(w.out, hex("ffd0dfd1ff7f05"));
    for (len, head) in [
        (31, "bf"),
        (32, "da0020"),
        (255, "da00ff"),
        (65_536, "db00010000"),
    ] {
        let mut w = Writer::default();
        w.raw(&vec![b'x'; len]);
        assert_eq!(w.out[..head.len() / 2], hex(head)[..], "raw of {len}");
        let mut r = Reader::new(&w.out);
        assert_eq!(
            r.raw("f", usize::MAX).expect("reads").map(<[u8]>::len),
            Some(len)
        );
    }
    let mut w = Writer::default();
    w.opt_raw(None);
    w.opt_raw(Some(&[]));
    assert_eq!(w.out, hex("c0a0"));
}

/// The reader takes every integer and string form Go might send, and range-checks.
#[test]
fn msgpack_reads_every_form() {
    let mut r = Reader::new(&[
        0xd0, 0x05, 0xc4, 0x01, b'z', 0xd9, 0x01, b'y', 0xcd, 0x01, 0x00,
    ]);
    assert_eq!(r.uint("a", 10), Ok(5));
    assert_eq!(r.raw("b", 10), Ok(Some(&b"z"[..])));
    assert_eq!(r.string("c", 10), Ok("y".to_string()));
    assert_eq!(r.uint("d", 255), Err(HcError::OutOfRange("d")));
    let mut r = Reader::new(&[0xff]);
    assert_eq!(r.uint("neg", 10), Err(HcError::OutOfRange("neg")));
}

#[test]
fn crc32_is_ieee() {
    assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
}

/// A corrupted CRC'd datagram is refused with the checksum error.
#[test]
fn a_bad_checksum_is_refused() {
    let r = records()
        .into_iter()
        .find(|r| r.udp && r.bytes.first() == Some(&12))
        .expect("a CRC datagram");
    let mut b = r.bytes.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(
        decode_packet(&b),
        Err(HcError::BadChecksum { .. })
    ));
}

/// Every prefix of every captured record, and every record with a byte flipped, decodes or
/// fails with an error — never a panic — and truncated streams say `Truncated`.
#[test]
fn damaged_captures_never_panic() {
    for r in records() {
        for cut in 0..r.bytes.len() {
            let b = &r.bytes[..cut];
            if r.udp {
                let _ = decode_packet(b);
            } else if let Err(e) = decode_stream(b) {
                assert!(
                    !matches!(e, HcError::TrailingBytes),
                    "prefix of {}: {e}",
                    r.what
                );
            } else if r.bytes[0] != 9 {
                panic!("a strict prefix of stream {} decoded", r.what);
            }
        }
        for i in (0..r.bytes.len()).step_by(7) {
            let mut b = r.bytes.clone();
            b[i] ^= 0xa5;
            if let Ok(p) = decode_packet(&b) {
                for m in p.messages() {
                    if let PacketMsg::User(u) = m {
                        let _ = SerfMsg::decode(u);
                    }
                }
            }
            let _ = decode_stream(&b);
        }
    }
}

/// Counts declared far beyond the bytes are refused before anything is allocated for them.
#[test]
fn huge_declared_sizes_are_refused() {
    // A push-pull header claiming a million states and nothing after it.
    let mut w = Writer::new(vec![6]);
    super::memberlist::PushPullHeader {
        nodes: 1_000_000,
        user_state_len: 0,
        join: false,
    }
    .encode(&mut w);
    assert_eq!(decode_stream(&w.out), Err(HcError::Truncated));
    // Over the push-pull limit.
    let mut w = Writer::new(vec![6]);
    super::memberlist::PushPullHeader {
        nodes: MAX_PUSH_NODES + 1,
        user_state_len: 0,
        join: false,
    }
    .encode(&mut w);
    assert!(matches!(
        decode_stream(&w.out),
        Err(HcError::TooLong { .. })
    ));
    // A user message header claiming 2^31 bytes.
    let mut w = Writer::new(vec![8]);
    super::memberlist::UserMsgHeader {
        user_msg_len: 1 << 31,
    }
    .encode(&mut w);
    assert!(matches!(
        decode_stream(&w.out),
        Err(HcError::TooLong { .. })
    ));
    // A map32 of 2^32-1 entries in a ping.
    assert_eq!(
        decode_packet(&[0, 0xdf, 0xff, 0xff, 0xff, 0xff]),
        Err(HcError::Truncated)
    );
    // Deeply nested arrays inside an unknown field.
    let mut b = vec![0, 0x81, 0xa1, b'X'];
    b.extend(std::iter::repeat_n(0x91, 100));
    b.push(0xc0);
    assert_eq!(decode_packet(&b), Err(HcError::TooDeep));
    // Nested compound wrappers.
    let mut p = vec![0u8, 0x80];
    for _ in 0..10 {
        let mut outer = vec![7, 1];
        outer.extend_from_slice(&(p.len() as u16).to_be_bytes());
        outer.extend_from_slice(&p);
        p = outer;
    }
    assert_eq!(decode_packet(&p), Err(HcError::TooDeep));
}

/// A Serf 0.9.4 node "me" at 10.0.0.1:7946.
fn local_me() -> Local {
    Local {
        name: crate::identity::Name::new("me"),
        addr: SocketAddr::from(([10, 0, 0, 1], 7946)),
        versions: Versions::SERF_0_9_4,
        serf: true,
    }
}

/// Our own encodings of every mappable message decode back to the same message.
#[test]
fn our_messages_round_trip_through_the_profile() {
    let local = local_me();
    let to = SocketAddr::from(([10, 0, 0, 2], 7946));
    let msgs = [
        Message::Ping {
            seq: 1,
            target: "t".into(),
            digest: None,
        },
        Message::Nack { seq: 9 },
        Message::IndirectPing {
            seq: 3,
            target: "t".into(),
            addr: to,
        },
        Message::Alive(crate::wire::message::Alive {
            incarnation: 4,
            name: "n".into(),
            addr: to,
            tags: tags(&[("role", "x"), ("k", "v")]),
            ltime: 0,
        }),
        Message::RelayResponse {
            to,
            resp: crate::wire::message::QueryResp {
                ltime: 5,
                id: 6,
                from: "f".into(),
                ack: false,
                payload: bytes::Bytes::from_static(b"p"),
            },
        },
    ];
    for m in &msgs {
        for out in to_hashicorp(m, &local).expect("maps") {
            let Outgoing::Packet(p) = out else {
                panic!("datagram messages")
            };
            let bytes = Packet::Crc(Box::new(Packet::Msg(p)))
                .encode()
                .expect("encodes");
            let back = decode_packet(&bytes).expect("decodes");
            let got = from_packet_msg(back.messages()[0]).expect("maps back");
            assert_eq!(&got, m);
        }
    }
}

/// A revival check's ping has no memberlist counterpart of its own: it goes as a plain ping,
/// which every memberlist peer answers.
#[test]
fn a_revival_check_goes_as_a_memberlist_ping() {
    let local = local_me();
    let check = Message::CheckPing {
        seq: 5,
        target: "t".into(),
    };
    let ping = Message::Ping {
        seq: 5,
        target: "t".into(),
        digest: None,
    };
    let (a, b) = (
        to_hashicorp(&check, &local).expect("maps"),
        to_hashicorp(&ping, &local).expect("maps"),
    );
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// Tags without the magic byte are the old protocol's role.
#[test]
fn meta_without_magic_byte_is_a_role() {
    assert_eq!(
        decode_tags(b"web"),
        Ok(vec![("role".to_string(), "web".to_string())])
    );
}

/// Go memberlist 0.2.2's own traffic (`vectors/memberlist-0.2.2.txt`, printed by
/// `tests/interop/memberlist-vectors`): members x, y (compression on), z (off), q and r
/// (a keyring), s (sends an encrypted-stream header to z).
fn memberlist_records() -> Vec<Record> {
    records_of(MEMBERLIST_VECTORS)
}

/// Every plaintext datagram and stream of Go memberlist decodes and re-encodes byte for byte;
/// the TCP fallback ping and its ack, reliable user messages (compressed and not), a
/// best-effort user message, push-pull user state, the error answer, and the old-protocol meta
/// (no magic byte: a role) are all there.
#[test]
fn memberlist_traffic_decodes_and_reencodes() {
    let mut stream_pings = 0;
    let mut stream_acks = 0;
    let mut users = BTreeSet::new();
    let mut errors = Vec::new();
    let mut user_states = BTreeSet::new();
    let mut roles = BTreeSet::new();
    let mut n = 0;
    for r in memberlist_records() {
        if r.udp && (r.from == "q" || r.from == "r") {
            continue; // encrypted: below
        }
        if r.udp {
            let p = decode_packet(&r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(p.encode().as_deref(), Some(&r.bytes[..]), "{}", r.what);
            for m in p.messages() {
                match m {
                    PacketMsg::User(u) => {
                        users.insert(String::from_utf8_lossy(u).into_owned());
                    }
                    PacketMsg::Alive(a) => {
                        let Message::Alive(ours) = from_packet_msg(m).expect("maps") else {
                            panic!("alive")
                        };
                        roles.extend(ours.tags.get("role").cloned());
                        assert_eq!(
                            a.meta.as_deref(),
                            Some(format!("meta-{}", a.node).as_bytes())
                        );
                    }
                    _ => {}
                }
            }
        } else {
            if r.bytes.first() == Some(&10) {
                continue; // encrypted: below
            }
            let (s, used) = decode_stream(&r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(used, r.bytes.len());
            assert_eq!(s.encode(), r.bytes, "{}", r.what);
            match s.msg {
                StreamMsg::Ping(_) => stream_pings += 1,
                StreamMsg::Ack(_) => stream_acks += 1,
                StreamMsg::User(u) => {
                    users.insert(format!("{}:{}", s.compressed, String::from_utf8_lossy(&u)));
                }
                StreamMsg::Err(e) => errors.push(e.error),
                StreamMsg::PushPull(p) => {
                    user_states.insert(String::from_utf8_lossy(&p.user_state).into_owned());
                }
            }
        }
        n += 1;
    }
    assert!(n > 100, "only {n} records");
    assert!(
        stream_pings > 0 && stream_acks > 0,
        "TCP fallback pings and acks"
    );
    assert!(users.contains("true:reliable hello"), "{users:?}");
    assert!(users.contains("false:plain hello"), "{users:?}");
    assert!(users.contains("packet hello"), "{users:?}");
    assert_eq!(
        errors,
        vec!["Remote state is encrypted and encryption is not configured".to_string()]
    );
    assert!(user_states.contains("state of meta-x"), "{user_states:?}");
    assert!(
        roles.contains("meta-x") && roles.contains("meta-z"),
        "{roles:?}"
    );
}

/// Encrypted traffic (not opened yet): a stream starts with type 10 and the length of the
/// sealed bytes that follow; a datagram has no type byte, only the encryption version (1),
/// a 12-byte nonce, and the sealed message with its 16-byte tag.
#[test]
fn memberlist_encrypted_traffic_has_the_documented_layout() {
    let mut streams = 0;
    let mut datagrams = 0;
    for r in memberlist_records() {
        if !r.udp && r.bytes.first() == Some(&10) {
            match decode_stream(&r.bytes) {
                Err(HcError::Encrypted { len }) => {
                    assert_eq!(len + 5, r.bytes.len(), "{}", r.what);
                    streams += 1;
                }
                other => panic!("{}: {other:?}", r.what),
            }
        } else if r.udp && (r.from == "q" || r.from == "r") {
            assert_eq!(r.bytes[0], 1, "encryption version 1");
            assert!(r.bytes.len() > 1 + 12 + 16);
            datagrams += 1;
        }
    }
    assert!(streams >= 2, "the encrypted push-pull and the fake header");
    assert!(datagrams > 0);
}

/// The key members q and r of the memberlist capture share: bytes 1 to 32.
fn capture_key() -> Vec<u8> {
    (1..=32).collect()
}

/// Go's sealed datagrams and streams open with the key, hold messages that decode (and
/// re-encode byte for byte), and sealing the plaintext again with Go's nonce gives Go's bytes:
/// the encryption format matches, not just the decoder.
#[test]
fn memberlist_encrypted_traffic_opens_and_reseals_identically() {
    let key = capture_key();
    let keys: [&[u8]; 2] = [&[7u8; 16], &key];
    let mut datagrams = 0;
    let mut streams = 0;
    for r in memberlist_records() {
        if r.udp && (r.from == "q" || r.from == "r") {
            let plain = open(&keys, &r.bytes, &[]).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            let p = decode_packet(&plain).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(p.encode().as_deref(), Some(&plain[..]));
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&r.bytes[1..1 + NONCE_LEN]);
            assert_eq!(
                seal(&key, nonce, &plain, &[]),
                Ok(r.bytes.clone()),
                "{}",
                r.what
            );
            datagrams += 1;
        } else if !r.udp && r.bytes.first() == Some(&10) && r.to != "z" {
            let (plain, used) =
                open_stream(&keys, &r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(used, r.bytes.len());
            let (s, n) = decode_stream(&plain).expect("the opened stream decodes");
            assert_eq!(n, plain.len());
            // r's join request (its own state) and q's answer (both states).
            assert!(matches!(&s.msg, StreamMsg::PushPull(p)
                if !p.states.is_empty() && p.user_state.starts_with(b"state of meta-")));
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&r.bytes[6..6 + NONCE_LEN]);
            assert_eq!(seal_stream(&key, nonce, &plain), Ok(r.bytes.clone()));
            streams += 1;
        }
    }
    assert!(
        datagrams > 5 && streams >= 2,
        "{datagrams} datagrams, {streams} streams"
    );
}

/// Wrong keys, altered bytes, short input, unknown versions and bad key lengths are refused.
#[test]
fn sealed_messages_refuse_tampering() {
    let key = capture_key();
    let sealed = seal(&key, [9; NONCE_LEN], b"hello", b"ad").expect("seals");
    assert_eq!(sealed.len(), SEAL_OVERHEAD + 5);
    assert_eq!(open(&[&key], &sealed, b"ad"), Ok(b"hello".to_vec()));
    assert_eq!(open(&[&key], &sealed, b"other"), Err(HcError::Unopened));
    assert_eq!(
        open(&[&[1u8; 32][..]], &sealed, b"ad"),
        Err(HcError::Unopened)
    );
    for i in 0..sealed.len() {
        let mut b = sealed.clone();
        b[i] ^= 1;
        assert!(open(&[&key], &b, b"ad").is_err(), "byte {i} altered");
    }
    for cut in 0..sealed.len() {
        assert!(open(&[&key], &sealed[..cut], b"ad").is_err());
    }
    assert_eq!(
        seal(&key[..20], [0; NONCE_LEN], b"x", b""),
        Err(HcError::BadKeyLength(20))
    );
    let mut v2 = sealed.clone();
    v2[0] = 2;
    assert_eq!(
        open(&[&key], &v2, b"ad"),
        Err(HcError::UnknownEncryption(2))
    );
    for k in [16, 24, 32] {
        let key = vec![3u8; k];
        let s = seal_stream(&key, [1; NONCE_LEN], b"\x08abc").expect("seals");
        assert_eq!(open_stream(&[&key], &s), Ok((b"\x08abc".to_vec(), s.len())));
        assert_eq!(
            open_stream(&[&key], &s[..s.len() - 1]),
            Err(HcError::Truncated)
        );
    }
}

/// Serf's name-conflict query as the capture run asked it (`_serf_conflict`, the contested
/// name as the raw payload) and every answer to it (`[type 6][msgpack Member]`): each answer
/// decodes to the member named, re-encodes byte for byte, and is exactly what a rookery node
/// with the same view sends (the same bytes from [`serf_member`], tags in key order).
#[test]
fn captured_conflict_queries_and_answers_reencode_byte_identically() {
    for (c, what) in [
        (capture(), "plaintext"),
        (capture_of(opened_encrypted_serf_records()), "encrypted"),
    ] {
        let asked: Vec<&super::serf::Query> = c
            .serf
            .iter()
            .filter_map(|m| match m {
                SerfMsg::Query(q) if is_conflict_query(&q.name) => Some(q),
                _ => None,
            })
            .collect();
        assert!(!asked.is_empty(), "{what}: a conflict query");
        for q in &asked {
            assert_eq!(q.payload.as_deref(), Some(&b"a"[..]), "{what}");
        }
        let mut answers = 0;
        let responses = query_responses(&c);
        for r in responses {
            let p = r.payload.clone().unwrap_or_default();
            let Ok(SerfMsg::ConflictResponse(m)) = SerfMsg::decode(&p) else {
                continue;
            };
            answers += 1;
            let m = m.expect("the capture's members know a");
            assert_eq!(
                SerfMsg::ConflictResponse(Some(m.clone())).encode(),
                p,
                "{what}: re-encodes"
            );
            assert_eq!(m.name, "a");
            assert_ne!(r.from, "a", "{what}: a does not answer about itself");
            let ip: [u8; 4] = m.addr.clone().unwrap().try_into().expect("a 4-byte net.IP");
            let addr = SocketAddr::from((ip, m.port));
            let tags: crate::identity::Tags = m.tags.clone().unwrap().into_iter().collect();
            assert_eq!(
                tags,
                crate::identity::Tags::from([
                    ("dc".to_string(), "east".to_string()),
                    ("role".to_string(), "web".to_string()),
                ]),
                "{what}"
            );
            assert_eq!(m.status, 1, "{what}: alive");
            let versions = Versions::from_bytes(&m.versions).unwrap();
            let ours = serf_member("a", addr, &tags, crate::MemberStatus::Alive, versions);
            // Go writes a map in its random iteration order, we in key order: the same
            // member, and the same bytes once the captured tags are put in key order.
            let mut sorted = m.clone();
            sorted.tags.as_mut().unwrap().sort();
            assert_eq!(ours, sorted, "{what}");
            let sent = answer_conflict_query("b", &b"a"[..], |_| Some(ours.clone()));
            assert_eq!(
                sent.as_deref(),
                Some(&SerfMsg::ConflictResponse(Some(sorted)).encode()[..]),
                "{what}: our answer's bytes"
            );
        }
        assert!(answers >= 1, "{what}: no conflict answer");
    }
}

/// The same run with `serf agent -encrypt`: every datagram and stream opens with the key and
/// re-seals to Go's bytes; inside, the same conversation (events, queries, intents, failure
/// detection), datagrams re-encoding byte for byte, and the key queries now answered with the
/// cluster's keys.
#[test]
fn encrypted_serf_capture_opens_and_says_the_same() {
    let recs = opened_encrypted_serf_records();
    assert!(recs.len() > 100, "{} records", recs.len());
    for r in &recs {
        if r.udp {
            let p = decode_packet(&r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(p.encode().as_deref(), Some(&r.bytes[..]), "{}", r.what);
        } else {
            let (s, _) = decode_stream(&r.bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(s.encode(), r.bytes, "{}", r.what);
        }
    }
    let c = capture_of(recs);
    let has = |f: &dyn Fn(&SerfMsg) -> bool| c.serf.iter().any(f);
    assert!(has(
        &|m| matches!(m, SerfMsg::UserEvent(e) if e.name == "deploy")
    ));
    assert!(has(
        &|m| matches!(m, SerfMsg::Query(q) if q.name == "filtered" && q.relay_factor == 1)
    ));
    assert!(has(
        &|m| matches!(m, SerfMsg::Leave(l) if l.node == "c" && l.prune)
    ));
    assert!(c
        .msgs
        .iter()
        .any(|m| matches!(m, PacketMsg::Dead(d) if d.node == "c" && d.from != "c")));
    let listed = c.serf.iter().any(|m| match m {
        SerfMsg::QueryResponse(r) => matches!(
            SerfMsg::decode(r.payload.as_deref().unwrap_or(&[])),
            Ok(SerfMsg::KeyResponse(k)) if k.result
                && k.primary_key == "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
        ),
        _ => false,
    });
    assert!(listed, "a key-list answer naming the primary key");
}

/// Our push-pull (what it can say on this wire: no accuser, no leaving state, events not
/// coalescing) goes out as memberlist's compressed stream push-pull with Serf's state inside
/// and comes back the same.
#[test]
fn our_push_pull_round_trips_through_the_profile() {
    use crate::wire::message::{PushPull as Ours, PushState, UserEventMsg, WireStatus};
    let local = local_me();
    let state = |name: &str, status, ltime, t: &[(&str, &str)]| PushState {
        name: name.into(),
        addr: SocketAddr::from(([10, 0, 0, 9], 7000 + ltime as u16)),
        incarnation: 3,
        status,
        tags: tags(t),
        ltime,
        accuser: None,
    };
    let event = |ltime, name: &str, payload: &'static [u8]| UserEventMsg {
        ltime,
        name: name.into(),
        payload: bytes::Bytes::from_static(payload),
        coalesce: false,
    };
    let ours = Ours {
        id: 11,
        request: true,
        join: true,
        reply_to: local.addr,
        sender: local.name.clone(),
        states: vec![
            state("me", WireStatus::Alive, 2, &[("role", "web")]),
            state("s", WireStatus::Suspect, 4, &[]),
            state("d", WireStatus::Dead, 5, &[("k", "v"), ("x", "y")]),
            state("l", WireStatus::Left, 7, &[]),
        ],
        member_ltime: 9,
        event_ltime: 12,
        query_ltime: 3,
        events: vec![
            event(10, "a", b"1"),
            event(10, "b", b""),
            event(11, "c", b"3"),
        ],
    };
    let out = to_hashicorp(&Message::PushPull(Box::new(ours.clone())), &local).expect("maps");
    let [Outgoing::Stream(StreamMsg::PushPull(p))] = out.as_slice() else {
        panic!("one stream push-pull: {out:?}")
    };
    let bytes = Stream {
        compressed: true,
        msg: StreamMsg::PushPull(p.clone()),
    }
    .encode();
    let (s, used) = decode_stream(&bytes).expect("decodes");
    assert_eq!(used, bytes.len());
    let StreamMsg::PushPull(back) = s.msg else {
        panic!("a push-pull")
    };
    assert!(back
        .states
        .iter()
        .all(|s| s.versions() == Some(Versions::SERF_0_9_4)));
    let again = push_pull_from_hashicorp(&back, 11, true, local.name.clone(), local.addr, true)
        .expect("maps back");
    assert_eq!(again, ours);
}
