//! The system as separate processes: `manman-host` and two `manman-worker`s on PostgreSQL and
//! RabbitMQ (a database and a vhost of the test's own), driven through the HTTP API only:
//! servers on both, a worker SIGSTOPped (`lost`) and SIGCONTed (`recovered`), then SIGKILLed
//! and started again (its server `crashed`, cause `worker-restart`, no process left).

use futures::StreamExt;
use manman_core::host::StartRequest;
use manman_core::status::{Cause, Status};
use manman_http::Client;
use manman_tests::harness::fake_pid;
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{Daemon, eventually, pid_alive};
use std::process::Child;

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

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
    let Some(mut system) = System::start("processes", PROGRAMS, 2, 4).await else {
        return;
    };
    let client = system.client.clone();
    let config = system.config("main", |_| {}).await;
    let mut instances = Vec::new();
    for name in ["w1", "w2"] {
        let started = client
            .start(&StartRequest {
                config_id: config,
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
    signal(&system.workers[0].0, nix::sys::signal::Signal::SIGSTOP);
    status_of(&client, instances[0], Status::Lost).await;
    assert_eq!(
        client.get_instance(instances[1]).await.expect("get").status,
        Status::Running,
        "the other worker is unaffected"
    );
    signal(&system.workers[0].0, nix::sys::signal::Signal::SIGCONT);
    status_of(&client, instances[0], Status::Running).await;
    let history = client
        .instance_history(instances[0])
        .await
        .expect("history");
    assert_eq!(history.last().map(|e| e.cause), Some(Cause::Recovered));

    // A worker SIGKILLed and started again: what it ran ended, reported `crashed`.
    signal(&system.workers[0].0, nix::sys::signal::Signal::SIGKILL);
    let _ = system.workers[0].0.wait();
    system.workers[0] = Daemon(system.worker_commands[0].spawn().expect("worker again"));
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
    for worker in &system.workers {
        signal(&worker.0, nix::sys::signal::Signal::SIGTERM);
    }
}
