//! `manman-worker`: the worker daemon of a game machine.
//!
//! It reaches its host over HTTP (`MANMAN_HOST_URL`: registration, heartbeats, configs) and
//! RabbitMQ (`MANMAN_RABBITMQ_URL`: commands in, events and console lines out), installs games
//! (local ones as they are, Steam ones with SteamCMD) and supervises each as a child process.
//! SIGTERM or SIGINT stops every server gracefully and exits 0 (or, with
//! `MANMAN_WORKER_ON_SHUTDOWN=leave-running`, leaves them running in their shims for the next run
//! to take up); a second signal kills them.

use anyhow::{Context, bail};
use clap::Parser;
use manman_client::{HttpHostApi, WorkerCredentials};
use manman_core::backend_url::BusUrl;
use manman_core::bus::Bus;
use manman_core::ports::ProcessRunner;
use manman_core::ports::SystemClock;
use manman_core::process::{ShimProcessRunner, TokioProcessRunner};
use manman_core::worker_service::{
    InstallerByType, OnShutdown, ServerEnvironment, WorkerExit, WorkerService, WorkerSettings,
    keep_private, server_user,
};
use manman_logging::LogFormat;
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_steam::{SteamCredential, SteamInstaller, SteamSettings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The ManMan worker: installs and supervises game servers on this machine.
#[derive(Debug, Parser)]
#[command(name = "manman-worker", version, about)]
struct Options {
    /// The host's API.
    #[arg(long, env = "MANMAN_HOST_URL", default_value = "http://127.0.0.1:8000")]
    host_url: String,
    /// The message bus: `amqp://user:password@host:5672/vhost` (or `amqps://`).
    #[arg(long, env = "MANMAN_RABBITMQ_URL", hide_env_values = true)]
    rabbitmq_url: String,
    /// The client id of this worker's credentials (an admin creates them:
    /// `manman credentials create <name>`).
    #[arg(long, env = "MANMAN_WORKER_SA_CLIENT_ID")]
    client_id: String,
    /// The secret of this worker's credentials.
    #[arg(long, env = "MANMAN_WORKER_SA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// This worker's stable name (default: the machine's host name); its credentials must be
    /// for this name.
    #[arg(long, env = "MANMAN_WORKER_NAME")]
    name: Option<String>,
    /// Where games are installed (local game paths are relative to it).
    #[arg(
        long,
        env = "MANMAN_WORKER_INSTALL_DIRECTORY",
        default_value = "./data"
    )]
    install_dir: PathBuf,
    /// Where the worker keeps its console logs and process records (default `<install dir>/.manman`).
    #[arg(long, env = "MANMAN_WORKER_STATE_DIRECTORY")]
    state_dir: Option<PathBuf>,
    /// Most game servers at once.
    #[arg(long, env = "MANMAN_WORKER_CAPACITY", default_value_t = 16)]
    capacity: u32,
    /// Placement labels, `key=value` (repeat, or comma-separated in the variable).
    #[arg(long = "label", env = "MANMAN_WORKER_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Time between heartbeats, in milliseconds.
    #[arg(long, env = "MANMAN_WORKER_HEARTBEAT_MS", default_value_t = 2_000)]
    heartbeat_ms: u64,
    /// Log lines as `text` (for people) or `json` (for collectors); `RUST_LOG` filters them.
    #[arg(long, env = "MANMAN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Steam accounts configs may log in with (`steam.login = { named: NAME }`), as
    /// `NAME=PATH` of a credential file (`username = …`, `password = …`, mode 0600); repeat, or
    /// comma-separated in the variable.
    #[arg(
        long = "steam-credential",
        env = "MANMAN_WORKER_STEAM_CREDENTIALS",
        value_delimiter = ','
    )]
    steam_credentials: Vec<String>,
    /// Secrets configs name (`steam.branch_password_secret`), as `NAME=PATH` of a file holding
    /// only the secret; repeat, or comma-separated in the variable.
    #[arg(
        long = "steam-secret",
        env = "MANMAN_WORKER_STEAM_SECRETS",
        value_delimiter = ','
    )]
    steam_secrets: Vec<String>,
    /// The SteamCMD executable (a bare name is looked up on PATH).
    #[arg(long, env = "MANMAN_WORKER_STEAMCMD", default_value = "steamcmd")]
    steamcmd: PathBuf,
    /// Seconds SteamCMD may print nothing before it is killed (`timeout`, tried again once).
    #[arg(
        long = "steam-idle-timeout-s",
        env = "MANMAN_WORKER_STEAM_IDLE_TIMEOUT_S",
        default_value_t = 180
    )]
    steam_idle_timeout_s: u64,
    /// Seconds one Steam install may take in all, retries included (`install-timeout`).
    #[arg(
        long = "steam-install-timeout-s",
        env = "MANMAN_WORKER_STEAM_INSTALL_TIMEOUT_S",
        default_value_t = 7200
    )]
    steam_install_timeout_s: u64,
    /// The unprivileged user game servers and SteamCMD run as when the worker runs as root
    /// (a name or a uid; default `nobody`; never root). A worker not running as root runs them
    /// as itself.
    #[arg(long, env = "MANMAN_WORKER_RUN_AS")]
    run_as: Option<String>,
    /// Variables of the worker's environment that configs may read with `$VAR` (names,
    /// comma-separated; never `MANMAN_…`). Nothing else of the worker's environment reaches a
    /// game server.
    #[arg(
        long = "pass-env",
        env = "MANMAN_WORKER_PASS_ENV",
        value_delimiter = ','
    )]
    pass_env: Vec<String>,
    /// Days the console logs of ended instances are kept after they were last written; then
    /// the worker deletes them (it looks every hour; 0 deletes them at the next look).
    #[arg(long, env = "MANMAN_WORKER_LOG_RETENTION_DAYS", default_value_t = 14)]
    log_retention_days: u64,
    /// The `manman-shim` executable: each game server is started through a shim of its own,
    /// which holds it while the worker restarts. Unset: servers are the worker's children and
    /// end with it.
    #[arg(long, env = "MANMAN_WORKER_SHIM")]
    shim: Option<PathBuf>,
    /// What a shutdown (SIGTERM, SIGINT) does to the game servers: `stop-servers` (each stopped
    /// by its stop policy: for a machine that goes away) or `leave-running` (they run on in
    /// their shims for the next run of the worker to take up: for an upgrade or a restart;
    /// needs MANMAN_WORKER_SHIM).
    #[arg(
        long,
        env = "MANMAN_WORKER_ON_SHUTDOWN",
        default_value = "stop-servers"
    )]
    on_shutdown: String,
    /// Seconds a shim keeps its server running with no worker attached; then it stops it by
    /// its stop policy (no server runs unsupervised for ever).
    #[arg(long, env = "MANMAN_WORKER_SHIM_GRACE_S", default_value_t = 300)]
    shim_grace_s: u64,
}

