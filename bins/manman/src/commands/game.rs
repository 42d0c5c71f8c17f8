//! `manman game …`: games in the catalogue, and finding a game by name.

use crate::output::print;
use anyhow::{Context, bail};
use clap::Subcommand;
use manman_core::game_server::{GameServer, NewGameServer, ServerType};
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
