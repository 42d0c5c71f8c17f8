//! The user game servers run as. A worker running as root never runs a game server (or
//! SteamCMD) as root: it runs them as an unprivileged user (`MANMAN_WORKER_RUN_AS`, default
//! `nobody`), hands each game's directory over to that user, and keeps its own state where that
//! user cannot read. A worker that is not root cannot switch users: its servers run as itself.

use crate::ports::ProcessUser;
use nix::unistd::{Uid, User};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// How deep [`hand_over`] walks; a deeper tree is an error, not a stack overflow.
const MAX_DEPTH: usize = 128;

/// One walk at a time in this process: two games, one inside the other, handed over at once
/// could otherwise hand a directory to the servers' user while the other walk is inside it.
static HANDING_OVER: Mutex<()> = Mutex::new(());

/// Hands the tree at `dir` over to `user`, once: when `dir` itself is not the user's yet, what
/// this process owns under it is given to the user, deepest first, and `dir` last.
///
/// Nothing of the walk can be steered by the user's processes (game servers, possibly running
/// already): it needs every directory above `dir` to be such that only its owner — never the
/// user — can change what is in it (not writable by others, or sticky), and it goes into a
/// directory only when this process owns it and nobody else may write it — so every path it
/// takes runs through directories the user cannot change, and what it gives away (deepest
/// first) it never visits again. Entries that belong to anybody else (another game handed over
/// already, an operator's files) are left as they are; symbolic links are never followed; a
/// file with more than one hard link is left alone (its inode is shared with a file elsewhere);
/// only directories, regular files and links change hands. Later starts find `dir` already the
/// user's and do nothing, so files an operator adds later stay theirs.
pub fn hand_over(dir: &Path, user: &ProcessUser) -> io::Result<()> {
    let _one_walk = HANDING_OVER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.uid() == user.uid {
        return Ok(());
    }
    let me = Uid::effective().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(io::Error::other(format!(
            "{} is not a directory of this worker's (owner uid {}): ManMan gives game servers \
             only what it owns; make it root's, or the servers' user's",
            dir.display(),
            meta.uid()
        )));
    }
    if let Some(parent) = dir.parent() {
        check_steady(parent, user)?;
    }
    if !closed_to_others(&meta) {
        return Err(unsteady(dir, &meta));
    }
    give_children(dir, user, me, 0)?;
    give(dir, &meta, user)
}

/// Whether only the owner can change what is in a directory: not writable by group or
/// others, or sticky (others may add entries, but not replace or remove the owner's).
fn closed_to_others(meta: &std::fs::Metadata) -> bool {
    meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0
}

fn unsteady(dir: &Path, meta: &std::fs::Metadata) -> io::Error {
    io::Error::other(format!(
        "{} (owner uid {}, mode {:o}) can be changed by other users, who could slip a link into \
         what the worker walks: make it root's and not writable by others",
        dir.display(),
        meta.uid(),
        meta.mode() & 0o7777
    ))
}

/// Checks that neither `dir` nor any directory above it can be changed by `user`: none is
/// theirs, and each is [`closed_to_others`].
fn check_steady(dir: &Path, user: &ProcessUser) -> io::Result<()> {
    for ancestor in dir.ancestors() {
        let meta = std::fs::symlink_metadata(ancestor)?;
        if meta.uid() == user.uid || !closed_to_others(&meta) {
            return Err(unsteady(ancestor, &meta));
        }
    }
    Ok(())
}

fn give_children(dir: &Path, user: &ProcessUser, me: u32, depth: usize) -> io::Result<()> {
    if depth >= MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} is more than {MAX_DEPTH} directories deep: not handed over",
            dir.display()
        )));
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.uid() != me {
            continue;
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            if !closed_to_others(&meta) {
                continue;
            }
            give_children(&path, user, me, depth + 1)?;
        } else if !(kind.is_symlink() || (kind.is_file() && meta.nlink() == 1)) {
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

    #[test]
    fn the_walk_never_goes_where_the_user_could_change_its_way() {
        if !running_as_root() {
            eprintln!("skipped: only root can give files away");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let user = nobody();
        let owner = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
        let chown = |p: &Path| std::os::unix::fs::lchown(p, Some(user.uid), None).unwrap();

        // Another game inside this one, handed over already: its contents are the user's to
        // change, so the walk does not go in (nor does it into a directory anyone may write).
        let game = tmp.path().join("outer");
        std::fs::create_dir_all(game.join("inner")).unwrap();
        std::fs::write(game.join("inner/root-file"), "").unwrap();
        chown(&game.join("inner"));
        std::fs::create_dir_all(game.join("open")).unwrap();
        std::fs::write(game.join("open/root-file"), "").unwrap();
        std::fs::set_permissions(game.join("open"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        hand_over(&game, &user).unwrap();
        assert_eq!(owner(&game), user.uid);
        assert_eq!(owner(&game.join("inner/root-file")), 0);
        assert_eq!(owner(&game.join("open")), 0);
        assert_eq!(owner(&game.join("open/root-file")), 0);

        // A game inside a directory the user owns could be swapped for a link mid-walk.
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir_all(theirs.join("game")).unwrap();
        chown(&theirs);
        let refused = hand_over(&theirs.join("game"), &user).unwrap_err();
        assert!(refused.to_string().contains("can be changed"), "{refused}");
        assert_eq!(owner(&theirs.join("game")), 0);
    }
}
