//! A worker that reaches its host over HTTP (`/api/v1/worker`): registration, heartbeats,
//! config fetch (a restart in place; a start carries its config), and "superseded" when another registration of its name takes over; a worker
//! whose credentials are revoked is refused at its next heartbeat, keeps running, and is `lost`.

use manman_core::bus::Bus;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::{HostService, Lease, StartRequest};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::{HostApi, HostApiError, SystemClock};
use manman_core::process::TokioProcessRunner;
use manman_core::status::Status;
use manman_core::store::Store;
use manman_core::worker::{Heartbeat, WorkerRegistration};
use manman_core::worker_service::{LocalInstaller, WorkerExit, WorkerService, WorkerSettings};
use manman_http::{HostServer, HttpHostApi, ServeOptions, WorkerCredentials};
use manman_test_support::game_files::{install_program, reachable_tempdir};
use manman_tests::eventually;
use manman_tests::harness::WAIT;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

#[tokio::test]
async fn a_worker_over_http_runs_servers_and_stops_when_superseded() {
    let dir = reachable_tempdir();
    let game_dir = dir.path().join("games/fake");
    install_program(FAKE, &game_dir.join("fake-game-server"));

    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus.clone(),
        Arc::new(SystemClock),
    );
    let server = HostServer::start(
        host.clone(),
        ServeOptions::new("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("serve");
    let (credential, secret) = server
        .auth()
        .create_worker_credential("remote")
        .await
        .expect("credentials");
    let api = Arc::new(HttpHostApi::new(
        &format!("http://{}", server.addr()),
        WorkerCredentials {
            client_id: credential.client_id,
            client_secret: secret.expose().to_owned(),
        },
    ));

    let mut settings = WorkerSettings::new("remote", dir.path());
    settings.heartbeat_interval = Duration::from_millis(200);
    let worker = WorkerService::new(
        settings,
        api.clone(),
        bus,
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        Arc::new(SystemClock),
    );
    let task = tokio::spawn(worker.run(CancellationToken::new()));
    let registered = eventually("the worker to register over HTTP", WAIT, || async {
        host.workers()
            .list_workers()
            .await
            .expect("workers")
            .into_iter()
            .find(|w| w.status == Status::Running)
    })
    .await;
    let first_beat = registered.last_heartbeat_at;
    eventually("a heartbeat over HTTP", WAIT, || async {
        let w = host
            .workers()
            .list_workers()
            .await
            .expect("workers")
            .pop()?;
        (w.last_heartbeat_at > first_beat).then_some(())
    })
    .await;

    let game = host
        .catalogue()
        .create_game(&NewGameServer {
            name: "fake".into(),
            server_type: ServerType::Local {
                path: "games/fake".into(),
            },
        })
        .await
        .expect("game");
    let config = host
        .catalogue()
        .create_config(game.id, &ConfigSpec::new("main", "fake-game-server"))
        .await
        .expect("config");
    let id = host
        .instances()
        .start(&StartRequest::new(config.id), "test")
        .await
        .expect("start")
        .instance_id;
    eventually(
        "the server to run (config carried by the start command)",
        WAIT,
        || async {
            (host.instances().get_instance(id).await.expect("get").status == Status::Running)
                .then_some(())
        },
    )
    .await;
    // A restart in place fetches the config over HTTP: the host confirms the instance again.
    host.instances().restart(id, "test").await.expect("restart");
    eventually(
        "the server to run again (config fetched over HTTP)",
        WAIT,
        || async {
            let instance = host.instances().get_instance(id).await.expect("get");
            (instance.status == Status::Running && instance.restart_count == 1).then_some(())
        },
    )
    .await;

    // Another process registers the same name: this worker is superseded, stops, exits.
    let newer = api
        .register(&WorkerRegistration {
            name: "remote".into(),
            version: "2".into(),
            capacity: 1,
            labels: Default::default(),
            taken_up: Vec::new(),
        })
        .await
        .expect("register again");
    assert_eq!(newer.epoch, registered.epoch + 1);
    let exit = tokio::time::timeout(WAIT, task)
        .await
        .expect("in time")
        .expect("no panic")
        .expect("no error");
    assert_eq!(exit, WorkerExit::Superseded);
    // The old registration stopped its server, but its reports are sealed with a key the
    // host no longer believes: the new registration's inventory settles the instance.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        host.instances().get_instance(id).await.expect("get").status,
        Status::Running,
        "the superseded registration's reports were refused"
    );
    api.heartbeat(&Heartbeat {
        worker_id: newer.worker_id,
        epoch: newer.epoch,
        inventory: Vec::new(),
    })
    .await
    .expect("heartbeat of the new registration");
    let ended = host.instances().get_instance(id).await.expect("get");
    assert_eq!(
        (ended.status, host_history_cause(&host, id).await),
        (
            Status::Crashed,
            Some(manman_core::status::Cause::WorkerRestart)
        ),
        "the new registration does not run it"
    );
    let now = host
        .workers()
        .list_workers()
        .await
        .expect("workers")
        .pop()
        .expect("worker");
    assert_eq!(
        (now.epoch, now.status),
        (newer.epoch, Status::Created),
        "the old epoch did not end the new registration"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_worker_whose_credentials_are_revoked_is_refused_keeps_running_and_is_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await.expect("topology");
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus.clone(),
        Arc::new(SystemClock),
    );
    let mut options = ServeOptions::new("127.0.0.1:0".parse().expect("addr"));
    options.lease = Lease {
        duration: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    };
    let server = HostServer::start(host.clone(), options)
        .await
        .expect("serve");
    let (credential, secret) = server
        .auth()
        .create_worker_credential("remote")
        .await
        .expect("credentials");
    let api = Arc::new(HttpHostApi::new(
        &format!("http://{}", server.addr()),
        WorkerCredentials {
            client_id: credential.client_id.clone(),
            client_secret: secret.expose().to_owned(),
        },
    ));
    let mut settings = WorkerSettings::new("remote", dir.path());
    settings.heartbeat_interval = Duration::from_millis(200);
    let worker = WorkerService::new(
        settings,
        api.clone(),
        bus,
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        Arc::new(SystemClock),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    let registered = eventually("the worker to register over HTTP", WAIT, || async {
        host.workers()
            .list_workers()
            .await
            .expect("workers")
            .into_iter()
            .find(|w| w.status == Status::Running)
    })
    .await;

    server
        .auth()
        .revoke_worker_credential(&credential.client_id)
        .await
        .expect("revoke");
    // Its token is still signed and unexpired: the next heartbeat is refused all the same, and
    // so is the exchange the client tries then.
    let refused = api
        .heartbeat(&Heartbeat {
            worker_id: registered.id,
            epoch: registered.epoch,
            inventory: Vec::new(),
        })
        .await
        .expect_err("a revoked worker's heartbeat is refused");
    assert!(
        matches!(&refused, HostApiError::Unauthorized { detail } if detail.contains("revoked")),
        "{refused}"
    );
    eventually("the silent worker to be lost", WAIT, || async {
        let w = host
            .workers()
            .get_worker(registered.id)
            .await
            .expect("worker");
        (w.status == Status::Lost).then_some(())
    })
    .await;
    assert!(
        !task.is_finished(),
        "failed heartbeats do not end the worker"
    );
    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, task).await.expect("it stops");
    server.stop().await;
}

/// The cause of an instance's last status change.
async fn host_history_cause(
    host: &HostService,
    id: manman_core::id::InstanceId,
) -> Option<manman_core::status::Cause> {
    host.instances()
        .status_history(manman_core::status::Entity::Instance(id), None, 500)
        .await
        .expect("history")
        .last()
        .map(|e| e.cause)
}
