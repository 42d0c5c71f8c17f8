//! [`LocalInstaller`]: `local` games are already on disk; it checks they are there.

use crate::game_server::ServerType;
use crate::ports::{GameInstaller, InstallError, InstallRequest, Installation, ProgressSink};
use async_trait::async_trait;
use std::path::PathBuf;

/// Installs nothing: finds a `local` game's directory and checks the executable is in it.
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
        let dir = request.install_root.join(PathBuf::from(path));
        if !tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            return Err(InstallError::Missing {
                game: game.name.clone(),
                path: dir,
                hint: "put the game's files there on this worker, or fix the game's path"
                    .to_owned(),
            });
        }
        let executable = dir.join(&request.config.spec.executable);
        if !tokio::fs::metadata(&executable)
            .await
            .is_ok_and(|m| m.is_file())
        {
            return Err(InstallError::Missing {
                game: game.name.clone(),
                path: executable,
                hint: format!(
                    "config {:?} names an executable that is not in the game's directory",
                    request.config.spec.name
                ),
            });
        }
        Ok(Installation {
            dir,
            build_id: None,
        })
    }
}
