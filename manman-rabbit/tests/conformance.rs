//! The bus conformance suite of `manman-core`, against a real RabbitMQ
//! (`MANMAN_TEST_AMQP_URL`). Each case runs on a connection of its own and deletes what it
//! declared.

use manman_core::testing::bus::{self as suite, BusUnderTest};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::sync::Arc;

async fn run<F, Fut>(label: &str, case: F)
where
    F: FnOnce(BusUnderTest) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(broker) = TestBroker::connect(label).await else {
        return;
    };
    let settings = RabbitSettings::new(broker.url()).connection_name(broker.name(label));
    let bus = RabbitBus::connect(&settings).await.expect("connect");
    case(BusUnderTest {
        publisher: Arc::new(bus.clone()),
        subscriber: Arc::new(bus.clone()),
    })
    .await;
    let declared = bus.declared();
    broker.delete_on_drop(
        declared.exchanges.into_iter().map(|(name, _)| name),
        declared.queues.into_iter().map(|q| q.name),
    );
    bus.close().await;
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                run(stringify!($case), |bus| async move { suite::$case(&bus).await }).await;
            }
        )*
    };
}

conformance!(
    properties_round_trip,
    direct_routes_by_key,
    fanout_reaches_every_queue,
    topic_wildcards_match,
    one_copy_per_queue,
    unroutable_is_an_error,
    requeue_redelivers,
    dead_letters_and_expiry,
    prefetch_limits_unsettled,
    a_full_queue_drops_its_oldest_messages,
    declarations_are_idempotent,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_ends_its_consumer_and_can_be_declared_and_bound_again() {
    let Some(broker) = TestBroker::connect("deleted-queue").await else {
        return;
    };
    let settings = RabbitSettings::new(broker.url()).connection_name(broker.name("deleted"));
    let bus = RabbitBus::connect(&settings).await.expect("connect");
    let under_test = BusUnderTest {
        publisher: Arc::new(bus.clone()),
        subscriber: Arc::new(bus.clone()),
    };
    suite::a_deleted_queue_ends_its_consumer_and_can_be_declared_and_bound_again(
        &under_test,
        |queue| {
            let broker = &broker;
            async move { broker.delete_queue(&queue).await }
        },
    )
    .await;
    let declared = bus.declared();
    broker.delete_on_drop(
        declared.exchanges.into_iter().map(|(name, _)| name),
        declared.queues.into_iter().map(|q| q.name),
    );
    bus.close().await;
}
