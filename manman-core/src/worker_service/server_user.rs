//! The user game servers run as. A worker running as root never runs a game server (or
//! SteamCMD) as root: it runs them as an unprivileged user (`MANMAN_WORKER_RUN_AS`, default
//! `nobody`), hands each game's directory over to that user, and keeps its own state where that
//! user cannot read. A worker that is not root cannot switch users: its servers run as itself.

use crate::ports::ProcessUser;
use nix::unistd::{Uid, User};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The user game servers run as when the worker runs as root and no other is configured.
pub const DEFAULT_SERVER_USER: &str = "nobody";

/// Whether this process runs as root (effective uid 0).
pub fn running_as_root() -> bool {
    Uid::effective().is_root()
}

/// The user game servers of this worker run as: `setting` (a name or a numeric uid; default
/// [`DEFAULT_SERVER_USER`]) when the worker runs as root; `None` when it does not, where a
/// setting naming another user than the worker's is an error (only root can switch users).
pub fn server_user(setting: Option<&str>) -> Result<Option<ProcessUser>, String> {
    if running_as_root() {
        return lookup(setting.unwrap_or(DEFAULT_SERVER_USER)).map(Some);
    }
    let Some(name) = setting else { return Ok(None) };
    let wanted = lookup(name)?;
    if wanted.uid == Uid::effective().as_raw() {
        Ok(None)
    } else {
        Err(format!(
            "MANMAN_WORKER_RUN_AS: {wanted} is not the worker's own user, and only a worker \
             running as root can run servers as another user: run the worker as {}, or leave \
             the setting out",
            wanted.name
        ))
    }
}

/// Marks this process non-dumpable: processes of the same user (game servers of a worker that
/// is not root) can no longer read its memory or `/proc/<pid>/environ`, nor attach a debugger
/// to it. For binaries: it applies to the whole process.
pub fn keep_private() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// Looks a user up by name or numeric uid; root (uid 0) is refused.
pub fn lookup(name: &str) -> Result<ProcessUser, String> {
    let found = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(name),
    }
    .map_err(|e| format!("MANMAN_WORKER_RUN_AS: could not look up user {name:?}: {e}"))?
    .ok_or_else(|| {
        format!(
            "MANMAN_WORKER_RUN_AS: there is no user {name:?} on this machine: create one \
             (e.g. `useradd --system --no-create-home manman-game`) or name another"
        )
    })?;
    if found.uid.is_root() {
        return Err(format!(
            "MANMAN_WORKER_RUN_AS: {name:?} is root; game servers never run as root: name an \
             unprivileged user"
        ));
    }
    Ok(ProcessUser {
        name: found.name,
        uid: found.uid.as_raw(),
        gid: found.gid.as_raw(),
    })
}

/// Checks that `user` can reach `dir`: every directory from `/` down to it must let the user
/// search it (the `x` bit for its owner, group or others). Servers run with their primary
/// group only, so that is the group that counts.
pub fn check_reachable(dir: &Path, user: &ProcessUser) -> Result<(), String> {
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut path = PathBuf::new();
    for component in dir.components() {
        path.push(component);
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(format!(
                "{} (mode {:o}) does not let game servers' user {user} reach {}: give others \
                 search permission (`chmod o+x {}`), or choose an install directory they can reach",
                path.display(),
                mode & 0o7777,
                dir.display(),
                path.display()
            ));
        }
    }
    Ok(())
}

/// Hands the tree at `dir` over to `user`, once: when `dir` itself is not the user's yet, each
/// entry under it is given to the user, deepest first, and `dir` last. Deepest first, because
/// while a directory is still root's nobody else can change what is inside it, so no link can
/// be slipped in while the walk runs; later starts find `dir` already the user's and do
/// nothing (files an operator adds later stay theirs). Symbolic links are never followed, and a
/// file with more than one hard link is left alone: its inode is shared with a file elsewhere,
/// which must not change hands.
pub fn hand_over(dir: &Path, user: &ProcessUser) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.uid() == user.uid {
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    give_children(dir, user)?;
    give(dir, &meta, user)
}

fn give_children(dir: &Path, user: &ProcessUser) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            give_children(&path, user)?;
        }
        if meta.is_file() && meta.nlink() > 1 {
            continue;
        }
        give(&path, &meta, user)?;
    }
    Ok(())
}

fn give(path: &Path, meta: &std::fs::Metadata, user: &ProcessUser) -> io::Result<()> {
    if meta.uid() == user.uid && meta.gid() == user.gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not give {} to {user}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn nobody() -> ProcessUser {
        lookup("nobody").expect("this machine has a nobody user")
    }

    #[test]
    fn root_is_never_the_servers_user() {
        assert!(lookup("root").unwrap_err().contains("never run as root"));
        assert!(lookup("0").is_err());
        assert!(lookup("no-such-user-here").unwrap_err().contains("no user"));
        if running_as_root() {
            let user = server_user(None).unwrap().expect("a user when root");
            assert_eq!(user.name, DEFAULT_SERVER_USER);
        } else {
            assert_eq!(server_user(None).unwrap(), None);
        }
    }

    #[test]
    fn reachability_is_checked_along_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = tmp.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        let user = nobody();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = check_reachable(&inner, &user).unwrap_err();
        assert!(err.contains("chmod o+x"), "{err}");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&inner, &user).unwrap();
    }

    #[test]
    fn a_tree_is_handed_over_once_without_following_links() {
        if !running_as_root() {
            eprintln!("skipped: only root can give files away");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let game = tmp.path().join("game");
        std::fs::create_dir_all(game.join("bin")).unwrap();
        std::fs::write(game.join("bin/server"), "x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "root's").unwrap();
        std::os::unix::fs::symlink(&outside, game.join("link")).unwrap();
        std::fs::hard_link(&outside, game.join("hard")).unwrap();
        let user = nobody();
        hand_over(&game, &user).unwrap();
        let owner = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
        assert_eq!(owner(&game), user.uid);
        assert_eq!(owner(&game.join("bin")), user.uid);
        assert_eq!(owner(&game.join("bin/server")), user.uid);
        assert_eq!(
            owner(&outside),
            0,
            "a link is not followed, a hard link not given"
        );
        // Once the user's, the tree is left as it is.
        std::fs::write(game.join("added-by-operator"), "").unwrap();
        hand_over(&game, &user).unwrap();
        assert_eq!(owner(&game.join("added-by-operator")), 0);
    }
}
