//! Real tokio agents on loopback with a keyring, against an outsider without the key: valid
//! plaintext messages built with rookery's own encoder, the same messages sealed with a wrong
//! key, and replays of sealed traffic captured from a member. None of it joins, changes any
//! member's state (suspect, failed, left, force-removed), or delivers a user event, query or
//! direct message; every attempt shows in the counters.
//!
//! What a replay can and cannot do: a captured sealed message is authentic, so it opens (as in
//! memberlist). Replayed, it says again what a member already said: its incarnations and
//! Lamport times are no newer than what every member has seen, so membership ignores it, user
//! events and queries are deduplicated by Lamport time and id, and answers go to the addresses
//! inside it (members), not to the replayer. The test checks that a replay changes no member's
//! state and delivers nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use rookery_core::fuzzing::{self, StateEntry, WireMessage};
use rookery_core::{Event, Keyring, MemberStatus, Tags};
use rookery_tests::scenarios::{fast_config, start_cluster_with, wait_until, Agent, LIMIT, TOKIO};

const KEY: [u8; 32] = [0x11; 32];
const WRONG: [u8; 32] = [0x22; 32];

type View = Vec<(String, MemberStatus, u32)>;

fn view(a: &Agent) -> View {
    let mut v: View = a
        .members()
        .expect("members")
        .into_iter()
        .map(|m| (m.name.to_string(), m.status, m.incarnation))
        .collect();
    v.sort();
    v
}

/// The hostile messages: an intruder announcing itself, accusations and a leave at the top of
/// the ranges against `victim`, a force-remove, a user event, a query and a direct message
/// claiming to come from `member`.
fn hostile(victim: &str, member: &str, me: SocketAddr) -> (Vec<WireMessage>, Vec<WireMessage>) {
    let datagram = vec![
        WireMessage::alive("intruder", me, 1, Tags::new()),
        WireMessage::suspect(victim, u32::MAX, member),
        WireMessage::dead(victim, u32::MAX, member),
        WireMessage::dead(victim, u32::MAX, victim),
        WireMessage::leave_intent(victim, u64::MAX / 2, true),
        WireMessage::user_event(1_000, "evil", b"payload"),
        WireMessage::query(1_000, 7, member, me, "evil-query", 0, true),
    ];
    let intruder = StateEntry {
        name: "intruder".into(),
        addr: me,
        incarnation: 1,
        status: MemberStatus::Alive,
        tags: Tags::new(),
    };
    let stream = vec![
        WireMessage::direct(member, b"hello"),
        WireMessage::push_pull(1, true, true, me, "intruder", vec![intruder]),
        WireMessage::leave_intent(victim, u64::MAX / 2, true),
    ];
    (datagram, stream)
}

fn send_frame(to: SocketAddr, body: &[u8]) {
    if let Ok(mut c) = TcpStream::connect(to) {
        let _ = c.write_all(&(body.len() as u32).to_be_bytes());
        let _ = c.write_all(body);
        let _ = c.flush();
    }
}

/// Ask `member` to join through a listener of ours and capture the sealed push-pull frame
/// body it sends.
fn capture(member: &Arc<Agent>) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let m = member.clone();
    let join = std::thread::spawn(move || m.join(&[addr]));
    let (mut c, _) = l.accept().expect("accept");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut len = [0u8; 4];
    c.read_exact(&mut len).expect("length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    c.read_exact(&mut body).expect("body");
    drop(c);
    let _ = join.join();
    body
}

