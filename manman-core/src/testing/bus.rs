//! The message-port conformance suite.

use crate::ports::{
    BusError, Consumer, Delivery, ExchangeKind, Message, MessagePublisher, MessageSubscriber,
    QueueSpec,
};
use crate::testing::unique;
use chrono::{SubsecRound, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The two ports of one adapter under test.
#[derive(Debug, Clone)]
pub struct BusUnderTest {
    /// The publisher.
    pub publisher: Arc<dyn MessagePublisher>,
    /// The subscriber.
    pub subscriber: Arc<dyn MessageSubscriber>,
}

/// How long a case waits for a message it expects.
const RECEIVE: Duration = Duration::from_secs(5);
/// How long a case waits to be sure a message does not come.
const QUIET: Duration = Duration::from_millis(300);

fn message(text: &str) -> Message {
    // AMQP timestamps have second precision.
    Message::json("test", &text, Utc::now().trunc_subsecs(0)).expect("encodes")
}

async fn receive(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(RECEIVE, consumer.next())
        .await
        .expect("a delivery within 5 s")
        .expect("the consumer is open")
        .expect("no receive error")
}

async fn nothing_more(consumer: &mut Box<dyn Consumer>) {
    if let Ok(Some(Ok(d))) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!(
            "unexpected delivery of message {}: {:?}",
            d.message.id,
            String::from_utf8_lossy(&d.message.body)
        );
    }
}

fn text(delivery: &Delivery) -> String {
    delivery.message.decode().expect("a JSON string")
}

impl BusUnderTest {
    async fn exchange(&self, kind: ExchangeKind) -> String {
        let name = unique("conformance.ex");
        self.publisher
            .declare_exchange(&name, kind)
            .await
            .expect("declare exchange");
        name
    }

    async fn queue(&self, spec: QueueSpec) -> String {
        self.subscriber
            .declare_queue(&spec)
            .await
            .expect("declare queue")
    }

    async fn bound_queue(&self, exchange: &str, key: &str) -> String {
        let queue = self.queue(QueueSpec::temporary()).await;
        self.subscriber
            .bind_queue(&queue, exchange, key)
            .await
            .expect("bind");
        queue
    }

    async fn consumer(&self, queue: &str, prefetch: u16) -> Box<dyn Consumer> {
        self.subscriber
            .consume(queue, prefetch)
            .await
            .expect("consume")
    }
}

/// A message keeps its id, kind, timestamp, correlation id and body.
pub async fn properties_round_trip(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let q = bus.bound_queue(&ex, "k").await;
    let mut c = bus.consumer(&q, 10).await;
    let mut sent = message("hello");
    sent.correlation_id = Some("req-1".to_owned());
    bus.publisher
        .publish(&ex, "k", sent.clone())
        .await
        .expect("publish");
    let got = receive(&mut c).await;
    assert_eq!(got.message.id, sent.id);
    assert_eq!(got.message.kind, "test");
    assert_eq!(got.message.timestamp, sent.timestamp);
    assert_eq!(got.message.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(got.message.body, sent.body);
    assert_eq!(got.delivery_count, 1);
    assert!(!got.redelivered());
    got.ack().await.expect("ack");
}

/// A direct exchange routes by exact key only.
pub async fn direct_routes_by_key(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let a = bus.bound_queue(&ex, "worker.1").await;
    let b = bus.bound_queue(&ex, "worker.2").await;
    let (mut ca, mut cb) = (bus.consumer(&a, 10).await, bus.consumer(&b, 10).await);
    bus.publisher
        .publish(&ex, "worker.2", message("for 2"))
        .await
        .expect("publish");
    let got = receive(&mut cb).await;
    assert_eq!(text(&got), "for 2");
    got.ack().await.expect("ack");
    nothing_more(&mut ca).await;
}

/// A fanout exchange reaches every bound queue, whatever the key.
pub async fn fanout_reaches_every_queue(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Fanout).await;
    let a = bus.bound_queue(&ex, "").await;
    let b = bus.bound_queue(&ex, "").await;
    let (mut ca, mut cb) = (bus.consumer(&a, 10).await, bus.consumer(&b, 10).await);
    bus.publisher
        .publish(&ex, "ignored", message("all"))
        .await
        .expect("publish");
    for c in [&mut ca, &mut cb] {
        let got = receive(c).await;
        assert_eq!(text(&got), "all");
        got.ack().await.expect("ack");
    }
}

