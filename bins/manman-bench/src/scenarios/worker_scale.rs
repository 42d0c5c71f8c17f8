//! `worker-1000`: one worker supervising 1,000 fake game servers.

use crate::deployment::fake_server_spec;
use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::up_process::{UpProcess, alive};
use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use manman_core::host::StartRequest;
use manman_core::instance::InstanceFilter;
use manman_core::status::Status;
use manman_http::Client;
use std::time::{Duration, Instant};

/// Requests in flight while creating configs and starting servers.
const CONCURRENCY: usize = 16;

struct Run {
    start_all_s: f64,
    rss_mib: f64,
    idle_cpu_pct: f64,
    stop_all_s: f64,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let n = settings.servers;
    let mut start = Figure::new(
        &format!("start {n} servers (HTTP start → all `running`)"),
        "s",
        Target::None,
    );
    let mut rss = Figure::new(
        &format!("worker RSS with {n} running"),
        "MiB",
        Target::AtMost(100.0),
    );
    let mut cpu = Figure::new(
        &format!("worker CPU while {n} idle for {} s", settings.idle_secs),
        "% of a core",
        Target::AtMost(2.0),
    );
    let mut stop = Figure::new(
        &format!("SIGTERM → all {n} stopped, worker exited"),
        "s",
        Target::AtMost(10.0),
    );
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let r = one_run(n, Duration::from_secs(settings.idle_secs)).await?;
        eprintln!(
            "    start {:.2} s, RSS {:.1} MiB, idle CPU {:.2} %, stop {:.2} s",
            r.start_all_s, r.rss_mib, r.idle_cpu_pct, r.stop_all_s
        );
        start.values.push(r.start_all_s);
        rss.values.push(r.rss_mib);
        cpu.values.push(r.idle_cpu_pct);
        stop.values.push(r.stop_all_s);
    }
    Ok(Section {
        scenario: "worker-1000",
        title: format!("Worker scale: one worker, {n} game servers"),
        method: format!(
            "`manman up` runs as its own process (host and worker together, in-memory store and bus) \
             with capacity {n}. The bench creates {n} configs of the demo game (the fake \
             game server, ready at spawn, stop line `quit`), starts them all over HTTP ({CONCURRENCY} \
             requests in flight) and waits until the API lists all {n} `running`. Then it reads the \
             process's `VmRSS`, and its CPU (utime + stime from `/proc/<pid>/stat`) over {} s of idle. \
             Finally it sends SIGTERM and times until every server process is gone and the process has \
             exited. RSS and CPU are those of host and worker together, so the worker's alone is lower.",
            settings.idle_secs
        ),
        figures: vec![start, rss, cpu, stop],
        notes: vec![
            "The earlier Python system, on this machine: a worker with 6 servers (its thread pool caps it \
             at 6; later starts stay `created` for ever) used 92–96 MB RSS and 17–37 % of a core; stopping \
             50 servers took 2.2 s and 100 never completed (`shared/research/original-baseline.md`)."
                .to_owned(),
        ],
    })
}

async fn one_run(n: usize, idle: Duration) -> anyhow::Result<Run> {
    let mut up = UpProcess::start(n, "memory").await?;
    let client = up.client.clone();
    let game = up.demo_game().await?;
    let configs: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let spec = fake_server_spec(format!("bench-{i}"));
                client.create_config(game, &spec).await.map(|c| c.id)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;

    let started = Instant::now();
    futures::stream::iter(configs)
        .map(|config_id| {
            let client = client.clone();
            async move { client.start(&StartRequest::new(config_id)).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    wait_running(&client, n, Duration::from_secs(300)).await?;
    let start_all_s = started.elapsed().as_secs_f64();

    let rss_mib = up.rss_mib()?;
    let cpu_before = up.cpu_seconds()?;
    tokio::time::sleep(idle).await;
    let idle_cpu_pct = (up.cpu_seconds()? - cpu_before) / idle.as_secs_f64() * 100.0;

    let servers = up.children();
    if servers.len() != n {
        bail!(
            "expected {n} server processes under manman up, found {}",
            servers.len()
        );
    }
    let stopping = Instant::now();
    up.terminate()?;
    let code = up.wait(Duration::from_secs(120)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers.iter().any(|p| alive(*p)) {
        if Instant::now() > deadline {
            bail!("server processes outlived the worker");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop_all_s = stopping.elapsed().as_secs_f64();
    if code != Some(0) {
        bail!("manman up exited with {code:?} after SIGTERM");
    }
    Ok(Run {
        start_all_s,
        rss_mib,
        idle_cpu_pct,
        stop_all_s,
    })
}

async fn wait_running(client: &Client, n: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut count = 0;
        let mut filter = InstanceFilter {
            status: Some(Status::Running),
            limit: Some(InstanceFilter::MAX_LIMIT),
            ..InstanceFilter::default()
        };
        loop {
            let page = client.list_instances(&filter).await?;
            count += page.len();
            match page.last() {
                Some(last) if page.len() == InstanceFilter::MAX_LIMIT as usize => {
                    filter.after = Some(last.id)
                }
                _ => break,
            }
        }
        if count >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {count} of {n} servers running after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
