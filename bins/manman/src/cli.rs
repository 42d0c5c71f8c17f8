//! The `manman` command line: `up`, and client subcommands that talk to a host. Each concept
//! has its module: the catalogue (`game`), configs and their files, instances (with `--wait`),
//! `watch` and `console` (which reconnect), tokens and credentials, `login`, `up`.

mod admin;
mod catalogue;
mod config_command;
mod config_file;
mod console;
mod instance_command;
mod login_command;
mod output;
mod reconnect;
mod up_command;
mod wait;
mod watch;

pub use admin::{CredentialCommand, TokenCommand};
pub use catalogue::GameCommand;
pub use config_command::{ConfigCommand, ConfigFields};
pub use config_file::{ConfigFile, FileFormat};
pub use instance_command::{InstanceCommand, InstanceView, WaitArgs};
pub use up_command::UpArgs;

use crate::local_admin;
use crate::login::{self, SavedLogin};
use clap::{Parser, Subcommand};
use manman_core::id::InstanceId;
use manman_core::status::Status;
use manman_http::{Client, ClientError};
use output::print;
use std::path::PathBuf;
use uuid::Uuid;

/// ManMan: run Steam dedicated game servers across many machines.
#[derive(Debug, Parser)]
#[command(name = "manman", version, about)]
pub struct Cli {
    /// The host's API (default: the one `manman login` saved, else http://127.0.0.1:8000).
    #[arg(long, global = true, env = "MANMAN_HOST_URL")]
    pub host: Option<String>,
    /// Where `manman login` keeps the host and token (default:
    /// `$XDG_CONFIG_HOME/manman/config.json` or `~/.config/manman/config.json`).
    #[arg(long, global = true, env = "MANMAN_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// The bearer token to send (an operator token).
    #[arg(long, global = true, env = "MANMAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where to read the token when none is given: `manman up` keeps its admin token there, and
    /// the host it belongs to beside it (`admin-token.host`); it is sent to that host only.
    #[arg(
        long,
        global = true,
        env = "MANMAN_TOKEN_FILE",
        default_value = "./data/admin-token"
    )]
    pub token_file: PathBuf,
    /// Log lines (stderr) as `text` or `json`; `RUST_LOG` filters them.
    #[arg(long, global = true, env = "MANMAN_LOG_FORMAT", default_value = "text")]
    pub log_format: manman_logging::LogFormat,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run host and worker in this process, with nothing installed (in-memory store and bus).
    Up(UpArgs),
    /// Games in the catalogue.
    #[command(subcommand)]
    Game(GameCommand),
    /// Configs of games: from files (JSON, YAML, TOML) and flags; `config show` prints one.
    #[command(subcommand)]
    Config(Box<ConfigCommand>),
    /// Start a game's default config (`GAME`), a named config (`GAME/CONFIG`) or a config id.
    Start {
        /// `GAME`, `GAME/CONFIG` or a config id.
        target: String,
        /// Run it on this worker.
        #[arg(long)]
        worker: Option<String>,
        /// Run it on a worker with this label, `KEY=VALUE` (repeat for more).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// `--wait` for it to be running (non-zero exit with the cause if it ends instead).
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop an instance gracefully.
    Stop {
        /// The instance id.
        instance: i64,
        /// `--wait` for the end (non-zero exit with the cause unless it ends complete).
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart an instance in place: stop it gracefully and start it again.
    Restart {
        /// The instance id.
        instance: i64,
    },
    /// Kill an instance (SIGKILL to its process group).
    Kill {
        /// The instance id.
        instance: i64,
    },
    /// Send a console line to an instance.
    Send {
        /// The instance id.
        instance: i64,
        /// The line (words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        line: Vec<String>,
    },
    /// List instances, with the cause of each one's status.
    Instances {
        /// Only this status.
        #[arg(long)]
        status: Option<Status>,
    },
    /// One instance.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// An instance's status history: every change, its cause and detail, oldest first.
    History {
        /// The instance id.
        instance: i64,
    },
    /// Attach to an instance's console: its output, live; lines typed are sent to it (Ctrl-C
    /// detaches). Reconnects when the host goes away; says how the instance ended.
    Console {
        /// The instance id.
        instance: i64,
        /// Only lines after this number.
        #[arg(long)]
        after: Option<u64>,
    },
    /// Show a command's record.
    Command {
        /// The command id.
        id: Uuid,
    },
    /// List workers.
    Workers,
    /// Check a token against the host and keep both for later commands (`--host`, `--token`;
    /// without `--token` the token is read from stdin).
    Login,
    /// Follow everything that happens, live: statuses, command results, install progress
    /// (Ctrl-C to stop). Reconnects when the host goes away.
    Watch,
    /// Operator tokens (needs an admin token).
    #[command(subcommand)]
    Tokens(TokenCommand),
    /// Worker credentials, which a worker exchanges for its token (needs an admin token).
    #[command(subcommand)]
    Credentials(CredentialCommand),
}

/// Runs the command line; the error is printed by `main` (exit code 1).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli.config_file.clone().or_else(login::default_path);
    let saved = match (&config_file, &cli.command) {
        // `manman up` talks to no host: a broken login file must not stop it.
        (_, CliCommand::Up(_)) | (None, _) => None,
        // `manman login` replaces a broken login file.
        (Some(path), CliCommand::Login) => login::load(path).unwrap_or_else(|e| {
            eprintln!("note: {e:#}; this login replaces it");
            None
        }),
        (Some(path), _) => login::load(path)?,
    };
    let host = cli
        .host
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.host.clone()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let mut client = Client::new(&host);
    let mut no_token = None;
    if !matches!(cli.command, CliCommand::Up(_) | CliCommand::Login) {
        match token(&cli, saved.as_ref(), &host)? {
            Some(token) => client = client.with_token(token),
            None => {
                no_token = Some(format!(
                    "no token was found for {host}: looked for --token and MANMAN_TOKEN, a saved \
                     login for {host} in {}, and the token file {} (MANMAN_TOKEN_FILE); run \
                     `manman login`, or pass --token",
                    config_file
                        .as_deref()
                        .map_or_else(|| "(no login file)".to_owned(), |p| p.display().to_string()),
                    cli.token_file.display()
                ));
            }
        }
    }
    let json = cli.json;
    let outcome = match cli.command {
        CliCommand::Login => {
            login_command::run_login(cli.token.as_deref(), json, &host, config_file.as_deref())
                .await
        }
        CliCommand::Up(args) => up_command::run_up(args).await,
        command => run_client(&client, json, command).await,
    };
    outcome.map_err(|e| explain_missing_token(e, no_token.as_deref()))
}

