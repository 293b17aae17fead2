//! Cross-crate integration and property tests for rookery live in `tests/`. This library holds
//! what the driver tests share: [`scenarios`], each cluster scenario written once against the
//! drivers' one API shape and run per driver, and [`driver_scenarios!`], which instantiates
//! every single-driver scenario for one driver; and [`interop`], the HashiCorp programs the
//! live interop tests run beside rookery agents (`serf` agents, Go memberlist programs).

pub mod interop;
pub mod scenarios;

/// Every single-driver scenario as a `#[test]` for `$driver` (a [`scenarios::Driver`]), agent
/// names starting with `$prefix`.
#[macro_export]
macro_rules! driver_scenarios {
    ($driver:expr, $prefix:literal) => {
        use $crate::scenarios;

        const D: scenarios::Driver = $driver;

        #[test]
        fn ten_nodes_join_and_converge() {
            scenarios::join_and_converge(concat!($prefix, "-conv"), &[D; 10]);
        }

        #[test]
        fn stopped_node_detected_failed_by_all() {
            scenarios::crash_detected(concat!($prefix, "-crash"), &[D; 10], 7);
        }

        #[test]
        fn graceful_leave_is_left() {
            scenarios::leave_is_left(concat!($prefix, "-leave"), &[D; 10], 4);
        }

        #[test]
        fn name_conflict_loser_stops_and_says_why() {
            scenarios::name_conflict_loser_stops(concat!($prefix, "-dup"), &[D; 4]);
        }

        #[test]
        fn dropping_the_last_handle_leaves() {
            scenarios::dropped_handle_leaves(concat!($prefix, "-drop"), &[D; 4]);
        }

        #[test]
        fn forgotten_member_stays_out_until_it_rejoins() {
            scenarios::forget_member_until_rejoin(concat!($prefix, "-forget"), &[D; 4]);
        }

        #[test]
        fn join_by_host_names() {
            scenarios::join_by_name(concat!($prefix, "-dns"), &[D; 4]);
        }

        #[test]
        fn watch_members_follows_changes() {
            scenarios::watch_members_follows_changes(concat!($prefix, "-watch"), &[D; 4]);
        }

        #[test]
        fn a_flood_of_messages_loses_nothing() {
            scenarios::flood_loses_nothing(concat!($prefix, "-flood"), &[D; 2]);
        }

        #[test]
        fn every_message_has_one_outcome() {
            scenarios::message_outcomes(concat!($prefix, "-outcome"), &[D; 3]);
        }

        #[test]
        fn garbage_is_counted_and_ignored() {
            scenarios::garbage_ignored(concat!($prefix, "-garbage"), D);
        }

        #[test]
        fn tags_propagate() {
            scenarios::tags_propagate(concat!($prefix, "-tags"), &[D; 4]);
        }

        #[test]
        fn join_nobody_reached() {
            scenarios::join_nobody(concat!($prefix, "-nobody"), D);
        }

        #[test]
        fn user_event_reaches_all() {
            scenarios::user_event_reaches_all(concat!($prefix, "-uev"), &[D; 10], 3);
        }

        #[test]
        fn query_answered_by_all() {
            scenarios::query_answered_by_all(concat!($prefix, "-query"), &[D; 10], 2);
        }

        #[test]
        fn send_and_broadcast_arrive() {
            scenarios::send_and_broadcast_arrive(concat!($prefix, "-msg"), &[D; 10]);
        }

        #[test]
        fn remove_failed_turns_left() {
            scenarios::remove_failed_is_left(concat!($prefix, "-rmf"), &[D; 10], 6);
        }

        #[test]
        fn slow_reader_loses_only_the_oldest_messages() {
            scenarios::slow_reader_loses_only_messages(concat!($prefix, "-slow"), &[D; 3]);
        }

        #[test]
        fn keyring_read_locally() {
            scenarios::keyring_read_locally(concat!($prefix, "-kr"), D);
        }
    };
}
