//! Two host replicas — two `manman-host` processes on one PostgreSQL database and one RabbitMQ
//! vhost, their status processors competing for `host.status-processor.events` — under a storm
//! of numbered status reports: every instance's history is the reports in the order they were
//! numbered, each once, nothing lost.

use chrono::Utc;
use futures::future::join_all;
use manman_core::bus::Bus;
use manman_core::event::{Event, StatusReport};
use manman_core::host::BusKeys;
use manman_core::id::InstanceId;
use manman_core::signing::WorkerKey;
use manman_core::status::{Cause, Entity, Sequence, Status};
use manman_core::store::Store;
use manman_core::testing::fixture;
use manman_pg::{PgSettings, PgStore};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::postgres::TestDatabase;
use manman_test_support::vhost::TestVhost;
use manman_tests::{Daemon, eventually, free_port};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const HOST: &str = env!("CARGO_BIN_EXE_e2e-host");
const INSTANCES: usize = 200;
/// Reports per instance: 200 × 50 = 10,000 events.
const REPORTS: i64 = 50;
/// How long the storm may take to be recorded (it takes seconds; this is for a slow machine).
const RECORDED_WITHIN: Duration = Duration::from_secs(90);

/// Publishes one status report as its worker would, sealed with its registration's key.
async fn publish_report(bus: &Bus, key: &WorkerKey, report: StatusReport) -> Uuid {
    bus.publish_event(&Event::Status(report), Utc::now(), key)
        .await
        .expect("publish a status report")
}

/// The `counter`th report of an instance's long life: it starts, becomes ready, restarts and
/// becomes ready again, over and over, and at last stops.
fn report(id: InstanceId, epoch: i64, counter: i64) -> StatusReport {
    let (status, cause) = if counter == REPORTS {
        (Status::Complete, Cause::User)
    } else if counter == 1 {
        (Status::Initializing, Cause::Spawned)
    } else if counter % 2 == 1 {
        (Status::Initializing, Cause::CrashPolicy)
    } else {
        (Status::Running, Cause::Ready)
    };
    let mut report = StatusReport::new(Entity::Instance(id), status, cause, Utc::now())
        .with_detail(format!("report {counter}"))
        .with_sequence(Sequence::new(epoch, counter));
    report.restart_count = u32::try_from(counter / 2).expect("small");
    report
}

/// A host replica on the shared database and vhost; it logs into `dir`.
async fn replica(name: &str, database: &str, amqp: &str, dir: &Path) -> Daemon {
    let port = free_port();
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, "admin-token-of-the-replicas-test").expect("token file");
    let host = Daemon(
        Command::new(HOST)
            .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
            .env("MANMAN_POSTGRES_URL", database)
            .env("MANMAN_RABBITMQ_URL", amqp)
            .env("MANMAN_ADMIN_TOKEN_FILE", &token_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).expect("log"))
            .spawn()
            .expect("host"),
    );
    let ready = format!("http://127.0.0.1:{port}/readyz");
    eventually(&format!("{name} to be ready"), RECORDED_WITHIN, || async {
        let response = reqwest::get(&ready).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_apply_a_storm_of_reports_in_order_each_once() {
    let Some(database) = TestDatabase::create("status_replicas").await else {
        return;
    };
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let pg = PgStore::connect(&PgSettings::new(&database.url))
        .await
        .expect("connect");
    pg.migrate().await.expect("migrate");
    let store = Store::from_adapter(pg);

    // One worker (kept alive below, as its heartbeats would) and its instances.
    let worker = fixture::worker(&store).await;
    let instances: Vec<InstanceId> = fixture::instances_on(&store, &worker, INSTANCES)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect();
    let alive = CancellationToken::new();
    let heartbeats = tokio::spawn({
        let (store, alive) = (store.clone(), alive.clone());
        async move {
            while !alive.is_cancelled() {
                let _ = store
                    .workers
                    .record_heartbeat(worker.id, worker.epoch, Utc::now())
                    .await;
                tokio::select! {
                    () = alive.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    });

    let dir = tempfile::tempdir().expect("dir");
    let _first = replica("host-1", &database.url, vhost.url(), dir.path()).await;
    let _second = replica("host-2", &database.url, vhost.url(), dir.path()).await;

    let rabbit = RabbitBus::connect(&RabbitSettings::new(vhost.url()))
        .await
        .expect("broker");
    let bus = Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit.clone()));
    let key = BusKeys::new(&store)
        .worker_key(worker.id, worker.epoch)
        .await
        .expect("the worker's key");
    // Round by round: every instance's next report at once, each instance's reports in order.
    let mut published: Vec<Vec<Uuid>> = vec![Vec::new(); INSTANCES];
    for counter in 1..=REPORTS {
        let round = join_all(
            instances
                .iter()
                .map(|id| publish_report(&bus, &key, report(*id, worker.epoch, counter))),
        )
        .await;
        for (ids, id) in published.iter_mut().zip(round) {
            ids.push(id);
        }
    }

    // Every instance ends `complete` (the last report); on a host that reorders, some never do.
    let deadline = tokio::time::Instant::now() + RECORDED_WITHIN;
    loop {
        let counts = store.instances.count_by_status().await.expect("count");
        let complete = counts
            .iter()
            .find(|(s, _)| *s == Status::Complete)
            .map_or(0, |(_, n)| *n);
        if complete == INSTANCES as u64 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let anything still in flight land, so a report applied twice or late is seen.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut wrong = Vec::new();
    for (id, sent) in instances.iter().zip(&published) {
        let history = store
            .status
            .status_history(Entity::Instance(*id), None, 1_000)
            .await
            .expect("history");
        let recorded: Vec<Uuid> = history.iter().skip(1).map(|e| e.event_id).collect();
        if &recorded != sent {
            let details: Vec<&str> = history
                .iter()
                .skip(1)
                .map(|e| e.detail.as_deref().unwrap_or("?"))
                .collect();
            wrong.push(format!(
                "{id}: {} of {} reports recorded: {details:?}",
                recorded.len(),
                sent.len()
            ));
        }
    }
    alive.cancel();
    heartbeats.await.expect("heartbeats");
    rabbit.close().await;
    assert!(
        wrong.is_empty(),
        "{} of {INSTANCES} instances' histories are not their reports in order, each once \
         (logs in {}); the first: {:#?}",
        wrong.len(),
        dir.keep().display(),
        &wrong[..wrong.len().min(3)]
    );
}
