//! `command-latency`: end to end through the product, on each deployment — an HTTP start until
//! the host records `running`, an HTTP stdin line until the game server's answer to it is on the
//! console, and an HTTP stop until the host records `complete` — with the raw limits beside.

use crate::deployment::{Deployment, Running};
use crate::raw_limits::RawLimits;
use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use anyhow::{Context, bail};
use futures::StreamExt;
use manman_core::event::Event;
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::status::{Entity, Status};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Lines sent to each instance.
const STDIN_PER_START: usize = 10;
/// The longest wait for one step before the run is called failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Latencies of one run, in milliseconds.
struct Run {
    start: Vec<f64>,
    stdin: Vec<f64>,
    stop: Vec<f64>,
}

/// The figures of one deployment.
struct Figures {
    start_p50: Figure,
    start_p99: Figure,
    stdin_p50: Figure,
    stdin_p99: Figure,
    stop_p50: Figure,
}

impl Figures {
    fn new(deployment: Deployment) -> Self {
        let label = deployment.label();
        let figure = |what: &str, target| Figure::new(&format!("{label}: {what}"), "ms", target);
        Self {
            start_p50: figure("HTTP start → `running` recorded, p50", Target::AtMost(6.0)),
            start_p99: figure("HTTP start → `running` recorded, p99", Target::AtMost(15.0)),
            stdin_p50: figure(
                "HTTP stdin → the answer on the console, p50",
                Target::AtMost(2.0),
            ),
            stdin_p99: figure(
                "HTTP stdin → the answer on the console, p99",
                Target::AtMost(6.0),
            ),
            stop_p50: figure("HTTP stop → `complete` recorded, p50", Target::None),
        }
    }

    fn add(&mut self, run: &Run) {
        self.start_p50.values.push(percentile(&run.start, 0.50));
        self.start_p99.values.push(percentile(&run.start, 0.99));
        self.stdin_p50.values.push(percentile(&run.stdin, 0.50));
        self.stdin_p99.values.push(percentile(&run.stdin, 0.99));
        self.stop_p50.values.push(percentile(&run.stop, 0.50));
    }

