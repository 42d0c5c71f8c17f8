//! [`InstallerByType`]: a worker's installers, chosen by the game's type.

use crate::game_server::ServerType;
use crate::ports::{GameInstaller, InstallError, InstallRequest, Installation, ProgressSink};
use crate::worker_service::LocalInstaller;
use async_trait::async_trait;
use std::sync::Arc;

/// Sends `local` games to [`LocalInstaller`] and `steam` games to the Steam installer, if the
/// worker has one (else a clear refusal).
#[derive(Debug, Clone)]
pub struct InstallerByType {
    local: LocalInstaller,
    steam: Option<Arc<dyn GameInstaller>>,
}

impl InstallerByType {
    /// Local games only.
    pub fn local_only() -> Self {
        Self {
            local: LocalInstaller,
            steam: None,
        }
    }

    /// Local games, and Steam games through `steam` (e.g. `manman_steam::SteamInstaller`).
    pub fn with_steam(steam: Arc<dyn GameInstaller>) -> Self {
        Self {
            local: LocalInstaller,
            steam: Some(steam),
        }
    }
}

#[async_trait]
impl GameInstaller for InstallerByType {
    async fn install(
        &self,
        request: &InstallRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, InstallError> {
        match (&request.game.server_type, &self.steam) {
            (ServerType::Steam { .. }, Some(steam)) => steam.install(request, progress).await,
            (ServerType::Steam { .. }, None) => Err(InstallError::Unsupported {
                game: request.game.name.clone(),
                detail: "this worker has no SteamCMD installer: give it the steamcmd executable (--steamcmd)".to_owned(),
            }),
            (ServerType::Local { .. }, _) => self.local.install(request, progress).await,
        }
    }
}
