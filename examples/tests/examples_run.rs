//! The runnable examples run, and do what their READMEs say.

use manman_test_support::postgres::TestDatabase;
use manman_test_support::vhost::TestVhost;
use std::process::Command;

fn run(binary: &str) -> String {
    run_with(binary, &[])
}

fn run_with(binary: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new(binary)
        .envs(env.iter().copied())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{binary}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn embedded_worker_runs_a_game_server_to_completion() {
    let out = run(env!("CARGO_BIN_EXE_embedded-worker"));
    assert!(out.contains("is running"), "{out}");
    assert!(out.contains("is complete (exit code Some(0))"), "{out}");
    for status in ["created", "initializing", "running", "complete"] {
        assert!(out.contains(&format!("  {status} (")), "{status} in {out}");
    }
}

#[test]
fn host_extension_serves_its_route_and_runs_its_service_beside_the_hosts() {
    let out = run(env!("CARGO_BIN_EXE_host-extension"));
    assert!(out.contains("GET /census: 1 live worker(s)"), "{out}");
    for service in [
        "census",
        "http api",
        "status processor",
        "console hub",
        "event hub",
        "dead-letter watcher",
        "lease sweep",
        "command sweep",
        "retention",
    ] {
        assert!(
            out.contains(&format!(
                "manman_host_service_up{{service=\"{service}\"}} 1"
            )),
            "{service} runs: {out}"
        );
    }
}

#[test]
fn custom_installer_reports_progress_and_installs_a_runnable_game() {
    let out = run(env!("CARGO_BIN_EXE_custom-installer"));
    assert!(out.contains("100.0% done"), "{out}");
    assert!(out.contains("hello from an installed game"), "{out}");
}

#[tokio::test]
async fn rabbit_pg_runs_host_and_worker_on_the_real_services() {
    let Some(database) = TestDatabase::create("example_rabbit_pg").await else {
        return;
    };
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let binary = env!("CARGO_BIN_EXE_rabbit-pg");
    let url = database.url.clone();
    let out = tokio::task::spawn_blocking({
        let amqp = vhost.url().to_owned();
        move || {
            run_with(
                binary,
                &[
                    ("MANMAN_POSTGRES_URL", url.as_str()),
                    ("MANMAN_RABBITMQ_URL", amqp.as_str()),
                ],
            )
        }
    })
    .await
    .expect("run");
    assert!(out.contains("is running (recorded in PostgreSQL)"), "{out}");
    assert!(
        out.contains("is complete (recorded in PostgreSQL)"),
        "{out}"
    );
    drop(database);
}

#[test]
fn rabbit_pg_without_its_settings_says_which() {
    let output = Command::new(env!("CARGO_BIN_EXE_rabbit-pg"))
        .env_remove("MANMAN_POSTGRES_URL")
        .env_remove("MANMAN_RABBITMQ_URL")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("MANMAN_POSTGRES_URL"));
}

#[test]
fn custom_store_passes_the_store_conformance_suite() {
    let out = run(env!("CARGO_BIN_EXE_custom-store"));
    assert!(out.contains("the store conformance suite passed"), "{out}");
    assert!(out.contains("create_game: "), "changes were audited: {out}");
}
