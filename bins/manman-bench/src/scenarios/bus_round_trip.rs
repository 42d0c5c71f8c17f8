//! `bus-round-trip`: `manman-rabbit` on the broker of `MANMAN_TEST_AMQP_URL`, each figure beside a
//! raw lapin baseline measured in the same run:
//!
//! - command round trip through the ports: the host publishes a command to a worker queue, the
//!   worker's consumer handles it and publishes a `command_result` event, the host's event
//!   watcher receives it; one at a time, p50 and p99 over 10,000 commands. Baseline: the same
//!   request → reply with raw lapin (persistent, `mandatory`, confirms awaited, manual acks);
//! - event throughput with publisher confirms (publish to persisted ack), 256 in flight: typed
//!   `Bus::publish_event` (JSON encoding included). Baseline: raw lapin confirmed, persistent,
//!   `mandatory` publishing of the same bodies with the same properties to a fanout exchange with
//!   a durable queue, as `manman.events`. Rounds alternate between the two.
//!
//! Both are measured twice: signed (as ManMan runs: the host seals each command, the worker
//! checks it and seals its result, the host checks that) and unsigned (the same messages through
//! the same ports without seals), for the cost of signing.

use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
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
use manman_core::ports::Message;
use manman_core::signing::{BusSecret, Purpose, WorkerKey};
use manman_core::status::{Cause, Entity, Status};
use manman_core::topology::Topology;
use manman_core::topology::{KIND_COMMAND, worker_routing_key};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_test_support::amqp::TestBroker;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publishes in flight at once in the throughput runs.
const IN_FLIGHT: usize = 256;
/// Round trips before measuring.
const WARM_UP: usize = 200;

pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let round_trips = settings.round_trips;
    let events = settings.events_per_round;
    let Some(broker) = TestBroker::connect("bench").await else {
        anyhow::bail!("bus-round-trip needs RabbitMQ: set MANMAN_TEST_AMQP_URL");
    };
    let run = async {
        let host = rabbit(&broker, "bench-host").await?;
        let worker = rabbit(&broker, "bench-worker").await?;
        let host_bus = typed(&broker, &host);
        let worker_bus = typed(&broker, &worker);
        host_bus.declare().await?;
        let mut p50 = Figure::new("command round trip p50 (ports)", "ms", Target::None);
        let mut p99 = Figure::new("command round trip p99 (ports)", "ms", Target::AtMost(5.0));
        let mut raw_p50 = Figure::new("raw lapin round trip p50", "ms", Target::None);
        let mut raw_p99 = Figure::new("raw lapin round trip p99", "ms", Target::None);
        let mut p99_ratio = Figure::new("round trip p99 ÷ raw lapin p99", "×", Target::AtMost(2.0));
        let mut throughput = Figure::new(
            "event throughput with confirms (typed Bus)",
            "events/s",
            Target::AtLeast(10_000.0),
        );
        let mut raw_throughput =
            Figure::new("raw lapin confirmed publishing", "messages/s", Target::None);
        let mut share = Figure::new("event throughput ÷ raw lapin", "%", Target::AtLeast(70.0));
        let mut unsigned_p50 = Figure::new("command round trip p50, unsigned", "ms", Target::None);
        let mut signing_p50 = Figure::new(
            "signing's cost: round trip p50 signed − unsigned",
            "ms",
            Target::AtMost(0.2),
        );
        let mut unsigned_throughput = Figure::new(
            "event throughput with confirms, unsigned",
            "events/s",
            Target::None,
        );
        let mut signed_share = Figure::new(
            "signed ÷ unsigned event throughput",
            "%",
            Target::AtLeast(90.0),
        );
        let raw_exchange = raw_fanout(&broker).await?;
        for i in 1..=settings.runs {
            eprintln!("  run {i}/{}", settings.runs);
            let ports =
                command_round_trips(&host_bus, &worker_bus, round_trips, Signing::On).await?;
            let unsigned =
                command_round_trips(&host_bus, &worker_bus, round_trips, Signing::Off).await?;
            let raw = raw_round_trips(&broker, round_trips).await?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            p50.values.push(ms(percentile(&ports, 50.0)));
            p99.values.push(ms(percentile(&ports, 99.0)));
            raw_p50.values.push(ms(percentile(&raw, 50.0)));
            raw_p99.values.push(ms(percentile(&raw, 99.0)));
            p99_ratio.values.push(
                percentile(&ports, 99.0).as_secs_f64() / percentile(&raw, 99.0).as_secs_f64(),
            );
            let raw_rate = raw_confirmed_throughput(&broker, &raw_exchange, events).await?;
            let rate = event_throughput(&host_bus, events, Signing::On).await?;
            let unsigned_rate = event_throughput(&host_bus, events, Signing::Off).await?;
            unsigned_p50.values.push(ms(percentile(&unsigned, 50.0)));
            signing_p50
                .values
                .push(ms(percentile(&ports, 50.0)) - ms(percentile(&unsigned, 50.0)));
            unsigned_throughput.values.push(unsigned_rate);
            signed_share.values.push(100.0 * rate / unsigned_rate);
            eprintln!(
                "    p50 {:.2} ms (raw {:.2}), p99 {:.2} ms (raw {:.2}), {rate:.0} events/s (raw {raw_rate:.0})",
                ms(percentile(&ports, 50.0)),
                ms(percentile(&raw, 50.0)),
                ms(percentile(&ports, 99.0)),
                ms(percentile(&raw, 99.0))
            );
            throughput.values.push(rate);
            raw_throughput.values.push(raw_rate);
            share.values.push(100.0 * rate / raw_rate);
        }
        for bus in [&host, &worker] {
            let declared = bus.declared();
            broker.delete_on_drop(
                declared.exchanges.into_iter().map(|(name, _)| name),
                declared.queues.into_iter().map(|q| q.name),
            );
            bus.close().await;
        }
        Ok::<_, Failure>(vec![
            p50,
            p99,
            raw_p50,
            raw_p99,
            p99_ratio,
            throughput,
            raw_throughput,
            share,
            unsigned_p50,
            signing_p50,
            unsigned_throughput,
            signed_share,
        ])
    };
    let figures = run.await.map_err(|e| anyhow::anyhow!("{e}"))?;
    broker.cleanup().await.map_err(|e| anyhow::anyhow!(e))?;
    Ok(Section {
        scenario: "bus-round-trip",
        title: "RabbitMQ: command round trip and confirmed event throughput".to_owned(),
        method: format!(
            "Two `RabbitBus` connections (host and worker) on the local broker, names under a test \
             prefix. Round trip: the host publishes a command to the worker's durable queue (persistent, \
             mandatory, confirm awaited), the worker's consumer acks it after publishing a \
             `command_result` event, the host's watcher receives it; {round_trips} one at a time. \
             Baseline: the same request and reply with raw lapin (same properties, confirms and acks). \
             Throughput: {events} events published with confirms, 256 in flight, through the typed \
             `Bus` (JSON encoding included), beside raw lapin confirmed publishing of the same bodies \
             and properties to a fanout exchange with a durable queue. Both again unsigned (no \
             seals made or checked) for signing's cost; the signed figures are ManMan's."
        ),
        figures,
        notes: vec!["Broker, benchmark and both clients share the machine's 2 cores.".to_owned()],
    })
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Whether messages are sealed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signing {
    On,
    Off,
}

