//! Cross-crate integration and property tests for rookery live in `tests/`. This library holds
//! what the driver tests share: [`agents`], one blocking face over the tokio, async-std and mio
//! drivers, and [`scenarios`], each cluster scenario written once and run per driver.

pub mod agents;
pub mod scenarios;
