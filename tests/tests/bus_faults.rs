//! Faults of the broker's topology, with the real `manman-host` and `manman-worker` processes on
//! PostgreSQL and RabbitMQ (a database and a vhost of each test's own): queues deleted under
//! their consumers come back by themselves, bound, and no game server stops for it; `/readyz`
//! says when the status processor is not consuming.

use manman_core::host::StartRequest;
use manman_core::id::{ConfigId, InstanceId, WorkerId};
use manman_core::status::{Cause, Status};
use manman_http::{Client, ClientError};
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{eventually, wait_instance_status};

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

/// The status processor's queue (the system runs unprefixed names on a vhost of its own).
const STATUS_QUEUE: &str = "host.status-processor.events";

/// Starts `config` on `worker`, asking again while the host answers 503 (the broker refused
/// the command: its queue was not back yet).
async fn start_on(client: &Client, config: ConfigId, worker: &str) -> InstanceId {
    eventually(
        &format!("a start on {worker} to be accepted"),
        WAIT,
        || async {
            match client
                .start(&StartRequest {
                    config_id: config,
                    worker: Some(worker.to_owned()),
                    labels: Default::default(),
                })
                .await
            {
                Ok(started) => Some(started.instance_id),
                Err(ClientError::Problem(p)) if p.status == 503 => None,
                Err(e) => panic!("start on {worker}: {e}"),
            }
        },
    )
    .await
}

/// `GET /readyz`: the status code and the body.
async fn readyz(client: &Client) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{}/readyz", client.base_url()))
        .await
        .expect("the host answers /readyz");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or_default();
    (status, body)
}

/// The live child processes of `pid` (a worker's children are exactly its game servers, each
/// in a process group of its own).
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let state = fields.next();
        let parent = fields.next().and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) && !matches!(state, Some("Z" | "X")) {
            children.push(child);
        }
    }
    children.sort_unstable();
    children
}

