//! The `manman-host` binary on its own: the admin token of its first start (printed once, kept
//! on a SQLite store across a restart), and settings refused at startup with their name.

use manman_http::{Client, ClientError};
use manman_tests::harness::WAIT;
use manman_tests::{Daemon, eventually, free_port};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const HOST: &str = env!("CARGO_BIN_EXE_e2e-host");

/// Starts the host on `store` and waits until it answers; with what it printed on stdout
/// (read on a thread: the admin token comes before "serving").
async fn start(store: &str, port: u16) -> (Daemon, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(HOST)
        .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
        .env("MANMAN_POSTGRES_URL", store)
        .env("MANMAN_RABBITMQ_URL", "memory://")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("host");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    eventually("the host to answer", WAIT, || async {
        client.healthy().await.then_some(())
    })
    .await;
    (Daemon(child), printed)
}

/// The token among the printed lines, if any.
fn printed_token(printed: &std::sync::mpsc::Receiver<String>) -> Option<String> {
    // The token is printed before the API serves, so it is there once the host answers.
    std::thread::sleep(std::time::Duration::from_millis(200));
    printed.try_iter().find_map(|line| {
        line.trim()
            .strip_prefix("mm_")
            .map(|rest| format!("mm_{rest}"))
    })
}

#[tokio::test]
async fn the_first_start_prints_an_admin_token_once_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite:{}", dir.path().join("host.db").display());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    let (host, printed) = start(&store, port).await;
    let token = printed_token(&printed).expect("the first start prints an admin token");
    let admin = Client::new(&url).with_token(&token);
    assert!(admin.list_tokens().await.is_ok(), "it is an admin token");
    let anonymous = Client::new(&url).list_workers().await.unwrap_err();
    assert!(
        matches!(&anonymous, ClientError::Problem(p) if p.status == 401),
        "{anonymous:?}"
    );
    drop(host);

    let (_host, printed) = start(&store, port).await;
    assert_eq!(
        printed_token(&printed),
        None,
        "an admin token exists: nothing new is printed"
    );
    assert!(
        Client::new(&url)
            .with_token(&token)
            .list_tokens()
            .await
            .is_ok(),
        "the token of the first start still works"
    );
}

#[test]
fn bad_settings_stop_startup_with_the_setting_named() {
    for (setting, value, named) in [
        (
            "MANMAN_TOKEN_SIGNING_KEY",
            "short",
            "MANMAN_TOKEN_SIGNING_KEY",
        ),
        (
            "MANMAN_ADMIN_TOKEN_FILE",
            "/nonexistent/admin-token",
            "MANMAN_ADMIN_TOKEN_FILE",
        ),
        ("APP_ENV", "prod", "MANMAN_POSTGRES_URL"),
        ("APP_ENV", "production", "--app-env"),
        ("MANMAN_LOG_FORMAT", "yaml", "--log-format"),
        (
            "MANMAN_ENABLE_EXPERIENCE_API",
            "maybe",
            "--enable-experience-api",
        ),
    ] {
        let output = Command::new(HOST)
            .env("MANMAN_BIND", format!("127.0.0.1:{}", free_port()))
            .env("MANMAN_POSTGRES_URL", "memory://")
            .env("MANMAN_RABBITMQ_URL", "memory://")
            .env(setting, value)
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{setting}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{setting}={value}: {stderr}");
        assert!(
            !stderr.contains(value) || setting != "MANMAN_TOKEN_SIGNING_KEY",
            "the key is not echoed"
        );
    }
}

#[test]
fn a_database_url_password_is_never_printed() {
    let output = Command::new(HOST)
        .env("MANMAN_BIND", format!("127.0.0.1:{}", free_port()))
        .env(
            "MANMAN_POSTGRES_URL",
            "postgres://manman:hunter2@127.0.0.1:1/manman",
        )
        .env("MANMAN_DB_ACQUIRE_TIMEOUT_MS", "200")
        .env("MANMAN_RABBITMQ_URL", "memory://")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("MANMAN_POSTGRES_URL"), "{printed}");
    assert!(printed.contains("manman:***@"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let port = free_port();
    let mut child = Command::new(HOST)
        .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
        .env("MANMAN_POSTGRES_URL", "memory://")
        .env("MANMAN_RABBITMQ_URL", "memory://")
        .env("MANMAN_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("host");
    let stderr = child.stderr.take().expect("stderr");
    let serving = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("manman-host is serving"))
    });
    let client = Client::new(&format!("http://127.0.0.1:{port}"));
    eventually("the host to answer", WAIT, || async {
        client.healthy().await.then_some(())
    })
    .await;
    let _host = Daemon(child);
    let line = serving.join().expect("reader").expect("the serving line");
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON object");
    assert_eq!(event["level"], "INFO", "{line}");
    assert_eq!(
        event["fields"]["message"], "manman-host is serving",
        "{line}"
    );
    assert!(event["fields"]["addr"].is_string(), "{line}");
}

#[test]
fn migrate_only_applies_the_migrations_and_exits() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("host.db");
    let output = Command::new(HOST)
        .env("MANMAN_POSTGRES_URL", format!("sqlite:{}", db.display()))
        .env("MANMAN_RABBITMQ_URL", "memory://")
        .env("APP_ENV", "prod")
        .arg("--migrate-only")
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(db.exists(), "the database was created and migrated");
    let conflicting = Command::new(HOST)
        .args(["--migrate-only", "--no-migrate"])
        .output()
        .expect("run");
    assert_eq!(conflicting.status.code(), Some(2));
}
