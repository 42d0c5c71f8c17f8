//! [`LocalInstaller`]: `local` games are already on disk; it checks they are there.

use crate::confined_path::{ConfinedPath, ConfinementError};
use crate::game_server::GameServer;
use crate::game_server::ServerType;
use crate::ports::{GameInstaller, InstallError, InstallRequest, Installation, ProgressSink};
use async_trait::async_trait;

/// Installs nothing: finds a `local` game's directory inside the install directory and checks
/// the executable is in it (links resolved: one that points out is refused).
/// Steam games are refused (use `manman-steam`'s installer).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalInstaller;

#[async_trait]
impl GameInstaller for LocalInstaller {
    async fn install(
        &self,
        request: &InstallRequest,
        _progress: &dyn ProgressSink,
    ) -> Result<Installation, InstallError> {
        let game = &request.game;
        let ServerType::Local { path } = &game.server_type else {
            return Err(InstallError::Unsupported {
                game: game.name.clone(),
                detail: "this worker only runs local games: configure a SteamCMD installer for Steam games".to_owned(),
            });
        };
        let root =
            ConfinedPath::root(&request.install_root).map_err(|e| InstallError::Missing {
                game: game.name.clone(),
                path: request.install_root.clone(),
                hint: format!("the worker's install directory cannot be used: {e}"),
            })?;
        let dir = match root.join(path, "server_type.path") {
            Ok(dir) if dir.as_path().is_dir() => dir,
            Ok(dir) => {
                return Err(InstallError::Missing {
                    game: game.name.clone(),
                    path: dir.as_path().to_path_buf(),
                    hint: "the game's path is not a directory: fix the game's path".to_owned(),
                });
            }
            Err(ConfinementError::Missing { full, .. }) => {
                return Err(InstallError::Missing {
                    game: game.name.clone(),
                    path: full,
                    hint: "put the game's files there on this worker, or fix the game's path"
                        .to_owned(),
                });
            }
            Err(refused) => return Err(refused_install(game, &refused)),
        };
        let executable = match dir.join(&request.config.spec.executable, "executable") {
            Ok(executable) if executable.as_path().is_file() => executable,
            Err(ConfinementError::Missing { full, .. }) => {
                return Err(InstallError::Missing {
                    game: game.name.clone(),
                    path: full,
                    hint: format!(
                        "config {:?} names an executable that is not in the game's directory",
                        request.config.spec.name
                    ),
                });
            }
            Ok(executable) => {
                return Err(InstallError::Missing {
                    game: game.name.clone(),
                    path: executable.as_path().to_path_buf(),
                    hint: format!(
                        "config {:?} names an executable that is not a file",
                        request.config.spec.name
                    ),
                });
            }
            Err(refused) => return Err(refused_install(game, &refused)),
        };
        tracing::debug!(game = %game.name, executable = %executable, "local game found");
        Ok(Installation {
            dir: dir.as_path().to_path_buf(),
            build_id: None,
        })
    }
}

/// A path of the game or its config that leaves the install directory.
fn refused_install(game: &GameServer, refused: &ConfinementError) -> InstallError {
    InstallError::Refused {
        game: game.name.clone(),
        detail: refused.to_string(),
    }
}
