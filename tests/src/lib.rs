//! Support for ManMan's end-to-end tests: the process table and waiting for a condition.
//!
//! The tests themselves are in `tests/`. `src/bin/` builds the programs they run as real
//! processes: the fake game server (`CARGO_BIN_EXE_e2e-fake-game-server`) and the `manman`
//! command line (`CARGO_BIN_EXE_e2e-manman`).

pub mod harness;
pub mod system;

use std::future::Future;
use std::time::Duration;

/// A daemon under test (a host, a worker): killed and reaped when dropped, so a failing test
/// leaves no process behind.
#[derive(Debug)]
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port that is free on loopback now.
///
/// # Panics
///
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Whether a process with this pid exists and is not a zombie (a zombie has ended: it only
/// waits for its parent to read its exit status).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` saying what was
/// awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to [`harness::WAIT`]) until the host `client` talks to says instance `id` has
/// `status`; returns the instance as it was then.
///
/// # Panics
///
/// When it does not happen in time.
pub async fn wait_instance_status(
    client: &manman_http::Client,
    id: manman_core::id::InstanceId,
    status: manman_core::status::Status,
) -> manman_core::instance::Instance {
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    loop {
        // What it was at this look, for the message when it never gets there.
        let last = match client.get_instance(id).await {
            Ok(instance) if instance.status == status => return instance,
            Ok(instance) => {
                format!(
                    "{} (cause {}, detail {:?}) on {}",
                    instance.status, instance.cause, instance.detail, instance.worker_id
                )
            }
            Err(e) => format!("not read: {e}"),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {:?} waiting for {id} to be {status}; it was {last}",
            harness::WAIT
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `manman up` for a test: on a free port, its data (SQLite) in `data`, the `demo` game running
/// `fake_game_server`, a worker named `local` with room for 4 servers.
pub fn up_options(data: &std::path::Path, fake_game_server: &str) -> manman::up::UpOptions {
    manman::up::UpOptions {
        bind: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.to_owned(),
        demo_executable: Some(fake_game_server.into()),
        worker_name: "local".to_owned(),
        capacity: 4,
        steamcmd: "steamcmd".into(),
        steam_credentials: Vec::new(),
        store: manman::up::StoreChoice::Sqlite(None),
    }
}
