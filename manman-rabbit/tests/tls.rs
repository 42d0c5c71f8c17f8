//! `amqps://` with the `tls` feature, against the TLS endpoint of `MANMAN_TEST_AMQPS_URL`
//! (e.g. a TLS listener of RabbitMQ, or a TLS proxy in front of it) whose certificate is signed
//! by the CA in the PEM file `MANMAN_TEST_AMQPS_CA_FILE`. Skipped when they are not set: no CI
//! machine has such an endpoint.
#![cfg(feature = "tls")]

use manman_core::ports::{MessageSubscriber, QueueSpec};
use manman_rabbit::{ConnectError, RabbitBus, RabbitSettings};
use std::time::Duration;

fn endpoint() -> Option<(String, String)> {
    match (
        std::env::var("MANMAN_TEST_AMQPS_URL"),
        std::env::var("MANMAN_TEST_AMQPS_CA_FILE"),
    ) {
        (Ok(url), Ok(ca)) => Some((url, ca)),
        _ => {
            eprintln!(
                "skipped: set MANMAN_TEST_AMQPS_URL and MANMAN_TEST_AMQPS_CA_FILE to test amqps://"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_works_with_the_ca_file_and_is_refused_without_it() {
    let Some((url, ca)) = endpoint() else {
        return;
    };
    let settings = RabbitSettings::new(&url)
        .connection_name("manman-rabbit-tls-test")
        .connect_timeout(Duration::from_secs(5));
    let bus = RabbitBus::connect(&settings.clone().ca_file(&ca))
        .await
        .expect("amqps with the CA file");
    let queue = bus
        .declare_queue(&QueueSpec::temporary())
        .await
        .expect("declare over TLS");
    assert!(!queue.is_empty());
    bus.close().await;

    match RabbitBus::connect(&settings).await {
        Err(ConnectError::Connect { .. }) => {}
        other => panic!("an untrusted certificate must be refused, got {other:?}"),
    }
}
