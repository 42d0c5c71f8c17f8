//! `api-reads`: the host's read API on PostgreSQL under concurrent load — a page of instances
//! and one instance — beside a static route of the same server, in the same run.

use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::scratch_database::ScratchDatabase;
use anyhow::{Context, bail};
use manman_core::auth::Scope;
use manman_core::bus::Bus;
use manman_core::host::HostService;
use manman_core::memory::MemoryBus;
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_http::{HostServer, ServeOptions};
use manman_pg::{PgSettings, PgStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Instances in the database.
const INSTANCES: usize = 1_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// The page size of the list.
const PAGE: usize = 100;

/// Requests per second and latency percentiles of one route.
struct Load {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let Some(admin_url) = settings.database_url.clone() else {
        bail!("api-reads needs PostgreSQL: pass --database-url or set MANMAN_TEST_DATABASE_URL");
    };
    let requests = settings.api_requests;
    let mut figures = [
        ("GET /api/v1/instances/{id}", Some((8_000.0, 10.0))),
        ("GET /api/v1/instances?limit=100 (1,000 instances)", None),
        ("GET /healthz (static, same server)", None),
    ]
    .map(|(route, target)| {
        let (rps_target, p99_target) = match target {
            Some((rps, p99)) => (Target::AtLeast(rps), Target::AtMost(p99)),
            None => (Target::None, Target::None),
        };
        [
            Figure::new(&format!("{route}: requests/s"), "req/s", rps_target),
            Figure::new(&format!("{route}: p50"), "ms", Target::None),
            Figure::new(&format!("{route}: p99"), "ms", p99_target),
        ]
    });
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let database = ScratchDatabase::create(&admin_url).await?;
        let loads = one_run(&database.url, requests).await;
        database.drop_it().await;
        for (route, load) in figures.iter_mut().zip(loads?) {
            eprintln!(
                "    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms — {}",
                load.per_second, load.p50_ms, load.p99_ms, route[0].name
            );
            route[0].values.push(load.per_second);
            route[1].values.push(load.p50_ms);
            route[2].values.push(load.p99_ms);
        }
    }
    Ok(Section {
        scenario: "api-reads",
        title: "Host API reads on PostgreSQL".to_owned(),
        method: format!(
            "A fresh database per run, migrated, holding {INSTANCES} instances. The host's API \
             (`HostServer`, the default pool of 10 connections, the in-memory bus) listens on \
             loopback; {CONCURRENCY} client tasks in the same process send {requests} requests \
             per route back to back over kept-alive connections, each with a `read` bearer token, \
             and every answer is read and checked to be 200. Routes: one instance by id (ids \
             spread over all {INSTANCES}), a page of {PAGE} instances, and `/healthz` (no store, \
             no token) as the server's own ceiling."
        ),
        figures: figures.into_iter().flatten().collect(),
        notes: vec![
            "The earlier Python system served about 290 req/s here, with a p99 near one second \
             (`shared/research/original-baseline.md`)."
                .to_owned(),
            "Client, server and PostgreSQL share the machine's 2 cores: every figure is a floor \
             for a host with a machine of its own."
                .to_owned(),
        ],
    })
}

async fn one_run(url: &str, requests: usize) -> anyhow::Result<[Load; 3]> {
    let pg = PgStore::connect(&PgSettings::new(url)).await?;
    pg.migrate().await?;
    let store = Store::from_adapter(pg);
    crate::fixture::instances(&store, INSTANCES).await?;
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await?;
    let host = HostService::new(store, bus, Arc::new(SystemClock));
    let server = HostServer::start(host, ServeOptions::new("127.0.0.1:0".parse()?)).await?;
    let (_, token) = server.auth().create_token("bench", Scope::Read).await?;
    let base = format!("http://{}", server.addr());
    let token = token.expose().to_owned();
    let one = load(
        requests,
        |i| format!("{base}/api/v1/instances/{}", 1 + i % INSTANCES),
        Some(&token),
    )
    .await;
    let page = load(
        requests,
        |_| format!("{base}/api/v1/instances?limit={PAGE}"),
        Some(&token),
    )
    .await;
    let healthz = load(requests, |_| format!("{base}/healthz"), None).await;
    server.stop().await;
    Ok([one?, page?, healthz?])
}

/// Sends `requests` GETs of `url(i)` from [`CONCURRENCY`] tasks; every answer must be 200.
async fn load(
    requests: usize,
    url: impl Fn(usize) -> String,
    token: Option<&str>,
) -> anyhow::Result<Load> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let urls: Vec<String> = (0..requests).map(&url).collect();
    let urls = Arc::new(urls);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        let token = token.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(url) = urls.get(i) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let sent = Instant::now();
                let mut request = client.get(url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.context("request")?;
                let status = response.status();
                response.bytes().await.context("body")?;
                if status != reqwest::StatusCode::OK {
                    bail!("{url} answered {status}");
                }
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(requests);
    for task in tasks {
        latencies.extend(task.await.context("a load task panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Load {
        per_second: requests as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}