    fn into_vec(self) -> Vec<Figure> {
        vec![
            self.start_p50,
            self.start_p99,
            self.stdin_p50,
            self.stdin_p99,
            self.stop_p50,
        ]
    }
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let rounds = settings.latency_rounds;
    let mut by_deployment: Vec<(Deployment, Figures)> = Deployment::COMPARED
        .into_iter()
        .map(|d| (d, Figures::new(d)))
        .collect();
    let mut limits = RawLimits::figures();
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        limits.measure(settings).await?;
        for (deployment, figures) in &mut by_deployment {
            let running = deployment.start(settings, 4).await?;
            let run = one_run(&running, rounds).await;
            running.stop().await?;
            let run = run.with_context(|| deployment.label())?;
            eprintln!(
                "    {}: start p50 {:.2} ms p99 {:.2} ms; stdin p50 {:.2} ms p99 {:.2} ms; stop p50 {:.2} ms",
                deployment.label(),
                percentile(&run.start, 0.50),
                percentile(&run.start, 0.99),
                percentile(&run.stdin, 0.50),
                percentile(&run.stdin, 0.99),
                percentile(&run.stop, 0.50),
            );
            figures.add(&run);
        }
    }
    let ratio = |name: &str, of: &Figure, to: &Figure| {
        let mut figure = Figure::new(name, "×", Target::None);
        figure.values = of
            .values
            .iter()
            .zip(&to.values)
            .map(|(a, b)| a / b)
            .collect();
        figure
    };
    let (distributed, memory) = (&by_deployment[0].1, &by_deployment[2].1);
    let ratios = vec![
        ratio(
            "start p50: distributed ÷ all-in-one, memory",
            &distributed.start_p50,
            &memory.start_p50,
        ),
        ratio(
            "stdin p50: distributed ÷ all-in-one, memory",
            &distributed.stdin_p50,
            &memory.stdin_p50,
        ),
    ];
    let mut figures: Vec<Figure> = by_deployment
        .into_iter()
        .flat_map(|(_, figures)| figures.into_vec())
        .collect();
    figures.extend(ratios);
    figures.extend(limits.into_vec());
    Ok(Section {
        scenario: "command-latency",
        title: "End-to-end command latency, on each deployment".to_owned(),
        method: format!(
            "Each run starts each deployment afresh: **distributed** — `manman-host` on a \
             PostgreSQL database and a RabbitMQ vhost of its own, one separate `manman-worker` \
             process, as ManMan is deployed; **all-in-one, PostgreSQL** — `manman up --store \
             postgres://…` (host and worker in one process, the in-memory bus); **all-in-one, \
             memory** — `manman up --store memory`. All are this release build, and so is the \
             game server. On each, a config of the fake game server without a ready pattern (it \
             counts as `running` when spawned) is started over HTTP {rounds} times, one after \
             another; the start figure is from sending `POST /api/v1/instances` to receiving the \
             `running` status on the `/api/v1/events` stream, which carries only what the store \
             recorded. Once the server has printed its first line (a spawned process is \
             `running` before it has started up — about 40 ms for this binary, which would \
             otherwise land on the first line), {STDIN_PER_START} lines are sent with `POST \
             …/stdin`, one after another; the stdin figure is from sending the request to \
             receiving the server's echo of the line on the `/console` stream — the line's way to \
             the server and its answer's way back, so an upper bound of \"line seen by the game \
             server\". The instance is then stopped (`POST …/stop`, the server quits on its stop \
             line) until `complete` is on the stream. The raw limits are measured in the same run: \
             {}",
            RawLimits::METHOD
        ),
        figures,
        notes: vec![
            "The earlier Python system, distributed, took 329 ms (p50) / 712 ms (p99) from start \
             to running and 68 / 226 ms for stdin here (`shared/research/original-baseline.md`)."
                .to_owned(),
            "The bench client, the host, the worker, PostgreSQL, RabbitMQ and the game server \
             share the machine's 2 cores; the start includes spawning a process."
                .to_owned(),
            "A distributed start crosses: HTTP to the host; its reads for placement and the \
             reservation of the instance's id (run concurrently; the config and its game in one \
             join); one statement creating the instance with its first history row and the \
             start's record; a confirmed publish of the command; the worker's spawn (the command carries the \
             config, so the worker asks the host nothing); the worker's confirmed publishes of \
             `initializing` and `running`; the status processor's batches (each one read of the \
             senders and the entities, and one write statement); a confirmed publish of what it \
             recorded; the event hub's SSE write. A stdin line crosses two broker hops (command \
             in, console line out) beside its HTTP request."
                .to_owned(),
            "Where a distributed start's time went on 2026-11-28 (PostgreSQL statement log of \
             one run): the placement reads, the instance and the command record took about 1 ms \
             on the host; the processor's first batch of the instance began about 2 ms after the \
             command record was written and its write about 2 ms later; `running` came in a \
             second batch, recorded 3–4 ms after the first. Until this run a start waited on \
             15 PostgreSQL round trips one after another (7 on the host's way, 4 in each of the \
             processor's two batches; p50 about 11.6 ms); now 6 (2 on the host's way, 2 in each \
             batch). What is left is mostly the two cores shared by seven busy processes, and `running` waiting behind the batch of `initializing`."
                .to_owned(),
            "The worker's spawn is a large share of a start: its log (`spawned … spawned_in`) \
             shows 2–5 ms under this scenario's load, for a spawn that takes 0.35 ms when the \
             standard library can use `posix_spawn`. The worker needs a hook between fork and \
             exec (its own session, the parent-death signal, descriptors closed), so it forks, \
             and a fork here costs about 0.85 ms plus 0.12 ms for each MiB the worker has \
             touched (measured 2026-11-28: 1.3 ms at 5 MiB, 2.6 ms at 20 MiB, 6.8 ms at 50 MiB) \
             — so more in a worker running many servers. Spawning without a fork needs those \
             steps done by something small that the worker spawns: the per-server shim of \
             issue 24. Tried and not kept: holding `initializing` back until the spawn and \
             sending it with `running` (one processor batch instead of two) changed the \
             distributed start by less than this machine's noise, and the all-in-one memory \
             start lost its overlap of recording with spawning (about 0.8 ms slower)."
                .to_owned(),
            "This scenario found a 40 ms stall on the first console line after a quiet moment: \
             Nagle's algorithm held small SSE writes until the client's delayed ACK. The host now \
             sets TCP_NODELAY on every connection; stdin p99 went from 43 ms to about 3 ms."
                .to_owned(),
        ],
    })
}

