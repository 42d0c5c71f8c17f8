//! What `manman login` keeps: the host and the token to use when none is given, in a file only
//! its owner can read (`MANMAN_CONFIG_FILE`, else `$XDG_CONFIG_HOME/manman/config.json`, else
//! `~/.config/manman/config.json`).

use crate::private_file;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A saved login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLogin {
    /// The host's API.
    pub host: String,
    /// The bearer token.
    pub token: String,
}

impl std::fmt::Debug for SavedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedLogin")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Where the login is kept when `MANMAN_CONFIG_FILE` is not set.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("manman").join("config.json"))
}

/// The saved login, if there is one.
pub fn load(path: &Path) -> anyhow::Result<Option<SavedLogin>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a manman login: run `manman login` again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Saves a login (mode 0600, also over an earlier file of a wider mode), replacing an earlier
/// one, broken or not.
pub fn save(path: &Path, login: &SavedLogin) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    private_file::write(path, &serde_json::to_vec_pretty(login)?)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}
