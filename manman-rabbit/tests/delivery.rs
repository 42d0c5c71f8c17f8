//! Delivery guarantees of `manman-rabbit` on a real RabbitMQ (`MANMAN_TEST_AMQP_URL`), through
//! the typed `Bus` of `manman-core` with a prefix per test: durable command queues, expiry into
//! the dead letters, poison messages, and the broker's refusals.

use chrono::{Duration as Span, Utc};
use manman_core::bus::Bus;
use manman_core::command::{Command, CommandEnvelope};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{BusError, Consumer, Delivery, Message, MessagePublisher, QueueSpec};
use manman_core::ports::{ExchangeKind, MessageSubscriber};
use manman_core::signing::BusSecret;
use manman_core::topology::{KIND_COMMAND, Topology, worker_routing_key};
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

/// Registers what `buses` declared for deletion, then closes them.
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

/// A direct exchange of the test and a durable queue bound to it with key `k`.
async fn bound_queue(broker: &TestBroker, bus: &RabbitBus) -> (String, String) {
    let exchange = broker.name("ex");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("declare");
    let queue = bus
        .declare_queue(&QueueSpec::durable(broker.name("q")))
        .await
        .expect("declare");
    bus.bind_queue(&queue, &exchange, "k").await.expect("bind");
    (exchange, queue)
}

