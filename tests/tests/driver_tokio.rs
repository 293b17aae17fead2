//! rookery-tokio on loopback.

use rookery_tests::agents::Driver;
use rookery_tests::scenarios;

const D: Driver = Driver::Tokio;

#[test]
fn tokio_ten_nodes_join_and_converge() {
    scenarios::join_and_converge("tk-conv", &[D; 10]);
}

#[test]
fn tokio_stopped_node_detected_failed_by_all() {
    scenarios::crash_detected("tk-crash", &[D; 10], 7);
}

#[test]
fn tokio_graceful_leave_is_left() {
    scenarios::leave_is_left("tk-leave", &[D; 10], 4);
}

#[test]
fn tokio_garbage_is_counted_and_ignored() {
    scenarios::garbage_ignored("tk-garbage", D);
}

#[test]
fn tokio_tags_propagate() {
    scenarios::tags_propagate("tk-tags", &[D; 4]);
}

#[test]
fn tokio_join_nobody_reached() {
    scenarios::join_nobody("tk-nobody", D);
}

#[test]
fn tokio_user_event_reaches_all() {
    scenarios::user_event_reaches_all("tk-uev", &[D; 10], 3);
}

#[test]
fn tokio_query_answered_by_all() {
    scenarios::query_answered_by_all("tk-query", &[D; 10], 2);
}

#[test]
fn tokio_send_and_broadcast_arrive() {
    scenarios::send_and_broadcast_arrive("tk-msg", &[D; 10]);
}

#[test]
fn tokio_remove_failed_turns_left() {
    scenarios::remove_failed_is_left("tk-rmf", &[D; 10], 6);
}
