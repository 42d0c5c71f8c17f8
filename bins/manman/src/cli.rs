//! The `manman` command line: its global flags, the subcommands (one module per noun, in
//! [`crate::commands`]), and which host and token they use.

use crate::commands::{
    command, config, console, credential, game, instance, login, token, up, watch, worker,
};
use crate::local_admin;
use crate::login::{self as saved_login, SavedLogin};
use clap::{Parser, Subcommand};
use manman_http::{Client, ClientError};
use std::path::PathBuf;

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
    Up(up::UpArgs),
    /// Games in the catalogue.
    #[command(subcommand)]
    Game(game::GameCommand),
    /// Configs of games: from files (JSON, YAML, TOML) and flags; `config show` prints one.
    #[command(subcommand)]
    Config(Box<config::ConfigCommand>),
    /// `start`, `stop`, `restart`, `kill`, `send`, `instances`, `instance show` and `history`, at
    /// the top level (clap shows no text of its own for a flattened group).
    #[command(flatten)]
    Instance(instance::InstanceVerb),
    /// Attach to an instance's console: its output, live; lines typed are sent to it (Ctrl-C
    /// detaches). Reconnects when the host goes away; says how the instance ended.
    Console(console::ConsoleArgs),
    /// Show a command's record.
    Command(command::CommandArgs),
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
    Tokens(token::TokenCommand),
    /// Worker credentials, which a worker exchanges for its token (needs an admin token).
    #[command(subcommand)]
    Credentials(credential::CredentialCommand),
}

/// Runs the command line; the error is printed by `main` (exit code 1).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli.config_file.clone().or_else(saved_login::default_path);
    let saved = match (&config_file, &cli.command) {
        // `manman up` talks to no host: a broken login file must not stop it.
        (_, CliCommand::Up(_)) | (None, _) => None,
        // `manman login` replaces a broken login file.
        (Some(path), CliCommand::Login) => saved_login::load(path).unwrap_or_else(|e| {
            eprintln!("note: {e:#}; this login replaces it");
            None
        }),
        (Some(path), _) => saved_login::load(path)?,
    };
    let host = cli
        .host
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.host.clone()))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let mut client = Client::new(&host);
    let mut no_token = None;
    if !matches!(cli.command, CliCommand::Up(_) | CliCommand::Login) {
        match find_token(&cli, saved.as_ref(), &host)? {
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
        CliCommand::Up(args) => up::run(args).await,
        CliCommand::Login => {
            login::run(cli.token.as_deref(), json, &host, config_file.as_deref()).await
        }
        CliCommand::Game(command) => game::run(&client, json, command).await,
        CliCommand::Config(command) => config::run(&client, json, *command).await,
        CliCommand::Instance(command) => instance::run(&client, json, command).await,
        CliCommand::Console(args) => console::run(&client, json, args).await,
        CliCommand::Command(args) => command::run(&client, json, args).await,
        CliCommand::Workers => worker::run(&client, json).await,
        CliCommand::Watch => watch::run(&client, json).await,
        CliCommand::Tokens(command) => token::run(&client, json, command).await,
        CliCommand::Credentials(command) => credential::run(&client, json, command).await,
    };
    outcome.map_err(|e| explain_missing_token(e, no_token.as_deref()))
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
fn find_token(cli: &Cli, saved: Option<&SavedLogin>, host: &str) -> anyhow::Result<Option<String>> {
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
