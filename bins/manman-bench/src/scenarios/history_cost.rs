//! `history-cost`: what a start (`POST /api/v1/instances`) and a worker heartbeat cost on a host
//! whose PostgreSQL store holds 100,000 ended instances, beside a host whose store holds none —
//! in the same run, their requests interleaved, so the machine's noise falls on both alike.

use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use crate::scratch_database::ScratchDatabase;
use anyhow::{Context, bail};
use manman_core::auth::Scope;
use manman_core::bus::Bus;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::HostService;
use manman_core::id::{ConfigId, InstanceId};
use manman_core::memory::MemoryBus;
use manman_core::ports::{HostApi, StatusChange, SystemClock};
use manman_core::store::Store;
use manman_core::worker::{Heartbeat, Registered, WorkerRegistration};
use manman_http::{HostServer, HttpHostApi, ServeOptions, WorkerCredentials};
use manman_pg::{PgSettings, PgStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts and heartbeats measured per host and run.
const REQUESTS: usize = 400;

/// One host under measurement: its server, its worker, its config, an operator token.
struct Subject {
    server: HostServer,
    store: Store,
    pool: sqlx::PgPool,
    http: reqwest::Client,
    base: String,
    token: String,
    worker: HttpHostApi,
    registered: Registered,
    config: ConfigId,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let Some(admin_url) = settings.database_url.clone() else {
        bail!("history-cost needs PostgreSQL: pass --database-url or set MANMAN_TEST_DATABASE_URL");
    };
    let ended = settings.ended_instances;
    let with = format!("{} ended instances", thousands(ended));
    let mut figures = [
        Figure::new(
            "POST /api/v1/instances p50, empty store",
            "ms",
            Target::None,
        ),
        Figure::new(
            &format!("POST /api/v1/instances p50, {with}"),
            "ms",
            Target::None,
        ),
        Figure::new("start: history ÷ empty", "×", Target::AtMost(1.10)),
        Figure::new("worker heartbeat p50, empty store", "ms", Target::None),
        Figure::new(&format!("worker heartbeat p50, {with}"), "ms", Target::None),
        Figure::new("heartbeat: history ÷ empty", "×", Target::AtMost(1.10)),
    ];
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let empty_db = ScratchDatabase::create(&admin_url).await?;
        let history_db = ScratchDatabase::create(&admin_url).await?;
        let measured = one_run(&empty_db.url, &history_db.url, ended).await;
        empty_db.drop_it().await;
        history_db.drop_it().await;
        let [start_empty, start_history, beat_empty, beat_history] = measured?;
        eprintln!(
            "    start p50 {start_empty:.2} ms empty, {start_history:.2} ms with history; \
             heartbeat p50 {beat_empty:.2} ms empty, {beat_history:.2} ms with history"
        );
        for (figure, value) in figures.iter_mut().zip([
            start_empty,
            start_history,
            start_history / start_empty,
            beat_empty,
            beat_history,
            beat_history / beat_empty,
        ]) {
            figure.values.push(value);
        }
    }
    Ok(Section {
        scenario: "history-cost",
        title: format!("Start and heartbeat with {with} in the store (PostgreSQL)"),
        method: format!(
            "Two hosts in one process, each on a fresh PostgreSQL database of its own (migrated; \
             the default pool of 10 connections; the in-memory bus), each with one worker \
             registered over its API (worker credentials, `HttpHostApi`) and one config. One \
             store is otherwise empty; the other holds {with} of that worker and config \
             (`complete`, inserted in bulk, then `ANALYZE`d). {REQUESTS} times, alternating which \
             host goes first, each host gets a start (`POST /api/v1/instances` with an `operate` \
             token, answered 202; placement counts the worker's active instances) and a \
             heartbeat of its worker (`POST /api/v1/worker/heartbeat`, empty inventory; the host \
             reconciles it against the worker's active instances). Between requests, untimed, \
             the new instance is ended in the store, so each start finds the worker free. The \
             figures are the median latencies of each request, and their ratio."
        ),
        figures: figures.into_iter().collect(),
        notes: vec![
            "Before issue 18, start and every heartbeat read every instance ever created and \
             filtered in memory: their cost grew with the history. Now the store answers \
             \"active instances of a worker\", \"active instances of a config\" and \"active \
             instances per worker\" from the partial index of active instances."
                .to_owned(),
            "Client, hosts and PostgreSQL share the machine's 2 cores.".to_owned(),
        ],
    })
}

