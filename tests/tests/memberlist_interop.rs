//! Mixed clusters of Go memberlist 0.2.2 programs (`tests/interop/memberlist-peer`, built
//! here against Debian's `golang-github-hashicorp-memberlist-dev`) and rookery agents speaking
//! the HashiCorp wire profile, on loopback: joins both ways, push-pull both ways (a joiner
//! learns the members it never met from the other side's push-pull), probes acked both ways
//! (no suspicion, no failed probe while everyone is up), failure detection and graceful
//! leaves both ways, user messages both ways (direct messages as memberlist's user
//! messages); the same encrypted with memberlist's `SecretKey` and rookery's keyring, and a
//! rookery agent with the wrong key kept out. The rookery agents run on tokio, and a mio
//! agent and an async-std agent each join Go members of their own (joins both ways, probes,
//! failure both ways).
//!
//! Needs `go` and memberlist's sources (Debian: `apt-get install golang-go
//! golang-github-hashicorp-memberlist-dev`; `.ci/run` installs them). Without them each test
//! prints why and passes, unless `ROOKERY_REQUIRE_MEMBERLIST=1` (set by CI) makes their
//! absence a failure.

use std::sync::Arc;
use std::time::Duration;

use rookery_core::{Config, MemberStatus, WireProfile};
use rookery_tests::interop::{all_alive, cluster_key, GoPeer, CLUSTER_KEY_B64};
use rookery_tests::scenarios::{wait_until, Agent, Driver, ASYNC_STD, MIO, TOKIO};

/// How long a mixed cluster may take to notice a change (memberlist's local profile: a
/// failed member is declared dead after its suspicion timeout, a few seconds).
const LIMIT: Duration = Duration::from_secs(30);

/// rookery's side: memberlist's wire without Serf's layer, with memberlist's LAN timing
/// (`lan`) or its local one, as the Go members use.
fn memberlist_config(lan: bool) -> Config {
    Config {
        wire: WireProfile::Memberlist,
        ..if lan {
            Config::memberlist()
        } else {
            Config::local()
        }
    }
}

/// Two Go members, two rookery agents joining through Go, a third Go member joining through
/// rookery: every view converges (the joiners learn members they never contacted from the
/// push-pull of the side they joined); then five seconds of probing both ways with no
/// suspicion anywhere, no failed probe and no refused input on the rookery side.
#[test]
fn joins_push_pull_and_probes_both_ways() {
    let Some(bin) = GoPeer::binary() else { return };
    let go0 = GoPeer::start(bin, "go-0", &[], true);
    let go1 = GoPeer::start(bin, "go-1", &[go0.bind], true);
    let rk: Vec<Arc<Agent>> = (0..2)
        .map(|i| Agent::start(TOKIO, &format!("jp-rk-{i}"), memberlist_config(true)))
        .collect();
    assert_eq!(rk[0].join(&[go0.bind]), Ok(1), "rookery joins Go");
    // rk-0 knows go-1 from go-0's push-pull answer at once (gossip would take longer).
    assert_eq!(
        rk[0].status_of("go-1"),
        Some(MemberStatus::Alive),
        "push-pull from Go"
    );
    assert_eq!(
        rk[1].join(&[rk[0].local_addr()]),
        Ok(1),
        "rookery joins rookery"
    );
    // A Go member joining through rookery learns everyone from rookery's push-pull.
    let go2 = GoPeer::start(bin, "go-2", &[rk[1].local_addr()], true);
    for n in ["go-0", "go-1", "jp-rk-0", "jp-rk-1"] {
        assert_eq!(
            go2.status_of(n).as_deref(),
            Some("alive"),
            "go-2 learns {n} from rookery's push-pull on its join"
        );
    }
    let go = [&go0, &go1, &go2];
    let names: Vec<String> = ["go-0", "go-1", "go-2", "jp-rk-0", "jp-rk-1"]
        .map(String::from)
        .to_vec();
    let (ok, took) = wait_until(LIMIT, || all_alive(&go, &rk, &names));
    assert!(
        ok,
        "views did not converge in {took:?}: rk-0 sees {:?}\ngo-0 printed:\n{}\ngo-0 log:\n{}",
        rk[0].members(),
        go0.printed(),
        go0.log()
    );
    eprintln!("mixed cluster of 5 converged in {took:?}");
    let before: Vec<u64> = rk
        .iter()
        .map(|a| a.stats().expect("stats").core.probes_ok)
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    assert!(all_alive(&go, &rk, &names), "a member fell out of a view");
    for g in go {
        let s = g.suspicions();
        assert!(s.is_empty(), "{} suspected: {s:?}\n{}", g.name, g.log());
        let errors = g.errors();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
    }
    for (a, before) in rk.iter().zip(before) {
        let s = a.stats().expect("stats").core;
        assert!(s.probes_ok > before, "{a:?} probed nobody successfully");
        assert_eq!(s.probes_failed, 0, "{a:?} had failed probes");
        assert_eq!(s.decode_errors, 0, "{a:?} refused input");
        assert_eq!(s.refutations, 0, "{a:?} had to refute a suspicion");
    }
}

