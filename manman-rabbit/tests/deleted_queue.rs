//! Faults of the topology on a real RabbitMQ (`MANMAN_TEST_AMQP_URL`), a prefix per test: a
//! queue deleted under its consumer comes back bound, and the dead letters are bounded.

use chrono::Utc;
use futures::StreamExt;
use manman_core::bus::Bus;
use manman_core::event::{Event, StatusReport};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{
    Consumer, Delivery, ExchangeKind, Message, MessagePublisher, MessageSubscriber, QueueSpec,
};
use manman_core::signing::BusSecret;
use manman_core::status::{Cause, Entity, Status};
use manman_core::topology::{DEAD_LETTERS_MAX_LENGTH, Topology};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::sync::Arc;
use std::time::Duration;

const RECEIVE: Duration = Duration::from_secs(10);

async fn rabbit(broker: &TestBroker, service: &str) -> RabbitBus {
    let settings = RabbitSettings::new(broker.url()).connection_name(broker.name(service));
    RabbitBus::connect(&settings).await.expect("connect")
}

fn typed(broker: &TestBroker, rabbit: &RabbitBus) -> Bus {
    Bus::with_topology(
        Arc::new(rabbit.clone()),
        Arc::new(rabbit.clone()),
        Topology::with_prefix(broker.prefix()),
    )
}

async fn finish(broker: &TestBroker, buses: &[&RabbitBus]) {
    for bus in buses {
        let declared = bus.declared();
        broker.delete_on_drop(
            declared.exchanges.into_iter().map(|(name, _)| name),
            declared.queues.into_iter().map(|q| q.name),
        );
        bus.close().await;
    }
}

