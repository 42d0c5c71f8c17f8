//! The `manman` command line: `up`, and client subcommands that talk to a host.

use crate::local_admin;
use crate::login::{self, SavedLogin};
use crate::terminal_text::escape_controls;
use crate::up::{self, UpOptions};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use manman_core::auth::Scope;
use manman_core::config::ConfigSpec;
use manman_core::event::Event;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::id::InstanceId;
use manman_core::id::TokenId;
use manman_core::instance::InstanceFilter;
use manman_core::status::Status;
use manman_http::{Client, ClientError, NewToken};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
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
    /// Configs of games.
    #[command(subcommand)]
    Config(ConfigCommand),
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
    },
    /// Stop an instance gracefully.
    Stop {
        /// The instance id.
        instance: i64,
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
    /// List instances.
    Instances {
        /// Only this status.
        #[arg(long)]
        status: Option<Status>,
    },
    /// Attach to an instance's console: its output, live; lines typed are sent to it (Ctrl-C
    /// detaches).
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
    /// (Ctrl-C to stop).
    Watch,
    /// Operator tokens (needs an admin token).
    #[command(subcommand)]
    Tokens(TokenCommand),
    /// Worker credentials, which a worker exchanges for its token (needs an admin token).
    #[command(subcommand)]
    Credentials(CredentialCommand),
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// A unique name saying whose or what for.
        name: String,
        /// What it may do: read, operate or admin.
        #[arg(long, default_value = "read")]
        scope: Scope,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke {
        /// The token id.
        id: i64,
    },
}

/// Worker credential subcommands.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create credentials for the worker of this name; the secret is printed once.
    Create {
        /// The name the worker registers under (`MANMAN_WORKER_NAME`).
        worker_name: String,
    },
    /// List worker credentials (never their secrets).
    List,
    /// Revoke worker credentials.
    Revoke {
        /// The client id.
        client_id: String,
    },
}

/// `manman up` options.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the API listens.
    #[arg(long, env = "MANMAN_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// The worker's install directory.
    #[arg(
        long,
        env = "MANMAN_WORKER_INSTALL_DIRECTORY",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// Do not register the `demo` game.
    #[arg(long)]
    pub no_demo: bool,
    /// Most game servers the worker runs at once.
    #[arg(long, env = "MANMAN_WORKER_CAPACITY", default_value_t = 16)]
    pub capacity: u32,
    /// The SteamCMD executable for `steam` games (a bare name is looked up on PATH).
    #[arg(long, env = "MANMAN_WORKER_STEAMCMD", default_value = "steamcmd")]
    pub steamcmd: PathBuf,
    /// Where the host keeps its truth: `sqlite` (`<data-dir>/manman.db`, kept across restarts),
    /// `sqlite:PATH`, `memory` (gone at exit) or `postgres://…`.
    #[arg(
        long,
        env = "MANMAN_STORE",
        default_value = "sqlite",
        hide_env_values = true,
        value_parser = StoreParser
    )]
    pub store: crate::up::StoreChoice,
}

/// Parses `--store` like [`up::StoreChoice`]'s `FromStr`, but refuses without clap's usual
/// "invalid value '<the input>'", which would print a URL's password.
#[derive(Debug, Clone, Copy)]
struct StoreParser;

impl clap::builder::TypedValueParser for StoreParser {
    type Value = up::StoreChoice;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--store (MANMAN_STORE): {message}\n"),
            )
            .with_cmd(command)
        };
        let text = value.to_str().ok_or_else(|| {
            refuse("is not UTF-8: use memory, sqlite, sqlite:PATH or postgres://…".to_owned())
        })?;
        text.parse().map_err(refuse)
    }
}

/// Game subcommands.
#[derive(Debug, Subcommand)]
pub enum GameCommand {
    /// Add a game.
    Create {
        /// Unique name.
        name: String,
        /// A directory already on the workers (relative: inside their install directory).
        #[arg(long, conflicts_with = "steam", required_unless_present = "steam")]
        local: Option<String>,
        /// A Steam app id, installed by SteamCMD.
        #[arg(long)]
        steam: Option<u32>,
    },
    /// List games.
    List,
    /// Delete a game that has no configs.
    Delete {
        /// The game's name.
        name: String,
    },
}