fn settings(options: &Options) -> anyhow::Result<WorkerSettings> {
    let name = match &options.name {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .context("MANMAN_WORKER_NAME is not set and the host name is unknown: give the worker a name")?,
    };
    let mut labels = BTreeMap::new();
    for label in &options.labels {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("MANMAN_WORKER_LABELS: {label:?} is not key=value"))?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    if options.client_id.trim().is_empty() {
        bail!(
            "MANMAN_WORKER_SA_CLIENT_ID is empty: give the client id of this worker's credentials"
        );
    }
    if options.client_secret.trim().is_empty() {
        bail!(
            "MANMAN_WORKER_SA_CLIENT_SECRET is empty: give the secret of this worker's credentials"
        );
    }
    if options.capacity == 0 {
        bail!("MANMAN_WORKER_CAPACITY must be at least 1");
    }
    let mut settings = WorkerSettings::new(name, &options.install_dir);
    settings.capacity = options.capacity;
    settings.labels = labels;
    settings.heartbeat_interval = Duration::from_millis(options.heartbeat_ms.max(100));
    if let Some(state_dir) = &options.state_dir {
        settings.state_dir = state_dir.clone();
    }
    settings.run_as = server_user(options.run_as.as_deref()).map_err(anyhow::Error::msg)?;
    settings.pass_env = options.pass_env.clone();
    ServerEnvironment::of_this_process(&settings.pass_env).map_err(anyhow::Error::msg)?;
    settings.log_retention.keep =
        Duration::from_secs(options.log_retention_days.saturating_mul(24 * 3600));
    settings.on_shutdown = match options.on_shutdown.as_str() {
        "stop-servers" => OnShutdown::StopServers,
        "leave-running" => OnShutdown::LeaveRunning,
        other => {
            bail!("MANMAN_WORKER_ON_SHUTDOWN: {other:?} is neither stop-servers nor leave-running")
        }
    };
    if settings.on_shutdown == OnShutdown::LeaveRunning && options.shim.is_none() {
        bail!(
            "MANMAN_WORKER_ON_SHUTDOWN=leave-running needs MANMAN_WORKER_SHIM (the manman-shim \
             executable that holds each server while the worker restarts)"
        );
    }
    Ok(settings)
}

/// The runner game servers are started with: through shims when MANMAN_WORKER_SHIM names one.
fn server_runner(
    options: &Options,
    settings: &WorkerSettings,
    direct: &TokioProcessRunner,
) -> anyhow::Result<Arc<dyn ProcessRunner>> {
    let Some(shim) = &options.shim else {
        return Ok(Arc::new(direct.clone()));
    };
    let executable = std::fs::metadata(shim).map(|m| {
        m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
    });
    match executable {
        Ok(true) => {}
        Ok(false) => bail!(
            "MANMAN_WORKER_SHIM: {} is not an executable file",
            shim.display()
        ),
        Err(e) => bail!("MANMAN_WORKER_SHIM: {}: {e}", shim.display()),
    }
    if options.shim_grace_s == 0 {
        bail!("MANMAN_WORKER_SHIM_GRACE_S must be at least 1");
    }
    Ok(Arc::new(
        ShimProcessRunner::new(shim, settings.state_dir.join("shims"))
            .unattended_grace(Duration::from_secs(options.shim_grace_s)),
    ))
}

