//! Push-pull encoding, merging, joins, the graceful leave and digest repair, through a node.

use std::time::Duration;

use crate::event::Event;
use crate::node::TransmitKind;
use crate::testkit::*;
use crate::wire::{Digest, Message, PushPull, PushState, WireStatus};

/// What a push-pull from `a` says about each member.
fn local_state(a: &mut crate::Node) -> Vec<PushState> {
    super::push_pull::local_state(&crate::node::cx!(a))
}

/// The frame `a` writes straight from its table, if it fits.
fn frame(a: &mut crate::Node, id: u32, request: bool, join: bool) -> Option<Vec<u8>> {
    let share = a.serf_share();
    super::push_pull::frame(&crate::node::cx!(a), &share, id, request, join)
}

fn state(name: &str, port: u16, status: WireStatus) -> PushState {
    PushState {
        name: name.into(),
        addr: addr(port),
        incarnation: 0,
        status,
        tags: Default::default(),
        ltime: 0,
        accuser: None,
    }
}

/// The push-pull frame built straight from the table is byte for byte the encoding of the
/// `PushPull` message built state by state — for every kind of member: alive, suspect
/// (with its accuser), failed, left, leaving, with tags, at an IPv6 address, with a long
/// name — and with user events in the ring; and a table too large for
/// `max_stream_message` is left to the trimming path.
#[test]
fn push_pull_from_the_table_encodes_as_the_message() {
    let mut a = node("a", 1);
    let v6: std::net::SocketAddr = "[fe80::7]:7946".parse().unwrap();
    let mut tagged = crate::wire::Alive {
        incarnation: 3,
        name: "tagged".into(),
        addr: addr(5),
        tags: Default::default(),
        ltime: 7,
    };
    tagged.tags.insert("role".into(), "db".into());
    let six = crate::wire::Alive {
        incarnation: 1,
        name: "a-member-with-a-rather-long-name".into(),
        addr: v6,
        tags: Default::default(),
        ltime: 0,
    };
    let mut msgs = vec![Message::Alive(tagged), Message::Alive(six)];
    msgs.extend([("b", 2), ("c", 3), ("d", 4), ("e", 6), ("f", 7)].map(|(n, p)| alive(n, p, 1)));
    deliver(&mut a, at(0), 2, &msgs);
    deliver(&mut a, at(10), 3, &[suspect("c", 1, "b")]);
    deliver(&mut a, at(20), 4, &[dead("d", 1, "b")]);
    deliver(&mut a, at(30), 6, &[dead("e", 1, "e")]);
    a.user_event(at(40), "deploy", &b"v2"[..], false).unwrap();
    let _ = (sent(&mut a), events(&mut a));
    let statuses: Vec<_> = local_state(&mut a).iter().map(|s| s.status).collect();
    for want in [
        WireStatus::Alive,
        WireStatus::Suspect,
        WireStatus::Dead,
        WireStatus::Left,
    ] {
        assert!(statuses.contains(&want), "{want:?} in {statuses:?}");
    }
    for (id, request, join) in [(1, true, true), (9, false, false)] {
        let slow = PushPull {
            id,
            request,
            join,
            reply_to: a.addr,
            sender: a.me.clone(),
            states: local_state(&mut a),
            member_ltime: a.clocks().0,
            event_ltime: a.clocks().1,
            query_ltime: a.clocks().2,
            events: a.serf_share().events,
        };
        assert!(!slow.events.is_empty());
        let want = crate::wire::frame_message(&a.fx.header, &Message::PushPull(Box::new(slow)));
        assert_eq!(frame(&mut a, id, request, join), Some(want));
    }
    std::sync::Arc::make_mut(&mut a.cfg).max_stream_message = 400;
    assert_eq!(
        frame(&mut a, 1, true, false),
        None,
        "too large: trimmed instead"
    );
    // The trimming path: counted, within the limit, this node first, then live members.
    a.send_push_pull(addr(2), 1, true, false);
    assert_eq!(a.fx.stats.push_pulls_trimmed, 1);
    let t = a.poll_transmit().expect("a push-pull frame");
    assert!(t.payload.len() <= 400, "{} bytes", t.payload.len());
    let Some(Message::PushPull(p)) = sent_message(&t.payload) else {
        panic!("not a push-pull");
    };
    let sent: Vec<_> = p.states.iter().map(|s| (&*s.name, s.status)).collect();
    assert_eq!(sent[0], ("a", WireStatus::Alive), "{sent:?}");
    assert!(sent.len() < statuses.len(), "{sent:?}");
    assert!(sent.iter().all(|s| s.1 == WireStatus::Alive), "{sent:?}");
}