/// Publishes a command to `key`'s worker, sealed or not.
async fn send(
    host: &Bus,
    key: &WorkerKey,
    envelope: &CommandEnvelope,
    signing: Signing,
) -> Result<(), Failure> {
    if signing == Signing::On {
        return Ok(host.send_command(key, envelope).await?);
    }
    let mut message = Message::json(KIND_COMMAND, envelope, envelope.issued_at)?;
    message.id = envelope.id;
    message.expires_at = Some(envelope.expires_at);
    host.publisher()
        .publish(
            &host.topology().commands_exchange(),
            &worker_routing_key(key.worker_id()),
            message,
        )
        .await?;
    Ok(())
}

/// Publishes an event from `key`'s worker, sealed or not.
async fn publish(
    bus: &Bus,
    key: &WorkerKey,
    event: &Event,
    signing: Signing,
) -> Result<(), Failure> {
    if signing == Signing::On {
        bus.publish_event(event, Utc::now(), key).await?;
        return Ok(());
    }
    let message = Message::json(event.kind(), event, Utc::now())?;
    bus.publisher()
        .publish(&bus.topology().events_exchange(), "", message)
        .await?;
    Ok(())
}

/// Host → worker command → `command_result` event → host, one at a time.
async fn command_round_trips(
    host: &Bus,
    worker: &Bus,
    n: usize,
    signing: Signing,
) -> Result<Vec<Duration>, Failure> {
    let worker_id = WorkerId(1);
    let key = BusSecret::generate().worker_key(worker_id, 1);
    let mut commands = worker.consume_commands(worker_id, 64).await?;
    let mut results = host.watch_events().await?;
    let responder = {
        let worker = worker.clone();
        let key = key.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = commands.next().await {
                if signing == Signing::On && key.check(Purpose::Command, &delivery.message).is_err()
                {
                    let _ = delivery.dead_letter().await;
                    continue;
                }
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
                if publish(&worker, &key, &result, signing).await.is_err() {
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
        send(host, &key, &envelope, signing).await?;
        loop {
            let delivery = results.next().await.ok_or("the watcher ended")??;
            if signing == Signing::On {
                key.check(Purpose::Event, &delivery.message)?;
            }
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
pub(crate) async fn raw_round_trips(
    broker: &TestBroker,
    n: usize,
) -> Result<Vec<Duration>, Failure> {
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
async fn event_throughput(bus: &Bus, n: usize, signing: Signing) -> Result<f64, Failure> {
    let key = BusSecret::generate().worker_key(WorkerId(1), 1);
    let started = Instant::now();
    let published: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let (bus, key) = (bus.clone(), key.clone());
            async move { publish(&bus, &key, &status_event(i), signing).await }
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
