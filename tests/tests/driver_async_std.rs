//! rookery-async-std on loopback.

use rookery_tests::agents::Driver;
use rookery_tests::scenarios;

const D: Driver = Driver::AsyncStd;

#[test]
fn async_std_ten_nodes_join_and_converge() {
    scenarios::join_and_converge("as-conv", &[D; 10]);
}

#[test]
fn async_std_stopped_node_detected_failed_by_all() {
    scenarios::crash_detected("as-crash", &[D; 10], 7);
}

#[test]
fn async_std_graceful_leave_is_left() {
    scenarios::leave_is_left("as-leave", &[D; 10], 4);
}

#[test]
fn async_std_garbage_is_counted_and_ignored() {
    scenarios::garbage_ignored("as-garbage", D);
}

#[test]
fn async_std_tags_propagate() {
    scenarios::tags_propagate("as-tags", &[D; 4]);
}

#[test]
fn async_std_join_nobody_reached() {
    scenarios::join_nobody("as-nobody", D);
}

#[test]
fn async_std_user_event_reaches_all() {
    scenarios::user_event_reaches_all("as-uev", &[D; 10], 3);
}

#[test]
fn async_std_query_answered_by_all() {
    scenarios::query_answered_by_all("as-query", &[D; 10], 2);
}

#[test]
fn async_std_send_and_broadcast_arrive() {
    scenarios::send_and_broadcast_arrive("as-msg", &[D; 10]);
}

#[test]
fn async_std_remove_failed_turns_left() {
    scenarios::remove_failed_is_left("as-rmf", &[D; 10], 6);
}
