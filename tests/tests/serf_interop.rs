//! Mixed clusters of real `serf` 0.9.4 agents and rookery agents speaking the HashiCorp wire
//! profile, on loopback: views converge both ways, tags, failure and leave both ways, user
//! events and queries both ways, force-leave, key operations both ways, Serf's name-conflict
//! query answered by rookery agents and asked by them. The rookery agents run on tokio, and a
//! mio agent and an async-std agent each join a serf cluster of their own (joins both ways,
//! events and queries both ways, failure both ways).
//!
//! Needs the `serf` binary (Debian: `apt-get install serf`; `.ci/run` installs it). Without
//! it each test prints why and passes, unless `ROOKERY_REQUIRE_SERF=1` (set by CI) makes a
//! missing `serf` a failure.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rookery_core::{Config, MemberStatus, WireProfile};
use rookery_tests::interop::{all_alive, cluster_key, Serf, CLUSTER_KEY_B64};
use rookery_tests::scenarios::{wait_until, Agent, Driver, ASYNC_STD, MIO, TOKIO};

/// How long a mixed cluster may take to notice a change (a member whose alive gossip a serf
/// agent missed is repaired by the next push-pull, 15 s apart in the local profile).
const LIMIT: Duration = Duration::from_secs(45);

/// rookery's side of a mixed cluster: the local profile's timing (as the serf agents here
/// use), the HashiCorp wire.
fn hashicorp_config() -> Config {
    Config {
        wire: WireProfile::HashiCorp,
        ..Config::local()
    }
}

#[test]
fn rookery_joins_a_serf_cluster_and_serf_joins_rookery() {
    if !Serf::present() {
        return;
    }
    joins_both_ways("", &[], &hashicorp_config());
}

/// Two serf agents (`extra` arguments each) form a cluster; a rookery agent (`config`) with
/// tags joins it through one of them, a second rookery agent joins through the first; a
/// third serf agent joins through the second rookery agent. Views converge everywhere, tags
/// are seen both ways, and the rookery agents are listed at the addresses they bound. Every
/// name starts with `prefix`.
fn joins_both_ways(prefix: &str, extra: &[&str], config: &Config) -> (Vec<Serf>, Vec<Arc<Agent>>) {
    let name = |n: &str| format!("{prefix}{n}");
    let with = |more: &[String]| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain(more.iter().cloned())
            .collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let a0 = with(&["-tag".into(), "role=web".into()]);
    let s0 = Serf::start(&name("serf-0"), &args(&a0));
    let a1 = with(&[format!("-join={}", s0.bind)]);
    let s1 = Serf::start(&name("serf-1"), &args(&a1));
    let rk: Vec<Arc<Agent>> = (0..2)
        .map(|i| Agent::start(TOKIO, &name(&format!("rk-{i}")), config.clone()))
        .collect();
    let mut tags = rookery_core::Tags::new();
    tags.insert("role".into(), "cache".into());
    tags.insert("zone".into(), "a".into());
    rk[0].set_tags(tags).expect("tags");
    assert_eq!(
        rk[0].join(&[s0.bind]),
        Ok(1),
        "rookery joins through serf-0"
    );
    assert_eq!(
        rk[1].join(&[rk[0].local_addr()]),
        Ok(1),
        "rookery joins rookery"
    );
    let a2 = with(&[format!("-join={}", rk[1].local_addr())]);
    let s2 = Serf::start(&name("serf-2"), &args(&a2));
    let names: Vec<String> = ["serf-0", "serf-1", "serf-2", "rk-0", "rk-1"]
        .iter()
        .map(|n| name(n))
        .collect();
    {
        let serfs = [&s0, &s1, &s2];
        let (ok, took) = wait_until(LIMIT, || all_alive(&serfs, &rk, &names));
        assert!(
            ok,
            "views did not converge in {took:?}: serf-0 sees {:?}, rk-0 sees {:?}\nserf-0 log:\n{}",
            s0.members(),
            rk[0].members(),
            s0.log()
        );
        eprintln!("{prefix}mixed cluster of 5 converged in {took:?}");
    }
    // Tags both ways.
    let rk0 = s1
        .members()
        .into_iter()
        .find(|m| m.0 == name("rk-0"))
        .expect("serf-1 lists rk-0");
    assert!(
        rk0.3.contains("role=cache") && rk0.3.contains("zone=a"),
        "{rk0:?}"
    );
    let seen = rk[1]
        .members()
        .expect("members")
        .into_iter()
        .find(|m| *m.name == name("serf-0"))
        .expect("rk-1 knows serf-0");
    assert_eq!(seen.tags.get("role").map(String::as_str), Some("web"));
    // The rookery agents are listed at the addresses they bound.
    assert_eq!(rk0.1, rk[0].local_addr().to_string());
    (vec![s0, s1, s2], rk)
}