/// p50 latencies in ms: start empty, start with history, heartbeat empty, heartbeat with
/// history.
async fn one_run(empty_url: &str, history_url: &str, ended: usize) -> anyhow::Result<[f64; 4]> {
    let empty = subject(empty_url).await?;
    let history = subject(history_url).await?;
    fill_history(&history, ended).await?;
    let mut starts = [Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS)];
    let mut beats = [Vec::with_capacity(REQUESTS), Vec::with_capacity(REQUESTS)];
    let subjects = [&empty, &history];
    for i in 0..REQUESTS {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (start, beat) = one_round(subjects[which]).await?;
            starts[which].push(start);
            beats[which].push(beat);
        }
    }
    empty.server.stop().await;
    history.server.stop().await;
    Ok([
        median_ms(&mut starts[0]),
        median_ms(&mut starts[1]),
        median_ms(&mut beats[0]),
        median_ms(&mut beats[1]),
    ])
}

async fn subject(url: &str) -> anyhow::Result<Subject> {
    let pg = PgStore::connect(&PgSettings::new(url)).await?;
    pg.migrate().await?;
    let pool = pg.pool().clone();
    let store = Store::from_adapter(pg);
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await?;
    let host = HostService::new(store.clone(), bus, Arc::new(SystemClock));
    let game = host
        .catalogue()
        .create_game(&NewGameServer {
            name: "bench".into(),
            server_type: ServerType::Local {
                path: "bench".into(),
            },
        })
        .await?;
    let config = host
        .catalogue()
        .create_config(game.id, &ConfigSpec::new("bench", "server"))
        .await?;
    let server = HostServer::start(host, ServeOptions::new("127.0.0.1:0".parse()?)).await?;
    let (_, token) = server.auth().create_token("bench", Scope::Operate).await?;
    let (credential, secret) = server.auth().create_worker_credential("bench").await?;
    let base = format!("http://{}", server.addr());
    let worker = HttpHostApi::new(
        &base,
        WorkerCredentials {
            client_id: credential.client_id.clone(),
            client_secret: secret.expose().to_owned(),
        },
    );
    let registered = worker
        .register(&WorkerRegistration {
            name: "bench".into(),
            version: "1".into(),
            capacity: 4,
            labels: Default::default(),
            taken_up: Vec::new(),
        })
        .await
        .context("register the worker")?;
    Ok(Subject {
        server,
        store,
        pool,
        http: reqwest::Client::new(),
        base,
        token: token.expose().to_owned(),
        worker,
        registered,
        config: config.id,
    })
}

/// Inserts `count` ended instances of the subject's worker and config in one statement.
async fn fill_history(subject: &Subject, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO manman.instances
             (config_id, worker_id, worker_epoch, status, cause, detail, created_at, started_at,
              ready_at, ended_at, exit_code)
         SELECT $1, $2, $3, 'complete', 'user', 'stopped by bench',
                now() - make_interval(secs => n), now() - make_interval(secs => n),
                now() - make_interval(secs => n), now() - make_interval(secs => n), 0
           FROM generate_series(1, $4::bigint) AS n",
    )
    .bind(subject.config.get())
    .bind(subject.registered.worker_id.get())
    .bind(subject.registered.epoch)
    .bind(i64::try_from(count)?)
    .execute(&subject.pool)
    .await
    .context("insert the history")?;
    sqlx::query("ANALYZE manman.instances")
        .execute(&subject.pool)
        .await?;
    eprintln!(
        "    {count} ended instances inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A timed start and a timed heartbeat; the started instance is ended (untimed) in between.
async fn one_round(subject: &Subject) -> anyhow::Result<(Duration, Duration)> {
    let sent = Instant::now();
    let response = subject
        .http
        .post(format!("{}/api/v1/instances", subject.base))
        .bearer_auth(&subject.token)
        .json(&serde_json::json!({ "config_id": subject.config }))
        .send()
        .await
        .context("start")?;
    let status = response.status();
    let body = response.bytes().await?;
    let start = sent.elapsed();
    if status != reqwest::StatusCode::ACCEPTED {
        bail!(
            "a start answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let started: serde_json::Value = serde_json::from_slice(&body)?;
    let id = started["instance_id"]
        .as_i64()
        .context("no instance_id in the answer")?;
    let change = StatusChange::undelivered(
        uuid::Uuid::new_v4(),
        InstanceId(id),
        "ended by the bench".to_owned(),
        chrono::Utc::now(),
    );
    subject.store.status.apply_status(&change).await?;

    let sent = Instant::now();
    subject
        .worker
        .heartbeat(&Heartbeat {
            worker_id: subject.registered.worker_id,
            epoch: subject.registered.epoch,
            inventory: Vec::new(),
        })
        .await
        .context("heartbeat")?;
    Ok((start, sent.elapsed()))
}

fn median_ms(values: &mut [Duration]) -> f64 {
    values.sort_unstable();
    values
        .get(values.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
