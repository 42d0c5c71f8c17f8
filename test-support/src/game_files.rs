//! Game directories for tests whose worker may run as root: a worker running as root runs game
//! servers as an unprivileged user, who must be able to reach the install directory, and
//! refuses an executable that is a symbolic link out of the game's directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A temporary directory others may pass through (mode 0755; `tempfile` makes 0700 ones), so
/// that game servers running as another user reach an install directory inside it.
///
/// # Panics
///
/// When the directory cannot be made.
pub fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary directory");
    dir
}

/// Puts `program` at `target` as a file of the game's directory: a hard link (a symbolic link
/// would point out of the game's directory, which the worker refuses), or a copy on another
/// file system. Creates `target`'s directory.
///
/// # Panics
///
/// When it cannot.
pub fn install_program(program: impl AsRef<Path>, target: &Path) {
    let program = program.as_ref();
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).expect("the game's directory");
    }
    if std::fs::hard_link(program, target).is_err() {
        std::fs::copy(program, target).expect("copy the program into the game's directory");
    }
}