fn sent_message(frame: &[u8]) -> Option<Message> {
    let body = &frame[crate::wire::FRAME_HEADER_LEN..];
    match crate::wire::open_envelope(body, None).ok()? {
        crate::wire::Envelope::Ours(rest) => crate::wire::decode_single(rest, &limits()).ok(),
        crate::wire::Envelope::OtherLabel => None,
    }
}

/// Node `a` (local preset) knowing b, c, d and x, all alive at incarnation 0: five live
/// members, so a suspicion runs from 18 s down to 3 s with one independent confirmation.
fn five() -> crate::Node {
    let mut a = node("a", 1);
    let msgs: Vec<Message> = [("b", 2), ("c", 3), ("d", 4), ("x", 9)]
        .iter()
        .map(|&(n, p)| alive(n, p, 0))
        .collect();
    deliver(&mut a, at(0), 2, &msgs);
    assert_eq!(a.alive_count(), 5);
    let _ = sent(&mut a);
    let _ = events(&mut a);
    a
}

/// Hand `a` a push-pull response from `sender` (port 3) carrying one state of x.
/// The stream frame body (after the length prefix) of a push-pull from `sender` at
/// `addr(port)`.
fn push_pull_frame(
    id: u32,
    (request, join): (bool, bool),
    sender: &str,
    port: u16,
    states: Vec<PushState>,
) -> Vec<u8> {
    let msg = Message::PushPull(Box::new(PushPull {
        id,
        request,
        join,
        reply_to: addr(port),
        sender: sender.into(),
        states,
        member_ltime: 0,
        event_ltime: 0,
        query_ltime: 0,
        events: vec![],
    }));
    let frame = crate::wire::frame_message(&crate::wire::header(None), &msg);
    frame[4..].to_vec()
}

fn push_x(a: &mut crate::Node, now: u64, status: WireStatus, accuser: Option<&str>) {
    let mut x = state("x", 9, status);
    x.accuser = accuser.map(Into::into);
    let frame = push_pull_frame(77, (false, false), "c", 3, vec![x]);
    a.handle_stream(at(now), addr(3), &frame).unwrap();
}

/// (confirmations, deadline in ms) of x's suspicion.
fn suspicion_of_x(a: &crate::Node) -> (u32, u64) {
    let s = a.members.get("x").unwrap().suspicion().unwrap();
    (s.confirmations(), s.deadline().as_micros() / 1000)
}

#[test]
fn a_suspicion_relayed_by_push_pull_is_not_the_senders_confirmation() {
    // b suspects x at 1 s: the suspicion runs for the full 18 s.
    let mut a = five();
    deliver(&mut a, at(1_000), 2, &[suspect("x", 0, "b")]);
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    // c merely relays b's suspicion in its push-pull state, naming b: no confirmation.
    push_x(&mut a, 1_100, WireStatus::Suspect, Some("b"));
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    // Nor when the state names no accuser (the sender's word is not an accusation),
    // nor when it names this node (an echo of our own accusation), nor a dead state.
    push_x(&mut a, 1_200, WireStatus::Suspect, None);
    push_x(&mut a, 1_300, WireStatus::Suspect, Some("a"));
    push_x(&mut a, 1_400, WireStatus::Dead, None);
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    a.handle_timeout(at(4_500));
    assert_eq!(
        a.member("x").map(|m| m.status),
        Some(crate::MemberStatus::Suspect),
        "not failed at the 3 s minimum"
    );
    // A state naming another accuser (d) is an independent confirmation: the timeout
    // drops to its 3 s minimum, already past.
    push_x(&mut a, 4_600, WireStatus::Suspect, Some("d"));
    assert_eq!(suspicion_of_x(&a), (1, 4_000));
    a.handle_timeout(at(4_600));
    assert_eq!(
        a.member("x").map(|m| m.status),
        Some(crate::MemberStatus::Failed)
    );
}

