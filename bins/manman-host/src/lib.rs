//! `manman-host`: the host daemon (HTTP API, status processor, console hub, retention).
//!
//! Backends are chosen by URL scheme: the store by `MANMAN_POSTGRES_URL` (`postgres://…`,
//! `sqlite:PATH` or `memory://`), the bus by `MANMAN_RABBITMQ_URL` (`amqp://…`, `amqps://…` or
//! `memory://`, which reaches no worker in another process). Workers reach the host's API at
//! `/api/v1/worker` and the bus.

use anyhow::{Context, bail};
use clap::Parser;
use manman_core::auth::Secret;
use manman_core::backend_url::{BusUrl, StoreUrl};
use manman_core::bus::Bus;
use manman_core::host::{HostService, RetentionPolicy, SigningKey};
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_http::{HostServer, HttpLimits, ServeOptions, StreamLimits};
use manman_logging::LogFormat;
use manman_pg::{PgSettings, PgStore};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_sqlite::{SqliteSettings, SqliteStore};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The ManMan host: the catalogue, the truth, and the HTTP API.
#[derive(Debug, Parser)]
#[command(name = "manman-host", version, about)]
struct Options {
    /// Where the API listens.
    #[arg(long, env = "MANMAN_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// The store: `postgres://user:password@host/database`, `sqlite:PATH`, or `memory://` (lost
    /// at exit).
    #[arg(
        long,
        env = "MANMAN_POSTGRES_URL",
        default_value = "memory://",
        hide_env_values = true
    )]
    postgres_url: String,
    /// The message bus: `amqp://user:password@host:5672/vhost` (or `amqps://`), or `memory://`
    /// (this process only: no separate worker can reach it).
    #[arg(
        long,
        env = "MANMAN_RABBITMQ_URL",
        default_value = "memory://",
        hide_env_values = true
    )]
    rabbitmq_url: String,
    /// Do not apply database migrations at start (run them separately, e.g. as a deploy job).
    #[arg(long, env = "MANMAN_NO_MIGRATE", conflicts_with = "migrate_only")]
    no_migrate: bool,
    /// Apply the database migrations and exit (the deploy job's command).
    #[arg(long, env = "MANMAN_MIGRATE_ONLY")]
    migrate_only: bool,
    /// Most PostgreSQL connections.
    #[arg(long, env = "MANMAN_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
    /// Longest wait for a free database connection, in milliseconds (then 503).
    #[arg(long, env = "MANMAN_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 5_000)]
    db_acquire_timeout_ms: u64,
    /// How long a command stays deliverable, in seconds: the broker then dead-letters it from
    /// the worker's queue, and the host records one still `pending` or `delivered` (e.g. whose
    /// request was abandoned while the broker was away) `expired`.
    #[arg(long, env = "MANMAN_COMMAND_TTL_S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    command_ttl_s: u64,
    /// Days of status history and command records (with the stdin lines they hold, whatever
    /// the command's state) kept.
    #[arg(long, env = "MANMAN_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// A file holding an admin token to accept (created as a token if it is not one yet).
    /// Without it, the first start creates an admin token and prints it once.
    #[arg(long, env = "MANMAN_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<std::path::PathBuf>,
    /// Serve the operator API (`/api/v1/games`, `/instances`, …); `false` leaves a replica that
    /// serves only what workers need.
    #[arg(
        long,
        env = "MANMAN_ENABLE_EXPERIENCE_API",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    enable_experience_api: bool,
    /// The deployment: `dev`, `staging` or `prod` (`prod` refuses the `memory://` backends,
    /// which keep nothing and reach no other process).
    #[arg(long, env = "APP_ENV", value_enum, default_value_t = AppEnv::Dev)]
    app_env: AppEnv,
    /// Log lines as `text` (for people) or `json` (for collectors); `RUST_LOG` filters them.
    #[arg(long, env = "MANMAN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// The key worker tokens are signed with, at least 32 bytes; host replicas behind one
    /// address must share it (default: random at each start, and workers get new tokens).
    #[arg(long, env = "MANMAN_TOKEN_SIGNING_KEY", hide_env_values = true)]
    token_signing_key: Option<String>,
    /// Longest time a request's head (request line and headers) may take to arrive, in
    /// milliseconds; a client trickling its headers is cut off then.
    #[arg(long, env = "MANMAN_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    http_header_timeout_ms: u64,
    /// Longest time a request's body may take to arrive after its head, in milliseconds (then
    /// 408).
    #[arg(long, env = "MANMAN_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    http_body_timeout_ms: u64,
    /// How long a kept-alive connection may wait for its next request, in milliseconds.
    #[arg(long, env = "MANMAN_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    http_idle_timeout_ms: u64,
    /// Most connections served at once; further ones wait until one ends.
    #[arg(long, env = "MANMAN_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    http_max_connections: u32,
    /// Most SSE streams (console and events) open at once on this host; beyond, 429.
    #[arg(long, env = "MANMAN_MAX_STREAMS", default_value_t = manman_http::DEFAULT_MAX_STREAMS, value_parser = at_least_one)]
    max_streams: usize,
    /// Most SSE streams (console and events) one token may hold open on this host; beyond, 429.
    #[arg(long, env = "MANMAN_MAX_STREAMS_PER_TOKEN", default_value_t = manman_http::DEFAULT_STREAMS_PER_TOKEN, value_parser = at_least_one)]
    max_streams_per_token: usize,
}