/// Graceful leaves both ways, then failure detection both ways: a Go member's leave is
/// left on every rookery agent; a rookery agent's leave (a dead message from itself) makes
/// every Go member drop it without ever suspecting it (memberlist 0.2.2 does not tell its
/// program a left member from a failed one); a killed Go member is failed on every rookery
/// agent; a crashed rookery agent is dropped by every Go member. The leaves come first: a Go
/// member's departure is gossiped to only `RetransmitMult · ⌈log10(n + 1)⌉` members, picked
/// among the live and the recently dead alike, so next to dead members memberlist itself may
/// lose it (its program then sees a failure).
#[test]
fn leave_and_failure_both_ways() {
    let Some(bin) = GoPeer::binary() else { return };
    let go0 = GoPeer::start(bin, "go-0", &[], false);
    let mut go1 = GoPeer::start(bin, "go-1", &[go0.bind], false);
    let mut go2 = GoPeer::start(bin, "go-2", &[go0.bind], false);
    let rk: Vec<Arc<Agent>> = (0..3)
        .map(|i| Agent::start(TOKIO, &format!("fl-rk-{i}"), memberlist_config(false)))
        .collect();
    for a in &rk {
        assert_eq!(a.join(&[go0.bind]), Ok(1), "{a:?} joins Go");
    }
    let names: Vec<String> = ["go-0", "go-1", "go-2", "fl-rk-0", "fl-rk-1", "fl-rk-2"]
        .map(String::from)
        .to_vec();
    let (ok, took) = wait_until(LIMIT, || all_alive(&[&go0, &go1, &go2], &rk, &names));
    assert!(
        ok,
        "views did not converge in {took:?}: {:?}\ngo-0 printed:\n{}",
        rk[0].members(),
        go0.printed()
    );
    // A graceful Go leave is left on every rookery agent.
    go1.leave();
    let (ok, took) = wait_until(LIMIT, || {
        rk.iter()
            .all(|a| a.status_of("go-1") == Some(MemberStatus::Left))
    });
    let views: Vec<_> = rk.iter().map(|a| a.status_of("go-1")).collect();
    assert!(
        ok,
        "go-1 not left on every rookery agent in {took:?}: {views:?}"
    );
    eprintln!("graceful Go leave left on every rookery agent in {took:?}");
    // A graceful rookery leave: the Go members drop it without suspecting it first, and the
    // other rookery agents hold it left.
    rk[1].leave().expect("leave");
    let (ok, took) = wait_until(LIMIT, || {
        [&go0, &go2]
            .iter()
            .all(|g| g.status_of("fl-rk-1").as_deref() == Some("gone"))
            && [&rk[0], &rk[2]]
                .iter()
                .all(|a| a.status_of("fl-rk-1") == Some(MemberStatus::Left))
    });
    assert!(
        ok,
        "fl-rk-1 not left in {took:?}: go-0 holds {:?}, fl-rk-0 {:?}\n{}",
        go0.status_of("fl-rk-1"),
        rk[0].status_of("fl-rk-1"),
        go0.log()
    );
    for g in [&go0, &go2] {
        let s: Vec<String> = g
            .log()
            .lines()
            .filter(|l| l.contains("Suspect") || l.contains("Marking"))
            .filter(|l| l.contains("fl-rk-1"))
            .map(str::to_string)
            .collect();
        assert!(s.is_empty(), "{} suspected the leaver: {s:?}", g.name);
    }
    eprintln!("graceful rookery leave seen on every member in {took:?}");
    // A killed Go member is failed on every rookery agent still running.
    go2.kill();
    let running = [&rk[0], &rk[2]];
    let (ok, took) = wait_until(LIMIT, || {
        running
            .iter()
            .all(|a| a.status_of("go-2") == Some(MemberStatus::Failed))
    });
    let views: Vec<_> = running.iter().map(|a| a.status_of("go-2")).collect();
    assert!(
        ok,
        "go-2 not failed on the rookery agents in {took:?}: {views:?}"
    );
    eprintln!("killed Go member failed on every rookery agent in {took:?}");
    // A crashed rookery agent is dropped by the Go member.
    rk[2].shutdown(rookery_driver::ShutdownMode::Now);
    let (ok, took) = wait_until(LIMIT, || {
        go0.status_of("fl-rk-2").as_deref() == Some("gone")
    });
    assert!(
        ok,
        "fl-rk-2 not failed on go-0 in {took:?}: {:?}\n{}",
        go0.status_of("fl-rk-2"),
        go0.log()
    );
    eprintln!("crashed rookery agent failed on the Go member in {took:?}");
}

