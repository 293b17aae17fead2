//! rookery-mio on loopback.

use rookery_tests::agents::Driver;
use rookery_tests::scenarios;

const D: Driver = Driver::Mio;

#[test]
fn mio_ten_nodes_join_and_converge() {
    scenarios::join_and_converge("mio-conv", &[D; 10]);
}

#[test]
fn mio_stopped_node_detected_failed_by_all() {
    scenarios::crash_detected("mio-crash", &[D; 10], 7);
}

#[test]
fn mio_graceful_leave_is_left() {
    scenarios::leave_is_left("mio-leave", &[D; 10], 4);
}

#[test]
fn mio_garbage_is_counted_and_ignored() {
    scenarios::garbage_ignored("mio-garbage", D);
}

#[test]
fn mio_tags_propagate() {
    scenarios::tags_propagate("mio-tags", &[D; 4]);
}

#[test]
fn mio_join_nobody_reached() {
    scenarios::join_nobody("mio-nobody", D);
}

#[test]
fn mio_user_event_reaches_all() {
    scenarios::user_event_reaches_all("mio-uev", &[D; 10], 3);
}

#[test]
fn mio_query_answered_by_all() {
    scenarios::query_answered_by_all("mio-query", &[D; 10], 2);
}

#[test]
fn mio_send_and_broadcast_arrive() {
    scenarios::send_and_broadcast_arrive("mio-msg", &[D; 10]);
}

#[test]
fn mio_remove_failed_turns_left() {
    scenarios::remove_failed_is_left("mio-rmf", &[D; 10], 6);
}
