//! The system as separate processes: `manman-host` and two `manman-worker`s on RabbitMQ
//! (`MANMAN_TEST_AMQP_URL`, a vhost of the test's own), driven through the HTTP API only:
//! servers on both, a worker SIGSTOPped (`lost`) and SIGCONTed (`recovered`), then SIGKILLed
//! and started again (its server `crashed`, cause `worker-restart`, no process left).

use futures::StreamExt;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::status::{Cause, Status};
use manman_http::Client;
use manman_test_support::vhost::TestVhost;
use manman_tests::harness::fake_pid;
use manman_tests::{Daemon, eventually, free_port, pid_alive};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HOST: &str = env!("CARGO_BIN_EXE_e2e-host");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");
const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const WAIT: Duration = Duration::from_secs(30);

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        signal,
    )
    .expect("signal");
}

async fn status_of(client: &Client, id: manman_core::id::InstanceId, want: Status) {
    eventually(&format!("{id} to be {want}"), WAIT, || async {
        (client.get_instance(id).await.ok()?.status == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn host_and_two_workers_as_processes_on_rabbitmq() {
    let Some(vhost) = TestVhost::create() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let admin_token = "admin-token-of-the-processes-test";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, admin_token).expect("token file");
    let host = Daemon(
        Command::new(HOST)
            .env("MANMAN_ADMIN_TOKEN_FILE", &token_file)
            .env("MANMAN_BIND", format!("127.0.0.1:{port}"))
            .env("MANMAN_POSTGRES_URL", "memory://")
            .env("MANMAN_RABBITMQ_URL", vhost.url())
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("host"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&url).with_token(admin_token);
    eventually("the host to answer", WAIT, || async {
        client.healthy().await.then_some(())
    })
    .await;
    // The host takes the token file's token once it serves.
    eventually("the admin token to work", WAIT, || async {
        client.list_workers().await.ok()
    })
    .await;

    let mut workers = Vec::new();
    let mut worker_commands = Vec::new();
    for name in ["w1", "w2"] {
        let install = dir.path().join(name);
        std::fs::create_dir_all(install.join("games/fake")).expect("dir");
        std::os::unix::fs::symlink(FAKE, install.join("games/fake/fake-game-server"))
            .expect("link");
        let credentials = client
            .create_worker_credential(name)
            .await
            .expect("credentials");
        let mut command = Command::new(WORKER);
        command
            .env(
                "MANMAN_WORKER_SA_CLIENT_ID",
                &credentials.credential.client_id,
            )
            .env("MANMAN_WORKER_SA_CLIENT_SECRET", &credentials.client_secret)
            .env("MANMAN_HOST_URL", &url)
            .env("MANMAN_RABBITMQ_URL", vhost.url())
            .env("MANMAN_WORKER_NAME", name)
            .env("MANMAN_WORKER_INSTALL_DIRECTORY", &install)
            .env("MANMAN_WORKER_HEARTBEAT_MS", "500")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        workers.push(Daemon(command.spawn().expect("worker")));
        worker_commands.push(command);
    }
    eventually("both workers to run", WAIT, || async {
        let running = client
            .list_workers()
            .await
            .ok()?
            .iter()
            .filter(|w| w.status == Status::Running)
            .count();
        (running == 2).then_some(())
    })
    .await;

    let game = client
        .create_game(&NewGameServer {
            name: "fake".into(),
            server_type: ServerType::Local {
                path: "games/fake".into(),
            },
        })
        .await
        .expect("game");
    let mut spec = ConfigSpec::new("main", "fake-game-server");
    spec.stop.stdin_line = Some("quit".into());
    let config = client.create_config(game.id, &spec).await.expect("config");
    let mut instances = Vec::new();
    for name in ["w1", "w2"] {
        let started = client
            .start(&StartRequest {
                config_id: config.id,
                worker: Some(name.into()),
                labels: Default::default(),
            })
            .await
            .expect("start");
        instances.push(started.instance_id);
    }
    let mut pids = Vec::new();
    for id in &instances {
        status_of(&client, *id, Status::Running).await;
        let mut console = Box::pin(client.console(*id, None).await.expect("console"));
        let first = console.next().await.expect("a line").expect("ok");
        pids.push(fake_pid(&first.text));
        client.stdin(*id, "over the bus").await.expect("stdin");
        let echoed = tokio::time::timeout(WAIT, async {
            loop {
                let line = console.next().await.expect("a line").expect("ok");
                if line.text == "echo: over the bus" {
                    return line;
                }
            }
        })
        .await
        .expect("the line came back through RabbitMQ");
        assert!(echoed.seq > first.seq);
    }

    // A worker that stops answering is lost with its instance, then recovers.
    signal(&workers[0].0, nix::sys::signal::Signal::SIGSTOP);
    status_of(&client, instances[0], Status::Lost).await;
    assert_eq!(
        client.get_instance(instances[1]).await.expect("get").status,
        Status::Running,
        "the other worker is unaffected"
    );
    signal(&workers[0].0, nix::sys::signal::Signal::SIGCONT);
    status_of(&client, instances[0], Status::Running).await;
    let history = client
        .instance_history(instances[0])
        .await
        .expect("history");
    assert_eq!(history.last().map(|e| e.cause), Some(Cause::Recovered));

    // A worker SIGKILLed and started again: what it ran ended, reported `crashed`.
    signal(&workers[0].0, nix::sys::signal::Signal::SIGKILL);
    let _ = workers[0].0.wait();
    workers[0] = Daemon(worker_commands[0].spawn().expect("worker again"));
    status_of(&client, instances[0], Status::Crashed).await;
    let history = client
        .instance_history(instances[0])
        .await
        .expect("history");
    assert_eq!(
        history.last().map(|e| e.cause),
        Some(Cause::WorkerRestart),
        "{history:?}"
    );
    eventually("the killed worker's server to be gone", WAIT, || async {
        (!pid_alive(pids[0])).then_some(())
    })
    .await;
    assert_eq!(
        client.get_instance(instances[1]).await.expect("get").status,
        Status::Running,
        "the other worker is unaffected"
    );

    client.stop(instances[1]).await.expect("stop");
    status_of(&client, instances[1], Status::Complete).await;
    assert!(
        pids.iter().all(|p| !pid_alive(*p)),
        "no server process left"
    );
    for worker in &workers {
        signal(&worker.0, nix::sys::signal::Signal::SIGTERM);
    }
    drop(workers);
    drop(host);
}
