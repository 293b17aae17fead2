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
