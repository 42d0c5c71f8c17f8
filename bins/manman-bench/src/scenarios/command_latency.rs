//! `command-latency`: end to end through the product — an HTTP start until the host records
//! `running`, and an HTTP stdin line until the game server's answer to it is on the console.

use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::up_process::UpProcess;
use anyhow::{Context, bail};
use futures::StreamExt;
use manman_core::config::{ConfigSpec, StopPolicy};
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
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let rounds = settings.latency_rounds;
    let mut figures = [
        ("HTTP start → `running` recorded, p50", Target::AtMost(20.0)),
        ("HTTP start → `running` recorded, p99", Target::AtMost(50.0)),
        (
            "HTTP stdin → the server's answer on the console, p50",
            Target::AtMost(2.0),
        ),
        (
            "HTTP stdin → the server's answer on the console, p99",
            Target::AtMost(10.0),
        ),
    ]
    .map(|(name, target)| Figure::new(name, "ms", target));
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let run = one_run(rounds).await?;
        let (start_p50, start_p99) = (percentile(&run.start, 0.50), percentile(&run.start, 0.99));
        let (stdin_p50, stdin_p99) = (percentile(&run.stdin, 0.50), percentile(&run.stdin, 0.99));
        eprintln!(
            "    start p50 {start_p50:.2} ms p99 {start_p99:.2} ms; stdin p50 {stdin_p50:.2} ms p99 {stdin_p99:.2} ms"
        );
        for (figure, value) in figures
            .iter_mut()
            .zip([start_p50, start_p99, stdin_p50, stdin_p99])
        {
            figure.values.push(value);
        }
    }
    Ok(Section {
        scenario: "command-latency",
        title: "End-to-end command latency".to_owned(),
        method: format!(
            "`manman up` runs as its own process (host and worker together, in-memory store and \
             bus). A config of the demo game without a ready pattern (the fake game server counts \
             as `running` when spawned) is started over HTTP {rounds} times, one after another; the \
             figure is from sending `POST /api/v1/instances` to receiving the `running` status on \
             the `/api/v1/events` stream, which the host sends once the status processor has \
             recorded it. Once the server has printed its first line (it is reading its input: a \
             spawned process is `running` before it has started up — about 40 ms for this \
             binary, which would otherwise land on the first line), {STDIN_PER_START} lines are \
             sent with `POST …/stdin`, one after another; the figure is from sending the request to receiving the server's echo of the \
             line on the `/console` stream — the line's way to the server and its answer's way \
             back, so an upper bound of \"line seen by the game server\". The instance is then \
             stopped before the next start."
        ),
        figures: figures.into_iter().collect(),
        notes: vec![
            "The earlier Python system took 329 ms (p50) / 712 ms (p99) from start to running and \
             68 / 226 ms for stdin here (`shared/research/original-baseline.md`)."
                .to_owned(),
            "The bench client, the host, the worker and the game server share the machine's 2 \
             cores; the start includes spawning a process."
                .to_owned(),
            "This scenario found a 40 ms stall on the first console line after a quiet moment: \
             Nagle's algorithm held small SSE writes until the client's delayed ACK. The host now \
             sets TCP_NODELAY on every connection; stdin p99 went from 43 ms to about 3 ms."
                .to_owned(),
        ],
    })
}

async fn one_run(rounds: usize) -> anyhow::Result<Run> {
    let mut up = UpProcess::start(4).await?;
    let client = up.client.clone();
    let game = client
        .list_games()
        .await?
        .into_iter()
        .find(|g| g.name == "demo")
        .context("no demo game")?;
    let mut spec = ConfigSpec::new("latency", "fake-game-server");
    spec.stop = StopPolicy {
        stdin_line: Some("quit".to_owned()),
        timeout_s: 10,
        ..StopPolicy::default()
    };
    let config = client.create_config(game.id, &spec).await?;

    // Status events, as they come, to whoever waits for them.
    let (statuses, mut status_rx) = mpsc::unbounded_channel::<(InstanceId, Status, Instant)>();
    let mut events = Box::pin(client.events().await?);
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

    let mut run = Run {
        start: Vec::with_capacity(rounds),
        stdin: Vec::with_capacity(rounds),
    };
    for round in 0..rounds {
        let sent = Instant::now();
        let id = client
            .start(&StartRequest::new(config.id))
            .await?
            .instance_id;
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
        client.stop(id).await?;
        wait_status(&mut status_rx, id, Status::Complete).await?;
    }
    watcher.abort();
    up.terminate()?;
    up.wait(STEP_TIMEOUT).await?;
    Ok(run)
}

/// When `id` reached `status`, by the events stream.
async fn wait_status(
    statuses: &mut mpsc::UnboundedReceiver<(InstanceId, Status, Instant)>,
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
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}