#[test]
fn an_outsider_without_the_key_can_do_nothing() {
    let mut config = fast_config();
    config.keyring = Some(Keyring::new(&KEY).unwrap());
    let agents = start_cluster_with("kt", &[TOKIO, TOKIO, TOKIO], config);
    let captured = capture(&agents[2]);
    assert_eq!(captured[0], rookery_core::SEALED_VERSION, "members seal");
    assert!(fuzzing::open_sealed(&Keyring::new(&KEY).unwrap(), None, &captured).is_some());
    std::thread::sleep(Duration::from_secs(1));
    let views: Vec<View> = agents.iter().map(|a| view(a)).collect();
    let events_before: Vec<usize> = agents.iter().map(|a| a.events().len()).collect();
    let stats_before: Vec<_> = agents.iter().map(|a| a.stats().unwrap().core).collect();

    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let me = udp.local_addr().unwrap();
    let wrong = Keyring::new(&WRONG).unwrap();
    let (dgrams, frames) = hostile("kt-1", "kt-0", me);
    let rounds = 3;
    for round in 0..rounds {
        for a in &agents {
            let to = a.local_addr();
            for m in &dgrams {
                let plain = fuzzing::encode_datagram(None, std::slice::from_ref(m));
                udp.send_to(&plain, to).unwrap();
                let sealed = fuzzing::seal_datagram(&wrong, None, [round; 32], &plain).unwrap();
                udp.send_to(&sealed, to).unwrap();
            }
            for m in &frames {
                let plain = fuzzing::encode_frame_body(None, m);
                send_frame(to, &plain);
                send_frame(
                    to,
                    &fuzzing::seal_frame_body(&wrong, None, [9; 32], &plain).unwrap(),
                );
            }
            // Replays of a member's authentic sealed push-pull, over TCP and as a datagram.
            send_frame(to, &captured);
            udp.send_to(&captured, to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let plain_sent = (rounds as u64) * (dgrams.len() + frames.len()) as u64;
    let wrong_sent = plain_sent;
    let (ok, took) = wait_until(LIMIT, || {
        agents.iter().zip(&stats_before).all(|(a, b)| {
            let s = a.stats().unwrap().core;
            s.plaintext_refused - b.plaintext_refused >= plain_sent
                && s.sealed_no_key - b.sealed_no_key >= wrong_sent
        })
    });
    for (a, b) in agents.iter().zip(&stats_before) {
        let s = a.stats().unwrap().core;
        eprintln!(
            "{}: plaintext_refused +{}, sealed_no_key +{}, decode_errors +{}",
            a.name(),
            s.plaintext_refused - b.plaintext_refused,
            s.sealed_no_key - b.sealed_no_key,
            s.decode_errors - b.decode_errors
        );
    }
    assert!(ok, "every attempt counted within {took:?}");
    // Give anything that got through time to show, then check nothing did.
    std::thread::sleep(Duration::from_secs(3));
    for (i, a) in agents.iter().enumerate() {
        assert_eq!(view(a), views[i], "{} changed its view", a.name());
        let new: Vec<Event> = a.events().split_off(events_before[i]);
        assert!(new.is_empty(), "{} got events: {new:?}", a.name());
        assert!(a.alive() == 3);
    }
    for a in &agents {
        a.shutdown(rookery_driver::ShutdownMode::Now);
    }
}

#[test]
fn rotation_through_the_handles_rewrites_every_keyring_file() {
    use rookery_driver::keyring_file::{load_keyring, save_keyring};
    use rookery_driver::Options;
    let dir = std::env::temp_dir().join(format!("rookery-kt-rot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old = Keyring::new(&KEY).unwrap();
    let new_key = [0x33u8; 24];
    let mut agents = Vec::new();
    for i in 0..3 {
        let path = dir.join(format!("keyring-{i}.json"));
        save_keyring(&path, &old).unwrap();
        // The file's keyring is used: the configuration has none.
        let (h, _events) = TOKIO
            .start(
                &format!("kr-{i}"),
                "127.0.0.1:0".parse().unwrap(),
                fast_config(),
                Options::default().with_keyring_file(&path),
            )
            .expect("agent starts");
        agents.push((h, _events, path));
    }
    let seed = agents[0].0.local_addr();
    for (h, _, _) in &agents[1..] {
        assert_eq!(h.join(&[seed]), Ok(1));
    }
    let (ok, _) = wait_until(LIMIT, || {
        agents
            .iter()
            .all(|(h, _, _)| h.members().map_or(0, |m| m.len()) == 3)
    });
    assert!(ok);
    let h = &agents[0].0;
    assert!(h.install_key(&new_key).unwrap().complete());
    assert!(h.use_key(&new_key).unwrap().complete());
    assert!(matches!(
        h.remove_key(&new_key),
        Err(rookery_driver::AgentError::Rejected(_))
    ));
    assert!(h.remove_key(&KEY).unwrap().complete());
    let list = h.list_keys().unwrap();
    assert_eq!(list.keys.len(), 1);
    assert_eq!(list.primary_keys.get(&new_key[..]), Some(&3));
    let want = Keyring::new(&new_key).unwrap();
    let (ok, _) = wait_until(LIMIT, || {
        agents
            .iter()
            .all(|(_, _, p)| load_keyring(p).ok().flatten().as_ref() == Some(&want))
    });
    assert!(ok, "every member's keyring file holds only the new key");
    for (h, _, _) in &agents {
        h.shutdown(rookery_driver::ShutdownMode::Now);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