/// The subcommands that talk to a host with `client`.
async fn run_client(client: &Client, json: bool, command: CliCommand) -> anyhow::Result<()> {
    match command {
        CliCommand::Watch => watch::watch(client, json).await,
        CliCommand::Game(command) => catalogue::run(client, json, command).await,
        CliCommand::Config(command) => config_command::run(client, json, *command).await,
        CliCommand::Start {
            target,
            worker,
            labels,
            wait,
        } => instance_command::start(client, json, &target, worker, &labels, wait).await,
        CliCommand::Stop { instance, wait } => {
            instance_command::stop(client, json, instance, wait).await
        }
        CliCommand::Restart { instance } => {
            let accepted = client.restart(InstanceId(instance)).await?;
            print(json, &accepted, || {
                format!(
                    "restarting instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        CliCommand::Kill { instance } => {
            let accepted = client.kill(InstanceId(instance)).await?;
            print(json, &accepted, || {
                format!(
                    "killing instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        CliCommand::Send { instance, line } => {
            let accepted = client.stdin(InstanceId(instance), &line.join(" ")).await?;
            print(json, &accepted, || {
                format!(
                    "sent to instance {instance} (command {})",
                    accepted.command_id
                )
            })
        }
        CliCommand::Instances { status } => instance_command::list(client, json, status).await,
        CliCommand::Instance(InstanceCommand::Show { instance }) => {
            instance_command::show(client, json, instance).await
        }
        CliCommand::History { instance } => instance_command::history(client, json, instance).await,
        CliCommand::Console { instance, after } => {
            console::console(client, json, instance, after).await
        }
        CliCommand::Command { id } => {
            let record = client.get_command(id).await?;
            print(json, &record, || {
                format!(
                    "command {} ({}) to worker {}: {}{}",
                    record.id,
                    record.envelope.command.name(),
                    record.worker_id.get(),
                    record.state,
                    record
                        .detail
                        .as_deref()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                )
            })
        }
        CliCommand::Tokens(command) => admin::tokens(client, json, command).await,
        CliCommand::Credentials(command) => admin::credentials(client, json, command).await,
        CliCommand::Workers => {
            let workers = client.list_workers().await?;
            print(json, &workers, || {
                let mut out = format!(
                    "{:<6} {:<20} {:<6} {:<13} {}",
                    "ID", "NAME", "EPOCH", "STATUS", "CAPACITY"
                );
                for w in &workers {
                    out.push_str(&format!(
                        "\n{:<6} {:<20} {:<6} {:<13} {}",
                        w.id.get(),
                        w.name,
                        w.epoch,
                        w.status.as_str(),
                        w.capacity
                    ));
                }
                out
            })
        }
        CliCommand::Up(_) | CliCommand::Login => {
            unreachable!("`up` and `login` run without a host client")
        }
    }
}

/// A 401 from a host the command line sent no token to says where it looked for one.
fn explain_missing_token(error: anyhow::Error, no_token: Option<&str>) -> anyhow::Error {
    let unauthorized = error
        .downcast_ref::<ClientError>()
        .is_some_and(|e| matches!(e, ClientError::Problem(p) if p.status == 401));
    match no_token {
        Some(hint) if unauthorized => error.context(hint.to_owned()),
        _ => error,
    }
}

/// The host when neither `--host` nor a saved login names one.
const DEFAULT_HOST: &str = "http://127.0.0.1:8000";

/// The token from `--token`/`MANMAN_TOKEN`, else the saved login's (for its host), else the
/// token file when it exists and belongs to `host` (an error when it belongs to another).
fn token(cli: &Cli, saved: Option<&SavedLogin>, host: &str) -> anyhow::Result<Option<String>> {
    if let Some(token) = &cli.token {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(saved) = saved.filter(|s| s.host == host) {
        return Ok(Some(saved.token.clone()));
    }
    local_admin::token_for(host, &cli.token_file)
}

#[cfg(test)]
mod tests {
    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
