//! Files only their owner may read (mode 0600): the admin token, the saved login, the SQLite
//! database. A file is written through a temporary file in the same directory, created 0600,
//! then renamed over the old one, so the secret is never readable by others, not even for a
//! moment and not when the old file had a wider mode. Files that must stay in place (a
//! database) have their mode narrowed instead.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Owner read and write, nothing for anyone else.
const MODE: u32 = 0o600;

/// Replaces `path` with `contents`, mode 0600, atomically (temporary file and rename).
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(MODE)
            .open(&temporary)?;
        // The mode given at creation is narrowed by the umask, never widened: set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Makes `path` a file only its owner may read: created empty (mode 0600) when missing, its
/// mode narrowed to 0600 when it exists.
pub fn create_or_restrict(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .open(path)
    {
        Ok(_) => restrict(path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => restrict(path),
        Err(e) => Err(e),
    }
}

/// Narrows the mode of `path` to 0600 when it exists (a missing file is fine).
pub fn restrict(path: &Path) -> std::io::Result<()> {
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `path` with `suffix` appended to its file name (`manman.db` → `manman.db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A name for a temporary file in the directory of `path`, unique to this process and call.
fn temporary_beside(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    with_suffix(path, &format!(".{}.{n}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_rewritten_file_is_0600_even_when_it_was_0644() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write(&path, b"new\n").expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_kept_file_is_narrowed_and_a_missing_one_created_private() {
        let dir = tempfile::tempdir().expect("dir");
        let kept = dir.path().join("manman.db");
        std::fs::write(&kept, "data").expect("write");
        std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        create_or_restrict(&kept).expect("restrict");
        assert_eq!(mode(&kept), 0o600);
        assert_eq!(std::fs::read_to_string(&kept).expect("read"), "data");
        let new = dir.path().join("new.db");
        create_or_restrict(&new).expect("create");
        assert_eq!(mode(&new), 0o600);
        restrict(&dir.path().join("missing")).expect("a missing file is fine");
        assert_eq!(with_suffix(&kept, "-wal"), dir.path().join("manman.db-wal"));
    }
}
