//! A worker on a RabbitMQ user of its own, as docs/security.md shows: it may consume only its
//! own command queue and publish only to the events and console exchanges — and it runs game
//! servers all the same.

use chrono::Utc;
use manman_core::bus::Bus;
use manman_core::id::WorkerId;
use manman_core::ports::Message;
use manman_core::status::Status;
use manman_core::store::Store;
use manman_core::topology::{Topology, worker_routing_key};
use manman_core::worker::WorkerRegistration;
use manman_pg::{PgSettings, PgStore};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{eventually, wait_instance_status};
use std::sync::Arc;

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

/// The permissions of docs/security.md for the worker `id`: configure and write its own queue
/// (to declare and bind it), write the events and console exchanges, read its own queue and the
/// commands exchange (to bind to it).
fn worker_permissions(id: WorkerId) -> (String, String, String) {
    let t = Topology::new();
    let queue = regex_literal(&t.worker_commands_queue(id));
    (
        format!("^{queue}$"),
        format!(
            "^({queue}|{}|{})$",
            regex_literal(&t.events_exchange()),
            regex_literal(&t.console_exchange())
        ),
        format!("^({queue}|{})$", regex_literal(&t.commands_exchange())),
    )
}

fn regex_literal(name: &str) -> String {
    name.replace('.', "\\.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_broker_user_of_its_own_runs_servers_and_can_do_nothing_else() {
    let Some(mut system) = System::start("broker_user", PROGRAMS, 1, 4).await else {
        return;
    };
    // The worker's id comes with its first registration; the operator reads it from
    // `manman workers` (here: registered ahead through the store) and grants its user rights
    // on that id's queue.
    let pg = PgStore::connect(&PgSettings::new(&system.database.url))
        .await
        .expect("database");
    let store = Store::from_adapter(pg);
    let id = store
        .workers
        .register_worker(
            &WorkerRegistration {
                name: "boxed".to_owned(),
                version: "1".to_owned(),
                capacity: 4,
                labels: Default::default(),
                taken_up: Vec::new(),
            },
            Utc::now(),
        )
        .await
        .expect("register")
        .id;
    let (configure, write, read) = worker_permissions(id);
    let url = system.vhost.add_user("boxed", &configure, &write, &read);
    system.add_worker("boxed", &url).await;

    // It runs a server: its events and console lines reach the host through its own user.
    let config = system.config("main", |_| {}).await;
    let instance = system.start_on(config, "boxed").await;
    wait_instance_status(&system.client, instance, Status::Running).await;
    let command = system
        .client
        .stdin(instance, "say hello")
        .await
        .expect("stdin")
        .command_id;
    eventually("the console line to be written", WAIT, || async {
        let record = system.client.get_command(command).await.ok()?;
        (record.state == manman_core::command::CommandState::Succeeded).then_some(())
    })
    .await;
    system.client.stop(instance).await.expect("stop");
    wait_instance_status(&system.client, instance, Status::Complete).await;

    // And nothing else: it cannot give orders, read another worker's queue or the host's.
    let rabbit = RabbitBus::connect(&RabbitSettings::new(&url))
        .await
        .expect("connect as the worker's user");
    let bus = Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit));
    let t = bus.topology().clone();
    let other = system
        .client
        .list_workers()
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.name == "w1")
        .expect("w1")
        .id;
    let order = Message::json("command", &"{}", Utc::now()).expect("encode");
    assert!(
        bus.publisher()
            .publish(&t.commands_exchange(), &worker_routing_key(other), order)
            .await
            .is_err(),
        "publishing a command is refused"
    );
    for queue in [t.worker_commands_queue(other), t.status_processor_queue()] {
        assert!(
            bus.subscriber().consume(&queue, 1).await.is_err(),
            "consuming {queue} is refused"
        );
    }
    assert_eq!(
        system
            .client
            .list_workers()
            .await
            .expect("workers")
            .into_iter()
            .find(|w| w.name == "boxed")
            .expect("boxed")
            .status,
        Status::Running
    );
}