/// The ids of the instances the database says run on `worker`, sorted.
async fn running_on(client: &Client, worker: WorkerId) -> Vec<InstanceId> {
    let mut ids: Vec<InstanceId> = client
        .list_instances(&Default::default())
        .await
        .expect("instances")
        .into_iter()
        .filter(|i| i.worker_id == worker && i.status == Status::Running)
        .map(|i| i.id)
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_status_and_command_queues_come_back_bound_and_no_server_stops() {
    let Some(mut system) = System::start("bus_faults_deleted", PROGRAMS, 2, 4).await else {
        return;
    };
    let client = system.client.clone();
    // A config runs once per worker: one config per server of w1.
    let configs = [
        system.config("a", |_| {}).await,
        system.config("b", |_| {}).await,
        system.config("c", |_| {}).await,
    ];
    let on_w1 = [
        start_on(&client, configs[0], "w1").await,
        start_on(&client, configs[1], "w1").await,
    ];
    let on_w2 = start_on(&client, configs[0], "w2").await;
    for id in on_w1.iter().chain([&on_w2]) {
        wait_instance_status(&client, *id, Status::Running).await;
    }
    let workers = client.list_workers().await.expect("workers");
    let w1 = workers.iter().find(|w| w.name == "w1").expect("w1").clone();
    let w1_pid = system.workers[0].0.id();
    let servers_before = children_of(w1_pid);
    assert_eq!(servers_before.len(), 2, "w1 runs its two servers");
    let (status, _) = readyz(&client).await;
    assert_eq!(status, 200);

    // An operator (or a stray client) deletes the host's status queue and w1's command queue.
    system.vhost.delete_queue(STATUS_QUEUE);
    system
        .vhost
        .delete_queue(&format!("worker.{}.commands", w1.id.get()));

    // Both come back by themselves: the host is ready again, and w1 takes a command (a stop)
    // whose status reaches the database.
    eventually("the host to be ready again", WAIT, || async {
        (readyz(&client).await.0 == 200).then_some(())
    })
    .await;
    let stopped = on_w1[0];
    eventually("a stop to be accepted", WAIT, || async {
        match client.stop(stopped).await {
            Ok(_) => Some(()),
            Err(ClientError::Problem(p)) if p.status == 503 => None,
            Err(e) => panic!("stop {stopped}: {e}"),
        }
    })
    .await;
    let ended = wait_instance_status(&client, stopped, Status::Complete).await;
    assert_eq!(ended.exit_code, Some(0), "a graceful stop, recorded as one");
    // A new start on w1 runs and is reported running: commands in, statuses out.
    let fresh = start_on(&client, configs[2], "w1").await;
    wait_instance_status(&client, fresh, Status::Running).await;

    // Nothing else moved: the worker did not restart (same process, same epoch), the other
    // servers run on as the same processes, and the database agrees with the process table.
    assert!(
        system.workers[0].0.try_wait().expect("w1").is_none(),
        "w1 is still running: see {}",
        system.log("w1").display()
    );
    let w1_now = client
        .list_workers()
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.name == "w1")
        .expect("w1");
    assert_eq!(
        (w1_now.epoch, w1_now.status),
        (w1.epoch, Status::Running),
        "w1 kept its registration"
    );
    let servers_now = children_of(w1_pid);
    assert_eq!(servers_now.len(), 2, "the kept server and the fresh one");
    let kept: Vec<u32> = servers_before
        .iter()
        .copied()
        .filter(|pid| servers_now.contains(pid))
        .collect();
    assert_eq!(kept.len(), 1, "the server not stopped is the same process");
    let mut expected = vec![on_w1[1], fresh];
    expected.sort_unstable();
    assert_eq!(running_on(&client, w1.id).await, expected);
    for id in [on_w1[1], on_w2] {
        let instance = client.get_instance(id).await.expect("get");
        assert_eq!(
            (instance.status, instance.restart_count),
            (Status::Running, 0),
            "{id} ran on untouched"
        );
        let history = client.instance_history(id).await.expect("history");
        assert!(
            history
                .iter()
                .all(|e| !matches!(e.status, Status::Crashed | Status::Lost)
                    && e.cause != Cause::Recovered),
            "{id} never looked lost: {history:#?}"
        );
    }
    for id in [on_w1[1], on_w2, fresh] {
        client.stop(id).await.expect("stop");
        wait_instance_status(&client, id, Status::Complete).await;
    }
    assert!(children_of(w1_pid).is_empty(), "no server left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_status_processor_cannot_consume_its_queue() {
    let Some(system) = System::start("bus_faults_readyz", PROGRAMS, 1, 4).await else {
        return;
    };
    let client = system.client.clone();
    let (status, body) = readyz(&client).await;
    assert_eq!(status, 200, "{body}");

    // The queue is deleted and, before the host declares it again, taken by another
    // connection (exclusive, unbound): the host can neither declare nor consume it.
    let held = system.vhost.hold_queue(STATUS_QUEUE).await;
    let body = eventually("/readyz to be 503", WAIT, || async {
        let (status, body) = readyz(&client).await;
        (status == 503).then_some(body)
    })
    .await;
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("status processor") && detail.contains(STATUS_QUEUE),
        "the detail names why: {body}"
    );
    // It stays so while the queue is held: a later look says the same.
    let (status, _) = readyz(&client).await;
    assert_eq!(status, 503);

    held.release().await;
    eventually("/readyz to be 200 again", WAIT, || async {
        (readyz(&client).await.0 == 200).then_some(())
    })
    .await;
    // Bound again: a start's statuses reach the database.
    let config = system.config("steady", |_| {}).await;
    let id = start_on(&client, config, "w1").await;
    wait_instance_status(&client, id, Status::Running).await;
    client.stop(id).await.expect("stop");
    wait_instance_status(&client, id, Status::Complete).await;
}
