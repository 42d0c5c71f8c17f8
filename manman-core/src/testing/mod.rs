//! Conformance suites: the semantics of each port, written once. Every adapter runs them
//! (feature `testing`). A new adapter is correct when it passes.
//!
//! Each case is a public async function that panics on a failure, so an adapter's test file can
//! run it as its own `#[tokio::test]`; `run_all` runs a whole suite. Cases pick unique names, so
//! they can share one bus or one store.

pub mod bus;
pub mod fixture;
pub mod host_api;
pub mod process;
pub mod store;

/// A short unique suffix for names made by a test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
