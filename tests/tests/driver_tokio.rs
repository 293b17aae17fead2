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
