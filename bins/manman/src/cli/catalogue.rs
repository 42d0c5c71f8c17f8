//! `manman game …`, and finding games and configs by name.

use super::output::print;
use anyhow::{Context, bail};
use clap::Subcommand;
use manman_core::config::GameServerConfig;
use manman_core::game_server::{GameServer, NewGameServer, ServerType};
use manman_core::id::ConfigId;
use manman_http::Client;

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

/// Runs a `manman game` subcommand.
pub(crate) async fn run(client: &Client, json: bool, command: GameCommand) -> anyhow::Result<()> {
    match command {
        GameCommand::Create { name, local, steam } => {
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
        GameCommand::List => {
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
        GameCommand::Delete { name } => {
            let game = find_game(client, &name).await?;
            client.delete_game(game.id).await?;
            print(json, &game, || format!("game {} deleted", game.name))
        }
    }
}

/// The game called `name`.
pub(crate) async fn find_game(client: &Client, name: &str) -> anyhow::Result<GameServer> {
    client
        .list_games()
        .await?
        .into_iter()
        .find(|g| g.name == name)
        .with_context(|| format!("no game named {name:?}: see `manman game list`"))
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