/// A mixed cluster: `serfs` serf agents (the first one the seed, each with `extra`
/// arguments and an event handler that logs user events and queries to its directory and
/// answers queries with `answer-from-<name>`), then one rookery agent with `config` per
/// driver of `drivers`, joining through the seed; waits until every view holds every member
/// alive.
fn mixed_cluster(
    prefix: &str,
    serfs: usize,
    drivers: &[Driver],
    extra: &[&str],
    config: &Config,
) -> (Vec<Serf>, Vec<Arc<Agent>>) {
    let mut agents: Vec<Serf> = Vec::new();
    for i in 0..serfs {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(seed) = agents.first() {
            args.push(format!("-join={}", seed.bind));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agents.push(Serf::start_with_handler(
            &format!("{prefix}-serf-{i}"),
            &args,
        ));
    }
    let rk: Vec<Arc<Agent>> = drivers
        .iter()
        .enumerate()
        .map(|(i, d)| Agent::start(*d, &format!("{prefix}-rk-{i}"), config.clone()))
        .collect();
    for a in &rk {
        assert_eq!(a.join(&[agents[0].bind]), Ok(1), "{a:?} joins through serf");
    }
    let names: Vec<String> = agents
        .iter()
        .map(|s| s.name.clone())
        .chain(rk.iter().map(|a| a.name().to_string()))
        .collect();
    let serf_refs: Vec<&Serf> = agents.iter().collect();
    let (ok, took) = wait_until(LIMIT, || all_alive(&serf_refs, &rk, &names));
    assert!(
        ok,
        "{prefix}: views did not converge in {took:?}: {} sees {:?}, the rookery agents see {:?}\nlog:\n{}",
        agents[0].name,
        agents[0].members(),
        rk.iter().map(|a| a.members()).collect::<Vec<_>>(),
        agents[0].log()
    );
    eprintln!(
        "{prefix}: mixed cluster of {} converged in {took:?}",
        names.len()
    );
    (agents, rk)
}

/// Failure both ways, a graceful leave both ways, and `serf force-leave` of a failed
/// rookery agent.
fn failure_leave_and_force_leave(prefix: &str, extra: &[&str], config: &Config) {
    let (mut serfs, rk) = mixed_cluster(prefix, 3, &[TOKIO; 3], extra, config);
    // A killed serf agent is failed on every rookery agent.
    let victim = serfs[2].name.clone();
    serfs[2].kill();
    let (ok, took) = wait_until(LIMIT, || {
        rk.iter()
            .all(|a| a.status_of(&victim) == Some(MemberStatus::Failed))
    });
    let views: Vec<_> = rk.iter().map(|a| a.status_of(&victim)).collect();
    assert!(
        ok,
        "{victim} not failed on every rookery agent in {took:?}: {views:?}"
    );
    eprintln!("{prefix}: killed serf agent failed everywhere in {took:?}");
    // A crashed rookery agent is failed on every serf agent.
    let crashed = rk[2].name().to_string();
    let took = crash_failed_on(&rk[2], &serfs[..2]);
    eprintln!("{prefix}: crashed rookery agent failed everywhere in {took:?}");
    // `serf force-leave` of the failed rookery agent: left everywhere.
    assert!(
        serfs[0].cli(&["force-leave", &crashed]).is_some(),
        "force-leave runs"
    );
    let (ok, took) = wait_until(LIMIT, || {
        serfs[..2]
            .iter()
            .all(|s| s.status_of(&crashed).as_deref() == Some("left"))
            && rk[..2]
                .iter()
                .all(|a| a.status_of(&crashed) == Some(MemberStatus::Left))
    });
    let views: Vec<_> = rk[..2].iter().map(|a| a.status_of(&crashed)).collect();
    assert!(
        ok,
        "force-left {crashed} not left everywhere in {took:?}: rookery {views:?}, serf {:?}",
        serfs[1].members()
    );
    // A graceful rookery leave is seen as left by the serf agents.
    let leaver = rk[1].name().to_string();
    rk[1].leave().expect("leave");
    let (ok, took) = wait_until(LIMIT, || {
        serfs[..2]
            .iter()
            .all(|s| s.status_of(&leaver).as_deref() == Some("left"))
            && rk[0].status_of(&leaver) == Some(MemberStatus::Left)
    });
    assert!(
        ok,
        "{leaver} not left in {took:?}: serf {:?}",
        serfs[0].members()
    );
    // A graceful serf leave is seen as left by the rookery agent. Its two announcements (Serf's
    // leave intent, memberlist's own dead message) go to a few random members; a rookery agent
    // that gets neither fails the leaver, then learns of the leave from the other serf agent's
    // push-pull (every 30 s each way): under load that took longer than LIMIT once (seen as
    // `Failed` after 45 s), so this wait covers two push-pull periods.
    let leaver = serfs[1].name.clone();
    assert!(serfs[1].cli(&["leave"]).is_some(), "serf leave runs");
    let (ok, took) = wait_until(2 * LIMIT, || {
        rk[0].status_of(&leaver) == Some(MemberStatus::Left)
    });
    assert!(
        ok,
        "{leaver} not left on {:?} in {took:?}: {:?}",
        rk[0],
        rk[0].status_of(&leaver)
    );
}

/// User events and queries both ways on a mixed cluster of two serf agents and two rookery
/// agents (see [`round_trips`]).
fn events_and_queries(prefix: &str, extra: &[&str], config: &Config) {
    let (serfs, rk) = mixed_cluster(prefix, 2, &[TOKIO; 2], extra, config);
    round_trips(&serfs, &rk);
}

/// User events and queries both ways: `serf event` is delivered once to every rookery
/// agent; a user event of the first rookery agent reaches every serf agent's handler (each of
/// `serfs` has one, see [`mixed_cluster`]); `serf query` is answered by the rookery agents; a
/// query of the first rookery agent collects the serf agents' handler answers.
fn round_trips(serfs: &[Serf], rk: &[Arc<Agent>]) {
    // serf → rookery.
    assert!(
        serfs[0].cli(&["event", "deploy", "v42"]).is_some(),
        "serf event runs"
    );
    let got = |a: &Agent| {
        a.events()
            .iter()
            .filter(|e| {
                matches!(e, rookery_core::Event::User(u)
                    if &*u.name == "deploy" && u.payload.as_ref() == b"v42")
            })
            .count()
    };
    let (ok, took) = wait_until(LIMIT, || rk.iter().all(|a| got(a) >= 1));
    assert!(
        ok,
        "serf event not delivered to every rookery agent in {took:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let counts: Vec<usize> = rk.iter().map(|a| got(a)).collect();
    assert!(counts.iter().all(|&c| c == 1), "delivered once: {counts:?}");
    // rookery → serf handlers.
    rk[0]
        .user_event("rk-event", "hello", false)
        .expect("user_event");
    let (ok, took) = wait_until(LIMIT, || {
        serfs
            .iter()
            .all(|s| s.handled().iter().any(|l| l == "user rk-event hello"))
    });
    assert!(
        ok,
        "rookery user event not handled by every serf agent in {took:?}: {:?}",
        serfs[0].handled()
    );
    // `serf query` answered by the rookery agents (and the serf agents' handlers).
    let asker = {
        let rpc = serfs[1].rpc;
        std::thread::spawn(move || {
            Command::new("serf")
                .args(["query", &format!("-rpc-addr={rpc}")])
                .args(["-format=json", "-timeout=8s", "whoami", "?"])
                .output()
                .expect("serf query")
        })
    };
    let (_, _) = wait_until(Duration::from_secs(8), || {
        for a in rk {
            a.answer_queries(|q| {
                assert_eq!((&*q.name, q.payload.as_ref()), ("whoami", &b"?"[..]));
                format!("rookery {}", a.name()).into_bytes()
            });
        }
        asker.is_finished()
    });
    let out = asker.join().expect("serf query thread");
    let text = String::from_utf8_lossy(&out.stdout);
    for a in rk {
        let answer = format!("\"{}\": \"rookery {}\"", a.name(), a.name());
        assert!(
            text.contains(&answer),
            "serf query got no answer from {a:?}: {text}"
        );
    }
    // A rookery query collects the serf agents' handler answers.
    let params = rookery_core::QueryParams {
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let mut answers = rk[0].query("rk-query", "x", params).expect("query");
    let mut got = Vec::new();
    let (ok, took) = wait_until(LIMIT, || {
        for a in &rk[1..] {
            a.answer_queries(|_| b"rk answer".to_vec());
        }
        while let Ok(a) = answers.try_recv() {
            got.push(a);
        }
        matches!(got.last(), Some(rookery_driver::QueryAnswer::Done { .. }))
    });
    assert!(ok, "rookery query not done in {took:?}: {got:?}");
    for s in serfs {
        let want = format!("answer-from-{}", s.name);
        assert!(
            got.iter().any(
                |a| matches!(a, rookery_driver::QueryAnswer::Response { from, payload }
                if **from == *s.name && payload.as_ref() == want.as_bytes())
            ),
            "no answer from {} in {got:?}",
            s.name
        );
    }
}

/// A `driver` agent in a serf cluster (two serf agents with event handlers, and a tokio
/// agent beside it, so rookery agents of two drivers talk HashiCorp's wire to each other too):
/// it joins through a serf agent, a third serf agent joins through it, `serf members` lists it
/// alive at the address it bound; user events and queries go both ways ([`round_trips`],
/// asked by the `driver` agent); a killed serf agent is failed on it, and once it crashed it
/// is failed on the serf agents.
fn driver_in_a_serf_cluster(driver: Driver, prefix: &str) {
    let (serfs, rk) = mixed_cluster(prefix, 2, &[driver, TOKIO], &[], &hashicorp_config());
    let me = &rk[0];
    let mut s2 = Serf::start(
        &format!("{prefix}-serf-2"),
        &[&format!("-join={}", me.local_addr())],
    );
    let names: Vec<String> = serfs
        .iter()
        .chain([&s2])
        .map(|s| s.name.clone())
        .chain(rk.iter().map(|a| a.name().to_string()))
        .collect();
    let all: Vec<&Serf> = serfs.iter().chain([&s2]).collect();
    let (ok, took) = wait_until(LIMIT, || all_alive(&all, &rk, &names));
    assert!(
        ok,
        "{prefix}: views did not converge in {took:?}: {} sees {:?}, {me:?} sees {:?}\nlog:\n{}",
        s2.name,
        s2.members(),
        me.members(),
        s2.log()
    );
    eprintln!("{prefix}: a serf agent joined through the {driver:?} agent in {took:?}");
    let listed = s2
        .members()
        .into_iter()
        .find(|m| m.0 == me.name())
        .expect("serf-2 lists the agent");
    assert_eq!(listed.1, me.local_addr().to_string(), "{listed:?}");
    let started = std::time::Instant::now();
    round_trips(&serfs, &rk);
    eprintln!(
        "{prefix}: events and queries both ways in {:?}",
        started.elapsed()
    );
    // A killed serf agent is failed on the agent.
    s2.kill();
    let (ok, took) = wait_until(LIMIT, || {
        me.status_of(&s2.name) == Some(MemberStatus::Failed)
    });
    assert!(
        ok,
        "{} not failed on {me:?} in {took:?}: {:?}",
        s2.name,
        me.status_of(&s2.name)
    );
    eprintln!("{prefix}: killed serf agent failed on the {driver:?} agent in {took:?}");
    // The agent crashed: failed on the serf agents.
    let took = crash_failed_on(me, &serfs);
    eprintln!("{prefix}: crashed {driver:?} agent failed on the serf agents in {took:?}");
}

/// Crash `agent` (no leave) and wait until every one of `serfs` lists it `failed`; how long
/// that took.
fn crash_failed_on(agent: &Agent, serfs: &[Serf]) -> std::time::Duration {
    let crashed = agent.name().to_string();
    agent.shutdown(rookery_driver::ShutdownMode::Now);
    let (ok, took) = wait_until(LIMIT, || {
        serfs
            .iter()
            .all(|s| s.status_of(&crashed).as_deref() == Some("failed"))
    });
    assert!(
        ok,
        "{crashed} not failed on the serf agents in {took:?}: {:?}",
        serfs[0].members()
    );
    took
}

#[test]
fn a_mio_agent_in_a_serf_cluster() {
    if !Serf::present() {
        return;
    }
    driver_in_a_serf_cluster(MIO, "mio");
}

#[test]
fn an_async_std_agent_in_a_serf_cluster() {
    if !Serf::present() {
        return;
    }
    driver_in_a_serf_cluster(ASYNC_STD, "as");
}

#[test]
fn failure_and_leave_both_ways() {
    if !Serf::present() {
        return;
    }
    failure_leave_and_force_leave("fl", &[], &hashicorp_config());
}

#[test]
fn events_and_queries_both_ways() {
    if !Serf::present() {
        return;
    }
    events_and_queries("eq", &[], &hashicorp_config());
}

// ---- The same with `-encrypt` ----

/// rookery's side of an encrypted mixed cluster: [`hashicorp_config`] with the cluster key.
fn encrypted_config() -> Config {
    Config {
        keyring: Some(rookery_core::Keyring::new(&cluster_key()).expect("key")),
        ..hashicorp_config()
    }
}

/// The serf agents' side: `-encrypt` with the cluster key.
const ENCRYPT: [&str; 2] = ["-encrypt", CLUSTER_KEY_B64];

/// No rookery agent refused anything as sealed under another key, plaintext or truncated,
/// and no serf agent failed to decrypt: the cluster really spoke one encryption.
fn no_crypto_refusals(serfs: &[Serf], rk: &[Arc<Agent>]) {
    for a in rk {
        let Ok(s) = a.stats() else { continue };
        let c = s.core;
        assert_eq!(
            (
                c.sealed_no_key,
                c.plaintext_refused,
                c.sealed_unexpected,
                c.sealed_truncated
            ),
            (0, 0, 0, 0),
            "{a:?} refused input"
        );
    }
    for s in serfs {
        let log = s.log();
        assert!(
            !log.contains("Decrypt") && !log.contains("decrypt") && !log.contains("not encrypted"),
            "{} logged a decryption failure:\n{log}",
            s.name
        );
    }
}

#[test]
fn encrypted_joins_both_ways_and_serf_lists_rookery() {
    if !Serf::present() {
        return;
    }
    let (serfs, rk) = joins_both_ways("enc-", &ENCRYPT, &encrypted_config());
    // The serf agents do run encrypted.
    for s in &serfs {
        let info = s.cli(&["info"]).unwrap_or_default();
        assert!(info.contains("encrypted = true"), "serf info: {info}");
    }
    no_crypto_refusals(&serfs, &rk);
}

#[test]
fn encrypted_failure_and_leave_both_ways() {
    if !Serf::present() {
        return;
    }
    failure_leave_and_force_leave("efl", &ENCRYPT, &encrypted_config());
}

#[test]
fn encrypted_events_and_queries_both_ways() {
    if !Serf::present() {
        return;
    }
    events_and_queries("eeq", &ENCRYPT, &encrypted_config());
}

/// A rookery agent with another key — or none — cannot join an encrypted Serf cluster: the
/// serf agent cannot open its push-pull and answers with an error sealed under the cluster
/// key, which the rookery agent counts as sealed under a key it lacks (or sealed while it
/// has no keyring); neither side lists the other. Given the cluster key at runtime
/// (`set_keyring`), the same agent joins.
#[test]
fn a_rookery_agent_with_the_wrong_key_does_not_join() {
    if !Serf::present() {
        return;
    }
    let s0 = Serf::start("wk-serf-0", &ENCRYPT);
    let wrong = Agent::start(
        TOKIO,
        "wk-wrong",
        Config {
            keyring: Some(rookery_core::Keyring::new(&[9; 32]).expect("key")),
            ..hashicorp_config()
        },
    );
    let keyless = Agent::start(TOKIO, "wk-plain", hashicorp_config());
    for a in [&wrong, &keyless] {
        let joined = a.join(&[s0.bind]);
        assert!(joined.is_err(), "{a:?} joined with {joined:?}");
    }
    let (refused, _) = wait_until(Duration::from_secs(10), || {
        let counts = |a: &Agent| a.stats().map(|s| s.core).unwrap_or_default();
        counts(&wrong).sealed_no_key > 0 && counts(&keyless).sealed_unexpected > 0
    });
    assert!(
        refused,
        "serf's sealed answers counted: wrong key {:?}, no key {:?}",
        wrong.stats().map(|s| s.core),
        keyless.stats().map(|s| s.core)
    );
    // Nobody learnt anybody, a push-pull interval of the local profile later.
    std::thread::sleep(Duration::from_secs(5));
    let listed: Vec<String> = s0.members().into_iter().map(|m| m.0).collect();
    assert_eq!(
        listed,
        vec!["wk-serf-0".to_string()],
        "serf lists only itself"
    );
    for a in [&wrong, &keyless] {
        assert_eq!(
            a.members().expect("members").len(),
            1,
            "{a:?} knows only itself"
        );
    }
    let log = s0.log();
    assert!(
        log.contains("failed to receive") || log.contains("Decrypt"),
        "serf logged the refusals:\n{log}"
    );
    // The right key, set at runtime: the same agent joins and is listed.
    wrong
        .set_keyring(
            Some(rookery_core::Keyring::new(&cluster_key()).expect("key")),
            true,
            true,
        )
        .expect("set_keyring");
    let joined = wrong.join(&[s0.bind]);
    assert_eq!(
        joined,
        Ok(1),
        "joins with the cluster key: {:?}\nserf log:\n{}",
        wrong.stats(),
        s0.log()
    );
    let (ok, took) = wait_until(LIMIT, || {
        all_alive(
            &[&s0],
            std::slice::from_ref(&wrong),
            &["wk-serf-0", "wk-wrong"],
        )
    });
    assert!(
        ok,
        "not converged with the right key in {took:?}: {:?}",
        s0.members()
    );
}

/// `serf keys` issued from a serf agent reaches the rookery agents, which act on their
/// keyrings and answer as Serf does: list, install a new key, make it the primary, remove the
/// old one (every member answering, so the serf CLI reports success), refuse to remove the
/// primary; the cluster keeps talking under the new key. Then the rotation back, issued from
/// rookery agents: the serf agents carry it out and every member answers.
#[test]
fn serf_key_operations_reach_rookery_agents() {
    if !Serf::present() {
        return;
    }
    let (serfs, rk) = mixed_cluster("ek", 2, &[TOKIO; 2], &ENCRYPT, &encrypted_config());
    let new_key = [7u8; 16];
    const NEW_KEY_B64: &str = "BwcHBwcHBwcHBwcHBwcHBw==";
    let keys = |args: &[&str]| {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        serfs[0].cli(&all)
    };
    let listed = keys(&["-list"]).expect("serf keys -list succeeds");
    assert!(listed.contains(CLUSTER_KEY_B64), "{listed}");
    assert!(listed.contains("[4/4]"), "every member answers: {listed}");
    let ring = |a: &Agent| {
        a.keyring()
            .expect("keyring")
            .expect("a keyring")
            .keys()
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    assert!(keys(&["-install", NEW_KEY_B64]).is_some(), "install");
    for a in &rk {
        assert_eq!(ring(a), vec![cluster_key(), new_key.to_vec()], "{a:?}");
    }
    assert!(keys(&["-use", NEW_KEY_B64]).is_some(), "use");
    for a in &rk {
        assert_eq!(ring(a), vec![new_key.to_vec(), cluster_key()], "{a:?}");
    }
    assert!(keys(&["-remove", CLUSTER_KEY_B64]).is_some(), "remove");
    for a in &rk {
        assert_eq!(ring(a), vec![new_key.to_vec()], "{a:?}");
    }
    assert!(
        keys(&["-remove", NEW_KEY_B64]).is_none(),
        "the primary key is not removed"
    );
    let listed = keys(&["-list"]).expect("serf keys -list succeeds");
    assert!(
        listed.contains(NEW_KEY_B64) && !listed.contains(CLUSTER_KEY_B64),
        "{listed}"
    );
    // Still one cluster under the new key: an event from serf reaches every rookery agent.
    assert!(serfs[1].cli(&["event", "rotated", "yes"]).is_some());
    let (ok, took) = wait_until(LIMIT, || {
        rk.iter().all(|a| {
            a.events()
                .iter()
                .any(|e| matches!(e, rookery_core::Event::User(u) if &*u.name == "rotated"))
        })
    });
    assert!(ok, "no event after the rotation in {took:?}");
    let names: Vec<String> = serfs
        .iter()
        .map(|s| s.name.clone())
        .chain(rk.iter().map(|a| a.name().to_string()))
        .collect();
    let serf_refs: Vec<&Serf> = serfs.iter().collect();
    assert!(
        all_alive(&serf_refs, &rk, &names),
        "all alive after the rotation"
    );
    // And back, issued from rookery agents: the serf agents act on it and answer.
    let r = rk[0].install_key(&cluster_key()).expect("install_key");
    assert!(r.complete() && r.answered == 4, "{r:?}");
    let r = rk[1].use_key(&cluster_key()).expect("use_key");
    assert!(r.complete() && r.answered == 4, "{r:?}");
    let r = rk[0].remove_key(&new_key).expect("remove_key");
    assert!(r.complete() && r.answered == 4, "{r:?}");
    let r = rk[1].list_keys().expect("list_keys");
    assert!(r.complete() && r.answered == 4, "{r:?}");
    assert_eq!(r.keys.len(), 1, "{r:?}");
    assert_eq!(r.keys.get(&cluster_key()), Some(&4), "{r:?}");
    assert_eq!(r.primary_keys.get(&cluster_key()), Some(&4), "{r:?}");
    let listed = keys(&["-list"]).expect("serf keys -list succeeds");
    assert!(
        listed.contains(CLUSTER_KEY_B64) && !listed.contains(NEW_KEY_B64),
        "{listed}"
    );
    no_crypto_refusals(&serfs, &rk);
}

/// A second serf agent started under a taken name joins through a rookery agent: memberlist
/// reports the conflict to it, it asks Serf's name-conflict query, and the rookery agents
/// answer with the member they know by that name (the first agent's address), so it logs the
/// answers counted and loses the vote; the first agent stays, and no rookery agent surfaces
/// the query to its application.
#[test]
fn serfs_name_conflict_query_is_answered_by_rookery_agents() {
    if !Serf::present() {
        return;
    }
    let (serfs, rk) = mixed_cluster("nc", 1, &[TOKIO; 2], &[], &hashicorp_config());
    let taken = serfs[0].name.clone();
    let via = rk[0].member_addr(rk[0].name()).expect("rk-0's own address");
    // Not waited for: it quits once it lost the vote.
    let mut dup = Serf::spawn(&taken, &[&format!("-join={via}")], false);
    let (decided, took) = wait_until(LIMIT, || dup.log().contains("in name conflict resolution"));
    let text = dup.log();
    dup.kill();
    assert!(decided, "no conflict resolution in {took:?}:\n{text}");
    // "minority in name conflict resolution, quiting [matching / responses]"
    let line = text
        .lines()
        .find(|l| l.contains("in name conflict resolution"))
        .expect("the line");
    let counts = line
        .rsplit('[')
        .next()
        .and_then(|c| c.strip_suffix(']'))
        .expect("counts");
    let (matching, responses) = counts.split_once(" / ").expect("m / n");
    let (matching, responses): (usize, usize) =
        (matching.parse().expect("m"), responses.parse().expect("n"));
    eprintln!("name conflict decided in {took:?}: {line}");
    assert!(line.contains("minority"), "{line}");
    assert_eq!(matching, 0, "{line}");
    assert!(
        responses >= rk.len(),
        "every rookery agent answered: {line}\n{text}"
    );
    // The first agent keeps its name and its place.
    for a in &rk {
        assert_eq!(a.status_of(&taken), Some(MemberStatus::Alive));
        assert_eq!(a.member_addr(&taken), Some(serfs[0].bind));
        assert!(
            !a.events()
                .iter()
                .any(|e| matches!(e, rookery_core::Event::Query(_))),
            "{} surfaced a query",
            a.name()
        );
    }
    assert_eq!(serfs[0].status_of(&taken).as_deref(), Some("alive"));
}

/// A rookery agent started under a serf agent's name joins through another serf agent: it
/// learns of the first holder of its name, asks Serf's name-conflict query, and the serf
/// agents' answers (the first holder's address) outvote it, so it stops with
/// [`StopReason::NameConflictLost`](rookery_core::StopReason::NameConflictLost); the serf
/// agent keeps its name and place. (Asked under rookery's own query name, as before, no serf
/// agent would answer and the rookery agent would keep a name the cluster holds elsewhere.)
#[test]
fn a_rookery_agent_under_a_taken_name_loses_serfs_vote() {
    if !Serf::present() {
        return;
    }
    // Serf agents only: no rookery member's answer can decide this vote.
    let (serfs, _) = mixed_cluster("nv", 3, &[], &[], &hashicorp_config());
    let taken = serfs[0].name.clone();
    let dup = Agent::start(TOKIO, &taken, hashicorp_config());
    assert_eq!(dup.join(&[serfs[1].bind]), Ok(1), "joins through serf-1");
    let (stopped, took) = wait_until(LIMIT, || dup.stream_ended());
    let events = dup.events();
    assert!(
        stopped,
        "the newcomer kept the taken name for {took:?}; its events: {events:?}\nserf-1 log:\n{}",
        serfs[1].log()
    );
    eprintln!("the rookery newcomer lost the name vote in {took:?}");
    dup.assert_stopped(rookery_core::StopReason::NameConflictLost);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, rookery_core::Event::NameConflict { .. })),
        "{events:?}"
    );
    // Serf agents logged answering the conflict query; the first holder kept its name.
    for s in &serfs {
        assert_eq!(s.status_of(&taken).as_deref(), Some("alive"), "{}", s.name);
    }
    let holder = serfs[1]
        .members()
        .into_iter()
        .find(|m| m.0 == taken)
        .expect("serf-1 lists the name");
    assert_eq!(holder.1, serfs[0].bind.to_string());
    // Nothing reached the serf agents' event handlers as a user query.
    for s in &serfs {
        assert!(
            !s.handled().iter().any(|l| l.starts_with("query")),
            "{}: {:?}",
            s.name,
            s.handled()
        );
    }
}
