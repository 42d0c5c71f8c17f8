//! Host and worker on real services: the truth in PostgreSQL, RabbitMQ between them, the worker
//! reaching the host's HTTP API with its own credentials — all in this program, as
//! `manman-host` and `manman-worker` are on separate machines. The services come from
//! `MANMAN_POSTGRES_URL` and `MANMAN_RABBITMQ_URL`.

use anyhow::{Context, bail};
use manman_core::bus::Bus;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::{HostService, StartRequest};
use manman_core::ports::SystemClock;
use manman_core::process::TokioProcessRunner;
use manman_core::status::Status;
use manman_core::store::Store;
use manman_core::worker_service::{LocalInstaller, WorkerService, WorkerSettings};
use manman_http::{HostServer, HttpHostApi, ServeOptions, WorkerCredentials};
use manman_pg::{PgSettings, PgStore};
use manman_rabbit::{RabbitBus, RabbitSettings};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A game server that is ready at once and ends at its first line of input.
const SERVER: &str = "#!/bin/sh\necho ready\nread -r line\necho \"bye after: $line\"\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (Ok(postgres_url), Ok(rabbitmq_url)) = (
        std::env::var("MANMAN_POSTGRES_URL"),
        std::env::var("MANMAN_RABBITMQ_URL"),
    ) else {
        eprintln!("set MANMAN_POSTGRES_URL (postgres://…) and MANMAN_RABBITMQ_URL (amqp://…)");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir()?;
    let game_dir = dir.path().join("games/once");
    std::fs::create_dir_all(&game_dir)?;
    std::fs::write(game_dir.join("server.sh"), SERVER)?;
    std::fs::set_permissions(
        game_dir.join("server.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;

    // The host: PostgreSQL, RabbitMQ, the HTTP API and its background services.
    let pg = PgStore::connect(&PgSettings::new(&postgres_url))
        .await
        .context("MANMAN_POSTGRES_URL")?;
    pg.migrate().await?;
    let rabbit = RabbitBus::connect(
        &RabbitSettings::new(&rabbitmq_url).connection_name("manman example rabbit-pg"),
    )
    .await
    .context("MANMAN_RABBITMQ_URL")?;
    let bus = Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit.clone()));
    bus.declare().await?;
    let host = HostService::new(Store::from_adapter(pg), bus.clone(), Arc::new(SystemClock));
    let server = HostServer::start(host.clone(), ServeOptions::new("127.0.0.1:0".parse()?)).await?;
    let url = format!("http://{}", server.addr());
    println!("host API at {url}");

    // The worker: the host's API over HTTP with credentials, commands and events over RabbitMQ.
    let (credential, secret) = server.auth().create_worker_credential("example").await?;
    let api = HttpHostApi::new(
        &url,
        WorkerCredentials {
            client_id: credential.client_id,
            client_secret: secret.expose().to_owned(),
        },
    );
    let worker = WorkerService::new(
        WorkerSettings::new("example", dir.path()),
        Arc::new(api),
        bus,
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        Arc::new(SystemClock),
    );
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));

    let game = host
        .catalogue()
        .create_game(&NewGameServer {
            name: format!("once-{}", std::process::id()),
            server_type: ServerType::Local {
                path: "games/once".into(),
            },
        })
        .await?;
    let mut spec = ConfigSpec::new("main", "server.sh");
    spec.ready_pattern = Some("^ready$".into());
    spec.stop.stdin_line = Some("quit".into());
    let config = host.catalogue().create_config(game.id, &spec).await?;
    let started = loop {
        match host
            .instances()
            .start(&StartRequest::new(config.id), "example")
            .await
        {
            Ok(started) => break started,
            Err(e) if e.to_string().contains("no worker") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let id = started.instance_id;
    for wanted in [Status::Running, Status::Complete] {
        if wanted == Status::Complete {
            host.instances().stop(id, "example").await?;
        }
        let mut seen = Status::Created;
        for _ in 0..500 {
            seen = host.instances().get_instance(id).await?.status;
            if seen == wanted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if seen != wanted {
            bail!("{id} is {seen}, not {wanted}, after 10 s");
        }
        println!("{id} is {wanted} (recorded in PostgreSQL)");
    }

    worker_stop.cancel();
    worker_task.await.context("the worker task")??;
    server.stop().await;
    rabbit.close().await;
    Ok(())
}