/// A topic exchange matches `*` (one word) and `#` (any words).
pub async fn topic_wildcards_match(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Topic).await;
    let star = bus.bound_queue(&ex, "instance.*").await;
    let one = bus.bound_queue(&ex, "instance.7").await;
    let (mut cs, mut co) = (bus.consumer(&star, 10).await, bus.consumer(&one, 10).await);
    bus.publisher
        .publish(&ex, "instance.8", message("eight"))
        .await
        .expect("publish");
    bus.publisher
        .publish(&ex, "instance.7", message("seven"))
        .await
        .expect("publish");
    let first = receive(&mut cs).await;
    assert_eq!(text(&first), "eight");
    first.ack().await.expect("ack");
    let second = receive(&mut cs).await;
    assert_eq!(text(&second), "seven");
    second.ack().await.expect("ack");
    let only = receive(&mut co).await;
    assert_eq!(text(&only), "seven");
    only.ack().await.expect("ack");
    nothing_more(&mut co).await;
}

/// A queue bound by several keys that match one message gets one copy of it.
pub async fn one_copy_per_queue(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Topic).await;
    let a = bus.bound_queue(&ex, "instance.*").await;
    let b = bus.bound_queue(&ex, "instance.*").await;
    bus.subscriber
        .bind_queue(&a, &ex, "instance.7")
        .await
        .expect("bind");
    bus.subscriber.bind_queue(&a, &ex, "#").await.expect("bind");
    let (mut ca, mut cb) = (bus.consumer(&a, 10).await, bus.consumer(&b, 10).await);
    bus.publisher
        .publish(&ex, "instance.7", message("once"))
        .await
        .expect("publish");
    for c in [&mut ca, &mut cb] {
        receive(c).await.ack().await.expect("ack");
        nothing_more(c).await;
    }
}

/// A message that reaches no queue is an error, not a silent loss.
pub async fn unroutable_is_an_error(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let m = message("nobody");
    let id = m.id;
    match bus.publisher.publish(&ex, "no.such.key", m).await {
        Err(BusError::Unroutable { message_id, .. }) => assert_eq!(message_id, id),
        other => panic!("expected Unroutable, got {other:?}"),
    }
}

/// Requeued messages come back marked redelivered; acked ones never do.
pub async fn requeue_redelivers(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let q = bus.bound_queue(&ex, "k").await;
    let mut c = bus.consumer(&q, 10).await;
    bus.publisher
        .publish(&ex, "k", message("again"))
        .await
        .expect("publish");
    let first = receive(&mut c).await;
    let id = first.message.id;
    first.requeue().await.expect("requeue");
    let second = receive(&mut c).await;
    assert_eq!(second.message.id, id);
    assert!(second.redelivered());
    assert!(second.delivery_count >= 2);
    second.ack().await.expect("ack");
    nothing_more(&mut c).await;
}

/// Dead-lettered and expired messages go to the queue's dead-letter exchange.
pub async fn dead_letters_and_expiry(bus: &BusUnderTest) {
    let dlx = bus.exchange(ExchangeKind::Fanout).await;
    let dead = bus.bound_queue(&dlx, "").await;
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let work = bus
        .queue(QueueSpec::durable(unique("conformance.q")).dead_letter_to(&dlx))
        .await;
    bus.subscriber
        .bind_queue(&work, &ex, "k")
        .await
        .expect("bind");
    let mut dead_consumer = bus.consumer(&dead, 10).await;

    let poison = message("poison");
    bus.publisher
        .publish(&ex, "k", poison.clone())
        .await
        .expect("publish");
    {
        let mut c = bus.consumer(&work, 10).await;
        let got = receive(&mut c).await;
        got.dead_letter().await.expect("dead-letter");
        let dl = receive(&mut dead_consumer).await;
        assert_eq!(dl.message.id, poison.id);
        dl.ack().await.expect("ack");
    }

    let mut expiring = message("expires");
    expiring.expires_at = Some(Utc::now() + chrono::Duration::milliseconds(200));
    bus.publisher
        .publish(&ex, "k", expiring.clone())
        .await
        .expect("publish");
    let dl = receive(&mut dead_consumer).await;
    assert_eq!(
        dl.message.id, expiring.id,
        "the expired message is dead-lettered without a consumer"
    );
    dl.ack().await.expect("ack");
}

/// At most `prefetch` deliveries are unsettled at once.
pub async fn prefetch_limits_unsettled(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let q = bus.bound_queue(&ex, "k").await;
    for i in 0..3 {
        bus.publisher
            .publish(&ex, "k", message(&format!("m{i}")))
            .await
            .expect("publish");
    }
    let mut c = bus.consumer(&q, 2).await;
    let a = receive(&mut c).await;
    let b = receive(&mut c).await;
    nothing_more(&mut c).await;
    a.ack().await.expect("ack");
    let third = receive(&mut c).await;
    assert_eq!(text(&third), "m2");
    b.ack().await.expect("ack");
    third.ack().await.expect("ack");
}

