//! The worker deletes the console logs of ended instances once they are older than its log
//! retention (`WorkerSettings::log_retention`), with a task it starts and stops with itself,
//! and never the log of an instance it runs.

use manman_core::process::TokioProcessRunner;
use manman_core::status::Status;
use manman_core::worker_service::LogRetention;
use manman_tests::eventually;
use manman_tests::harness::{Harness, WAIT};
use std::time::Duration;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

#[tokio::test]
async fn the_worker_deletes_ended_instances_logs_and_keeps_running_ones() {
    let h = Harness::new(FAKE.as_ref()).await;
    let mut settings = h.settings("w");
    // Every log of an ended instance is past a retention of zero; prune often.
    settings.log_retention = LogRetention {
        keep: Duration::ZERO,
        interval: Duration::from_millis(100),
    };
    let worker = h
        .spawn_worker(h.worker(settings.clone(), TokioProcessRunner::new()))
        .await;
    let ended_config = h.config("ended", |_| {}).await;
    let running_config = h.config("running", |_| {}).await;

    let ended = h.start(ended_config).await;
    h.wait_status(ended, Status::Running).await;
    let running = h.start(running_config).await;
    h.wait_status(running, Status::Running).await;
    let ended_log = Harness::log_path(&settings, ended);
    let running_log = Harness::log_path(&settings, running);
    Harness::wait_log(&settings, ended, "Server is ready").await;
    Harness::wait_log(&settings, running, "Server is ready").await;
    // Prunings pass while both run: neither log goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        ended_log.exists() && running_log.exists(),
        "running instances keep their logs"
    );

    h.host.instances().stop(ended, "test").await.expect("stop");
    h.wait_status(ended, Status::Complete).await;
    eventually("the ended instance's log to be deleted", WAIT, || async {
        (!ended_log.exists()).then_some(())
    })
    .await;
    // Several prunings later the running instance's log is still there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        running_log.exists(),
        "a running instance's log is never deleted"
    );
    assert_eq!(
        h.host
            .instances()
            .get_instance(running)
            .await
            .expect("get")
            .status,
        Status::Running
    );
    worker.stop().await;
}