#[test]
fn a_suspicion_learned_by_push_pull_keeps_its_original_accuser() {
    let mut a = five();
    push_x(&mut a, 1_000, WireStatus::Suspect, Some("b"));
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    assert!(events(&mut a).iter().any(|e| matches!(e,
        Event::MemberSuspected { member, by } if &*member.name == "x" && &**by == "b")));
    // b's own suspect message is the same accusation, not a confirmation.
    deliver(&mut a, at(1_100), 2, &[suspect("x", 0, "b")]);
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    // Another accuser named by a push-pull state confirms, and is re-gossiped in its
    // own name.
    let _ = sent(&mut a);
    push_x(&mut a, 1_150, WireStatus::Suspect, Some("d"));
    assert_eq!(suspicion_of_x(&a), (1, 4_000));
    a.handle_timeout(at(1_160) + a.cfg.gossip_interval);
    let gossiped: Vec<Message> = sent(&mut a).into_iter().flat_map(|(_, _, m)| m).collect();
    assert!(
        gossiped
            .iter()
            .any(|m| matches!(m, Message::Suspect(s) if &*s.name == "x" && &*s.from == "d")),
        "{gossiped:?}"
    );
    // Our own table names b as the accuser.
    let frame = push_pull_frame(5, (true, false), "d", 4, vec![]);
    let _ = sent(&mut a);
    a.handle_stream(at(1_200), addr(4), &frame).unwrap();
    let out = sent(&mut a);
    let Some(Message::PushPull(p)) = out.iter().find_map(|(_, _, m)| m.first()) else {
        panic!("no push-pull answer: {out:?}")
    };
    let x = p.states.iter().find(|s| &*s.name == "x").unwrap();
    assert_eq!(
        (x.status, x.accuser.as_deref()),
        (WireStatus::Suspect, Some("b"))
    );
    assert!(p
        .states
        .iter()
        .all(|s| s.accuser.is_none() || s.status == WireStatus::Suspect));
}

#[test]
fn a_dead_state_starts_a_suspicion_with_no_known_accuser() {
    let mut a = five();
    push_x(&mut a, 1_000, WireStatus::Dead, None);
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    // The suspect itself is told, so that it can refute; nobody else is (a gossiped
    // suspicion would count as the accusation of whoever it names).
    a.handle_timeout(at(1_000) + a.cfg.gossip_interval * 3);
    let out = sent(&mut a);
    let told = |m: &Message| matches!(m, Message::Suspect(s) if &*s.name == "x");
    assert!(out.iter().any(|(to, _, m)| *to == addr(9)
        && matches!(&m[0], Message::Suspect(s) if &*s.name == "x" && &*s.from == "a")));
    assert!(
        out.iter()
            .all(|(to, _, m)| *to == addr(9) || !m.iter().any(told)),
        "{out:?}"
    );
    // The first accuser heard of may be the original one: no confirmation yet.
    deliver(&mut a, at(1_100), 2, &[suspect("x", 0, "b")]);
    assert_eq!(suspicion_of_x(&a), (0, 19_000));
    // A second, different accuser is one.
    deliver(&mut a, at(1_200), 4, &[suspect("x", 0, "d")]);
    assert_eq!(suspicion_of_x(&a), (1, 4_000));
}

#[test]
fn push_pull_period_stretches_past_32_members() {
    let mut a = node("a", 1);
    assert_eq!(
        crate::formulas::push_pull_period(&a.cfg, a.members.live()),
        Duration::from_secs(15)
    );
    let msgs: Vec<Message> = (0..99)
        .map(|i| alive(&format!("m{i}"), 100 + i, 0))
        .collect();
    for chunk in msgs.chunks(20) {
        deliver(&mut a, at(1), 100, chunk);
    }
    assert_eq!(a.members.live(), 100);
    // ceil(log2(100) - 5) + 1 = 3
    assert_eq!(
        crate::formulas::push_pull_period(&a.cfg, a.members.live()),
        Duration::from_secs(45)
    );
}

