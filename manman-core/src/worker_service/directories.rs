//! The worker's two directories, made safe before anything runs: the install directory, which
//! game servers must reach but not list (0711 when the worker owns it), and the state directory
//! (console logs, process records), which is the worker's alone (0700). A process record names a
//! process group the worker will SIGKILL when it restarts: nobody else may write one.

use crate::ports::ProcessUser;
use crate::worker_service::server_user::check_reachable;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the install directory: others may pass through to their game, not list it.
pub(crate) const INSTALL_DIR_MODE: u32 = 0o711;
/// Mode of the state directory: the worker's alone.
pub(crate) const STATE_DIR_MODE: u32 = 0o700;

/// The directories, resolved.
#[derive(Debug, Clone)]
pub(crate) struct WorkerDirectories {
    /// The install directory, resolved.
    pub(crate) install: PathBuf,
    /// The state directory, resolved.
    pub(crate) state: PathBuf,
}

/// Creates both directories, sets their modes (a directory the worker does not own is left as
/// it is, but a state directory others can read is refused) and checks that `servers` — the
/// servers' user, when they run as another — can reach the install directory.
pub(crate) fn prepare(
    install_dir: &Path,
    state_dir: &Path,
    servers: Option<&ProcessUser>,
) -> Result<WorkerDirectories, String> {
    let install = make(install_dir, INSTALL_DIR_MODE, "install")?;
    let state = make(state_dir, STATE_DIR_MODE, "state")?;
    let mode = std::fs::metadata(&state)
        .map_err(|e| format!("the state directory {}: {e}", state.display()))?
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "the state directory {} (mode {:o}) is open to other users, who could read console \
             logs or plant process records: make it the worker's own (`chmod 700`)",
            state.display(),
            mode & 0o7777
        ));
    }
    if let Some(user) = servers {
        check_reachable(&install, user)
            .map_err(|e| format!("the install directory {}: {e}", install.display()))?;
    }
    Ok(WorkerDirectories { install, state })
}

fn make(dir: &Path, mode: u32, what: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "could not create the {what} directory {}: {e}",
            dir.display()
        )
    })?;
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("the {what} directory {}: {e}", dir.display()))?;
    if meta.uid() == nix::unistd::Uid::effective().as_raw() && meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            format!(
                "could not set the mode of the {what} directory {} to {mode:o}: {e}",
                dir.display()
            )
        })?;
    }
    dir.canonicalize()
        .map_err(|e| format!("the {what} directory {}: {e}", dir.display()))
}

impl WorkerDirectories {
    /// Whether `game_dir` (resolved) may be a game's directory: not the install directory
    /// itself, and neither inside nor around the state directory — a game's directory is
    /// handed to the servers' user, with everything in it.
    pub(crate) fn check_game_dir(&self, game_dir: &Path) -> Result<(), String> {
        if game_dir == self.install {
            return Err(format!(
                "the game's directory is the install directory {} itself: give the game a \
                 directory of its own inside it (e.g. games/<name>)",
                self.install.display()
            ));
        }
        if game_dir.starts_with(&self.state) || self.state.starts_with(game_dir) {
            return Err(format!(
                "the game's directory {} overlaps the worker's state directory {}: give the \
                 game a directory of its own",
                game_dir.display(),
                self.state.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_set_and_games_stay_out_of_the_state() {
        let tmp = tempfile::tempdir().unwrap();
        let install = tmp.path().join("data");
        let state = install.join(".manman");
        let dirs = prepare(&install, &state, None).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&install), 0o711);
        assert_eq!(mode(&state), 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&install, &state, None).unwrap();
        assert_eq!(mode(&state), 0o700, "a mode that drifted is fixed");

        assert!(dirs.check_game_dir(&dirs.install.join("games/x")).is_ok());
        assert!(dirs.check_game_dir(&dirs.install).is_err());
        assert!(dirs.check_game_dir(&dirs.state).is_err());
        assert!(dirs.check_game_dir(&dirs.state.join("logs")).is_err());
    }
}
