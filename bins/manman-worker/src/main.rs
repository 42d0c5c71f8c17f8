//! `manman-worker`: the worker daemon of a game machine.
//!
//! A worker in its own process reaches the host over RabbitMQ (commands, events) and HTTP
//! (registration, heartbeat, configs). Neither transport exists in this build yet (they arrive
//! with `manman-rabbit` and the worker-facing API of `manman-http`), so this binary checks its
//! settings and refuses to start with a message that says what to use instead. For one machine,
//! `manman up` runs a worker in the host's process today.

use clap::Parser;
use std::process::ExitCode;

/// The ManMan worker: installs and supervises game servers on this machine.
#[derive(Debug, Parser)]
#[command(name = "manman-worker", version, about)]
struct Options {
    /// The host's API.
    #[arg(long, env = "MANMAN_HOST_URL", default_value = "http://127.0.0.1:8000")]
    host_url: String,
    /// The message bus (`amqp://` or `amqps://`).
    #[arg(long, env = "MANMAN_RABBITMQ_URL")]
    rabbitmq_url: Option<String>,
}

fn main() -> ExitCode {
    let options = Options::parse();
    let bus = options.rabbitmq_url.as_deref().unwrap_or("(not set)");
    eprintln!(
        "error: manman-worker cannot reach the host at {} yet: a separate worker needs RabbitMQ \
         (MANMAN_RABBITMQ_URL={bus}), which arrives with manman-rabbit.\n\
         To run ManMan on one machine today, use `manman up` (host and worker in one process).",
        options.host_url
    );
    ExitCode::from(2)
}