#[test]
fn join_pulls_state_without_regossiping_it() {
    let mut a = node("a", 1);
    a.join(at(0), &[addr(2)]).unwrap();
    let out = sent(&mut a);
    let id = match &out[..] {
        [(to, TransmitKind::Reliable, m)] if *to == addr(2) => match &m[0] {
            Message::PushPull(p) if p.request && p.join => p.id,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let states = vec![
        state("b", 2, WireStatus::Alive),
        state("c", 3, WireStatus::Alive),
        state("d", 4, WireStatus::Dead),
    ];
    let frame = push_pull_frame(id, (false, false), "b", 2, states);
    a.handle_stream(at(5), addr(2), &frame).unwrap();
    let ev = events(&mut a);
    assert!(ev.contains(&Event::JoinCompleted {
        answered: 1,
        contacted: 1
    }));
    assert_eq!(a.alive_count(), 3);
    assert!(
        a.member("d").is_none(),
        "a remote verdict about an unknown member is not taken on trust"
    );
    assert!(
        !a.fx.queue.contains(&"b".into()) && !a.fx.queue.contains(&"c".into()),
        "pulled state is not re-gossiped"
    );
}

#[test]
fn a_push_pull_request_is_answered_and_merged_with_regossip() {
    let mut a = node("a", 1);
    let states = vec![state("b", 2, WireStatus::Alive)];
    let frame = push_pull_frame(9, (true, true), "b", 2, states);
    a.handle_stream(at(1), addr(40000), &frame).unwrap();
    let out = sent(&mut a);
    assert!(matches!(&out[..], [(to, TransmitKind::Reliable, m)]
        if *to == addr(2) && matches!(&m[0], Message::PushPull(p) if !p.request && p.id == 9 && p.states.len() == 1)));
    assert!(
        a.fx.queue.contains(&"b".into()),
        "the newcomer is gossiped by its seed"
    );
}

#[test]
fn unreachable_seeds_complete_the_join_with_zero() {
    let mut a = node("a", 1);
    assert_eq!(a.join(at(0), &[addr(1)]), Err(crate::ApiError::NoSeeds));
    a.join(at(0), &[addr(2), addr(3)]).unwrap();
    a.handle_send_failure(at(10), addr(2), None);
    assert!(events(&mut a).is_empty());
    a.handle_send_failure(at(20), addr(3), None);
    assert_eq!(
        events(&mut a),
        vec![Event::JoinCompleted {
            answered: 0,
            contacted: 2
        }]
    );
    // Without any failure report, the deadline (tcp_timeout) completes it.
    a.join(at(30), &[addr(4)]).unwrap();
    a.handle_timeout(at(30) + a.cfg.tcp_timeout);
    assert!(events(&mut a).contains(&Event::JoinCompleted {
        answered: 0,
        contacted: 1
    }));
}

#[test]
fn leave_announces_then_goes_inert() {
    let mut a = node("a", 1);
    deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
    sent(&mut a);
    a.leave(at(1)).unwrap();
    assert_eq!(a.leave(at(1)), Err(crate::ApiError::NotRunning));
    let mut announced = 0;
    for step in 1..200 {
        a.handle_timeout(at(1 + step * 10));
        for (_, _, msgs) in sent(&mut a) {
            announced += msgs
                .iter()
                .filter(|m| matches!(m, Message::Dead(d) if d.name == "a" && d.from == "a"))
                .count();
        }
    }
    assert!(announced >= 1);
    assert!(events(&mut a).contains(&Event::LeaveCompleted));
    assert!(a.has_left());
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(
        a.handle_packet(at(3000), addr(2), &datagram(&[alive("c", 3, 0)])),
        Err(crate::InputError::NotRunning)
    );
}

#[test]
fn a_settled_disagreeing_digest_triggers_one_repair() {
    let mut a = node("a", 1);
    deliver(&mut a, at(0), 2, &[alive("b", 2, 0)]);
    sent(&mut a);
    // Settle, then find the probe of b.
    let mut seq = None;
    for step in 1..400 {
        a.handle_timeout(at(step * 10));
        for (_, _, msgs) in sent(&mut a) {
            for m in msgs {
                if let Message::Ping { seq: s, .. } = m {
                    if a.now >= at(1000) {
                        seq = Some(s);
                    }
                }
            }
        }
        if seq.is_some() {
            break;
        }
    }
    let seq = seq.expect("a probe after settling");
    let theirs = Digest {
        hash: [9, 9, 9, 9],
        live: 2,
        events: 1,
        stable: true,
    };
    let now = a.now;
    deliver(
        &mut a,
        now,
        2,
        &[Message::Ack {
            seq,
            digest: Some(theirs),
        }],
    );
    let out = sent(&mut a);
    assert!(out.iter().any(|(to, kind, m)| *to == addr(2)
        && *kind == TransmitKind::Reliable
        && matches!(&m[0], Message::PushPull(p) if p.request)));
    assert_eq!(a.stats().digest_repairs, 1);
    // An unsettled peer's digest is not acted on.
    let before = a.stats().digest_repairs;
    a.compare_digest(
        addr(2),
        Digest {
            hash: [1, 1, 1, 1],
            live: 50,
            events: 1,
            stable: false,
        },
    );
    assert_eq!(a.stats().digest_repairs, before);
}
