//! A command no worker takes in time is dead-lettered, and the host records it `expired` (and a
//! start's instance `crashed`, cause `undelivered`) — on the memory bus and on RabbitMQ.

use manman_core::bus::Bus;
use manman_core::command::CommandState;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::{HostService, StartRequest};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::status::{Cause, Entity, Status};
use manman_core::store::Store;
use manman_core::topology::Topology;
use manman_core::worker::WorkerRegistration;
use manman_http::{HostServer, ServeOptions};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_tests::eventually;
use manman_tests::harness::WAIT;
use std::sync::Arc;
use std::time::Duration;

async fn expire_a_start(bus: Bus) {
    bus.declare().await.expect("topology");
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus,
        Arc::new(SystemClock),
    )
    .with_command_ttl(Duration::from_millis(300));
    let server = HostServer::start(
        host.clone(),
        ServeOptions::new("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("serve");
    // A worker registers and then never takes a command (it hangs, or died after registering).
    host.gateway()
        .register_worker(&WorkerRegistration {
            name: "silent".into(),
            version: "1".into(),
            capacity: 1,
            labels: Default::default(),
            taken_up: Vec::new(),
        })
        .await
        .expect("register");
    let game = host
        .catalogue()
        .create_game(&NewGameServer {
            name: "g".into(),
            server_type: ServerType::Local { path: "g".into() },
        })
        .await
        .expect("game");
    let config = host
        .catalogue()
        .create_config(game.id, &ConfigSpec::new("c", "x"))
        .await
        .expect("config");
    let started = host
        .instances()
        .start(&StartRequest::new(config.id), "test")
        .await
        .expect("start");
    eventually("the start command to be recorded expired", WAIT, || async {
        (host
            .instances()
            .get_command(started.command_id)
            .await
            .ok()?
            .state
            == CommandState::Expired)
            .then_some(())
    })
    .await;
    let instance = host
        .instances()
        .get_instance(started.instance_id)
        .await
        .expect("instance");
    assert_eq!(instance.status, Status::Crashed, "never left `created`");
    let history = host
        .instances()
        .status_history(Entity::Instance(instance.id), None, 10)
        .await
        .expect("history");
    assert_eq!(history.last().map(|e| e.cause), Some(Cause::Undelivered));
    server.stop().await;
}

#[tokio::test]
async fn on_the_memory_bus() {
    let memory = MemoryBus::new();
    expire_a_start(Bus::new(Arc::new(memory.clone()), Arc::new(memory))).await;
}

#[tokio::test]
async fn on_rabbitmq() {
    let Some(broker) = manman_test_support::amqp::TestBroker::connect("dead_commands").await else {
        return;
    };
    let rabbit = RabbitBus::connect(
        &RabbitSettings::new(broker.url()).connection_name("manman-tests dead commands"),
    )
    .await
    .expect("connect");
    let topology = Topology::with_prefix(broker.prefix());
    let worker_queues =
        (1..=3).map(|id| topology.worker_commands_queue(manman_core::id::WorkerId(id)));
    broker.delete_on_drop(
        topology.exchanges().map(|(name, _)| name),
        [
            topology.dead_letters_queue(),
            topology.status_processor_queue(),
            topology.dead_commands_queue(),
        ]
        .into_iter()
        .chain(worker_queues),
    );
    let bus = Bus::with_topology(Arc::new(rabbit.clone()), Arc::new(rabbit.clone()), topology);
    expire_a_start(bus).await;
    rabbit.close().await;
    broker.cleanup().await.expect("cleanup");
}
