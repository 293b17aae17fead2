//! rookery-async-std on loopback: every single-driver scenario in the blocking flavor, and
//! the async flavor itself.

mod async_std {
    rookery_tests::driver_scenarios!(rookery_tests::scenarios::ASYNC_STD, "as");

    #[test]
    fn async_flavor_join_query_shutdown() {
        let scenario = scenarios::async_flavor("as-async", rookery_async_std::Agent::start);
        ::async_std::task::block_on(scenario);
    }
}
