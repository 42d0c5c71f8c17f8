//! `burst`: many starts, then many stops, fired at the API with a fixed number in flight, on each
//! deployment — throughput until the store has recorded every `running`, then every `complete`.

use crate::deployment::{Deployment, Running};
use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::scenarios::command_latency::{Seen, status_watch};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::status::Status;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests in flight at once.
const IN_FLIGHT: usize = 16;
/// The longest wait for a whole burst.
const BURST_TIMEOUT: Duration = Duration::from_secs(120);

/// The deployments, the real one first; the distributed one also with three workers, to show
/// that starts scale with workers.
const DEPLOYMENTS: [Deployment; 4] = [
    Deployment::Distributed { workers: 1 },
    Deployment::Distributed { workers: 3 },
    Deployment::UpPostgres,
    Deployment::UpMemory,
];

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let n = settings.burst;
    let mut figures: Vec<(Deployment, Figure, Figure)> = DEPLOYMENTS
        .into_iter()
        .map(|deployment| {
            let label = deployment.label();
            // The targets are the distributed deployment's; an all-in-one deployment must not
            // be slower than it.
            let starts = Figure::new(
                &format!("{label}: {n} starts → all `running` recorded"),
                "/s",
                Target::AtLeast(250.0),
            );
            let stops = Figure::new(
                &format!("{label}: {n} stops → all `complete` recorded"),
                "/s",
                Target::AtLeast(1_000.0),
            );
            (deployment, starts, stops)
        })
        .collect();
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        for (deployment, starts, stops) in &mut figures {
            let running = deployment.start(settings, n).await?;
            let outcome = one_run(&running, n).await;
            running.stop().await?;
            let (start_rate, stop_rate) = outcome.with_context(|| deployment.label())?;
            eprintln!(
                "    {}: starts {start_rate:.0}/s, stops {stop_rate:.0}/s",
                deployment.label()
            );
            starts.values.push(start_rate);
            stops.values.push(stop_rate);
        }
    }
    Ok(Section {
        scenario: "burst",
        title: format!("Bursts of {n} starts and {n} stops, on each deployment"),
        method: format!(
            "Each run starts each deployment afresh (as in `command-latency`: **distributed** is \
             `manman-host` on PostgreSQL and RabbitMQ with separate `manman-worker` processes, \
             each with room for {n} servers). {n} configs of the fake game server (`running` when \
             spawned, stop line `quit`) are created, untimed. Then {n} `POST /api/v1/instances`, \
             {IN_FLIGHT} in flight; the figure is {n} divided by the time from the first request \
             to the last `running` on the `/api/v1/events` stream (which carries only what the \
             store recorded). Then {n} `POST …/stop`, {IN_FLIGHT} in flight, until the last \
             `complete` on the stream. With three workers the host places the starts on the \
             least loaded worker."
        ),
        figures: figures
            .into_iter()
            .flat_map(|(_, starts, stops)| [starts, stops])
            .collect(),
        notes: vec![
            "The earlier Python system ran at most 6 servers per worker (its thread pool); later \
             starts stayed `created` for ever (`shared/research/original-baseline.md`)."
                .to_owned(),
            "Client, host, workers, PostgreSQL, RabbitMQ and every game server share the \
             machine's 2 cores: three workers on one machine add processes, not cores."
                .to_owned(),
        ],
    })
}

/// Starts/s and stops/s of one burst of `n` each.
async fn one_run(running: &Running, n: usize) -> anyhow::Result<(f64, f64)> {
    let configs: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move { running.config(&format!("burst-{i}")).await })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
    let (watcher, mut statuses) = status_watch(running).await?;
    let client = &running.client;

    let began = Instant::now();
    let ids: Vec<InstanceId> = futures::stream::iter(configs)
        .map(|config| async move {
            client
                .start(&StartRequest::new(config))
                .await
                .map(|started| started.instance_id)
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
    let all_running = wait_all(&mut statuses, &ids, Status::Running).await?;
    let start_rate = n as f64 / (all_running - began).as_secs_f64();

    let began = Instant::now();
    futures::stream::iter(&ids)
        .map(|id| client.stop(*id))
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    let all_complete = wait_all(&mut statuses, &ids, Status::Complete).await?;
    let stop_rate = n as f64 / (all_complete - began).as_secs_f64();
    watcher.abort();
    Ok((start_rate, stop_rate))
}

/// When the last of `ids` reached `status`, by the events stream.
async fn wait_all(
    statuses: &mut mpsc::UnboundedReceiver<Seen>,
    ids: &[InstanceId],
    status: Status,
) -> anyhow::Result<Instant> {
    let mut waiting: HashSet<InstanceId> = ids.iter().copied().collect();
    let outcome = tokio::time::timeout(BURST_TIMEOUT, async {
        let mut last = Instant::now();
        while !waiting.is_empty() {
            let Some((id, reached, at)) = statuses.recv().await else {
                bail!("the events stream ended");
            };
            if reached == status && waiting.remove(&id) {
                last = at;
            }
        }
        Ok(last)
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(_) => bail!(
            "{} of {} instances did not become {status} within {BURST_TIMEOUT:?}",
            waiting.len(),
            ids.len()
        ),
    }
}