/// A `driver` agent among Go members (memberlist's local timing): it joins a Go member and
/// knows that member's peer at once (from the push-pull answer on the connection it asked
/// on); a Go member joining through it learns everyone from its push-pull answer (written back
/// on the Go member's connection); views converge; three seconds of probing both ways with no
/// suspicion, no failed probe and nothing refused; a killed Go member is failed on it, and
/// once it crashed a Go member drops it.
fn driver_with_go_members(driver: Driver, prefix: &str) {
    let Some(bin) = GoPeer::binary() else { return };
    let name = |n: &str| format!("{prefix}-{n}");
    let go0 = GoPeer::start(bin, &name("go-0"), &[], false);
    let go1 = GoPeer::start(bin, &name("go-1"), &[go0.bind], false);
    let rk = Agent::start(driver, &name("rk"), memberlist_config(false));
    assert_eq!(rk.join(&[go0.bind]), Ok(1), "{rk:?} joins Go");
    assert_eq!(
        rk.status_of(&go1.name),
        Some(MemberStatus::Alive),
        "{rk:?} learns go-1 from go-0's push-pull answer"
    );
    let mut go2 = GoPeer::start(bin, &name("go-2"), &[rk.local_addr()], false);
    for n in [&go0.name, &go1.name, &name("rk")] {
        assert_eq!(
            go2.status_of(n).as_deref(),
            Some("alive"),
            "go-2 learns {n} from {rk:?}'s push-pull answer"
        );
    }
    let go = [&go0, &go1, &go2];
    let names: Vec<String> = go
        .iter()
        .map(|g| g.name.clone())
        .chain([name("rk")])
        .collect();
    let rks = [rk.clone()];
    let (ok, took) = wait_until(LIMIT, || all_alive(&go, &rks, &names));
    assert!(
        ok,
        "views did not converge in {took:?}: {rk:?} sees {:?}\ngo-0 printed:\n{}\ngo-0 log:\n{}",
        rk.members(),
        go0.printed(),
        go0.log()
    );
    eprintln!("{prefix}: mixed cluster of 4 converged in {took:?}");
    let before = rk.stats().expect("stats").core.probes_ok;
    std::thread::sleep(Duration::from_secs(3));
    assert!(all_alive(&go, &rks, &names), "a member fell out of a view");
    let s = rk.stats().expect("stats").core;
    assert!(s.probes_ok > before, "{rk:?} probed nobody successfully");
    assert_eq!(
        (s.probes_failed, s.decode_errors, s.refutations),
        (0, 0, 0),
        "{rk:?}: failed probes, refused input or refutations"
    );
    for g in go {
        assert!(g.suspicions().is_empty(), "{} suspected someone", g.name);
        let errors = g.errors();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
    }
    // A killed Go member is failed on the agent.
    go2.kill();
    let (ok, took) = wait_until(LIMIT, || {
        rk.status_of(&go2.name) == Some(MemberStatus::Failed)
    });
    assert!(
        ok,
        "go-2 not failed on {rk:?} in {took:?}: {:?}",
        rk.status_of(&go2.name)
    );
    eprintln!("{prefix}: killed Go member failed on the {driver:?} agent in {took:?}");
    // The agent crashed: the Go members drop it.
    rk.shutdown(rookery_driver::ShutdownMode::Now);
    let (ok, took) = wait_until(LIMIT, || {
        [&go0, &go1]
            .iter()
            .all(|g| g.status_of(&name("rk")).as_deref() == Some("gone"))
    });
    assert!(
        ok,
        "{rk:?} not dropped by the Go members in {took:?}: {:?}\n{}",
        go0.status_of(&name("rk")),
        go0.log()
    );
    eprintln!("{prefix}: crashed {driver:?} agent failed on the Go members in {took:?}");
}