/// `NAME=PATH` pairs of a setting.
fn named_files(setting: &str, pairs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    pairs
        .iter()
        .map(|pair| {
            let (name, path) = pair
                .split_once('=')
                .filter(|(name, path)| !name.is_empty() && !path.is_empty())
                .with_context(|| format!("{setting}: {pair:?} is not NAME=PATH"))?;
            Ok((name.to_owned(), PathBuf::from(path)))
        })
        .collect()
}

/// SteamCMD's settings: the executable, and the accounts and secrets read from their files
/// (an unreadable or malformed file stops the worker, naming the setting and the file).
fn steam_settings(options: &Options) -> anyhow::Result<SteamSettings> {
    if options.steam_idle_timeout_s == 0 || options.steam_install_timeout_s == 0 {
        bail!(
            "MANMAN_WORKER_STEAM_IDLE_TIMEOUT_S and MANMAN_WORKER_STEAM_INSTALL_TIMEOUT_S must be at least 1"
        );
    }
    let mut settings = SteamSettings {
        steamcmd: options.steamcmd.clone(),
        idle_timeout: Duration::from_secs(options.steam_idle_timeout_s),
        install_timeout: Duration::from_secs(options.steam_install_timeout_s),
        ..SteamSettings::default()
    };
    for (name, path) in named_files(
        "MANMAN_WORKER_STEAM_CREDENTIALS",
        &options.steam_credentials,
    )? {
        let credential = SteamCredential::from_file(&path)
            .with_context(|| format!("MANMAN_WORKER_STEAM_CREDENTIALS: {name}"))?;
        settings.credentials.insert(name, credential);
    }
    for (name, path) in named_files("MANMAN_WORKER_STEAM_SECRETS", &options.steam_secrets)? {
        let secret = manman_steam::Secret::from_file(&path)
            .with_context(|| format!("MANMAN_WORKER_STEAM_SECRETS: {name}"))?;
        settings.secrets.insert(name, secret);
    }
    Ok(settings)
}

async fn run(options: Options) -> anyhow::Result<WorkerExit> {
    let settings = settings(&options)?;
    let steam = steam_settings(&options)?;
    // Every setting is checked before anything is reached.
    let runner = TokioProcessRunner::new();
    let servers = server_runner(&options, &settings, &runner)?;
    let url = match options
        .rabbitmq_url
        .parse()
        .context("MANMAN_RABBITMQ_URL")?
    {
        BusUrl::Amqp(url) => url,
        BusUrl::Memory => bail!(
            "MANMAN_RABBITMQ_URL: memory:// is the host's own process only, which no worker \
             reaches: use the host's amqp://… or amqps://… broker"
        ),
    };
    let rabbit = RabbitBus::connect(
        &RabbitSettings::new(&url).connection_name(format!("manman-worker {}", settings.name)),
    )
    .await
    .context("MANMAN_RABBITMQ_URL")?;
    let bus = Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit.clone()));
    let steam = SteamInstaller::new(steam, Arc::new(runner.clone()));
    let worker = WorkerService::new(
        settings,
        Arc::new(HttpHostApi::new(
            &options.host_url,
            WorkerCredentials {
                client_id: options.client_id.clone(),
                client_secret: options.client_secret.clone(),
            },
        )),
        bus,
        Arc::new(InstallerByType::with_steam(Arc::new(steam))),
        servers,
        Arc::new(SystemClock),
    );
    let shutdown = CancellationToken::new();
    let kill = worker.kill_switch();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            manman_core::shutdown::shutdown_signal().await;
            tracing::info!("shutting down (a second signal kills every game server)");
            shutdown.cancel();
            manman_core::shutdown::shutdown_signal().await;
            tracing::warn!("killing every game server");
            kill.cancel();
        }
    });
    let exit = worker.run(shutdown).await?;
    rabbit.close().await;
    Ok(exit)
}

/// The whole daemon: parse the settings, set up logging, run until a signal; the exit code.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with these command-line arguments (the first is the program's name) instead of the
/// process's: for a program that embeds this daemon as one of its commands.
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let options = Options::parse_from(args);
    manman_logging::init(options.log_format, "info");
    // Game servers of a worker that is not root run as its user: they must not read its memory
    // or its environment (its credentials) through /proc.
    if let Err(e) = keep_private() {
        tracing::warn!(error = %e, "could not make the worker non-dumpable");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(WorkerExit::Shutdown) => ExitCode::SUCCESS,
        Ok(WorkerExit::Superseded) => {
            eprintln!("this worker was superseded by a newer registration of its name: exited");
            ExitCode::from(3)
        }
        Err(e) => {
            // Driver errors may quote MANMAN_RABBITMQ_URL.
            eprintln!(
                "error: {}",
                manman_logging::redact_url_passwords(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
