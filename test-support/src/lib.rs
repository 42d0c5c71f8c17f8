//! Test support for ManMan's tests against real services.
//!
//! A test that needs PostgreSQL calls [`postgres::TestDatabase::create`]: with
//! `MANMAN_TEST_DATABASE_URL` set (a superuser's URL), it gets a fresh database of its own,
//! dropped when the test passes (kept when it fails, for a look). Without it the test is skipped
//! with a printed notice — unless `MANMAN_REQUIRE_SERVICES=1`, which turns the skip into a
//! failure (CI sets it). Docker-based containers are not started: the machines ManMan is built
//! on have no Docker engine, so the URL is the way.

pub mod amqp;
pub mod game_files;
pub mod postgres;
pub mod vhost;

/// Skips a test that needs `service` (prints why and how to run it), or fails it when
/// `MANMAN_REQUIRE_SERVICES=1`.
///
/// # Panics
///
/// When services are required.
pub fn skip(service: &str, variable: &str) {
    let message = format!(
        "{service} is not configured: set {variable} to run this test against a real server"
    );
    if std::env::var("MANMAN_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{message} (MANMAN_REQUIRE_SERVICES=1 forbids skipping)");
    }
    eprintln!("skipped: {message}");
}