fn stop(instance: i64) -> CommandEnvelope {
    CommandEnvelope::new(
        Command::Stop {
            instance_id: InstanceId(instance),
        },
        "test",
        Utc::now(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_while_the_worker_is_down_is_delivered_when_it_comes_back() {
    let Some(broker) = TestBroker::connect("worker-down").await else {
        return;
    };
    let worker_id = WorkerId(7);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let host = rabbit(&broker, "host").await;
    let host_bus = typed(&broker, &host);
    host_bus.declare().await.expect("declare");

    // The worker runs once (its queue exists), then goes away.
    let first_run = rabbit(&broker, "worker").await;
    let consumer = typed(&broker, &first_run)
        .consume_commands(worker_id, 10)
        .await
        .expect("consume");
    drop(consumer);
    finish(&broker, &[&first_run]).await;

    let command = stop(1);
    host_bus
        .send_command(&key, &command)
        .await
        .expect("the durable queue takes it while nobody consumes");
    assert_eq!(
        broker
            .queue_depth(&broker.name(&format!("worker.{}.commands", worker_id.get())))
            .await,
        Some(1)
    );

    let second_run = rabbit(&broker, "worker").await;
    let mut commands = typed(&broker, &second_run)
        .consume_commands(worker_id, 10)
        .await
        .expect("consume");
    let delivery = receive(&mut commands).await;
    assert_eq!(delivery.message.id, command.id);
    assert_eq!(delivery.message.kind, KIND_COMMAND);
    let got: CommandEnvelope = delivery.message.decode().expect("a command");
    assert_eq!(got, command);
    delivery.ack().await.expect("ack");
    drop(commands);
    finish(&broker, &[&host, &second_run]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_command_ends_in_the_dead_letters_with_its_id() {
    let Some(broker) = TestBroker::connect("expiry").await else {
        return;
    };
    let worker_id = WorkerId(3);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let host = rabbit(&broker, "host").await;
    let bus = typed(&broker, &host);
    bus.declare().await.expect("declare");
    bus.declare_worker_queue(worker_id).await.expect("queue");
    let mut dead = bus.consume_dead_letters(10).await.expect("consume");

    // Already past when sent, and one that expires in its queue with nobody consuming.
    let mut late = stop(1);
    late.expires_at = Utc::now() - Span::seconds(1);
    let mut short = stop(2);
    short.expires_at = Utc::now() + Span::milliseconds(300);
    bus.send_command(&key, &late).await.expect("send");
    bus.send_command(&key, &short).await.expect("send");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let dead_letter = receive(&mut dead).await;
        assert_eq!(dead_letter.message.kind, KIND_COMMAND);
        assert_eq!(
            dead_letter.message.expires_at, None,
            "a dead letter does not expire again"
        );
        let envelope: CommandEnvelope = dead_letter.message.decode().expect("the command");
        assert_eq!(envelope.id, dead_letter.message.id);
        ids.push(dead_letter.message.id);
        dead_letter.ack().await.expect("ack");
    }
    ids.sort();
    let mut expected = vec![late.id, short.id];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        broker
            .queue_depth(&bus.topology().worker_commands_queue(worker_id))
            .await,
        Some(0)
    );
    drop(dead);
    finish(&broker, &[&host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_next_good_one_is_handled() {
    let Some(broker) = TestBroker::connect("poison").await else {
        return;
    };
    let worker_id = WorkerId(5);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let host = rabbit(&broker, "host").await;
    let worker = rabbit(&broker, "worker").await;
    let host_bus = typed(&broker, &host);
    let worker_bus = typed(&broker, &worker);
    host_bus.declare().await.expect("declare");
    let mut commands = worker_bus
        .consume_commands(worker_id, 10)
        .await
        .expect("consume");
    let mut dead = host_bus.consume_dead_letters(10).await.expect("consume");

    // Not JSON for a command, and with no timestamp nor a UUID for an id.
    let mut poison = Message::json(KIND_COMMAND, &"not a command", Utc::now()).expect("encodes");
    poison.body = b"{ this is not json".to_vec();
    host.publish(
        &host_bus.topology().commands_exchange(),
        &worker_routing_key(worker_id),
        poison.clone(),
    )
    .await
    .expect("publish");
    let good = stop(9);
    host_bus.send_command(&key, &good).await.expect("send");

    // The worker's loop: what does not parse is dead-lettered, the rest handled.
    let mut handled = Vec::new();
    while handled.is_empty() {
        let delivery = receive(&mut commands).await;
        match delivery.message.decode::<CommandEnvelope>() {
            Ok(envelope) => {
                handled.push(envelope.id);
                delivery.ack().await.expect("ack");
            }
            Err(BusError::Malformed { message_id, .. }) => {
                assert_eq!(message_id, poison.id);
                delivery.dead_letter().await.expect("dead-letter");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(handled, vec![good.id]);
    let dead_letter = receive(&mut dead).await;
    assert_eq!(dead_letter.message.id, poison.id);
    assert_eq!(dead_letter.message.body, poison.body);
    dead_letter.ack().await.expect("ack");
    drop((commands, dead));
    finish(&broker, &[&host, &worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_errors_that_name_their_object_and_the_bus_goes_on() {
    let Some(broker) = TestBroker::connect("refusals").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let exchange = broker.name("ex");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("declare");

    // A different kind for an existing exchange.
    match bus.declare_exchange(&exchange, ExchangeKind::Fanout).await {
        Err(BusError::Conflict { what, .. }) => assert!(what.contains(&exchange), "{what}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Publishing to an exchange nobody declared.
    let missing = broker.name("missing");
    let message = Message::json("test", &"x", Utc::now()).expect("encodes");
    match bus.publish(&missing, "k", message).await {
        Err(BusError::NotFound { what }) => assert!(what.contains(&missing), "{what}"),
        other => panic!("expected not found, got {other:?}"),
    }
    // Binding to it, and consuming a queue that does not exist.
    let queue = bus
        .declare_queue(&QueueSpec::durable(broker.name("q")))
        .await
        .expect("declare");
    match bus.bind_queue(&queue, &missing, "k").await {
        Err(BusError::NotFound { what }) => assert!(what.contains(&missing), "{what}"),
        other => panic!("expected not found, got {other:?}"),
    }
    match bus.consume(&broker.name("nope"), 1).await {
        Err(BusError::NotFound { what }) => assert!(what.contains("nope"), "{what}"),
        other => panic!("expected not found, got {other:?}"),
    }

    // Every refusal closed a channel; the bus still works.
    bus.bind_queue(&queue, &exchange, "k").await.expect("bind");
    let mut consumer = bus.consume(&queue, 1).await.expect("consume");
    let message = Message::json("test", &"after", Utc::now()).expect("encodes");
    bus.publish(&exchange, "k", message.clone())
        .await
        .expect("publish");
    let delivery = receive(&mut consumer).await;
    assert_eq!(delivery.message.id, message.id);
    delivery.ack().await.expect("ack");
    drop(consumer);
    finish(&broker, &[&bus]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_dropped_unsettled_is_delivered_again() {
    let Some(broker) = TestBroker::connect("unsettled").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (exchange, queue) = bound_queue(&broker, &bus).await;
    let mut consumer = bus.consume(&queue, 1).await.expect("consume");
    let message = Message::json("test", &"again", Utc::now()).expect("encodes");
    bus.publish(&exchange, "k", message.clone())
        .await
        .expect("publish");
    let first = receive(&mut consumer).await;
    assert_eq!(first.delivery_count, 1);
    drop(first);
    let second = receive(&mut consumer).await;
    assert_eq!(second.message.id, message.id);
    assert!(second.redelivered());
    second.ack().await.expect("ack");
    drop(consumer);
    finish(&broker, &[&bus]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_requeue_counts_one_more_delivery_so_a_retry_bound_ends() {
    let Some(broker) = TestBroker::connect("retry-bound").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (exchange, queue) = bound_queue(&broker, &bus).await;
    let mut consumer = bus.consume(&queue, 1).await.expect("consume");
    let message = Message::json("test", &"retry me", Utc::now()).expect("encodes");
    bus.publish(&exchange, "k", message.clone())
        .await
        .expect("publish");
    // A handler that gives up after five deliveries, as the status processor does.
    for expected in 1..=5 {
        let delivery = receive(&mut consumer).await;
        assert_eq!(delivery.message.id, message.id);
        assert_eq!(delivery.delivery_count, expected);
        if expected < 5 {
            delivery.requeue().await.expect("requeue");
        } else {
            delivery.ack().await.expect("ack");
        }
    }
    drop(consumer);
    finish(&broker, &[&bus]).await;
}

/// Acks given together are sent together, but never over a delivery still held: with the
/// tenth of fifty held, the other 49 acked at once, and the fortieth requeued meanwhile, the
/// channel stays open (a `multiple` ack over either would make its later settle an unknown
/// delivery tag, which closes the channel), the 48 are gone, and the two come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_together_settle_only_what_they_ack() {
    let Some(broker) = TestBroker::connect("acks-together").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (exchange, queue) = bound_queue(&broker, &bus).await;
    let mut sent = Vec::new();
    for n in 0..50 {
        let message = Message::json("test", &n, Utc::now()).expect("encodes");
        sent.push(message.id);
        bus.publish(&exchange, "k", message).await.expect("publish");
    }
    let mut consumer = bus.consume(&queue, 64).await.expect("consume");
    let mut deliveries = Vec::new();
    for _ in 0..50 {
        deliveries.push(receive(&mut consumer).await);
    }
    let held = deliveries.remove(9);
    let requeued = deliveries.remove(38);
    let back = [held.message.id, requeued.message.id];
    let acks = deliveries.into_iter().map(Delivery::ack);
    let (acked, requeue) = tokio::join!(futures::future::join_all(acks), requeued.requeue());
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    requeue.expect("the requeue finds its delivery");
    held.requeue()
        .await
        .expect("the held one is still the consumer's to settle");
    let mut again = Vec::new();
    for _ in 0..2 {
        let delivery = receive(&mut consumer).await;
        again.push(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    again.sort();
    let mut expected = back.to_vec();
    expected.sort();
    assert_eq!(again, expected, "only the two not acked come back");
    let more = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(more.is_err(), "the 48 acked are gone: {more:?}");
    drop(consumer);
    finish(&broker, &[&bus]).await;
}

/// Acks from many tasks at once, as the worker's settle tasks give them, with some deliveries
/// dropped unsettled among them: whatever the interleaving (one ack planned while another's
/// frame, or a dropped one's requeue, is being written), every delivery is settled exactly
/// once — the channel is never closed for an unknown delivery tag, so no acked one comes back,
/// each dropped one comes back once, and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_from_many_tasks_settle_each_delivery_once() {
    const MESSAGES: usize = 3_000;
    let Some(broker) = TestBroker::connect("acks-racing").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (exchange, queue) = bound_queue(&broker, &bus).await;
    for n in 0..MESSAGES {
        let message = Message::json("test", &n, Utc::now()).expect("encodes");
        bus.publish(&exchange, "k", message).await.expect("publish");
    }
    let mut consumer = bus.consume(&queue, 256).await.expect("consume");
    let mut acked = std::collections::HashSet::new();
    let mut dropped = std::collections::HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut received = 0;
    while acked.len() < MESSAGES {
        let delivery = receive(&mut consumer).await;
        let id = delivery.message.id;
        received += 1;
        assert!(
            !acked.contains(&id),
            "{id} came again after its ack: the channel was closed under an ack"
        );
        if received % 7 == 0 && dropped.insert(id) {
            drop(delivery);
            continue;
        }
        acked.insert(id);
        let wait = received % 3;
        tasks.spawn(async move {
            for _ in 0..wait {
                tokio::task::yield_now().await;
            }
            delivery.ack().await
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome.expect("task").expect("ack");
    }
    assert_eq!(
        received,
        MESSAGES + dropped.len(),
        "each dropped delivery came back once, and no other"
    );
    let more = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(more.is_err(), "every delivery was acked once: {more:?}");
    drop(consumer);
    finish(&broker, &[&bus]).await;
}
