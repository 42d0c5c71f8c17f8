//! The host's flows on PostgreSQL: the same behaviour as on the in-memory store, with a real
//! worker and real game server processes.

use manman_core::process::TokioProcessRunner;
use manman_core::status::{Cause, Status};
use manman_core::store::Store;
use manman_pg::{PgSettings, PgStore};
use manman_test_support::postgres::TestDatabase;
use manman_tests::harness::{Harness, fake_pid, log_texts};
use manman_tests::pid_alive;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

async fn harness(db: &TestDatabase) -> Harness {
    let pg = PgStore::connect(&PgSettings::new(&db.url))
        .await
        .expect("connect");
    pg.migrate().await.expect("migrate");
    Harness::with_store(FAKE.as_ref(), Store::from_adapter(pg)).await
}

#[tokio::test]
async fn start_stdin_stop_and_crash_on_postgres() {
    let Some(db) = TestDatabase::create("host_flows").await else {
        return;
    };
    let h = harness(&db).await;
    let settings = h.settings("pg-worker");
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;

    let main = h
        .config("main", |c| c.stop.stdin_line = Some("quit".to_owned()))
        .await;
    let id = h.start(main).await;
    let running = h.wait_status(id, Status::Running).await;
    assert!(running.started_at.is_some() && running.ready_at.is_some());
    h.host
        .instances()
        .stdin(id, "hello postgres", "test")
        .await
        .expect("stdin");
    let log = Harness::wait_log(&settings, id, "echo: hello postgres").await;
    let pid = fake_pid(&log);
    assert!(
        log_texts(&log).contains(&"hello postgres"),
        "the line sent is in the log too"
    );
    h.host.instances().stop(id, "test").await.expect("stop");
    let done = h.wait_status(id, Status::Complete).await;
    assert_eq!(done.exit_code, Some(0));
    assert!(!pid_alive(pid));
    let statuses: Vec<(Status, Cause)> = h
        .history(id)
        .await
        .iter()
        .map(|e| (e.status, e.cause))
        .collect();
    assert_eq!(
        statuses,
        [
            (Status::Created, Cause::Placed),
            (Status::Initializing, Cause::User),
            (Status::Running, Cause::Ready),
            (Status::Complete, Cause::User),
        ]
    );

    let crashy = h.config("crashy", |_| {}).await;
    let victim = h.start(crashy).await;
    h.wait_status(victim, Status::Running).await;
    h.host
        .instances()
        .stdin(victim, "crash 3", "test")
        .await
        .expect("stdin");
    let crashed = h.wait_status(victim, Status::Crashed).await;
    assert_eq!(crashed.exit_code, Some(3));

    // Unknown references are 404s, not 500s, on PostgreSQL too.
    let missing = h
        .host
        .instances()
        .start(
            &manman_core::host::StartRequest::new(manman_core::id::ConfigId(999_999)),
            "test",
        )
        .await
        .expect_err("unknown config");
    assert!(
        matches!(missing, manman_core::host::HostError::NotFound { .. }),
        "{missing:?}"
    );
    worker.stop().await;
}
