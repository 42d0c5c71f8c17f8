//! `manman up`: host and worker in one process on the in-memory adapters, the API on a local
//! socket, and a `demo` game ready to start.

use crate::demo;
use anyhow::Context;
use manman_core::bus::Bus;
use manman_core::host::{HostService, LocalHostApi};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::process::TokioProcessRunner;
use manman_core::store::Store;
use manman_core::worker_service::{InstallerByType, WorkerExit, WorkerService, WorkerSettings};
use manman_http::{HostServer, ServeOptions};
use manman_steam::{SteamInstaller, SteamSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to run the all-in-one system.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Where the API listens.
    pub bind: SocketAddr,
    /// The worker's install directory (games live under it).
    pub data_dir: PathBuf,
    /// The program the `demo` game runs (the fake game server); no demo when `None`.
    pub demo_executable: Option<PathBuf>,
    /// The worker's name.
    pub worker_name: String,
    /// Most game servers the worker runs at once.
    pub capacity: u32,
    /// The SteamCMD executable for `steam` games (a bare name is looked up on `PATH`).
    pub steamcmd: PathBuf,
}

/// A running all-in-one system.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The host's services (for embedding and tests).
    pub host: HostService,
    server: HostServer,
    shutdown: CancellationToken,
    kill: CancellationToken,
    worker: JoinHandle<anyhow::Result<WorkerExit>>,
}

/// Starts host and worker; returns once the API listens and the worker is registered.
pub async fn start(options: UpOptions) -> anyhow::Result<Running> {
    let data_dir = std::path::absolute(&options.data_dir).with_context(|| {
        format!(
            "the data directory {} is not usable",
            options.data_dir.display()
        )
    })?;
    tokio::fs::create_dir_all(&data_dir)
        .await
        .with_context(|| format!("could not create the data directory {}", data_dir.display()))?;

    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare()
        .await
        .context("could not declare the message topology")?;
    let store = Store::from_adapter(MemoryStore::new());
    let clock = Arc::new(SystemClock);
    let host = HostService::new(store, bus.clone(), clock.clone());
    if let Some(executable) = &options.demo_executable {
        demo::install(&host, &data_dir, executable).await?;
    }
    let server = HostServer::start(host.clone(), ServeOptions::new(options.bind)).await.with_context(|| {
        format!("could not listen on {}: is another `manman up` running? choose another address with --bind", options.bind)
    })?;

    let mut settings = WorkerSettings::new(&options.worker_name, &data_dir);
    settings.capacity = options.capacity;
    let worker = WorkerService::new(
        settings,
        Arc::new(LocalHostApi::new(host.clone())),
        bus,
        Arc::new(installers(&options)),
        Arc::new(TokioProcessRunner::new()),
        clock,
    );
    let kill = worker.kill_switch();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { Ok(worker.run(token).await?) });
    wait_for_worker(&host).await?;
    Ok(Running {
        addr: server.addr(),
        host,
        server,
        shutdown,
        kill,
        worker,
    })
}

/// Local games as they are; Steam games through SteamCMD.
fn installers(options: &UpOptions) -> InstallerByType {
    let settings = SteamSettings {
        steamcmd: options.steamcmd.clone(),
        ..SteamSettings::default()
    };
    InstallerByType::with_steam(Arc::new(SteamInstaller::new(
        settings,
        Arc::new(TokioProcessRunner::new()),
    )))
}

async fn wait_for_worker(host: &HostService) -> anyhow::Result<()> {
    for _ in 0..200 {
        if !host.list_workers().await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the worker did not register within 2 s")
}

impl Running {
    /// A token that stops everything gracefully when cancelled (the first Ctrl-C).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A token that SIGKILLs every game server when cancelled (a second Ctrl-C).
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Waits for a shutdown: the worker stops its game servers first, then the API, the status
    /// processor and the console hub stop.
    pub async fn wait(self) -> anyhow::Result<()> {
        let worker = self.worker.await.context("the worker task panicked")?;
        // The worker reported itself `complete` after every instance; once the status processor
        // has recorded that, it has recorded the instances' last statuses too.
        let recorded = async {
            loop {
                let workers = self.host.list_workers().await.unwrap_or_default();
                if workers.iter().all(|w| w.status.is_terminal()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), recorded)
            .await
            .is_err()
        {
            tracing::warn!("the worker's last statuses were not recorded within 5 s");
        }
        self.server.stop().await;
        worker.map(|_| ())
    }

    /// Stops everything and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