async fn receive(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(RECEIVE, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the consumer is open")
        .expect("no receive error")
}

async fn ends(consumer: &mut Box<dyn Consumer>) {
    let next = tokio::time::timeout(RECEIVE, consumer.next())
        .await
        .expect("the consumer of a deleted queue ends in time");
    assert!(next.is_none(), "the consumer ends: {next:?}");
}

fn report(instance: i64) -> Event {
    Event::Status(StatusReport::new(
        Entity::Instance(InstanceId(instance)),
        Status::Running,
        Cause::Ready,
        Utc::now(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_consumed_again_is_declared_again_with_its_bindings() {
    let Some(broker) = TestBroker::connect("deleted-rebound").await else {
        return;
    };
    let bus = rabbit(&broker, "svc").await;
    let exchange = broker.name("ex");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("exchange");
    let queue = bus
        .declare_queue(&QueueSpec::durable(broker.name("q")))
        .await
        .expect("queue");
    bus.bind_queue(&queue, &exchange, "k").await.expect("bind");
    let mut consumer = bus.consume(&queue, 4).await.expect("consume");

    broker.delete_queue(&queue).await;
    ends(&mut consumer).await;
    drop(consumer);

    // Consuming it again (without declaring it) brings it back as this bus declared it:
    // bound, so a publish is routed to it rather than refused as unroutable.
    let mut consumer = bus.consume(&queue, 4).await.expect("consume again");
    let message = Message::json("test", &"after", Utc::now()).expect("encodes");
    bus.publish(&exchange, "k", message.clone())
        .await
        .expect("routed: the queue was bound again");
    let delivery = receive(&mut consumer).await;
    assert_eq!(delivery.message.id, message.id);
    delivery.ack().await.expect("ack");
    drop(consumer);
    finish(&broker, &[&bus]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_queue_deleted_under_the_status_processor_comes_back_bound_to_the_events() {
    let Some(broker) = TestBroker::connect("deleted-status").await else {
        return;
    };
    let host = rabbit(&broker, "host").await;
    let worker = rabbit(&broker, "worker").await;
    let host_bus = typed(&broker, &host);
    host_bus.declare().await.expect("declare");
    let worker_bus = typed(&broker, &worker);
    let mut events = host_bus.consume_status_events(16).await.expect("consume");

    broker
        .delete_queue(&host_bus.topology().status_processor_queue())
        .await;
    ends(&mut events).await;
    drop(events);

    let mut events = host_bus
        .consume_status_events(16)
        .await
        .expect("consume again");
    let id = worker_bus
        .publish_event(
            &report(1),
            Utc::now(),
            &BusSecret::generate().worker_key(WorkerId(1), 1),
        )
        .await
        .expect("a status is routed to the status queue again");
    let delivery = receive(&mut events).await;
    assert_eq!(delivery.message.id, id);
    delivery.ack().await.expect("ack");
    drop(events);
    finish(&broker, &[&host, &worker]).await;
}

/// Publishes `count` small messages to `exchange`, 64 at a time.
async fn flood(bus: &RabbitBus, exchange: &str, count: u32) -> Vec<uuid::Uuid> {
    let messages: Vec<Message> = (0..count)
        .map(|i| Message::json("test", &i, Utc::now()).expect("encodes"))
        .collect();
    let ids = messages.iter().map(|m| m.id).collect();
    futures::stream::iter(messages)
        .for_each_concurrent(64, |message| async move {
            bus.publish(exchange, "", message).await.expect("publish");
        })
        .await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letters_hold_at_most_their_limit_dropping_the_oldest() {
    let Some(broker) = TestBroker::connect("dead-letters-limit").await else {
        return;
    };
    let host = rabbit(&broker, "host").await;
    let bus = typed(&broker, &host);
    bus.declare().await.expect("declare");
    // The host's copy too: declared as the dead-letter watcher does.
    drop(bus.consume_dead_commands(1).await.expect("dead commands"));
    let t = bus.topology().clone();

    // Published in order, one at a time, for the first few: those must be the ones dropped.
    let mut oldest = Vec::new();
    for i in 0..5 {
        let message = Message::json("test", &format!("oldest {i}"), Utc::now()).expect("encodes");
        oldest.push(message.id);
        host.publish(&t.dead_exchange(), "", message)
            .await
            .expect("publish");
    }
    flood(&host, &t.dead_exchange(), DEAD_LETTERS_MAX_LENGTH).await;

    for queue in [t.dead_letters_queue(), t.dead_commands_queue()] {
        assert_eq!(
            broker.queue_depth(&queue).await,
            Some(DEAD_LETTERS_MAX_LENGTH),
            "{queue} holds at most its limit"
        );
    }
    let mut dead = bus.consume_dead_letters(1).await.expect("consume");
    let first = receive(&mut dead).await;
    assert!(
        !oldest.contains(&first.message.id),
        "the oldest dead letters were dropped, not the newest"
    );
    drop(first);
    drop(dead);
    finish(&broker, &[&host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_declared_without_a_limit_by_an_older_version_are_used_as_they_are() {
    let Some(broker) = TestBroker::connect("dead-letters-old").await else {
        return;
    };
    let host = rabbit(&broker, "host").await;
    let t = Topology::with_prefix(broker.prefix());
    // What an older version declared: the same queues, without the length limit.
    for queue in [t.dead_letters_queue(), t.dead_commands_queue()] {
        host.declare_queue(&QueueSpec::durable(queue))
            .await
            .expect("the old declaration");
    }
    let bus = typed(&broker, &host);
    bus.declare()
        .await
        .expect("the topology is declared all the same (with a warning)");
    drop(
        bus.consume_dead_commands(1)
            .await
            .expect("the host's copy is consumed all the same"),
    );
    let message = Message::json("test", &"dead", Utc::now()).expect("encodes");
    host.publish(&t.dead_exchange(), "", message.clone())
        .await
        .expect("routed: both queues are bound");
    let mut dead = bus.consume_dead_letters(1).await.expect("consume");
    assert_eq!(receive(&mut dead).await.message.id, message.id);
    drop(dead);
    finish(&broker, &[&host]).await;
}