async fn one_run(running: &Running, rounds: usize) -> anyhow::Result<Run> {
    let client = &running.client;
    let config = running.config("latency").await?;
    let (statuses, mut status_rx) = status_watch(running).await?;
    let mut run = Run {
        start: Vec::with_capacity(rounds),
        stdin: Vec::with_capacity(rounds * STDIN_PER_START),
        stop: Vec::with_capacity(rounds),
    };
    for round in 0..rounds {
        let sent = Instant::now();
        let id = client.start(&StartRequest::new(config)).await?.instance_id;
        let at = wait_status(&mut status_rx, id, Status::Running).await?;
        run.start.push((at - sent).as_secs_f64() * 1000.0);

        let mut console = Box::pin(client.console(id, None).await?);
        // `running` means spawned: wait until the server has started (its first line) so that
        // the lines below time ManMan's path, not the server's own start-up.
        tokio::time::timeout(STEP_TIMEOUT, console.next())
            .await
            .with_context(|| format!("{id} printed nothing within {STEP_TIMEOUT:?}"))?
            .with_context(|| format!("the console of {id} ended"))??;
        // The stdin round: one line at a time, each timed to its echo.
        for line in 0..STDIN_PER_START {
            let text = format!("ping {round}-{line}");
            let expected = format!("echo: {text}");
            let sent = Instant::now();
            client.stdin(id, &text).await?;
            tokio::time::timeout(STEP_TIMEOUT, async {
                while let Some(console_line) = console.next().await {
                    if console_line?.text == expected {
                        return Ok(());
                    }
                }
                bail!("the console of {id} ended")
            })
            .await
            .with_context(|| format!("no echo of {text:?} within {STEP_TIMEOUT:?}"))??;
            run.stdin.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        let sent = Instant::now();
        client.stop(id).await?;
        let at = wait_status(&mut status_rx, id, Status::Complete).await?;
        run.stop.push((at - sent).as_secs_f64() * 1000.0);
    }
    statuses.abort();
    Ok(run)
}

/// A status seen on the events stream: the instance, its status, when it arrived.
pub(crate) type Seen = (InstanceId, Status, Instant);

/// Follows the deployment's `/events` stream; every instance status on it, as it comes, goes
/// to the receiver. Returns once the stream is live.
pub(crate) async fn status_watch(
    running: &Running,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, mpsc::UnboundedReceiver<Seen>)> {
    let (statuses, status_rx) = mpsc::unbounded_channel::<Seen>();
    let mut events = Box::pin(running.client.events().await?);
    let watcher = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let Event::Status(report) = event
                && let Entity::Instance(id) = report.entity
                && statuses.send((id, report.status, Instant::now())).is_err()
            {
                return;
            }
        }
    });
    // The events stream is live once its first answer came: wait a moment for the queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((watcher, status_rx))
}

/// When `id` reached `status`, by the events stream.
async fn wait_status(
    statuses: &mut mpsc::UnboundedReceiver<Seen>,
    id: InstanceId,
    status: Status,
) -> anyhow::Result<Instant> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some((seen, reached, at)) = statuses.recv().await {
            if seen == id && reached == status {
                return Ok(at);
            }
        }
        bail!("the events stream ended")
    })
    .await
    .with_context(|| format!("{id} did not become {status} within {STEP_TIMEOUT:?}"))?
}

/// The `q` quantile of `values` (nearest rank).
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}
