//! A ManMan worker inside your own tokio program. The host runs beside it on the in-memory bus
//! and store (for machines of their own, give the worker an `HttpHostApi` and a `RabbitBus`).
//! The game is a small shell script: it says it is ready and echoes what it is sent.

use anyhow::{Context, bail};
use manman_core::bus::Bus;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::{HostService, LocalHostApi, StartRequest, StatusProcessor};
use manman_core::id::InstanceId;
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::process::TokioProcessRunner;
use manman_core::status::{Entity, Status};
use manman_core::store::Store;
use manman_core::worker_service::{LocalInstaller, WorkerService, WorkerSettings};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SERVER: &str = "#!/bin/sh\n\
echo 'echo server: ready'\n\
while read -r line; do\n\
  [ \"$line\" = quit ] && exit 0\n\
  echo \"echo: $line\"\n\
done\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let game_dir = dir.path().join("games/echo");
    std::fs::create_dir_all(&game_dir)?;
    let server = game_dir.join("server.sh");
    std::fs::write(&server, SERVER)?;
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755))?;

    // The host: the truth (a store), the bus, and the status processor that records what
    // workers report.
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare().await?;
    let clock = Arc::new(SystemClock);
    // The worker below runs in this process: the host refuses to shut it down through the API.
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus.clone(),
        clock.clone(),
    )
    .with_embedded_worker("embedded");
    let shutdown = CancellationToken::new();
    let processor = StatusProcessor::new(host.store().clone(), bus.clone(), clock.clone());
    let processing = tokio::spawn({
        let token = shutdown.clone();
        async move { processor.run(token).await }
    });

    // The worker, in this program.
    let worker = WorkerService::new(
        WorkerSettings::new("embedded", dir.path()),
        Arc::new(LocalHostApi::new(host.clone())),
        bus,
        Arc::new(LocalInstaller),
        Arc::new(TokioProcessRunner::new()),
        clock,
    );
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));

    // A game and how to run it, then a run of it.
    let game = host
        .catalogue()
        .create_game(&NewGameServer {
            name: "echo".into(),
            server_type: ServerType::Local {
                path: "games/echo".into(),
            },
        })
        .await?;
    let mut spec = ConfigSpec::new("main", "server.sh");
    spec.ready_pattern = Some("server: ready".into());
    spec.stop.stdin_line = Some("quit".into());
    let config = host.catalogue().create_config(game.id, &spec).await?;
    let id = loop {
        // The worker registers in the background: a start before that finds no worker.
        match host
            .instances()
            .start(&StartRequest::new(config.id), "example")
            .await
        {
            Ok(started) => break started.instance_id,
            Err(e) if e.to_string().contains("no worker") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    wait_for(&host, id, Status::Running).await?;
    println!("{id} is running");
    host.instances()
        .stdin(id, "hello from my program", "example")
        .await?;
    host.instances().stop(id, "example").await?;
    let ended = wait_for(&host, id, Status::Complete).await?;
    println!("{id} is complete (exit code {:?})", ended.exit_code);
    for event in host
        .instances()
        .status_history(Entity::Instance(id), None, 100)
        .await?
    {
        println!("  {} ({:?})", event.status, event.cause);
    }

    worker_stop.cancel();
    worker_task.await.context("the worker task")??;
    shutdown.cancel();
    processing.await.context("the status processor")??;
    Ok(())
}

/// Waits (up to 10 s) until the host records `status` for the instance.
async fn wait_for(
    host: &HostService,
    id: InstanceId,
    status: Status,
) -> anyhow::Result<manman_core::instance::Instance> {
    for _ in 0..1_000 {
        let instance = host.instances().get_instance(id).await?;
        if instance.status == status {
            return Ok(instance);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("{id} did not become {status} within 10 s")
}
