//! The `demo` game of `manman up`: the fake game server, ready to start without knowing any
//! path.

use anyhow::Context;
use manman_core::config::{ConfigSpec, StopPolicy};
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::HostService;
use std::path::Path;

/// Name of the demo game.
pub const DEMO_GAME: &str = "demo";
/// The executable's name inside the demo game's directory.
pub const DEMO_EXECUTABLE: &str = "fake-game-server";

/// Puts the fake game server at `<data_dir>/games/demo/fake-game-server` (a hard link to
/// `executable`, or a copy) and registers the `demo` game with a default config.
pub async fn install(host: &HostService, data_dir: &Path, executable: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join("games").join(DEMO_GAME);
    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("could not create {}", dir.display()))?;
    place_executable(executable, &dir.join(DEMO_EXECUTABLE))
        .await
        .with_context(|| {
            format!(
                "could not put the fake game server ({}) into {}",
                executable.display(),
                dir.display()
            )
        })?;

    // A data dir kept from an earlier run has the demo already.
    if host.store().catalogue.find_game(DEMO_GAME).await?.is_some() {
        return Ok(());
    }
    let game = host
        .create_game(&NewGameServer {
            name: DEMO_GAME.to_owned(),
            server_type: ServerType::Local {
                path: format!("games/{DEMO_GAME}"),
            },
        })
        .await?;
    let mut spec = ConfigSpec::new("default", DEMO_EXECUTABLE);
    spec.is_default = true;
    spec.args = vec!["--ready-delay-ms".to_owned(), "500".to_owned()];
    spec.ready_pattern = Some("Server is ready".to_owned());
    spec.stop = StopPolicy {
        stdin_line: Some("quit".to_owned()),
        timeout_s: 10,
        ..StopPolicy::default()
    };
    host.create_config(game.id, &spec).await?;
    Ok(())
}

/// Makes `target` the same file as `executable`: a hard link (a symbolic link would point out of
/// the game's directory, which the worker refuses), or a copy on another file system. A target
/// that is already that file is kept; anything else there is replaced.
async fn place_executable(executable: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let wanted = tokio::fs::metadata(executable).await?;
    if let Ok(present) = tokio::fs::symlink_metadata(target).await {
        if present.is_file() && present.dev() == wanted.dev() && present.ino() == wanted.ino() {
            return Ok(());
        }
        tokio::fs::remove_file(target).await?;
    }
    if tokio::fs::hard_link(executable, target).await.is_err() {
        tokio::fs::copy(executable, target).await?;
    }
    Ok(())
}