/// Config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Add a config to a game.
    Create {
        /// The game's name.
        game: String,
        /// The config's name.
        name: String,
        /// The program, relative to the game's directory.
        #[arg(long)]
        executable: String,
        /// An argument (repeat for more).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An environment variable `KEY=VALUE` (repeat for more).
        #[arg(long = "env")]
        env: Vec<String>,
        /// A regex: the server is running when a console line matches.
        #[arg(long)]
        ready_pattern: Option<String>,
        /// A console line that stops the server gracefully (e.g. `quit`).
        #[arg(long)]
        stop_line: Option<String>,
        /// Make it the game's default config.
        #[arg(long)]
        default: bool,
    },
    /// List the configs of a game, or of all games.
    List {
        /// The game's name.
        game: Option<String>,
    },
    /// Delete a config (`GAME/CONFIG` or an id) with no active instance, and the records of its
    /// ended instances.
    Delete {
        /// `GAME/CONFIG` or a config id.
        target: String,
    },
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
    // In a block of its own, so that a `?` inside ends the block and the hint can be added.
    let outcome: anyhow::Result<()> = async move {
        match cli.command {
        CliCommand::Login => {
            run_login(cli.token.as_deref(), json, &host, config_file.as_deref()).await
        }
        CliCommand::Watch => watch(&client, json).await,
        CliCommand::Up(args) => run_up(args).await,
        CliCommand::Game(GameCommand::Create { name, local, steam }) => {
            let server_type = match (local, steam) {
                (Some(path), None) => ServerType::Local { path },
                (None, Some(app_id)) => ServerType::Steam { app_id },
                _ => bail!("give exactly one of --local PATH and --steam APP_ID"),
            };
            let game = client
                .create_game(&NewGameServer { name, server_type })
                .await?;
            print(json, &game, || {
                format!("game {} created: {}", game.id.get(), game.name)
            })
        }
        CliCommand::Game(GameCommand::List) => {
            let games = client.list_games().await?;
            print(json, &games, || {
                let mut out = format!("{:<6} {:<24} {}", "ID", "NAME", "TYPE");
                for g in &games {
                    let kind = match &g.server_type {
                        ServerType::Steam { app_id } => format!("steam {app_id}"),
                        ServerType::Local { path } => format!("local {path}"),
                    };
                    out.push_str(&format!("\n{:<6} {:<24} {kind}", g.id.get(), g.name));
                }
                out
            })
        }
        CliCommand::Game(GameCommand::Delete { name }) => {
            let game = find_game(&client, &name).await?;
            client.delete_game(game.id).await?;
            print(json, &game, || format!("game {} deleted", game.name))
        }
        CliCommand::Config(ConfigCommand::Delete { target }) => {
            if !target.contains('/') && target.parse::<i64>().is_err() {
                bail!("name the config as GAME/CONFIG or by its id, not by the game alone");
            }
            let id = resolve_config(&client, &target).await?;
            client.delete_config(id).await?;
            print(json, &id, || format!("config {} deleted", id.get()))
        }
        CliCommand::Config(ConfigCommand::Create {
            game,
            name,
            executable,
            args,
            env,
            ready_pattern,
            stop_line,
            default,
        }) => {
            let game = find_game(&client, &game).await?;
            let mut spec = ConfigSpec::new(name, executable);
            spec.args = args;
            for pair in env {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("--env {pair:?}: write it as KEY=VALUE"))?;
                spec.env.insert(key.to_owned(), value.to_owned());
            }
            spec.ready_pattern = ready_pattern;
            spec.stop.stdin_line = stop_line;
            spec.is_default = default;
            let config = client.create_config(game.id, &spec).await?;
            print(json, &config, || {
                format!(
                    "config {} created: {}/{}",
                    config.id.get(),
                    game.name,
                    config.spec.name
                )
            })
        }
        CliCommand::Config(ConfigCommand::List { game }) => {
            let game = match game {
                Some(name) => Some(find_game(&client, &name).await?.id),
                None => None,
            };
            let configs = client.list_configs(game).await?;
            print(json, &configs, || {
                let mut out = format!(
                    "{:<6} {:<6} {:<20} {:<8} {}",
                    "ID", "GAME", "NAME", "DEFAULT", "EXECUTABLE"
                );
                for c in &configs {
                    out.push_str(&format!(
                        "\n{:<6} {:<6} {:<20} {:<8} {}",
                        c.id.get(),
                        c.game_server_id.get(),
                        c.spec.name,
                        if c.spec.is_default { "yes" } else { "" },
                        c.spec.executable
                    ));
                }
                out
            })
        }
        CliCommand::Start {
            target,
            worker,
            labels,
        } => {
            let config_id = resolve_config(&client, &target).await?;
            let labels = labels
                .iter()
                .map(|label| {
                    label
                        .split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("--label {label:?}: write it as KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let started = client
                .start(&StartRequest {
                    config_id,
                    worker,
                    labels,
                })
                .await?;
            print(json, &started, || {
                format!(
                    "instance {} starting on worker {} (command {})\nfollow it: manman console {}",
                    started.instance_id.get(),
                    started.worker_id.get(),
                    started.command_id,
                    started.instance_id.get()
                )
            })
        }
        CliCommand::Stop { instance } => {
            let accepted = client.stop(InstanceId(instance)).await?;
            print(json, &accepted, || {
                format!(
                    "stopping instance {instance} (command {})",
                    accepted.command_id
                )
            })
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
        CliCommand::Instances { status } => {
            let filter = InstanceFilter {
                status,
                ..InstanceFilter::default()
            };
            let instances = client.list_instances(&filter).await?;
            print(json, &instances, || {
                let mut out = format!(
                    "{:<6} {:<7} {:<7} {:<13} {}",
                    "ID", "CONFIG", "WORKER", "STATUS", "EXIT"
                );
                for i in &instances {
                    let exit = match (i.exit_code, i.exit_signal) {
                        (Some(code), _) => format!("code {code}"),
                        (None, Some(signal)) => format!("signal {signal}"),
                        (None, None) => String::new(),
                    };
                    out.push_str(&format!(
                        "\n{:<6} {:<7} {:<7} {:<13} {exit}",
                        i.id.get(),
                        i.config_id.get(),
                        i.worker_id.get(),
                        i.status.as_str()
                    ));
                }
                out
            })
        }
        CliCommand::Console { instance, after } => {
            let mut lines = Box::pin(client.console(InstanceId(instance), after).await?);
            // Lines typed (or piped) go to the server's stdin; the end of input stops only that.
            let typed = tokio::spawn(send_typed_lines(client.clone(), InstanceId(instance)));
            let _detach_on_return = AbortOnDrop(typed);
            while let Some(line) = lines.next().await {
                let line = line?;
                let text = if json {
                    format!("{}\n", serde_json::to_string(&line)?)
                } else {
                    let marker = match line.stream {
                        manman_core::console::ConsoleStream::Stdout => " ",
                        manman_core::console::ConsoleStream::Stderr => "!",
                        manman_core::console::ConsoleStream::Stdin => ">",
                    };
                    // A game's line may hold escape sequences meant for our terminal.
                    format!("{:>6}{marker} {}\n", line.seq, escape_controls(&line.text))
                };
                if let Err(e) = write_out(&text) {
                    // The reader went away (`| head`): stop following.
                    return ignore_closed_pipe(e).map_err(Into::into);
                }
            }
            Ok(())
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
        CliCommand::Tokens(command) => tokens(&client, json, command).await,
        CliCommand::Credentials(command) => credentials(&client, json, command).await,
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
        }
    }
    .await;
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
fn token(cli: &Cli, saved: Option<&SavedLogin>, host: &str) -> anyhow::Result<Option<String>> {
    if let Some(token) = &cli.token {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(saved) = saved.filter(|s| s.host == host) {
        return Ok(Some(saved.token.clone()));
    }
    local_admin::token_for(host, &cli.token_file)
}

/// Writes to stdout; a reader that went away is an error to the caller, never a panic.
fn write_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    let mut output = if json {
        serde_json::to_string_pretty(value)?
    } else {
        text()
    };
    output.push('\n');
    write_out(&output).or_else(ignore_closed_pipe)?;
    Ok(())
}

/// A closed pipe (`manman … | head`) ends the output quietly.
fn ignore_closed_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

async fn find_game(
    client: &Client,
    name: &str,
) -> anyhow::Result<manman_core::game_server::GameServer> {
    client
        .list_games()
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .with_context(|| format!("no game named {name:?}: see `manman game list`"))
}

/// `GAME`, `GAME/CONFIG` or a config id → the config id.
async fn resolve_config(
    client: &Client,
    target: &str,
) -> anyhow::Result<manman_core::id::ConfigId> {
    if let Ok(id) = target.parse::<i64>() {
        return Ok(manman_core::id::ConfigId(id));
    }
    let (game_name, config_name) = match target.split_once('/') {
        Some((game, config)) => (game, Some(config)),
        None => (target, None),
    };
    let game = find_game(client, game_name).await?;
    let configs = client.list_configs(Some(game.id)).await?;
    let config = match config_name {
        Some(name) => configs
            .iter()
            .find(|c| c.spec.name == name)
            .with_context(|| format!("game {game_name:?} has no config {name:?}: see `manman config list {game_name}`"))?,
        None => configs
            .iter()
            .find(|c| c.spec.is_default)
            .with_context(|| format!("game {game_name:?} has no default config: name one as {game_name}/CONFIG"))?,
    };
    Ok(config.id)
}

/// `manman login`: the token must work on the host; then both are saved.
async fn run_login(
    token: Option<&str>,
    json: bool,
    host: &str,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let path = config_file.context(
        "no place for the login: set MANMAN_CONFIG_FILE (HOME and XDG_CONFIG_HOME are not set)",
    )?;
    let token = match token {
        Some(token) => token.trim().to_owned(),
        None => {
            eprint!("token for {host}: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("could not read the token from stdin")?;
            line.trim().to_owned()
        }
    };
    if token.is_empty() {
        bail!("no token given: pass --token, MANMAN_TOKEN or type it");
    }
    let client = Client::new(host).with_token(&token);
    client
        .list_workers()
        .await
        .with_context(|| format!("the token does not work on {host}"))?;
    let login = SavedLogin {
        host: host.to_owned(),
        token,
    };
    login::save(path, &login)?;
    print(
        json,
        &serde_json::json!({"host": host, "config_file": path}),
        || format!("logged in to {host}; saved in {}", path.display()),
    )
}

/// Sends each line read from stdin to an instance, until the end of input.
async fn send_typed_lines(client: Client, id: InstanceId) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Err(e) = client.stdin(id, &line).await {
            eprintln!("could not send {line:?}: {e}");
        }
    }
}

/// Aborts a task when dropped: what the console sends ends with the console.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `manman watch`: every event, one line each (JSON with `--json`); install progress as a bar.
async fn watch(client: &Client, json: bool) -> anyhow::Result<()> {
    let mut events = Box::pin(client.events().await?);
    while let Some(event) = events.next().await {
        let text = watch_line(&event?, json)?;
        if let Err(e) = write_out(&format!("{text}\n")) {
            return ignore_closed_pipe(e).map_err(Into::into);
        }
    }
    Ok(())
}

/// One event as `manman watch` prints it: JSON, or a line for people with control characters
/// escaped (details and install stages come from workers and game servers).
fn watch_line(event: &Event, json: bool) -> anyhow::Result<String> {
    Ok(if json {
        serde_json::to_string(event)?
    } else {
        escape_controls(&describe(event)).into_owned()
    })
}

/// One event as a line for people.
fn describe(event: &Event) -> String {
    match event {
        Event::Status(report) => {
            let mut line = format!(
                "{}: {} ({})",
                report.entity,
                report.status,
                report.cause.as_str()
            );
            if let Some(detail) = &report.detail {
                line.push_str(&format!(" — {detail}"));
            }
            line
        }
        Event::CommandResult(result) => format!(
            "command {}: {}{}",
            result.command_id,
            manman_core::command::CommandState::from(result.outcome).as_str(),
            result
                .detail
                .as_deref()
                .map(|d| format!(" — {d}"))
                .unwrap_or_default()
        ),
        Event::InstallProgress(report) => {
            let progress = &report.progress;
            match progress.percent {
                Some(percent) => format!(
                    "{} installing: {} {:>5.1}% {}",
                    report.instance_id,
                    bar(percent),
                    percent,
                    progress.stage
                ),
                None => format!("{} installing: {}", report.instance_id, progress.stage),
            }
        }
    }
}

/// A 20-cell progress bar for `percent` (0 to 100).
fn bar(percent: f64) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 5.0).round()) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(20 - filled))
}

