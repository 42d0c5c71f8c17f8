//! `manman-host`: the host daemon (HTTP API, status processor, console hub).
//!
//! Backends are chosen by URL scheme. Today only `memory://` exists for both the store and the
//! bus; `postgres://` and `amqp://` arrive with `manman-pg` and `manman-rabbit`. A host on the
//! memory bus serves the API but can reach no worker in another process: for one machine, use
//! `manman up`.

use anyhow::{Context, bail};
use clap::Parser;
use manman_core::bus::Bus;
use manman_core::host::HostService;
use manman_core::memory::{MemoryBus, MemoryStore};
use manman_core::ports::SystemClock;
use manman_core::store::Store;
use manman_http::HostServer;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// The ManMan host: the catalogue, the truth, and the HTTP API.
#[derive(Debug, Parser)]
#[command(name = "manman-host", version, about)]
struct Options {
    /// Where the API listens.
    #[arg(long, env = "MANMAN_BIND", default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// The store: `memory://` (PostgreSQL arrives with manman-pg).
    #[arg(long, env = "MANMAN_POSTGRES_URL", default_value = "memory://")]
    postgres_url: String,
    /// The message bus: `memory://` (RabbitMQ arrives with manman-rabbit).
    #[arg(long, env = "MANMAN_RABBITMQ_URL", default_value = "memory://")]
    rabbitmq_url: String,
}

fn check_memory(setting: &str, url: &str, arrives_with: &str) -> anyhow::Result<()> {
    if url == "memory://" {
        return Ok(());
    }
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    bail!(
        "{setting}={scheme}://…: this build supports only memory:// ({scheme} support arrives with {arrives_with}); for one machine, run `manman up`"
    )
}

async fn run(options: Options) -> anyhow::Result<()> {
    check_memory("MANMAN_POSTGRES_URL", &options.postgres_url, "manman-pg")?;
    check_memory(
        "MANMAN_RABBITMQ_URL",
        &options.rabbitmq_url,
        "manman-rabbit",
    )?;
    let memory = MemoryBus::new();
    let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
    bus.declare()
        .await
        .context("could not declare the message topology")?;
    let host = HostService::new(
        Store::from_adapter(MemoryStore::new()),
        bus,
        Arc::new(SystemClock),
    );
    let server = HostServer::start(host, options.bind)
        .await
        .with_context(|| format!("could not listen on {} (MANMAN_BIND)", options.bind))?;
    tracing::info!(addr = %server.addr(), "manman-host is serving");
    tokio::signal::ctrl_c()
        .await
        .context("could not wait for Ctrl-C")?;
    server.stop().await;
    Ok(())
}

fn main() -> ExitCode {
    let options = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
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
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
