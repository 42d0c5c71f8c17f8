//! `manman config …`: configs from files and flags, shown in the format they are edited in;
//! and finding a config by name (`GAME`, `GAME/CONFIG` or an id).

use super::game::find_game;
use crate::config_file::{ConfigFile, FileFormat};
use crate::output::{ignore_closed_pipe, print, write_out};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use manman_core::config::{GameServerConfig, RestartMode, SteamLogin, SteamOptions, StopSignal};
use manman_core::id::ConfigId;
use manman_http::Client;
use std::path::PathBuf;

/// Config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Add a config to a game: from a file (`-f`), flags, or both (flags win).
    Create {
        /// The game's name.
        game: String,
        /// The config's name (else `name` in the file, or --name).
        #[arg(id = "config_name", value_name = "NAME")]
        config_name: Option<String>,
        /// The config's fields.
        #[command(flatten)]
        fields: ConfigFields,
    },
    /// Change a config (`GAME/CONFIG` or an id): with `-f FILE` the file replaces it (fields the
    /// file leaves out take their defaults; name and executable stay when left out); flags then
    /// change single fields. Instances already running keep the config they started with.
    Update {
        /// `GAME/CONFIG` or a config id.
        target: String,
        /// The config's fields.
        #[command(flatten)]
        fields: ConfigFields,
    },
    /// Print a config (`GAME/CONFIG`, `GAME` for its default, or an id) as a file that
    /// `config update -f` takes back.
    Show {
        /// `GAME/CONFIG`, `GAME` or a config id.
        target: String,
        /// The format to print (with the global `--json`: the stored config with its id).
        #[arg(long, value_enum, default_value = "yaml")]
        format: FileFormat,
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

/// A config's fields as flags; each one given overrides the file (`-f`) or the stored config.
/// An empty value unsets an optional text field (`--ready-pattern ''`).
#[derive(Debug, Default, Args)]
pub struct ConfigFields {
    /// A config file (.json, .yaml/.yml or .toml; `-` reads stdin, with --format).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The file's format, when its extension does not say.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// The config's name (renames it on update).
    #[arg(long)]
    pub name: Option<String>,
    /// The program, relative to the game's directory.
    #[arg(long)]
    pub executable: Option<String>,
    /// An argument (repeat for more; replaces all the arguments).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// No arguments at all.
    #[arg(long, conflicts_with = "args")]
    pub no_args: bool,
    /// An environment variable `KEY=VALUE` (repeat for more; others are kept).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Remove this environment variable (repeat for more).
    #[arg(long = "unset-env")]
    pub unset_env: Vec<String>,
    /// Working directory, relative to the game's directory ('' for the game's directory).
    #[arg(long)]
    pub working_dir: Option<String>,
    /// A regex: the server is running when a console line matches ('': at spawn).
    #[arg(long)]
    pub ready_pattern: Option<String>,
    /// Seconds the server may take to print its ready line, then it is a crash (0: for ever).
    #[arg(long, value_name = "SECONDS")]
    pub ready_timeout: Option<u32>,
    /// Make it the game's default config (`--default=false`: no longer).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub default: Option<bool>,
    /// Show it in listings (hidden configs still run).
    #[arg(long, value_name = "BOOL")]
    pub visible: Option<bool>,
    /// Whether an exit with code 0 nobody asked for counts as complete (else crashed).
    #[arg(long, value_name = "BOOL")]
    pub clean_exit_is_complete: Option<bool>,
    /// A console line that stops the server gracefully, e.g. `quit` ('': none).
    #[arg(long)]
    pub stop_line: Option<String>,
    /// The signal sent when the stop line did not end it: TERM or INT.
    #[arg(long, value_parser = parse_stop_signal, value_name = "TERM|INT")]
    pub stop_signal: Option<StopSignal>,
    /// Seconds to wait after the stop line before the signal.
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Seconds to wait after the signal before SIGKILL.
    #[arg(long, value_name = "SECONDS")]
    pub stop_signal_grace: Option<u32>,
    /// When to restart it after an exit nobody asked for: never, on-crash or always.
    #[arg(long, value_parser = parse_restart_mode, value_name = "MODE")]
    pub restart: Option<RestartMode>,
    /// Restarts allowed within the window before it is given up (crash-loop).
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<u32>,
    /// The window counted for --max-restarts, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub restart_window: Option<u32>,
    /// First restart backoff, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub backoff_initial_ms: Option<u64>,
    /// Largest restart backoff, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub backoff_max_ms: Option<u64>,
    /// Steam beta branch ('': the default branch).
    #[arg(long)]
    pub steam_branch: Option<String>,
    /// The worker-side secret holding the branch's password ('': none).
    #[arg(long, value_name = "SECRET_NAME")]
    pub steam_branch_password_secret: Option<String>,
    /// Have SteamCMD validate the files (`--steam-validate=false`: no longer).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub steam_validate: Option<bool>,
    /// How SteamCMD logs in: `anonymous`, or the name of a credential configured on the worker.
    #[arg(long, value_name = "anonymous|CREDENTIAL")]
    pub steam_login: Option<String>,
    /// No Steam options at all.
    #[arg(long, conflicts_with_all = ["steam_branch", "steam_branch_password_secret", "steam_validate", "steam_login"])]
    pub no_steam: bool,
}

/// `TERM`, `INT`, `SIGTERM`, `sigint`…
fn parse_stop_signal(text: &str) -> Result<StopSignal, String> {
    let upper = text.to_ascii_uppercase();
    match upper.strip_prefix("SIG").unwrap_or(&upper) {
        "TERM" => Ok(StopSignal::Term),
        "INT" => Ok(StopSignal::Int),
        _ => Err("a stop signal is TERM or INT".to_owned()),
    }
}

/// `never`, `on-crash`, `always`.
fn parse_restart_mode(text: &str) -> Result<RestartMode, String> {
    match text {
        "never" => Ok(RestartMode::Never),
        "on-crash" => Ok(RestartMode::OnCrash),
        "always" => Ok(RestartMode::Always),
        _ => Err("a restart mode is never, on-crash or always".to_owned()),
    }
}

/// `Some("")` → `None`: an empty flag unsets the field.
fn text_or_unset(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl ConfigFields {
    /// The file given with `-f`, if any.
    fn read_file(&self) -> anyhow::Result<Option<ConfigFile>> {
        match &self.file {
            Some(path) => ConfigFile::read(path, self.format).map(Some),
            None if self.format.is_some() => bail!("--format is the format of -f FILE: give one"),
            None => Ok(None),
        }
    }

    /// Applies every flag given to `file`.
    fn apply(self, file: &mut ConfigFile) -> anyhow::Result<()> {
        if let Some(name) = self.name {
            file.name = Some(name);
        }
        if let Some(executable) = self.executable {
            file.executable = Some(executable);
        }
        if self.no_args {
            file.args.clear();
        } else if !self.args.is_empty() {
            file.args = self.args;
        }
        for pair in self.env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--env {pair:?}: write it as KEY=VALUE"))?;
            file.env.insert(key.to_owned(), value.to_owned());
        }
        for key in self.unset_env {
            file.env.remove(&key);
        }
        if let Some(dir) = self.working_dir {
            file.working_dir = text_or_unset(dir);
        }
        if let Some(pattern) = self.ready_pattern {
            file.ready_pattern = text_or_unset(pattern);
        }
        set(&mut file.ready_timeout_s, self.ready_timeout);
        set(&mut file.is_default, self.default);
        set(&mut file.is_visible, self.visible);
        set(
            &mut file.clean_exit_is_complete,
            self.clean_exit_is_complete,
        );
        if let Some(line) = self.stop_line {
            file.stop.stdin_line = text_or_unset(line);
        }
        set(&mut file.stop.signal, self.stop_signal);
        set(&mut file.stop.timeout_s, self.stop_timeout);
        set(&mut file.stop.signal_grace_s, self.stop_signal_grace);
        set(&mut file.restart.mode, self.restart);
        set(&mut file.restart.max_restarts, self.max_restarts);
        set(&mut file.restart.window_s, self.restart_window);
        set(
            &mut file.restart.backoff_initial_ms,
            self.backoff_initial_ms,
        );
        set(&mut file.restart.backoff_max_ms, self.backoff_max_ms);
        if self.no_steam {
            file.steam = None;
        }
        let steam_given = self.steam_branch.is_some()
            || self.steam_branch_password_secret.is_some()
            || self.steam_validate.is_some()
            || self.steam_login.is_some();
        if steam_given {
            let steam = file.steam.get_or_insert_with(SteamOptions::default);
            if let Some(branch) = self.steam_branch {
                steam.branch = text_or_unset(branch);
            }
            if let Some(secret) = self.steam_branch_password_secret {
                steam.branch_password_secret = text_or_unset(secret);
            }
            set(&mut steam.validate, self.steam_validate);
            if let Some(login) = self.steam_login {
                steam.login = match login.as_str() {
                    "anonymous" | "" => SteamLogin::Anonymous,
                    _ => SteamLogin::Named(login),
                };
            }
        }
        Ok(())
    }
}

/// `*field = value` when a value was given.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// Runs a `manman config` subcommand.
pub(crate) async fn run(client: &Client, json: bool, command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Create {
            game,
            config_name,
            fields,
        } => {
            let game = find_game(client, &game).await?;
            let mut file = fields.read_file()?.unwrap_or_default();
            if let Some(name) = config_name {
                file.name = Some(name);
            }
            fields.apply(&mut file)?;
            let spec = file.into_spec()?;
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
        ConfigCommand::Update { target, fields } => {
            let stored = named_config(client, &target).await?;
            let mut file = match fields.read_file()? {
                Some(mut file) => {
                    // A file replaces the config; what identifies it stays when left out.
                    file.name.get_or_insert_with(|| stored.spec.name.clone());
                    file.executable
                        .get_or_insert_with(|| stored.spec.executable.clone());
                    file
                }
                None => ConfigFile::from(stored.spec.clone()),
            };
            fields.apply(&mut file)?;
            let spec = file.into_spec()?;
            let config = client.update_config(stored.id, &spec).await?;
            print(json, &config, || {
                let what = if config.spec == stored.spec {
                    "unchanged"
                } else {
                    "updated"
                };
                format!("config {} {what}: {}", config.id.get(), config.spec.name)
            })
        }
        ConfigCommand::Show { target, format } => {
            let id = resolve_config(client, &target).await?;
            let config = client.get_config(id).await?;
            if json {
                return print(json, &config, String::new);
            }
            let text = ConfigFile::from(config.spec).render(format)?;
            write_out(&text).or_else(ignore_closed_pipe)?;
            Ok(())
        }
        ConfigCommand::List { game } => {
            let game = match game {
                Some(name) => Some(find_game(client, &name).await?.id),
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
        ConfigCommand::Delete { target } => {
            let config = named_config(client, &target).await?;
            client.delete_config(config.id).await?;
            let id = config.id;
            print(json, &id, || format!("config {} deleted", id.get()))
        }
    }
}

/// `GAME` (its default config), `GAME/CONFIG` or a config id → the config id.
pub(crate) async fn resolve_config(client: &Client, target: &str) -> anyhow::Result<ConfigId> {
    if let Ok(id) = target.parse::<i64>() {
        return Ok(ConfigId(id));
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

/// `GAME/CONFIG` or a config id (never a game alone: too easy to mean another config) → the
/// stored config.
pub(crate) async fn named_config(
    client: &Client,
    target: &str,
) -> anyhow::Result<GameServerConfig> {
    if !target.contains('/') && target.parse::<i64>().is_err() {
        bail!("name the config as GAME/CONFIG or by its id, not by the game alone");
    }
    let id = resolve_config(client, target).await?;
    Ok(client.get_config(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        fields: ConfigFields,
    }

    fn apply(args: &[&str], file: &mut ConfigFile) {
        let flags = Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .expect("flags parse");
        flags.fields.apply(file).expect("apply");
    }

    #[test]
    fn every_flag_sets_its_field_and_empty_unsets() {
        let mut file = ConfigFile::default();
        apply(
            &[
                "--name",
                "main",
                "--executable",
                "srv",
                "--arg",
                "-x",
                "--arg",
                "1",
                "--env",
                "A=1",
                "--env",
                "B=2",
                "--working-dir",
                "bin",
                "--ready-pattern",
                "ready",
                "--ready-timeout",
                "9",
                "--default",
                "--visible",
                "false",
                "--clean-exit-is-complete",
                "false",
                "--stop-line",
                "quit",
                "--stop-signal",
                "sigint",
                "--stop-timeout",
                "7",
                "--stop-signal-grace",
                "2",
                "--restart",
                "on-crash",
                "--max-restarts",
                "3",
                "--restart-window",
                "60",
                "--backoff-initial-ms",
                "10",
                "--backoff-max-ms",
                "20",
                "--steam-branch",
                "beta",
                "--steam-branch-password-secret",
                "pw",
                "--steam-validate",
                "--steam-login",
                "ops",
            ],
            &mut file,
        );
        let spec = file.clone().into_spec().expect("spec");
        assert_eq!(spec.name, "main");
        assert_eq!(spec.executable, "srv");
        assert_eq!(spec.args, ["-x", "1"]);
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.working_dir.as_deref(), Some("bin"));
        assert_eq!(spec.ready_pattern.as_deref(), Some("ready"));
        assert_eq!(spec.ready_timeout_s, 9);
        assert!(spec.is_default && !spec.is_visible && !spec.clean_exit_is_complete);
        assert_eq!(spec.stop.stdin_line.as_deref(), Some("quit"));
        assert_eq!(spec.stop.signal, StopSignal::Int);
        assert_eq!((spec.stop.timeout_s, spec.stop.signal_grace_s), (7, 2));
        assert_eq!(spec.restart.mode, RestartMode::OnCrash);
        assert_eq!(
            (
                spec.restart.max_restarts,
                spec.restart.window_s,
                spec.restart.backoff_initial_ms,
                spec.restart.backoff_max_ms
            ),
            (3, 60, 10, 20)
        );
        let steam = spec.steam.expect("steam");
        assert_eq!(steam.branch.as_deref(), Some("beta"));
        assert_eq!(steam.branch_password_secret.as_deref(), Some("pw"));
        assert!(steam.validate);
        assert_eq!(steam.login, SteamLogin::Named("ops".into()));

        apply(
            &[
                "--ready-pattern",
                "",
                "--stop-line",
                "",
                "--working-dir",
                "",
                "--unset-env",
                "A",
                "--no-args",
                "--default=false",
                "--no-steam",
            ],
            &mut file,
        );
        let spec = file.into_spec().expect("spec");
        assert_eq!(spec.ready_pattern, None);
        assert_eq!(spec.stop.stdin_line, None);
        assert_eq!(spec.working_dir, None);
        assert!(spec.args.is_empty() && !spec.is_default && spec.steam.is_none());
        assert_eq!(spec.env.keys().collect::<Vec<_>>(), ["B"]);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--stop-signal", "KILL"][..],
            &["--restart", "sometimes"],
            &["--no-args", "--arg", "x"],
        ] {
            assert!(
                Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied())).is_err(),
                "{args:?}"
            );
        }
    }
}
