//! One cluster mixing tokio, mio and async-std agents on loopback.

use rookery_tests::scenarios::{self, ASYNC_STD as AsyncStd, MIO as Mio, TOKIO as Tokio};

#[test]
fn mixed_tokio_and_mio_join_and_converge() {
    scenarios::join_and_converge(
        "mix-conv",
        &[Tokio, Mio, Tokio, Mio, Tokio, Mio, Tokio, Mio, Tokio, Mio],
    );
}

#[test]
fn mixed_crash_of_a_mio_node_detected_by_tokio_and_async_std_nodes() {
    scenarios::crash_detected(
        "mix-crash",
        &[
            Tokio, Mio, AsyncStd, Tokio, Mio, AsyncStd, Tokio, Mio, AsyncStd, Tokio,
        ],
        4,
    );
}

#[test]
fn mixed_leave_of_a_tokio_node_seen_by_mio_nodes() {
    scenarios::leave_is_left("mix-leave", &[Mio, Tokio, Mio, AsyncStd, Mio, Tokio], 1);
}

/// The HashiCorp profiles among rookery agents of every driver (no HashiCorp program needed):
/// every agent joins through a mio agent (its push-pull answered on the joiner's connection),
/// views converge, a user event from a mio agent reaches everyone (memberlist + Serf only),
/// and a crashed mio agent is failed on every other agent.
fn hashicorp_profile_mixed(prefix: &str, wire: rookery_core::WireProfile) {
    use rookery_core::{Event, MemberStatus};
    use rookery_driver::ShutdownMode;
    let config = rookery_core::Config {
        wire,
        ..scenarios::fast_config()
    };
    let agents = scenarios::start_cluster_with(
        prefix,
        &[Mio, Tokio, AsyncStd, Mio, Tokio, AsyncStd],
        config,
    );
    if wire.has_serf() {
        agents[3]
            .user_event("hc-deploy", "v1", false)
            .expect("user event");
        let got = |a: &scenarios::Agent| {
            a.events()
                .iter()
                .any(|e| matches!(e, Event::User(u) if &*u.name == "hc-deploy"))
        };
        let (ok, took) = scenarios::wait_until(scenarios::LIMIT, || agents.iter().all(|a| got(a)));
        assert!(ok, "{prefix}: user event not everywhere in {took:?}");
    }
    let victim = agents[3].name().to_string();
    agents[3].shutdown(ShutdownMode::Now);
    let others: Vec<_> = agents.iter().filter(|a| a.name() != victim).collect();
    let (ok, took) = scenarios::wait_until(scenarios::LIMIT, || {
        others
            .iter()
            .all(|a| a.status_of(&victim) == Some(MemberStatus::Failed))
    });
    let views: Vec<_> = others.iter().map(|a| a.status_of(&victim)).collect();
    assert!(
        ok,
        "{prefix}: {victim} not failed everywhere in {took:?}: {views:?}"
    );
    eprintln!("{prefix}: crashed mio agent failed everywhere in {took:?}");
    let survivors: Vec<_> = others.into_iter().cloned().collect();
    scenarios::stop_all(&survivors);
}

#[test]
fn hashicorp_profile_across_drivers() {
    hashicorp_profile_mixed("mix-hc", rookery_core::WireProfile::HashiCorp);
}

#[test]
fn memberlist_profile_across_drivers() {
    hashicorp_profile_mixed("mix-ml", rookery_core::WireProfile::Memberlist);
}

/// memberlist handles one message per connection and closes it once answered, so a sender
/// reads answers on its connection until the peer closes it. A rookery agent that kept an
/// answered (or unanswerable) connection open would hold its peer's next reliable message to
/// it back by up to `tcp_timeout` (10 s in the LAN timing used here): after a join's
/// push-pull, three direct messages each way between agents of every pair of drivers must
/// arrive well within that.
#[test]
fn hashicorp_exchanges_end_when_answered() {
    use rookery_core::{Event, WireProfile};
    use std::time::{Duration, Instant};
    let config = rookery_core::Config {
        wire: WireProfile::Memberlist,
        ..rookery_core::Config::lan()
    };
    assert_eq!(config.tcp_timeout, Duration::from_secs(10));
    let drivers = [Tokio, AsyncStd, Mio];
    let agents: Vec<_> = drivers
        .iter()
        .enumerate()
        .map(|(i, d)| scenarios::Agent::start(*d, &format!("xe-{i}"), config.clone()))
        .collect();
    for a in &agents[1..] {
        assert_eq!(a.join(&[agents[0].local_addr()]), Ok(1));
    }
    let (ok, took) = scenarios::wait_until(Duration::from_secs(30), || {
        agents.iter().all(|a| a.alive() == agents.len())
    });
    assert!(ok, "views did not converge in {took:?}");
    let started = Instant::now();
    for (i, from) in agents.iter().enumerate() {
        for (j, to) in agents.iter().enumerate() {
            if i != j {
                for k in 0..3 {
                    let _receipt = from
                        .send(to.name(), format!("m-{i}-{j}-{k}"))
                        .expect("accepted");
                }
            }
        }
    }
    let got = |a: &scenarios::Agent| {
        a.events()
            .iter()
            .filter(|e| matches!(e, Event::Message { payload, .. } if payload.starts_with(b"m-")))
            .count()
    };
    let (ok, took) = scenarios::wait_until(Duration::from_secs(30), || {
        agents.iter().all(|a| got(a) == 6)
    });
    let counts: Vec<usize> = agents.iter().map(|a| got(a)).collect();
    assert!(ok, "not every message arrived in {took:?}: {counts:?}");
    let took = started.elapsed();
    eprintln!("18 direct messages after the joins arrived in {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "messages waited for answered connections to time out: {took:?}"
    );
    scenarios::stop_all(&agents);
}