/// A queue with a length limit holds at most that many ready messages: one more makes it drop
/// its oldest, and the publisher is neither refused nor held up (`x-overflow: drop-head`).
/// Every temporary queue has such a limit by default.
pub async fn a_full_queue_drops_its_oldest_messages(bus: &BusUnderTest) {
    assert_eq!(
        QueueSpec::temporary().max_length,
        Some(crate::ports::bus::TEMPORARY_QUEUE_MAX_LENGTH),
        "a live watcher's queue is bounded"
    );
    let ex = bus.exchange(ExchangeKind::Fanout).await;
    let q = bus.queue(QueueSpec::temporary().with_max_length(3)).await;
    bus.subscriber.bind_queue(&q, &ex, "").await.expect("bind");
    for i in 0..5 {
        tokio::time::timeout(
            RECEIVE,
            bus.publisher.publish(&ex, "", message(&format!("m{i}"))),
        )
        .await
        .expect("a publish to a full queue is not held up")
        .expect("a publish to a full queue is accepted");
    }
    let mut c = bus.consumer(&q, 10).await;
    for expected in ["m2", "m3", "m4"] {
        let got = receive(&mut c).await;
        assert_eq!(text(&got), expected, "the oldest two were dropped");
        got.ack().await.expect("ack");
    }
    nothing_more(&mut c).await;
}

/// Declaring the same exchange, queue and binding twice is harmless; temporary queues get
/// distinct names.
pub async fn declarations_are_idempotent(bus: &BusUnderTest) {
    let ex = bus.exchange(ExchangeKind::Topic).await;
    bus.publisher
        .declare_exchange(&ex, ExchangeKind::Topic)
        .await
        .expect("redeclare exchange");
    let name = unique("conformance.q");
    let spec = QueueSpec::durable(&name);
    assert_eq!(bus.queue(spec.clone()).await, name);
    assert_eq!(bus.queue(spec).await, name);
    bus.subscriber
        .bind_queue(&name, &ex, "a.*")
        .await
        .expect("bind");
    bus.subscriber
        .bind_queue(&name, &ex, "a.*")
        .await
        .expect("bind again");
    let mut c = bus.consumer(&name, 10).await;
    bus.publisher
        .publish(&ex, "a.b", message("once"))
        .await
        .expect("publish");
    receive(&mut c).await.ack().await.expect("ack");
    nothing_more(&mut c).await;
    let t1 = bus.queue(QueueSpec::temporary()).await;
    let t2 = bus.queue(QueueSpec::temporary()).await;
    assert!(
        !t1.is_empty() && t1 != t2,
        "temporary queues get their own names"
    );
}

/// A queue deleted under its consumer (by `delete`: an operator or another client) ends that
/// consumer (`next` answers `None`, it does not hang); declared and bound again, the queue
/// receives what is published from then on, and a new consumer gets it. Not in [`run_all`]:
/// deleting a queue is not a port operation, so each adapter's test passes its own `delete`.
pub async fn a_deleted_queue_ends_its_consumer_and_can_be_declared_and_bound_again<D, F>(
    bus: &BusUnderTest,
    delete: D,
) where
    D: Fn(String) -> F,
    F: std::future::Future<Output = ()>,
{
    let ex = bus.exchange(ExchangeKind::Direct).await;
    let name = unique("conformance.deleted");
    let declare_and_bind = || async {
        let q = bus.queue(QueueSpec::durable(&name)).await;
        bus.subscriber.bind_queue(&q, &ex, "k").await.expect("bind");
        q
    };
    let q = declare_and_bind().await;
    let mut c = bus.consumer(&q, 10).await;
    bus.publisher
        .publish(&ex, "k", message("before"))
        .await
        .expect("publish");
    let first = receive(&mut c).await;
    assert_eq!(text(&first), "before");
    first.ack().await.expect("ack");

    delete(q.clone()).await;
    let ended = tokio::time::timeout(RECEIVE, c.next())
        .await
        .expect("the consumer of a deleted queue ends instead of waiting for ever");
    assert!(
        ended.is_none(),
        "the consumer of a deleted queue ends: {ended:?}"
    );
    drop(c);

    let q = declare_and_bind().await;
    let mut c = bus.consumer(&q, 10).await;
    bus.publisher
        .publish(&ex, "k", message("after"))
        .await
        .expect("the queue is bound again: the publish is routed");
    let got = receive(&mut c).await;
    assert_eq!(text(&got), "after");
    got.ack().await.expect("ack");
    nothing_more(&mut c).await;
}

/// Runs every case.
pub async fn run_all(bus: &BusUnderTest) {
    properties_round_trip(bus).await;
    direct_routes_by_key(bus).await;
    fanout_reaches_every_queue(bus).await;
    topic_wildcards_match(bus).await;
    one_copy_per_queue(bus).await;
    unroutable_is_an_error(bus).await;
    requeue_redelivers(bus).await;
    dead_letters_and_expiry(bus).await;
    prefetch_limits_unsettled(bus).await;
    a_full_queue_drops_its_oldest_messages(bus).await;
    declarations_are_idempotent(bus).await;
}
