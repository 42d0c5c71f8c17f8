//! `manman up`: host and worker in one process on the in-memory adapters, the API on a local
//! socket, and a `demo` game ready to start.

use crate::demo;
use crate::local_admin::{self, LocalAdmin};
use crate::private_file;
use anyhow::Context;
use manman_core::bus::Bus;
use manman_core::host::{HostService, LocalHostApi};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::process::TokioProcessRunner;
use manman_core::status::Status;
use manman_core::store::Store;
use manman_core::worker_service::{
    InstallerByType, WorkerExit, WorkerService, WorkerSettings, keep_private, running_as_root,
};
use manman_http::{HostServer, ServeOptions};
use manman_pg::{PgSettings, PgStore};
use manman_sqlite::{SqliteSettings, SqliteStore};
use manman_steam::{SteamCredential, SteamInstaller, SteamSettings};
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
    /// Steam accounts configs may log in with (`steam.login = {"named": NAME}`): each name
    /// with its credential file (`username = …`, `password = …`, optional `guard_code = …`).
    pub steam_credentials: Vec<(String, PathBuf)>,
    /// Where the host keeps its truth.
    pub store: StoreChoice,
}

/// The store of `manman up`: `sqlite` (the default, `<data dir>/manman.db`), `sqlite:PATH`,
/// `memory` or `postgres://…` — read by the same rules as the host's (its `Debug` hides a
/// PostgreSQL URL).
pub type StoreChoice = manman_core::backend_url::StoreUrl;

/// Opens (and migrates) the chosen store; with it, what to close at the end.
async fn open_store(
    choice: &StoreChoice,
    data_dir: &std::path::Path,
) -> anyhow::Result<(Store, Option<SqliteStore>)> {
    Ok(match choice {
        StoreChoice::Memory => (Store::from_adapter(MemoryStore::new()), None),
        StoreChoice::Sqlite(path) => {
            let path = path.clone().unwrap_or_else(|| data_dir.join("manman.db"));
            // Created 0600 before SQLite opens it: its -wal and -shm files take its mode.
            private_file::create_or_restrict(&path)
                .with_context(|| format!("the store {}", path.display()))?;
            let sqlite = SqliteStore::open(&SqliteSettings::new(&path))
                .await
                .with_context(|| format!("the store {}", path.display()))?;
            sqlite
                .migrate()
                .await
                .with_context(|| format!("the store {}", path.display()))?;
            // Those SQLite made before the database was private (an earlier version).
            for suffix in ["-wal", "-shm"] {
                let companion = private_file::with_suffix(&path, suffix);
                private_file::restrict(&companion)
                    .with_context(|| format!("the store {}", companion.display()))?;
            }
            (Store::from_adapter(sqlite.clone()), Some(sqlite))
        }
        StoreChoice::Postgres(url) => {
            // The driver's errors may quote the URL: `main` redacts what it prints.
            let pg = PgStore::connect(&PgSettings::new(url))
                .await
                .context("--store")?;
            pg.migrate().await.context("--store")?;
            (Store::from_adapter(pg), None)
        }
    })
}

/// A running all-in-one system.
#[derive(Debug)]
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The admin token it accepts (kept in the data directory).
    pub admin: LocalAdmin,
    /// The host's services (for embedding and tests).
    pub host: HostService,
    server: HostServer,
    sqlite: Option<SqliteStore>,
    shutdown: CancellationToken,
    kill: CancellationToken,
    worker: JoinHandle<anyhow::Result<WorkerExit>>,
}

/// Starts host and worker; returns once the API listens and the worker is registered.
pub async fn start(options: UpOptions) -> anyhow::Result<Running> {
    // A credential file that cannot be read stops `manman up` before anything starts.
    let installers = installers(&options)?;
    // Game servers of a `manman up` that is not root run as its user: they must not read its
    // memory or environment (the admin token, store URLs) through /proc.
    if let Err(e) = keep_private() {
        tracing::warn!(error = %e, "could not make this process non-dumpable");
    }
    if !running_as_root() {
        tracing::warn!(
            "game servers run as your own user: they can read what you can, the data \
             directory's admin token and database included; run only games you trust this way \
             (as root, or with deploy/manman-worker.service, they run as an unprivileged user)"
        );
    }
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
    let (store, sqlite) = open_store(&options.store, &data_dir).await?;
    let clock = Arc::new(SystemClock);
    let host = HostService::new(store, bus.clone(), clock.clone())
        .with_embedded_worker(&options.worker_name);
    if let Some(executable) = &options.demo_executable {
        demo::install(&host, &data_dir, executable).await?;
    }
    let server = HostServer::start(host.clone(), ServeOptions::new(options.bind)).await.with_context(|| {
        format!("could not listen on {}: is another `manman up` running? choose another address with --bind", options.bind)
    })?;
    let admin = match local_admin::ensure(server.auth(), &data_dir, server.addr()).await {
        Ok(admin) => admin,
        Err(e) => {
            server.stop().await;
            return Err(e);
        }
    };

    let mut settings = WorkerSettings::new(&options.worker_name, &data_dir);
    settings.capacity = options.capacity;
    let worker = WorkerService::new(
        settings,
        Arc::new(LocalHostApi::new(host.clone())),
        bus,
        Arc::new(installers),
        Arc::new(TokioProcessRunner::new()),
        clock,
    );
    let kill = worker.kill_switch();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let worker = tokio::spawn(async move { Ok(worker.run(token).await?) });
    wait_for_worker(&host, &options.worker_name).await?;
    Ok(Running {
        addr: server.addr(),
        admin,
        host,
        server,
        sqlite,
        shutdown,
        kill,
        worker,
    })
}

/// Local games as they are; Steam games through SteamCMD, with the named Steam accounts read
/// from their files.
fn installers(options: &UpOptions) -> anyhow::Result<InstallerByType> {
    let mut settings = SteamSettings {
        steamcmd: options.steamcmd.clone(),
        ..SteamSettings::default()
    };
    for (name, path) in &options.steam_credentials {
        let credential = SteamCredential::from_file(path)
            .with_context(|| format!("--steam-credential {name}"))?;
        settings.credentials.insert(name.clone(), credential);
    }
    Ok(InstallerByType::with_steam(Arc::new(SteamInstaller::new(
        settings,
        Arc::new(TokioProcessRunner::new()),
    ))))
}

/// Waits until this run's worker runs (a kept data dir also holds the workers of earlier runs).
async fn wait_for_worker(host: &HostService, name: &str) -> anyhow::Result<()> {
    for _ in 0..500 {
        let workers = host.workers().list_workers().await?;
        if workers
            .iter()
            .any(|w| w.name == name && w.status == Status::Running)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the worker did not register within 5 s")
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
                let workers = self.host.workers().list_workers().await.unwrap_or_default();
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
        if let Some(sqlite) = self.sqlite {
            sqlite.close().await;
        }
        worker.map(|_| ())
    }

    /// Stops everything and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
