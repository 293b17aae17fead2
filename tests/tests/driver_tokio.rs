//! rookery-tokio on loopback: every single-driver scenario in the blocking flavor, and
//! the async flavor itself.

mod tokio {
    rookery_tests::driver_scenarios!(rookery_tests::scenarios::TOKIO, "tk");

    #[test]
    fn async_flavor_join_query_shutdown() {
        let scenario = scenarios::async_flavor("tk-async", rookery_tokio::Agent::start);
        ::tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(scenario);
    }
}

/// Dropping the last handle once the agent's runtime is gone: nothing can run the leave (the
/// runtime dropped the agent's tasks, and with them its sockets), so the agent simply vanishes
/// and the others detect it as failed. The handle reports it stopped; the event stream ends
/// without a final `Stopped` event (nothing was left to send it).
#[test]
fn dropped_runtime_cannot_leave() {
    use rookery_core::{Event, Identity, MemberStatus};
    use rookery_tests::scenarios::{self, fast_config, start_cluster, stop_all, wait_until, LIMIT};

    let agents = start_cluster("tk-rtgone", &[scenarios::TOKIO; 2]);
    let rt = ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let name = "tk-rtgone-x";
    let identity = Identity::new(name, "127.0.0.1:0".parse().expect("address"));
    let start = rookery_tokio::Agent::start(fast_config(), identity, Default::default());
    let (handle, events) = rt.block_on(start).expect("agent starts");
    assert_eq!(rt.block_on(handle.join(&[agents[0].local_addr()])), Ok(1));
    let alive = || {
        agents
            .iter()
            .all(|a| a.status_of(name) == Some(MemberStatus::Alive))
    };
    assert!(wait_until(LIMIT, alive).0, "the newcomer is seen alive");
    drop(rt);
    assert!(handle.is_stopped(), "the runtime took the agent with it");
    let mut events = events.into_blocking();
    let rest: Vec<Event> = events.by_ref().collect();
    assert!(
        !rest.iter().any(|e| matches!(e, Event::Stopped { .. })),
        "no final event: {rest:?}"
    );
    drop(handle);
    let failed = || {
        agents
            .iter()
            .all(|a| a.status_of(name) == Some(MemberStatus::Failed))
    };
    let (ok, took) = wait_until(LIMIT, failed);
    assert!(ok, "{name} not seen failed in {took:?}");
    eprintln!("tk-rtgone: {name} seen failed (not left) in {took:?}");
    stop_all(&agents);
}
