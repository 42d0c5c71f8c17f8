//! Connecting: a refusal is reported at once with the broker's reason, an absent broker after
//! the connect timeout. The credentials case runs against `MANMAN_TEST_AMQP_URL`.

use lapin::uri::AMQPUri;
use manman_rabbit::{ConnectError, RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_once_with_the_reason() {
    let Some(broker) = TestBroker::connect("credentials").await else {
        return;
    };
    let uri: AMQPUri = broker.url().parse().expect("an AMQP URL");
    let url = format!(
        "amqp://{}:not-the-password@{}:{}/%2f",
        uri.authority.userinfo.username, uri.authority.host, uri.authority.port
    );
    let started = Instant::now();
    let error =
        RabbitBus::connect(&RabbitSettings::new(url).connect_timeout(Duration::from_secs(20)))
            .await
            .expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, ConnectError::Connect { .. }), "{error}");
    let text = format!(
        "{error}: {}",
        std::error::Error::source(&error).expect("a cause")
    );
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(
        text.contains("ACCESS_REFUSED") || text.contains("access"),
        "{text}"
    );
}

#[tokio::test]
async fn an_absent_broker_fails_after_the_connect_timeout() {
    // Nothing listens on port 1 of the loopback.
    let settings = RabbitSettings::new("amqp://guest:guest@127.0.0.1:1/%2f")
        .connect_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let error = RabbitBus::connect(&settings)
        .await
        .expect_err("nobody there");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert!(matches!(error, ConnectError::Connect { .. }), "{error}");
}
