//! Cross-crate integration and property tests for rookery live in `tests/`; this library is
//! empty on purpose.
