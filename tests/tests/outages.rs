//! Outages of the host's backends leave the truth behind them: the real `manman-host` and
//! `manman-worker` processes on PostgreSQL and RabbitMQ (a database and a vhost of each test's
//! own), a backend taken away for a while.

use manman_core::command::CommandState;
use manman_core::host::StartRequest;
use manman_core::id::{ConfigId, InstanceId};
use manman_core::status::{Cause, Status};
use manman_http::{Client, ClientError};
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{eventually, wait_instance_status};
use sqlx::Connection;
use std::time::{Duration, Instant};

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

async fn start_on(client: &Client, config: ConfigId, worker: &str) -> InstanceId {
    client
        .start(&StartRequest {
            config_id: config,
            worker: Some(worker.to_owned()),
            labels: Default::default(),
        })
        .await
        .expect("start")
        .instance_id
}

/// The pid of an instance's fake game server, from the start line of its console log.
async fn server_pid(system: &System, worker: &str, id: InstanceId) -> u32 {
    let path = system.console_log(worker, id);
    let log = eventually("the server's start line in its log", WAIT, || async {
        let log = std::fs::read_to_string(&path).ok()?;
        log.contains("(pid ").then_some(log)
    })
    .await;
    manman_tests::harness::fake_pid(&log)
}

/// How many `lost` rows the status history holds, for workers and for instances.
async fn lost_rows(database_url: &str) -> (i64, i64) {
    let mut db = sqlx::PgConnection::connect(database_url)
        .await
        .expect("database");
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE worker_id IS NOT NULL),
                count(*) FILTER (WHERE instance_id IS NOT NULL)
         FROM manman.status_events WHERE status = 'lost'",
    )
    .fetch_one(&mut db)
    .await
    .expect("lost rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_no_worker_and_records_a_kill_during_it_as_itself() {
    const OUTAGE: Duration = Duration::from_secs(15);
    let Some(system) = System::start("system_db_outage", PROGRAMS, 2, 4).await else {
        return;
    };
    let client = &system.client;
    let (a, b) = (
        system.config("a", |_| {}).await,
        system.config("b", |_| {}).await,
    );
    let victim = start_on(client, a, "w1").await;
    let bystander = start_on(client, b, "w2").await;
    for id in [victim, bystander] {
        wait_instance_status(client, id, Status::Running).await;
    }
    let pid = server_pid(&system, "w1", victim).await;

    // PostgreSQL out of the host's reach for 15 s: no new connection to its database, every
    // open one cut (again and again, as the system test of database cuts does).
    let name = system.database.name().to_owned();
    let mut admin = sqlx::PgConnection::connect(system.database.admin_url())
        .await
        .expect("admin");
    let allow =
        |allowed: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allowed}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
        .execute(&mut admin)
        .await
        .expect("refuse connections");
    let begun = Instant::now();
    let mut killed = false;
    let mut answered_503 = false;
    while begun.elapsed() < OUTAGE {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(&name)
            .execute(&mut admin)
            .await
            .expect("terminate");
        if !killed && begun.elapsed() > Duration::from_secs(5) {
            // The server dies while the host cannot record anything.
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill -9");
            killed = true;
            answered_503 = matches!(
                client.list_instances(&Default::default()).await,
                Err(ClientError::Problem(p)) if p.status == 503
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
        .execute(&mut admin)
        .await
        .expect("allow connections");
    assert!(answered_503, "the host could not reach its database");

    // The kill is recorded as what it was: crashed by signal 9, as the worker reported it.
    wait_instance_status(client, victim, Status::Crashed).await;
    let ended = client.get_instance(victim).await.expect("get");
    let history = client.instance_history(victim).await.expect("history");
    assert_eq!(ended.exit_signal, Some(9), "{history:#?}");
    assert_eq!(
        history.last().map(|e| e.cause),
        Some(Cause::Exited),
        "its real exit, not a guess: {history:#?}"
    );
    // Two leases (12 s) after the outage: no sweep took the host's outage for the workers'.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let lost = lost_rows(&system.database.url).await;
    if lost != (0, 0) {
        eprintln!(
            "the host's log:\n{}",
            std::fs::read_to_string(system.log("host")).unwrap_or_default()
        );
    }
    assert_eq!(lost, (0, 0), "no worker (nor instance) was lost");
    for worker in client.list_workers().await.expect("workers") {
        assert_eq!(worker.status, Status::Running, "{}", worker.name);
    }
    let still = client.get_instance(bystander).await.expect("get");
    assert_eq!(still.status, Status::Running);
    client.stop(bystander).await.expect("stop");
    wait_instance_status(client, bystander, Status::Complete).await;
}

/// `rabbitmqctl` with `args`; panics when it fails.
fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_during_a_broker_outage_end_expired_and_undelivered() {
    let Some(system) = System::start_with_host_env(
        "system_abandoned",
        PROGRAMS,
        1,
        4,
        &[("MANMAN_COMMAND_TTL_S", "3")],
    )
    .await
    else {
        return;
    };
    let client = &system.client;
    let (main, other) = (
        system.config("main", |_| {}).await,
        system.config("other", |_| {}).await,
    );
    let running = start_on(client, main, "w1").await;
    wait_instance_status(client, running, Status::Running).await;

    // The broker refuses every connection to the vhost, and drops the open ones.
    let vhost = system
        .amqp_url
        .rsplit_once('/')
        .map(|(_, v)| v.to_owned())
        .expect("a vhost in the URL");
    rabbitmqctl(&[
        "set_vhost_limits",
        "-p",
        &vhost,
        r#"{"max-connections": 0}"#,
    ]);
    system
        .vhost
        .close_all_connections("a broker outage, for the test");

    // Clients that give up before the host does (it waits for the broker).
    let impatient = client.clone().with_timeout(Duration::from_secs(2));
    let start = impatient
        .start(&StartRequest {
            config_id: other,
            worker: Some("w1".to_owned()),
            labels: Default::default(),
        })
        .await;
    assert!(start.is_err(), "{start:?}");
    let stdin = impatient.stdin(running, "a line nobody waits for").await;
    assert!(stdin.is_err(), "{stdin:?}");

    // The commands they left behind, as the database holds them.
    let mut db = sqlx::PgConnection::connect(&system.database.url)
        .await
        .expect("database");
    let left: Vec<(uuid::Uuid, String, i64)> = sqlx::query_as(
        "SELECT id, kind, instance_id FROM manman.command_records
         WHERE kind = 'stdin' OR (kind = 'start' AND instance_id <> $1) ORDER BY kind",
    )
    .bind(running.get())
    .fetch_all(&mut db)
    .await
    .expect("commands");
    let kinds: Vec<&str> = left.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["start", "stdin"], "{left:?}");
    // Within the time to live (3 s) and a sweep: `expired`, and the start's instance `crashed`
    // (`undelivered`) rather than `created` for ever — while the broker is still away.
    for (id, kind, _) in &left {
        let state = eventually(&format!("the {kind} command to end"), WAIT, || async {
            let record = client.get_command(*id).await.ok()?;
            record.state.is_final().then_some(record.state)
        })
        .await;
        assert_eq!(state, CommandState::Expired, "{kind}");
    }
    let abandoned = InstanceId(left[0].2);
    wait_instance_status(client, abandoned, Status::Crashed).await;
    let history = client.instance_history(abandoned).await.expect("history");
    assert_eq!(
        history.iter().map(|e| e.cause).collect::<Vec<_>>(),
        [Cause::Placed, Cause::Undelivered],
        "{history:#?}"
    );

    // The broker is back: the running server takes lines again and stops.
    rabbitmqctl(&[
        "set_vhost_limits",
        "-p",
        &vhost,
        r#"{"max-connections": -1}"#,
    ]);
    // The host is back on the broker before the worker may be (each reconnects on its own
    // backoff), and a command the worker does not take within the 3 s time to live expires:
    // lines are sent until one is answered, so the worker consumes again.
    eventually("a line to be answered again", WAIT, || async {
        let accepted = client.stdin(running, "back").await.ok()?;
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            let record = client.get_command(accepted.command_id).await.ok()?;
            if record.state.is_final() {
                return (record.state == CommandState::Succeeded).then_some(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    })
    .await;
    client.stop(running).await.expect("stop");
    wait_instance_status(client, running, Status::Complete).await;
}

#[test]
fn the_client_waits_longer_than_the_host_waits_for_its_broker() {
    let publish_wait = manman_rabbit::RabbitSettings::new("amqp://localhost").publish_wait;
    assert!(
        manman_http::REQUEST_TIMEOUT > publish_wait + Duration::from_secs(5),
        "{:?} vs {publish_wait:?}",
        manman_http::REQUEST_TIMEOUT
    );
}
