//! Recovery on a real RabbitMQ (`MANMAN_TEST_AMQP_URL`) that closes every client connection
//! mid-stream (`rabbitmqctl close_all_connections`, run as root). These tests close the other
//! tests' connections too, so they live in this file of their own and run one at a time.

use chrono::Utc;
use futures::StreamExt;
use manman_core::bus::Bus;
use manman_core::command::{Command, CommandEnvelope};
use manman_core::event::Event;
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{
    Consumer, ExchangeKind, Message, MessagePublisher, MessageSubscriber, QueueSpec,
};
use manman_core::signing::BusSecret;
use manman_core::status::{Cause, Entity, Status};
use manman_core::topology::Topology;
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// One broker-wide disruption at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const COMMANDS: usize = 10_000;
/// Publishes in flight at once.
const IN_FLIGHT: usize = 64;

async fn rabbit(broker: &TestBroker, service: &str) -> RabbitBus {
    let settings = RabbitSettings::new(broker.url())
        .connection_name(broker.name(service))
        .reconnect_max_delay(Duration::from_millis(500));
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

/// Closes every connection, or explains why it cannot (skip, or fail when services are
/// required).
async fn close_all(broker: &TestBroker) -> bool {
    match broker.close_all_connections("test").await {
        Ok(()) => true,
        Err(why) => {
            manman_test_support::skip(&format!("rabbitmqctl ({why})"), "PATH");
            false
        }
    }
}

fn command(i: usize) -> CommandEnvelope {
    CommandEnvelope::new(
        Command::Stdin {
            instance_id: InstanceId(1),
            line: format!("line {i}"),
        },
        "test",
        Utc::now(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commands_all_arrive_across_a_broker_closing_every_connection() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = TestBroker::connect("close-all").await.map(Arc::new) else {
        return;
    };
    let worker_id = WorkerId(1);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let host = rabbit(&broker, "host").await;
    let worker = rabbit(&broker, "worker").await;
    let host_bus = typed(&broker, &host);
    let worker_bus = typed(&broker, &worker);
    host_bus.declare().await.expect("declare");
    worker_bus.declare().await.expect("declare");
    let mut commands = worker_bus
        .consume_commands(worker_id, 200)
        .await
        .expect("consume");

    // The worker: handles each command once, by id; acks that fail across the drop are
    // delivered again and recognised.
    let worker_loop = tokio::spawn(async move {
        let mut handled = HashSet::new();
        let mut deliveries = 0_usize;
        while handled.len() < COMMANDS {
            let delivery = tokio::time::timeout(Duration::from_secs(60), commands.next())
                .await
                .expect("commands keep coming")
                .expect("the consumer does not end")
                .expect("no consumer error");
            deliveries += 1;
            let envelope: CommandEnvelope = delivery.message.decode().expect("a command");
            assert_eq!(envelope.id, delivery.message.id);
            handled.insert(envelope.id);
            let _ = delivery.ack().await;
        }
        (handled, deliveries)
    });

    let publish = |range: std::ops::Range<usize>| {
        let bus = host_bus.clone();
        let key = key.clone();
        async move {
            futures::stream::iter(range)
                .map(|i| {
                    let bus = bus.clone();
                    let key = key.clone();
                    async move {
                        let envelope = command(i);
                        bus.send_command(&key, &envelope)
                            .await
                            .unwrap_or_else(|e| panic!("command {i} was not published: {e}"));
                        envelope.id
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
        }
    };

    let mut sent = publish(0..3_000).await;
    // The broker closes every connection while publishing goes on.
    let closing = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move { close_all(&broker).await }
    });
    let mut next = 3_000;
    while !closing.is_finished() && next < COMMANDS - 1_000 {
        sent.extend(publish(next..next + 100).await);
        next += 100;
    }
    let closed = closing.await.expect("the close task");
    if !closed {
        worker_loop.abort();
        finish(&broker, &[&host, &worker]).await;
        return;
    }
    let after_close = next;
    // Publishing resumes by itself: the rest goes through the recovered connections.
    sent.extend(publish(next..COMMANDS).await);
    assert!(COMMANDS - after_close >= 1_000);
    assert_eq!(sent.len(), COMMANDS);

    let (handled, deliveries) = tokio::time::timeout(Duration::from_secs(90), worker_loop)
        .await
        .expect("every command arrives")
        .expect("the worker loop");
    let sent: HashSet<_> = sent.into_iter().collect();
    assert_eq!(handled, sent, "every command arrives, and nothing else");
    eprintln!(
        "{COMMANDS} commands: {deliveries} deliveries, {} redelivered duplicates absorbed by id; {} published after the close",
        deliveries - COMMANDS,
        COMMANDS - after_close
    );
    assert!(host.is_connected() && worker.is_connected());
    finish(&broker, &[&host, &worker]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_watcher_keeps_receiving_events_after_the_broker_closes_its_connection() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = TestBroker::connect("watcher").await else {
        return;
    };
    let host = rabbit(&broker, "host").await;
    let bus = typed(&broker, &host);
    bus.declare().await.expect("declare");
    let mut watcher = bus.watch_events().await.expect("watch");
    let key = BusSecret::generate().worker_key(WorkerId(1), 1);
    let event = |n: i64| {
        Event::Status(manman_core::event::StatusReport::new(
            Entity::Instance(InstanceId(n)),
            Status::Running,
            Cause::Ready,
            Utc::now(),
        ))
    };
    let first = bus
        .publish_event(&event(1), Utc::now(), &key)
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("ok");
    assert_eq!(got.message.id, first);
    got.ack().await.expect("ack");

    if !close_all(&broker).await {
        finish(&broker, &[&host]).await;
        return;
    }
    // The temporary queue went with the old connection; the watcher's channel declares and
    // binds a new one as it recovers. Publish until the watcher sees an event again.
    let mut published = Vec::new();
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            published.push(
                bus.publish_event(&event(2), Utc::now(), &key)
                    .await
                    .expect("publish"),
            );
            if let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_millis(200), watcher.next()).await
            {
                let id = delivery.message.id;
                let _ = delivery.ack().await;
                break id;
            }
        }
    })
    .await
    .expect("the watcher receives events again");
    assert!(published.contains(&seen));
    drop(watcher);
    finish(&broker, &[&host]).await;
}

/// The next delivery, within 10 s.
async fn receive(consumer: &mut Box<dyn Consumer>) -> manman_core::ports::Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the consumer is open")
        .expect("no receive error")
}

