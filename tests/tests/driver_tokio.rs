//! rookery-tokio on loopback: every single-driver scenario.

mod tokio {
    rookery_tests::driver_scenarios!(rookery_tests::scenarios::TOKIO, "tk");
}
