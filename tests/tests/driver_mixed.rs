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