/// A durable queue of the test bound to an exchange of its own, holding `messages` messages,
/// and a consumer of it (prefetch 16).
async fn queue_of(
    broker: &TestBroker,
    bus: &RabbitBus,
    messages: usize,
) -> (String, Box<dyn Consumer>) {
    let exchange = broker.name("ex");
    bus.declare_exchange(&exchange, ExchangeKind::Direct)
        .await
        .expect("declare");
    let queue = bus
        .declare_queue(&QueueSpec::durable(broker.name("q")))
        .await
        .expect("declare");
    bus.bind_queue(&queue, &exchange, "k").await.expect("bind");
    for n in 0..messages {
        let message = Message::json("test", &n, Utc::now()).expect("encodes");
        bus.publish(&exchange, "k", message).await.expect("publish");
    }
    let consumer = bus.consume(&queue, 16).await.expect("consume");
    (queue, consumer)
}

/// Delivery tags start again from 1 on a recovered channel. Deliveries of before the recovery,
/// settled or dropped after it, must not touch those of after it that have the same tags: here
/// three are received, the broker closes the connection (they come back, tags 1 to 3 again),
/// the old three are dropped, and of the new three the first is held while the other two are
/// acked, then requeued. Only that one comes back to a new consumer: the two acked were
/// settled on the broker (their records were not removed by the old ones' drops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_from_before_a_recovery_never_settle_those_after_it() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = TestBroker::connect("tags-again").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (queue, mut consumer) = queue_of(&broker, &bus, 3).await;
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(receive(&mut consumer).await);
    }
    if !close_all(&broker).await {
        return;
    }
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(receive(&mut consumer).await);
    }
    drop(before);
    let held = after.remove(0);
    let held_id = held.message.id;
    let acks = after.into_iter().map(manman_core::ports::Delivery::ack);
    for acked in futures::future::join_all(acks).await {
        acked.expect("ack");
    }
    held.requeue()
        .await
        .expect("the held one is the consumer's to settle");
    let back = receive(&mut consumer).await;
    assert_eq!(back.message.id, held_id, "the requeued one comes back");
    drop(back);
    drop(consumer);
    let mut again = bus.consume(&queue, 16).await.expect("consume");
    let mut ids = Vec::new();
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(1_000), again.next()).await
    {
        ids.push(delivery.message.id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(
        ids,
        [held_id],
        "only the one never acked is left: the two acked after the recovery were settled"
    );
    drop(again);
    finish(&broker, &[&bus]).await;
}

/// An ack of a delivery from before a recovery, asked for together with acks of deliveries
/// after it, covers none of them: here five are received, two acked, the broker closes the
/// connection (the three others come back, tags 1 to 3), and an old one of tag 5 is acked
/// together with the three new ones. Its ack fails (its channel closed); the three new ones
/// are settled on the broker: none is left for a new consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_from_before_a_recovery_covers_no_delivery_after_it() {
    let _serial = SERIAL.lock().await;
    let Some(broker) = TestBroker::connect("old-ack").await else {
        return;
    };
    let bus = rabbit(&broker, "host").await;
    let (queue, mut consumer) = queue_of(&broker, &bus, 5).await;
    let mut before = Vec::new();
    for _ in 0..5 {
        before.push(receive(&mut consumer).await);
    }
    for delivery in before.drain(..2) {
        delivery.ack().await.expect("ack");
    }
    if !close_all(&broker).await {
        return;
    }
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(receive(&mut consumer).await);
    }
    let old = before.pop().expect("the old delivery of tag 5");
    let acks = after
        .into_iter()
        .map(manman_core::ports::Delivery::ack)
        .collect::<Vec<_>>();
    let (old_ack, new_acks) = tokio::join!(old.ack(), futures::future::join_all(acks));
    assert!(
        old_ack.is_err(),
        "the old delivery's ack says its channel closed"
    );
    for acked in new_acks {
        acked.expect("ack");
    }
    drop(before);
    drop(consumer);
    let mut again = bus.consume(&queue, 16).await.expect("consume");
    let left = tokio::time::timeout(Duration::from_millis(1_000), again.next()).await;
    assert!(
        left.is_err(),
        "the three acked after the recovery were settled: {left:?}"
    );
    drop(again);
    finish(&broker, &[&bus]).await;
}
