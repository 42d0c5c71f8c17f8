//! Benchmark of `manman-rabbit` on the broker of `MANMAN_TEST_AMQP_URL`, each figure beside a
//! raw lapin baseline measured in the same run:
//!
//! - command round trip through the ports: the host publishes a command to a worker queue, the
//!   worker's consumer handles it and publishes a `command_result` event, the host's event
//!   watcher receives it; one at a time, p50 and p99 over 10,000 commands. Baseline: the same
//!   request → reply with raw lapin (persistent, `mandatory`, confirms awaited, manual acks);
//! - event throughput with publisher confirms (publish to persisted ack), 256 in flight: typed
//!   `Bus::publish_event` (JSON encoding included) and `MessagePublisher::publish` of pre-built
//!   messages. Baseline: raw lapin confirmed, persistent, `mandatory` publishing of the same
//!   bodies with the same properties (`message_id`, `type`, `timestamp`, `content_type`) to a
//!   fanout exchange with a durable queue, as `manman.events`. Rounds alternate
//!   between the three; medians are printed.
//!
//! Run: `MANMAN_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --release -p
//! manman-rabbit --example round_trip`. Prints `name: value unit` lines. Environment:
//! `ROUND_TRIPS` (default 10000), `EVENTS` per throughput round (default 20000; three rounds, medians printed).

use chrono::Utc;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use manman_core::bus::Bus;
use manman_core::command::{Command, CommandEnvelope, CommandOutcome, CommandResult};
use manman_core::event::{Event, StatusReport};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::status::{Cause, Entity, Status};
use manman_core::topology::Topology;
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publishes in flight at once in the throughput runs.
const IN_FLIGHT: usize = 256;
/// Round trips before measuring.
const WARM_UP: usize = 200;
/// Throughput rounds (alternating ports and raw lapin).
const ROUNDS: usize = 3;

type Failure = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Failure> {
    let round_trips = count("ROUND_TRIPS", 10_000);
    let events = count("EVENTS", 20_000);
    let Some(broker) = TestBroker::connect("bench").await else {
        return Ok(());
    };
    let host = rabbit(&broker, "bench-host").await?;
    let worker = rabbit(&broker, "bench-worker").await?;
    let host_bus = typed(&broker, &host);
    let worker_bus = typed(&broker, &worker);
    host_bus.declare().await?;

    let ports = command_round_trips(&host_bus, &worker_bus, round_trips).await?;
    let raw = raw_round_trips(&broker, round_trips).await?;
    print_latency("command_round_trip", &ports);
    print_latency("raw_lapin_round_trip", &raw);
    println!(
        "command_round_trip_p99_vs_raw: {:.2} x",
        percentile(&ports, 99.0).as_secs_f64() / percentile(&raw, 99.0).as_secs_f64()
    );

    // Throughput: rounds alternate between the ports and raw lapin; medians are printed.
    let raw_exchange = raw_fanout(&broker).await?;
    let (mut typed_rates, mut port_rates, mut raw_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw_rates.push(raw_confirmed_throughput(&broker, &raw_exchange, events).await?);
        typed_rates.push(event_throughput(&host_bus, events).await?);
        port_rates.push(port_throughput(&host, &host_bus, events).await?);
    }
    let (typed, port, raw) = (median(typed_rates), median(port_rates), median(raw_rates));
    println!("event_throughput_confirmed: {typed:.0} events/s");
    println!("port_publish_throughput_confirmed: {port:.0} messages/s");
    println!("raw_lapin_confirmed_publish_throughput: {raw:.0} messages/s");
    println!("event_throughput_vs_raw: {:.0} %", 100.0 * typed / raw);
    println!(
        "port_publish_throughput_vs_raw: {:.0} %",
        100.0 * port / raw
    );

    for bus in [&host, &worker] {
        let declared = bus.declared();
        broker.delete_on_drop(
            declared.exchanges.into_iter().map(|(name, _)| name),
            declared.queues.into_iter().map(|q| q.name),
        );
        bus.close().await;
    }
    broker.cleanup().await?;
    Ok(())
}

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn rabbit(broker: &TestBroker, service: &str) -> Result<RabbitBus, Failure> {
    let settings = RabbitSettings::new(broker.url()).connection_name(broker.name(service));
    Ok(RabbitBus::connect(&settings).await?)
}

