//! The installer port: make a game's files present on this machine before it starts.

use crate::config::GameServerConfig;
use crate::game_server::GameServer;
use crate::ports::ProcessUser;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::PathBuf;

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// The game.
    pub game: GameServer,
    /// The config about to run (its executable must exist afterwards).
    pub config: GameServerConfig,
    /// The worker's install directory (the root under which games live).
    pub install_root: PathBuf,
    /// The unprivileged user the game's servers run as (when the worker runs as root): the
    /// game's directory is handed over to it, and an installer that runs programs (SteamCMD)
    /// runs them as this user, so the worker never writes where a game server could plant a
    /// link. `None`: everything runs as the worker's own user.
    pub run_as: Option<ProcessUser>,
}

/// Where the game's files are, once installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// The game's directory: executables and working dirs are relative to it.
    pub dir: PathBuf,
    /// The installed build, when the installer knows it.
    pub build_id: Option<String>,
}

/// Installs or finds a game's files.
///
/// It has no mock with the `mocks` feature: mockall cannot mock a method taking a trait object
/// by reference (`progress: &dyn ProgressSink`, whose elided object lifetime it cannot name).
/// A test implements it instead ([`crate::worker_service::LocalInstaller`] installs nothing).
#[async_trait]
pub trait GameInstaller: Send + Sync + Debug + 'static {
    /// Makes the game's files present and returns where they are, reporting progress on the way.
    async fn install(
        &self,
        request: &InstallRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, InstallError>;
}

/// How far an install has come, for a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallProgress {
    /// What the installer is doing, e.g. `downloading`, `verifying`, `committing`.
    pub stage: String,
    /// Done so far, 0 to 100, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Bytes done, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    /// Bytes in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// More about the stage for people, when there is more to say: for `retrying`, why the
    /// last attempt failed (its class), which attempt it was and when the next one starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where an installer reports progress. Reporting never waits: a sink may drop updates it
/// cannot pass on in time (progress is for display, and the next update supersedes it).
pub trait ProgressSink: Send + Sync + Debug {
    /// One update.
    fn report(&self, progress: InstallProgress);
}

/// A sink that ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _progress: InstallProgress) {}
}

/// Why a game could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// This installer does not handle the game's type.
    #[error("{game}: {detail}")]
    Unsupported {
        /// The game's name.
        game: String,
        /// Which installer would.
        detail: String,
    },
    /// The files are not there (a local game's directory, or the executable).
    #[error("{game}: {path} does not exist: {hint}")]
    Missing {
        /// The game's name.
        game: String,
        /// What is missing.
        path: PathBuf,
        /// What the operator should do.
        hint: String,
    },
    /// The game or its config would leave the install directory (an absolute path, `..`, a
    /// link that points out): refused, never retried.
    #[error("{game}: refused: {detail}")]
    Refused {
        /// The game's name.
        game: String,
        /// What points where, and what to do.
        detail: String,
    },
    /// Installing failed.
    #[error("{game}: install failed: {detail}")]
    Failed {
        /// The game's name.
        game: String,
        /// What happened and what to do.
        detail: String,
    },
    /// Installing failed in a way no new attempt can fix as things are (a refused login, no
    /// licence for the app, a Steam Guard prompt nobody can answer, a login rate limit):
    /// the worker's crash policy does not restart the instance, since every restart would
    /// fail the same way — and, for a login, count against the account.
    #[error("{game}: install failed: {detail}")]
    Unrecoverable {
        /// The game's name.
        game: String,
        /// The installer's name for the kind of failure, e.g. `login-failed` (the detail
        /// starts with it).
        class: String,
        /// What happened and what to do.
        detail: String,
    },
}