/// A count of at least 1.
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("0 would refuse every stream: give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{value:?} is not a whole number")),
    }
}

/// Where the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AppEnv {
    /// A developer's machine.
    Dev,
    /// A rehearsal of production.
    Staging,
    /// Production.
    Prod,
}

/// `prod` must keep its truth and reach its workers: no `memory://` backend.
fn check_app_env(options: &Options) -> anyhow::Result<()> {
    if options.app_env != AppEnv::Prod {
        return Ok(());
    }
    if options.postgres_url.parse() == Ok(StoreUrl::Memory) {
        bail!(
            "MANMAN_POSTGRES_URL is memory:// with APP_ENV=prod: production keeps its truth in PostgreSQL (postgres://…) or SQLite (sqlite:PATH)"
        );
    }
    if options.rabbitmq_url.parse() == Ok(BusUrl::Memory) {
        bail!(
            "MANMAN_RABBITMQ_URL is memory:// with APP_ENV=prod: production workers need RabbitMQ (amqp://… or amqps://…)"
        );
    }
    Ok(())
}

/// The signing key from the settings, or a random one.
fn signing_key(options: &Options) -> anyhow::Result<SigningKey> {
    match &options.token_signing_key {
        Some(key) => SigningKey::from_config(key)
            .map_err(|e| anyhow::anyhow!("MANMAN_TOKEN_SIGNING_KEY: {e}")),
        None => Ok(SigningKey::random()),
    }
}

/// The HTTP limits from the settings.
fn http_limits(options: &Options) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(options.http_header_timeout_ms),
        body_timeout: Duration::from_millis(options.http_body_timeout_ms),
        idle_timeout: Duration::from_millis(options.http_idle_timeout_ms),
        max_connections: options.http_max_connections as usize,
    }
}

/// Makes sure an admin can get in: the token file's token, or a new one printed once.
async fn ensure_admin(server: &HostServer, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let supplied = match file {
        Some(path) => Some(Secret::from_supplied(
            &std::fs::read_to_string(path).with_context(|| {
                format!("MANMAN_ADMIN_TOKEN_FILE: cannot read {}", path.display())
            })?,
        )),
        None => None,
    };
    let created = server
        .auth()
        .ensure_admin(supplied.as_ref())
        .await
        .context("could not set up the admin token")?;
    if let Some(secret) = created {
        println!(
            "No admin token existed, so one was created. It is shown this once; keep it:\n\n    {}\n",
            secret.expose()
        );
    }
    Ok(())
}