fn typed(broker: &TestBroker, rabbit: &RabbitBus) -> Bus {
    Bus::with_topology(
        Arc::new(rabbit.clone()),
        Arc::new(rabbit.clone()),
        Topology::with_prefix(broker.prefix()),
    )
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_latency(name: &str, sorted: &[Duration]) {
    for p in [50.0, 99.0] {
        println!(
            "{name}_p{p:.0}: {:.3} ms",
            percentile(sorted, p).as_secs_f64() * 1e3
        );
    }
}

/// Host → worker command → `command_result` event → host, one at a time.
async fn command_round_trips(host: &Bus, worker: &Bus, n: usize) -> Result<Vec<Duration>, Failure> {
    let worker_id = WorkerId(1);
    let mut commands = worker.consume_commands(worker_id, 64).await?;
    let mut results = host.watch_events().await?;
    let responder = {
        let worker = worker.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = commands.next().await {
                let Ok(envelope) = delivery.message.decode::<CommandEnvelope>() else {
                    let _ = delivery.dead_letter().await;
                    continue;
                };
                let result = Event::CommandResult(CommandResult {
                    command_id: envelope.id,
                    worker_id,
                    outcome: CommandOutcome::Succeeded,
                    detail: None,
                    reported_at: Utc::now(),
                });
                if worker.publish_event(&result, Utc::now()).await.is_err() {
                    break;
                }
                let _ = delivery.ack().await;
            }
        })
    };
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARM_UP + n {
        let envelope = CommandEnvelope::new(
            Command::Stdin {
                instance_id: InstanceId(1),
                line: format!("say {i}"),
            },
            "bench",
            Utc::now(),
        );
        let started = Instant::now();
        host.send_command(worker_id, &envelope).await?;
        loop {
            let delivery = results.next().await.ok_or("the watcher ended")??;
            let answered = matches!(
                delivery.message.decode::<Event>(),
                Ok(Event::CommandResult(r)) if r.command_id == envelope.id
            );
            delivery.ack().await?;
            if answered {
                break;
            }
        }
        if i >= WARM_UP {
            samples.push(started.elapsed());
        }
    }
    responder.abort();
    samples.sort();
    Ok(samples)
}

/// A raw lapin connection and confirm-mode channel.
async fn raw_channel(url: &str, confirm: bool) -> Result<(Connection, Channel), Failure> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    if confirm {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    Ok((connection, channel))
}

async fn raw_queue(channel: &Channel, name: &str) -> Result<(), Failure> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// The properties ManMan's messages carry (spec §3), so that both sides send the same bytes.
fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_type("status".into())
        .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or(0))
}

async fn raw_publish(channel: &Channel, queue: &str, body: &[u8]) -> Result<(), Failure> {
    raw_publish_to(channel, "", queue, body).await
}

async fn raw_publish_to(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> Result<(), Failure> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            persistent(),
        )
        .await?
        .await?;
    if confirmation.is_ack() && confirmation.take_message().is_none() {
        Ok(())
    } else {
        Err("raw publish not confirmed".into())
    }
}

