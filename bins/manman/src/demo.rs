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
        .catalogue()
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
    host.catalogue().create_config(game.id, &spec).await?;
    Ok(())
}

/// Makes `target` the same file as `executable`: a hard link (a symbolic link would point out of
/// the game's directory, which the worker refuses), or a copy on another file system. A target
/// that is already that file is kept; anything else there is replaced.
///
/// The directory is the game servers' user's once the demo has run (it is handed over to that
/// user), so nothing here follows a link planted in it: the file is made under a new name (a
/// hard link, or a copy created with `create_new`, which refuses any existing entry), then
/// renamed over the target, which replaces the entry without following it.
async fn place_executable(executable: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let wanted = tokio::fs::metadata(executable).await?;
    if let Ok(present) = tokio::fs::symlink_metadata(target).await
        && present.is_file()
        && present.dev() == wanted.dev()
        && present.ino() == wanted.ino()
    {
        return Ok(());
    }
    let fresh = target.with_file_name(format!(
        ".{}.{}-{}",
        DEMO_EXECUTABLE,
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    if tokio::fs::hard_link(executable, &fresh).await.is_err() {
        copy_new(executable, &fresh, wanted.mode()).await?;
    }
    let placed = tokio::fs::rename(&fresh, target).await;
    if placed.is_err() {
        let _ = tokio::fs::remove_file(&fresh).await;
    }
    placed
}

/// Copies `from` to a file `to` that must not exist yet (no entry, no link), with `mode`.
async fn copy_new(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let mut source = tokio::fs::File::open(from).await?;
    let mut copy = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o7777)
        .open(to)
        .await?;
    tokio::io::copy(&mut source, &mut copy).await?;
    copy.sync_all().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[tokio::test]
    async fn a_link_planted_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let executable = dir.path().join("manman");
        std::fs::write(&executable, "the program").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's file").unwrap();
        let game = dir.path().join("game");
        std::fs::create_dir(&game).unwrap();
        let target = game.join(DEMO_EXECUTABLE);
        symlink(&victim, &target).unwrap();

        place_executable(&executable, &target).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
        let placed = std::fs::symlink_metadata(&target).unwrap();
        assert!(placed.is_file(), "the link itself was replaced");
        assert_eq!(placed.ino(), std::fs::metadata(&executable).unwrap().ino());
        place_executable(&executable, &target).await.unwrap();
        assert_eq!(std::fs::read_dir(&game).unwrap().count(), 1, "no leftovers");

        // The copy (another file system) refuses any entry at its name, a link included.
        let planted = game.join("planted");
        symlink(&victim, &planted).unwrap();
        assert!(copy_new(&executable, &planted, 0o755).await.is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
    }
}
