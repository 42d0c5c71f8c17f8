//! The broker away for a while, seen through a TCP relay this test cuts and restores (the
//! shared broker itself is never stopped): publishers wait, within their bound, and consumers
//! resume. Runs against `MANMAN_TEST_AMQP_URL`.

use chrono::Utc;
use lapin::uri::AMQPUri;
use manman_core::bus::Bus;
use manman_core::command::{Command, CommandEnvelope};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::BusError;
use manman_core::signing::BusSecret;
use manman_core::topology::Topology;
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// A TCP relay in front of the broker that can play "broker away": it then drops every
/// connection and stops listening, so that connecting is refused, as with a stopped broker.
struct Relay {
    address: SocketAddr,
    upstream: String,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let relay = Self {
            address: listener.local_addr().expect("address"),
            upstream,
            connections: Arc::default(),
            listener: Mutex::new(None),
        };
        relay.listen(listener);
        relay
    }

    fn listen(&self, listener: TcpListener) {
        let (upstream, connections) = (self.upstream.clone(), Arc::clone(&self.connections));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let relay = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                connections
                    .lock()
                    .expect("relay lock")
                    .push(relay.abort_handle());
            }
        });
        *self.listener.lock().expect("relay lock") = Some(task);
    }

    /// The broker's URL with the relay in front.
    fn url(&self, broker_url: &str) -> String {
        let uri: AMQPUri = broker_url.parse().expect("an AMQP URL");
        let user = &uri.authority.userinfo;
        format!(
            "amqp://{}:{}@{}/{}",
            user.username,
            user.password,
            self.address,
            uri.vhost.replace('%', "%25").replace('/', "%2f")
        )
    }

    fn down(&self) {
        if let Some(listener) = self.listener.lock().expect("relay lock").take() {
            listener.abort();
        }
        for connection in self.connections.lock().expect("relay lock").drain(..) {
            connection.abort();
        }
    }

    async fn up(&self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("listen again on the relay's address");
        self.listen(listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}

async fn setup(label: &str, publish_wait: Duration) -> Option<(TestBroker, Relay, RabbitBus, Bus)> {
    let broker = TestBroker::connect(label).await?;
    let uri: AMQPUri = broker.url().parse().expect("an AMQP URL");
    let relay = Relay::start(format!("{}:{}", uri.authority.host, uri.authority.port)).await;
    let settings = RabbitSettings::new(relay.url(broker.url()))
        .connection_name(broker.name("host"))
        .publish_wait(publish_wait)
        .reconnect_max_delay(Duration::from_millis(200));
    let rabbit = RabbitBus::connect(&settings).await.expect("connect");
    let bus = Bus::with_topology(
        Arc::new(rabbit.clone()),
        Arc::new(rabbit.clone()),
        Topology::with_prefix(broker.prefix()),
    );
    bus.declare().await.expect("declare");
    Some((broker, relay, rabbit, bus))
}

async fn finish(broker: &TestBroker, rabbit: &RabbitBus) {
    let declared = rabbit.declared();
    broker.delete_on_drop(
        declared.exchanges.into_iter().map(|(name, _)| name),
        declared.queues.into_iter().map(|q| q.name),
    );
    rabbit.close().await;
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

async fn until(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 10 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_wait_while_the_broker_is_away_and_consumers_resume() {
    let Some((broker, relay, rabbit, bus)) = setup("away", Duration::from_secs(20)).await else {
        return;
    };
    let worker_id = WorkerId(2);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let mut commands = bus.consume_commands(worker_id, 10).await.expect("consume");
    let before = stop(1);
    bus.send_command(&key, &before).await.expect("send");
    let got = commands.next().await.expect("open").expect("ok");
    assert_eq!(got.message.id, before.id);
    got.ack().await.expect("ack");

    relay.down();
    until("the bus notices the broker is away", || {
        !rabbit.is_connected()
    })
    .await;
    let during = stop(2);
    let sending = tokio::spawn({
        let (bus, during) = (bus.clone(), during.clone());
        async move { bus.send_command(&key, &during).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !sending.is_finished(),
        "the publish waits for the broker instead of failing: {:?}",
        sending.await
    );

    relay.up().await;
    tokio::time::timeout(Duration::from_secs(15), sending)
        .await
        .expect("the publish completes once the broker is back")
        .expect("the publishing task")
        .expect("published");
    // The ack of `before` may have been lost with the connection: then it comes again first
    // (at least once), marked redelivered.
    loop {
        let got = tokio::time::timeout(Duration::from_secs(15), commands.next())
            .await
            .expect("the consumer resumes")
            .expect("open")
            .expect("ok");
        let id = got.message.id;
        if id == before.id {
            assert!(got.redelivered(), "{id} again, but not marked redelivered");
        } else {
            assert_eq!(id, during.id);
        }
        got.ack().await.expect("ack");
        if id == during.id {
            break;
        }
    }
    assert!(rabbit.is_connected());
    drop(commands);
    finish(&broker, &rabbit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_gives_up_after_the_publish_wait_and_the_next_one_succeeds() {
    let Some((broker, relay, rabbit, bus)) = setup("give-up", Duration::from_secs(2)).await else {
        return;
    };
    let worker_id = WorkerId(4);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    bus.declare_worker_queue(worker_id).await.expect("queue");
    relay.down();
    until("the bus notices the broker is away", || {
        !rabbit.is_connected()
    })
    .await;
    let started = std::time::Instant::now();
    match bus.send_command(&key, &stop(1)).await {
        Err(error @ BusError::Unavailable { .. }) => assert!(error.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(8),
        "waited {waited:?}"
    );

    relay.up().await;
    let again = stop(2);
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match bus.send_command(&key, &again).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("publishing succeeds again once the broker is back");
    assert_eq!(
        broker
            .queue_depth(&bus.topology().worker_commands_queue(worker_id))
            .await,
        Some(1)
    );
    finish(&broker, &rabbit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_closed_while_the_broker_is_away_does_not_come_back_to_consume() {
    let Some((broker, relay, rabbit, bus)) = setup("closed-away", Duration::from_secs(5)).await
    else {
        return;
    };
    let worker_id = WorkerId(6);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let commands = bus.consume_commands(worker_id, 10).await.expect("consume");
    relay.down();
    until("the bus notices the broker is away", || {
        !rabbit.is_connected()
    })
    .await;
    let declared = rabbit.declared();
    drop(commands);
    rabbit.close().await;
    relay.up().await;

    // Another process sends a command; the closed bus's connection, recovered by lapin in the
    // background, must not take it.
    let other = RabbitBus::connect(
        &RabbitSettings::new(broker.url()).connection_name(broker.name("other")),
    )
    .await
    .expect("connect");
    let other_bus = Bus::with_topology(
        Arc::new(other.clone()),
        Arc::new(other.clone()),
        Topology::with_prefix(broker.prefix()),
    );
    other_bus.send_command(&key, &stop(1)).await.expect("send");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        broker
            .queue_depth(&other_bus.topology().worker_commands_queue(worker_id))
            .await,
        Some(1),
        "the command still waits in its queue"
    );
    broker.delete_on_drop(
        declared.exchanges.into_iter().map(|(name, _)| name),
        declared.queues.into_iter().map(|q| q.name),
    );
    finish(&broker, &other).await;
}