#[test]
fn a_mio_agent_among_go_members() {
    driver_with_go_members(MIO, "mio");
}

#[test]
fn an_async_std_agent_among_go_members() {
    driver_with_go_members(ASYNC_STD, "as");
}

/// Encrypted with memberlist's own format (Go's `SecretKey`, rookery's keyring on
/// `WireProfile::Memberlist`): a rookery agent joins a Go member and a second Go member joins
/// through rookery, views converge, probes are acked both ways with nothing refused on either
/// side; a killed Go member is failed on the rookery agent; a rookery agent with the wrong key
/// does not get in and counts the Go member's sealed answers as undecryptable.
#[test]
fn encrypted_joins_probes_and_failure_both_ways() {
    let Some(bin) = GoPeer::binary() else { return };
    let keyed = Config {
        keyring: Some(rookery_core::Keyring::new(&cluster_key()).expect("key")),
        ..memberlist_config(false)
    };
    let go0 = GoPeer::start_with(bin, "go-0", &[], false, Some(CLUSTER_KEY_B64));
    let rk = Agent::start(TOKIO, "en-rk-0", keyed);
    assert_eq!(rk.join(&[go0.bind]), Ok(1), "rookery joins Go, encrypted");
    let mut go1 = GoPeer::start_with(
        bin,
        "go-1",
        &[rk.local_addr()],
        false,
        Some(CLUSTER_KEY_B64),
    );
    let go = [&go0, &go1];
    let names: Vec<String> = ["go-0", "go-1", "en-rk-0"].map(String::from).to_vec();
    let rks = [rk.clone()];
    let (ok, took) = wait_until(LIMIT, || all_alive(&go, &rks, &names));
    assert!(
        ok,
        "encrypted views did not converge in {took:?}: {:?}\ngo-0 log:\n{}",
        rk.members(),
        go0.log()
    );
    eprintln!("encrypted mixed cluster of 3 converged in {took:?}");
    let before = rk.stats().expect("stats").core.probes_ok;
    std::thread::sleep(Duration::from_secs(4));
    assert!(all_alive(&go, &rks, &names), "a member fell out of a view");
    let s = rk.stats().expect("stats").core;
    assert!(s.probes_ok > before, "no probe acked");
    assert_eq!(
        (
            s.probes_failed,
            s.decode_errors,
            s.sealed_no_key,
            s.plaintext_refused
        ),
        (0, 0, 0, 0),
        "failed probes or refused input on the rookery agent"
    );
    for g in go {
        let errors = g.errors();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
        assert!(g.suspicions().is_empty(), "{} suspected someone", g.name);
    }
    // The wrong key: kept out, the Go member's sealed answers counted.
    let wrong = Agent::start(
        TOKIO,
        "en-wrong",
        Config {
            keyring: Some(rookery_core::Keyring::new(&[9; 32]).expect("key")),
            ..memberlist_config(false)
        },
    );
    let joined = wrong.join(&[go0.bind]);
    assert!(joined.is_err(), "the wrong key joined: {joined:?}");
    let (refused, _) = wait_until(Duration::from_secs(10), || {
        wrong.stats().map(|s| s.core.sealed_no_key).unwrap_or(0) > 0
    });
    assert!(refused, "sealed answers not counted: {:?}", wrong.stats());
    assert_eq!(go0.status_of("en-wrong"), None, "go-0 never heard of it");
    // A killed Go member is failed on the rookery agent.
    go1.kill();
    let (ok, took) = wait_until(LIMIT, || rk.status_of("go-1") == Some(MemberStatus::Failed));
    assert!(
        ok,
        "go-1 not failed in {took:?}: {:?}",
        rk.status_of("go-1")
    );
    eprintln!("encrypted: killed Go member failed on the rookery agent in {took:?}");
}

