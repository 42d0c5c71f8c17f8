//! `console-fanout`: the host's memory with hundreds of console watchers over HTTP on one
//! instance printing 1,000 lines a second, and whether every watcher either keeps up or is told
//! it lagged.

use crate::deployment::fake_server_spec;
use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::up_process::UpProcess;
use anyhow::bail;
use manman_core::auth::Scope;
use manman_core::host::StartRequest;
use manman_core::status::Status;
use manman_http::{NewToken, SseParser};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Lines the game server prints a second.
const LINES_PER_SEC: u32 = 1_000;
/// Every this many watchers, one reads slowly.
const SLOW_EVERY: usize = 10;
/// How fast a slow watcher reads, in lines a second.
const SLOW_LINES_PER_SEC: u64 = 100;
/// How long the idle host is sampled before the watchers come.
const IDLE_SAMPLE: Duration = Duration::from_secs(3);
/// How often RSS is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// What one watcher saw.
#[derive(Debug, Default)]
struct Watched {
    slow: bool,
    lines: u64,
    lagged_events: u64,
    missed: u64,
    /// Jumps in the line numbers that no `lagged` event announced.
    silent_gaps: u64,
    /// The first and the last line number received.
    first: Option<u64>,
    last: Option<u64>,
    error: Option<String>,
}

/// The figures of one run.
struct Run {
    idle_mib: f64,
    peak_mib: f64,
    cpu_pct: f64,
    console_per_sec: f64,
    lines_per_sec: f64,
    kept_up: usize,
    lagged: usize,
    lagged_events: u64,
    missed: u64,
    silent: usize,
    failed: usize,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let watchers = settings.fanout_watchers;
    let window = Duration::from_secs(settings.fanout_secs);
    let mut figures = vec![
        Figure::new(
            "host RSS, idle (the instance printing, nobody watching)",
            "MiB",
            Target::None,
        ),
        Figure::new(
            &format!("host RSS with {watchers} watchers (peak)"),
            "MiB",
            Target::None,
        ),
        Figure::new(
            &format!("host RSS increase with {watchers} watchers"),
            "MiB",
            Target::AtMost(100.0),
        ),
        Figure::new(
            &format!("host CPU with {watchers} watchers"),
            "% of a core",
            Target::None,
        ),
        Figure::new(
            "console pace at the host (line numbers a second; the server prints 1000)",
            "lines/s",
            Target::None,
        ),
        Figure::new(
            "console lines delivered, all watchers",
            "lines/s",
            Target::None,
        ),
        Figure::new("watchers never told they lagged", "watchers", Target::None),
        Figure::new("watchers told they lagged", "watchers", Target::None),
        Figure::new("`lagged` events", "events", Target::None),
        Figure::new(
            "lines watchers were told they missed",
            "lines",
            Target::None,
        ),
        Figure::new(
            "watchers with a silent gap, or whose stream failed",
            "watchers",
            Target::AtMost(0.0),
        ),
    ];
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let run = one_run(watchers, window).await?;
        eprintln!(
            "    RSS idle {:.1} MiB, peak {:.1} MiB (+{:.1}); CPU {:.0} %; console {:.0} lines/s, {:.0} lines/s delivered; kept up {}, lagged {} ({} events, {} lines); silent gaps {}, failed {}",
            run.idle_mib,
            run.peak_mib,
            run.peak_mib - run.idle_mib,
            run.cpu_pct,
            run.console_per_sec,
            run.lines_per_sec,
            run.kept_up,
            run.lagged,
            run.lagged_events,
            run.missed,
            run.silent,
            run.failed
        );
        for (figure, value) in figures.iter_mut().zip([
            run.idle_mib,
            run.peak_mib,
            run.peak_mib - run.idle_mib,
            run.cpu_pct,
            run.console_per_sec,
            run.lines_per_sec,
            run.kept_up as f64,
            run.lagged as f64,
            run.lagged_events as f64,
            run.missed as f64,
            (run.silent + run.failed) as f64,
        ]) {
            figure.values.push(value);
        }
    }
    let slow = watchers.div_ceil(SLOW_EVERY);
    Ok(Section {
        scenario: "console-fanout",
        title: format!("Console fan-out: {watchers} watchers of one instance"),
        method: format!(
            "`manman up` runs as its own process (host and worker together, its default SQLite \
             store, the in-memory bus). One fake game server prints {LINES_PER_SEC} numbered lines a second \
             (`--lines-per-sec`, about 80 bytes each). Once it has run {idle} s (its 1,000-line \
             backlog full), the host's `VmRSS` is sampled every {every} ms for {idle} s: the \
             idle figure is the highest sample. Then {watchers} watchers open \
             `GET /api/v1/instances/{{id}}/console` over HTTP (one connection each, read tokens \
             of 16 streams each, the default per-token cap), each from the start of the backlog, \
             and read for {secs} s; one in {SLOW_EVERY} ({slow}) reads only \
             {SLOW_LINES_PER_SEC} lines a second. RSS is sampled throughout: the figure is the \
             highest sample, and the CPU figure is the host's user and system time over the window; the \
             console's own pace at the host is read from the line numbers the watchers received. Each watcher checks that the line numbers it receives follow one \
             another, or that a `lagged` event announced exactly the lines between; a jump \
             without one is a silent gap.",
            idle = IDLE_SAMPLE.as_secs(),
            every = SAMPLE_EVERY.as_millis(),
            secs = window.as_secs(),
        ),
        figures,
        notes: vec![
            "Before this scenario, each watcher copied the whole backlog when it connected and \
             encoded every line itself; one that fell behind the live buffer got a bare count, \
             and lines that never reached the host were skipped silently. Issue 14 reported \
             700 MB with 100 slow watchers (not measured here). Now each line is kept once and \
             encoded once, a watcher holds only its place in the backlog and at most 64 lines, \
             and every gap is a `lagged` event."
                .to_owned(),
            "The bench's readers, the host, the worker and the game server share the machine's \
             2 cores (with other builds running beside them at the time of this measure): the \
             game server's output is held up (its pace at the host falls below 1,000 lines a \
             second), the worker drops live lines it cannot publish in time (its log keeps \
             them), and the host cannot serve every line to every watcher. Every one of those \
             gaps reached the watchers as a `lagged` event."
                .to_owned(),
            "The slow readers are mostly among the watchers never told they lagged: at 100 \
             lines a second they were still reading what the kernel's socket buffers (several \
             MB on loopback) held from the first seconds, before the gaps. Those buffers are \
             not the host's memory; the host holds at most 64 lines per watcher."
                .to_owned(),
            "Opening the 500 streams at once queues their instance look-ups on `manman up`'s \
             SQLite pool for up to about 2.5 s (sqlx warns); none was refused."
                .to_owned(),
        ],
    })
}

