//! [`ConfinedPath`]: a path that cannot leave its root. What an operator writes as a path (a
//! local game's directory, a config's executable and working dir, a library directory) becomes
//! one of these before the worker uses it, so nothing reaches outside the install directory —
//! not with an absolute path, not with `..`, not through a symbolic link.
//!
//! Two checks, one rule: [`check_relative`] is the rule on the text (the host applies it at the
//! API, where the files are not at hand); [`ConfinedPath::join`] applies it again and then
//! resolves the path on disk, links included, and refuses what ends up outside.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// What is wrong with a relative path as text, if anything: empty, absolute, `..`, NUL or other
/// control characters.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty: give a path relative to the game's directory".to_owned());
    }
    if let Some(c) = path.chars().find(|c| is_control_or_bidi(*c)) {
        return Err(format!(
            "must not contain control characters ({:?} found): use a plain path",
            c.escape_default().to_string()
        ));
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "{path:?} leaves its directory with '..': use a path inside it"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "{path:?} is absolute: give a path relative to its directory"
                ));
            }
        }
    }
    Ok(())
}

/// Control characters, and the invisible marks that reorder text (a path shown with a
/// right-to-left override reads as another path).
fn is_control_or_bidi(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfinementError {
    /// The text is not an allowed relative path.
    #[error("{field} {path:?} is refused: {problem}")]
    Invalid {
        /// The setting it came from, e.g. `executable`.
        field: String,
        /// The path as given.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// On disk it resolves (through a symbolic link) to somewhere outside its root.
    #[error(
        "{field} {path:?} is refused: it resolves to {resolved}, outside {root} (a symbolic link \
         points out): replace the link with the file itself, inside the directory"
    )]
    Escapes {
        /// The setting it came from.
        field: String,
        /// The path as given.
        path: String,
        /// Where it leads.
        resolved: PathBuf,
        /// The directory it must stay in.
        root: PathBuf,
    },
    /// It does not exist (or cannot be resolved).
    #[error("{field} {path:?}: {} cannot be used: {source}", full.display())]
    Missing {
        /// The setting it came from.
        field: String,
        /// The path as given.
        path: String,
        /// The path that was looked up.
        full: PathBuf,
        /// Why it could not be resolved.
        #[source]
        source: io::Error,
    },
}

impl ConfinementError {
    /// The setting the refused path came from.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. }
            | Self::Escapes { field, .. }
            | Self::Missing { field, .. } => field,
        }
    }
}

/// A directory or file that exists and lies inside a root directory, links resolved: the only
/// way to get one is [`ConfinedPath::root`] and [`ConfinedPath::join`], so holding one means the
/// check was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinedPath {
    path: PathBuf,
}

impl ConfinedPath {
    /// A root directory itself, resolved (it must exist).
    pub fn root(dir: &Path) -> Result<Self, ConfinementError> {
        let path = dir
            .canonicalize()
            .map_err(|source| ConfinementError::Missing {
                field: "root".to_owned(),
                path: dir.display().to_string(),
                full: dir.to_path_buf(),
                source,
            })?;
        Ok(Self { path })
    }

    /// `relative` (the value of setting `field`) inside this directory: the text must pass
    /// [`check_relative`], and the resolved path must exist and stay inside.
    pub fn join(&self, relative: &str, field: &str) -> Result<Self, ConfinementError> {
        check_relative(relative).map_err(|problem| ConfinementError::Invalid {
            field: field.to_owned(),
            path: relative.to_owned(),
            problem,
        })?;
        self.resolve_inside(&self.path.join(relative), relative, field)
    }

    /// An absolute `path` (e.g. an installer's answer) that must lie inside this directory.
    pub fn contain(&self, path: &Path, field: &str) -> Result<Self, ConfinementError> {
        self.resolve_inside(path, &path.display().to_string(), field)
    }

    fn resolve_inside(
        &self,
        full: &Path,
        given: &str,
        field: &str,
    ) -> Result<Self, ConfinementError> {
        let resolved = full
            .canonicalize()
            .map_err(|source| ConfinementError::Missing {
                field: field.to_owned(),
                path: given.to_owned(),
                full: full.to_path_buf(),
                source,
            })?;
        if !resolved.starts_with(&self.path) {
            return Err(ConfinementError::Escapes {
                field: field.to_owned(),
                path: given.to_owned(),
                resolved,
                root: self.path.clone(),
            });
        }
        Ok(Self { path: resolved })
    }

    /// Whether `path` (absolute, or relative to `base`), once resolved, lies inside this
    /// directory. A path that does not exist (yet) is judged by its longest existing ancestor,
    /// resolved, and the rest of its text, which must hold no `..`.
    pub fn holds(&self, base: &Path, path: &str) -> bool {
        let full = base.join(path);
        let mut existing = full.as_path();
        let mut rest = Vec::new();
        loop {
            if let Ok(resolved) = existing.canonicalize() {
                return resolved.starts_with(&self.path)
                    && rest.iter().all(|c| *c != Component::ParentDir);
            }
            match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return false,
            }
        }
    }

    /// The resolved path.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for ConfinedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_text_rule() {
        assert!(check_relative("bin/server").is_ok());
        assert!(check_relative("./srcds_run").is_ok());
        for bad in [
            "",
            "/bin/sh",
            "../x",
            "a/../../x",
            "a\0b",
            "a\nb",
            "a\u{1b}[2Jb",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_relative("/bin").unwrap_err().contains("absolute"));
        assert!(check_relative("a/../b").unwrap_err().contains(".."));
    }

    #[test]
    fn links_that_point_out_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("games");
        std::fs::create_dir_all(root.join("game/bin")).unwrap();
        std::fs::write(root.join("game/bin/server"), "").unwrap();
        symlink("/bin", root.join("game/out")).unwrap();
        symlink("bin/server", root.join("game/inside")).unwrap();
        symlink("/bin/sh", root.join("game/sh")).unwrap();

        let root = ConfinedPath::root(&root).unwrap();
        let game = root.join("game", "server_type.path").unwrap();
        assert!(game.join("bin/server", "executable").is_ok());
        assert!(
            game.join("inside", "executable").is_ok(),
            "a link inside is fine"
        );
        let out = game.join("out", "working_dir").unwrap_err();
        assert!(matches!(out, ConfinementError::Escapes { .. }), "{out}");
        assert!(out.to_string().contains("working_dir"), "{out}");
        assert!(matches!(
            game.join("sh", "executable"),
            Err(ConfinementError::Escapes { .. })
        ));
        assert!(matches!(
            game.join("out/sh", "executable"),
            Err(ConfinementError::Escapes { .. })
        ));
        assert!(matches!(
            game.join("missing", "executable"),
            Err(ConfinementError::Missing { .. })
        ));
        assert!(matches!(
            game.join("/bin/sh", "executable"),
            Err(ConfinementError::Invalid { .. })
        ));
        assert!(game.contain(Path::new("/bin"), "dir").is_err());
        assert!(game.holds(game.as_path(), "bin"));
        assert!(game.holds(game.as_path(), "not-yet/there"));
        assert!(!game.holds(game.as_path(), "out"));
        assert!(!game.holds(game.as_path(), "out/not-there"));
        assert!(!game.holds(game.as_path(), "/usr/lib"));
        assert!(!game.holds(game.as_path(), "nothing/../../x"));
    }
}
