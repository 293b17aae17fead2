//! rookery-mio on loopback: every single-driver scenario.

mod mio {
    rookery_tests::driver_scenarios!(rookery_tests::scenarios::MIO, "mio");
}