async fn store(options: &Options) -> anyhow::Result<Store> {
    let url = options.postgres_url.as_str();
    let parsed: StoreUrl = url.parse().context("MANMAN_POSTGRES_URL")?;
    if parsed == StoreUrl::Memory {
        return Ok(Store::from_adapter(MemoryStore::new()));
    }
    if let StoreUrl::Sqlite(_) = parsed {
        let settings = SqliteSettings::from_url(url)
            .context("MANMAN_POSTGRES_URL")?
            .acquire_timeout(Duration::from_millis(options.db_acquire_timeout_ms));
        let sqlite = SqliteStore::open(&settings)
            .await
            .context("MANMAN_POSTGRES_URL")?;
        if !options.no_migrate {
            sqlite.migrate().await.context("MANMAN_POSTGRES_URL")?;
        }
        return Ok(Store::from_adapter(sqlite));
    }
    let settings = PgSettings::new(url)
        .max_connections(options.db_max_connections)
        .acquire_timeout(Duration::from_millis(options.db_acquire_timeout_ms));
    let pg = PgStore::connect(&settings)
        .await
        .context("MANMAN_POSTGRES_URL")?;
    if options.no_migrate {
        tracing::info!("not migrating (--no-migrate)");
    } else {
        pg.migrate().await.context("MANMAN_POSTGRES_URL")?;
        tracing::info!("database schema is up to date");
    }
    Ok(Store::from_adapter(pg))
}

/// The bus by URL scheme; with it, the RabbitMQ connection to close at the end.
async fn bus(options: &Options) -> anyhow::Result<(Bus, Option<RabbitBus>)> {
    let url = match options
        .rabbitmq_url
        .parse()
        .context("MANMAN_RABBITMQ_URL")?
    {
        BusUrl::Memory => {
            let memory = MemoryBus::new();
            return Ok((Bus::new(Arc::new(memory.clone()), Arc::new(memory)), None));
        }
        BusUrl::Amqp(url) => url,
    };
    let rabbit = RabbitBus::connect(&RabbitSettings::new(&url).connection_name("manman-host"))
        .await
        .context("MANMAN_RABBITMQ_URL")?;
    Ok((
        Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit.clone())),
        Some(rabbit),
    ))
}

async fn run(options: Options) -> anyhow::Result<()> {
    if options.migrate_only {
        store(&options).await?;
        tracing::info!("migrations applied (--migrate-only): exiting");
        return Ok(());
    }
    check_app_env(&options)?;
    let store = store(&options).await?;
    let (bus, rabbit) = bus(&options).await?;
    bus.declare()
        .await
        .context("could not declare the message topology")?;
    let host = HostService::new(store, bus, Arc::new(SystemClock))
        .with_command_ttl(Duration::from_secs(options.command_ttl_s));
    let serve = ServeOptions {
        bind: options.bind,
        retention: RetentionPolicy {
            keep: Duration::from_secs(options.retention_days.saturating_mul(24 * 3600)),
            ..RetentionPolicy::default()
        },
        lease: manman_core::host::Lease::default(),
        signing_key: signing_key(&options)?,
        experience_api: options.enable_experience_api,
        http: http_limits(&options),
        streams: StreamLimits {
            per_token: options.max_streams_per_token,
            total: options.max_streams,
        },
    };
    let server = HostServer::start(host, serve)
        .await
        .with_context(|| format!("could not listen on {} (MANMAN_BIND)", options.bind))?;
    if let Err(e) = ensure_admin(&server, options.admin_token_file.as_deref()).await {
        server.stop().await;
        return Err(e);
    }
    tracing::info!(
        addr = %server.addr(),
        app_env = ?options.app_env,
        experience_api = options.enable_experience_api,
        "manman-host is serving"
    );
    manman_core::shutdown::shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    if let Some(rabbit) = rabbit {
        rabbit.close().await;
    }
    Ok(())
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Driver errors may quote MANMAN_POSTGRES_URL or MANMAN_RABBITMQ_URL.
            eprintln!(
                "error: {}",
                manman_logging::redact_url_passwords(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