async fn one_run(watchers: usize, window: Duration) -> anyhow::Result<Run> {
    let mut up = UpProcess::start(4, "sqlite").await?;
    let client = up.client.clone();
    let game = up.demo_game().await?;
    let mut spec = fake_server_spec("fanout");
    spec.args = vec!["--lines-per-sec".to_owned(), LINES_PER_SEC.to_string()];
    let config = client.create_config(game, &spec).await?;
    let id = client
        .start(&StartRequest::new(config.id))
        .await?
        .instance_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get_instance(id).await?.status != Status::Running {
        if Instant::now() > deadline {
            bail!("{id} was not running within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The backlog fills in a second; then the host is sampled with nobody watching.
    tokio::time::sleep(IDLE_SAMPLE).await;
    let idle_mib = peak_rss(&up, IDLE_SAMPLE).await?;

    // Read tokens of 16 streams each (the default per-token cap).
    let mut tokens = Vec::new();
    for n in 0..watchers.div_ceil(manman_http::DEFAULT_STREAMS_PER_TOKEN) {
        let created = client
            .create_token(&NewToken {
                name: format!("fanout-{n}"),
                scope: Scope::Read,
            })
            .await?;
        tokens.push(created.secret);
    }
    let url = format!(
        "{}/api/v1/instances/{}/console",
        client.base_url(),
        id.get()
    );
    let http = reqwest::Client::new();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let cpu_before = up.cpu_seconds()?;
    let tasks: Vec<_> = (0..watchers)
        .map(|n| {
            let request = http
                .get(&url)
                .bearer_auth(&tokens[n / manman_http::DEFAULT_STREAMS_PER_TOKEN])
                .header("accept", "text/event-stream");
            tokio::spawn(watch(request, n % SLOW_EVERY == 0, stop.clone()))
        })
        .collect();
    let peak_mib = peak_rss(&up, window).await?;
    stop.cancel();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_pct = (up.cpu_seconds()? - cpu_before) / elapsed * 100.0;
    let mut seen = Vec::with_capacity(watchers);
    for task in tasks {
        seen.push(task.await?);
    }
    up.terminate()?;
    up.wait(Duration::from_secs(20)).await?;

    if let Some(error) = seen.iter().find_map(|w| w.error.as_ref()) {
        eprintln!("    a watcher failed: {error}");
    }
    let lagged: Vec<&Watched> = seen.iter().filter(|w| w.lagged_events > 0).collect();
    let slow_lagged = lagged.iter().filter(|w| w.slow).count();
    eprintln!(
        "    of the lagged, {slow_lagged} were slow readers; median lines per fast watcher {}",
        median(seen.iter().filter(|w| !w.slow).map(|w| w.lines))
    );
    Ok(Run {
        idle_mib,
        peak_mib,
        cpu_pct,
        console_per_sec: console_rate(&seen, elapsed),
        lines_per_sec: seen.iter().map(|w| w.lines).sum::<u64>() as f64 / elapsed,
        kept_up: seen
            .iter()
            .filter(|w| w.lagged_events == 0 && w.error.is_none())
            .count(),
        lagged: lagged.len(),
        lagged_events: seen.iter().map(|w| w.lagged_events).sum(),
        missed: seen.iter().map(|w| w.missed).sum(),
        silent: seen.iter().filter(|w| w.silent_gaps > 0).count(),
        failed: seen.iter().filter(|w| w.error.is_some()).count(),
    })
}

/// The highest RSS of `up` over `during`.
async fn peak_rss(up: &UpProcess, during: Duration) -> anyhow::Result<f64> {
    let end = Instant::now() + during;
    let mut peak = up.rss_mib()?;
    while Instant::now() < end {
        tokio::time::sleep(SAMPLE_EVERY).await;
        peak = peak.max(up.rss_mib()?);
    }
    Ok(peak)
}

/// How fast the console moved at the host during the window: every watcher starts at the
/// oldest of the 1,000 kept lines, so the newest then was the lowest first line + 999.
fn console_rate(seen: &[Watched], elapsed: f64) -> f64 {
    let start = seen.iter().filter_map(|w| w.first).min().map(|s| s + 999);
    let end = seen.iter().filter_map(|w| w.last).max();
    match (start, end) {
        (Some(start), Some(end)) => end.saturating_sub(start) as f64 / elapsed,
        _ => 0.0,
    }
}

fn median(values: impl Iterator<Item = u64>) -> u64 {
    let mut values: Vec<u64> = values.collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Follows one console until `stop`, checking that every jump in the numbers was announced.
async fn watch(request: reqwest::RequestBuilder, slow: bool, stop: CancellationToken) -> Watched {
    let mut seen = Watched {
        slow,
        ..Watched::default()
    };
    let mut response = match request.send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            seen.error = Some(format!("answered {}", response.status()));
            return seen;
        }
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    let mut parser = SseParser::default();
    // The number of the last line received, or announced as missed.
    let mut last: Option<u64> = None;
    let started = Instant::now();
    loop {
        let chunk = tokio::select! {
            () = stop.cancelled() => return seen,
            chunk = response.chunk() => chunk,
        };
        match chunk {
            Ok(Some(bytes)) => parser.push(&bytes),
            Ok(None) => {
                seen.error = Some("the stream ended".to_owned());
                return seen;
            }
            Err(e) => {
                seen.error = Some(e.to_string());
                return seen;
            }
        }
        while let Some(event) = parser.next_event() {
            match event.event.as_str() {
                "line" => {
                    // The number is the event's id (the data, the line as JSON, is not decoded:
                    // the bench's readers share the host's cores).
                    let Some(seq) = event.id.as_deref().and_then(|id| id.parse::<u64>().ok())
                    else {
                        seen.error = Some(format!("a line without a number: {event:?}"));
                        return seen;
                    };
                    if last.is_some_and(|last| seq != last + 1) {
                        seen.silent_gaps += 1;
                    }
                    last = Some(seq);
                    seen.first.get_or_insert(seq);
                    seen.last = Some(seq);
                    seen.lines += 1;
                }
                "lagged" => {
                    let missed = serde_json::from_str::<serde_json::Value>(&event.data)
                        .ok()
                        .and_then(|v| v["missed"].as_u64())
                        .unwrap_or(0);
                    let last_missed = event.id.as_deref().and_then(|id| id.parse::<u64>().ok());
                    seen.lagged_events += 1;
                    seen.missed += missed;
                    // The announcement must cover exactly the lines after the last one seen.
                    match (last, last_missed) {
                        (Some(last_seen), Some(last_missed))
                            if last_missed == last_seen + missed => {}
                        (None, Some(_)) => {}
                        _ => seen.silent_gaps += 1,
                    }
                    last = last_missed.or(last);
                }
                _ => {}
            }
        }
        if slow {
            // Read no faster than SLOW_LINES_PER_SEC.
            let due = Duration::from_secs_f64(seen.lines as f64 / SLOW_LINES_PER_SEC as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    () = stop.cancelled() => return seen,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