/// The same request → reply with raw lapin: requests and replies on durable queues, persistent,
/// `mandatory`, confirms awaited, manual acks, one connection per side.
async fn raw_round_trips(broker: &TestBroker, n: usize) -> Result<Vec<Duration>, Failure> {
    let requests = broker.name("raw.requests");
    let replies = broker.name("raw.replies");
    let (client_connection, client) = raw_channel(broker.url(), true).await?;
    let (server_connection, server) = raw_channel(broker.url(), true).await?;
    raw_queue(&client, &requests).await?;
    raw_queue(&client, &replies).await?;
    broker.delete_on_drop(Vec::<String>::new(), [requests.clone(), replies.clone()]);
    let client_in = client_connection.create_channel().await?;
    client_in.basic_qos(64, BasicQosOptions::default()).await?;
    let mut reply_stream = client_in
        .basic_consume(
            replies.as_str().into(),
            "bench-client".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let server_in = server_connection.create_channel().await?;
    server_in.basic_qos(64, BasicQosOptions::default()).await?;
    let mut request_stream = server_in
        .basic_consume(
            requests.as_str().into(),
            "bench-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let responder = {
        let replies = replies.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = request_stream.next().await {
                if raw_publish(&server, &replies, &delivery.data)
                    .await
                    .is_err()
                {
                    break;
                }
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        })
    };
    let mut samples = Vec::with_capacity(n);
    for i in 0..WARM_UP + n {
        let body = format!("{{\"request\":{i}}}").into_bytes();
        let started = Instant::now();
        raw_publish(&client, &requests, &body).await?;
        loop {
            let delivery = reply_stream.next().await.ok_or("replies ended")??;
            delivery.ack(BasicAckOptions::default()).await?;
            if delivery.data == body {
                break;
            }
        }
        if i >= WARM_UP {
            samples.push(started.elapsed());
        }
    }
    responder.abort();
    let _ = client_connection.close(200, "OK".into()).await;
    let _ = server_connection.close(200, "OK".into()).await;
    samples.sort();
    Ok(samples)
}

fn status_event(n: usize) -> Event {
    Event::Status(StatusReport::new(
        Entity::Instance(InstanceId(i64::try_from(n).unwrap_or(0))),
        Status::Running,
        Cause::Ready,
        Utc::now(),
    ))
}

/// Events published on `manman.events` (into the status processor's durable queue), confirmed.
async fn event_throughput(bus: &Bus, n: usize) -> Result<f64, Failure> {
    let started = Instant::now();
    let published: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let bus = bus.clone();
            async move { bus.publish_event(&status_event(i), Utc::now()).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in published {
        result?;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// A fanout exchange with a durable queue bound, as `manman.events` and the status processor's
/// queue.
async fn raw_fanout(broker: &TestBroker) -> Result<String, Failure> {
    let exchange = broker.name("raw.events");
    let queue = broker.name("raw.events.queue");
    let (connection, channel) = raw_channel(broker.url(), false).await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..lapin::options::ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    raw_queue(&channel, &queue).await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "".into(),
            lapin::options::QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    broker.delete_on_drop([exchange.clone()], [queue]);
    let _ = connection.close(200, "OK".into()).await;
    Ok(exchange)
}

/// Pre-built messages through `MessagePublisher::publish` (no JSON encoding in the loop).
async fn port_throughput(rabbit: &RabbitBus, bus: &Bus, n: usize) -> Result<f64, Failure> {
    use manman_core::ports::{Message, MessagePublisher};
    let exchange = bus.topology().events_exchange();
    let messages: Vec<Message> = (0..n)
        .map(|i| {
            let event = status_event(i);
            Message::json(event.kind(), &event, Utc::now())
        })
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let published: Vec<_> = futures::stream::iter(messages)
        .map(|message| rabbit.publish(&exchange, "", message))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in published {
        result?;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Raw lapin confirmed publishing of the same bodies, persistent and `mandatory`, to a fanout
/// exchange with a durable queue, as many in flight.
async fn raw_confirmed_throughput(
    broker: &TestBroker,
    exchange: &str,
    n: usize,
) -> Result<f64, Failure> {
    let (connection, channel) = raw_channel(broker.url(), true).await?;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&status_event(i)))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let published: Vec<_> = futures::stream::iter(bodies.iter())
        .map(|body| raw_publish_to(&channel, exchange, "", body))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in published {
        result?;
    }
    let _ = connection.close(200, "OK".into()).await;
    Ok(n as f64 / elapsed.as_secs_f64())
}
