//! rookery-async-std on loopback: every single-driver scenario.

mod async_std {
    rookery_tests::driver_scenarios!(rookery_tests::scenarios::ASYNC_STD, "as");
}