async fn tokens(client: &Client, json: bool, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, scope } => {
            let created = client.create_token(&NewToken { name, scope }).await?;
            print(json, &created, || {
                format!(
                    "token {} ({}) created; its secret is shown this once:\n{}",
                    created.token.name, created.token.scope, created.secret
                )
            })
        }
        TokenCommand::List => {
            let tokens = client.list_tokens().await?;
            print(json, &tokens, || {
                let mut out = format!("{:<6} {:<24} {:<8} {}", "ID", "NAME", "SCOPE", "STATE");
                for t in &tokens {
                    let state = match t.revoked_at {
                        Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                        None => "active".to_owned(),
                    };
                    out.push_str(&format!(
                        "\n{:<6} {:<24} {:<8} {state}",
                        t.id.get(),
                        t.name,
                        t.scope.as_str()
                    ));
                }
                out
            })
        }
        TokenCommand::Revoke { id } => {
            let token = client.revoke_token(TokenId(id)).await?;
            print(json, &token, || format!("token {} revoked", token.name))
        }
    }
}

async fn credentials(
    client: &Client,
    json: bool,
    command: CredentialCommand,
) -> anyhow::Result<()> {
    match command {
        CredentialCommand::Create { worker_name } => {
            let created = client.create_worker_credential(&worker_name).await?;
            print(json, &created, || {
                format!(
                    "credentials for worker {} created; give the worker these (the secret is shown this once):\n\
                     MANMAN_WORKER_NAME={}\nMANMAN_WORKER_SA_CLIENT_ID={}\nMANMAN_WORKER_SA_CLIENT_SECRET={}",
                    created.credential.worker_name,
                    created.credential.worker_name,
                    created.credential.client_id,
                    created.client_secret
                )
            })
        }
        CredentialCommand::List => {
            let credentials = client.list_worker_credentials().await?;
            print(json, &credentials, || {
                let mut out = format!("{:<22} {:<20} {}", "CLIENT ID", "WORKER", "STATE");
                for c in &credentials {
                    let state = if c.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    out.push_str(&format!(
                        "\n{:<22} {:<20} {state}",
                        c.client_id, c.worker_name
                    ));
                }
                out
            })
        }
        CredentialCommand::Revoke { client_id } => {
            let credential = client.revoke_worker_credential(&client_id).await?;
            print(json, &credential, || {
                format!("credentials {} revoked", credential.client_id)
            })
        }
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    let demo_executable = if args.no_demo {
        None
    } else {
        Some(
            std::env::current_exe()
                .context("could not find the manman executable for the demo game")?,
        )
    };
    let kept = match &args.store {
        up::StoreChoice::Memory => "Everything is in memory (gone at exit)".to_owned(),
        up::StoreChoice::Sqlite(path) => format!(
            "Data is kept in {}",
            path.clone()
                .unwrap_or_else(|| args.data_dir.join("manman.db"))
                .display()
        ),
        up::StoreChoice::Postgres(_) => "Data is kept in PostgreSQL".to_owned(),
    };
    let running = up::start(UpOptions {
        bind: args.bind,
        data_dir: args.data_dir,
        demo_executable,
        worker_name: "local".to_owned(),
        capacity: args.capacity,
        steamcmd: args.steamcmd,
        store: args.store,
    })
    .await?;
    let url = format!("http://{}", running.addr);
    let host_flag = if running.addr.to_string() == "127.0.0.1:8000" {
        String::new()
    } else {
        format!(" --host {url}")
    };
    let mut banner = format!(
        "ManMan is up: API at {url}/api/v1 (health: {url}/healthz)\n\
         {kept}; Ctrl-C stops the game servers and exits.\n"
    );
    let admin = &running.admin;
    if admin.created {
        banner.push_str(&format!(
            "\nAn admin token was created and saved in {} (the `manman` command line reads it \
             from there when run in this directory, and sends it to this host only; elsewhere \
             pass --token or MANMAN_TOKEN):\n\
             \x20 {}\n",
            admin.file.display(),
            admin.token
        ));
    } else {
        banner.push_str(&format!(
            "\nThe admin token is kept in {}.\n",
            admin.file.display()
        ));
    }
    if !args.no_demo {
        banner.push_str(&format!(
            "\nTry it from another terminal:\n\
             \x20 manman{host_flag} start demo              # starts the fake game server, prints its instance id\n\
             \x20 manman{host_flag} send 1 hello world      # a console line to instance 1\n\
             \x20 manman{host_flag} console 1               # follow its console (Ctrl-C to detach)\n\
             \x20 manman{host_flag} stop 1                  # stop it gracefully\n\
             (from a checkout, `manman` is `cargo run -p manman --`)\n"
        ));
    }
    // Whoever reads our output may go away (`manman up | head -1`): the system keeps running.
    let _ = write_out(&banner);
    let (shutdown, kill) = (running.shutdown_token(), running.kill_token());
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("shutting down: stopping game servers (again to kill them at once)…");
        shutdown.cancel();
        wait_for_signal().await;
        eprintln!("killing game servers…");
        kill.cancel();
    });
    running.wait().await
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::watch_line;
    use manman_core::event::{Event, StatusReport};
    use manman_core::id::InstanceId;
    use manman_core::status::{Cause, Entity, Status};

    #[test]
    fn watch_prints_control_characters_escaped_and_json_exactly() {
        let event = Event::Status(
            StatusReport::new(
                Entity::Instance(InstanceId(1)),
                Status::Crashed,
                Cause::Exited,
                chrono::Utc::now(),
            )
            .with_detail("exited: \u{1b}]0;pwned\u{7}"),
        );
        let line = watch_line(&event, false).expect("text");
        assert!(line.ends_with("exited: \\x1b]0;pwned\\x07"), "{line:?}");
        let json = watch_line(&event, true).expect("json");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(parsed["detail"], "exited: \u{1b}]0;pwned\u{7}");
    }
}