/// Without Serf's layer, direct messages are memberlist's user messages, both ways: a rookery
/// agent's `send` reaches a Go member's delegate (`NotifyMsg`), its `broadcast` every other
/// member, Go and rookery; a Go member's `SendReliable` (a stream) and `SendBestEffort` (a
/// datagram, from its member address: the sender is named) arrive as `Event::Message`.
#[test]
fn user_messages_both_ways() {
    let Some(bin) = GoPeer::binary() else { return };
    let go0 = GoPeer::start(bin, "go-0", &[], false);
    let mut go1 = GoPeer::start(bin, "go-1", &[go0.bind], false);
    let rk: Vec<Arc<Agent>> = (0..2)
        .map(|i| Agent::start(TOKIO, &format!("um-rk-{i}"), memberlist_config(false)))
        .collect();
    for a in &rk {
        assert_eq!(a.join(&[go0.bind]), Ok(1), "{a:?} joins Go");
    }
    let names: Vec<String> = ["go-0", "go-1", "um-rk-0", "um-rk-1"]
        .map(String::from)
        .to_vec();
    let (ok, took) = wait_until(LIMIT, || all_alive(&[&go0, &go1], &rk, &names));
    assert!(ok, "views did not converge in {took:?}");
    let printed = |g: &GoPeer, line: &str| g.printed().lines().any(|l| l == line);
    // rookery → Go.
    rk[0]
        .send("go-0", "hello-go-0")
        .expect("accepted")
        .wait()
        .expect("written");
    let (ok, took) = wait_until(LIMIT, || printed(&go0, "msg hello-go-0"));
    assert!(
        ok,
        "go-0 got no message in {took:?}:\n{}\n{}",
        go0.printed(),
        go0.log()
    );
    let sent = rk[1].broadcast("to-everyone").expect("broadcast");
    assert_eq!(sent.len(), 3, "to every other live member");
    let (ok, took) = wait_until(LIMIT, || {
        printed(&go0, "msg to-everyone")
            && printed(&go1, "msg to-everyone")
            && rk[0].events().iter().any(|e| {
                matches!(e, rookery_core::Event::Message { payload, .. } if &payload[..] == b"to-everyone")
            })
    });
    assert!(ok, "the broadcast did not reach everyone in {took:?}");
    // Go → rookery, reliable (a stream: its port is the connection's, no member's) ...
    let got = |a: &Agent, text: &str| {
        a.events().into_iter().find_map(|e| match e {
            rookery_core::Event::Message { from, payload } if &payload[..] == text.as_bytes() => {
                Some(from)
            }
            _ => None,
        })
    };
    go1.send("um-rk-0", "reliable-from-go-1", true);
    let (ok, took) = wait_until(LIMIT, || got(&rk[0], "reliable-from-go-1").is_some());
    assert!(ok, "no reliable message in {took:?}:\n{}", go1.log());
    let from = got(&rk[0], "reliable-from-go-1").expect("got it");
    assert!(
        from.starts_with("127.0.0.1:"),
        "named by its connection: {from}"
    );
    // ... and best effort (a datagram from go-1's member address: named).
    go1.send("um-rk-0", "datagram-from-go-1", false);
    let (ok, took) = wait_until(LIMIT, || got(&rk[0], "datagram-from-go-1").is_some());
    assert!(ok, "no datagram message in {took:?}:\n{}", go1.log());
    assert_eq!(
        got(&rk[0], "datagram-from-go-1").as_deref(),
        Some("go-1"),
        "the member at the datagram's address"
    );
    for g in [&go0, &go1] {
        let errors = g.errors();
        assert!(errors.is_empty(), "{} logged errors: {errors:?}", g.name);
    }
    for a in &rk {
        let s = a.stats().expect("stats").core;
        assert_eq!(s.decode_errors, 0, "{a:?} refused input");
        assert_eq!(s.profile_skipped, 0, "{a:?} skipped messages");
    }
}
